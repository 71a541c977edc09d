"""What every loader returns besides pixels: the error type, 2D image metadata and the pixel limit."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

# Largest image (rows * columns * frames) a loader decodes unless told otherwise: PIL's own default
# MAX_IMAGE_PIXELS (about 89.5 million, e.g. 9459 x 9459). A crafted file that claims more is refused before
# any pixel is decoded (a "decompression bomb").
DEFAULT_MAX_PIXELS = 89_478_485


class MedicalImageError(ValueError):
    """A file medvlm cannot read as an image or volume; the message names the file and what to do."""


def file_error(path: str | os.PathLike, problem: str) -> MedicalImageError:
    """Build a MedicalImageError whose message starts with the file."""
    return MedicalImageError(f"{os.fspath(path)}: {problem}")


@dataclass(frozen=True)
class ImageMeta:
    """Metadata of a loaded 2D image (or DICOM frame stack).

    `photometric` describes the returned pixels (MONOCHROME1 input is returned inverted, as MONOCHROME2);
    `source_photometric` is what the file declared. `spacing_mm` is (row, column) spacing when the file says so.
    `bits_stored` and `source_dtype` describe the values stored in the file, before any rescale or window.
    """

    source_path: str
    format: str  # "png", "jpeg", "tiff", "bmp", "dicom"
    photometric: str  # "MONOCHROME2" or "RGB" for the returned pixels
    source_photometric: str
    bits_stored: int
    source_dtype: str
    modality: str | None = None
    spacing_mm: tuple[float, float] | None = None
    # DICOM only: the transfer syntax name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    transfer_syntax: str | None = None
    number_of_frames: int = 1
    # DICOM only: (slope, intercept) of the modality LUT that was applied
    rescale: tuple[float, float] | None = None
    # DICOM only: the display window applied ("VOI LUT", "window 40/400", "min-max"), None when not applied
    voi: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
