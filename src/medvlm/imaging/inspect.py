"""`inspect_file`: what medvlm sees in one file or folder, as a plain dict (JSON-ready) and as a table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medvlm.imaging.dicom import is_dicom_file, load_dicom_image, read_dataset
from medvlm.imaging.image2d import is_pil_image, load_image
from medvlm.imaging.meta import file_error
from medvlm.imaging.volume import NUMPY_MAGIC, load_volume


def inspect_file(path: str | os.PathLike) -> dict[str, Any]:
    """Describe an image, DICOM file, volume file or DICOM series folder.

    Keys: path, kind ("image2d", "dicom", "volume", "series"), format, shape, dtype (as stored in the file),
    value_range ([min, max] of the values a loader returns without display windowing: HU for CT; MONOCHROME1
    inverted), spacing_mm, modality, photometric ("MONOCHROME1 -> MONOCHROME2" when the loader inverts it), transfer_syntax (DICOM), frames or slices, plus kind-specific details.
    Raises MedicalImageError naming the file when it cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        return _describe_volume(path, "series")
    if not path.is_file():
        raise file_error(path, "no such file or folder")
    if is_dicom_file(path):
        return _describe_dicom(path)
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == NUMPY_MAGIC:
        return _describe_volume(path, "volume")
    if is_pil_image(path):
        return _describe_image(path)
    return _describe_volume(path, "volume")


def _range(values: np.ndarray) -> list[float]:
    return [_number(values.min()), _number(values.max())] if values.size else []


def _number(value: Any) -> float | int:
    value = value.item() if hasattr(value, "item") else value
    return int(value) if float(value).is_integer() else round(float(value), 6)


def _describe_image(path: Path) -> dict[str, Any]:
    image = load_image(path)
    meta = image.meta
    return {
        "path": str(path),
        "kind": "image2d",
        "format": meta.format,
        "shape": list(image.pixels.shape),
        "dtype": str(image.pixels.dtype),
        "value_range": _range(image.pixels),
        "spacing_mm": None,
        "modality": None,
        "photometric": meta.photometric,
        "bits": meta.bits_stored,
        "frames": meta.number_of_frames,
    }


def _describe_dicom(path: Path) -> dict[str, Any]:
    header = read_dataset(path, stop_before_pixels=True)
    pixels, meta = load_dicom_image(path, apply_voi=False, frames="all")
    sop_class = header.get("SOPClassUID")
    window = None
    if header.get("WindowCenter") is not None and header.get("WindowWidth") is not None:
        center, width = header.WindowCenter, header.WindowWidth
        window = [_number(float(v)) for v in ((center[0], width[0]) if _multi(center) else (center, width))]
    return {
        "path": str(path),
        "kind": "dicom",
        "format": "dicom",
        "shape": list(pixels.shape),  # (frames, rows, columns[, 3])
        "dtype": meta.source_dtype,
        "value_range": _range(pixels),
        "spacing_mm": list(meta.spacing_mm) if meta.spacing_mm else None,
        "modality": meta.modality,
        "photometric": meta.source_photometric
        if meta.source_photometric == meta.photometric
        else f"{meta.source_photometric} -> {meta.photometric}",
        "transfer_syntax": meta.transfer_syntax,
        "frames": meta.number_of_frames,
        "bits": meta.bits_stored,
        "rescale": list(meta.rescale) if meta.rescale else None,
        "window": window,
        "sop_class": getattr(sop_class, "name", None) if sop_class else None,
    }


def _multi(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _describe_volume(path: Path, kind: str) -> dict[str, Any]:
    volume_index = None
    if kind == "volume" and not path.is_dir():
        volume_index = _first_volume_if_4d(path)
    volume = load_volume(path, volume_index=volume_index)
    meta = volume.meta
    info = {
        "path": str(path),
        "kind": kind,
        "format": meta.format,
        "shape": list(volume.voxels.shape),  # (D,H,W) after reorientation to RAS
        "dtype": meta.source_dtype,
        "value_range": _range(volume.voxels),
        "spacing_mm": [_number(s) for s in volume.spacing_mm],
        "modality": meta.modality,
        "photometric": None,
        "orientation": f"{meta.source_orientation or 'unknown'} -> {volume.orientation}",
        "slices": meta.number_of_slices,
        "source_shape": list(meta.source_shape),
    }
    if kind == "series":
        info["transfer_syntax"] = meta.transfer_syntax
        info["series_uid"] = meta.series_uid
        if meta.extra.get("ignored_files"):
            info["ignored_files"] = meta.extra["ignored_files"]
    if volume_index is not None:
        info["volumes"] = meta.source_shape[3]
        info["value_range_of"] = "volume 0"
    return info


def _first_volume_if_4d(path: Path) -> int | None:
    """0 for a 4D NIfTI (inspect describes its first volume), else None."""
    with open(path, "rb") as f:
        if f.read(6) == NUMPY_MAGIC:
            return None
    try:
        import nibabel as nib

        return 0 if len(nib.load(path).shape) == 4 else None
    except Exception:
        return None  # load_volume reports the problem


def format_table(info: dict[str, Any]) -> str:
    """Two aligned columns, one line per key; lists joined with 'x' for shapes and ', ' otherwise."""
    width = max(len(key) for key in info)
    lines = []
    for key, value in info.items():
        if value is None:
            value = "-"
        elif key in ("shape", "source_shape"):
            value = " x ".join(str(v) for v in value)
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines)
