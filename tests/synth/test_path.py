"""Synthetic H&E tiles: deterministic, nuclei visible, grade from the documented scores, text agreeing with truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvlm.synth.dataset import generate_one, write_dataset
from medvlm.synth.path import PathConfig, TissueTruth, grade_from_scores, render_tile

N = 20


@pytest.fixture(scope="module")
def studies():
    return [generate_one("path", i, seed=11) for i in range(N)]


def test_same_seed_and_index_give_identical_studies():
    first, again, other = generate_one("path", 2, seed=5), generate_one("path", 2, seed=5), generate_one("path", 3, seed=5)
    assert np.array_equal(first.images[0].pixels, again.images[0].pixels)
    assert all(np.array_equal(first.images[0].masks[k], again.images[0].masks[k]) for k in first.images[0].masks)
    assert (first.report, first.questions, first.labels) == (again.report, again.questions, again.labels)
    assert not np.array_equal(first.images[0].pixels, other.images[0].pixels)


def test_tiles_look_like_h_and_e(studies):
    for study in studies:
        image = study.images[0]
        assert image.kind == "rgb" and image.pixels.shape == (128, 128, 3) and image.pixels.dtype == np.uint8
        assert image.spacing_mm == pytest.approx((0.001, 0.001))
        rgb = image.pixels.astype(np.float32)
        nuclei = image.masks["nuclei"]
        stroma = ~nuclei
        # eosin: pink (red above green); haematoxylin: nuclei darker and bluer than the rest
        assert rgb[stroma][:, 0].mean() > rgb[stroma][:, 1].mean() + 30
        assert rgb[nuclei].mean() < rgb[stroma].mean() - 30
        blue_minus_red = rgb[..., 2] - rgb[..., 0]
        assert blue_minus_red[nuclei].mean() > blue_minus_red[stroma].mean() + 10


def test_masks_match_the_truth(studies):
    for study in studies:
        masks, labels = study.images[0].masks, study.labels
        assert masks["nuclei"].sum() > 0 and labels["nuclei"] > 0
        assert ("tumour" in masks) == labels["tumour"]
        if labels["tumour"]:
            assert masks["tumour"].mean() > 0.3
        assert ("mitoses" in masks) == (labels["mitoses"] > 0)
        if labels["mitoses"]:
            area_um2 = masks["mitoses"].sum()  # 1 um pixels; one figure covers roughly 10-30 um^2
            assert 5 * labels["mitoses"] <= area_um2 <= 40 * labels["mitoses"]
            assert not (masks["mitoses"] & ~masks["nuclei"]).any()


def test_cellularity_and_pleomorphism_change_what_is_drawn():
    def nuclei_stats(cellularity: int, pleomorphism: int) -> tuple[float, float]:
        counts, areas = [], []
        for seed in range(4):
            truth = TissueTruth(tumour=True, cellularity=cellularity, pleomorphism=pleomorphism, mitotic_score=1)
            _, masks, n = render_tile(np.random.default_rng(seed), truth, PathConfig())
            counts.append(n / masks["tumour"].mean())
            areas.append(masks["nuclei"].sum() / n)
        return float(np.mean(counts)), float(np.mean(areas))

    sparse, small = nuclei_stats(1, 1)
    dense, _ = nuclei_stats(3, 1)
    _, large = nuclei_stats(1, 3)
    assert dense > 1.8 * sparse
    assert large > 1.6 * small


def test_grade_follows_the_documented_scores(studies):
    assert grade_from_scores(1, 1, 1) == 1 and grade_from_scores(2, 2, 1) == 1
    assert grade_from_scores(2, 2, 2) == 2 and grade_from_scores(3, 3, 1) == 2
    assert grade_from_scores(3, 3, 2) == 3 and grade_from_scores(3, 3, 3) == 3
    for study in studies:
        labels = study.labels
        if labels["tumour"]:
            scores = (labels["cellularity_score"], labels["pleomorphism_score"], labels["mitotic_score"])
            assert labels["grade"] == grade_from_scores(*scores)
            assert {1: (0, 1), 2: (2, 3), 3: (4, 6)}[labels["mitotic_score"]][0] <= labels["mitoses"]
            assert labels["mitoses"] <= {1: (0, 1), 2: (2, 3), 3: (4, 6)}[labels["mitotic_score"]][1]
        else:
            assert labels["grade"] == 0 and labels["mitoses"] == 0


def test_report_and_answers_agree_with_the_truth(studies):
    words = ("no", "one", "two", "three", "four", "five", "six")
    for study in studies:
        labels = study.labels
        findings, impression = study.report.split("\nIMPRESSION: ")
        answers = {q.topic: q.answer for q in study.questions if q.answer_type == "closed"}
        assert answers["tumour"] == ("yes" if labels["tumour"] else "no")
        assert answers["mitoses"] == ("yes" if labels["mitoses"] else "no")
        assert answers["marked_pleomorphism"] == ("yes" if labels["pleomorphism_score"] == 3 else "no")
        assert all(answers[name] == ("yes" if present else "no") for name, present in labels["present"].items()
                   if name in answers)
        open_answers = {q.topic: q.answer for q in study.questions if q.answer_type == "open"}
        assert open_answers["mitoses"] == str(labels["mitoses"])
        if labels["tumour"]:
            assert f"rade {labels['grade']}" in impression
            assert open_answers["grade"] == f"grade {labels['grade']}"
            n = labels["mitoses"]
            assert (f"{words[n].capitalize()} mitotic" in findings or f"Mitotic figures: {n}" in findings
                    or (n == 0 and "No mitotic" in findings))
        else:
            assert "grade" not in impression.lower() and "grade" not in open_answers
            assert "No mitotic" in findings or "Mitoses are absent" in findings


def test_prevalence_and_grade_weights_set_the_mix():
    benign = PathConfig(prevalence={"tumour": 0.0})
    grade3 = PathConfig(prevalence={"tumour": 1.0}, grade_weights=(0.0, 0.0, 1.0))
    assert {generate_one("path", i, config=benign).labels["tumour"] for i in range(5)} == {False}
    assert {generate_one("path", i, config=grade3).labels["grade"] for i in range(5)} == {3}
    with pytest.raises(ValueError, match="tumour"):
        PathConfig(prevalence={"tumor": 0.5})
    with pytest.raises(ValueError, match="64 um"):
        PathConfig(size_px=32)


def test_written_dataset_has_nuclei_masks(tmp_path):
    summary = write_dataset(tmp_path / "path", "path", 3, seed=2, test_fraction=0.34, progress=False)
    for line in (summary.out / "labels.jsonl").read_text().splitlines():
        record = json.loads(line)
        nuclei = next(f for f in record["findings"] if f["name"] == "nuclei")
        assert (summary.out / nuclei["mask"]).is_file()
    assert summary.card["counts"]["studies"] == 3
