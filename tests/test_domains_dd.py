"""DD (primary cause of death), disposition status at the cut-off, death/fatal-AE reconciliation
and AEs after the end-of-study disposition, on the hand-built study of dm_ex_ds_fixture.

Subjects: 101 treated (lymphodepletion from 10-JAN-2025 08:00), died 20-MAR-2025 of DISEASE
PROGRESSION (disposition form dated 21-MAR); 102 screen failure 08-JAN; 103 never treated, lost to
follow-up 01-MAR-2025.
"""

import pandas as pd
import pytest

from dm_ex_ds_fixture import context, raw_forms, run
from pipeline.domains import dd as dd_mod

SID = "NCT06316427-01-"


def ae_frame(rows):
    cols = ["USUBJID", "AESEQ", "AETERM", "AEDECOD", "AESTDTC", "AEENDTC", "AEOUT", "AESDTH"]
    return pd.DataFrame(rows, columns=cols)


def build(forms=None, ae=None):
    ctx = context(forms)
    run(ctx, ("dm", "ex", "se", "ds"))
    if ae is not None:
        ctx.datasets["AE"] = ae
    return ctx, dd_mod.build(ctx)


@pytest.fixture(scope="module")
def default():
    return build()


def test_dd_primary_cause_record(default):
    ctx, res = default
    dd = res.datasets["DD"]
    assert list(dd.columns) == ctx.spec.var_names("DD")
    assert dd[["USUBJID", "DDSEQ", "DDTESTCD", "DDTEST", "DDORRES", "DDSTRESC", "DDDTC", "DDDY"]].values.tolist() == [
        [SID + "101", 1.0, "PRCDTH", "Primary Cause of Death", "DISEASE PROGRESSION", "DISEASE PROGRESSION",
         "2025-03-21", 66.0]]       # 21-MAR vs RFSTDTC 15-JAN: 65 days + 1
    assert res.consumed["row"].tolist() == [2] and set(res.consumed["dataset"]) == {"DD"}


def test_disposition_status_at_cutoff():
    forms = raw_forms()
    forms["ds"] = forms["ds"][forms["ds"]["SUBJID"] != "103"].copy()    # 103: no end-of-study form yet
    forms["ds"].loc[1, ["DSDECOD", "DSTERM"]] = ["COMPLETED", "COMPLETED FOLLOW-UP"]
    ctx = context(forms)
    res = run(ctx, ("dm", "ex", "se", "ds"))["ds"]
    st = res.reports["disposition_status"].set_index("USUBJID")
    assert st.loc[SID + "101", ["status", "reason", "DSSTDTC"]].tolist() == ["DISCONTINUED", "DEATH", "2025-03-20"]
    assert st.loc[SID + "102", ["status", "reason", "DSSTDTC"]].tolist() == ["COMPLETED", "", "2025-01-08"]
    assert st.loc[SID + "103", ["status", "reason", "DSSTDTC"]].tolist() == ["ONGOING", "", ""]
    assert set(st["data_cutoff"]) == {"2025-09-30"}


def test_death_documented_by_cause_without_ae(default):
    _, res = default
    r = res.reports["death_reconciliation"].set_index("USUBJID").loc[SID + "101"]
    assert (r["status"], r["fatal_ae_seq"]) == ("DOCUMENTED", "")
    assert r["reason"].startswith("Death from progression of the disease under study")
    assert res.findings.empty


def test_death_with_fatal_ae_and_death_without_one():
    forms = raw_forms()
    forms["ds"].loc[0, "DTHCAUS"] = "INFECTION"
    ae = ae_frame([[SID + "101", 3.0, "sepsis", "Sepsis", "2025-03-15", "2025-03-20", "FATAL", "Y"],
                   [SID + "101", 1.0, "fever", "Fever", "2025-01-16", "2025-01-18", "RECOVERED/RESOLVED", "N"]])
    _, res = build(forms, ae)
    r = res.reports["death_reconciliation"].iloc[0]
    assert (r["status"], r["fatal_ae_seq"], r["fatal_ae_decod"], r["fatal_ae_end"]) == ("FATAL AE", "3", "Sepsis",
                                                                                         "2025-03-20")
    assert res.findings.empty
    # the same death without its fatal AE: a query to the site (warning, named subject)
    _, res = build(forms, ae.iloc[[1]])
    r = res.reports["death_reconciliation"].iloc[0]
    assert r["status"] == "QUERY"
    f = res.findings
    assert f[["check", "severity"]].values.tolist() == [["dd_death_without_fatal_ae", "warning"]]
    assert SID + "101" in f["message"].iloc[0] and "INFECTION" in f["message"].iloc[0]


def test_death_before_first_exposure_is_documented():
    forms = raw_forms()
    # 103 (never treated) dies of an infection after being lost to follow-up: no AE period yet
    forms["ds"].loc[2, ["DTHDAT", "DTHCAUS"]] = ["05-APR-2025", "INFECTION"]
    _, res = build(forms, ae_frame([]))
    rec = res.reports["death_reconciliation"].set_index("USUBJID")
    assert rec.loc[SID + "103", "status"] == "DOCUMENTED"
    assert rec.loc[SID + "103", "reason"].startswith("Death before the first dose of any protocol treatment")
    assert rec.loc[SID + "101", "status"] == "DOCUMENTED"
    assert res.findings.empty


def test_ae_after_end_of_study_disposition_is_reported():
    ae = ae_frame([[SID + "103", 1.0, "cough", "Cough", "2025-03-01", "", "UNKNOWN", "N"],    # on the day: fine
                   [SID + "103", 2.0, "rash", "Rash", "2025-03-02", "", "UNKNOWN", "N"],      # after: warning
                   [SID + "101", 1.0, "fever", "Fever", "2025-03-20T10:00", "", "UNKNOWN", "N"],  # death day: fine
                   [SID + "101", 2.0, "pain", "Pain", "2025-03", "", "UNKNOWN", "N"]])        # partial: not compared
    _, res = build(None, ae)
    f = res.findings[res.findings["check"] == "ds_ae_after_disposition"]
    assert f["value"].tolist() == ["2025-03-02"]
    assert "LOST TO FOLLOW-UP on 2025-03-01" in f["message"].iloc[0] and "AESEQ 2" in f["message"].iloc[0]


def test_no_deaths_no_dd_dataset():
    """FDA TCG: no empty datasets. Without a death, DD is not produced (CORE-000598 on an empty DD)."""
    forms = raw_forms()
    forms["ds"] = forms["ds"][forms["ds"]["DSDECOD"].fillna("") != "DEATH"].copy()
    forms["dm"] = forms["dm"].assign(**{c: pd.NA for c in ("DTHDAT",) if c in forms["dm"].columns})
    ctx, res = build(forms)
    assert "DD" not in res.datasets
    assert res.consumed.empty
