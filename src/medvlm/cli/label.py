"""Label radiology reports with the 14 CheXpert observations (positive / negative / uncertain / not_mentioned).

Input: a .jsonl file (one object a line) or a .json array of objects, report text in --field and id from
"id"/"question_id"/"study_id"/"image_id"/"uid"; a .csv file (report text in column --field); or a .txt file
(one report a line).
Output: JSONL, one line per input report: {"id": ..., "chexpert": {"No Finding": "positive", ...}}.
A table of label counts per observation is printed at the end.

Backends: "rules" (default; offline, rule-based, no weights) and "chexbert" (a local CheXbert checkpoint
given by --weights, with the bert-base-uncased vocabulary given by --tokenizer or as vocab.txt beside it).
"radgraph" is not available yet.

Example:  medvlm label reports.jsonl --out labels.jsonl --field findings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", type=Path, help="reports file: .jsonl, .json (array), .csv or .txt (one report a line)")
    parser.add_argument("--out", type=Path, required=True, help="output JSONL with one {id, chexpert} line per report")
    parser.add_argument("--field", default="text", help="JSONL field / CSV column holding the report text (default: text)")
    parser.add_argument("--backend", choices=("rules", "chexbert", "radgraph"), default="rules",
                        help="labeler: rules (offline, default), chexbert (needs --weights), radgraph (not available yet)")
    parser.add_argument("--weights", type=Path, default=None, help="local model checkpoint for --backend chexbert")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="bert-base-uncased tokenizer folder or vocab.txt for chexbert (default: vocab.txt beside --weights)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medvlm.evaluate.labeler import CHEXPERT_OBSERVATIONS, LABELS, label_file

    try:
        counts = label_file(args.reports, args.out, field=args.field, backend=args.backend, weights=args.weights,
                            tokenizer=args.tokenizer, progress=not args.quiet)
    except (OSError, ValueError, NotImplementedError) as e:
        print(f"medvlm label: {e}", file=sys.stderr)
        return 2
    total = sum(counts[CHEXPERT_OBSERVATIONS[0]].values())
    width = max(len(o) for o in CHEXPERT_OBSERVATIONS)
    print(f"\n{'observation':<{width}}  " + "  ".join(f"{label:>13}" for label in LABELS) + "  prevalence")
    for obs in CHEXPERT_OBSERVATIONS:
        row = counts[obs]
        share = row["positive"] / total if total else 0.0
        print(f"{obs:<{width}}  " + "  ".join(f"{row[label]:>13}" for label in LABELS) + f"  {share:>10.1%}")
    print(f"\n{total} reports labelled ({args.backend}) -> {args.out}")
    return 0
