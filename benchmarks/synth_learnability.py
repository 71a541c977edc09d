"""Can a small CNN see each synthetic CXR finding, and the change between a prior and a current image?

1. findings: a multi-label CNN (10 outputs, one per finding) trained on CPU for at most --minutes on generated
   images; AUROC per finding on held-out patients, at 64 and at 128 px. Goal: every AUROC >= 0.9.
2. change: a CNN on (current, prior) stacked as two channels predicts, for each finding, one of
   absent / new / resolved / increased / decreased / unchanged; one-vs-rest AUROC per change label (pooled over
   findings that were present on either image) and accuracy, at 64 px.
Baseline in the same run: the same findings task with shuffled training labels (AUROC ~0.5).

  OMP_NUM_THREADS=1 python benchmarks/synth_learnability.py [--minutes 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from medvlm.synth.cxr import CHANGES, FINDINGS, CXRConfig
from medvlm.synth.dataset import generate_one

CHANGE_CLASSES = ("absent",) + CHANGES


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); nan when one class is missing."""
    labels = labels.astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def make_data(n: int, size_px: int, temporal: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) float32 in [0, 1] and targets: (N, 10) presence, or (N, 10) change class ids."""
    prevalence = dict.fromkeys(FINDINGS, 0.3)
    config = CXRConfig(size_px=size_px, temporal=temporal, no_prior_fraction=0.0, normal_fraction=0.1,
                       prevalence=prevalence, p_resolved=1.0)
    channels = 2 if temporal else 1
    x = np.zeros((n, channels, size_px, size_px), dtype=np.float32)
    y = np.zeros((n, len(FINDINGS)), dtype=np.int64)
    for i in range(n):
        study = generate_one("cxr", i, seed=seed, config=config)
        for c in range(channels):
            x[i, c] = study.images[c].pixels / 255.0
        for k, f in enumerate(study.findings):
            y[i, k] = CHANGE_CLASSES.index(f.get("change", "absent")) if temporal else int(f["present"])
    return x, y


class SmallCNN(nn.Module):
    """Strided conv stem (stride 2 at 64 px, 4 at 128 px) and conv blocks -> mean and max pooling -> linear.

    Input (N, C, H, W) in [0, 1]; output (N, outputs). Max pooling keeps small findings (nodules, tubes) visible.
    """

    def __init__(self, in_channels: int, outputs: int, stem_stride: int = 2) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        # The stem's stride grows with the image size so every size costs the same per image.
        stem = [nn.Conv2d(in_channels, 16, 2 * stem_stride - 1, stride=stem_stride, padding=stem_stride - 1,
                          bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(
            *stem,
            *block(16, 32, 2), *block(32, 32, 1),
            *block(32, 64, 2), *block(64, 64, 1),
            *block(64, 96, 2), *block(96, 96, 1),
            *block(96, 128, 2),
        )
        self.head = nn.Linear(256, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        return self.head(torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1))


def train(x: np.ndarray, y: np.ndarray, outputs_per_finding: int, seconds: float, seed: int = 0) -> nn.Module:
    """Train until the time budget is spent; multi-label BCE (1 output per finding) or per-finding softmax."""
    torch.manual_seed(seed)
    n_findings = y.shape[1]
    model = SmallCNN(x.shape[1], n_findings * outputs_per_finding, stem_stride=max(2, x.shape[-1] // 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    counts = np.bincount(y.reshape(-1), minlength=max(outputs_per_finding, 1)).astype(np.float64)
    class_weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / max(outputs_per_finding, 1),
                                dtype=torch.float32)
    rng = np.random.default_rng(seed)
    start, steps = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - start < seconds:
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 64)):
            logits = model(xt[batch])
            if outputs_per_finding == 1:
                loss = nn.functional.binary_cross_entropy_with_logits(logits, yt[batch].float())
            else:  # class-balanced: "absent" dominates the change targets
                loss = nn.functional.cross_entropy(logits.view(-1, outputs_per_finding), yt[batch].view(-1),
                                                   weight=class_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - start >= seconds:
                break
    model.steps = steps
    return model


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)]).numpy()


def findings_table(size_px: int, n_train: int, n_test: int, seconds: float) -> dict[str, float]:
    x, y = make_data(n_train, size_px, False, seed=1)
    xv, yv = make_data(n_test, size_px, False, seed=2)  # other seed: other synthetic patients
    model = train(x, y, 1, seconds)
    scores = predict(model, xv)
    result = {name: auroc(scores[:, k], yv[:, k]) for k, name in enumerate(FINDINGS)}
    result["_steps"] = model.steps
    shuffled = train(x, y[np.random.default_rng(0).permutation(len(y))], 1, seconds / 4)
    baseline = predict(shuffled, xv)
    result["_shuffled_mean"] = float(np.nanmean([auroc(baseline[:, k], yv[:, k]) for k in range(len(FINDINGS))]))
    return result


def change_table(size_px: int, n_train: int, n_test: int, seconds: float) -> dict[str, float]:
    x, y = make_data(n_train, size_px, True, seed=3)
    xv, yv = make_data(n_test, size_px, True, seed=4)
    classes = len(CHANGE_CLASSES)
    model = train(x, y, classes, seconds)
    logits = torch.from_numpy(predict(model, xv)).view(len(xv), len(FINDINGS), classes)
    probs = logits.softmax(-1).numpy().reshape(-1, classes)
    truth = yv.reshape(-1)
    involved = truth != 0  # findings present on either image
    result = {}
    for c, name in enumerate(CHANGE_CLASSES[1:], start=1):
        result[name] = auroc(probs[involved, c], truth[involved] == c)
    result["_accuracy_involved"] = float((probs[involved].argmax(1) == truth[involved]).mean())
    result["_steps"] = model.steps
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per model (default 2)")
    parser.add_argument("--quick", action="store_true", help="20 s per model on fewer images: a short check")
    parser.add_argument("--sizes", default="64,128")
    args = parser.parse_args()
    seconds = 20.0 if args.quick else 60 * args.minutes
    n_train, n_test = (600, 300) if args.quick else (3000, 600)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, "
          f"{seconds:.0f} s per model, {n_train} train / {n_test} test studies")
    tables = {}
    for size in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        tables[size] = findings_table(size, n_train, n_test, seconds)
        print(f"  findings at {size} px done in {time.perf_counter() - start:.0f} s ({tables[size]['_steps']} steps)")
    start = time.perf_counter()
    change = change_table(64, n_train, n_test, seconds)
    print(f"  change at 64 px done in {time.perf_counter() - start:.0f} s ({change['_steps']} steps)")

    print("\nAUROC per finding (goal >= 0.9)")
    print(f"{'finding':<18}" + "".join(f"{str(s) + ' px':>10}" for s in tables))
    for name in FINDINGS:
        print(f"{name:<18}" + "".join(f"{tables[s][name]:>10.3f}" for s in tables))
    print(f"{'shuffled labels':<18}" + "".join(f"{tables[s]['_shuffled_mean']:>10.3f}" for s in tables)
          + "   (baseline: mean AUROC of a model trained on shuffled labels)")
    print("\nchange on (current, prior) pairs at 64 px: one-vs-rest AUROC among findings present on either image")
    for name in CHANGE_CLASSES[1:]:
        print(f"{name:<18}{change[name]:>10.3f}")
    print(f"{'accuracy (6-way)':<18}{change['_accuracy_involved']:>10.3f}")


if __name__ == "__main__":
    main()
