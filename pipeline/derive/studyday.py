"""Study day ``--DY`` (SDTMIG 3.4 section 4.4.4).

--DY = (date - RFSTDTC) + 1 when the date is on or after RFSTDTC, else (date - RFSTDTC);
there is no day 0. RFSTDTC is the first CAR-T infusion. Only the date parts are used, and
--DY is missing when either date is partial or missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.dates import dtc_day_numbers
from pipeline.derive.identifiers import by_subject


def study_day(dtc: pd.Series, rfstdtc: pd.Series) -> pd.Series:
    """``--DY`` of each ``dtc`` against the subject's ``rfstdtc`` (aligned Series). Float with NaN."""
    delta = dtc_day_numbers(dtc) - dtc_day_numbers(rfstdtc)  # aligned by position
    return pd.Series(study_day_of_difference(delta), index=dtc.index, dtype=np.float64)


def study_day_of_difference(delta: np.ndarray) -> np.ndarray:
    """``--DY`` from the days between the date and RFSTDTC (date - RFSTDTC): one more on or
    after RFSTDTC, so that there is no day 0; NaN (a partial or missing date) stays NaN."""
    return np.where(delta >= 0, delta + 1, delta)


def study_day_by_subject(dtc: pd.Series, usubjid: pd.Series, dm: pd.DataFrame) -> pd.Series:
    """``--DY`` looking RFSTDTC up in DM by USUBJID (:func:`study_day`; NaN for a subject not in
    DM). RFSTDTC is read as day numbers once per DM subject and taken by each record's position
    in DM, not written out per record and read again (~125 calls a study)."""
    rfstdtc = by_subject(dm, "RFSTDTC")
    ref_days = dtc_day_numbers(rfstdtc)  # one per DM subject
    at = rfstdtc.index.get_indexer(usubjid)
    delta = dtc_day_numbers(dtc) - np.where(at >= 0, ref_days[np.maximum(at, 0)], np.nan)  # aligned by position
    return pd.Series(study_day_of_difference(delta), index=dtc.index, dtype=np.float64)


def protocol_day_to_study_day(day: pd.Series) -> pd.Series:
    """Planned study day of a protocol day counted from infusion = day 0 (no day 0 in SDTM)."""
    return day.where(day < 0, day + 1)
