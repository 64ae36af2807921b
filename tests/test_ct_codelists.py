"""Every code and term of specs/sdtm/codelists against the CDISC CT 2025-03-28 files in
../shared/reference/cdisc-ct-2025-03-28 (SEND, CDASH, Protocol, Define-XML, ADaM publishing
sets). The project never reads these files at run time; this test skips visibly without them.

Rules checked:
- a codelist whose NCI code is in the files: the extensible flag matches; a term with a C-code
  is that submission value with that code in that codelist; a term without a C-code is not a
  term of the codelist (else its code is missing) and is a documented sponsor extension of an
  extensible codelist;
- a codelist that is not in the files (SDTM-only): a term C-code that the files carry as an
  NCI concept must name the same thing (submission value, synonym or preferred term);
- no row lacks a source, and no row still says "code not verified".
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from pipeline.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
#: ../shared beside the project; SHARED_DIR points elsewhere (e.g. from a git worktree)
CT_DIR = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared")) / "reference" / "cdisc-ct-2025-03-28"
FILES = ["SEND_CT_2025-03-28.csv", "CDASH_CT_2025-03-28.csv", "Protocol_CT_2025-03-28.csv",
         "Define-XML_CT_2025-03-28.csv", "ADaM_CT_2025-03-28.csv"]


@pytest.fixture(scope="module")
def ct():
    if not all((CT_DIR / f).is_file() for f in FILES):
        pytest.skip(f"CDISC CT 2025-03-28 files not found in {CT_DIR}: codelists not checked against CT")
    codelists, terms, concepts = {}, {}, {}
    for f in FILES:
        with open(CT_DIR / f, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                if not r["Codelist Code"]:
                    codelists.setdefault(r["Code"], r)
                else:
                    terms.setdefault(r["Codelist Code"], {}).setdefault(r["CDISC Submission Value"], r)
                    concepts.setdefault(r["Code"], []).append(r)
    return codelists, terms, concepts


@pytest.fixture(scope="module")
def spec_codelists():
    return load_spec(ROOT / "specs").codelists


def _names(r: dict) -> set[str]:
    out = {r["CDISC Submission Value"].upper(), r["NCI Preferred Term"].upper()}
    out |= {s.strip().upper() for s in (r["CDISC Synonym(s)"] or "").split(";") if s.strip()}
    return out


def test_every_row_has_a_source(spec_codelists):
    c = spec_codelists
    assert "source" in c.columns
    missing = c[c["source"].str.strip() == ""]
    assert missing.empty, missing[["codelist", "term"]].to_string()
    unverified = c[c["version"].str.contains("not verified") | c["source"].str.contains("code not verified")]
    assert unverified.empty, unverified[["codelist", "term"]].to_string()


def test_codelists_in_the_ct_files(ct, spec_codelists):
    codelists, terms, _ = ct
    c = spec_codelists
    problems = []
    for r in c[c["ncit_code"].isin(list(codelists))].to_dict("records"):
        code, term, tcode = r["ncit_code"], r["term"], r["term_ncit_code"]
        ext = codelists[code]["Codelist Extensible (Yes/No)"]
        if r["extensible"] != ext:
            problems.append(f"{r['codelist']}: extensible {r['extensible']} but CT says {ext}")
        hit = terms.get(code, {}).get(term)
        if tcode:
            if hit is None:
                problems.append(f"{r['codelist']} {term!r}: not a term of CT codelist {code}")
            elif hit["Code"] != tcode:
                problems.append(f"{r['codelist']} {term!r}: code {tcode}, CT says {hit['Code']}")
        else:
            if hit is not None:
                problems.append(f"{r['codelist']} {term!r}: is CT term {hit['Code']} but has no code")
            if ext != "Yes" or r["version"] != "sponsor extension" or not r["source"].startswith("sponsor extension:"):
                problems.append(f"{r['codelist']} {term!r}: no C-code and not a documented extension of an extensible codelist")
    assert not problems, "\n".join(problems)


def test_sdtm_only_codes_name_the_same_concept(ct, spec_codelists):
    codelists, _, concepts = ct
    c = spec_codelists
    rows = c[(c["ncit_code"] != "") & ~c["ncit_code"].isin(list(codelists)) & (c["term_ncit_code"] != "")]
    problems = []
    for r in rows.to_dict("records"):
        known = concepts.get(r["term_ncit_code"])
        if not known:
            assert "not in the shared publishing sets" in r["source"], (r["codelist"], r["term"])
            continue
        named = any(f"'{k['CDISC Submission Value']}'" in r["source"] for k in known)
        if not named and not any(r["term"].upper() in _names(k) or r["decode"].upper() in _names(k) for k in known):
            problems.append(f"{r['codelist']} {r['term']!r}: {r['term_ncit_code']} is "
                            f"{known[0]['CDISC Submission Value']!r} in the CT files")
    assert not problems, "\n".join(problems)


def test_known_wrong_values_are_gone(spec_codelists):
    """LBSTRESU 'sec' (CT: s), LBTESTCD BUN/LIPASE/IL6 (CT: UREAN/LIPASET/INTLK6) and the
    swapped PKPARM/PKPARMCD codelist codes."""
    c = spec_codelists
    unit = c[c["codelist"] == "LBUNIT"]
    assert "sec" not in set(unit["term"]) and "s" in set(unit["term"])
    tests = set(c.loc[c["codelist"] == "LBTESTCD", "term"])
    assert {"UREAN", "LIPASET", "INTLK6"} <= tests and not {"BUN", "LIPASE", "IL6"} & tests
    assert set(c.loc[c["codelist"] == "PKPARMCD", "ncit_code"]) == {"C85839"}
    assert set(c.loc[c["codelist"] == "PKPARM", "ncit_code"]) == {"C85493"}
    assert c.loc[(c["codelist"] == "PKPARMCD") & (c["term"] == "AUCINT"), "term_ncit_code"].tolist() == ["C85566"]
