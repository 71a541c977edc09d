"""Score model outputs: generated reports, VQA answers, classification, segmentation, continual learning.

sub-verbs (each writes metrics JSON with --out and prints a summary table; `--html` writes a self-contained
HTML report; `--bootstrap N --seed S` adds 95% percentile bootstrap CIs):
  report     BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D, BERTScore (all-MiniLM-L6-v2), clinical F1 (14 / 5
             CheXpert observations, offline labeler), temporal entity F1, on a 0-1 scale (CIDEr-D its own)
  vqa        MSLoRA-CR's scorer (exact match, open token F1 / precision / recall, NLTK BLEU, closed accuracy),
             LLaVA-Med's closed accuracy and open recall, strict closed accuracy; 0-1 scale (papers print x100)
  cls        accuracy, balanced accuracy, AUROC, precision / recall / F1 with --average; multi-label too
  seg        Dice and IoU per class and their means, from mask files or folders (PNG, DICOM, NIfTI, npy)
  continual  average accuracy, backward / forward transfer, forgetting, from an accuracy matrix R[i][j]

Answers files (report, vqa) are any form `medvlm validate` reads: medvlm / LLaVA answers, LLaVA-Rad's
{id, query, reference, prediction}, MSLoRA-CR's {question_id, prompt, text, gt, answer_type}. References come
from the answers, or from --references QUESTIONS.jsonl joined by id.

examples:
  medvlm evaluate report --answers answers.jsonl --out metrics.json --csv per_sample.csv --bootstrap 1000
  medvlm evaluate report --answers answers.jsonl --references test.jsonl --out m.json --no-bertscore --html r.html
  medvlm evaluate vqa --answers answer-file.jsonl --out vqa.json
  medvlm evaluate cls --predictions preds.csv --labels labels.csv --average macro --out cls.json
  medvlm evaluate seg --predictions pred_masks/ --targets true_masks/ --out seg.json
  medvlm evaluate continual --matrix R.csv --baseline base.json --out cl.json
"""

from __future__ import annotations

import argparse
import sys


def _common_outputs(parser: argparse.ArgumentParser, *, csv_help: str | None, bootstrap: bool = True) -> None:
    parser.add_argument("--out", default=None, help="write the metrics as JSON to this file")
    if csv_help:
        parser.add_argument("--csv", default=None, help=csv_help)
    parser.add_argument("--html", default=None,
                        help="write a self-contained HTML report (metrics table, charts, worst and best examples)")
    if bootstrap:
        parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                            help="add 95%% CIs from N percentile-bootstrap resamples of the samples (0: none; "
                                 "1000 is usual)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="evaluate_command", metavar="{report,vqa,cls,seg,continual}", required=True)

    p = sub.add_parser("report", help="report-generation metrics (NLG, METEOR, BERTScore, clinical, temporal)",
                       description="Score generated reports against references. Every metric is on a 0-1 scale "
                                   "except CIDEr-D. BERTScore uses the packaged all-MiniLM-L6-v2 model: its numbers "
                                   "are not comparable with papers' roberta-large BERTScore.")
    p.add_argument("--answers", required=True, help="answers file (JSONL or JSON list) with the generated reports")
    p.add_argument("--references", default=None,
                   help="questions file holding the reference reports, joined to the answers by id "
                        "(default: references inside the answers file)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    p.add_argument("--no-bertscore", action="store_true", help="skip BERTScore (it runs a MiniLM model)")
    _common_outputs(p, csv_help="write per-sample rows (id, prediction, reference, per-sample scores) to this CSV")

    p = sub.add_parser("vqa", help="VQA answers: MSLoRA-CR's and LLaVA-Med's scorers, strict closed accuracy",
                       description="Score VQA answers. OPEN / CLOSED come from each answer's (or question's) "
                                   "answer_type; none means OPEN, as in MSLoRA-CR. Values are fractions (x100 for "
                                   "the papers' tables).")
    p.add_argument("--answers", required=True, help="answers file (JSONL or JSON list)")
    p.add_argument("--references", default=None,
                   help="questions file with the reference answers and answer types, joined by id "
                        "(default: references inside the answers file, e.g. MSLoRA-CR's `gt`)")
    _common_outputs(p, csv_help="write per-answer rows (id, prediction, reference, scores) to this CSV")

    p = sub.add_parser("cls", help="classification: accuracy, balanced accuracy, AUROC, F1",
                       description="Score class predictions. Rows (JSONL / JSON list / CSV): id, label, prediction "
                                   "and/or scores ({class: score} in JSON, score_<class> columns in CSV). "
                                   "Multi-label: a list of classes per row (CSV: classes joined by '|').")
    p.add_argument("--predictions", required=True, help="predictions file (JSONL, JSON list or CSV)")
    p.add_argument("--labels", default=None,
                   help="labels file (id, label) joined by id (default: the `label` of each prediction row)")
    p.add_argument("--average", choices=("macro", "micro", "weighted", "binary"), default="macro",
                   help="how precision / recall / F1 average over classes (default macro; binary: the positive "
                        "class of a two-class task)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class list (default: every class seen in labels, predictions, scores)")
    p.add_argument("--positive-class", default=None,
                   help="the positive class of a two-class task (default: the second of the sorted classes)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="multi-label: a label is predicted when its score >= this (used without predictions)")
    p.add_argument("--multilabel", action="store_true",
                   help="read CSV labels as '|'-separated class sets (JSON lists are detected)")
    _common_outputs(p, csv_help="write per-sample rows (id, prediction, label, correct) to this CSV")

    p = sub.add_parser("seg", help="segmentation: Dice and IoU per class",
                       description="Dice and IoU between predicted and true label masks. Both empty counts as a "
                                   "perfect 1.0 unless --exclude-empty.")
    p.add_argument("--predictions", required=True, help="predicted mask file, or a folder of them")
    p.add_argument("--targets", required=True, help="true mask file, or a folder with the same file names")
    p.add_argument("--classes", default=None,
                   help="comma-separated integer labels to score (default: labels found, background 0 excluded)")
    p.add_argument("--class-names", default=None, help="comma-separated names for --classes, used in metric keys")
    p.add_argument("--include-background", action="store_true", help="score label 0 as a class too")
    p.add_argument("--exclude-empty", action="store_true",
                   help="leave (case, class) pairs where both masks are empty out of the means (default: 1.0)")
    p.add_argument("--binary", action="store_true", help="read any non-zero value as class 1 (e.g. 0/255 PNG masks)")
    _common_outputs(p, csv_help="write per-case Dice / IoU rows to this CSV")

    p = sub.add_parser("continual", help="continual learning: ACC, BWT, forgetting, FWT",
                       description="Metrics of an accuracy matrix R[i][j] = accuracy on task j after training task "
                                   "i (GEM / Chaudhry et al. definitions; see medvlm.evaluate.continual).")
    p.add_argument("--matrix", required=True,
                   help="JSON (rows, or {tasks, matrix, baseline}) or CSV (header of task names, one row per stage)")
    p.add_argument("--baseline", default=None,
                   help="per-task accuracies without training on the task, for forward transfer: a JSON list or "
                        "CSV row file, or comma-separated numbers")
    _common_outputs(p, csv_help=None, bootstrap=False)


def _list(text: str | None, cast=str) -> list | None:
    return None if text is None else [cast(x.strip()) for x in text.split(",") if x.strip()]


def _baseline(text: str | None):
    if text is None:
        return None
    try:
        return [None if x.strip().lower() in ("", "null", "none") else float(x) for x in text.split(",")]
    except ValueError:
        return text  # a file


def run(args: argparse.Namespace) -> int:
    from medvlm.evaluate.report import summary_table

    command = args.evaluate_command
    try:
        if command == "report":
            from medvlm.evaluate.report import evaluate_report_file

            metrics = evaluate_report_file(args.answers, args.references, args.out, csv_path=args.csv,
                                           html_path=args.html, bootstrap=args.bootstrap, seed=args.seed,
                                           meteor=not args.no_meteor, bertscore=not args.no_bertscore)
        elif command == "vqa":
            from medvlm.evaluate.vqa import evaluate_vqa_file

            metrics = evaluate_vqa_file(args.answers, args.references, args.out, bootstrap=args.bootstrap,
                                        seed=args.seed, csv_path=args.csv, html_path=args.html)
        elif command == "cls":
            from medvlm.evaluate.classification import evaluate_classification_file

            metrics = evaluate_classification_file(
                args.predictions, args.labels, args.out, average=args.average, classes=_list(args.classes),
                positive_class=args.positive_class, threshold=args.threshold,
                multilabel=True if args.multilabel else None, bootstrap=args.bootstrap, seed=args.seed,
                csv_path=args.csv, html_path=args.html)
        elif command == "seg":
            from medvlm.evaluate.segmentation import evaluate_segmentation_files

            metrics = evaluate_segmentation_files(
                args.predictions, args.targets, args.out, classes=_list(args.classes, int),
                class_names=_list(args.class_names), include_background=args.include_background,
                empty="exclude" if args.exclude_empty else "one", binary=args.binary, bootstrap=args.bootstrap,
                seed=args.seed, csv_path=args.csv, html_path=args.html)
        else:
            from medvlm.evaluate.continual import evaluate_continual_file

            metrics = evaluate_continual_file(args.matrix, args.out, baseline=_baseline(args.baseline),
                                              html_path=args.html)
    except (ValueError, OSError) as error:
        print(f"medvlm evaluate {command}: error: {error}", file=sys.stderr)
        return 2
    print(summary_table(metrics))
    for path in (args.out, getattr(args, "csv", None), args.html):
        if path:
            print(f"wrote {path}")
    return 0
