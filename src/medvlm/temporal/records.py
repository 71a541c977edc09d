"""Current-only views of temporal records: the same studies with their prior images taken away.

Used to train a current-only baseline on pair data and to evaluate a pair model "with the prior missing".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TypeVar

from medvlm.data.templates import IMAGE_PLACEHOLDER as PLACEHOLDER
from medvlm.records import QuestionRecord, TrainingRecord, Turn

R = TypeVar("R", TrainingRecord, QuestionRecord)


def without_second_placeholder(text: str, seen: int = 0) -> tuple[str, int]:
    """Remove the placeholder after the first one (counting `seen` placeholders already met); -> (text, seen)."""
    out = []
    rest = text
    while PLACEHOLDER in rest:
        before, rest = rest.split(PLACEHOLDER, 1)
        out.append(before)
        seen += 1
        if seen == 2:
            rest = rest[1:] if rest.startswith("\n") else rest
        else:
            out.append(PLACEHOLDER)
    out.append(rest)
    return "".join(out), seen


def drop_priors(records: Iterable[R]) -> list[R]:
    """Records with only their current image: `image: [current, prior]` -> [current] (the second placeholder, if
    the text has one per image, removed) and a named `prior` dropped. Records without a prior are unchanged."""
    out = []
    for record in records:
        has_pair = len(record.images) == 2 and record.image3d is None
        if not has_pair and record.prior_image is None:
            out.append(record)
            continue
        images = record.images[:1] if has_pair else record.images
        if isinstance(record, TrainingRecord):
            seen = 0
            turns = []
            for turn in record.conversations:
                value, seen = without_second_placeholder(turn.value, seen) if has_pair else (turn.value, seen)
                turns.append(Turn(turn.role, value, dict(turn.metadata)))
            out.append(dataclasses.replace(record, images=images, prior_image=None, conversations=turns))
        else:
            text = without_second_placeholder(record.text, 0)[0] if has_pair else record.text
            out.append(dataclasses.replace(record, images=images, prior_image=None, text=text))
    return out
