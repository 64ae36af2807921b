"""PR, SUPPPR, FAPR and their RELREC rows from hand-built aph and hsct forms (pipeline.domains.pr):
the mapping of specs/sdtm/mapping, study day and EPOCH of an HSCT after CAR-T, FASEQ after FA's,
the engraftment FADTC rule and the checks. Expected values are counted by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.domains import pr
from pipeline.spec import load_spec

from conftest import SPECS

SID = "ZJU-CD7-SAA"


def form(spec, name, rows):
    cols = spec.form_columns(name)["column"].tolist()
    f = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols, dtype=object)
    f["_FILE"], f["_ROW"] = f"{name}.csv", range(2, len(f) + 2)
    return f


@pytest.fixture(scope="module")
def built():
    spec = load_spec(SPECS)
    study = load_study(SPECS, SID)
    base = {"STUDYID": SID, "SITEID": "01"}
    aph = form(spec, "aph", [
        dict(base, SUBJID="001", PRSPID="APH-1", PRTRT="LEUKAPHERESIS", PRSTDAT="20-OCT-2024", PRSTTIM="09:15",
             APHVOL="250", APHCD3="3.50"),
        dict(base, SUBJID="099", PRSPID="APH-1", PRTRT="LEUKAPHERESIS", PRSTDAT="20-OCT-2024"),   # not in DM
    ])
    hsct = form(spec, "hsct", [
        dict(base, SUBJID="001", PRSPID="HSCT-1", PRTRT="ALLOGENEIC HSCT", PRSTDAT="15-DEC-2024",
             HSCDONOR="HAPLOIDENTICAL", HSCSRC="PERIPHERAL BLOOD", CONDREG="BU/FLU/CY/ATG", CONDSTDAT="08-DEC-2024",
             NEUTENG="Y", NEUTENGDAT="28-DEC-2024", PLATENG="N", AGVHDGR="0", HSCASDAT="20-JAN-2025"),
    ])
    dm = pd.DataFrame({"STUDYID": SID, "USUBJID": [f"{SID}-01-001"], "RFSTDTC": ["2024-11-01T14:00"]})
    se = pd.DataFrame({"STUDYID": SID, "USUBJID": f"{SID}-01-001", "TAETORD": [1.0, 2.0, 3.0, 4.0],
                       "ETCD": ["SCRN", "LD", "CART", "FU"], "EPOCH": ["SCREENING", "LYMPHODEPLETION", "TREATMENT", "FOLLOW-UP"],
                       "SESTDTC": ["2024-10-10", "2024-10-27", "2024-11-01T14:00", "2024-11-30"],
                       "SEENDTC": ["2024-10-27", "2024-11-01T14:00", "2024-11-30", ""]})
    fa = pd.DataFrame({"USUBJID": [f"{SID}-01-001"] * 2, "FASEQ": [1.0, 40.0]})
    ctx = StudyContext(study=study, spec=spec, forms={"aph": aph, "hsct": hsct},
                       datasets={"DM": dm, "SE": se, "FA": fa})
    return pr.build(ctx)


def test_pr_records_study_day_and_epoch(built):
    p = built.datasets["PR"].set_index("PRSPID")
    assert p.loc["APH-1", ["PRDECOD", "PRCAT", "PRSTDTC", "EPOCH"]].tolist() == [
        "LEUKAPHERESIS", "CAR-T PRODUCT COLLECTION", "2024-10-20T09:15", "SCREENING"]
    assert p.loc["APH-1", "PRSTDY"] == -12                    # 12 days before RFSTDTC, no day 0
    h = p.loc["HSCT-1"]
    assert h["PRDECOD"] == "ALLOGENEIC HEMATOPOIETIC STEM CELL TRANSPLANTATION" and h["PRCAT"] == "TRANSPLANT AFTER CAR-T"
    assert h["PRSTDY"] == 45 and h["EPOCH"] == "FOLLOW-UP"    # 01-NOV -> 15-DEC = 44 days -> day 45
    assert p.loc["APH-1", "PRSEQ"] == 1 and h["PRSEQ"] == 2


def test_supppr_qualifiers(built):
    s = built.datasets["SUPPPR"]
    got = dict(zip(s["QNAM"], s["QVAL"]))
    assert got == {"HSCDONOR": "HAPLOIDENTICAL", "HSCSRC": "PERIPHERAL BLOOD", "CONDREG": "BU/FLU/CY/ATG",
                   "CONDSTDT": "2024-12-08"}
    assert set(s["IDVAR"]) == {"PRSEQ"} and set(s["IDVARVAL"]) == {"2"}


def test_fapr_findings_dates_and_seq(built):
    f = built.datasets["FAPR"].set_index("FATESTCD")
    assert set(f["DOMAIN"]) == {"FA"}
    assert f.loc["VOLUME", ["FAORRES", "FAORRESU", "FASTRESN", "FAOBJ"]].tolist() == ["250", "mL", 250.0, "LEUKAPHERESIS"]
    assert f.loc["CD3CELLS", "FASTRESC"] == "3.5"
    # engrafted: the centre's date; not engrafted: the last assessment; grade 0: the last assessment
    assert f.loc["ENGRNEUT", ["FAORRES", "FADTC", "FADY"]].tolist() == ["Y", "2024-12-28", 58]
    assert f.loc["ENGRPLAT", ["FAORRES", "FADTC"]].tolist() == ["N", "2025-01-20"]
    assert f.loc["AGVHDGR", ["FAORRES", "FADTC", "FAOBJ", "FASTRESN"]].tolist() == [
        "0", "2025-01-20", "ACUTE GRAFT VERSUS HOST DISEASE", 0.0]
    assert pd.isna(f.loc["ENGRNEUT", "FASTRESN"])
    assert "CGVHDSEV" not in f.index                          # not collected: no record
    assert sorted(f["FASEQ"]) == [41.0, 42.0, 43.0, 44.0, 45.0]   # after FA's highest FASEQ (40)


def test_relrec_and_accounting(built):
    r = built.datasets["RELREC"]
    assert set(r["RELID"]) == {"PR-1", "PR-2"}
    # the two engraftment findings; the GvHD grade (FAOBJ the GvHD, not the HSCT) is not related
    assert len(r[(r["RELID"] == "PR-2") & (r["RDOMAIN"] == "FA")]) == 2
    rej = built.rejected
    assert rej["form"].tolist() == ["aph"] and rej["row"].tolist() == [3]     # the subject not in DM
    c = built.consumed
    assert sorted(set(zip(c["form"], c["row"]))) == [("aph", 2), ("hsct", 2)]
    assert not (built.findings["severity"] == "error").any()


def test_fapr_record_only_for_rows_with_a_result_and_their_own_pr_record():
    """Two HSCTs, each with a result the other lacks: each FAPR record carries its own row's
    subject, FASPID and result (no record for an empty result, nothing shifted between rows)."""
    spec = load_spec(SPECS)
    study = load_study(SPECS, SID)
    base = {"STUDYID": SID, "SITEID": "01", "PRTRT": "ALLOGENEIC HSCT", "HSCASDAT": "20-JAN-2025"}
    hsct = form(spec, "hsct", [
        dict(base, SUBJID="001", PRSPID="HSCT-A", PRSTDAT="15-DEC-2024", AGVHDGR="2"),
        dict(base, SUBJID="002", PRSPID="HSCT-B", PRSTDAT="16-DEC-2024", NEUTENG="Y", NEUTENGDAT="30-DEC-2024"),
    ])
    dm = pd.DataFrame({"STUDYID": SID, "USUBJID": [f"{SID}-01-001", f"{SID}-01-002"],
                       "RFSTDTC": ["2024-11-01", "2024-11-02"]})
    ctx = StudyContext(study=study, spec=spec, forms={"hsct": hsct}, datasets={"DM": dm})
    f = pr.build(ctx).datasets["FAPR"]
    got = sorted(zip(f["USUBJID"], f["FASPID"], f["FATESTCD"], f["FAORRES"], f["FADTC"]))
    assert got == [(f"{SID}-01-001", "HSCT-A", "AGVHDGR", "2", "2025-01-20"),
                   (f"{SID}-01-002", "HSCT-B", "ENGRNEUT", "Y", "2024-12-30")]
