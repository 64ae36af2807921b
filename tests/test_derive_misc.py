"""USUBJID, SEQ, visits, EPOCH, LOBXFL and SUPPQUAL derivations."""

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.derive.baseline import last_obs_before_exposure
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.identifiers import usubjid
from pipeline.derive.seq import assign_seq
from pipeline.derive.visits import visit_numbers
from pipeline.errors import DataError

from conftest import SPECS


@pytest.fixture(scope="module")
def study():
    return load_study(SPECS, "NCT06316427")


def test_usubjid():
    f = pd.DataFrame({"STUDYID": ["S1"], "SITEID": ["01"], "SUBJID": ["0007"]})
    assert usubjid(f).tolist() == ["S1-01-0007"]


def test_seq_is_per_subject_and_deterministic():
    f = pd.DataFrame({"USUBJID": ["B", "A", "A", "B", "A"], "D": ["2", "3", "1", "1", "2"]})
    seq = assign_seq(f, ["D"])
    assert seq.tolist() == [2, 3, 1, 1, 2]
    assert assign_seq(f.iloc[::-1], ["D"]).reindex(f.index).tolist() == seq.tolist()


def test_visit_numbers_planned_and_unscheduled(study):
    v = pd.Series(["SCREENING", "DAY 0", "day 28", "UNSCHEDULED", "UNSCHEDULED"])
    dy = pd.Series([-14, 1, 29, 30, -40], dtype="float64")
    out = visit_numbers(v, study, dy)
    assert out["VISIT"].tolist() == ["SCREENING", "DAY 0", "DAY 28", "UNSCHEDULED", "UNSCHEDULED"]
    assert out["VISITNUM"].tolist()[:3] == [1.0, 3.0, 13.0]
    # without subjects and dates: the planned-schedule base + 0.01
    assert out["VISITNUM"].iloc[3] == pytest.approx(13.01)   # after DAY 28 (VISITDY 29)
    assert out["VISITNUM"].iloc[4] == pytest.approx(0.01)    # before the first planned visit


def test_unscheduled_visits_one_number_per_subject_and_date(study):
    # subject A: DAY 28 (VISITNUM 13) on 02-03; unscheduled 02-05 (twice the same day), 02-09, 02-07;
    # subject B: unscheduled 02-05 with no planned visit dated before it (study day 40 -> after DAY 28)
    v = pd.Series(["DAY 28", "UNSCHEDULED", "UNSCHEDULED", "UNSCHEDULED", "UNSCHEDULED", "UNSCHEDULED", "UNSCHEDULED"])
    u = pd.Series(["A", "A", "A", "A", "A", "B", "A"])
    d = pd.Series(["2024-02-03", "2024-02-05T08:00", "2024-02-05T15:00", "2024-02-09", "2024-02-07", "2024-02-05",
                   "2024-02"])
    dy = pd.Series([29, 31, 31, 35, 33, 40, np.nan])
    out = visit_numbers(v, study, dy, u, d)
    assert out["VISITNUM"].tolist()[:6] == [13.0, 13.01, 13.01, 13.03, 13.02, 13.01]
    assert np.isnan(out["VISITNUM"].iloc[6])   # partial date: cannot be placed


def test_renumber_unscheduled_is_consistent_across_datasets(study):
    from pipeline.derive.visits import renumber_unscheduled
    lb = pd.DataFrame({"USUBJID": ["A", "A", "A"], "DOMAIN": "LB", "VISIT": ["DAY 28", "UNSCHEDULED", "UNSCHEDULED"],
                       "VISITNUM": [13.0, 13.01, 13.02], "LBDTC": ["2024-02-03", "2024-02-07", "2024-02-09T10:00"],
                       "LBDY": [29.0, 33.0, 35.0]})
    # FA saw an unscheduled day (02-05) that LB did not, and the 02-09 assessment LB also has
    fa = pd.DataFrame({"USUBJID": ["A", "A"], "DOMAIN": "FA", "VISIT": ["UNSCHEDULED", "UNSCHEDULED"],
                       "VISITNUM": [13.01, 13.02], "FADTC": ["2024-02-05", "2024-02-09"], "FADY": [31.0, 35.0]})
    dm = pd.DataFrame({"USUBJID": ["A"], "RFSTDTC": ["2024-01-06"]})
    out = renumber_unscheduled({"DM": dm, "LB": lb, "FA": fa}, study)
    assert out["DM"] is dm
    assert out["LB"]["VISITNUM"].tolist() == [13.0, 13.02, 13.03]
    assert out["FA"]["VISITNUM"].tolist() == [13.01, 13.03]
    # never the same number for two dates of one subject
    allv = pd.concat([out["LB"].rename(columns={"LBDTC": "DTC"}), out["FA"].rename(columns={"FADTC": "DTC"})])
    allv = allv[allv["VISIT"] == "UNSCHEDULED"].assign(date=lambda f: f["DTC"].str[:10])
    assert allv.groupby("VISITNUM")["date"].nunique().max() == 1
    assert allv.groupby("date")["VISITNUM"].nunique().max() == 1


def test_renumber_unscheduled_takes_bases_dates_and_days_from_every_dataset(study):
    """Hand-computed: the base of an unscheduled date can come from another dataset, a dataset
    without --DY falls back to 0 before any planned visit, string dtypes do not split a subject,
    and the datasets that cannot take part (or have no unscheduled record) are returned as is."""
    from pipeline.derive.visits import renumber_unscheduled
    # VS holds subject A's only planned visit (DAY 28 = 13 on 02-03) and no unscheduled record
    vs = pd.DataFrame({"USUBJID": ["A"], "DOMAIN": "VS", "VISIT": ["DAY 28"], "VISITNUM": [13.0],
                       "VSDTC": ["2024-02-03"], "VSDY": [29.0]})
    # LB (str dtype USUBJID): A unscheduled on 02-07 (after VS's DAY 28) and on 02-01 (before it:
    # no planned visit of A on or before, study day 27 -> schedule base DAY 21 = 12, VISITDY 22),
    # B on 01-02 (study day -20, before SCREENING's VISITDY -14 -> base 0)
    lb = pd.DataFrame({"USUBJID": pd.array(["A", "A", "B", "B"], dtype="str"), "DOMAIN": "LB",
                       "VISIT": ["UNSCHEDULED", " unscheduled ", "UNSCHEDULED", "UNSCHEDULED"],
                       "VISITNUM": [np.nan, np.nan, np.nan, np.nan],
                       "LBDTC": ["2024-02-07T09:00", "2024-02-01", "2024-01-02", "2024-01"], "LBDY": [33, 27, -20, np.nan]})
    # FA has no --DY: A's 02-07 is the same date as LB's; B's 01-05 has no planned visit and no
    # study day -> base 0, the second date after that base
    fa = pd.DataFrame({"USUBJID": ["A", "B"], "DOMAIN": "FA", "VISIT": ["UNSCHEDULED", "UNSCHEDULED"],
                       "VISITNUM": [np.nan, np.nan], "FADTC": ["2024-02-07", "2024-01-05"]})
    ts = pd.DataFrame({"STUDYID": ["S"], "TSPARMCD": ["X"]})             # no USUBJID/VISIT: not taking part
    cm = pd.DataFrame({"USUBJID": ["A"], "VISIT": ["UNSCHEDULED"], "VISITNUM": [np.nan]})   # no --DTC
    empty = pd.DataFrame({"USUBJID": [], "VISIT": [], "VISITNUM": [], "EGDTC": []})
    out = renumber_unscheduled({"VS": vs, "LB": lb, "TS": ts, "CM": cm, "FA": fa, "EG": empty}, study)
    assert out["VS"] is vs and out["TS"] is ts and out["CM"] is cm and out["EG"] is empty
    lbv = out["LB"]["VISITNUM"].tolist()
    assert lbv[:3] == [13.01, 12.01, 0.01] and np.isnan(lbv[3])          # partial date: cannot be placed
    assert out["FA"]["VISITNUM"].tolist() == [13.01, 0.02]               # B: 01-02 then 01-05 after base 0
    assert lb["VISITNUM"].isna().all()                                   # the input frame is not changed
    assert out["LB"]["LBDTC"].tolist() == lb["LBDTC"].tolist()


def test_renumber_unscheduled_without_unscheduled_records_returns_the_input(study):
    from pipeline.derive.visits import renumber_unscheduled
    vs = pd.DataFrame({"USUBJID": ["A"], "VISIT": ["DAY 28"], "VISITNUM": [13.0], "VSDTC": ["2024-02-03"]})
    given = {"VS": vs}
    assert renumber_unscheduled(given, study) is given


def test_unknown_visit_raises(study):
    with pytest.raises(DataError, match="not in the schedule"):
        visit_numbers(pd.Series(["WEEK 99"]), study)


def _dm_ex():
    dm = pd.DataFrame({"USUBJID": ["S-01-1", "S-01-2"], "RFICDTC": ["2024-01-02", "2024-01-03"],
                       "RFSTDTC": ["2024-01-20T10:00", ""], "RFPENDTC": ["2024-12-31", "2024-01-15"]})
    ex = pd.DataFrame({"USUBJID": ["S-01-1", "S-01-1", "S-01-1"], "EXCAT": ["LYMPHODEPLETION"] * 2 + ["CAR-T INFUSION"],
                       "EXSTDTC": ["2024-01-16T08:00", "2024-01-15T08:00", "2024-01-20T10:00"]})
    return dm, ex


def test_subject_elements_and_epoch(study):
    dm, ex = _dm_ex()
    se = subject_elements(dm, ex, study)
    s1 = se[se.USUBJID == "S-01-1"].set_index("ETCD")
    assert s1.loc["LD", "SESTDTC"] == "2024-01-15T08:00"
    assert s1.loc["CART", "SESTDTC"] == "2024-01-20T10:00"
    # 21-day CAR-T element: protocol days 0..21, follow-up from day 22 = 2024-02-11
    assert s1.loc["FU", "SESTDTC"] == "2024-02-11"
    assert s1.loc["CART", "SEENDTC"] == "2024-02-11"
    # the screen-failure-like subject 2 has only screening
    assert se[se.USUBJID == "S-01-2"]["ETCD"].tolist() == ["SCRN"]
    u = pd.Series(["S-01-1"] * 6 + ["S-01-2"])
    d = pd.Series(["2024-01-10", "2024-01-15", "2024-01-20T09:59", "2024-01-20T10:00", "2024-02-10", "2024-02", "2024-01-10"])
    assert derive_epoch(u, d, se).tolist() == ["SCREENING", "LYMPHODEPLETION", "LYMPHODEPLETION", "TREATMENT",
                                               "TREATMENT", "", "SCREENING"]
    assert derive_epoch(pd.Series(["S-01-1"]), pd.Series(["2024-02-11"]), se).tolist() == ["FOLLOW-UP"]


def test_lobxfl_last_non_missing_before_infusion():
    f = pd.DataFrame({"USUBJID": ["A"] * 5, "LBTESTCD": ["ALT"] * 4 + ["AST"],
                      "LBDTC": ["2024-01-01", "2024-01-10", "2024-01-20", "2024-01-21", "2024-01-01"]})
    has = pd.Series([True, False, True, True, True])
    rfx = pd.Series(["2024-01-20T10:00"] * 5)
    flag = last_obs_before_exposure(f, ["USUBJID", "LBTESTCD"], "LBDTC", has, rfx)
    # 01-10 has no result; 01-20 without time on the infusion date counts as pre-infusion
    assert flag.tolist() == ["", "", "Y", "", "Y"]


@pytest.mark.parametrize("record,first_exposure,expected", [
    ("2024-01-19T23:59", "2024-01-20T08:00", True),    # the day before
    ("2024-01-20T07:59", "2024-01-20T08:00", True),    # same day, a minute before the first dose
    ("2024-01-20T08:00", "2024-01-20T08:00", False),   # at the first dose time: not before exposure
    ("2024-01-20T08:01", "2024-01-20T08:00", False),
    ("2024-01-20", "2024-01-20T08:00", True),          # date only on the dosing day: pre-dose convention
    ("2024-01-20T09:00", "2024-01-20", True),          # exposure without time: date comparison only
    ("2024-01-21", "2024-01-20", False),
    ("2024-01", "2024-01-20T08:00", False),            # partial date: cannot be placed
    ("2024-01-10", "", False),                         # never exposed
])
def test_before_exposure_same_day_rules(record, first_exposure, expected):
    from pipeline.derive.baseline import before_exposure
    assert before_exposure(pd.Series([record]), pd.Series([first_exposure])).tolist() == [expected]


def test_lobxfl_is_the_pre_lymphodepletion_value():
    # screening, a pre-dose sample on the first lymphodepletion day, one at the dose time, day 0 (infusion)
    f = pd.DataFrame({"USUBJID": ["A"] * 4, "LBTESTCD": ["NEUT"] * 4,
                      "LBDTC": ["2024-01-01T08:00", "2024-01-15T07:00", "2024-01-15T09:00", "2024-01-20"]})
    rfx = pd.Series(["2024-01-15T09:00"] * 4)   # RFXSTDTC = first fludarabine dose
    flag = last_obs_before_exposure(f, ["USUBJID", "LBTESTCD"], "LBDTC", pd.Series([True] * 4), rfx)
    assert flag.tolist() == ["", "Y", "", ""]


def test_stripped_upper_text_by_hand():
    from pipeline.derive.text import stripped_upper_text
    s = pd.Series([" Day 1", None, "unscheduled ", "Day 1", np.nan, 3], index=[5, 6, 7, 8, 9, 10], name="VISIT",
                  dtype=object)
    out = stripped_upper_text(s)
    assert out.tolist() == ["DAY 1", "", "UNSCHEDULED", "DAY 1", "", "3"]
    assert list(out.index) == [5, 6, 7, 8, 9, 10] and out.name == "VISIT" and out.dtype == "str"


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=6), st.none(), st.just(np.nan), st.integers(-3, 3),
                          st.sampled_from([" screening ", "Day 28", "UNSCHEDULED", "\u00df", "\u0130"])),
                max_size=15), st.booleans())
def test_stripped_upper_text_equals_stripped_text_upper(values, as_str):
    """Per distinct value equals the whole-column ``stripped_text(s).str.upper()`` it replaced,
    on object and ``str`` columns (missing values, numbers, non-ASCII letters)."""
    from pipeline.derive.text import stripped_text, stripped_upper_text
    s = pd.Series(values, dtype=object)
    if as_str:
        s = s.where(s.map(lambda v: isinstance(v, str)), None).astype("str")
    pd.testing.assert_series_equal(stripped_upper_text(s), stripped_text(s).str.upper())
