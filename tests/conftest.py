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
