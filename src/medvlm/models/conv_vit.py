"""A ViT whose patch embedding is a small convolutional stem ("early convolutions", Xiao et al., NeurIPS 2021).

A plain ViT cuts the image into patches and projects each with one linear map; trained from scratch on a few
thousand images it learns slowly, and the small local findings of a chest X-ray (a blunted costophrenic angle, a
pneumothorax line, a nodule) are the last it learns. Replacing that single projection with a stack of stride-2
3x3 convolutions (batch norm, ReLU) and a final 1x1 projection keeps everything after it a standard ViT (same
token grid, same layers, same outputs) and trains markedly faster: see docs/training.md, "Why the demo's encoder
has a convolutional stem".

    config = ConvStemViTConfig(image_size=64, patch_size=16, hidden_size=128, stem_channels=[16, 32, 64, 128])
    model = ConvStemViTModel(config)   # forward(pixel_values (N, 3, 64, 64)) -> last_hidden_state (N, 1 + 16, 128)

The stem's total stride is 2 ** len(stem_channels) and must equal patch_size, so the token grid is the ViT's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, ViTConfig, ViTModel
from transformers import initialization as init

from medvlm.models.efficientnet import reset_batch_norm

MODEL_TYPE = "medvlm_conv_vit"


class ConvStemViTConfig(ViTConfig):
    """ViTConfig plus the stem: `stem_channels[i]` output channels of the i-th stride-2 3x3 convolution (each
    followed by batch norm and ReLU), then a 1x1 convolution to `hidden_size`. Default: the channel widths
    16, 32, 64, ... doubling, as many as patch_size needs (patch 16: [16, 32, 64, 128]).
    `stem_depth` convolutions per stage: the first halves the resolution, the others (stride 1, same width) see
    more context at that resolution, as in a small CNN."""

    model_type: ClassVar[str] = MODEL_TYPE
    stem_channels: list | None = None
    stem_depth: int = 1

    def __post_init__(self, **kwargs: Any):
        patch = self.patch_size if isinstance(self.patch_size, int) else self.patch_size[0]
        stages = patch.bit_length() - 1
        if patch < 2 or 2 ** stages != patch:
            raise ValueError(f"ConvStemViTConfig.patch_size={self.patch_size}: the stem halves the resolution per "
                             "convolution, so patch_size must be a power of two (2, 4, 8, 16, 32)")
        if self.stem_channels is None:
            self.stem_channels = [16 * 2 ** i for i in range(stages)]
        self.stem_channels = [int(c) for c in self.stem_channels]
        if len(self.stem_channels) != stages or any(c < 1 for c in self.stem_channels):
            raise ValueError(f"ConvStemViTConfig.stem_channels={self.stem_channels}: give {stages} positive "
                             f"channel counts, one per stride-2 convolution (2 ** {stages} = patch_size {patch})")
        if int(self.stem_depth) < 1:
            raise ValueError(f"ConvStemViTConfig.stem_depth={self.stem_depth}: give 1 or more convolutions per stage")
        self.stem_depth = int(self.stem_depth)
        super().__post_init__(**kwargs)


class ConvStem(nn.Module):
    """forward(pixel_values (N, C, H, W)) -> (N, hidden_size, H / patch_size, W / patch_size)."""

    def __init__(self, config: ConvStemViTConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels = config.num_channels
        for out in config.stem_channels:
            for i in range(config.stem_depth):
                layers += [nn.Conv2d(channels, out, 3, stride=2 if i == 0 else 1, padding=1, bias=False),
                           nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, config.hidden_size, 1)

    @property
    def weight(self) -> torch.Tensor:
        # ViTModel.forward casts the pixels to `embeddings.patch_embeddings.projection.weight.dtype`
        return self.proj.weight

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(pixel_values))


class ConvStemViTModel(ViTModel):
    """transformers' ViTModel (no pooler) with `ConvStem` as its patch projection; otherwise unchanged."""

    config_class = ConvStemViTConfig

    def __init__(self, config: ConvStemViTConfig, add_pooling_layer: bool = False):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.embeddings.patch_embeddings.projection = ConvStem(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            reset_batch_norm(module)


def register_auto_classes() -> None:
    """Let AutoConfig / AutoModel load `medvlm_conv_vit` directories (idempotent)."""
    AutoConfig.register(MODEL_TYPE, ConvStemViTConfig, exist_ok=True)
    AutoModel.register(ConvStemViTConfig, ConvStemViTModel, exist_ok=True)
