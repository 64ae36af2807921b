"""Unit conversion (pipeline.rules.units) against specs/rules/lab_units.csv and lab_tests.csv."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.rules import units
from pipeline.spec import load_spec

from conftest import SPECS


@lru_cache(maxsize=1)
def table() -> units.UnitTable:
    return units.load_unit_table(load_spec(SPECS))


ROWS = [(r.lbtestcd, r.raw_unit) for r in table().units.itertuples()]


@settings(max_examples=60, deadline=None)
@given(row=st.sampled_from(ROWS),
       value=st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_every_conversion_round_trips(row, value):
    test, unit = row
    si = units.to_si(pd.Series([value]), pd.Series([test]), pd.Series([unit]), table())
    assert si["unit_known"].iloc[0]
    back = units.from_si(si["si_value"], pd.Series([test]), pd.Series([unit]), table())
    assert math.isclose(back.iloc[0], value, rel_tol=1e-9)


def test_every_row_round_trips_vectorised():
    t = table().units
    values = pd.Series(np.linspace(0.37, 912.5, len(t)))
    si = units.to_si(values, t["lbtestcd"], t["raw_unit"], table())
    back = units.from_si(si["si_value"], t["lbtestcd"], t["raw_unit"], table())
    np.testing.assert_allclose(back.to_numpy(), values.to_numpy(), rtol=1e-9)
    assert si["unit_known"].all()


@pytest.mark.parametrize("test,value,unit,expected", [
    ("CREAT", 1.0, "mg/dL", 88.402),        # 10000 / 113.12
    ("BILI", 1.0, "mg/dL", 17.104),         # 10000 / 584.66
    ("GLUC", 90.0, "mg/dL", 4.99563),       # 90 x 10 / 180.156
    ("CA", 10.0, "mg/dL", 2.4951),          # 10 x 10 / 40.078
    ("MG", 2.0, "mg/dL", 0.82288),          # 2 x 10 / 24.305
    ("BUN", 14.0, "mg/dL", 4.99758),        # 14 x 10 / 28.014
    ("HGB", 12.5, "g/dL", 125.0),
    ("ALB", 3.5, "g/dL", 35.0),
    ("NEUT", 1500, "/mm3", 1.5),
    ("CD4", 350, "cells/uL", 0.35),
    ("PLAT", 75, "10^3/uL", 75.0),
    ("ALT", 1.5, "ukat/L", 90.0),
    ("FIBRINO", 150, "mg/dL", 1.5),
    ("K", 4.2, "mEq/L", 4.2),
    ("CRP", 2.5, "mg/dL", 25.0),
    ("CREAT", 88.0, "µmol/L", 88.0),
    ("APTT", 31.2, "s", 31.2),
])
def test_hand_computed_conversions(test, value, unit, expected):
    si = units.to_si(pd.Series([float(value)]), pd.Series([test]), pd.Series([unit]), table())
    assert si["si_value"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_molar_factors_follow_the_molecular_weights():
    t = table()
    mw = dict(zip(t.tests["lbtestcd"], pd.to_numeric(t.tests["mw_g_per_mol"], errors="coerce")))
    molar = t.units[t.units["derivation"].str.contains("MW", regex=False)]
    assert len(molar) >= 6
    for r in molar.itertuples():
        per = 10000.0 if t.si_unit(pd.Series([r.lbtestcd])).iloc[0] == "umol/L" else 10.0
        assert r.factor == pytest.approx(per / mw[r.lbtestcd], rel=1e-4), r.lbtestcd


def test_ct_spelling_of_units_and_standard_unit():
    """Collected spellings become the CDISC CT 2025-03-28 UNIT submission value (sec -> s,
    /mm3 and cells/uL -> 10^6/L, 10^3/uL -> 10^9/L, ng/mL -> ug/L, pg/mL -> ng/L)."""
    tests = ["BILI", "APTT", "NEUT", "CD4", "PLAT", "FERRITIN", "IL6"]
    raw = ["µmol/L", "sec", "/mm3", "cells/uL", "10^3/uL", "ng/mL", "pg/mL"]
    si = units.to_si(pd.Series([20.0, 1.0, 1500.0, 350.0, 75.0, 10.0, 5.0]), pd.Series(tests), pd.Series(raw), table())
    assert si["ct_unit"].tolist() == ["umol/L", "s", "10^6/L", "10^6/L", "10^9/L", "ug/L", "ng/L"]
    assert si["si_unit"].tolist() == ["umol/L", "s", "10^9/L", "10^9/L", "10^9/L", "ug/L", "ng/L"]
    assert all(u.isascii() for u in table().units["ct_unit"])
    assert all(u.isascii() for u in table().tests["si_unit"])


@pytest.mark.parametrize("test,unit", [("CREAT", "mg/dl"), ("CREAT", "mmol/L"), ("NEUT", "g/L"), ("ALT", ""),
                                       ("XYZ", "U/L"), ("K", "mEq")])
def test_unknown_unit_is_refused_not_guessed(test, unit):
    si = units.to_si(pd.Series([1.0]), pd.Series([test]), pd.Series([unit]), table())
    assert not si["unit_known"].iloc[0]
    assert np.isnan(si["si_value"].iloc[0])
    assert si["ct_unit"].iloc[0] == ""


def test_unitless_inr():
    si = units.to_si(pd.Series([1.3]), pd.Series(["INR"]), pd.Series([""]), table())
    assert si["unit_known"].iloc[0] and si["si_value"].iloc[0] == 1.3 and si["si_unit"].iloc[0] == ""


def test_parse_results_numbers_and_censored():
    p = units.parse_results(pd.Series(["1.50", "<0.5", "> 1000", "", None, "POSITIVE", "1e3", "-2", ".5"]))
    assert p["value"].tolist()[:3] == [1.5, 0.5, 1000.0]
    assert p["censor"].tolist() == [0, -1, 1, 0, 0, 0, 0, 0, 0]
    assert p["numeric"].tolist() == [True, True, True, False, False, False, True, True, True]
    assert p["missing"].tolist() == [False, False, False, True, True, False, False, False, False]
    assert p["value"].iloc[6] == 1000.0 and p["value"].iloc[8] == 0.5


def test_censored_text_keeps_the_sign_with_the_converted_limit():
    si = units.to_si(pd.Series([500.0, 1000.0]), pd.Series(["NEUT", "ALT"]), pd.Series(["/mm3", "U/L"]), table())
    txt = units.censored_text(si["si_value"], pd.Series([-1, 1]))
    assert txt.tolist() == ["<0.5", ">1000"]


def test_clean_number_removes_binary_noise():
    assert units.clean_number(np.array([1.5000000000000002, 30.787199999999995, np.nan, 0.0]))[:2].tolist() == [1.5, 30.7872]
    assert units.format_number(pd.Series([1.5, 30.7872, np.nan, 120.0])).tolist() == ["1.5", "30.7872", "", "120"]


def test_a_bad_unit_table_is_a_config_error(tmp_path):
    import shutil

    root = tmp_path / "specs"
    shutil.copytree(SPECS, root)
    path = root / "rules" / "lab_units.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "GLUC,mmol/L,mmol/L,1,duplicate,test\nALT,IU/L,IU/L,zero,bad,test\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        units.load_unit_table(load_spec(root))
    msg = str(err.value)
    assert "GLUC 'mmol/L' listed twice" in msg and "'zero' is not a positive number" in msg


# ---------------------------------------------------------------------------------------
# every row of lab_units.csv against a value worked out by hand (not through the table)
# ---------------------------------------------------------------------------------------
# (test, raw unit, value, expected in the test's standard unit of lab_tests.csv, arithmetic)
HAND = [
    ("WBC", "10^9/L", 7.2, 7.2),              # identity
    ("WBC", "10^3/uL", 7.2, 7.2),             # 10^3/uL = 10^3 per 10^-6 L = 10^9/L
    ("WBC", "/mm3", 7200, 7.2),               # 1 mm3 = 1 uL: 7200/uL = 7200 x 10^6/L = 7.2 x 10^9/L
    ("NEUT", "10^9/L", 1.5, 1.5),             # identity
    ("NEUT", "10^3/uL", 1.5, 1.5),            # 10^3/uL = 10^9/L
    ("NEUT", "/mm3", 500, 0.5),               # 500/uL = 0.5 x 10^9/L
    ("LYM", "10^9/L", 0.8, 0.8),              # identity
    ("LYM", "10^3/uL", 0.8, 0.8),             # 10^3/uL = 10^9/L
    ("CD4", "10^9/L", 0.2, 0.2),              # identity
    ("CD4", "cells/uL", 200, 0.2),            # 200/uL = 200 x 10^6/L = 0.2 x 10^9/L
    ("CD4", "/mm3", 350, 0.35),               # 350/mm3 = 350/uL = 0.35 x 10^9/L
    ("HGB", "g/L", 95, 95.0),                 # identity
    ("HGB", "g/dL", 9.5, 95.0),               # 1 dL = 0.1 L: 9.5 g/dL = 95 g/L
    ("PLAT", "10^9/L", 50, 50.0),             # identity
    ("PLAT", "10^3/uL", 50, 50.0),            # 10^3/uL = 10^9/L
    ("RETI", "10^9/L", 20, 20.0),             # identity
    ("RETI", "10^3/uL", 20, 20.0),            # 10^3/uL = 10^9/L
    ("ALT", "U/L", 40, 40.0),                 # identity
    ("ALT", "ukat/L", 1.5, 90.0),             # 1 kat = 1 mol/s, 1 U = 1 umol/min: 1 ukat = 60 U; 1.5 x 60 = 90
    ("AST", "U/L", 35, 35.0),                 # identity
    ("AST", "ukat/L", 0.5, 30.0),             # 0.5 x 60 = 30 U/L
    ("ALP", "U/L", 120, 120.0),               # identity
    ("ALP", "ukat/L", 2.0, 120.0),            # 2.0 x 60 = 120 U/L
    ("GGT", "U/L", 60, 60.0),                 # identity
    ("GGT", "ukat/L", 0.25, 15.0),            # 0.25 x 60 = 15 U/L
    ("BILI", "umol/L", 20.5, 20.5),           # identity
    ("BILI", "µmol/L", 20.5, 20.5),           # micro sign spelling, identity
    ("BILI", "mg/dL", 1.2, 20.5249),          # 1.2 mg/dL = 12 mg/L; / 584.66 g/mol = 0.0205249 mmol/L = 20.5249 umol/L
    ("CREAT", "umol/L", 97.2, 97.2),          # identity
    ("CREAT", "µmol/L", 97.2, 97.2),          # micro sign spelling, identity
    ("CREAT", "mg/dL", 1.1, 97.2419),         # 11 mg/L / 113.12 g/mol = 0.0972419 mmol/L = 97.2419 umol/L
    ("BUN", "mmol/L", 7.1, 7.1),              # identity
    ("BUN", "mg/dL", 20, 7.13929),            # urea N2 (2 x 14.007 = 28.014): 200 mg/L / 28.014 = 7.13929 mmol/L
    ("K", "mmol/L", 3.0, 3.0),                # identity
    ("K", "mEq/L", 3.0, 3.0),                 # K+ valence 1: 1 mEq = 1 mmol
    ("SODIUM", "mmol/L", 130, 130.0),         # identity
    ("SODIUM", "mEq/L", 130, 130.0),          # Na+ valence 1: 1 mEq = 1 mmol
    ("CA", "mmol/L", 2.0, 2.0),               # identity
    ("CA", "mg/dL", 8.0, 1.99611),            # 80 mg/L / 40.078 g/mol = 1.99611 mmol/L (CTCAE's "2.0 mmol/L")
    ("MG", "mmol/L", 0.5, 0.5),               # identity
    ("MG", "mg/dL", 1.2, 0.493726),           # 12 mg/L / 24.305 g/mol = 0.493726 mmol/L
    ("ALB", "g/L", 30, 30.0),                 # identity
    ("ALB", "g/dL", 3.0, 30.0),               # 3.0 g/dL = 30 g/L
    ("GLUC", "mmol/L", 5.5, 5.5),             # identity
    ("GLUC", "mg/dL", 160, 8.88119),          # 1600 mg/L / 180.156 g/mol = 8.88119 mmol/L
    ("CK", "U/L", 200, 200.0),                # identity
    ("LIPASE", "U/L", 60, 60.0),              # identity
    ("AMYLASE", "U/L", 100, 100.0),           # identity
    ("CRP", "mg/L", 12, 12.0),                # identity
    ("CRP", "mg/dL", 1.2, 12.0),              # 1 dL = 0.1 L: 1.2 mg/dL = 12 mg/L
    ("FERRITIN", "ug/L", 500, 500.0),         # identity
    ("FERRITIN", "ng/mL", 500, 500.0),        # 1 ng/mL = 10^-9 g / 10^-3 L = 10^-6 g/L = 1 ug/L
    ("IL6", "ng/L", 7, 7.0),                  # identity
    ("IL6", "pg/mL", 7, 7.0),                 # 1 pg/mL = 10^-12 g / 10^-3 L = 10^-9 g/L = 1 ng/L
    ("FIBRINO", "g/L", 1.5, 1.5),             # identity
    ("FIBRINO", "mg/dL", 100, 1.0),           # 100 mg/dL = 1000 mg/L = 1.0 g/L
    ("INR", "", 1.5, 1.5),                    # unitless ratio
    ("APTT", "sec", 31.2, 31.2),              # seconds
    ("APTT", "s", 31.2, 31.2),                # seconds
    ("CARTCOPY", "copies/ug", 1500, 1500.0),  # identity
    ("CARTCELL", "10^6/L", 25, 25.0),         # identity
    ("CARTCELL", "cells/uL", 25, 25.0),       # 25/uL = 25 x 10^6/L
    ("CREATCLR", "mL/min", 60, 60.0),         # identity
    # issue 16 item 1 tests, each by hand from the molar mass or the unit definition
    ("CAION", "mmol/L", 1.15, 1.15),          # identity
    ("CAION", "mg/dL", 4.6, 1.147762),        # 46 mg/L / 40.078 g/mol = 1.147762 mmol/L
    ("LDH", "U/L", 250, 250.0),               # identity
    ("LDH", "ukat/L", 4.0, 240.0),            # 1 U = 1 umol/min = 1/60 umol/s = 1/60 ukat: 4 ukat/L = 240 U/L
    ("URATE", "umol/L", 420, 420.0),          # identity
    ("URATE", "µmol/L", 420, 420.0),          # micro sign spelling, identity
    ("URATE", "mg/dL", 7.0, 416.3941),        # 70 mg/L / 168.11 g/mol = 0.4163941 mmol/L (1 mg/dL = 59.48 umol/L)
    ("URATE", "mmol/L", 0.42, 420.0),         # 1 mmol = 1000 umol
    ("CHOL", "mmol/L", 5.2, 5.2),             # identity
    ("CHOL", "mg/dL", 200, 5.172637),         # 2000 mg/L / 386.65 g/mol = 5.172637 mmol/L
    ("TRIG", "mmol/L", 1.7, 1.7),             # identity
    ("TRIG", "mg/dL", 150, 1.694054),         # 1500 mg/L / 885.45 g/mol (triolein) = 1.694054 mmol/L (CTCAE's "1.71")
    ("HAPTOG", "g/L", 1.0, 1.0),              # identity
    ("HAPTOG", "mg/dL", 100, 1.0),            # 100 mg/dL = 1000 mg/L = 1.0 g/L
    ("PH", "", 7.40, 7.40),                   # no unit
]


def test_every_unit_row_has_a_hand_computed_case():
    """A new row of lab_units.csv must come with its hand-computed case in ``HAND``."""
    listed = {(r.lbtestcd, r.raw_unit) for r in table().units.itertuples()}
    assert listed == {(t, u) for t, u, _, _ in HAND}


@pytest.mark.parametrize("test,unit,value,expected", HAND)
def test_each_unit_row_against_the_hand_value(test, unit, value, expected):
    si = units.to_si(pd.Series([float(value)]), pd.Series([test]), pd.Series([unit]), table())
    assert si["unit_known"].iloc[0]
    # molar-mass rows: the table keeps 5 significant figures of the factor
    assert si["si_value"].iloc[0] == pytest.approx(expected, rel=1e-4)
