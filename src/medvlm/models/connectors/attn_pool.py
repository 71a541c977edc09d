"""`attn_pool` (MedM-VL): `num_queries` learned queries cross-attend to the image tokens, then an MLP projects.

The output token count is `num_queries`, whatever the number of input tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from medvlm.models.connectors.mlp import mlp


class AttentionPoolConnector(nn.Module):
    """(N, tokens, vision_dim) -> (N, num_queries, text_dim)."""

    accepts_layer_stack = False
    images_per_placeholder = 1

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, num_queries: int = 16,
                 num_heads: int = 4, depth: int = 2):
        super().__init__()
        if vision_dim % num_heads:
            raise ValueError(f"attn_pool num_heads={num_heads} must divide the vision feature dim {vision_dim}")
        self.queries = nn.Parameter(torch.randn(num_queries, vision_dim) * 0.02)
        self.norm = nn.LayerNorm(vision_dim)
        self.attention = nn.MultiheadAttention(vision_dim, num_heads, batch_first=True)
        self.mlp = mlp(vision_dim, text_dim, depth)

    @classmethod
    def output_tokens(cls, num_input_tokens: int, num_queries: int = 16, num_heads: int = 4, depth: int = 2) -> int:
        return num_queries

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        keys = self.norm(features)
        queries = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)  # (N, num_queries, vision_dim)
        pooled, _ = self.attention(queries, keys, keys, need_weights=False)
        return self.mlp(pooled)
