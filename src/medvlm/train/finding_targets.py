"""findings.teacher_forcing: in training, the finding tokens of a findings connector carry the labels of each
image's own report instead of the classifier's decisions.

A report generator that reads a classifier's verdicts (PromptMRG's diagnosis-driven prompts; our `findings` and
`pair_findings` connectors) learns from training images on which the classifier is imperfect too. Where a
finding token says "no lesion" over a report that names one, the language model learns to distrust the token
and to guess from the image tokens, and at test time writes a different finding than the classifier found.
Given the report's labels in training (teacher forcing), it learns to write what the tokens say; at test time
they carry the classifier's decisions, so the reports follow the classifier.

The labels are the offline CheXpert labeler's reading of each report record (`findings.report_task`) and belong
to its first image; every other image of a record with that image (its VQA records, say) gets the same labels.
An image with no report, such as a prior study's, keeps the classifier's decision (NaN target), as does a record
not drawn for forcing when `teacher_forcing` < 1 (drawn per image and step from torch's generator, which a
resumed run restores).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import Dataset

from medvlm.data.processor import EncodedSample
from medvlm.train.encoder_stage import IGNORE, report_label_targets


def image_label_table(records, *, report_task: str | None, uncertain: str, image_folder, record_file) -> dict:
    """{resolved image path: (14,) float targets, NaN for a label the policy leaves out} from the report records."""
    images = report_label_targets(records, report_task=report_task, uncertain=uncertain, image_folder=image_folder,
                                  record_file=record_file)
    targets = images.targets.masked_fill(images.targets == IGNORE, float("nan"))
    return dict(zip(images.paths, targets, strict=True))


class FindingTargetsDataset(Dataset):
    """A training dataset whose samples also carry `finding_targets` (num_images, num_labels): each image's row of
    `table`, NaN for an image not in it (and for a pair's stand-in prior)."""

    def __init__(self, dataset: Dataset, image_paths: list[list[str]], table: dict[str, torch.Tensor]):
        if len(image_paths) != len(dataset):
            raise ValueError(f"finding targets: {len(image_paths)} image lists for {len(dataset)} samples")
        self.dataset, self.image_paths, self.table = dataset, image_paths, table
        self.num_labels = int(next(iter(table.values())).shape[0]) if table else 0

    def __len__(self) -> int:
        return len(self.dataset)

    # what the batch sampler and the loss weighting ask of a training dataset: the wrapped one's answers
    def lengths(self) -> list[int]:
        return self.dataset.lengths()

    def tasks(self) -> list[str | None]:
        return self.dataset.tasks()

    def labelled_tokens(self) -> list[int]:
        return self.dataset.labelled_tokens()

    def __getitem__(self, index: int) -> EncodedSample:
        sample = self.dataset[index]
        if not sample.num_images:
            return sample
        missing = torch.full((self.num_labels,), float("nan"))
        rows = [self.table.get(path, missing) for path in self.image_paths[index]]
        rows += [missing] * (sample.num_images - len(rows))  # a pair's stand-in prior
        return dataclasses.replace(sample, finding_targets=torch.stack(rows[: sample.num_images]))


def wrap(dataset: Dataset, plain, cfg, connector) -> FindingTargetsDataset:
    """`dataset` (plain TrainingDataset `plain`, or its cached-feature form) with the finding targets of
    cfg.findings; refuses a connector without finding tokens and data without report records (report_task)."""
    if not getattr(connector, "accepts_finding_targets", False):
        raise ValueError(f"findings.teacher_forcing={cfg.findings.teacher_forcing}: the model's connector "
                         f"({type(connector).__name__}) has no finding tokens; use connector_type findings or "
                         "pair_findings, or set findings.teacher_forcing=0")
    table = image_label_table(plain.records, report_task=cfg.findings.report_task, uncertain=cfg.findings.uncertain,
                              image_folder=cfg.data.image_folder, record_file=cfg.data.train)
    paths = [[str(p) for p in plain.image_paths(record)] for record in plain.records]
    return FindingTargetsDataset(dataset, paths, table)


def force(targets: torch.Tensor, probability: float) -> torch.Tensor:
    """targets (num_images, num_labels) with every row kept with `probability`, else set to NaN (the classifier
    decides that image's tokens)."""
    if probability >= 1.0:
        return targets
    keep = torch.rand(targets.shape[0]) < probability
    return torch.where(keep[:, None].to(targets.device), targets, torch.full_like(targets, float("nan")))
