"""Temporal entity F1, as Libra defines it: agreement of change words between generated and reference reports.

Per pair, the entity sets are the distinct keywords of `TEMPORAL_KEYWORDS` that occur as whole words in the
text after Libra's cleaning (lower-cased; "-" and "_" become spaces; characters other than word characters,
whitespace and . , : ; ( ) are deleted, so "new/increased" reads as the single word "newincreased").
With eps = 1e-10:

    reference set empty:  F1 = 1 if the prediction set is empty too, else eps
    otherwise:            P = (TP + eps) / (|pred| + eps), R = (TP + eps) / (|ref| + eps), F1 = 2PR / (P + R + eps)

and the score is the mean over pairs. Libra also unions in Stanza NER entities that equal a keyword; those are
whole-word keyword occurrences already found by the regex, so the result is the same without Stanza.
A reference may be a list of texts (their entity sets are united), as in Libra.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TEMPORAL_KEYWORDS: frozenset[str] = frozenset(
    "bigger change cleared constant decrease decreased decreasing elevated elevation enlarged enlargement "
    "enlarging expanded greater growing improved improvement improving increase increased increasing larger "
    "new persistence persistent persisting progression progressive reduced removal resolution resolved "
    "resolving smaller stability stable stably unchanged unfolded worse worsen worsened worsening "
    "unaltered".split()
)
EPSILON = 1e-10

_KEYWORD = re.compile(r"\b(?:" + "|".join(sorted(TEMPORAL_KEYWORDS, key=len, reverse=True)) + r")\b")


def _clean(text: str) -> str:
    text = re.sub(r"[_-]+", " ", text)
    text = re.sub(r"[^\w\s.,:;()]", "", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def temporal_entities(text: str | Sequence[str]) -> set[str]:
    """The distinct temporal keywords in `text` (or in any of several texts), whole words, lower-cased."""
    texts = [text] if isinstance(text, str) else list(text)
    return {m.group() for t in texts for m in _KEYWORD.finditer(_clean(t))}


def keyword_set_f1(pred: set[str], ref: set[str], eps: float = EPSILON) -> float:
    """Libra's pair F1 of two keyword sets (see the module docstring for the formula)."""
    if not ref:
        return 1.0 if not pred else eps
    tp = len(pred & ref)
    precision = (tp + eps) / (len(pred) + eps)
    recall = (tp + eps) / (len(ref) + eps)
    return 2 * precision * recall / (precision + recall + eps)


def temporal_pair_f1(prediction: str, reference: str | Sequence[str], eps: float = EPSILON) -> float:
    """Libra's per-pair temporal entity F1 (see the module docstring for the formula)."""
    return keyword_set_f1(temporal_entities(prediction), temporal_entities(reference), eps)


def bayes_keywords(samples: Sequence[set[str]], exact_up_to: int = 10) -> set[str]:
    """The keyword set with the highest mean pair F1 against `samples` (equally likely reference keyword sets):
    the best answer when the reference is one of them at random. Exact (every subset of the samples' words) when
    they use at most `exact_up_to` distinct words; otherwise a local search (single-word additions, removals and
    swaps) from the best of the samples themselves and of the k most frequent words for every k. No samples: the
    empty set."""
    samples = [set(s) for s in samples]
    vocabulary = sorted(set().union(*samples)) if samples else []

    def score(candidate: set[str]) -> float:
        return sum(keyword_set_f1(candidate, s) for s in samples)

    if len(vocabulary) <= exact_up_to:
        best, best_score = set(), score(set())
        for mask in range(1, 2 ** len(vocabulary)):
            candidate = {w for i, w in enumerate(vocabulary) if mask >> i & 1}
            candidate_score = score(candidate)
            if candidate_score > best_score + 1e-12:
                best, best_score = candidate, candidate_score
        return best
    by_frequency = sorted(vocabulary, key=lambda w: (-sum(w in s for s in samples), w))
    starts = samples + [set(by_frequency[:k]) for k in range(len(by_frequency) + 1)]
    best = max(starts, key=score)
    best_score = score(best)
    improved = True
    while improved:
        improved = False
        moves = [best ^ {w} for w in vocabulary] + [(best - {out}) | {w} for out in best for w in vocabulary
                                                    if w not in best]
        for candidate in moves:
            candidate_score = score(candidate)
            if candidate_score > best_score + 1e-12:
                best, best_score, improved = candidate, candidate_score, True
                break
    return best


@dataclass(frozen=True)
class TemporalStats:
    """Per-sample temporal entity F1; `aggregate(indices)` averages any subset (for bootstrap resampling)."""

    f1: np.ndarray  # (n_samples,) float64

    def __len__(self) -> int:
        return len(self.f1)

    def aggregate(self, indices: np.ndarray | None = None) -> dict[str, float]:
        values = self.f1 if indices is None else self.f1[np.asarray(indices)]
        return {"temporal_f1": float(values.mean()) if len(values) else float("nan")}


def temporal_statistics(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> TemporalStats:
    """Per-pair temporal entity F1 for aligned predictions and references."""
    if len(predictions) != len(references):
        raise ValueError(f"temporal F1 needs one reference per prediction: got {len(predictions)} predictions "
                         f"and {len(references)} references")
    return TemporalStats(np.array([temporal_pair_f1(p, r) for p, r in zip(predictions, references, strict=True)],
                                  dtype=np.float64))


def temporal_entity_f1(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Libra's temporal entity F1: the mean per-pair F1 (a number in [0, 1])."""
    return temporal_statistics(predictions, references).aggregate()["temporal_f1"]
