"""Change accuracy from generated text against the synthetic change labels."""

from __future__ import annotations

import json

import pytest

from medvlm.evaluate.change import change_accuracy, stated_change


@pytest.mark.parametrize("report, finding, expected", [
    ("The left pleural effusion has increased since the prior study.", "pleural_effusion", "increased"),
    ("There is a new right pneumothorax.", "pneumothorax", "new"),
    ("The previously seen nodule has resolved.", "nodule", "resolved"),
    ("Interval removal of the endotracheal tube.", "ett", "resolved"),
    ("Low-lying endotracheal tube with the tip 1.2 cm above the carina, stable in position.", "ett", "unchanged"),
    ("Edema is smaller than on the prior study.", "edema", "decreased"),
    ("Stable cardiomegaly compared with the prior study.", "cardiomegaly", "unchanged"),
    ("Moderate pulmonary edema.", "edema", "no_change_stated"),
    ("No acute process.", "atelectasis", "not_mentioned"),
])
def test_stated_change_reads_the_sentence_that_mentions_the_finding(report, finding, expected):
    assert stated_change(report, finding) == expected


def test_change_accuracy_per_finding_and_overall():
    predictions = ["New right pneumothorax. Stable cardiomegaly.", "The effusion has decreased.", ""]
    labels = [{"pneumothorax": "new", "cardiomegaly": "increased"}, {"pleural_effusion": "decreased"}, {}]
    scores = change_accuracy(predictions, labels)
    assert scores["change_accuracy"] == pytest.approx(2 / 3) and scores["n"] == 3
    assert scores["per_finding"]["cardiomegaly"] == {"accuracy": 0.0, "n": 1}
    assert scores["per_change"]["increased"] == {"accuracy": 0.0, "n": 1}
    assert scores["stated"]["increased"] == {"unchanged": 1}
    with pytest.raises(ValueError, match="2 predictions but 1"):
        change_accuracy(predictions[:2], labels[:1])


def test_synthetic_reference_reports_score_perfectly(tiny_temporal_cxr):
    rows = {r["study_id"]: r for r in map(json.loads, (tiny_temporal_cxr / "labels.jsonl").read_text().splitlines())}
    records = json.loads((tiny_temporal_cxr / "train.json").read_text())
    reports = [(r["conversations"][1]["value"], rows[r["study_id"]]["change"]) for r in records if r["task"] == "report"]
    scores = change_accuracy([r for r, _ in reports], [c for _, c in reports])
    assert scores["n"] > 5 and scores["change_accuracy"] == 1.0
