"""`merge_adapter` / `medvlm merge`: the PEFT adapter medvlm training writes loads in PEFT itself, and merging it
into the base gives a plain medvlm model with the logits of base + adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PeftModel

from medvlm.api import load, save
from medvlm.cli import main
from medvlm.interop import AdapterMergeError, merge_adapter
from medvlm.train import components
from medvlm.train.config import ComponentsConfig, TrainConfig


@pytest.fixture
def trained_adapter(compose, tmp_path):
    """A base model folder and the adapter a LoRA finetune of it writes (LoRA on the LM, connector in full),
    with weights moved away from their start so that the adapter changes the output."""
    model, processor = compose()
    save(model, processor, tmp_path / "base")
    cfg = TrainConfig(components=ComponentsConfig(vision="frozen", connector="full", language="lora"))
    peft_model = components.apply(model, cfg)
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:  # lora_A / lora_B and the connector's trained copy
                param.add_(torch.randn_like(param) * 0.05)
    peft_model.save_pretrained(tmp_path / "adapter")  # what components.export writes to RUN/adapter
    return tmp_path / "base", tmp_path / "adapter"


def _logits(model, processor):
    image = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    sample = processor.encode_prompt("Is there an effusion?", [image])
    with torch.no_grad():
        return model(input_ids=torch.tensor([sample.input_ids]), pixel_values=sample.pixel_values).logits


def test_peft_loads_the_adapter_and_merging_keeps_its_logits(trained_adapter, tmp_path):
    base_dir, adapter_dir = trained_adapter
    base, processor = load(base_dir)
    base_logits = _logits(base, processor)
    with_adapter = PeftModel.from_pretrained(base, adapter_dir).eval()  # PEFT itself, no medvlm code between
    adapted_logits = _logits(with_adapter, processor)
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-3)  # the adapter matters

    merge_adapter(adapter_dir, base_dir, tmp_path / "merged")
    merged, merged_processor = load(tmp_path / "merged")
    assert not any("lora" in name for name in merged.state_dict())
    torch.testing.assert_close(_logits(merged, merged_processor), adapted_logits, atol=1e-5, rtol=0)


def test_cli_merge_and_its_errors(trained_adapter, tmp_path, capsys):
    base_dir, adapter_dir = trained_adapter
    assert main(["merge", str(adapter_dir), "--base", str(base_dir), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    # no --base, and the adapter names no local folder (the run started from a preset)
    assert main(["merge", str(adapter_dir), "--out", str(tmp_path / "x")]) == 1
    assert "--base" in capsys.readouterr().err
    assert main(["merge", str(base_dir), "--base", str(base_dir), "--out", str(tmp_path / "y")]) == 1
    assert "no adapter_config.json" in capsys.readouterr().err


def test_an_adapter_on_a_different_base_is_refused(trained_adapter, compose, tmp_path):
    _, adapter_dir = trained_adapter
    other, other_processor = compose(text_overrides={"hidden_size": 32, "intermediate_size": 64})
    save(other, other_processor, tmp_path / "other")
    with pytest.raises(AdapterMergeError, match="does not fit the base model"):
        merge_adapter(adapter_dir, tmp_path / "other", tmp_path / "merged")
