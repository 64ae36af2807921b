"""Baseline: ``--LOBXFL`` (SDTMIG 3.4, Findings: Last Observation Before Exposure Flag).

``Y`` on the last record with a non-missing result before the first exposure to any
protocol-specified treatment (DM.RFXSTDTC = the earliest EXSTDTC, i.e. the first
lymphodepletion dose in these studies), per subject and test. The flag is therefore the
pre-lymphodepletion value. A pre-infusion baseline (last value before the CAR-T product) is an
analysis choice and belongs to ADaM, not here.

Same-day records (the comparison is made on the ISO 8601 texts as collected):

- both the record and RFXSTDTC have a time: the record is before exposure only when its time
  is strictly earlier (a sample taken at or after the first dose time is not baseline);
- either side has a date only: the record is taken as before exposure when it is on the
  exposure date (protocol pre-dose sampling on the first dosing day; a date-only comparison
  cannot tell, and this is the documented convention of the spec's method);
- a partial date (YYYY or YYYY-MM) is never before exposure (cannot be placed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.dates import dtc_date, dtc_datetime


def before_exposure(dtc: pd.Series, rfxstdtc: pd.Series) -> pd.Series:
    """True where the record is before the first exposure per the rules above."""
    r_date, x_date = dtc_date(dtc), dtc_date(rfxstdtc)
    r_dt, x_dt = dtc_datetime(dtc), dtc_datetime(rfxstdtc)
    both_times = dtc.astype(str).str.contains("T", regex=False) & rfxstdtc.astype(str).str.contains("T", regex=False)
    same = r_date == x_date
    out = (r_date < x_date) | (same & ~both_times) | (same & both_times & (r_dt < x_dt))
    return out.fillna(False)


def last_obs_before_exposure(frame: pd.DataFrame, by: list[str], dtc: str, has_result: pd.Series,
                             rfxstdtc: pd.Series) -> pd.Series:
    """``"Y"``/``""`` flag for the last pre-exposure record with a result in each ``by`` group.

    Order within a group: date/time of the record, then record order (the later row wins a tie).
    """
    eligible = before_exposure(frame[dtc], rfxstdtc) & has_result
    key = dtc_datetime(frame[dtc])
    cand = frame.loc[eligible, by].assign(_key=key[eligible], _i=np.flatnonzero(eligible.to_numpy()))
    cand = cand.sort_values(by + ["_key", "_i"], kind="mergesort")
    last = cand.drop_duplicates(by, keep="last")
    flag = pd.Series("", index=frame.index, dtype="object")
    flag.iloc[last["_i"].to_numpy()] = "Y"
    return flag
