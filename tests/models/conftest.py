"""Tiny components for model tests: a BPE tokenizer trained here and a builder of small composed models."""

from __future__ import annotations

import pytest
import torch

from medvlm.models import ComposeConfig, build_model, train_tokenizer

TEXTS = [
    "The heart is enlarged. Small left pleural effusion.",
    "No pneumothorax. Lungs are clear. Is there a nodule? yes no",
    "Endotracheal tube tip 4 cm above the carina. Moderate pulmonary edema.",
] * 5


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def vit_config():
    """A 32 px ViT with 8 px patches: 16 patch tokens + CLS."""
    return {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64}


@pytest.fixture(scope="session")
def llama_config(tokenizer):
    return {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": len(tokenizer)}


@pytest.fixture
def compose(tokenizer, vit_config, llama_config):
    """compose(**ComposeConfig fields) -> (model, processor), tiny ViT + tiny Llama by default, chatml template."""

    def make(**fields):
        settings = {"vision": vit_config, "text": llama_config, "template": "chatml", **fields}
        return build_model(ComposeConfig(**settings), tokenizer=tokenizer)

    return make
