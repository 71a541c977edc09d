"""The reference systems' own files read, check and write back without loss."""

from __future__ import annotations

import json

import pytest

from medvlm.records import (
    detect_kind,
    load_answers,
    load_questions,
    load_training,
    validate_file,
    write_training,
)

MEDM_VL_FILES = {"pretrain_2d.json": "training", "pretrain_3d.json": "training", "finetune_2d.json": "training",
                 "finetune_3d.json": "training", "inference_2d.json": "questions", "inference_3d.json": "questions"}


@pytest.mark.parametrize(("name", "kind"), MEDM_VL_FILES.items())
def test_medm_vl_example_files_load_with_their_kind(realdata, name, kind):
    path = realdata / "medm_vl_examples" / name
    raw = json.loads(path.read_text())
    assert detect_kind(path) == kind
    # the example images are not shipped: check everything but the files
    assert validate_file(path, check_files=False) == []
    load = load_training if kind == "training" else load_questions
    records = load(path)
    assert len(records) == len(raw)
    for record, row in zip(records, raw, strict=True):
        assert record.images == row.get("image", [])
        assert record.image3d == (row["image3d"][0] if "image3d" in row else None)


@pytest.mark.parametrize("name", [n for n, k in MEDM_VL_FILES.items() if k == "training"])
def test_medm_vl_training_files_are_written_back_unchanged(realdata, tmp_path, name):
    path = realdata / "medm_vl_examples" / name
    write_training(tmp_path / name, load_training(path))
    assert json.loads((tmp_path / name).read_text()) == json.loads(path.read_text())


def test_medm_vl_inference_answers_become_references(realdata):
    questions = load_questions(realdata / "medm_vl_examples" / "inference_2d.json")
    raw = json.loads((realdata / "medm_vl_examples" / "inference_2d.json").read_text())
    assert [q.reference for q in questions] == [row["answer"] for row in raw]
    assert [q.question_id for q in questions] == [row["id"] for row in raw]


def test_mslora_cr_answer_files_read_in_full_with_gt_as_reference(realdata):
    paths = sorted((realdata / "mslora_cr_results").glob("*/*/answer-file.jsonl"))
    assert len(paths) == 22
    for path in paths:
        lines = path.read_text().splitlines()
        answers = load_answers(path)
        assert len(answers) == len(lines), path
        first, last = json.loads(lines[0]), json.loads(lines[-1])
        assert (answers[0].question_id, answers[0].text, answers[0].reference) == (
            first["question_id"], first["text"], first["gt"])
        assert (answers[-1].answer_type, answers[-1].reference) == (last["answer_type"], last["gt"])
        assert answers[0].extra == {}


def test_mslora_cr_answer_files_validate_clean(realdata):
    # slake-vqarad joins two datasets whose question ids both start at 1: allowed in answers files
    path = realdata / "mslora_cr_results" / "finetune_lora_each-64-64_llava_med_v1.5" / "slake-vqarad" / "answer-file.jsonl"
    problems = validate_file(path)
    assert (problems.kind, problems.num_records, list(problems)) == ("answers", 1512, [])
