"""TrainingDataset: medvlm.records TrainingRecords -> processed samples (EncodedSample) for the collator.

Image paths resolve like medvlm.records does: absolute as written, else under `image_folder`, else beside the
record file. A named `prior` key is the same as `image: [current, prior]`: the prior follows the current image
(the processor then arranges the pair for the model's connector, see medvlm.data.processor). Records with a 3D
volume (`image3d`) need a connector that takes volumes (not yet in this package): they are refused with an error
naming the record, never silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from medvlm.data.processor import EncodedSample, MedVLMProcessor
from medvlm.records import TrainingRecord, load_training, resolve_path


def text_stats(sample: EncodedSample) -> tuple[int, int]:
    """(tokens, learned tokens) of a sample; learned as the loss counts them (a label after the first position)."""
    labelled = sum(1 for label in (sample.labels or [])[1:] if label != -100)
    return len(sample.input_ids), labelled


class TrainingDataset(Dataset):
    """records: TrainingRecords; record_file: where they were read from (names errors, resolves relative paths)."""

    def __init__(self, records: Sequence[TrainingRecord], processor: MedVLMProcessor,
                 image_folder: str | os.PathLike | None = None, record_file: str | os.PathLike = "."):
        self.records = list(records)
        self.processor = processor
        self.image_folder = image_folder
        self.record_file = Path(record_file)
        self._stats: list[tuple[int, int]] | None = None  # (tokens, learned tokens) per sample, counted once

    @classmethod
    def from_file(cls, path: str | os.PathLike, processor: MedVLMProcessor,
                  image_folder: str | os.PathLike | None = None) -> TrainingDataset:
        """Read a training file (LLaVA conversations JSON / JSONL) with medvlm.records.load_training."""
        return cls(load_training(path, image_folder=image_folder), processor, image_folder, record_file=path)

    def __len__(self) -> int:
        return len(self.records)

    def image_paths(self, record: TrainingRecord) -> list[Path]:
        """The record's images in placeholder order, its named prior (if any) last: [current, prior] for a pair."""
        paths = record.images + ([record.prior_image] if record.prior_image is not None else [])
        return [resolve_path(p, self.image_folder, self.record_file) for p in paths]

    def text_sample(self, index: int) -> EncodedSample:
        """The record's tokens and labels without reading its images (pixel_values None)."""
        record = self.records[index]
        blank = np.zeros((1, 1), dtype=np.uint8)  # the image count sets the placeholders, not the pixels
        return self.processor.encode(record.conversations, [blank] * len(self.image_paths(record)), pixels=False,
                                     where=f"{self.record_file} record {index} (id {record.id})")

    def lengths(self) -> list[int]:
        """Tokens per sample, image tokens included (data.group_by_length)."""
        return [length for length, _ in self._text_stats()]

    def labelled_tokens(self) -> list[int]:
        """Tokens per sample that the loss learns (optim.loss_weighting="token_global")."""
        return [labelled for _, labelled in self._text_stats()]

    def _text_stats(self) -> list[tuple[int, int]]:
        if self._stats is None:
            self._stats = [text_stats(self.text_sample(i)) for i in range(len(self))]
        return self._stats

    def tasks(self) -> list[str | None]:
        """Each record's `task` (metadata; None where it has none): data.group_mix_tasks keeps them mixed."""
        return [record.metadata.get("task") for record in self.records]

    def __getitem__(self, index: int) -> EncodedSample:
        record = self.records[index]
        where = f"{self.record_file} record {index} (id {record.id})"
        if record.image3d is not None:
            raise ValueError(f"{where}: field 'image3d' needs a 3D connector, which this model does not have; "
                             "remove the field or train with such a connector")
        if record.prior_image is not None and len(record.images) != 1:
            raise ValueError(f"{where}: field 'prior' needs exactly one current image in 'image', got "
                             f"{len(record.images)}")
        return self.processor.encode(record.conversations, self.image_paths(record), where=where)
