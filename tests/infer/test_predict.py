"""predict: batched with left padding, resumable, shardable; answers carry their reference."""

from __future__ import annotations

import json

import pytest

from medvlm.cli import main
from medvlm.infer.options import GenerationOptions
from medvlm.infer.predict import get_chunk, predict

OPTIONS = GenerationOptions(max_new_tokens=5)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def one_at_a_time(loaded, questions_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "answers.jsonl"
    predict(*loaded, questions_file, out, image_folder=questions_file.parent / "images", batch_size=1,
            options=OPTIONS, progress=False)
    return _lines(out)


def test_batched_left_padded_answers_equal_one_at_a_time(loaded, questions_file, one_at_a_time, tmp_path):
    out = tmp_path / "answers.jsonl"
    summary = predict(*loaded, questions_file, out, image_folder=questions_file.parent / "images", batch_size=4,
                      options=OPTIONS, progress=False)
    assert summary.answered == 7 and summary.already_answered == 0
    assert _lines(out) == one_at_a_time
    first = one_at_a_time[0]
    assert set(first) >= {"question_id", "prompt", "text", "answer_id", "model_id", "metadata", "reference"}
    assert first["reference"] == "no" and first["answer_type"] == "CLOSED"


def test_an_interrupted_run_resumes_without_duplicates(loaded, questions_file, one_at_a_time, tmp_path):
    out = tmp_path / "answers.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in one_at_a_time]
    out.write_text("".join(lines[:3]) + lines[3][:10])  # three answers, then a line cut off mid-write
    summary = predict(*loaded, questions_file, out, image_folder=questions_file.parent / "images", batch_size=3,
                      options=OPTIONS, progress=False)
    assert (summary.already_answered, summary.answered) == (3, 4)
    assert _lines(out) == one_at_a_time


def test_chunks_cover_every_question_once(loaded, questions_file, one_at_a_time, tmp_path):
    answers = []
    for chunk_idx in range(3):
        out = tmp_path / f"part{chunk_idx}.jsonl"
        predict(*loaded, questions_file, out, image_folder=questions_file.parent / "images", num_chunks=3,
                chunk_idx=chunk_idx, batch_size=2, options=OPTIONS, progress=False)
        answers += _lines(out)
    assert answers == one_at_a_time


def test_questions_are_batched_by_answer_type(loaded, questions_file, one_at_a_time, tmp_path, monkeypatch):
    from medvlm.infer import predict as predict_module

    rows = [json.loads(line) for line in questions_file.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["answer_type"] = "report" if i % 3 == 0 else "closed"  # q0, q3, q6 reports, in among the others
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batches = []
    generate = predict_module.generate_samples

    def spy(model, processor, samples, options):
        batches.append(len(samples))
        return generate(model, processor, samples, options)

    monkeypatch.setattr(predict_module, "generate_samples", spy)
    out = tmp_path / "answers.jsonl"
    predict(*loaded, mixed, out, image_folder=questions_file.parent / "images", batch_size=2, options=OPTIONS,
            progress=False)
    lines = _lines(out)
    assert [line["question_id"] for line in lines] == ["q0", "q3", "q6", "q1", "q2", "q4", "q5"]
    assert batches == [2, 1, 2, 2]  # the reports' batches, then the closed questions'
    texts = {line["question_id"]: line["text"] for line in one_at_a_time}
    assert all(line["text"] == texts[line["question_id"]] for line in lines)


def test_get_chunk_splits_contiguously():
    items = list(range(7))
    chunks = [get_chunk(items, 3, i) for i in range(3)]
    assert chunks == [[0, 1, 2], [3, 4, 5], [6]]
    assert get_chunk(items, 8, 7) == []
    with pytest.raises(ValueError):
        get_chunk(items, 3, 3)


def test_cli_predict_and_generate(model_dir, questions_file, one_at_a_time, tmp_path, capsys):
    out = tmp_path / "answers.jsonl"
    code = main(["predict", "--model", str(model_dir), "--questions", str(questions_file), "--out", str(out),
                 "--image-folder", str(questions_file.parent / "images"), "--max-new-tokens", "5", "--no-progress",
                 "--model-id", "medvlm", "--batch-size", "8"])
    assert code == 0
    assert [row["text"] for row in _lines(out)] == [row["text"] for row in one_at_a_time]
    assert "answered now" in capsys.readouterr().out
    image = questions_file.parent / "images" / "0.png"
    assert main(["generate", "--model", str(model_dir), "--image", str(image), "--prompt",
                 "Is there an effusion?", "--max-new-tokens", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == [one_at_a_time[0]["text"]]
    assert main(["generate", "--model", str(model_dir), "--image", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
