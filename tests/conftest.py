"""Shared test helpers: project paths and the optional ../shared reference material."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# PIPELINE_TEST_SPECS: a scratch copy of specs/ (bench/mutate_rules.py runs the rule tests on it)
SPECS = Path(os.environ["PIPELINE_TEST_SPECS"]) if os.environ.get("PIPELINE_TEST_SPECS") else ROOT / "specs"
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
