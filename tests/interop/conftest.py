"""Tiny parts for the interoperability tests: a BPE tokenizer and small vision / language configs."""

from __future__ import annotations

import pytest
import torch

from medvlm.models import ComposeConfig, build_model, train_tokenizer

TEXTS = [
    "The heart is enlarged. Small left pleural effusion.",
    "No pneumothorax. Lungs are clear. Is there a nodule? yes no",
] * 5
VISION_SMALL = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 64}
LLAMA_SMALL = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "intermediate_size": 128}


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def compose(tokenizer):
    """compose(vision_type, text=LLAMA_SMALL, text_overrides={}, **ComposeConfig fields) -> (model, processor):
    a tiny random model in eval mode, chatml template unless told."""

    def make(vision_type="clip_vision_model", text=None, text_overrides=None, **fields):
        text = {**(text or LLAMA_SMALL), **(text_overrides or {})}
        settings = {"vision": {"model_type": vision_type, **VISION_SMALL}, "text": text,
                    "template": "chatml", **fields}
        model, processor = build_model(ComposeConfig(**settings), tokenizer=tokenizer)
        return model.eval(), processor

    return make
