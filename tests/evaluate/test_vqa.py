"""VQA scores: MSLoRA-CR's published numbers reproduced from their answer files, and each definition on its own."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from medvlm.evaluate.vqa import nltk_sentence_bleus, normalize_answer, token_f1, vqa_metrics, vqa_statistics
from medvlm.records import load_answers

RESULTS = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "mslora_cr_results"
# metrics.txt row -> medvlm key
MSLORA_ROWS = {
    "exact match score": "mslora_exact_match",
    "f1 score": "mslora_open_f1",
    "precision": "mslora_open_precision",
    "recall": "mslora_open_recall",
    "bleu_score": "mslora_open_bleu",
    "bleu_score_1": "mslora_open_bleu_1gram",
    "bleu_score_2": "mslora_open_bleu_2gram",
    "bleu_score_3": "mslora_open_bleu_3gram",
    "close accuracy": "mslora_closed_accuracy",
}
RUNS = sorted(str(p.parent.relative_to(RESULTS)) for p in RESULTS.glob("*/*/metrics.txt")
              if (p.parent / "answer-file.jsonl").is_file()) if RESULTS.is_dir() else ["(no realdata)"]


def read_metrics_txt(path: Path) -> dict[str, float]:
    """MSLoRA-CR's tabulate output: two header lines, then `name  value` rows."""
    rows = {}
    for line in path.read_text().splitlines()[2:]:
        name, value = line.rsplit(None, 1)
        rows[MSLORA_ROWS[name.strip()]] = float(value)
    return rows


@pytest.mark.parametrize("run", RUNS)
def test_reproduces_every_mslora_cr_metrics_file(realdata, run):
    folder = realdata / "mslora_cr_results" / run
    expected = read_metrics_txt(folder / "metrics.txt")
    answers = load_answers(folder / "answer-file.jsonl")
    metrics = vqa_metrics([a.text for a in answers], [a.reference for a in answers], [a.answer_type for a in answers])
    # the file prints x100 with tabulate's 6 significant digits; the same rows, no more, no fewer
    assert {k for k in MSLORA_ROWS.values() if k in metrics} == set(expected)
    for key, value in expected.items():
        assert float(f"{100 * metrics[key]:.6g}") == value, key


def test_bleu_equals_nltk_sentence_bleu_bit_for_bit(realdata):
    from nltk.translate.bleu_score import sentence_bleu

    path = realdata / "mslora_cr_results" / "finetune_lora_each-64-64_llava_med_v1.5" / "nmi" / "answer-file.jsonl"
    answers = [a for a in load_answers(path) if a.answer_type == "OPEN"][:300]
    weights = [(0.25, 0.25, 0.25, 0.25), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0)]
    for a in answers:
        hyp = normalize_answer(a.text.lower()).split()
        ref = normalize_answer(a.reference.lower()).split()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NLTK warns about every zero n-gram order
            expected = [float(sentence_bleu([ref], hyp, weights=w)) for w in weights]
        assert list(nltk_sentence_bleus(hyp, ref)) == expected


def test_normalisation_follows_llava_med():
    assert normalize_answer("The Left Lung.") == "left lung"
    assert normalize_answer("two nodules") == "2 nodules"
    assert normalize_answer("x-ray") == "x ray"  # a hyphen inside a word becomes a space
    assert normalize_answer("CT - chest") == "ct chest"  # next to a space it is deleted
    assert normalize_answer("1,000 cells, round") == "1000 cells round"  # digit,digit: all marks deleted
    assert normalize_answer("dont") == "don't"
    assert normalize_answer("3.5 cm") == "3.5 cm"  # a period before a digit stays
    # only the first 32 periods go (the reference passes re.UNICODE == 32 as re.sub's count)
    assert normalize_answer("a." * 40).count(".") == 8


def test_token_f1_counts_words_like_calculate_f1score():
    f1, precision, recall = token_f1("left lower lobe", "left lobe")
    assert (precision, recall) == pytest.approx((2 / 3, 1.0))
    assert f1 == pytest.approx(0.8)
    assert token_f1("right", "left") == (0.0, 0.0, 0.0)
    assert token_f1("", "left") == (0.0, 0.0, 0.0)


def test_closed_definitions_differ_where_they_should():
    predictions = ["Yes.", "yes, there is effusion", "No", "no"]
    references = ["yes", "yes", "yes", "no"]
    m = vqa_metrics(predictions, references, ["CLOSED"] * 4)
    # containment (MSLoRA-CR and LLaVA-Med) accepts "yes there is effusion"; the strict one does not
    assert m["mslora_closed_accuracy"] == 0.75
    assert m["llavamed_closed_accuracy"] == 0.75
    assert m["strict_closed_accuracy"] == 0.5
    assert m["n_closed"] == 4 and m["n_open"] == 0
    assert "mslora_open_f1" not in m  # no OPEN answers: no open rows, as in MSLoRA-CR's table


def test_missing_answer_type_is_open_and_unknown_is_an_error():
    stats = vqa_statistics(["left lung"], ["left lung"], [None])
    assert stats.aggregate()["n_open"] == 1
    with pytest.raises(ValueError, match="'q7'.*answer_type 'yesno'"):
        vqa_statistics(["yes"], ["yes"], ["yesno"], ids=["q7"])


def test_aggregate_on_resampled_indices_matches_scoring_the_resample():
    predictions = ["left lung", "yes", "no", "right upper lobe", "heart"]
    references = ["left lung", "yes", "yes", "right lobe", "liver"]
    types = ["OPEN", "CLOSED", "CLOSED", "OPEN", "OPEN"]
    stats = vqa_statistics(predictions, references, types)
    indices = [0, 0, 2, 3, 3]
    expected = vqa_metrics([predictions[i] for i in indices], [references[i] for i in indices],
                           [types[i] for i in indices])
    got = stats.aggregate(indices)
    assert got.keys() == expected.keys()
    for key in expected:
        assert math.isclose(got[key], expected[key]), key


def test_cli_scores_an_mslora_answers_file(tmp_path, capsys):
    from medvlm.cli import main

    rows = [
        {"question_id": 1, "prompt": "Is there effusion?", "text": "Yes", "gt": "yes", "answer_type": "CLOSED"},
        {"question_id": 2, "prompt": "Which lung?", "text": "the left lung", "gt": "Left", "answer_type": "OPEN"},
    ]
    answers = tmp_path / "answer-file.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "vqa.json"
    assert main(["evaluate", "vqa", "--answers", str(answers), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["mslora_closed_accuracy"] == 1.0
    assert metrics["mslora_open_recall"] == 1.0 and metrics["mslora_open_precision"] == 0.5
    assert "mslora_exact_match" in capsys.readouterr().out
