"""Report-generation metrics in one call: NLG, METEOR, BERTScore, clinical F1 and temporal F1, with bootstrap CIs.

`report_metrics(predictions, references)` returns, on a 0-1 scale (CIDEr-D on its own scale, ~0-10):
    bleu1 bleu2 bleu3 bleu4 rouge_l cider      pycocoevalcap 1.2 after PTB tokenisation (`medvlm.evaluate.nlg`)
    meteor                                     METEOR 1.5, the jar (`medvlm.evaluate.meteor`): corpus score from the
                                               summed segment statistics, as pycocoevalcap; meteor=False skips
    meteor_segment_mean                        the mean of the per-report METEOR scores
    bertscore_minilm_f1 (_precision, _recall)  BERTScore with all-MiniLM-L6-v2 (NOT roberta-large: not comparable
                                               with papers' BERTScore), mean over reports; bertscore=False skips
    clinical_micro_f1_14 clinical_macro_f1_14 clinical_micro_f1_5 clinical_macro_f1_5 and the `_plus` variants
                                               CheXpert observations from the offline labeler (`evaluate.clinical`)
    temporal_f1                                Libra's temporal entity F1 (`evaluate.temporal`)
    per_observation                            {observation: {precision, recall, f1, support}} (strict labels)
    n                                          number of report pairs
With bootstrap=B > 0: `ci95: {metric: [lo, hi]}`, the percentile bootstrap of `medvlm.evaluate.bootstrap`: every
scorer runs once, each family keeps per-sample statistics, and every replicate re-aggregates all families on the
same resampled indices. CIDEr-D keeps the document frequencies of the full set in every replicate (the mean
of its per-sample scores, `NlgStats.aggregate`'s default); BLEU is recomputed from the resampled n-gram counts.

Files: `evaluate_report_file(answers, references=None)` reads any answers file `medvlm.records` reads (medvlm /
LLaVA, LLaVA-Rad's {id, query, reference, prediction}, MSLoRA-CR's {question_id, prompt, text, gt, ...}); the
references are in the answers, or come from a questions file joined by id (`paired_answers`).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvlm.fileio import atomic_write_json, atomic_write_text

# the order of the keys in metrics.json, the summary table and the HTML report
REPORT_KEYS = (
    "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "meteor_segment_mean", "rouge_l", "cider", "bertscore_minilm_f1",
    "bertscore_minilm_precision", "bertscore_minilm_recall",
    "clinical_micro_f1_14", "clinical_macro_f1_14", "clinical_micro_f1_5", "clinical_macro_f1_5",
    "clinical_micro_f1_14_plus", "clinical_macro_f1_14_plus", "clinical_micro_f1_5_plus",
    "clinical_macro_f1_5_plus", "temporal_f1",
)


# ----------------------------------------------------------------------------------------------------------
# answers + references


@dataclass
class Pair:
    """One scored sample: its id, the model's text and the reference (plus the question and answer type)."""

    id: Any
    prediction: str
    reference: str
    prompt: str = ""
    answer_type: str | None = None


def paired_answers(answers_path: str | os.PathLike, references_path: str | os.PathLike | None = None) -> list[Pair]:
    """Answers with their references, in the answers file's order.

    Without `references_path` every answer must carry its reference (`reference`, MSLoRA-CR's `gt`, LLaVA-Rad's
    `reference`). With it (a questions file), references and answer types come from the question of the same id;
    ids are compared as text, so 7 and "7" match. A duplicated id in either file, an answer without a question
    or a question without an answer is an error that names the id.
    """
    from medvlm.records import load_answers, load_questions

    answers = load_answers(answers_path)
    if not answers:
        raise ValueError(f"{answers_path}: no answers to score")
    if references_path is None:
        pairs, seen = [], set()
        for a in answers:
            if str(a.question_id) in seen:
                raise ValueError(f"{answers_path}: duplicate answer id {a.question_id!r}; ids must be unique")
            seen.add(str(a.question_id))
            if a.reference is None:
                raise ValueError(f"{answers_path}: answer id {a.question_id!r} has no reference (`reference` or "
                                 "`gt`); give the questions file with --references QUESTIONS.jsonl")
            pairs.append(Pair(a.question_id, a.text, a.reference, a.prompt, a.answer_type))
        return pairs
    questions = load_questions(references_path)
    by_id: dict[str, Any] = {}
    for q in questions:
        key = str(q.question_id)
        if key in by_id:
            raise ValueError(f"{references_path}: duplicate question id {q.question_id!r}; ids must be unique")
        by_id[key] = q
    pairs, seen = [], set()
    for a in answers:
        key = str(a.question_id)
        if key in seen:
            raise ValueError(f"{answers_path}: duplicate answer id {a.question_id!r}; ids must be unique")
        seen.add(key)
        question = by_id.get(key)
        if question is None:
            raise ValueError(f"{answers_path}: answer id {a.question_id!r} has no question in {references_path}; "
                             "score answers against the questions file they were generated from")
        if question.reference is None:
            raise ValueError(f"{references_path}: question id {question.question_id!r} has no reference answer "
                             "(`reference`, `gt` or `answer`)")
        pairs.append(Pair(a.question_id, a.text, question.reference, a.prompt or question.text,
                          question.answer_type or a.answer_type))
    unanswered = [q.question_id for q in questions if str(q.question_id) not in seen]
    if unanswered:
        raise ValueError(f"{answers_path}: no answer for question id(s) {unanswered[:10]}"
                         f"{' ...' if len(unanswered) > 10 else ''} of {references_path} ({len(unanswered)} in all); "
                         "finish the prediction run (`medvlm predict` resumes) or score a matching questions file")
    return pairs


# ----------------------------------------------------------------------------------------------------------
# metrics


@dataclass
class ReportStatistics:
    """Every metric family's statistics over the same n pairs, plus per-sample scores for CSV rows and examples."""

    families: dict[str, Any]
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.per_sample.values())))

    def aggregate(self, indices: Sequence[int] | np.ndarray | None = None) -> dict:
        merged: dict = {}
        for family in self.families.values():
            merged.update(family.aggregate(indices))
        ordered = {k: merged.pop(k) for k in REPORT_KEYS if k in merged}
        ordered.update(merged)
        ordered["n"] = len(self) if indices is None else len(indices)
        return ordered

    def per_sample_rows(self) -> list[dict[str, float]]:
        names = list(self.per_sample)
        return [{k: float(self.per_sample[k][i]) for k in names} for i in range(len(self))]

    def score(self) -> np.ndarray:
        """The per-sample score that ranks examples in the HTML report (see `RANKING_SCORES`)."""
        for key in RANKING_SCORES:
            if key in self.per_sample:
                return self.per_sample[key]
        return np.full(len(self), np.nan)


# Per-sample score used to pick the worst / best examples, first available wins: BERTScore and METEOR compare
# meaning and wording per sample; ROUGE-L ranks finely without them; clinical agreement (share of the 14
# observations labelled alike) takes only 15 values, too coarse to rank by alone.
RANKING_SCORES = ("bertscore_minilm_f1", "meteor", "rouge_l", "clinical_agreement", "temporal_f1")


def report_statistics(predictions: Sequence[str], references: Sequence[str], *, meteor: bool = True,
                      bertscore: bool = True, meteor_scorer: Any = None) -> ReportStatistics:
    """Run every scorer once over aligned predictions and references (see the module docstring).

    meteor_scorer: a running `medvlm.evaluate.meteor.MeteorScorer` to reuse (e.g. across validation rounds);
    without one a Java process is started and stopped for this call.
    """
    from medvlm.evaluate.clinical import clinical_statistics, label_reports
    from medvlm.evaluate.nlg import nlg_statistics
    from medvlm.evaluate.temporal import temporal_statistics

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; "
                         "report metrics need one reference per prediction")
    if not predictions:
        raise ValueError("no report pairs to score")
    predictions, references = [str(p) for p in predictions], [str(r) for r in references]
    families: dict[str, Any] = {}
    per_sample: dict[str, np.ndarray] = {}

    own_meteor = None
    if meteor and meteor_scorer is None:
        from medvlm.evaluate.meteor import MeteorScorer

        # nothing starts yet: the jar starts (about a second) at the score call below, with the paraphrase
        # entries that the tokenised texts can use
        meteor_scorer = own_meteor = MeteorScorer()
    try:
        nlg = nlg_statistics(predictions, references)
        bert = None
        if bertscore:
            from medvlm.evaluate.bertscore import bertscore_statistics

            bert = bertscore_statistics(predictions, references)
        clinical = clinical_statistics(label_reports(predictions), label_reports(references))
        temporal = temporal_statistics(predictions, references)
        # the texts go to the jar PTB-tokenised, exactly as nlg tokenised them
        meteor_stats = (meteor_scorer.score(nlg.predictions_tokenized, nlg.references_tokenized, tokenized=True)
                        if meteor else None)
    finally:
        if own_meteor is not None:
            own_meteor.close()

    families["nlg"] = nlg
    per_sample["bleu4"] = nlg.per_sample_bleu4  # sentence BLEU-4, as pycocoevalcap's per-image list
    per_sample["rouge_l"] = nlg.per_sample_rouge_l
    per_sample["cider"] = nlg.per_sample_cider
    if meteor_stats is not None:
        families["meteor"] = meteor_stats
        per_sample["meteor"] = np.asarray(meteor_stats.per_segment, dtype=float)
    if bert is not None:
        families["bertscore"] = bert
        per_sample["bertscore_minilm_f1"] = np.asarray(bert.f1, dtype=float)
    families["clinical"] = clinical
    # per report: share of the 14 observations on which prediction and reference agree (positive vs not)
    per_sample["clinical_agreement"] = (clinical.pred == clinical.ref).mean(axis=1).astype(float)
    families["temporal"] = temporal
    per_sample["temporal_f1"] = np.asarray(temporal.f1, dtype=float)
    return ReportStatistics(families, per_sample)


def report_metrics(predictions: Sequence[str], references: Sequence[str], *, bootstrap: int = 0, seed: int = 0,
                   meteor: bool = True, bertscore: bool = True, meteor_scorer: Any = None) -> dict:
    """All report metrics (see the module docstring); with bootstrap=B, `ci95` from B paired resamples."""
    from medvlm.evaluate.bootstrap import bootstrap_ci

    stats = report_statistics(predictions, references, meteor=meteor, bertscore=bertscore,
                              meteor_scorer=meteor_scorer)
    metrics = stats.aggregate()
    if bootstrap:
        metrics["ci95"] = bootstrap_ci(list(stats.families.values()), len(stats), replicates=bootstrap, seed=seed)
    return metrics


def evaluate_report_file(answers_path: str | os.PathLike, references_path: str | os.PathLike | None = None,
                         out_path: str | os.PathLike | None = None, *, csv_path: str | os.PathLike | None = None,
                         html_path: str | os.PathLike | None = None, bootstrap: int = 0, seed: int = 0,
                         meteor: bool = True, bertscore: bool = True) -> dict:
    """Score an answers file of generated reports; write metrics JSON, per-sample CSV and HTML where asked."""
    from medvlm.evaluate.bootstrap import bootstrap_ci

    pairs = paired_answers(answers_path, references_path)
    stats = report_statistics([p.prediction for p in pairs], [p.reference for p in pairs], meteor=meteor,
                              bertscore=bertscore)
    metrics = stats.aggregate()
    if bootstrap:
        metrics["ci95"] = bootstrap_ci(list(stats.families.values()), len(stats), replicates=bootstrap, seed=seed,
                                       progress=bootstrap >= 200)
    score_name = next((k for k in RANKING_SCORES if k in stats.per_sample), "score")
    write_outputs(metrics, pairs, stats.per_sample_rows(), stats.score(), out_path=out_path, csv_path=csv_path,
                  html_path=html_path, title=f"Report metrics: {os.fspath(answers_path)}", score_name=score_name)
    return metrics


# ----------------------------------------------------------------------------------------------------------
# outputs shared by the evaluate verbs


def write_outputs(metrics: Mapping[str, Any], pairs: Sequence[Any], per_sample_rows: Sequence[Mapping[str, float]],
                  scores: Sequence[float] | np.ndarray, *, out_path: str | os.PathLike | None = None,
                  csv_path: str | os.PathLike | None = None, html_path: str | os.PathLike | None = None,
                  title: str = "medvlm evaluation", chart: tuple[str, Mapping[str, Any]] | None = None,
                  score_name: str = "per-sample score") -> None:
    """Write metrics JSON, a per-sample CSV (id, prediction, reference, scores) and an HTML report, each if asked.

    pairs: objects with id, prediction, reference (and prompt); per_sample_rows / scores: aligned with pairs.
    """
    if out_path is not None:
        atomic_write_json(out_path, json_ready(metrics))
    if csv_path is not None:
        atomic_write_text(csv_path, per_sample_csv(pairs, per_sample_rows))
    if html_path is not None:
        from medvlm.evaluate.html import write_html_report

        examples = [{"id": p.id, "prediction": p.prediction, "reference": p.reference,
                     "prompt": getattr(p, "prompt", ""), "score": float(s)} for p, s in zip(pairs, scores, strict=True)]
        write_html_report(metrics, examples, html_path, title=title, chart=chart, score_name=score_name)


def json_ready(value: Any) -> Any:
    """`value` with NaN / infinite floats as None (null), so that metrics files are strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def per_sample_csv(pairs: Sequence[Any], per_sample_rows: Sequence[Mapping[str, float]]) -> str:
    """CSV text: id, prediction, reference, then one column per score (empty where a score does not apply)."""
    score_names: list[str] = []
    for row in per_sample_rows:
        score_names += [k for k in row if k not in score_names]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "prediction", "reference", *score_names])
    for pair, row in zip(pairs, per_sample_rows, strict=True):
        cells = []
        for k in score_names:
            v = row.get(k)
            cells.append("" if v is None or (isinstance(v, float) and np.isnan(v)) else repr(float(v)))
        writer.writerow([pair.id, pair.prediction, pair.reference, *cells])
    return buffer.getvalue()


def summary_table(metrics: Mapping[str, Any]) -> str:
    """A plain-text table of the scalar metrics (with CIs when present), for the end of CLI commands."""
    ci = metrics.get("ci95") or {}
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not rows:
        return ""
    width = max(len(k) for k, _ in rows)
    lines = []
    for key, value in rows:
        text = str(value) if isinstance(value, int) else f"{value:.4f}"
        interval = ci.get(key)
        if interval:
            text += f"  [{interval[0]:.4f}, {interval[1]:.4f}]"
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)
