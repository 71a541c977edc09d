"""Synthesise a chest X-ray benchmark, train the tiny preset (align, then finetune), answer the test
questions, score them beside two controls, and write OUT/report.html. `make demo` runs this.

Rerunning resumes every stage (data reused, training continued from its last checkpoint, answered
questions skipped); --fresh starts over.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medvlm.demo import DemoConfig

    d = DemoConfig()
    parser.add_argument("--out", default=d.out, help=f"output folder (default: {d.out})")
    parser.add_argument("--studies", type=int, default=d.studies,
                        help=f"synthetic CXR studies to generate; 10%% of patients form the test set (default: {d.studies})")
    parser.add_argument("--size", type=int, default=d.size_px, help=f"image size in pixels (default: {d.size_px})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of data and training (default: {d.seed})")
    parser.add_argument("--align-steps", type=int, default=d.align_steps,
                        help=f"optimizer steps of the align stage (default: {d.align_steps})")
    parser.add_argument("--epochs", type=float, default=d.finetune_epochs,
                        help=f"epochs of the finetune stage (default: {d.finetune_epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"training batch size (default: {d.batch_size})")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    parser.add_argument("--no-bertscore", action="store_true", help="skip BERTScore (MiniLM)")
    parser.add_argument("--workers", type=int, default=d.workers, help=f"processes for data synthesis (default: {d.workers})")
    parser.add_argument("--fresh", action="store_true", help="delete OUT first and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def run(args: argparse.Namespace) -> int:
    from medvlm.demo import DemoConfig, run_demo

    run_demo(DemoConfig(
        out=args.out, studies=args.studies, size_px=args.size, seed=args.seed, align_steps=args.align_steps,
        finetune_epochs=args.epochs, batch_size=args.batch_size, meteor=not args.no_meteor,
        bertscore=not args.no_bertscore, workers=args.workers, fresh=args.fresh, progress=not args.no_progress,
    ))
    return 0
