"""Subject identifiers (SDTMIG 3.4 section 5, DM: USUBJID unique across the submission)."""

from __future__ import annotations

import pandas as pd


def usubjid(frame: pd.DataFrame) -> pd.Series:
    """USUBJID = STUDYID-SITEID-SUBJID (the sponsor convention of this pipeline)."""
    return (frame["STUDYID"].astype(str) + "-" + frame["SITEID"].astype(str) + "-" + frame["SUBJID"].astype(str)).astype("object")
