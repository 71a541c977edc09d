"""Writers for PNG, DICOM (single image and CT series) and NIfTI: atomic, and byte-identical for the same inputs.

Determinism: nothing here reads the clock or a random source. DICOM UIDs that the caller does not give are derived
from the other identifiers with `deterministic_uid`, dates are only what the caller passes, and gzip headers carry
neither a name nor a time.

Volume convention (shared with `load_volume`): `voxels[d, h, w]` with d running inferior -> superior, h posterior ->
anterior and w left -> right (the array of a RAS-canonical NIfTI image, axes reversed). `spacing_mm` is (z, y, x) =
(d, h, w). A radiological axial display of slice d is `voxels[d, ::-1, ::-1]` (anterior up, patient right on the left).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medvlm.fileio import atomic_path
from medvlm.imaging.meta import MedicalImageError

# SOP Class UID per modality written by `write_dicom_image` (DICOM PS3.4 Annex B).
SOP_CLASS_BY_MODALITY: dict[str, str] = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage (photos, tiles, anything else)
    "XC": "1.2.840.10008.5.1.4.1.1.7",  # external-camera photography (dermatology) as Secondary Capture
    "SM": "1.2.840.10008.5.1.4.1.1.7",  # slide microscopy tiles as Secondary Capture
}
CT_IMAGE_STORAGE = SOP_CLASS_BY_MODALITY["CT"]
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
# DICOM series slices store uint16 = HU + 1024 (many scanners do) or int16 = HU.
CT_STORAGE = {"uint16": (np.uint16, -1024.0), "int16": (np.int16, 0.0)}


def deterministic_uid(*parts: object) -> str:
    """A valid DICOM UID that depends only on `parts` (same parts -> same UID), under pydicom's UID root."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["medvlm", *(str(p) for p in parts)]))


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a PNG: uint8 (H,W) 8-bit gray, uint16 (H,W) 16-bit gray (full range kept), uint8 (H,W,3) RGB."""
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 2 and array.dtype == np.uint8:
        image = Image.fromarray(array)  # mode "L"
    elif array.ndim == 2 and array.dtype == np.uint16:
        image = Image.fromarray(array)  # mode "I;16": 16-bit grayscale PNG
    elif array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        image = Image.fromarray(array)
    else:
        raise MedicalImageError(
            f"{os.fspath(path)}: write_png takes uint8 (H,W), uint16 (H,W) or uint8 (H,W,3); got {array.dtype} "
            f"{array.shape}. Convert first, e.g. (np.clip(x, 0, 1) * 255).round().astype(np.uint8)."
        )
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_dicom_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    modality: str = "CR",
    photometric: str = "MONOCHROME2",
    patient_id: str = "ANONYMOUS",
    patient_name: str | None = None,
    patient_sex: str = "",
    patient_birth_date: str = "",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    study_date: str = "",
    study_time: str = "",
    study_id: str = "",
    accession_number: str = "",
    study_description: str = "",
    series_description: str = "",
    series_number: int = 1,
    instance_number: int = 1,
    pixel_spacing_mm: tuple[float, float] | None = None,
    view_position: str = "",
    body_part: str = "CHEST",
    window: tuple[float, float] | None = None,
    bits_stored: int | None = None,
) -> Path:
    """Write one image as a DICOM Part 10 file (explicit VR little endian, uncompressed).

    pixels: uint8 or uint16 (H,W) for MONOCHROME1/MONOCHROME2, or uint8 (H,W,3) for RGB. `modality` picks the
    SOP class (keys of SOP_CLASS_BY_MODALITY). Missing UIDs are derived from patient_id, study_date, study_id,
    accession_number, series_number and instance_number, so the same call writes the same bytes.
    `pixel_spacing_mm` is (row, column) spacing; `window` is (center, width) stored as the VOI window (DX files
    always get one: the full stored range when not given). view_position "PA"/"AP" also sets PatientOrientation L\\F.
    CR, DX and CT files pass dicom3tools' dciodvfy without errors.
    """
    from pydicom.dataset import Dataset

    pixels = np.asarray(pixels)
    modality = modality.upper()
    if modality not in SOP_CLASS_BY_MODALITY:
        raise MedicalImageError(
            f"{os.fspath(path)}: modality {modality!r} not writable; use one of {sorted(SOP_CLASS_BY_MODALITY)}"
        )
    _check_pixels(path, pixels, photometric)
    study_uid = study_uid or deterministic_uid("study", patient_id, study_date, study_id, accession_number)
    series_uid = series_uid or deterministic_uid("series", study_uid, modality, series_number)
    sop_uid = sop_uid or deterministic_uid("instance", series_uid, instance_number)

    ds = Dataset()
    _patient_study_series(
        ds,
        patient_id=patient_id,
        patient_name=patient_name,
        patient_sex=patient_sex,
        patient_birth_date=patient_birth_date,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        study_id=study_id,
        accession_number=accession_number,
        study_description=study_description,
        modality=modality,
        series_uid=series_uid,
        series_number=series_number,
        series_description=series_description,
    )
    ds.BodyPartExamined = body_part
    projection = modality in ("CR", "DX")
    if projection:
        ds.ViewPosition = view_position
    ds.InstanceNumber = instance_number
    # Radiographs displayed as usual (PA and AP alike): columns run to the patient's left, rows to the feet.
    ds.PatientOrientation = ["L", "F"] if view_position in ("PA", "AP") else ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LIN"
        ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME1" else 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        ds.DetectorType = "DIRECT"
        ds.ImageLaterality = "U"  # unpaired body part (chest)
        ds.PositionerType = ""
        ds.AnatomicRegionSequence = _anatomic_region(body_part)
        ds.AcquisitionContextSequence = []
        if (
            window is None
        ):  # a DX image for presentation must carry a window: default to the full stored range
            bits = bits_stored or 8 * pixels.dtype.itemsize
            window = (2 ** (bits - 1), 2**bits)
    if modality == "OT" or SOP_CLASS_BY_MODALITY[modality] == SOP_CLASS_BY_MODALITY["OT"]:
        ds.ConversionType = "SYN"  # synthetic image
    if pixel_spacing_mm is not None:
        spacing = [_ds_number(v) for v in pixel_spacing_mm]
        if modality in ("CR", "DX"):
            ds.ImagerPixelSpacing = spacing  # projection radiography: spacing at the detector
        else:
            ds.PixelSpacing = spacing
    if window is not None and photometric != "RGB":
        ds.WindowCenter = _ds_number(window[0])
        ds.WindowWidth = _ds_number(window[1])
    _set_pixels(ds, pixels, photometric, bits_stored)
    _save(path, ds, SOP_CLASS_BY_MODALITY[modality], sop_uid)
    return Path(path)


def write_dicom_series(
    folder: str | os.PathLike,
    voxels_hu: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    patient_id: str = "ANONYMOUS",
    patient_name: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    study_date: str = "",
    study_time: str = "",
    study_id: str = "",
    accession_number: str = "",
    study_description: str = "",
    series_description: str = "",
    series_number: int = 1,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    stored: str = "uint16",
    window: tuple[float, float] | None = (40.0, 400.0),
    body_part: str = "CHEST",
) -> list[Path]:
    """Write a CT volume as an axial DICOM series (CT Image Storage), one file per slice: `folder/0000.dcm`, ...

    voxels_hu: (D,H,W) Hounsfield units in the volume convention of this module (d inferior -> superior, h posterior
    -> anterior, w left -> right); values are rounded to integers. spacing_mm: (z, y, x). origin_mm: RAS position
    (x, y, z) of voxel [0, 0, 0]. stored: "uint16" (stored = HU + 1024, RescaleIntercept -1024) or "int16"
    (stored = HU). Slices are written in the usual axial orientation (ImageOrientationPatient 1\\0\\0\\0\\1\\0), so
    viewers show them radiologically; `load_volume(folder)` returns `voxels_hu` again (rounded).
    Returns the written paths, ordered by slice index d.
    """
    from pydicom.dataset import Dataset

    folder = Path(folder)
    voxels = np.asarray(voxels_hu)
    if voxels.ndim != 3 or min(voxels.shape) < 1:
        raise MedicalImageError(
            f"{folder}: write_dicom_series takes voxels_hu of shape (D,H,W); got {voxels.shape}"
        )
    if stored not in CT_STORAGE:
        raise MedicalImageError(f"{folder}: stored must be one of {sorted(CT_STORAGE)}; got {stored!r}")
    dz, dy, dx = (float(s) for s in spacing_mm)
    ox, oy, oz = (float(o) for o in origin_mm)
    dtype, intercept = CT_STORAGE[stored]
    values = np.rint(voxels.astype(np.float64)) - intercept
    info = np.iinfo(dtype)
    if values.min() < info.min or values.max() > info.max:
        raise MedicalImageError(
            f"{folder}: HU range [{voxels.min()}, {voxels.max()}] does not fit {stored} storage with intercept "
            f"{intercept:g}; clip the volume (CT is usually within [-1024, 3071]) or use the other `stored`."
        )
    values = values.astype(dtype)
    depth, height, width = voxels.shape
    study_uid = study_uid or deterministic_uid("study", patient_id, study_date, study_id, accession_number)
    series_uid = series_uid or deterministic_uid("series", study_uid, "CT", series_number)
    frame_of_reference_uid = frame_of_reference_uid or deterministic_uid("frame-of-reference", series_uid)
    # Pixel (row r, column c) of slice d is voxel [d, H-1-r, W-1-c]; in LPS patient coordinates the row direction
    # is +x (towards patient left) and the column direction +y (towards posterior).
    first_x_lps = -(ox + (width - 1) * dx)
    first_y_lps = -(oy + (height - 1) * dy)
    paths = []
    for d in range(depth):
        ds = Dataset()
        _patient_study_series(
            ds,
            patient_id=patient_id,
            patient_name=patient_name,
            patient_sex="",
            patient_birth_date="",
            study_uid=study_uid,
            study_date=study_date,
            study_time=study_time,
            study_id=study_id,
            accession_number=accession_number,
            study_description=study_description,
            modality="CT",
            series_uid=series_uid,
            series_number=series_number,
            series_description=series_description,
        )
        ds.BodyPartExamined = body_part
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = d + 1
        ds.AcquisitionNumber = 1
        ds.KVP = ""
        ds.PatientPosition = "HFS"
        z = oz + d * dz
        ds.ImagePositionPatient = [_ds_number(first_x_lps), _ds_number(first_y_lps), _ds_number(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = _ds_number(z)
        ds.SliceThickness = _ds_number(dz)
        ds.PixelSpacing = [_ds_number(dy), _ds_number(dx)]  # (row spacing, column spacing)
        ds.RescaleIntercept = _ds_number(intercept)
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        if window is not None:
            ds.WindowCenter = _ds_number(window[0])
            ds.WindowWidth = _ds_number(window[1])
        _set_pixels(ds, np.ascontiguousarray(values[d, ::-1, ::-1]), "MONOCHROME2", None)
        sop_uid = deterministic_uid("instance", series_uid, d + 1)
        path = folder / f"{d:04d}.dcm"
        _save(path, ds, CT_IMAGE_STORAGE, sop_uid)
        paths.append(path)
    return paths


def write_nifti(
    path: str | os.PathLike,
    voxels: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    affine: np.ndarray | None = None,
) -> Path:
    """Write a (D,H,W) volume as NIfTI-1 (.nii or .nii.gz) with a RAS affine; the voxel dtype is kept.

    Without `affine`, voxel [0,0,0] sits at RAS `origin_mm` (x, y, z) and the axes follow the module's
    convention (spacing_mm = (z, y, x)). With `affine` (4x4, mapping [d, h, w, 1] to RAS mm, as `Volume.affine`), that
    affine is written instead and spacing_mm is ignored. `load_volume(path)` returns the same array.
    """
    import nibabel as nib

    voxels = np.asarray(voxels)
    name = os.fspath(path)
    if voxels.ndim != 3:
        raise MedicalImageError(f"{name}: write_nifti takes a (D,H,W) volume; got shape {voxels.shape}")
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise MedicalImageError(f"{name}: a NIfTI file name ends with .nii or .nii.gz")
    if affine is None:
        affine = ras_affine(spacing_mm, origin_mm)
    affine_ijk = np.asarray(affine, dtype=np.float64) @ DHW_FROM_IJK
    image = nib.Nifti1Image(np.ascontiguousarray(voxels.transpose(2, 1, 0)), affine_ijk)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine_ijk, code=1)
    image.set_sform(affine_ijk, code=1)
    with atomic_path(path, suffix=".nii.gz" if name.endswith(".nii.gz") else ".nii") as tmp:
        nib.save(image, tmp)
    return Path(path)


def ras_affine(spacing_mm: Sequence[float], origin_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The 4x4 affine of a volume in this module's convention: [d, h, w, 1] -> RAS mm (w -> R, h -> A, d -> S)."""
    dz, dy, dx = (float(s) for s in spacing_mm)
    ox, oy, oz = (float(o) for o in origin_mm)
    return np.array([[0, 0, dx, ox], [0, dy, 0, oy], [dz, 0, 0, oz], [0, 0, 0, 1]], dtype=np.float64)


# [d, h, w, 1] = DHW_FROM_IJK @ [i, j, k, 1] with (i, j, k) = (w, h, d); it is its own inverse.
DHW_FROM_IJK = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


# BodyPartExamined -> SNOMED CT code of the anatomic region (DICOM CID 4031), for the DX AnatomicRegionSequence.
ANATOMIC_REGION_CODES: dict[str, tuple[str, str]] = {"CHEST": ("51185008", "Thorax")}


def _anatomic_region(body_part: str) -> list:
    from pydicom.dataset import Dataset

    if body_part not in ANATOMIC_REGION_CODES:
        return []
    item = Dataset()
    item.CodeValue, item.CodeMeaning = ANATOMIC_REGION_CODES[body_part]
    item.CodingSchemeDesignator = "SCT"
    return [item]


def _check_pixels(path: str | os.PathLike, pixels: np.ndarray, photometric: str) -> None:
    gray = pixels.ndim == 2 and pixels.dtype in (np.uint8, np.uint16)
    rgb = pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
    if photometric in ("MONOCHROME1", "MONOCHROME2") and gray or photometric == "RGB" and rgb:
        return
    raise MedicalImageError(
        f"{os.fspath(path)}: write_dicom_image takes uint8/uint16 (H,W) pixels for MONOCHROME1/MONOCHROME2 or "
        f"uint8 (H,W,3) for RGB; got {pixels.dtype} {pixels.shape} with photometric {photometric!r}"
    )


def _patient_study_series(
    ds,
    *,
    patient_id,
    patient_name,
    patient_sex,
    patient_birth_date,
    study_uid,
    study_date,
    study_time,
    study_id,
    accession_number,
    study_description,
    modality,
    series_uid,
    series_number,
    series_description,
) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient_name if patient_name is not None else patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study_id
    ds.AccessionNumber = accession_number
    ds.StudyDescription = study_description
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.Manufacturer = "medvlm"
    if study_date:
        ds.ContentDate = study_date
        ds.SeriesDate = study_date
    if study_time:
        ds.ContentTime = study_time


def _set_pixels(ds, pixels: np.ndarray, photometric: str, bits_stored: int | None) -> None:
    bits_allocated = pixels.dtype.itemsize * 8
    bits = bits_stored or bits_allocated
    if not 1 <= bits <= bits_allocated:
        raise MedicalImageError(f"bits_stored must be in 1..{bits_allocated} for {pixels.dtype}; got {bits}")
    if np.issubdtype(pixels.dtype, np.unsignedinteger) and pixels.size and int(pixels.max()) >= 2**bits:
        raise MedicalImageError(f"pixel values up to {int(pixels.max())} do not fit bits_stored={bits}")
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    data = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)  # values have even length in DICOM
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"


def _save(path: str | os.PathLike, ds, sop_class_uid: str, sop_uid: str) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MEDVLM"
    ds.file_meta = meta
    with atomic_path(path, suffix=".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _ds_number(value: float) -> str:
    """A DICOM Decimal String for `value`: shortest exact form, at most 16 characters."""
    text = f"{float(value):.10g}"
    if len(text) > 16:
        text = f"{float(value):.8g}"
    return text
