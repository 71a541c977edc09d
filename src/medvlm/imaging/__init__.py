"""Medical images and volumes: load (PNG/JPEG/TIFF/BMP, DICOM, NIfTI, DICOM series, .npy), window, write, inspect.

Every loader returns a numpy array plus metadata (source path, modality, photometric interpretation, bits, dtype,
spacing, orientation) and raises `MedicalImageError` (a ValueError) naming the file when it cannot.
Writers are atomic and deterministic (same inputs -> byte-identical files).
"""

from medvlm.imaging.meta import DEFAULT_MAX_PIXELS, ImageMeta, MedicalImageError
from medvlm.imaging.write import (
    SOP_CLASS_BY_MODALITY,
    deterministic_uid,
    ras_affine,
    write_dicom_image,
    write_dicom_series,
    write_nifti,
    write_png,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SOP_CLASS_BY_MODALITY",
    "ImageMeta",
    "MedicalImageError",
    "deterministic_uid",
    "ras_affine",
    "write_dicom_image",
    "write_dicom_series",
    "write_nifti",
    "write_png",
]
