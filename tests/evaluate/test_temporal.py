"""Libra's temporal entity F1: keyword sets, the eps formula, edge cases, bootstrap-ready aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from medvlm.evaluate.temporal import (
    EPSILON,
    TEMPORAL_KEYWORDS,
    temporal_entities,
    temporal_entity_f1,
    temporal_pair_f1,
    temporal_statistics,
)


def test_keywords_are_libras_44():
    assert len(TEMPORAL_KEYWORDS) == 44
    assert {"new", "unchanged", "worsening", "unaltered", "resolved"} <= TEMPORAL_KEYWORDS


def test_entities_are_whole_words_case_insensitive_and_distinct():
    assert temporal_entities("INCREASED effusion, increased edema. New nodule.") == {"increased", "new"}
    assert temporal_entities("unincreasedx renewal newer newly") == set()
    # Libra's cleaning: dashes split words, other symbols are deleted (joining the words around them)
    assert temporal_entities("stable-appearing line") == {"stable"}
    assert temporal_entities("new/increased effusion") == set()
    assert temporal_entities(["stable heart", "new opacity"]) == {"stable", "new"}


def test_pair_f1_hand_computed():
    # pred {new, increased}, ref {new, stable}: TP 1, P = R = 1/2, F1 = 1/2
    assert temporal_pair_f1("New and increased effusion.", "New effusion, stable heart.") == pytest.approx(0.5)
    # identical sets: 1 (up to eps)
    assert temporal_pair_f1("Stable.", "stable") == pytest.approx(1.0)


def test_empty_sets_follow_libra():
    assert temporal_pair_f1("No effusion.", "Normal chest.") == 1.0  # both empty
    assert temporal_pair_f1("New effusion.", "Normal chest.") == EPSILON  # reference empty only
    # prediction empty only: P = eps/eps = 1, R = eps/(2 + eps), F1 = 2PR/(P + R + eps) ~ eps
    recall = EPSILON / (2 + EPSILON)
    expected = 2 * recall / (1 + recall + EPSILON)
    assert temporal_pair_f1("Effusion.", "New, increased effusion.") == pytest.approx(expected, rel=1e-9)
    assert expected < 1e-9


def test_mean_over_pairs_and_aggregate_on_indices():
    preds = ["New effusion.", "Stable.", "Nothing here."]
    refs = ["New effusion.", "Worsened.", "Nothing here either."]
    stats = temporal_statistics(preds, refs)
    assert len(stats) == 3
    np.testing.assert_allclose(stats.f1, [1.0, temporal_pair_f1("Stable.", "Worsened."), 1.0])
    assert temporal_entity_f1(preds, refs) == pytest.approx(stats.f1.mean())
    assert stats.aggregate(np.array([0, 0, 2])) == {"temporal_f1": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="one reference per prediction"):
        temporal_statistics(preds, refs[:2])
