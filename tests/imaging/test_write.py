"""Writers: real, valid files that read back to the same pixels, byte-identical for the same inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medvlm.imaging import (
    MedicalImageError,
    deterministic_uid,
    write_dicom_image,
    write_dicom_series,
    write_nifti,
    write_png,
)


def _gradient16(height: int = 48, width: int = 40) -> np.ndarray:
    return (np.arange(height * width, dtype=np.uint32).reshape(height, width) * 27 % 65536).astype(np.uint16)


def test_write_png_keeps_16_bit_range_8_bit_and_rgb(tmp_path):
    gray16 = _gradient16()
    write_png(tmp_path / "g16.png", gray16)
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(im), gray16)
    rgb = np.stack([np.full((4, 5), c, np.uint8) for c in (10, 20, 30)], axis=-1)
    write_png(tmp_path / "rgb.png", rgb)
    with Image.open(tmp_path / "rgb.png") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb)
    write_png(tmp_path / "g8.png", (gray16 >> 8).astype(np.uint8))
    with Image.open(tmp_path / "g8.png") as im:
        assert im.mode == "L"


def test_write_png_refuses_float_with_a_hint(tmp_path):
    with pytest.raises(MedicalImageError, match="uint8"):
        write_png(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_same_inputs_write_byte_identical_files(tmp_path):
    pixels = _gradient16()
    for name in ("a", "b"):
        write_png(tmp_path / f"{name}.png", pixels)
        write_dicom_image(tmp_path / f"{name}.dcm", pixels, patient_id="SYN-0001", study_date="20240102")
        write_nifti(tmp_path / f"{name}.nii.gz", pixels[None].astype(np.float32), (1.0, 0.5, 0.5))
        write_dicom_series(tmp_path / f"{name}_series", pixels[None].astype(np.int16) // 32, (2.0, 0.5, 0.5))
    for suffix in (".png", ".dcm", ".nii.gz"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()
    assert (tmp_path / "a_series/0000.dcm").read_bytes() == (tmp_path / "b_series/0000.dcm").read_bytes()


def test_deterministic_uid_is_valid_and_depends_only_on_its_parts():
    uid = deterministic_uid("study", "SYN-0001")
    assert uid == deterministic_uid("study", "SYN-0001") != deterministic_uid("study", "SYN-0002")
    assert pydicom.uid.UID(uid).is_valid


def test_write_dicom_image_is_a_part10_cr_file(tmp_path):
    pixels = _gradient16()
    path = write_dicom_image(
        tmp_path / "cxr.dcm",
        pixels,
        modality="CR",
        patient_id="SYN-0001",
        pixel_spacing_mm=(0.139, 0.139),
        view_position="PA",
        study_date="20240102",
        window=(32768, 65536),
    )
    ds = pydicom.dcmread(path)  # raises unless the preamble, DICM prefix and file meta are there
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (
        ds.SOPClassUID == pydicom.uid.ComputedRadiographyImageStorage == ds.file_meta.MediaStorageSOPClassUID
    )
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert (ds.Modality, ds.PatientID, ds.ViewPosition, ds.StudyDate) == ("CR", "SYN-0001", "PA", "20240102")
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.139, 0.139]
    np.testing.assert_array_equal(ds.pixel_array, pixels)


def test_write_dicom_image_dx_monochrome1_and_rgb(tmp_path):
    dx = pydicom.dcmread(
        write_dicom_image(tmp_path / "dx.dcm", _gradient16(), modality="DX", photometric="MONOCHROME1")
    )
    assert dx.SOPClassUID == pydicom.uid.DigitalXRayImageStorageForPresentation
    assert dx.PhotometricInterpretation == "MONOCHROME1" and dx.PresentationLUTShape == "INVERSE"
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 0] = 200
    sc = pydicom.dcmread(write_dicom_image(tmp_path / "derm.dcm", rgb, modality="XC", photometric="RGB"))
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    np.testing.assert_array_equal(sc.pixel_array, rgb)


def test_write_dicom_image_rejects_values_beyond_bits_stored(tmp_path):
    with pytest.raises(MedicalImageError, match="bits_stored=12"):
        write_dicom_image(tmp_path / "x.dcm", np.full((2, 2), 5000, np.uint16), bits_stored=12)


def test_write_dicom_series_stores_hu_with_rescale_and_geometry(tmp_path):
    hu = np.random.default_rng(0).integers(-1024, 2000, size=(3, 5, 4)).astype(np.int16)
    paths = write_dicom_series(
        tmp_path / "ct", hu, (2.5, 0.7, 0.8), patient_id="SYN-CT", origin_mm=(10, 20, 30)
    )
    assert [p.name for p in paths] == ["0000.dcm", "0001.dcm", "0002.dcm"]
    slices = [pydicom.dcmread(p) for p in paths]
    assert {s.SOPClassUID for s in slices} == {pydicom.uid.CTImageStorage}
    assert len({s.SeriesInstanceUID for s in slices}) == 1 and len({s.SOPInstanceUID for s in slices}) == 3
    assert [float(s.ImagePositionPatient[2]) for s in slices] == [30.0, 32.5, 35.0]
    assert [float(v) for v in slices[0].PixelSpacing] == [0.7, 0.8] and float(slices[0].SliceThickness) == 2.5
    assert slices[0].pixel_array.dtype == np.uint16 and float(slices[0].RescaleIntercept) == -1024
    # stored slices are shown radiologically: anterior up, patient right on the left
    hu_slice0 = slices[0].pixel_array.astype(np.int32) - 1024
    np.testing.assert_array_equal(hu_slice0, hu[0, ::-1, ::-1])


def test_write_dicom_series_refuses_values_outside_storage(tmp_path):
    with pytest.raises(MedicalImageError, match="clip the volume"):
        write_dicom_series(tmp_path / "ct", np.full((1, 2, 2), -3000.0), (1, 1, 1))


def test_write_nifti_has_a_ras_affine_with_the_spacing(tmp_path):
    voxels = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (D,H,W)
    image = nib.load(write_nifti(tmp_path / "v.nii.gz", voxels, (3.0, 2.0, 1.0)))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.header.get_zooms() == (1.0, 2.0, 3.0)  # (x, y, z)
    np.testing.assert_array_equal(np.asarray(image.dataobj), voxels.transpose(2, 1, 0))


def test_written_dicom_files_read_strictly_and_with_an_independent_parser(tmp_path):
    """pydicom in strict mode checks every value against its VR; GDCM (a separate C++ parser) must read them too."""
    gdcm = pytest.importorskip("gdcm")
    paths = [
        write_dicom_image(
            tmp_path / "cr.dcm", _gradient16(), view_position="PA", pixel_spacing_mm=(0.2, 0.2)
        ),
        write_dicom_image(tmp_path / "dx.dcm", _gradient16(), modality="DX", photometric="MONOCHROME1"),
        *write_dicom_series(tmp_path / "ct", np.zeros((2, 3, 4)), (1.25, 0.6, 0.6)),
    ]
    for path in paths:
        with pydicom.config.strict_reading():  # reading a value that does not fit its VR raises here
            values = [element.value for element in pydicom.dcmread(path).iterall()]
        assert len(values) > 30
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        assert reader.Read(), path
        assert reader.GetImage().GetDimension(0) in (40, 4)


def test_written_radiograph_loads_back_with_its_metadata(tmp_path):
    from medvlm.imaging import load_image

    pixels = _gradient16()
    path = write_dicom_image(
        tmp_path / "dx.dcm", pixels, modality="DX", photometric="MONOCHROME1", pixel_spacing_mm=(0.2, 0.25)
    )
    raw = load_image(path, apply_voi=False)
    assert raw.meta.modality == "DX" and raw.meta.spacing_mm == (0.2, 0.25) and raw.meta.bits_stored == 16
    np.testing.assert_array_equal(raw.pixels, 65535 - pixels)  # MONOCHROME1 comes back as MONOCHROME2
    shown = load_image(path)
    assert shown.meta.voi == "window 32768/65536" and 0.0 <= shown.pixels.min() <= shown.pixels.max() <= 1.0
