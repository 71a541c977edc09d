"""Batched `predict` (batch 16, left padding) against one question at a time, on the tiny preset.

    OMP_NUM_THREADS=1 python benchmarks/generate_speed.py [--questions 64] [--max-new-tokens 32]

Prints the seconds of each run and their ratio (goal: batched >= 4x faster). The model is the random-init tiny
preset (64 px ViT, mlp2x_gelu, 2-layer Llama), saved and loaded as a user would; images are synthetic.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import medvlm
from medvlm.api import save
from medvlm.infer.options import GenerationOptions
from medvlm.infer.predict import predict
from medvlm.models import build_model

TEXTS = ["The heart is enlarged. Small left pleural effusion.", "No pneumothorax. Is there a nodule? yes no",
         "Endotracheal tube tip 4 cm above the carina. Moderate pulmonary edema."] * 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, processor = build_model("tiny", texts=TEXTS)
        save(model, processor, root / "model")
        model, processor = medvlm.load(root / "model")
        rng = np.random.default_rng(0)
        rows = []
        for i in range(args.questions):
            Image.fromarray((rng.random((96, 80)) * 255).astype(np.uint8)).save(root / f"{i}.png")
            rows.append({"question_id": i, "image": f"{i}.png", "text": "Describe the findings." + " Be brief." * (i % 4)})
        questions = root / "questions.jsonl"
        questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
        options = GenerationOptions(max_new_tokens=args.max_new_tokens)

        seconds = {}
        for batch_size in (1, args.batch_size):
            out = root / f"answers_{batch_size}.jsonl"
            started = time.perf_counter()
            predict(model, processor, questions, out, batch_size=batch_size, options=options, progress=False)
            seconds[batch_size] = time.perf_counter() - started
        same = (root / "answers_1.jsonl").read_text() == (root / f"answers_{args.batch_size}.jsonl").read_text()

    print(f"questions: {args.questions}, max_new_tokens: {args.max_new_tokens}, torch threads: {torch.get_num_threads()}")
    print(f"one at a time : {seconds[1]:7.2f} s")
    print(f"batch of {args.batch_size:<5d}: {seconds[args.batch_size]:7.2f} s")
    print(f"speed-up      : {seconds[1] / seconds[args.batch_size]:7.2f}x (goal >= 4x); identical answers: {same}")


if __name__ == "__main__":
    main()
