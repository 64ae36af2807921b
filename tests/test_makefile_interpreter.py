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


def test_the_probe_asks_for_3_11_and_venv(tmp_path):
    # a candidate that runs the probe's code under this interpreter, with the version it reports
    # replaced: 3.10 is refused, 3.11 accepted
    for version, expected in (((3, 10), "python3"), ((3, 11), "fake")):
        fake = script(tmp_path / "fake", f'shift; exec {sys.executable} -c '
                      f'"import sys; sys.version_info = {version}; exec(sys.argv[1])" "$@"')
        chosen = venv_interpreter(tmp_path, f"PYTHON_CANDIDATES={fake}")
        assert chosen == (fake if expected == "fake" else "python3")


@pytest.mark.skipif(not (Path("/usr/bin/python3").exists()), reason="no /usr/bin/python3 on this machine")
def test_the_default_prefers_the_system_python3(tmp_path):
    probe = subprocess.run(["/usr/bin/python3", "-c", "import sys, venv, ensurepip; "
                            "sys.exit(sys.version_info < (3, 11))"], capture_output=True)
    expected = "/usr/bin/python3" if probe.returncode == 0 else "python3"
    assert venv_interpreter(tmp_path) == expected
