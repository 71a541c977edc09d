"""Merge a PEFT LoRA adapter written by medvlm training (`RUN/adapter/`) into its base model: one model folder.

    merge_adapter("runs/finetune/adapter", "runs/align/model", "models/merged")

The adapter is an ordinary PEFT adapter of the whole composed model (see medvlm.train.components): PEFT's own
`PeftModel.from_pretrained(medvlm_model, adapter_dir)` loads it, and this merges it with PEFT's `merge_and_unload`,
modules trained in full (`modules_to_save`, e.g. the connector) included. The base must be the model the run
started from (its `model.init_from`); a run that started from a preset has no saved base, but its merged model is
already written next to the adapter (`RUN/model/`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class AdapterMergeError(ValueError):
    """The adapter folder or its base cannot be merged; the message names the file and what to do."""


def adapter_base(adapter_dir: str | os.PathLike) -> Path | None:
    """The base model folder the adapter names (adapter_config.json's base_model_name_or_path) when it is a local
    medvlm model folder, else None."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    named = config.get("base_model_name_or_path")
    if named and (Path(named) / "config.json").is_file():
        return Path(named)
    return None


def load_with_adapter(adapter_dir: str | os.PathLike, base_dir: str | os.PathLike):
    """(PeftModel wrapping the base medvlm model with the adapter applied, processor), in eval mode."""
    from peft import PeftModel

    from medvlm.api import load

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise AdapterMergeError(f"{adapter_dir}: no adapter_config.json; give the `adapter` folder a medvlm "
                                "training run with LoRA wrote (RUN/adapter)")
    model, processor = load(base_dir)
    try:
        peft_model = PeftModel.from_pretrained(model, os.fspath(adapter_dir))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise AdapterMergeError(f"{adapter_dir}: the adapter does not fit the base model in {base_dir} ({exc}); "
                                "give the model the training run started from (its model.init_from)") from None
    return peft_model.eval(), processor


def merge_adapter(adapter_dir: str | os.PathLike, base_dir: str | os.PathLike | None,
                  out_dir: str | os.PathLike) -> Path:
    """Write base + adapter, merged, as a medvlm model folder (weights, config, tokenizer, processor) in out_dir.

    base_dir None: the local folder the adapter config names. Returns out_dir.
    """
    from medvlm.api import save
    from medvlm.fileio import atomic_dir

    if base_dir is None:
        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise AdapterMergeError(f"{adapter_dir}: no adapter_config.json; give a PEFT adapter folder")
        base_dir = adapter_base(adapter_dir)
        if base_dir is None:
            raise AdapterMergeError(f"{Path(adapter_dir) / 'adapter_config.json'}: base_model_name_or_path is not a "
                                    "local model folder; pass the base model with --base DIR")
    peft_model, processor = load_with_adapter(adapter_dir, base_dir)
    merged = peft_model.merge_and_unload()
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save(merged, processor, tmp)
    return out_dir
