"""inspect_file and `medvlm inspect`: what medvlm sees in each kind of file."""

from __future__ import annotations

import json

import numpy as np

from medvlm.cli import main
from medvlm.imaging import inspect_file, write_dicom_series


def test_inspect_monochrome1_radiograph(dicom_testdata):
    info = inspect_file(dicom_testdata("RG1_UNCI.dcm"))
    assert info["kind"] == "dicom" and info["modality"] == "CR" and info["shape"] == [1955, 1841]
    assert info["photometric"] == "MONOCHROME1 -> MONOCHROME2" and info["bits"] == 15
    assert info["transfer_syntax"] == "Explicit VR Little Endian" and info["window"] == [15000, 30000]


def test_inspect_compressed_dicom_and_4d_nifti(dicom_testdata, nibabel_testdata):
    j2k = inspect_file(dicom_testdata("JPEG2000.dcm"))
    assert j2k["transfer_syntax"] == "JPEG 2000 Image Compression" and j2k["frames"] == 1
    nifti = inspect_file(nibabel_testdata / "example4d.nii.gz")
    assert nifti["kind"] == "volume" and nifti["shape"] == [24, 96, 128] and nifti["volumes"] == 2
    assert nifti["orientation"] == "LAS -> RAS" and nifti["spacing_mm"] == [2.199999, 2, 2]


def test_inspect_series_folder_and_jpeg(tmp_path, realdata):
    hu = np.full((3, 4, 5), -1000.0)
    hu[1, 2, 3] = 700
    write_dicom_series(tmp_path / "ct", hu, (1.25, 0.5, 0.5))
    series = inspect_file(tmp_path / "ct")
    assert series["kind"] == "series" and series["slices"] == 3 and series["shape"] == [3, 4, 5]
    assert series["value_range"] == [-1000, 700] and series["spacing_mm"] == [1.25, 0.5, 0.5]
    jpeg = inspect_file(realdata / "libra_example" / "current.jpg")
    assert jpeg["kind"] == "image2d" and jpeg["shape"] == [2544, 3056] and jpeg["dtype"] == "uint8"


def test_cli_prints_json_or_a_table_and_fails_cleanly(tmp_path, dicom_testdata, capsys):
    path = str(dicom_testdata("CT_small.dcm"))
    assert main(["inspect", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["modality"] == "CT" and info["value_range"] == [-896, 1167] and info["rescale"] == [1, -1024]
    assert main(["inspect", path]) == 0
    table = capsys.readouterr().out
    assert "transfer_syntax  Explicit VR Little Endian" in table and "shape            128 x 128" in table
    assert main(["inspect", str(tmp_path / "missing.dcm")]) == 1
    assert "missing.dcm: no such file" in capsys.readouterr().err
