"""The convolutional-stem ViT (`vision_stem="conv"` of the tiny preset): same token grid as a ViT, its own
config saved and loaded, trainable end to end."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

import medvlm
from medvlm.api import save
from medvlm.data.collator import collate
from medvlm.models import TinyPresetConfig, build_model
from medvlm.models.conv_vit import ConvStemViTConfig, ConvStemViTModel


def _small(**overrides) -> ConvStemViTConfig:
    settings = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                    intermediate_size=64)
    return ConvStemViTConfig(**{**settings, **overrides})


def test_the_stem_gives_the_vits_token_grid():
    config = _small()
    assert config.stem_channels == [16, 32, 64]  # 2 ** 3 = patch 8
    model = ConvStemViTModel(config).eval()
    hidden = model(pixel_values=torch.rand(2, 3, 32, 32)).last_hidden_state
    assert hidden.shape == (2, 1 + 16, 32)  # CLS + a 4 x 4 grid, as transformers' ViT with 8 px patches


def test_stem_depth_adds_stride_one_convolutions_per_stage():
    model = ConvStemViTModel(_small(stem_depth=2)).eval()
    convs = [m for m in model.embeddings.patch_embeddings.projection.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 2, 1]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64]
    assert model(pixel_values=torch.rand(1, 3, 32, 32)).last_hidden_state.shape == (1, 17, 32)  # same grid
    with pytest.raises(ValueError, match="stem_depth=0"):
        _small(stem_depth=0)
    with pytest.raises(ValueError, match="need vision_stem='conv'"):
        TinyPresetConfig(vision_stem_depth=2).compose_config()


def test_the_tiny_preset_passes_stem_channels_on():
    vision = TinyPresetConfig(image_size=128, patch_size=32, vision_stem="conv",
                              vision_stem_channels=[8, 16, 32, 64, 128]).compose_config().vision
    assert vision["stem_channels"] == [8, 16, 32, 64, 128]
    with pytest.raises(ValueError, match="need vision_stem='conv'"):
        TinyPresetConfig(vision_stem_channels=[8, 16, 32]).compose_config()


def test_a_patchify_first_stage_skips_the_full_resolution_stages():
    config = _small(stem_patch=4)  # 4 x 4 patches of stride 4, then one stride-2 stage: patch 8
    assert config.stem_channels == [16, 32]
    model = ConvStemViTModel(config).eval()
    convs = [m for m in model.embeddings.patch_embeddings.projection.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [(4, 4, 0), (3, 2, 1)]
    assert model(pixel_values=torch.rand(2, 3, 32, 32)).last_hidden_state.shape == (2, 17, 32)  # the same grid
    assert ConvStemViTModel(_small(stem_patch=8)).config.stem_channels == [16]  # one 8 x 8 patchify stage
    vision = TinyPresetConfig(image_size=128, patch_size=32, vision_stem="conv", vision_stem_patch=4).compose_config().vision
    assert vision["stem_patch"] == 4
    for bad in (3, 1, 16):
        with pytest.raises(ValueError, match=f"stem_patch={bad}: give a power of two from 2 to patch_size"):
            _small(stem_patch=bad)
    with pytest.raises(ValueError, match="give 2 positive channel counts"):
        _small(stem_patch=4, stem_channels=[8, 16, 32])
    with pytest.raises(ValueError, match="vision_stem_patch need vision_stem='conv'"):
        TinyPresetConfig(vision_stem_patch=4).compose_config()


def test_a_patch_size_the_stem_cannot_reach_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        _small(patch_size=12)
    with pytest.raises(ValueError, match="give 3 positive channel counts"):
        _small(stem_channels=[8, 16])


def test_save_and_auto_load_keep_the_stem_and_its_batch_norm_statistics(tmp_path):
    model = ConvStemViTModel(_small())
    model.train()
    model(pixel_values=torch.rand(4, 3, 32, 32))  # moves the batch norm running statistics
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ConvStemViTModel)
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).last_hidden_state,
                                   model(pixel_values=pixels).last_hidden_state, rtol=0, atol=0)


def test_tiny_preset_with_a_conv_stem_learns_through_its_stem_and_round_trips(tmp_path):
    preset = TinyPresetConfig(image_size=32, patch_size=8, vision_stem="conv", vision_hidden_size=32,
                              text_hidden_size=64, vocab_size=300)
    model, processor = build_model(preset, texts=["The heart is enlarged. No effusion."] * 20)
    assert model.config.vision_config.model_type == "medvlm_conv_vit"
    conversation = [{"from": "human", "value": "<image>\nFindings?"}, {"from": "gpt", "value": "enlarged"}]
    image = (torch.rand(40, 30) * 255).to(torch.uint8).numpy()
    batch = collate([processor.encode(conversation, [image])] * 2, processor.tokenizer.pad_token_id)
    model(**batch).loss.backward()
    stem = model.vision_tower.model.embeddings.patch_embeddings.projection
    assert stem.convs[0].weight.grad is not None and stem.convs[0].weight.grad.abs().sum() > 0
    model.eval()
    save(model, processor, tmp_path)
    loaded, _ = medvlm.load(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)


def test_an_unknown_stem_is_refused():
    with pytest.raises(ValueError, match="vision_stem='resnet'"):
        build_model(TinyPresetConfig(vision_stem="resnet"), texts=["a b c"] * 5)


def test_a_one_channel_tiny_preset_reads_gray_images_as_they_are(tmp_path):
    import numpy as np

    preset = TinyPresetConfig(image_size=32, patch_size=8, vision_stem="conv", vision_hidden_size=32,
                              text_hidden_size=64, vocab_size=300, image_channels=1)
    model, processor = build_model(preset, texts=["The heart is enlarged. No effusion."] * 20)
    assert processor.config.num_channels == 1 and model.config.vision_config.num_channels == 1
    stem = model.vision_tower.model.embeddings.patch_embeddings.projection
    assert stem.convs[0].in_channels == 1
    gray = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    pixels = processor.preprocess_image(gray)
    assert pixels.shape == (1, 32, 32)
    colour = np.repeat(gray[:, :, None], 3, axis=2)
    torch.testing.assert_close(processor.preprocess_image(colour), pixels)  # colour averaged to the same gray
    conversation = [{"from": "human", "value": "<image>\nFindings?"}, {"from": "gpt", "value": "enlarged"}]
    batch = collate([processor.encode(conversation, [gray])], processor.tokenizer.pad_token_id)
    model.eval()
    save(model, processor, tmp_path)
    loaded, loaded_processor = medvlm.load(tmp_path)
    assert loaded_processor.config.num_channels == 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="image_channels=2: give 1"):
        TinyPresetConfig(image_channels=2).compose_config()
