"""DV (protocol deviations) by the study's [[deviations]] rules, on hand-built datasets.

NCT06316427: [orr] month 3 = protocol day 90 +/- 7 (VISITNUM 15), DLT window 21 days,
DAY 21 = VISITNUM 12 (window protocol days 19..23), DAY 28 = VISITNUM 13; rules DV-ELIG,
DV-WIN-PRIMARY, DV-WIN-D28 (day 28 +/- 3), DV-DLT-MISSED.
"""

import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.domains.dv import deviations, fill_template, load_rules
from pipeline.domains.ie import FROM_LABS, lab_failures
from pipeline.errors import ConfigError
from pipeline.spec import load_spec

from conftest import SPECS


@pytest.fixture(scope="module")
def study():
    return load_study(SPECS, "NCT06316427")


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


def _dm():
    return pd.DataFrame({"USUBJID": ["A", "B", "C", "D", "E", "SF"], "ARMCD": ["AUTO"] * 5 + [""],
                         "RFSTDTC": ["2024-01-01T10:00"] * 5 + [""], "RFPENDTC": ["2024-12-31"] * 6})


def _rs(dys):
    """OVRLRESP records at MONTH 3, one subject per study day."""
    subj = ["A", "B", "C", "D", "E"][:len(dys)]
    dtc = (pd.Timestamp("2024-01-01") + pd.to_timedelta([d - 1 for d in dys], unit="D")).strftime("%Y-%m-%d")
    return pd.DataFrame({"USUBJID": subj, "DOMAIN": "RS", "RSTESTCD": "OVRLRESP", "VISITNUM": 15.0,
                         "VISIT": "MONTH 3", "RSDTC": list(dtc), "RSDY": [float(d) for d in dys]})


def test_primary_response_window_edges(study, spec):
    # protocol day = RSDY - 1: 83 and 97 are exactly 90 -/+ 7 (inside); 82 and 98 are one day outside
    rs = _rs([84, 98, 83, 99])
    dv = deviations({"DM": _dm(), "RS": rs}, study, spec)
    hits = dv[dv["DVSPID"] == "DV-WIN-PRIMARY"].set_index("USUBJID")
    assert sorted(hits.index) == ["C", "D"]
    assert hits.loc["C", "DVTERM"] == "MONTH 3 response assessment on protocol day 82, outside day 90 +/- 7 days"
    assert hits.loc["D", "DVSTDTC"] == "2024-04-08" and hits.loc["D", "DVSTDY"] == 99
    assert (hits["DVCAT"] == "VISIT WINDOW").all()
    # month 3 records are not day 28 records
    assert not (dv["DVSPID"] == "DV-WIN-D28").any()


def test_day28_window_edges(study, spec):
    rs = _rs([26, 33, 25, 34]).assign(VISITNUM=13.0, VISIT="DAY 28")   # protocol days 25, 32, 24, 33
    dv = deviations({"DM": _dm(), "RS": rs}, study, spec)
    assert sorted(dv.loc[dv["DVSPID"] == "DV-WIN-D28", "USUBJID"]) == ["B", "C", "D"]
    rs = _rs([26, 32]).assign(VISITNUM=13.0, VISIT="DAY 28")            # 25 and 31: 28 -/+ 3, inside
    assert deviations({"DM": _dm(), "RS": rs}, study, spec).empty


def test_dlt_window_visit_missed(study, spec):
    sv = pd.DataFrame({"USUBJID": ["A", "A", "B"], "VISITNUM": [12.0, 13.0, 12.0], "VISIT": ["DAY 21", "DAY 28", "DAY 21"],
                       "SVOCCUR": ["N", "N", "Y"]})
    dv = deviations({"DM": _dm(), "SV": sv}, study, spec)
    # DAY 21 (protocol day 21 <= 21) missed by A; DAY 28 is after the DLT window; B had DAY 21
    assert dv[["USUBJID", "DVSPID", "DVTERM"]].values.tolist() == [
        ["A", "DV-DLT-MISSED", "DAY 21 (protocol day 21) of the DLT observation window not done"]]
    # the window closed on protocol day 23: 2024-01-01 + 23 days
    assert dv["DVSTDTC"].tolist() == ["2024-01-24"] and dv["DVSTDY"].tolist() == [24]
    assert dv["DVDECOD"].tolist() == ["DLT WINDOW ASSESSMENT NOT DONE"]


def test_enrolled_subject_with_ie_record_is_a_deviation(study, spec):
    ie = pd.DataFrame({"USUBJID": ["A", "SF"], "IETESTCD": ["EX06", "IN03"], "IETEST": ["x", "y"],
                       "IECAT": ["EXCLUSION", "INCLUSION"], "IEDTC": ["2023-12-20", "2023-12-21"]})
    dv = deviations({"DM": _dm(), "IE": ie}, study, spec)
    assert dv[["USUBJID", "DVSPID", "DVTERM", "DVSTDTC"]].values.tolist() == [
        ["A", "DV-ELIG", "Enrolled although EXCLUSION criterion EX06 was not met", "2023-12-20"]]
    assert dv["DVSEQ"].tolist() == [1] and dv["DVSTDY"].tolist() == [-12]


def test_lab_failures_give_ie_records_once(study):
    # the planted NCT06316427 subject 036 fails EX06 (creatinine 1.28 x the limit); 001 passes
    report = pd.DataFrame({
        "USUBJID": ["S-036", "S-036", "S-001", "S-002"], "IETESTCD": ["EX06", "EX06", "EX06", "EX06"],
        "LBDTC": ["2024-05-03T09:00", "2024-05-01T08:00", "2024-05-01", "2024-06-01"],
        "row_result": ["NOT MET", "MET", "MET", "NOT MET"], "group_result": "",
        "criterion_result": ["FAIL", "FAIL", "PASS", "FAIL"]})
    collected = pd.DataFrame({"USUBJID": ["S-002"], "IETESTCD": ["EX06"]})   # 002 already has its IE record
    out = lab_failures(report, collected)
    # the failing row's date, not the earlier passing row's
    assert out.values.tolist() == [["S-036", "EX06", "2024-05-03"]]
    assert FROM_LABS == "ELIGIBILITY LABS"


def test_template_and_rule_errors(study):
    idx = pd.RangeIndex(2)
    got = fill_template("{VISIT} on day {DAY}", {"VISIT": pd.Series(["A", "B"]), "DAY": pd.Series([3, 4])}, idx)
    assert got.tolist() == ["A on day 3", "B on day 4"]
    with pytest.raises(ConfigError, match="NOPE"):
        fill_template("{NOPE}", {"VISIT": pd.Series(["A", "B"])}, idx)
    rules = load_rules(study)
    assert rules["id"].tolist() == ["DV-ELIG", "DV-WIN-PRIMARY", "DV-WIN-D28", "DV-DLT-MISSED"]
    assert rules["source"].str.startswith("seed 002").all()
