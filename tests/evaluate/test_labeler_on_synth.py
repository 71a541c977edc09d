"""The labeler reads the synthetic CXR reports as the generator meant them (labels.jsonl's `chexpert`)."""

from __future__ import annotations

import json

import pytest

from medvlm.evaluate.clinical import CHEXPERT_OBSERVATIONS, clinical_statistics
from medvlm.evaluate.labeler import label_reports


@pytest.fixture(scope="module")
def synthetic_reports(tmp_path_factory):
    """(our labels, chexpert truth) of 300 temporal studies at 64 px (with and without priors)."""
    from medvlm.cli import main

    out = tmp_path_factory.mktemp("synth") / "cxr"
    assert main(["synth", "cxr", "--out", str(out), "--n", "300", "--size", "64", "--temporal", "--seed", "3",
                 "--quiet"]) == 0
    reports = {}
    for record in json.loads((out / "train.json").read_text()):
        if record["task"] == "report":
            reports[record["study_id"]] = record["conversations"][-1]["value"]
    for line in (out / "test.jsonl").read_text().splitlines():
        question = json.loads(line)
        if question["answer_type"] == "report":
            reports[question["study_id"]] = question["reference"]
    truth = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(truth) == 300 and set(reports) == {row["study_id"] for row in truth}
    return label_reports([reports[row["study_id"]] for row in truth]), [row["chexpert"] for row in truth]


def test_labeler_recovers_positive_findings(synthetic_reports):
    ours, truth = synthetic_reports
    scores = clinical_statistics(ours, truth).aggregate()
    assert scores["clinical_micro_f1_14"] >= 0.99
    assert scores["clinical_micro_f1_14_plus"] >= 0.99  # "which may represent pneumonia" is uncertain in both


def test_labeler_recovers_explicit_negatives(synthetic_reports):
    ours, truth = synthetic_reports
    pairs = [(t[obs], o[obs]) for t, o in zip(truth, ours, strict=True) for obs in CHEXPERT_OBSERVATIONS]
    true_negatives = sum(t == o == "negative" for t, o in pairs)
    assert sum(t == "negative" for t, _ in pairs) > 300  # the generator writes many explicit negatives
    assert true_negatives / sum(t == "negative" for t, _ in pairs) >= 0.99  # recall of negatives
    assert true_negatives / sum(o == "negative" for _, o in pairs) >= 0.99  # precision of negatives
