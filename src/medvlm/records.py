"""Training, question and answer files: read, validate and write the formats the reference systems use.

Three kinds of file, each a JSON list or JSON Lines (one object per line):

training   LLaVA conversations: {"id", "image": str | [str, ...], "conversations": [{"from", "value"}, ...]}.
           Libra writes `image: [current, prior]` (one placeholder for the pair); MedM-VL writes `image` and
           `image3d` (a CT volume) as lists; medvlm also reads a named `prior` key (path of the prior study).
           Every other key (LLaVA-Rad's `reason`, `view`, `generate_method`, ...) is kept in `metadata`
           and written back unchanged, and so is the spelling of the paths (a string or a list).
questions  LLaVA question JSONL {"question_id", "image", "text", ...} with an optional reference (`reference`,
           MSLoRA-CR's `gt` or `answer`) and `answer_type`. Conversation-shaped questions are read too: MedM-VL's
           inference files (one human turn plus `answer`) and LLaVA-Rad's query files (a human turn and the
           reference as a gpt turn). medvlm writes questions in one form: LLaVA's, with `reference`.
answers    LLaVA answers {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}, MSLoRA-CR's
           (plus `gt`, `answer_type`) and LLaVA-Rad's {"id", "query", "reference", "prediction"}: all read into
           one `AnswerRecord`; medvlm writes LLaVA's keys plus `reference` and `answer_type`.

Rules (checked by `validate_file`, enforced by the loaders):
- roles are LLaVA's `human` and `gpt`; `user` and `assistant` are read as aliases and written as human / gpt.
  A training conversation alternates human, gpt, ... starting with human and ending with gpt; no empty value.
- placeholders: `<image>` and MedM-VL's `<image3d>` both count. A record needs one placeholder per image
  (the volume counts as one image), in human turns; Libra's `[current, prior]` pair shares one placeholder.
  A record with no image and no placeholder is a text-only record. A training record with images but no
  placeholder is an error (LLaVA would silently ignore its image); question text may leave placeholders out,
  `QuestionRecord.text_with_placeholders()` then prepends them, as LLaVA's evaluation scripts do.
- relative image paths resolve against `image_folder` when given, else against the record file's folder.
- ids (`id`, `question_id`) are strings or integers, kept as written, and unique within a training or
  questions file. Answers files may repeat ids: answers carry their reference, and real ones do (MSLoRA-CR's
  slake-vqarad answers concatenate two datasets whose question ids both start at 1).

Use: `load_training` / `load_questions` / `load_answers` (fail on the first bad record, or skip_bad=True),
`write_training` / `write_questions` / `write_answers` (atomic), `append_answers` and `resume_answers` for
resumable prediction, `validate_file` for every problem at once (`medvlm validate`), `detect_kind`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvlm.fileio import atomic_write_json, atomic_write_jsonl

log = logging.getLogger(__name__)

KINDS = ("training", "questions", "answers")
PLACEHOLDERS = ("<image>", "<image3d>")
ROLES = {"human": "human", "gpt": "gpt", "user": "human", "assistant": "gpt"}  # name in file -> medvlm role

RecordId = str | int


# ----------------------------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a record file: where (file, "line 12" / "index 3"), which record and field, what."""

    file: str
    location: str
    record_id: RecordId | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file} {self.location}" if self.location else self.file
        if self.record_id is not None:
            where += f" (id {self.record_id!r})"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "location": self.location, "record_id": self.record_id,
                "field": self.field, "message": self.message}


class RecordError(ValueError):
    """A record file holds a bad record; `.problem` says where and what."""

    def __init__(self, problem: Problem, hint: str = ""):
        self.problem = problem
        super().__init__(str(problem) + (f"\n{hint}" if hint else ""))


class Records(list):
    """A list of records, plus `.skipped`: the problems of the records left out (skip_bad=True)."""

    def __init__(self, records=(), skipped: list[Problem] | None = None):
        super().__init__(records)
        self.skipped: list[Problem] = list(skipped or [])

    @property
    def skipped_ids(self) -> list[RecordId | str]:
        """Ids of the skipped records, in file order (their location, "line 7", where one has no readable id)."""
        by_location = {p.location: p.record_id if p.record_id is not None else p.location for p in self.skipped}
        return list(by_location.values())


class Problems(list):
    """A list of `Problem`s, plus `.kind` and `.num_records` of the file that was checked."""

    def __init__(self, problems=(), kind: str | None = None, num_records: int = 0):
        super().__init__(problems)
        self.kind = kind
        self.num_records = num_records


# ----------------------------------------------------------------------------------------------------------
# records


@dataclass
class Turn:
    """One message of a conversation: role "human" or "gpt", its text, and any other keys the file had."""

    role: str
    value: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.role, "value": self.value, **self.metadata}


@dataclass
class TrainingRecord:
    """One training conversation and the images it talks about.

    images: paths as written (Libra: [current, prior]); image3d: one volume path (MedM-VL); prior_image: from a
    named `prior` key; metadata: every other key; paths_as_lists: write `image` / `image3d` as JSON lists
    (MedM-VL, Libra) rather than one string (LLaVA) - set on reading so that files are written back as read.
    """

    id: RecordId
    conversations: list[Turn]
    images: list[str] = field(default_factory=list)
    image3d: str | None = None
    prior_image: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    paths_as_lists: bool = False

    @property
    def num_image_placeholders(self) -> int:
        return sum(turn.value.count(p) for turn in self.conversations for p in PLACEHOLDERS)

    @property
    def num_visual_inputs(self) -> int:
        """How many placeholders the record needs: one per image, one for the volume, one for a Libra pair."""
        return _num_visual_inputs(self.images, self.image3d, self.num_image_placeholders)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "conversations": [t.to_dict() for t in self.conversations]}
        row.update(_paths_to_dict(self.images, self.image3d, self.prior_image, self.paths_as_lists))
        return {**row, **self.metadata}


@dataclass
class QuestionRecord:
    """One question to answer about its images, with the reference answer when the file has one."""

    question_id: RecordId
    text: str
    images: list[str] = field(default_factory=list)
    image3d: str | None = None
    prior_image: str | None = None
    reference: str | None = None
    answer_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    paths_as_lists: bool = False

    @property
    def num_image_placeholders(self) -> int:
        return sum(self.text.count(p) for p in PLACEHOLDERS)

    @property
    def num_visual_inputs(self) -> int:
        return _num_visual_inputs(self.images, self.image3d, self.num_image_placeholders)

    def text_with_placeholders(self) -> str:
        """The question text with its placeholders: as written when it has any, else one '<image>\n' per image
        (and '<image3d>\n' for the volume) prepended. A Libra [current, prior] question that wants one shared
        placeholder writes it in its text."""
        if self.num_image_placeholders:
            return self.text
        return "<image>\n" * len(self.images) + ("<image3d>\n" if self.image3d else "") + self.text

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"question_id": self.question_id}
        row.update(_paths_to_dict(self.images, self.image3d, self.prior_image, self.paths_as_lists))
        row["text"] = self.text
        if self.reference is not None:
            row["reference"] = self.reference
        if self.answer_type is not None:
            row["answer_type"] = self.answer_type
        return {**row, **self.metadata}


@dataclass
class AnswerRecord:
    """One model answer, read from any reference system's answers file.

    text: the model's answer; prompt: the question as asked; reference: the expected answer (`gt`, `reference`);
    metadata: the file's `metadata` object; extra: every other key (e.g. LLaVA-Rad's `image`).
    """

    question_id: RecordId
    text: str
    prompt: str = ""
    reference: str | None = None
    answer_type: str | None = None
    answer_id: RecordId | None = None
    model_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"question_id": self.question_id, "prompt": self.prompt, "text": self.text}
        for key in ("reference", "answer_type", "answer_id", "model_id"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        row["metadata"] = self.metadata
        return {**row, **self.extra}


def _num_visual_inputs(images: list[str], image3d: str | None, num_placeholders: int) -> int:
    libra_pair = len(images) == 2 and num_placeholders == 1 and image3d is None
    return (1 if libra_pair else len(images)) + (1 if image3d else 0)


def _paths_to_dict(images: list[str], image3d: str | None, prior: str | None, as_lists: bool) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if images:
        row["image"] = list(images) if (as_lists or len(images) > 1) else images[0]
    if image3d is not None:
        row["image3d"] = [image3d] if as_lists else image3d
    if prior is not None:
        row["prior"] = prior
    return row


def resolve_path(path: str, image_folder: str | os.PathLike | None, record_file: str | os.PathLike) -> Path:
    """Where an image path from a record points: absolute as is, else under image_folder, else beside the file."""
    p = Path(path)
    if p.is_absolute():
        return p
    return Path(image_folder) / p if image_folder is not None else Path(record_file).parent / p


# ----------------------------------------------------------------------------------------------------------
# parsing one record (dict -> record + problems)


class _Check:
    """Collects the problems of one record."""

    def __init__(self, file: str, location: str, row: Any, id_keys: tuple[str, ...]):
        self.file, self.location, self.problems = file, location, []
        ids = [row.get(k) for k in id_keys] if isinstance(row, dict) else []
        self.record_id = next((i for i in ids if isinstance(i, (str, int)) and not isinstance(i, bool)), None)

    def add(self, field_name: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, self.location, self.record_id, field_name, message))

    def get(self, row: dict, key: str, types: tuple[type, ...], required: bool = False) -> Any:
        """row[key] if it has one of `types` (bool never counts as int), else None with a problem noted."""
        if key not in row:
            if required:
                self.add(key, "missing key")
            return None
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(_TYPE_NAMES[t] for t in types)
            self.add(key, f"expected {expected}, got {_TYPE_NAMES.get(type(value), type(value).__name__)}")
            return None
        return value


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object", float: "a number",
               bool: "true/false", type(None): "null"}


def _read_paths(check: _Check, row: dict) -> tuple[list[str], str | None, str | None, bool]:
    """images, image3d, prior_image, paths_as_lists from a record's `image`, `image3d` and `prior` keys."""
    images: list[str] = []
    as_lists = False
    value = check.get(row, "image", (str, list))
    if isinstance(value, str):
        images = [value]
    elif isinstance(value, list):
        as_lists = True
        for i, path in enumerate(value):
            if isinstance(path, str) and path:
                images.append(path)
            else:
                check.add(f"image[{i}]", "expected a non-empty path string")
    if isinstance(value, str) and not value:
        check.add("image", "empty path")
    image3d = None
    value = check.get(row, "image3d", (str, list))
    if isinstance(value, list):
        as_lists = True
        if len(value) != 1:
            check.add("image3d", f"expected one volume path, got {len(value)} entries")
        elif not isinstance(value[0], str) or not value[0]:
            check.add("image3d[0]", "expected a non-empty path string")
        else:
            image3d = value[0]
    elif isinstance(value, str):
        image3d = value
    prior = check.get(row, "prior", (str,))
    return images, image3d, prior, as_lists


def _read_turns(check: _Check, value: Any) -> list[Turn]:
    turns = []
    for i, item in enumerate(value):
        name = f"conversations[{i}]"
        if not isinstance(item, dict):
            check.add(name, f"expected an object with 'from' and 'value', got {_TYPE_NAMES.get(type(item), '?')}")
            continue
        role, text = item.get("from"), item.get("value")
        if "from" not in item or "value" not in item:
            check.add(name, f"missing key {'from' if 'from' not in item else 'value'!r}")
            continue
        if not isinstance(role, str) or role not in ROLES:
            check.add(f"{name}.from", f"unknown role {role!r} (expected 'human' or 'gpt')")
            continue
        if not isinstance(text, str):
            check.add(f"{name}.value", f"expected a string, got {_TYPE_NAMES.get(type(text), '?')}")
            continue
        if not text.strip():
            check.add(f"{name}.value", "empty value")
        extra = {k: v for k, v in item.items() if k not in ("from", "value")}
        turns.append(Turn(ROLES[role], text, extra))
    return turns


def _check_placeholders(check: _Check, images: list[str], image3d: str | None, texts: list[tuple[str, str]],
                        missing_ok: bool) -> None:
    """texts: (field name, text) of the human side; placeholders must match the images (see module docstring)."""
    found = sum(text.count(p) for _, text in texts for p in PLACEHOLDERS)
    needed = _num_visual_inputs(images, image3d, found)
    if found == needed or (found == 0 and missing_ok):
        return
    where = "conversations" if texts and texts[0][0].startswith("conversations") else "text"
    n_inputs = len(images) + (1 if image3d else 0)
    if found == 0:
        check.add(where, f"{n_inputs} image(s) but no '<image>' placeholder; put '<image>\\n' at the start of the "
                         "first human turn (without it LLaVA-style training ignores the image)")
    else:
        check.add(where, f"{found} image placeholder(s) but {n_inputs} image(s); give one '<image>' per image "
                         "(a Libra [current, prior] pair shares one)")


def _training_record(check: _Check, row: dict) -> TrainingRecord | None:
    record_id = check.get(row, "id", (str, int), required=True)
    n_problems = len(check.problems)
    images, image3d, prior, as_lists = _read_paths(check, row)
    paths_ok = len(check.problems) == n_problems  # else placeholder counts would only repeat the path problem
    conv = check.get(row, "conversations", (list,), required=True)
    turns = _read_turns(check, conv) if conv is not None else []
    if conv is not None and not conv:
        check.add("conversations", "empty conversation")
    if turns and len(turns) == len(conv):
        for i, turn in enumerate(turns):
            expected = "human" if i % 2 == 0 else "gpt"
            if turn.role != expected:
                check.add(f"conversations[{i}].from", f"expected {expected!r} here: turns alternate human, gpt, "
                                                      f"... starting with human, got {turn.role!r}")
                break
        else:
            if turns[-1].role != "gpt":
                check.add("conversations", "ends with a human turn; a training conversation ends with the gpt answer")
        for i, turn in enumerate(turns):
            if turn.role == "gpt" and any(p in turn.value for p in PLACEHOLDERS):
                check.add(f"conversations[{i}].value", "image placeholder in a gpt turn; placeholders belong in human turns")
        human = [(f"conversations[{i}]", t.value) for i, t in enumerate(turns) if t.role == "human"]
        if paths_ok:
            _check_placeholders(check, images, image3d, human, missing_ok=False)
    if check.problems:
        return None
    known = ("id", "image", "image3d", "prior", "conversations")
    metadata = {k: v for k, v in row.items() if k not in known}
    return TrainingRecord(record_id, turns, images, image3d, prior, metadata, as_lists)


def _first_key(row: dict, keys: tuple[str, ...]) -> str:
    """The first of `keys` that the record has (the first of them when it has none)."""
    return next((k for k in keys if k in row), keys[0])


_REFERENCE_KEYS = ("reference", "gt", "answer")  # first one present is the reference; the others stay in metadata


def _question_record(check: _Check, row: dict) -> QuestionRecord | None:
    conversation_form = "conversations" in row
    id_key = _first_key(row, ("question_id", "id"))  # conversation-shaped files name it `id`
    qid = check.get(row, id_key, (str, int), required=True)
    used = [id_key, "image", "image3d", "prior", "answer_type"]
    if conversation_form:  # MedM-VL inference files, LLaVA-Rad query files
        text, reference = "", None
        conv = check.get(row, "conversations", (list,))
        turns = _read_turns(check, conv) if conv is not None else []
        if conv is not None and not conv:
            check.add("conversations", "empty conversation")
        elif turns and len(turns) == len(conv):
            if turns[0].role != "human" or len(turns) > 2 or (len(turns) == 2 and turns[1].role != "gpt"):
                check.add("conversations", "a question is one human turn, optionally followed by the gpt reference "
                                           f"answer; got {[t.role for t in turns]}")
            else:
                text = turns[0].value
                reference = turns[1].value if len(turns) == 2 else None
        used.append("conversations")
    else:
        text = check.get(row, "text", (str,), required=True) or ""
        if "text" in row and isinstance(row["text"], str) and not text.strip():
            check.add("text", "empty value")
        reference = None
        used.append("text")
    for key in _REFERENCE_KEYS:
        if key in row and reference is None:
            reference = check.get(row, key, (str,))
            used.append(key)
            break
    answer_type = check.get(row, "answer_type", (str,))
    n_problems = len(check.problems)
    images, image3d, prior, as_lists = _read_paths(check, row)
    if text and len(check.problems) == n_problems:
        field_name = "conversations[0]" if conversation_form else "text"
        _check_placeholders(check, images, image3d, [(field_name, text)], missing_ok=True)
    if check.problems:
        return None
    metadata = {k: v for k, v in row.items() if k not in used}
    return QuestionRecord(qid, text, images, image3d, prior, reference, answer_type, metadata, as_lists)


def _answer_record(check: _Check, row: dict) -> AnswerRecord | None:
    id_key = _first_key(row, ("question_id", "id"))
    text_key = _first_key(row, ("text", "prediction"))
    prompt_key = _first_key(row, ("prompt", "query"))
    ref_key = _first_key(row, ("reference", "gt"))
    qid = check.get(row, id_key, (str, int), required=True)
    text = check.get(row, text_key, (str,), required=True)
    prompt = check.get(row, prompt_key, (str,)) or ""
    reference = check.get(row, ref_key, (str,))
    answer_type = check.get(row, "answer_type", (str,))
    answer_id = check.get(row, "answer_id", (str, int))
    model_id = check.get(row, "model_id", (str,))
    metadata = check.get(row, "metadata", (dict,)) or {}
    if check.problems:
        return None
    used = {id_key, text_key, prompt_key, ref_key, "answer_type", "answer_id", "model_id", "metadata"}
    extra = {k: v for k, v in row.items() if k not in used}
    return AnswerRecord(qid, text, prompt, reference, answer_type, answer_id, model_id, metadata, extra)


_PARSERS = {"training": (_training_record, ("id",)),
            "questions": (_question_record, ("question_id", "id")),
            "answers": (_answer_record, ("question_id", "id"))}


# ----------------------------------------------------------------------------------------------------------
# reading files


def _read_rows(path: Path) -> tuple[list[tuple[str, Any]], Problem | None]:
    """(location, parsed JSON value) for every record - a `Problem` for a JSONL line that does not parse - and
    the problem of the whole file when nothing in it can be read as records."""
    file = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark some editors add is not data
    except UnicodeDecodeError as e:
        return [], Problem(file, f"byte {e.start}", None, None, "not UTF-8 text; record files are UTF-8 JSON")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            return [], Problem(file, f"line {e.lineno} col {e.colno}", None, None, f"invalid JSON: {e.msg}")
        return [(f"index {i}", row) for i, row in enumerate(data)], None
    rows: list[tuple[str, Any]] = []
    lines = text.split("\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as e:
            if n == 1 and text.lstrip().startswith("{") and _is_one_object(text):
                return [], Problem(file, "", None, None, "the file holds one JSON object; expected a JSON list "
                                                         "of records or JSON Lines (one record per line)")
            if n == len(lines):  # the last line, and no newline after it
                msg = ("cut off: the last line is not valid JSON and has no newline, as when a writer is "
                       "interrupted; delete that line (resuming `medvlm predict` drops it from answers files)")
            else:
                msg = f"invalid JSON at col {e.colno}: {e.msg}"
            rows.append((f"line {n}", Problem(file, f"line {n}", None, None, msg)))
    return rows, None


def _is_one_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _parse_file(path: str | os.PathLike, kind: str, image_folder: str | os.PathLike | None,
                check_files: bool) -> tuple[list[Any], Problem | None, list[Problem]]:
    """(one record or None per record in the file, the problem of the whole file, the problems of records)."""
    if kind not in _PARSERS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    path = Path(path)
    file = str(path)
    rows, file_problem = _read_rows(path)
    parse, id_keys = _PARSERS[kind]
    records, record_problems = [], []
    seen: dict[RecordId, str] = {}
    for location, row in rows:
        check = _Check(file, location, row, id_keys)
        if isinstance(row, Problem):
            check.problems.append(row)
        elif not isinstance(row, dict):
            check.add(None, f"expected a record (a JSON object), got {_TYPE_NAMES.get(type(row), type(row).__name__)}")
        elif (record := parse(check, row)) is not None:
            record_id = record.id if kind == "training" else record.question_id
            if record_id in seen and kind != "answers":
                check.add(id_keys[0] if id_keys[0] in row else id_keys[-1],
                          f"duplicate id {record_id!r} (first at {seen[record_id]}); ids must be unique")
            seen.setdefault(record_id, location)
            if check_files and kind != "answers":
                _check_files(check, record, image_folder, path)
        record_problems += check.problems
        records.append(None if check.problems else record)
    return records, file_problem, record_problems


def _check_files(check: _Check, record: TrainingRecord | QuestionRecord, image_folder, record_file: Path) -> None:
    base = f"--image-folder {image_folder}" if image_folder is not None else "the record file's folder"
    named = [("image", p) for p in record.images] + [("image3d", record.image3d), ("prior", record.prior_image)]
    for key, p in named:
        if p is not None and not resolve_path(p, image_folder, record_file).exists():
            check.add(key, f"file not found: {p} (relative paths resolve against {base})")


def _load(path, kind: str, image_folder, skip_bad: bool, check_files: bool) -> Records:
    records, file_problem, record_problems = _parse_file(path, kind, image_folder, check_files)
    if file_problem is not None:
        raise RecordError(file_problem)
    if record_problems and not skip_bad:
        raise RecordError(record_problems[0], _hint(path, len(record_problems) - 1)
                          + "\nor load with skip_bad=True to leave bad records out (they are listed).")
    loaded = Records([r for r in records if r is not None], skipped=record_problems)
    if record_problems:
        ids = loaded.skipped_ids
        shown = ", ".join(map(repr, ids[:20])) + (f", ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
        log.warning("%s: skipped %d bad %s record(s): %s", path, len(ids), kind, shown)
    return loaded


def _hint(path, more: int) -> str:
    extra = f" ({more} more problem(s))" if more > 0 else ""
    return f"Run `medvlm validate {path}` to list every problem{extra}."


def load_training(path: str | os.PathLike, image_folder: str | os.PathLike | None = None,
                  skip_bad: bool = False) -> Records:
    """Read a training file (JSON list or JSONL) into `TrainingRecord`s.

    Fails with `RecordError` on the first bad record, or with skip_bad=True leaves bad records out, logs their
    ids and lists their problems in `.skipped`. Image files are checked only when image_folder is given.
    """
    return _load(path, "training", image_folder, skip_bad, check_files=image_folder is not None)


def load_questions(path: str | os.PathLike, image_folder: str | os.PathLike | None = None,
                   skip_bad: bool = False) -> Records:
    """Read a questions file (LLaVA question JSONL or conversation-shaped) into `QuestionRecord`s; see load_training."""
    return _load(path, "questions", image_folder, skip_bad, check_files=image_folder is not None)


def load_answers(path: str | os.PathLike, skip_bad: bool = False) -> Records:
    """Read an answers file (LLaVA, MSLoRA-CR or LLaVA-Rad form) into `AnswerRecord`s; see load_training."""
    return _load(path, "answers", None, skip_bad, check_files=False)


def detect_kind(path: str | os.PathLike) -> str:
    """Which kind of record file this is - "training", "questions" or "answers" - from its first record's keys.

    Conversations ending with a human turn (MedM-VL's inference files) are questions."""
    path = Path(path)
    rows, file_problem = _read_rows(path)
    if file_problem is not None:
        raise RecordError(file_problem)
    if not rows:
        raise RecordError(Problem(str(path), "", None, None, "the file holds no records"))
    location, row = rows[0]
    if isinstance(row, Problem):
        raise RecordError(row)
    if not isinstance(row, dict):
        raise RecordError(Problem(str(path), location, None, None, "expected a record (a JSON object)"))
    if "conversations" in row:
        turns = row["conversations"]
        last = turns[-1] if isinstance(turns, list) and turns else None
        last_role = ROLES.get(last.get("from")) if isinstance(last, dict) else None
        return "questions" if last_role == "human" else "training"
    if any(k in row for k in ("prediction", "prompt", "query", "answer_id", "model_id")):
        return "answers"
    if "text" in row:
        return "questions"
    raise RecordError(Problem(str(path), location, None, None,
                              f"cannot tell the kind of file from keys {sorted(row)}; give kind= (--kind) "
                              f"{' / '.join(KINDS)}"))


def validate_file(path: str | os.PathLike, image_folder: str | os.PathLike | None = None,
                  kind: str | None = None, check_files: bool = True) -> Problems:
    """Every problem of a record file (empty when it is fine), with `.kind` and `.num_records` set.

    kind: detected from the first record when None. Image files are checked against image_folder, else against
    the file's folder, unless check_files=False.
    """
    path = Path(path)
    if not path.is_file():
        return Problems([Problem(str(path), "", None, None, "file not found")], kind, 0)
    if kind is None:
        try:
            kind = detect_kind(path)
        except RecordError as e:
            return Problems([e.problem], None, 0)
    records, file_problem, record_problems = _parse_file(path, kind, image_folder, check_files)
    problems = record_problems if file_problem is None else [file_problem]
    if not records and file_problem is None:
        problems.append(Problem(str(path), "", None, None, "the file holds no records"))
    return Problems(problems, kind, len(records))


# ----------------------------------------------------------------------------------------------------------
# writing files


def write_training(path: str | os.PathLike, records: list[TrainingRecord], jsonl: bool = False) -> None:
    """Write training records atomically, as a JSON list (LLaVA's usual form) or JSON Lines."""
    rows = [r.to_dict() for r in records]
    if jsonl:
        atomic_write_jsonl(path, rows)
    else:
        atomic_write_json(path, rows, indent=2)


def write_questions(path: str | os.PathLike, records: list[QuestionRecord]) -> None:
    """Write questions atomically as LLaVA question JSONL (reference under `reference`)."""
    atomic_write_jsonl(path, [r.to_dict() for r in records])


def write_answers(path: str | os.PathLike, records: list[AnswerRecord]) -> None:
    """Write answers atomically as JSONL (LLaVA's keys plus `reference` and `answer_type`)."""
    atomic_write_jsonl(path, [r.to_dict() for r in records])


def append_answers(path: str | os.PathLike, records: list[AnswerRecord]) -> None:
    """Append whole answer lines, then flush and fsync, so that an interrupted run loses at most its last line.

    Refuses a file whose last line is cut off: call `resume_answers` first, which drops it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            ends_with_newline = f.read(1) == b"\n"
        if not ends_with_newline and _cut_off_tail(path) is not None:
            raise RecordError(Problem(str(path), "last line", None, None, "cut off by an interrupted write; call "
                                      "resume_answers() first, which drops it, then append"))
        prefix = "" if ends_with_newline else "\n"
    else:
        prefix = ""
    text = prefix + "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _cut_off_tail(path: Path) -> tuple[int, str] | None:
    """(byte offset, text) of a last line that is neither newline-terminated nor valid JSON, else None."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return None
    start = data.rfind(b"\n") + 1
    tail = data[start:].decode("utf-8", errors="replace")
    try:
        json.loads(tail)
        return None
    except json.JSONDecodeError:
        return start, tail


def resume_answers(path: str | os.PathLike) -> Records:
    """The answers already written by an interrupted prediction run, ready to append to.

    A last line cut off by the interruption is removed from the file and reported (logged, and in `.skipped`);
    any other bad line is an error. A missing file means no answers yet.
    """
    path = Path(path)
    if not path.exists():
        return Records()
    tail = _cut_off_tail(path)
    dropped = []
    if tail is not None:
        offset, text = tail
        n_line = path.read_bytes()[:offset].count(b"\n") + 1
        os.truncate(path, offset)
        problem = Problem(str(path), f"line {n_line}", None, None,
                          f"cut off by an interrupted write and removed ({len(text)} characters): {text[:80]!r}")
        log.warning("%s", problem)
        dropped.append(problem)
    answers = load_answers(path)
    answers.skipped = dropped
    return answers
