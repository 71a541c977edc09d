"""Load and forward times of the `pretrained` composition: EfficientNet-Lite0 + mlp2x_gelu + SmolLM2-135M-Instruct.

    OMP_NUM_THREADS=1 python benchmarks/pretrained_speed.py [--first-load] [--text-tokens 64] [--repeats 3]

Prints: resolve times (with --first-load, into a fresh temporary cache: the GGUF file is dequantised, about a
minute; otherwise the shared cache), load times of each part, build_model time, parameter counts, and the forward
time of one 224 px image + a text prompt, as a ratio against the language model alone on the same number of
positions (the price of the image: encoder + connector + 49 extra positions are already in both).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from medvlm.models import build_model
from medvlm.models.pretrained import PRETRAINED, load_language_model, pretrained_compose_config, resolve


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    return min(timed(fn)[1] for _ in range(repeats))


def count(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-load", action="store_true", help="convert into a fresh temporary cache")
    parser.add_argument("--text-tokens", type=int, default=64, help="text tokens besides the 49 image tokens")
    parser.add_argument("--repeats", type=int, default=3, help="forward passes timed (the best is shown)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as fresh:
        cache = fresh if args.first_load else None
        for name in PRETRAINED:
            _, seconds = timed(lambda name=name: resolve(name, cache))
            print(f"resolve {name:<24} {seconds:7.2f} s {'(first load)' if args.first_load else '(cached)'}")
        (lm, _), lm_seconds = timed(lambda: load_language_model(cache_dir=cache))
        print(f"load smollm2 from cache          {lm_seconds:7.2f} s  {count(lm)} parameters")
        (model, processor), build_seconds = timed(lambda: build_model(pretrained_compose_config(cache)))
    print(f"build_model(pretrained)          {build_seconds:7.2f} s  total {count(model)}: vision {count(model.vision_tower)}"
          f", connector {count(model.connector)}, language model {count(model.language_model)}")

    model.eval()
    lm.eval()
    torch.manual_seed(0)
    image_tokens = model.config.image_seq_length
    pixels = torch.rand(1, 3, 224, 224) * 2 - 1
    input_ids = torch.randint(100, 40000, (1, args.text_tokens + image_tokens))
    input_ids[0, 4:4 + image_tokens] = model.config.image_token_id
    text_ids = torch.randint(100, 40000, input_ids.shape)
    with torch.inference_mode():
        composed = best_of(lambda: model(input_ids=input_ids, pixel_values=pixels), args.repeats)
        encoder = best_of(lambda: model.encode_images(pixels), args.repeats)
        lm_only = best_of(lambda: lm(input_ids=text_ids), args.repeats)
    positions = input_ids.shape[1]
    print(f"threads {torch.get_num_threads()}; one 224 px image + {args.text_tokens} text tokens = {positions} positions")
    print(f"  composed forward  {composed * 1000:7.0f} ms")
    print(f"  encoder alone     {encoder * 1000:7.0f} ms")
    print(f"  LM alone ({positions} pos) {lm_only * 1000:7.0f} ms   composed / LM alone = {composed / lm_only:.2f}")


if __name__ == "__main__":
    main()
