"""Temporal ablation (Libra's claim on the synthetic benchmark): does the prior image help report generation?

Tiny models, equal budgets (same steps, batch, learning rate, sizes), trained from scratch on
`medvlm synth cxr --temporal` report records, evaluated on the test studies' report questions. Each variant's
encoder (a conv-stem ViT) first learns the report labels of the current images (recipe encoder,
--encoder-steps), then connector and LM train on the kept encoder (--encoder-steps 0: all at once):
  (a) current_only      mlp2x_gelu connector, trained and evaluated without priors (prior images removed)
  (b) pair_concat       both images' tokens with a learned current / prior embedding
  (c) tac               Libra's Temporal Alignment Connector over all encoder layers
  (d) tac_prior_missing the (c) model evaluated with every prior removed (missing_prior="dummy": Libra's dummy prior)
  (e) pair_findings     both images' tokens plus one token per finding carrying the label head's verdict on the
                        current AND on the prior image (missing_prior="learned": a study without a prior says so)
  (f) current_only_findings  the `findings` connector (image tokens + one token per finding) without priors: the
                        control that (e) must beat for the gain to come from the prior, not from the finding tokens
  (g) pair_findings_change   (e) whose encoder stage also learns, from [current, prior], the change each report
                        states per finding (encoder.change_head), handed on as one more token per finding
The finding-token connectors pass the classifier's decisions (--findings-threshold) and keep it as the encoder
stage left it (--findings-train-classifier to let it train on).
optional (--variants): pair_findings_prior_missing (the (e) model evaluated with every prior removed), tac_learned / tac_learned_prior_missing, the same with missing_prior="learned" (a learned
"no prior" embedding, trained on the studies that have no prior).
Columns: temporal entity F1 (Libra; over all test reports, and over the studies that have a prior), change accuracy (medvlm.evaluate.change, vs labels.jsonl change labels),
clinical micro F1 over the 14 CheXpert observations (rule labeler), seconds (train + predict).
Two more rows, oracle_current and oracle_pair: what perfect readers of the current image alone and of current +
prior + change score on the same test reports (medvlm.synth.oracle: the report wording is chance, so neither
reaches 1); their temporal F1 gap is the most any model can gain from the prior on this data.
Prints the table and writes OUT/temporal_ablation.json and OUT/temporal_ablation.png.

  OMP_NUM_THREADS=1 python benchmarks/temporal_ablation.py --out /tmp/ablation --studies 600 --steps 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from medvlm.fileio import atomic_path, atomic_write_json

# name -> (trained model, evaluate with priors); trained model -> (connector, vision_feature_layer, train with
# priors, missing_prior, encoder stage learns the change too). Variants that share a trained model train it once.
VARIANTS = {
    "current_only": ("current_only", False),
    "pair_concat": ("pair_concat", True),
    "tac": ("tac", True),
    "tac_prior_missing": ("tac", False),
    "tac_learned": ("tac_learned", True),
    "tac_learned_prior_missing": ("tac_learned", False),
    "pair_findings": ("pair_findings", True),
    "pair_findings_prior_missing": ("pair_findings", False),
    "current_only_findings": ("current_only_findings", False),
    "pair_findings_change": ("pair_findings_change", True),
}
MODELS = {
    "current_only": ("mlp2x_gelu", -1, False, "dummy", False),
    "pair_concat": ("pair_concat", -1, True, "dummy", False),
    "tac": ("tac", "all", True, "dummy", False),
    "tac_learned": ("tac", "all", True, "learned", False),
    "pair_findings": ("pair_findings", -1, True, "learned", False),
    "current_only_findings": ("findings", -1, False, "dummy", False),
    "pair_findings_change": ("pair_findings", -1, True, "learned", True),
}
DEFAULT_VARIANTS = ("current_only,current_only_findings,pair_concat,tac,tac_prior_missing,pair_findings,"
                    "pair_findings_change")
FINDINGS_CONNECTORS = ("findings", "pair_findings")  # their classifier starts as the encoder stage's label head


def make_data(out: Path, args) -> Path:
    from medvlm.synth.dataset import write_dataset

    data = out / "data"
    if not (data / "dataset.json").is_file():
        if data.exists():
            shutil.rmtree(data)
        write_dataset(data, "cxr", args.studies, seed=args.seed, size_px=args.synth_size, temporal=True,
                      test_fraction=args.test_fraction, workers=2, progress=False)  # same bytes whatever workers
    return data


def write_splits(data: Path, out: Path) -> dict[str, Path]:
    """Report-only training and test files, with and without priors (absolute image paths)."""
    from medvlm.records import load_questions, load_training, write_questions, write_training
    from medvlm.temporal import drop_priors

    train = [r for r in load_training(data / "train.json") if r.metadata.get("task") == "report"]
    test = [q for q in load_questions(data / "test.jsonl") if q.answer_type == "report"]
    for record in train + test:
        record.images = [str((data / p).resolve()) for p in record.images]
    files = {"train_pair": out / "train_pair.json", "train_current": out / "train_current.json",
             "test_pair": out / "test_pair.jsonl", "test_current": out / "test_current.jsonl"}
    write_training(files["train_pair"], train)
    write_training(files["train_current"], drop_priors(train))
    write_questions(files["test_pair"], test)
    write_questions(files["test_current"], drop_priors(test))
    return files


def train_variant(name: str, connector: str, layer, missing_prior: str, change: bool, train_file: Path, out: Path,
                  args):
    """With --encoder-steps, each variant first teaches its encoder the report labels (recipe encoder, the same
    steps for every variant), then trains connector + LM on the kept encoder; else everything trains at once."""
    from medvlm.config import build_config
    from medvlm.train import TrainConfig, train

    run = {"seed": args.seed, "progress": args.progress, "log_every_steps": 20, "tensorboard": False}
    model = {"preset": "tiny", "preset_options": {
        "image_size": args.image_size, "patch_size": args.patch_size, "connector_type": connector,
        "vision_feature_layer": layer, "missing_prior": missing_prior, "vision_layers": args.vision_layers,
        "vision_hidden_size": args.vision_hidden_size,
        "vision_stem": args.vision_stem}}
    if connector in FINDINGS_CONNECTORS:
        model["preset_options"]["connector_config"] = {
            "pooling": args.encoder_pooling, "train_classifier": args.findings_train_classifier,
            "threshold": args.findings_threshold or None}
        if change:
            from medvlm.train.encoder_stage import CHANGE_CLASSES, CHANGE_FINDINGS

            model["preset_options"]["connector_config"].update(change_findings=len(CHANGE_FINDINGS),
                                                               change_classes=len(CHANGE_CLASSES))
    seconds = 0.0
    if args.encoder_steps:
        encoder = train(build_config(TrainConfig, {
            "recipe": "encoder", "model": model, "data": {"train": str(train_file)}, "components": {"vision": "full"},
            "encoder": {"pooling": args.encoder_pooling, "change_head": change},
            "optim": {"lr": args.encoder_lr, "batch_size": 32, "max_steps": args.encoder_steps, "warmup_ratio": 0.05},
            "run": {**run, "output_dir": str(out / f"{name}_encoder")},
        }))
        model, seconds = {"init_from": str(encoder.model_dir), "preset": None}, encoder.seconds
    cfg = build_config(TrainConfig, {
        "recipe": "finetune",
        "model": model,
        "data": {"train": str(train_file)},
        "components": {"vision": "frozen" if args.encoder_steps else "full", "connector": "full", "language": "full"},
        "optim": {"lr": args.lr, "batch_size": args.batch_size, "max_steps": args.steps, "warmup_ratio": 0.05},
        # a taught encoder stays frozen: its features are computed once (same steps, less time)
        "run": {**run, "output_dir": str(out / name), "cache_vision_features": bool(args.encoder_steps)},
    })
    result = train(cfg)
    result.seconds += seconds
    return result


def evaluate(model_dir: Path, questions: Path, answers: Path, labels: dict, args) -> dict:
    import medvlm
    from medvlm.evaluate.change import change_accuracy
    from medvlm.evaluate.clinical import clinical_metrics
    from medvlm.evaluate.temporal import temporal_entity_f1
    from medvlm.infer.options import GenerationOptions
    from medvlm.infer.predict import predict
    from medvlm.records import load_answers, load_questions

    model, processor = medvlm.load(model_dir)
    answers.unlink(missing_ok=True)
    predict(model, processor, questions, answers, batch_size=32, progress=args.progress,
            options=GenerationOptions(max_new_tokens=args.max_new_tokens))
    by_id = {a.question_id: a.text for a in load_answers(answers)}
    qs = load_questions(questions)
    predictions = [by_id[q.question_id] for q in qs]
    references = [q.reference for q in qs]
    change = change_accuracy(predictions, [labels[q.metadata["study_id"]]["change"] for q in qs])
    clinical = clinical_metrics(predictions, references)
    with_prior = [i for i, q in enumerate(qs) if labels[q.metadata["study_id"]]["has_prior"]]
    return {"temporal_f1": temporal_entity_f1(predictions, references),
            "temporal_f1_studies_with_prior": temporal_entity_f1([predictions[i] for i in with_prior],
                                                                 [references[i] for i in with_prior]),
            "change_accuracy": change["change_accuracy"], "change_n": change["n"],
            "change_per_finding": change["per_finding"], "change_stated": change["stated"],
            "clinical_micro_f1_14": clinical["clinical_micro_f1_14"], "reports": len(qs)}


def table(results: dict) -> str:
    keys = ("temporal_f1", "temporal_f1_studies_with_prior", "change_accuracy", "clinical_micro_f1_14", "seconds")
    heads = ("temporal F1", "temporal F1 (prior)", "change acc", "clinical F1-14", "seconds")
    lines = [f"{'variant':<26}" + "".join(f"{h:>20}" for h in heads)]
    for name, row in results.items():
        lines.append(f"{name:<26}" + "".join(
            f"{row[k]:>20.4f}" if isinstance(row.get(k), float) else f"{'-':>20}" for k in keys))
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("temporal_f1", "temporal_f1_studies_with_prior", "change_accuracy", "clinical_micro_f1_14")
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(results)
    for i, (name, row) in enumerate(results.items()):
        ax.bar([k + i * width for k in range(len(keys))], [row[k] or 0.0 for k in keys], width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys)
    ax.set_ylim(0, 1)
    ax.set_title("temporal ablation (synthetic CXR, tiny models, equal budgets)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="temporal_ablation_out", help="working folder (data, runs, results)")
    parser.add_argument("--studies", type=int, default=600, help="synthetic temporal studies (default: %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=0.15, help="test patients (default: %(default)s)")
    parser.add_argument("--synth-size", type=int, default=64, help="synthetic image side, px (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=32, help="model input side, px (default: %(default)s)")
    parser.add_argument("--patch-size", type=int, default=8, help="ViT patch side, px (default: %(default)s)")
    parser.add_argument("--vision-layers", type=int, default=2, help="ViT layers (default: %(default)s)")
    parser.add_argument("--vision-hidden-size", type=int, default=64, help="ViT width (default: %(default)s)")
    parser.add_argument("--vision-stem", choices=("patch", "conv"), default="conv",
                        help="ViT patch embedding: one linear map, or a convolutional stem (default: %(default)s)")
    parser.add_argument("--encoder-steps", type=int, default=600,
                        help="steps of the encoder stage (report labels) before each variant; 0: none, the "
                             "encoder trains with the rest (default: %(default)s)")
    parser.add_argument("--encoder-pooling", choices=("mean", "mean_max"), default="mean_max",
                        help="what the encoder stage's label head reads; the pair_findings connector's classifier "
                             "starts as that head (default: %(default)s)")
    parser.add_argument("--findings-threshold", type=float, default=0.5,
                        help="findings / pair_findings: pass the classifier's decisions at this probability; 0: pass "
                             "p itself (default: %(default)s)")
    parser.add_argument("--findings-train-classifier", action="store_true",
                        help="findings / pair_findings: train the classifier on with the connector (default: keep "
                             "the encoder stage's label head as it is)")
    parser.add_argument("--encoder-lr", type=float, default=2e-3, help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per variant: the budget "
                        "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="(default: %(default)s)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, of {sorted(VARIANTS)} (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle-draws", type=int, default=64,
                        help="simulated reports per test study for the two perfect-reader rows (medvlm.synth.oracle; "
                             "0: no oracle rows) (default: %(default)s)")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(out, args)
    files = write_splits(data, out)
    labels = {}
    for line in (data / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        labels[row["study_id"]] = {"change": row.get("change") or {}, "has_prior": bool(row.get("has_prior"))}

    results: dict[str, dict] = {}
    trained: dict[str, tuple[Path, float]] = {}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; use {sorted(VARIANTS)}")
    for name in names:
        run_name, eval_prior = VARIANTS[name]
        if run_name not in trained:
            connector, layer, train_prior, missing_prior, change = MODELS[run_name]
            print(f"== train {run_name}", flush=True)
            result = train_variant(run_name, connector, layer, missing_prior, change,
                                   files["train_pair" if train_prior else "train_current"], out / "runs", args)
            trained[run_name] = (result.model_dir, result.seconds)
        model_dir, train_seconds = trained[run_name]
        print(f"== evaluate {name}", flush=True)
        started = time.perf_counter()
        row = evaluate(model_dir, files["test_pair" if eval_prior else "test_current"],
                       out / f"answers_{name}.jsonl", labels, args)
        row["predict_seconds"] = time.perf_counter() - started
        row["train_seconds"] = train_seconds
        row["seconds"] = train_seconds + row["predict_seconds"]
        results[name] = row
        print(table({name: row}), flush=True)

    if args.oracle_draws:
        from medvlm.synth.oracle import oracle_scores

        print("== oracle: a perfect reader of the current image only, and of current + prior + change", flush=True)
        ceilings = oracle_scores(data, draws=args.oracle_draws, seed=args.seed, progress=args.progress)
        for level in ("current", "pair"):
            results[f"oracle_{level}"] = {**ceilings[level], "change_accuracy": None, "seconds": None}
    print()
    print(table(results))
    pairs = [(n, "current_only") for n in ("pair_concat", "tac", "tac_learned", "pair_findings")]
    findings_pairs = [(n, "current_only_findings") for n in ("pair_findings", "pair_findings_change")]
    for name, control in pairs + [("pair_findings_change", "current_only")] + findings_pairs:
        if name in results and control in results:
            gain = results[name]["temporal_f1"] - results[control]["temporal_f1"]
            change = results[name]["change_accuracy"] - results[control]["change_accuracy"]
            clinical = results[name]["clinical_micro_f1_14"] - results[control]["clinical_micro_f1_14"]
            print(f"{name} vs {control}: temporal F1 {gain:+.3f}, change accuracy {change:+.3f}, "
                  f"clinical micro F1 (14) {clinical:+.3f}")
    if "oracle_pair" in results:
        possible = results["oracle_pair"]["temporal_f1"] - results["oracle_current"]["temporal_f1"]
        print(f"most the prior can add (perfect readers): temporal F1 {possible:+.3f}")
        for name in results:
            if not name.startswith("oracle") and "current_only" in results and possible > 0:
                gain = results[name]["temporal_f1"] - results["current_only"]["temporal_f1"]
                print(f"  {name}: {gain:+.3f} over current_only, {gain / possible:.0%} of it")
    atomic_write_json(out / "temporal_ablation.json", {"settings": vars(args), "results": results})
    plot(results, out / "temporal_ablation.png")
    print(f"wrote {out / 'temporal_ablation.json'} and {out / 'temporal_ablation.png'}")


if __name__ == "__main__":
    main()
