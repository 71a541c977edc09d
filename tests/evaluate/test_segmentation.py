"""Dice / IoU per class from arrays and mask files, with the stated handling of empty masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvlm.evaluate.segmentation import (
    dice_iou,
    evaluate_segmentation_files,
    load_mask,
    segmentation_metrics,
)


def test_dice_and_iou_of_two_overlapping_squares():
    target = np.zeros((10, 10), dtype=np.uint8)
    prediction = np.zeros_like(target)
    target[2:6, 2:6] = 1  # 16 pixels
    prediction[4:8, 2:6] = 1  # 16 pixels, 8 shared
    dice, iou = dice_iou(prediction, target)
    assert dice == pytest.approx(2 * 8 / 32)
    assert iou == pytest.approx(8 / 24)


def test_both_empty_is_one_or_excluded():
    empty = np.zeros((4, 4), dtype=np.uint8)
    assert dice_iou(empty, empty) == (1.0, 1.0)
    assert all(np.isnan(dice_iou(empty, empty, empty="exclude")))
    one = empty.copy()
    one[0, 0] = 1
    assert dice_iou(one, empty) == (0.0, 0.0)  # only one side empty: a miss


def test_per_class_means_over_cases_and_mean_over_classes():
    target_a = np.array([[1, 1, 2, 2]])
    pred_a = np.array([[1, 1, 2, 0]])  # class 1 perfect, class 2 dice 2/3
    target_b = np.array([[1, 0, 0, 0]])
    pred_b = np.array([[1, 0, 0, 0]])  # class 1 perfect, class 2 absent on both sides
    m = segmentation_metrics([pred_a, pred_b], [target_a, target_b])
    assert m["dice_1"] == 1.0
    assert m["dice_2"] == pytest.approx((2 / 3 + 1.0) / 2)  # both-empty counts as 1.0
    assert m["dice_mean"] == pytest.approx((1.0 + (2 / 3 + 1.0) / 2) / 2)
    excluded = segmentation_metrics([pred_a, pred_b], [target_a, target_b], empty="exclude")
    assert excluded["dice_2"] == pytest.approx(2 / 3)
    assert excluded["n"] == 2


def test_shape_mismatch_names_the_case():
    with pytest.raises(ValueError, match="case scan7"):
        segmentation_metrics([np.zeros((2, 2))], [np.zeros((3, 3))], case_ids=["scan7"])


def test_folders_of_png_nifti_and_npy_masks(tmp_path):
    from PIL import Image

    from medvlm.imaging import write_nifti

    pred_dir, true_dir = tmp_path / "pred", tmp_path / "true"
    pred_dir.mkdir()
    true_dir.mkdir()
    target = np.zeros((8, 8), dtype=np.uint8)
    target[2:6, 2:6] = 255
    prediction = np.zeros_like(target)
    prediction[2:6, 2:4] = 255
    Image.fromarray(target).save(true_dir / "case1.png")
    Image.fromarray(prediction).save(pred_dir / "case1.png")
    np.save(true_dir / "case2.npy", (target > 0).astype(np.uint8))
    np.save(pred_dir / "case2.npy", (target > 0).astype(np.uint8))
    volume = np.zeros((3, 8, 8), dtype=np.int16)
    volume[1, 2:6, 2:6] = 1
    write_nifti(true_dir / "case3.nii.gz", volume, spacing_mm=(1.0, 1.0, 1.0))
    write_nifti(pred_dir / "case3.nii.gz", volume, spacing_mm=(1.0, 1.0, 1.0))
    assert load_mask(true_dir / "case3.nii.gz").sum() == 16

    out, csv_path = tmp_path / "seg.json", tmp_path / "seg.csv"
    m = evaluate_segmentation_files(pred_dir, true_dir, out, binary=True, csv_path=csv_path)
    assert m["n"] == 3
    assert m["dice_1"] == pytest.approx((2 * 8 / 24 + 1.0 + 1.0) / 3)
    assert json.loads(out.read_text())["dice_mean"] == pytest.approx(m["dice_mean"])
    assert csv_path.read_text().splitlines()[0] == "id,prediction,reference,dice_1,iou_1"

    (pred_dir / "case2.npy").unlink()
    with pytest.raises(ValueError, match="no predicted mask for \\['case2.npy'\\]"):
        evaluate_segmentation_files(pred_dir, true_dir)


def test_cli_seg_on_two_mask_files(tmp_path, capsys):
    from medvlm.cli import main

    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1:3, 1:3] = 2
    np.save(tmp_path / "p.npy", mask)
    np.save(tmp_path / "t.npy", mask)
    code = main(["evaluate", "seg", "--predictions", str(tmp_path / "p.npy"), "--targets", str(tmp_path / "t.npy"),
                 "--class-names", "lesion", "--classes", "2"])
    assert code == 0
    assert "dice_lesion" in capsys.readouterr().out


def test_undefined_scores_are_null_in_the_metrics_file(tmp_path):
    empty = np.zeros((3, 3), dtype=np.uint8)
    np.save(tmp_path / "p.npy", empty)
    np.save(tmp_path / "t.npy", empty)
    out = tmp_path / "seg.json"
    m = evaluate_segmentation_files(tmp_path / "p.npy", tmp_path / "t.npy", out, empty="exclude")
    assert np.isnan(m["dice_mean"])
    assert json.loads(out.read_text())["dice_mean"] is None  # strict JSON: null, not NaN
