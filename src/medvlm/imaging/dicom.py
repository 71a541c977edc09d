"""DICOM single files: read the dataset, decode pixels (any installed codec), apply modality LUT, VOI and MONOCHROME1.

Pixel pipeline of `load_dicom_image`, in DICOM's own order:
1. decode the stored values (compressed transfer syntaxes need a codec plugin: pylibjpeg, pyjpegls or gdcm,
   installed by `pip install 'medvlm[dicom-codecs]'`); colour (YBR, palette) becomes RGB (uint8 for 8-bit data);
2. modality LUT: RescaleSlope / RescaleIntercept (e.g. CT stored values -> HU); result float32 when the rescale is
   not the identity, else the stored integer dtype;
3. with `apply_voi=True` (the default, for display): the VOI LUT sequence if present, else the first
   WindowCenter / WindowWidth (LINEAR or SIGMOID function), else the image's own min..max; result float32 in [0, 1];
4. MONOCHROME1 (bright = low value) is inverted, so every grayscale result is MONOCHROME2 (bright = high value):
   1 - x after VOI, or (lowest + highest possible value) - x without it.
Colour images skip steps 2-4.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medvlm.imaging.meta import DEFAULT_MAX_PIXELS, ImageMeta, file_error
from medvlm.imaging.window import window

CODECS_HINT = "install the DICOM codecs: pip install 'medvlm[dicom-codecs]'"
FRAMES_CHOICES = ("first", "all")


def _dicom_head(path: str | os.PathLike) -> str | None:
    """ "part10" (preamble + "DICM"), "bare" (no preamble: starts with a group 0002 or 0008 tag) or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return None
    if len(head) == 132 and head[128:132] == b"DICM":
        return "part10"
    # Old (ACR-NEMA style) files start straight with their first element: (0008,xxxx) little or big endian.
    if len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00"):
        return "bare"
    return None


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for DICOM Part 10 files ("DICM" at byte 128) and for preamble-less files starting with a group 0008 tag."""
    return _dicom_head(path) is not None


def read_dataset(path: str | os.PathLike, *, stop_before_pixels: bool = False):
    """pydicom.dcmread with errors that name the file; files without file meta get their transfer syntax from
    the encoding pydicom detected, so their pixels decode too."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=_dicom_head(path) == "bare")
    except InvalidDicomError as exc:
        raise file_error(path, f"not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise file_error(
            path,
            f"cannot read the DICOM header ({type(exc).__name__}: {exc}); the file may be truncated or corrupt",
        ) from exc
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        implicit_vr, little_endian = ds.original_encoding
        if implicit_vr is not None:
            if not hasattr(ds, "file_meta") or ds.file_meta is None:
                ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian
                if implicit_vr
                else ExplicitVRLittleEndian
                if little_endian
                else ExplicitVRBigEndian
            )
    return ds


def transfer_syntax_name(ds) -> str | None:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return None if uid is None else str(uid.name)


def missing_decoder(ds) -> str | None:
    """None when the pixel data can be decoded here; else what is missing (names the transfer syntax)."""
    from pydicom.pixels import get_decoder

    uid = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if uid is None or not uid.is_compressed:
        return None
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"pixel data compressed as {uid.name} ({uid}), which no pydicom decoder supports"
    if decoder.is_available:
        return None
    missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
    return f"pixel data compressed as {uid.name} and no decoder plugin can read it ({missing})"


def check_pixel_budget(path: str | os.PathLike, ds, max_pixels: int) -> int:
    """Refuse (before decoding) a file whose rows * columns * frames exceeds max_pixels; returns the frame count."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise file_error(
            path,
            f"DICOM file has no pixel data (SOP class {_sop_class_name(ds)}); it is not an image, or the file is truncated",
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise file_error(
            path, f"DICOM image attributes Rows/Columns/NumberOfFrames are missing or invalid ({exc})"
        ) from exc
    if rows * cols * frames > max_pixels:
        raise file_error(
            path,
            f"{rows} x {cols} x {frames} frames = {rows * cols * frames} pixels exceeds the limit of {max_pixels} "
            "(decompression-bomb guard); pass a larger max_pixels if you trust this file",
        )
    return frames


def _sop_class_name(ds) -> str:
    uid = ds.get("SOPClassUID")
    return "unknown" if uid is None else str(uid.name)  # the UID itself when pydicom has no name for it


def decode_pixels(path: str | os.PathLike, ds, index: int | None) -> np.ndarray:
    """Stored values of frame `index` (None: all frames); colour as RGB. Errors name the file."""
    from pydicom.pixels import apply_color_lut, pixel_array

    problem = missing_decoder(ds)
    if problem:
        raise file_error(path, f"{problem}; {CODECS_HINT}")
    try:
        arr = pixel_array(ds, index=index)
        if ds.PhotometricInterpretation == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
            if arr.dtype != np.uint8:  # 16-bit palette entries -> 8-bit RGB
                arr = (arr >> 8).astype(np.uint8)
    except Exception as exc:
        raise file_error(
            path,
            f"cannot decode the DICOM pixel data ({type(exc).__name__}: {exc}); the file may be truncated or corrupt",
        ) from exc
    return arr


def functional_group(ds, sequence: str, frame: int = 0):
    """The first item of an enhanced multi-frame functional group (per-frame first, then shared), or None."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and len(items) > index and items[index].get(sequence):
            return items[index].get(sequence)[0]
    return None


def rescale_of(ds, frame: int = 0) -> tuple[float, float] | None:
    """(slope, intercept) of the modality LUT (top level, else the enhanced functional groups), or None."""
    source = ds if ("RescaleSlope" in ds or "RescaleIntercept" in ds) else None
    source = source or functional_group(ds, "PixelValueTransformationSequence", frame)
    if source is None or ("RescaleSlope" not in source and "RescaleIntercept" not in source):
        return None
    return float(source.get("RescaleSlope", 1.0) or 1.0), float(source.get("RescaleIntercept", 0.0) or 0.0)


def apply_rescale(arr: np.ndarray, rescale: tuple[float, float] | None) -> np.ndarray:
    if rescale is None or rescale == (1.0, 0.0):
        return arr
    slope, intercept = rescale
    return arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _modality_values(
    arr: np.ndarray, ds, frame_count: int
) -> tuple[np.ndarray, tuple[float, float] | None, tuple[float, float]]:
    """Apply the modality LUT (step 2); returns values, the (first frame's) rescale and the output value range."""
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return apply_modality_lut(arr, ds), None, (0.0, float(2**bits - 1))
    rescales = [rescale_of(ds, frame) for frame in range(frame_count)]
    if len(set(rescales)) > 1:  # enhanced multi-frame files may rescale each frame differently
        values = np.stack([apply_rescale(frame, r) for frame, r in zip(arr, rescales, strict=True)])
        return values.astype(np.float32), rescales[0], _stored_range(ds, rescales[0])
    return apply_rescale(arr, rescales[0]), rescales[0], _stored_range(ds, rescales[0])


def _stored_range(ds, rescale: tuple[float, float] | None) -> tuple[float, float]:
    """Lowest and highest value the stored bits can hold, after the modality LUT."""
    bits = int(ds.BitsStored)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if int(ds.PixelRepresentation) else (0, 2**bits - 1)
    if rescale is not None:
        slope, intercept = rescale
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return float(low), float(high)


def _apply_display_voi(arr: np.ndarray, ds, frame_index: int) -> tuple[np.ndarray, str]:
    """Display values in [0, 1] (float32) and how they were chosen."""
    from pydicom.pixels import apply_voi

    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        out = apply_voi(arr, ds, index=0).astype(np.float32) / np.float32(2**bits - 1)
        return np.clip(out, 0.0, 1.0), "VOI LUT"
    source = ds if "WindowCenter" in ds else functional_group(ds, "FrameVOILUTSequence", frame_index) or ds
    centers, widths = source.get("WindowCenter"), source.get("WindowWidth")
    if centers is not None and widths is not None:
        center = float(centers[0] if _is_multi(centers) else centers)
        width = float(widths[0] if _is_multi(widths) else widths)
        if width > 0:
            if str(source.get("VOILUTFunction", "LINEAR")).upper() == "SIGMOID":
                out = 1.0 / (1.0 + np.exp(-4.0 * (arr.astype(np.float32) - center) / width))
                return out.astype(np.float32), f"sigmoid window {center:g}/{width:g}"
            return window(arr, center, width), f"window {center:g}/{width:g}"
    low, high = float(arr.min()), float(arr.max())
    out = (arr.astype(np.float32) - np.float32(low)) / np.float32(high - low if high > low else 1.0)
    return out, "min-max"


def _is_multi(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def load_dicom_image(
    path: str | os.PathLike,
    *,
    apply_voi: bool = True,
    frames: str = "first",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, ImageMeta]:
    """Pixels and metadata of a DICOM image; see the module docstring for the pixel pipeline.

    frames="first": (H,W) or (H,W,3); frames="all": (N,H,W) or (N,H,W,3) for every frame.
    The pixel limit counts rows * columns * frames of the whole file.
    """
    if frames not in FRAMES_CHOICES:
        raise ValueError(f"frames must be one of {FRAMES_CHOICES}; got {frames!r}")
    ds = read_dataset(path)
    n_frames = check_pixel_budget(path, ds, max_pixels)
    source_photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    arr = decode_pixels(path, ds, index=0 if frames == "first" else None)
    source_dtype = str(arr.dtype)
    color = int(ds.get("SamplesPerPixel", 1)) == 3 or source_photometric == "PALETTE COLOR"
    rescale = voi = None
    extra: dict[str, Any] = {}
    if not color:
        arr, rescale, (low, high) = _modality_values(arr, ds, n_frames if frames == "all" else 1)
        if "ModalityLUTSequence" in ds:
            extra["modality_lut"] = "ModalityLUTSequence"
        if apply_voi:
            arr, voi = _apply_display_voi(arr, ds, 0)
            if source_photometric == "MONOCHROME1":
                arr = 1.0 - arr
        elif source_photometric == "MONOCHROME1":
            arr = (low + high - arr.astype(np.float64)).astype(arr.dtype)
    meta = ImageMeta(
        source_path=str(Path(path)),
        format="dicom",
        photometric="RGB" if color else "MONOCHROME2",
        source_photometric=source_photometric,
        bits_stored=int(ds.get("BitsStored", 8 * arr.dtype.itemsize)),
        source_dtype=source_dtype,
        modality=str(ds.Modality) if ds.get("Modality") else None,
        spacing_mm=pixel_spacing_mm(ds),
        transfer_syntax=transfer_syntax_name(ds),
        number_of_frames=n_frames,
        rescale=rescale,
        voi=voi,
        extra=extra
        | {
            key: str(ds.get(key))
            for key in (
                "SOPClassUID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "ViewPosition",
                "BodyPartExamined",
            )
            if ds.get(key)
        },
    )
    return np.ascontiguousarray(arr), meta


def pixel_spacing_mm(ds) -> tuple[float, float] | None:
    """(row, column) spacing from PixelSpacing (top level or functional groups), else ImagerPixelSpacing;
    None when absent or zero."""
    measures = functional_group(ds, "PixelMeasuresSequence")
    for value in (
        ds.get("PixelSpacing"),
        measures.get("PixelSpacing") if measures else None,
        ds.get("ImagerPixelSpacing"),
    ):
        if value is not None and len(value) == 2:
            spacing = (float(value[0]), float(value[1]))
            if spacing[0] > 0 and spacing[1] > 0:
                return spacing
    return None
