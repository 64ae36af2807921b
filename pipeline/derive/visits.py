"""VISITNUM / VISIT / VISITDY from the study's visit schedule (SDTMIG 3.4 sections 4.4.5, 7.3.1 TV).

Planned visits map one to one to the schedule in ``specs/studies/<STUDYID>.toml``.
Unplanned visits are collected as ``UNSCHEDULED``; they get the VISITNUM of the last planned
visit whose planned study day is on or before the record's study day, plus 0.1, so that they
sort between planned visits (the sponsor convention SDTMIG 4.4.5 allows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.errors import DataError

UNSCHEDULED = "UNSCHEDULED"


def visit_numbers(visit: pd.Series, study: Study, dy: pd.Series | None = None) -> pd.DataFrame:
    """Columns VISITNUM (float) and VISIT (text), aligned to ``visit``.

    ``dy`` (the record's study day) places UNSCHEDULED visits; without it they get NaN.
    An unknown visit name raises :class:`DataError` (the gate should have caught it).
    """
    sched = study.visits
    name = visit.astype("object").where(visit.notna(), "").astype(str).str.strip().str.upper()
    num = name.map(dict(zip(sched["VISIT"].str.upper(), sched["VISITNUM"].astype(float))))
    unsched = name.eq(UNSCHEDULED)
    unknown = num.isna() & ~unsched & name.ne("")
    if unknown.any():
        raise DataError(f"{study.studyid}: visit(s) not in the schedule: {', '.join(sorted(set(name[unknown])))[:200]}")
    if dy is not None and unsched.any():
        planned_dy = sched["VISITDY"].to_numpy(dtype=float)
        planned_num = sched["VISITNUM"].to_numpy(dtype=float)
        order = np.argsort(planned_dy, kind="mergesort")
        planned_dy, planned_num = planned_dy[order], planned_num[order]
        d = dy.to_numpy(dtype=float)
        pos = np.searchsorted(planned_dy, d, side="right") - 1
        base = np.where(pos >= 0, planned_num[np.clip(pos, 0, None)], 0.0)
        unsched_num = np.where(np.isnan(d), np.nan, base + 0.1)
        num = num.where(~unsched, pd.Series(unsched_num, index=visit.index))
    return pd.DataFrame({"VISITNUM": num.astype("float64"), "VISIT": name.where(name.ne(""), "")}, index=visit.index)


def planned_visit_day(visit: pd.Series, study: Study) -> pd.Series:
    """VISITDY (planned study day) of planned visits; NaN for unscheduled."""
    sched = study.visits
    name = visit.astype(str).str.upper()
    return name.map(dict(zip(sched["VISIT"].str.upper(), sched["VISITDY"].astype(float)))).astype("float64")
