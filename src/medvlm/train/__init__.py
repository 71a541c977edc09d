"""Training recipes (align, finetune) on Accelerate. `train(cfg)` is the whole loop; see recipe.py."""

from medvlm.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "train"]


def __getattr__(name: str):
    # the loop imports torch, accelerate and peft: only pay for them when training
    if name in ("train", "TrainResult"):
        from medvlm.train import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'medvlm.train' has no attribute {name!r}")
