"""Continual-learning metrics on a hand-checked accuracy matrix, from Python, JSON, CSV and the CLI."""

from __future__ import annotations

import json

import pytest

from medvlm.evaluate.continual import continual_metrics, evaluate_continual_file

# R[i][j]: accuracy on task j after training tasks 0..i
R = [
    [0.80, 0.30, 0.20],
    [0.70, 0.90, 0.25],
    [0.60, 0.85, 0.95],
]
BASELINE = [0.10, 0.20, 0.15]


def test_standard_definitions_on_a_three_task_matrix():
    m = continual_metrics(R, BASELINE, tasks=["cxr", "derm", "path"])
    assert m["average_accuracy"] == pytest.approx((0.60 + 0.85 + 0.95) / 3)
    assert m["bwt"] == pytest.approx(((0.60 - 0.80) + (0.85 - 0.90)) / 2)
    # forgetting: largest earlier accuracy minus final accuracy, tasks 0..T-2
    assert m["forgetting"] == pytest.approx(((0.80 - 0.60) + (0.90 - 0.85)) / 2)
    assert m["fwt"] == pytest.approx(((0.30 - 0.20) + (0.25 - 0.15)) / 2)
    assert m["learning_accuracy"] == pytest.approx((0.80 + 0.90 + 0.95) / 3)
    assert m["average_accuracy_per_stage"] == pytest.approx([0.80, 0.80, 0.80])
    assert m["per_task"]["cxr"]["forgetting"] == pytest.approx(0.20)
    assert m["per_task"]["path"]["forgetting"] is None


def test_forgetting_takes_the_best_earlier_stage_not_the_first():
    m = continual_metrics([[0.5, None], [0.9, 0.8]])
    assert m["forgetting"] == pytest.approx(0.5 - 0.9)  # improved: negative forgetting
    rising = continual_metrics([[0.5, None, None], [0.9, 0.7, None], [0.6, 0.6, 0.9]])
    assert rising["per_task"]["0"]["forgetting"] == pytest.approx(0.3)  # max(0.5, 0.9) - 0.6


def test_missing_upper_entries_are_allowed_but_fwt_needs_them():
    upper_missing = [[0.8, None], [0.7, 0.9]]
    assert continual_metrics(upper_missing)["bwt"] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match=r"R\[0\]\[1\]"):
        continual_metrics(upper_missing, baseline=[0.1, 0.1])
    with pytest.raises(ValueError, match="row 1 has 1 values"):
        continual_metrics([[0.5, 0.1], [0.5]])


def test_json_and_csv_files_give_the_same_metrics(tmp_path):
    as_json = tmp_path / "R.json"
    as_json.write_text(json.dumps({"tasks": ["cxr", "derm", "path"], "matrix": R, "baseline": BASELINE}))
    as_csv = tmp_path / "R.csv"
    as_csv.write_text("after,cxr,derm,path\n" + "".join(
        f"{name},{','.join(map(str, row))}\n" for name, row in zip(["cxr", "derm", "path"], R, strict=True)))
    from_json = evaluate_continual_file(as_json, tmp_path / "a.json")
    from_csv = evaluate_continual_file(as_csv, tmp_path / "b.json", baseline=BASELINE)
    for key in ("average_accuracy", "bwt", "forgetting", "fwt"):
        assert from_json[key] == pytest.approx(from_csv[key])
    assert from_csv["tasks"] == ["cxr", "derm", "path"]


def test_cli_continual_with_inline_baseline(tmp_path, capsys):
    from medvlm.cli import main

    path = tmp_path / "R.json"
    path.write_text(json.dumps(R))
    out = tmp_path / "cl.json"
    assert main(["evaluate", "continual", "--matrix", str(path), "--baseline", "0.1,0.2,0.15", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["fwt"] == pytest.approx(0.10)
    assert "forgetting" in capsys.readouterr().out


def test_html_report_shows_the_matrix_and_forgetting_chart(tmp_path):
    path = tmp_path / "R.json"
    path.write_text(json.dumps({"tasks": ["cxr", "derm", "path"], "matrix": R}))
    evaluate_continual_file(path, html_path=tmp_path / "cl.html")
    page = (tmp_path / "cl.html").read_text()
    assert "Accuracy matrix" in page and "<td>0.8500</td>" in page
    assert page.count("data:image/png;base64,") == 1
