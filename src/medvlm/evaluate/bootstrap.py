"""Percentile bootstrap confidence intervals over samples, for every metric family at once.

Method (Efron's percentile bootstrap over samples):
1. Each metric family is first reduced to a statistics object that holds per-sample quantities and has
   `aggregate(indices) -> dict[str, float]`, which computes the family's metrics from the samples at `indices`
   (repeats allowed) without re-running any scorer: tokenising, labelling, the METEOR jar and BERTScore's
   model run once, before the bootstrap.
2. For replicate b = 1..B, one index vector of n draws with replacement from 0..n-1 is drawn from
   `numpy.random.default_rng(seed)`, and EVERY family aggregates the same indices (a paired resample, so the
   intervals of different metrics describe the same resampled test sets).
3. The interval of a metric is the (alpha/2, 1 - alpha/2) percentiles of its B replicate values (numpy's
   linear interpolation), alpha = 1 - confidence. Replicates where a metric is undefined (e.g. no CLOSED
   answer was drawn) are left out of its percentiles; a metric undefined in every replicate gets None.

Only float values get intervals: counts (ints such as `n`) and nested values (per-observation tables) do not.
The same seed, data and B give the same intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Aggregatable(Protocol):
    """A metric family's per-sample statistics: metrics of any (re)sample of its samples."""

    def aggregate(self, indices: Sequence[int] | np.ndarray | None = None) -> dict: ...


def bootstrap_indices(n: int, replicates: int, seed: int = 0):
    """Yield `replicates` index arrays of shape (n,), drawn with replacement, reproducibly from `seed`."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample set (n = 0)")
    rng = np.random.default_rng(seed)
    for _ in range(replicates):
        yield rng.integers(0, n, size=n)


def bootstrap_ci(families: Sequence[Aggregatable], n: int, *, replicates: int, seed: int = 0,
                 confidence: float = 0.95, progress: bool = False) -> dict[str, list[float] | None]:
    """{metric: [lo, hi]} percentile intervals for every float metric of every family (see the module docstring).

    families: statistics objects over the same n samples, in the same order.
    """
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    values: dict[str, list[float]] = {}
    draws = bootstrap_indices(n, replicates, seed)
    if progress:
        from tqdm import tqdm

        draws = tqdm(draws, total=replicates, desc="bootstrap", unit="replicate")
    for b, indices in enumerate(draws):
        for family in families:
            for key, value in family.aggregate(indices).items():
                if isinstance(value, float):  # bool and int (counts) are not floats
                    # a metric first seen in a later replicate was undefined in the earlier ones
                    values.setdefault(key, [float("nan")] * b).append(value)
        for series in values.values():
            if len(series) == b:  # undefined in this replicate
                series.append(float("nan"))
    alpha = 1.0 - confidence
    intervals: dict[str, list[float] | None] = {}
    for key, series in values.items():
        array = np.asarray(series, dtype=float)
        defined = array[~np.isnan(array)]
        if len(defined) == 0:
            intervals[key] = None
            continue
        lo, hi = np.percentile(defined, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        intervals[key] = [float(lo), float(hi)]
    return intervals
