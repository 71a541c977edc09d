"""A self-contained HTML evaluation report: one file, inline CSS, charts as base64 PNG (matplotlib, Agg).

Contents: the metrics table (value and 95% CI when bootstrapped), bar charts (per-observation clinical F1
when the metrics have `per_observation`, plus any chart the caller passes, e.g. F1 per class), a histogram of
the per-sample scores, and the worst and best examples side by side (prediction against reference), ranked
by the caller's per-sample score. Nothing is fetched when the page is opened.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from medvlm.fileio import atomic_write_text

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:13px}
table.metrics{border-collapse:collapse;font-size:14px}
table.metrics th,table.metrics td{padding:4px 12px;border-bottom:1px solid #eee;text-align:right}
table.metrics th:first-child,table.metrics td:first-child{text-align:left;font-family:monospace}
table.metrics tr:hover{background:#f6f8fa}
.charts img{max-width:100%;border:1px solid #eee;margin:6px 0}
.columns{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;margin-bottom:10px;font-size:13px;background:#fff}
.card .head{display:flex;justify-content:space-between;color:#555;font-family:monospace;margin-bottom:4px}
.card .label{font-weight:600;color:#444;margin-top:4px}
.card .text{white-space:pre-wrap;background:#f8f8f8;border-radius:4px;padding:4px 6px;margin-top:2px}
.worst h3{color:#b03030}.best h3{color:#2a7a2a}h3{font-size:15px;margin:6px 0}
"""


def _png_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bar_chart(title: str, values: Mapping[str, float | None]) -> str | None:
    """A horizontal bar chart of name -> value (None / NaN left out) as a PNG data URI."""
    items = [(str(k), float(v)) for k, v in values.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))]
    if not items:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, numbers = zip(*items, strict=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(items) + 1.0))
    positions = range(len(items))
    ax.barh(positions, numbers, color="#4c78a8")
    ax.set_yticks(list(positions), names, fontsize=9)
    ax.invert_yaxis()
    upper = max(1.0, max(numbers)) if min(numbers) >= 0 else max(numbers)
    ax.set_xlim(min(0.0, min(numbers)), upper * 1.12 if upper > 0 else 0.0)
    for y, v in zip(positions, numbers, strict=True):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    uri = _png_data_uri(fig)
    plt.close(fig)
    return uri


def _histogram(title: str, scores: Sequence[float]) -> str | None:
    finite = [float(s) for s in scores if s is not None and not math.isnan(float(s))]
    if len(finite) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    ax.hist(finite, bins=min(30, max(5, len(finite) // 5)), color="#72b7b2", edgecolor="white")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("per-sample score")
    ax.set_ylabel("samples")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5-sample ticks
    uri = _png_data_uri(fig)
    plt.close(fig)
    return uri


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    ci = metrics.get("ci95") or {}
    rows = []
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            interval = ci.get(key)
            ci_text = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{_format(value)}</td><td>{ci_text}</td></tr>")
    head = "<tr><th>metric</th><th>value</th><th>95% CI</th></tr>" if ci else "<tr><th>metric</th><th>value</th><th></th></tr>"
    return f'<table class="metrics">{head}{"".join(rows)}</table>'


def _matrix_table(matrix: Sequence[Sequence[float | None]], tasks: Sequence[str] | None) -> str:
    """The continual-learning accuracy matrix: rows = after training task i, columns = tested on task j."""
    names = [str(t) for t in tasks] if tasks else [str(j) for j in range(len(matrix))]
    head = "<tr><th>after \\ on</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    rows = ["<tr><td>" + html.escape(names[i]) + "</td>" + "".join(f"<td>{_format(v)}</td>" for v in row) + "</tr>"
            for i, row in enumerate(matrix)]
    return f'<table class="metrics">{head}{"".join(rows)}</table>'


def _per_observation_f1(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Per-observation F1 from `per_observation` ({obs: F1} or {obs: {"f1": F1, "support": n, ...}}). An
    observation no reference has (support 0) is left out: its F1 of 0 would read as a miss."""
    table = metrics.get("per_observation") or {}
    out: dict[str, float | None] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            if value.get("support") == 0:
                continue
            value = value.get("f1")
        out[name] = value
    return out


def _card(example: Mapping[str, Any]) -> str:
    score = example.get("score")
    score_text = "" if score is None or (isinstance(score, float) and math.isnan(score)) else f"score {score:.3f}"
    parts = [f'<div class="card"><div class="head"><span>id {html.escape(str(example.get("id", "")))}</span>'
             f"<span>{score_text}</span></div>"]
    if example.get("prompt"):
        parts.append(f'<div class="label">question</div><div class="text">{html.escape(str(example["prompt"]))}</div>')
    parts.append(f'<div class="label">prediction</div><div class="text">{html.escape(str(example.get("prediction", "")))}</div>')
    parts.append(f'<div class="label">reference</div><div class="text">{html.escape(str(example.get("reference", "")))}</div>')
    parts.append("</div>")
    return "".join(parts)


def select_examples(examples: Sequence[Mapping[str, Any]], k: int) -> tuple[list, list]:
    """(worst k, best k) examples by their `score` (examples without a score are left out; ties keep file order)."""
    scored = [e for e in examples if e.get("score") is not None and not math.isnan(float(e["score"]))]
    ranked = sorted(range(len(scored)), key=lambda i: (float(scored[i]["score"]), i))
    worst = [scored[i] for i in ranked[:k]]
    best = [scored[i] for i in sorted(ranked, key=lambda i: (-float(scored[i]["score"]), i))[:k]]
    return worst, best


def write_html_report(metrics: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                      *, title: str = "medvlm evaluation", chart: tuple[str, Mapping[str, float | None]] | None = None,
                      n_examples: int = 5, score_name: str = "per-sample score") -> None:
    """Write the report to `path` (atomically).

    metrics: flat metric values (float / int) plus optional `ci95` {key: [lo, hi]} and `per_observation`.
    examples: dicts with id, prediction, reference, score (higher = better) and optional prompt.
    chart: (title, {name: value}) for one more bar chart (e.g. F1 per class).
    """
    charts = []
    per_observation = _per_observation_f1(metrics)
    if per_observation:
        charts.append(_bar_chart("Clinical F1 per observation (uncertain = negative)", per_observation))
    if chart is not None:
        charts.append(_bar_chart(chart[0], chart[1]))
    if examples:
        charts.append(_histogram(f"Distribution of the {score_name}", [e.get("score") for e in examples]))
    charts = [c for c in charts if c]
    worst, best = select_examples(examples, n_examples)
    meta = []
    if isinstance(metrics.get("n"), int):
        meta.append(f"{metrics['n']} samples")
    elif isinstance(metrics.get("tasks"), list):
        meta.append(f"{len(metrics['tasks'])} tasks")
    if metrics.get("ci95"):
        meta.append("95% percentile bootstrap CIs")
    body = [f"<h1>{html.escape(title)}</h1>", f'<div class="meta">{"; ".join(meta)}</div>',
            "<h2>Metrics</h2>", _metrics_table(metrics)]
    if isinstance(metrics.get("matrix"), list):
        body += ["<h2>Accuracy matrix R[i][j]</h2>", _matrix_table(metrics["matrix"], metrics.get("tasks"))]
    if charts:
        body.append('<h2>Charts</h2><div class="charts">')
        body += [f'<div><img alt="chart" src="{uri}"></div>' for uri in charts]
        body.append("</div>")
    if worst or best:
        body.append(f"<h2>Examples by {html.escape(score_name)}</h2>")
        body.append('<div class="columns"><div class="worst"><h3>Worst</h3>' + "".join(map(_card, worst)) +
                    '</div><div class="best"><h3>Best</h3>' + "".join(map(_card, best)) + "</div></div>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    atomic_write_text(path, page)
