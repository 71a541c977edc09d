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


def _brute_force_best(samples: list[set[str]]) -> float:
    from itertools import combinations

    from medvlm.evaluate.temporal import keyword_set_f1

    vocabulary = sorted(set().union(*samples))
    return max(sum(keyword_set_f1(set(c), s) for s in samples)
               for k in range(len(vocabulary) + 1) for c in combinations(vocabulary, k))


def test_keyword_set_f1_is_the_pair_f1_of_the_texts():
    from medvlm.evaluate.temporal import keyword_set_f1

    pred, ref = "New effusion, stable heart.", "The effusion is new. Unchanged heart, stable lines."
    assert keyword_set_f1(temporal_entities(pred), temporal_entities(ref)) == temporal_pair_f1(pred, ref)
    assert keyword_set_f1(set(), set()) == 1.0 and keyword_set_f1({"new"}, set()) == EPSILON


def test_bayes_keywords_picks_the_expected_f1_optimum():
    from medvlm.evaluate.temporal import bayes_keywords, keyword_set_f1

    assert bayes_keywords([{"new", "stable"}] * 3) == {"new", "stable"}
    assert bayes_keywords([{"new"}, {"new"}, {"new"}, {"larger"}]) == {"new"}  # majority, no hedging
    assert bayes_keywords([{"new", "larger"}, {"new"}, {"larger"}]) == {"new", "larger"}  # the union pays here
    assert bayes_keywords([set(), set(), {"new"}]) == set()  # "no change words" is the likelier reference
    assert bayes_keywords([]) == set()
    # exact on small vocabularies; the local search (exact_up_to=0) never worse than the best sample, and close
    rng = np.random.default_rng(0)
    words = ["new", "stable", "larger", "increased", "resolved", "smaller", "cleared"]
    gaps = []
    for _ in range(40):
        samples = [{w for w in words if rng.random() < p} for p in rng.uniform(0.1, 0.7, size=int(rng.integers(2, 9)))]
        optimum = _brute_force_best(samples)
        assert sum(keyword_set_f1(bayes_keywords(samples), s) for s in samples) == pytest.approx(optimum, abs=1e-9)
        searched = sum(keyword_set_f1(bayes_keywords(samples, exact_up_to=0), s) for s in samples)
        assert searched >= max(sum(keyword_set_f1(c, s) for s in samples) for c in samples) - 1e-9
        gaps.append(optimum - searched)
    assert np.mean(gaps) < 0.01 * len(words)
