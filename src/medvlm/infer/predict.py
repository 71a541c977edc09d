"""Answer a questions file in batches: resumable, shardable, one JSON line per answer.

    summary = predict(model, processor, "test.jsonl", "answers.jsonl", image_folder="images", batch_size=16)

- Batches are left-padded and generated together (see medvlm.infer.generate). Questions of one answer type are
  batched together (a batch runs as long as its longest answer; reports beside yes/no questions would keep them
  waiting), so the answers file lists them grouped by type, in the order the types first appear
  (`group_by_answer_type=False`: file order).
- Temporal questions: `image: [current, prior]` or a named `prior` key; the processor arranges the pair for the
  model's connector, and a pair model answers a question without a prior in its missing-prior mode.
- Resumable: question ids already in the output file are skipped; each batch's answers are appended and fsynced
  (`medvlm.records.append_answers`), so an interrupted run loses at most the batch in flight, and a line cut off
  by the interruption is dropped on the next run (`resume_answers`).
- Shardable: `num_chunks` / `chunk_idx` take one of `num_chunks` contiguous, near-equal slices of the questions in
  file order (LLaVA's get_chunk), so N processes with chunk_idx 0..N-1 answer every question exactly once.
- Answer lines: {question_id, prompt, text, answer_id, model_id, metadata} (LLaVA) plus the question's `reference`
  and `answer_type` when it has them, so that evaluation needs no join with the questions file. `metadata` holds
  the question's other keys. answer_id is derived from model_id and question_id (reruns write the same lines).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from medvlm.data.processor import MedVLMProcessor
from medvlm.infer.generate import generate_samples
from medvlm.infer.options import GenerationOptions
from medvlm.records import (
    AnswerRecord,
    QuestionRecord,
    append_answers,
    load_questions,
    resolve_path,
    resume_answers,
)


@dataclass
class PredictSummary:
    """What a predict run did: questions in its chunk, already answered before it, answered now, seconds."""

    out_path: str
    questions_in_chunk: int
    already_answered: int
    answered: int
    seconds: float

    def table(self) -> str:
        rows = [
            ("output", self.out_path),
            ("questions in chunk", self.questions_in_chunk),
            ("already answered (skipped)", self.already_answered),
            ("answered now", self.answered),
            ("seconds", f"{self.seconds:.1f}"),
            ("answers / s", f"{self.answered / self.seconds:.2f}" if self.seconds > 0 else "-"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def get_chunk(items: Sequence, num_chunks: int, chunk_idx: int) -> list:
    """Slice `chunk_idx` of `num_chunks` contiguous slices of ceil(len / num_chunks) items (the last ones may be
    shorter or empty). The union over chunk_idx = 0..num_chunks-1 is `items`, in order, each once."""
    if num_chunks < 1 or not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"need num_chunks >= 1 and 0 <= chunk_idx < num_chunks, got {num_chunks}, {chunk_idx}")
    size = math.ceil(len(items) / num_chunks) if items else 0
    return list(items[chunk_idx * size:(chunk_idx + 1) * size])


def answer_id(model_id: str, question_id) -> str:
    """A stable id for the answer of `model_id` to `question_id` (LLaVA uses a random shortuuid)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"medvlm:{model_id}:{question_id!r}").hex[:22]


def _question_images(question: QuestionRecord, image_folder, questions_file, where: str) -> list[Path]:
    """The question's images in placeholder order, a named prior last ([current, prior] for a temporal pair)."""
    if question.image3d is not None:
        raise ValueError(f"{where}: field 'image3d' needs a 3D connector, which this model does not have; remove "
                         "the field from the questions or use such a model")
    if question.prior_image is not None and len(question.images) != 1:
        raise ValueError(f"{where}: field 'prior' needs exactly one current image in 'image', got "
                         f"{len(question.images)}")
    paths = question.images + ([question.prior_image] if question.prior_image is not None else [])
    return [resolve_path(p, image_folder, questions_file) for p in paths]


def _question_text(question: QuestionRecord) -> str:
    """The text with its placeholders; a question without any gets one per placeholder the images need (a named
    prior shares the current image's placeholder, as Libra's pair does)."""
    if question.num_image_placeholders or question.prior_image is None:
        return question.text_with_placeholders()
    return "<image>\n" + question.text


def predict(
    model,
    processor: MedVLMProcessor,
    questions: str | os.PathLike | Sequence[QuestionRecord],
    out_path: str | os.PathLike,
    *,
    image_folder: str | os.PathLike | None = None,
    batch_size: int = 16,
    num_chunks: int = 1,
    chunk_idx: int = 0,
    model_id: str = "medvlm",
    options: GenerationOptions | None = None,
    progress: bool = True,
    group_by_answer_type: bool = True,
) -> PredictSummary:
    """Answer `questions` (a questions file, or QuestionRecords) into JSONL `out_path`; see the module docstring.

    Relative image paths resolve against image_folder, else against the questions file's folder (or the current
    folder for records given directly). group_by_answer_type=False batches the questions in file order.
    """
    options = options or GenerationOptions()
    if options.num_return_sequences != 1:
        raise ValueError("predict writes one answer per question: use num_return_sequences=1")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    questions_file = Path(questions) if isinstance(questions, (str, os.PathLike)) else Path("questions")
    records = load_questions(questions) if isinstance(questions, (str, os.PathLike)) else list(questions)
    chunk = get_chunk(records, num_chunks, chunk_idx)
    done = {a.question_id for a in resume_answers(out_path)}
    todo = [q for q in chunk if q.question_id not in done]
    # a batch generates until its longest answer ends: questions of one answer type (reports, closed, open) are
    # batched together, in the order the types first appear, so that short answers do not wait for reports
    by_type: dict[str | None, list[QuestionRecord]] = {}
    for q in todo:
        by_type.setdefault(q.answer_type if group_by_answer_type else None, []).append(q)
    batches = [group[start:start + batch_size] for group in by_type.values()
               for start in range(0, len(group), batch_size)]

    answered = 0
    bar = tqdm(total=len(todo), desc="predict", unit="q", disable=not progress)
    for batch in batches:
        samples = []
        for q in batch:
            where = f"{questions_file} question {q.question_id!r}"
            images = _question_images(q, image_folder, questions_file, where)
            samples.append(processor.encode(
                [{"from": "human", "value": _question_text(q)}], images,
                add_generation_prompt=True, where=where,
            ))
        texts = generate_samples(model, processor, samples, options)
        append_answers(out_path, [
            AnswerRecord(
                question_id=q.question_id, text=t[0], prompt=q.text, reference=q.reference,
                answer_type=q.answer_type, answer_id=answer_id(model_id, q.question_id), model_id=model_id,
                metadata=dict(q.metadata),
            )
            for q, t in zip(batch, texts, strict=True)
        ])
        answered += len(batch)
        bar.update(len(batch))
    bar.close()
    return PredictSummary(str(out_path), len(chunk), len(chunk) - len(todo), answered,
                          time.perf_counter() - started)
