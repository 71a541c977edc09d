"""`predict` with questions batched by answer type (the default) against file order, on a trained demo model.

A batch generates until its longest answer ends. In the demo's test file every study's report question comes
before its yes/no and short open questions, so in file order almost every batch holds a report and runs to the
report's length; batched by answer type, only the report batches do. The figure needs a model that stops
(a random one runs every answer to max_new_tokens), so this reads `make demo`'s output folder.

    make demo && .venv/bin/python benchmarks/predict_grouping_speed.py [--demo demo_out] [--rounds 2]

Rounds alternate the two orders so that machine load hits both alike; prints the median seconds of each and
their ratio, and checks that both give every question the same answer.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo_out", help="a `medvlm demo` output folder (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each order (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="as the demo (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="as the demo (default: %(default)s)")
    args = parser.parse_args()

    import medvlm
    from medvlm.infer.options import GenerationOptions
    from medvlm.infer.predict import predict
    from medvlm.records import load_answers, load_questions

    demo = Path(args.demo)
    questions = list(load_questions(demo / "data" / "test.jsonl"))
    model, processor = medvlm.load(demo / "finetune" / "model")
    options = GenerationOptions(max_new_tokens=args.max_new_tokens)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    answers: dict[bool, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for grouped in (False, True):
                out = Path(tmp) / f"{round_}-{grouped}.jsonl"
                start = time.perf_counter()
                predict(model, processor, questions, out, image_folder=demo / "data", batch_size=args.batch_size,
                        options=options, progress=False, group_by_answer_type=grouped)
                seconds[grouped].append(time.perf_counter() - start)
                answers[grouped] = {a.question_id: a.text for a in load_answers(out)}
    assert answers[True] == answers[False], "the two orders gave different answers"
    kinds = sorted({str(q.answer_type) for q in questions})
    file_order, by_type = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"{len(questions)} questions ({', '.join(kinds)}), batch {args.batch_size}, max {args.max_new_tokens} "
          "new tokens; same answers: checked")
    print(f"file order     {file_order:6.1f} s  {seconds[False]}")
    print(f"by answer type {by_type:6.1f} s  {seconds[True]}")
    print(f"speed-up x{file_order / by_type:.2f}")


if __name__ == "__main__":
    main()
