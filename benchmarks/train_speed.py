"""Training step speed of the tiny preset, as ratios against baselines measured in the same run.

1. medvlm's composed model vs transformers' LlavaForConditionalGeneration of the same sizes (same ViT, same
   2-layer GELU projector, same Llama), full training step (forward, backward, AdamW) on the same batches.
   Goal: medvlm at least as fast (ratio llava / medvlm >= 1).
2. The align stage (connector only, encoder and LM frozen) with cached encoder features vs running the
   encoder on decoded images every step. Goal >= 3x. Measured with the tiny preset, the demo's encoder and an
   8-layer, 256-wide ViT (larger relative to the LM, as the encoders the reference systems freeze there).
3. The finetune stage with batches grouped by length (data.group_by_length) vs in random order: mean seconds
   per step over the same number of batches of the demo's model and data mix (reports and multi-turn VQA).

    .venv/bin/python benchmarks/train_speed.py [--batch-size 16] [--batches 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _timed_interleaved(step_fns, batches, repeats: int) -> list[float]:
    """Median seconds per step of each step function, alternating them batch by batch so that load changes
    on a shared machine hit both alike (first pass is warm-up)."""
    for fn in step_fns:
        fn(batches[0])
    times = [[] for _ in step_fns]
    for _ in range(repeats):
        for b in batches:
            for i, fn in enumerate(step_fns):
                t = time.perf_counter()
                fn(b)
                times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


class _NoAccelerator:
    """What build_training_data needs of an Accelerator, for one process."""

    is_main_process = True

    def main_process_first(self):
        import contextlib

        return contextlib.nullcontext()


def _stage_setup(recipe: dict, args, data_dir: Path, preset_kwargs: dict, output_dir: str, cache: bool):
    """(model with its recipe's trainable parts, training data, seconds to build the data) for a tiny-preset run."""
    from medvlm.config import build_config
    from medvlm.train import components
    from medvlm.train.builders import build_model_and_processor, build_training_data
    from medvlm.train.config import TrainConfig

    cfg = build_config(TrainConfig, {
        **recipe,
        "model": {"preset": "tiny", "preset_options": {"image_size": args.size, **preset_kwargs}},
        "data": {"train": str(data_dir / "train.json"), "image_folder": str(data_dir)},
        "run": {"output_dir": output_dir, "cache_vision_features": cache, "progress": False},
    })
    torch.manual_seed(0)
    model, processor, records = build_model_and_processor(cfg)
    model = components.apply(model, cfg)
    t = time.perf_counter()
    data = build_training_data(cfg, model, processor, records, Path(output_dir), _NoAccelerator())
    return model, data, time.perf_counter() - t


def _llava_twin(model):
    """A LlavaForConditionalGeneration with medvlm model's sizes and weights."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    cfg = model.config
    llava_cfg = LlavaConfig(vision_config=cfg.vision_config.to_dict(), text_config=cfg.text_config.to_dict(),
                            image_token_index=cfg.image_token_id, projector_hidden_act="gelu",
                            vision_feature_layer=cfg.vision_feature_layer, vision_feature_select_strategy="default",
                            image_seq_length=cfg.image_seq_length)
    twin = LlavaForConditionalGeneration(llava_cfg)
    return twin


def compare_with_llava(args, data_dir: Path) -> tuple[float, float]:
    from medvlm.data.collator import collate
    from medvlm.data.dataset import TrainingDataset
    from medvlm.models.presets import TinyPresetConfig, build_model
    from medvlm.records import load_training
    from medvlm.train.recipe import token_loss_sum

    records = load_training(data_dir / "train.json")
    preset = TinyPresetConfig(image_size=args.size)
    model, processor = build_model(preset, texts=[t.value for r in records for t in r.conversations])
    dataset = TrainingDataset(records, processor, image_folder=data_dir, record_file=data_dir / "train.json")
    batches = [collate([dataset[i] for i in range(s, s + args.batch_size)], processor.tokenizer.pad_token_id)
               for s in range(0, args.batch_size * args.batches, args.batch_size)]
    twin = _llava_twin(model)

    def make_step(m):
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)

        def step(batch):
            logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       pixel_values=batch["pixel_values"], use_cache=False).logits
            loss, n = token_loss_sum(logits, batch["labels"])
            (loss / n).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    model.train()
    twin.train()
    medvlm_s, llava_s = _timed_interleaved([make_step(model), make_step(twin)], batches, args.repeats)
    return medvlm_s, llava_s


def compare_feature_cache(args, data_dir: Path, preset_kwargs: dict) -> tuple[float, float, float]:
    """(seconds/step without cache, with cache, one-time cache build) for the align stage."""
    from medvlm.train.recipe import token_loss_sum

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for cache in (False, True):
            model, data, build_s = _stage_setup({"recipe": "align"}, args, data_dir, preset_kwargs,
                                                f"{tmp}/run{int(cache)}", cache)
            loader = torch.utils.data.DataLoader(data.dataset, batch_size=args.batch_size, collate_fn=data.collate)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            it = iter(loader)
            times = []
            for i in range(args.batches * args.repeats + 1):
                t = time.perf_counter()
                batch = next(it)  # decoding and resizing images is part of what the cache saves
                labels = batch.pop("labels")
                loss, n = token_loss_sum(model(**batch, use_cache=False).logits, labels)
                (loss / n).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i:
                    times.append(time.perf_counter() - t)
            results.append((statistics.median(times), build_s))
    return results[0][0], results[1][0], results[1][1]


def compare_group_by_length(args, data_dir: Path, preset_kwargs: dict) -> tuple[float, float]:
    """Seconds per finetune step (cached features, connector + LM trained) over the same number of batches drawn
    in random order vs grouped by length (data.group_by_length); batches alternate between the two orders."""
    from medvlm.train.recipe import GlobalBatchSampler, token_loss_sum

    with tempfile.TemporaryDirectory() as tmp:
        finetune = {"recipe": "finetune", "components": {"vision": "frozen", "connector": "full", "language": "full"}}
        model, data, _ = _stage_setup(finetune, args, data_dir, preset_kwargs, f"{tmp}/run", True)
        n = len(data.dataset)
        orders = [GlobalBatchSampler(n, args.batch_size, 1, 0, seed=0),
                  GlobalBatchSampler(n, args.batch_size, 1, 0, seed=0, lengths=data.dataset.lengths())]
        count = args.batches * args.repeats
        batches = [[data.collate([data.dataset[i] for i in idx]) for idx in _first(iter(o), count)] for o in orders]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step(batch):
            batch = dict(batch)
            labels = batch.pop("labels")
            loss, tokens = token_loss_sum(model(**batch, use_cache=False).logits, labels)
            (loss / tokens).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step(batches[0][0])  # warm-up
        times: list[list[float]] = [[], []]
        for i in range(count):
            for which in (0, 1):
                t = time.perf_counter()
                step(batches[which][i])
                times[which].append(time.perf_counter() - t)
    return statistics.mean(times[0]), statistics.mean(times[1])


def _first(iterator, k: int) -> list:
    return [next(iterator) for _ in range(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="distinct batches per pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the batches")
    parser.add_argument("--size", type=int, default=64, help="image size (px)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from medvlm.synth.cxr import CXRConfig
    from medvlm.synth.dataset import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "cxr"
        n = max(80, args.batch_size * (args.batches * args.repeats + 2))
        write_dataset(data_dir, "cxr", n, seed=0, config=CXRConfig(size_px=args.size), progress=False)
        medvlm_s, llava_s = compare_with_llava(args, data_dir)
        rows = [("full step, tiny preset: medvlm", medvlm_s, ""),
                ("full step, tiny preset: transformers Llava", llava_s, f"llava / medvlm = {llava_s / medvlm_s:.2f}x")]
        big_encoder = {"vision_hidden_size": 256, "vision_layers": 8, "vision_heads": 8, "patch_size": 8}
        demo_encoder = {"patch_size": 16, "vision_stem": "conv", "vision_hidden_size": 128}  # medvlm demo's
        for name, kw in (("tiny preset", {}), ("demo encoder (conv-stem ViT, 128 wide)", demo_encoder),
                         ("large encoder (8x256 ViT)", big_encoder)):
            plain, cached, build = compare_feature_cache(args, data_dir, kw)
            rows.append((f"align step, {name}: encoder every step", plain, ""))
            rows.append((f"align step, {name}: cached features", cached,
                         f"speed-up {plain / cached:.2f}x (cache built once in {build:.1f} s)"))
        demo_model = {**demo_encoder, "connector_type": "findings"}
        plain, grouped = compare_group_by_length(args, data_dir, demo_model)
        rows.append(("finetune step, demo model: batches in random order", plain, "(mean over the same count)"))
        rows.append(("finetune step, demo model: grouped by length", grouped, f"speed-up {plain / grouped:.2f}x"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'s/step':>8}  ratio")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8.4f}  {note}")


if __name__ == "__main__":
    main()
