"""ISO 8601 dates from CDASH-collected dates and times (SDTMIG 3.4 section 4.4.1-4.4.3).

CDASH collects dates as ``DD-MMM-YYYY`` with ``UN`` (or ``UNK``) for an unknown day and
``UNK`` (or ``UN``) for an unknown month. SDTM keeps what is known and drops the rest
(right truncation, SDTMIG 4.4.2): ``UN-MAR-2024`` -> ``2024-03``; ``UN-UNK-2024`` -> ``2024``.
A time is appended as ``THH:MM`` only to a complete date. An impossible date is never
converted silently: :func:`cdash_to_iso` raises :class:`DataError` naming the values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import DataError

MONTHS = {m: f"{i:02d}" for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_UNKNOWN = {"UN", "UNK"}
_DATE_RE = r"^(?P<d>\d{2}|UNK?|UN)-(?P<m>[A-Z]{3}|UNK?|UN)-(?P<y>\d{4})$"
_TIME_RE = r"^(?P<h>[01]\d|2[0-3]):(?P<mi>[0-5]\d)$"


def parse_cdash_date(date: pd.Series) -> pd.DataFrame:
    """Split CDASH dates into ISO text and validity.

    Returns a frame with columns ``iso`` (ISO 8601 text, ``""`` when missing or invalid),
    ``missing`` (bool), ``valid`` (bool; missing counts as valid) and ``complete`` (bool).
    Rules: day unknown only with a known or unknown month; a known day with an unknown
    month is invalid; the day must exist in that month and year (29-FEB only in leap years).
    """
    s = date.astype("object").where(date.notna(), "").astype(str)
    # parse each distinct value once: extracts repeat the same dates many times
    codes, uniques = pd.factorize(s)
    parsed = _parse_unique_dates(pd.Series(uniques, dtype="object"))
    out = parsed.iloc[codes].reset_index(drop=True)
    out.index = date.index
    return out


def _parse_unique_dates(raw: pd.Series) -> pd.DataFrame:
    """:func:`parse_cdash_date` on distinct values."""
    s = raw.str.strip().str.upper()
    date = raw
    missing = s.eq("")
    parts = s.str.extract(_DATE_RE)
    y, m, d = parts["y"], parts["m"], parts["d"]
    shaped = parts["y"].notna()
    day_unknown = d.isin(_UNKNOWN)
    month_unknown = m.isin(_UNKNOWN)
    month_num = m.map(MONTHS)
    month_ok = month_unknown | month_num.notna()
    # a known day under an unknown month is not a date
    structure_ok = shaped & month_ok & ~(month_unknown & ~day_unknown)
    complete = structure_ok & ~day_unknown & ~month_unknown
    full_text = y.fillna("") + "-" + month_num.fillna("") + "-" + d.fillna("")
    as_dt = pd.to_datetime(full_text.where(complete, None), format="%Y-%m-%d", errors="coerce")
    day_ok = ~complete | as_dt.notna()
    year_num = pd.to_numeric(y, errors="coerce")
    year_ok = year_num.between(1900, 2100)
    valid = missing | (structure_ok & day_ok & year_ok)
    iso = pd.Series(np.select(
        [~valid | missing, complete, ~month_unknown],
        ["", full_text, y.fillna("") + "-" + month_num.fillna("")],
        default=y.fillna(""),
    ), index=date.index, dtype="object")
    return pd.DataFrame({"iso": iso, "missing": missing, "valid": valid, "complete": complete & valid & ~missing},
                        index=date.index)


def parse_time(time: pd.Series) -> pd.DataFrame:
    """Validate ``HH:MM`` times (00:00-23:59). Columns ``iso`` (``HH:MM`` or ``""``), ``missing``, ``valid``."""
    t = time.astype("object").where(time.notna(), "").astype(str).str.strip()
    missing = t.eq("")
    ok = t.str.match(_TIME_RE)
    valid = missing | ok
    return pd.DataFrame({"iso": t.where(ok, ""), "missing": missing, "valid": valid}, index=time.index)


def cdash_to_iso(date: pd.Series, time: pd.Series | None = None, what: str = "date") -> pd.Series:
    """ISO 8601 ``--DTC`` text from a CDASH date (and optional ``HH:MM`` time).

    SDTMIG 3.4 4.4.2: partial dates are right-truncated; the time is kept only when the
    date is complete. Missing -> ``""``. Raises :class:`DataError` on impossible values,
    naming up to five of them, because a wrong date must never pass silently.
    """
    p = parse_cdash_date(date)
    bad = ~p["valid"]
    if time is not None:
        tp = parse_time(time)
        bad |= ~tp["valid"]
    if bad.any():
        examples = ", ".join(sorted(set(date[bad].astype(str)))[:5])
        raise DataError(f"{what}: {int(bad.sum())} impossible date/time value(s): {examples}")
    iso = p["iso"]
    if time is not None:
        with_time = p["complete"] & ~tp["missing"]
        iso = iso.where(~with_time, iso + "T" + tp["iso"])
    return iso.astype("object")


def dtc_date(dtc: pd.Series) -> pd.Series:
    """Datetime64 of the date part of complete ISO ``--DTC`` values; NaT for partial or missing."""
    s = dtc.astype("object").where(dtc.notna(), "").astype(str)
    return pd.to_datetime(s.str.slice(0, 10).where(s.str.match(r"^\d{4}-\d{2}-\d{2}"), None),
                          format="%Y-%m-%d", errors="coerce")


def dtc_datetime(dtc: pd.Series) -> pd.Series:
    """Datetime64 of complete ISO values (time used when present, else midnight); NaT otherwise."""
    s = dtc.astype("object").where(dtc.notna(), "").astype(str)
    date_part = dtc_date(s)
    has_time = s.str.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
    hhmm = s.str.slice(11, 16).where(has_time, "00:00")
    out = pd.to_datetime(date_part.dt.strftime("%Y-%m-%d") + " " + hhmm, format="%Y-%m-%d %H:%M", errors="coerce")
    return out.where(date_part.notna())


def is_complete_date(dtc: pd.Series) -> pd.Series:
    """True where an ISO ``--DTC`` value holds a complete calendar date (YYYY-MM-DD)."""
    return dtc_date(dtc).notna()


def iso_from_timestamp(ts: pd.Series) -> pd.Series:
    """ISO 8601 date text (YYYY-MM-DD) from datetime64 values; ``""`` for NaT."""
    return ts.dt.strftime("%Y-%m-%d").astype("object").where(ts.notna(), "")


def min_dtc(dtc: pd.Series, by: pd.Series) -> pd.Series:
    """Per group, the earliest complete ISO value (text, keeping its time). Index = group keys."""
    key = dtc_datetime(dtc)
    frame = pd.DataFrame({"by": by.to_numpy(), "dtc": dtc.to_numpy(), "key": key.to_numpy()}).dropna(subset=["key"])
    frame = frame.sort_values(["by", "key", "dtc"], kind="mergesort")
    return frame.drop_duplicates("by", keep="first").set_index("by")["dtc"]


def max_dtc(dtc: pd.Series, by: pd.Series) -> pd.Series:
    """Per group, the latest complete ISO value (text, keeping its time). Index = group keys."""
    key = dtc_datetime(dtc)
    frame = pd.DataFrame({"by": by.to_numpy(), "dtc": dtc.to_numpy(), "key": key.to_numpy()}).dropna(subset=["key"])
    frame = frame.sort_values(["by", "key", "dtc"], kind="mergesort")
    return frame.drop_duplicates("by", keep="last").set_index("by")["dtc"]
