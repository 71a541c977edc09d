"""Score a mixed answers file by question type: reports with the report metrics, closed and open
questions with exact match. This is what validation during training and `medvlm demo` report.

Keys: the report metrics of `medvlm.evaluate.report` for answer_type "report" (computed over report
answers only), `closed_accuracy` (strict: normalised yes/no equality) over "closed", `open_exact_match`
over "open", `exact_match` over closed + open, and `n_report`, `n_closed`, `n_open`.
"""

from __future__ import annotations

from collections.abc import Sequence

from medvlm.evaluate.vqa import normalize_answer


def score_by_answer_type(
    predictions: Sequence[str],
    references: Sequence[str],
    answer_types: Sequence[str | None],
    *,
    meteor: bool = False,
    bertscore: bool = False,
) -> dict:
    if not (len(predictions) == len(references) == len(answer_types)):
        raise ValueError(
            f"predictions ({len(predictions)}), references ({len(references)}) and answer types "
            f"({len(answer_types)}) must have the same length"
        )
    groups: dict[str, list[int]] = {"report": [], "closed": [], "open": []}
    for i, kind in enumerate(answer_types):
        kind = (kind or "open").lower()
        groups["report" if kind == "report" else "closed" if kind == "closed" else "open"].append(i)
    out: dict = {f"n_{k}": len(v) for k, v in groups.items()}
    if groups["report"]:
        from medvlm.evaluate.report import report_metrics

        idx = groups["report"]
        report = report_metrics(
            [predictions[i] for i in idx], [references[i] for i in idx], meteor=meteor, bertscore=bertscore
        )
        out.update({k: v for k, v in report.items() if k != "n"})
    hits = {}
    for kind in ("closed", "open"):
        hits[kind] = [normalize_answer(predictions[i]) == normalize_answer(references[i]) for i in groups[kind]]
    if hits["closed"]:
        out["closed_accuracy"] = sum(hits["closed"]) / len(hits["closed"])
    if hits["open"]:
        out["open_exact_match"] = sum(hits["open"]) / len(hits["open"])
    both = hits["closed"] + hits["open"]
    if both:
        out["exact_match"] = sum(both) / len(both)
    return out
