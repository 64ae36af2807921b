"""EX and SE: doses, units, split infusion, study days, EPOCH, subject elements."""

import pytest

from dm_ex_ds_fixture import context, raw_forms, run
from pipeline.domains import ex as ex_mod


@pytest.fixture(scope="module")
def built():
    ctx = context()
    run(ctx, ("dm", "ex", "se"))
    return ctx


def test_one_record_per_administration_with_doses_and_units(built):
    ex = built.datasets["EX"]
    assert len(ex) == 8
    cart = ex[ex["EXCAT"] == "CAR-T INFUSION"].sort_values("EXSEQ")
    assert cart[["EXSPID", "EXDOSE", "EXDOSU", "EXDOSFRM", "EXROUTE"]].values.tolist() == [
        ["CART-1", 600000.0, "cells/kg", "SUSPENSION", "INTRAVENOUS"],
        ["CART-2", 400000.0, "cells/kg", "SUSPENSION", "INTRAVENOUS"]]
    assert cart[["EXSTDTC", "EXENDTC", "EXSTDY", "EXENDY", "EPOCH"]].values.tolist() == [
        ["2025-01-15T10:00", "2025-01-15T10:30", 1.0, 1.0, "TREATMENT"],
        ["2025-01-16T09:00", "2025-01-16T09:20", 2.0, 2.0, "TREATMENT"]]
    cy = ex[ex["EXTRT"] == "CYCLOPHOSPHAMIDE"].sort_values("EXSTDTC")
    assert cy["EXDOSE"].tolist() == [300.0] * 3 and set(cy["EXDOSU"]) == {"mg/m2"}
    assert cy["EXSTDY"].tolist() == [-5.0, -4.0, -3.0]
    assert set(cy["EPOCH"]) == {"LYMPHODEPLETION"}
    assert set(cy["EXDOSFRM"]) == {"INJECTION, POWDER, LYOPHILIZED, FOR SOLUTION"}


def test_exseq_order(built):
    ex = built.datasets["EX"].sort_values("EXSEQ")
    # same day: FLU 08:00 before CY 09:00
    assert ex["EXSPID"].tolist() == ["LD-FLU-1", "LD-CY-1", "LD-FLU-2", "LD-CY-2", "LD-FLU-3", "LD-CY-3",
                                     "CART-1", "CART-2"]


def test_units_in_spec_codelists(built):
    spec = built.spec
    assert {"cells/kg", "mg/m2"} <= set(spec.terms("EXDOSU"))
    cl = spec.codelist("EXDOSU")
    assert cl["ncit_code"].iloc[0] == "C71620" and cl["extensible"].iloc[0] == "Yes"
    ext = cl.set_index("term").loc["cells/kg"]
    assert ext["term_ncit_code"] == "" and ext["version"] == "sponsor extension"
    frm = spec.codelist("FRM").set_index("term")["term_ncit_code"]
    assert frm["INJECTION"] == "C42946"
    assert frm["INJECTION, POWDER, LYOPHILIZED, FOR SOLUTION"] == "C42957"


def test_subject_elements(built):
    se = built.datasets["SE"]
    s101 = se[se["USUBJID"].str.endswith("101")].sort_values("SESEQ")
    assert s101[["ETCD", "EPOCH", "SESTDTC", "SEENDTC", "SESTDY", "SEENDY"]].values.tolist() == [
        ["SCRN", "SCREENING", "2025-01-02", "2025-01-10T08:00", -13.0, -5.0],
        ["LD", "LYMPHODEPLETION", "2025-01-10T08:00", "2025-01-15T10:00", -5.0, 1.0],
        ["CART", "TREATMENT", "2025-01-15T10:00", "2025-02-06", 1.0, 23.0],   # 15-JAN + 21 + 1 day
        ["FU", "FOLLOW-UP", "2025-02-06", "2025-03-21", 23.0, 66.0]]
    # screen failure: screening only, ends at RFPENDTC
    s102 = se[se["USUBJID"].str.endswith("102")]
    assert s102[["ETCD", "SESTDTC", "SEENDTC"]].values.tolist() == [["SCRN", "2025-01-05", "2025-01-08"]]
    assert list(se.columns) == built.spec.var_names("SE")


def test_unknown_subject_and_undeclared_treatment_rejected():
    forms = raw_forms()
    forms["ex"].loc[0, "SUBJID"] = "999"
    forms["ex"].loc[1, "EXTRT"] = "BENDAMUSTINE"
    ctx = context(forms)
    run(ctx, ("dm",))
    res = ex_mod.build(ctx)
    assert sorted(res.rejected["row"].tolist()) == [2, 3]
    assert "ex_treatment_not_in_study" in set(res.findings["check"])
    assert len(res.datasets["EX"]) == 6
    assert sorted(res.consumed["row"]) == [4, 5, 6, 7, 8, 9]


def test_impossible_date_rejected_not_raised():
    forms = raw_forms()
    forms["ex"].loc[0, "EXSTDAT"] = "31-FEB-2025"
    ctx = context(forms)
    run(ctx, ("dm",))
    res = ex_mod.build(ctx)
    assert res.rejected["row"].tolist() == [2]
    assert res.findings.loc[res.findings["check"] == "ex_impossible_date", "severity"].tolist() == ["error"]


def test_se_reads_the_elements_ex_derived_and_equals_deriving_them_again(built):
    """SE from the subject elements EX returned in ``derived`` equals SE derived from DM and the
    exported EX (the path without them), and building SE leaves EX's frame unchanged."""
    import pandas as pd
    from pipeline.derive.epoch import subject_elements
    from pipeline.domains import se as se_mod
    shared = built.derived["subject_elements"]
    before = shared.copy()
    again = se_mod.build(built).datasets["SE"]
    pd.testing.assert_frame_equal(shared, before)
    pd.testing.assert_frame_equal(shared, subject_elements(built.datasets["DM"], built.datasets["EX"], built.study))
    derived = built.derived
    try:
        built.derived = {}
        without = se_mod.build(built).datasets["SE"]
    finally:
        built.derived = derived
    pd.testing.assert_frame_equal(again, without)
    pd.testing.assert_frame_equal(again, built.datasets["SE"])
