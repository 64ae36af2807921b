"""The ADaM modules' tables worked out from the rule tables alone (pipeline.adam.common.spec_table):
made once per loaded spec, handed out as copies, equal to what the rules module computes."""

from __future__ import annotations

import pandas as pd

from pipeline.adam import adlb, common
from pipeline.rules import response as R
from pipeline.spec import load_spec

from conftest import SPECS


def test_spec_tables_equal_the_rule_functions_and_are_copies():
    spec = load_spec(SPECS, "adam")
    order = common.response_order(spec)
    pd.testing.assert_frame_equal(order, R.response_order(spec))
    # the ranks as response_order.csv gives them: CR best
    assert order.set_index("category").loc["CR", "rank"] == 1.0
    order.loc[:, "rank"] = -1.0  # a caller changing its copy does not change the next one
    assert common.response_order(spec).set_index("category").loc["CR", "rank"] == 1.0
    for name in ("cns_status", "cns_response", "emd_response", "response_combined"):
        pd.testing.assert_frame_equal(common.validated_rules(spec, name), R.validate_rules(spec.rule(name), name))
    pd.testing.assert_frame_equal(common.response_rules(spec, "leukemia", "NCCN ALL v3.2023"),
                                  R.response_rules(spec, "leukemia", "NCCN ALL v3.2023"))


def test_spec_table_is_computed_once_per_spec():
    calls = []

    def compute(s):
        calls.append(s)
        return pd.DataFrame({"x": [1, 2]})

    spec, other = load_spec(SPECS, "adam"), load_spec(SPECS, "adam")
    for _ in range(3):
        assert common.spec_table(spec, "t", compute)["x"].tolist() == [1, 2]
    common.spec_table(other, "t", compute)
    assert calls == [spec, other]


def test_icaht_table_problems_are_checked_once_per_spec():
    spec = load_spec(SPECS, "adam")
    seen = []
    original = adlb.icaht_table_problems

    def counting(rules, window):
        seen.append(window)
        return original(rules, window)

    adlb.icaht_table_problems = counting
    try:
        lab = pd.DataFrame({"USUBJID": ["X"], "PARAMCD": ["NEUT"], "AVAL": [2.0], "ADT": [23376.0],
                            "ADTM": [23376.0 * 86400], "SRCSEQ": [1.0]})
        adsl = pd.DataFrame({"USUBJID": ["X"], "SAFFL": ["Y"], "TRTSDT": [23376.0]})
        for _ in range(2):
            out = adlb.icaht(lab, adsl, pd.Series(dtype="float64"), spec)
    finally:
        adlb.icaht_table_problems = original
    assert seen == [30]
    # one ANC of 2.0 on the infusion day: no day below 0.5 -> early grade 0
    assert out.set_index("PARAMCD").loc["ICAHTE", "AVAL"] == 0.0
