"""Eligibility-lab thresholds (pipeline.rules.eligibility): pass/fail at the threshold, ULN basis,
censored values, 'at least two of' groups and missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.errors import ConfigError
from pipeline.rules import eligibility

from conftest import SPECS


def thresholds(rows):
    return eligibility.load_thresholds(pd.DataFrame(rows), "TEST")


def screening(rows):
    """rows: (USUBJID, LBTESTCD, result text, ULN)."""
    out = []
    for subj, test, res, uln in rows:
        censor = -1 if res.startswith("<") else (1 if res.startswith(">") else 0)
        out.append({"USUBJID": subj, "LBTESTCD": test, "LBDTC": "2025-01-03", "value": float(res.lstrip("<>")),
                    "censor": censor, "LBSTRESC": res, "LBSTRESU": "", "LBSTNRHI": uln})
    return pd.DataFrame(out)


def evaluate(th, scr, subjects):
    return eligibility.evaluate_eligibility(th, scr, pd.Series(subjects), "TEST")


def results(rep):
    return dict(zip(rep["USUBJID"] + ":" + rep["LBTESTCD"], rep["row_result"]))


def test_si_threshold_at_and_around_the_boundary():
    th = thresholds([{"criterion": "IN04", "lbtestcd": "CREATCLR", "op": ">", "value": 60, "basis": "SI", "text": "CrCl > 60"}])
    scr = screening([("A", "CREATCLR", "60", np.nan), ("B", "CREATCLR", "60.1", np.nan), ("C", "CREATCLR", "59.9", np.nan)])
    rep = evaluate(th, scr, ["A", "B", "C"])
    assert results(rep) == {"A:CREATCLR": "NOT MET", "B:CREATCLR": "MET", "C:CREATCLR": "NOT MET"}
    assert rep.set_index("USUBJID")["criterion_result"].to_dict() == {"A": "FAIL", "B": "PASS", "C": "FAIL"}


def test_uln_threshold_exactly_at_the_limit_passes():
    # ALT <= 2.5 x ULN with ULN 40: 100 passes (exactly 2.5 x), 100.1 fails
    th = thresholds([{"criterion": "IN09", "lbtestcd": "ALT", "op": "<=", "value": 2.5, "basis": "ULN", "text": "ALT"}])
    scr = screening([("A", "ALT", "100", 40.0), ("B", "ALT", "100.1", 40.0)])
    rep = evaluate(th, scr, ["A", "B"])
    assert results(rep) == {"A:ALT": "MET", "B:ALT": "NOT MET"}
    assert rep["threshold_si"].tolist() == [100.0, 100.0]
    # bilirubin 1.5 x ULN 20.5 umol/L = 30.75, from a conversion: still on the boundary
    th = thresholds([{"criterion": "IN04", "lbtestcd": "BILI", "op": "<=", "value": 1.5, "basis": "ULN", "text": "BILI"}])
    scr = screening([("A", "BILI", str(1.8 * 17.104), 1.2 * 17.104)])
    assert results(evaluate(th, scr, ["A"])) == {"A:BILI": "MET"}


def test_censored_values_are_decided_only_when_certain():
    th = thresholds([{"criterion": "IN01", "lbtestcd": "NEUT", "op": "<", "value": 0.5, "basis": "SI", "text": "ANC"}])
    scr = screening([("A", "NEUT", "<0.5", np.nan), ("B", "NEUT", "<1.0", np.nan), ("C", "NEUT", ">0.5", np.nan),
                     ("D", "NEUT", "<0.4", np.nan)])
    rep = evaluate(th, scr, ["A", "B", "C", "D"])
    assert results(rep) == {"A:NEUT": "MET", "B:NEUT": "INDETERMINATE", "C:NEUT": "NOT MET", "D:NEUT": "MET"}
    assert rep.set_index("USUBJID")["criterion_result"].to_dict() == {
        "A": "PASS", "B": "NOT EVALUABLE", "C": "FAIL", "D": "PASS"}


def test_at_least_two_of_group_from_the_saa_study():
    study = load_study(SPECS, "ZJU-CD7-SAA")
    th = eligibility.load_thresholds(study.table("eligibility_labs"), study.studyid)
    th = th[th["criterion"] == "IN01"]
    scr = screening([
        ("A", "NEUT", "0.3", np.nan), ("A", "PLAT", "15", np.nan), ("A", "RETI", "25", np.nan),   # 2 of 3 met
        ("B", "NEUT", "0.3", np.nan), ("B", "PLAT", "20", np.nan), ("B", "RETI", "20", np.nan),   # 1 of 3 (20 is not < 20)
        ("C", "NEUT", "0.3", np.nan), ("C", "PLAT", "25", np.nan),                                 # RETI missing: undecided
        ("D", "NEUT", "0.7", np.nan), ("D", "PLAT", "25", np.nan),                                 # 0 met, 1 missing
    ])
    rep = evaluate(th, scr, ["A", "B", "C", "D"])
    crit = rep.drop_duplicates("USUBJID").set_index("USUBJID")["criterion_result"].to_dict()
    assert crit == {"A": "PASS", "B": "FAIL", "C": "NOT EVALUABLE", "D": "FAIL"}
    grp = rep.drop_duplicates("USUBJID").set_index("USUBJID")["group_met"].to_dict()
    assert grp == {"A": 2, "B": 1, "C": 1, "D": 0}
    assert rep.loc[(rep["USUBJID"] == "C") & (rep["LBTESTCD"] == "RETI"), "note"].item() == "no screening result"


def test_missing_values_and_notes():
    th = thresholds([{"criterion": "IN04", "lbtestcd": "CREATCLR", "op": ">", "value": 60, "basis": "SI", "text": "CrCl"},
                     {"criterion": "IN04", "lbtestcd": "ALT", "op": "<=", "value": 3, "basis": "ULN", "text": "ALT"}])
    scr = screening([("A", "ALT", "30", np.nan)])
    notes = pd.DataFrame({"USUBJID": ["A"], "LBTESTCD": ["CREATCLR"], "note": ["CrCl not derived: age 12 < 18"]})
    rep = eligibility.evaluate_eligibility(th, scr, pd.Series(["A"]), "TEST", notes=notes)
    assert rep["row_result"].tolist() == ["MISSING", "MISSING"]
    assert rep["note"].tolist() == ["CrCl not derived: age 12 < 18", "screening record has no upper limit of normal"]
    assert set(rep["criterion_result"]) == {"NOT EVALUABLE"}


def test_screening_visit_wins_over_later_screening_epoch_records():
    lb = pd.DataFrame({
        "USUBJID": ["A", "A", "A"], "LBTESTCD": ["ALT"] * 3, "VISITNUM": [1.0, 2.0, 2.0],
        "EPOCH": ["SCREENING", "SCREENING", "LYMPHODEPLETION"],
        "LBDTC": ["2025-01-03T08:00", "2025-01-10T07:00", "2025-01-10T12:00"],
        "value": [163.0, 27.0, 25.0], "censor": [0, 0, 0], "LBSTRESC": ["163", "27", "25"], "LBSTRESU": "U/L",
        "LBSTNRHI": 51.0})
    scr = eligibility.screening_values(lb, "SCREENING", 1.0)
    assert scr["value"].tolist() == [163.0]
    scr = eligibility.screening_values(lb[lb["VISITNUM"] != 1.0], "SCREENING", 1.0)
    assert scr["value"].tolist() == [27.0]  # fallback: last result of the screening epoch


def test_bad_thresholds_are_config_errors():
    with pytest.raises(ConfigError, match="op must be one of"):
        thresholds([{"criterion": "X", "lbtestcd": "ALT", "op": "=<", "value": 3, "basis": "ULN"}])
    with pytest.raises(ConfigError, match="needs min_met"):
        thresholds([{"criterion": "X", "group": "G", "lbtestcd": "ALT", "op": "<", "value": 3, "basis": "SI"}])


def test_every_study_threshold_table_loads_and_names_known_tests():
    from pipeline.config import study_ids
    from pipeline.spec import load_spec
    from pipeline.rules.units import load_unit_table

    known = set(load_unit_table(load_spec(SPECS)).tests["lbtestcd"])
    for sid in study_ids(SPECS):
        th = eligibility.load_thresholds(load_study(SPECS, sid).table("eligibility_labs"), sid)
        assert set(th["lbtestcd"]) <= known, sid
