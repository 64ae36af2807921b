"""CTCAE v5.0 lab terms added for issue 16 item 1, graded at every boundary with expected
grades computed by hand from the CTCAE v5.0 text.

Independence: the standard-unit values handed to the grader are computed here from the
molecular weight or the unit definition (``HAND_FACTOR``), never through
``specs/rules/lab_units.csv``; a separate test checks that the table's factors agree with these
hand factors. Thresholds are read from the CTCAE text as it stands: a result reported in mg/dL
is graded against the mg/dL thresholds, one in mmol/L against the mmol/L thresholds (ctcae_lab
rule 8), and the cases where the two readings differ are tested on both sides.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Study
from pipeline.errors import ConfigError
from pipeline.rules import ctcae_lab
from pipeline.spec import load_spec

from conftest import SPECS

#: (test, unit) -> factor to the standard unit, by hand:
#:   mass concentration mg/dL -> mmol/L = 10 [dL/L] / MW [g/mol]; -> umol/L = 10000 / MW
HAND_FACTOR = {
    ("WBC", "10^9/L"): 1.0, ("WBC", "/mm3"): 1e-3,          # 1/mm3 = 1/uL = 10^6/L = 10^-3 x 10^9/L
    ("LYM", "10^9/L"): 1.0,
    ("HGB", "g/L"): 1.0, ("HGB", "g/dL"): 10.0,              # 1 g/dL = 10 g/L
    ("MG", "mmol/L"): 1.0, ("MG", "mg/dL"): 10 / 24.305,      # Mg 24.305 g/mol
    ("CA", "mmol/L"): 1.0, ("CA", "mg/dL"): 10 / 40.078,      # Ca 40.078 g/mol
    ("CAION", "mmol/L"): 1.0, ("CAION", "mg/dL"): 10 / 40.078,
    ("LDH", "U/L"): 1.0, ("LDH", "ukat/L"): 60.0,            # 1 U = 1 umol/min = 1/60 ukat
    ("URATE", "umol/L"): 1.0, ("URATE", "mg/dL"): 10000 / 168.11, ("URATE", "mmol/L"): 1000.0,  # C5H4N4O3
    ("CHOL", "mmol/L"): 1.0, ("CHOL", "mg/dL"): 10 / 386.65,   # C27H46O
    ("TRIG", "mmol/L"): 1.0, ("TRIG", "mg/dL"): 10 / 885.45,   # triolein C57H104O6
    ("HAPTOG", "g/L"): 1.0, ("HAPTOG", "mg/dL"): 0.01,       # 1 mg/dL = 10 mg/L = 0.01 g/L
    ("PH", ""): 1.0, ("GLUC", "mmol/L"): 1.0, ("GLUC", "mg/dL"): 10 / 180.156,  # C6H12O6
}
STANDARD = {"WBC": "10^9/L", "LYM": "10^9/L", "HGB": "g/L", "MG": "mmol/L", "CA": "mmol/L", "CAION": "mmol/L",
            "LDH": "U/L", "URATE": "umol/L", "CHOL": "mmol/L", "TRIG": "mmol/L", "HAPTOG": "g/L", "PH": "",
            "GLUC": "mmol/L"}


@lru_cache(maxsize=1)
def criteria() -> pd.DataFrame:
    return ctcae_lab.load_criteria(load_spec(SPECS), "5.0")


def grade(test, values, unit, lln=None, uln=None, base=None, base_uln=None, post=True, censor=None):
    """Grade results given in ``unit`` (standard values computed with the hand factor);
    returns (grades, terms)."""
    f = HAND_FACTOR[(test, unit)]
    n = len(values)
    nan = np.nan

    def conv(x):
        return nan if x is None else float(x) * f

    frame = pd.DataFrame({
        "LBTESTCD": test, "LBSTRESU": STANDARD[test], "value": [float(v) * f for v in values],
        "censor": censor if censor is not None else [0] * n, "LLN": conv(lln), "ULN": conv(uln), "post": post,
        "BASE": conv(base), "BASE_CENSOR": 0, "BASE_LLN": conv(lln),
        "BASE_ULN": conv(base_uln if base_uln is not None else uln), "ORIG_UNIT": unit, "ORIG_FACTOR": f,
    })
    g = ctcae_lab.grade_labs(frame, criteria())
    return g.frame["LBTOXGR"].tolist(), g.frame["LBTOX"].tolist()


def check(test, unit, cases, term=None, **kw):
    values = [v for v, _ in cases]
    want = [str(e) for _, e in cases]
    got, terms = grade(test, values, unit, **kw)
    assert got == want, f"{test} {unit}: " + ", ".join(f"{v}->{g!r} (want {e})" for v, g, e in zip(values, got, want)
                                                       if g != e)
    if term:
        assert set(terms) == {term}, terms


def test_hand_factors_match_the_unit_table():
    """The table's factors are the hand factors rounded to 5 significant figures (the table's
    convention), so a factor from another molecular weight shows up."""
    units = load_spec(SPECS).rule("lab_units")
    tab = {(r.lbtestcd, r.raw_unit): float(r.to_si_factor) for r in units.itertuples()}
    for key, f in HAND_FACTOR.items():
        assert tab[key] == float(f"{f:.5g}"), (key, tab[key], f)


# ---- hematology -------------------------------------------------------------------------------
def test_leukocytosis_only_grade_3_is_a_value():
    # ">100,000/mm3" = >100 x 10^9/L; grades 1-2 are "-", grade 4 is clinical (leucostasis)
    check("WBC", "10^9/L", [(9.6, 0), (50, 0), (100, 0), (100.01, 3), (400, 3)], term="Leukocytosis", lln=3.5, uln=9.5)
    check("WBC", "/mm3", [(100000, 0), (100001, 3)], lln=3500, uln=9500)


def test_lymphocyte_count_increased():
    # grade 2 ">4000/mm3 - 20,000/mm3", grade 3 ">20,000/mm3"; above the ULN up to 4.0 is grade 0
    check("LYM", "10^9/L", [(3.3, 0), (4.0, 0), (4.01, 2), (20.0, 2), (20.01, 3)], term="Lymphocyte count increased",
          lln=1.1, uln=3.2)
    # no baseline clause in v5.0: an abnormal baseline (25 x 10^9/L) changes nothing
    check("LYM", "10^9/L", [(4.01, 2), (20.01, 3)], lln=1.1, uln=3.2, base=25)


def test_lymphocyte_count_decreased_just_below_the_lln():
    # "<LLN - 800/mm3": just below the LLN is grade 1 (a mutation check survivor: the LLN bound
    # lowered to 0.9 x LLN went unnoticed), at the LLN grade 0; LYM is now a two-direction test
    check("LYM", "10^9/L", [(1.1, 0), (1.09, 1), (1.0, 1), (0.8, 1), (0.79, 2)], term="Lymphocyte count decreased",
          lln=1.1, uln=3.2)


def test_hemoglobin_increased_normal_baseline():
    # "Increase in >0 - 2 g/dL; >2 - 4; >4" above the ULN (160 g/L = 16.0 g/dL)
    check("HGB", "g/L", [(160, 0), (161, 1), (180, 1), (181, 2), (200, 2), (201, 3)], term="Hemoglobin increased",
          lln=120, uln=160, base=150)
    check("HGB", "g/dL", [(16.0, 0), (16.1, 1), (18.0, 1), (18.1, 2), (20.0, 2), (20.1, 3)], lln=12.0, uln=16.0)


def test_hemoglobin_increased_abnormal_baseline_counts_from_the_baseline():
    # baseline 17.0 g/dL above the ULN 16.0: the increase is measured from 17.0
    check("HGB", "g/dL", [(17.0, 0), (17.1, 1), (19.0, 1), (19.1, 2), (21.0, 2), (21.1, 3)],
          lln=12.0, uln=16.0, base=17.0)
    # the distinguishing value 18.5 g/dL: +2.5 over the ULN (grade 2) but +1.5 over the baseline (grade 1)
    assert grade("HGB", [18.5], "g/dL", lln=12.0, uln=16.0, base=15.0)[0] == ["2"]
    assert grade("HGB", [18.5], "g/dL", lln=12.0, uln=16.0, base=17.0)[0] == ["1"]
    # a baseline exactly at the ULN is normal: the ULN clause applies
    assert grade("HGB", [18.5], "g/dL", lln=12.0, uln=16.0, base=16.0)[0] == ["2"]
    # pre-treatment records are graded against the ULN only
    assert grade("HGB", [18.5], "g/dL", lln=12.0, uln=16.0, base=17.0, post=False)[0] == ["2"]


# ---- chemistry: conventional and SI thresholds -----------------------------------------------
def test_hypermagnesemia_in_each_unit():
    # mmol/L: ">ULN - 1.23; >1.23 - 3.30; >3.30" (grade 2 "-")
    check("MG", "mmol/L", [(1.02, 0), (1.03, 1), (1.23, 1), (1.24, 3), (3.30, 3), (3.31, 4)], term="Hypermagnesemia",
          lln=0.75, uln=1.02)
    # mg/dL: ">ULN - 3.0; >3.0 - 8.0; >8.0"
    check("MG", "mg/dL", [(2.5, 0), (2.6, 1), (3.0, 1), (3.01, 3), (8.0, 3), (8.01, 4)], lln=1.8, uln=2.5)


def test_conventional_rows_at_the_lln():
    # the mg/dL rows' own "<LLN" bound (mutation check survivors: the mg/dL Hypomagnesemia
    # grade 1 LLN bound x1.1 / x0.9 went unnoticed): at the LLN grade 0, just below grade 1
    check("MG", "mg/dL", [(1.8, 0), (1.79, 1)], term="Hypomagnesemia", lln=1.8, uln=2.5)
    check("GLUC", "mmol/L", [(3.9, 0), (3.89, 1)], term="Hypoglycemia", lln=3.9, uln=6.1)
    check("GLUC", "mg/dL", [(70, 0), (69, 1)], term="Hypoglycemia", lln=70, uln=110)


def test_magnesium_where_the_two_readings_differ():
    # 2.995 mg/dL = 1.2323 mmol/L: grade 1 by the mg/dL text (<= 3.0), 3 by the mmol/L text (> 1.23)
    assert 2.995 * 10 / 24.305 > 1.23
    assert grade("MG", [2.995], "mg/dL", lln=1.8, uln=2.5)[0] == ["1"]
    assert grade("MG", [2.995 * 10 / 24.305], "mmol/L", lln=0.74, uln=1.03)[0] == ["3"]
    # 8.01 mg/dL = 3.2956 mmol/L: grade 4 by the mg/dL text, 3 by the mmol/L text (<= 3.30)
    assert grade("MG", [8.01], "mg/dL", lln=1.8, uln=2.5)[0] == ["4"]
    assert grade("MG", [8.01 * 10 / 24.305], "mmol/L", lln=0.74, uln=1.03)[0] == ["3"]
    # hypomagnesemia: 1.2 mg/dL (grade 1 "<LLN - 1.2 mg/dL") is 0.4937 mmol/L (grade 2 "<0.5 - 0.4")
    assert grade("MG", [1.2], "mg/dL", lln=1.8, uln=2.5)[0] == ["1"]
    assert grade("MG", [1.2 * 10 / 24.305], "mmol/L", lln=0.74, uln=1.03)[0] == ["2"]


def test_total_calcium_where_the_two_readings_differ():
    f = 10 / 40.078
    # 11.6 mg/dL = 2.894 mmol/L: grade 2 (>11.5 - 12.5 mg/dL) but grade 1 by ">ULN - 2.9 mmol/L"
    assert grade("CA", [11.6], "mg/dL", lln=8.5, uln=10.2)[0] == ["2"]
    assert grade("CA", [11.6 * f], "mmol/L", lln=2.11, uln=2.55)[0] == ["1"]
    # 13.55 mg/dL = 3.381 mmol/L: grade 4 (>13.5 mg/dL) but grade 3 by ">3.1 - 3.4 mmol/L"
    assert grade("CA", [13.55], "mg/dL", lln=8.5, uln=10.2)[0] == ["4"]
    assert grade("CA", [13.55 * f], "mmol/L", lln=2.11, uln=2.55)[0] == ["3"]
    # 6.0 mg/dL = 1.497 mmol/L: grade 3 ("<7.0 - 6.0 mg/dL") but grade 4 by "<1.5 mmol/L"
    assert grade("CA", [6.0], "mg/dL", lln=8.5, uln=10.2)[0] == ["3"]
    assert grade("CA", [6.0 * f], "mmol/L", lln=2.11, uln=2.55)[0] == ["4"]
    # every mg/dL boundary of hypocalcemia
    check("CA", "mg/dL", [(8.5, 0), (8.4, 1), (8.0, 1), (7.99, 2), (7.0, 2), (6.99, 3), (6.0, 3), (5.99, 4)],
          term="Hypocalcemia", lln=8.5, uln=10.2)
    check("CA", "mg/dL", [(10.2, 0), (10.3, 1), (11.5, 1), (11.51, 2), (12.5, 2), (12.51, 3), (13.5, 3), (13.51, 4)],
          term="Hypercalcemia", lln=8.5, uln=10.2)


def test_ionized_calcium_both_directions():
    check("CAION", "mmol/L", [(1.32, 0), (1.33, 1), (1.5, 1), (1.51, 2), (1.6, 2), (1.61, 3), (1.8, 3), (1.81, 4)],
          term="Hypercalcemia", lln=1.12, uln=1.32)
    check("CAION", "mmol/L", [(1.12, 0), (1.11, 1), (1.0, 1), (0.99, 2), (0.9, 2), (0.89, 3), (0.8, 3), (0.79, 4)],
          term="Hypocalcemia", lln=1.12, uln=1.32)
    # CTCAE states ionized calcium in mmol/L only: 4.0 mg/dL = 0.998 mmol/L is graded as that (grade 2)
    assert grade("CAION", [4.0], "mg/dL", lln=4.5, uln=5.3)[0] == ["2"]


def test_ldh_is_grade_1_at_most():
    check("LDH", "U/L", [(250, 0), (251, 1), (5000, 1)], term="Blood lactate dehydrogenase increased", uln=250)
    # ULN 4.17 ukat/L (250 U/L): 4.18 ukat/L = 250.8 U/L
    check("LDH", "ukat/L", [(4.17, 0), (4.18, 1)], uln=4.17)


def test_cholesterol_high_each_unit_and_the_difference():
    check("CHOL", "mmol/L", [(5.2, 0), (5.21, 1), (7.75, 1), (7.76, 2), (10.34, 2), (10.35, 3), (12.92, 3), (12.93, 4)],
          term="Cholesterol high", uln=5.2)
    check("CHOL", "mg/dL", [(200, 0), (201, 1), (300, 1), (301, 2), (400, 2), (401, 3), (500, 3), (501, 4)], uln=200)
    # 299.9 mg/dL = 7.7565 mmol/L: grade 1 by the mg/dL text, 2 by the mmol/L text (>7.75)
    assert 299.9 * 10 / 386.65 > 7.75
    assert grade("CHOL", [299.9], "mg/dL", uln=200)[0] == ["1"]
    assert grade("CHOL", [299.9 * 10 / 386.65], "mmol/L", uln=5.2)[0] == ["2"]


def test_hypertriglyceridemia_starts_at_an_absolute_value():
    # "150 mg/dL - 300 mg/dL; 1.71 mmol/L - 3.42 mmol/L": grade 1 from 150 / 1.71 inclusive, not from the ULN
    check("TRIG", "mmol/L", [(1.70, 0), (1.71, 1), (3.42, 1), (3.43, 2), (5.7, 2), (5.71, 3), (11.4, 3), (11.41, 4)],
          term="Hypertriglyceridemia", uln=1.7)
    check("TRIG", "mg/dL", [(149, 0), (150, 1), (300, 1), (301, 2), (500, 2), (501, 3), (1000, 3), (1001, 4)], uln=150)
    # 150 mg/dL = 1.694 mmol/L: grade 1 by the mg/dL text, 0 by the mmol/L text (< 1.71)
    assert grade("TRIG", [150 * 10 / 885.45], "mmol/L", uln=1.7)[0] == ["0"]


def test_hyperuricemia_grade_1_only():
    check("URATE", "umol/L", [(428, 0), (429, 1), (1500, 1)], term="Hyperuricemia", uln=428)
    # 7.2 mg/dL ULN = 428.3 umol/L; 7.3 mg/dL = 434.2 umol/L
    check("URATE", "mg/dL", [(7.2, 0), (7.3, 1)], uln=7.2)


def test_haptoglobin_decreased():
    check("HAPTOG", "g/L", [(0.3, 0), (0.29, 1), (0.0, 1)], term="Haptoglobin decreased", lln=0.3, uln=2.0)
    # an undetectable "<0.1" g/L is below the LLN: grade 1
    assert grade("HAPTOG", [0.1], "g/L", lln=0.3, uln=2.0, censor=[-1])[0] == ["1"]
    check("HAPTOG", "mg/dL", [(30, 0), (29, 1)], lln=30, uln=200)


def test_acidosis_and_alkalosis():
    check("PH", "", [(7.38, 0), (7.35, 0), (7.34, 1), (7.30, 1), (7.29, 3), (6.9, 3)], term="Acidosis",
          lln=7.35, uln=7.45)
    check("PH", "", [(7.45, 0), (7.46, 1), (7.50, 1), (7.51, 3)], term="Alkalosis", lln=7.35, uln=7.45)
    # without a reference range: pH < 7.3 is grade 3 whatever the range; 7.32 could be 0 or 1 (unknown)
    got, _ = grade("PH", [7.25, 7.32], "")
    assert got == ["3", ""]


def test_hyperglycemia_is_never_graded_from_a_value():
    """CTCAE v5.0 Hyperglycemia is defined by management, not by a glucose value: its rows are
    all lab_gradable N, no record is labelled Hyperglycemia, and it has no shift-table row."""
    c = criteria()
    rows = c[c["term"] == "Hyperglycemia"]
    assert sorted(rows["grade"]) == [1, 2, 3, 4] and set(rows["lab_gradable"]) == {"N"}
    got, terms = grade("GLUC", [6.1, 11.1, 30.0], "mmol/L", lln=3.9, uln=6.1)
    assert "Hyperglycemia" not in terms and got == ["0", "0", "0"]
    lb = pd.DataFrame({"USUBJID": "X", "LBTESTCD": "GLUC", "LBTOX": terms, "LBTOXGR": got,
                       "LBLOBXFL": ["Y", "", ""], "post": [False, True, True]})
    assert "Hyperglycemia" not in set(ctcae_lab.worst_grades(lb, c)["LBTOX"])


# ---- the table: terms, codes, checks ------------------------------------------------------------
NEW_TERMS = {"Leukocytosis": "WBC", "Lymphocyte count increased": "LYM", "Hemoglobin increased": "HGB",
             "Hypermagnesemia": "MG", "Blood lactate dehydrogenase increased": "LDH", "Cholesterol high": "CHOL",
             "Hypertriglyceridemia": "TRIG", "Hyperuricemia": "URATE", "Haptoglobin decreased": "HAPTOG",
             "Acidosis": "PH", "Alkalosis": "PH"}


def test_new_terms_and_their_meddra_codes(shared_dir):
    ref_path = shared_dir / "reference" / "ctcae-v5" / "CTCAE_v5.0_terms.csv"
    if not ref_path.is_file():
        pytest.skip("../shared CTCAE v5.0 term list not present")
    ref = pd.read_csv(ref_path, dtype=str).drop_duplicates("CTCAE Term").set_index("CTCAE Term")
    c = criteria()
    for term, test in NEW_TERMS.items():
        rows = c[c["term"] == term]
        assert set(rows["lbtestcd"]) == {test}, term
        assert set(rows["meddra_code"]) == {ref.at[term, "MedDRA Code"]}, term
    ion = c[c["lbtestcd"] == "CAION"]
    assert set(ion["term"]) == {"Hypercalcemia", "Hypocalcemia"}


def test_lab_tests_carry_the_cdisc_ct_codes():
    tests = load_spec(SPECS).rule("lab_tests").set_index("lbtestcd")
    codes = {"CAION": "C81948", "LDH": "C64855", "URATE": "C64814", "CHOL": "C105586", "TRIG": "C64812",
             "HAPTOG": "C74740", "PH": "C45997"}
    for t, code in codes.items():
        assert code in tests.at[t, "source"], t
    cl = load_spec(SPECS).codelist("LBTESTCD").set_index("term")
    for t, code in codes.items():
        assert cl.at[t, "term_ncit_code"] == code, t


def _raw():
    return load_spec(SPECS).rule("ctcae_lab").copy()


def test_offset_band_gap_is_a_table_error():
    bad = _raw()
    row = bad.index[(bad["term"] == "Hemoglobin increased") & (bad["grade"] == "2") & (bad["baseline"] == "normal")][0]
    bad.loc[row, "lower_offset"] = "25"
    with pytest.raises(ConfigError, match=r"Hemoglobin increased .* grade 1 upper 1 \+ 20 \(Y\) does not meet grade 2 "
                                          r"lower 1 \+ 25 \(N\)"):
        ctcae_lab.check_criteria(bad)


@pytest.mark.parametrize("test,term,grade_,col,new,msg", [
    # grade 2 is "-": grade 1 "pH >normal, but <=7.5" must still meet grade 3 "pH >7.5" (mutation survivor)
    ("PH", "Alkalosis", "1", "upper", "8.25", r"Alkalosis \(any, clause a\) grade 1 upper 8.25 \(Y\) does not meet grade 3"),
    ("PH", "Acidosis", "1", "lower", "7.2", r"Acidosis \(any, clause a\) grade 1 lower 7.2 \(Y\) does not meet grade 3"),
    ("MG", "Hypermagnesemia", "1", "upper", "1.35", r"Hypermagnesemia \(any, clause a, mmol/L\) grade 1 upper 1.35"),
])
def test_bands_meet_across_an_undefined_grade(test, term, grade_, col, new, msg):
    bad = _raw()
    row = bad.index[(bad["term"] == term) & (bad["grade"] == grade_) & (bad["lbtestcd"] == test)][0]
    bad.loc[row, col] = new
    with pytest.raises(ConfigError, match=msg):
        ctcae_lab.check_criteria(bad)


def test_conventional_bands_meet_across_an_undefined_grade():
    # mutation check survivor: the mg/dL Hypermagnesemia grade 1 "- 3.0 mg/dL" raised to 3.3 overlapped
    # grade 3 ">3.0 mg/dL"; grade 2 ("-") has its one row in the standard unit only
    bad = _raw()
    row = bad.index[(bad["term"] == "Hypermagnesemia") & (bad["grade"] == "1") & (bad["threshold_unit"] == "mg/dL")][0]
    bad.loc[row, "upper"] = "3.3"
    with pytest.raises(ConfigError, match=r"Hypermagnesemia \(any, clause a, mg/dL\) grade 1 upper 3.3 \(Y\) does not meet"):
        ctcae_lab.check_criteria(bad)


def test_conventional_rows_are_a_band_set_of_their_own():
    bad = _raw()
    row = bad.index[(bad["term"] == "Cholesterol high") & (bad["grade"] == "2") & (bad["threshold_unit"] == "mg/dL")][0]
    bad.loc[row, "lower"] = "310"
    with pytest.raises(ConfigError, match=r"Cholesterol high \(any, clause a, mg/dL\) grade 1 upper 300"):
        ctcae_lab.check_criteria(bad)


def test_threshold_unit_must_be_a_listed_unit(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    c = pd.read_csv(specs / "rules" / "ctcae_lab.csv", dtype=str, keep_default_na=False)
    c.loc[(c["lbtestcd"] == "CHOL") & (c["threshold_unit"] == "mg/dL"), "threshold_unit"] = "mg/L"
    c.to_csv(specs / "rules" / "ctcae_lab.csv", index=False)
    with pytest.raises(ConfigError, match="CHOL rows in threshold unit 'mg/L', which lab_units.csv does not list"):
        ctcae_lab.load_criteria(load_spec(specs), "5.0")


# ---- the CTCAE version is a study parameter -----------------------------------------------------
def _study(safety: dict) -> Study:
    return Study(studyid="X", path=Path("X.toml"), raw={"studyid": "X", "safety": safety})


def test_version_without_rows_is_one_clear_error():
    spec = load_spec(SPECS)
    assert ctcae_lab.versions(spec) == ["5.0"]
    with pytest.raises(ConfigError, match=r"CTCAE version '6.0' has no laboratory criteria .*versions there: 5.0"):
        ctcae_lab.load_criteria(spec, "6.0")
    with pytest.raises(ConfigError, match=r"study X: \[safety\] ctcae_version = '6.0' has no laboratory criteria"):
        ctcae_lab.check_version(spec, _study({"ctcae_version": "6.0"}))
    with pytest.raises(ConfigError, match=r"study X: \[safety\] lacks ctcae_version"):
        ctcae_lab.check_version(spec, _study({}))
    # the AE grading text (SUPPAE TOXGRSCL) may not name another version than the parameter
    with pytest.raises(ConfigError, match="names CTCAE 5.0 but ctcae_version is '6.0'"):
        ctcae_lab.with_study_version(_version_spec(spec, "6.0"),
                                     _study({"ctcae_version": "6.0", "ae_grading": "NCI CTCAE v5.0"}))


def _version_spec(spec, version):
    """A spec whose criteria table also has ``version`` rows (a copy of the 5.0 rows), on disk."""
    import tempfile
    d = Path(tempfile.mkdtemp()) / "specs"
    shutil.copytree(spec.root, d)
    c = pd.read_csv(d / "rules" / "ctcae_lab.csv", dtype=str, keep_default_na=False)
    pd.concat([c, c.assign(ctcae_version=version)]).to_csv(d / "rules" / "ctcae_lab.csv", index=False)
    return load_spec(d)


def test_the_study_version_reaches_the_define_texts():
    spec = load_spec(SPECS)
    s = ctcae_lab.with_study_version(spec, _study({"ctcae_version": "5.0", "ae_grading": "NCI CTCAE v5.0"}))
    assert s.standards["ctcae_version"] == "5.0"
    v6 = _version_spec(spec, "6.0")
    s6 = ctcae_lab.with_study_version(v6, _study({"ctcae_version": "6.0", "ae_grading": "NCI CTCAE v6.0"}))
    assert s6.standards["ctcae_version"] == "6.0"
    assert set(ctcae_lab.load_criteria(s6, "6.0")["ctcae_version"]) == {"6.0"}
    from pipeline.adam import stage
    assert stage.adam_spec(s6).standards["ctcae_version"] == "6.0"


def test_build_of_a_study_asking_for_an_unknown_version_stops_with_one_line(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    toml = specs / "studies" / "ZJU-CD7-SAA.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('ctcae_version = "5.0"', 'ctcae_version = "6.0"'),
                    encoding="utf-8")
    raw = tmp_path / "raw"
    raw.mkdir()
    r = subprocess.run([sys.executable, "-m", "pipeline", "build", "--study", "ZJU-CD7-SAA", "--specs", str(specs),
                        "--raw", str(raw), "--out", str(tmp_path / "out"), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ctcae_version = '6.0' has no laboratory criteria" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out" / "ZJU-CD7-SAA").exists()


# ---- ADaM ADLB grades the new terms through the same table -----------------------------------------
def test_adlb_carries_the_new_grades_and_shifts():
    """ADLB takes the grade of each record from LB and the parameter's terms per direction from
    the same criteria table: pH has Acidosis (low) and Alkalosis (high), glucose no
    Hyperglycemia direction (no value-based grade)."""
    from pipeline.adam import adlb, stage
    spec = stage.adam_spec(ctcae_lab.with_study_version(load_spec(SPECS), _study({"ctcae_version": "5.0"})))
    terms = adlb.toxicity_terms(spec)
    assert (terms.loc["PH", "low"], terms.loc["PH", "high"]) == ("Acidosis", "Alkalosis")
    assert (terms.loc["CAION", "low"], terms.loc["CAION", "high"]) == ("Hypocalcemia", "Hypercalcemia")
    assert (terms.loc["HGB", "low"], terms.loc["HGB", "high"]) == ("Anemia", "Hemoglobin increased")
    assert (terms.loc["GLUC", "low"], terms.loc["GLUC", "high"]) == ("Hypoglycemia", "")
    assert (terms.loc["URATE", "low"], terms.loc["URATE", "high"]) == ("", "Hyperuricemia")
    g, t = grade("PH", [7.40, 7.28, 7.33, 7.52], "", lln=7.35, uln=7.45)
    assert g == ["0", "3", "1", "3"] and t == ["Alkalosis", "Acidosis", "Acidosis", "Alkalosis"]
    lb = pd.DataFrame({
        "USUBJID": "S1", "LBTESTCD": "PH", "LBTEST": "pH", "LBCAT": "CHEMISTRY", "LBSTRESN": [7.40, 7.28, 7.33, 7.52],
        "LBSTRESU": "", "LBSTNRLO": 7.35, "LBSTNRHI": 7.45, "LBNRIND": ["NORMAL", "LOW", "LOW", "HIGH"],
        "LBDTC": ["2024-01-01", "2024-01-10", "2024-01-11", "2024-01-12"], "VISIT": ["SCREENING", "D5", "D6", "D7"],
        "VISITNUM": [1, 5, 6, 7], "LBSEQ": [1, 2, 3, 4], "LBTOXGR": g, "LBTOX": t})
    rec = adlb.lab_records(lb)
    rec["TRTSDT"] = float((pd.Timestamp("2024-01-05") - pd.Timestamp("1960-01-01")).days)
    out = adlb.toxicity_shift(adlb.toxicity_directions(adlb.baseline(rec, pd.Series({"S1": "2024-01-02"})), terms))
    assert out["ATOXGRL"].tolist() == ["0", "3", "1", "0"]
    assert out["ATOXGRH"].tolist() == ["0", "0", "0", "3"]
    assert out["SHIFT1"].tolist() == ["", "0 to 3", "0 to 1", "0 to 0"]
    assert out["SHIFT2"].tolist() == ["", "0 to 0", "0 to 0", "0 to 3"]
    assert out["ANL01FL"].tolist() == ["", "Y", "", ""] and out["ANL02FL"].tolist() == ["", "", "", "Y"]


def test_one_spec_object_per_loaded_spec_and_version():
    """The studies of a build that grade by the same version share one spec object (and with it
    every per-spec memo); another version gets its own, and its criteria are its own rows."""
    v6 = _version_spec(load_spec(SPECS), "6.0")
    five = ctcae_lab.with_study_version(v6, _study({"ctcae_version": "5.0"}))
    assert ctcae_lab.with_study_version(v6, _study({"ctcae_version": "5.0"})) is five
    six = ctcae_lab.with_study_version(v6, _study({"ctcae_version": "6.0"}))
    assert six is not five and (five.standards["ctcae_version"], six.standards["ctcae_version"]) == ("5.0", "6.0")
    assert set(ctcae_lab.load_criteria(v6, "6.0")["ctcae_version"]) == {"6.0"}
    assert set(ctcae_lab.load_criteria(v6, "5.0")["ctcae_version"]) == {"5.0"}
    a = ctcae_lab.load_criteria(v6, "5.0")
    a.loc[:, "grade"] = 9                                  # a caller's copy: the memo is untouched
    assert 9 not in set(ctcae_lab.load_criteria(v6, "5.0")["grade"])
