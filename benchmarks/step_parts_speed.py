"""Parts of a training step, each against its baseline in the same run, as ratios.

  loss       the finetune loss from logits at every position (sample_loss_sums) vs only where a label follows
             (labelled_loss_sums, transformers' boolean logits_to_keep): forward + backward of the tiny preset's
             language model on demo-like batches (16 samples; reports ~100 tokens of which ~45 learned, VQA ~150
             of which ~12); the two losses are checked equal
  mask       the labelled-logits loss with the attention mask vs without it (the batch is right-padded, so causal
             attention alone hides the padding; labelled_loss_sums drops the mask then): same batches, losses equal
  adamw      one AdamW step over the tiny preset's parameters: foreach (torch's default) vs fused
  stem       forward + backward of the conv-stem encoder on 32 images of 128 px (32 px patches): a 3 x 3 stride-2
             first stage vs a 4 x 4 patchify one (vision_stem_patch=4)
  layout     the same encoder (3 x 3 first stage) with its stem's activations in the default (NCHW) layout vs
             channels-last, as ConvStem.forward now makes them

Rounds interleave baseline and candidate so that machine load hits both alike; the figure is the median ratio.

    .venv/bin/python benchmarks/step_parts_speed.py [--rounds 5] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _seconds(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _compare(name: str, baseline, candidate, rounds: int, repeats: int) -> None:
    baseline(), candidate()  # warm up
    pairs = [(_seconds(baseline, repeats), _seconds(candidate, repeats)) for _ in range(rounds)]
    base = statistics.median(b for b, _ in pairs)
    cand = statistics.median(c for _, c in pairs)
    ratio = statistics.median(b / c for b, c in pairs)
    print(f"{name:6s} baseline {base * 1000:7.2f} ms  candidate {cand * 1000:7.2f} ms  speed-up x{ratio:.2f}")


def _demo_batch(vocab: int, generator: torch.Generator) -> dict:
    """8 reports (100 tokens, the last 45 learned) and 8 VQA samples (150 tokens, 4 answers of 3 learned)."""
    width = 150
    ids = torch.randint(5, vocab, (16, width), generator=generator)
    labels = torch.full((16, width), -100)
    mask = torch.zeros(16, width, dtype=torch.long)
    for row in range(8):
        mask[row, :100] = 1
        labels[row, 55:100] = ids[row, 55:100]
    for row in range(8, 16):
        mask[row] = 1
        for start in (40, 70, 100, 130):
            labels[row, start : start + 3] = ids[row, start : start + 3]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="calls per round and side (default: %(default)s)")
    args = parser.parse_args()

    from transformers import AutoConfig

    from medvlm.models.conv_vit import ConvStemViTConfig, ConvStemViTModel
    from medvlm.models.language import build_language_model
    from medvlm.train.recipe import labelled_loss_sums, sample_loss_sums

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    lm = build_language_model(AutoConfig.for_model(
        "llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=512, vocab_size=902, tie_word_embeddings=True)).train()  # the demo's language model
    batch = _demo_batch(902, generator)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def full():
        sums, counts = sample_loss_sums(lm(**inputs, use_cache=False).logits, batch["labels"])
        (sums.sum() / counts.sum()).backward()

    import medvlm.train.recipe as recipe

    drops_mask = recipe.right_padded

    def labelled(drop_mask: bool):
        def run():
            recipe.right_padded = drops_mask if drop_mask else (lambda mask: False)
            try:
                sums, counts = labelled_loss_sums(lm, batch)
            finally:
                recipe.right_padded = drops_mask
            (sums.sum() / counts.sum()).backward()
        return run

    with torch.no_grad():
        a = sample_loss_sums(lm(**inputs, use_cache=False).logits, batch["labels"])[0]
        b = labelled_loss_sums(lm, batch)[0]
    torch.testing.assert_close(a, b)
    learned = int((batch["labels"][:, 1:] != -100).sum())
    print(f"loss on 16 samples of <= 150 tokens, {learned} learned positions of {int(batch['attention_mask'].sum())}")
    _compare("loss", full, labelled(False), args.rounds, args.repeats)
    _compare("mask", labelled(False), labelled(True), args.rounds, args.repeats)

    params = [p for p in lm.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    foreach = torch.optim.AdamW(params, lr=1e-4)
    fused = torch.optim.AdamW(params, lr=1e-4, fused=True)
    print(f"adamw over {sum(p.numel() for p in params):,} parameters in {len(params)} tensors")
    _compare("adamw", foreach.step, fused.step, args.rounds, args.repeats * 5)

    pixels = torch.rand(32, 3, 128, 128)
    stems = {}
    for stem_patch in (2, 4):
        config = ConvStemViTConfig(image_size=128, patch_size=32, hidden_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=512, stem_patch=stem_patch)
        stems[stem_patch] = ConvStemViTModel(config).train()
    print("stem: 32 images of 128 px, 32 px patches, encoder forward + backward")
    _compare("stem", lambda: stems[2](pixel_values=pixels).last_hidden_state.sum().backward(),
             lambda: stems[4](pixel_values=pixels).last_hidden_state.sum().backward(), args.rounds, args.repeats)

    from medvlm.models.conv_vit import ConvStem

    channels_last = ConvStem.forward
    stem = stems[2].embeddings.patch_embeddings.projection
    contiguous = lambda self, x: self.proj(self.convs(x.contiguous()))  # noqa: E731

    def encoder_with(forward):
        def run():
            ConvStem.forward = forward
            stems[2](pixel_values=pixels).last_hidden_state.sum().backward()
        return run

    with torch.no_grad():
        torch.testing.assert_close(contiguous(stem, pixels), channels_last(stem, pixels), atol=1e-4, rtol=1e-4)
    print("layout: the same encoder, stem activations NCHW vs channels-last")
    try:
        _compare("layout", encoder_with(contiguous), encoder_with(channels_last), args.rounds, args.repeats)
    finally:
        ConvStem.forward = channels_last


if __name__ == "__main__":
    main()
