"""Baseline: ``--LOBXFL`` (SDTMIG 3.4, Findings: Last Observation Before Exposure Flag).

``Y`` on the last record with a non-missing result before the first exposure (RFXSTDTC,
the first CAR-T infusion), per subject and test. When a record has no time and falls on the
infusion date, it is taken as drawn before the infusion (protocol pre-infusion samples);
when both have times, the record must be at or before the infusion time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.dates import dtc_date, dtc_datetime


def before_exposure(dtc: pd.Series, rfxstdtc: pd.Series) -> pd.Series:
    """True where the record is on or before the first exposure per the rule above."""
    r_date, x_date = dtc_date(dtc), dtc_date(rfxstdtc)
    r_dt, x_dt = dtc_datetime(dtc), dtc_datetime(rfxstdtc)
    both_times = dtc.astype(str).str.contains("T", regex=False) & rfxstdtc.astype(str).str.contains("T", regex=False)
    same = r_date == x_date
    out = (r_date < x_date) | (same & ~both_times) | (same & both_times & (r_dt <= x_dt))
    return out.fillna(False)


def last_obs_before_exposure(frame: pd.DataFrame, by: list[str], dtc: str, has_result: pd.Series,
                             rfxstdtc: pd.Series) -> pd.Series:
    """``"Y"``/``""`` flag for the last pre-exposure record with a result in each ``by`` group."""
    eligible = before_exposure(frame[dtc], rfxstdtc) & has_result
    key = dtc_datetime(frame[dtc])
    cand = frame.loc[eligible, by].assign(_key=key[eligible], _i=np.flatnonzero(eligible.to_numpy()))
    cand = cand.sort_values(by + ["_key", "_i"], kind="mergesort")
    last = cand.drop_duplicates(by, keep="last")
    flag = pd.Series("", index=frame.index, dtype="object")
    flag.iloc[last["_i"].to_numpy()] = "Y"
    return flag
