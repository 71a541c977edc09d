"""Per-component training modes (frozen / LoRA / full) and the export of the trained model.

The composed model has three parts, `vision_tower`, `connector` and `language_model`. LoRA is PEFT's: one
`LoraConfig` whose target regex covers only the parts set to "lora", so the adapter is an ordinary PEFT
adapter of the whole composed model (PEFT itself loads it onto the base model folder).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from medvlm.fileio import atomic_dir
from medvlm.train.checkpoint import TrainState, restore_trainable_state
from medvlm.train.config import TrainConfig

PARTS = {"vision": "vision_tower", "connector": "connector", "language": "language_model"}


def check_recipe(cfg: TrainConfig) -> None:
    """The align recipe trains the connector alone; say so instead of silently training something else."""
    c = cfg.components
    forcing = cfg.findings.teacher_forcing
    if not 0.0 <= forcing <= 1.0:
        raise ValueError(f"findings.teacher_forcing={forcing}: give a probability in [0, 1]")
    if forcing and cfg.recipe == "encoder":
        raise ValueError("findings.teacher_forcing is for the recipes that train the connector (align, finetune); "
                         "recipe 'encoder' has no finding tokens: set it to 0")
    if cfg.recipe == "align" and (c.vision, c.connector, c.language) != ("frozen", "full", "frozen"):
        raise ValueError(
            "recipe 'align' trains the connector only: set components.vision=frozen components.connector=full "
            f"components.language=frozen (got vision={c.vision}, connector={c.connector}, language={c.language}), "
            "or use recipe=finetune"
        )
    if cfg.recipe == "encoder":
        if c.vision != "full":
            raise ValueError(f"recipe 'encoder' trains the vision encoder in full: set components.vision=full "
                             f"(got {c.vision}); the connector and the language model are left as they are")
        if cfg.run.cache_vision_features or cfg.data.validation:
            raise ValueError("recipe 'encoder' trains the encoder (its features cannot be cached) and has no "
                             "generation validation: unset run.cache_vision_features and data.validation")
        return
    if c.connector == "lora":
        raise ValueError("components.connector=lora is not supported: the connector is small, train it in full")
    if cfg.run.cache_vision_features and c.vision != "frozen":
        raise ValueError("run.cache_vision_features needs components.vision=frozen (features must not change)")


def lora_target_regex(cfg: TrainConfig) -> str | None:
    parts = [PARTS[name] for name, mode in _modes(cfg).items() if mode == "lora"]
    if not parts:
        return None
    names = "|".join(re.escape(m) for m in cfg.lora.target_modules)
    return rf"^({'|'.join(parts)})\..*\.({names})$"


def _modes(cfg: TrainConfig) -> dict[str, str]:
    return {"vision": cfg.components.vision, "connector": cfg.components.connector, "language": cfg.components.language}


def apply(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """Freeze everything, wrap LoRA parts with PEFT, then unfreeze the parts trained in full."""
    model.requires_grad_(False)
    full_parts = [PARTS[name] for name, mode in _modes(cfg).items() if mode == "full"]
    target = lora_target_regex(cfg)
    if target is None:
        for part in full_parts:
            getattr(model, part).requires_grad_(True)
    else:
        # parts trained in full travel in the adapter as PEFT `modules_to_save`, so the adapter is complete
        lora = LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=target,
            bias="none", modules_to_save=full_parts or None,
        )
        model = get_peft_model(model, lora)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("no trainable parameters: every component is frozen (see components.* in the config)")
    return model


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    lm = base_model(model).language_model
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(lm, "enable_input_require_grads"):
        lm.enable_input_require_grads()


def export(model: torch.nn.Module, processor, cfg: TrainConfig, run_dir: Path, model_dir: Path, state: TrainState):
    """Write the final model folder: the best checkpoint's weights when validation chose one, LoRA merged.

    The PEFT adapter is also written on its own (`run_dir/adapter`) when LoRA was used.
    """
    if state.best_step is not None and state.best_step != state.step:
        best = run_dir / "checkpoints" / f"step-{state.best_step:06d}" / "trainable.safetensors"
        restore_trainable_state(model, load_file(best))
    if isinstance(model, PeftModel):
        with atomic_dir(run_dir / "adapter") as tmp:
            model.save_pretrained(tmp)
        model = model.merge_and_unload()
    with atomic_dir(model_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
