"""How fast the synthetic benchmark is made: studies per second for each kind, in process and written to disk.

For each kind it measures, in this process:
  generate   drawing studies in memory (images, masks, report, questions), one core;
  baseline   the same number of uniform-noise images of the same shape encoded as PNG and written (the floor
             any image dataset writer pays);
  write      the whole write path (`write_dataset`: images, masks, train.json, test.jsonl, labels.jsonl, card)
             with --workers processes,
and prints a table with the ratio generate/baseline and the projected seconds for 10,000 studies.
Goal: 10,000 CXR studies at 128 px with reports and questions in under 60 s on 2 cores.

  python benchmarks/synth_speed.py [--n 1000] [--workers 2] [--kinds cxr,derm,path,ct] [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medvlm.synth.dataset import generate_one, load_generator, write_dataset

SIZES = {"cxr": 128, "derm": 128, "path": 128, "ct": 64}


def _baseline(shape: tuple[int, ...], n_images: int, folder: Path) -> float:
    """Seconds to draw n uniform-noise uint8 images of `shape` and write each as PNG (2D) or PNG slices (3D)."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(n_images):
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        planes = pixels if pixels.ndim == 3 and pixels.shape[-1] != 3 else [pixels]
        for j, plane in enumerate(planes):
            buffer = io.BytesIO()
            Image.fromarray(plane).save(buffer, format="PNG", compress_level=1)
            (folder / f"{i}_{j}.png").write_bytes(buffer.getvalue())
    return time.perf_counter() - start


def measure(kind: str, n: int, workers: int, temporal: bool, root: Path) -> dict[str, float | str]:
    _, config_class = load_generator(kind)
    options = {"size_px": SIZES[kind]}
    if temporal:
        options["temporal"] = True
    config = config_class(**options)
    n_gen = max(10, n // 4)
    generate_one(kind, 0, config=config)  # warm caches and imports
    start = time.perf_counter()
    images = 0
    shape = None
    for i in range(n_gen):
        study = generate_one(kind, i, config=config)
        images += len(study.images)
        shape = study.images[0].pixels.shape
    generate_s = time.perf_counter() - start
    base_dir = Path(tempfile.mkdtemp(dir=root, prefix=f"baseline-{kind}-"))
    baseline_s = _baseline(shape, images, base_dir)
    shutil.rmtree(base_dir)
    out = root / f"{kind}{'-temporal' if temporal else ''}"
    start = time.perf_counter()
    write_dataset(out, kind, n, config=config, workers=workers, progress=False)
    write_s = time.perf_counter() - start
    shutil.rmtree(out)
    return {
        "kind": kind + (" temporal" if temporal else ""),
        "size": "x".join(str(s) for s in shape),
        "generate/s": n_gen / generate_s,
        "ms/study": 1000 * generate_s / n_gen,
        "baseline/s": n_gen / baseline_s,
        "gen/base": generate_s / baseline_s,
        "write/s": n / write_s,
        "10k s": 10000 * write_s / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="studies written per kind (default 2000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default="cxr,derm,path,ct")
    parser.add_argument("--quick", action="store_true", help="n=200: a short check")
    args = parser.parse_args()
    n = 200 if args.quick else args.n
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            n_kind = n if kind != "ct" else max(10, n // 100)  # CT writes a NIfTI and a DICOM series per study
            rows.append(measure(kind, n_kind, args.workers, False, Path(tmp)))
            if kind == "cxr":
                rows.append(measure(kind, n_kind, args.workers, True, Path(tmp)))
    load = os.getloadavg()[0]
    print(f"\nsynthetic benchmark speed (workers={args.workers}, {os.cpu_count()} CPUs, load average {load:.1f})")
    header = list(rows[0])
    print("  ".join(f"{h:>13}" for h in header))
    for row in rows:
        print("  ".join(f"{v:>13.1f}" if isinstance(v, float) else f"{v:>13}" for v in row.values()))
    print("generate/s, baseline/s: one core in process; gen/base: time ratio to writing noise PNGs of the same "
          "shape; write/s and '10k s': the full write path with --workers processes")


if __name__ == "__main__":
    main()
