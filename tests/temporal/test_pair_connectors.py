"""Prior images through processor, collator and model: tac, pair_concat and pair_findings, and the single-image
convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medvlm
from medvlm.api import save
from medvlm.data.collator import collate
from medvlm.records import QuestionRecord, TrainingRecord, Turn
from medvlm.temporal import drop_priors


def _image(seed: int, shape=(40, 30)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _qa(question: str, answer: str = "Stable.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.mark.parametrize("connector_type, tokens", [("tac", 16), ("pair_concat", 32), ("pair_findings", 32 + 14)])
def test_a_pair_fills_one_placeholder_and_trains(compose, connector_type, tokens):
    model, processor = compose(connector_type)
    assert model.config.image_seq_length == processor.config.image_seq_length == tokens
    assert processor.config.images_per_placeholder == 2

    sample = processor.encode(_qa("<image>\nCompare."), [_image(0), _image(1)])
    assert sample.input_ids.count(processor.image_token_id) == tokens  # one block for the pair
    assert sample.pixel_values.shape == (2, 3, 32, 32) and sample.prior_present == [True]
    batch = collate([sample, processor.encode(_qa("<image>\nFirst study."), [_image(2)])],
                    processor.tokenizer.pad_token_id)
    assert batch["pixel_values"].shape[0] == 4 and batch["prior_present"].tolist() == [True, False]
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.get_image_features(batch["pixel_values"]).shape == (2, tokens, 64)
    trained = [name for name, p in model.connector.named_parameters() if p.grad is not None]
    assert len(trained) == len(list(model.connector.parameters()))


def test_both_record_spellings_give_the_same_pair_input(compose):
    _, processor = compose("tac")
    images = [_image(0), _image(1)]
    shared = processor.encode(_qa("<image>\nCompare with the prior."), images)
    one_each = processor.encode(_qa("<image>\n<image>\nCompare with the prior."), images)
    named = processor.encode(_qa("<image>\nCompare with the prior."), images[:1], prior_image=images[1])
    assert shared.input_ids == one_each.input_ids == named.input_ids
    assert torch.equal(shared.pixel_values, one_each.pixel_values)
    with pytest.raises(ValueError, match="record 4: 3 images"):
        processor.encode(_qa("<image>\nCompare."), images + images[:1], where="record 4")


def test_a_single_image_connector_gives_each_image_its_own_placeholder(compose):
    _, processor = compose("mlp2x_gelu")
    shared = processor.encode(_qa("<image>\nCompare with the prior."), [_image(0), _image(1)])
    assert shared.input_ids.count(processor.image_token_id) == 2 * 16 and shared.prior_present is None


def test_missing_prior_dummy_is_the_current_image_again(compose):
    model, processor = compose("tac")
    alone = processor.encode(_qa("<image>\nDescribe."), [_image(0)])
    assert alone.prior_present == [False]
    assert torch.equal(alone.pixel_values[0], alone.pixel_values[1])
    model.eval()
    dummy = model.get_image_features(alone.pixel_values, prior_present=torch.tensor([False]))
    same = model.get_image_features(alone.pixel_values)  # the dummy mode ignores prior_present
    assert torch.equal(dummy, same)


@pytest.mark.parametrize("connector_type", ["tac", "pair_concat", "pair_findings"])
def test_missing_prior_learned_uses_a_trained_embedding_and_is_saved(compose, tmp_path, connector_type):
    model, processor = compose(connector_type, missing_prior="learned")
    model.eval()
    pixels = processor.encode(_qa("<image>\nDescribe."), [_image(0)]).pixel_values
    learned = model.get_image_features(pixels, prior_present=torch.tensor([False]))
    as_dummy = model.get_image_features(pixels, prior_present=torch.tensor([True]))
    assert not torch.allclose(learned, as_dummy)
    learned.sum().backward()
    assert model.connector.no_prior.grad is not None and model.connector.no_prior.grad.abs().sum() > 0

    save(model, processor, tmp_path / "m")
    loaded, _ = medvlm.load(tmp_path / "m")
    assert loaded.config.missing_prior == "learned"
    assert torch.allclose(loaded.get_image_features(pixels, prior_present=torch.tensor([False])), learned, atol=1e-5)


def test_pair_findings_tokens_carry_both_verdicts(compose):
    """Finding k's token = label[k] + p_now[k] * present[k] + p_before[k] * prior[k], both p from one classifier."""
    model, _ = compose("pair_findings", connector_config={"num_labels": 2, "pooling": "mean"})
    connector = model.connector.eval()
    current, prior = torch.zeros(1, 16, 32), torch.zeros(1, 16, 32)
    current[..., 0], prior[..., 1] = 1.0, 1.0  # finding 0 seen now only, finding 1 on the prior only
    with torch.no_grad():
        connector.classifier.weight.copy_(torch.tensor([[60.0] + [0.0] * 31, [0.0, 60.0] + [0.0] * 30]))
        connector.classifier.bias.fill_(-30.0)  # p = 1 where the feature is 1, else 0
        out = connector(torch.cat([current, prior]))
    assert out.shape == (1, 2 * 16 + 2, 64)
    torch.testing.assert_close(out[0, :16], connector.mlp(current)[0] + connector.role[0])
    torch.testing.assert_close(out[0, 16:32], connector.mlp(prior)[0] + connector.role[1])
    label, present, before = connector.label_embedding, connector.present_embedding, connector.prior_embedding
    torch.testing.assert_close(out[0, 32], label[0] + present[0])  # new
    torch.testing.assert_close(out[0, 33], label[1] + before[1])  # resolved


def test_pair_findings_change_tokens_carry_the_change_classifier(compose):
    from torch import nn

    settings = {"num_labels": 2, "pooling": "mean", "change_findings": 3, "change_classes": 4, "threshold": 0.5}
    model, _ = compose("pair_findings", connector_config=settings, missing_prior="learned")
    assert model.config.image_seq_length == 2 * 16 + 2 + 3
    connector = model.connector.eval()
    features = torch.randn(4, 16, 32)  # two pairs
    with torch.no_grad():
        connector.change_classifier.weight.zero_()
        connector.change_classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0] * 3))  # class 1 for every finding
    out = connector(features, torch.tensor([True, False]))
    expected = connector.change_label_embedding + connector.change_class_embedding[1]  # one-hot at the threshold
    torch.testing.assert_close(out[0, 34:], expected)
    torch.testing.assert_close(out[1, 34:], connector.no_prior_change)  # no prior: the learned block
    out.sum().backward()
    assert connector.change_classifier.bias.grad is not None  # straight-through
    with pytest.raises(ValueError, match="change_findings / change_classes"):
        connector.load_change_head(nn.Linear(64, 10))


def test_a_pair_findings_model_takes_the_encoder_stage_label_head(compose):
    from torch import nn

    model, _ = compose("pair_findings", connector_config={"pooling": "mean_max"})
    head = nn.Linear(64, 14)
    model.connector.load_label_head(head, "mean_max")
    torch.testing.assert_close(model.connector.classifier.bias, head.bias)


def test_tac_similarity_gate_is_one_for_identical_features(compose):
    model, _ = compose("tac")
    x = torch.randn(3, 16, 32)
    assert torch.allclose(model.connector.similarity_gate(x, x).flatten(), torch.ones(3))
    assert (model.connector.similarity_gate(x, -x) < 1e-6).all()


def test_tac_needs_every_encoder_layer(compose):
    with pytest.raises(ValueError, match="does not take"):
        compose("mlp2x_gelu", vision_feature_layer="all")
    with pytest.raises(ValueError, match="tac takes"):
        model, _ = compose("tac")
        model.connector(torch.randn(2, 16, 32))  # a single layer: not a layer stack


def test_an_unknown_missing_prior_mode_is_refused(compose):
    with pytest.raises(ValueError, match="missing_prior='zero'"):
        compose("tac", missing_prior="zero")


def test_drop_priors_keeps_the_current_image_and_one_placeholder():
    record = TrainingRecord("s1", [Turn("human", "<image>\n<image>\nCompare."), Turn("gpt", "Stable.")],
                            images=["cur.png", "prior.png"])
    named = QuestionRecord("q1", "<image>\nCompare.", images=["cur.png"], prior_image="prior.png")
    alone = QuestionRecord("q2", "Describe.", images=["cur.png"])
    r, q, a = drop_priors([record, named, alone])
    assert r.images == ["cur.png"] and r.conversations[0].value == "<image>\nCompare."
    assert q.images == ["cur.png"] and q.prior_image is None and q.text == "<image>\nCompare."
    assert a is alone
