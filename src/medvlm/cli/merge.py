"""Merge a LoRA adapter written by medvlm training (RUN/adapter) into its base model, as one model folder.

The adapter is a plain PEFT adapter of the whole composed model; modules trained in full beside LoRA (e.g. the
connector) travel in it and are merged too. The base is the model the run started from (its model.init_from;
default: the local folder adapter_config.json names). The merged folder loads with medvlm.load and every medvlm
command, and gives the same logits as base + adapter.
Python: medvlm.interop.merge_adapter(adapter_dir, base_dir, out_dir). See docs/interop.md.

examples:
  medvlm merge runs/finetune/adapter --base runs/align/model --out models/finetuned
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter_dir", help="PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("--base", metavar="DIR", default=None,
                        help="the base medvlm model folder (default: adapter_config.json's base_model_name_or_path "
                             "when it is a local folder)")
    parser.add_argument("--out", metavar="DIR", required=True, help="merged model folder to write (replaced whole)")


def run(args: argparse.Namespace) -> int:
    from medvlm.interop import AdapterMergeError, merge_adapter

    try:
        out = merge_adapter(args.adapter_dir, args.base, args.out)
    except (AdapterMergeError, FileNotFoundError) as exc:
        print(f"medvlm merge: {exc}", file=sys.stderr)
        return 1
    print(f"wrote the merged model to {out}")
    return 0
