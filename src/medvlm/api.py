"""`medvlm.load(dir) -> (model, processor)` and `medvlm.api.save(model, processor, dir)`.

A medvlm model directory holds config.json + model.safetensors (+ generation_config.json), the tokenizer files
and medvlm_processor.json. `load` returns the pair rather than a pipeline object: `generate` and `predict` in
medvlm.infer take (model, processor), and training code needs both parts anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medvlm.data.processor import MedVLMProcessor
from medvlm.models import MedVLMForConditionalGeneration, set_generation_defaults


def load(
    directory: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[MedVLMForConditionalGeneration, MedVLMProcessor]:
    """Load a saved model and its processor from a local directory, in eval mode, on `device` (default CPU)."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: not a medvlm model directory (no config.json); give the folder "
                                "that `medvlm train` or `save` wrote")
    model = MedVLMForConditionalGeneration.from_pretrained(os.fspath(directory), local_files_only=True,
                                                           **({"dtype": dtype} if dtype is not None else {}))
    processor = MedVLMProcessor.from_pretrained(directory)
    if device is not None:
        model.to(device)
    model.eval()
    set_generation_defaults(model, processor)
    return model, processor


def save(model: MedVLMForConditionalGeneration, processor: MedVLMProcessor, directory: str | os.PathLike) -> None:
    """Write the model (safetensors + config) and the processor (tokenizer + settings) to one directory."""
    model.save_pretrained(os.fspath(directory))
    processor.save_pretrained(directory)
