"""Real DICOM and NIfTI files that installed packages ship (pydicom, pydicom-data, nibabel): found offline."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dicom_testdata():
    """name -> path of a DICOM file shipped by pydicom or pydicom-data; skips when the file is not installed.

    pydicom.data.get_testdata_file looks in pydicom's own test_files, then in the installed pydicom-data package
    (data_store/data), and only downloads when neither has it; None means it is not installed here.
    """
    from pydicom.data import get_testdata_file

    def find(name: str) -> Path:
        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"{name} is not installed (pip install pydicom-data)")
        return Path(path)

    return find


@pytest.fixture(scope="session")
def nibabel_testdata() -> Path:
    import nibabel

    folder = Path(nibabel.__file__).parent / "tests" / "data"
    if not (folder / "anatomical.nii").is_file():
        pytest.skip(f"nibabel test data not found at {folder}")
    return folder
