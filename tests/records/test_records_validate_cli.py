"""`medvlm validate FILE`: every problem on its own line, a summary line, exit code 1 when anything is wrong."""

from __future__ import annotations

import json

import pytest

from medvlm.cli import main


def turn(role, value):
    return {"from": role, "value": value}


def record(record_id, image="a.png", conversations=None):
    row = {"id": record_id, "conversations": conversations or [turn("human", "<image>\nFindings?"),
                                                              turn("gpt", "No effusion.")]}
    if image is not None:
        row["image"] = image
    return row


@pytest.fixture
def five_bad(tmp_path):
    """A training file with one good record and five different kinds of bad record."""
    (tmp_path / "a.png").write_bytes(b"png")
    rows = [
        record("ok"),
        record("bad-role", conversations=[turn("human", "<image>\nFindings?"), turn("bot", "Normal.")]),
        record("no-image-file", image="missing.png"),
        record("placeholders", image=None),
        record("ok"),  # duplicate id
        {"conversations": [turn("human", "<image>\nFindings?"), turn("gpt", "Normal.")], "image": "a.png"},
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows, indent=2))
    return path


def test_five_bad_records_give_five_problem_lines_and_exit_code_1(five_bad, capsys):
    assert main(["validate", str(five_bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{five_bad} index 1 (id 'bad-role'): conversations[1].from: unknown role 'bot' (expected 'human' or 'gpt')",
        f"{five_bad} index 2 (id 'no-image-file'): image: file not found: missing.png "
        "(relative paths resolve against the record file's folder)",
        f"{five_bad} index 3 (id 'placeholders'): conversations: 1 image placeholder(s) but 0 image(s); "
        "give one '<image>' per image (a Libra [current, prior] pair shares one)",
        f"{five_bad} index 4 (id 'ok'): id: duplicate id 'ok' (first at index 0); ids must be unique",
        f"{five_bad} index 5: id: missing key",
        f"{five_bad}: 6 training record(s) checked, 5 problem(s)",
    ]


def test_json_output_lists_the_problems_for_machines(five_bad, capsys):
    assert main(["validate", str(five_bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["records"], len(report["problems"])) == ("training", 6, 5)
    assert report["problems"][0] == {"file": str(five_bad), "location": "index 1", "record_id": "bad-role",
                                     "field": "conversations[1].from",
                                     "message": "unknown role 'bot' (expected 'human' or 'gpt')"}


def test_a_good_file_exits_0_with_a_summary(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(record("s1")) + "\n")
    assert main(["validate", str(path), "--image-folder", str(tmp_path / "images")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: 1 training record(s) checked, 0 problem(s)"]


def test_kind_option_overrides_detection(tmp_path, capsys):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": 1, "text": "Is the heart enlarged?"}) + "\n")
    assert main(["validate", str(path), "--kind", "answers"]) == 0
    assert "1 answers record(s) checked" in capsys.readouterr().out
    assert main(["validate", str(path), "--kind", "training"]) == 1


def test_a_missing_file_is_one_problem(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.json")]) == 1
    assert "file not found" in capsys.readouterr().out


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--image-folder", "--kind", "--json", "--no-file-check"):
        assert option in out
