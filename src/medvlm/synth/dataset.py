"""Write a synthetic benchmark to a folder: images, masks, train.json, test.jsonl, labels.jsonl, dataset.json.

Layout of `out/`:
  images/<study_id>_current.png (or .dcm; ct: .nii.gz plus a DICOM series folder <study_id>_current_dicom/)
  images/<study_id>_prior.png    temporal studies that have a prior
  masks/<study_id>_<role>_<finding>.png   one per present finding (ct: .nii.gz), 0 outside, 255 inside
  train.json     LLaVA conversations of train patients: one report-generation record and one multi-turn VQA
                 record per study; "image" is a path, or [current, prior] (Libra) with two <image> placeholders
  test.jsonl     questions of test patients: {question_id, image, text, reference, answer_type, task, ...};
                 answer_type is "report", "closed" or "open"; `text` has no <image> placeholder (LLaVA question files)
  labels.jsonl   one line per study (train and test): study_id, patient_id, split, images, findings (with mask
                 paths) and the generator's labels (cxr: chexpert, present, change)
  dataset.json   the card: generator version, kind, seed, options, config, counts, prevalences

Determinism: study `index` is drawn from `np.random.SeedSequence([seed, kind_code, index])` alone and every file
of a study is written by the process that drew it, so the bytes never depend on `workers`. Records are
assembled in index order in the parent. The split is by synthetic patient: patients are ordered by a hash of
(seed, patient_id) and the first round(test_fraction * patients) go to test.

The dataset is written into a hidden staging folder beside `out` and renamed to `out` at the end, so a reader
never sees half a dataset; files inside the staging folder are therefore written plainly (no per-file fsync,
which would cost more than generating the image).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvlm.fileio import atomic_write_json, atomic_write_jsonl
from medvlm.synth.base import SynthImage, SynthStudy, config_with_options

# kind -> (module exposing generate_study, name of its config dataclass, kind code for seeding).
# The one place generators are registered; modules are imported only when their kind is used.
REGISTRY: dict[str, tuple[str, str, int]] = {
    "cxr": ("medvlm.synth.cxr", "CXRConfig", 1),
    "derm": ("medvlm.synth.derm", "DermConfig", 2),
    "path": ("medvlm.synth.path", "PathConfig", 3),
    "ct": ("medvlm.synth.ct", "CTConfig", 4),
}

IMAGE_FORMATS = ("png", "dicom")
# DICOM modality of each 2D kind with --format dicom (CT writes a CT series).
DICOM_MODALITY = {"cxr": "DX", "derm": "XC", "path": "SM"}


def load_generator(kind: str) -> tuple[Callable[..., SynthStudy], type]:
    """(generate_study, config class) of a registered kind."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown synthetic kind {kind!r}; known kinds: {', '.join(REGISTRY)}")
    module_name, config_name, _ = REGISTRY[kind]
    module = importlib.import_module(module_name)
    return module.generate_study, getattr(module, config_name)


def generator_version(kind: str) -> str:
    module = importlib.import_module(REGISTRY[kind][0])
    return str(getattr(module, "GENERATOR_VERSION", "1"))


def study_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The random generator of one study: depends on (seed, kind, index) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), REGISTRY[kind][2], int(index)]))


def generate_one(kind: str, index: int, *, seed: int = 0, config: Any = None) -> SynthStudy:
    """Generate study `index` exactly as `write_dataset` would (in memory, nothing written)."""
    generate_study, config_class = load_generator(kind)
    return generate_study(study_rng(seed, kind, index), index, config if config is not None else config_class())


def split_patients(patient_ids: list[str], seed: int, test_fraction: float) -> dict[str, str]:
    """patient_id -> "train" | "test"; exactly round(test_fraction * unique patients) test patients."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be within [0, 1), got {test_fraction}")
    unique = sorted(set(patient_ids))
    order = sorted(unique, key=lambda p: hashlib.sha256(f"{seed}/{p}".encode()).hexdigest())
    n_test = int(round(test_fraction * len(unique)))
    test = set(order[:n_test])
    return {p: ("test" if p in test else "train") for p in unique}


# ----------------------------------------------------------------------------------------------- files


def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    # compress_level 1: a fraction of the default's time for a few percent more bytes; output stays deterministic.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.write_bytes(_png_bytes(pixels))


def _write_image(root: Path, rel: str, image: SynthImage, study: SynthStudy, *, image_format: str, seed: int,
                 kind: str) -> str:
    """Write one image; returns the path to put in records (relative to root)."""
    from medvlm import imaging

    # A prior is its own (earlier) study of the same patient, so it gets its own study UID.
    uid = lambda *p: imaging.deterministic_uid(seed, kind, study.study_id, image.role, *p)  # noqa: E731
    if image.kind == "ct":
        rel_nifti = rel + ".nii.gz"
        imaging.write_nifti(root / rel_nifti, image.pixels, image.spacing_mm)
        imaging.write_dicom_series(
            root / (rel + "_dicom"), image.pixels, image.spacing_mm, patient_id=study.patient_id,
            study_uid=uid("study"), series_uid=uid("series"), study_date=image.acquired, study_id=study.study_id,
        )
        return rel_nifti
    if image_format == "png":
        _write_png(root / (rel + ".png"), image.pixels)
        return rel + ".png"
    if image_format == "dicom":
        imaging.write_dicom_image(
            root / (rel + ".dcm"), image.pixels,
            modality=DICOM_MODALITY.get(kind, "OT"),
            photometric="MONOCHROME2" if image.kind == "gray" else "RGB",
            patient_id=study.patient_id,
            study_uid=uid("study"), series_uid=uid("series"), sop_uid=uid("sop"), study_id=study.study_id,
            pixel_spacing_mm=tuple(image.spacing_mm[:2]),
            view_position=image.view, study_date=image.acquired,
        )
        return rel + ".dcm"
    raise ValueError(f"unknown image format {image_format!r}; choose one of {IMAGE_FORMATS}")


def _write_mask(root: Path, rel: str, mask: np.ndarray, spacing_mm: tuple[float, ...]) -> str:
    if mask.ndim == 3:
        from medvlm import imaging

        imaging.write_nifti(root / (rel + ".nii.gz"), mask.astype(np.uint8), spacing_mm)
        return rel + ".nii.gz"
    _write_png(root / (rel + ".png"), mask.astype(np.uint8) * 255)
    return rel + ".png"


@dataclass(frozen=True)
class _Job:
    kind: str
    config: Any
    seed: int
    root: str
    image_format: str


def _generate_and_write(job: _Job, index: int) -> dict[str, Any]:
    """Draw study `index`, write its images and masks under job.root; return its JSON-able row."""
    study = generate_one(job.kind, index, seed=job.seed, config=job.config)
    root = Path(job.root)
    image_paths: list[str] = []
    mask_paths: dict[tuple[str, str], str] = {}
    for image in study.images:
        image_paths.append(_write_image(root, f"images/{study.study_id}_{image.role}", image, study,
                                        image_format=job.image_format, seed=job.seed, kind=job.kind))
        for name in sorted(image.masks):
            mask_paths[(image.role, name)] = _write_mask(
                root, f"masks/{study.study_id}_{image.role}_{name}", image.masks[name], image.spacing_mm)
    findings = []
    for finding in study.findings:
        finding = dict(finding)
        for key, role in (("mask", "current"), ("prior_mask", "prior")):
            if finding.get(key) is not None:
                if (role, finding[key]) not in mask_paths:
                    raise RuntimeError(f"{job.kind} generator bug: study {study.study_id} finding "
                                       f"{finding.get('name')!r} names {role} mask {finding[key]!r} that it did not draw")
                finding[key] = mask_paths[(role, finding[key])]
        findings.append(finding)
    return {
        "study_id": study.study_id,
        "patient_id": study.patient_id,
        "images": image_paths,
        "findings": findings,
        "labels": study.labels,
        "report": study.report,
        "report_prompt": study.report_prompt,
        "questions": [dataclasses.asdict(q) for q in study.questions],
        "n_masks": sum(len(im.masks) for im in study.images),
    }


def _worker(args: tuple[_Job, int]) -> dict[str, Any]:
    return _generate_and_write(*args)


# --------------------------------------------------------------------------------------------- records


def _image_field(row: dict[str, Any]) -> str | list[str]:
    return row["images"][0] if len(row["images"]) == 1 else list(row["images"])


def training_records(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The train.json records of one study: report generation, then VQA (all questions, multi-turn)."""
    placeholders = "<image>\n" * len(row["images"])
    common = {"image": _image_field(row), "study_id": row["study_id"], "patient_id": row["patient_id"]}
    records = [{
        "id": f"{row['study_id']}-report", **common, "task": "report",
        "conversations": [{"from": "human", "value": placeholders + row["report_prompt"]},
                          {"from": "gpt", "value": row["report"]}],
    }]
    if row["questions"]:
        turns = []
        for i, q in enumerate(row["questions"]):
            turns.append({"from": "human", "value": (placeholders if i == 0 else "") + q["text"]})
            turns.append({"from": "gpt", "value": q["answer"]})
        records.append({"id": f"{row['study_id']}-vqa", **common, "task": "vqa", "conversations": turns})
    return records


def test_questions(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The test.jsonl lines of one study: the report question, then one line per VQA question."""
    common = {"image": _image_field(row), "study_id": row["study_id"], "patient_id": row["patient_id"]}
    lines = [{"question_id": f"{row['study_id']}-report", **common, "text": row["report_prompt"],
              "reference": row["report"], "answer_type": "report", "task": "report"}]
    for i, q in enumerate(row["questions"]):
        lines.append({"question_id": f"{row['study_id']}-q{i:02d}", **common, "text": q["text"],
                      "reference": q["answer"], "answer_type": q["answer_type"], "task": "vqa",
                      "topic": q["topic"]})
    return lines


def label_line(row: dict[str, Any], split: str) -> dict[str, Any]:
    return {"study_id": row["study_id"], "patient_id": row["patient_id"], "split": split, "images": row["images"],
            "findings": row["findings"], **row["labels"]}


# ---------------------------------------------------------------------------------------------- writer


@dataclass
class DatasetSummary:
    """What write_dataset wrote: the folder and the card (counts, prevalences)."""

    out: Path
    card: dict[str, Any]


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} already exists and is not empty; choose another --out or pass overwrite")
        if not (out / "dataset.json").is_file():
            raise FileExistsError(f"{out} exists and is not a synthetic dataset (no dataset.json); "
                                  "refusing to replace it: choose another --out")


def write_dataset(
    out: str | os.PathLike,
    kind: str,
    n: int,
    *,
    seed: int = 0,
    config: Any = None,
    size_px: int | None = None,
    temporal: bool | None = None,
    prevalence: dict[str, float] | None = None,
    test_fraction: float = 0.1,
    image_format: str = "png",
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> DatasetSummary:
    """Generate `n` studies of `kind` and write the dataset folder `out` (see the module docstring).

    config: the kind's config dataclass (default: its defaults); size_px, temporal, prevalence (finding -> p)
    override its fields. Same (kind, n, seed, config, test_fraction, image_format) -> byte-identical files for
    any `workers`. overwrite: replace an existing dataset folder (one with a dataset.json; never anything else).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; choose one of {IMAGE_FORMATS}")
    _, config_class = load_generator(kind)
    config = config if config is not None else config_class()
    config = config_with_options(config, size_px=size_px, temporal=temporal, prevalence=prevalence)
    split_patients([], seed, test_fraction)  # validates test_fraction before any work
    out = Path(out)
    _prepare_out(out, overwrite)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "images").mkdir(parents=True)
    (staging / "masks").mkdir()
    job = _Job(kind=kind, config=config, seed=int(seed), root=str(staging), image_format=image_format)
    try:
        rows = _run_jobs(job, n, workers, progress)
        card = _write_tables(staging, rows, job, n, test_fraction)
        _prepare_out(out, overwrite)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DatasetSummary(out=out, card=card)


def _run_jobs(job: _Job, n: int, workers: int, progress: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    tasks = [(job, i) for i in range(n)]
    bar = dict(total=n, desc=f"synth {job.kind}", unit="study", disable=not progress)
    if workers <= 1:
        return [_worker(t) for t in tqdm(tasks, **bar)]
    # spawn: safe with threads (torch) in the parent and the same on every OS. A worker that dies raises
    # BrokenProcessPool here instead of hanging; map() yields results in index order.
    chunk = max(1, min(64, n // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(tqdm(pool.map(_worker, tasks, chunksize=chunk), **bar))


def _write_tables(root: Path, rows: list[dict[str, Any]], job: _Job, n: int, test_fraction: float) -> dict:
    split = split_patients([r["patient_id"] for r in rows], job.seed, test_fraction)
    train, test, labels = [], [], []
    for row in rows:
        s = split[row["patient_id"]]
        labels.append(label_line(row, s))
        if s == "train":
            train.extend(training_records(row))
        else:
            test.extend(test_questions(row))
    atomic_write_json(root / "train.json", train, indent=1)
    atomic_write_jsonl(root / "test.jsonl", test)
    atomic_write_jsonl(root / "labels.jsonl", labels)

    present = Counter()
    considered = Counter()
    changes: dict[str, Counter] = {}
    for row in rows:
        for f in row["findings"]:
            considered[f["name"]] += 1
            present[f["name"]] += bool(f.get("present"))
        for name, change in (row["labels"].get("change") or {}).items():
            changes.setdefault(name, Counter())[change] += 1
    from medvlm import __version__

    card = {
        "name": f"medvlm synthetic {job.kind}",
        "generator": f"medvlm {__version__} / {REGISTRY[job.kind][0]} version {generator_version(job.kind)}",
        "kind": job.kind,
        "seed": job.seed,
        "n": n,
        "test_fraction": test_fraction,
        "image_format": job.image_format,
        "config": _jsonable(dataclasses.asdict(job.config)),
        "counts": {
            "studies": len(rows),
            "patients": len(split),
            "train_patients": sum(v == "train" for v in split.values()),
            "test_patients": sum(v == "test" for v in split.values()),
            "studies_with_prior": sum(len(r["images"]) > 1 for r in rows),
            "images": sum(len(r["images"]) for r in rows),
            "masks": sum(r["n_masks"] for r in rows),
            "train_records": len(train),
            "test_questions": len(test),
            "test_questions_by_type": dict(sorted(Counter(q["answer_type"] for q in test).items())),
        },
        "prevalences": {name: round(present[name] / considered[name], 4) for name in sorted(considered)},
        "changes": {name: dict(sorted(c.items())) for name, c in sorted(changes.items())},
        "files": {"train": "train.json", "test": "test.jsonl", "labels": "labels.jsonl",
                  "images": "images/", "masks": "masks/"},
    }
    atomic_write_json(root / "dataset.json", card)
    return card


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
