"""A ViT whose patch embedding is a small convolutional stem ("early convolutions", Xiao et al., NeurIPS 2021).

A plain ViT cuts the image into patches and projects each with one linear map; trained from scratch on a few
thousand images it learns slowly, and the small local findings of a chest X-ray (a blunted costophrenic angle, a
pneumothorax line, a nodule) are the last it learns. Replacing that single projection with a stack of stride-2
3x3 convolutions (batch norm, ReLU) and a final 1x1 projection keeps everything after it a standard ViT (same
token grid, same layers, same outputs) and trains markedly faster: see docs/training.md, "Why the demo's encoder
has a convolutional stem".

    config = ConvStemViTConfig(image_size=64, patch_size=16, hidden_size=128, stem_channels=[16, 32, 64, 128])
    model = ConvStemViTModel(config)   # forward(pixel_values (N, 3, 64, 64)) -> last_hidden_state (N, 1 + 16, 128)

The stem's total stride must equal patch_size, so the token grid is the ViT's: stem_patch (the first stage's
stride: 2, or a larger power of two for a non-overlapping "patchify" convolution as ConvNeXt's stem) times 2 per
further stage.
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
    more context at that resolution, as in a small CNN.
    `stem_patch`: the first convolution's stride; 2 (default) is a 3x3 convolution like the others, a larger power
    of two p a p x p convolution of stride p (non-overlapping patches, ConvNeXt's stem), which skips the costly
    high-resolution stages (patch 32, stem_patch 4: stem channels for 4 stages instead of 5)."""

    model_type: ClassVar[str] = MODEL_TYPE
    stem_channels: list | None = None
    stem_depth: int = 1
    stem_patch: int = 2

    def __post_init__(self, **kwargs: Any):
        patch = self.patch_size if isinstance(self.patch_size, int) else self.patch_size[0]
        stem_patch = int(self.stem_patch)
        if stem_patch < 2 or stem_patch & (stem_patch - 1) or stem_patch > patch:
            raise ValueError(f"ConvStemViTConfig.stem_patch={self.stem_patch}: give a power of two from 2 to "
                             f"patch_size ({self.patch_size})")
        self.stem_patch = stem_patch
        stages = (patch // stem_patch).bit_length()  # the first stage, then one per further halving
        if patch < 2 or stem_patch * 2 ** (stages - 1) != patch:
            raise ValueError(f"ConvStemViTConfig.patch_size={self.patch_size}: the stem halves the resolution per "
                             "convolution, so patch_size must be a power of two (2, 4, 8, 16, 32)")
        if self.stem_channels is None:
            self.stem_channels = [16 * 2 ** i for i in range(stages)]
        self.stem_channels = [int(c) for c in self.stem_channels]
        if len(self.stem_channels) != stages or any(c < 1 for c in self.stem_channels):
            raise ValueError(f"ConvStemViTConfig.stem_channels={self.stem_channels}: give {stages} positive "
                             f"channel counts, one per stage (stem_patch {stem_patch} x 2 ** {stages - 1} = "
                             f"patch_size {patch})")
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
        for stage, out in enumerate(config.stem_channels):
            for i in range(config.stem_depth):
                if stage == 0 and i == 0 and config.stem_patch > 2:  # non-overlapping patches
                    conv = nn.Conv2d(channels, out, config.stem_patch, stride=config.stem_patch, bias=False)
                else:
                    conv = nn.Conv2d(channels, out, 3, stride=2 if i == 0 else 1, padding=1, bias=False)
                layers += [conv, nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, config.hidden_size, 1)

    @property
    def weight(self) -> torch.Tensor:
        # ViTModel.forward casts the pixels to `embeddings.patch_embeddings.projection.weight.dtype`
        return self.proj.weight

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # channels-last activations: oneDNN's (and cuDNN's) faster convolution layout; the encoder's forward +
        # backward on 32 images of 128 px took 0.88x the time on 2 CPU cores (benchmarks/step_parts_speed.py),
        # outputs equal to 5e-6. The weights stay as they are (safetensors saves contiguous tensors).
        return self.proj(self.convs(pixel_values.contiguous(memory_format=torch.channels_last)))


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
