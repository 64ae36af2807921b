"""VS: test names, standard results and units, LOBXFL, visits."""

import pytest

from dm_ex_ds_fixture import context, raw_forms, run
from pipeline.domains import vs as vs_mod


@pytest.fixture(scope="module")
def built():
    ctx = context()
    res = run(ctx, ("dm", "ex", "se", "vs"))
    return ctx, res


def test_results_and_flags(built):
    ctx, _ = built
    vs = ctx.datasets["VS"].sort_values(["USUBJID", "VSSEQ"])
    cols = ["VSTESTCD", "VSTEST", "VSORRES", "VSSTRESC", "VSSTRESN", "VSSTRESU", "VSLOBXFL", "VISITNUM", "VSDY"]
    assert vs[cols].iloc[:3].values.tolist() == [
        ["HEIGHT", "Height", "172.50", "172.5", 172.5, "cm", "Y", 1.0, -12.0],
        ["WEIGHT", "Weight", "65.0", "65", 65.0, "kg", "Y", 1.0, -12.0],
        ["WEIGHT", "Weight", "63", "63", 63.0, "kg", "", 13.0, 29.0]]       # after infusion: not flagged
    assert vs[cols[:8]].iloc[3].tolist() == ["WEIGHT", "Weight", "70", "70", 70.0, "kg", "", 1.0]
    assert vs["VSDY"].isna().iloc[3]      # never infused: no RFSTDTC, no study day
    never_infused = vs.iloc[3]
    assert never_infused["VSLOBXFL"] == "" and never_infused["VSDTC"] == "2025-01-11"
    assert vs["EPOCH"].tolist() == ["SCREENING", "SCREENING", "FOLLOW-UP", "SCREENING"]


def test_vstest_codes(built):
    spec = built[0].spec
    assert spec.codelist("VSTESTCD").set_index("term")["term_ncit_code"].to_dict() == {"HEIGHT": "C25347", "WEIGHT": "C25208"}
    assert vs_mod.standard_units(spec) == {"HEIGHT": "cm", "WEIGHT": "kg"}


def test_wrong_unit_rejected():
    forms = raw_forms()
    forms["vs"].loc[0, "VSORRESU"] = "kg"
    ctx = context(forms)
    run(ctx, ("dm", "ex", "se"))
    res = vs_mod.build(ctx)
    assert res.rejected["row"].tolist() == [2]
    assert res.findings["check"].tolist() == ["vs_unit"]
    assert sorted(res.consumed["row"]) == [3, 4, 5]
