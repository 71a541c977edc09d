"""The perfect-reader ceilings of a synthetic CXR dataset (medvlm.synth.oracle, `medvlm synth oracle`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvlm.synth.cxr import CXRConfig
from medvlm.synth.dataset import write_dataset
from medvlm.synth.oracle import oracle_scores, simulate_reports, study_truth


@pytest.fixture(scope="module")
def temporal_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle") / "cxr"
    write_dataset(out, "cxr", 60, seed=5, config=CXRConfig(size_px=32, temporal=True), test_fraction=0.5,
                  progress=False)
    return out


def _rows(data):
    return [json.loads(line) for line in (data / "labels.jsonl").read_text().splitlines()]


def test_truth_from_labels_rewrites_reports_that_state_the_same_findings(temporal_data):
    """Simulated reports of a known pair state exactly the study's positive observations (up to the chance word
    for a consolidation) and, with a prior, exactly its change labels."""
    from medvlm.evaluate.change import stated_change

    config = CXRConfig(size_px=32, temporal=True)
    swap = {"Consolidation", "Lung Opacity"}
    for row in _rows(temporal_data)[:30]:
        positives = {o for o, v in row["chexpert"].items() if v == "positive"}
        current, prior, change = study_truth(row)
        assert (prior is not None) == row["has_prior"]
        for text in simulate_reports(row, config, np.random.default_rng(0), 4, knows="pair"):
            stated = {o for o, v in text.chexpert.items() if v == "positive"}
            assert stated - swap == positives - swap, row["study_id"]
            assert len(stated & swap) == len(positives & swap), row["study_id"]
            for name, label in change.items():
                if name in ("cardiomegaly", "pleural_effusion", "pneumothorax", "edema", "atelectasis"):
                    assert stated_change(text.report, name) == label, (row["study_id"], name, text.report)


def test_the_current_reader_knows_whether_there_is_a_prior_not_what_it_showed(temporal_data):
    """The report prompt says whether a prior exists; the current-only reader keeps that and redraws the rest."""
    from medvlm.evaluate.change import stated_change
    from medvlm.synth.cxr_text import TEMPORAL_PROMPTS

    config = CXRConfig(size_px=32, temporal=True)
    varied = 0
    for row in _rows(temporal_data)[:30]:
        texts = simulate_reports(row, config, np.random.default_rng(1), 8, knows="current")
        assert all((text.prompt in TEMPORAL_PROMPTS) == row["has_prior"] for text in texts), row["study_id"]
        current = study_truth(row)[0]
        for name in set(current) & {"cardiomegaly", "pleural_effusion", "edema", "atelectasis"}:
            varied += len({stated_change(text.report, name) for text in texts}) > 1
    assert varied  # the change of a finding seen now is drawn anew: new, unchanged, increased, ...


def test_oracle_scores_and_the_prior_gap(temporal_data):
    scores = oracle_scores(temporal_data, draws=16)
    pair, current = scores["pair"], scores["current"]
    assert pair["studies"] == current["studies"] > 10
    assert 0.6 < pair["temporal_f1"] <= 1.0
    assert pair["temporal_f1"] > current["temporal_f1"] + 0.1  # the prior carries the change words
    for row in scores.values():
        assert 0.8 < row["clinical_micro_f1_14"] <= 1.0
    assert scores == oracle_scores(temporal_data, draws=16)  # seeded


def test_without_priors_both_readers_know_the_same(tmp_path):
    data = tmp_path / "cxr"
    write_dataset(data, "cxr", 30, seed=2, config=CXRConfig(size_px=32), test_fraction=0.5, progress=False)
    scores = oracle_scores(data, draws=8)
    assert scores["pair"]["temporal_f1"] == pytest.approx(scores["current"]["temporal_f1"], abs=0.05)


def test_bad_input_names_the_file_and_field(tmp_path, temporal_data):
    derm = tmp_path / "derm"
    write_dataset(derm, "derm", 4, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"dataset.json: field kind is 'derm'"):
        oracle_scores(derm)
    with pytest.raises(ValueError, match=r"labels.jsonl, study s9: not a synthetic CXR truth row"):
        study_truth({"study_id": "s9", "findings": [{"name": "edema"}], "has_prior": False})


def test_cli_prints_the_table_and_writes_json(temporal_data, tmp_path, capsys):
    from medvlm.cli import main

    out = tmp_path / "ceiling.json"
    assert main(["synth", "oracle", str(temporal_data), "--draws", "8", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "most the prior can add to temporal F1" in printed and "pair" in printed and "current" in printed
    saved = json.loads(out.read_text())
    assert saved["draws"] == 8 and set(saved["scores"]) == {"pair", "current"}
    assert main(["synth", "oracle", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "medvlm synth oracle: error:" in capsys.readouterr().err
