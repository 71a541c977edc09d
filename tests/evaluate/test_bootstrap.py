"""Percentile bootstrap: seedable, paired across metric families, and consistent with the point estimate."""

from __future__ import annotations

import numpy as np
import pytest

from medvlm.evaluate.bootstrap import bootstrap_ci, bootstrap_indices


class MeanOf:
    """A minimal metric family: the mean of per-sample values."""

    def __init__(self, key, values):
        self.key, self.values = key, np.asarray(values, dtype=float)

    def aggregate(self, indices=None):
        values = self.values if indices is None else self.values[indices]
        return {self.key: float(values.mean()), "n": len(values)}


def test_same_seed_same_intervals_other_seed_other_intervals():
    family = MeanOf("acc", np.random.default_rng(0).random(200))
    first = bootstrap_ci([family], 200, replicates=300, seed=3)
    assert first == bootstrap_ci([family], 200, replicates=300, seed=3)
    assert first != bootstrap_ci([family], 200, replicates=300, seed=4)
    assert "n" not in first  # counts get no interval


def test_interval_covers_the_estimate_and_matches_the_normal_approximation():
    values = (np.random.default_rng(1).random(400) < 0.7).astype(float)
    lo, hi = bootstrap_ci([MeanOf("acc", values)], 400, replicates=2000, seed=0)["acc"]
    mean, se = values.mean(), values.std() / np.sqrt(400)
    assert lo < mean < hi
    assert lo == pytest.approx(mean - 1.96 * se, abs=0.01)
    assert hi == pytest.approx(mean + 1.96 * se, abs=0.01)


def test_every_family_aggregates_the_same_resampled_indices():
    seen = []

    class Recorder(MeanOf):
        def aggregate(self, indices=None):
            seen.append((self.key, tuple(indices)))
            return super().aggregate(indices)

    bootstrap_ci([Recorder("a", range(10)), Recorder("b", range(10))], 10, replicates=5, seed=0)
    a = [idx for key, idx in seen if key == "a"]
    b = [idx for key, idx in seen if key == "b"]
    assert a == b and len(set(a)) == 5
    assert [tuple(i) for i in bootstrap_indices(10, 5, seed=0)] == a


def test_metric_undefined_in_some_replicates_uses_the_others():
    class SometimesDefined:
        def aggregate(self, indices=None):
            chosen = np.asarray(indices)
            return {"closed_acc": 1.0} if (chosen == 0).any() else {}

    ci = bootstrap_ci([SometimesDefined()], 3, replicates=50, seed=0)
    assert ci["closed_acc"] == [1.0, 1.0]
