"""CTCAE v5.0 lab grading (pipeline.rules.ctcae_lab) at every boundary of every covered term.

Values are given in the units the raw extracts use (10^9/L, /mm3, 10^3/uL, g/dL, mg/dL, umol/L
with the micro sign, mEq/L, ukat/L, s, ...), converted with the project's unit table exactly
as the LB build does, then graded. Expected grades are hand-computed from the CTCAE v5.0 text
(a result reported in a conventional unit for which CTCAE states its own thresholds, e.g.
calcium 8.0 mg/dL beside 2.0 mmol/L, is graded against the conventional thresholds: 8.0 mg/dL
is grade 1 although it is 1.996 mmol/L; see tests/test_ctcae_lab_new_terms.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.rules import ctcae_lab, units
from pipeline.spec import load_spec

from conftest import SPECS


@lru_cache(maxsize=1)
def _tables():
    spec = load_spec(SPECS)
    return units.load_unit_table(spec), ctcae_lab.load_criteria(spec, "5.0")


def grade(test: str, values, unit: str, lln=None, uln=None, base=None, base_lln=None, base_uln=None,
          post: bool = True, base_unit: str | None = None):
    """Grade raw results (text such as '1.5' or '<0.5') of one test; returns (grades, terms)."""
    table, criteria = _tables()
    vals = [str(v) for v in values]
    n = len(vals)
    parsed = units.parse_results(pd.Series(vals))
    bu = base_unit or unit
    refs = [lln, uln, base, base_lln if base_lln is not None else lln, base_uln if base_uln is not None else uln]
    # one conversion call for the results and the five reference values
    nums = pd.concat([parsed["value"], pd.Series([np.nan if r is None else float(r) for r in refs])], ignore_index=True)
    unit_col = pd.Series([unit] * n + [unit, unit, bu, bu, bu])
    conv = units.to_si(nums, pd.Series([test] * (n + 5)), unit_col, table)
    si = conv["si_value"].to_numpy()
    lln_si, uln_si, base_si, blln_si, buln_si = si[n:]
    frame = pd.DataFrame({
        "LBTESTCD": test, "LBSTRESU": conv["si_unit"].iloc[:n].to_numpy(), "value": si[:n], "censor": parsed["censor"],
        "LLN": lln_si, "ULN": uln_si, "post": post, "BASE": base_si, "BASE_CENSOR": 0,
        "BASE_LLN": blln_si, "BASE_ULN": buln_si,
        # the reported unit, as the LB build passes it (ctcae_lab rule 8)
        "ORIG_UNIT": conv["ct_unit"].iloc[:n].to_numpy(), "ORIG_FACTOR": conv["factor"].iloc[:n].to_numpy(),
    })
    g = ctcae_lab.grade_labs(frame, criteria)
    return g.frame["LBTOXGR"].tolist(), g.frame["LBTOX"].tolist()


def check(test, unit, cases, term=None, **kw):
    values = [v for v, _ in cases]
    expected = [str(e) for _, e in cases]
    got, terms = grade(test, values, unit, **kw)
    assert got == expected, f"{test} {unit}: " + ", ".join(f"{v}->{g} (want {e})" for v, g, e in zip(values, got, expected) if g != e)
    if term:
        assert set(terms) == {term}


# --------------------------------------------------------------------------------------------
# hematology (decreases): <LLN - a ; <a - b ; <b - c ; <c
# --------------------------------------------------------------------------------------------
def test_neutrophils_si_boundaries():
    check("NEUT", "10^9/L", [(1.8, 0), (1.79, 1), (1.5, 1), (1.49, 2), (1.0, 2), (0.99, 3), (0.5, 3), (0.49, 4),
                             (0.0, 4)], term="Neutrophil count decreased", lln=1.8, uln=6.3)


def test_neutrophils_per_mm3_and_per_ul():
    # 1500/mm3 = 1.5 x 10^9/L exactly at the boundary (grade 1), 1000 -> 2, 500 -> 3
    check("NEUT", "/mm3", [(1800, 0), (1500, 1), (1499, 2), (1000, 2), (999, 3), (500, 3), (499, 4)], lln=1800)
    check("NEUT", "10^3/uL", [(1.5, 1), (1.0, 2), (0.5, 3), (0.49, 4)], lln=1.8)


def test_wbc_lymphocytes_platelets_cd4():
    check("WBC", "10^9/L", [(3.5, 0), (3.49, 1), (3.0, 1), (2.99, 2), (2.0, 2), (1.99, 3), (1.0, 3), (0.99, 4)],
          term="White blood cell decreased", lln=3.5)
    check("WBC", "10^3/uL", [(3.0, 1), (2.0, 2), (1.0, 3), (0.9, 4)], lln=3.5)
    check("LYM", "10^3/uL", [(1.1, 0), (0.8, 1), (0.79, 2), (0.5, 2), (0.49, 3), (0.2, 3), (0.19, 4)],
          term="Lymphocyte count decreased", lln=1.1)
    check("PLAT", "10^3/uL", [(125, 0), (124, 1), (75, 1), (74, 2), (50, 2), (49, 3), (25, 3), (24, 4)],
          term="Platelet count decreased", lln=125)
    check("PLAT", "10^9/L", [(75.0, 1), (74.9, 2)], lln=125)
    check("CD4", "cells/uL", [(600, 0), (599, 1), (500, 1), (499, 2), (200, 2), (199, 3), (50, 3), (49, 4)],
          term="CD4 lymphocytes decreased", lln=600)
    check("CD4", "/mm3", [(500, 1), (200, 2), (50, 3), (49, 4)], lln=600)
    check("CD4", "10^9/L", [(0.5, 1), (0.2, 2), (0.05, 3), (0.049, 4)], lln=0.6)


def test_anemia_in_g_per_dl_caps_at_grade_3():
    # 10.0 g/dL = 100 g/L, 8.0 g/dL = 80 g/L; grade 4 needs clinical information
    check("HGB", "g/dL", [(13.0, 0), (12.9, 1), (10.0, 1), (9.9, 2), (8.0, 2), (7.9, 3), (4.0, 3)],
          term="Anemia", lln=13.0, uln=17.0)  # the ULN: Hemoglobin increased is the other direction
    check("HGB", "g/L", [(100, 1), (99, 2), (80, 2), (79, 3)], lln=130)


# --------------------------------------------------------------------------------------------
# liver: x ULN when baseline normal, x baseline when abnormal
# --------------------------------------------------------------------------------------------
def test_alt_ast_uln_boundaries():
    cases = [(40, 0), (41, 1), (120, 1), (121, 2), (200, 2), (201, 3), (800, 3), (801, 4)]  # ULN 40: 3.0/5.0/20.0 x
    check("ALT", "U/L", cases, term="Alanine aminotransferase increased", uln=40, base=20)
    check("AST", "U/L", cases, term="Aspartate aminotransferase increased", uln=40)
    # ukat/L: ULN 0.5 ukat/L = 30 U/L; 1.5 ukat/L = 90 U/L = 3.0 x ULN; 2.5 ukat/L = 150 U/L = 5.0 x ULN
    check("ALT", "ukat/L", [(1.5, 1), (1.51, 2), (2.5, 2), (2.51, 3), (10.0, 3), (10.01, 4)], uln=0.5)


def test_alt_baseline_abnormal_is_graded_against_baseline():
    # ULN 40, baseline 80 (2 x ULN, abnormal): 1.5 - 3.0 x baseline = 120 - 240 is grade 1, ...
    cases = [(100, 0), (119, 0), (120, 1), (240, 1), (241, 2), (400, 2), (401, 3), (1600, 3), (1601, 4)]
    check("ALT", "U/L", cases, uln=40, base=80)
    # the same values graded against ULN would be 240 -> grade 3 (6 x ULN): baseline matters
    got, _ = grade("ALT", [240], "U/L", uln=40, base=20)
    assert got == ["3"]


def test_baseline_record_is_not_graded_against_itself():
    # pre-infusion records (the baseline among them) use the ULN rows even with an abnormal baseline
    got, _ = grade("ALT", [80, 240], "U/L", uln=40, base=80, post=False)
    assert got == ["1", "3"]


def test_alp_ggt_boundaries_normal_and_abnormal_baseline():
    check("ALP", "U/L", [(125, 0), (126, 1), (312.5, 1), (313, 2), (625, 2), (626, 3), (2500, 3), (2501, 4)],
          term="Alkaline phosphatase increased", uln=125, base=70)
    # baseline 250 (2 x ULN): 2.0 - 2.5 x baseline = 500 - 625 is grade 1
    check("ALP", "U/L", [(499, 0), (500, 1), (625, 1), (626, 2), (1250, 2), (1251, 3), (5000, 3), (5001, 4)],
          uln=125, base=250)
    check("GGT", "U/L", [(60, 0), (61, 1), (150, 1), (150.1, 2), (300, 2), (300.1, 3), (1200, 3), (1201, 4)],
          term="GGT increased", uln=60)
    check("GGT", "U/L", [(239, 0), (240, 1), (300, 1), (301, 2)], uln=60, base=120)


def test_bilirubin_in_umol_and_mg_per_dl():
    # µmol/L (micro sign as written by sites), ULN 20.5: 1.5 x = 30.75, 3 x = 61.5, 10 x = 205
    check("BILI", "µmol/L", [(20.5, 0), (20.6, 1), (30.75, 1), (30.8, 2), (61.5, 2), (61.6, 3), (205, 3), (205.1, 4)],
          term="Blood bilirubin increased", uln=20.5)
    # mg/dL, ULN 1.2: 1.8 = 1.5 x, 3.6 = 3 x, 12.0 = 10 x (ratios survive the conversion)
    check("BILI", "mg/dL", [(1.2, 0), (1.21, 1), (1.8, 1), (1.81, 2), (3.6, 2), (3.61, 3), (12.0, 3), (12.01, 4)],
          uln=1.2)
    # abnormal baseline 2.0 mg/dL: >1.0 - 1.5 x baseline is grade 1
    check("BILI", "mg/dL", [(2.0, 0), (2.01, 1), (3.0, 1), (3.01, 2), (6.0, 2), (6.01, 3), (20.0, 3), (20.01, 4)],
          uln=1.2, base=2.0)


# --------------------------------------------------------------------------------------------
# creatinine: ULN clauses and baseline clauses
# --------------------------------------------------------------------------------------------
def test_creatinine_uln_boundaries():
    check("CREAT", "µmol/L", [(111, 0), (112, 1), (166.5, 1), (167, 2), (333, 2), (334, 3), (666, 3), (667, 4)],
          term="Creatinine increased", uln=111)
    check("CREAT", "mg/dL", [(1.2, 0), (1.8, 1), (1.81, 2), (3.6, 2), (3.61, 3), (7.2, 3), (7.21, 4)], uln=1.2)


def test_creatinine_baseline_clauses():
    # baseline 0.6 mg/dL (normal), ULN 1.2: >1.5 - 3.0 x baseline = grade 2 even below ULN; >3.0 x = grade 3
    check("CREAT", "mg/dL", [(0.9, 0), (0.91, 2), (1.8, 2), (1.81, 3)], uln=1.2, base=0.6)
    # no baseline: only the ULN clauses
    check("CREAT", "mg/dL", [(0.91, 0), (1.81, 2)], uln=1.2)
    # pre-infusion: never against the baseline
    check("CREAT", "mg/dL", [(0.91, 0)], uln=1.2, base=0.6, post=False)


# --------------------------------------------------------------------------------------------
# electrolytes: two directions
# --------------------------------------------------------------------------------------------
def test_potassium_both_directions_in_meq():
    kw = dict(lln=3.5, uln=5.3)
    got, terms = grade("K", [5.3, 5.4, 5.5, 5.51, 6.0, 6.01, 7.0, 7.01], "mEq/L", **kw)
    assert got == ["0", "1", "1", "2", "2", "3", "3", "4"]
    assert set(terms) == {"Hyperkalemia"}
    # low: grade 2 needs symptoms, so <LLN - 3.0 is grade 1 and the next grade is 3
    got, terms = grade("K", [3.5, 3.49, 3.0, 2.99, 2.5, 2.49], "mEq/L", **kw)
    assert got == ["0", "1", "1", "3", "3", "4"]
    assert set(terms) == {"Hypokalemia"}


def test_sodium_both_directions():
    got, terms = grade("SODIUM", [147, 148, 150, 151, 155, 156, 160, 161], "mEq/L", lln=137, uln=147)
    assert got == ["0", "1", "1", "2", "2", "3", "3", "4"] and set(terms) == {"Hypernatremia"}
    got, terms = grade("SODIUM", [137, 136, 130, 129, 125, 124, 120, 119], "mmol/L", lln=137, uln=147)
    assert got == ["0", "1", "1", "2", "2", "3", "3", "4"] and set(terms) == {"Hyponatremia"}


def test_calcium_both_directions():
    got, terms = grade("CA", [2.52, 2.53, 2.9, 2.91, 3.1, 3.11, 3.4, 3.41], "mmol/L", lln=2.11, uln=2.52)
    assert got == ["0", "1", "1", "2", "2", "3", "3", "4"] and set(terms) == {"Hypercalcemia"}
    got, terms = grade("CA", [2.11, 2.1, 2.0, 1.99, 1.75, 1.74, 1.5, 1.49], "mmol/L", lln=2.11, uln=2.52)
    assert got == ["0", "1", "1", "2", "2", "3", "3", "4"] and set(terms) == {"Hypocalcemia"}
    # mg/dL is graded against CTCAE's mg/dL thresholds ("<LLN - 8.0 mg/dL"): 8.0 mg/dL is grade 1
    # although it is 1.996 mmol/L (grade 2 by the mmol/L text); 8.0157 mg/dL (= 2.0 mmol/L) grade 1
    got, _ = grade("CA", [2.0 / 0.24951, 8.0, 7.99], "mg/dL", lln=8.5, uln=10.2)
    assert got == ["1", "1", "2"]


def test_magnesium_albumin_glucose():
    check("MG", "mmol/L", [(0.75, 0), (0.74, 1), (0.5, 1), (0.49, 2), (0.4, 2), (0.39, 3), (0.3, 3), (0.29, 4)],
          term="Hypomagnesemia", lln=0.75, uln=1.05)  # the ULN: Hypermagnesemia is the other direction
    # mg/dL against CTCAE's "<LLN - 1.2 mg/dL": 1.2 mg/dL is grade 1 although it is 0.4937 mmol/L (< 0.5)
    check("MG", "mg/dL", [(0.5 / 0.41144, 1), (1.2, 1), (1.19, 2)], lln=1.8)
    check("ALB", "g/dL", [(4.0, 0), (3.9, 1), (3.0, 1), (2.9, 2), (2.0, 2), (1.9, 3), (1.0, 3)],
          term="Hypoalbuminemia", lln=4.0)
    check("GLUC", "mmol/L", [(3.9, 0), (3.0, 1), (2.99, 2), (2.2, 2), (2.19, 3), (1.7, 3), (1.69, 4)],
          term="Hypoglycemia", lln=3.9, uln=6.1)
    # mg/dL against CTCAE's "<LLN - 55 mg/dL; <55 - 40": 55 grade 1, 54 grade 2, and 54.05 mg/dL
    # (= 3.0 mmol/L, grade 1 by the mmol/L text) is grade 2 because it is below 55 mg/dL
    check("GLUC", "mg/dL", [(70, 0), (55, 1), (54, 2), (3.0 / 0.055507, 2)], lln=70, uln=110)
    # high glucose has no lab-based CTCAE v5.0 grade: graded 0 for hypoglycemia
    check("GLUC", "mmol/L", [(15.0, 0)], term="Hypoglycemia", lln=3.9, uln=6.1)


# --------------------------------------------------------------------------------------------
# coagulation and enzymes
# --------------------------------------------------------------------------------------------
def test_fibrinogen_normal_baseline_in_mg_per_dl():
    # LLN 200 mg/dL: 0.75 x = 150, 0.5 x = 100, 0.25 x = 50; absolute <50 mg/dL is grade 4 too
    check("FIBRINO", "mg/dL", [(200, 0), (199, 1), (150, 1), (149, 2), (100, 2), (99, 3), (50, 3), (49, 4)],
          term="Fibrinogen decreased", lln=200, base=300)


def test_fibrinogen_abnormal_baseline_percent_decrease():
    # LLN 400, baseline 350 (abnormal): 25% decrease = 262.5, 50% = 175, 75% = 87.5
    check("FIBRINO", "mg/dL", [(350, 0), (349, 1), (262.6, 1), (262.5, 2), (175.1, 2), (175, 3), (87.6, 3), (87.5, 4)],
          lln=400, base=350)
    # the absolute clause (<0.5 g/L) holds whatever the baseline
    check("FIBRINO", "g/L", [(0.49, 4)], lln=4.0, base=3.5)


def test_fibrinogen_absolute_clause_is_what_makes_grade_4():
    """"<0.25 x LLN [...] or absolute value <50 mg/dL": cases where only the absolute clause gives
    grade 4. LLN 1.8 g/L, normal baseline: 0.49 g/L is 0.27 x LLN (grade 3 by the LLN clause) but
    < 0.5 g/L: grade 4; 0.5 g/L is not < 0.5: grade 3. Baseline 1.5 g/L (abnormal, LLN 2.0): 0.5 is
    a 66.7% decrease (grade 3), 0.49 a 67.3% decrease (grade 3 by the percentage) but < 0.5: 4."""
    check("FIBRINO", "g/L", [(0.5, 3), (0.49, 4)], lln=1.8, base=2.5)
    check("FIBRINO", "g/L", [(0.5, 3), (0.49, 4)], lln=2.0, base=1.5)


def test_inr_aptt():
    check("INR", "", [(1.2, 0), (1.21, 1), (1.5, 1), (1.51, 2), (2.5, 2), (2.51, 3), (6.0, 3)], term="INR increased")
    check("APTT", "s", [(37, 0), (37.1, 1), (55.5, 1), (55.6, 2), (92.5, 2), (92.6, 3)],
          term="Activated partial thromboplastin time prolonged", uln=37)


def test_ck_lipase_amylase():
    check("CK", "U/L", [(200, 0), (201, 1), (500, 1), (501, 2), (1000, 2), (1001, 3), (2000, 3), (2001, 4)],
          term="CPK increased", uln=200)
    check("LIPASE", "U/L", [(60, 0), (61, 1), (90, 1), (91, 2), (300, 2), (301, 3)], term="Lipase increased", uln=60)
    # 101 U/L = 1.01 x ULN: just above the ULN is grade 1 (">ULN - 1.5 x ULN")
    check("AMYLASE", "U/L", [(100, 0), (101, 1), (150, 1), (151, 2), (500, 2), (501, 3)], term="Serum amylase increased",
          uln=100)


# --------------------------------------------------------------------------------------------
# censored results, missing ranges, units
# --------------------------------------------------------------------------------------------
def test_censored_results_are_graded_at_their_limit():
    # every value below 0.5 is grade 4; '<1.0' is certainly at least grade 3 (graded 3)
    check("NEUT", "10^9/L", [("<0.5", 4), ("<1.0", 3), ("<1.5", 2)], lln=1.8)
    check("NEUT", "/mm3", [("<500", 4)], lln=1800)
    check("PLAT", "10^9/L", [("<20", 4), ("<25", 4), ("<26", 3)], lln=125)
    # '>1000' ALT is above 20 x ULN 40; '>120' (3 x ULN) is above 3.0 x ULN -> grade 2; '<5' below ULN -> 0
    check("ALT", "U/L", [(">1000", 4), (">120", 2), ("<5", 0)], uln=40)


def test_missing_reference_range_gives_no_grade_unless_a_higher_grade_is_certain():
    got, _ = grade("NEUT", [1.6, 1.4, 0.3], "10^9/L")  # no LLN: 1.6 could be grade 0 or 1; 1.4 is grade 2 anyway
    assert got == ["", "2", "4"]
    got, _ = grade("ALT", [300], "U/L")  # every ALT row needs the ULN
    assert got == [""]


def test_unit_mismatch_is_an_error_not_a_grade():
    table, criteria = _tables()
    frame = pd.DataFrame({"LBTESTCD": ["K", "K"], "LBSTRESU": ["mEq/L", "mmol/L"], "value": [6.5, 6.5], "censor": [0, 0],
                          "LLN": 3.5, "ULN": 5.3, "post": True, "BASE": np.nan, "BASE_CENSOR": 0,
                          "BASE_LLN": np.nan, "BASE_ULN": np.nan})
    g = ctcae_lab.grade_labs(frame, criteria)
    assert g.unit_mismatch.tolist() == [True, False]
    assert g.frame["LBTOXGR"].tolist() == ["", "3"]
    assert g.expected_unit.tolist() == ["mmol/L", "mmol/L"]


def test_tests_without_criteria_are_not_graded():
    got, terms = grade("CRP", [250.0], "mg/L", uln=10)
    assert got == [""] and terms == [""]


def test_worst_grades_shift_table():
    lb = pd.DataFrame({
        "USUBJID": ["S1"] * 5, "LBTESTCD": ["K"] * 5,
        "LBTOX": ["Hypokalemia", "Hyperkalemia", "Hypokalemia", "Hyperkalemia", "Hypokalemia"],
        "LBTOXGR": ["1", "0", "3", "2", ""], "LBLOBXFL": ["Y", "", "", "", ""],
        "post": [False, True, True, True, True]})
    out = ctcae_lab.worst_grades(lb, _tables()[1]).set_index("LBTOX")
    assert out.loc["Hypokalemia", "baseline_grade"] == 1 and out.loc["Hypokalemia", "worst_post_grade"] == 3
    assert out.loc["Hyperkalemia", "baseline_grade"] == 0 and out.loc["Hyperkalemia", "worst_post_grade"] == 2
    assert out.loc["Hypokalemia", "n_post_graded"] == 3


# --------------------------------------------------------------------------------------------
# the criteria table itself
# --------------------------------------------------------------------------------------------
REQUIRED_TERMS = {
    "Anemia", "White blood cell decreased", "Neutrophil count decreased", "Lymphocyte count decreased",
    "Platelet count decreased", "CD4 lymphocytes decreased", "Alanine aminotransferase increased",
    "Aspartate aminotransferase increased", "Alkaline phosphatase increased", "GGT increased",
    "Blood bilirubin increased", "Creatinine increased", "Hypokalemia", "Hyperkalemia", "Hyponatremia",
    "Hypernatremia", "Hypocalcemia", "Hypercalcemia", "Hypomagnesemia", "Hypoalbuminemia", "Fibrinogen decreased",
    "INR increased", "Activated partial thromboplastin time prolonged", "CPK increased", "Lipase increased",
    "Serum amylase increased", "Hypoglycemia",
}


def test_criteria_cover_the_required_terms_with_all_grades():
    _, c = _tables()
    assert REQUIRED_TERMS <= set(c["term"])
    grades = c.groupby("term")["grade"].apply(set)
    assert all(g == {1, 2, 3, 4} for g in grades), grades[grades.map(len) != 4]
    # not lab-gradable rows say why
    assert (c.loc[c["lab_gradable"] == "N", "assumption"].str.len() > 10).all()


def test_criteria_units_are_the_standard_units():
    table, c = _tables()
    si = dict(zip(table.tests["lbtestcd"], table.tests["si_unit"]))
    assert all(si[t] == u for t, u in zip(c["lbtestcd"], c["si_unit"]))


def test_criteria_source_text_is_ctcae(shared_dir):
    ref = pd.read_csv(shared_dir / "reference" / "ctcae-v5" / "CTCAE_v5.0_terms.csv", dtype=str, keep_default_na=False)
    ref = ref.drop_duplicates("CTCAE Term").set_index("CTCAE Term")
    _, c = _tables()
    for r in c.itertuples():
        assert r.source_text == ref.at[r.term, f"Grade {r.grade}"].strip(), (r.term, r.grade)
        assert r.meddra_code == ref.at[r.term, "MedDRA Code"], r.term


def test_bad_criteria_table_is_rejected():
    _, c = _tables()
    bad = c.copy().astype({"grade": str, "lower": str, "upper": str})
    bad["lower"] = bad["lower"].replace("nan", "")
    bad["upper"] = bad["upper"].replace("nan", "")
    bad.loc[0, "lower_basis"] = "ULNX"
    bad.loc[1, "grade"] = "5"
    with pytest.raises(ConfigError, match="lower_basis 'ULNX'.*|grade '5'"):
        ctcae_lab.check_criteria(bad)


# --------------------------------------------------------------------------------------------
# every baseline-dependent clause with its own abnormal baseline (issue 16), grades by hand
# from the CTCAE v5.0 text: "1.5 - 3.0 x baseline; >3.0 - 5.0 x; >5.0 - 20.0 x; >20.0 x" (AST,
# ALT), "2.0 - 2.5 x baseline; >2.5 - 5.0 x; >5.0 - 20.0 x; >20.0 x" (ALP, GGT)
# --------------------------------------------------------------------------------------------
def test_ast_abnormal_baseline_every_grade():
    # ULN 40, baseline 100 (2.5 x ULN): 150 / 300 / 500 / 2000 U/L are 1.5 / 3 / 5 / 20 x baseline
    check("AST", "U/L", [(120, 0), (149, 0), (150, 1), (300, 1), (301, 2), (500, 2), (501, 3), (2000, 3), (2001, 4)],
          term="Aspartate aminotransferase increased", uln=40, base=100)
    # the same 301 U/L against ULN would be 7.5 x ULN = grade 3
    assert grade("AST", [301], "U/L", uln=40, base=30)[0] == ["3"]


def test_ggt_abnormal_baseline_every_grade():
    # ULN 60, baseline 120 (2 x ULN): 240 / 300 / 600 / 2400 U/L are 2.0 / 2.5 / 5 / 20 x baseline
    check("GGT", "U/L", [(239, 0), (240, 1), (300, 1), (301, 2), (600, 2), (601, 3), (2400, 3), (2401, 4)],
          uln=60, base=120)
    # against ULN 601 would be 10 x ULN (grade 3) and 2401 40 x ULN (grade 4): use a distinguishing
    # pair: 1300 U/L is 21.7 x ULN (grade 4) but 10.8 x baseline (grade 3)
    assert grade("GGT", [1300], "U/L", uln=60, base=120)[0] == ["3"]
    assert grade("GGT", [1300], "U/L", uln=60, base=50)[0] == ["4"]


def test_alt_abnormal_baseline_upper_grades():
    # ULN 40, baseline 60 (1.5 x ULN): 5 x baseline = 300, 20 x baseline = 1200
    check("ALT", "U/L", [(300, 2), (301, 3), (1200, 3), (1201, 4)], uln=40, base=60)


def test_alp_abnormal_baseline_in_ukat():
    # ULN 2.0 ukat/L (120 U/L), baseline 4.0 ukat/L (240 U/L, abnormal): 2 x baseline = 8.0 ukat/L
    # (480 U/L), 2.5 x = 10.0 (600), 5 x = 20.0 (1200), 20 x = 80.0 (4800)
    check("ALP", "ukat/L", [(7.9, 0), (8.0, 1), (10.0, 1), (10.1, 2), (20.0, 2), (20.1, 3), (80.0, 3), (80.1, 4)],
          uln=2.0, base=4.0)


def test_bilirubin_abnormal_baseline_upper_grades_in_umol():
    # ULN 20.5, baseline 30 umol/L: >1.0 x = 30, 1.5 x = 45, 3 x = 90, 10 x = 300
    check("BILI", "umol/L", [(30, 0), (30.1, 1), (45, 1), (45.1, 2), (90, 2), (90.1, 3), (300, 3), (300.1, 4)],
          uln=20.5, base=30)


@pytest.mark.parametrize("test,uln,value,normal_grade", [
    ("ALT", 40, 41, "1"),     # >ULN: grade 1; were the baseline abnormal, 41 < 1.5 x 40 = 60 would be grade 0
    ("AST", 40, 59, "1"),     # 59 < 60 = 1.5 x baseline
    ("ALP", 125, 249, "1"),   # 249 < 250 = 2.0 x baseline
    ("GGT", 60, 119, "1"),    # 119 < 120 = 2.0 x baseline
])
def test_baseline_exactly_at_uln_is_normal(test, uln, value, normal_grade):
    """Baseline abnormal = baseline above its ULN (criteria assumption): a baseline equal to the
    ULN is normal and the ULN clauses apply; just above it the baseline clauses apply."""
    assert grade(test, [value], "U/L", uln=uln, base=uln)[0] == [normal_grade]
    assert grade(test, [value], "U/L", uln=uln, base=uln + 0.1)[0] == ["0"]


def test_fibrinogen_baseline_exactly_at_lln_is_normal():
    """Fibrinogen decreased, the low-direction baseline clause: abnormal = baseline below its LLN.
    LLN 200 mg/dL, baseline 200 (normal): 150 = 0.75 x LLN is grade 1 ("<1.0 - 0.75 x LLN"); were
    the baseline abnormal, 150 would be a 25% decrease, grade 2. Baseline 190 (abnormal): 142.5 is
    a 25% decrease (grade 2), 142.6 a 24.9% decrease (grade 1), though both are < 0.75 x LLN."""
    check("FIBRINO", "mg/dL", [(150, 1), (149, 2)], lln=200, base=200)
    check("FIBRINO", "mg/dL", [(142.6, 1), (142.5, 2)], lln=200, base=190)


def test_baseline_exactly_at_uln_gives_the_same_grade_by_either_clause_for_bilirubin_and_hemoglobin():
    """Bilirubin (">ULN - 1.5 x ULN" / ">1.0 - 1.5 x baseline" ...) and Hemoglobin increased ("+0-2
    g/dL above ULN" / "above baseline" ...) state the two clauses with the same multiples (the same
    offsets), so a baseline equal to the ULN gives one grade whichever clause applies: by hand,
    ULN 20.5 umol/L, baseline 20.5: 30.75 = 1.5 x 20.5 is grade 1, 30.8 grade 2, 61.5 = 3 x grade 2,
    61.6 grade 3; hemoglobin ULN 170 g/L, baseline 170: 190 (+2 g/dL) grade 1, 191 grade 2."""
    check("BILI", "umol/L", [(20.5, 0), (20.6, 1), (30.75, 1), (30.8, 2), (61.5, 2), (61.6, 3)], uln=20.5, base=20.5)
    check("HGB", "g/L", [(170, 0), (171, 1), (190, 1), (191, 2)], lln=130, uln=170, base=170)


def test_equality_at_a_converted_boundary():
    # creatinine 3.3 mg/dL with ULN 1.1 mg/dL is exactly 3.0 x ULN: grade 2 (>1.5 - 3.0 x ULN),
    # although 3.3 x 88.402 and 3 x (1.1 x 88.402) differ in binary floating point
    check("CREAT", "mg/dL", [(3.3, 2), (3.31, 3), (1.65, 1), (1.66, 2)], uln=1.1)
    # bilirubin 1.5 x ULN 0.7 mg/dL = 1.05 mg/dL: grade 1; 3.0 x = 2.1: grade 2
    check("BILI", "mg/dL", [(1.05, 1), (1.06, 2), (2.1, 2), (2.11, 3)], uln=0.7)
    # ALT in ukat/L: ULN 0.7 ukat/L (42 U/L), 3.0 x = 2.1 ukat/L (126 U/L): grade 1
    check("ALT", "ukat/L", [(2.1, 1), (2.11, 2), (3.5, 2), (3.51, 3)], uln=0.7)


def _raw_criteria() -> pd.DataFrame:
    return load_spec(SPECS).rule("ctcae_lab").copy()


@pytest.mark.parametrize("change,msg", [
    ({"upper": "3.3"}, "grade 1 upper 3.3 \\(Y\\) does not meet grade 2 lower 3 \\(N\\)"),   # overlap
    ({"upper": "2.7"}, "grade 1 upper 2.7 \\(Y\\) does not meet grade 2 lower 3 \\(N\\)"),   # gap
    ({"upper_incl": "N"}, "grade 1 upper 3 \\(N\\) does not meet grade 2 lower 3 \\(N\\)"),  # 3.0 x ULN ungraded
])
def test_grade_bands_must_meet(change, msg):
    """ALT (baseline normal) grade 1 ">ULN - 3.0 x ULN" must end where grade 2 ">3.0 - 5.0 x ULN"
    begins; an overlap (hidden by the higher grade winning) or a gap is a table error."""
    bad = _raw_criteria()
    row = bad.index[(bad["lbtestcd"] == "ALT") & (bad["grade"] == "1") & (bad["baseline"] == "normal")][0]
    for k, v in change.items():
        bad.loc[row, k] = v
    assert len(ctcae_lab.check_criteria(_raw_criteria())) == len(bad)
    with pytest.raises(ConfigError, match=msg):
        ctcae_lab.check_criteria(bad)


def test_gradable_rows_read_as_the_criteria_table_iterated_by_column():
    """_gradable_rows takes the rows from plain lists (issue 14): the same rows, tests, order
    and values (NaN bounds included) as iterating the pandas columns, with a missing test and a
    clinical-only row left out."""
    _, criteria = _tables()
    c = pd.concat([criteria, criteria.iloc[[0]].assign(lbtestcd=None)], ignore_index=True)
    rows = c[(c["lab_gradable"] == "Y") & c["lbtestcd"].notna()]
    expected: dict = {}
    for test, *values in zip(rows["lbtestcd"], *(rows[f] for f in ctcae_lab._Criterion._fields)):
        expected.setdefault(test, []).append(ctcae_lab._Criterion(*values))
    got = ctcae_lab._gradable_rows(c)
    assert list(got) == list(expected) and None not in got
    for test in expected:
        for g, e in zip(got[test], expected[test], strict=True):
            for f, a, b in zip(ctcae_lab._Criterion._fields, g, e):
                assert (a == b) or (pd.isna(a) and pd.isna(b)), (test, f, a, b)
    assert sum(map(len, got.values())) == int((criteria["lab_gradable"] == "Y").sum())
    assert any(np.isnan(r.lower) for rs in got.values() for r in rs)  # open bounds are there


def _hand_criteria():
    """A made-up high-direction test XX: grade 1 >ULN-3.0xULN, grade 2 >3.0xULN (normal
    baseline); grade 1 >1.5-3.0xBASELINE (abnormal baseline); grade 3 >= 100 (any)."""
    base = dict(ctcae_version="5.0", term="XX increased", meddra_code="1", lbtestcd="XX", direction="high",
                clause="1", lab_gradable="Y", lower_offset="", upper_offset="", si_unit="U/L", threshold_unit="",
                source_text="made up", assumption="", source="test", lower_incl="N", upper_incl="Y",
                lower_basis="ULN", upper_basis="ULN")
    rows = [dict(base, grade="1", baseline="normal", lower="1", upper="3"),
            dict(base, grade="2", baseline="normal", lower="3", upper="", upper_basis="", upper_incl=""),
            dict(base, grade="1", baseline="abnormal", lower="1.5", upper="3", lower_basis="BASELINE",
                 upper_basis="BASELINE"),
            dict(base, grade="3", baseline="any", lower="100", lower_basis="SI", lower_incl="Y", upper="",
                 upper_basis="", upper_incl="")]
    return ctcae_lab.check_criteria(pd.DataFrame(rows, columns=ctcae_lab.CRITERIA_COLUMNS))


@pytest.mark.filterwarnings("error::pandas.errors.Pandas4Warning")  # a one-direction test: no fill of floats with text
def test_grade_labs_by_hand_on_open_bounds_baseline_basis_and_missing_range():
    """Open upper bounds, a BASELINE basis, an absolute bound and a missing ULN, graded by hand
    (the per-row evaluation updates its grades in place: issue 14)."""
    c = _hand_criteria()
    nan = np.nan
    #        value  ULN   post   BASE  BASE_ULN   expected
    cases = [(10.0, 10.0, False, nan, nan, "0"),    # on the ULN: not above it
             (10.5, 10.0, False, nan, nan, "1"),
             (30.0, 10.0, False, nan, nan, "1"),    # 3.0 x ULN inclusive in grade 1
             (30.1, 10.0, False, nan, nan, "2"),    # open upper bound of grade 2
             (100.0, 10.0, False, nan, nan, "3"),   # absolute >= 100 (any baseline)
             (99.0, nan, False, nan, nan, ""),      # ULN missing: grade 1-2 unknown, 3 not met
             (120.0, nan, False, nan, nan, "3"),    # ULN missing, but grade 3 is certain
             (29.0, 10.0, True, 20.0, 10.0, "0"),   # abnormal baseline: > 1.5 x BASE needed
             (31.0, 10.0, True, 20.0, 25.0, "2"),   # baseline normal: x ULN rows
             (40.0, 10.0, True, 20.0, 10.0, "1")]   # > 1.5 x BASE
    f = pd.DataFrame({"LBTESTCD": "XX", "LBSTRESU": "U/L", "value": [x[0] for x in cases], "censor": 0.0,
                      "LLN": nan, "ULN": [x[1] for x in cases], "post": [x[2] for x in cases],
                      "BASE": [x[3] for x in cases], "BASE_CENSOR": 0.0, "BASE_LLN": nan,
                      "BASE_ULN": [x[4] for x in cases]})
    g = ctcae_lab.grade_labs(f, c)
    assert g.frame["LBTOXGR"].tolist() == [x[5] for x in cases]
    assert g.range_missing.tolist() == [x[5] == "" for x in cases]
    empty = ctcae_lab.grade_labs(f.iloc[:0], c)
    assert empty.frame.empty and list(empty.frame.columns) == ["LBTOX", "LBTOXGR"]
