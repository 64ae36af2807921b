"""DS/SUPPDS: consent milestone, dispositions, death; death after another disposition."""

import pytest

from dm_ex_ds_fixture import context, raw_forms, run


@pytest.fixture(scope="module")
def built():
    ctx = context()
    res = run(ctx, ("dm", "ex", "se", "ds"))
    return ctx, res


def test_consent_records(built):
    ctx, _ = built
    ds = ctx.datasets["DS"]
    ic = ds[ds["DSCAT"] == "PROTOCOL MILESTONE"].sort_values("USUBJID")
    assert ic[["DSTERM", "DSDECOD", "DSSTDTC", "DSSEQ", "EPOCH"]].values.tolist() == [
        ["INFORMED CONSENT OBTAINED", "INFORMED CONSENT OBTAINED", "2025-01-02", 1.0, "SCREENING"],
        ["INFORMED CONSENT OBTAINED", "INFORMED CONSENT OBTAINED", "2025-01-05", 1.0, "SCREENING"],
        ["INFORMED CONSENT OBTAINED", "INFORMED CONSENT OBTAINED", "2025-01-10", 1.0, "SCREENING"]]
    assert ic["DSSTDY"].iloc[0] == -13


def test_death_and_dispositions(built):
    ctx, _ = built
    ds = ctx.datasets["DS"]
    disp = ds[ds["DSCAT"] == "DISPOSITION EVENT"].sort_values("USUBJID")
    assert disp[["DSDECOD", "DSTERM", "DSSTDTC", "DSSCAT", "EPOCH"]].values.tolist() == [
        ["DEATH", "DEATH", "2025-03-20", "STUDY PARTICIPATION", "FOLLOW-UP"],       # death date, not DSSTDAT
        ["SCREEN FAILURE", "DID NOT MEET ELIGIBILITY", "2025-01-08", "STUDY PARTICIPATION", "SCREENING"],
        ["LOST TO FOLLOW-UP", "LOST TO FOLLOW-UP", "2025-03-01", "STUDY PARTICIPATION", "SCREENING"]]
    assert disp["DSSTDY"].iloc[0] == 65      # 20-MAR vs 15-JAN: 64 days + 1
    dm = ctx.datasets["DM"].set_index("SUBJID")
    assert dm.loc["101", "DTHDTC"] == "2025-03-20" and dm.loc["101", "DTHFL"] == "Y"


def test_suppds(built):
    ctx, _ = built
    s = ctx.datasets["SUPPDS"].sort_values("USUBJID")
    assert s[["USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QVAL"]].values.tolist() == [
        ["NCT06316427-01-103", "DSSEQ", "2", "LKADTC", "2025-02-15"]]


def test_provenance(built):
    _, res = built
    c = res["ds"].consumed
    assert sorted(c.loc[(c["form"] == "ds") & (c["dataset"] == "DS"), "row"]) == [2, 3, 4]
    assert sorted(c.loc[(c["form"] == "dm") & (c["dataset"] == "DS"), "row"]) == [2, 3, 4]
    assert res["ds"].rejected.empty


def test_death_after_other_disposition_is_other_event():
    forms = raw_forms()
    forms["ds"].loc[2, ["DTHDAT", "DTHCAUS"]] = ["05-APR-2025", "INFECTION"]
    ctx = context(forms)
    run(ctx, ("dm", "ex", "se", "ds"))
    ds = ctx.datasets["DS"]
    s103 = ds[ds["USUBJID"].str.endswith("103")].sort_values("DSSEQ")
    assert s103[["DSCAT", "DSDECOD", "DSSTDTC"]].values.tolist() == [
        ["PROTOCOL MILESTONE", "INFORMED CONSENT OBTAINED", "2025-01-10"],
        ["DISPOSITION EVENT", "LOST TO FOLLOW-UP", "2025-03-01"],
        ["OTHER EVENT", "DEATH", "2025-04-05"]]
    dm = ctx.datasets["DM"].set_index("SUBJID")
    assert (dm.loc["103", "DTHFL"], dm.loc["103", "RFPENDTC"]) == ("Y", "2025-04-05")


def test_ct_codes_of_ds_terms(built):
    spec = built[0].spec
    assert spec.codelist("NCOMPLT").set_index("term").loc["DEATH", "term_ncit_code"] == "C28554"
    assert spec.codelist("PROTMLST").set_index("term").loc["INFORMED CONSENT OBTAINED", "term_ncit_code"] == "C16735"
    dscat = spec.codelist("DSCAT").set_index("term")["term_ncit_code"].to_dict()
    assert dscat == {"DISPOSITION EVENT": "C74590", "OTHER EVENT": "C150824", "PROTOCOL MILESTONE": "C74588"}
