"""`mlp2x_gelu`: Linear -> GELU -> Linear per token (LLaVA-1.5's projector); `depth` sets the number of Linears."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, depth: int = 2) -> nn.Sequential:
    """Linear(in, out) followed by (depth - 1) x [GELU, Linear(out, out)]."""
    if depth < 1:
        raise ValueError(f"connector depth must be >= 1, got {depth}")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class MLPConnector(nn.Module):
    """(N, tokens, vision_dim) -> (N, tokens, text_dim)."""

    accepts_layer_stack = False
    images_per_placeholder = 1

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, depth: int = 2):
        super().__init__()
        self.mlp = mlp(vision_dim, text_dim, depth)

    @classmethod
    def output_tokens(cls, num_input_tokens: int, depth: int = 2) -> int:
        return num_input_tokens

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)
