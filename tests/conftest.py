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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """No test may print the CLI's last-resort ``internal error`` line (issue 11): a passing test
    whose captured output holds it is turned into a failure."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.passed and "internal error (" in (rep.capstdout + rep.capstderr):
        rep.outcome = "failed"
        rep.longrepr = "the test printed 'internal error': a bad input reached the CLI's last line of defence"
