"""`load_image`: one 2D image (PNG, JPEG, TIFF, BMP or DICOM) as a numpy array plus `ImageMeta`.

The format is recognised from the file's content (DICOM preamble, else what Pillow detects), never from its name.
Non-DICOM pixels keep the file's values: 8-bit gray -> uint8 (H,W), 16-bit gray -> uint16 (H,W) (full range kept),
colour -> uint8 (H,W,3) RGB (alpha dropped, palette expanded, EXIF rotation applied). DICOM follows
`medvlm.imaging.dicom` (display-oriented by default: float32 in [0, 1], MONOCHROME1 inverted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medvlm.imaging.dicom import is_dicom_file, load_dicom_image
from medvlm.imaging.meta import DEFAULT_MAX_PIXELS, ImageMeta, MedicalImageError, file_error

# Pillow format -> our format name. Other formats Pillow can open are refused, to keep one tested set.
PIL_FORMATS: dict[str, str] = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff", "BMP": "bmp"}
# Pillow mode -> (numpy dtype, bits) for modes returned as they are.
_GRAY_MODES: dict[str, tuple[type, int]] = {
    "L": (np.uint8, 8),
    "I;16": (np.uint16, 16),
    "I;16L": (np.uint16, 16),
    "I;16B": (np.uint16, 16),
    "I;16N": (np.uint16, 16),
    "I": (np.int32, 32),
    "F": (np.float32, 32),
}


@dataclass(frozen=True)
class Image2D:
    """pixels: (H,W) gray or (H,W,3) RGB ((N,H,W[,3]) for DICOM frames="all"); meta: where it came from."""

    pixels: np.ndarray
    meta: ImageMeta


def load_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    apply_voi: bool = True,
    frames: str = "first",
) -> Image2D:
    """Load a 2D image. Raises MedicalImageError naming the file when it is missing, unsupported, too large
    (more than `max_pixels` pixels: decompression-bomb guard), truncated or corrupt.

    apply_voi and frames only matter for DICOM (see `medvlm.imaging.dicom.load_dicom_image`): apply_voi=True gives
    display values in [0, 1]; False keeps modality values (e.g. HU). frames="all" returns every frame.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such file" if not path.exists() else "not a file (pass one image file)")
    if is_dicom_file(path):
        pixels, meta = load_dicom_image(path, apply_voi=apply_voi, frames=frames, max_pixels=max_pixels)
        return Image2D(pixels, meta)
    return _load_with_pil(path, max_pixels)


def is_pil_image(path: str | os.PathLike) -> bool:
    """True when Pillow recognises the file as one of PIL_FORMATS (reads the header only)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format in PIL_FORMATS
    except Exception:
        return False


def _load_with_pil(path: Path, max_pixels: int) -> Image2D:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(path)  # reads the header only
    except UnidentifiedImageError as exc:
        raise file_error(
            path,
            "not a recognised image (supported: PNG, JPEG, TIFF, BMP, DICOM)",
        ) from exc
    except Image.DecompressionBombError as exc:
        raise file_error(path, f"refused by Pillow's decompression-bomb check ({exc})") from exc
    except OSError as exc:
        raise file_error(path, f"cannot open the image ({exc})") from exc
    with image:
        if image.format not in PIL_FORMATS:
            raise file_error(
                path, f"{image.format} images are not supported; convert to PNG (lossless) first"
            )
        width, height = image.size
        if width * height > max_pixels:
            raise file_error(
                path,
                f"{width} x {height} = {width * height} pixels exceeds the limit of {max_pixels} "
                "(decompression-bomb guard); pass a larger max_pixels if you trust this file",
            )
        source_mode = image.mode
        extra: dict[str, object] = {"pil_mode": source_mode}
        try:
            image.load()
            oriented = image
            exif_orientation = image.getexif().get(0x0112, 1)  # photos taken rotated carry the turn here
            if exif_orientation not in (0, 1):
                oriented = ImageOps.exif_transpose(image)
                extra["exif_orientation_applied"] = int(exif_orientation)
            pixels, bits = _pixels_of(oriented, extra)
        except Exception as exc:  # truncated streams raise OSError, broken headers SyntaxError/ValueError/...
            raise file_error(
                path,
                f"cannot decode the {image.format} data ({type(exc).__name__}: {exc}); the file may be truncated or corrupt",
            ) from exc
        meta = ImageMeta(
            source_path=str(path),
            format=PIL_FORMATS[image.format],
            photometric="RGB" if pixels.ndim == 3 else "MONOCHROME2",
            source_photometric="RGB" if pixels.ndim == 3 else "MONOCHROME2",
            bits_stored=bits,
            source_dtype=str(pixels.dtype),
            number_of_frames=int(getattr(image, "n_frames", 1)),
            extra=extra,
        )
    return Image2D(pixels, meta)


def _pixels_of(image, extra: dict[str, object]) -> tuple[np.ndarray, int]:
    mode = image.mode
    if mode in _GRAY_MODES:
        dtype, bits = _GRAY_MODES[mode]
        return np.asarray(image, dtype=dtype), bits
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8), 1
    if mode == "LA":
        extra["alpha_dropped"] = True
        return np.asarray(image.convert("L"), dtype=np.uint8), 8
    if mode in ("RGBA", "PA") or (mode == "P" and "transparency" in image.info):
        extra["alpha_dropped"] = True
    if mode in ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8), 8
    raise MedicalImageError(f"Pillow mode {mode!r} is not supported; convert to 8/16-bit gray or RGB")
