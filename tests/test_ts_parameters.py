"""TS of the shipped studies: the parameters the FDA Study Data Technical Conformance Guide
expects, TSVALNF where a value is unknown, INTMODEL consistent with NARMS, the pediatric
indicator consistent with the planned ages, and every coded value the CDISC CT 2025-03-28 term
(checked against ../shared; that part skips visibly without it)."""

from __future__ import annotations

import csv
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "specs" / "studies").glob("*.toml"))
CT_DIR = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared")) / "reference" / "cdisc-ct-2025-03-28"
REQUIRED = {"SSTDTC", "SENDTC", "PCLAS", "PDSTIND", "PDPSTIND", "PIPIND", "EXTTIND", "CRMDUR", "NCOHORT",
            "OBJPRIM", "OBJSEC", "OUTMSPRI", "OUTMSSEC", "DOSE", "DOSU", "DOSFRQ", "ROUTE", "REGID", "INTTYPE",
            "INTMODEL", "NARMS", "SPONSOR", "TPHASE", "STYPE", "TTYPE", "TBLIND", "AGEMIN", "AGEMAX", "SEXPOP",
            "PLANSUB", "ADDON", "RANDOM", "TCNTRL", "TITLE", "TRT", "INDIC", "ADAPT", "HLTSUBJI", "LENGTH"}
#: TS parameter -> CDISC codelist of its coded value
VALUE_CODELIST = {"TPHASE": "C66737", "STYPE": "C99077", "TTYPE": "C66739", "TINDTP": "C66736",
                  "INTMODEL": "C99076", "INTTYPE": "C99078", "TBLIND": "C66735", "SEXPOP": "C66732",
                  "ROUTE": "C66729", "DOSU": "C71620", "DOSFRQ": "C71113",
                  **{p: "C66742" for p in ("ADDON", "RANDOM", "ADAPT", "HLTSUBJI", "ONGOSIND", "PDSTIND",
                                           "PDPSTIND", "PIPIND", "EXTTIND", "RDIND")}}
#: SDTMIG 3.4 TS: TSVALNF takes an ISO 21090 NullFlavor code
NULLFLAV = {"NI", "INV", "DER", "OTH", "PINF", "NINF", "UNC", "MSK", "NA", "UNK", "ASKU", "NAV", "NASK", "QS", "TRC", "NP"}


def _ts(path: Path) -> tuple[dict, list[dict]]:
    study = tomllib.loads(path.read_text(encoding="utf-8"))
    return study, study.get("ts", [])


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_required_parameters_and_null_flavours(path):
    study, ts = _ts(path)
    codes = {r["tsparmcd"] for r in ts}
    assert not REQUIRED - codes, f"missing {sorted(REQUIRED - codes)}"
    for r in ts:
        has_val, nf = bool(str(r.get("tsval", ""))), str(r.get("tsvalnf", ""))
        assert has_val != bool(nf), f"{r['tsparmcd']}: exactly one of TSVAL and TSVALNF"
        assert not nf or nf in NULLFLAV, f"{r['tsparmcd']}: TSVALNF {nf!r} is not an ISO 21090 null flavor"


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_design_consistency(path):
    study, ts = _ts(path)
    val = {}
    for r in ts:
        val.setdefault(r["tsparmcd"], []).append(str(r.get("tsval", "")))
    narms = int(val["NARMS"][0])
    assert narms == len(study["arms"])
    assert (val["INTMODEL"] == ["SINGLE GROUP"]) == (narms == 1)
    assert val["PDSTIND"] == (["Y"] if int(study["age_min"]) < 18 else ["N"])
    assert val["AGEMIN"] == [f"P{study['age_min']}Y"]
    assert val["DOSU"] == ["10^6/kg"]
    doses = sorted({a["dose_cells_per_kg"] / 1e6 for a in study["arms"]})
    assert sorted(float(v) for v in val["DOSE"]) == doses
    sponsor = [r for r in ts if r["tsparmcd"] == "SPONSOR"]
    assert len(sponsor) == 1 and "contact" not in str(sponsor[0].get("tsval", "")).lower()


def test_nct06316427_enrols_children():
    """NCT06316427 plans ages 1-70: PDSTIND Y (C49488)."""
    _, ts = _ts(ROOT / "specs" / "studies" / "NCT06316427.toml")
    row = [r for r in ts if r["tsparmcd"] == "PDSTIND"]
    assert [(r["tsval"], r["tsvalcd"]) for r in row] == [("Y", "C49488")]


@pytest.fixture(scope="module")
def ct_terms():
    files = sorted(CT_DIR.glob("*_CT_2025-03-28.csv"))
    if not files:
        pytest.skip(f"CDISC CT 2025-03-28 files not found in {CT_DIR}: TS codes not checked against CT")
    terms = {}
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                if r["Codelist Code"]:
                    terms.setdefault(r["Codelist Code"], {}).setdefault(r["CDISC Submission Value"], r["Code"])
    return terms


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_coded_values_are_ct_terms(path, ct_terms):
    _, ts = _ts(path)
    problems = []
    for r in ts:
        cl = VALUE_CODELIST.get(r["tsparmcd"])
        if cl is None or not r.get("tsval"):
            continue
        want = ct_terms[cl].get(r["tsval"])
        if want is None or r.get("tsvalcd") != want or r.get("tsvcdref") != "CDISC CT":
            problems.append(f"{r['tsparmcd']} {r['tsval']!r}: tsvalcd {r.get('tsvalcd')!r}, CT says {want!r}")
    assert not problems, "\n".join(problems)
