"""Shared fixtures: the real reference files in ../shared/data (CI lays them beside the clone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DIRA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
REAL_CXR = SHARED_DATA / "real_cxr"
NIH_METADATA = SHARED_DATA / "nih_metadata"

# Tests must be reproducible and must never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data not found at {SHARED_DATA} (set DIRA_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_cxr(shared_data: Path) -> Path:
    return shared_data / "real_cxr"


@pytest.fixture(scope="session")
def nih_metadata(shared_data: Path) -> Path:
    return shared_data / "nih_metadata"
