"""load_image on PNG, JPEG, TIFF and BMP: values kept, 16-bit range kept, bad files named in the error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medvlm.imaging import MedicalImageError, load_image, write_png


def _ramp16() -> np.ndarray:
    return (np.arange(30 * 20, dtype=np.uint32).reshape(30, 20) * 109 % 65536).astype(np.uint16)


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("TIFF", ".tif"), ("BMP", ".bmp")])
def test_lossless_8_bit_gray_and_rgb_come_back_exactly(tmp_path, fmt, suffix):
    gray = (np.arange(30 * 20).reshape(30, 20) % 256).astype(np.uint8)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    Image.fromarray(gray).save(tmp_path / f"gray{suffix}", format=fmt)
    Image.fromarray(rgb).save(tmp_path / f"rgb{suffix}", format=fmt)
    loaded_gray = load_image(tmp_path / f"gray{suffix}")
    loaded_rgb = load_image(tmp_path / f"rgb{suffix}")
    np.testing.assert_array_equal(loaded_gray.pixels, gray)
    np.testing.assert_array_equal(loaded_rgb.pixels, rgb)
    assert loaded_gray.meta.photometric == "MONOCHROME2" and loaded_rgb.meta.photometric == "RGB"
    assert loaded_gray.meta.format == fmt.lower() and loaded_gray.meta.bits_stored == 8


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("TIFF", ".tif")])
def test_16_bit_gray_keeps_its_full_range(tmp_path, fmt, suffix):
    ramp = _ramp16()
    Image.fromarray(ramp).save(tmp_path / f"ramp{suffix}", format=fmt)
    image = load_image(tmp_path / f"ramp{suffix}")
    assert image.pixels.dtype == np.uint16 and image.meta.bits_stored == 16
    np.testing.assert_array_equal(image.pixels, ramp)


def test_real_chest_radiograph_jpeg(realdata):
    image = load_image(realdata / "libra_example" / "prior.jpg")
    assert image.pixels.shape == (2021, 2021) and image.pixels.dtype == np.uint8
    assert image.meta.format == "jpeg" and image.meta.photometric == "MONOCHROME2"
    assert image.meta.source_path.endswith("prior.jpg")
    assert image.pixels.std() > 20  # a radiograph, not a blank frame


def test_rgba_drops_alpha_and_says_so(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.pixels.shape == (4, 4, 3) and image.meta.extra["alpha_dropped"]


def test_pixel_limit_refuses_large_images_before_decoding(tmp_path):
    write_png(tmp_path / "big.png", np.zeros((100, 100), np.uint8))
    with pytest.raises(MedicalImageError, match=r"big\.png.*10000 pixels exceeds the limit of 5000"):
        load_image(tmp_path / "big.png", max_pixels=5000)
    assert load_image(tmp_path / "big.png", max_pixels=10_000).pixels.shape == (100, 100)


@pytest.mark.parametrize("name", ["current.jpg", "prior.jpg"])
def test_truncated_jpeg_names_the_file(tmp_path, realdata, name):
    data = (realdata / "libra_example" / name).read_bytes()
    broken = tmp_path / f"truncated_{name}"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(MedicalImageError, match=f"truncated_{name}.*truncated or corrupt"):
        load_image(broken)


def test_truncated_png_names_the_file(tmp_path):
    write_png(tmp_path / "ok.png", _ramp16())
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedicalImageError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")


def test_unsupported_and_non_image_files_are_refused_by_name(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "anim.gif")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(MedicalImageError, match=r"anim\.gif: GIF images are not supported"):
        load_image(tmp_path / "anim.gif")
    with pytest.raises(MedicalImageError, match=r"notes\.txt: not a recognised image"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(MedicalImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    assert issubclass(MedicalImageError, ValueError)


def test_pillow_decompression_bomb_check_also_applies(tmp_path):
    import struct
    import zlib

    write_png(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    data = bytearray((tmp_path / "small.png").read_bytes())
    # the IHDR chunk (after the 8-byte signature, 4-byte length, b"IHDR") now claims 30000 x 30000 pixels
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(MedicalImageError, match=r"bomb\.png: .*decompression-bomb"):
        load_image(
            tmp_path / "bomb.png", max_pixels=10**10
        )  # our limit allows it; Pillow's own check refuses
