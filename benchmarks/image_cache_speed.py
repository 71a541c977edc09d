"""Data loading of the encoder stage with and without the in-memory image cache, as a ratio in the same run.

When the encoder trains, every epoch decodes and resizes every image again; `data.image_cache_mb` keeps the
preprocessed tensors after the first epoch (medvlm.data.processor.ImageCache). This times what a DataLoader with
no workers does for the encoder stage: `epochs` passes over a synthetic CXR set through
LabelledImageDataset + the collate function, interleaving the two processors epoch by epoch so that machine load
hits both alike, and checks that both give the same tensors. Also reports the seconds of the first (cold) pass.

    .venv/bin/python benchmarks/image_cache_speed.py [--studies 600] [--size 128] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=600, help="synthetic CXR studies (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="image side in px (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the images (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    args = parser.parse_args()

    from medvlm.data.processor import ImageCache
    from medvlm.models import build_model
    from medvlm.models.presets import TinyPresetConfig
    from medvlm.records import load_training
    from medvlm.synth.dataset import write_dataset
    from medvlm.train.encoder_stage import LabelledImageDataset, collate_labelled, report_label_targets

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cxr"
        write_dataset(data, "cxr", args.studies, seed=0, size_px=args.size, workers=2, progress=False)
        records = list(load_training(data / "train.json"))
        images = report_label_targets(records, report_task="report", uncertain="ignore", image_folder=data,
                                      record_file=data / "train.json")
        preset = TinyPresetConfig(image_size=args.size, patch_size=max(args.size // 4, 1), vision_stem="conv")
        _, plain = build_model(preset, texts=["a report"] * 4)
        _, cached = build_model(preset, tokenizer=plain.tokenizer)
        cached.image_cache = ImageCache(1 << 30)
        loaders = {name: torch.utils.data.DataLoader(LabelledImageDataset(images, processor),
                                                     batch_size=args.batch_size, collate_fn=collate_labelled)
                   for name, processor in (("cached", cached), ("plain", plain))}
        seconds = {"plain": [], "cached": []}
        for _ in range(args.epochs):
            epoch = {}
            for name, loader in loaders.items():
                start = time.perf_counter()
                epoch[name] = [batch["pixel_values"] for batch in loader]
                seconds[name].append(time.perf_counter() - start)
            assert all(torch.equal(a, b) for a, b in zip(epoch["plain"], epoch["cached"], strict=True))
    n = len(images.paths)
    print(f"{n} images of {args.size} px, {args.epochs} epochs, batch {args.batch_size} (same tensors: checked)")
    print(f"{'':10}{'first epoch s':>16}{'later epochs s':>18}{'ms / image later':>20}")
    for name, values in seconds.items():
        later = sum(values[1:]) / max(len(values) - 1, 1)
        print(f"{name:10}{values[0]:>16.2f}{later:>18.2f}{1000 * later / n:>20.3f}")
    plain_later = sum(seconds["plain"][1:]) / max(args.epochs - 1, 1)
    cached_later = sum(seconds["cached"][1:]) / max(args.epochs - 1, 1)
    print(f"later epochs: cache {plain_later / cached_later:.1f}x faster; whole run "
          f"{sum(seconds['plain']) / sum(seconds['cached']):.2f}x; cache holds {cached.image_cache.bytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
