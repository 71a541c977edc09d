"""Training checkpoints: written atomically, resumed exactly.

A checkpoint is a folder `checkpoints/step-000120/` holding
  trainable.safetensors   the parameters being trained (frozen ones come from the base model)
  optimizer.pt            optimizer + scheduler state (tensors and numbers only: loaded with weights_only=True)
  rng.safetensors         torch CPU (and CUDA) generator states of this process
  state.json              step, epoch, batch position in the epoch, metrics, best so far, config digest
It is written into `step-000120.tmp/`, fsynced, then renamed; `latest` (a one-line file, replaced
atomically) names the newest complete checkpoint. A crash mid-write leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from medvlm.fileio import atomic_write_text


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next batch comes from
    batch_in_epoch: int = 0  # global micro-batches of `epoch` already consumed
    best_metric: float | None = None
    best_step: int | None = None
    bad_validations: int = 0  # validations in a row without improvement (early stopping)
    history: list[dict] = field(default_factory=list)  # validation results


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained, plus the buffers of the modules that own them (batch norm running
    statistics move with training: without them a resumed run would not continue exactly)."""
    state = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    for module_name, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                if buffer_name not in module._non_persistent_buffers_set:
                    state[f"{module_name}.{buffer_name}" if module_name else buffer_name] = buffer.detach().cpu().contiguous()
    return state


def restore_trainable_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy a `trainable_state_dict` back into `model` (parameters and buffers by name)."""
    targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        for name, tensor in tensors.items():
            targets[name].copy_(tensor)


def rng_state() -> dict[str, torch.Tensor]:
    states = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"torch_cuda_{i}"] = s
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [states[k] for k in sorted(k for k in states if k.startswith("torch_cuda_"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: TrainState,
    rank: int = 0,
    keep_last: int = 2,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Write checkpoint `step-{state.step}` atomically under run_dir/checkpoints and prune old ones.

    Every process calls it (each saves its own RNG stream); `barrier` synchronises them.
    """
    root = run_dir / "checkpoints"
    final = root / f"step-{state.step:06d}"
    tmp = root / f"step-{state.step:06d}.tmp"
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_file(trainable_state_dict(model), tmp / "trainable.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    barrier()
    save_file(rng_state(), tmp / f"rng{rank}.safetensors")
    barrier()
    if rank == 0:
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        atomic_write_text(root / "latest", final.name + "\n")
        _prune(root, keep_last, protect={f"step-{state.best_step:06d}"} if state.best_step is not None else set())
    barrier()
    return final


def _prune(root: Path, keep_last: int, protect: set[str]) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[: max(0, len(steps) - keep_last)]:
        if old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler, rank: int = 0) -> TrainState:
    """Restore trainable parameters, optimizer, scheduler and this process's RNG; return the loop state."""
    trainable = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in trainable]
    buffers = dict(model.named_buffers())
    unexpected = [n for n in trainable if n not in params and n not in buffers]
    if missing or unexpected:
        raise RuntimeError(
            f"{path}: checkpoint does not match the model being trained "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); was the config changed? "
            "Use a new run.output_dir to start over."
        )
    restore_trainable_state(model, trainable)
    opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng_file = path / f"rng{rank}.safetensors"
    if rng_file.exists():
        set_rng_state(load_file(rng_file))
    return TrainState(**json.loads((path / "state.json").read_text()))
