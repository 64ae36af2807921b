"""ASTCT consensus grading (Lee et al. 2019) of CRS and ICANS from specs/rules, at every boundary.

Every expected grade below is computed by hand from the ASTCT tables:
CRS grade 1 fever >= 38.0 C; grade 2 hypotension without vasopressor and/or low-flow nasal
cannula (<= 6 L/min) or blow-by; grade 3 one vasopressor (+/- vasopressin) and/or high-flow
(> 6 L/min), facemask, non-rebreather, Venturi; grade 4 several vasopressors (vasopressin not
counted) and/or CPAP, BiPAP, mechanical ventilation. ICANS: ICE 7-9 -> 1, 3-6 -> 2, 0-2 -> 3,
unarousable -> 4 (age >= 12); CAPD 1-8 -> 1, >= 9 -> 3, unable -> 4 (age < 12); worst domain.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.rules import astct
from pipeline.spec import load_spec

from conftest import SPECS

SPEC = load_spec(SPECS)
CRS = astct.load_rules(SPEC, "CRS")
ICANS = astct.load_rules(SPEC, "ICANS")

CRS_DEFAULT = {"TEMP": "37.0", "ANTIPYR": "N", "HYPOTEN": "N", "VASONUM": "0", "VASOPRSN": "N", "OXYDEV": "NONE",
               "OXYFLOW": None}
ICANS_DEFAULT = {"AGE": 30, "ICESCORE": "10", "CAPDSCR": None, "UNAROUS": "N", "LOC": "NORMAL", "SEIZURE": "NONE",
                 "MOTOR": "NONE", "ICPEDEMA": "NONE"}


def crs_days(rows: list[dict], subject: str = "S1", start: str = "2024-05-01", dates: list[str] | None = None) -> pd.DataFrame:
    """Consecutive daily CRS assessments of one subject (or on the given dates)."""
    days = pd.to_datetime(dates) if dates else pd.date_range(start, periods=len(rows))
    return pd.DataFrame([{**CRS_DEFAULT, **r} for r in rows]).assign(USUBJID=subject, day=days)


def crs_grade_one_day(**fields) -> int:
    """CRS grade of a single assessment day (no earlier days, so no masking)."""
    return int(astct.crs_daily(crs_days([fields]), CRS)["grade"].iloc[0])


def icans_grade(**fields) -> int:
    return int(astct.icans_daily(pd.DataFrame([{**ICANS_DEFAULT, **fields}]), ICANS)["grade"].iloc[0])


# ---------------------------------------------------------------------------------------
# CRS boundaries
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("temp, expected", [("37.9", 0), ("38.0", 1), ("38.1", 1), ("40.5", 1)])
def test_fever_threshold_37_9_vs_38_0(temp, expected):
    assert crs_grade_one_day(TEMP=temp) == expected


@pytest.mark.parametrize("device, flow, expected", [
    ("LOW-FLOW NASAL CANNULA", "6", 2),     # <= 6 L/min is low flow
    ("LOW-FLOW NASAL CANNULA", "7", 3),     # > 6 L/min is high flow whatever the device name
    ("HIGH-FLOW NASAL CANNULA", "6", 2),
    ("HIGH-FLOW NASAL CANNULA", "7", 3),
    ("LOW-FLOW NASAL CANNULA", "6.5", 3),   # > 6 L/min is high flow, whatever the device is called
    ("HIGH-FLOW NASAL CANNULA", "6.5", 3),
    ("LOW-FLOW NASAL CANNULA", "1", 2),
    ("HIGH-FLOW NASAL CANNULA", "40", 3),
    ("LOW-FLOW NASAL CANNULA", None, 2),    # no flow recorded: the device as recorded
    ("HIGH-FLOW NASAL CANNULA", None, 3),
    ("BLOW-BY", None, 2),
    ("FACEMASK", "8", 3),
    ("NON-REBREATHER MASK", "12", 3),
    ("VENTURI MASK", None, 3),
    ("CPAP", None, 4),
    ("BIPAP", None, 4),
    ("MECHANICAL VENTILATION", None, 4),
    ("NONE", None, 1),
])
def test_hypoxia_grades_with_fever(device, flow, expected):
    assert crs_grade_one_day(TEMP="38.0", OXYDEV=device, OXYFLOW=flow) == expected


@pytest.mark.parametrize("hypoten, vasonum, vasopressin, expected", [
    ("Y", "0", "N", 2),   # hypotension not needing vasopressors
    ("Y", "1", "N", 3),   # one vasopressor
    ("Y", "1", "Y", 3),   # one vasopressor plus vasopressin: still grade 3
    ("Y", "0", "Y", 3),   # vasopressin alone is one vasopressor
    ("Y", "2", "N", 4),   # two vasopressors (vasopressin excluded)
    ("Y", "2", "Y", 4),
    ("Y", "3", "N", 4),
    ("N", "0", "N", 1),
])
def test_hypotension_and_vasopressor_grades(hypoten, vasonum, vasopressin, expected):
    assert crs_grade_one_day(TEMP="38.2", HYPOTEN=hypoten, VASONUM=vasonum, VASOPRSN=vasopressin) == expected


def test_worst_of_hypotension_and_hypoxia():
    assert crs_grade_one_day(TEMP="38.5", HYPOTEN="Y", VASONUM="0", OXYDEV="FACEMASK", OXYFLOW="8") == 3
    assert crs_grade_one_day(TEMP="38.5", VASONUM="2", OXYDEV="BLOW-BY") == 4


def test_no_crs_without_fever_however_severe():
    assert crs_grade_one_day(TEMP="37.9", HYPOTEN="Y", VASONUM="2", OXYDEV="CPAP") == 0


def test_masked_fever_counts_only_after_fever_in_the_episode():
    days = crs_days([
        {"TEMP": "37.0", "ANTIPYR": "Y", "OXYDEV": "LOW-FLOW NASAL CANNULA", "OXYFLOW": "3"},  # masked before any fever
        {"TEMP": "38.5"},                                                                   # fever: grade 1
        {"TEMP": "37.1", "ANTIPYR": "Y", "HYPOTEN": "Y"},                                   # masked, hypotension: 2
        {"TEMP": "36.9", "ANTIPYR": "Y", "VASONUM": "1"},                                   # still masked: 3
        {"TEMP": "36.8", "ANTIPYR": "N", "HYPOTEN": "Y"},                                   # no fever, no therapy: 0
        {"TEMP": "36.8", "ANTIPYR": "Y", "HYPOTEN": "Y"},                                   # new run without fever: 0
    ])
    out = astct.crs_daily(days, CRS)
    assert out["grade"].tolist() == [0, 1, 2, 3, 0, 0]
    assert out["fever_met"].tolist() == [False, True, True, True, False, False]


def test_masking_does_not_bridge_a_missing_day():
    days = crs_days([{"TEMP": "38.3"}, {"TEMP": "37.0", "ANTIPYR": "Y", "HYPOTEN": "Y"}],
                    dates=["2024-05-01", "2024-05-03"])
    assert astct.crs_daily(days, CRS)["grade"].tolist() == [1, 0]


def test_crs_daily_keeps_the_input_order_and_index():
    a = crs_days([{"TEMP": "38.3"}, {"TEMP": "37.0", "ANTIPYR": "Y", "HYPOTEN": "Y"}], subject="A")
    b = crs_days([{"TEMP": "37.0"}, {"TEMP": "39.0", "VASONUM": "2"}], subject="B")
    frame = pd.concat([b, a]).iloc[[3, 0, 2, 1]]
    frame.index = [10, 11, 12, 13]
    out = astct.crs_daily(frame, CRS)
    assert list(out.index) == [10, 11, 12, 13]
    assert out["grade"].tolist() == [2, 0, 1, 4]


# ---------------------------------------------------------------------------------------
# ICANS boundaries
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ice, expected", [("10", 0), ("9", 1), ("7", 1), ("6", 2), ("3", 2), ("2", 3), ("0", 3)])
def test_ice_score_boundaries(ice, expected):
    assert icans_grade(ICESCORE=ice) == expected


def test_ice_zero_unarousable_is_grade_4():
    assert icans_grade(ICESCORE="0", UNAROUS="Y") == 4


@pytest.mark.parametrize("loc, expected", [("NORMAL", 0), ("AWAKENS SPONTANEOUSLY", 1), ("AWAKENS TO VOICE", 2),
                                           ("AWAKENS ONLY TO TACTILE STIMULUS", 3),
                                           ("UNAROUSABLE OR STUPOR OR COMA", 4)])
def test_level_of_consciousness_alone(loc, expected):
    assert icans_grade(LOC=loc) == expected


@pytest.mark.parametrize("seizure, expected", [
    ("NONE", 0), ("FOCAL OR GENERALIZED RESOLVING RAPIDLY", 3), ("NONCONVULSIVE ON EEG RESOLVING WITH INTERVENTION", 3),
    ("PROLONGED SEIZURE OVER 5 MINUTES", 4), ("REPETITIVE SEIZURES WITHOUT RETURN TO BASELINE", 4)])
def test_seizure_alone(seizure, expected):
    assert icans_grade(SEIZURE=seizure) == expected


def test_motor_findings_alone():
    assert icans_grade(MOTOR="DEEP FOCAL MOTOR WEAKNESS") == 4
    assert icans_grade(MOTOR="NONE") == 0


@pytest.mark.parametrize("edema, expected", [
    ("FOCAL OR LOCAL EDEMA ON NEUROIMAGING", 3), ("DIFFUSE CEREBRAL EDEMA ON NEUROIMAGING", 4),
    ("DECEREBRATE OR DECORTICATE POSTURING", 4), ("CRANIAL NERVE VI PALSY", 4), ("PAPILLEDEMA", 4),
    ("CUSHINGS TRIAD", 4), ("NONE", 0)])
def test_raised_icp_cerebral_edema_alone(edema, expected):
    assert icans_grade(ICPEDEMA=edema) == expected


def test_icans_takes_the_worst_domain():
    # ASTCT example: ICE 3 (grade 2) with a generalized seizure (grade 3) is grade 3
    assert icans_grade(ICESCORE="3", SEIZURE="FOCAL OR GENERALIZED RESOLVING RAPIDLY") == 3
    assert icans_grade(ICESCORE="8", LOC="AWAKENS TO VOICE") == 2


@pytest.mark.parametrize("capd, expected", [(None, 0), ("0", 0), ("1", 1), ("8", 1), ("9", 3), ("20", 3)])
def test_capd_under_12(capd, expected):
    assert icans_grade(AGE=8, ICESCORE=None, CAPDSCR=capd) == expected


@pytest.mark.parametrize("ice, grade", [("9", 1), ("7", 1), ("6", 2), ("3", 2), ("2", 3), ("0", 3)])
def test_ice_applies_from_the_12th_birthday(ice, grade):
    # ASTCT 2019: the ICE score grades from age 12, CAPD below; no CAPD recorded here
    assert icans_grade(AGE=12, ICESCORE=ice, CAPDSCR=None) == grade
    assert icans_grade(AGE=11, ICESCORE=ice, CAPDSCR=None) == 0


@pytest.mark.parametrize("capd, grade", [("1", 1), ("8", 1), ("9", 3), ("32", 3)])
def test_capd_applies_until_the_12th_birthday(capd, grade):
    # ASTCT 2019: CAPD grades children under 12; from 12 a CAPD score alone (no ICE) grades nothing
    assert icans_grade(AGE=11, ICESCORE=None, CAPDSCR=capd) == grade
    assert icans_grade(AGE=12, ICESCORE=None, CAPDSCR=capd) == 0


def test_unarousable_is_grade_4_on_both_sides_of_the_12th_birthday():
    # ICE-4 from 12 (ICE score 0, unarousable) and CAPD-4 under 12 (unable to perform CAPD)
    assert icans_grade(AGE=12, ICESCORE=None, CAPDSCR=None, UNAROUS="Y") == 4
    assert icans_grade(AGE=11, ICESCORE=None, CAPDSCR=None, UNAROUS="Y") == 4


def test_children_are_graded_by_capd_not_ice():
    assert icans_grade(AGE=11, ICESCORE="2", CAPDSCR="0") == 0     # an ICE score under 12 is ignored
    assert icans_grade(AGE=11, ICESCORE=None, CAPDSCR="5", LOC="AWAKENS TO VOICE") == 2
    assert icans_grade(AGE=11, ICESCORE=None, CAPDSCR=None, UNAROUS="Y") == 4   # unable to perform CAPD
    assert icans_grade(AGE=12, ICESCORE="6", CAPDSCR="9") == 2     # from 12 the ICE score, CAPD ignored
    assert icans_grade(AGE=None, ICESCORE="2") == 0                # age unknown: neither scale applies


def test_icans_components_are_reported():
    out = astct.icans_daily(pd.DataFrame([{**ICANS_DEFAULT, "ICESCORE": "5", "MOTOR": "DEEP FOCAL MOTOR WEAKNESS"}]), ICANS)
    row = out.iloc[0]
    assert (row["ice"], row["motor"], row["capd"], row["grade"]) == (2, 4, 0, 4)


# ---------------------------------------------------------------------------------------
# episodes
# ---------------------------------------------------------------------------------------
def _episodes(grades: list[int], dates=None, subject="S1"):
    days = pd.to_datetime(dates) if dates else pd.date_range("2024-05-01", periods=len(grades))
    return astct.episodes(pd.Series([subject] * len(grades)), pd.Series(days), pd.Series(grades))


def test_grade_zero_day_splits_episodes():
    assert _episodes([0, 1, 2, 0, 3, 3, 0]).tolist() == [0, 1, 1, 0, 2, 2, 0]


def test_consecutive_days_merge_into_one_episode():
    grades = [1, 2, 3, 2, 1]
    epi = _episodes(grades)
    assert epi.tolist() == [1, 1, 1, 1, 1]
    days = pd.Series(pd.date_range("2024-05-01", periods=5))
    tab = astct.episode_table(pd.Series(["S1"] * 5), days, pd.Series(grades), epi)
    assert len(tab) == 1
    assert tab.loc[0, "grade"] == 3 and tab.loc[0, "days"] == 5
    assert tab.loc[0, "start"] == pd.Timestamp("2024-05-01") and tab.loc[0, "end"] == pd.Timestamp("2024-05-05")
    assert not tab.loc[0, "resolved"]          # no later assessment: still ongoing


def test_missing_assessment_day_splits_episodes():
    assert _episodes([1, 2, 2], dates=["2024-05-01", "2024-05-02", "2024-05-04"]).tolist() == [1, 1, 2]


def test_episodes_per_subject_in_any_order():
    u = pd.Series(["B", "A", "B", "A", "A"])
    d = pd.Series(pd.to_datetime(["2024-05-02", "2024-05-03", "2024-05-01", "2024-05-01", "2024-05-02"]))
    g = pd.Series([1, 2, 1, 1, 0])
    assert astct.episodes(u, d, g).tolist() == [1, 2, 1, 1, 0]
    tab = astct.episode_table(u, d, g, astct.episodes(u, d, g))
    assert tab[["USUBJID", "episode", "grade", "resolved"]].values.tolist() == [
        ["A", 1, 1, True], ["A", 2, 2, False], ["B", 1, 1, False]]


def test_death_grade_from_cause_of_death():
    subjects = pd.DataFrame({"DTHCAUS": ["CYTOKINE RELEASE SYNDROME", "INFECTION", "", "crs"]})
    assert astct.death_grade(subjects, CRS).tolist() == [5, 0, 0, 5]
    assert astct.death_grade(pd.DataFrame({"DTHCAUS": ["ICANS"]}), ICANS).tolist() == [5]


# ---------------------------------------------------------------------------------------
# rule tables as data
# ---------------------------------------------------------------------------------------
def test_every_rule_row_has_a_source_and_valid_shape():
    for rules in (CRS, ICANS):
        assert rules["source"].str.contains("Lee DW et al").all()
        assert set(rules["role"]) <= astct.ROLES


def test_bad_rule_table_is_a_clear_config_error():
    bad = CRS.astype(str).copy()
    bad.loc[0, "operator"] = "=~"
    with pytest.raises(ConfigError, match="unknown operator"):
        astct.check_rules(bad)
    bad = CRS.astype(str).copy()
    bad.loc[bad["rule"] == "NC-LOW-2", "grade"] = ["2", "3"]
    with pytest.raises(ConfigError, match="mix grades"):
        astct.check_rules(bad)


def test_evaluator_reads_thresholds_from_the_table():
    # the table, not the code, holds 38.0: move it and the grading follows
    moved = CRS.copy()
    moved.loc[moved["rule"] == "FEVER", "value"] = "38.5"
    day = crs_days([{"TEMP": "38.2"}])
    assert astct.crs_daily(day, CRS)["grade"].iloc[0] == 1
    assert astct.crs_daily(day, moved)["grade"].iloc[0] == 0


# ---------------------------------------------------------------------------------------
# property: more support never lowers the CRS grade
# ---------------------------------------------------------------------------------------
#: oxygen support options in order of ASTCT intensity (grade 0, 2, 2, 3, 3, 4)
OXYGEN = [("NONE", None), ("BLOW-BY", None), ("LOW-FLOW NASAL CANNULA", "low"), ("HIGH-FLOW NASAL CANNULA", "high"),
          ("FACEMASK", None), ("CPAP", None)]

day_strategy = st.fixed_dictionaries({
    "temp": st.integers(360, 410), "antipyr": st.booleans(), "hypoten": st.booleans(),
    "vaso": st.integers(0, 3), "vasopressin": st.booleans(), "oxy": st.integers(0, len(OXYGEN) - 1),
    "flow_low": st.integers(1, 6), "flow_high": st.integers(7, 15)})
bump_strategy = st.fixed_dictionaries({
    "temp": st.integers(0, 20), "antipyr": st.booleans(), "hypoten": st.booleans(), "vaso": st.integers(0, 2),
    "vasopressin": st.booleans(), "oxy": st.integers(0, 3)})


def _row(d: dict) -> dict:
    dev, kind = OXYGEN[d["oxy"]]
    flow = None if kind is None else str(d["flow_low"] if kind == "low" else d["flow_high"])
    return {"TEMP": f"{d['temp'] / 10:.1f}", "ANTIPYR": "Y" if d["antipyr"] else "N",
            "HYPOTEN": "Y" if d["hypoten"] else "N", "VASONUM": str(d["vaso"]),
            "VASOPRSN": "Y" if d["vasopressin"] else "N", "OXYDEV": dev, "OXYFLOW": flow}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.tuples(day_strategy, bump_strategy), min_size=1, max_size=6), min_size=1, max_size=6))
def test_crs_grade_is_monotone_in_support(subjects):
    base, more = [], []
    for i, days in enumerate(subjects):  # several subjects per example, one grading call
        b_rows, m_rows = [], []
        for d, b in days:
            b_rows.append(_row(d))
            up = dict(d)
            up["temp"] = d["temp"] + b["temp"]
            up["antipyr"] = d["antipyr"] or b["antipyr"]
            up["hypoten"] = d["hypoten"] or b["hypoten"]
            up["vaso"] = d["vaso"] + b["vaso"]
            up["vasopressin"] = d["vasopressin"] or b["vasopressin"]
            up["oxy"] = min(d["oxy"] + b["oxy"], len(OXYGEN) - 1)
            m_rows.append(_row(up))
        base.append(crs_days(b_rows, subject=f"S{i}"))
        more.append(crs_days(m_rows, subject=f"S{i}"))
    g0 = astct.crs_daily(pd.concat(base, ignore_index=True), CRS)["grade"].to_numpy()
    g1 = astct.crs_daily(pd.concat(more, ignore_index=True), CRS)["grade"].to_numpy()
    assert (g1 >= g0).all(), (g0, g1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=5), st.none(), st.floats(allow_nan=True), st.integers(-5, 5),
                          st.sampled_from([" yes ", "No", "high flow", "38.5", "\u00df"])), max_size=15),
       st.sampled_from(["object", "str", "float"]))
def test_views_text_equals_the_whole_column_expression(values, kind):
    """The text view of a rule field, made per distinct value, equals the expression over every
    record it replaced: astype(object).fillna("").astype(str).str.strip().str.upper()."""
    import numpy as np
    col = pd.Series(values, dtype=object)
    if kind == "str":
        col = col.where(col.map(lambda v: isinstance(v, str)), None).astype("str")
    elif kind == "float":
        col = pd.to_numeric(col, errors="coerce").astype("float64")
    text, _ = astct._views(pd.DataFrame({"F": col}), "F")
    expected = col.astype("object").fillna("").astype(str).str.strip().str.upper().to_numpy(dtype=object)
    assert text.dtype == object and text.tolist() == expected.tolist()
    assert np.array_equal(text, expected)


def test_rules_checked_once_per_spec_and_handed_out_as_copies():
    """load_rules checks a table once per loaded spec; each caller gets its own copy, equal to
    checking the spec's table again; the FA tests made once per spec equal fa_tests of them."""
    from pipeline.domains.ae import EVENTS, fa_tests, spec_fa_tests
    first = astct.load_rules(SPEC, "CRS")
    pd.testing.assert_frame_equal(first, astct.check_rules(SPEC.rule("astct_crs")))
    first.loc[:, "grade"] = 99
    again = astct.load_rules(SPEC, "CRS")
    assert again is not first and not again["grade"].eq(99).any()
    expected = fa_tests(SPEC, {e: astct.check_rules(SPEC.rule(astct.TABLES[e])) for e in EVENTS})
    pd.testing.assert_frame_equal(spec_fa_tests(SPEC), expected)
    assert spec_fa_tests(SPEC) is not spec_fa_tests(SPEC)
