"""The `pretrained` preset: EfficientNet-Lite0 + mlp2x_gelu + SmolLM2-135M-Instruct by name, in Python and in a
train YAML (configs/pretrained_cxr.yaml).

Skips (with the pip command) where the packaged components are not installed. SmolLM2 comes from the shared
cache ($MEDVLM_CACHE or ~/.cache/medvlm): converted on the first run only (about a minute), then loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medvlm.api import load, save
from medvlm.config import build_config, config_to_dict, load_config
from medvlm.models import build_model
from medvlm.models.presets import PRESETS, PretrainedPresetConfig
from medvlm.models.pretrained import packaged_file
from medvlm.train.config import TrainConfig

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "pretrained_cxr.yaml"


@pytest.fixture(scope="module")
def small_pretrained():
    """The preset at 64 px (2 x 2 = 4 image tokens): the real weights, cheap to run."""
    for name in ("efficientnet-lite0", "smollm2-135m-instruct"):
        try:
            packaged_file(name)
        except ModuleNotFoundError as error:
            pytest.skip(str(error))
    torch.manual_seed(0)
    return build_model(PretrainedPresetConfig(image_size=64))


def test_the_preset_is_registered_and_its_options_round_trip_through_yaml_data():
    assert PRESETS["pretrained"] is PretrainedPresetConfig
    preset = PretrainedPresetConfig(image_size=128, feature_stages=[5, -1], max_length=512)
    assert build_config(PretrainedPresetConfig, config_to_dict(preset)) == preset
    assert not PretrainedPresetConfig.trains_tokenizer  # SmolLM2 keeps its own tokenizer: no texts needed


def test_the_recipe_file_selects_the_preset_with_lora_on_the_language_model():
    cfg = load_config(TrainConfig, RECIPE, ["model.preset_options.image_size=160"])
    assert cfg.model.preset == "pretrained" and cfg.model.preset_options == {"image_size": 160}
    assert (cfg.components.vision, cfg.components.connector, cfg.components.language) == ("frozen", "full", "lora")
    PretrainedPresetConfig(**cfg.model.preset_options)  # the options are fields of the preset


def test_build_by_name_composes_smollm2_with_its_tokenizer_and_a_token_grid_of_the_image_size(small_pretrained):
    model, processor = small_pretrained
    assert model.config.image_seq_length == 4 and processor.config.image_size == 64  # ceil(64 / 32) ** 2
    assert len(processor.tokenizer) == 49153  # SmolLM2's 49152 + <image>; no tokenizer was trained
    assert "<|im_start|>" in processor.tokenizer.chat_template
    assert model.config.vision_config.hidden_size == 1280


def test_a_preset_model_saves_and_loads_back_with_the_same_outputs(small_pretrained, tmp_path):
    model, processor = small_pretrained
    model.eval()
    sample = processor.encode([{"from": "human", "value": "<image>\nIs there an effusion?"},
                               {"from": "gpt", "value": "no"}], [np.full((64, 64), 128, dtype=np.uint8)])
    inputs = {"input_ids": torch.tensor([sample.input_ids]), "pixel_values": sample.pixel_values}
    with torch.no_grad():
        before = model(**inputs).logits
    save(model, processor, tmp_path / "model")
    loaded, loaded_processor = load(tmp_path / "model")
    with torch.no_grad():
        after = loaded(**inputs).logits
    assert loaded_processor.config.image_size == 64 and loaded.config.image_seq_length == 4
    assert torch.allclose(before, after, atol=1e-5)


def test_a_train_yaml_with_the_preset_runs_two_lora_steps(small_pretrained, tiny_cxr, tmp_path):
    from medvlm.train import train

    out = tmp_path / "run"
    cfg = load_config(TrainConfig, RECIPE, [
        f"data.train={tiny_cxr / 'train.json'}", f"data.image_folder={tiny_cxr}", f"run.output_dir={out}",
        "model.preset_options.image_size=64", "optim.batch_size=1", "optim.max_steps=2", "data.max_length=96", "run.progress=false",
        "run.tensorboard=false", "run.log_every_steps=1",
    ])
    result = train(cfg)
    assert result.steps == 2 and torch.isfinite(torch.tensor(result.train_loss))
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(r for r in rows if r["kind"] == "start")
    assert 0 < start["trainable_params"] < 10_000_000  # connector + LoRA, not the 135M language model
    model, processor = load(result.model_dir)
    assert processor.config.image_size == 64 and len(processor.tokenizer) == 49153
