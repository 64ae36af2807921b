"""CM domain (pipeline.domains.cm) on a hand-built fixture: CM-AE links in RELREC, a dangling
link, study day and EPOCH at their boundaries, coding, rejections and the second-source design;
ADAE tocilizumab/corticosteroid flags and the ADSL bridging flag from CM.

Fixture study NCT05164042: consent 2023-12-10, first lymphodepletion 2023-12-27, CAR-T
infusion 2024-01-01T10:00 (study day 1), treatment element 28 days, follow-up from 2024-01-30.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.adam import adae as adae_mod
from pipeline.adam import adsl as adsl_mod
from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.domains import cm as cm_mod
from pipeline.export import checks
from pipeline.spec import load_spec

from conftest import SPECS
from test_rs_domain import INF, dm_frame, form, se_frame

SID = "NCT05164042"
COLS = ["STUDYID", "SITEID", "SUBJID", "CMSPID", "CMTRT", "CMCAT", "CMINDC", "CMAENO", "CMDOSE", "CMDOSU",
        "CMDOSFRQ", "CMROUTE", "CMSTDAT", "CMENDAT", "CMONGO"]


def u(s: str) -> str:
    return f"{SID}-01-{s}"


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


@pytest.fixture(scope="module")
def built(spec):
    study = load_study(SPECS, SID)
    dm = dm_frame(SID, {"001": {"rf": INF}, "002": {"rf": INF}, "003": {"rf": INF}})
    b = {"STUDYID": SID, "SITEID": "01", "CMONGO": "N", "CMDOSU": "mg", "CMROUTE": "INTRAVENOUS"}
    rows = [
        # 001: tocilizumab and dexamethasone for the CRS AE (AE-002), acyclovir from the first LD day
        {**b, "SUBJID": "001", "CMSPID": "CM-001", "CMTRT": "Actemra", "CMCAT": "CRS/ICANS TREATMENT",
         "CMINDC": "CYTOKINE RELEASE SYNDROME", "CMAENO": "AE-002", "CMDOSE": "560", "CMDOSFRQ": "ONCE",
         "CMSTDAT": "03-JAN-2024", "CMENDAT": "03-JAN-2024"},
        {**b, "SUBJID": "001", "CMSPID": "CM-002", "CMTRT": "Dex", "CMCAT": "CRS/ICANS TREATMENT",
         "CMINDC": "CYTOKINE RELEASE SYNDROME", "CMAENO": "AE-002", "CMDOSE": "10", "CMDOSFRQ": "Q6H",
         "CMSTDAT": "04-JAN-2024", "CMENDAT": "06-JAN-2024"},
        {**b, "SUBJID": "001", "CMSPID": "CM-003", "CMTRT": "ACYCLOVIR", "CMCAT": "ANTI-INFECTIVE PROPHYLAXIS",
         "CMDOSE": "400", "CMDOSFRQ": "BID", "CMROUTE": "ORAL", "CMSTDAT": "27-DEC-2023", "CMONGO": "Y"},
        # 001: study-day and EPOCH boundaries: the day before LD, infusion day, last treatment day, first FU day
        {**b, "SUBJID": "001", "CMSPID": "CM-004", "CMTRT": "VENETOCLAX", "CMCAT": "BRIDGING THERAPY",
         "CMDOSE": "400", "CMDOSFRQ": "QD", "CMROUTE": "ORAL", "CMSTDAT": "20-DEC-2023", "CMENDAT": "26-DEC-2023"},
        {**b, "SUBJID": "001", "CMSPID": "CM-005", "CMTRT": "APHERESIS PLATELETS", "CMCAT": "TRANSFUSION",
         "CMDOSE": "250", "CMDOSU": "mL", "CMDOSFRQ": "ONCE", "CMSTDAT": "01-JAN-2024", "CMENDAT": "01-JAN-2024"},
        {**b, "SUBJID": "001", "CMSPID": "CM-006", "CMTRT": "FILGRASTIM", "CMCAT": "GROWTH FACTOR", "CMDOSE": "5",
         "CMDOSU": "ug/kg", "CMDOSFRQ": "QD", "CMROUTE": "SUBCUTANEOUS", "CMSTDAT": "29-JAN-2024",
         "CMENDAT": "30-JAN-2024"},
        {**b, "SUBJID": "001", "CMSPID": "CM-007", "CMTRT": "FILGRASTIM", "CMCAT": "GROWTH FACTOR", "CMDOSE": "5",
         "CMDOSU": "ug/kg", "CMDOSFRQ": "QD", "CMROUTE": "SUBCUTANEOUS", "CMSTDAT": "30-JAN-2024",
         "CMENDAT": "30-JAN-2024"},
        # 002: prior prednisone with a partial start; a treatment linked to an AE the subject does not have
        {**b, "SUBJID": "002", "CMSPID": "CM-001", "CMTRT": "PREDNISONE", "CMCAT": "BACKGROUND GLUCOCORTICOID",
         "CMDOSE": "10", "CMDOSFRQ": "QD", "CMROUTE": "ORAL", "CMSTDAT": "UN-MAR-2023", "CMENDAT": "31-DEC-2023"},
        {**b, "SUBJID": "002", "CMSPID": "CM-002", "CMTRT": "TOCILIZUMAB", "CMCAT": "CRS/ICANS TREATMENT",
         "CMINDC": "CYTOKINE RELEASE SYNDROME", "CMAENO": "AE-009", "CMDOSE": "480", "CMDOSFRQ": "ONCE",
         "CMSTDAT": "05-JAN-2024", "CMENDAT": "05-JAN-2024"},
        # 003: an impossible date; an uncoded verbatim; 099 is not in DM
        {**b, "SUBJID": "003", "CMSPID": "CM-001", "CMTRT": "FLUCONAZOLE", "CMCAT": "ANTI-INFECTIVE PROPHYLAXIS",
         "CMSTDAT": "31-FEB-2024", "CMENDAT": "10-MAR-2024"},
        {**b, "SUBJID": "003", "CMSPID": "CM-002", "CMTRT": "herbal tea", "CMCAT": "OTHER",
         "CMSTDAT": "02-JAN-2024", "CMONGO": "Y"},
        {**b, "SUBJID": "099", "CMSPID": "CM-001", "CMTRT": "ACYCLOVIR", "CMCAT": "ANTI-INFECTIVE PROPHYLAXIS",
         "CMSTDAT": "02-JAN-2024", "CMONGO": "Y"},
    ]
    ae = pd.DataFrame({"STUDYID": SID, "USUBJID": [u("001"), u("001"), u("002")], "AESPID": ["AE-001", "AE-002", "AE-001"],
                       "AESEQ": [1.0, 2.0, 1.0], "AETERM": ["Nausea", "CRS", "ICANS"],
                       "AEDECOD": ["Nausea", "Cytokine release syndrome",
                                   "Immune effector cell-associated neurotoxicity syndrome"],
                       "AETOXGR": ["1", "3", "2"], "AESTDTC": ["2024-01-02", "2024-01-03", "2024-01-05"],
                       "AEENDTC": ["2024-01-04", "2024-01-08", "2024-01-09"]})
    ctx = StudyContext(study=study, spec=spec, forms={"cm": form(rows, "cm", COLS)})
    ctx.datasets["DM"] = dm
    ctx.datasets["SE"] = se_frame(dm, study)
    ctx.datasets["AE"] = ae
    return cm_mod.build(ctx), ctx


def rec(res, subj, spid):
    cm = res.datasets["CM"]
    return cm[(cm["USUBJID"] == u(subj)) & (cm["CMSPID"] == spid)].iloc[0]


def test_relrec_relates_each_treatment_to_the_aeseq_it_treated(built):
    res, _ = built
    rel = res.datasets["RELREC"]
    # 001's CMSEQ by start: VENETOCLAX 1, ACYCLOVIR 2, PLATELETS 3, Actemra 4, Dex 5, FILGRASTIM 6 (29 Jan)
    assert rec(res, "001", "CM-001")["CMSEQ"] == 4 and rec(res, "001", "CM-002")["CMSEQ"] == 5
    got = [tuple(r) for r in rel[["USUBJID", "RDOMAIN", "IDVAR", "IDVARVAL", "RELID"]].itertuples(index=False)]
    assert got == [(u("001"), "CM", "CMSEQ", "4", "CMAE-4"), (u("001"), "AE", "AESEQ", "2", "CMAE-4"),
                   (u("001"), "CM", "CMSEQ", "5", "CMAE-5"), (u("001"), "AE", "AESEQ", "2", "CMAE-5")]
    assert set(rel["RELTYPE"]) == {""} and set(rel["STUDYID"]) == {SID}


def test_dangling_ae_link_is_an_error_and_makes_no_relationship(built):
    res, _ = built
    f = res.findings[res.findings["check"] == "cm_ae_link"]
    assert f[["file", "row", "column", "value", "severity"]].values.tolist() == [["cm.csv", 10, "CMAENO", "AE-009", "error"]]
    assert u("002") not in set(res.datasets["RELREC"]["USUBJID"])
    assert rec(res, "002", "CM-002")["CMTRT"] == "TOCILIZUMAB"        # the medication itself still reaches CM


def test_study_day_and_epoch_at_boundaries(built):
    res, _ = built
    # 26-DEC-2023 is 6 days before the infusion: day -6; 27-DEC (first LD day) -5; 01-JAN day 1
    assert (rec(res, "001", "CM-004")["CMSTDY"], rec(res, "001", "CM-004")["CMENDY"]) == (-12, -6)
    assert rec(res, "001", "CM-003")["CMSTDY"] == -5 and rec(res, "001", "CM-005")["CMSTDY"] == 1
    assert rec(res, "001", "CM-006")["CMSTDY"] == 29 and rec(res, "001", "CM-006")["CMENDY"] == 30
    epochs = {s: rec(res, "001", s)["EPOCH"] for s in ("CM-004", "CM-003", "CM-005", "CM-006", "CM-007")}
    # SCREENING up to the day before LD; the LD day itself; the infusion day (a date without time is in
    # the element that starts that day); 29 Jan still TREATMENT (follow-up starts RFSTDTC + 28 + 1 = 30 Jan)
    assert epochs == {"CM-004": "SCREENING", "CM-003": "LYMPHODEPLETION", "CM-005": "TREATMENT",
                      "CM-006": "TREATMENT", "CM-007": "FOLLOW-UP"}
    prior = rec(res, "002", "CM-001")
    assert prior["CMSTDTC"] == "2023-03" and np.isnan(prior["CMSTDY"]) and prior["EPOCH"] == ""
    ongoing = rec(res, "001", "CM-003")
    assert (ongoing["CMENDTC"], ongoing["CMENRTPT"], ongoing["CMENTPT"]) == \
        ("", "ONGOING", load_study(SPECS, SID).data_cutoff)


def test_coding_rejections_and_reconciliation(built, spec):
    res, ctx = built
    assert rec(res, "001", "CM-001")["CMDECOD"] == "TOCILIZUMAB"       # trade name
    assert rec(res, "001", "CM-002")["CMDECOD"] == "DEXAMETHASONE"     # abbreviation
    assert rec(res, "001", "CM-003")["CMDECOD"] == "ACICLOVIR"         # INN spelling
    assert rec(res, "003", "CM-002")["CMDECOD"] == ""
    q = res.reports["cm_coding_queries"].set_index("CMTRT")
    assert q.loc["herbal tea", "status"] == "OPEN" and q.loc["Actemra", "status"] == "RESOLVED"
    warn = res.findings[res.findings["check"] == "cm_uncoded"]
    assert warn["severity"].tolist() == ["warning"] and warn["row"].tolist() == [12]
    rej = res.rejected.sort_values("row")
    assert rej[["form", "row", "column", "value"]].values.tolist() == [["cm", 11, "CMSTDAT", "31-FEB-2024"],
                                                                      ["cm", 13, "SUBJID", "099"]]
    # every raw row is in CM or rejected
    cm_rows = set(res.consumed.loc[res.consumed["dataset"] == "CM", "row"])
    assert cm_rows | set(rej["row"]) == set(range(2, 14)) and not cm_rows & set(rej["row"])
    assert set(res.consumed.loc[res.consumed["dataset"] == "RELREC", "row"]) == {2, 3}
    f = checks.check_dataset(checks.order_dataset(res.datasets["CM"], spec, "CM"), spec, "CM", SID, ctx.datasets["DM"])
    assert f[f["severity"] == "error"].empty, f["message"].tolist()


def test_crs_icans_treatments_report(built):
    res, _ = built
    t = res.reports["crs_icans_treatments"]
    assert t[["USUBJID", "AESEQ", "CMSEQ", "CMDECOD", "CMSTDY"]].values.tolist() == [
        [u("001"), 2, 4, "TOCILIZUMAB", 3.0], [u("001"), 2, 5, "DEXAMETHASONE", 4.0]]


def test_a_second_source_form_feeds_cm_by_spec_rows(spec, tmp_path):
    """A prior-therapy form joins CM through rows of cm_sources.csv (a constant CMCAT)."""
    src = spec.rule("cm_sources")
    extra = pd.DataFrame({"form": "pt", "target": ["CMSPID", "CMTRT", "CMCAT", "CMSTDAT", "CMONGO"],
                          "column": ["PTSPID", "PTTRT", "", "PTSTDAT", ""],
                          "value": ["", "", "PRIOR CANCER THERAPY", "", "N"], "source": "test"})
    table = pd.concat([src, extra], ignore_index=True)
    pt = pd.DataFrame({"STUDYID": [SID], "SITEID": ["01"], "SUBJID": ["001"], "PTSPID": ["PT-1"],
                       "PTTRT": ["HYPER-CVAD"], "PTSTDAT": ["UN-JAN-2022"], "_FILE": ["pt.csv"], "_ROW": [2]})
    study = load_study(SPECS, SID)
    ctx = StudyContext(study=study, spec=spec, forms={"cm": form([], "cm", COLS), "pt": pt})
    out = cm_mod.source_records(ctx, table)
    r = out[out["_FORM"] == "pt"].iloc[0]
    assert (r["CMSPID"], r["CMTRT"], r["CMCAT"], r["CMSTDAT"], r["CMONGO"], r["_ROW"]) == \
        ("PT-1", "HYPER-CVAD", "PRIOR CANCER THERAPY", "UN-JAN-2022", "N", 2)


def test_adae_flags_and_adsl_bridging_from_cm(built, spec):
    res, ctx = built
    study = ctx.study
    adam_spec = load_spec(SPECS, "adam")
    ae = ctx.datasets["AE"].assign(ASTDT=np.nan, AENDT=np.nan, DCUTDT=np.nan)
    fa = pd.DataFrame({"USUBJID": [u("001"), u("002")], "FAOBJ": ["Cytokine release syndrome",
                                                                   "Immune effector cell-associated neurotoxicity syndrome"]})
    flags = adae_mod.cm_given_flags(ae, res.datasets["CM"], res.datasets["RELREC"], fa, adam_spec)
    # 001 AE-001 (nausea): no daily assessments -> null; AE-002 CRS: tocilizumab and dexamethasone -> Y, Y;
    # 002 ICANS: its tocilizumab link dangles (no RELREC) -> N, N
    assert flags["TOCIFL"].tolist() == ["", "Y", "N"] and flags["CSTRFL"].tolist() == ["", "Y", "N"]
    subj = pd.Series([u("001"), u("002"), u("003")])
    assert adsl_mod.bridging_flag(res.datasets["CM"], subj).tolist() == ["Y", "N", "N"]
    assert adsl_mod.bridging_flag(None, subj).tolist() == ["N", "N", "N"]
    assert study.studyid == SID
