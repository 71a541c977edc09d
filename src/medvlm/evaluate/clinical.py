"""Clinical label F1: do generated reports state the same CheXpert findings as the references?

Both texts are labelled (`medvlm.evaluate.labeler`, rule-based and offline by default); an observation is
*positive* when its label is "positive" ("positive" or "uncertain" in the "+" variants); "negative" and
"not_mentioned" are both negative. Per observation, TP/FP/FN count over reports, then:

- micro F1 = 2 TP / (2 TP + FP + FN) summed over the observations of the set (all 14, or `CHEXPERT5`);
- macro F1 = the mean of per-observation F1 over the set, where an observation that is positive in neither
  predictions nor references scores 0 — sklearn's `f1_score(average="macro", zero_division=0)`, the
  convention of LLaVA-Rad's CheXbert evaluation. `per_observation[obs]["support"]` shows which ones those are.

`clinical_statistics` keeps per-report counts so that `ClinicalStats.aggregate(indices)` can score a bootstrap
resample with a few numpy sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medvlm.evaluate.labeler import (
    CHEXPERT5,
    CHEXPERT_OBSERVATIONS,
    LabelerBackend,
    build_labeler,
    label_report,
    label_reports,
)

__all__ = [
    "CHEXPERT5",
    "CHEXPERT_OBSERVATIONS",
    "ClinicalStats",
    "clinical_metrics",
    "clinical_statistics",
    "label_report",
    "label_reports",
]

_FIVE = np.array([CHEXPERT_OBSERVATIONS.index(o) for o in CHEXPERT5])


def _f1(tp, fp, fn):
    """Elementwise 2TP / (2TP + FP + FN), 0 where the denominator is 0 (sklearn's zero_division=0)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def _ratio(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(b), where=b > 0)


@dataclass(frozen=True)
class ClinicalStats:
    """Per-report, per-observation outcomes; arrays are (n_reports, 14) bool in `CHEXPERT_OBSERVATIONS` order.

    `pred`/`ref` count "positive" as positive; `pred_plus`/`ref_plus` count "positive" or "uncertain".
    """

    pred: np.ndarray
    ref: np.ndarray
    pred_plus: np.ndarray
    ref_plus: np.ndarray

    def __len__(self) -> int:
        return len(self.pred)

    def aggregate(self, indices: np.ndarray | None = None) -> dict:
        """Micro/macro F1 over 14 and 5 observations (strict and "+"), and per-observation P/R/F1/support.

        `indices` selects (with repetition, for bootstrap) the reports to score; None scores all.
        """
        out: dict = {}
        per_observation = {}
        for suffix, pred, ref in (("", self.pred, self.ref), ("_plus", self.pred_plus, self.ref_plus)):
            if indices is not None:
                pred, ref = pred[indices], ref[indices]
            tp = (pred & ref).sum(axis=0)
            fp = (pred & ~ref).sum(axis=0)
            fn = (~pred & ref).sum(axis=0)
            f1 = _f1(tp, fp, fn)
            for name, cols in (("14", slice(None)), ("5", _FIVE)):
                out[f"clinical_micro_f1_{name}{suffix}"] = float(_f1(tp[cols].sum(), fp[cols].sum(), fn[cols].sum()))
                out[f"clinical_macro_f1_{name}{suffix}"] = float(f1[cols].mean())
            if not suffix:
                precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
                for i, obs in enumerate(CHEXPERT_OBSERVATIONS):
                    per_observation[obs] = {
                        "precision": float(precision[i]),
                        "recall": float(recall[i]),
                        "f1": float(f1[i]),
                        "support": int(tp[i] + fn[i]),
                    }
        out["per_observation"] = per_observation
        return out


def _positive_matrix(labels: Sequence[dict[str, str]], positive: tuple[str, ...], what: str) -> np.ndarray:
    matrix = np.zeros((len(labels), len(CHEXPERT_OBSERVATIONS)), dtype=bool)
    for i, row in enumerate(labels):
        for j, obs in enumerate(CHEXPERT_OBSERVATIONS):
            try:
                matrix[i, j] = row[obs] in positive
            except KeyError:
                raise ValueError(f"{what} labels, report {i}: no label for observation {obs!r}; every report "
                                 f"needs all 14 CheXpert observations (see CHEXPERT_OBSERVATIONS)") from None
    return matrix


def clinical_statistics(pred_labels: Sequence[dict[str, str]], ref_labels: Sequence[dict[str, str]]) -> ClinicalStats:
    """Per-report outcomes from aligned label dicts ({observation: label}, as `label_report` returns)."""
    if len(pred_labels) != len(ref_labels):
        raise ValueError(f"clinical F1 needs one reference per prediction: got {len(pred_labels)} predicted and "
                         f"{len(ref_labels)} reference label sets")
    strict, plus = ("positive",), ("positive", "uncertain")
    return ClinicalStats(
        pred=_positive_matrix(pred_labels, strict, "predicted"),
        ref=_positive_matrix(ref_labels, strict, "reference"),
        pred_plus=_positive_matrix(pred_labels, plus, "predicted"),
        ref_plus=_positive_matrix(ref_labels, plus, "reference"),
    )


def clinical_metrics(
    predictions: Sequence[str], references: Sequence[str], labeler: LabelerBackend | None = None
) -> dict:
    """Label generated and reference reports (rule labeler unless `labeler` is given) and score them."""
    labeler = labeler or build_labeler("rules")
    return clinical_statistics(labeler.label(list(predictions)), labeler.label(list(references))).aggregate()
