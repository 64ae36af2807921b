"""VISITNUM / VISIT / VISITDY from the study's visit schedule (SDTMIG 3.4 sections 4.4.5, 7.3.1 TV).

Planned visits map one to one to the schedule in ``specs/studies/<STUDYID>.toml``.

Unplanned visits are collected as ``UNSCHEDULED``. Each one (one subject, one date) gets its own
VISITNUM, never reused for another date (SDTMIG 3.4 4.4.5 allows the sponsor to number
unplanned visits so that they sort between planned ones):

    VISITNUM = previous scheduled VISITNUM + 0.01 x k

where the previous scheduled visit is the subject's latest planned visit (a record with a
planned VISIT) dated on or before the unscheduled date, and k = 1, 2, ... numbers the subject's
distinct unscheduled dates after that visit in date order. When the subject has no planned
visit on or before the date, the base is the last planned visit of the schedule whose planned
study day is on or before the record's study day, else 0. All records of one subject on one
unscheduled date share the number, in every domain: :func:`renumber_unscheduled` recomputes the
numbers over all datasets of the study once every domain is built, so that an unscheduled date
seen in LB and in FA has the same VISITNUM in both. Records whose date is missing or partial
cannot be placed and keep a null VISITNUM (the build reports them).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.derive.seq import key_order
from pipeline.derive.text import date_part, stripped_upper_text
from pipeline.errors import DataError

UNSCHEDULED = "UNSCHEDULED"
#: VISITNUM step between consecutive unscheduled visits after one planned visit
STEP = 0.01
#: most unscheduled visits after one planned visit before the numbers would reach the next integer
MAX_PER_BASE = 99
_DATE = r"^\d{4}-\d{2}-\d{2}"
_DATE_RE = re.compile(_DATE)


def _names(visit: pd.Series) -> pd.Series:
    """Visit names as matched with the schedule (stripped, upper case, ``""`` when missing)."""
    return stripped_upper_text(visit)


def _planned_base(dy: np.ndarray, study: Study) -> np.ndarray:
    """VISITNUM of the last planned visit whose planned study day is on or before ``dy`` (0 before
    the first; NaN where ``dy`` is NaN)."""
    sched = study.visits
    planned_dy = sched["VISITDY"].to_numpy(dtype=float)
    planned_num = sched["VISITNUM"].to_numpy(dtype=float)
    order = np.argsort(planned_dy, kind="mergesort")
    planned_dy, planned_num = planned_dy[order], planned_num[order]
    pos = np.searchsorted(planned_dy, dy, side="right") - 1
    base = np.where(pos >= 0, planned_num[np.clip(pos, 0, None)] if len(planned_num) else 0.0, 0.0)
    return np.where(np.isnan(dy), np.nan, base)


def unscheduled_numbers(unscheduled: pd.DataFrame, scheduled: pd.DataFrame, study: Study) -> pd.DataFrame:
    """VISITNUM of each distinct unscheduled (USUBJID, date) (see the module docstring).

    ``unscheduled``: USUBJID, ``date`` (YYYY-MM-DD) and ``dy`` (study day, may be NaN);
    ``scheduled``: USUBJID, ``date``, VISITNUM of planned-visit records.
    Returns USUBJID, ``date``, VISITNUM (one row per distinct pair), sorted by USUBJID, base
    and date.

    The base of a date is the highest planned VISITNUM of the subject on or before it: the
    subject's planned records are sorted by (subject, day), their running maximum taken per
    subject, and each unscheduled date finds the subject's last planned day on or before it
    by one binary search over (subject, day) keys (numpy on the small arrays; a chain of
    pandas sorts, group-bys and an as-of merge before).
    """
    u = unscheduled.drop_duplicates(["USUBJID", "date"])
    if u.empty:
        return pd.DataFrame({"USUBJID": pd.Series(dtype=object), "date": pd.Series(dtype=object),
                             "VISITNUM": pd.Series(dtype="float64")})
    u_subject = u["USUBJID"].astype(str).to_numpy(dtype=object)   # datasets differ in string dtype
    u_day = _day_numbers(u["date"])
    s_num = pd.to_numeric(scheduled["VISITNUM"], errors="coerce").to_numpy(dtype="float64")
    planned = ~np.isnan(s_num)
    s_subject = scheduled["USUBJID"].astype(str).to_numpy(dtype=object)[planned]
    s_day = _day_numbers(scheduled["date"][planned])
    s_num = s_num[planned]
    # subjects as codes, days from the first day seen: one int64 key per (subject, day)
    code, _ = pd.factorize(np.concatenate([s_subject, u_subject]))
    s_code, u_code = code[:len(s_subject)], code[len(s_subject):]
    first = min(s_day.min(initial=u_day.min()), u_day.min())
    span = max(s_day.max(initial=u_day.max()), u_day.max()) - first + 1
    s_key, u_key = s_code * span + (s_day - first), u_code * span + (u_day - first)
    order = np.argsort(s_key, kind="stable")
    s_key, s_code = s_key[order], s_code[order]
    running = pd.Series(s_num[order]).groupby(s_code).cummax().to_numpy(dtype="float64")
    at = np.searchsorted(s_key, u_key, side="right") - 1   # the last planned day on or before
    found = (at >= 0) & (s_code[np.maximum(at, 0)] == u_code) if len(s_key) else np.zeros(len(u_key), dtype=bool)
    base = np.where(found, running[np.maximum(at, 0)] if len(s_key) else np.nan, np.nan)
    fallback = np.nan_to_num(_planned_base(pd.to_numeric(u["dy"], errors="coerce").to_numpy(dtype=float), study), nan=0.0)
    base = np.where(np.isnan(base), fallback, base)
    # k = 1, 2, ... over the subject's dates after one base, in date order
    frame = pd.DataFrame({"USUBJID": u_subject, "base": base, "day": u_day})
    sort = key_order(frame, ["USUBJID", "base", "day"])
    pair = frame["USUBJID"].to_numpy()[sort], base[sort]
    n = len(sort)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (pair[0][1:] != pair[0][:-1]) | (pair[1][1:] != pair[1][:-1])
    pos = np.arange(n)
    k = pos - np.maximum.accumulate(np.where(new_run, pos, 0)) + 1
    if (k > MAX_PER_BASE).any():
        worst = pair[0][np.flatnonzero(k > MAX_PER_BASE)[0]]
        raise DataError(f"{study.studyid}: subject {worst} has more than {MAX_PER_BASE} unscheduled visit dates "
                        "after one planned visit; VISITNUM cannot number them below the next planned visit")
    return pd.DataFrame({"USUBJID": pd.Series(u_subject[sort], dtype=object),
                         "date": u["date"].iloc[sort].reset_index(drop=True),
                         "VISITNUM": np.round(pair[1] + STEP * k, 2)})


def _day_numbers(date: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (int64) of ``YYYY-MM-DD`` texts, read as ``pd.to_datetime`` with that
    format reads them (an impossible date raises)."""
    return pd.to_datetime(date, format="%Y-%m-%d").to_numpy(dtype="datetime64[D]").astype(np.int64)


def visit_numbers(visit: pd.Series, study: Study, dy: pd.Series | None = None,
                  usubjid: pd.Series | None = None, dtc: pd.Series | None = None) -> pd.DataFrame:
    """Columns VISITNUM (float) and VISIT (text), aligned to ``visit``.

    UNSCHEDULED visits are numbered from this frame's own records when ``usubjid`` and ``dtc``
    are given (module docstring); :func:`renumber_unscheduled` makes the numbers agree across
    datasets at the end of the build. Without ``usubjid``/``dtc`` they get the planned-schedule
    base (from ``dy``) + 0.01, or NaN without ``dy``.
    An unknown visit name raises :class:`DataError` (the gate should have caught it).
    """
    sched = study.visits
    name = _names(visit)
    num = name.map(dict(zip(sched["VISIT"].str.upper(), sched["VISITNUM"].astype(float))))
    unsched = name.eq(UNSCHEDULED)
    unknown = num.isna() & ~unsched & name.ne("")
    if unknown.any():
        raise DataError(f"{study.studyid}: visit(s) not in the schedule: {', '.join(sorted(set(name[unknown])))[:200]}")
    if unsched.any():
        d = dy.to_numpy(dtype=float) if dy is not None else np.full(len(visit), np.nan)
        if usubjid is not None and dtc is not None:
            date, dated = date_part(dtc, _DATE_RE)
            dated = pd.Series(dated, index=visit.index)
            frame = pd.DataFrame({"USUBJID": usubjid.to_numpy(), "date": date.to_numpy(), "dy": d,
                                  "VISITNUM": num.to_numpy()}, index=visit.index)
            nums = unscheduled_numbers(frame[unsched & dated], frame[~unsched & dated & num.notna()], study)
            lookup = pd.Series(nums["VISITNUM"].to_numpy(), index=pd.MultiIndex.from_frame(nums[["USUBJID", "date"]]))
            num = num.where(~unsched, _unscheduled_lookup(lookup, frame["USUBJID"], frame["date"], unsched & dated))
        else:
            num = num.where(~unsched, pd.Series(_planned_base(d, study) + STEP, index=visit.index))
    return pd.DataFrame({"VISITNUM": num.astype("float64"), "VISIT": name.where(name.ne(""), "")}, index=visit.index)


def _unscheduled_lookup(lookup: pd.Series, usubjid: pd.Series, date: pd.Series,
                        rows: pd.Series | np.ndarray) -> np.ndarray:
    """VISITNUM from ``lookup`` (by USUBJID and date) for ``rows`` (a boolean mask of the dated
    unscheduled records), NaN elsewhere: only those few rows are looked up."""
    at = np.flatnonzero(np.asarray(rows, dtype=bool))
    out = np.full(len(rows), np.nan)
    key = pd.MultiIndex.from_arrays([usubjid.iloc[at].astype(str).to_numpy(dtype=object), date.iloc[at].to_numpy()])
    out[at] = lookup.reindex(key).to_numpy(dtype="float64")
    return out


def _dtc_column(name: str, frame: pd.DataFrame) -> str | None:
    """The record date/time variable of a dataset (``--DTC``; LBDA keeps the LB prefix)."""
    prefixes = [name]
    if "DOMAIN" in frame and len(frame):
        prefixes.append(str(frame["DOMAIN"].iloc[0]))
    for p in prefixes:
        if f"{p}DTC" in frame:
            return f"{p}DTC"
    return None


def renumber_unscheduled(datasets: dict[str, pd.DataFrame], study: Study) -> dict[str, pd.DataFrame]:
    """The datasets with the VISITNUM of every UNSCHEDULED record computed over all of them
    (module docstring), so that one subject's unscheduled date has one VISITNUM in every domain.

    Only subject-level datasets with USUBJID, VISIT, VISITNUM and a ``--DTC`` take part. Other
    datasets are returned unchanged (the same objects).

    The taking part datasets' USUBJID, VISIT, date and study day are stacked into one set of
    columns, so that visit names, dates and masks are computed once for the study, not once per
    dataset; each dataset's rows are one slice of the stack.
    """
    parts = _taking_part(datasets)
    if not parts:
        return datasets
    planned = dict(zip(study.visits["VISIT"].str.upper(), study.visits["VISITNUM"].astype(float)))
    stack = _stacked_visit_columns(datasets, parts)
    visit = _names(stack["VISIT"])
    date, dated = date_part(stack["DTC"], _DATE_RE)
    unsched = visit.eq(UNSCHEDULED).to_numpy(dtype=bool)
    if not unsched.any():
        return datasets
    placed = unsched & dated
    sched = dated & visit.isin(list(planned)).to_numpy(dtype=bool)
    nums = unscheduled_numbers(
        pd.DataFrame({"USUBJID": stack["USUBJID"][placed], "date": date[placed], "dy": stack["dy"][placed]}),
        pd.DataFrame({"USUBJID": stack["USUBJID"][sched], "date": date[sched],
                      "VISITNUM": visit[sched].map(planned)}), study)
    lookup = pd.Series(nums["VISITNUM"].to_numpy(), index=pd.MultiIndex.from_frame(nums[["USUBJID", "date"]]))
    got = _unscheduled_lookup(lookup, stack["USUBJID"], date, placed)
    out = dict(datasets)
    bounds = np.cumsum([0] + [len(datasets[name]) for name, _ in parts])
    for (name, _), lo, hi in zip(parts, bounds[:-1], bounds[1:]):  # a dozen datasets
        if not unsched[lo:hi].any():
            continue
        frame = datasets[name].copy(deep=False)  # copy-on-write: the input frame is not changed
        frame["VISITNUM"] = frame["VISITNUM"].astype("float64").where(~unsched[lo:hi], got[lo:hi])
        out[name] = frame
    return out


def _taking_part(datasets: dict[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """``(dataset, its --DTC)`` of the non-empty datasets with USUBJID, VISIT, VISITNUM and a
    ``--DTC``, in the order of ``datasets``."""
    parts = []
    for name, frame in datasets.items():  # a few dozen datasets
        if not {"USUBJID", "VISIT", "VISITNUM"} <= set(frame.columns) or frame.empty:
            continue
        dtc = _dtc_column(name, frame)
        if dtc is not None:
            parts.append((name, dtc))
    return parts


def _stacked_visit_columns(datasets: dict[str, pd.DataFrame], parts: list[tuple[str, str]]) -> pd.DataFrame:
    """USUBJID, VISIT and DTC (object) and ``dy`` (the ``--DY`` as a number, NaN when absent)
    of the ``parts`` datasets (:func:`_taking_part`), one after another on a 0..n-1 index."""
    def column(name: str, variable: str) -> np.ndarray:
        return datasets[name][variable].to_numpy(dtype=object)

    def study_day(name: str, dtc: str) -> np.ndarray:
        frame, dy = datasets[name], dtc[:-3] + "DY"
        if dy not in frame:
            return np.full(len(frame), np.nan)
        return pd.to_numeric(frame[dy], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)

    return pd.DataFrame({"USUBJID": np.concatenate([column(n, "USUBJID") for n, _ in parts]),
                         "VISIT": np.concatenate([column(n, "VISIT") for n, _ in parts]),
                         "DTC": np.concatenate([column(n, dtc) for n, dtc in parts]),
                         "dy": np.concatenate([study_day(n, dtc) for n, dtc in parts])})


def planned_visit_day(visit: pd.Series, study: Study) -> pd.Series:
    """VISITDY (planned study day) of planned visits; NaN for unscheduled."""
    sched = study.visits
    name = visit.astype(str).str.upper()
    return name.map(dict(zip(sched["VISIT"].str.upper(), sched["VISITDY"].astype(float)))).astype("float64")
