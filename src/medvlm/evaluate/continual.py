"""Continual-learning metrics from an accuracy matrix (GEM, Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).

R[i][j] is the accuracy on task j's test set after training on tasks 0..i (T tasks, rows = training stages,
columns = tasks, same order). Entries never measured may be missing (null / empty); a metric that needs one
says so. b[j] is the accuracy of a model that never trained on task j (e.g. the frozen base model, or a
randomly initialised one), only for forward transfer. Values keep the matrix's scale (fractions or percent).

    average_accuracy  ACC = 1/T   sum_j        R[T-1][j]                       (after the last task)
    bwt               BWT = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])           (< 0: forgetting)
    fwt               FWT = 1/(T-1) sum_{j>=1}  (R[j-1][j] - b[j])              (needs b)
    forgetting        F   = 1/(T-1) sum_{j<T-1} f_j,  f_j = max_{l<T-1} R[l][j] - R[T-1][j]
                      (Chaudhry et al.'s forgetting measure after the last task: the largest drop from any
                      earlier stage; stages where task j was not measured are skipped)
    learning_accuracy LA  = 1/T   sum_j        R[j][j]                         (just after learning each task)
    average_accuracy_per_stage[i] = mean_{j<=i} R[i][j]                        (accuracy on the tasks seen so far)

T = 1 has no BWT, FWT or forgetting (None).
Files: JSON (a list of rows, or {"tasks": [...], "matrix": [[...]], "baseline": [...]}) or CSV (a header of task
names, then one row per stage, optionally led by the stage's task name; empty cells are missing).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _check_matrix(matrix: Sequence[Sequence[float | None]]) -> np.ndarray:
    rows = [list(r) for r in matrix]
    t = len(rows)
    if t == 0:
        raise ValueError("the accuracy matrix is empty")
    for i, row in enumerate(rows):
        if len(row) != t:
            raise ValueError(f"accuracy matrix row {i} has {len(row)} values; a T x T matrix needs {t} "
                             "(one column per task, in training order; leave unmeasured entries null)")
    array = np.array([[float("nan") if v is None else float(v) for v in row] for row in rows], dtype=float)
    diagonal = np.diag(array)
    if np.isnan(diagonal).any():
        i = int(np.argmax(np.isnan(diagonal)))
        raise ValueError(f"accuracy matrix entry R[{i}][{i}] (task {i} right after training it) is missing")
    if np.isnan(array[-1]).any():
        j = int(np.argmax(np.isnan(array[-1])))
        raise ValueError(f"accuracy matrix entry R[{t - 1}][{j}] (task {j} after the last stage) is missing; "
                         "every task must be measured after the last stage")
    return array


def continual_metrics(matrix: Sequence[Sequence[float | None]], baseline: Sequence[float] | None = None,
                      tasks: Sequence[str] | None = None) -> dict:
    """ACC, BWT, forgetting, FWT (with `baseline`), learning accuracy and per-task details; see module docstring."""
    r = _check_matrix(matrix)
    t = r.shape[0]
    names = [str(x) for x in tasks] if tasks is not None else [str(j) for j in range(t)]
    if len(names) != t:
        raise ValueError(f"{len(names)} task names for a {t} x {t} matrix")
    last = r[-1]
    out: dict = {"average_accuracy": float(last.mean()),
                 "learning_accuracy": float(np.diag(r).mean())}
    if t > 1:
        out["bwt"] = float(np.mean([last[j] - r[j, j] for j in range(t - 1)]))
        drops = []
        for j in range(t - 1):
            earlier = r[: t - 1, j]
            earlier = earlier[~np.isnan(earlier)]
            drops.append(float(earlier.max() - last[j]))
        out["forgetting"] = float(np.mean(drops))
    else:
        out["bwt"] = out["forgetting"] = None
        drops = []
    if baseline is not None:
        b = np.array([float("nan") if v is None else float(v) for v in baseline], dtype=float)
        if len(b) != t:
            raise ValueError(f"{len(b)} baseline accuracies for {t} tasks; give one per task (b[0] may be null)")
        if t > 1:
            gains = []
            for j in range(1, t):
                if math.isnan(r[j - 1, j]):
                    raise ValueError(f"forward transfer needs R[{j - 1}][{j}] (task {j} before training it), "
                                     "which is missing")
                if math.isnan(b[j]):
                    raise ValueError(f"forward transfer needs the baseline accuracy of task {j}, which is missing")
                gains.append(r[j - 1, j] - b[j])
            out["fwt"] = float(np.mean(gains))
        else:
            out["fwt"] = None
    out["average_accuracy_per_stage"] = [float(np.nanmean(r[i, : i + 1])) for i in range(t)]
    out["per_task"] = {
        name: {"final": float(last[j]), "just_learned": float(r[j, j]),
               "forgetting": drops[j] if j < len(drops) else None}
        for j, name in enumerate(names)
    }
    out["tasks"] = names
    return out


def _number(value, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a number") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return not text.strip()


def read_matrix(path: str | os.PathLike) -> tuple[list[list[float | None]], list[str] | None, list | None]:
    """(matrix, task names or None, baseline or None) from a JSON or CSV file (see the module docstring)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        tasks = baseline = None
        if isinstance(data, dict):
            if "matrix" not in data:
                raise ValueError(f"{path}: expected a key `matrix` (rows = training stages, columns = tasks)")
            tasks, baseline, data = data.get("tasks"), data.get("baseline"), data["matrix"]
        if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
            raise ValueError(f"{path}: `matrix` must be a list of rows (lists of numbers)")
        matrix = [[_number(v, f"{path} matrix[{i}][{j}]") for j, v in enumerate(row)] for i, row in enumerate(data)]
        if baseline is not None:
            baseline = [_number(v, f"{path} baseline[{j}]") for j, v in enumerate(baseline)]
        return matrix, tasks, baseline
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: expected a header of task names and one row per training stage")
    header, body = rows[0], rows[1:]
    if all(_is_number(c) for c in header):  # no header: numbers only
        header, body = [], rows
        return [[_number(v, f"{path} line {i + 1} column {j + 1}") for j, v in enumerate(r)]
                for i, r in enumerate(body)], None, None
    # a leading label column: the header's first cell is a title ("", "after") and rows start with a name
    labelled = len(header) == len(body) + 1
    tasks = [h.strip() for h in (header[1:] if labelled else header)]
    matrix = []
    for i, row in enumerate(body):
        cells = row[1:] if labelled else row
        matrix.append([_number(v, f"{path} line {i + 2} column {j + 1}") for j, v in enumerate(cells)])
    return matrix, tasks, None


def evaluate_continual_file(matrix_path: str | os.PathLike, out_path: str | os.PathLike | None = None, *,
                            baseline: Sequence[float] | str | os.PathLike | None = None,
                            html_path: str | os.PathLike | None = None) -> dict:
    """Continual-learning metrics of a matrix file; `baseline`: numbers, or a file (JSON list / CSV row)."""
    from medvlm.fileio import atomic_write_json

    matrix, tasks, file_baseline = read_matrix(matrix_path)
    if isinstance(baseline, (str, os.PathLike)):
        baseline = read_baseline(baseline)
    metrics = continual_metrics(matrix, baseline if baseline is not None else file_baseline, tasks)
    metrics["matrix"] = matrix
    if out_path is not None:
        atomic_write_json(out_path, metrics)
    if html_path is not None:
        from medvlm.evaluate.html import write_html_report

        write_html_report(metrics, [], html_path, title=f"Continual learning: {os.fspath(matrix_path)}",
                          chart=("Forgetting per task",
                                 {k: v["forgetting"] for k, v in metrics["per_task"].items()
                                  if v["forgetting"] is not None}))
    return metrics


def read_baseline(path: str | os.PathLike) -> list[float | None]:
    """Per-task baseline accuracies from a JSON list or a one-row CSV (optionally under a header of task names)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig").strip()
    if text.startswith("["):
        values = json.loads(text)
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        values = rows[-1]
    return [_number(v, f"{path} value {j + 1}") for j, v in enumerate(values)]
