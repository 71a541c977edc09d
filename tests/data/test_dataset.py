"""TrainingDataset: a LLaVA training file + image folder -> processed samples."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from medvlm.data.collator import collate
from medvlm.data.dataset import TrainingDataset


def _write(tmp_path, rows):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.full((12, 10), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    return path


def test_records_become_samples_with_images_from_the_folder(make_processor, tmp_path):
    path = _write(tmp_path, [
        {"id": "s1", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nFindings?"},
                                                         {"from": "gpt", "value": "Normal."}]},
        {"id": "s2", "conversations": [{"from": "human", "value": "What is a nodule?"},
                                       {"from": "gpt", "value": "A small rounded opacity."}]},
    ])
    processor = make_processor()
    dataset = TrainingDataset.from_file(path, processor, image_folder=tmp_path / "images")
    assert len(dataset) == 2
    assert dataset[0].num_images == 1 and dataset[1].num_images == 0
    batch = collate([dataset[0], dataset[1]], processor.tokenizer.pad_token_id)
    assert batch["pixel_values"].shape == (1, 3, 16, 16)


def test_a_named_prior_is_a_second_image_for_a_single_image_connector(make_processor, tmp_path):
    # pair connectors (tac, pair_concat) are tested in tests/temporal
    path = _write(tmp_path, [{"id": 3, "image": "a.png", "prior": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nChange?"}, {"from": "gpt", "value": "Stable."}]}])
    processor = make_processor()
    sample = TrainingDataset.from_file(path, processor, image_folder=tmp_path / "images")[0]
    assert sample.pixel_values.shape[0] == 2
    assert sample.input_ids.count(processor.image_token_id) == 2 * processor.config.image_seq_length
