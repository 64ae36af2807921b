"""Engraftment after allogeneic HSCT (specs/rules/engraftment.csv), the HSCT truncation of PFS/DOR
in ADTTE, ADSL HSCTFL/HSCTDT and the PR mapping, on hand-built fixtures. Every expected date
below is counted by hand from the definitions (ANC >= 0.5 on 3 consecutive days after the nadir;
platelets >= 20 on 7 consecutive days without a platelet transfusion on those days)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.adam import adsl, adtte, engraftment as E
from pipeline.spec import load_spec

from conftest import SPECS

H = 23800.0   # HSCT date (SAS date) of every fixture subject = 2025-02-28
DAY0 = pd.Timestamp("1960-01-01") + pd.Timedelta(days=H)


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS, "adam")


def rule(spec, paramcd):
    r = spec.rule("engraftment")
    return r[r["paramcd"] == paramcd].iloc[0].to_dict()


def lb(test: str, series: dict[str, list[tuple[int, float]]]) -> pd.DataFrame:
    """LB rows: (HSCT day, value) per subject; NaN = a record without result (NOT DONE)."""
    rows, seq = [], 0
    for s, vals in series.items():
        for d, v in vals:
            seq += 1
            rows.append({"USUBJID": s, "LBTESTCD": test, "LBSTRESN": v, "LBSEQ": float(seq),
                         "LBDTC": (DAY0 + pd.Timedelta(days=d)).strftime("%Y-%m-%dT07:30")})
    return pd.DataFrame(rows)


def derive(spec, paramcd, test, series, tx=None):
    h = pd.DataFrame({"USUBJID": list(series), "HSCTDT": H})
    days = E.daily_values(lb(test, series), test, h)
    t = tx if tx is not None else pd.DataFrame({"USUBJID": pd.Series(dtype=object), "dt": pd.Series(dtype=float)})
    return E.engraftment_dates(days, t, rule(spec, paramcd)).set_index("USUBJID")


def test_neutrophil_engraftment_boundaries(spec):
    e = derive(spec, "NEUTENGT", "NEUT", {
        # A: exactly three consecutive days >= 0.5 from day 2, with a value of exactly 0.5 on day 2
        "A": [(0, 0.1), (1, 0.2), (2, 0.5), (3, 0.6), (4, 0.7)],
        # B: days 1-2 >= 0.5, the third day (3) missing: no engraftment until the next run, day 4-6
        "B": [(0, 0.1), (1, 0.6), (2, 0.7), (4, 0.8), (5, 0.9), (6, 1.0)],
        # C: as B but day 3 has a record without result (NOT DONE): the run breaks too
        "C": [(0, 0.1), (1, 0.6), (2, 0.7), (3, np.nan), (4, 0.8), (5, 0.9), (6, 1.0)],
        # D: 0.49 on day 2 breaks the run; days 3-4 are only two: not engrafted
        "D": [(0, 0.1), (1, 0.6), (2, 0.49), (3, 0.6), (4, 0.6)],
        # E: values before the HSCT do not count; nadir day 0, engrafted day 1
        "E": [(-3, 0.8), (-2, 0.9), (-1, 1.0), (0, 0.3), (1, 0.6), (2, 0.6), (3, 0.6)],
        # F: never below 0.5 after the HSCT: no nadir, nothing to count
        "F": [(0, 0.8), (1, 0.9), (2, 1.0)],
        # G: two results on day 1 (0.6 and 0.4): the lowest counts, so the run starts day 2
        "G": [(0, 0.1), (1, 0.6), (1, 0.4), (2, 0.6), (3, 0.6), (4, 0.6)],
    })
    day = e["ENGDT"] - H
    assert day["A"] == 2 and day["B"] == 4 and day["C"] == 4 and day["E"] == 1 and day["G"] == 2
    assert np.isnan(e.loc["D", "ENGDT"]) and np.isnan(e.loc["F", "ENGDT"]) and np.isnan(e.loc["F", "NADIRDT"])
    assert e.loc["D", "LASTDT"] - H == 4                      # censoring date for ADTTE
    assert e.loc["A", "NADIRDT"] - H == 0
    assert e.loc["A", "ENGSEQ"] == 3.0                        # the LB record of day 2 (3rd row)


def test_platelet_engraftment_transfusion_and_missing_day(spec):
    run7 = [(d, 25.0) for d in range(1, 8)]
    after = [(d, 30.0) for d in range(8, 15)]
    e = derive(spec, "PLATENGT", "PLAT", {
        # P1: exactly 20 on day 1, >= 20 for 7 days, no transfusion: engrafted day 1
        "P1": [(0, 10.0), (1, 20.0)] + run7[1:],
        # P2: >= 20 days 1-14 but a platelet transfusion on day 5 (the 5th of the 7): not engrafted
        #     then; the next 7 transfusion-free days start on day 6
        "P2": [(0, 10.0)] + run7 + after,
        # P3: the 7th day (day 7) missing: the run breaks; days 8-14 engraft on day 8
        "P3": [(0, 10.0)] + run7[:6] + after,
        # P4: six days only: not engrafted
        "P4": [(0, 10.0)] + run7[:6],
        # P5: 19 on day 1 is below 20, so the seven days >= 20 run from day 2
        "P5": [(0, 10.0), (1, 19.0)] + [(d, 25.0) for d in range(2, 9)],
    }, tx=pd.DataFrame({"USUBJID": ["P2", "P1"], "dt": [H + 5, H + 0]}))
    day = e["ENGDT"] - H
    assert day["P1"] == 1        # a transfusion on the nadir day (day 0) is before the run
    assert day["P2"] == 6 and day["P3"] == 8 and day["P5"] == 2
    assert np.isnan(e.loc["P4", "ENGDT"])


def test_platelet_transfusions_read_from_cm(spec):
    cm = pd.DataFrame({"USUBJID": ["A", "A", "B"], "CMTRT": ["Platelets, apheresis", "Red blood cells", "PLT"],
                       "CMDECOD": ["", "", "PLATELET CONCENTRATE"], "CMSTDTC": ["2025-03-05", "2025-03-06", "2025-03-07"]})
    t = E.transfusion_dates({"CM": cm}, rule(spec, "PLATENGT"))
    assert t["USUBJID"].tolist() == ["A", "B"] and (t["dt"] - H).tolist() == [5.0, 7.0]
    assert E.transfusion_dates({}, rule(spec, "PLATENGT")).empty
    assert E.transfusion_dates({"CM": cm}, rule(spec, "NEUTENGT")).empty    # neutrophils: no transfusion rule


def test_discrepancy_report(spec):
    eng = pd.DataFrame({"USUBJID": ["A", "B", "C"], "PARAMCD": "NEUTENGT", "HSCTDT": H, "NADIRDT": H,
                        "ENGDT": [H + 14, H + 15, np.nan], "ENGSEQ": 1.0, "LASTDT": H + 20, "LASTSEQ": 2.0})
    fapr = pd.DataFrame({"USUBJID": ["A", "B", "C"], "FATESTCD": "ENGRNEUT", "FAORRES": ["Y", "Y", "N"],
                         "FADTC": ["2025-03-14", "2025-03-14", "2025-03-20"], "FASEQ": [7.0, 8.0, 9.0]})
    r = E.discrepancies(eng, fapr, spec).set_index("USUBJID")
    assert r.loc["A", "status"] == "AGREE" and r.loc["A", "derived_date"] == "2025-03-14"
    assert r.loc["B", "status"] == "DIFFERENT DATE" and r.loc["B", "difference_days"] == 1
    assert r.loc["C", "status"] == "NEITHER" and r.loc["C", "collected_date"] == ""


def src(rows, dom="ADRS", var="ASEQ"):
    return pd.DataFrame({"USUBJID": [r[0] for r in rows], "dt": [r[1] for r in rows], "SRCDOM": dom, "SRCVAR": var,
                         "SRCSEQ": np.arange(1.0, len(rows) + 1)})


def test_pfs_and_dor_truncated_at_hsct(spec):
    T0 = 20000.0
    s = {"TRTSDT": src([("X", T0), ("Y", T0), ("Z", T0)], "ADSL", "TRTSDT"),
         "DEATH": src([("Y", T0 + 200)], "ADSL", "DTHDT"), "LSTALVDT": src([], "ADSL", "LSTALVDT"),
         "FIRSTRSP": src([("X", T0 + 28), ("Y", T0 + 28), ("Z", T0 + 28)]),
         "PROGRESSION": src([("X", T0 + 180)]),
         "LASTASMT": src([("X", T0 + 28), ("X", T0 + 90), ("X", T0 + 180), ("Y", T0 + 28), ("Y", T0 + 90),
                          ("Z", T0 + 28), ("Z", T0 + 90)]),
         "RECOVERY": src([]), "LASTLAB": src([]),
         # X: HSCT day 60, relapse day 180 afterwards; Y: HSCT day 100, dies day 200; Z: no HSCT
         "HSCTDT": src([("X", T0 + 60), ("Y", T0 + 100)], "ADSL", "HSCTDT")}
    rules = spec.rule("adtte_censoring")
    p = adtte.time_to_event(rules[rules["paramcd"] == "PFS"], pd.Series(["X", "Y", "Z"]), s["TRTSDT"], s)
    p = p.set_index("USUBJID")
    # X: relapse after the HSCT does not count; last assessment on or before day 60 is day 28
    assert p.loc["X", ["CNSR", "ADT", "CNSDTDSC"]].tolist() == [1.0, T0 + 28, "LAST ADEQUATE DISEASE ASSESSMENT"]
    # Y: death after the HSCT (day 100) does not count; last assessment on or before it is day 90
    assert p.loc["Y", ["CNSR", "ADT"]].tolist() == [1.0, T0 + 90]
    # Z: no HSCT: censored at the last assessment, day 90 (AVAL 91)
    assert p.loc["Z", ["CNSR", "AVAL"]].tolist() == [1.0, 91.0]
    d = adtte.time_to_event(rules[rules["paramcd"] == "DOR"], pd.Series(["X"]), s["FIRSTRSP"], s).set_index("USUBJID")
    # X: response day 28, censored at day 28 (AVAL 1): no adequate assessment between response and HSCT
    assert d.loc["X", ["CNSR", "AVAL"]].tolist() == [1.0, 1.0]


def test_engraftment_time_to_event(spec):
    rules = spec.rule("adtte_censoring")
    s = {"HSCTDT": src([("A", H), ("B", H), ("C", H)], "ADSL", "HSCTDT"), "DEATH": src([("C", H + 9)], "ADSL", "DTHDT"),
         "ENGRAFT": src([("A", H + 14)], "LB", "LBSEQ"), "LASTLAB": src([("B", H + 30), ("C", H + 8)], "LB", "LBSEQ")}
    t = adtte.time_to_event(rules[rules["paramcd"] == "NEUTENGT"], pd.Series(["A", "B", "C"]), s["HSCTDT"], s)
    t = t.set_index("USUBJID")
    assert t.loc["A", ["CNSR", "AVAL", "EVNTDESC"]].tolist() == [0.0, 15.0, "NEUTROPHIL ENGRAFTMENT"]
    assert t.loc["B", ["CNSR", "AVAL", "CNSDTDSC"]].tolist() == [1.0, 31.0, "LAST LABORATORY ASSESSMENT"]
    assert t.loc["C", ["CNSR", "AVAL", "CNSDTDSC"]].tolist() == [1.0, 10.0, "DEATH BEFORE ENGRAFTMENT"]


def test_adsl_hsct_flag_and_date(spec):
    pr = pd.DataFrame({"USUBJID": ["A", "A", "B"], "PRCAT": ["CAR-T PRODUCT COLLECTION", "TRANSPLANT AFTER CAR-T",
                                                             "CAR-T PRODUCT COLLECTION"],
                       "PRSTDTC": ["2024-12-01T09:00", "2025-02-28", "2024-12-03"]})
    out = adsl.procedure_variables({"PR": pr}, spec, pd.Series(["A", "B", "C"]), pd.Series([20000.0, 20001.0, np.nan]))
    out = out.set_index("USUBJID")
    assert out.loc["A", "HSCTDT"] == H and out.loc["A", "HSCTFL"] == "Y"
    assert np.isnan(out.loc["B", "HSCTDT"]) and out.loc["B", "HSCTFL"] == "N"
    assert out.loc["C", "HSCTFL"] == ""                       # never infused
