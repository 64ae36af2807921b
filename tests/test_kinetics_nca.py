"""Cellular kinetics NCA (pipeline.rules.kinetics) on small hand-computed profiles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.rules.kinetics import elapsed_days, nca_parameters


def profile(points, subject="S1", analyte="CARTCOPY"):
    return pd.DataFrame({"USUBJID": subject, "PCTESTCD": analyte,
                         "t": [float(t) for t, _ in points], "conc": [float(c) for _, c in points]})


def run(frame):
    return nca_parameters(frame, ["USUBJID", "PCTESTCD"]).set_index(["USUBJID", "PCTESTCD"])


def test_hand_computed_profile_with_day_zero_and_day_28():
    # (0,0) (1,10) (7,100) (14,40) (28,10)
    # AUC = 1*(0+10)/2 + 6*(10+100)/2 + 7*(100+40)/2 + 14*(40+10)/2 = 5 + 330 + 490 + 350 = 1175
    r = run(profile([(0, 0), (1, 10), (7, 100), (14, 40), (28, 10)])).iloc[0]
    assert r["CMAX"] == 100 and r["TMAX"] == 7 and r["n_obs"] == 5
    assert r["AUC"] == pytest.approx(1175.0)
    assert r["auc_status"] == ""


def test_no_sample_at_time_zero_starts_at_zero_and_day_28_is_interpolated():
    # (0,0) implied, (2,20), (10,80), then (21,40) and (35,12): C(28) = 40 + (7/14) * (12 - 40) = 26
    # AUC = 2*20/2 + 8*(20+80)/2 + 11*(80+40)/2 + 7*(40+26)/2 = 20 + 400 + 660 + 231 = 1311
    r = run(profile([(2, 20), (10, 80), (21, 40), (35, 12)])).iloc[0]
    assert r["AUC"] == pytest.approx(1311.0)
    assert r["CMAX"] == 80 and r["TMAX"] == 10
    assert r["n_obs"] == 3  # day 35 is outside 0-28


def test_tmax_is_the_first_time_of_the_maximum_and_samples_after_28_do_not_count():
    r = run(profile([(3, 50), (7, 90), (10, 90), (28, 5), (60, 500)])).iloc[0]
    assert r["CMAX"] == 90 and r["TMAX"] == 7


def test_profile_ending_before_day_28_is_not_extrapolated():
    r = run(profile([(1, 5), (7, 50), (14, 20)])).iloc[0]
    assert math.isnan(r["AUC"])
    assert r["auc_status"] == "profile ends before day 28 (last sample day 14); not extrapolated"
    assert r["CMAX"] == 50


def test_pre_infusion_samples_are_ignored_and_groups_are_separate():
    f = pd.concat([profile([(-5, 999), (0, 0), (28, 28)], "S1"), profile([(0, 0), (14, 10), (28, 0)], "S2"),
                   profile([(0, 0), (28, 2)], "S1", "CARTCELL")], ignore_index=True)
    out = run(f)
    assert out.loc[("S1", "CARTCOPY"), "AUC"] == pytest.approx(28 * 28 / 2)  # 392
    assert out.loc[("S1", "CARTCOPY"), "CMAX"] == 28
    assert out.loc[("S2", "CARTCOPY"), "AUC"] == pytest.approx(140.0)   # 14*10/2 + 14*10/2
    assert out.loc[("S1", "CARTCELL"), "AUC"] == pytest.approx(28.0)


def test_replicates_at_the_same_time_are_averaged():
    r = run(profile([(0, 0), (7, 10), (7, 30), (28, 0)])).iloc[0]
    # mean 20 at day 7: AUC = 7*20/2 + 21*20/2 = 70 + 210 = 280
    assert r["AUC"] == pytest.approx(280.0) and r["CMAX"] == 20


def test_no_sample_in_window():
    r = run(profile([(-3, 0), (40, 5)])).iloc[0]
    assert r["n_obs"] == 0 and np.isnan(r["CMAX"]) and np.isnan(r["AUC"])
    assert r["auc_status"] == "no sample in days 0-28"


def test_elapsed_days_exact_with_times_else_by_date():
    dtc = pd.Series(["2025-01-16T22:00", "2025-01-20", "2025-01-15", "2025-01"])
    ref = pd.Series(["2025-01-15T10:00"] * 4)
    d = elapsed_days(dtc, ref)
    assert d.iloc[0] == pytest.approx(1.5)
    assert d.iloc[1] == 5.0 and d.iloc[2] == 0.0
    assert np.isnan(d.iloc[3])
