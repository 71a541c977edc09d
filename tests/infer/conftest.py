"""A tiny saved model (untied embeddings, so that random weights still say varied things) and a questions file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import medvlm
from medvlm.api import save
from medvlm.models import ComposeConfig, build_model, train_tokenizer

TEXTS = ["The heart is enlarged. Small left pleural effusion.", "No pneumothorax. Is there a nodule? yes no"] * 5


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = train_tokenizer(TEXTS, vocab_size=350, min_frequency=1)
    vision = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64}
    text = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 128, "tie_word_embeddings": False}
    model, processor = build_model(ComposeConfig(vision=vision, text=text, template="chatml"), tokenizer=tokenizer)
    directory = tmp_path_factory.mktemp("model")
    save(model, processor, directory)
    return directory


@pytest.fixture(scope="session")
def loaded(model_dir):
    return medvlm.load(model_dir)


@pytest.fixture(scope="session")
def questions_file(tmp_path_factory):
    """7 questions of different lengths about different images (relative paths under images/)."""
    root = tmp_path_factory.mktemp("questions")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(7):
        Image.fromarray((rng.random((24 + i, 20)) * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        rows.append({"question_id": f"q{i}", "image": f"{i}.png", "text": "Is there an effusion?" + " really" * i,
                     "reference": "yes" if i % 2 else "no", "answer_type": "CLOSED"})
    path = root / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
