"""Subject identifiers (SDTMIG 3.4 section 5, DM: USUBJID unique across the submission)."""

from __future__ import annotations

import pandas as pd

from pipeline.export.memo import per_object


def usubjid(frame: pd.DataFrame) -> pd.Series:
    """USUBJID = STUDYID-SITEID-SUBJID (the sponsor convention of this pipeline)."""
    return (frame["STUDYID"].astype(str) + "-" + frame["SITEID"].astype(str) + "-" + frame["SUBJID"].astype(str)).astype("object")


def by_subject(dm: pd.DataFrame, column: str) -> pd.Series:
    """``dm.set_index("USUBJID")[column]``: one column of DM looked up by subject.

    Made once per DM frame (a dataset frame is not changed once built; the domains ask DM for
    RFSTDTC or RFXSTDTC by subject ~40 times a study, and ``set_index`` copies the whole frame
    each time) and handed out as a shallow copy, which pandas' copy-on-write keeps separate.
    """
    made = per_object(dm, ("by_subject", column), lambda d: d[column].set_axis(pd.Index(d["USUBJID"])))
    return made.copy(deep=False)
