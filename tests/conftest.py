"""Shared test helpers: project paths and the optional ../shared reference material."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
RAW = ROOT / "raw"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    return SPECS


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared when present; tests that need it skip visibly otherwise."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside the project (reference material unavailable)")
    return SHARED
