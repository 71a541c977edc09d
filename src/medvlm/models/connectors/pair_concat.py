"""`pair_concat`: the baseline pair connector. Both images' tokens, projected, with a learned role embedding.

    features (num_pairs * 2, tokens, vision_dim)     current, prior, current, prior, ... (placeholder order)
      -> MLP per token                               (num_pairs * 2, tokens, text_dim)
      -> + role[0] on the current's tokens, + role[1] on the prior's       (learned, (2, text_dim))
         [missing_prior="learned": the prior's tokens are a learned "no prior" block where prior_present is False]
      -> concatenated along tokens                   (num_pairs, 2 * tokens, text_dim): current first, then prior

One placeholder takes the pair and gives one block of 2 * tokens LM embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from medvlm.models.connectors.mlp import mlp
from medvlm.models.connectors.tac import MISSING_PRIOR_MODES


class PairConcatConnector(nn.Module):
    """(num_pairs * 2, tokens, vision_dim) [+ prior_present (num_pairs,) bool] -> (num_pairs, 2 * tokens, text_dim)."""

    accepts_layer_stack = False
    images_per_placeholder = 2

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, missing_prior: str = "dummy",
                 depth: int = 2):
        super().__init__()
        if missing_prior not in MISSING_PRIOR_MODES:
            raise ValueError(f"missing_prior={missing_prior!r}: use one of {MISSING_PRIOR_MODES}")
        self.mlp = mlp(vision_dim, text_dim, depth)
        self.role = nn.Parameter(torch.zeros(2, text_dim))
        self.no_prior = nn.Parameter(torch.zeros(num_input_tokens, text_dim)) if missing_prior == "learned" else None

    @classmethod
    def output_tokens(cls, num_input_tokens: int, **settings) -> int:
        return 2 * num_input_tokens

    def forward(self, features: torch.Tensor, prior_present: torch.Tensor | None = None) -> torch.Tensor:
        if features.ndim != 3 or features.shape[0] % 2:
            raise ValueError(f"pair_concat takes (num_pairs * 2, tokens, dim) features (current, prior, ...), "
                             f"got {tuple(features.shape)}")
        projected = self.mlp(features)  # (2P, tokens, text_dim)
        current = projected[0::2] + self.role[0]
        prior = projected[1::2]
        if self.no_prior is not None and prior_present is not None:
            prior = torch.where(prior_present.to(prior.device)[:, None, None], prior,
                                self.no_prior.to(prior.dtype).expand_as(prior))
        return torch.cat([current, prior + self.role[1]], dim=1)  # (P, 2 * tokens, text_dim)
