"""Generate text for images and a prompt with HF `generate` (KV cache), greedy, beam search or sampling.

    texts = generate(model, processor, ["cxr.png"], "Describe the findings.", num_beams=3)
    texts = generate(model, processor, ["current.jpg"], prior="prior.jpg")     # a temporal (tac) model

The images are encoded once, spliced into the prompt embeddings, and `generate` runs from those embeddings, so
HF can expand the batch for beams / several samples per prompt whatever the number of images per prompt.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from medvlm.data.collator import collate
from medvlm.data.processor import EncodedSample, MedVLMProcessor
from medvlm.infer.options import GenerationOptions


def generate_samples(model, processor: MedVLMProcessor, samples: Sequence[EncodedSample],
                     options: GenerationOptions) -> list[list[str]]:
    """Encoded prompts -> for each, `num_return_sequences` texts. Batched with left padding.

    Runs in eval mode (no dropout) and gives the model back in the mode it came in (e.g. mid-training)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _generate(model, processor, samples, options)
    finally:
        model.train(was_training)


def _generate(model, processor: MedVLMProcessor, samples: Sequence[EncodedSample],
              options: GenerationOptions) -> list[list[str]]:
    batch = collate(samples, processor.tokenizer.pad_token_id, padding_side="left")
    device = model.device
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    pixel_values = batch.get("pixel_values")
    prior_present = batch.get("prior_present")
    inputs_embeds = model.embed_inputs(input_ids, pixel_values.to(device) if pixel_values is not None else None,
                                       prior_present=prior_present.to(device) if prior_present is not None else None)
    if options.seed is not None:
        torch.manual_seed(options.seed)
    with warnings.catch_warnings():
        # no_repeat_ngram_size applies to the generated text only (as in LLaVA, which also generates from embeddings)
        warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*inputs_embeds", category=UserWarning)
        generated = model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   **options.generate_kwargs())  # (batch * num_return_sequences, new tokens)
    texts = processor.batch_decode(generated)
    n = options.num_return_sequences
    return [texts[i * n:(i + 1) * n] for i in range(len(samples))]


def generate(
    model,
    processor: MedVLMProcessor,
    images: Sequence[str | os.PathLike | np.ndarray],
    prompt: str | None = None,
    *,
    prior: str | os.PathLike | np.ndarray | None = None,
    **options,
) -> list[str]:
    """Answer one prompt about `images` (paths or arrays; [] for text only). prompt None: images only (report
    generation with a model trained that way). prior: the prior study's image (Libra), with one current image in
    `images`; a pair model given no prior uses its missing-prior mode. options: GenerationOptions fields.
    -> num_return_sequences texts."""
    unknown = set(options) - {f.name for f in dataclasses.fields(GenerationOptions)}
    if unknown:
        raise TypeError(f"unknown generation options {sorted(unknown)}")
    sample = processor.encode_prompt(prompt, list(images), prior_image=prior)
    return generate_samples(model, processor, [sample], GenerationOptions(**options))[0]
