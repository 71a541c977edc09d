"""`tac`: Libra's Temporal Alignment Connector, for a (current, prior) pair of images at one placeholder.

    features        (num_pairs * 2, layers, tokens, vision_dim)   every encoder layer (vision_feature_layer="all");
                                                                  images in placeholder order: current, prior, ...
      -> layer-wise feature extractor (LFE), shared by both images:
         the layer axis is read as channels: [squeeze-excitation over layers, 1x1 conv halving the layers] until
         one layer is left (12 layers: 12 -> 6 -> 3 -> 1)                  -> (num_pairs * 2, tokens, vision_dim)
      -> current, prior                                                    each (num_pairs, tokens, vision_dim)
         [missing_prior="learned": prior = a learned "no prior" embedding where prior_present is False]
      -> temporal fusion module (TFM):
         gate  = ((cos(current, prior) + 1) / 2) ** 8          (num_pairs,), cosine over all tokens x dims
         prior = prior + prior_shift * gate                    prior_shift: one learned scalar, starts at 0
         current' = LN(current + SelfAttn(current))
         prior'   = LN(prior + SelfAttn(prior))
         fused    = LN(current' + CrossAttn(query=current', key/value=prior'))
         out      = LN(current + MLP(fused))                   residual from the extracted current features
      -> output MLP (4 Linears, GELU between) to the LM width               -> (num_pairs, tokens, text_dim)

One placeholder takes the pair and gives ONE block of `tokens` LM embeddings (as many as one image has).
A study without a prior: the processor puts the current image in the prior slot (Libra's dummy prior) and marks
it in `prior_present`; with missing_prior="dummy" the connector fuses current with itself (Libra), with "learned"
it swaps the extracted prior for the learned `no_prior` embedding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medvlm.models.connectors.mlp import mlp

MISSING_PRIOR_MODES = ("dummy", "learned")


class SqueezeExcitation(nn.Module):
    """Channel reweighting: (N, C, H, W) -> same shape, each channel scaled by a gate computed from all means."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Linear(channels, squeezed)
        self.expand = nn.Linear(squeezed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.expand(F.gelu(self.reduce(x.mean(dim=(2, 3))))))  # (N, C)
        return x * weights[:, :, None, None]


def layer_extractor(num_layers: int) -> nn.Sequential:
    """LFE: (N, num_layers, tokens, dim) -> (N, 1, tokens, dim) by [SE, 1x1 conv halving the layers] stages."""
    stages: list[nn.Module] = []
    channels = num_layers
    while True:
        out = max(channels // 2, 1)
        stages += [SqueezeExcitation(channels, max(channels // 2, 1)), nn.Conv2d(channels, out, kernel_size=1, bias=False)]
        channels = out
        if channels == 1:
            return nn.Sequential(*stages)


class TemporalAlignmentConnector(nn.Module):
    """(num_pairs * 2, layers, tokens, vision_dim) [+ prior_present (num_pairs,) bool] -> (num_pairs, tokens, text_dim).

    num_layers: encoder layers in the stack (set by the model from its vision config); num_heads must divide
    vision_dim; missing_prior: "dummy" or "learned" (MedVLMConfig.missing_prior, set by the model).
    """

    accepts_layer_stack = True
    images_per_placeholder = 2

    def __init__(self, vision_dim: int, text_dim: int, num_input_tokens: int, num_layers: int = 1,
                 missing_prior: str = "dummy", num_heads: int = 4, dropout: float = 0.1, output_depth: int = 4):
        super().__init__()
        if vision_dim % num_heads:
            raise ValueError(f"tac num_heads={num_heads} must divide the vision feature dim {vision_dim}")
        if missing_prior not in MISSING_PRIOR_MODES:
            raise ValueError(f"missing_prior={missing_prior!r}: use one of {MISSING_PRIOR_MODES}")
        self.num_layers = num_layers
        self.layer_extractor = layer_extractor(num_layers)
        self.prior_shift = nn.Parameter(torch.zeros(()))
        self.no_prior = nn.Parameter(torch.zeros(num_input_tokens, vision_dim)) if missing_prior == "learned" else None
        attention = dict(embed_dim=vision_dim, num_heads=num_heads, dropout=dropout, batch_first=True)
        self.current_attention = nn.MultiheadAttention(**attention)
        self.prior_attention = nn.MultiheadAttention(**attention)
        self.cross_attention = nn.MultiheadAttention(**attention)
        self.current_norm = nn.LayerNorm(vision_dim)
        self.prior_norm = nn.LayerNorm(vision_dim)
        self.fused_norm = nn.LayerNorm(vision_dim)
        self.output_norm = nn.LayerNorm(vision_dim)
        self.dropout = nn.Dropout(dropout)
        self.fusion_mlp = nn.Sequential(nn.Linear(vision_dim, vision_dim), nn.GELU(), nn.Dropout(dropout),
                                        nn.Linear(vision_dim, vision_dim), nn.Dropout(dropout))
        self.output_mlp = mlp(vision_dim, text_dim, output_depth)

    @classmethod
    def output_tokens(cls, num_input_tokens: int, **settings) -> int:
        return num_input_tokens

    def similarity_gate(self, current: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """((cos + 1) / 2) ** 8 per pair, cos over the flattened (tokens, dim) features -> (num_pairs, 1, 1)."""
        cos = F.cosine_similarity(current.flatten(1), prior.flatten(1), dim=-1, eps=1e-6)
        return ((cos + 1) / 2).pow(8)[:, None, None]

    def forward(self, features: torch.Tensor, prior_present: torch.Tensor | None = None) -> torch.Tensor:
        if features.ndim != 4 or features.shape[1] != self.num_layers or features.shape[0] % 2:
            raise ValueError(
                f"tac takes (num_pairs * 2, {self.num_layers} layers, tokens, dim) features (current, prior, ...), "
                f"got {tuple(features.shape)}; use vision_feature_layer='all' and give every image its prior"
            )
        extracted = self.layer_extractor(features).squeeze(1)  # (2P, tokens, dim)
        current, prior = extracted[0::2], extracted[1::2]  # (P, tokens, dim) each
        if self.no_prior is not None and prior_present is not None:
            prior = torch.where(prior_present.to(prior.device)[:, None, None], prior,
                                self.no_prior.to(prior.dtype).expand_as(prior))
        prior = prior + self.prior_shift * self.similarity_gate(current, prior)
        cur = self.current_norm(current + self.dropout(self.current_attention(current, current, current,
                                                                              need_weights=False)[0]))
        pri = self.prior_norm(prior + self.dropout(self.prior_attention(prior, prior, prior, need_weights=False)[0]))
        fused = self.fused_norm(cur + self.dropout(self.cross_attention(cur, pri, pri, need_weights=False)[0]))
        out = self.output_norm(current + self.fusion_mlp(fused))
        return self.output_mlp(out)  # (P, tokens, text_dim)
