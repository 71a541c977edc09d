"""Data types shared by every synthetic generator (cxr, derm, path, ct).

A generator is a plain function `generate_study(rng, index, config) -> SynthStudy`: it draws one study
(one synthetic patient, a current image and optionally a prior) from `rng` alone, so the dataset writer
can seed each study independently and the output never depends on the number of workers.
Every kind's config is a dataclass with at least `size_px`; kinds with priors have `temporal`, kinds with
findings have `prevalence: dict[str, float]` (finding name -> probability of being present).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGE_KINDS = ("gray", "rgb", "ct")
IMAGE_ROLES = ("current", "prior")
ANSWER_TYPES = ("closed", "open")


@dataclass
class SynthImage:
    """One image of a study.

    pixels: gray (H, W) uint8 | rgb (H, W, 3) uint8 | ct (D, H, W) int16 Hounsfield units.
    spacing_mm: (row, col) for 2D, (slice, row, col) for ct.
    masks: name -> bool array with the spatial shape of `pixels` ((H, W) or (D, H, W)).
    acquired: acquisition date "YYYYMMDD" (a prior is earlier than its current image).
    """

    role: str
    pixels: np.ndarray
    kind: str
    spacing_mm: tuple[float, ...]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    acquired: str = "20240101"
    view: str = ""  # e.g. "PA" / "AP" for chest radiographs; empty where it has no meaning

    def __post_init__(self) -> None:
        if self.role not in IMAGE_ROLES:
            raise ValueError(f"SynthImage.role must be one of {IMAGE_ROLES}, got {self.role!r}")
        if self.kind not in IMAGE_KINDS:
            raise ValueError(f"SynthImage.kind must be one of {IMAGE_KINDS}, got {self.kind!r}")


@dataclass
class SynthQuestion:
    """A question about a study with its reference answer.

    answer_type: "closed" (yes/no) or "open"; topic: what it asks about (a finding name, "change", "device", ...).
    """

    text: str
    answer: str
    answer_type: str
    topic: str

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"SynthQuestion.answer_type must be one of {ANSWER_TYPES}, got {self.answer_type!r}")


@dataclass
class SynthStudy:
    """One synthetic study: images (current first, then the prior if any), ground truth and text.

    findings: one dict per finding the generator considered, at least {"name", "present"} plus attributes;
      "mask" / "prior_mask" name a mask of the current / prior image (the writer turns them into file paths).
    labels: JSON-serialisable structured truth merged into labels.jsonl (e.g. "chexpert", "present", "change").
    report_prompt: the instruction for report generation, without the <image> placeholders.
    """

    study_id: str
    patient_id: str
    images: list[SynthImage]
    findings: list[dict[str, Any]]
    labels: dict[str, Any]
    report: str
    questions: list[SynthQuestion]
    report_prompt: str

    def __post_init__(self) -> None:
        if not self.images or self.images[0].role != "current":
            raise ValueError(f"study {self.study_id}: images must start with the current image")

    @property
    def has_prior(self) -> bool:
        return len(self.images) > 1


def config_with_options(
    config: Any,
    *,
    size_px: int | None = None,
    temporal: bool | None = None,
    prevalence: dict[str, float] | None = None,
) -> Any:
    """Return a copy of a generator config with the common options applied; unknown names are errors."""
    names = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    if size_px is not None:
        changes["size_px"] = int(size_px)
    if temporal:
        if "temporal" not in names:
            raise ValueError(f"{type(config).__name__} has no prior images: drop --temporal for this kind")
        changes["temporal"] = True
    if prevalence:
        if "prevalence" not in names:
            raise ValueError(f"{type(config).__name__} has no configurable prevalences: drop --prevalence")
        known = dict(config.prevalence)
        for name, p in prevalence.items():
            if name not in known:
                raise ValueError(f"unknown finding {name!r} in prevalence; known: {', '.join(sorted(known))}")
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"prevalence of {name!r} must be within [0, 1], got {p}")
            known[name] = float(p)
        changes["prevalence"] = known
    return dataclasses.replace(config, **changes)
