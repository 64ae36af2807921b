"""DM/SUPPDM: reference dates, death, arms/ARMNRS, AGE check, no direct identifiers."""

import numpy as np
import pandas as pd
import pytest

from dm_ex_ds_fixture import context, raw_forms, run
from pipeline.domains import dm as dm_mod


@pytest.fixture(scope="module")
def built():
    ctx = context()
    res = run(ctx)
    return ctx, res


def subj(ctx, s):
    dm = ctx.datasets["DM"]
    return dm[dm["SUBJID"] == s].iloc[0]


def test_reference_dates_split_infusion(built):
    ctx, _ = built
    r = subj(ctx, "101")
    assert r["USUBJID"] == "NCT06316427-01-101"
    # reference period = the CAR-T product: first fraction start, last fraction end
    assert r["RFSTDTC"] == "2025-01-15T10:00"
    assert r["RFENDTC"] == "2025-01-16T09:20"
    # exposure = any protocol treatment: first fludarabine 10-JAN 08:00; last CAR-T fraction end
    assert r["RFXSTDTC"] == "2025-01-10T08:00"
    assert r["RFXENDTC"] == "2025-01-16T09:20"
    ex = ctx.datasets["EX"]
    mine = ex[ex["USUBJID"] == r["USUBJID"]]
    assert r["RFXSTDTC"] == min(mine["EXSTDTC"])   # CORE-000239: RFXSTDTC = earliest EX.EXSTDTC
    assert r["RFICDTC"] == "2025-01-02"
    # latest of disposition 21-MAR, death 20-MAR and every dated record
    assert r["RFPENDTC"] == "2025-03-21"
    assert r["DMDTC"] == "2025-01-02" and r["DMDY"] == -13


def test_rfx_dates_ignore_rows_that_ex_rejects_and_cover_lymphodepletion_only():
    forms = raw_forms()
    ex = forms["ex"]
    ex.loc[0, "EXSTDAT"] = "31-FEB-2025"      # impossible: EX rejects the row, DM ignores it
    ex.loc[ex["EXCAT"].eq("CAR-T INFUSION"), "EXENDAT"] = np.nan   # no end: the start counts
    # subject 103 received lymphodepletion only (no CAR-T)
    ld = ex.iloc[[3]].assign(SUBJID="103", EXSTDAT="20-JAN-2025", EXENDAT="20-JAN-2025", _ROW=99)
    ctx = context({**forms, "ex": pd.concat([ex, ld], ignore_index=True)})
    run(ctx, ("dm", "ex"))
    dm = ctx.datasets["DM"].set_index("SUBJID")
    assert (dm.loc["101", "RFXSTDTC"], dm.loc["101", "RFXENDTC"]) == ("2025-01-10T09:00", "2025-01-16T09:00")
    assert (dm.loc["101", "RFSTDTC"], dm.loc["101", "RFENDTC"]) == ("2025-01-15T10:00", "2025-01-16T09:00")
    assert (dm.loc["103", "RFXSTDTC"], dm.loc["103", "RFXENDTC"], dm.loc["103", "RFSTDTC"]) == (
        "2025-01-20T09:00", "2025-01-20T10:00", "")
    ex_out = ctx.datasets["EX"]
    first = ex_out.groupby("USUBJID")["EXSTDTC"].min()
    assert first.to_dict() == dm.reset_index().set_index("USUBJID").loc[first.index, "RFXSTDTC"].to_dict()


def test_death(built):
    ctx, _ = built
    assert subj(ctx, "101")["DTHDTC"] == "2025-03-20"
    assert subj(ctx, "101")["DTHFL"] == "Y"
    assert subj(ctx, "103")["DTHFL"] == "" and subj(ctx, "103")["DTHDTC"] == ""


def test_screen_failure_and_not_treated_arms(built):
    ctx, _ = built
    sf, nt, tr = subj(ctx, "102"), subj(ctx, "103"), subj(ctx, "101")
    assert (sf["ARMCD"], sf["ARM"], sf["ACTARMCD"], sf["ACTARM"], sf["ARMNRS"]) == ("", "", "", "", "SCREEN FAILURE")
    assert (nt["ARMCD"], nt["ARM"], nt["ACTARMCD"], nt["ACTARM"]) == ("PRDONOR", "Prior-HSCT Donor-derived CD7 CAR-T", "", "")
    assert nt["ARMNRS"] == "ASSIGNED, NOT TREATED"
    assert (tr["ACTARMCD"], tr["ARMNRS"]) == ("AUTO", "")
    # never infused: no reference start, RFPENDTC = disposition date 01-MAR (after LKADAT 15-FEB)
    assert nt["RFSTDTC"] == "" and nt["RFPENDTC"] == "2025-03-01"
    # assigned, never infused, ended the trial (lost to follow-up): RFENDTC = end of participation
    assert nt["RFENDTC"] == "2025-03-01" and sf["RFENDTC"] == "" and tr["RFENDTC"] == "2025-01-16T09:20"
    assert sf["RFPENDTC"] == "2025-01-08"
    assert sf["BRTHDTC"] == "1990-03"


def test_armnrs_terms_carry_ct_codes(built):
    ctx, _ = built
    cl = ctx.spec.codelist("ARMNULRS").set_index("term")
    assert cl.loc["SCREEN FAILURE", "term_ncit_code"] == "C49628"
    assert cl.loc["ASSIGNED, NOT TREATED", "term_ncit_code"] == "C142238"
    assert cl["ncit_code"].iloc[0] == "C142179"


def test_age_check_error_names_the_record(built):
    _, res = built
    f = res["dm"].findings
    err = f[f["check"] == "dm_age_birth_date"]
    assert len(err) == 1
    e = err.iloc[0]
    # 103: born 20-FEB-2000, consent 10-JAN-2025 -> 24 completed years, AGE 30 collected
    assert (e["severity"], e["row"], e["file"], e["value"]) == ("error", 4, "dm.csv", "30")
    assert "age at consent 24" in e["message"] and "103" in e["message"]


@pytest.mark.parametrize("birth,age,expected", [
    ("15-JUN-1980", "44", None),             # 02-JAN-2025: birthday not reached -> 44
    ("15-JUN-1980", "45", "error"),
    ("02-JAN-1980", "45", None),             # birthday on the consent day counts
    ("03-JAN-1980", "45", "error"),          # one day short of 45
    ("UN-JAN-1980", "44", None),             # Jan 1980: 44 or 45 possible
    ("UN-JAN-1980", "45", None),
    ("UN-JAN-1980", "46", "warning"),
    ("UN-UNK-1980", "43", "warning"),        # year only: 44 or 45
])
def test_age_boundaries(birth, age, expected):
    forms = raw_forms()
    forms["dm"].loc[0, ["BRTHDAT", "AGE"]] = [birth, age]
    ctx = context(forms)
    res = dm_mod.build(ctx)
    f = res.findings[res.findings["check"].str.startswith("dm_age") & (res.findings["row"] == 2)]
    assert (f["severity"].iloc[0] if len(f) else None) == expected


def test_age_bounds_partial_month_end():
    b = dm_mod.age_bounds(pd.Series(["2000-02"]), pd.to_datetime(pd.Series(["2025-02-15"])))
    # born 1..29 Feb 2000 (leap year): on 15-FEB-2025 aged 24 or 25
    assert (b["lo"].iloc[0], b["hi"].iloc[0]) == (24.0, 25.0)


def test_no_direct_identifier_in_any_output(built):
    ctx, _ = built
    cols = ctx.spec.raw_columns
    ident_cols = cols.loc[cols["identifier"] == "Y", "column"].tolist()
    assert set(ident_cols) == {"SUBJINIT", "HOSPNUM", "PHONE"}
    values = set(raw_forms()["dm"][ident_cols].stack().astype(str))
    for name, frame in ctx.datasets.items():
        assert not set(ident_cols) & set(frame.columns), name
        cells = set(frame.astype(str).stack())
        assert not values & cells, f"{name} carries a direct identifier value"


def test_suppdm_primdiag(built):
    ctx, _ = built
    s = ctx.datasets["SUPPDM"]
    assert s[["USUBJID", "QNAM", "QVAL", "QORIG", "IDVAR"]].values.tolist() == [
        ["NCT06316427-01-101", "PRIMDIAG", "T-ALL", "Collected", ""],
        ["NCT06316427-01-102", "PRIMDIAG", "T-LBL", "Collected", ""]]
    assert set(s["QLABEL"]) == {"Primary Diagnosis"}


def test_arm_not_in_study_and_trtyn_without_infusion():
    forms = raw_forms()
    forms["dm"].loc[2, "ARMCD"] = "XYZ"
    forms["dm"].loc[2, "TRTYN"] = "Y"
    res = dm_mod.build(context(forms))
    checks = dict(zip(res.findings["check"], res.findings["severity"]))
    assert checks["dm_arm_not_in_study"] == "error"
    assert checks["dm_trtyn_without_infusion"] == "error"
    row = res.datasets["DM"].iloc[2]
    assert row["ARMCD"] == "" and row["ARMNRS"] == "ASSIGNED, NOT TREATED"


def test_every_dm_row_consumed_and_columns_are_spec(built):
    ctx, res = built
    c = res["dm"].consumed
    assert sorted(c.loc[c["dataset"] == "DM", "row"]) == [2, 3, 4]
    assert sorted(c.loc[c["dataset"] == "SUPPDM", "row"]) == [2, 3]
    assert list(ctx.datasets["DM"].columns) == ctx.spec.var_names("DM")


def test_duplicate_subject_rejected():
    forms = raw_forms()
    forms["dm"] = pd.concat([forms["dm"], forms["dm"].iloc[[0]].assign(_ROW=5)], ignore_index=True)
    res = dm_mod.build(context(forms))
    assert len(res.datasets["DM"]) == 3
    assert res.rejected["row"].tolist() == [5]


def test_race_and_ethnic_written_as_ct_terms():
    forms = raw_forms()
    forms["dm"].loc[0, ["RACE", "ETHNIC"]] = [" asian", "Not Hispanic or Latino"]   # case and blanks
    forms["dm"].loc[1, "RACE"] = "MULTIPLE"                                          # no term of C74457
    res = dm_mod.build(context(forms))
    dm = res.datasets["DM"].set_index("SUBJID")
    assert (dm.loc["101", "RACE"], dm.loc["101", "ETHNIC"]) == ("ASIAN", "NOT HISPANIC OR LATINO")
    f = res.findings[res.findings["check"].isin(["dm_race_not_ct", "dm_ethnic_not_ct"])]
    assert f[["check", "severity", "row", "value"]].values.tolist() == [["dm_race_not_ct", "error", 3, "MULTIPLE"]]


@pytest.mark.parametrize("dose,expected", [
    (1.0e6, "DL2"), (1.2e6, "DL2"), (8.0e5, "DL2"),      # within +/-20% of 1x10^6 (bounds included)
    (1.21e6, ""), (7.9e5, ""),                           # just outside: the dose of no arm
    (1.0e5, "DL1"), (1.0e8, "DL4"), (np.nan, ""),
])
def test_actual_arm_by_dose_boundaries(dose, expected):
    from pipeline.config import load_study
    from dm_ex_ds_fixture import ROOT
    study = load_study(ROOT / "specs", "CD7-RRAL-DE")
    got, applies = dm_mod.actual_arm_by_dose(pd.Series([dose]), study)
    assert applies and got.tolist() == [expected]


def test_unplanned_treatment_and_other_arm_in_dm():
    from pipeline.config import load_study
    from pipeline.context import StudyContext
    from dm_ex_ds_fixture import ROOT, _spec
    study = load_study(ROOT / "specs", "CD7-RRAL-DE")
    forms = raw_forms()
    dm = forms["dm"].assign(STUDYID="CD7-RRAL-DE", ARMCD=["DL2", "", "DL2"], TRTYN=["Y", "N", "Y"])
    ex = forms["ex"].assign(STUDYID="CD7-RRAL-DE")
    cart = ex[ex["EXCAT"] == "CAR-T INFUSION"].copy()
    # 101: split 600000 + 400000 = 1x10^6 = DL2 as planned; 103: 5x10^6, the dose of no arm
    extra = cart.iloc[[0]].assign(SUBJID="103", EXDOSE="5000000", EXSPID="CART-1", _ROW=50)
    ctx = StudyContext(study=study, spec=_spec(), forms={**forms, "dm": dm, "ex": pd.concat([ex, extra], ignore_index=True)})
    res = dm_mod.build(ctx)
    out = res.datasets["DM"].set_index("SUBJID")
    assert out.loc["101", ["ACTARMCD", "ARMNRS", "ACTARMUD"]].tolist() == ["DL2", "", ""]
    assert out.loc["103", ["ACTARMCD", "ACTARM", "ARMNRS", "ACTARMUD"]].tolist() == [
        "", "", "UNPLANNED TREATMENT", "CD7 CAR-T CELLS 5e+06 cells/kg"]
    assert res.findings.loc[res.findings["check"] == "dm_unplanned_treatment", "row"].tolist() == [4]


def test_rfendtc_of_a_subject_still_waiting_for_the_infusion_is_null():
    forms = raw_forms()
    forms["ds"] = forms["ds"][forms["ds"]["SUBJID"] != "103"]       # no end-of-study disposition yet
    dm = dm_mod.build(context(forms)).datasets["DM"].set_index("SUBJID")
    assert (dm.loc["103", "ARMNRS"], dm.loc["103", "RFENDTC"]) == ("ASSIGNED, NOT TREATED", "")


def test_subject_ids_once_per_frame_and_study():
    """USUBJID = STUDYID-SITEID-SUBJID of the stripped raw texts; asked again for the same frame
    (several domains read one raw form) the memo answers, and a change to an answer does not
    reach the next one."""
    from pipeline.domains.dm import subject_ids
    raw = pd.DataFrame({"SITEID": [" 01", "01", "02"], "SUBJID": ["001 ", "002", "001"]})
    first = subject_ids(raw, "S1")
    assert first.tolist() == ["S1-01-001", "S1-01-002", "S1-02-001"]
    first.iloc[0] = "changed"
    assert subject_ids(raw, "S1").tolist() == ["S1-01-001", "S1-01-002", "S1-02-001"]
    assert subject_ids(raw, "S2").tolist() == ["S2-01-001", "S2-01-002", "S2-02-001"]
