"""Every supported language and vision architecture: save a tiny random one to a directory, compose a model
from that directory (weights loaded, no hub), then forward, one backward step, and generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from medvlm.data.collator import collate
from medvlm.infer.generate import generate
from medvlm.models import ComposeConfig, build_model
from medvlm.models.vision import VISION_ENCODERS, build_vision_model

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
LANGUAGE_MODELS = {
    "llama": {**SMALL, "num_key_value_heads": 2},
    "qwen2": {**SMALL, "num_key_value_heads": 2},
    "phi3": {**SMALL, "num_key_value_heads": 2},
    "mistral": {**SMALL, "num_key_value_heads": 2, "head_dim": 16},
    "gemma": {**SMALL, "num_key_value_heads": 1, "head_dim": 16},
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512},
}
VISION_SMALL = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 64}
EFFICIENTNET_TINY = {"image_size": 64, "stem_channels": 8, "head_channels": 64,
                     "stages": [[1, 3, 1, 1, 8], [2, 3, 2, 2, 16], [1, 5, 2, 2, 24], [1, 3, 2, 2, 32], [1, 3, 2, 2, 32]]}
# model_type -> (config settings, vision_feature_layer, image tokens per image)
VISION_MODELS = {
    "vit": (VISION_SMALL, -2, 16),  # 4x4 patches, CLS dropped
    "clip_vision_model": (VISION_SMALL, -2, 16),
    "siglip_vision_model": (VISION_SMALL, -2, 16),  # no CLS to drop
    "dinov2": (VISION_SMALL, -2, 16),
    "medvlm_efficientnet_lite": (EFFICIENTNET_TINY, -1, 4),  # one feature map: 2x2 grid at stride 32
    "medvlm_conv_vit": (VISION_SMALL, -2, 16),  # a ViT whose patch embedding is a conv stem: same 4x4 grid
}


def test_every_vision_encoder_is_tested():
    assert set(VISION_MODELS) == set(VISION_ENCODERS)


def _train_step_and_generate(model, processor):
    image = (np.random.default_rng(0).random((48, 32)) * 255).astype(np.uint8)
    sample = processor.encode([{"from": "human", "value": "<image>\nFindings?"},
                               {"from": "gpt", "value": "Small left pleural effusion."}], [image])
    batch = collate([sample], processor.tokenizer.pad_token_id)
    _labelled_logits_give_the_full_loss(model, processor, image, sample)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    model.eval()
    texts = generate(model, processor, [image], "Findings?", max_new_tokens=3)
    assert len(texts) == 1 and isinstance(texts[0], str)


def _labelled_logits_give_the_full_loss(model, processor, image, sample):
    """Training's loss with logits only at learned positions and, the batch being right-padded, no attention mask
    (labelled_loss_sums) = the one from all logits with the mask."""
    from medvlm.train.recipe import labelled_loss_sums, sample_loss_sums

    longer = processor.encode([{"from": "human", "value": "<image>\nFindings?"},
                               {"from": "gpt", "value": "No pneumothorax. The heart is enlarged."},
                               {"from": "human", "value": "Effusion?"}, {"from": "gpt", "value": "yes"}], [image])
    batch = collate([sample, longer], processor.tokenizer.pad_token_id)  # right padding in the first row
    was_training = model.training
    model.eval()  # GPT-2's dropout would make two forwards differ
    with torch.no_grad():
        full = sample_loss_sums(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"])
        fast = labelled_loss_sums(model, batch)
    model.train(was_training)
    torch.testing.assert_close(fast[0], full[0])
    assert torch.equal(fast[1], full[1]) and int(fast[1][1]) > int(fast[1][0]) > 0


@pytest.mark.parametrize("model_type", sorted(LANGUAGE_MODELS))
def test_language_model_from_a_directory(model_type, tokenizer, vit_config, tmp_path):
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    text_config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **ids, **LANGUAGE_MODELS[model_type])
    lm = AutoModelForCausalLM.from_config(text_config)
    lm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    model, processor = build_model(ComposeConfig(vision=vit_config, text=str(tmp_path), template="llava_v1"))
    assert model.config.text_config.model_type == model_type
    # the directory's tokenizer class may add a token or two: embeddings grow, the saved rows stay
    saved, loaded = lm.state_dict(), model.language_model.state_dict()
    assert all(torch.equal(saved[k], loaded[k][: saved[k].shape[0]]) for k in saved)
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer)
    _train_step_and_generate(model, processor)


@pytest.mark.parametrize("model_type", sorted(VISION_MODELS))
def test_vision_encoder_from_a_directory(model_type, tokenizer, llama_config, tmp_path):
    settings, feature_layer, tokens_per_image = VISION_MODELS[model_type]
    vision_config = AutoConfig.for_model(model_type, **settings)
    encoder = build_vision_model(vision_config)
    encoder.save_pretrained(tmp_path)

    model, processor = build_model(ComposeConfig(vision=str(tmp_path), text=llama_config, template="chatml",
                                                 vision_feature_layer=feature_layer), tokenizer=tokenizer)
    assert model.config.vision_has_cls_token is VISION_ENCODERS[model_type].has_cls_token
    assert processor.config.image_seq_length == tokens_per_image
    saved, loaded = encoder.state_dict(), model.vision_tower.model.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    _train_step_and_generate(model, processor)


@pytest.mark.parametrize("model_type", ["clip", "siglip"])
def test_vision_tower_of_a_full_image_text_checkpoint(model_type, tokenizer, llama_config, tmp_path):
    text_part = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
                 "vocab_size": 99, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    config = AutoConfig.for_model(model_type, vision_config=VISION_SMALL, text_config=text_part)
    full = AutoModel.from_config(config)
    full.save_pretrained(tmp_path)

    model, _ = build_model(ComposeConfig(vision=str(tmp_path), text=llama_config), tokenizer=tokenizer)
    assert model.config.vision_config.model_type == f"{model_type}_vision_model"
    saved = full.state_dict()
    for key, value in model.vision_tower.model.state_dict().items():
        assert torch.equal(saved[f"vision_model.{key}"], value), key


def test_a_tokenizer_with_a_chat_template_brings_it_along(vit_config, tmp_path):
    from medvlm.data.processor import IGNORE_INDEX
    from medvlm.models import train_tokenizer

    tokenizer = train_tokenizer(["Small left pleural effusion."] * 3, vocab_size=300, min_frequency=1)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    text_config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), **LANGUAGE_MODELS["llama"])
    AutoModelForCausalLM.from_config(text_config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, processor = build_model(ComposeConfig(vision=vit_config, text=str(tmp_path)))
    assert processor.config.template == "tokenizer"
    sample = processor.encode([{"from": "human", "value": "<image>\nFindings?"}, {"from": "gpt", "value": "Effusion."}],
                              [np.zeros((8, 8), np.uint8)])
    learned = [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != IGNORE_INDEX]
    assert processor.tokenizer.decode(learned) == "Effusion.<|im_end|>\n"
