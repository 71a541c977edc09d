"""`medvlm <verb>`: one entry point. Thin: each verb module parses its options and calls library functions.

Verb modules are imported only when their verb runs, so `medvlm --help` stays instant (no torch import).
Each verb module defines `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module, one-line summary). The one place verbs are registered.
VERBS: dict[str, tuple[str, str]] = {
    "validate": ("medvlm.cli.validate", "check a training, questions or answers file and list every problem"),
    "inspect": ("medvlm.cli.inspect", "show what medvlm sees in an image, DICOM, NIfTI or volume file"),
    "synth": ("medvlm.cli.synth", "generate a synthetic benchmark (cxr, derm, path, ct) with ground truth"),
    "label": ("medvlm.cli.label", "label reports with the 14 CheXpert observations (offline, rule-based)"),
    "evaluate": ("medvlm.cli.evaluate", "score reports, VQA answers, classification, segmentation, continual learning"),
    "train": ("medvlm.cli.train", "train a model from a YAML recipe (align, finetune) with key=value overrides"),
    "generate": ("medvlm.cli.generate", "generate text for one image (and optional prior) with a trained model"),
    "predict": ("medvlm.cli.predict", "answer a questions file in batches, resumable and shardable"),
    "priors": ("medvlm.cli.priors", "pair each study of a studies table with its prior study (Libra's rule)"),
    "export": ("medvlm.cli.export", "write a medvlm model as a transformers Llava checkpoint"),
    "import": ("medvlm.cli.import_", "read an original LLaVA checkpoint (full, projector, LoRA) into medvlm"),
    "merge": ("medvlm.cli.merge", "merge a LoRA adapter written by medvlm training into its base model"),
    "demo": ("medvlm.cli.demo", "synthesise data, train the tiny (or pretrained) preset, predict, evaluate, write an HTML report"),
}


def _top_level_help() -> str:
    width = max(len(v) for v in VERBS)
    lines = [
        "usage: medvlm <verb> [options]",
        "",
        "medvlm: build, train, run and evaluate medical vision-language models.",
        "",
        "verbs:",
    ]
    lines += [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in VERBS.items()]
    lines += ["", "`medvlm <verb> --help` explains every option of a verb."]
    return "\n".join(lines)


def build_parser(verb: str) -> argparse.ArgumentParser:
    module_name, summary = VERBS[verb]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"medvlm {verb}",
        description=(module.__doc__ or summary).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(_run=module.run)
    module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_level_help())
        return 0
    if argv[0] in ("-V", "--version"):
        from medvlm import __version__

        print(f"medvlm {__version__}")
        return 0
    verb = argv[0]
    if verb not in VERBS:
        print(f"medvlm: unknown verb {verb!r}\n\n{_top_level_help()}", file=sys.stderr)
        return 2
    args = build_parser(verb).parse_args(argv[1:])
    from medvlm.runtime import keep_freed_memory

    keep_freed_memory()  # fewer page faults in training and prediction (medvlm/runtime.py; MEDVLM_MALLOC_TUNING=0: off)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
