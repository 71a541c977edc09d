"""Generate a synthetic benchmark with known ground truth, or draw a contact sheet of one.

  medvlm synth cxr  --out DIR --n N [--size 128] [--seed 0] [--temporal] [--test-fraction 0.1]
                    [--format png|dicom] [--workers K] [--prevalence finding=p ...] [--report-style structured|free]
  medvlm synth derm|path|ct --out DIR --n N [...]   (same options where the kind has them)
  medvlm synth preview DIR --out sheet.png [--n 16]
  medvlm synth oracle DIR [--draws 64] [--json ceiling.json]   what a perfect reader scores on DIR's test set

A dataset folder holds images/, masks/, train.json (LLaVA conversations: report generation and VQA),
test.jsonl (questions with references and answer_type), labels.jsonl (structured truth: findings with
attributes and mask paths, CheXpert-style labels, change labels) and dataset.json (the card).
The same seed gives byte-identical files whatever --workers; the split is by synthetic patient.
Python: medvlm.synth.dataset.write_dataset(...), medvlm.synth.preview.write_preview(...) and
medvlm.synth.oracle.oracle_scores(...).
"""

from __future__ import annotations

import argparse
import sys
import time

KINDS_HELP = {
    "cxr": "frontal chest radiographs (gray): anatomy, 10 findings with masks, priors with --temporal",
    "derm": "dermoscopy-like RGB lesion photos (asymmetry, border, colour, diameter)",
    "path": "H&E-like RGB tiles (nuclei density, size, pleomorphism; normal vs tumour and grade)",
    "ct": "3D CT volumes in HU (NIfTI and a DICOM series)",
}


def _prevalence(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--prevalence takes finding=p (e.g. pneumothorax=0.2), got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synth_command", required=True, metavar="{cxr,derm,path,ct,preview,oracle}")
    for kind, summary in KINDS_HELP.items():
        p = sub.add_parser(kind, help=summary, description=f"Write a synthetic {kind} dataset: {summary}.")
        p.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
        p.add_argument("--n", type=int, required=True, help="number of studies (one synthetic patient each)")
        p.add_argument("--size", type=int, default=None,
                       help="image side in pixels (cxr 64..1024; default: the kind's default, 128 for cxr)")
        p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> same bytes (default 0)")
        p.add_argument("--temporal", action="store_true",
                       help="give studies a prior of the same patient with change labels (cxr)")
        p.add_argument("--test-fraction", type=float, default=0.1,
                       help="fraction of patients in the test split (default 0.1)")
        p.add_argument("--format", choices=("png", "dicom"), default="png",
                       help="2D image files: PNG or DICOM (CT always writes NIfTI plus a DICOM series)")
        p.add_argument("--workers", type=int, default=1, help="worker processes (output does not depend on it)")
        p.add_argument("--prevalence", type=_prevalence, action="append", default=[], metavar="FINDING=P",
                       help="probability that a finding is present; repeatable, e.g. --prevalence pneumothorax=0.3")
        if kind == "cxr":
            p.add_argument("--report-style", choices=("structured", "free"), default="structured",
                           help="structured: findings sentences in a radiologist's reading order (tubes, lungs, pleura, "
                                "heart, bones); free: the same sentences shuffled (default structured)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace --out if it is an existing synthetic dataset (has dataset.json)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser("preview", help="draw a contact sheet of a dataset's studies with their labels",
                       description="Draw the first studies of a dataset (prior beside current) with their labels.")
    p.add_argument("dataset", help="dataset folder written by `medvlm synth <kind>`")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--n", type=int, default=16, help="number of studies to draw (default 16)")
    p.add_argument("--tile", type=int, default=192, help="height of each image on the sheet in pixels (default 192)")
    p = sub.add_parser(
        "oracle", help="the ceiling of the report metrics on a cxr dataset's test set (a perfect reader)",
        description="Score a perfect reader on the test studies of a `medvlm synth cxr` dataset: it knows the truth "
                    "but not the generator's chance wording, so it simulates reports and answers with each metric's "
                    "Bayes decision (medvlm.synth.oracle). Two readers: one that knows the current and the prior "
                    "study and the change (pair), one that knows the current image and, as the report prompt says, whether there is a prior, but not what it showed (current). Their "
                    "temporal F1 gap is the most a prior image can add.")
    p.add_argument("dataset", help="dataset folder written by `medvlm synth cxr` (with --temporal for temporal F1)")
    p.add_argument("--draws", type=int, default=64, help="simulated reports per study (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _oracle(args: argparse.Namespace) -> int:
    from medvlm.fileio import atomic_write_json
    from medvlm.synth.oracle import oracle_scores

    if args.draws < 1:
        print(f"medvlm synth oracle: error: --draws must be at least 1, got {args.draws}", file=sys.stderr)
        return 2
    try:
        scores = oracle_scores(args.dataset, draws=args.draws, seed=args.seed, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"medvlm synth oracle: error: {exc}", file=sys.stderr)
        return 2
    keys = ("temporal_f1", "temporal_f1_studies_with_prior", "clinical_micro_f1_14", "clinical_micro_f1_5")
    print(f"\n{'reader knows':<24}" + "".join(f"{k:>32}" for k in keys))
    for level, row in scores.items():
        print(f"{level:<24}" + "".join(f"{row[k]:>32.4f}" for k in keys))
    gain = scores["pair"]["temporal_f1"] - scores["current"]["temporal_f1"]
    print(f"most the prior can add to temporal F1: {gain:+.4f} ({scores['pair']['studies']} test studies, "
          f"{args.draws} draws each)")
    if args.json:
        atomic_write_json(args.json, {"dataset": str(args.dataset), "draws": args.draws, "seed": args.seed,
                                      "scores": scores})
        print(f"wrote {args.json}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.synth_command == "oracle":
        return _oracle(args)
    if args.synth_command == "preview":
        from medvlm.synth.preview import write_preview

        path = write_preview(args.dataset, args.out, n=args.n, tile_px=args.tile)
        print(f"wrote {path}")
        return 0

    from medvlm.synth.dataset import write_dataset

    start = time.perf_counter()
    config = None
    if args.synth_command == "cxr":
        from medvlm.synth.cxr import CXRConfig

        config = CXRConfig(report_style=args.report_style)
    try:
        summary = write_dataset(
            args.out, args.synth_command, args.n, config=config, seed=args.seed, size_px=args.size, temporal=args.temporal or None,
            prevalence=dict(args.prevalence) or None, test_fraction=args.test_fraction, image_format=args.format,
            workers=args.workers, overwrite=args.overwrite, progress=not args.quiet,
        )
    except (ValueError, FileExistsError) as exc:  # bad options: say what is wrong, no traceback
        print(f"medvlm synth {args.synth_command}: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    card = summary.card
    print(f"\nwrote {summary.out} ({card['kind']}, seed {card['seed']}) in {seconds:.1f} s "
          f"({card['counts']['studies'] / max(seconds, 1e-9):.0f} studies/s)")
    rows = [(k, str(v)) for k, v in card["counts"].items()]
    rows += [(f"prevalence {k}", f"{v:.3f}") for k, v in card["prevalences"].items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0
