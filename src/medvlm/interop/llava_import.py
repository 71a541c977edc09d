"""Import a checkpoint in the original LLaVA layout (haotian-liu/LLaVA, and LLaVA-Med / LLaVA-Rad built on it).

    import_llava("llava-v1.5-7b", "models/llava-medvlm", vision_tower="clip-vit-large-patch14-336")

What the folder holds, and what becomes of it:
  config.json         the language model's config plus LLaVA's keys: model_type llava_llama / llava_mistral /
                      llava_qwen (-> llama / mistral / qwen2), mm_vision_tower (the CLIP / SigLIP encoder, a hub
                      name in published checkpoints: give a local transformers folder of it as `vision_tower`),
                      mm_projector_type (linear -> linear, mlpNx_gelu -> mlp2x_gelu with depth N),
                      mm_hidden_size (checked against the encoder), mm_vision_select_layer (-> vision_feature_layer),
                      mm_vision_select_feature (patch -> drop_cls, cls_patch -> keep_cls), image_aspect_ratio
                      (pad -> resize_mode pad; anything else but anyres -> stretch, where LLaVA center-crops)
  weights             model.safetensors / model-*.safetensors / pytorch_model*.bin (.bin read only with
                      torch.load(weights_only=True)): `model.*` and `lm_head.*` -> the language model,
                      `model.mm_projector.*` -> the connector, `model.vision_tower.vision_tower.*` (a tuned encoder,
                      when saved) -> the vision encoder
  mm_projector.bin    an alignment (pretraining) run: the projector alone; the LM comes from `model_base`
  adapter_config.json + adapter_model.* + non_lora_trainables.bin
                      a LoRA run: the base LM from `model_base`, the projector (and any other fully trained
                      weights) from non_lora_trainables.bin, the LoRA deltas merged in (W += alpha / r * B @ A)
  tokenizer files     from the folder, else from `model_base`; `<image>` is added as a special token (LLaVA uses
                      index -200 instead), its embedding row set to the mean of the others (or, in a vocabulary
                      padded beyond the tokenizer, one of the padding rows)
Not supported, with an error: mm_use_im_start_end, anyres / LLaVA-NeXT patch merging, open_clip encoders
(e.g. LLaVA-Rad's BiomedCLIP: not a transformers model), DoRA, per-module LoRA ranks.
The chat template is llava_v1 (LLaVA-1.5's conv_vicuna_v1) unless told.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

# LLaVA's config model_type -> the transformers causal LM it wraps
LLAVA_LANGUAGE_TYPES = {"llava_llama": "llama", "llava_mistral": "mistral", "llava_qwen": "qwen2",
                        "llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}
SELECT_FEATURES = {"patch": "drop_cls", "cls_patch": "keep_cls"}
# keys LLaVA adds to the language model's config; not part of the LM's own config
LLAVA_CONFIG_KEYS = ("image_aspect_ratio", "image_grid_pinpoints", "tokenizer_model_max_length",
                     "tokenizer_padding_side", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "use_mm_proj",
                     "architectures", "_name_or_path", "transformers_version", "auto_map", "torch_dtype", "dtype")
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin", "adapter_model.safetensors", "adapter_model.bin")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")
_MLP_PROJECTOR = re.compile(r"^mlp(?P<depth>\d+)x_gelu$")


class LlavaImportError(ValueError):
    """The folder is not a LLaVA checkpoint medvlm can read; the message names the file and field."""


@dataclass
class LlavaImport:
    """What `import_llava` read and decided (printed by the CLI as a summary)."""

    kind: str  # "full", "projector" (alignment run) or "lora"
    vision_tower: str
    language_model: str
    connector: str
    weight_files: list[str] = field(default_factory=list)
    lora_modules: int = 0
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlavaImportError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise LlavaImportError(f"{path}: not valid JSON ({exc})") from None


def iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a .safetensors file, or of a .bin read with torch.load(weights_only=True)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles holding anything but tensors are refused by weights_only
        raise LlavaImportError(f"{path}: cannot be read as plain tensors with torch.load(weights_only=True) "
                               f"({exc}); convert it to safetensors") from None
    if not isinstance(state, dict):
        raise LlavaImportError(f"{path}: holds a {type(state).__name__}, expected a dict of tensors")
    yield from state.items()


def weight_files(folder: Path, patterns=("model*.safetensors", "pytorch_model*.bin")) -> list[Path]:
    """The model weight files of a folder: safetensors when present, else .bin."""
    for pattern in patterns:
        files = sorted(folder.glob(pattern))
        if files:
            return files
    return []


def _connector_settings(config: dict, config_path: Path) -> tuple[str, dict]:
    projector = config.get("mm_projector_type", "linear")  # LLaVA v1 had only the linear projector
    if projector == "linear":
        return "linear", {}
    match = _MLP_PROJECTOR.match(projector)
    if match:
        return "mlp2x_gelu", {"depth": int(match["depth"])}
    raise LlavaImportError(f"{config_path}: mm_projector_type={projector!r} has no medvlm connector; "
                           "supported: linear, mlp<N>x_gelu")


def _check_supported(config: dict, config_path: Path) -> None:
    if config.get("mm_use_im_start_end"):
        raise LlavaImportError(f"{config_path}: mm_use_im_start_end=true (image tokens wrapped in <im_start> / "
                               "<im_end>) is not supported by medvlm")
    aspect = config.get("image_aspect_ratio")
    if isinstance(aspect, str) and aspect.startswith("anyres"):
        raise LlavaImportError(f"{config_path}: image_aspect_ratio={aspect!r} (LLaVA-NeXT tiling) is not supported")
    if config.get("mm_patch_merge_type", "flat") != "flat":
        raise LlavaImportError(f"{config_path}: mm_patch_merge_type={config['mm_patch_merge_type']!r} is not "
                               "supported (only 'flat')")
    if config.get("mm_vision_select_feature", "patch") not in SELECT_FEATURES:
        raise LlavaImportError(f"{config_path}: mm_vision_select_feature={config['mm_vision_select_feature']!r}: "
                               f"use one of {sorted(SELECT_FEATURES)}")
    if config.get("model_type") not in LLAVA_LANGUAGE_TYPES:
        raise LlavaImportError(f"{config_path}: model_type={config.get('model_type')!r}: medvlm reads "
                               f"{sorted(LLAVA_LANGUAGE_TYPES)}")


def _local_dir(name: str | os.PathLike | None, what: str, config_path: Path, field_name: str, option: str) -> Path:
    if name is not None and (Path(name) / "config.json").is_file():
        return Path(name)
    raise LlavaImportError(
        f"{config_path}: {field_name}={str(name)!r} is not a local model folder (a hub name in published "
        f"checkpoints); medvlm never downloads: pass {option} DIR, a local transformers folder of {what}"
    )


def _text_config_dict(config: dict) -> dict:
    text = {k: v for k, v in config.items() if not k.startswith("mm_") and k not in LLAVA_CONFIG_KEYS}
    text["model_type"] = LLAVA_LANGUAGE_TYPES[config["model_type"]]
    return text


def _medvlm_name(name: str, connector_type: str, lm_prefix: str) -> str:
    """A LLaVA weight name (`base_model.model.` stripped) -> the medvlm parameter it fills."""
    if name.startswith("model.mm_projector."):
        rest = name.removeprefix("model.mm_projector.")
        return ("connector.proj." if connector_type == "linear" else "connector.mlp.") + rest
    if name.startswith("model.vision_tower.vision_tower."):
        return "vision_tower.model." + name.removeprefix("model.vision_tower.vision_tower.")
    if name.startswith("model."):
        return f"language_model.{lm_prefix}" + name.removeprefix("model.")
    if name.startswith("lm_head."):
        return "language_model." + name
    raise KeyError(name)


class _Loader:
    """Copies LLaVA tensors into the medvlm model by name, checking shapes; remembers what it filled."""

    def __init__(self, model):
        self.model = model
        self.params = dict(model.named_parameters())
        self.lm_prefix = model.language_model.base_model_prefix + "."
        self.filled: set[str] = set()

    def load(self, path: Path, name: str, tensor: torch.Tensor) -> None:
        key = name.removeprefix("base_model.model.")
        try:
            target_name = _medvlm_name(key, self.model.config.connector_type, self.lm_prefix)
        except KeyError:
            raise LlavaImportError(f"{path}: weight {name!r} has no place in a medvlm model") from None
        target = self.params.get(target_name)
        if target is None:
            raise LlavaImportError(f"{path}: weight {name!r} -> {target_name!r}, which the medvlm model does not have "
                                   "(does config.json describe these weights?)")
        if self._is_vocab_matrix(target) and tensor.ndim == 2 and tensor.shape[0] > target.shape[0]:
            # a vocabulary padded beyond the tokenizer (e.g. Qwen2): keep every row; <image> then takes one of
            # the padding rows, which no text token uses
            self.model.language_model.resize_token_embeddings(tensor.shape[0], mean_resizing=False)
            self.params = dict(self.model.named_parameters())
            target = self.params[target_name]
        with torch.no_grad():
            if target.shape == tensor.shape:
                target.copy_(tensor)
            elif target.ndim == 2 and target.shape[1] == tensor.shape[1] and self._is_vocab_matrix(target):
                # the vocabulary grew by <image>: the new rows get the mean of the checkpoint's rows
                target[: tensor.shape[0]].copy_(tensor)
                target[tensor.shape[0]:].copy_(tensor.mean(dim=0, keepdim=True).expand_as(target[tensor.shape[0]:]))
            else:
                raise LlavaImportError(f"{path}: weight {name!r} has shape {tuple(tensor.shape)}, the medvlm model's "
                                       f"{target_name!r} has {tuple(target.shape)}")
        self.filled.add(target_name)

    def _is_vocab_matrix(self, target: torch.Tensor) -> bool:
        lm = self.model.language_model
        return any(module is not None and module.weight is target
                   for module in (lm.get_input_embeddings(), lm.get_output_embeddings()))

    def check_complete(self, parts: tuple[str, ...]) -> None:
        tied = {"language_model.lm_head.weight"} if self.model.language_model.config.tie_word_embeddings else set()
        missing = [n for n in self.params if n.startswith(parts) and n not in self.filled and n not in tied]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise LlavaImportError(f"the checkpoint has no weights for {shown}")


def _merge_lora(model, adapter_dir: Path, loader: _Loader) -> int:
    """Add the LoRA deltas of a PEFT adapter folder (LLaVA's names) to the model's weights. -> modules merged."""
    config_path = adapter_dir / "adapter_config.json"
    config = _read_json(config_path)
    if config.get("peft_type", "LORA") != "LORA":
        raise LlavaImportError(f"{config_path}: peft_type={config.get('peft_type')!r}; only LORA is supported")
    for name in ("use_dora", "fan_in_fan_out"):
        if config.get(name):
            raise LlavaImportError(f"{config_path}: {name}=true is not supported")
    for name in ("rank_pattern", "alpha_pattern"):
        if config.get(name):
            raise LlavaImportError(f"{config_path}: {name} (per-module ranks) is not supported")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / (rank**0.5) if config.get("use_rslora") else alpha / rank
    files = weight_files(adapter_dir, ("adapter_model.safetensors", "adapter_model.bin"))
    if not files:
        raise LlavaImportError(f"{adapter_dir}: adapter_config.json but no adapter_model.safetensors / .bin")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in iter_tensors(files[0]):
        match = _LORA_KEY.match(name.removeprefix("base_model.model."))
        if match is None:
            raise LlavaImportError(f"{files[0]}: {name!r} is not a LoRA A/B weight (bias or other trained weights "
                                   "belong in non_lora_trainables.bin)")
        pairs.setdefault(match["module"], {})[match["ab"]] = tensor
    params = loader.params
    with torch.no_grad():
        for module, ab in pairs.items():
            if set(ab) != {"A", "B"}:
                raise LlavaImportError(f"{files[0]}: {module} has lora_{''.join(ab)} but not both A and B")
            target_name = _medvlm_name(module + ".weight", model.config.connector_type, loader.lm_prefix)
            weight = params.get(target_name)
            if weight is None:
                raise LlavaImportError(f"{files[0]}: LoRA on {module!r} -> {target_name!r}, not in the medvlm model")
            delta = (ab["B"].float() @ ab["A"].float()) * scale
            if delta.shape != weight.shape:
                raise LlavaImportError(f"{files[0]}: LoRA on {module!r} gives a {tuple(delta.shape)} delta for a "
                                       f"{tuple(weight.shape)} weight")
            weight.add_(delta.to(weight.dtype))
    return len(pairs)


def import_llava(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    vision_tower: str | os.PathLike | None = None,
    model_base: str | os.PathLike | None = None,
    projector: str | os.PathLike | None = None,
    template: str = "llava_v1",
) -> LlavaImport:
    """Read a LLaVA-layout checkpoint in `src_dir` and save it as a medvlm model folder in `out_dir`.

    vision_tower: a local transformers CLIP / SigLIP folder; needed when config.json's mm_vision_tower is not one.
    model_base: the base LM folder, for an alignment run (mm_projector.bin only) or a LoRA run; default: what the
        folder names (adapter_config.json's base_model_name_or_path) when that is a local folder.
    projector: an mm_projector.bin to use instead of the folder's projector weights.
    Raises LlavaImportError naming the file and field of anything medvlm cannot read.
    """
    from transformers import AutoTokenizer
    from transformers.initialization import no_init_weights

    from medvlm.api import save
    from medvlm.fileio import atomic_dir
    from medvlm.models import ComposeConfig, build_model

    src = Path(src_dir)
    config_path = src / "config.json"
    config = _read_json(config_path)
    if "mm_vision_tower" not in config:
        raise LlavaImportError(f"{config_path}: no mm_vision_tower: not a LLaVA checkpoint (for a transformers "
                               "Llava folder, load it with transformers; for a medvlm folder, use medvlm.load)")
    _check_supported(config, config_path)
    vision_dir = _local_dir(vision_tower if vision_tower is not None else config["mm_vision_tower"],
                            "the vision encoder", config_path, "mm_vision_tower", "--vision-tower")

    is_lora = (src / "adapter_config.json").is_file()
    has_lm_weights = bool(weight_files(src)) and not is_lora
    projector_file = Path(projector) if projector is not None else (
        src / "mm_projector.bin" if (src / "mm_projector.bin").is_file() else None)
    kind = "lora" if is_lora else "full" if has_lm_weights else "projector"
    if kind == "projector" and projector_file is None:
        raise LlavaImportError(f"{src}: no weights found (model*.safetensors, pytorch_model*.bin, mm_projector.bin, "
                               "or a LoRA adapter)")
    base_dir = None
    if kind != "full":
        named = model_base
        if named is None and is_lora:
            named = _read_json(src / "adapter_config.json").get("base_model_name_or_path")
        base_dir = _local_dir(named, "the base language model the run started from", src / (
            "adapter_config.json" if is_lora else "mm_projector.bin"), "base model", "--model-base")
        if not weight_files(base_dir):
            raise LlavaImportError(f"{base_dir}: no model*.safetensors or pytorch_model*.bin in the base model folder")

    tokenizer_dir = src if (src / "tokenizer_config.json").is_file() else base_dir
    if tokenizer_dir is None:
        raise LlavaImportError(f"{src}: no tokenizer files (tokenizer_config.json); pass --model-base DIR holding them")
    tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer_dir), local_files_only=True)

    connector_type, connector_config = _connector_settings(config, config_path)
    aspect = config.get("image_aspect_ratio")
    notes = []
    if aspect != "pad":
        notes.append(f"image_aspect_ratio={aspect!r}: LLaVA resizes the short side and center-crops; medvlm "
                     "stretches the whole image to the square (resize_mode=stretch)")
    compose = ComposeConfig(
        vision=os.fspath(vision_dir),
        text=_text_config_dict(config),
        connector_type=connector_type,
        connector_config=connector_config,
        vision_feature_layer=config.get("mm_vision_select_layer", -2),
        vision_feature_select=SELECT_FEATURES[config.get("mm_vision_select_feature", "patch")],
        template=template,
        max_length=int(config.get("tokenizer_model_max_length") or 2048),
        resize_mode="pad" if aspect == "pad" else "stretch",
    )
    with no_init_weights():  # every LM and connector weight is overwritten below (checked)
        model, processor = build_model(compose, tokenizer=tokenizer)
    mm_hidden = config.get("mm_hidden_size")
    layer = model.config.vision_feature_layer
    vision_dim = model.config.vision_config.hidden_size * (len(layer) if isinstance(layer, list) else 1)
    if mm_hidden is not None and mm_hidden != vision_dim:
        raise LlavaImportError(f"{config_path}: mm_hidden_size={mm_hidden}, but the vision tower in {vision_dir} "
                               f"gives {vision_dim}-d features; is --vision-tower the encoder this model was trained with?")

    loader = _Loader(model)
    read: list[Path] = []
    lm_files = weight_files(base_dir) if base_dir is not None else weight_files(src)
    extra = []
    if is_lora and (src / "non_lora_trainables.bin").is_file():
        extra.append(src / "non_lora_trainables.bin")
    if projector_file is not None:
        extra.append(projector_file)  # last: it wins over projector weights elsewhere
    for path in [*lm_files, *extra]:
        from_base = base_dir is not None and path.parent == base_dir
        for name, tensor in iter_tensors(path):
            if from_base and name.startswith("model.mm_projector."):
                continue  # a base folder's own projector never overrides the run's
            loader.load(path, name, tensor)
        read.append(path)
    loader.check_complete(("language_model.", "connector."))
    lora_modules = _merge_lora(model, src, loader) if is_lora else 0
    if model.config.text_config.tie_word_embeddings:
        model.language_model.tie_weights()

    model.eval()
    with atomic_dir(out_dir) as tmp:
        save(model, processor, tmp)
    return LlavaImport(kind=kind, vision_tower=os.fspath(vision_dir), language_model=model.config.text_config.model_type,
                       connector=f"{connector_type} {connector_config or ''}".strip(),
                       weight_files=[os.fspath(p) for p in read], lora_modules=lora_modules, notes=notes)
