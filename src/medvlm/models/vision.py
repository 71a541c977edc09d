"""Vision encoder: any supported transformers vision model, plus the choice of which hidden states to hand on.

The encoder is built from a config (random init) or loaded from a local directory (never a hub name).
`VISION_ENCODERS` is the explicit table of supported architectures, keyed by the config's `model_type`;
each entry says which class to build and whether the model puts a CLS token first (SigLIP does not).

Feature selection (LLaVA's `vision_feature_layer` / select strategy, written out):
- layer: an int indexes `hidden_states` (0 = embeddings, -1 = last layer, -2 = the one before, LLaVA's default);
  a list of ints concatenates those layers along the feature dim; "all" stacks every transformer layer's
  output (not the embeddings) into (num_images, num_layers, tokens, dim) for multi-layer connectors.
- select: "drop_cls" (patch tokens only), "keep_cls" (CLS + patches), "cls_only" (the CLS token alone),
  "add_pooled" (patch tokens, then two summary tokens: their mean and their element-wise max; a small finding
  that one patch sees stays visible in the max, and the language model reads each summary as one token). For
  an encoder without CLS, "drop_cls" keeps every token, "add_pooled" pools all of them, and "keep_cls" /
  "cls_only" are errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    CLIPVisionModel,
    Dinov2Model,
    PreTrainedConfig,
    PreTrainedModel,
    SiglipVisionModel,
    ViTModel,
)

from medvlm.models.conv_vit import ConvStemViTModel
from medvlm.models.efficientnet import EfficientNetLiteModel

FEATURE_SELECTS = ("drop_cls", "keep_cls", "cls_only", "add_pooled")


@dataclass(frozen=True)
class VisionEncoderSpec:
    """How to build one vision architecture and what its token sequence looks like."""

    model_class: type[PreTrainedModel]
    has_cls_token: bool
    build_kwargs: tuple[tuple[str, object], ...] = ()  # extra constructor arguments, e.g. no pooler


# config.model_type -> spec. The one place vision architectures are registered.
VISION_ENCODERS: dict[str, VisionEncoderSpec] = {
    "vit": VisionEncoderSpec(ViTModel, has_cls_token=True, build_kwargs=(("add_pooling_layer", False),)),
    "clip_vision_model": VisionEncoderSpec(CLIPVisionModel, has_cls_token=True),
    "siglip_vision_model": VisionEncoderSpec(SiglipVisionModel, has_cls_token=False),
    "dinov2": VisionEncoderSpec(Dinov2Model, has_cls_token=True),
    "medvlm_conv_vit": VisionEncoderSpec(ConvStemViTModel, has_cls_token=True),  # ViT with a convolutional stem
    "medvlm_efficientnet_lite": VisionEncoderSpec(EfficientNetLiteModel, has_cls_token=False),
}


# image-text model_type -> attribute holding its vision config. A directory of such a model (e.g. a full CLIP or
# SigLIP checkpoint, as LLaVA uses) gives its vision tower; the text tower's weights are left unread.
VISION_PART_OF: dict[str, str] = {"clip": "vision_config", "siglip": "vision_config"}


def vision_config_of(config: PreTrainedConfig) -> PreTrainedConfig:
    """The vision encoder's config: `config` itself, or the vision part of an image-text model's config."""
    attribute = VISION_PART_OF.get(config.model_type)
    return getattr(config, attribute) if attribute else config


def vision_spec(vision_config: PreTrainedConfig) -> VisionEncoderSpec:
    try:
        return VISION_ENCODERS[vision_config.model_type]
    except KeyError:
        raise ValueError(
            f"vision_config.model_type={vision_config.model_type!r} is not a supported vision encoder; "
            f"use one of {sorted(VISION_ENCODERS)} (add an entry to medvlm.models.vision.VISION_ENCODERS "
            "for another architecture)"
        ) from None


def num_patch_tokens(vision_config: PreTrainedConfig) -> int:
    """Patch tokens per image at the config's image size (square images, no CLS)."""
    grid = vision_config.image_size // vision_config.patch_size
    return grid * grid


def num_selected_tokens(vision_config: PreTrainedConfig, select: str, has_cls_token: bool) -> int:
    """Tokens per image that leave the encoder after `select`."""
    check_select(select, has_cls_token)
    patches = num_patch_tokens(vision_config)
    return {"drop_cls": patches, "keep_cls": patches + 1, "cls_only": 1, "add_pooled": patches + 2}[select]


def check_select(select: str, has_cls_token: bool) -> None:
    if select not in FEATURE_SELECTS:
        raise ValueError(f"vision_feature_select={select!r}: use one of {FEATURE_SELECTS}")
    if not has_cls_token and select in ("keep_cls", "cls_only"):
        raise ValueError(
            f"vision_feature_select={select!r} needs a CLS token, and this encoder has none "
            "(vision_has_cls_token=False, e.g. SigLIP); use 'drop_cls', which keeps every patch token"
        )


def selected_feature_dim(hidden_size: int, layer: int | list[int] | str) -> int:
    """Feature dim after layer selection: a list of layers is concatenated along the feature dim."""
    return hidden_size * len(layer) if isinstance(layer, list) else hidden_size


def build_vision_model(vision_config: PreTrainedConfig, path: str | os.PathLike | None = None) -> PreTrainedModel:
    """The bare transformers vision model: random init from `vision_config`, or the weights in local `path`."""
    spec = vision_spec(vision_config)
    kwargs = dict(spec.build_kwargs)
    if path is None:
        return spec.model_class(vision_config, **kwargs)
    return spec.model_class.from_pretrained(path, config=vision_config, local_files_only=True, **kwargs)


class VisionEncoder(nn.Module):
    """A vision model and its feature selection.

    forward(pixel_values (N, C, H, W)) -> features (N, tokens, dim), or (N, layers, tokens, dim) for layer="all".
    """

    def __init__(self, model: PreTrainedModel, layer: int | list[int] | str, select: str, has_cls_token: bool):
        super().__init__()
        check_select(select, has_cls_token)
        if isinstance(layer, str) and layer != "all":
            raise ValueError(f"vision_feature_layer={layer!r}: use an int, a list of ints, or 'all'")
        self.model = model
        self.layer = layer
        self.select = select
        self.has_cls_token = has_cls_token

    def _select_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (N, tokens, dim) with the CLS token first when the encoder has one
        if self.select == "cls_only":
            return hidden[:, :1]
        if self.select == "keep_cls":
            return hidden
        patches = hidden[:, 1:] if self.has_cls_token else hidden
        if self.select == "add_pooled":
            return torch.cat([patches, patches.mean(dim=1, keepdim=True), patches.amax(dim=1, keepdim=True)], dim=1)
        return patches

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        outputs = self.model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        hidden_states = outputs.hidden_states  # (num_layers + 1) x (N, tokens, dim); [0] = embeddings
        if self.layer == "all":
            return torch.stack([self._select_tokens(h) for h in hidden_states[1:]], dim=1)
        if isinstance(self.layer, list):
            return torch.cat([self._select_tokens(hidden_states[i]) for i in self.layer], dim=-1)
        return self._select_tokens(hidden_states[self.layer])
