"""load_image on real DICOM files: modality LUT, VOI window, MONOCHROME1, frames, codecs, damaged files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medvlm.imaging import MedicalImageError, load_image, window


def test_monochrome1_chest_radiograph_is_inverted_for_display(dicom_testdata):
    path = dicom_testdata("RG1_UNCI.dcm")  # real CR chest PA, MONOCHROME1, window 15000/30000
    stored = pydicom.dcmread(path).pixel_array
    display = load_image(path)
    assert display.meta.source_photometric == "MONOCHROME1" and display.meta.photometric == "MONOCHROME2"
    assert display.meta.modality == "CR" and display.meta.voi == "window 15000/30000"
    assert display.pixels.dtype == np.float32 and 0.0 <= display.pixels.min() < display.pixels.max() <= 1.0
    np.testing.assert_allclose(display.pixels, 1.0 - window(stored, 15000, 30000), atol=1e-6)
    # what a reader expects of a chest PA: mediastinum bright, lungs dark
    height, width = display.pixels.shape
    band = display.pixels[height // 3 : 2 * height // 3]
    assert (
        band[:, width // 2 - 100 : width // 2 + 100].mean()
        > band[:, width // 5 : width // 5 + 200].mean() + 0.1
    )


def test_monochrome1_without_voi_is_inverted_over_the_stored_range(dicom_testdata):
    path = dicom_testdata("RG1_UNCI.dcm")
    stored = pydicom.dcmread(path).pixel_array  # BitsStored 15
    raw = load_image(path, apply_voi=False)
    assert raw.pixels.dtype == np.uint16 and raw.meta.voi is None and raw.meta.bits_stored == 15
    np.testing.assert_array_equal(raw.pixels, (2**15 - 1) - stored)


def test_ct_rescale_gives_hounsfield_units(dicom_testdata):
    path = dicom_testdata("CT_small.dcm")
    ds = pydicom.dcmread(path)
    ct = load_image(path, apply_voi=False)
    assert ct.meta.rescale == (1.0, -1024.0) and ct.meta.spacing_mm == (0.661468, 0.661468)
    np.testing.assert_array_equal(ct.pixels, ds.pixel_array.astype(np.float32) - 1024)
    shown = load_image(path)  # no window in the file: min..max
    assert shown.meta.voi == "min-max" and shown.pixels.min() == 0.0 and shown.pixels.max() == 1.0


def test_mr_window_from_the_file(dicom_testdata):
    mr = load_image(dicom_testdata("MR_small.dcm"))
    assert mr.meta.modality == "MR" and mr.meta.voi == "window 600/1600"
    np.testing.assert_allclose(mr.pixels, window(pydicom.dcmread(mr.meta.source_path).pixel_array, 600, 1600))


@pytest.mark.parametrize(
    "compressed", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_compressed_transfer_syntaxes_decode_to_the_uncompressed_pixels(dicom_testdata, compressed):
    reference = load_image(dicom_testdata("MR_small.dcm"), apply_voi=False)
    image = load_image(dicom_testdata(compressed), apply_voi=False)
    assert image.meta.transfer_syntax != reference.meta.transfer_syntax == "Explicit VR Little Endian"
    np.testing.assert_array_equal(image.pixels, reference.pixels)


def test_jpeg2000_and_colour_jpeg(dicom_testdata):
    j2k = load_image(dicom_testdata("JPEG2000.dcm"), apply_voi=False)
    assert j2k.meta.transfer_syntax == "JPEG 2000 Image Compression" and j2k.pixels.shape == (1024, 256)
    rgb = load_image(dicom_testdata("SC_rgb_jpeg_dcmtk.dcm"))  # YBR_FULL JPEG baseline -> RGB
    assert (
        rgb.pixels.shape == (100, 100, 3) and rgb.pixels.dtype == np.uint8 and rgb.meta.photometric == "RGB"
    )
    # the test image is made of red, green, blue, yellow, cyan, magenta, white and black bands
    assert (
        rgb.pixels[..., 0].max() > 200 and rgb.pixels[..., 1].max() > 200 and rgb.pixels[..., 2].max() > 200
    )


def test_ultrasound_jpeg2000_lossless_matches_the_uncompressed_file(dicom_testdata):
    compressed = load_image(dicom_testdata("US1_J2KR.dcm"))
    plain = load_image(dicom_testdata("US1_UNCR.dcm"))
    assert compressed.meta.modality == "US" and compressed.pixels.shape == (480, 640, 3)
    np.testing.assert_array_equal(compressed.pixels, plain.pixels)


def test_multi_frame_first_or_all(dicom_testdata):
    path = dicom_testdata("emri_small.dcm")  # 10 frames of 64 x 64
    first = load_image(path, apply_voi=False)
    every = load_image(path, apply_voi=False, frames="all")
    assert first.pixels.shape == (64, 64) and every.pixels.shape == (10, 64, 64)
    assert first.meta.number_of_frames == every.meta.number_of_frames == 10
    np.testing.assert_array_equal(every.pixels[0], first.pixels)


def test_pixel_limit_counts_rows_columns_and_frames(dicom_testdata):
    path = dicom_testdata("emri_small.dcm")
    with pytest.raises(MedicalImageError, match=r"emri_small\.dcm: 64 x 64 x 10 frames"):
        load_image(path, max_pixels=64 * 64 * 10 - 1)


def test_missing_codec_names_the_extra_to_install(dicom_testdata, monkeypatch):
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(MedicalImageError, match=r"JPEG2000\.dcm: .*JPEG 2000") as error:
        load_image(dicom_testdata("JPEG2000.dcm"))
    assert "pip install 'medvlm[dicom-codecs]'" in str(error.value)
    load_image(dicom_testdata("CT_small.dcm"))  # uncompressed files need no plugin


def test_truncated_dicom_names_the_file(tmp_path, dicom_testdata):
    data = dicom_testdata("CT_small.dcm").read_bytes()
    for keep in (len(data) // 2, 400):  # inside the pixel data, inside the header
        broken = tmp_path / f"cut_{keep}.dcm"
        broken.write_bytes(data[:keep])
        with pytest.raises(MedicalImageError, match=f"cut_{keep}\\.dcm.*truncated"):
            load_image(broken)


def test_dicom_without_pixels_is_refused(dicom_testdata):
    with pytest.raises(MedicalImageError, match=r"rtplan\.dcm: DICOM file has no pixel data"):
        load_image(dicom_testdata("rtplan.dcm"))


def test_enhanced_ct_takes_rescale_window_and_spacing_from_functional_groups(dicom_testdata):
    path = dicom_testdata("eCT_Supplemental.dcm")  # Enhanced CT, 2 frames, no top-level rescale or window
    hu = load_image(path, apply_voi=False, frames="all")
    assert hu.pixels.shape == (2, 512, 512) and hu.meta.rescale == (1.0, -1024.0)
    np.testing.assert_array_equal(hu.pixels, pydicom.dcmread(path).pixel_array.astype(np.float32) - 1024)
    shown = load_image(path)
    assert shown.meta.voi == "window 49/102" and shown.meta.spacing_mm == (0.388672, 0.388672)


def test_preamble_less_palette_colour_file(dicom_testdata):
    face = load_image(
        dicom_testdata("OT-PAL-8-face.dcm")
    )  # old file: no preamble, no file meta, PALETTE COLOR
    assert face.meta.source_photometric == "PALETTE COLOR" and face.meta.photometric == "RGB"
    assert face.pixels.shape == (480, 640, 3) and face.pixels.dtype == np.uint8
    assert face.meta.transfer_syntax == "Implicit VR Little Endian"


def test_real_truncated_dicom_from_pydicom_names_the_file(dicom_testdata):
    with pytest.raises(MedicalImageError, match=r"MR_truncated\.dcm: cannot decode .*less than expected"):
        load_image(dicom_testdata("MR_truncated.dcm"))
