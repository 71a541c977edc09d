"""`spatial_pool` (MedM-VL): patch tokens back on their grid, average-pooled by `stride`, then an MLP.

Needs a square grid of patch tokens (vision_feature_select="drop_cls"); a 16x16 grid with stride 2 gives 64 tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from medvlm.models.connectors.mlp import mlp


def _grid_side(num_input_tokens: int) -> int:
    side = math.isqrt(num_input_tokens)
    if side * side != num_input_tokens:
        raise ValueError(
            f"spatial_pool needs a square grid of patch tokens, got {num_input_tokens} tokens; "
            "use vision_feature_select='drop_cls' (a CLS token breaks the grid)"
        )
    return side


class SpatialPoolConnector(nn.Module):
    """(N, side*side, vision_dim) -> (N, (side // stride)**2, text_dim)."""

    accepts_layer_stack = False
    images_per_placeholder = 1

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, stride: int = 2, depth: int = 2):
        super().__init__()
        self.side = _grid_side(num_input_tokens)
        if not 1 <= stride <= self.side:
            raise ValueError(f"spatial_pool stride={stride} must be between 1 and the grid side {self.side}")
        self.stride = stride
        self.mlp = mlp(vision_dim, text_dim, depth)

    @classmethod
    def output_tokens(cls, num_input_tokens: int, stride: int = 2, depth: int = 2) -> int:
        return (_grid_side(num_input_tokens) // stride) ** 2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = features.shape
        grid = features.transpose(1, 2).reshape(n, dim, self.side, self.side)  # (N, dim, side, side)
        pooled = F.avg_pool2d(grid, kernel_size=self.stride, stride=self.stride)  # (N, dim, side', side')
        return self.mlp(pooled.flatten(2).transpose(1, 2))  # (N, side'^2, text_dim)
