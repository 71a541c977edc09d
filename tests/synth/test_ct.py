"""Synthetic CT: deterministic HU volumes in the imaging convention, visible lesions, text agreeing with truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvlm.synth.ct import ORGANS, CTConfig
from medvlm.synth.dataset import generate_one, write_dataset

ALL_LESIONS = CTConfig(prevalence={"lung_nodule": 1.0, "liver_lesion": 1.0, "kidney_cyst": 1.0})
NO_LESIONS = CTConfig(prevalence={"lung_nodule": 0.0, "liver_lesion": 0.0, "kidney_cyst": 0.0})


@pytest.fixture(scope="module")
def with_lesions():
    return [generate_one("ct", i, seed=3, config=ALL_LESIONS) for i in range(8)]


def test_same_seed_and_index_give_identical_volumes():
    first, again, other = generate_one("ct", 4, seed=1), generate_one("ct", 4, seed=1), generate_one("ct", 5, seed=1)
    assert np.array_equal(first.images[0].pixels, again.images[0].pixels)
    assert first.images[0].spacing_mm == again.images[0].spacing_mm
    assert all(np.array_equal(first.images[0].masks[k], again.images[0].masks[k]) for k in first.images[0].masks)
    assert (first.report, first.questions, first.findings) == (again.report, again.questions, again.findings)
    assert not np.array_equal(first.images[0].pixels, other.images[0].pixels)


def test_volume_shape_dtype_and_spacing():
    image = generate_one("ct", 0).images[0]
    assert image.kind == "ct" and image.pixels.dtype == np.int16 and image.pixels.shape == (32, 64, 64)
    slice_mm, row_mm, col_mm = image.spacing_mm
    assert 330 <= slice_mm * 32 <= 400 and 360 <= row_mm * 64 <= 500 and row_mm == col_mm
    bigger = generate_one("ct", 0, config=CTConfig(size_px=96, depth=40)).images[0]
    assert bigger.pixels.shape == (40, 96, 96)


def test_organs_have_realistic_hounsfield_units(with_lesions):
    for study in with_lesions[:4]:
        hu, masks = study.images[0].pixels.astype(np.float32), study.images[0].masks
        assert set(ORGANS) <= set(masks) and all(masks[name].any() for name in ORGANS)
        median = {name: np.median(hu[masks[name]]) for name in ORGANS}
        assert median["lung_right"] < -700 and median["lung_left"] < -700
        assert 45 <= median["liver"] <= 75
        assert 20 <= median["kidney_right"] <= 50 and 20 <= median["kidney_left"] <= 50
        assert median["spine"] > 400
        assert np.median(hu[~masks["body"]]) < -900  # air around the patient


def test_orientation_follows_the_imaging_convention():
    # (D, H, W): d inferior -> superior, h posterior -> anterior, w patient left -> right
    image = generate_one("ct", 1).images[0]
    centre = {name: np.argwhere(mask).mean(axis=0) for name, mask in image.masks.items()}
    width = image.pixels.shape[2]
    assert centre["lung_right"][2] > width / 2 > centre["lung_left"][2]
    assert centre["liver"][2] > width / 2 > centre["spleen"][2]
    assert centre["lung_right"][0] > centre["liver"][0] > centre["kidney_right"][0]  # lungs above liver above kidney
    assert centre["heart"][1] > centre["spine"][1]  # heart anterior to the spine


def test_every_lesion_is_masked_inside_its_organ_and_stands_out_from_noise(with_lesions):
    for study in with_lesions:
        hu, masks = study.images[0].pixels.astype(np.float32), study.images[0].masks
        noise_sd = study.labels["noise_sd_hu"]
        for finding in study.findings:
            assert finding["present"]
            lesion = masks[finding["mask"]]
            organ = masks[{"lung_nodule": f"lung_{finding.get('side')}", "liver_lesion": "liver",
                           "kidney_cyst": f"kidney_{finding.get('side')}"}[finding["name"]]]
            assert lesion.sum() > 0
            assert (lesion & organ).sum() >= 0.8 * lesion.sum(), (study.study_id, finding["name"])
            assert organ[tuple(finding["centre_voxel"])]
            # reference: the organ's core (eroded in-plane, so partial volume with fat does not count)
            core = organ.copy()
            for axis in (1, 2):
                for shift in (1, -1):
                    core &= np.roll(organ, shift, axis=axis)
            contrast = abs(hu[lesion].mean() - np.median(hu[core & ~lesion]))
            assert contrast > 1.5 * noise_sd, (study.study_id, finding["name"], contrast, noise_sd)


def test_report_mentions_every_present_finding_with_size_and_location(with_lesions):
    for study in with_lesions:
        findings, impression = study.report.split("\nIMPRESSION: ")
        by_name = {f["name"]: f for f in study.findings}
        for finding in study.findings:
            size = f"{round(finding['size_mm'])} mm"
            assert size in findings and size in impression
        assert by_name["lung_nodule"]["location"] in findings
        assert f"segment {by_name['liver_lesion']['segment']}" in findings
        assert f"{by_name['kidney_cyst']['side']} kidney" in findings or f"{by_name['kidney_cyst']['side']} renal" in findings
        assert by_name["lung_nodule"]["location"].split()[0] in {"right", "left"}
        if by_name["lung_nodule"]["side"] == "left":
            assert "middle" not in by_name["lung_nodule"]["location"]


def test_answers_match_the_truth(with_lesions):
    normal = [generate_one("ct", i, config=NO_LESIONS) for i in range(2)]
    for study in with_lesions + normal:
        present = study.labels["present"]
        by_name = {f["name"]: f for f in study.findings}
        for q in study.questions:
            if q.answer_type == "closed" and q.topic in present and " in the " not in q.text:
                assert q.answer == ("yes" if present[q.topic] else "no")
            if q.text.startswith("Is the nodule in the"):
                asked = q.text.split()[-2]
                assert q.answer == ("yes" if by_name["lung_nodule"]["side"] == asked else "no")
        open_answers = [q.answer for q in study.questions if q.answer_type == "open"]
        if present["lung_nodule"]:
            assert by_name["lung_nodule"]["location"] in open_answers
        if present["liver_lesion"]:
            assert f"segment {by_name['liver_lesion']['segment']}" in open_answers
        if present["kidney_cyst"]:
            assert by_name["kidney_cyst"]["side"] in open_answers
        if not any(present.values()):
            assert open_answers == ["none"]
            assert "No" in study.report.split("IMPRESSION: ")[1] or "Normal" in study.report


def test_normal_study_has_organ_masks_only():
    study = generate_one("ct", 0, config=NO_LESIONS)
    assert set(study.images[0].masks) == set(ORGANS)
    assert not any(f["present"] for f in study.findings)


def test_config_rejects_unknown_lesions_and_tiny_grids():
    with pytest.raises(ValueError, match="unknown lesions"):
        CTConfig(prevalence={"lung_mass": 0.5})
    assert CTConfig(prevalence={"lung_nodule": 0.5}).prevalence == {"lung_nodule": 0.5, "liver_lesion": 0.0,
                                                                    "kidney_cyst": 0.0}
    with pytest.raises(ValueError, match="depth"):
        CTConfig(size_px=64, depth=8)


def test_written_dataset_has_nifti_and_dicom_series(tmp_path):
    from medvlm.imaging import load_volume

    summary = write_dataset(tmp_path / "ct", "ct", 2, seed=4, test_fraction=0.5, progress=False,
                            config=CTConfig(size_px=32, depth=16))
    record = json.loads((summary.out / "labels.jsonl").read_text().splitlines()[0])
    volume_path = summary.out / record["images"][0]
    assert volume_path.name.endswith(".nii.gz")
    study = generate_one("ct", 0, seed=4, config=CTConfig(size_px=32, depth=16))
    loaded = load_volume(volume_path)
    assert np.array_equal(loaded.voxels, study.images[0].pixels.astype(np.float32))
    dicom = load_volume(summary.out / record["images"][0].replace(".nii.gz", "_dicom"))
    assert np.array_equal(dicom.voxels, loaded.voxels)


def test_nodule_lobes_are_anatomically_placed():
    config = CTConfig(size_px=48, depth=32, prevalence={"lung_nodule": 1.0})
    height: dict[str, list[float]] = {"upper": [], "middle": [], "lower": []}
    for i in range(24):
        nodule = generate_one("ct", i, seed=8, config=config).findings[0]
        height[nodule["lobe"]].append(nodule["centre_voxel"][0])  # d grows towards the head
        assert (nodule["centre_voxel"][2] >= 24) == (nodule["side"] == "right")  # w grows towards patient right
    assert height["upper"] and height["lower"]
    assert np.mean(height["upper"]) > np.mean(height["lower"])
