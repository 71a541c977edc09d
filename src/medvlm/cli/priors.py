"""Pair each image of a studies table (CSV) with its prior, by Libra's rule, into a JSONL file.

The prior of an image is the last image (by StudyDate, StudyTime) of the same subject's latest EARLIER day;
all images of one day share that prior (same-day studies never pair with each other); a subject's first day has
none (prior_image null). --view keeps only the listed view positions (before pairing); --max-gap-days drops a
prior taken more than N days before. Output lines: {subject_id, study_id, image, study_date, view, prior_image,
prior_study_id, prior_study_date, gap_days, row}. Prints a summary table.

examples:
  medvlm priors mimic-cxr-2.0.0-metadata.csv --out pairs.jsonl --view AP,PA
  medvlm priors studies.csv --out pairs.jsonl --max-gap-days 365 --path-column dicom_path
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medvlm.temporal.priors import PriorColumns

    defaults = PriorColumns()
    parser.add_argument("studies", help="studies table (CSV with a header row), one row per image")
    parser.add_argument("--out", required=True, help="pairs JSONL to write")
    parser.add_argument("--view", default=None, metavar="AP,PA",
                        help="comma-separated view positions to keep (case-insensitive; default: all rows)")
    parser.add_argument("--max-gap-days", type=int, default=None, metavar="N",
                        help="no prior taken more than N days before the current study (default: no limit)")
    columns = parser.add_argument_group("column names")
    for name, what in (("subject", "subject (patient) id"), ("study", "study id"), ("date", "study date, "
                       "YYYYMMDD or YYYY-MM-DD"), ("time", "study time, HHMMSS[.ffffff] (optional column)"),
                       ("path", "image path"), ("view", "view position (needed with --view)")):
        columns.add_argument(f"--{name}-column", default=getattr(defaults, name),
                             help=f"column holding the {what} (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from medvlm.temporal.priors import PriorColumns, find_priors, summary, write_pairs

    columns = PriorColumns(subject=args.subject_column, study=args.study_column, date=args.date_column,
                           time=args.time_column, path=args.path_column, view=args.view_column)
    views = [v for v in args.view.split(",") if v.strip()] if args.view else None
    try:
        pairs = find_priors(args.studies, columns=columns, views=views, max_gap_days=args.max_gap_days)
        write_pairs(pairs, args.out)
    except (ValueError, OSError) as error:
        print(f"medvlm priors: error: {error}", file=sys.stderr)
        return 2
    counts = summary(pairs)
    width = max(len(k) for k in counts)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in counts.items()))
    print(f"pairs: {args.out}")
    return 0
