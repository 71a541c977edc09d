"""Writing a synthetic dataset folder: determinism, patient split, file formats, CLI, preview."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvlm.cli import main
from medvlm.synth.cxr import CXRConfig
from medvlm.synth.dataset import REGISTRY, split_patients, write_dataset


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def temporal_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cxr"
    write_dataset(out, "cxr", 16, seed=3, size_px=64, temporal=True, test_fraction=0.25, progress=False)
    return out


def test_same_seed_gives_identical_bytes_whatever_the_workers(temporal_dataset, tmp_path):
    other = tmp_path / "cxr2"
    write_dataset(other, "cxr", 16, seed=3, size_px=64, temporal=True, test_fraction=0.25, workers=2, progress=False)
    assert _all_files(temporal_dataset) == _all_files(other)


def test_split_is_by_patient_with_the_requested_fraction(temporal_dataset):
    labels = [json.loads(line) for line in (temporal_dataset / "labels.jsonl").read_text().splitlines()]
    split = {row["patient_id"]: row["split"] for row in labels}
    assert sum(s == "test" for s in split.values()) == 4  # 25% of 16 patients
    train_patients = {r["patient_id"] for r in json.loads((temporal_dataset / "train.json").read_text())}
    test_lines = [json.loads(line) for line in (temporal_dataset / "test.jsonl").read_text().splitlines()]
    test_patients = {q["patient_id"] for q in test_lines}
    assert train_patients and test_patients and not train_patients & test_patients
    assert test_patients == {p for p, s in split.items() if s == "test"}
    assert split_patients(["a", "b", "c"], 0, 0.0) == {"a": "train", "b": "train", "c": "train"}


def test_records_follow_llava_and_libra_formats(temporal_dataset):
    train = json.loads((temporal_dataset / "train.json").read_text())
    assert {r["task"] for r in train} == {"report", "vqa"}
    for record in train:
        images = record["image"] if isinstance(record["image"], list) else [record["image"]]
        human = record["conversations"][0]
        assert human["from"] == "human" and human["value"].count("<image>") == len(images)
        assert [t["from"] for t in record["conversations"]][:2] == ["human", "gpt"]
        for path in images:
            assert (temporal_dataset / path).is_file()
    assert any(isinstance(r["image"], list) and len(r["image"]) == 2 for r in train)  # [current, prior]
    questions = [json.loads(line) for line in (temporal_dataset / "test.jsonl").read_text().splitlines()]
    assert {q["answer_type"] for q in questions} == {"report", "closed", "open"}
    for q in questions:
        assert {"question_id", "image", "text", "reference", "answer_type", "task"} <= set(q)
        assert "<image>" not in q["text"]
    assert len({q["question_id"] for q in questions}) == len(questions)


def test_records_validate_without_problems(temporal_dataset):
    from medvlm.records import validate_file

    for name in ("train.json", "test.jsonl"):
        problems = validate_file(temporal_dataset / name)
        assert list(problems) == [] and problems.num_records > 0


def test_labels_give_truth_masks_and_card_counts(temporal_dataset):
    labels = [json.loads(line) for line in (temporal_dataset / "labels.jsonl").read_text().splitlines()]
    assert [row["study_id"] for row in labels] == [f"cxr{i:06d}" for i in range(16)]
    n_masks = 0
    for row in labels:
        assert len(row["chexpert"]) == 14 and len(row["present"]) == 14
        for finding in row["findings"]:
            for key in ("mask", "prior_mask"):
                if finding.get(key):
                    mask = np.asarray(Image.open(temporal_dataset / finding[key]))
                    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255} and mask.max() == 255
                    n_masks += 1
            assert bool(finding.get("mask")) == finding["present"]
    card = json.loads((temporal_dataset / "dataset.json").read_text())
    assert card["kind"] == "cxr" and card["seed"] == 3 and card["config"]["temporal"] is True
    assert card["counts"]["studies"] == 16 and card["counts"]["masks"] == n_masks
    assert set(card["prevalences"]) == set(CXRConfig().prevalence)


def test_dicom_format_writes_real_dicom_with_the_same_pixels(tmp_path):
    import pydicom

    write_dataset(tmp_path / "png", "cxr", 2, size_px=64, progress=False)
    write_dataset(tmp_path / "dcm", "cxr", 2, size_px=64, image_format="dicom", progress=False)
    ds = pydicom.dcmread(tmp_path / "dcm" / "images" / "cxr000001_current.dcm")
    assert ds.Modality == "DX" and ds.PatientID == "cxrpat000001" and ds.ViewPosition == "PA"
    assert ds.PhotometricInterpretation == "MONOCHROME2" and (ds.Rows, ds.Columns) == (64, 64)
    assert len(ds.StudyDate) == 8 and float(ds.ImagerPixelSpacing[0]) > 0  # projection radiography
    png = np.asarray(Image.open(tmp_path / "png" / "images" / "cxr000001_current.png"))
    assert np.array_equal(ds.pixel_array, png)
    again = tmp_path / "dcm2"
    write_dataset(again, "cxr", 2, size_px=64, image_format="dicom", progress=False)
    assert _all_files(tmp_path / "dcm") == _all_files(again)


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        write_dataset(tmp_path, "cxr", 1, size_px=32, overwrite=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unknown_prevalence_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown finding 'pneumonia'"):
        write_dataset(tmp_path / "x", "cxr", 1, prevalence={"pneumonia": 0.5}, progress=False)


def test_cli_reports_bad_options_without_a_traceback(tmp_path, capsys):
    assert main(["synth", "derm", "--out", str(tmp_path / "d"), "--n", "1", "--temporal", "--quiet"]) == 2
    assert "no prior images" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_cli_round_trip_and_preview(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "cxr", "--out", str(out), "--n", "4", "--size", "64", "--temporal", "--quiet",
                 "--prevalence", "pneumothorax=1", "--seed", "2"]) == 0
    assert "studies" in capsys.readouterr().out
    card = json.loads((out / "dataset.json").read_text())
    assert card["prevalences"]["pneumothorax"] > 0.5 and card["config"]["size_px"] == 64
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "preview", str(out), "--out", str(sheet), "--n", "4"]) == 0
    assert Image.open(sheet).size[0] > 64


SMALL = {"cxr": 32, "derm": 32, "path": 64, "ct": 32}


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_preview_draws_every_kind(kind, tmp_path):
    from medvlm.synth.preview import write_preview

    write_dataset(tmp_path / kind, kind, 2, size_px=SMALL[kind], progress=False)
    sheet = write_preview(tmp_path / kind, tmp_path / f"{kind}.png", n=2, tile_px=64)
    pixels = np.asarray(Image.open(sheet))
    assert pixels.ndim == 3 and pixels.std() > 5
