"""Bad-input battery, rule side: two-direction CTCAE grades with a missing reference limit
(rule 3 of pipeline.rules.ctcae_lab), and the creatinine-clearance merge whatever datetime
unit pandas gives (pipeline.domains.lb)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from pipeline.domains import lb as lb_mod
from pipeline.rules import ctcae_lab, units
from pipeline.spec import load_spec

from conftest import SPECS

pytestmark = pytest.mark.badinput


@lru_cache(maxsize=1)
def tables():
    spec = load_spec(SPECS)
    return spec, units.load_unit_table(spec), ctcae_lab.load_criteria(spec, "5.0")


def grade(test, values, lln, uln, unit="mmol/L"):
    """Grade standard-unit values of one test (no baseline, post-infusion)."""
    n = len(values)
    frame = pd.DataFrame({"LBTESTCD": [test] * n, "LBSTRESU": unit, "value": [float(v) for v in values],
                          "censor": 0, "LLN": np.nan if lln is None else lln, "ULN": np.nan if uln is None else uln,
                          "post": True, "BASE": np.nan, "BASE_CENSOR": 0, "BASE_LLN": np.nan, "BASE_ULN": np.nan})
    g = ctcae_lab.grade_labs(frame, tables()[2])
    return list(zip(g.frame["LBTOX"], g.frame["LBTOXGR"])), g


# calcium: Hypercalcemia 1 is >ULN - 2.9 mmol/L, 2 is >2.9 - 3.1; Hypocalcemia 1 is <LLN - 2.0, 2 is <2.0 - 1.75
def test_calcium_no_uln_normal_value_is_unknown_not_hypocalcemia_0():
    got, g = grade("CA", [2.9], lln=2.1, uln=None)
    assert got == [("", "")]  # was ("Hypocalcemia", "0"): the high side could be grade 1
    assert g.range_missing.tolist() == [True]
    assert np.isnan(g.by_direction["high"].iloc[0]) and g.by_direction["low"].iloc[0] == 0


def test_calcium_no_uln_low_value_still_graded():
    got, _ = grade("CA", [1.6, 1.9], lln=2.1, uln=None)
    assert got == [("Hypocalcemia", "3"), ("Hypocalcemia", "2")]  # below the LLN: cannot be above the ULN


def test_calcium_no_uln_si_grade_evaluable():
    got, _ = grade("CA", [3.2], lln=2.1, uln=None)
    assert got == [("Hypercalcemia", "3")]  # >3.1 - 3.4 mmol/L uses no ULN


def test_potassium_no_lln_value_near_low_side_unknown():
    # Hypokalemia 1 is <LLN - 3.0; with LLN missing a 3.2 could be grade 1: unknown
    got, _ = grade("K", [3.2, 4.0], lln=None, uln=5.3)
    assert got == [("", ""), ("", "")]


def test_potassium_no_lln_high_value_graded():
    got, _ = grade("K", [5.8], lln=None, uln=5.3)
    assert got == [("Hyperkalemia", "2")]


def test_sodium_no_uln_unknown():
    got, _ = grade("SODIUM", [144.0], lln=135, uln=None)
    assert got == [("", "")]


def test_both_limits_known_still_grade_0():
    got, _ = grade("CA", [2.3, 2.5], lln=2.1, uln=2.6)
    assert got == [("Hypocalcemia", "0"), ("Hypercalcemia", "0")]


def test_worst_grades_never_counts_an_ungraded_direction_as_0():
    spec, _, criteria = tables()
    _, g = grade("CA", [1.6, 2.3], lln=2.1, uln=None)  # Hypocalcemia 3 (high unknown), then unknown
    _, g2 = grade("CA", [2.3], lln=2.1, uln=2.6)  # Hypocalcemia 0 with both known
    lb = pd.DataFrame({"USUBJID": ["S1", "S1", "S2"], "LBTESTCD": "CA",
                       "LBTOX": list(g.frame["LBTOX"]) + list(g2.frame["LBTOX"]),
                       "LBTOXGR": list(g.frame["LBTOXGR"]) + list(g2.frame["LBTOXGR"]),
                       "LBLOBXFL": "", "post": True})
    for d, col in ctcae_lab.DIRECTION_COLUMNS.items():
        lb[col] = list(g.by_direction[d]) + list(g2.by_direction[d])
    out = ctcae_lab.worst_grades(lb, criteria).set_index(["USUBJID", "LBTOX"])
    assert out.loc[("S1", "Hypocalcemia"), "worst_post_grade"] == 3
    assert ("S1", "Hypercalcemia") not in out.index  # never graded: not a 0
    assert out.loc[("S2", "Hypercalcemia"), "worst_post_grade"] == 0  # both sides known: a real 0
    assert out.loc[("S1", "Hypocalcemia"), "n_post_graded"] == 1


# ---- creatinine clearance: merge_asof keys of different datetime units -------------------------

def crcl_inputs(creat_rows: int):
    spec, table, _ = tables()
    n = creat_rows
    lbf = pd.DataFrame({
        "STUDYID": "S", "USUBJID": ["S-01-001"] * n, "LBTESTCD": ["CREAT"] * n, "value": [88.4] * n,
        "censor": np.zeros(n, dtype="int8"), "LBDTC": ["2025-01-03"] * n, "_ROW": range(2, n + 2), "_FILE": "lb.csv",
        "LBDY": -12.0, "VISITNUM": 1.0, "VISIT": "SCREENING", "EPOCH": "SCREENING", "pre": True, "post": False,
        "_dt": pd.NaT})
    dm = pd.DataFrame({"USUBJID": ["S-01-001"], "AGE": ["40"], "SEX": ["M"], "RFXSTDTC": ["2025-01-15"]})
    weights = pd.DataFrame({"USUBJID": ["S-01-001"], "WT_DTC": ["2025-01-02"], "WEIGHT": [70.0]})
    return lbf, dm, weights, table, lb_mod.load_crcl_parameters(spec)


def test_crcl_without_pre_infusion_creatinine_but_with_weight_no_merge_error():
    lbf, dm, weights, table, params = crcl_inputs(0)
    out, notes = lb_mod.derive_crcl_records(lbf, dm, weights, table, params, pd.Series([], dtype=bool))
    assert out.empty and notes.empty  # was pandas MergeError datetime64[s] vs datetime64[us]


def test_crcl_with_creatinine_still_derived():
    lbf, dm, weights, table, params = crcl_inputs(1)
    out, _ = lb_mod.derive_crcl_records(lbf, dm, weights, table, params, pd.Series([True]))
    # 88.4 umol/L = 1.0 mg/dL; (140 - 40) x 70 / (72 x 1.0) = 97.2 mL/min
    assert out["LBSTRESN"].tolist() == [97.2]


def test_crcl_weight_with_seconds_resolution_dates():
    lbf, dm, weights, table, params = crcl_inputs(1)
    weights = pd.concat([weights, pd.DataFrame({"USUBJID": ["S-01-002"], "WT_DTC": [""], "WEIGHT": [60.0]})])
    out, _ = lb_mod.derive_crcl_records(lbf, dm, weights, table, params, pd.Series([True]))
    assert out["LBSTRESN"].tolist() == [97.2]
