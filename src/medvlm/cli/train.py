"""Train a model from a YAML recipe, with key=value overrides.

  medvlm train configs/tiny_finetune.yaml data.train=data/train.json run.output_dir=runs/a optim.lr=3e-4

Recipes: `align` (connector only, LLaVA stage 1), `finetune` (each component frozen / lora / full) and
`encoder` (the vision encoder alone learns the 14 CheXpert labels of the training reports).
Rerunning the same command resumes from the last checkpoint in run.output_dir. Data parallel on CPU:
`torchrun --nproc_per_node 2 -m medvlm.cli train ...`; on GPUs `accelerate launch` (see docs/training.md).
Every field of the recipe is listed by `medvlm train --print-config` (defaults) and documented in
src/medvlm/train/config.py.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="recipe YAML file (omit to start from the defaults)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override any recipe field, e.g. optim.lr=3e-4 components.language=lora")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved recipe (file + overrides) as YAML and exit without training")


def run(args: argparse.Namespace) -> int:
    import yaml

    from medvlm.config import ConfigError, config_to_dict, load_config
    from medvlm.train.config import TrainConfig

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # only overrides given
        config, overrides = None, [config, *overrides]
    try:
        cfg = load_config(TrainConfig, config, overrides)
    except ConfigError as err:
        print(f"medvlm train: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    from medvlm.train import train

    result = train(cfg)
    print(f"trained {result.steps} steps in {result.seconds:.1f} s; model: {result.model_dir}")
    if result.best_step is not None:
        print(f"best {cfg.validation.metric} = {result.best_metric:.4f} at step {result.best_step}")
    return 0
