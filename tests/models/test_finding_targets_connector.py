"""Findings connectors take finding targets (training's findings.teacher_forcing) in place of their classifier."""

from __future__ import annotations

import pytest
import torch

NAN = float("nan")


def test_targets_replace_the_classifiers_values_where_given_and_only_there(compose):
    model, _ = compose(connector_type="findings", connector_config={"num_labels": 3, "threshold": 0.5})
    connector = model.connector
    with torch.no_grad():
        connector.classifier.weight.zero_()
        connector.classifier.bias.copy_(torch.tensor([-2.0, 0.1, 3.0]))  # decisions 0, 1, 1
    features = torch.randn(2, 16, 32)
    targets = torch.tensor([[1.0, NAN, 0.0], [NAN, NAN, NAN]])
    values = connector.finding_values(features, targets).flatten(1)
    torch.testing.assert_close(values, torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    out = connector(features, finding_targets=targets)
    expected = connector.label_embedding + values[:, :, None] * connector.present_embedding
    torch.testing.assert_close(out[:, 16:], expected)
    # a forced value passes no gradient to the classifier; a value it decided does (straight-through)
    connector(features, finding_targets=torch.tensor([[1.0, 0.0, 1.0]] * 2)).sum().backward()
    assert connector.classifier.bias.grad is None or not connector.classifier.bias.grad.any()
    with pytest.raises(ValueError, match=r"finding_targets \(2, 2\) must match"):
        connector.finding_values(features, torch.zeros(2, 2))


def test_the_model_passes_targets_to_a_findings_connector_and_refuses_them_elsewhere(compose):
    model, processor = compose(connector_type="findings", connector_config={"num_labels": 3})
    pixels = torch.rand(2, 3, 32, 32)
    forced = model.get_image_features(pixels, finding_targets=torch.ones(2, 3))
    plain = model.get_image_features(pixels)
    assert not torch.allclose(forced[:, -3:], plain[:, -3:])
    torch.testing.assert_close(forced[:, :-3], plain[:, :-3])  # the image tokens are the same
    other, _ = compose(connector_type="mlp2x_gelu")
    with pytest.raises(ValueError, match="'mlp2x_gelu' connector has no finding tokens"):
        other.get_image_features(pixels, finding_targets=torch.ones(2, 3))


def test_pair_findings_take_targets_in_current_prior_order(compose):
    model, _ = compose(connector_type="pair_findings", connector_config={"num_labels": 3, "threshold": 0.5})
    connector = model.connector
    features = torch.randn(4, 16, 32)  # two pairs
    targets = torch.tensor([[1.0, 1.0, 1.0], [NAN] * 3, [0.0, 0.0, 0.0], [NAN] * 3])
    out = connector(features, finding_targets=targets)
    plain = connector(features)
    assert out.shape == plain.shape
    expected = connector.finding_values(features, targets)
    assert torch.equal(expected[0::2].flatten(1), targets[0::2])
    torch.testing.assert_close(expected[1::2], connector.finding_values(features)[1::2])
