"""The composed model: connectors, image splicing, feature selection, save/load and Auto classes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

import medvlm
from medvlm.api import save
from medvlm.data.collator import collate
from medvlm.models import MedVLMForConditionalGeneration
from medvlm.models.connectors import CONNECTORS


def _image(seed: int, shape=(40, 30)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _qa(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


CONNECTOR_SETTINGS = {
    "linear": ({}, 16),
    "mlp2x_gelu": ({}, 16),
    "spatial_pool": ({"stride": 2}, 4),  # 4x4 grid pooled by 2 -> 2x2
    "attn_pool": ({"num_queries": 3, "num_heads": 4}, 3),
    "findings": ({"num_labels": 5}, 16 + 5),  # the image tokens, then one token per finding
}


# pair connectors take [current, prior] at one placeholder: tested in tests/temporal/test_pair_connectors.py
PAIR_CONNECTORS = {"tac", "pair_concat", "pair_findings"}


def test_every_connector_is_tested():
    assert set(CONNECTOR_SETTINGS) | PAIR_CONNECTORS == set(CONNECTORS)


@pytest.mark.parametrize("connector_type", sorted(CONNECTOR_SETTINGS))
def test_each_connector_composes_trains_and_knows_its_token_count(compose, connector_type):
    settings, tokens_per_image = CONNECTOR_SETTINGS[connector_type]
    model, processor = compose(connector_type=connector_type, connector_config=settings)
    assert model.config.image_seq_length == processor.config.image_seq_length == tokens_per_image

    sample = processor.encode(_qa("<image>\nIs the heart enlarged?", "yes"), [_image(0)])
    assert sample.input_ids.count(processor.image_token_id) == tokens_per_image
    batch = collate([sample], processor.tokenizer.pad_token_id)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.connector.parameters())
    assert model.get_image_features(batch["pixel_values"]).shape == (1, tokens_per_image, 64)


def test_findings_tokens_carry_the_classifier_probabilities(compose):
    from torch import nn

    model, _ = compose(connector_type="findings", connector_config={"num_labels": 3, "pooling": "mean_max"})
    connector = model.connector.eval()
    features = torch.randn(2, 16, 32)
    with torch.no_grad():
        connector.classifier.weight.zero_()
        connector.classifier.bias.copy_(torch.tensor([-30.0, 0.0, 30.0]))  # p = 0, 0.5, 1
        out = connector(features)
    assert out.shape == (2, 16 + 3, 64)
    torch.testing.assert_close(out[:, :16], connector.mlp(features))
    expected = connector.label_embedding + torch.tensor([0.0, 0.5, 1.0])[:, None] * connector.present_embedding
    torch.testing.assert_close(out[:, 16:], expected.expand(2, -1, -1))
    # the classifier reads [mean, max] over the tokens, as the encoder stage's mean_max head does
    pooled = torch.cat([features.mean(1), features.amax(1)], dim=-1)
    torch.testing.assert_close(connector.finding_logits(features), connector.classifier(pooled))

    head = nn.Linear(64, 3)
    connector.load_label_head(head, "mean_max")
    torch.testing.assert_close(connector.classifier.weight, head.weight)
    with pytest.raises(ValueError, match="give encoder.pooling and connector_config.pooling the same value"):
        connector.load_label_head(nn.Linear(32, 3), "mean")


def test_a_findings_classifier_kept_as_it_came_gets_no_gradient(compose):
    model, _ = compose(connector_type="findings", connector_config={"num_labels": 3, "train_classifier": False})
    model.connector(torch.randn(2, 16, 32)).sum().backward()
    assert model.connector.classifier.weight.grad is None
    assert model.connector.present_embedding.grad is not None and model.connector.mlp[0].weight.grad is not None


def test_findings_threshold_passes_decisions_with_the_classifier_gradient(compose):
    model, _ = compose(connector_type="findings", connector_config={"num_labels": 3, "threshold": 0.5})
    connector = model.connector
    with torch.no_grad():
        connector.classifier.weight.zero_()
        connector.classifier.bias.copy_(torch.tensor([-2.0, 0.1, 3.0]))  # p = 0.12, 0.52, 0.95
    features = torch.randn(2, 16, 32)
    torch.testing.assert_close(connector.finding_values(features).flatten(1), torch.tensor([[0.0, 1.0, 1.0]] * 2))
    out = connector(features)
    expected = connector.label_embedding + torch.tensor([0.0, 1.0, 1.0])[:, None] * connector.present_embedding
    torch.testing.assert_close(out[:, 16:], expected.expand(2, -1, -1))
    out.sum().backward()  # straight-through: the classifier still learns from the language model's loss
    assert connector.classifier.bias.grad is not None and connector.classifier.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="threshold=1.5"):
        compose(connector_type="findings", connector_config={"threshold": 1.5})


def test_finding_words_add_the_language_models_own_word_embeddings(compose, tmp_path):
    from medvlm.models.connectors.findings import CHEXPERT_WORDS, finding_word_ids

    model, processor = compose(connector_type="findings", connector_config={"finding_words": "chexpert",
                                                                             "threshold": 0.5})
    ids = finding_word_ids(processor.tokenizer, CHEXPERT_WORDS)
    assert model.config.connector_config["finding_words"] == ids  # resolved once, saved with the model
    connector = model.connector
    with torch.no_grad():
        connector.classifier.weight.zero_()
        connector.classifier.bias.copy_(torch.tensor([-5.0] * 4 + [5.0] + [-5.0] * 9))  # only the lesion is on
    features = torch.randn(2, 16, 32)
    table = model.get_input_embeddings()
    out = connector(features, text_embeddings=table)
    nodule = table.weight[ids[4]].mean(0)
    torch.testing.assert_close(out[:, 16 + 4], (connector.label_embedding[4] + connector.present_embedding[4]
                                                + nodule).expand(2, -1))
    torch.testing.assert_close(out[:, 16 + 5], connector.label_embedding[5].expand(2, -1))  # off: no word
    # the composed model passes its live table: the word vectors train with the language model
    out = model.get_image_features(vision_features=features)
    out[:, 16 + 4].sum().backward()
    assert table.weight.grad[ids[4]].abs().sum() > 0
    with pytest.raises(ValueError, match="pass the language model's input embeddings"):
        connector(features)
    with pytest.raises(ValueError, match="give 14 non-empty lists"):
        compose(connector_type="findings", connector_config={"finding_words": [[1]] * 3})
    save(model, processor, tmp_path / "m")
    loaded, _ = medvlm.load(tmp_path / "m")
    loaded.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_image_features(vision_features=features),
                                   model.get_image_features(vision_features=features))


def test_images_are_spliced_in_placeholder_order(compose):
    model, processor = compose(connector_type="linear")
    model.eval()
    first, second = _image(1), _image(2)
    sample = processor.encode(_qa("<image> then <image> compare", "no change"), [first, second])
    batch = collate([sample], processor.tokenizer.pad_token_id)
    with torch.no_grad():
        embeds = model.embed_inputs(batch["input_ids"], batch["pixel_values"])
        features = model.get_image_features(batch["pixel_values"])  # (2, 16, 64)
    positions = (batch["input_ids"][0] == processor.image_token_id).nonzero().flatten()
    torch.testing.assert_close(embeds[0, positions[:16]], features[0])
    torch.testing.assert_close(embeds[0, positions[16:]], features[1])


def test_several_images_per_sample_and_samples_without_images_batch_together(compose):
    model, processor = compose()
    samples = [
        processor.encode(_qa("<image>\n<image>\nCompare.", "stable"), [_image(1), _image(2)]),
        processor.encode(_qa("Any question?", "text only"), []),
        processor.encode(_qa("<image>\nFindings?", "effusion"), [_image(3)]),
    ]
    batch = collate(samples, processor.tokenizer.pad_token_id)
    assert batch["pixel_values"].shape[0] == 3
    assert torch.isfinite(model(**batch).loss)


def test_image_count_mismatch_is_a_clear_error(compose):
    model, processor = compose()
    sample = processor.encode(_qa("<image>\nFindings?", "none"), [_image(1)])
    batch = collate([sample], processor.tokenizer.pad_token_id)
    two_images = torch.cat([batch["pixel_values"]] * 2)
    with pytest.raises(ValueError, match="16 image tokens but the images give 32 features"):
        model(input_ids=batch["input_ids"], pixel_values=two_images)
    with pytest.raises(ValueError, match="neither pixel_values nor vision_features"):
        model(input_ids=batch["input_ids"])


def test_cached_vision_features_give_the_same_logits_as_pixels(compose):
    model, processor = compose()
    model.eval()
    batch = collate([processor.encode(_qa("<image>\nFindings?", "none"), [_image(4)])], processor.tokenizer.pad_token_id)
    with torch.no_grad():
        features = model.encode_images(batch["pixel_values"])  # what the alignment stage caches
        from_pixels = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"]).logits
        from_cache = model(input_ids=batch["input_ids"], vision_features=features).logits
    torch.testing.assert_close(from_pixels, from_cache)


@pytest.mark.parametrize(
    ("layer", "select", "tokens", "dim"),
    [(-2, "drop_cls", 16, 32), (-1, "keep_cls", 17, 32), ([-2, -1], "drop_cls", 16, 64), (-1, "cls_only", 1, 32),
     (-1, "add_pooled", 18, 32)],
)
def test_vision_feature_selection(compose, layer, select, tokens, dim):
    model, processor = compose(connector_type="linear", vision_feature_layer=layer, vision_feature_select=select)
    features = model.encode_images(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, tokens, dim)
    assert processor.config.image_seq_length == tokens


def test_add_pooled_appends_the_patch_tokens_mean_and_max(compose):
    model, _ = compose(connector_type="linear", vision_feature_layer=-1, vision_feature_select="add_pooled")
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        hidden = model.vision_tower.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        features = model.vision_tower(pixels)
    patches = hidden[:, 1:]  # the CLS token is left out of the tokens and of both summaries
    torch.testing.assert_close(features[:, :16], patches)
    torch.testing.assert_close(features[:, 16], patches.mean(dim=1))
    torch.testing.assert_close(features[:, 17], patches.amax(dim=1))


def test_feature_selection_that_cannot_work_is_refused(compose, vit_config):
    siglip = {**vit_config, "model_type": "siglip_vision_model"}
    with pytest.raises(ValueError, match="needs a CLS token"):
        compose(vision=siglip, vision_feature_select="keep_cls")
    with pytest.raises(ValueError, match="does not take"):
        compose(vision_feature_layer="all")
    with pytest.raises(ValueError, match="square grid"):
        compose(connector_type="spatial_pool", vision_feature_select="keep_cls")


def test_layer_stack_has_one_entry_per_encoder_layer(compose):
    model, _ = compose()
    model.vision_tower.layer = "all"
    assert model.encode_images(torch.zeros(1, 3, 32, 32)).shape == (1, 2, 16, 32)


def test_save_and_load_give_identical_logits(compose, tmp_path):
    model, processor = compose(connector_type="attn_pool", connector_config={"num_queries": 4})
    model.eval()
    save(model, processor, tmp_path / "model")
    loaded, loaded_processor = medvlm.load(tmp_path / "model")
    sample = processor.encode(_qa("<image>\nFindings?", "effusion"), [_image(5)])
    assert loaded_processor.encode(_qa("<image>\nFindings?", "effusion"), [_image(5)]).input_ids == sample.input_ids
    batch = collate([sample], processor.tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, rtol=0, atol=0)


def test_auto_classes_load_a_saved_model(compose, tmp_path):
    model, processor = compose()
    save(model, processor, tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "medvlm"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert isinstance(loaded, MedVLMForConditionalGeneration)
    assert AutoProcessor.from_pretrained(tmp_path).config == processor.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_import_medvlm_stays_light():
    """The CLI imports medvlm for --help: no torch until a model is needed."""
    code = "import sys, medvlm; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiny_preset_trains_its_tokenizer_and_survives_a_round_trip(tmp_path):
    model, processor = medvlm.models.build_model("tiny", texts=["The heart is enlarged."] * 20)
    assert processor.config.image_size == 64 and processor.config.template == "chatml"
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert processor.tokenizer.convert_ids_to_tokens(model.config.image_token_id) == "<image>"
    save(model, processor, tmp_path)
    loaded, _ = medvlm.load(tmp_path)
    lm = loaded.language_model
    assert lm.get_output_embeddings().weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()  # tied
    batch = collate([processor.encode(_qa("<image>\nFindings?", "enlarged"), [_image(6)])],
                    processor.tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, rtol=0, atol=0)
