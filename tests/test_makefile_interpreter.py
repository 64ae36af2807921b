"""Which interpreter ``make`` creates ``.venv`` with (issue 14: a distribution's optimised CPython
before a version manager's default build). Read from ``make -n install`` on a copy of the Makefile,
so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def venv_interpreter(tmp_path: Path, *args: str) -> str:
    """The interpreter of the first command ``make install`` would run (``<python> -m venv .venv``)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    # run as a top-level make, also under ``make test`` (whose make exports its level and flags)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHON", "PYTHON_CANDIDATES", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "install", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    assert first.endswith(" -m venv .venv"), first
    return first.removesuffix(" -m venv .venv")


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_an_explicit_python_is_used_as_given(tmp_path):
    assert venv_interpreter(tmp_path, "PYTHON=/opt/some/python3.12") == "/opt/some/python3.12"


def test_the_first_candidate_that_is_3_11_with_venv_is_chosen(tmp_path):
    refuses = script(tmp_path / "old-python", "exit 1")  # as a Python < 3.11 or one without venv answers
    chosen = venv_interpreter(
        tmp_path, f"PYTHON_CANDIDATES=/nonexistent/python3 {refuses} {sys.executable} /also/not/there")
    assert chosen == sys.executable


def test_python3_on_path_when_no_candidate_qualifies(tmp_path):
    refuses = script(tmp_path / "old-python", "exit 1")
    assert venv_interpreter(tmp_path, f"PYTHON_CANDIDATES=/nonexistent/python3 {refuses}") == "python3"


@pytest.mark.parametrize("version, accepted", [((3, 10, 14), False), ((3, 11, 0), True), ((3, 12, 1), True)])
def test_the_probe_accepts_3_11_and_newer_only(tmp_path, version, accepted):
    # a candidate that runs the probe's own code under this interpreter, reporting ``version``
    fake = script(tmp_path / "fake", f'shift; exec {sys.executable} -c '
                  f'"import sys; sys.version_info = {version}; exec(sys.argv[1])" "$@"')
    assert venv_interpreter(tmp_path, f"PYTHON_CANDIDATES={fake}") == (fake if accepted else "python3")


def system_python3_qualifies() -> bool:
    """Whether this machine's /usr/bin/python3 is 3.11+ with venv (the precondition of the test below)."""
    if not Path("/usr/bin/python3").exists():
        return False
    probe = subprocess.run(["/usr/bin/python3", "-c", "import sys, venv, ensurepip; "
                            "sys.exit(sys.version_info < (3, 11))"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not system_python3_qualifies(), reason="no /usr/bin/python3 3.11+ with venv on this machine")
def test_the_default_prefers_the_system_python3(tmp_path):
    assert venv_interpreter(tmp_path) == "/usr/bin/python3"
