"""The `medvlm` command's malloc settings (medvlm/runtime.py) against glibc's defaults, as ratios.

Each round starts two fresh processes, one with MEDVLM_MALLOC_TUNING=0 (glibc's defaults) and one with the
settings, that train the demo's language model (the tiny preset's Llama: 2 layers of 128, vocabulary 902) with
the finetune loss and fused AdamW on a demo-like batch of 16 samples; each reports, over `--steps` steps after
a warm-up, minor page faults and kernel (system) time per step, wall time per step and peak resident memory.
The order alternates between rounds so that machine load hits both alike; the figures are medians.

    .venv/bin/python benchmarks/allocator_speed.py [--rounds 4] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys, time
import torch
from medvlm.runtime import keep_freed_memory
applied = keep_freed_memory()
sys.path.insert(0, {here!r})
from step_parts_speed import _demo_batch
from transformers import AutoConfig
from medvlm.models.language import build_language_model
from medvlm.train.recipe import labelled_loss_sums
torch.manual_seed(0)
lm = build_language_model(AutoConfig.for_model(
    "llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    intermediate_size=512, vocab_size=902, tie_word_embeddings=True)).train()
optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4, fused=True)
batch = _demo_batch(902, torch.Generator().manual_seed(0))
def step():
    sums, counts = labelled_loss_sums(lm, batch)
    (sums.sum() / counts.sum()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
for _ in range(5):
    step()
steps = {steps}
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
wall = (time.perf_counter() - start) / steps
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"applied": applied, "faults": (after.ru_minflt - before.ru_minflt) / steps,
                  "sys_ms": (after.ru_stime - before.ru_stime) / steps * 1000, "wall_ms": wall * 1000,
                  "maxrss_mb": after.ru_maxrss / 1024}}))
"""


def _child(setting: str, steps: int) -> dict:
    code = CHILD.format(here=str(Path(__file__).resolve().parent), steps=steps)
    env = {**os.environ, "MEDVLM_MALLOC_TUNING": setting}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="pairs of processes (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per process (default: %(default)s)")
    args = parser.parse_args()

    runs: dict[str, list[dict]] = {"0": [], "1": []}
    ratios = []
    for r in range(args.rounds):
        order = ("0", "1") if r % 2 == 0 else ("1", "0")
        pair = {setting: _child(setting, args.steps) for setting in order}
        for setting, result in pair.items():
            runs[setting].append(result)
        ratios.append(pair["0"]["wall_ms"] / pair["1"]["wall_ms"])
        print(f"round {r + 1}: defaults {pair['0']['wall_ms']:.1f} ms/step, settings {pair['1']['wall_ms']:.1f} ms/step",
              flush=True)
    if not all(result["applied"] for result in runs["1"]):
        print("note: the settings could not be applied here (not glibc?): both sides ran with the defaults")
    print(f"{'':10s} {'faults/step':>12s} {'sys ms/step':>12s} {'wall ms/step':>13s} {'peak RSS MB':>12s}")
    for setting, name in (("0", "defaults"), ("1", "settings")):
        med = {key: statistics.median(r[key] for r in runs[setting]) for key in ("faults", "sys_ms", "wall_ms", "maxrss_mb")}
        print(f"{name:10s} {med['faults']:12.0f} {med['sys_ms']:12.1f} {med['wall_ms']:13.1f} {med['maxrss_mb']:12.0f}")
    print(f"speed-up x{statistics.median(ratios):.2f} (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
