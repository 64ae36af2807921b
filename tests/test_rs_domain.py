"""RS / LBDA domain module on hand-built studies: records, links, planted disagreements, reports.

Leukemia fixture (NCT05164042: NCCN ALL v3.2023 with CRh; counts within +/- 7 days; ORR = CR or
CRi at protocol day 28 +/- 3), infusion 01-JAN-2024 10:00 for subjects 001-004 (study day 1),
so DAY 28 = 29-JAN-2024 = study day 29 = protocol day 28:

- 001: SCREENING marrow 60% (NE). DAY 28 blasts 5.0 with full counts: criteria NR, investigator
  CR (planted). MONTH 2 blasts 1.0: CR for both.
- 002: DAY 28 blasts 1.0, platelets 72 and ANC 1.6 on the same day: criteria CRh, investigator
  CR (planted). MONTH 3 blasts 30: RELAPSE for both. Died 01-MAY-2024.
- 003: DAY 28 blasts 4.9, ANC 1.0 and platelets 100 drawn 7 days before: CR for both.
  MONTH 2 with an impossible date: rejected.
- 004: DAY 28 blasts 2.0, counts only 8 days away: criteria NE, investigator CR (planted).
- 005: enrolled, never infused: SCREENING only.
- 099: not in DM: rejected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.derive.epoch import subject_elements
from pipeline.domains import rs as rs_mod
from pipeline.export import checks
from pipeline.spec import load_spec

from conftest import RAW, SPECS

RS_COLS = ["STUDYID", "SITEID", "SUBJID", "VISIT", "RSDAT", "BMBLAST", "BMCELL", "PBBLAST", "EMD", "CNSSTAT",
           "MRDRES", "MRDND", "MRDMETH", "MRDLLOQ", "TRANSIND", "DASCORE", "GCDOSE", "CSLEDAI", "PGA", "BVAS",
           "TIS", "MRSS", "CRISS", "RSORRES"]


def form(rows: list[dict], name: str, columns: list[str]) -> pd.DataFrame:
    f = pd.DataFrame(rows).reindex(columns=columns).astype("object")
    f = f.where(f.notna() & f.ne(""), np.nan)
    f["_FILE"] = f"{name}.csv"
    f["_ROW"] = np.arange(2, len(f) + 2)
    return f


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


def dm_frame(sid: str, subjects: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for s, v in subjects.items():
        rows.append({"STUDYID": sid, "USUBJID": f"{sid}-01-{s}", "SUBJID": s, "RFICDTC": "2023-12-10",
                     "RFSTDTC": v.get("rf", ""), "RFXSTDTC": v.get("rf", ""), "RFPENDTC": v.get("end", "2024-12-31"),
                     "DTHDTC": v.get("dth", ""), "DTHFL": "Y" if v.get("dth") else ""})
    return pd.DataFrame(rows)


def se_frame(dm: pd.DataFrame, study) -> pd.DataFrame:
    treated = dm[dm["RFSTDTC"] != ""]
    ex = pd.DataFrame({"USUBJID": treated["USUBJID"], "EXCAT": "LYMPHODEPLETION", "EXSTDTC": "2023-12-27"})
    return subject_elements(dm, ex, study)


# ---------------------------------------------------------------------------------------
# leukemia
# ---------------------------------------------------------------------------------------
SID = "NCT05164042"
INF = "2024-01-01T10:00"


def leukemia_context(spec) -> StudyContext:
    study = load_study(SPECS, SID)
    dm = dm_frame(SID, {"001": {"rf": INF}, "002": {"rf": INF, "dth": "2024-05-01"}, "003": {"rf": INF},
                        "004": {"rf": INF}, "005": {}})
    b = {"STUDYID": SID, "SITEID": "01", "PBBLAST": "0.0", "EMD": "N", "CNSSTAT": "CNS-1", "BMCELL": "40",
         "MRDMETH": "FLOW CYTOMETRY", "MRDLLOQ": "0.01"}
    rs = form([
        {**b, "SUBJID": "001", "VISIT": "SCREENING", "RSDAT": "20-DEC-2023", "BMBLAST": "60.0", "PBBLAST": "12.0",
         "MRDRES": "55.00", "BMCELL": "90", "RSORRES": "NE"},
        {**b, "SUBJID": "001", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "BMBLAST": "5.0", "MRDRES": "1.20",
         "RSORRES": "CR"},
        {**b, "SUBJID": "001", "VISIT": "MONTH 2", "RSDAT": "01-MAR-2024", "BMBLAST": "1.0", "MRDND": "Y",
         "RSORRES": "CR"},
        {**b, "SUBJID": "002", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "BMBLAST": "1.0", "RSORRES": "CR"},
        {**b, "SUBJID": "002", "VISIT": "MONTH 3", "RSDAT": "31-MAR-2024", "BMBLAST": "30.0", "PBBLAST": "4.0",
         "RSORRES": "RELAPSE"},
        {**b, "SUBJID": "003", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "BMBLAST": "4.9", "RSORRES": "cr"},
        {**b, "SUBJID": "003", "VISIT": "MONTH 2", "RSDAT": "31-FEB-2024", "BMBLAST": "1.0", "RSORRES": "CR"},
        {**b, "SUBJID": "004", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "BMBLAST": "2.0", "RSORRES": "CR"},
        {**b, "SUBJID": "005", "VISIT": "SCREENING", "RSDAT": "15-DEC-2023", "BMBLAST": "45.0", "RSORRES": "NE"},
        {**b, "SUBJID": "099", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "BMBLAST": "1.0", "RSORRES": "CR"},
    ], "rs", RS_COLS)

    def lab(s, test, dtc, value, seq):
        return {"USUBJID": f"{SID}-01-{s}", "LBTESTCD": test, "LBDTC": dtc, "LBSTRESN": value, "LBSPEC": "BLOOD",
                "LBSEQ": float(seq)}
    lb = pd.DataFrame([
        lab("001", "NEUT", "2024-01-29T08:00", 2.0, 1), lab("001", "PLAT", "2024-01-29T08:00", 150.0, 2),
        lab("001", "NEUT", "2024-03-01", 2.2, 3), lab("001", "PLAT", "2024-03-01", 160.0, 5),
        lab("002", "NEUT", "2024-01-29", 1.6, 1), lab("002", "PLAT", "2024-01-29", 72.0, 2),
        lab("002", "HGB", "2024-04-15", 90.0, 3),
        lab("003", "NEUT", "2024-01-22", 1.0, 1), lab("003", "PLAT", "2024-01-22", 100.0, 2),
        lab("003", "NEUT", "2024-02-10", 0.2, 3), lab("003", "PLAT", "2024-02-10", 20.0, 4),   # 12 days after
        lab("004", "NEUT", "2024-02-06", 2.0, 1), lab("004", "PLAT", "2024-02-06", 150.0, 2),  # 8 days after
    ])
    dm_raw = form([{"STUDYID": SID, "SITEID": "01", "SUBJID": s, "PRIMDIAG": "B-CELL ACUTE LYMPHOBLASTIC LEUKEMIA"}
                   for s in ("001", "002", "003", "004", "005")], "dm", ["STUDYID", "SITEID", "SUBJID", "PRIMDIAG"])
    ds_raw = form([{"STUDYID": SID, "SITEID": "01", "SUBJID": "001", "DSDECOD": "LOST TO FOLLOW-UP",
                    "DSSTDAT": "31-JUL-2024", "LKADAT": "30-JUN-2024"}], "ds",
                  ["STUDYID", "SITEID", "SUBJID", "DSDECOD", "DSSTDAT", "LKADAT"])
    dm = dm_frame(SID, {"001": {"rf": INF}, "002": {"rf": INF, "dth": "2024-05-01"}, "003": {"rf": INF},
                        "004": {"rf": INF}, "005": {}})
    ctx = StudyContext(study=study, spec=spec, forms={"rs": rs, "dm": dm_raw, "ds": ds_raw})
    ctx.datasets["DM"] = dm
    ctx.datasets["SE"] = se_frame(dm, study)
    ctx.datasets["LB"] = lb
    return ctx


@pytest.fixture(scope="module")
def leuk(spec):
    ctx = leukemia_context(spec)
    return ctx, rs_mod.build(ctx)


def u(s: str) -> str:
    return f"{SID}-01-{s}"


def overall(rs: pd.DataFrame, ev: str) -> dict:
    o = rs[(rs["RSTESTCD"] == "OVRLRESP") & (rs["RSEVAL"] == ev)]
    return {(r.USUBJID[-3:], r.RSDTC): r.RSSTRESC for r in o.itertuples()}


def test_investigator_overall_response_only(leuk):
    _, res = leuk
    rs = res.datasets["RS"]
    assert overall(rs, "INVESTIGATOR") == {
        ("001", "2023-12-20"): "NE", ("001", "2024-01-29"): "CR", ("001", "2024-03-01"): "CR",
        ("002", "2024-01-29"): "CR", ("002", "2024-03-31"): "RELAPSE", ("003", "2024-01-29"): "CR",
        ("004", "2024-01-29"): "CR", ("005", "2023-12-15"): "NE"}
    # nothing derived in SDTM: the criteria-derived responses and BOR are in ADaM ADRS
    assert set(rs["RSEVAL"]) == {"INVESTIGATOR"} and "RSDRVFL" not in rs.columns
    assert "BESTRESP" not in set(rs["RSTESTCD"]) and res.reports == {}
    inv = rs[(rs["RSTESTCD"] == "OVRLRESP") & (rs["RSEVAL"] == "INVESTIGATOR")]
    assert inv.loc[inv["USUBJID"] == u("003"), "RSORRES"].tolist() == ["cr"]  # collected as written
    assert set(rs.loc[rs["RSTESTCD"] == "OVRLRESP", "RSCAT"]) == {"NCCN ALL v3.2023"}
    assert set(rs.loc[rs["RSTESTCD"] == "OVRLRESP", "RSTEST"]) == {"Overall Response"}


def test_timing_variables(leuk):
    _, res = leuk
    r = res.datasets["RS"].set_index(["USUBJID", "RSTESTCD", "RSEVAL", "RSDTC"])
    day28 = r.loc[(u("001"), "OVRLRESP", "INVESTIGATOR", "2024-01-29")]
    # the CAR-T element lasts protocol days 0-28: follow-up starts 30-JAN-2024
    assert (day28["RSDY"], day28["VISITNUM"], day28["VISIT"], day28["EPOCH"]) == (29.0, 13.0, "DAY 28", "TREATMENT")
    m2 = r.loc[(u("001"), "OVRLRESP", "INVESTIGATOR", "2024-03-01")]
    assert (m2["RSDY"], m2["EPOCH"]) == (61.0, "FOLLOW-UP")
    scr = r.loc[(u("001"), "OVRLRESP", "INVESTIGATOR", "2023-12-20")]
    assert (scr["RSDY"], scr["EPOCH"], scr["RSLOBXFL"]) == (-12.0, "SCREENING", "Y")


def test_rejections_and_provenance(leuk):
    ctx, res = leuk
    rej = res.rejected.set_index("row")
    raw = ctx.forms["rs"]
    bad_date = int(raw.loc[raw["RSDAT"] == "31-FEB-2024", "_ROW"].iloc[0])
    unknown = int(raw.loc[raw["SUBJID"] == "099", "_ROW"].iloc[0])
    assert rej.loc[bad_date, "column"] == "RSDAT" and rej.loc[unknown, "reason"] == "subject not in DM"
    consumed = set(res.consumed.loc[res.consumed["dataset"] == "RS", "row"])
    assert consumed == set(raw["_ROW"]) - {bad_date, unknown}


def test_lbda_split_lb(leuk):
    _, res = leuk
    lb = res.datasets["LBDA"]
    assert set(lb["DOMAIN"]) == {"LB"} and set(lb["LBCAT"]) == {"DISEASE ASSESSMENT"}
    s1 = lb[lb["USUBJID"] == u("001")].sort_values("LBSEQ")
    # LB has LBSEQ up to 5 for subject 001: LBDA numbers on from 6, ordered by date then test
    assert s1["LBSEQ"].tolist() == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0]
    assert s1[["LBTESTCD", "LBDTC"]].head(4).values.tolist() == [
        ["BLASTCE", "2023-12-20"], ["BLASTLE", "2023-12-20"], ["CELLULAR", "2023-12-20"], ["MRD", "2023-12-20"]]
    spec_of = dict(zip(lb["LBTESTCD"], lb["LBSPEC"]))
    assert spec_of == {"BLASTCE": "BONE MARROW", "BLASTLE": "BLOOD", "MRD": "BONE MARROW", "CELLULAR": "BONE MARROW"}
    assert set(lb.loc[lb["LBTESTCD"] == "MRD", "LBMETHOD"]) == {"FLOW CYTOMETRY"}
    assert set(lb.loc[lb["LBTESTCD"] != "MRD", "LBMETHOD"]) == {""}
    m = lb[(lb["USUBJID"] == u("001")) & (lb["LBTESTCD"] == "MRD")].sort_values("LBDTC")
    # month 2 not detected (MRDND = Y) at the assay sensitivity 0.01%: "<0.01", no number (SDTMIG 3.4 LB, below LLOQ)
    assert m["LBORRES"].tolist() == ["55.00", "1.20", "<0.01"] and m["LBSTRESC"].tolist() == ["55", "1.2", "<0.01"]
    assert m["LBSTRESN"].tolist()[:2] == [55.0, 1.2] and np.isnan(m["LBSTRESN"].iloc[2])
    assert m["LBLLOQ"].tolist() == [0.01, 0.01, 0.01]
    assert lb.loc[lb["LBTESTCD"] != "MRD", "LBLLOQ"].isna().all()
    assert m["LBLOBXFL"].tolist() == ["Y", "", ""]
    assert (lb["LBSTRESU"] == "%").all()


def test_links_between_rs_and_lbda(leuk):
    _, res = leuk
    rs, lb = res.datasets["RS"], res.datasets["LBDA"]
    o = rs[rs["RSTESTCD"] == "OVRLRESP"]
    assert set(zip(o["USUBJID"], o["RSLNKGRP"])) == set(zip(lb["USUBJID"], lb["LBLNKGRP"]))
    assert set(rs.loc[rs["RSTESTCD"].isin(["EMDIND", "CNSSTAT", "BESTRESP"]), "RSLNKGRP"]) == {""}
    g = rs[(rs["USUBJID"] == u("001")) & (rs["RSDTC"] == "2024-01-29") & (rs["RSTESTCD"] != "BESTRESP")]
    assert set(g["RSGRPID"]) == {"RS-2024-01-29"}
    assert set(g["RSTESTCD"]) == {"OVRLRESP", "EMDIND", "CNSSTAT"}
    rel = res.datasets["RELREC"]
    assert rel[["RDOMAIN", "IDVAR", "RELTYPE", "RELID"]].values.tolist() == [
        ["RS", "RSLNKGRP", "ONE", "RSLB"], ["LB", "LBLNKGRP", "MANY", "RSLB"]]


def test_component_records(leuk):
    _, res = leuk
    rs = res.datasets["RS"]
    emd = rs[rs["RSTESTCD"] == "EMDIND"]
    assert set(emd["RSORRES"]) == {"N"} and set(emd["RSEVAL"]) == {"INVESTIGATOR"}
    assert set(emd["RSCAT"]) == {"NCCN ALL v3.2023"} and set(emd["RSTEST"]) == {"Extramedullary Disease Indicator"}


def test_seq_is_unique_and_deterministic(leuk, spec):
    ctx, res = leuk
    rs = res.datasets["RS"]
    assert not rs.duplicated(["USUBJID", "RSSEQ"]).any()
    again = rs_mod.build(leukemia_context(spec)).datasets["RS"]
    pd.testing.assert_frame_equal(rs, again)


def test_output_checks_pass(leuk, spec):
    ctx, res = leuk
    for name in ("RS", "LBDA"):
        frame = checks.order_dataset(res.datasets[name], spec, name)
        f = checks.check_dataset(frame, spec, name, SID, ctx.datasets["DM"])
        assert f[f["severity"] == "error"].empty, f[f["severity"] == "error"]["message"].tolist()
        assert list(res.datasets[name].columns) == spec.var_names(name)


def test_investigator_category_outside_the_study_is_flagged(spec):
    ctx = leukemia_context(spec)
    ctx.forms["rs"].loc[ctx.forms["rs"]["SUBJID"] == "004", "RSORRES"] = "VGPR"
    res = rs_mod.build(ctx)
    f = res.findings[res.findings["check"] == "rs_category"]
    assert f["value"].tolist() == ["VGPR"] and set(f["severity"]) == {"warning"}


# ---------------------------------------------------------------------------------------
# aplastic anemia: counts from form lb when LB was not built
# ---------------------------------------------------------------------------------------
def test_aplastic_anemia_records(spec):
    sid = "ZJU-CD7-SAA"
    study = load_study(SPECS, sid)
    dm = dm_frame(sid, {"001": {"rf": INF}, "002": {"rf": INF}})
    b = {"STUDYID": sid, "SITEID": "01", "VISIT": "MONTH 3", "RSDAT": "31-MAR-2024", "TRANSIND": "Y"}
    rs = form([{**b, "SUBJID": "001", "BMCELL": "35", "RSORRES": "CR"},
               {**b, "SUBJID": "002", "BMCELL": "30", "RSORRES": "PR"}], "rs", RS_COLS)
    lbcols = ["STUDYID", "SITEID", "SUBJID", "VISIT", "LBDAT", "LBCAT", "LBTESTCD", "LBTEST", "LBORRES", "LBORRESU"]

    def lab(s, test, value, unit):
        return {"STUDYID": sid, "SITEID": "01", "SUBJID": s, "VISIT": "MONTH 3", "LBDAT": "30-MAR-2024",
                "LBCAT": "HEMATOLOGY", "LBTESTCD": test, "LBTEST": test, "LBORRES": value, "LBORRESU": unit}
    lb = form([lab("001", "HGB", "11.0", "g/dL"), lab("001", "NEUT", "1500", "/mm3"), lab("001", "PLAT", "120", "10^9/L"),
               lab("001", "RETI", "60", "10^9/L"),
               lab("002", "HGB", "10.1", "g/dL"), lab("002", "NEUT", "1.6", "10^3/uL"), lab("002", "PLAT", "101", "10^9/L"),
               lab("002", "RETI", "60", "10^9/L")], "lb", lbcols)
    ctx = StudyContext(study=study, spec=spec, forms={"rs": rs, "lb": lb})
    ctx.datasets["DM"] = dm
    res = rs_mod.build(ctx)
    tr = res.datasets["RS"]
    tr = tr[tr["RSTESTCD"] == "TRFIND"]
    assert tr["RSORRES"].tolist() == ["Y", "Y"] and set(tr["RSTEST"]) == {"Transfusion Independence Indicator"}
    assert res.datasets["LBDA"]["LBTESTCD"].tolist() == ["CELLULAR", "CELLULAR"]


# ---------------------------------------------------------------------------------------
# autoimmune: disease activity score, glucocorticoid dose, ORR at every timepoint
# ---------------------------------------------------------------------------------------
def test_autoimmune_study(spec):
    sid = "ZJU-CD7-AID"
    study = load_study(SPECS, sid)
    dm = dm_frame(sid, {"001": {"rf": INF}, "002": {"rf": INF}})
    b = {"STUDYID": sid, "SITEID": "01"}
    rs = form([
        {**b, "SUBJID": "001", "VISIT": "SCREENING", "RSDAT": "20-DEC-2023", "DASCORE": "10", "GCDOSE": "20.0",
         "RSORRES": "NE"},
        {**b, "SUBJID": "001", "VISIT": "DAY 28", "RSDAT": "29-JAN-2024", "DASCORE": "5", "GCDOSE": "10.0",
         "RSORRES": "PR"},
        {**b, "SUBJID": "001", "VISIT": "MONTH 3", "RSDAT": "30-MAR-2024", "DASCORE": "0", "GCDOSE": "7.5",
         "RSORRES": "CR"},
        {**b, "SUBJID": "002", "VISIT": "SCREENING", "RSDAT": "20-DEC-2023", "DASCORE": "12", "GCDOSE": "20.0",
         "RSORRES": "NE"},
        {**b, "SUBJID": "002", "VISIT": "MONTH 3", "RSDAT": "30-MAR-2024", "DASCORE": "16", "GCDOSE": "20.0",
         "RSORRES": "PD"},
    ], "rs", RS_COLS)
    ctx = StudyContext(study=study, spec=spec, forms={"rs": rs})
    ctx.datasets["DM"] = dm
    res = rs_mod.build(ctx)
    rs_out = res.datasets["RS"]
    assert "LBDA" not in res.datasets
    sled = rs_out[rs_out["RSTESTCD"] == "SLEDAI"]
    assert set(sled["RSCAT"]) == {"SLEDAI-2K"}
    assert sled.sort_values(["USUBJID", "RSDTC"])["RSSTRESN"].tolist() == [10.0, 5.0, 0.0, 12.0, 16.0]
    gc = rs_out[rs_out["RSTESTCD"] == "GCDOSE"].sort_values(["USUBJID", "RSDTC"])
    assert gc["RSSTRESC"].tolist() == ["20", "10", "7.5", "20", "20"] and set(gc["RSSTRESU"]) == {"mg/day"}
    assert gc["RSLOBXFL"].tolist() == ["Y", "", "", "Y", ""]
    for name in ("RS",):
        f = checks.check_dataset(checks.order_dataset(rs_out, spec, name), spec, name, sid, dm)
        assert f[f["severity"] == "error"].empty, f["message"].tolist()


# ---------------------------------------------------------------------------------------
# the embedded synthetic extracts: the simulator's planted disagreements are all reported
# ---------------------------------------------------------------------------------------
def _planted() -> pd.DataFrame:
    p = RAW / "planted.csv"
    if not p.is_file():
        pytest.skip("raw/planted.csv is not present (simulator output missing)")
    t = pd.read_csv(p, dtype=str, keep_default_na=False)
    return t[t["form"] == "rs"]


#: one study per response family (the leukemia one with the most categories), to keep the suite fast
STUDIES = ["NCT06316427", "ZJU-CD7-AID", "ZJU-CD7-SAA"]


@pytest.mark.slow
@pytest.mark.parametrize("sid", STUDIES)
def test_raw_extract_records_pass_the_checks(sid, spec):
    import importlib
    if not (RAW / sid / "rs.csv").is_file():
        pytest.skip(f"raw/{sid}/rs.csv is not present (simulator output missing)")
    study = load_study(SPECS, sid)
    gate = importlib.import_module("pipeline.intake.gate")
    forms, _ = gate.gate_study(RAW, study, spec)
    ctx = StudyContext(study=study, spec=spec, forms=forms)
    for name in ("dm", "ex", "se", "lb"):
        ctx.datasets.update(importlib.import_module(f"pipeline.domains.{name}").build(ctx).datasets)
    res = rs_mod.build(ctx)
    for name, frame in res.datasets.items():
        f = checks.check_dataset(checks.order_dataset(frame, spec, name), spec, name, sid, ctx.datasets["DM"])
        assert f[f["severity"] == "error"].empty, f["message"].tolist()[:5]



def test_form_not_delivered(spec):
    ctx = leukemia_context(spec)
    del ctx.forms["rs"]
    res = rs_mod.build(ctx)
    assert res.datasets == {} and res.reports == {}
    assert res.findings["check"].tolist() == ["rs_no_assessments"]
