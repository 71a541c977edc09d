"""`linear`: one linear projection per token (LLaVA v1's projector)."""

from __future__ import annotations

import torch
from torch import nn


class LinearConnector(nn.Module):
    """(N, tokens, vision_dim) -> (N, tokens, text_dim)."""

    accepts_layer_stack = False
    images_per_placeholder = 1

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int):
        super().__init__()
        self.proj = nn.Linear(vision_dim, text_dim)

    @classmethod
    def output_tokens(cls, num_input_tokens: int) -> int:
        return num_input_tokens

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)
