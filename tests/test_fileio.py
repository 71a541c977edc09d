import json

import pytest

from medvlm.fileio import atomic_path, atomic_write_json, atomic_write_jsonl


def test_atomic_write_json_round_trip(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic_write_json(target, {"bleu4": 0.25})
    assert json.loads(target.read_text()) == {"bleu4": 0.25}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "answers.jsonl"
    atomic_write_jsonl(target, [{"question_id": 1}])
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == '{"question_id": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["answers.jsonl"]


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path):
    import os

    target = tmp_path / "metrics.json"
    atomic_write_json(target, {})
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
