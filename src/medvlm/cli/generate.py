"""Generate text for one image (or several) and an optional prompt with a trained medvlm model.

Prints each generated text on its own line (--json: a JSON list). Decoding is greedy unless --do-sample or
--num-beams > 1. Without --prompt, the model sees only the image(s) (report generation, as trained that way).

examples:
  medvlm generate --model runs/tiny/final --image data/images/cxr_0001.png --prompt "Describe the findings."
  medvlm generate --model runs/tiny/final --image a.png --num-beams 3 --num-return-sequences 3
  medvlm generate --model runs/tiny/final --image a.png --do-sample --temperature 0.7 --top-p 0.9 --seed 0
  medvlm generate --model runs/libra-tiny/model --image current.jpg --prior prior.jpg   # temporal (tac) model

A temporal model (connector tac, pair_concat or pair_findings) given --image without --prior answers in its
missing-prior mode (the model config's missing_prior: Libra's dummy prior = the current image again, or a learned
embedding).
"""

from __future__ import annotations

import argparse
import json
import sys

from medvlm.infer.options import GenerationOptions

_DEFAULTS = GenerationOptions()


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Decoding options shared by `medvlm generate` and `medvlm predict` (GenerationOptions fields)."""
    group = parser.add_argument_group("decoding")
    group.add_argument("--max-new-tokens", type=int, default=_DEFAULTS.max_new_tokens,
                       help="most tokens to generate per answer (default: %(default)s)")
    group.add_argument("--do-sample", action="store_true", help="sample instead of greedy / beam search")
    group.add_argument("--temperature", type=float, default=_DEFAULTS.temperature,
                       help="sampling temperature, > 0 (default: %(default)s; only with --do-sample)")
    group.add_argument("--top-p", type=float, default=_DEFAULTS.top_p,
                       help="nucleus sampling: keep the smallest set of tokens with this total probability "
                            "(default: %(default)s; only with --do-sample)")
    group.add_argument("--top-k", type=int, default=_DEFAULTS.top_k,
                       help="sample among the k most likely tokens (default: %(default)s; only with --do-sample)")
    group.add_argument("--num-beams", type=int, default=_DEFAULTS.num_beams,
                       help="beam search width; 1 = no beam search (default: %(default)s)")
    group.add_argument("--length-penalty", type=float, default=_DEFAULTS.length_penalty,
                       help="beam search: > 1 favours longer, < 1 shorter answers (default: %(default)s)")
    group.add_argument("--no-repeat-ngram-size", type=int, default=_DEFAULTS.no_repeat_ngram_size,
                       help="forbid repeating any n-gram of this size; 0 = off (default: %(default)s)")
    group.add_argument("--seed", type=int, default=None, help="random seed for sampling (default: none)")
    group.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cpu)")


def options_from_args(args: argparse.Namespace, num_return_sequences: int = 1) -> GenerationOptions:
    return GenerationOptions(
        max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, num_beams=args.num_beams, length_penalty=args.length_penalty,
        num_return_sequences=num_return_sequences, no_repeat_ngram_size=args.no_repeat_ngram_size, seed=args.seed,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory written by `medvlm train` (or medvlm.api.save)")
    parser.add_argument("--image", action="append", default=[], metavar="PATH",
                        help="image file (PNG/JPEG/TIFF/BMP/DICOM); repeat for several images, in placeholder order")
    parser.add_argument("--prior", default=None, metavar="PATH",
                        help="the prior study's image, compared with the one current --image (temporal models, e.g. "
                             "tac; with a single-image connector the prior is read as a second image)")
    parser.add_argument("--prompt", default=None,
                        help="question or instruction; may hold <image> placeholders (default: images only)")
    parser.add_argument("--num-return-sequences", type=int, default=1,
                        help="texts to return (needs --do-sample or --num-beams >= this) (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of texts")
    add_generation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    import medvlm

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the command's output
    from medvlm.infer.generate import generate

    try:
        options = options_from_args(args, args.num_return_sequences)
        model, processor = medvlm.load(args.model, device=args.device)
        texts = generate(model, processor, args.image, args.prompt, prior=args.prior, **vars(options))
    except (ValueError, OSError) as error:  # bad input: a message naming the file / option, not a traceback
        print(f"medvlm generate: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(texts, ensure_ascii=False) if args.json else "\n".join(texts))
    return 0
