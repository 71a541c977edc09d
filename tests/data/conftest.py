"""A tokenizer trained here and processors over it (no model needed for data tests)."""

from __future__ import annotations

import pytest

from medvlm.data.processor import MedVLMProcessor, ProcessorConfig
from medvlm.models import train_tokenizer

TEXTS = ["The heart is enlarged. Small left pleural effusion.", "No pneumothorax. Is there a nodule? yes no"] * 5


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=350, min_frequency=1)


@pytest.fixture
def make_processor(tokenizer):
    """make_processor(**ProcessorConfig fields) with 4 image tokens per image and 16 px images by default."""

    def make(**fields):
        return MedVLMProcessor(tokenizer, ProcessorConfig(**{"image_seq_length": 4, "image_size": 16, **fields}))

    return make
