"""ADLB toxicity by direction (ADaMIG 1.3 ATOXDSCL/ATOXDSCH, ATOXGRL/ATOXGRH, BTOXGRL/BTOXGRH,
SHIFT1/SHIFT2, ANL01FL/ANL02FL) and the shift table built from them, on a hand-built potassium
and ALT fixture. Expected values are worked out by hand from the rule stated in
pipeline.adam.adlb.toxicity_directions: a graded record has its LBTOXGR in LBTOX's direction
and 0 in the other direction; an ungraded record has neither."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.adam import adlb
from pipeline.report import tables
from pipeline.spec import load_spec

from conftest import SPECS

T0 = 20000.0  # infusion date (SAS date)


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS, "adam")


def records() -> pd.DataFrame:
    # USUBJID, PARAMCD, ADT (days from T0), LBTOX, LBTOXGR, baseline?, post?
    rows = [
        ("S1", "K", -6, "Hyperkalemia", "1", True, False),   # baseline: high grade 1
        ("S1", "K", 3, "Hypokalemia", "2", False, True),     # low 2 -> high 0
        ("S1", "K", 5, "Hyperkalemia", "0", False, True),    # both 0
        ("S1", "K", 7, "", "", False, True),                 # not graded: neither direction
        ("S1", "ALT", -6, "Alanine aminotransferase increased", "0", True, False),
        ("S1", "ALT", 2, "Alanine aminotransferase increased", "3", False, True),
        ("S1", "ALT", 9, "Alanine aminotransferase increased", "3", False, True),  # tie: earlier wins
        ("S2", "K", 4, "Hypokalemia", "1", False, True),     # no baseline record
    ]
    f = pd.DataFrame(rows, columns=["USUBJID", "PARAMCD", "d", "_TOX", "ATOXGR", "base", "_post"])
    f["ADT"] = T0 + f["d"]
    f["ABLFL"] = np.where(f["base"], "Y", "")
    f["PARAM"] = f["PARAMCD"]
    f["BTOXGR"] = ""
    return f.drop(columns=["d", "base"])


def test_toxicity_terms_from_the_criteria_table(spec):
    t = adlb.toxicity_terms(spec)
    assert (t.loc["K", "low"], t.loc["K", "high"]) == ("Hypokalemia", "Hyperkalemia")
    assert (t.loc["ALT", "low"], t.loc["ALT", "high"]) == ("", "Alanine aminotransferase increased")
    # the criteria table uses the CRF code LIPASE; ADLB PARAMCD is the SDTM LBTESTCD LIPASET
    assert t.loc["LIPASET", "high"] == "Lipase increased"


def test_grades_by_direction(spec):
    out = adlb.toxicity_shift(adlb.toxicity_directions(records(), adlb.toxicity_terms(spec)))
    k1 = out[(out["USUBJID"] == "S1") & (out["PARAMCD"] == "K")]
    assert list(k1["ATOXDSCL"].unique()) == ["Hypokalemia"] and list(k1["ATOXDSCH"].unique()) == ["Hyperkalemia"]
    assert list(k1["ATOXGRL"]) == ["0", "2", "0", ""]
    assert list(k1["ATOXGRH"]) == ["1", "0", "0", ""]
    assert set(k1["BTOXGRL"]) == {"0"} and set(k1["BTOXGRH"]) == {"1"}
    assert list(k1["SHIFT1"]) == ["", "0 to 2", "0 to 0", ""]
    assert list(k1["SHIFT2"]) == ["", "1 to 0", "1 to 0", ""]
    assert list(k1["ANL01FL"]) == ["", "Y", "", ""]          # worst low: grade 2 on day 3
    assert list(k1["ANL02FL"]) == ["", "Y", "", ""]          # worst high: 0 on days 3 and 5, earliest
    alt = out[(out["USUBJID"] == "S1") & (out["PARAMCD"] == "ALT")]
    assert list(alt["ATOXGRL"]) == ["", "", ""] and list(alt["ANL01FL"]) == ["", "", ""]
    assert list(alt["ANL02FL"]) == ["", "Y", ""]            # tie at grade 3: day 2 before day 9
    k2 = out[out["USUBJID"] == "S2"]
    assert list(k2["BTOXGRL"]) == [""] and list(k2["SHIFT1"]) == ["Missing to 1"]


def test_shift_table_from_adlb(spec):
    out = adlb.toxicity_shift(adlb.toxicity_directions(records(), adlb.toxicity_terms(spec)))
    worst = tables.adlb_worst_grades(out, pd.Series(["S1", "S2"]))
    got = {(r.USUBJID, r.PARAMCD, r.ATOXDSC): (None if pd.isna(r.baseline) else r.baseline, r.worst)
           for r in worst.itertuples()}
    assert got == {("S1", "K", "Hypokalemia"): (0, 2), ("S1", "K", "Hyperkalemia"): (1, 0),
                   ("S1", "ALT", "Alanine aminotransferase increased"): (0, 3), ("S2", "K", "Hypokalemia"): (None, 1),
                   # S2's hypokalemia record is a grade 0 for hyperkalemia, without a baseline
                   ("S2", "K", "Hyperkalemia"): (None, 0)}
    labels = {"grade": "Grade", "missing_grade": "Grade Missing"}
    t = tables.lab_shift_table(worst, ["0", "1", "2", "3", "4"], labels, ("PARAMCD", "PARAM", "ATOXDSC"))
    f = t.set_index(["PARAMCD", "ATOXDSC", "baseline_grade"])
    assert f.loc[("K", "Hypokalemia", "0"), "Grade 2"] == 1
    assert f.loc[("K", "Hypokalemia", "Grade Missing"), "Grade 1"] == 1
    assert f.loc[("K", "Hyperkalemia", "1"), "Grade 0"] == 1
    assert f.loc[("K", "Hyperkalemia", "1"), "total"] == 1
    assert f.loc[("K", "Hyperkalemia", "Grade Missing"), "Grade 0"] == 1
    assert ("ALT", "Alanine aminotransferase increased", "Grade Missing") not in f.index
    # subject S2 outside the population: not counted
    only1 = tables.adlb_worst_grades(out, pd.Series(["S1"]))
    assert set(only1["USUBJID"]) == {"S1"}


def test_adam_parameter_listing_orders_and_dates():
    adrs = pd.DataFrame({"USUBJID": ["B", "A", "A", "A", "A"],
                         "PARAMCD": ["INVRESP", "OVRLRESP", "INVRESP", "BOR", "INVRESP"],
                         "ADT": [T0, T0 + 28, T0 + 28, T0 + 90, T0 + 1.0],
                         "AVALC": ["CR", "CRi", "CR", "CR", "NE"]})
    subj = pd.DataFrame({"USUBJID": ["A", "B"], "COHORT": ["DL1", "DL2"]})
    out = tables.adam_parameter_listing(adrs, subj, ["INVRESP", "OVRLRESP"])
    # BOR not requested; by subject, date, then INVRESP before OVRLRESP; 20000 = 2014-10-04
    assert list(zip(out["USUBJID"], out["ADT"], out["PARAMCD"], out["COHORT"])) == [
        ("A", "2014-10-05", "INVRESP", "DL1"), ("A", "2014-11-01", "INVRESP", "DL1"),
        ("A", "2014-11-01", "OVRLRESP", "DL1"), ("B", "2014-10-04", "INVRESP", "DL2")]


def test_icaht_summary_counts_by_dose_level():
    from pipeline.adam.reports import icaht_summary
    adsl = pd.DataFrame({"USUBJID": ["A", "B", "C", "D"], "SAFFL": ["Y", "Y", "Y", ""]})
    adlb = pd.DataFrame({
        "USUBJID": ["A", "B", "C", "D", "A", "C"], "PARAMCD": ["ICAHTE"] * 4 + ["ICAHTL"] * 2,
        "PARAM": ["Early"] * 4 + ["Late"] * 2, "AVAL": [0.0, 3.0, 4.0, 4.0, 1.0, 3.0],
        "TRT01AN": [1.0, 1.0, 2.0, 2.0, 1.0, 2.0], "TRT01A": ["DL1", "DL1", "DL2", "DL2", "DL1", "DL2"]})
    t = icaht_summary(adlb, adsl).set_index(["PARAMCD", "TRT01A"])
    # D is not in the safety population; early: DL1 A=0, B=3; DL2 C=4; all three together
    assert t.loc[("ICAHTE", "DL1"), "n"] == 2
    assert t.loc[("ICAHTE", "DL1"), "grade_0"] == "1 (50.0)" and t.loc[("ICAHTE", "DL1"), "grade_3"] == "1 (50.0)"
    assert t.loc[("ICAHTE", "DL2"), "grade_4"] == "1 (100.0)"
    assert t.loc[("ICAHTE", "ALL"), "n"] == 3 and t.loc[("ICAHTE", "ALL"), "grade_3_or_more"] == "2 (66.7)"
    assert t.loc[("ICAHTL", "ALL"), "grade_1"] == "1 (50.0)" and t.loc[("ICAHTL", "ALL"), "grade_3_or_more"] == "1 (50.0)"
    assert list(t.index.get_level_values(1)) == ["DL1", "DL2", "ALL", "DL1", "DL2", "ALL"]
