"""Medical images and volumes: load (PNG/JPEG/TIFF/BMP, DICOM, NIfTI, DICOM series, .npy), window, write, inspect.

Every loader returns a numpy array plus metadata (source path, modality, photometric interpretation, bits, dtype,
spacing, orientation) and raises `MedicalImageError` (a ValueError) naming the file when it cannot.
- `load_image(path)` -> Image2D(pixels (H,W) or (H,W,3), meta): see `image2d` and, for DICOM, `dicom`.
- `load_volume(path)` -> Volume(voxels (D,H,W) float32 RAS, spacing_mm (z,y,x), orientation, affine, meta).
- `window(array, center, width)` -> float32 in [0, 1]; `WINDOW_PRESETS` (lung, mediastinum, bone, abdomen, ...).
- Writers (atomic, deterministic: same inputs -> byte-identical files): write_png, write_dicom_image,
  write_dicom_series, write_nifti.
- `inspect_file(path)` -> dict, the library side of `medvlm inspect`.
"""

from medvlm.imaging.dicom import CODECS_HINT
from medvlm.imaging.image2d import Image2D, load_image
from medvlm.imaging.inspect import inspect_file
from medvlm.imaging.meta import DEFAULT_MAX_PIXELS, ImageMeta, MedicalImageError
from medvlm.imaging.volume import Volume, VolumeMeta, load_volume
from medvlm.imaging.window import WINDOW_PRESETS, window
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
    "CODECS_HINT",
    "DEFAULT_MAX_PIXELS",
    "SOP_CLASS_BY_MODALITY",
    "WINDOW_PRESETS",
    "Image2D",
    "ImageMeta",
    "MedicalImageError",
    "Volume",
    "VolumeMeta",
    "deterministic_uid",
    "inspect_file",
    "load_image",
    "load_volume",
    "ras_affine",
    "window",
    "write_dicom_image",
    "write_dicom_series",
    "write_nifti",
    "write_png",
]
