"""`load_volume`: a 3D image (NIfTI, DICOM series folder, single DICOM slice, .npy) as a RAS-canonical `Volume`.

One array convention for every source (the one `medvlm.imaging.write` writes): `voxels[d, h, w]`, float32, with
d running inferior -> superior, h posterior -> anterior and w left -> right. It is nibabel's closest RAS canonical
array with its axes reversed (i, j, k) -> (k, j, i), so (D,H,W) is (slices, rows, columns) for an axial scan.
`spacing_mm` is (z, y, x) = spacing along (d, h, w). `affine` maps [d, h, w, 1] to RAS millimetres.
A radiological axial display of slice d is `voxels[d, ::-1, ::-1]` (anterior up, patient right on the left).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvlm.imaging.dicom import (
    apply_rescale,
    check_pixel_budget,
    decode_pixels,
    is_dicom_file,
    read_dataset,
    rescale_of,
    transfer_syntax_name,
)
from medvlm.imaging.meta import DEFAULT_MAX_PIXELS, MedicalImageError, file_error
from medvlm.imaging.write import DHW_FROM_IJK, ras_affine

NUMPY_MAGIC = b"\x93NUMPY"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Slices whose spacing differs from the smallest one by more than this fraction make the series irregular.
SPACING_TOLERANCE = 0.01
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR: an index, not an image


@dataclass(frozen=True)
class VolumeMeta:
    """Where a volume came from. `source_orientation`: axis codes of the file's own (i, j, k) axes, e.g. "LPS"."""

    source_path: str
    format: str  # "nifti", "dicom-series", "npy"
    source_shape: tuple[int, ...]
    source_dtype: str
    source_orientation: str | None
    modality: str | None = None
    number_of_slices: int = 0
    series_uid: str | None = None
    transfer_syntax: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Volume:
    """voxels: (D,H,W) float32 (see the module docstring for axes); spacing_mm: (z, y, x);
    orientation: always "RAS" (w -> R, h -> A, d -> S); affine: 4x4, [d, h, w, 1] -> RAS mm."""

    voxels: np.ndarray
    spacing_mm: tuple[float, float, float]
    orientation: str
    affine: np.ndarray
    meta: VolumeMeta


def load_volume(
    path: str | os.PathLike,
    *,
    volume_index: int | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    series_uid: str | None = None,
    max_voxels: int = 4 * DEFAULT_MAX_PIXELS,
) -> Volume:
    """Load a 3D volume; the kind is recognised from the content (folder = DICOM series).

    volume_index: for 4D NIfTI (e.g. fMRI), which volume to return; without it a 4D file is an error.
    spacing_mm: (z, y, x) for .npy (which stores none; default 1 mm); refused for other formats, which carry theirs.
    series_uid: pick one series from a folder that holds several (otherwise they are listed in the error).
    max_voxels: volumes with more voxels (D*H*W) are refused before their data is read (decompression-bomb guard).
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file or folder")
    if spacing_mm is not None and (path.is_dir() or _magic(path) != NUMPY_MAGIC):
        raise file_error(path, "spacing_mm is only for .npy volumes; this file carries its own spacing")
    if path.is_dir():
        return _load_dicom_series(
            path, sorted(p for p in path.iterdir() if p.is_file()), series_uid, max_voxels
        )
    if _magic(path) == NUMPY_MAGIC:
        return _load_npy(path, spacing_mm or (1.0, 1.0, 1.0), max_voxels)
    if is_dicom_file(path):
        return _load_dicom_series(path, [path], series_uid, max_voxels)
    return _load_nibabel(path, volume_index, max_voxels)


def _magic(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(6)


def _canonical(data_ijk: np.ndarray, affine_ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient an (i, j, k) array with a RAS affine to closest RAS canonical; returns (voxels_dhw, affine_dhw, ornt)."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(affine_ijk)
    data = apply_orientation(data_ijk, ornt)
    affine = affine_ijk @ inv_ornt_aff(ornt, data_ijk.shape[:3])
    return np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32), affine @ DHW_FROM_IJK, ornt


def _axcodes(affine_ijk: np.ndarray) -> str:
    from nibabel.orientations import aff2axcodes

    return "".join(code or "?" for code in aff2axcodes(affine_ijk))


def _check_voxel_budget(path: Path, shape: tuple[int, ...], max_voxels: int) -> None:
    count = int(np.prod(shape[:3], dtype=np.int64))
    if count > max_voxels:
        raise file_error(
            path,
            f"{' x '.join(map(str, shape[:3]))} = {count} voxels exceeds the limit of {max_voxels} "
            "(decompression-bomb guard); pass a larger max_voxels if you trust this file",
        )


def _load_nibabel(path: Path, volume_index: int | None, max_voxels: int) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(path)
    except Exception as exc:
        raise file_error(
            path,
            f"not a readable volume ({type(exc).__name__}: {exc}); supported: NIfTI (.nii, .nii.gz), a DICOM "
            "series folder, a DICOM file, .npy (and, as 2D images, PNG/JPEG/TIFF/BMP); truncated or corrupt?",
        ) from exc
    shape = tuple(int(s) for s in image.shape)
    _check_voxel_budget(path, shape, max_voxels)
    try:
        if len(shape) == 3:
            if volume_index not in (None, 0):
                raise file_error(path, f"volume_index={volume_index} but the image is 3D {shape}")
            data = np.asarray(image.dataobj, dtype=np.float32)
        elif len(shape) == 4:
            if volume_index is None:
                raise file_error(
                    path,
                    f"is 4D {shape} ({shape[3]} volumes); pass volume_index=0..{shape[3] - 1} to load one",
                )
            if not 0 <= volume_index < shape[3]:
                raise file_error(path, f"volume_index={volume_index} out of range 0..{shape[3] - 1}")
            data = np.asarray(image.dataobj[..., volume_index], dtype=np.float32)
        else:
            raise file_error(path, f"has shape {shape}; a volume must be 3D (or 4D with volume_index)")
    except MedicalImageError:
        raise
    except Exception as exc:  # truncated gzip streams raise EOFError, short files ValueError/OSError
        raise file_error(
            path,
            f"cannot read the voxel data ({type(exc).__name__}: {exc}); the file may be truncated or corrupt",
        ) from exc
    affine_ijk = np.asarray(image.affine, dtype=np.float64)
    voxels, affine, ornt = _canonical(data, affine_ijk)
    zooms = [
        float(str(z)) for z in image.header.get_zooms()[:3]
    ]  # str(): float32 0.7 stays 0.7, not 0.699999988
    spacing_xyz = [0.0, 0.0, 0.0]
    for source_axis, (target_axis, _flip) in enumerate(ornt):
        spacing_xyz[int(target_axis)] = zooms[source_axis]
    meta = VolumeMeta(
        source_path=str(path),
        format="nifti" if isinstance(image, nib.Nifti1Image | nib.Nifti2Image) else type(image).__name__,
        source_shape=shape,
        source_dtype=image.get_data_dtype().name,
        source_orientation=_axcodes(affine_ijk),
        number_of_slices=voxels.shape[0],
        extra={"volume_index": volume_index} if len(shape) == 4 else {},
    )
    return Volume(voxels, (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]), "RAS", affine, meta)


def _load_npy(path: Path, spacing_mm: tuple[float, float, float], max_voxels: int) -> Volume:
    try:
        data = np.load(path, allow_pickle=False, mmap_mode="r")  # header only, until the budget check passes
        _check_voxel_budget(path, data.shape, max_voxels)
        data = np.array(data)
    except MedicalImageError:
        raise
    except Exception as exc:
        raise file_error(
            path, f"cannot read the .npy array ({type(exc).__name__}: {exc}); truncated or corrupt?"
        ) from exc
    if data.ndim != 3:
        raise file_error(path, f".npy volume must be 3D (D,H,W); got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) and data.dtype != np.bool_:
        raise file_error(path, f".npy volume must be numeric; got dtype {data.dtype}")
    spacing = tuple(float(s) for s in spacing_mm)
    meta = VolumeMeta(
        source_path=str(path),
        format="npy",
        source_shape=tuple(data.shape),
        source_dtype=data.dtype.name,
        source_orientation=None,  # .npy carries none: the array is taken as already (D,H,W) RAS
        number_of_slices=int(data.shape[0]),
    )
    return Volume(np.ascontiguousarray(data, dtype=np.float32), spacing, "RAS", ras_affine(spacing), meta)


def _geometry(path: Path, ds) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(row cosine, column cosine, (row spacing, column spacing)) of one slice, with errors naming the file."""
    try:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        spacing = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
        [float(v) for v in ds.ImagePositionPatient]
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise file_error(
            path,
            "DICOM slice lacks ImageOrientationPatient, ImagePositionPatient or PixelSpacing, so it cannot be "
            f"placed in a volume ({exc}); load it as a 2D image with load_image",
        ) from exc
    return orientation[:3], orientation[3:], spacing


def _series_key(ds) -> tuple:
    iop = tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient") or ())
    return (str(ds.get("SeriesInstanceUID", "?")), int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), iop)


def _describe_groups(groups: dict[tuple, list]) -> str:
    lines = []
    for (uid, rows, cols, iop), members in groups.items():
        first = members[0][1]
        lines.append(
            f"  SeriesInstanceUID {uid}: {len(members)} file(s), {rows}x{cols}, orientation {list(iop)}, "
            f"modality {first.get('Modality', '?')}, description {str(first.get('SeriesDescription', ''))!r}, "
            f"e.g. {members[0][0].name}"
        )
    return "\n".join(lines)


def _load_dicom_series(source: Path, files: list[Path], series_uid: str | None, max_voxels: int) -> Volume:
    headers, ignored = [], []
    for f in files:
        if not is_dicom_file(f):
            ignored.append(f.name)
            continue
        ds = read_dataset(f, stop_before_pixels=True)
        if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
            ignored.append(f.name)
            continue
        headers.append((f, ds))
    if not headers:
        raise file_error(source, f"no DICOM files found (non-DICOM files: {ignored[:5]})")
    groups: dict[tuple, list] = defaultdict(list)
    for f, ds in headers:
        if series_uid is None or str(ds.get("SeriesInstanceUID")) == series_uid:
            groups[_series_key(ds)].append((f, ds))
    if not groups:
        raise file_error(
            source,
            f"no file of series {series_uid}; the folder holds:\n{_describe_groups(_group_all(headers))}",
        )
    if len(groups) > 1:
        raise file_error(
            source,
            f"holds {len(groups)} different series or slice geometries; a volume needs one. Pass series_uid= "
            f"(or a folder with one series):\n{_describe_groups(groups)}",
        )
    members = next(iter(groups.values()))
    first_path, first = members[0]
    row_cos, col_cos, (row_spacing, col_spacing) = _geometry(first_path, first)
    normal = np.cross(row_cos, col_cos)
    placed = []
    for f, ds in members:
        _geometry(f, ds)
        position = np.array([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        placed.append((float(position @ normal), position, f))
    placed.sort(key=lambda item: item[0])
    distances = np.diff([p[0] for p in placed])
    if len(placed) > 1:
        duplicates = [placed[i + 1][2].name for i, gap in enumerate(distances) if abs(gap) < 1e-3]
        if duplicates:
            raise file_error(
                source, f"several slices share one position (e.g. {duplicates[:3]}); remove duplicates"
            )
        step = float(distances.min())  # a missing slice makes one gap larger, never smaller
        irregular = [i for i, gap in enumerate(distances) if abs(gap - step) > SPACING_TOLERANCE * step]
        if irregular:
            i = irregular[0]
            raise file_error(
                source,
                f"slice spacing is irregular: {distances[i]:.4g} mm between {placed[i][2].name} and "
                f"{placed[i + 1][2].name}, closest slices {step:.4g} mm apart (missing slice?); a volume needs even spacing",
            )
        slice_axis = (placed[-1][1] - placed[0][1]) / (len(placed) - 1)  # follows gantry tilt too
    else:
        step = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        slice_axis = normal * step
    rows, cols = int(first.Rows), int(first.Columns)
    _check_voxel_budget(source, (len(placed), rows, cols), max_voxels)
    slices, transfer_syntaxes = [], set()
    for _, _, f in placed:
        ds = read_dataset(f)
        if check_pixel_budget(f, ds, max_voxels) != 1:
            raise file_error(
                f,
                "multi-frame DICOM files are not read as volumes (only single-slice series); "
                "use load_image(path, frames='all') for their frames",
            )
        stored = decode_pixels(f, ds, index=None)
        if stored.ndim != 2:
            raise file_error(f, f"expected a grayscale slice; got pixel array of shape {stored.shape}")
        slices.append(apply_rescale(stored, rescale_of(ds)).astype(np.float32, copy=False))
        transfer_syntaxes.add(transfer_syntax_name(ds))
    stack = np.stack(slices)  # (K, rows, cols)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * col_spacing  # i = column index
    affine_lps[:3, 1] = col_cos * row_spacing  # j = row index
    affine_lps[:3, 2] = slice_axis
    affine_lps[:3, 3] = placed[0][1]
    affine_ijk = LPS_TO_RAS @ affine_lps
    voxels, affine, _ = _canonical(stack.transpose(2, 1, 0), affine_ijk)
    # rounded to 1e-6 mm so that 0.7 mm pixels read back as 0.7, not 0.7000000000000001
    spacing = tuple(round(float(np.linalg.norm(affine[:3, axis])), 6) for axis in range(3))
    meta = VolumeMeta(
        source_path=str(source),
        format="dicom-series",
        source_shape=tuple(stack.shape),
        source_dtype=f"{'int' if int(first.PixelRepresentation) else 'uint'}{int(first.BitsAllocated)}",
        source_orientation=_axcodes(affine_ijk),
        modality=str(first.get("Modality")) if first.get("Modality") else None,
        number_of_slices=len(placed),
        series_uid=str(first.get("SeriesInstanceUID")) if first.get("SeriesInstanceUID") else None,
        transfer_syntax=", ".join(sorted(t for t in transfer_syntaxes if t)) or None,
        extra={"ignored_files": ignored} if ignored else {},
    )
    return Volume(voxels, spacing, "RAS", affine, meta)


def _group_all(headers: list) -> dict[tuple, list]:
    groups: dict[tuple, list] = defaultdict(list)
    for f, ds in headers:
        groups[_series_key(ds)].append((f, ds))
    return groups
