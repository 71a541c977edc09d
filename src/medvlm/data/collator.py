"""Batch processed samples: pad ids (right for training, left for generation) and stack the images.

    batch = collate(samples, pad_token_id=processor.tokenizer.pad_token_id)
    -> {"input_ids" (B, L), "attention_mask" (B, L), "labels" (B, L) [when samples have labels],
        "pixel_values" (total_images, C, H, W) [when any sample has images],
        "prior_present" (total_pairs,) bool [pair connectors: when any sample has pairs],
        "finding_targets" (total_images, num_labels) [when any sample has them; NaN rows for one without]}

Images are concatenated in sample order, which is the order of their placeholders in the batch; a sample may have
any number of images (0 included).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medvlm.data.processor import IGNORE_INDEX, EncodedSample

PADDING_SIDES = ("right", "left")


def collate(samples: Sequence[EncodedSample], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad and stack samples; padding_side "right" for training, "left" for batched generation."""
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side={padding_side!r}: use one of {PADDING_SIDES}")
    if not samples:
        raise ValueError("collate needs at least one sample")
    if pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)")
    width = max(len(s.input_ids) for s in samples)
    with_labels = all(s.labels is not None for s in samples)
    input_ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        span = slice(0, n) if padding_side == "right" else slice(width - n, width)
        input_ids[row, span] = torch.tensor(sample.input_ids, dtype=torch.long)
        attention_mask[row, span] = 1
        if with_labels:
            labels[row, span] = torch.tensor(sample.labels, dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_labels:
        batch["labels"] = labels
    images = [s.pixel_values for s in samples if s.pixel_values is not None]
    if images:
        batch["pixel_values"] = torch.cat(images, dim=0)
    flags = [flag for s in samples if s.prior_present is not None for flag in s.prior_present]
    if flags:
        batch["prior_present"] = torch.tensor(flags, dtype=torch.bool)
    given = [s.finding_targets for s in samples if s.finding_targets is not None]
    if given:
        width = given[0].shape[-1]
        batch["finding_targets"] = torch.cat([
            s.finding_targets if s.finding_targets is not None else torch.full((s.num_images, width), float("nan"))
            for s in samples if s.num_images])
    return batch


class Collator:
    """`collate` as a callable for torch DataLoader: Collator(pad_token_id, padding_side)."""

    def __init__(self, pad_token_id: int, padding_side: str = "right"):
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side

    def __call__(self, samples: Sequence[EncodedSample]) -> dict[str, torch.Tensor]:
        return collate(samples, self.pad_token_id, self.padding_side)
