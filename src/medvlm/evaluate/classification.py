"""Classification metrics: accuracy, balanced accuracy, AUROC, precision / recall / F1 with explicit averaging.

Three tasks, told apart by the labels: binary and multi-class (one class per sample), multi-label (a set of
classes per sample, e.g. the CheXpert observations of an image).

Definitions (they equal scikit-learn's with `zero_division=0`; the tests compare):
- accuracy: fraction of samples whose prediction equals the label; multi-label: the predicted SET equals the
  label set (subset accuracy, as sklearn's `accuracy_score`).
- balanced_accuracy: mean recall over the classes present in the labels (sklearn's `balanced_accuracy_score`);
  multi-label: mean over labels of that binary balanced accuracy (each label's own positives and negatives).
- per class c: precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN), 0 where the denominator is 0.
- averaging (`average`, keys `precision_<avg>`, `recall_<avg>`, `f1_<avg>`):
  macro = unweighted mean over `classes`; weighted = mean weighted by support (number of true samples);
  micro = from TP, FP, FN summed over classes (= accuracy for single-label multi-class);
  binary = the positive class only (two classes; `positive_class`, default the second of the sorted classes).
- auroc (needs scores): binary = AUROC of the positive-class score; multi-class = one-vs-rest AUROC of each
  class's score, macro mean; multi-label = per-label AUROC, macro mean. AUROC is the Mann-Whitney statistic
  (ties count one half), equal to the area under the trapezoidal ROC curve. A class whose labels are all
  positive or all negative has no AUROC (None in `per_class`) and is left out of the mean.
- `classes`: given, else the sorted union of classes seen in labels, predictions and score columns. Macro
  averages run over all of them, so a class that never occurs adds a 0 F1, as sklearn with `labels=`.

`per_class` holds {class: {precision, recall, f1, support, auroc}}; `n` the number of samples.

Files (`evaluate_classification_file`): JSON Lines / a JSON list of objects, or CSV (told apart by content):
  id            `id` (or `question_id`); required when labels come from a separate file, joined by it
  label         the true class, or for multi-label a JSON list of classes (CSV: classes joined by "|")
  prediction    the predicted class (list for multi-label); optional when scores are given (argmax, or
                score >= threshold per label for multi-label)
  scores        JSON object {class: score}; CSV: one column `score_<class>` per class
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

AVERAGES = ("macro", "micro", "weighted", "binary")


def _sort_key(value: Any) -> tuple:
    """Numbers in numeric order before text ("2" < "10"), text alphabetically."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """AUROC of binary labels (n,) 0/1 against scores (n,): the Mann-Whitney U / (P * N); None without both classes."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # average ranks (1-based), ties sharing the mean of their positions
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


@dataclass
class ClassificationStats:
    """Labels, predictions and scores as arrays over `classes`, from which every metric is aggregated.

    y_true, y_pred: (n,) class indices, or (n, K) 0/1 for multi-label; scores: (n, K) or None.
    """

    classes: list
    y_true: np.ndarray
    y_pred: np.ndarray
    scores: np.ndarray | None
    multilabel: bool
    average: str = "macro"
    positive_index: int | None = None
    ids: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y_true)

    def _one_hot(self, y: np.ndarray) -> np.ndarray:
        if self.multilabel:
            return y.astype(bool)
        return y[:, None] == np.arange(len(self.classes))[None, :]

    def correct(self) -> np.ndarray:
        """(n,) 1.0 where the prediction (or predicted set) equals the label, else 0.0."""
        if self.multilabel:
            return np.all(self.y_true == self.y_pred, axis=1).astype(float)
        return (self.y_true == self.y_pred).astype(float)

    def aggregate(self, indices: Sequence[int] | np.ndarray | None = None) -> dict:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        truth = self._one_hot(self.y_true[idx])  # (m, K) bool
        pred = self._one_hot(self.y_pred[idx])
        tp = (truth & pred).sum(axis=0).astype(float)
        fp = (~truth & pred).sum(axis=0).astype(float)
        fn = (truth & ~pred).sum(axis=0).astype(float)
        tn = (~truth & ~pred).sum(axis=0).astype(float)
        support = tp + fn
        precision = np.array([_ratio(a, a + b) for a, b in zip(tp, fp, strict=True)])
        recall = np.array([_ratio(a, a + b) for a, b in zip(tp, fn, strict=True)])
        f1 = np.array([_ratio(2 * a, 2 * a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)])
        out: dict[str, Any] = {"accuracy": float(self.correct()[idx].mean()) if len(idx) else float("nan")}
        if self.multilabel:
            per_label = []
            for k in range(len(self.classes)):
                present = [r for r, d in ((_ratio(tp[k], tp[k] + fn[k]), tp[k] + fn[k]),
                                          (_ratio(tn[k], tn[k] + fp[k]), tn[k] + fp[k])) if d]
                if present:
                    per_label.append(sum(present) / len(present))
            out["balanced_accuracy"] = float(np.mean(per_label)) if per_label else float("nan")
        else:
            present = support > 0
            out["balanced_accuracy"] = float(recall[present].mean()) if present.any() else float("nan")
        avg = self.average
        if avg == "macro":
            p, r, f = precision.mean(), recall.mean(), f1.mean()
        elif avg == "weighted":
            total = support.sum()
            p, r, f = ((float((m * support).sum() / total) if total else 0.0) for m in (precision, recall, f1))
        elif avg == "micro":
            stp, sfp, sfn = tp.sum(), fp.sum(), fn.sum()
            p, r, f = _ratio(stp, stp + sfp), _ratio(stp, stp + sfn), _ratio(2 * stp, 2 * stp + sfp + sfn)
        else:  # binary
            k = self.positive_index
            p, r, f = precision[k], recall[k], f1[k]
        out[f"precision_{avg}"] = float(p)
        out[f"recall_{avg}"] = float(r)
        out[f"f1_{avg}"] = float(f)
        class_auroc: list[float | None] = [None] * len(self.classes)
        if self.scores is not None:
            scores = self.scores[idx]
            if not self.multilabel and len(self.classes) == 2:
                k = self.positive_index if self.positive_index is not None else 1
                value = auroc(truth[:, k], scores[:, k])
                class_auroc = [None, None]
                class_auroc[k] = value
                out["auroc"] = float("nan") if value is None else value
            else:
                class_auroc = [auroc(truth[:, k], scores[:, k]) for k in range(len(self.classes))]
                defined = [a for a in class_auroc if a is not None]
                out["auroc"] = float(np.mean(defined)) if defined else float("nan")
        out["per_class"] = {
            str(c): {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                     "support": int(support[k]), "auroc": class_auroc[k]}
            for k, c in enumerate(self.classes)
        }
        out["n"] = int(len(idx))
        return out


def classification_statistics(
    y_true: Sequence,
    y_pred: Sequence | None = None,
    scores: Sequence | np.ndarray | None = None,
    *,
    classes: Sequence[Hashable] | None = None,
    average: str = "macro",
    positive_class: Hashable | None = None,
    threshold: float = 0.5,
) -> ClassificationStats:
    """Encode labels / predictions / scores once (see the module docstring for the rules).

    y_true: (n,) classes, or (n,) sets/lists of classes (multi-label), or an (n, K) 0/1 array with `classes`.
    y_pred: like y_true; None to derive it from scores. scores: (n, K) in `classes` order, or (n,) for binary
    (the positive class's score).
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    if y_pred is None and scores is None:
        raise ValueError("give predictions, scores, or both")
    n = len(y_true)
    if y_pred is not None and len(y_pred) != n:
        raise ValueError(f"{n} labels but {len(y_pred)} predictions")
    # an (n, K) indicator matrix must be a numpy array: a list of lists is read as sets of classes
    multilabel = (isinstance(y_true, np.ndarray) and y_true.ndim == 2) or \
        any(isinstance(v, (list, tuple, set, frozenset)) for v in y_true)
    if multilabel:
        return _multilabel_stats(y_true, y_pred, scores, classes, average, threshold)

    seen = set(y_true) | (set(y_pred) if y_pred is not None else set())
    if classes is None:
        classes = sorted(seen, key=_sort_key)
    classes = list(classes)
    unknown = seen - set(classes)
    if unknown:
        raise ValueError(f"labels or predictions {sorted(map(str, unknown))} are not among classes {classes}")
    index = {c: k for k, c in enumerate(classes)}
    score_array = None
    if scores is not None:
        score_array = np.asarray(scores, dtype=float)
        if score_array.ndim == 1:
            if len(classes) != 2:
                raise ValueError("one score per sample is for binary tasks; give (n, K) scores for K classes")
            positive = _positive_index(classes, positive_class)
            score_array = np.stack([1 - score_array, score_array], axis=1) if positive == 1 else \
                np.stack([score_array, 1 - score_array], axis=1)
        if score_array.shape != (n, len(classes)):
            raise ValueError(f"scores have shape {score_array.shape}; expected ({n}, {len(classes)}) for classes {classes}")
    if y_pred is None:
        pred_idx = np.argmax(score_array, axis=1)
    else:
        pred_idx = np.array([index[c] for c in y_pred], dtype=np.int64)
    true_idx = np.array([index[c] for c in y_true], dtype=np.int64)
    positive_index = None
    if average == "binary" or len(classes) == 2:
        if average == "binary" and len(classes) != 2:
            raise ValueError(f"average='binary' needs exactly two classes, got {len(classes)}: {classes}; "
                             "use macro, micro or weighted")
        positive_index = _positive_index(classes, positive_class)
    return ClassificationStats(classes, true_idx, pred_idx, score_array, False, average, positive_index)


def _positive_index(classes: list, positive_class: Hashable | None) -> int:
    if positive_class is None:
        return 1
    for k, c in enumerate(classes):
        if c == positive_class or str(c) == str(positive_class):
            return k
    raise ValueError(f"positive class {positive_class!r} is not one of the classes {classes}")


def _multilabel_stats(y_true, y_pred, scores, classes, average, threshold) -> ClassificationStats:
    if average == "binary":
        raise ValueError("average='binary' is for two-class single-label tasks; use macro, micro or weighted")
    as_array = isinstance(y_true, np.ndarray) and y_true.ndim == 2
    if as_array:
        if classes is None:
            classes = list(range(y_true.shape[1]))
        classes = list(classes)
        true = np.asarray(y_true).astype(bool)
        pred = None if y_pred is None else np.asarray(y_pred).astype(bool)
    else:
        seen = set().union(*map(set, y_true))
        if y_pred is not None:
            seen |= set().union(*map(set, y_pred))
        if classes is None:
            classes = sorted(seen, key=_sort_key)
        classes = list(classes)
        unknown = seen - set(classes)
        if unknown:
            raise ValueError(f"labels or predictions {sorted(map(str, unknown))} are not among classes {classes}")
        index = {c: k for k, c in enumerate(classes)}

        def encode(sets) -> np.ndarray:
            out = np.zeros((len(sets), len(classes)), dtype=bool)
            for i, s in enumerate(sets):
                for c in s:
                    out[i, index[c]] = True
            return out

        true = encode(y_true)
        pred = None if y_pred is None else encode(y_pred)
    score_array = None
    if scores is not None:
        score_array = np.asarray(scores, dtype=float)
        if score_array.shape != true.shape:
            raise ValueError(f"scores have shape {score_array.shape}; expected {true.shape} for classes {classes}")
    if pred is None:
        pred = score_array >= threshold
    if pred.shape != true.shape:
        raise ValueError(f"predictions have shape {pred.shape}; labels {true.shape}")
    return ClassificationStats(classes, true, pred, score_array, True, average, None)


def classification_metrics(y_true: Sequence, y_pred: Sequence | None = None, scores=None, **options) -> dict:
    """All classification metrics for labels, predictions and/or scores; options as `classification_statistics`."""
    return classification_statistics(y_true, y_pred, scores, **options).aggregate()


# ----------------------------------------------------------------------------------------------------------
# files


def _read_table(path: Path) -> list[tuple[str, dict]]:
    """(location, row) for a JSON list, JSON Lines or CSV file; CSV cells stay strings."""
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        rows = [(f"index {i}", r) for i, r in enumerate(data)]
    elif stripped.startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((f"line {n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path} line {n}: invalid JSON: {e.msg}") from None
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [(f"line {n}", dict(r)) for n, r in enumerate(reader, start=2)]
    for location, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{path} {location}: expected an object with id / label / prediction / scores")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _class_list(value: Any, multilabel: bool, where: str, name: str) -> Any:
    """A class (str) or, for multi-label, a tuple of classes, from a JSON value or a CSV cell."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if value is None:
        raise ValueError(f"{where}: {name} is null; give a class")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    text = str(value)
    if multilabel:
        return tuple(c for c in text.split("|") if c)
    return text


def _row_id(row: dict) -> Any:
    for key in ("id", "question_id"):
        if key in row and row[key] not in (None, ""):
            return str(row[key])
    return None


def _row_scores(row: dict, where: str) -> dict[str, float] | None:
    raw = row.get("scores")
    if isinstance(raw, dict):
        return {str(k): float(v) for k, v in raw.items()}
    if raw is not None and not isinstance(raw, str):
        raise ValueError(f"{where}: scores must be an object {{class: score}}; a list has no class names")
    columns = {k[len("score_"):]: v for k, v in row.items() if isinstance(k, str) and k.startswith("score_")}
    if columns:
        try:
            return {k: float(v) for k, v in columns.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{where}: a score_<class> value is not a number") from None
    return None


@dataclass
class ClassificationRows:
    """What a predictions (+ labels) file pair holds, aligned by sample."""

    ids: list
    labels: list
    predictions: list | None
    scores: list[dict[str, float]] | None
    multilabel: bool


def read_classification_files(predictions_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                              *, multilabel: bool | None = None) -> ClassificationRows:
    """Read predictions (and labels from the same rows, or from `labels_path` joined by id); see module docstring."""
    pred_path = Path(predictions_path)
    pred_rows = _read_table(pred_path)
    label_rows = _read_table(Path(labels_path)) if labels_path is not None else None
    if multilabel is None:
        sample = [r for _, r in (label_rows or pred_rows)]
        multilabel = any(isinstance(r.get("label", r.get("labels")), list) for r in sample)

    def label_of(row: dict, where: str):
        key = "label" if "label" in row else "labels"
        if key not in row:
            raise ValueError(f"{where}: missing `label`; every row needs its true class")
        return _class_list(row[key], multilabel, where, key)

    labels_by_id: dict | None = None
    if label_rows is not None:
        labels_by_id = {}
        for location, row in label_rows:
            where = f"{labels_path} {location}"
            rid = _row_id(row)
            if rid is None:
                raise ValueError(f"{where}: missing `id`; labels are joined to predictions by id")
            if rid in labels_by_id:
                raise ValueError(f"{where}: duplicate id {rid!r}; ids must be unique")
            labels_by_id[rid] = label_of(row, where)
    ids, labels, predictions, scores = [], [], [], []
    seen: set = set()
    for location, row in pred_rows:
        where = f"{pred_path} {location}"
        rid = _row_id(row)
        if rid is not None and rid in seen:
            raise ValueError(f"{where}: duplicate id {rid!r}; ids must be unique")
        seen.add(rid)
        if labels_by_id is not None:
            if rid is None:
                raise ValueError(f"{where}: missing `id`; it is needed to join the labels file {labels_path}")
            if rid not in labels_by_id:
                raise ValueError(f"{where}: id {rid!r} has no label in {labels_path}")
            labels.append(labels_by_id[rid])
        else:
            labels.append(label_of(row, where))
        ids.append(rid if rid is not None else location)
        has_pred = "prediction" in row and row["prediction"] not in (None, "")
        predictions.append(_class_list(row["prediction"], multilabel, where, "prediction") if has_pred else None)
        scores.append(_row_scores(row, where))
    if labels_by_id is not None:
        missing = [rid for rid in labels_by_id if rid not in seen]
        if missing:
            raise ValueError(f"{predictions_path}: no prediction for id(s) {missing[:10]} of {labels_path}"
                             f"{' ...' if len(missing) > 10 else ''}; predict every labelled sample")
    have_pred = [p is not None for p in predictions]
    have_scores = [s is not None for s in scores]
    if not all(have_pred) and not all(have_scores):
        i = next(i for i in range(len(ids)) if not have_pred[i] and not have_scores[i])
        raise ValueError(f"{pred_path}: sample {ids[i]!r} has neither `prediction` nor scores")
    return ClassificationRows(ids, labels, predictions if all(have_pred) else None,
                              scores if all(have_scores) else None, multilabel)


def evaluate_classification_file(predictions_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                                 out_path: str | os.PathLike | None = None, *, average: str = "macro",
                                 classes: Sequence[str] | None = None, positive_class: str | None = None,
                                 threshold: float = 0.5, multilabel: bool | None = None, bootstrap: int = 0,
                                 seed: int = 0, csv_path: str | os.PathLike | None = None,
                                 html_path: str | os.PathLike | None = None) -> dict:
    """Score a predictions file (JSONL / JSON / CSV) against its labels; write metrics JSON (and CSV / HTML)."""
    from medvlm.evaluate.bootstrap import bootstrap_ci
    from medvlm.evaluate.report import Pair, write_outputs

    rows = read_classification_files(predictions_path, labels_path, multilabel=multilabel)
    score_matrix = None
    if rows.scores is not None:
        names = set().union(*(s.keys() for s in rows.scores))
        seen = set(rows.labels) if not rows.multilabel else set().union(*map(set, rows.labels))
        if rows.predictions is not None:
            seen |= set(rows.predictions) if not rows.multilabel else set().union(*map(set, rows.predictions))
        if classes is None:
            classes = sorted(names | seen, key=_sort_key)
        for i, s in enumerate(rows.scores):
            if set(s) != set(classes):
                raise ValueError(f"{predictions_path}: sample {rows.ids[i]!r} has scores for {sorted(s)}; "
                                 f"expected one score per class {list(classes)}")
        score_matrix = np.array([[s[c] for c in classes] for s in rows.scores], dtype=float)
    stats = classification_statistics(rows.labels, rows.predictions, score_matrix, classes=classes,
                                      average=average, positive_class=positive_class, threshold=threshold)
    metrics = stats.aggregate()
    if bootstrap:
        metrics["ci95"] = bootstrap_ci([stats], len(stats), replicates=bootstrap, seed=seed)

    def show(v) -> str:
        return "|".join(v) if isinstance(v, tuple) else str(v)

    predicted = [stats.classes[k] for k in stats.y_pred] if not stats.multilabel else \
        [tuple(c for c, on in zip(stats.classes, r, strict=True) if on) for r in stats.y_pred]
    pairs = [Pair(str(i), show(p), show(t)) for i, p, t in zip(rows.ids, predicted, rows.labels, strict=True)]
    correct = stats.correct()
    write_outputs(metrics, pairs, [{"correct": float(c)} for c in correct], correct, out_path=out_path,
                  csv_path=csv_path, html_path=html_path, title=f"Classification: {os.fspath(predictions_path)}",
                  chart=("F1 per class", {c: v["f1"] for c, v in metrics["per_class"].items()}),
                  score_name="correctness (1 = right)")
    return metrics
