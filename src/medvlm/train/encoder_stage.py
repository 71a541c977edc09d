"""Recipe `encoder`: teach the vision encoder the findings before the language model has to read them.

Each training report is labelled with the 14 CheXpert observations by the offline labeler
(`medvlm.evaluate.labeler`), and the encoder, with a linear head over the mean of its output tokens,
learns them as 14 binary targets (positive = 1; negative and not mentioned = 0; uncertain ignored by default,
CheXpert's "U-ignore"). Only the encoder and the head train; the connector and the language model are not
touched. The head is written beside the model as `label_head.safetensors` (with the observation names), so the
encoder doubles as a 14-label classifier.

Why: a language model trained from scratch learns to answer one question about an image quickly but to pick,
per question or report sentence, one finding out of image tokens that carry nothing yet very slowly; a report
supervises 14 findings of its image at once, and an encoder that already separates them gives the language
model something to read (docs/training.md, "Encoder stage").

Labels come from the records whose `task` equals `encoder.report_task` (the synthetic benchmark marks its
report conversations `task: report`), or from every record when it is None; the text labelled is the record's
assistant turns joined. Each distinct image (the first image of a record; Libra's current study) is one sample;
an image labelled by several records takes positive over uncertain over negative per observation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from medvlm.evaluate.change import CHANGES, DEVICE_PHRASES, FINDING_OBSERVATIONS, stated_change
from medvlm.evaluate.labeler import CHEXPERT_OBSERVATIONS, label_reports
from medvlm.fileio import atomic_path
from medvlm.records import TrainingRecord, resolve_path

IGNORE = -100.0  # a target the loss leaves out
_RANK = {"not_mentioned": 0, "negative": 1, "uncertain": 2, "positive": 3}  # which label wins for an image
UNCERTAIN_POLICIES = {"ignore": IGNORE, "positive": 1.0, "negative": 0.0}
# encoder.change_head: what the report states of each finding's interval change (medvlm.evaluate.change), as a
# class per finding; "none": no change word for it (not mentioned, or mentioned without one)
CHANGE_FINDINGS: tuple[str, ...] = tuple(FINDING_OBSERVATIONS) + tuple(DEVICE_PHRASES)
CHANGE_CLASSES: tuple[str, ...] = ("none", *CHANGES)
IGNORE_CLASS = -100  # a change target the loss leaves out (a study without a prior)


@dataclass
class LabelledImages:
    paths: list[str]  # resolved image paths, one per sample
    targets: torch.Tensor  # (N, 14) float: 1, 0 or IGNORE, columns in CHEXPERT_OBSERVATIONS order
    records_used: int
    # encoder.change_head: one sample per report record, its prior (None: none) and the stated change per finding
    prior_paths: list[str | None] | None = None
    change: torch.Tensor | None = None  # (N, len(CHANGE_FINDINGS)) long: CHANGE_CLASSES index or IGNORE_CLASS


def _label_records(records: list[TrainingRecord], report_task: str | None,
                   record_file: str | os.PathLike) -> tuple[list[TrainingRecord], list[str]]:
    """The records whose reports give labels, and their report texts (the assistant turns joined)."""
    chosen = [r for r in records if report_task is None or r.metadata.get("task") == report_task]
    if not chosen:
        tasks = sorted({str(r.metadata.get("task")) for r in records})
        raise ValueError(f"{record_file}: no training record has task={report_task!r} (tasks found: {tasks}); "
                         "set encoder.report_task to the task of the report records, or null to label every record")
    for r in chosen:
        if not r.images:
            raise ValueError(f"{record_file}: record {r.id!r} (task {report_task!r}) has no image to learn its "
                             "labels from; field: image")
    return chosen, [" ".join(t.value for t in r.conversations if t.role == "gpt") for r in chosen]


def _label_values(uncertain: str) -> dict[str, float]:
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"encoder.uncertain={uncertain!r}: use one of {sorted(UNCERTAIN_POLICIES)}")
    return {"positive": 1.0, "negative": 0.0, "not_mentioned": 0.0, "uncertain": UNCERTAIN_POLICIES[uncertain]}


def pair_label_targets(records: list[TrainingRecord], *, report_task: str | None, uncertain: str,
                       image_folder: str | os.PathLike | None, record_file: str | os.PathLike) -> LabelledImages:
    """encoder.change_head: one sample per label record: its current image with the 14 targets of its report, its
    prior (the second image or the named prior; None without one) and the change its report states per finding
    of CHANGE_FINDINGS (IGNORE_CLASS for every finding of a study without a prior)."""
    value_of = _label_values(uncertain)
    chosen, texts = _label_records(records, report_task, record_file)
    paths, priors, change = [], [], []
    for record, text in zip(chosen, texts, strict=True):
        images = record.images + ([record.prior_image] if record.prior_image is not None else [])
        if len(images) > 2:
            raise ValueError(f"{record_file}: record {record.id!r} has {len(images)} images; encoder.change_head "
                             "takes a current image and at most one prior; field: image")
        paths.append(str(resolve_path(images[0], image_folder, record_file)))
        priors.append(str(resolve_path(images[1], image_folder, record_file)) if len(images) == 2 else None)
        change.append([CHANGE_CLASSES.index(_change_class(stated_change(text, f))) if len(images) == 2
                       else IGNORE_CLASS for f in CHANGE_FINDINGS])
    targets = torch.tensor([[value_of[found[o]] for o in CHEXPERT_OBSERVATIONS] for found in label_reports(texts)])
    return LabelledImages(paths=paths, targets=targets, records_used=len(chosen), prior_paths=priors,
                          change=torch.tensor(change, dtype=torch.long))


def _change_class(stated: str) -> str:
    return stated if stated in CHANGES else "none"  # "not_mentioned" / "no_change_stated": no change word


def report_label_targets(records: list[TrainingRecord], *, report_task: str | None, uncertain: str,
                         image_folder: str | os.PathLike | None, record_file: str | os.PathLike) -> LabelledImages:
    """The encoder stage's samples: every distinct image of the label records with its 14 targets."""
    value_of = _label_values(uncertain)
    chosen, texts = _label_records(records, report_task, record_file)
    labels = label_reports(texts)
    best: dict[str, dict[str, str]] = {}
    for record, found in zip(chosen, labels, strict=True):
        path = str(resolve_path(record.images[0], image_folder, record_file))
        merged = best.setdefault(path, dict.fromkeys(CHEXPERT_OBSERVATIONS, "not_mentioned"))
        for observation, value in found.items():
            if _RANK[value] > _RANK[merged[observation]]:
                merged[observation] = value
    targets = torch.tensor([[value_of[found[o]] for o in CHEXPERT_OBSERVATIONS] for found in best.values()])
    return LabelledImages(paths=list(best), targets=targets, records_used=len(chosen))


class LabelledImageDataset(torch.utils.data.Dataset):
    """Item i: {"pixel_values": (C, H, W), "labels": (14,)}, the image through the model's processor; with
    change targets: pixel_values (2, C, H, W) = [current, prior] (the current again without a prior) and
    "change": (len(CHANGE_FINDINGS),)."""

    def __init__(self, images: LabelledImages, processor):
        self.images, self.processor = images, processor

    def __len__(self) -> int:
        return len(self.images.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pixels = self.processor.preprocess_image(self.images.paths[index])
        item = {"pixel_values": pixels, "labels": self.images.targets[index]}
        if self.images.change is not None:
            prior = self.images.prior_paths[index]
            item["pixel_values"] = torch.stack([pixels, self.processor.preprocess_image(prior) if prior else pixels])
            item["change"] = self.images.change[index]
        return item


def collate_labelled(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


POOLINGS = ("mean", "mean_max", "cls")


class EncoderWithLabelHead(nn.Module):
    """The composed model's vision encoder + a linear head on the pooled tokens it hands the connector.

    pooling "mean": the token mean (the labels become readable from the average of the image tokens, which a
    language model can attend to uniformly); "mean_max": [mean, max] (small findings count more); "cls": the
    CLS token (needs vision_feature_select="keep_cls"; the encoder pools by attention, and the language model
    reads one token).
    forward(pixel_values (N, C, H, W)) -> logits (N, num_labels). With `vision_feature_layer="all"` the last
    layer's tokens are pooled. With vision_feature_select="add_pooled" the head pools the patch tokens, so
    "mean_max" reads exactly the two summary tokens the language model is handed."""

    def __init__(self, vision_tower: nn.Module, feature_dim: int, pooling: str = "mean",
                 num_labels: int = len(CHEXPERT_OBSERVATIONS), change_head: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"encoder.pooling={pooling!r}: use one of {POOLINGS}")
        if pooling == "cls" and not (vision_tower.has_cls_token and vision_tower.select == "keep_cls"):
            raise ValueError("encoder.pooling='cls' reads the CLS token: the model needs an encoder with one and "
                             "vision_feature_select='keep_cls' (e.g. model.preset_options.vision_feature_select)")
        self.vision_tower = vision_tower
        self.pooling = pooling
        pooled_dim = (2 if pooling == "mean_max" else 1) * feature_dim
        self.head = nn.Linear(pooled_dim, num_labels)
        # encoder.change_head: [pooled current, pooled prior] -> a CHANGE_CLASSES distribution per CHANGE_FINDINGS
        self.change_head = (nn.Linear(2 * pooled_dim, len(CHANGE_FINDINGS) * len(CHANGE_CLASSES))
                            if change_head else None)
        # the loss's weight of a positive target per label (encoder.positive_weight); not part of the saved head
        self.register_buffer("positive_weight", torch.ones(num_labels), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> label logits (N, num_labels); pairs (N, 2, C, H, W), current first, with a change head
        -> (label logits of the current images, change logits (N, len(CHANGE_FINDINGS), len(CHANGE_CLASSES)))."""
        if pixel_values.dim() == 4:
            return self.head(self.pooled(pixel_values))
        if self.change_head is None:
            raise ValueError("image pairs need the change head (encoder.change_head: true)")
        pooled = self.pooled(pixel_values.flatten(0, 1)).unflatten(0, (pixel_values.shape[0], 2))
        change = self.change_head(pooled.flatten(1))
        return self.head(pooled[:, 0]), change.view(len(pooled), len(CHANGE_FINDINGS), len(CHANGE_CLASSES))

    def pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> what the heads read (N, pooled_dim)."""
        features = self.vision_tower(pixel_values)
        if features.dim() == 4:  # (N, layers, tokens, dim): every layer selected
            features = features[:, -1]
        if self.pooling == "cls":
            return features[:, 0]
        if self.vision_tower.select == "add_pooled":  # the last two tokens are the patches' mean and max
            features = features[:, :-2]
        pooled = features.mean(dim=1)
        if self.pooling == "mean_max":
            pooled = torch.cat([pooled, features.amax(dim=1)], dim=-1)
        return pooled


def label_loss_sums(model: EncoderWithLabelHead, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the summed loss over its non-ignored targets (N,), and their count (N,): binary cross-entropy
    per label, plus (with change targets) cross-entropy per finding's change class."""
    logits = model(batch["pixel_values"])
    change_logits = None
    if "change" in batch:
        logits, change_logits = logits
    keep = batch["labels"] != IGNORE
    targets = batch["labels"].clamp(min=0).float()
    losses = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none",
                                                            pos_weight=_unwrapped(model).positive_weight)
    sums = (losses * keep).sum(dim=1)
    if change_logits is not None:
        change = nn.functional.cross_entropy(change_logits.float().transpose(1, 2), batch["change"],
                                             ignore_index=IGNORE_CLASS, reduction="none")  # (N, findings)
        sums = sums + change.sum(dim=1)  # ignored targets add 0
    return sums, label_counts(batch)


MAX_POSITIVE_WEIGHT = 20.0
POSITIVE_WEIGHTS = ("none", "sqrt", "balanced")


def positive_weights(targets: torch.Tensor, mode: str) -> torch.Tensor:
    """Per label (num_labels,): the loss weight of a positive target. targets (N, num_labels): 1, 0 or IGNORE.
    "balanced": negatives / positives; "sqrt": its square root; both at least 1 and at most MAX_POSITIVE_WEIGHT
    (a label without positives gets 1)."""
    if mode not in POSITIVE_WEIGHTS:
        raise ValueError(f"encoder.positive_weight={mode!r}: use one of {POSITIVE_WEIGHTS}")
    if mode == "none":
        return torch.ones(targets.shape[1])
    positives = (targets == 1).sum(dim=0).float()
    negatives = (targets == 0).sum(dim=0).float()
    ratio = torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives))
    if mode == "sqrt":
        ratio = ratio.sqrt()
    return ratio.clamp(min=1.0, max=MAX_POSITIVE_WEIGHT)


def _unwrapped(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # under data parallelism the loop holds a DistributedDataParallel


def label_counts(batch: dict) -> torch.Tensor:
    """Targets the loss counts per sample (N,): every one but the ignored."""
    counts = (batch["labels"] != IGNORE).sum(dim=1)
    if "change" in batch:
        counts = counts + (batch["change"] != IGNORE_CLASS).sum(dim=1)
    return counts


def feature_dim(model) -> int:
    """Width of the encoder's selected features (what the connector receives; one layer's for "all")."""
    from medvlm.models.vision import selected_feature_dim

    return selected_feature_dim(model.config.vision_config.hidden_size, model.config.vision_feature_layer)


def save_label_head(head: nn.Linear, pooling: str, model_dir: os.PathLike) -> None:
    _save_head(head, os.path.join(model_dir, "label_head.safetensors"),
               {"observations": ",".join(CHEXPERT_OBSERVATIONS), "pooling": pooling})


def save_change_head(head: nn.Linear, pooling: str, model_dir: os.PathLike) -> None:
    _save_head(head, os.path.join(model_dir, "change_head.safetensors"),
               {"findings": ",".join(CHANGE_FINDINGS), "classes": ",".join(CHANGE_CLASSES), "pooling": pooling})


def _save_head(head: nn.Linear, path: str, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=metadata)


def build(cfg, composed, processor, records) -> tuple[EncoderWithLabelHead, object]:
    """(the module the loop trains, its data) for recipe=encoder: the composed model's encoder (in full) with a
    new label head; everything else of the composed model frozen."""
    from medvlm.train.builders import TrainingData

    targets = pair_label_targets if cfg.encoder.change_head else report_label_targets
    images = targets(records, report_task=cfg.encoder.report_task, uncertain=cfg.encoder.uncertain,
                     image_folder=cfg.data.image_folder, record_file=cfg.data.train)
    for p in composed.parameters():
        p.requires_grad_(False)
    for p in composed.vision_tower.parameters():
        p.requires_grad_(True)
    model = EncoderWithLabelHead(composed.vision_tower, feature_dim(composed), pooling=cfg.encoder.pooling,
                                 change_head=cfg.encoder.change_head)
    model.positive_weight.copy_(positive_weights(images.targets, cfg.encoder.positive_weight))
    if hasattr(composed.connector, "load_label_head"):  # refuse a head the connector cannot take before training
        composed.connector.load_label_head(model.head, model.pooling)
    if model.change_head is not None and getattr(composed.connector, "change_classifier", None) is not None:
        composed.connector.load_change_head(model.change_head)
    data = TrainingData(dataset=LabelledImageDataset(images, processor), collate=collate_labelled, validation=None)
    return model, data


def export(composed, labelled: EncoderWithLabelHead, processor, model_dir: os.PathLike) -> None:
    """The composed model (its encoder trained) as a medvlm model folder, plus `label_head.safetensors`. A
    connector with a classifier of its own (`findings`) gets the label head's weights."""
    from medvlm.fileio import atomic_dir

    if hasattr(composed.connector, "load_label_head"):  # e.g. the findings connector: its classifier starts here
        composed.connector.load_label_head(labelled.head, labelled.pooling)
    change_head = labelled.change_head
    if change_head is not None and getattr(composed.connector, "change_classifier", None) is not None:
        composed.connector.load_change_head(change_head)  # pair_findings with change tokens
    with atomic_dir(model_dir) as tmp:
        composed.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        save_label_head(labelled.head, labelled.pooling, tmp)
        if change_head is not None:
            save_change_head(change_head, labelled.pooling, tmp)

