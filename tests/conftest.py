"""Shared fixtures: the real files in ../shared/realdata and packaged test data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The reference systems' real files; tests that need them skip where ../shared is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real reference files not found at {REALDATA} (a clone without ../shared)")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_cxr(tmp_path_factory) -> Path:
    """A small synthetic chest X-ray dataset (32 px) shared by the training and inference tests."""
    from medvlm.synth.cxr import CXRConfig
    from medvlm.synth.dataset import write_dataset

    out = tmp_path_factory.mktemp("data") / "cxr"
    write_dataset(out, "cxr", 24, seed=0, config=CXRConfig(size_px=32), progress=False)
    return out
