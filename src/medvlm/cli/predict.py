"""Answer a questions file in batches with a trained model: resumable and shardable.

Writes one JSON line per question to --out: {question_id, prompt, text, answer_id, model_id, metadata} plus the
question's reference and answer_type. Rerunning with the same --out skips questions already answered (a line
cut off by an interruption is dropped and redone). --num-chunks N --chunk-idx I answers slice I of N contiguous
slices of the questions, so N processes (e.g. one per GPU) cover the file exactly once; concatenate their outputs.
Prints a summary table at the end. Temporal questions (`image: [current, prior]` or a named `prior` key) go to
the model as a pair; a pair model (tac, pair_concat, pair_findings) answers a question without a prior in its
missing-prior mode.

examples:
  medvlm predict --model runs/tiny/final --questions data/test.jsonl --image-folder data --out answers.jsonl
  medvlm predict --model m --questions q.jsonl --out part0.jsonl --num-chunks 2 --chunk-idx 0 --num-beams 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medvlm.cli.generate import add_generation_arguments, options_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by `medvlm train` (or medvlm.api.save)")
    parser.add_argument("--questions", required=True, help="questions file (LLaVA question JSONL or conversation-shaped)")
    parser.add_argument("--image-folder", default=None,
                        help="folder that relative image paths resolve against (default: the questions file's folder)")
    parser.add_argument("--out", required=True, help="answers JSONL to write (appended to when it exists: resume)")
    parser.add_argument("--batch-size", type=int, default=16, help="questions generated together (default: %(default)s)")
    parser.add_argument("--num-chunks", type=int, default=1, help="split the questions into this many slices "
                        "(default: %(default)s)")
    parser.add_argument("--chunk-idx", type=int, default=0, help="which slice to answer, 0-based (default: %(default)s)")
    parser.add_argument("--model-id", default=None, help="model_id written in each answer (default: the model "
                        "directory's name)")
    parser.add_argument("--file-order", action="store_true",
                        help="batch the questions in file order; by default questions of one answer_type (report, "
                             "closed, open) are batched together, so that short answers do not wait for long ones, "
                             "and the answers file lists them grouped by type")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_generation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    import medvlm

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the command's output
    from medvlm.infer.predict import predict

    try:
        options = options_from_args(args)
        model, processor = medvlm.load(args.model, device=args.device)
        summary = predict(
            model, processor, args.questions, args.out, image_folder=args.image_folder, batch_size=args.batch_size,
            num_chunks=args.num_chunks, chunk_idx=args.chunk_idx,
            model_id=args.model_id or Path(args.model).resolve().name, options=options,
            progress=not args.no_progress, group_by_answer_type=not args.file_order,
        )
    except (ValueError, OSError) as error:  # bad input: a message naming the file / record, not a traceback
        print(f"medvlm predict: error: {error}", file=sys.stderr)
        return 2
    print(summary.table())
    return 0
