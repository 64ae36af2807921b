"""IE: orientation of IEORRES (inclusion not met -> N, exclusion met -> Y), IEYN=Y rows consumed."""

import pytest

from dm_ex_ds_fixture import context, raw_forms, run
from pipeline.domains import ie as ie_mod


@pytest.fixture(scope="module")
def built():
    ctx = context()
    res = run(ctx, ("dm", "ex", "se", "ie"))
    return ctx, res


def test_orientation(built):
    ctx, _ = built
    ie = ctx.datasets["IE"].set_index("IETESTCD")
    assert ie.loc["IN03", ["IECAT", "IEORRES", "IESTRESC"]].tolist() == ["INCLUSION", "N", "N"]
    assert ie.loc["EX06", ["IECAT", "IEORRES", "IESTRESC"]].tolist() == ["EXCLUSION", "Y", "Y"]
    assert ie.loc["IN03", "IETEST"] == "Male or female, age 1-70 years"
    assert ie.loc["EX06", ["VISITNUM", "VISIT", "EPOCH", "IEDTC"]].tolist() == [1.0, "SCREENING", "SCREENING", "2025-01-06"]
    assert ie["IESEQ"].sort_values().tolist() == [1.0, 2.0]


def test_all_met_rows_consumed_not_rejected(built):
    _, res = built
    r = res["ie"]
    assert r.rejected.empty
    c = r.consumed
    assert sorted(c.loc[c["dataset"] == ie_mod.ALL_MET, "row"]) == [2, 5]
    assert sorted(c.loc[c["dataset"] == "IE", "row"]) == [3, 4]


def test_unknown_criterion_rejected_and_category_mismatch():
    forms = raw_forms()
    forms["ie"].loc[1, "IETESTCD"] = "IN99"
    forms["ie"].loc[2, "IECAT"] = "INCLUSION"
    ctx = context(forms)
    run(ctx, ("dm", "ex", "se"))
    res = ie_mod.build(ctx)
    assert res.rejected["row"].tolist() == [3]
    checks = set(res.findings["check"])
    assert {"ie_criterion_not_in_ti", "ie_category_mismatch"} <= checks
    # TI decides the category: EX06 stays EXCLUSION with IEORRES Y
    assert res.datasets["IE"][["IETESTCD", "IECAT", "IEORRES"]].values.tolist() == [["EX06", "EXCLUSION", "Y"]]
