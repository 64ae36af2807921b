"""End to end over the embedded raw/ extracts with the real gate and domain modules.

Builds the smallest study of raw/ and checks the machinery (not the clinical content, which
the domain tests own): a clean build yields a verified manifest, readable XPT files and
schema-valid Dataset-JSON; a build with data errors writes its findings report and no folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

import pipeline.build as build
from pipeline.export import manifest

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "raw"
SPECS = ROOT / "specs"


def smallest_study() -> str | None:
    studies = [p for p in RAW.iterdir() if p.is_dir() and (SPECS / "studies" / f"{p.name}.toml").is_file()] \
        if RAW.is_dir() else []
    if not studies:
        return None
    return min(studies, key=lambda p: sum(f.stat().st_size for f in p.iterdir())).name


@pytest.mark.slow
def test_build_smallest_real_study(tmp_path, shared_dir):
    sid = smallest_study()
    if sid is None:
        pytest.skip("raw/ holds no study extracts yet (run `make raw`)")
    out = tmp_path / "sdtm"
    args = argparse.Namespace(study=[sid], raw=RAW, specs=SPECS, out=out, debug=False, no_progress=True)
    code = build.run_build(args)
    assert code in (0, 1)
    assert (out / "gate" / "gate_report.csv").is_file()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".cache"]
    assert leftovers == []
    report = out / "gate" / f"{sid}_build_findings.csv"
    if code == 1:
        assert not (out / sid).exists()
        if report.is_file():
            f = pd.read_csv(report, dtype=str, keep_default_na=False)
            assert (f["severity"] == "error").any()
        return
    study = out / sid
    assert manifest.verify_manifest(study) == []
    schema = json.loads((shared_dir / "reference" / "dataset-json-1.1" / "dataset.schema.json").read_text())
    import jsonschema

    for x in sorted(study.glob("*.xpt")):
        frame, meta = pyreadstat.read_xport(str(x))
        assert meta.table_name == x.stem.upper()
        doc = json.loads(x.with_suffix(".json").read_text())
        jsonschema.validate(doc, schema)
        assert doc["records"] == len(frame)
        assert [c["name"] for c in doc["columns"]] == list(frame.columns)
    _sv_covers_every_visit(study)
    _planted_eligibility_deviations(study, sid)
    _cm_reaches_sdtm_relrec_and_listings(study)


def _cm_reaches_sdtm_relrec_and_listings(study: Path) -> None:
    """Every raw cm row is in CM (the shipped extracts have no rejected cm row), each CM record with an
    AE link is related in RELREC to an existing AE record, and the CM listings are written."""
    cm = pyreadstat.read_xport(str(study / "cm.xpt"))[0]
    raw = pd.read_csv(RAW / study.name / "cm.csv", dtype=str, keep_default_na=False)
    prtx = RAW / study.name / "prtx.csv"                # prior therapy lines join CM from form prtx
    n_prior = len(pd.read_csv(prtx, dtype=str, keep_default_na=False)) if prtx.is_file() else 0
    assert len(cm) == len(raw) + n_prior and len(raw) > 0
    rel = pyreadstat.read_xport(str(study / "relrec.xpt"))[0]
    ae = pyreadstat.read_xport(str(study / "ae.xpt"))[0]
    cmae = rel[rel["RELID"].str.startswith("CMAE-")]
    assert (raw["CMAENO"] != "").sum() * 2 == len(cmae)
    a = cmae[cmae["RDOMAIN"] == "AE"]
    known = set(zip(ae["USUBJID"], ae["AESEQ"].astype(int).astype(str)))
    assert set(zip(a["USUBJID"], a["IDVARVAL"])) <= known
    tlf = study / "listings" / "tlf"
    assert (tlf / "l16_2_4_2_cm.pdf").is_file() and (tlf / "l16_2_7_5_crs_icans_treatments.rtf").is_file()


def _sv_covers_every_visit(study: Path) -> None:
    """Every (USUBJID, VISITNUM) of every exported domain is in SV; SV's planned visits are TV's."""
    frames = {x.stem.upper(): pyreadstat.read_xport(str(x))[0] for x in sorted(study.glob("*.xpt"))}
    assert "SV" in frames, "no SV dataset in the build"
    sv, tv = frames["SV"], frames["TV"]
    keys = set(zip(sv["USUBJID"], sv["VISITNUM"].round(2)))
    for name, frame in frames.items():
        if name == "SV" or not {"USUBJID", "VISITNUM"} <= set(frame.columns):
            continue
        have = frame[frame["VISITNUM"].notna()]
        missing = set(zip(have["USUBJID"], have["VISITNUM"].round(2))) - keys
        assert not missing, f"{name}: visits not in SV, e.g. {sorted(missing)[:3]}"
    planned = sv[sv["SVPRESP"] == "Y"]
    tv_pairs = set(zip(tv["VISITNUM"], tv["VISIT"]))
    assert set(zip(planned["VISITNUM"], planned["VISIT"])) <= tv_pairs
    unplanned = sv[sv["SVPRESP"] != "Y"]
    assert (unplanned["VISIT"] == "UNSCHEDULED").all() and (unplanned["SVUPDES"] != "").all()
    assert not set(unplanned["VISITNUM"]) & set(tv["VISITNUM"])


def _planted_eligibility_deviations(study: Path, sid: str) -> None:
    """Every subject the simulator planted as enrolled despite a failed eligibility criterion
    (raw/planted.csv, items ELIG-*) has a DV-ELIG record in DV and an IE record."""
    planted = pd.read_csv(RAW / "planted.csv", dtype=str, keep_default_na=False)
    elig = planted[(planted["study"] == sid) & planted["item"].str.startswith("ELIG")]
    if elig.empty:
        return
    dv = pyreadstat.read_xport(str(study / "dv.xpt"))[0]
    ie = pyreadstat.read_xport(str(study / "ie.xpt"))[0]
    for subjid in sorted(set(elig["subjid"])):  # one or two planted subjects
        who = dv["USUBJID"].str.endswith(f"-{subjid}") & (dv["DVSPID"] == "DV-ELIG")
        assert who.any(), f"planted subject {subjid} has no DV-ELIG record"
        assert ie["USUBJID"].str.endswith(f"-{subjid}").any(), f"planted subject {subjid} has no IE record"
