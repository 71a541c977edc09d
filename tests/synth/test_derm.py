"""Synthetic dermoscopy: deterministic images whose lesion, ABCD truth, report and answers agree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvlm.synth.dataset import generate_one, write_dataset
from medvlm.synth.derm import COLOURS, DermConfig, DermLesion, diagnosis_from_score

N = 24


@pytest.fixture(scope="module")
def studies():
    return [generate_one("derm", i, seed=7) for i in range(N)]


def test_same_seed_and_index_give_identical_studies():
    first, again, other = generate_one("derm", 5, seed=3), generate_one("derm", 5, seed=3), generate_one("derm", 6, seed=3)
    assert np.array_equal(first.images[0].pixels, again.images[0].pixels)
    assert np.array_equal(first.images[0].masks["lesion"], again.images[0].masks["lesion"])
    assert (first.report, first.questions, first.labels) == (again.report, again.questions, again.labels)
    assert not np.array_equal(first.images[0].pixels, other.images[0].pixels)


def test_image_is_rgb_with_spacing_from_the_field_of_view(studies):
    image = studies[0].images[0]
    assert image.kind == "rgb" and image.pixels.dtype == np.uint8 and image.pixels.shape == (128, 128, 3)
    assert image.spacing_mm == pytest.approx((20.0 / 128, 20.0 / 128))
    big = generate_one("derm", 0, config=DermConfig(size_px=256)).images[0]
    assert big.pixels.shape == (256, 256, 3) and big.spacing_mm == pytest.approx((20.0 / 256, 20.0 / 256))


def test_every_lesion_is_masked_and_stands_out_from_the_skin_around_it(studies):
    for study in studies:
        image = study.images[0]
        mask = image.masks["lesion"]
        assert mask.sum() > 0
        rgb = image.pixels.astype(np.float32)
        rows, cols = np.nonzero(mask)
        box = np.zeros_like(mask)
        box[max(rows.min() - 8, 0):rows.max() + 9, max(cols.min() - 8, 0):cols.max() + 9] = True
        skin = np.median(rgb[box & ~mask], axis=0)
        # pixel noise has sd < 2 levels per channel; lesion pixels differ from the skin by far more
        assert np.linalg.norm(rgb[mask] - skin, axis=1).mean() > 12, study.study_id


def test_greatest_diameter_of_the_mask_is_the_labelled_diameter(studies):
    for study in studies:
        mask, (spacing, _) = study.images[0].masks["lesion"], study.images[0].spacing_mm
        points = np.argwhere(mask).astype(np.float64)
        angles = np.linspace(0, np.pi, 90, endpoint=False)
        projections = points @ np.stack([np.cos(angles), np.sin(angles)])
        feret_mm = (np.max(projections.max(0) - projections.min(0)) + 1) * spacing
        assert feret_mm == pytest.approx(study.labels["diameter_mm"], abs=3 * spacing), study.study_id


def test_diagnosis_follows_the_documented_abcd_rule(studies):
    assert [diagnosis_from_score(s) for s in (0, 2, 3, 4, 5, 10)] == [
        "benign nevus", "benign nevus", "atypical nevus", "atypical nevus", "melanoma", "melanoma"]
    lesion = DermLesion(asymmetry_axes=2, border_irregular=True, colours=("black", "dark brown"), diameter_mm=9)
    assert lesion.points == {"A": 2, "B": 2, "C": 1, "D": 1} and lesion.diagnosis == "melanoma"
    for study in studies:
        labels = study.labels
        assert labels["abcd_score"] == sum(labels["abcd_points"].values())
        assert labels["diagnosis"] == diagnosis_from_score(labels["abcd_score"])


def test_report_states_every_feature_and_the_diagnosis(studies):
    for study in studies:
        labels, report = study.labels, study.report
        findings, impression = report.split("\nIMPRESSION: ")
        assert findings.startswith("FINDINGS: ")
        assert f"{labels['diameter_mm']} mm" in findings
        assert all(colour in findings for colour in labels["colours"])
        assert ("irregular" in findings) == labels["border_irregular"]
        assert ("asymmetric" in findings or "asymmetry in" in findings) == (labels["asymmetry_axes"] > 0)
        if labels["asymmetry_axes"] == 1:
            assert "one axis" in findings
        if labels["asymmetry_axes"] == 2:
            assert "both axes" in findings or "two axes" in findings
        keyword = {"benign nevus": "enign", "atypical nevus": "typical", "melanoma": "elanoma"}[labels["diagnosis"]]
        assert keyword in impression
        if labels["diagnosis"] == "melanoma":
            assert "enign" not in impression


def test_answers_match_the_truth(studies):
    for study in studies:
        labels = study.labels
        truth = {
            "asymmetry": labels["asymmetry_axes"] > 0,
            "irregular_border": labels["border_irregular"],
            "colour_variegation": len(labels["colours"]) > 1,
            "large_diameter": labels["diameter_mm"] > 6,
            "melanoma": labels["diagnosis"] == "melanoma",
        }
        assert {name: labels["present"][name] for name in truth} == truth
        closed = [q for q in study.questions if q.answer_type == "closed"]
        assert {q.topic for q in closed} == set(truth)
        assert all(q.answer == ("yes" if truth[q.topic] else "no") for q in closed)
        open_answers = {q.text: q.answer for q in study.questions if q.answer_type == "open"}
        assert labels["diagnosis"] in open_answers.values()
        assert f"{labels['diameter_mm']} mm" in open_answers.values()
        assert str(len(labels["colours"])) in open_answers.values()


def test_prevalence_sets_the_diagnosis_mix():
    all_melanoma = DermConfig(prevalence={"atypical_nevus": 0.0, "melanoma": 1.0})
    all_benign = DermConfig(prevalence={"atypical_nevus": 0.0, "melanoma": 0.0})
    assert {generate_one("derm", i, config=all_melanoma).labels["diagnosis"] for i in range(6)} == {"melanoma"}
    assert {generate_one("derm", i, config=all_benign).labels["diagnosis"] for i in range(6)} == {"benign nevus"}


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="sum to at most 1"):
        DermConfig(prevalence={"atypical_nevus": 0.6, "melanoma": 0.6})
    with pytest.raises(ValueError, match="unknown"):
        DermConfig(prevalence={"basal cell carcinoma": 0.1})
    with pytest.raises(ValueError, match="diameter_mm"):
        DermConfig(diameter_mm=(3, 19))


def test_palette_colours_are_distinct():
    rgb = np.array(list(COLOURS.values()), dtype=np.float32)
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e3
    assert distances.min() > 40


def test_written_dataset_has_images_masks_and_labels(tmp_path):
    summary = write_dataset(tmp_path / "derm", "derm", 4, seed=1, test_fraction=0.25, progress=False)
    labels = [json.loads(line) for line in (summary.out / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 4
    for line in labels:
        assert (summary.out / line["images"][0]).is_file()
        lesion = next(f for f in line["findings"] if f["name"] == "lesion")
        assert (summary.out / lesion["mask"]).is_file()
    assert set(summary.card["prevalences"]) >= {"melanoma", "atypical_nevus", "irregular_border"}
