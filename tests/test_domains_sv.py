"""SV (subject visits) from the visits of every domain, on hand-built datasets.

Schedule of NCT06316427: SCREENING VISITNUM 1 (VISITDY -14), DAY 28 VISITNUM 13 (VISITDY 29,
window protocol days 25..31), MONTH 3 VISITNUM 15 (window 83..97).
"""

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.domains.sv import subject_visits
from pipeline.spec import load_spec

from conftest import SPECS


@pytest.fixture(scope="module")
def study():
    return load_study(SPECS, "NCT06316427")


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


def _dm():
    # A treated 2024-01-06, ended 2024-02-10; C treated 2024-01-01, ended 2024-02-01 (DAY 28 window
    # closes on day 31 = 2024-02-01: missed); D treated 2024-01-01, ended 2024-01-31 (window still open);
    # B screen failure
    return pd.DataFrame({"USUBJID": ["A", "B", "C", "D"],
                         "RFSTDTC": ["2024-01-06T10:00", "", "2024-01-01", "2024-01-01"],
                         "RFPENDTC": ["2024-02-10", "2023-12-30", "2024-02-01", "2024-01-31"]})


def _datasets():
    vs = pd.DataFrame({"USUBJID": ["A", "B", "C", "D"], "DOMAIN": "VS", "VISITNUM": [1.0, 1.0, 1.0, 1.0],
                       "VISIT": "SCREENING", "VSDTC": ["2023-12-24", "2023-12-28", "2023-12-20", "2023-12-20"]})
    lb = pd.DataFrame({"USUBJID": ["A", "A", "A", "A"], "DOMAIN": "LB", "VISITNUM": [1.0, 13.0, 13.01, 13.0],
                       "VISIT": ["SCREENING", "DAY 28", "UNSCHEDULED", "DAY 28"],
                       "LBDTC": ["2023-12-25T08:00", "2024-02-03", "2024-02-05", "2024-02-04"]})
    fa = pd.DataFrame({"USUBJID": ["A", "A"], "DOMAIN": "FA", "VISITNUM": [13.01, 13.02],
                       "VISIT": ["UNSCHEDULED", "UNSCHEDULED"], "FADTC": ["2024-02-05", "2024-02-07"]})
    # a split dataset (DOMAIN LB, LBDTC) and a record with a visit but a partial date
    lbda = pd.DataFrame({"USUBJID": ["A", "D"], "DOMAIN": "LB", "VISITNUM": [13.0, 1.0], "VISIT": ["DAY 28", "SCREENING"],
                         "LBDTC": ["2024-02-02", "2023-12"]})
    return {"DM": _dm(), "VS": vs, "LB": lb, "FA": fa, "LBDA": lbda}


def test_every_domain_visit_is_in_sv_with_its_dates(study, spec):
    sv, findings = subject_visits(_datasets(), study, spec)
    assert findings.empty
    a = sv[sv["USUBJID"] == "A"].set_index("VISITNUM")
    assert a.index.tolist() == [1.0, 13.0, 13.01, 13.02]
    # SCREENING: VS 12-24 to LB 12-25 08:00 (the time kept); DAY 28: LBDA 02-02 to LB 02-04
    assert a.loc[1.0, ["SVSTDTC", "SVENDTC"]].tolist() == ["2023-12-24", "2023-12-25T08:00"]
    assert a.loc[13.0, ["SVSTDTC", "SVENDTC"]].tolist() == ["2024-02-02", "2024-02-04"]
    # study days from RFSTDTC 2024-01-06: 12-24 is day -13; 02-02 is day 28, 02-04 day 30
    assert a.loc[1.0, "SVSTDY"] == -13 and a.loc[13.0, "SVSTDY"] == 28 and a.loc[13.0, "SVENDY"] == 30
    assert a.loc[13.0, ["VISIT", "SVPRESP", "SVOCCUR", "VISITDY"]].tolist() == ["DAY 28", "Y", "Y", 29.0]


def test_unscheduled_visits_have_svupdes_and_no_presp(study, spec):
    sv, _ = subject_visits(_datasets(), study, spec)
    a = sv[sv["USUBJID"] == "A"].set_index("VISITNUM")
    assert a.loc[13.01, "SVUPDES"] == "Unscheduled assessment (FA, LB)"
    assert a.loc[13.02, "SVUPDES"] == "Unscheduled assessment (FA)"
    assert a.loc[13.01, ["SVPRESP", "SVOCCUR", "VISIT"]].tolist() == ["", "", "UNSCHEDULED"]
    assert np.isnan(a.loc[13.01, "VISITDY"])
    assert a.loc[1.0, "SVUPDES"] == "" and a.loc[13.0, "SVUPDES"] == ""


def test_planned_visit_missed_only_once_its_window_closed(study, spec):
    sv, _ = subject_visits(_datasets(), study, spec)
    missed = sv[sv["SVOCCUR"] == "N"]
    # C: DAY 28 window closes 2024-01-01 + 31 days = 2024-02-01 = RFPENDTC -> missed;
    # D: RFPENDTC 2024-01-31, one day before the window closes -> not missed;
    # B (not treated) gets no missed visit; visits no subject had (DAY 0 ...) are never "missed"
    assert missed[["USUBJID", "VISITNUM", "VISIT", "SVPRESP"]].values.tolist() == [["C", 13.0, "DAY 28", "Y"]]
    assert missed["SVSTDTC"].tolist() == [""] and missed["EPOCH"].tolist() == [""]
    # D's SCREENING has only a partial date: in SV, undated
    d = sv[sv["USUBJID"] == "D"].set_index("VISITNUM")
    assert d.index.tolist() == [1.0] and d.loc[1.0, "SVSTDTC"] == "2023-12-20"


def test_domain_visit_missing_from_sv_is_detected(study, spec):
    """The coverage check the real-build test uses: a (USUBJID, VISITNUM) of a domain not in SV fails."""
    ds = _datasets()
    sv, _ = subject_visits(ds, study, spec)
    keys = set(zip(sv["USUBJID"], sv["VISITNUM"]))
    for name in ("VS", "LB", "FA", "LBDA"):
        assert set(zip(ds[name]["USUBJID"], ds[name]["VISITNUM"])) <= keys
    dropped = sv[~((sv["USUBJID"] == "A") & (sv["VISITNUM"] == 13.02))]
    keys = set(zip(dropped["USUBJID"], dropped["VISITNUM"]))
    assert not set(zip(ds["FA"]["USUBJID"], ds["FA"]["VISITNUM"])) <= keys


def test_visit_name_conflicts_and_visits_not_in_tv_are_errors(study, spec):
    ds = _datasets()
    ds["VS"].loc[0, "VISIT"] = "DAY 28"          # VISITNUM 1 named DAY 28 in VS, SCREENING in LB
    ds["FA"].loc[1, ["VISITNUM", "VISIT"]] = [14.0, "MONTH 3"]   # MONTH 3 is VISITNUM 15 in TV
    _, findings = subject_visits(ds, study, spec)
    assert sorted(findings["check"]) == ["sv_not_in_tv", "sv_visit_name_conflict"]
    assert (findings["severity"] == "error").all()
    assert "DAY 28|SCREENING" in findings.loc[findings["check"] == "sv_visit_name_conflict", "message"].iloc[0]


def test_visit_on_an_element_start_day_keeps_its_time_for_epoch(study, spec):
    """Pre-dose labs at 07:00 on the first lymphodepletion day (LD starts 09:15) are screening."""
    dm = pd.DataFrame({"USUBJID": ["A"], "ARMCD": ["AUTO"], "RFSTDTC": ["2024-01-06T10:00"], "RFPENDTC": ["2024-02-10"]})
    se = pd.DataFrame({"USUBJID": ["A", "A", "A"], "TAETORD": [1, 2, 3],
                       "EPOCH": ["SCREENING", "LYMPHODEPLETION", "TREATMENT"],
                       "SESTDTC": ["2023-12-20", "2024-01-01T09:15", "2024-01-06T10:00"]})
    lb = pd.DataFrame({"USUBJID": ["A", "A", "A"], "DOMAIN": "LB", "VISITNUM": [2.0, 2.0, 3.0],
                       "VISIT": ["LYMPHODEPLETION", "LYMPHODEPLETION", "DAY 0"],
                       "LBDTC": ["2024-01-01T11:00", "2024-01-01T07:00", "2024-01-06T08:00"]})
    sv, _ = subject_visits({"DM": dm, "SE": se, "LB": lb}, study, spec)
    sv = sv.set_index("VISITNUM")
    assert sv.loc[2.0, ["SVSTDTC", "SVENDTC", "EPOCH"]].tolist() == ["2024-01-01T07:00", "2024-01-01T11:00", "SCREENING"]
    # DAY 0 labs at 08:00 before the 10:00 infusion: still lymphodepletion
    assert sv.loc[3.0, "EPOCH"] == "LYMPHODEPLETION"
