"""Reading, checking and writing training, question and answer files (medvlm.records)."""

from __future__ import annotations

import json
import logging

import pytest

from medvlm.records import (
    AnswerRecord,
    Problem,
    QuestionRecord,
    RecordError,
    TrainingRecord,
    Turn,
    append_answers,
    detect_kind,
    load_answers,
    load_questions,
    load_training,
    resume_answers,
    validate_file,
    write_answers,
    write_questions,
    write_training,
)


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2))
    return path


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(*values, roles=("human", "gpt")):
    return [{"from": roles[i % 2], "value": v} for i, v in enumerate(values)]


# One record of each layout the reference systems write.
LLAVA_RAD = {"id": "p10_s5", "image": "p10/s5.jpg", "generate_method": "gpt4", "reason": "cough", "view": "PA",
             "conversations": chat("<image>\nDescribe the findings.", "No acute process.")}
MEDM_VL_2D = {"id": "27374136_fig01", "conversations": chat("<image>\nWhat is shown?", "A flow diagram."),
              "image": ["pmc/27374136_fig01.jpg"], "data_source": "pmc", "domain": "chart", "task": "vqa"}
MEDM_VL_3D = {"id": "long_answer_0", "conversations": chat("<image3d>\nAre the main bronchi open?", "Yes."),
              "image3d": ["train_1/train_1_a_1.npy"]}
LIBRA = {"id": "s1", "image": ["cur.jpg", "prior.jpg"],
         "conversations": chat("<image>\nCompare with the prior study.", "Effusion has increased.")}
NAMED_PRIOR = {"id": "s2", "image": "cur.jpg", "prior": "prior.jpg",
               "conversations": chat("<image>\nCompare.", "Unchanged.")}
TEXT_ONLY = {"id": 7, "conversations": chat("What is a pleural effusion?", "Fluid in the pleural space.")}
ALL_LAYOUTS = [LLAVA_RAD, MEDM_VL_2D, MEDM_VL_3D, LIBRA, NAMED_PRIOR, TEXT_ONLY]


def test_training_file_is_written_back_as_it_was_read(tmp_path):
    src = write_json(tmp_path / "train.json", ALL_LAYOUTS)
    records = load_training(src)
    write_training(tmp_path / "out.json", records)
    assert json.loads((tmp_path / "out.json").read_text()) == ALL_LAYOUTS
    assert load_training(tmp_path / "out.json") == records


def test_training_records_expose_images_volume_prior_and_metadata(tmp_path):
    rad, medm2d, medm3d, libra, prior, text = load_training(write_json(tmp_path / "train.json", ALL_LAYOUTS))
    assert rad.images == ["p10/s5.jpg"] and rad.metadata == {"generate_method": "gpt4", "reason": "cough",
                                                            "view": "PA"}
    assert rad.conversations[1] == Turn("gpt", "No acute process.")
    assert medm2d.images == ["pmc/27374136_fig01.jpg"] and medm2d.metadata["task"] == "vqa"
    assert medm3d.image3d == "train_1/train_1_a_1.npy" and medm3d.images == []
    assert medm3d.num_image_placeholders == medm3d.num_visual_inputs == 1
    assert libra.images == ["cur.jpg", "prior.jpg"] and libra.num_visual_inputs == 1
    assert prior.images == ["cur.jpg"] and prior.prior_image == "prior.jpg"
    assert text.id == 7 and text.images == [] and text.num_image_placeholders == 0


def test_training_jsonl_round_trip(tmp_path):
    records = load_training(write_json(tmp_path / "train.json", ALL_LAYOUTS))
    write_training(tmp_path / "train.jsonl", records, jsonl=True)
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == len(ALL_LAYOUTS)
    assert load_training(tmp_path / "train.jsonl") == records


def test_records_built_in_python_are_written_in_llava_form(tmp_path):
    record = TrainingRecord("a", [Turn("human", "<image>\nFindings?"), Turn("gpt", "Normal.")], images=["a.png"],
                            metadata={"split": "train"})
    write_training(tmp_path / "t.json", [record])
    assert json.loads((tmp_path / "t.json").read_text()) == [
        {"id": "a", "conversations": [{"from": "human", "value": "<image>\nFindings?"},
                                      {"from": "gpt", "value": "Normal."}],
         "image": "a.png", "split": "train"}]


def test_user_and_assistant_roles_are_read_as_human_and_gpt(tmp_path):
    row = {"id": "x", "conversations": chat("Hi?", "Hello.", roles=("user", "assistant"))}
    (record,) = load_training(write_json(tmp_path / "t.json", [row]))
    assert [t.role for t in record.conversations] == ["human", "gpt"]


def test_questions_round_trip_keeps_reference_answer_type_and_extra_keys(tmp_path):
    rows = [{"question_id": "q1", "image": "a.png", "text": "Is there an effusion?", "reference": "yes",
             "answer_type": "CLOSED", "category": "effusion"},
            {"question_id": 2, "image": ["cur.png", "prior.png"], "text": "<image>\nWhat changed?"},
            {"question_id": 3, "image3d": "ct.nii.gz", "text": "Is there a liver lesion?"}]
    questions = load_questions(write_lines(tmp_path / "q.jsonl", rows))
    assert questions[0].reference == "yes" and questions[0].answer_type == "CLOSED"
    assert questions[0].metadata == {"category": "effusion"}
    assert questions[1].reference is None and questions[1].num_visual_inputs == 1
    write_questions(tmp_path / "out.jsonl", questions)
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == rows
    assert load_questions(tmp_path / "out.jsonl") == questions


def test_question_text_gets_placeholders_prepended_only_when_it_has_none():
    assert QuestionRecord("q", "Findings?", images=["a.png"]).text_with_placeholders() == "<image>\nFindings?"
    assert QuestionRecord("q", "Findings?", image3d="ct.npy").text_with_placeholders() == "<image3d>\nFindings?"
    assert QuestionRecord("q", "Size? <image>", images=["a.png"]).text_with_placeholders() == "Size? <image>"
    assert QuestionRecord("q", "What is CT?").text_with_placeholders() == "What is CT?"


def test_mslora_gt_and_medm_vl_answer_become_the_reference(tmp_path):
    mslora = write_lines(tmp_path / "q.jsonl", [{"question_id": 1, "image": "a.png", "text": "Modality?",
                                                  "gt": "CT", "answer_type": "OPEN"}])
    assert load_questions(mslora)[0].reference == "CT"
    medm = write_json(tmp_path / "inference.json", [{"id": "0", "conversations": chat("<image>\nWhich lesion?"),
                                                     "image": ["0.png"], "answer": "melanoma"}])
    assert detect_kind(medm) == "questions"
    (q,) = load_questions(medm)
    assert (q.question_id, q.text, q.images, q.reference) == ("0", "<image>\nWhich lesion?", ["0.png"], "melanoma")


def test_llava_rad_query_file_reads_as_questions_with_the_gpt_turn_as_reference(tmp_path):
    rows = [{"id": "s1", "image": "s1.jpg", "reason": "fever",
             "conversations": chat("<image>\nDescribe the findings.", "Clear lungs.")}]
    path = write_json(tmp_path / "query.json", rows)
    (q,) = load_questions(path)
    assert (q.question_id, q.reference, q.metadata) == ("s1", "Clear lungs.", {"reason": "fever"})
    assert load_training(path)[0].id == "s1"  # the same file is also a valid training file


def test_answers_from_every_reference_system_read_into_one_record(tmp_path):
    rows = [
        {"question_id": 1, "prompt": "Modality?", "text": "CT", "answer_id": "u1", "model_id": "m", "metadata": {}},
        {"question_id": 2, "prompt": "Normal?", "text": "yes", "gt": "no", "answer_type": "CLOSED",
         "answer_id": "u2", "model_id": "m", "metadata": {}},
        {"id": "s3", "image": "s3.jpg", "query": "Findings?", "reference": "Clear.", "prediction": "Normal.",
         "generation loss": 1.5},
    ]
    llava, mslora, rad = load_answers(write_lines(tmp_path / "answers.jsonl", rows))
    assert (llava.question_id, llava.text, llava.reference, llava.answer_id) == (1, "CT", None, "u1")
    assert (mslora.reference, mslora.answer_type) == ("no", "CLOSED")
    assert (rad.question_id, rad.prompt, rad.text, rad.reference) == ("s3", "Findings?", "Normal.", "Clear.")
    assert rad.extra == {"image": "s3.jpg", "generation loss": 1.5}
    write_answers(tmp_path / "out.jsonl", [llava, mslora, rad])
    assert load_answers(tmp_path / "out.jsonl") == [llava, mslora, rad]


def test_detect_kind_from_the_first_record(tmp_path):
    assert detect_kind(write_json(tmp_path / "t.json", [LLAVA_RAD])) == "training"
    assert detect_kind(write_lines(tmp_path / "q.jsonl", [{"question_id": 1, "text": "?"}])) == "questions"
    answers = write_lines(tmp_path / "a.jsonl", [{"question_id": 1, "prompt": "?", "text": "x", "metadata": {}}])
    assert detect_kind(answers) == "answers"
    with pytest.raises(RecordError, match="cannot tell"):
        detect_kind(write_lines(tmp_path / "x.jsonl", [{"foo": 1}]))


# ----------------------------------------------------------------------------------------------------------
# problems: each bad record is reported with its location, id and field


def good(**changes):
    row = {"id": "p0001", "image": "a.png", "conversations": chat("<image>\nFindings?", "Normal.")}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


BAD_TRAINING = [
    (good(id=None), "id", "missing key"),
    (good(conversations=None), "conversations", "missing key"),
    (good(id=["p"]), "id", "expected a string or an integer, got a list"),
    (good(image=3), "image", "expected a string or a list, got an integer"),
    (good(conversations=[]), "conversations", "empty conversation"),
    (good(conversations=chat("<image>\nFindings?", "Normal.", roles=("human", "bot"))), "conversations[1].from",
     "unknown role 'bot' (expected 'human' or 'gpt')"),
    (good(conversations=chat("Normal.", "<image>\nFindings?", roles=("gpt", "human"))), "conversations[0].from",
     "expected 'human' here"),
    (good(conversations=chat("<image>\nFindings?")), "conversations", "ends with a human turn"),
    (good(conversations=chat("<image>\nFindings?", "  ")), "conversations[1].value", "empty value"),
    (good(conversations=chat("<image>\n<image>\nFindings?", "Normal.")), "conversations",
     "2 image placeholder(s) but 1 image(s)"),
    (good(conversations=chat("Findings?", "Normal.")), "conversations", "no '<image>' placeholder"),
    (good(image=None), "conversations", "1 image placeholder(s) but 0 image(s)"),
    (good(conversations=chat("<image>\nFindings?", "<image> Normal.")), "conversations[1].value",
     "placeholder in a gpt turn"),
    (good(image3d=["a.npy", "b.npy"]), "image3d", "expected one volume path, got 2 entries"),
    (good(conversations=[{"from": "human"}]), "conversations[0]", "missing key 'value'"),
]


@pytest.mark.parametrize(("row", "field", "message"), BAD_TRAINING, ids=[b[2][:30] for b in BAD_TRAINING])
def test_each_bad_training_record_is_reported_with_location_id_and_field(tmp_path, row, field, message):
    path = write_json(tmp_path / "train.json", [good(id="p0000"), row])
    (problem,) = validate_file(path, kind="training", check_files=False)
    assert problem.location == "index 1"
    assert problem.record_id == row.get("id") if isinstance(row.get("id"), str) else problem.record_id is None
    assert problem.field == field
    assert message in problem.message


BAD_QUESTIONS = [
    ({"image": "a.png", "text": "Size?"}, "question_id", "missing key"),
    ({"question_id": "q", "image": "a.png", "text": " "}, "text", "empty value"),
    ({"question_id": "q", "image": "a.png", "text": "<image> <image> Size?"}, "text",
     "2 image placeholder(s) but 1 image(s)"),
    ({"question_id": "q", "text": "Size?", "gt": ["small"]}, "gt", "expected a string, got a list"),
    ({"id": "q", "image": "a.png", "conversations": chat("<image>\nSize?", "Small.", "Side?")}, "conversations",
     "a question is one human turn, optionally followed by the gpt reference"),
]


@pytest.mark.parametrize(("row", "field", "message"), BAD_QUESTIONS, ids=[b[1] for b in BAD_QUESTIONS])
def test_each_bad_question_is_reported(tmp_path, row, field, message):
    path = write_lines(tmp_path / "q.jsonl", [{"question_id": "first", "text": "Normal?"}, row])
    (problem,) = validate_file(path, kind="questions", check_files=False)
    assert (problem.location, problem.field) == ("line 2", field)
    assert message in problem.message


BAD_ANSWERS = [
    ({"prompt": "?", "text": "yes"}, "question_id", "missing key"),
    ({"question_id": 1, "prompt": "?"}, "text", "missing key"),
    ({"id": 1, "query": "?", "prediction": None}, "prediction", "expected a string, got null"),
    ({"question_id": 1, "text": "yes", "metadata": "none"}, "metadata", "expected an object, got a string"),
]


@pytest.mark.parametrize(("row", "field", "message"), BAD_ANSWERS, ids=[b[1] for b in BAD_ANSWERS])
def test_each_bad_answer_is_reported(tmp_path, row, field, message):
    path = write_lines(tmp_path / "a.jsonl", [row])
    (problem,) = validate_file(path, kind="answers")
    assert (problem.location, problem.field, problem.message) == ("line 1", field, message)


def test_problem_reads_as_one_line_naming_file_record_and_field():
    problem = Problem("train.json", "index 3", "p0001", "conversations[1].from",
                      "unknown role 'bot' (expected 'human' or 'gpt')")
    assert str(problem) == ("train.json index 3 (id 'p0001'): conversations[1].from: "
                            "unknown role 'bot' (expected 'human' or 'gpt')")


def test_duplicate_ids_are_reported_at_the_second_record(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [good(), good(), good(id="p0002")])
    (problem,) = validate_file(path, check_files=False)
    assert (problem.location, problem.record_id, problem.field) == ("line 2", "p0001", "id")
    assert "duplicate id 'p0001' (first at line 1)" in problem.message


def test_duplicate_question_ids_are_reported(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [{"question_id": 5, "text": "a?"}, {"question_id": 5, "text": "b?"}])
    (problem,) = validate_file(path)
    assert (problem.location, problem.field) == ("line 2", "question_id")


def test_missing_image_files_resolve_against_image_folder_else_the_files_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    path = write_json(tmp_path / "train.json", [good()])
    (problem,) = validate_file(path)
    assert problem.field == "image" and "file not found: a.png" in problem.message
    assert validate_file(path, image_folder=tmp_path / "images") == []
    with pytest.raises(RecordError, match="file not found"):
        load_training(path, image_folder=tmp_path)
    assert len(load_training(path)) == 1  # without image_folder the loader does not look at image files


def test_invalid_json_is_reported_with_line_and_column(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[\n  {"id": "a",\n   "conversations": [}\n]\n')
    (problem,) = validate_file(path, kind="training")
    assert problem.location == "line 3 col 22" and "invalid JSON" in problem.message


def test_every_bad_jsonl_line_is_reported(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "text": "a?"}\n{"question_id": 2, "text": \n[1, 2]\n')
    problems = validate_file(path)
    assert [(p.location, p.message[:20]) for p in problems] == [
        ("line 2", "invalid JSON at col "), ("line 3", "expected a record (a")]
    assert problems.num_records == 3


def test_a_file_that_is_not_utf8_text_is_one_problem(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'[{"id": "caf\xe9"}]')
    (problem,) = validate_file(path, kind="training")
    assert (problem.location, problem.message) == ("byte 12", "not UTF-8 text; record files are UTF-8 JSON")


def test_a_single_json_object_is_not_a_record_file(tmp_path):
    path = write_json(tmp_path / "train.json", {"data": [good()]})
    (problem,) = validate_file(path, kind="training")
    assert "one JSON object" in problem.message


# ----------------------------------------------------------------------------------------------------------
# loading: never drops a record silently


def test_loading_fails_on_the_first_bad_record_naming_it(tmp_path):
    path = write_json(tmp_path / "train.json", [good(), good(id="p0002", conversations=[])])
    with pytest.raises(RecordError) as info:
        load_training(path)
    assert info.value.problem.record_id == "p0002"
    assert str(info.value).startswith(f"{path} index 1 (id 'p0002'): conversations: empty conversation")
    assert "medvlm validate" in str(info.value)


def test_skip_bad_leaves_bad_records_out_and_lists_them(tmp_path, caplog):
    rows = [good(id="a"), good(id="b", conversations=[]), good(id="c"), good(id="d", image=None)]
    with caplog.at_level(logging.WARNING, logger="medvlm.records"):
        records = load_training(write_json(tmp_path / "train.json", rows), skip_bad=True)
    assert [r.id for r in records] == ["a", "c"]
    assert records.skipped_ids == ["b", "d"]
    assert "skipped 2 bad training record(s)" in caplog.text and "'b', 'd'" in caplog.text


# ----------------------------------------------------------------------------------------------------------
# resumable prediction: whole lines appended; a cut-off last line is reported, never read as an answer


def answer(i):
    return AnswerRecord(question_id=i, text=f"answer {i}", prompt="?", reference="r", answer_id=f"u{i}",
                        model_id="tiny")


def test_append_answers_then_resume_after_an_interrupted_write(tmp_path, caplog):
    path = tmp_path / "answers.jsonl"
    append_answers(path, [answer(0), answer(1)])
    append_answers(path, [answer(2)])
    assert load_answers(path) == [answer(0), answer(1), answer(2)]

    with open(path, "a") as f:  # the process dies halfway through a line
        f.write('{"question_id": 3, "te')
    with pytest.raises(RecordError, match="line 4.*cut off"):
        load_answers(path)
    with pytest.raises(RecordError, match="resume_answers"):
        append_answers(path, [answer(3)])

    with caplog.at_level(logging.WARNING, logger="medvlm.records"):
        done = resume_answers(path)
    assert done == [answer(0), answer(1), answer(2)]
    assert done.skipped[0].location == "line 4" and "removed" in caplog.text
    append_answers(path, [answer(3)])
    assert [a.question_id for a in load_answers(path)] == [0, 1, 2, 3]


def test_resume_answers_of_a_new_run_is_empty(tmp_path):
    assert resume_answers(tmp_path / "none.jsonl") == []
