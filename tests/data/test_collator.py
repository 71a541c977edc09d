"""collate: right padding for training, left padding for generation, images stacked in sample order."""

from __future__ import annotations

import numpy as np
import torch

from medvlm.data.collator import collate
from medvlm.data.processor import IGNORE_INDEX


def _samples(processor):
    gray = [np.full((8, 8), v, np.uint8) for v in (0, 100, 200)]
    return [
        processor.encode([{"from": "human", "value": "<image>\nFindings?"}, {"from": "gpt", "value": "None."}],
                         gray[:1]),
        processor.encode([{"from": "human", "value": "No image here, a longer question?"},
                          {"from": "gpt", "value": "Yes."}], []),
        processor.encode([{"from": "human", "value": "<image><image>Compare."}, {"from": "gpt", "value": "Same."}],
                         gray[1:]),
    ]


def test_right_padding_masks_padding_out_of_attention_and_loss(make_processor):
    processor = make_processor()
    samples = _samples(processor)
    batch = collate(samples, processor.tokenizer.pad_token_id)
    width = max(len(s.input_ids) for s in samples)
    assert batch["input_ids"].shape == batch["labels"].shape == (3, width)
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        assert batch["input_ids"][row, :n].tolist() == sample.input_ids
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()


def test_left_padding_for_generation_and_images_in_sample_order(make_processor):
    processor = make_processor()
    samples = _samples(processor)
    batch = collate(samples, processor.tokenizer.pad_token_id, padding_side="left")
    assert (batch["input_ids"][:, -1] == torch.tensor([s.input_ids[-1] for s in samples])).all()
    assert (batch["attention_mask"][:, -1] == 1).all()
    expected = torch.cat([samples[0].pixel_values, samples[2].pixel_values])
    assert torch.equal(batch["pixel_values"], expected)
