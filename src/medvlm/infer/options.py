"""GenerationOptions: decoding settings shared by `generate`, `predict` and their CLI verbs (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationOptions:
    """Decoding settings, with HF generate's meaning. seed: set torch's RNG before sampling, for repeatable samples.
    no_repeat_ngram_size counts n-grams of the generated text only, not of the prompt (as LLaVA does)."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    num_beams: int = 1
    length_penalty: float = 1.0
    num_return_sequences: int = 1
    no_repeat_ngram_size: int = 0
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if not self.do_sample and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences={self.num_return_sequences} needs do_sample=True or "
                             f"num_beams >= {self.num_return_sequences}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")

    def generate_kwargs(self) -> dict:
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
            "num_return_sequences": self.num_return_sequences,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "length_penalty": self.length_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # keep HF from warning about sampling settings that greedy / beam search ignore
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs
