"""Final and draft builds of a real study (the smallest of raw/): with the shipped coding
decisions a final build has no empty AEDECOD; without them a final build fails on the open
coding queries and a draft build succeeds; build.log and define.xml say which mode ran."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

import pipeline.build as build

from conftest import RAW, SPECS


def _smallest_study() -> str | None:
    if not RAW.is_dir():
        return None
    studies = [p for p in RAW.iterdir() if p.is_dir() and (SPECS / "studies" / f"{p.name}.toml").is_file()]
    return min(studies, key=lambda p: sum(f.stat().st_size for f in p.iterdir())).name if studies else None


@pytest.fixture(scope="module")
def sid() -> str:
    s = _smallest_study()
    if s is None:
        pytest.skip("raw/ holds no study extracts yet (run `make raw`)")
    return s


def _build(specs: Path, out: Path, sid: str, mode: str | None) -> int:
    args = argparse.Namespace(study=[sid], raw=RAW, specs=specs, out=out, debug=False, no_progress=True)
    if mode:
        args.mode = mode
    return build.run_build(args)


@pytest.mark.slow
def test_final_build_with_the_shipped_decisions(tmp_path, sid):
    out = tmp_path / "sdtm"
    assert _build(SPECS, out, sid, None) == 0
    ae, _ = pyreadstat.read_xport(str(out / sid / "ae.xpt"))
    assert len(ae) and ae["AEDECOD"].str.strip().ne("").all()
    assert "build mode final" in (out / sid / "build.log").read_text()
    assert f"coding decisions studies/{sid}.coding.csv sha256" in (out / sid / "build.log").read_text()
    assert "; final build (every verbatim AE term coded)" in (out / sid / "define.xml").read_text()
    q = pd.read_csv(out / sid / "reports" / "coding_queries.csv", dtype=str, keep_default_na=False)
    assert len(q) and set(q["status"]) == {"RESOLVED"}


@pytest.mark.slow
def test_without_decisions_final_fails_and_draft_builds(tmp_path, sid):
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    (specs / "studies" / f"{sid}.coding.csv").unlink()
    out = tmp_path / "sdtm"
    assert _build(specs, out, sid, "final") == 1
    assert not (out / sid).exists()
    f = pd.read_csv(out / "gate" / f"{sid}_build_findings.csv", dtype=str, keep_default_na=False)
    unc = f[f["check"] == "ae_uncoded"]
    assert len(unc) and set(unc["severity"]) == {"error"}
    assert _build(specs, out, sid, "draft") == 0
    log = (out / sid / "build.log").read_text()
    assert "build mode draft (open coding queries are warnings; not for submission)" in log
    assert "; draft build (open coding queries allowed; not for submission)" in (out / sid / "define.xml").read_text()
    ae, _ = pyreadstat.read_xport(str(out / sid / "ae.xpt"))
    assert ae["AEDECOD"].str.strip().eq("").sum() == len(unc)
