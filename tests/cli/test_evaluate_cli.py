"""`medvlm evaluate`: each sub-verb is one library call; outputs, help and errors as a user sees them.

METEOR (a Java process) and BERTScore (a MiniLM model) are left out with --no-meteor --no-bertscore here; the
library test of report metrics covers them.
"""

from __future__ import annotations

import csv
import json

import pytest

from medvlm.cli import build_parser, main

ANSWERS = [
    {"id": "r1", "query": "<image>\nFindings?", "reference": "Small right pleural effusion, increased.",
     "prediction": "Small right pleural effusion, larger than before."},
    {"id": "r2", "query": "<image>\nFindings?", "reference": "No acute abnormality. Heart size normal.",
     "prediction": "Heart size is normal. No acute abnormality."},
    {"id": "r3", "query": "<image>\nFindings?", "reference": "Left lower lobe atelectasis.",
     "prediction": "Cardiomegaly. No effusion."},
]


@pytest.fixture()
def llava_rad_answers(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ANSWERS))
    return path


def test_report_writes_metrics_csv_and_html(tmp_path, llava_rad_answers, capsys):
    out, rows, page = tmp_path / "metrics.json", tmp_path / "rows.csv", tmp_path / "report.html"
    code = main(["evaluate", "report", "--answers", str(llava_rad_answers), "--out", str(out), "--csv", str(rows),
                 "--html", str(page), "--bootstrap", "30", "--seed", "3", "--no-meteor", "--no-bertscore"])
    assert code == 0
    metrics = json.loads(out.read_text())
    for key in ("bleu1", "bleu4", "rouge_l", "cider", "temporal_f1", "clinical_micro_f1_14", "clinical_macro_f1_5_plus"):
        assert key in metrics and key in metrics["ci95"]
    assert metrics["n"] == 3
    assert [r["id"] for r in csv.DictReader(rows.open())] == ["r1", "r2", "r3"]
    html = page.read_text()
    assert "data:image/png;base64," in html and "Cardiomegaly. No effusion." in html
    printed = capsys.readouterr().out
    assert "bleu4" in printed and f"wrote {out}" in printed


def test_report_error_names_the_missing_id_and_exits_2(tmp_path, llava_rad_answers, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": "r1", "text": "Findings?", "reference": "x"}) + "\n")
    code = main(["evaluate", "report", "--answers", str(llava_rad_answers), "--references", str(questions),
                 "--no-meteor", "--no-bertscore"])
    assert code == 2
    assert "answer id 'r2' has no question" in capsys.readouterr().err


@pytest.mark.parametrize("sub_verb", ["report", "vqa", "cls", "seg", "continual"])
def test_every_sub_verb_explains_its_options(sub_verb, capsys):
    parser = build_parser("evaluate")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([sub_verb, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and "--html" in text
    sub = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(sub_verb))
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{sub_verb} {action.option_strings} has no help"


def test_vqa_bootstrap_is_reproducible(tmp_path):
    rows = [{"question_id": i, "prompt": "q", "text": t, "gt": g, "answer_type": k}
            for i, (t, g, k) in enumerate([("yes", "yes", "CLOSED"), ("no", "yes", "CLOSED"),
                                           ("left lung", "left lung", "OPEN"), ("heart", "liver", "OPEN")])]
    answers = tmp_path / "a.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = []
    for name in ("a.json", "b.json"):
        assert main(["evaluate", "vqa", "--answers", str(answers), "--out", str(tmp_path / name),
                     "--bootstrap", "50", "--seed", "11"]) == 0
        outs.append(json.loads((tmp_path / name).read_text()))
    assert outs[0] == outs[1]
    assert outs[0]["ci95"]["mslora_closed_accuracy"][0] <= 0.5 <= outs[0]["ci95"]["mslora_closed_accuracy"][1]
