"""Language model: any transformers `AutoModelForCausalLM` (Llama, Qwen2, Phi3, Mistral, Gemma, GPT-2, ...).

Built from a config (random init) or loaded from a local directory; never a hub name (no network at run time).
The whole causal LM is kept, lm_head included, so PEFT and generation see an ordinary HF LM.
"""

from __future__ import annotations

import os

from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedConfig, PreTrainedModel


def load_text_config(path: str | os.PathLike) -> PreTrainedConfig:
    """The config of the causal LM saved in local directory `path`."""
    return AutoConfig.from_pretrained(os.fspath(path), local_files_only=True)


def build_language_model(text_config: PreTrainedConfig, path: str | os.PathLike | None = None) -> PreTrainedModel:
    """A causal LM: random init from `text_config`, or the weights saved in local directory `path`."""
    if path is None:
        return AutoModelForCausalLM.from_config(text_config)
    return AutoModelForCausalLM.from_pretrained(os.fspath(path), config=text_config, local_files_only=True)
