"""Segmentation overlap: Dice and IoU per class and their means, from label masks (arrays or files).

For one case and one class c, with P = predicted voxels of c and T = true voxels of c:
    Dice = 2 |P & T| / (|P| + |T|)        IoU (Jaccard) = |P & T| / |P | T|
Empty masks: when P and T are both empty the overlap is perfect by convention, Dice = IoU = 1.0
(`empty="one"`, the default); `empty="exclude"` leaves such (case, class) pairs out of every mean instead.
Only one of them empty gives 0.

Over cases: the per-class score is the mean over cases (`dice_<class>`, `iou_<class>`); `dice_mean` /
`iou_mean` are the unweighted means of those over classes. Classes are the labels found in the masks
(background 0 left out unless include_background=True), or the ones given; `n` counts the cases.
Masks hold integer labels (0 = background); `binary=True` reads any non-zero value as class 1 (e.g. 0/255
PNG masks).

Files: PNG / TIFF / BMP / DICOM through `medvlm.imaging.load_image`, NIfTI through `load_volume` (both masks
reoriented the same way, to RAS), `.npy` with numpy (any number of dimensions; told apart by content).
A pair of folders is matched by file name; a file missing on either side is an error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMPTY_POLICIES = ("one", "exclude")
_NUMPY_MAGIC = b"\x93NUMPY"


def dice_iou(prediction: np.ndarray, target: np.ndarray, label: int = 1, empty: str = "one") -> tuple[float, float]:
    """(Dice, IoU) of one class between two label masks of the same shape; NaN for both-empty with "exclude"."""
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    p = prediction == label
    t = target == label
    inter = int(np.count_nonzero(p & t))
    size_p, size_t = int(np.count_nonzero(p)), int(np.count_nonzero(t))
    if size_p == 0 and size_t == 0:
        return (1.0, 1.0) if empty == "one" else (float("nan"), float("nan"))
    return 2.0 * inter / (size_p + size_t), inter / (size_p + size_t - inter)


@dataclass
class SegmentationStats:
    """dice, iou: (n_cases, n_classes), NaN where a both-empty pair is excluded."""

    case_ids: list[str]
    classes: list[int]
    class_names: list[str]
    dice: np.ndarray
    iou: np.ndarray

    def __len__(self) -> int:
        return len(self.case_ids)

    def per_sample(self) -> list[dict[str, float]]:
        return [{**{f"dice_{name}": float(self.dice[i, k]) for k, name in enumerate(self.class_names)},
                 **{f"iou_{name}": float(self.iou[i, k]) for k, name in enumerate(self.class_names)}}
                for i in range(len(self))]

    def score(self) -> np.ndarray:
        """Mean Dice over the classes of each case (NaN-free unless every class was excluded)."""
        with np.errstate(all="ignore"):
            return np.array([np.nanmean(row) if not np.all(np.isnan(row)) else np.nan for row in self.dice])

    def aggregate(self, indices: Sequence[int] | np.ndarray | None = None) -> dict:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        out: dict = {}
        class_dice, class_iou = [], []
        for k, name in enumerate(self.class_names):
            d, j = self.dice[idx, k], self.iou[idx, k]
            keep = ~np.isnan(d)
            dice_k = float(d[keep].mean()) if keep.any() else float("nan")
            iou_k = float(j[keep].mean()) if keep.any() else float("nan")
            out[f"dice_{name}"], out[f"iou_{name}"] = dice_k, iou_k
            class_dice.append(dice_k)
            class_iou.append(iou_k)
        defined = [k for k, v in enumerate(class_dice) if not np.isnan(v)]
        out["dice_mean"] = float(np.mean([class_dice[k] for k in defined])) if defined else float("nan")
        out["iou_mean"] = float(np.mean([class_iou[k] for k in defined])) if defined else float("nan")
        out["n"] = int(len(idx))
        return out


def segmentation_statistics(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                            classes: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                            include_background: bool = False, empty: str = "one", binary: bool = False,
                            case_ids: Sequence[str] | None = None) -> SegmentationStats:
    """Dice and IoU of every (case, class); see the module docstring. Arrays are integer label masks."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predicted masks but {len(targets)} target masks")
    if not len(targets):
        raise ValueError("no masks to score")
    ids = [str(c) for c in case_ids] if case_ids is not None else [str(i) for i in range(len(targets))]
    preds, truths = [], []
    for cid, p, t in zip(ids, predictions, targets, strict=True):
        p, t = np.asarray(p), np.asarray(t)
        if p.shape != t.shape:
            raise ValueError(f"case {cid}: predicted mask shape {p.shape} differs from target shape {t.shape}")
        if binary:
            p, t = (p != 0).astype(np.uint8), (t != 0).astype(np.uint8)
        preds.append(p)
        truths.append(t)
    if classes is None:
        found = set()
        for p, t in zip(preds, truths, strict=True):
            found |= set(np.unique(p).tolist()) | set(np.unique(t).tolist())
        classes = sorted(int(c) for c in found if include_background or c != 0)
        if not classes:
            classes = [1]  # all-background masks: score the foreground class, which is empty everywhere
    classes = [int(c) for c in classes]
    if class_names is None:
        class_names = [str(c) for c in classes]
    if len(class_names) != len(classes):
        raise ValueError(f"{len(class_names)} class names for {len(classes)} classes")
    dice = np.zeros((len(ids), len(classes)))
    iou = np.zeros_like(dice)
    for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
        for k, c in enumerate(classes):
            dice[i, k], iou[i, k] = dice_iou(p, t, c, empty)
    return SegmentationStats(ids, classes, list(class_names), dice, iou)


def segmentation_metrics(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], **options) -> dict:
    """Dice / IoU per class and means over cases; options as `segmentation_statistics`."""
    return segmentation_statistics(predictions, targets, **options).aggregate()


# ----------------------------------------------------------------------------------------------------------
# files


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """An integer label mask from PNG / TIFF / BMP / DICOM, NIfTI or .npy (format from the content)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: mask file not found")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == _NUMPY_MAGIC:
        array = np.load(path, allow_pickle=False)
    else:
        from medvlm.imaging import load_image, load_volume
        from medvlm.imaging.dicom import is_dicom_file
        from medvlm.imaging.image2d import is_pil_image

        if is_pil_image(path):
            array = load_image(path).pixels
            if array.ndim == 3:  # RGB: a mask drawn in one gray level per label is fine
                if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
                    raise ValueError(f"{path}: colour mask; save masks as one-channel images of integer labels")
                array = array[..., 0]
        elif is_dicom_file(path):
            array = load_image(path, apply_voi=False).pixels
        else:
            array = load_volume(path).voxels
    array = np.asarray(array)
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.allclose(array, rounded, atol=1e-3):
            raise ValueError(f"{path}: mask holds non-integer values (e.g. {array.flat[np.argmax(array != rounded)]}); "
                             "a mask must hold integer labels (threshold probability maps first)")
        return rounded.astype(np.int64)
    return array.astype(np.int64)


def mask_pairs(predictions: str | os.PathLike, targets: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(case id, predicted mask path, target mask path): two files, or two folders matched by file name."""
    pred_path, target_path = Path(predictions), Path(targets)
    if pred_path.is_dir() != target_path.is_dir():
        raise ValueError(f"{pred_path} and {target_path}: give two mask files or two folders of masks")
    if not pred_path.is_dir():
        return [(pred_path.name, pred_path, target_path)]

    def files(folder: Path) -> dict[str, Path]:
        return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}

    pred_files, target_files = files(pred_path), files(target_path)
    only_pred = sorted(set(pred_files) - set(target_files))
    only_target = sorted(set(target_files) - set(pred_files))
    if only_target:
        raise ValueError(f"{pred_path}: no predicted mask for {only_target[:10]} (in {target_path}); "
                         "predict every case, named as its target mask")
    if only_pred:
        raise ValueError(f"{target_path}: no target mask for {only_pred[:10]} (in {pred_path})")
    if not target_files:
        raise ValueError(f"{target_path}: no mask files")
    return [(name, pred_files[name], target_files[name]) for name in sorted(target_files)]


def evaluate_segmentation_files(predictions: str | os.PathLike, targets: str | os.PathLike,
                                out_path: str | os.PathLike | None = None, *, classes: Sequence[int] | None = None,
                                class_names: Sequence[str] | None = None, include_background: bool = False,
                                empty: str = "one", binary: bool = False, bootstrap: int = 0, seed: int = 0,
                                csv_path: str | os.PathLike | None = None,
                                html_path: str | os.PathLike | None = None) -> dict:
    """Dice / IoU of predicted masks against targets (two files or two folders); writes metrics JSON, CSV, HTML."""
    from medvlm.evaluate.bootstrap import bootstrap_ci
    from medvlm.evaluate.report import Pair, write_outputs

    pairs = mask_pairs(predictions, targets)
    preds, truths = [], []
    for _, p, t in pairs:
        preds.append(load_mask(p))
        truths.append(load_mask(t))
    stats = segmentation_statistics(preds, truths, classes=classes, class_names=class_names,
                                    include_background=include_background, empty=empty, binary=binary,
                                    case_ids=[c for c, _, _ in pairs])
    metrics = stats.aggregate()
    if bootstrap:
        metrics["ci95"] = bootstrap_ci([stats], len(stats), replicates=bootstrap, seed=seed)
    rows = [Pair(cid, str(p), str(t)) for cid, p, t in pairs]
    write_outputs(metrics, rows, stats.per_sample(), stats.score(), out_path=out_path, csv_path=csv_path,
                  html_path=html_path, title=f"Segmentation: {os.fspath(predictions)}",
                  chart=("Dice per class", {n: metrics[f"dice_{n}"] for n in stats.class_names}),
                  score_name="mean Dice over classes")
    return metrics
