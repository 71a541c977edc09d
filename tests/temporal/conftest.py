"""Tiny pair models (tac, pair_concat) and a tiny temporal synthetic dataset for the temporal tests."""

from __future__ import annotations

import pytest
import torch

from medvlm.models import ComposeConfig, build_model, train_tokenizer

TEXTS = [
    "The left pleural effusion has increased since the prior study.",
    "New right pneumothorax. Stable cardiomegaly compared with the prior study.",
    "The previously seen nodule has resolved. Edema has decreased.",
] * 5


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400, min_frequency=1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def compose(tokenizer):
    """compose(connector_type, **ComposeConfig fields) -> (model, processor): a 32 px ViT (16 patch tokens,
    2 layers) and a tiny Llama; tac gets every encoder layer."""

    def make(connector_type: str, **fields):
        vision = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "intermediate_size": 64}
        text = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": len(tokenizer)}
        layer = "all" if connector_type == "tac" else -1
        settings = {"vision": vision, "text": text, "template": "chatml", "connector_type": connector_type,
                    "vision_feature_layer": layer, **fields}
        return build_model(ComposeConfig(**settings), tokenizer=tokenizer)

    return make


@pytest.fixture(scope="session")
def tiny_temporal_cxr(tmp_path_factory):
    """16 synthetic temporal CXR studies at 32 px (most with a prior)."""
    from medvlm.synth.cxr import CXRConfig
    from medvlm.synth.dataset import write_dataset

    out = tmp_path_factory.mktemp("data") / "cxr_temporal"
    write_dataset(out, "cxr", 16, seed=0, config=CXRConfig(size_px=32, temporal=True), progress=False)
    return out
