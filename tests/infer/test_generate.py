"""generate: greedy, beam search and sampling with the KV cache; images enter at prefill only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvlm.data.collator import collate
from medvlm.infer.generate import generate
from medvlm.infer.options import GenerationOptions

IMAGE = (np.random.default_rng(1).random((30, 20)) * 255).astype(np.uint8)


def test_greedy_is_repeatable_and_the_kv_cache_changes_nothing(loaded):
    model, processor = loaded
    first = generate(model, processor, [IMAGE], "Is there an effusion?", max_new_tokens=6)
    assert first == generate(model, processor, [IMAGE], "Is there an effusion?", max_new_tokens=6)
    assert len(first) == 1 and first[0]
    model.train()  # e.g. validation in the middle of training: no dropout while generating, mode given back
    assert generate(model, processor, [IMAGE], "Is there an effusion?", max_new_tokens=6) == first
    assert model.training
    model.eval()

    batch = collate([processor.encode_prompt("Is there an effusion?", [IMAGE])], processor.tokenizer.pad_token_id)
    with torch.no_grad():
        cached = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        recomputed = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6, use_cache=False)
    assert torch.equal(cached, recomputed)
    new_tokens = cached[0, batch["input_ids"].shape[1]:]
    assert processor.decode(new_tokens) == first[0]


def test_beam_search_returns_the_requested_number_of_answers(loaded):
    model, processor = loaded
    images = [IMAGE, IMAGE[::-1].copy()]
    texts = generate(model, processor, images, "<image> <image> Compare.", max_new_tokens=5,
                     num_beams=3, num_return_sequences=3)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    # plain HF generate gives the same beams when pixel_values are (batch, images_per_sample, C, H, W)
    batch = collate([processor.encode_prompt("<image> <image> Compare.", images)], processor.tokenizer.pad_token_id,
                    padding_side="left")
    pixel_values = batch.pop("pixel_values").unsqueeze(0)
    with torch.no_grad():
        sequences = model.generate(**batch, pixel_values=pixel_values, max_new_tokens=5, num_beams=3,
                                   num_return_sequences=3, do_sample=False)
    assert processor.batch_decode(sequences[:, batch["input_ids"].shape[1]:]) == texts
    assert len(generate(model, processor, images, None, max_new_tokens=4, num_beams=2, length_penalty=0.5,
                        no_repeat_ngram_size=2)) == 1


def test_sampling_is_repeatable_with_a_seed(loaded):
    model, processor = loaded
    options = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 1.0}
    a = generate(model, processor, [IMAGE], "Findings?", seed=1, num_return_sequences=2, **options)
    assert a == generate(model, processor, [IMAGE], "Findings?", seed=1, num_return_sequences=2, **options)
    assert a != generate(model, processor, [IMAGE], "Findings?", seed=2, num_return_sequences=2, **options)


def test_impossible_options_are_refused():
    with pytest.raises(ValueError, match="needs do_sample=True or num_beams >= 2"):
        GenerationOptions(num_return_sequences=2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        GenerationOptions(do_sample=True, temperature=0)


def test_a_tiny_model_learns_image_conditioned_answers_that_generate_returns():
    """End to end: masking, splicing and the generation prompt agree, so what is trained is what comes out."""
    from medvlm.models import TinyPresetConfig, build_model

    torch.manual_seed(0)
    answers = ["Small left pleural effusion.", "The heart is enlarged."]
    half_white, white = np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8)
    half_white[:, :32] = 255
    images = [half_white, white]
    model, processor = build_model(TinyPresetConfig(vision_layers=1, text_layers=1), texts=answers * 10)
    samples = [processor.encode([{"from": "human", "value": "<image>\nFindings?"}, {"from": "gpt", "value": a}], [im])
               for a, im in zip(answers, images, strict=True)]
    batch = collate(samples, processor.tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(80):  # 80 steps: both answers come out for seeds 0-5 (30 failed for some tokenizers)
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert [generate(model, processor, [im], "Findings?", max_new_tokens=12)[0] for im in images] == answers
