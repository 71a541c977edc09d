"""The synthetic chest X-ray generator: visible findings, priors, change labels, reports that match the truth."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medvlm.synth import cxr, cxr_text
from medvlm.synth.cxr import FINDINGS, LEVELS, CXRConfig
from medvlm.synth.dataset import generate_one

# The least conspicuous version of each finding: if these are visible, the larger ones are too.
SMALLEST = {"cardiomegaly": {"severity": "mild", "_jitter": 0.0}, "pleural_effusion": {"size": "small", "_jitter": 0.0},
            "pneumothorax": {"size": "small", "_jitter": 0.0}, "consolidation": {"extent": "patchy"},
            "nodule": {"size_mm": 20, "type": "nodule"}, "edema": {"severity": "mild", "_jitter": 0.0},
            "atelectasis": {"severity": "mild", "side": "left"}}


def _render_with_and_without(name: str, size_px: int, seed: int):
    rng = np.random.default_rng(seed)
    anatomy, pose, exposure = cxr.draw_anatomy(rng), cxr.draw_pose(rng), cxr.draw_exposure(rng)
    attrs = {**cxr.draw_finding(name, rng, anatomy), **SMALLEST.get(name, {})}
    with_finding, masks = cxr.render(anatomy, pose, exposure, {name: attrs}, size_px, np.random.default_rng(1))
    without, _ = cxr.render(anatomy, pose, exposure, {}, size_px, np.random.default_rng(1))
    return with_finding, without, masks[name], exposure


@pytest.mark.parametrize("size_px", [64, 128])
@pytest.mark.parametrize("name", FINDINGS)
def test_every_finding_is_visible_inside_its_mask(name, size_px):
    for seed in range(3):
        with_finding, without, mask, exposure = _render_with_and_without(name, size_px, seed)
        assert mask.shape == (size_px, size_px) and mask.dtype == bool
        assert mask.sum() >= 3, f"{name}: mask of {mask.sum()} pixels at {size_px} px"
        change = np.abs(with_finding.astype(float) - without.astype(float))
        noise_gray = exposure.noise_sigma * 255
        # The finding changes the pixels inside its mask by more than the noise, and barely outside it.
        assert change[mask].mean() > 1.5 * noise_gray, (name, size_px, change[mask].mean(), noise_gray)
        assert change[mask].mean() > 3 * change[~mask].mean()


@pytest.mark.parametrize("size_px", [64, 256, 1024])
def test_image_shape_type_and_spacing(size_px):
    study = generate_one("cxr", 5, config=CXRConfig(size_px=size_px))
    image = study.images[0]
    assert image.pixels.shape == (size_px, size_px) and image.pixels.dtype == np.uint8
    assert image.kind == "gray" and image.view == "PA"
    assert image.spacing_mm[0] == pytest.approx(400 / size_px, rel=0.06)
    assert 20 < image.pixels.mean() < 200  # neither blank nor saturated


def test_same_index_and_seed_give_the_same_study_and_others_differ():
    config = CXRConfig(size_px=64, temporal=True)
    a, b = generate_one("cxr", 3, seed=7, config=config), generate_one("cxr", 3, seed=7, config=config)
    assert np.array_equal(a.images[0].pixels, b.images[0].pixels) and a.report == b.report
    c = generate_one("cxr", 3, seed=8, config=config)
    assert not np.array_equal(a.images[0].pixels, c.images[0].pixels)


def _level(name, attrs):
    if name in cxr.DEVICES:  # devices only appear, stay or go
        return 0
    if name == "nodule":
        return attrs["size_mm"]
    key, levels = LEVELS[name]
    return levels.index(attrs[key])


def test_temporal_change_labels_agree_with_prior_and_current_findings():
    config = CXRConfig(size_px=32, temporal=True, no_prior_fraction=0.0, normal_fraction=0.0)
    seen = set()
    for index in range(60):
        study = generate_one("cxr", index, config=config)
        assert [im.role for im in study.images] == ["current", "prior"]
        assert study.images[1].acquired < study.images[0].acquired
        current_pose, prior_pose = study.labels["acquisition"]  # same patient, another pose and exposure
        assert current_pose["tilt_deg"] != prior_pose["tilt_deg"] and current_pose["gamma"] != prior_pose["gamma"]
        for f in study.findings:
            change = f.get("change")
            if change is None:
                assert not f["present"] and not f["prior_present"]
                continue
            seen.add(change)
            assert (f["present"], f["prior_present"]) == {"new": (True, False), "resolved": (False, True)}.get(
                change, (True, True)), f
            if change in ("increased", "decreased", "unchanged"):
                now, before = _level(f["name"], f), _level(f["name"], f["prior"])
                assert {"increased": now > before, "decreased": now < before, "unchanged": now == before}[change], f
        assert study.labels["change"] == {f["name"]: f["change"] for f in study.findings if "change" in f}
    assert seen == set(cxr.CHANGES)


def test_report_states_each_change_in_a_sentence_about_that_finding():
    config = CXRConfig(size_px=32, temporal=True, no_prior_fraction=0.0, normal_fraction=0.0)
    for index in range(60):
        study = generate_one("cxr", index, config=config)
        sentences = [s.lower() for s in re.split(r"(?<=\.)\s+|\n", study.report)]
        for f in study.findings:
            if "change" not in f:
                continue
            attrs = f if f["present"] else f["prior"]
            noun = {"consolidation": attrs.get("term"), "nodule": attrs.get("type"), "ett": "endotracheal",
                    "enteric_tube": "enteric", "central_line": "central"}.get(f["name"], f["name"].replace("_", " "))
            words = cxr_text.CHANGE_WORDS[f["change"]]
            assert any(noun in s and any(re.search(rf"\b{w}\b", s) for w in words) for s in sentences), (
                f["name"], f["change"], study.report)


def test_study_without_prior_says_so_and_has_one_image():
    study = generate_one("cxr", 0, config=CXRConfig(size_px=32, temporal=True, no_prior_fraction=1.0))
    assert len(study.images) == 1 and not study.labels["has_prior"] and study.labels["change"] == {}
    assert re.search(r"no prior|no comparison", study.report, re.IGNORECASE)
    assert any(q.topic == "change" and q.answer == "no" for q in study.questions)


def test_chexpert_labels_state_exactly_the_present_observations():
    config = CXRConfig(size_px=32, temporal=True)
    for index in range(80):
        study = generate_one("cxr", index, config=config)
        stated, present = study.labels["chexpert"], study.labels["present"]
        assert set(stated) == set(cxr_text.OBSERVATIONS) and set(stated.values()) <= set(cxr_text.LABEL_VALUES)
        for observation in cxr_text.OBSERVATIONS:
            if observation == "Pneumonia":
                assert stated[observation] in ("uncertain", "not_mentioned")
                continue
            assert (stated[observation] == "positive") == present[observation], (observation, study.report)
        if stated["No Finding"] == "positive":
            assert re.search(r"no acute|normal chest", study.report, re.IGNORECASE)


def test_report_has_findings_and_impression_and_explicit_negatives():
    reports = [generate_one("cxr", i, config=CXRConfig(size_px=32)).report for i in range(40)]
    for report in reports:
        findings, impression = report.split("\n")
        assert findings.startswith("FINDINGS: ") and impression.startswith("IMPRESSION: ")
    assert any("No pneumothorax." in r or "There is no pneumothorax." in r for r in reports)
    assert len(set(reports)) == len(reports)


def test_structured_reports_follow_the_reading_order_and_free_ones_do_not():
    everything = dict.fromkeys(("cardiomegaly", "pleural_effusion", "consolidation", "ett"), 1.0)

    def order(style: str, index: int) -> list[int]:
        config = CXRConfig(size_px=32, normal_fraction=0.0, prevalence=everything, report_style=style)
        findings = generate_one("cxr", index, config=config).report.split("\n")[0].lower()
        # tube -> lung -> pleura -> heart, as a radiologist reads the film
        words = ("endotracheal", "lobe", "pleural effusion", "cardio")
        return [findings.index(w) for w in words]

    assert all(order("structured", i) == sorted(order("structured", i)) for i in range(10))
    assert any(order("free", i) != sorted(order("free", i)) for i in range(10))
    with pytest.raises(ValueError, match="report_style"):
        CXRConfig(report_style="narrative")


def test_questions_are_closed_yes_no_and_open_with_answers_from_the_truth():
    study = generate_one("cxr", 1, config=CXRConfig(size_px=32, normal_fraction=0.0,
                                                     prevalence={"pleural_effusion": 1.0, "ett": 1.0}))
    effusion = next(f for f in study.findings if f["name"] == "pleural_effusion")
    ett = next(f for f in study.findings if f["name"] == "ett")
    by_topic = {}
    for q in study.questions:
        by_topic.setdefault(q.topic, []).append(q)
        if q.answer_type == "closed":
            assert q.answer in ("yes", "no")
    answers = {q.answer for q in by_topic["pleural_effusion"]}
    assert {"yes", effusion["side"], effusion["size"]} <= answers
    assert f"{ett['tip_to_carina_cm']} cm" in {q.answer for q in by_topic["ett"]}


def test_prevalence_config_controls_findings_and_rejects_unknown_names():
    config = CXRConfig(size_px=32, normal_fraction=0.0, prevalence={"pneumothorax": 1.0})
    studies = [generate_one("cxr", i, config=config) for i in range(10)]
    for study in studies:
        present = {f["name"] for f in study.findings if f["present"]}
        assert present == {"pneumothorax"}
    with pytest.raises(ValueError, match="unknown findings"):
        CXRConfig(prevalence={"fracture": 0.5})
