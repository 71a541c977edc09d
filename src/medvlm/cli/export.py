"""Write a medvlm model in another toolkit's format; today: transformers' Llava (`--to llava`).

The Llava folder loads with plain transformers, no medvlm needed:
  LlavaForConditionalGeneration.from_pretrained(OUT_DIR), AutoProcessor.from_pretrained(OUT_DIR)
and gives the same logits as the medvlm model on the same input_ids and pixel_values.
It needs a CLIP / SigLIP / ViT / DINOv2 encoder, an mlp2x_gelu (2 layers) or linear connector, one feature
layer or a list of them, CLS dropped or kept, and a Llama / Mistral / Qwen2 / Phi-3 / Gemma language model;
otherwise the command says which part has no Llava equivalent and exits with code 1.
Python: medvlm.interop.export_llava(model_dir, out_dir). See docs/interop.md.

examples:
  medvlm export --to llava runs/tiny/model runs/tiny/llava
"""

from __future__ import annotations

import argparse
import sys

FORMATS = ("llava",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, choices=FORMATS,
                        help="target format: llava = transformers' LlavaForConditionalGeneration + LlavaProcessor")
    parser.add_argument("model_dir", help="medvlm model directory (written by `medvlm train` or medvlm.api.save)")
    parser.add_argument("out_dir", help="folder to write (replaced whole if it exists)")


def run(args: argparse.Namespace) -> int:
    from medvlm.interop import LlavaExportError, export_llava

    try:
        out = export_llava(args.model_dir, args.out_dir)
    except (LlavaExportError, FileNotFoundError) as exc:
        print(f"medvlm export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote a transformers Llava checkpoint with its processor to {out}")
    return 0
