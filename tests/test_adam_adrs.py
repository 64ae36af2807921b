"""ADRS and the response reports from SDTM RS/LBDA/LB, on the hand-built studies of
test_rs_domain (expected values worked out by hand there; see its module docstring):

Leukemia (NCT05164042, CR/CRi at day 28 +/- 3), infusion 01-JAN-2024 10:00:
- 001: DAY 28 blasts 5.0: criteria NR, investigator CR; MONTH 2 blasts 1.0: CR for both.
- 002: DAY 28 blasts 1.0, PLT 72, ANC 1.6: CRh (investigator CR); MONTH 3 RELAPSE; died 01-MAY-2024.
- 003: DAY 28 blasts 4.9, counts 7 days before: CR for both.
- 004: DAY 28 counts 8 days away: criteria NE, investigator CR.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.adam import adrs as adrs_mod
from pipeline.adam import adsl as adsl_mod
from pipeline.adam import reports
from pipeline.adam.common import finish
from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.domains import rs as rs_mod
from pipeline.rules import response as R
from pipeline.spec import load_spec

from conftest import SPECS
from test_rs_domain import INF, RS_COLS, SID, dm_frame, form, leukemia_context, u


@pytest.fixture(scope="module")
def sdtm_spec():
    return load_spec(SPECS)


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS, "adam")


def sdtm_of(ctx: StudyContext, primdiag: str = "B-CELL ACUTE LYMPHOBLASTIC LEUKEMIA",
            lka: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The SDTM datasets of a test context after RS: DM (+SITEID etc.), EX with the CAR-T
    infusion of the treated subjects, SUPPDM PRIMDIAG, SUPPDS LKADTC."""
    res = rs_mod.build(ctx)
    sdtm = {**ctx.datasets, **res.datasets}
    dm = sdtm["DM"].copy()
    for c, v in {"SITEID": "01", "AGE": 40.0, "AGEU": "YEARS", "SEX": "F", "RACE": "ASIAN", "ARMCD": "A", "ARM": "A",
                 "ACTARMCD": "A", "ACTARM": "A"}.items():
        dm[c] = v
    sdtm["DM"] = dm
    treated = dm[dm["RFSTDTC"] != ""]
    sdtm["EX"] = pd.DataFrame({"USUBJID": treated["USUBJID"], "EXCAT": "CAR-T INFUSION", "EXSTDTC": treated["RFSTDTC"],
                               "EXENDTC": treated["RFSTDTC"], "EXDOSE": 1e6, "EXDOSU": "cells/kg"})
    sdtm["SUPPDM"] = pd.DataFrame({"USUBJID": dm["USUBJID"], "QNAM": "PRIMDIAG", "QVAL": primdiag})
    lka = lka or {}
    sdtm["SUPPDS"] = pd.DataFrame({"USUBJID": list(lka), "QNAM": "LKADTC", "QVAL": list(lka.values())})
    return sdtm


def cm_frame(sid: str, rows: list[tuple]) -> pd.DataFrame:
    """SDTM CM records of category BACKGROUND GLUCOCORTICOID, daily (QD) oral doses in mg:
    (subject, CMDECOD, dose, CMSTDTC, CMENDTC)."""
    return pd.DataFrame({"USUBJID": [f"{sid}-01-{r[0]}" for r in rows], "CMSEQ": np.arange(1.0, len(rows) + 1),
                         "CMTRT": [r[1] for r in rows], "CMDECOD": [r[1] for r in rows],
                         "CMCAT": "BACKGROUND GLUCOCORTICOID", "CMDOSE": [float(r[2]) for r in rows], "CMDOSU": "mg",
                         "CMDOSFRQ": "QD", "CMSTDTC": [r[3] for r in rows], "CMENDTC": [r[4] for r in rows]})


def derive(sdtm, spec, study):
    adsl = finish(adsl_mod.build(sdtm, spec, study), spec, "ADSL")
    out = adrs_mod.build(sdtm, {"ADSL": adsl}, spec, study)
    adam = {"ADSL": adsl, "ADRS": finish(out["ADRS"], spec, "ADRS")}
    return adam, out


def param(adrs: pd.DataFrame, code: str) -> dict:
    p = adrs[adrs["PARAMCD"] == code]
    return {(r.USUBJID[-3:], "" if np.isnan(r.ADT) else str((pd.Timestamp("1960-01-01") + pd.Timedelta(days=r.ADT)).date())):
            r.AVALC for r in p.itertuples()}


@pytest.fixture(scope="module")
def leuk(sdtm_spec, spec):
    ctx = leukemia_context(sdtm_spec)
    study = ctx.study
    sdtm = sdtm_of(ctx, lka={u("001"): "2024-06-30"})
    adam, out = derive(sdtm, spec, study)
    return sdtm, adam, out, study


def test_investigator_and_derived_parameters(leuk):
    _, adam, _, _ = leuk
    a = adam["ADRS"]
    # only post-infusion assessments (protocol day >= 1)
    assert param(a, "INVRESP") == {
        ("001", "2024-01-29"): "CR", ("001", "2024-03-01"): "CR", ("002", "2024-01-29"): "CR",
        ("002", "2024-03-31"): "RELAPSE", ("003", "2024-01-29"): "CR", ("004", "2024-01-29"): "CR"}
    assert param(a, "OVRLRESP") == {
        ("001", "2024-01-29"): "NR", ("001", "2024-03-01"): "CR", ("002", "2024-01-29"): "CRi",
        ("002", "2024-03-31"): "RELAPSE", ("003", "2024-01-29"): "CR", ("004", "2024-01-29"): "NE"}
    assert set(a.loc[a["PARAMCD"] == "OVRLRESP", "RSEVAL"]) == {"SPONSOR"}
    # day 28 = 29-JAN-2024 = analysis day 29
    r = a[(a["PARAMCD"] == "INVRESP") & (a["USUBJID"] == u("001"))].sort_values("ADT")
    assert r["ADY"].tolist() == [29.0, 61.0] and r["AVISIT"].tolist() == ["DAY 28", "MONTH 2"]


def test_best_overall_response_and_ties(leuk):
    _, adam, _, _ = leuk
    a = adam["ADRS"]
    assert param(a, "BOR") == {("001", "2024-03-01"): "CR", ("002", "2024-01-29"): "CRi",
                               ("003", "2024-01-29"): "CR", ("004", ""): "NE"}
    # investigator: CR at day 28 and month 2 for 001 - a tie on the best rank: the earliest
    assert param(a, "INVBOR") == {("001", "2024-01-29"): "CR", ("002", "2024-01-29"): "CR",
                                  ("003", "2024-01-29"): "CR", ("004", "2024-01-29"): "CR"}


def test_bor_tie_rule_on_equal_ranks(spec):
    order = R.response_order(spec)
    resp = pd.DataFrame({"USUBJID": ["S"] * 3, "RSEVAL": ["SPONSOR"] * 3, "RSDTC": ["2024-02-01", "2024-03-01", "2024-04-01"],
                         "RSDY": [32.0, 61.0, 92.0], "response": ["NR", "SD", "NR"]})
    # NR and SD share rank 7: the earliest (NR on 2024-02-01) is the BOR
    b = R.best_overall_response(resp, order, 365)
    assert (b["BOR"].iloc[0], b["RSDTC"].iloc[0]) == ("NR", "2024-02-01")


def test_responder_parameters_and_denominator(leuk):
    _, adam, _, _ = leuk
    a = adam["ADRS"]
    # CR/CRi at day 28 +/- 3: derived 002 (ANC 1.6, platelets 72: CRh, mapped to CRi by the
    # study's category_map) and 003 (CR); investigator 001-004 (CR)
    rsp = {k[0]: v for k, v in param(a, "RSPD28").items()}
    irsp = {k[0]: v for k, v in param(a, "IRSPD28").items()}
    assert rsp == {"001": "N", "002": "Y", "003": "Y", "004": "N"}
    assert irsp == {"001": "Y", "002": "Y", "003": "Y", "004": "Y"}
    assert "005" not in rsp                                      # never infused: not in the safety population


def test_mrd_negative_remission(leuk):
    _, adam, _, _ = leuk
    # 001 month 2: derived CR with MRD not detected at sensitivity 0.01% (<= 0.01%) -> Y; 003 has no MRD record -> N
    m = {k[0]: v for k, v in param(adam["ADRS"], "MRDNCR").items()}
    assert m == {"001": "Y", "002": "N", "003": "N", "004": "N"}
    r = adam["ADRS"][(adam["ADRS"]["PARAMCD"] == "MRDNCR") & (adam["ADRS"]["USUBJID"] == u("001"))].iloc[0]
    assert (r["SRCDOM"], r["SRCVAR"]) == ("LB", "LBSTRESC")
    # MRDSTAT of 001: day 28 1.20% >= 0.01% POSITIVE; month 2 not detected at 0.01% NEGATIVE
    assert param(adam["ADRS"], "MRDSTAT") == {("001", "2024-01-29"): "POSITIVE", ("001", "2024-03-01"): "NEGATIVE"}


def test_every_adrs_record_traces_to_sdtm(leuk):
    sdtm, adam, _, _ = leuk
    a = adam["ADRS"]
    rs_keys = set(zip(sdtm["RS"]["USUBJID"], sdtm["RS"]["RSSEQ"].astype(float)))
    lb_keys = set(zip(sdtm["LBDA"]["USUBJID"], sdtm["LBDA"]["LBSEQ"].astype(float)))
    own = set(zip(a["USUBJID"], a["ASEQ"]))
    for r in a.itertuples():
        if r.SRCDOM == "RS":
            assert (r.USUBJID, r.SRCSEQ) in rs_keys
        elif r.SRCDOM == "LB":
            assert (r.USUBJID, r.SRCSEQ) in lb_keys
        elif r.SRCDOM == "ADRS":
            assert (r.USUBJID, r.SRCSEQ) in own
            src = a[(a["USUBJID"] == r.USUBJID) & (a["ASEQ"] == r.SRCSEQ)].iloc[0]
            assert src["SRCDOM"] == "RS"                          # one hop to SDTM
        else:
            assert r.SRCDOM == "ADSL" and r.AVALC == "N"          # non-responder without an assessment
    assert not a.duplicated(["USUBJID", "ASEQ"]).any()


def test_reports_from_adrs(leuk, spec):
    sdtm, adam, out, study = leuk
    rep = reports.response_reports(adam, out, spec, study)
    d = rep["response_discrepancies"]
    got = {(r.USUBJID[-3:], r.VISIT, r.investigator_response, r.derived_response) for r in d.itertuples()}
    assert got == {("001", "DAY 28", "CR", "NR"), ("002", "DAY 28", "CR", "CRi"), ("004", "DAY 28", "CR", "NE")}
    row4 = d[d["USUBJID"] == u("004")].iloc[0]
    assert row4["derivation_basis"] == "NE: CR undetermined, missing NEUT, PLAT"
    assert np.isnan(row4["neut"])                                  # 8 days away: ignored
    a = rep["response_assessments"].set_index(["USUBJID", "RSDTC"])
    r3 = a.loc[(u("003"), "2024-01-29")]
    assert (r3["neut"], r3["plat"], r3["neut_days"], r3["neut_date"]) == (1.0, 100.0, -7.0, "2024-01-22")
    assert a.loc[(u("002"), "2024-03-31"), "prior_remission"] == "Y"
    o = rep["orr_summary"].set_index("RSEVAL")
    inv, drv = o.loc["INVESTIGATOR"], o.loc["SPONSOR"]
    # N = 4: investigator 4/4 = 100.0% (CI 39.8-100.0); derived 2/4 = 50.0% (002 CRh -> CRi and 003 CR;
    # Clopper-Pearson 2/4: Beta(0.025; 2, 3) = 0.0676, Beta(0.975; 3, 2) = 0.9324)
    assert (inv["n_responders"], inv["orr_pct"], inv["ci_lower_pct"], inv["ci_upper_pct"]) == (4, 100.0, 39.8, 100.0)
    assert (drv["n_responders"], drv["orr_pct"], drv["ci_lower_pct"], drv["ci_upper_pct"]) == (2, 50.0, 6.8, 93.2)
    e = rep["event_dates"].set_index(["USUBJID", "RSEVAL"])
    s2 = e.loc[(u("002"), "SPONSOR")]
    assert (s2["progression_date"], s2["progression"], s2["DTHDTC"]) == ("2024-03-31", "RELAPSE", "2024-05-01")
    assert s2["last_known_alive_date"] == "2024-05-01"             # died: last known alive = death date
    assert e.loc[(u("001"), "INVESTIGATOR"), "last_known_alive_date"] == "2024-06-30"  # SUPPDS LKADTC
    b = rep["bor"].set_index(["USUBJID", "RSEVAL"])
    assert b.loc[(u("004"), "SPONSOR"), "BOR"] == "NE" and b.loc[(u("004"), "SPONSOR"), "RSDTC"] == ""


def test_no_blood_counts_gives_ne(sdtm_spec, spec):
    ctx = leukemia_context(sdtm_spec)
    del ctx.datasets["LB"]
    adam, _ = derive(sdtm_of(ctx), spec, ctx.study)
    # blasts >= 5% need no counts; remission cannot be shown, so 002's marrow relapse is NR
    assert param(adam["ADRS"], "OVRLRESP") == {
        ("001", "2024-01-29"): "NR", ("001", "2024-03-01"): "NE", ("002", "2024-01-29"): "NE",
        ("002", "2024-03-31"): "NR", ("003", "2024-01-29"): "NE", ("004", "2024-01-29"): "NE"}


def test_aplastic_anemia_counts_at_thresholds(sdtm_spec, spec):
    sid = "ZJU-CD7-SAA"
    study = load_study(SPECS, sid)
    dm = dm_frame(sid, {"001": {"rf": INF}, "002": {"rf": INF}})
    b = {"STUDYID": sid, "SITEID": "01", "VISIT": "MONTH 3", "RSDAT": "31-MAR-2024", "TRANSIND": "Y"}
    rs = form([{**b, "SUBJID": "001", "BMCELL": "35", "RSORRES": "CR"},
               {**b, "SUBJID": "002", "BMCELL": "30", "RSORRES": "PR"}], "rs", RS_COLS)
    ctx = StudyContext(study=study, spec=sdtm_spec, forms={"rs": rs})
    ctx.datasets["DM"] = dm

    def lab(s, test, value):
        return {"USUBJID": f"{sid}-01-{s}", "LBTESTCD": test, "LBDTC": "2024-03-30", "LBSTRESN": value, "LBSPEC": "BLOOD",
                "LBSEQ": 1.0}
    ctx.datasets["LB"] = pd.DataFrame([lab("001", "HGB", 110.0), lab("001", "NEUT", 1.5), lab("001", "PLAT", 120.0),
                                       lab("001", "RETI", 60.0), lab("002", "HGB", 101.0), lab("002", "NEUT", 1.6),
                                       lab("002", "PLAT", 101.0), lab("002", "RETI", 60.0)])
    adam, out = derive(sdtm_of(ctx, primdiag="SEVERE APLASTIC ANEMIA"), spec, study)
    # 001: ANC 1.5 is not > 1.5 -> PR; 002: Hb 101 g/L, ANC 1.6, platelets 101 -> CR
    assert param(adam["ADRS"], "OVRLRESP") == {("001", "2024-03-31"): "PR", ("002", "2024-03-31"): "CR"}
    d = reports.response_reports(adam, out, spec, study)["response_discrepancies"]
    assert [(r.USUBJID[-3:], r.investigator_response, r.derived_response) for r in d.itertuples()] == \
        [("001", "CR", "PR"), ("002", "PR", "CR")]


def test_autoimmune_orr_counts_each_disease_by_its_own_criteria(sdtm_spec, spec):
    """Four subjects, one per disease (SUPPMH DISSUBTP), infused 01-JAN-2024, month-3 assessment
    on 30-MAR-2024 (protocol day 89, inside day 90 +/- 14):

    - 001 SLE: DAY 28 SLEDAI-2K 4, PGA 1.0, prednisone 7.5 -> LLDAS = PR; MONTH 3 clinical
      SLEDAI 0 and PGA 0.3 but prednisone 7.5 > 5 -> not DORIS, still LLDAS = PR (investigator CR);
    - 002 AAV: BVAS 12 -> 0 with methylprednisolone 4 mg (= prednisone 5) <= 7.5 -> EULAR remission = CR;
    - 003 IIM: TIS 39.5 -> minimal improvement (>= 20, < 40) -> PR;
    - 004 SSC: CRISS 0.59 < 0.60 -> NR (investigator PR); mRSS 20 -> 18 is no progression.
    Derived ORR at month 3: 3 of 4 (75.0%); investigator: 4 of 4."""
    sid = "ZJU-CD7-AID"
    study = load_study(SPECS, sid)
    subj = ["001", "002", "003", "004"]
    dm = dm_frame(sid, {s: {"rf": INF} for s in subj})
    b = {"STUDYID": sid, "SITEID": "01"}
    scr = {**b, "VISIT": "SCREENING", "RSDAT": "20-DEC-2023", "RSORRES": "NE"}
    m3 = {**b, "VISIT": "MONTH 3", "RSDAT": "30-MAR-2024"}
    rs = form([
        {**scr, "SUBJID": "001", "DASCORE": "10", "CSLEDAI": "8", "PGA": "2.0"},
        {**b, "SUBJID": "001", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "DASCORE": "4", "CSLEDAI": "2", "PGA": "1.0", "RSORRES": "PR"},
        {**m3, "SUBJID": "001", "DASCORE": "2", "CSLEDAI": "0", "PGA": "0.3", "RSORRES": "CR"},
        {**scr, "SUBJID": "002", "BVAS": "12"},
        {**m3, "SUBJID": "002", "BVAS": "0", "RSORRES": "CR"},
        {**scr, "SUBJID": "003"},
        {**m3, "SUBJID": "003", "TIS": "39.5", "RSORRES": "PR"},
        {**scr, "SUBJID": "004", "MRSS": "20"},
        {**m3, "SUBJID": "004", "MRSS": "18", "CRISS": "0.59", "RSORRES": "PR"},
    ], "rs", RS_COLS)
    ctx = StudyContext(study=study, spec=sdtm_spec, forms={"rs": rs})
    ctx.datasets["DM"] = dm
    sdtm = sdtm_of(ctx, primdiag="")
    # the glucocorticoid doses, in SDTM CM (prednisone equivalent on each assessment date):
    # 001 prednisone 20 -> 7.5 from the DAY 28 date; 002 20 -> methylprednisolone 4 mg (x 1.25 = 5.0)
    # from the MONTH 3 date; 003 20 -> 10; 004 15 -> 10 (each change on its record's first day)
    sdtm["CM"] = cm_frame(sid, [("001", "PREDNISONE", 20, "2023-06-01", "2024-01-28"),
                                ("001", "PREDNISONE", 7.5, "2024-01-29", ""),
                                ("002", "PREDNISONE", 20, "2023-06-01", "2024-03-29"),
                                ("002", "METHYLPREDNISOLONE", 4, "2024-03-30", ""),
                                ("003", "PREDNISONE", 20, "2023-06-01", "2024-03-29"),
                                ("003", "PREDNISONE", 10, "2024-03-30", ""),
                                ("004", "PREDNISONE", 15, "2023-06-01", "2024-03-29"),
                                ("004", "PREDNISONE", 10, "2024-03-30", "")])
    groups = {"001": "SLE", "002": "AAV", "003": "IIM", "004": "SSC"}
    uid = {s: f"{sid}-01-{s}" for s in subj}
    sdtm["SUPPMH"] = pd.DataFrame({"USUBJID": [uid[s] for s in subj], "QNAM": "DISSUBTP",
                                   "QVAL": [groups[s] for s in subj], "IDVAR": "MHSEQ", "IDVARVAL": "1"})
    adam, out = derive(sdtm, spec, study)
    a = adam["ADRS"]
    # BLGCDOSE on TRTSDT 2024-01-01: 20, 20, 20, 15 mg/day
    assert adam["ADSL"].set_index("USUBJID")["BLGCDOSE"].tolist() == [20.0, 20.0, 20.0, 15.0]
    assert param(a, "OVRLRESP") == {("001", "2024-01-29"): "PR", ("001", "2024-03-30"): "PR",
                                    ("002", "2024-03-30"): "CR", ("003", "2024-03-30"): "PR",
                                    ("004", "2024-03-30"): "NR"}
    basis = a[(a["PARAMCD"] == "OVRLRESP") & (a["USUBJID"] == uid["003"])]["ABASIS"].tolist()
    assert basis == ["MINIMAL met; PR per protocol category map"]
    assert {k[0]: v for k, v in param(a, "RSPD90").items()} == {"001": "Y", "002": "Y", "003": "Y", "004": "N"}
    assert {k[0]: v for k, v in param(a, "IRSPD90").items()} == {"001": "Y", "002": "Y", "003": "Y", "004": "Y"}
    assert sorted({int(c[4:]) for c in set(a["PARAMCD"]) if c.startswith("RSPD")}) == [28, 90, 180, 365, 545, 730]
    orr = reports.response_reports(adam, out, spec, study)["orr_summary"]
    prim = orr[orr["primary"] == "Y"].set_index("RSEVAL")
    assert prim.loc["SPONSOR", ["n_responders", "orr_pct"]].tolist() == [3, 75.0]
    assert prim.loc["INVESTIGATOR", ["n_responders", "orr_pct"]].tolist() == [4, 100.0]
    assert SID  # the leukemia fixture's study id is imported from test_rs_domain


def test_autoimmune_glucocorticoid_dose_read_from_cm_at_record_boundaries(sdtm_spec, spec):
    """SLE (SUPPMH DISSUBTP): DORIS remission (CR) needs the prednisone-equivalent dose <= 5 mg/day
    and LLDAS (PR) <= 7.5 mg/day (response_autoimmune.csv) on the assessment date, from the CM
    records covering it (first and last day included). Every MONTH 3 assessment has clinical
    SLEDAI-2K 0, SLEDAI-2K 2 and PGA 0.3, so the dose alone decides CR / PR / NR."""
    sid = "ZJU-CD7-AID"
    study = load_study(SPECS, sid)
    subj = ["001", "002", "003", "004", "005", "006"]
    dm = dm_frame(sid, {s: {"rf": INF} for s in subj})
    b = {"STUDYID": sid, "SITEID": "01"}
    rows = []
    for s in subj:
        rows += [{**b, "SUBJID": s, "VISIT": "SCREENING", "RSDAT": "20-DEC-2023", "DASCORE": "10", "CSLEDAI": "8",
                  "PGA": "2.0", "RSORRES": "NE"},
                 {**b, "SUBJID": s, "VISIT": "MONTH 3", "RSDAT": "30-MAR-2024", "DASCORE": "2", "CSLEDAI": "0",
                  "PGA": "0.3", "RSORRES": "CR"}]
    ctx = StudyContext(study=study, spec=sdtm_spec, forms={"rs": form(rows, "rs", RS_COLS)})
    ctx.datasets["DM"] = dm
    sdtm = sdtm_of(ctx, primdiag="SYSTEMIC LUPUS ERYTHEMATOSUS")
    sdtm["SUPPMH"] = pd.DataFrame({"USUBJID": [f"{sid}-01-{s}" for s in subj], "QNAM": "DISSUBTP", "QVAL": "SLE",
                                   "IDVAR": "MHSEQ", "IDVARVAL": "1"})
    sdtm["CM"] = cm_frame(sid, [
        # 001: methylprednisolone 4 mg ends ON the assessment day: 4 x 1.25 = 5.0 mg prednisone -> CR
        ("001", "METHYLPREDNISOLONE", 4, "2024-02-01", "2024-03-30"), ("001", "METHYLPREDNISOLONE", 8, "2024-03-31", ""),
        # 002: 10 mg ended the day before; 5 mg starts ON the assessment day -> 5.0 -> CR
        ("002", "PREDNISONE", 10, "2024-01-01", "2024-03-29"), ("002", "PREDNISONE", 5, "2024-03-30", ""),
        # 003: 4.1 mg methylprednisolone = 5.125 mg prednisone > 5 -> not DORIS; <= 7.5 -> LLDAS = PR
        ("003", "METHYLPREDNISOLONE", 4.1, "2024-01", ""),
        # 004: two records overlap on the assessment day (taper written with a shared day): 2.5 + 5 = 7.5 <= 7.5 -> LLDAS = PR
        ("004", "PREDNISONE", 2.5, "2024-03-01", "2024-03-30"), ("004", "PREDNISONE", 5, "2024-03-30", ""),
        # 005: 10 mg stopped on 2024-03-29, nothing after: 0 mg on 2024-03-30 -> CR
        ("005", "PREDNISONE", 10, "2023-10-01", "2024-03-29"),
        # 006: 7.6 mg > 7.5 -> neither DORIS nor LLDAS; SLEDAI-2K 10 -> 2 is no worsening -> NR
        ("006", "PREDNISONE", 7.6, "2024-01-01", "")])
    adam, out = derive(sdtm, spec, study)
    got = param(adam["ADRS"], "OVRLRESP")
    assert got == {("001", "2024-03-30"): "CR", ("002", "2024-03-30"): "CR", ("003", "2024-03-30"): "PR",
                   ("004", "2024-03-30"): "PR", ("005", "2024-03-30"): "CR",
                   ("006", "2024-03-30"): "NR"}


def test_cm_daily_dose_by_hand():
    """pipeline.rules.response.cm_daily_dose: frequency x factor, coverage, partial dates, unknowns."""
    classes = pd.DataFrame({"cmdecod": ["PREDNISONE", "METHYLPREDNISOLONE", "DEXAMETHASONE"],
                            "drug_class": "CORTICOSTEROID", "prednisone_equivalent_per_mg": ["1", "1.25", "6.6667"]})
    freq = pd.DataFrame({"cmdosfrq": ["QD", "BID"], "per_day": ["1", "2"]})
    cm = pd.DataFrame({"USUBJID": ["A", "B", "C", "D", "E"], "CMCAT": ["BACKGROUND GLUCOCORTICOID"] * 4 + ["OTHER"],
                       "CMDECOD": ["PREDNISONE", "METHYLPREDNISOLONE", "PREDNISONE", "PREDNISONE", "PREDNISONE"],
                       "CMDOSE": [2.5, 4.0, 5.0, 10.0, 50.0], "CMDOSFRQ": ["BID", "QD", "Q6H", "QD", "QD"],
                       "CMSTDTC": ["2024-03", "2024-01-01", "2024-01-01", "2023", "2024-01-01"],
                       "CMENDTC": ["2024-03-31", "", "", "2024-02", ""]})
    pts = pd.DataFrame({"USUBJID": ["A", "A", "A", "B", "C", "D", "D", "E"],
                        "_date": pd.to_datetime(["2024-03-01", "2024-03-31", "2024-04-01", "2030-01-01", "2024-02-01",
                                                 "2024-02-29", "2024-03-01", "2024-02-01"])})
    d = R.cm_daily_dose(pts, cm, "BACKGROUND GLUCOCORTICOID", "CORTICOSTEROID", classes, freq)
    # A: 2.5 mg BID = 5 from the first day of the partial start month to the end day, 0 after;
    # B: 4 x 1.25 = 5 while ongoing; C: frequency without a per-day count = unknown;
    # D: partial end 2024-02 covers up to 29 Feb 2024 (leap year); E: another category = 0
    assert d.tolist()[:2] == [5.0, 5.0] and d.iloc[2] == 0.0 and d.iloc[3] == 5.0 and np.isnan(d.iloc[4])
    assert d.iloc[5] == 10.0 and d.iloc[6] == 0.0 and d.iloc[7] == 0.0


def test_shipped_glucocorticoid_equivalents_and_frequencies_by_hand(spec):
    """The shipped cm_drug_classes.csv and cm_frequency.csv against their sources, by hand:
    prednisone 5 mg = prednisolone 5 mg = methylprednisolone 4 mg = dexamethasone 0.75 mg =
    hydrocortisone 20 mg (the table's source), so each of those once daily is 5 mg/day prednisone;
    CDISC FREQ: ONCE and QD 1, BID 2, TID 3, Q6H 4, Q8H 3, Q12H 2 administrations a day."""
    classes, freq = spec.rule("cm_drug_classes"), spec.rule("cm_frequency")
    equal_to_5_mg = {"PREDNISONE": 5.0, "PREDNISOLONE": 5.0, "METHYLPREDNISOLONE": 4.0, "DEXAMETHASONE": 0.75,
                     "HYDROCORTISONE": 20.0}
    per_day = {"ONCE": 1, "QD": 1, "BID": 2, "TID": 3, "Q6H": 4, "Q8H": 3, "Q12H": 2}
    rows = [(f"E-{d}", d, mg, "QD") for d, mg in equal_to_5_mg.items()]
    rows += [(f"F-{f}", "PREDNISONE", 1.0, f) for f in per_day]
    cm = pd.DataFrame({"USUBJID": [r[0] for r in rows], "CMCAT": "BACKGROUND GLUCOCORTICOID",
                       "CMDECOD": [r[1] for r in rows], "CMDOSE": [r[2] for r in rows], "CMDOSFRQ": [r[3] for r in rows],
                       "CMSTDTC": "2024-01-01", "CMENDTC": ""})
    pts = pd.DataFrame({"USUBJID": cm["USUBJID"], "_date": pd.Timestamp("2024-02-01")})
    d = R.cm_daily_dose(pts, cm, "BACKGROUND GLUCOCORTICOID", "CORTICOSTEROID", classes, freq)
    got = dict(zip(pts["USUBJID"], d))
    for drug in equal_to_5_mg:  # five drugs (fixture)
        assert got[f"E-{drug}"] == pytest.approx(5.0, abs=1e-3), drug
    assert {f: got[f"F-{f}"] for f in per_day} == {f: float(n) for f, n in per_day.items()}


def test_reports_sort_by_text_of_every_column_missing_last():
    """ADaM reports are ordered as a stable sort of their columns' texts: "10" before "9",
    a missing value after every text."""
    from pipeline.adam.stage import sorted_report
    frame = pd.DataFrame({"a": ["b", "a", None, "a", "a"], "n": [2, 9, 0, 10, 9]}, index=[10, 11, 12, 13, 14])
    out = sorted_report(frame)
    assert out["a"].tolist()[:4] == ["a", "a", "a", "b"] and pd.isna(out["a"].iloc[4])
    assert out["n"].tolist() == [10, 9, 9, 2, 0]
    assert out.index.tolist() == [0, 1, 2, 3, 4]


_report_columns = st.sampled_from(["text", "float", "int", "object", "bool"])


def _report_column(kind: str, picks: list[int]) -> pd.Series:
    """A report column of ``kind`` from small integers (few distinct values: ties, missing)."""
    if kind == "text":
        return pd.Series([None if k == 0 else ["b", "a", "10", "9"][k % 4] for k in picks], dtype="str")
    if kind == "float":
        return pd.Series([np.nan if k == 0 else k / 2 for k in picks], dtype="float64")
    if kind == "int":
        return pd.Series([k - 2 for k in picks], dtype="int64")
    if kind == "bool":
        return pd.Series([k % 2 == 0 for k in picks], dtype="bool")
    return pd.Series([None if k == 0 else (k if k % 2 else f"x{k}") for k in picks], dtype="object")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30).flatmap(lambda n: st.lists(
    st.tuples(_report_columns, st.lists(st.integers(0, 4), min_size=n, max_size=n)), min_size=1, max_size=6)))
def test_report_text_order_same_as_sorting_every_column(columns):
    """stage.text_order (columns ranked only until the rows are told apart) gives the order of
    a stable sort of the texts of every column (derive.seq.key_order over frame.astype(str)):
    ties, duplicate rows, missing values and mixed dtypes."""
    from pipeline.adam.stage import sorted_report, text_order
    from pipeline.derive.seq import key_order

    frame = pd.DataFrame({f"c{i}": _report_column(kind, picks) for i, (kind, picks) in enumerate(columns)})
    keys = frame.astype(str)
    expected = key_order(keys, list(keys.columns))
    assert text_order(frame).tolist() == expected.tolist()
    pd.testing.assert_frame_equal(sorted_report(frame), frame.iloc[expected].reset_index(drop=True))


def test_nearest_counts_by_hand():
    d = pd.Timestamp
    anchors = pd.DataFrame({"USUBJID": ["A", "A", "B"], "_date": [d("2024-01-10"), d("2024-02-01"), d("2024-01-10")]},
                           index=[5, 6, 7])
    counts = pd.DataFrame({"USUBJID": ["A", "A", "A", "B"], "LBTESTCD": ["ANC", "PLAT", "ANC", "PLAT"],
                           "_date": [d("2024-01-08"), d("2024-01-12"), d("2024-01-12"), d("2024-01-20")],
                           "value": [1.0, 50.0, 2.0, 80.0]})
    got = adrs_mod.nearest_counts(anchors, counts, ["ANC", "PLAT", "WBC"], 3)
    # A on 10 Jan: ANC 2 days before and 2 days after -> the earlier (1.0); PLAT 2 days after;
    # A on 1 Feb: nothing within 3 days; B: its PLAT is 10 days away; no WBC at all
    assert got["ANC"]["value"].tolist()[0] == 1.0 and got["ANC"]["days"].tolist()[0] == -2.0
    assert got["PLAT"]["value"].tolist()[0] == 50.0 and got["PLAT"]["days"].tolist()[0] == 2.0
    assert got["ANC"]["value"].isna().tolist() == [False, True, True]
    assert got["PLAT"]["value"].isna().tolist() == [False, True, True]
    assert got["WBC"]["value"].isna().all() and list(got["WBC"].index) == [5, 6, 7]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.one_of(st.none(), st.integers(0, 20))), max_size=8),
       st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(["ANC", "PLAT", "HGB"]),
                          st.integers(0, 20), st.floats(0, 10, allow_nan=False)), max_size=15),
       st.integers(0, 5))
def test_nearest_counts_equals_one_call_per_test(anchor_rows, count_rows, window):
    day = pd.Timestamp("2024-01-01")
    anchors = pd.DataFrame({"USUBJID": [u for u, _ in anchor_rows],
                            "_date": pd.to_datetime([None if k is None else day + pd.Timedelta(days=k)
                                                     for _, k in anchor_rows])},
                           index=np.arange(len(anchor_rows)) * 2 + 1)
    counts = pd.DataFrame({"USUBJID": [r[0] for r in count_rows], "LBTESTCD": [r[1] for r in count_rows],
                           "_date": pd.to_datetime([day + pd.Timedelta(days=r[2]) for r in count_rows]),
                           "value": [r[3] for r in count_rows]})
    tests = ["ANC", "HGB", "PLAT", "WBC"]
    got = adrs_mod.nearest_counts(anchors, counts, tests, window)
    for t in tests:
        want = R.nearest_in_window(anchors, counts[counts["LBTESTCD"] == t], window)
        pd.testing.assert_frame_equal(got[t], want)


def _criteria_inputs_by_hand(a: pd.DataFrame, sdtm: dict, sources: pd.DataFrame) -> dict[str, list[str]]:
    """Per raw column: for each assessment (row of ``a``), the value of the last record of the
    source's test on the assessment's subject and date, the first non-empty over the sources
    that share the column (a loop over records: the reference)."""
    out: dict[str, list[str]] = {}
    for s in sources.itertuples(index=False):
        ds = sdtm[s.dataset]
        test_var, dtc_var = ("RSTESTCD", "RSDTC") if s.dataset == "RS" else ("LBTESTCD", "LBDTC")
        got = []
        for u, dtc in zip(a["USUBJID"], a["RSDTC"]):
            hits = [v for t, uu, d, v in zip(ds[test_var], ds["USUBJID"], ds[dtc_var], ds[s.variable])
                    if t == s.testcd and uu == u and d[:10] == dtc[:10]]
            got.append(hits[-1] if hits else "")
        prev = out.get(s.column, [""] * len(a))
        out[s.column] = [p if p != "" else g for p, g in zip(prev, got)]
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["G1", "G2", "G3"]),
                          st.sampled_from(["OVRLRESP", "BMBLAST", "EMD"]), st.integers(1, 3),
                          st.sampled_from(["", "5", "CR", "NO"])), min_size=1, max_size=10),
       st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["CSFWBC", "CSFRBC"]), st.integers(1, 3),
                          st.sampled_from(["", "3", "12"]), st.sampled_from(["", "TRAUMATIC"])), max_size=10))
def test_assessment_criteria_inputs_are_the_last_record_of_the_day(rs_rows, lb_rows):
    rs = pd.DataFrame({"USUBJID": [r[0] for r in rs_rows], "RSGRPID": [r[1] for r in rs_rows],
                       "RSTESTCD": [r[2] for r in rs_rows], "RSEVAL": "INVESTIGATOR",
                       "RSSEQ": [float(i + 1) for i in range(len(rs_rows))],
                       "RSDTC": [f"2024-01-0{r[3]}T10:00" for r in rs_rows], "RSDY": [float(r[3]) for r in rs_rows],
                       "VISIT": "V", "VISITNUM": 1.0, "RSORRES": [r[4] for r in rs_rows]})
    lbda = pd.DataFrame({"USUBJID": [r[0] for r in lb_rows], "LBTESTCD": [r[1] for r in lb_rows],
                         "LBDTC": [f"2024-01-0{r[2]}" for r in lb_rows], "LBORRES": [r[3] for r in lb_rows],
                         "LBSPCCND": [r[4] for r in lb_rows]}, dtype=object)
    dm = pd.DataFrame({"USUBJID": ["A", "B"], "RFXSTDTC": ["2024-01-02", "2024-01-01"]})
    sdtm = {"RS": rs, "LBDA": lbda, "DM": dm}
    sources = pd.DataFrame([("RS", "RSORRES", "BMBLAST", "BMBLAST"), ("RS", "RSORRES", "EMD", "EMD"),
                            ("LBDA", "LBORRES", "CSFWBC", "CSFWBC"), ("LBDA", "LBSPCCND", "CSFWBC", "CSFCOND"),
                            ("LBDA", "LBSPCCND", "CSFRBC", "CSFCOND")],
                           columns=["dataset", "variable", "testcd", "column"])
    a = adrs_mod.assessments(sdtm, sources)
    want = _criteria_inputs_by_hand(a, sdtm, sources)
    for column, values in want.items():
        assert a[column].tolist() == values, column


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(np.nan), st.integers(-3000, 40000).map(float),
                          st.floats(-3000, 40000, allow_nan=False), st.sampled_from([-101000.0, 101000.0, 0.5])),
                max_size=12),
       st.sampled_from([None, "ADT"]), st.booleans())
def test_iso_dates_of_reports_same_as_the_pandas_datetimes(days, name, shifted_index):
    """reports._iso and engraftment._iso (numpy dates where every value is a whole day in
    range, common.sas_date_texts) give the Series the pandas datetimes and strftime gave:
    missing values, fractional days, dates out of the numpy path's range, name and index."""
    from pipeline.adam import engraftment
    from pipeline.adam.common import from_sas_date, num, text

    x = pd.Series(days, dtype="float64", name=name)
    if shifted_index:
        x.index = x.index + 7

    def reports_iso(d):  # reports._iso as it was
        ts = from_sas_date(d)
        return ts.dt.strftime("%Y-%m-%d").astype("object").where(ts.notna(), "")

    def engraftment_iso(d):  # engraftment._iso as it was
        t = pd.to_datetime(num(d), unit="D", origin="1960-01-01")
        return text(pd.Series(t.dt.strftime("%Y-%m-%d"), index=d.index))

    def discrepancies_iso(d):  # engraftment.discrepancies' iso as it was
        return text(pd.Series(pd.to_datetime(d, unit="D", origin="1960-01-01").dt.strftime("%Y-%m-%d"), index=d.index))

    pd.testing.assert_series_equal(reports._iso(x), reports_iso(x))
    pd.testing.assert_series_equal(engraftment._iso(x), engraftment_iso(x))
    pd.testing.assert_series_equal(engraftment._iso(x), discrepancies_iso(x))


def test_sas_date_texts_by_hand():
    from pipeline.adam.common import sas_date_texts

    got = sas_date_texts(pd.Series([0.0, np.nan, 23800.0, -1.0, 366.0]))
    assert got.tolist() == ["1960-01-01", "", "2025-02-28", "1959-12-31", "1961-01-01"]
    assert sas_date_texts(pd.Series([1.5])) is None and sas_date_texts(pd.Series([1e9])) is None
    assert sas_date_texts(pd.Series([], dtype="float64")).tolist() == []
