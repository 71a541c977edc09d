"""Read a checkpoint of another toolkit into a medvlm model folder; today: the original LLaVA layout (`llava`).

`medvlm import llava SRC_DIR OUT_DIR` reads what haotian-liu/LLaVA (and LLaVA-Med, LLaVA-Rad, ... built on it)
writes: a full finetuning run (config.json with mm_* keys, weights with model.mm_projector.*), an alignment run
(config.json + mm_projector.bin; the LM from --model-base) or a LoRA run (adapter_config.json, adapter_model.*,
non_lora_trainables.bin; the base LM from --model-base, the LoRA merged in). .bin files are read only with
torch.load(weights_only=True). medvlm never downloads: the vision tower (mm_vision_tower, a hub name in published
checkpoints) must be a local transformers CLIP / SigLIP folder given with --vision-tower.
Python: medvlm.interop.import_llava(src_dir, out_dir, vision_tower=..., model_base=...). See docs/interop.md.

examples:
  medvlm import llava llava-v1.5-7b models/llava-v1.5 --vision-tower clip-vit-large-patch14-336
  medvlm import llava runs/llava-lora models/merged --vision-tower clip336 --model-base vicuna-7b-v1.5
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    llava = formats.add_parser("llava", help="a checkpoint in the original LLaVA layout (full, projector-only, LoRA)",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    llava.add_argument("src_dir", help="the LLaVA checkpoint folder (holds config.json with mm_vision_tower)")
    llava.add_argument("out_dir", help="medvlm model folder to write (replaced whole if it exists)")
    llava.add_argument("--vision-tower", metavar="DIR", default=None,
                       help="local transformers CLIP / SigLIP folder of the encoder named by mm_vision_tower "
                            "(needed when mm_vision_tower is a hub name, as in published checkpoints)")
    llava.add_argument("--model-base", metavar="DIR", default=None,
                       help="local folder of the base language model an alignment or LoRA run started from "
                            "(default: adapter_config.json's base_model_name_or_path when it is a local folder)")
    llava.add_argument("--projector", metavar="FILE", default=None,
                       help="an mm_projector.bin to use instead of the folder's projector weights")
    llava.add_argument("--template", default="llava_v1",
                       help="medvlm chat template for the model (default: %(default)s, LLaVA-1.5's conv_vicuna_v1)")


def run(args: argparse.Namespace) -> int:
    from medvlm.interop import LlavaImportError, import_llava

    try:
        summary = import_llava(args.src_dir, args.out_dir, vision_tower=args.vision_tower,
                               model_base=args.model_base, projector=args.projector, template=args.template)
    except LlavaImportError as exc:
        print(f"medvlm import: {exc}", file=sys.stderr)
        return 1
    rows = [("checkpoint", summary.kind), ("vision tower", summary.vision_tower),
            ("language model", summary.language_model), ("connector", summary.connector),
            ("weight files", str(len(summary.weight_files))), ("LoRA modules merged", str(summary.lora_modules)),
            ("written to", str(args.out_dir))]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    for note in summary.notes:
        print(f"note: {note}")
    return 0
