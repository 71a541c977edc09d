"""load_volume: NIfTI (RAS canonical), DICOM series folders (sorted by position, mixed series refused), .npy."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medvlm.imaging import MedicalImageError, deterministic_uid, load_volume, write_dicom_series, write_nifti


def _hu_volume(shape=(5, 6, 7)) -> np.ndarray:
    return np.random.default_rng(3).integers(-1024, 2000, size=shape).astype(np.float32)


def test_nifti_is_reoriented_to_ras_with_header_spacing(nibabel_testdata):
    path = nibabel_testdata / "anatomical.nii"  # stored LAS
    volume = load_volume(path)
    canonical = nib.as_closest_canonical(nib.load(path))
    assert volume.voxels.dtype == np.float32 and volume.voxels.shape == (25, 41, 33)  # (D,H,W)
    np.testing.assert_array_equal(volume.voxels, canonical.get_fdata().transpose(2, 1, 0))
    assert volume.spacing_mm == (2.0, 2.0, 2.0) and volume.orientation == "RAS"
    assert volume.meta.source_orientation == "LAS" and volume.meta.format == "nifti"
    # the affine maps [d, h, w] to the same world point nibabel's canonical affine gives for [w, h, d]
    np.testing.assert_allclose(volume.affine @ [4, 5, 6, 1], canonical.affine @ [6, 5, 4, 1])


def test_4d_nifti_needs_a_volume_index(nibabel_testdata):
    path = nibabel_testdata / "example4d.nii.gz"
    with pytest.raises(MedicalImageError, match=r"example4d\.nii\.gz: is 4D .*pass volume_index=0\.\.1"):
        load_volume(path)
    second = load_volume(path, volume_index=1)
    assert second.voxels.shape == (24, 96, 128) and second.spacing_mm == (2.199999, 2.0, 2.0)
    expected = nib.as_closest_canonical(nib.load(path)).get_fdata()[..., 1].transpose(2, 1, 0)
    np.testing.assert_array_equal(second.voxels, expected)


def test_write_nifti_then_load_gives_the_same_volume_and_geometry(tmp_path):
    hu = _hu_volume()
    write_nifti(tmp_path / "ct.nii.gz", hu, (2.5, 0.7, 0.8), origin_mm=(-10, 5, 30))
    volume = load_volume(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(volume.voxels, hu)
    assert volume.spacing_mm == (2.5, 0.7, 0.8)
    np.testing.assert_allclose(
        volume.affine @ [1, 0, 0, 1], [-10, 5, 32.5, 1]
    )  # one slice up: 2.5 mm superior


def test_dicom_series_round_trip_sorts_by_position_not_by_file_name(tmp_path):
    hu = _hu_volume()
    paths = write_dicom_series(
        tmp_path / "ct", hu, (2.5, 0.7, 0.8), patient_id="SYN-CT", origin_mm=(-10, 5, 30)
    )
    for i, path in enumerate(paths):  # names now run opposite to the slice order
        path.rename(path.with_name(f"IM{len(paths) - i:03d}"))
    volume = load_volume(tmp_path / "ct")
    np.testing.assert_array_equal(volume.voxels, hu)
    assert volume.spacing_mm == (2.5, 0.7, 0.8)
    assert volume.meta.modality == "CT" and volume.meta.number_of_slices == 5
    assert volume.meta.source_orientation == "LPS" and volume.meta.format == "dicom-series"
    nifti = load_volume(write_nifti(tmp_path / "ct.nii", hu, (2.5, 0.7, 0.8), origin_mm=(-10, 5, 30)))
    np.testing.assert_allclose(volume.affine, nifti.affine, atol=1e-6)  # both sources place voxels alike


def _series_from_real_ct_slice(folder, source, count=3, series_uid=None, thickness_mm=5.0):
    """Copies of a real CT slice stacked along its normal (CT_small is axial: the normal is +z)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        ds = pydicom.dcmread(source)
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + i * thickness_mm]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = deterministic_uid("copy", i)
        ds.SeriesInstanceUID = series_uid or ds.SeriesInstanceUID
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"slice{i}.dcm")


def test_series_from_real_ct_slices(tmp_path, dicom_testdata):
    source = dicom_testdata("CT_small.dcm")
    _series_from_real_ct_slice(tmp_path / "series", source)
    (tmp_path / "series" / "README.txt").write_text("not DICOM")
    volume = load_volume(tmp_path / "series")
    hu = pydicom.dcmread(source).pixel_array.astype(np.float32) - 1024
    assert volume.voxels.shape == (3, 128, 128)
    assert volume.spacing_mm == (5.0, 0.661468, 0.661468)
    np.testing.assert_array_equal(volume.voxels[1], hu[::-1, ::-1])  # stored rows run anterior -> posterior
    assert volume.meta.extra["ignored_files"] == ["README.txt"]


def test_mixed_series_are_refused_with_a_list(tmp_path, dicom_testdata):
    source = dicom_testdata("CT_small.dcm")
    _series_from_real_ct_slice(tmp_path / "mixed", source, count=2)
    write_dicom_series(tmp_path / "mixed", _hu_volume((2, 4, 4)), (1, 1, 1), series_uid="1.2.3.4")
    with pytest.raises(MedicalImageError, match=r"2 different series") as error:
        load_volume(tmp_path / "mixed")
    message = str(error.value)
    assert "1.2.3.4: 2 file(s), 4x4" in message and "128x128" in message and "series_uid=" in message
    assert load_volume(tmp_path / "mixed", series_uid="1.2.3.4").voxels.shape == (2, 4, 4)


def test_irregular_or_duplicate_slices_are_refused(tmp_path, dicom_testdata):
    paths = write_dicom_series(tmp_path / "gap", _hu_volume((4, 3, 3)), (2.0, 1, 1))
    paths[2].unlink()
    with pytest.raises(
        MedicalImageError, match=r"irregular: 4 mm between 0001\.dcm and 0003\.dcm.*missing slice"
    ):
        load_volume(tmp_path / "gap")
    write_dicom_series(tmp_path / "dup", _hu_volume((2, 3, 3)), (2.0, 1, 1))
    shutil.copy(tmp_path / "dup" / "0001.dcm", tmp_path / "dup" / "copy.dcm")
    with pytest.raises(MedicalImageError, match="share one position"):
        load_volume(tmp_path / "dup")


def test_npy_volume_takes_its_spacing_as_an_option(tmp_path):
    np.save(tmp_path / "v.npy", _hu_volume().astype(np.int16))
    volume = load_volume(tmp_path / "v.npy", spacing_mm=(3.0, 1.0, 0.5))
    assert volume.voxels.dtype == np.float32 and volume.spacing_mm == (3.0, 1.0, 0.5)
    assert volume.meta.source_dtype == "int16" and volume.meta.source_orientation is None
    assert load_volume(tmp_path / "v.npy").spacing_mm == (1.0, 1.0, 1.0)
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(MedicalImageError, match=r"flat\.npy: \.npy volume must be 3D"):
        load_volume(tmp_path / "flat.npy")


def test_truncated_nifti_names_the_file(tmp_path, nibabel_testdata):
    data = (nibabel_testdata / "example4d.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedicalImageError, match=r"cut\.nii\.gz: .*truncated or corrupt"):
        load_volume(tmp_path / "cut.nii.gz", volume_index=0)


def test_voxel_limit_is_checked_before_reading_data(tmp_path, nibabel_testdata):
    with pytest.raises(MedicalImageError, match=r"anatomical\.nii: 33 x 41 x 25 = 33825 voxels exceeds"):
        load_volume(nibabel_testdata / "anatomical.nii", max_voxels=30_000)
    np.save(tmp_path / "v.npy", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(MedicalImageError, match="64 voxels exceeds the limit of 63"):
        load_volume(tmp_path / "v.npy", max_voxels=63)
    write_dicom_series(tmp_path / "ct", np.zeros((4, 4, 4)), (1, 1, 1))
    with pytest.raises(MedicalImageError, match="64 voxels exceeds"):
        load_volume(tmp_path / "ct", max_voxels=63)
