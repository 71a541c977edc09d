"""Report metrics in one call: every family wired in, bootstrap CIs, and every answers format records reads."""

from __future__ import annotations

import csv
import json

import pytest

from medvlm.evaluate.report import evaluate_report_file, paired_answers, report_metrics

PREDICTIONS = [
    "The heart is enlarged. Small left pleural effusion, increased since the prior study.",
    "No acute cardiopulmonary abnormality. Lungs are clear.",
    "Right lower lobe consolidation. No pneumothorax.",
    "Endotracheal tube in place. Mild pulmonary edema, unchanged.",
]
REFERENCES = [
    "Cardiomegaly. Small left pleural effusion, new compared with prior.",
    "Lungs are clear. No pleural effusion or pneumothorax.",
    "Consolidation in the right lower lobe, concerning for pneumonia.",
    "Endotracheal tube terminates 4 cm above the carina. Moderate pulmonary edema, worsened.",
]
CLINICAL = ["clinical_micro_f1_14", "clinical_macro_f1_14", "clinical_micro_f1_5", "clinical_macro_f1_5"]


def test_report_metrics_wire_in_every_family():
    from medvlm.evaluate.clinical import clinical_metrics
    from medvlm.evaluate.nlg import report_nlg_metrics
    from medvlm.evaluate.temporal import temporal_entity_f1

    m = report_metrics(PREDICTIONS, REFERENCES, meteor=False, bertscore=False)
    assert m["n"] == 4
    nlg = report_nlg_metrics(PREDICTIONS, REFERENCES)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"):
        assert m[key] == pytest.approx(nlg[key])
    clinical = clinical_metrics(PREDICTIONS, REFERENCES)
    for key in CLINICAL + [k + "_plus" for k in CLINICAL]:
        assert m[key] == pytest.approx(clinical[key])
        assert 0.0 <= m[key] <= 1.0
    assert m["temporal_f1"] == pytest.approx(temporal_entity_f1(PREDICTIONS, REFERENCES))
    assert "meteor" not in m and "bertscore_minilm_f1" not in m
    assert set(m["per_observation"]["Cardiomegaly"]) >= {"precision", "recall", "f1", "support"}


def test_bootstrap_gives_seeded_intervals_for_every_metric():
    first = report_metrics(PREDICTIONS, REFERENCES, meteor=False, bertscore=False, bootstrap=40, seed=7)
    again = report_metrics(PREDICTIONS, REFERENCES, meteor=False, bertscore=False, bootstrap=40, seed=7)
    assert first["ci95"] == again["ci95"]
    for key in ("bleu4", "rouge_l", "cider", "temporal_f1", *CLINICAL):
        lo, hi = first["ci95"][key]
        assert lo <= hi
    assert "n" not in first["ci95"] and "per_observation" not in first["ci95"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("form", ["llava_rad", "mslora_cr", "medvlm_with_questions"])
def test_every_answers_format_gives_the_same_metrics(tmp_path, form):
    if form == "llava_rad":
        answers = _write_jsonl(tmp_path / "a.jsonl", [
            {"id": f"s{i}", "query": "<image>\nDescribe the findings.", "reference": r, "prediction": p}
            for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES, strict=True))])
        questions = None
    elif form == "mslora_cr":
        answers = _write_jsonl(tmp_path / "a.jsonl", [
            {"question_id": i, "prompt": "Findings?", "text": p, "gt": r, "answer_type": "OPEN"}
            for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES, strict=True))])
        questions = None
    else:
        answers = _write_jsonl(tmp_path / "a.jsonl", [
            {"question_id": i, "prompt": "Findings?", "text": p, "answer_id": f"a{i}", "model_id": "tiny", "metadata": {}}
            for i, p in reversed(list(enumerate(PREDICTIONS)))])  # order differs from the questions file
        questions = _write_jsonl(tmp_path / "q.jsonl", [
            {"question_id": i, "image": f"img{i}.png", "text": "<image>\nFindings?", "reference": r}
            for i, r in enumerate(REFERENCES)])
    out, csv_path = tmp_path / "metrics.json", tmp_path / "rows.csv"
    m = evaluate_report_file(answers, questions, out, csv_path=csv_path, meteor=False, bertscore=False)
    expected = report_metrics(PREDICTIONS, REFERENCES, meteor=False, bertscore=False)
    for key in ("bleu4", "cider", "rouge_l", "temporal_f1", "clinical_micro_f1_14"):
        assert m[key] == pytest.approx(expected[key])
    assert json.loads(out.read_text())["n"] == 4
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 4 and {"id", "prediction", "reference", "bleu4", "rouge_l", "temporal_f1"} <= set(rows[0])
    by_id = {r["id"]: r for r in rows}
    first_id = "s0" if form == "llava_rad" else "0"
    assert by_id[first_id]["prediction"] == PREDICTIONS[0] and by_id[first_id]["reference"] == REFERENCES[0]


def test_missing_and_duplicated_ids_are_errors_that_name_them(tmp_path):
    questions = _write_jsonl(tmp_path / "q.jsonl", [
        {"question_id": i, "text": "Findings?", "reference": r} for i, r in enumerate(REFERENCES)])
    answers = _write_jsonl(tmp_path / "a.jsonl", [
        {"question_id": i, "prompt": "Findings?", "text": p} for i, p in enumerate(PREDICTIONS[:3])])
    with pytest.raises(ValueError, match=r"no answer for question id\(s\) \[3\]"):
        paired_answers(answers, questions)
    _write_jsonl(answers, [{"question_id": i, "prompt": "", "text": p} for i, p in enumerate(PREDICTIONS + ["x"])])
    with pytest.raises(ValueError, match="answer id 4 has no question"):
        paired_answers(answers, questions)
    _write_jsonl(answers, [{"question_id": 1, "prompt": "", "text": "a"}, {"question_id": 1, "prompt": "", "text": "b"}])
    with pytest.raises(ValueError, match="duplicate (answer )?id 1"):
        paired_answers(answers, questions)
    _write_jsonl(answers, [{"question_id": 1, "prompt": "", "text": "a"}])
    with pytest.raises(ValueError, match="answer id 1 has no reference"):
        paired_answers(answers)


def test_meteor_comes_from_the_scorer_on_ptb_tokenised_text():
    # A stand-in for the jar (starting Java costs ~15 s of CPU; tests/evaluate/test_meteor.py runs the real one):
    # it records what it was sent and returns jar-shaped statistics.
    import numpy as np

    meteor = pytest.importorskip("medvlm.evaluate.meteor")

    class RecordingScorer:
        def score(self, predictions, references, *, tokenized=False):
            self.sent = (list(predictions), list(references), tokenized)
            rng = np.random.default_rng(0)
            stats = rng.integers(1, 9, size=(len(predictions), 23)).astype(float)
            return meteor.MeteorStats(stats=stats, per_segment=meteor.meteor_from_stats(stats))

    scorer = RecordingScorer()
    m = report_metrics(PREDICTIONS, REFERENCES, bertscore=False, bootstrap=20, meteor_scorer=scorer)
    predictions, references, tokenized = scorer.sent
    assert tokenized and predictions[1] == "no acute cardiopulmonary abnormality lungs are clear"
    assert references[1] == ["lungs are clear no pleural effusion or pneumothorax"]
    expected = scorer.score(PREDICTIONS, REFERENCES).aggregate()  # seeded: the same statistics again
    assert m["meteor"] == pytest.approx(expected["meteor"])
    assert m["meteor_segment_mean"] == pytest.approx(expected["meteor_segment_mean"])
    assert "meteor" in m["ci95"]


def test_bertscore_minilm_f1_with_an_interval():
    pytest.importorskip("medvlm.evaluate.bertscore")
    m = report_metrics(PREDICTIONS, REFERENCES, meteor=False, bootstrap=20)
    assert 0.0 < m["bertscore_minilm_f1"] <= 1.0 and "bertscore_minilm_f1" in m["ci95"]


def test_duplicated_id_in_an_answers_file_with_references_is_an_error(tmp_path):
    answers = _write_jsonl(tmp_path / "a.jsonl", [
        {"id": "s1", "query": "q", "reference": "a", "prediction": "a"},
        {"id": "s1", "query": "q", "reference": "b", "prediction": "b"}])
    with pytest.raises(ValueError, match="duplicate .*id 's1'"):
        paired_answers(answers)


def test_scoring_reports_without_bertscore_does_not_import_torch():
    # A fresh `medvlm evaluate report --no-bertscore` should not pay the seconds a torch import costs.
    import subprocess
    import sys

    code = ("import sys, medvlm.evaluate.report, medvlm.evaluate.meteor, medvlm.cli.evaluate;"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
