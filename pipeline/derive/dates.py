"""ISO 8601 dates from CDASH-collected dates and times (SDTMIG 3.4 section 4.4.1-4.4.3).

CDASH collects dates as ``DD-MMM-YYYY`` with ``UN`` (or ``UNK``) for an unknown day and
``UNK`` (or ``UN``) for an unknown month. SDTM keeps what is known and drops the rest
(right truncation, SDTMIG 4.4.2): ``UN-MAR-2024`` -> ``2024-03``; ``UN-UNK-2024`` -> ``2024``.
A time is appended as ``THH:MM`` only to a complete date. An impossible date is never
converted silently: :func:`cdash_to_iso` raises :class:`DataError` naming the values.

Speed: a study repeats the same few thousand date texts in every form and domain, and these
functions are called hundreds of times per build on small columns. Each one therefore works on
the column's *distinct* values (:func:`_per_distinct`): one small rule function per text
(:func:`_cdash_parts`, :func:`_time_text`, :func:`_iso_date`, :func:`_iso_datetime`), remembered
across calls, then spread back onto the rows with one numpy ``take``. The loop is over distinct
texts, never over records.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from pipeline.derive.text import STR
from pipeline.errors import DataError

MONTHS = {m: f"{i:02d}" for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_UNKNOWN = {"UN", "UNK"}
_DATE_RE = re.compile(r"^(?P<d>\d{2}|UNK?|UN)-(?P<m>[A-Z]{3}|UNK?|UN)-(?P<y>\d{4})$")
_TIME_RE = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<mi>[0-5]\d)$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_ISO_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_YEARS = (1900, 2100)  # the years a collected date may have
#: distinct texts remembered per rule function (a 2,000-subject study has ~10^5 distinct datetimes)
_MEMO = 1 << 17
_NAT = np.datetime64("NaT", "us")


def _days_in_month(year: int, month: int) -> int:
    """Days of a month of the proleptic Gregorian calendar (29-FEB only in leap years)."""
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _text(value) -> str:
    """A cell as text: ``""`` for a missing value (None, NaN, NA), else ``str(value)``."""
    return "" if value is None or value is pd.NA or value != value else str(value)


def _per_distinct(values: pd.Series, rule, empty) -> tuple[np.ndarray, list]:
    """``(codes, table)``: ``table[codes]`` is ``rule`` of each cell's text, ``rule`` computed once
    per distinct value; a missing cell has code -1, the last entry of ``table`` (``empty``)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    table = [rule(u if type(u) is str else _text(u)) for u in uniques]  # distinct texts, not records
    table.append(empty)
    return codes, table


@lru_cache(maxsize=_MEMO)
def _cdash_parts(raw: str) -> tuple[str, bool, bool, bool]:
    """(iso, missing, valid, complete) of one CDASH date text (rules of :func:`parse_cdash_date`)."""
    s = raw.strip().upper()
    if s == "":
        return "", True, True, False
    m = _DATE_RE.match(s) if s.isascii() else None  # non-ASCII digits are no date
    if m is None:
        return "", False, False, False
    d, mon, y = m.group("d"), m.group("m"), m.group("y")
    day_unknown, month_unknown = d in _UNKNOWN, mon in _UNKNOWN
    month_num = MONTHS.get(mon)
    # a known day under an unknown month is not a date; an unknown month must be UN/UNK
    if (month_num is None and not month_unknown) or (month_unknown and not day_unknown):
        return "", False, False, False
    if not _YEARS[0] <= int(y) <= _YEARS[1]:
        return "", False, False, False
    if month_unknown:
        return y, False, True, False
    if day_unknown:
        return f"{y}-{month_num}", False, True, False
    if not 1 <= int(d) <= _days_in_month(int(y), int(month_num)):
        return "", False, False, False
    return f"{y}-{month_num}-{d}", False, True, True


def parse_cdash_date(date: pd.Series) -> pd.DataFrame:
    """Split CDASH dates into ISO text and validity.

    Returns a frame with columns ``iso`` (ISO 8601 text, ``""`` when missing or invalid),
    ``missing`` (bool), ``valid`` (bool; missing counts as valid) and ``complete`` (bool).
    Rules: day unknown only with a known or unknown month; a known day with an unknown
    month is invalid; the day must exist in that month and year (29-FEB only in leap years);
    the year is 1900-2100.
    """
    codes, table = _per_distinct(date, _cdash_parts, ("", True, True, False))
    iso, missing, valid, complete = (np.array(col, dtype=dtype)[codes] for col, dtype in
                                     zip(zip(*table), (object, bool, bool, bool)))
    return pd.DataFrame({"iso": pd.Series(iso, index=date.index, dtype=object), "missing": missing,
                         "valid": valid, "complete": complete}, index=date.index)


def complete_cdash_dates(date: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(iso, complete)`` of :func:`parse_cdash_date` as numpy arrays (object, bool), without
    its frame: for callers that keep only the complete dates (the last dated record of a
    subject reads ~30 date columns a study)."""
    codes, table = _per_distinct(date, _cdash_parts, ("", True, True, False))
    iso = np.array([t[0] for t in table], dtype=object)[codes]
    complete = np.array([t[3] for t in table], dtype=bool)[codes]
    return iso, complete


@lru_cache(maxsize=_MEMO)
def _time_text(raw: str) -> tuple[str, bool, bool]:
    """(iso, missing, valid) of one ``HH:MM`` text (rules of :func:`parse_time`)."""
    t = raw.strip()
    if t == "":
        return "", True, True
    ok = _TIME_RE.match(t) is not None
    return (t if ok else ""), False, ok


def parse_time(time: pd.Series) -> pd.DataFrame:
    """Validate ``HH:MM`` times (00:00-23:59). Columns ``iso`` (``HH:MM`` or ``""``), ``missing``, ``valid``."""
    codes, table = _per_distinct(time, _time_text, ("", True, True))
    iso, missing, valid = (np.array(col, dtype=dtype)[codes] for col, dtype in
                           zip(zip(*table), (object, bool, bool)))
    return pd.DataFrame({"iso": pd.Series(iso, index=time.index, dtype=STR), "missing": missing,
                         "valid": valid}, index=time.index)


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
    return iso.astype(object)


def _pandas_datetime(text: str, with_time: bool) -> np.datetime64:
    """pandas' own reading of a non-ASCII text (its parser accepts non-ASCII digits in some
    fields only): what these functions gave before they worked per distinct value."""
    day = pd.to_datetime(pd.Series([text[:10]]), format="%Y-%m-%d", errors="coerce")
    if with_time and pd.notna(day.iloc[0]):
        hhmm = text[11:16] if _ISO_DATETIME_RE.match(text) else "00:00"
        day = pd.to_datetime(day.dt.strftime("%Y-%m-%d") + " " + hhmm, format="%Y-%m-%d %H:%M", errors="coerce")
    return day.to_numpy(dtype="datetime64[us]")[0]


@lru_cache(maxsize=_MEMO)
def _iso_date(text: str) -> np.datetime64:
    """The calendar date of an ISO text starting ``YYYY-MM-DD`` (NaT when not a real date)."""
    if _ISO_DATE_RE.match(text) is None:
        return _NAT
    if not text.isascii():
        return _pandas_datetime(text, with_time=False)
    y, m, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if not (1 <= m <= 12 and 1 <= d <= _days_in_month(y, m)):
        return _NAT
    return np.datetime64(f"{y:04d}-{m:02d}-{d:02d}", "us")


@lru_cache(maxsize=_MEMO)
def _iso_datetime(text: str) -> np.datetime64:
    """Date and ``HH:MM`` of an ISO text (midnight without a time; NaT when the date or the
    time is not real: hours 00-23, minutes 00-59)."""
    if not text.isascii():
        return _pandas_datetime(text, with_time=True)
    day = _iso_date(text)
    if np.isnat(day) or _ISO_DATETIME_RE.match(text) is None:
        return day
    hh, mm = int(text[11:13]), int(text[14:16])
    if hh > 23 or mm > 59:
        return _NAT
    return day + np.timedelta64(hh * 60 + mm, "m")


def _datetimes(dtc: pd.Series, rule) -> pd.Series:
    """``rule`` per distinct text of ``dtc`` as a datetime64 Series aligned to ``dtc`` (same index
    and name). The unit is microseconds, or seconds when no value is a date (as pandas'
    ``to_datetime`` gives for text)."""
    codes, table = _per_distinct(dtc, rule, _NAT)
    values = np.array(table, dtype="datetime64[us]")[codes]
    if np.isnat(values).all():
        values = values.astype("datetime64[s]")
    return pd.Series(values, index=dtc.index, name=dtc.name)


def dtc_date(dtc: pd.Series) -> pd.Series:
    """Datetime64 of the date part of complete ISO ``--DTC`` values; NaT for partial or missing."""
    return _datetimes(dtc, _iso_date)


def dtc_day_numbers(dtc: pd.Series) -> np.ndarray:
    """The date part of complete ISO ``--DTC`` values as day numbers (days since 1970-01-01,
    float64; NaN for partial or missing): :func:`dtc_date` without a datetime Series, for
    arithmetic in days (study days). Each distinct text is read once."""
    codes, table = _per_distinct(dtc, _iso_date, _NAT)
    days = np.array(table, dtype="datetime64[D]")  # midnight values: exact in days
    return np.where(np.isnat(days), np.nan, days.astype(np.int64))[codes]


def dtc_datetime(dtc: pd.Series) -> pd.Series:
    """Datetime64 of complete ISO values (time used when present, else midnight); NaT otherwise."""
    return _datetimes(dtc, _iso_datetime)


@lru_cache(maxsize=_MEMO)
def _iso_timing(text: str) -> tuple[np.datetime64, np.datetime64, bool]:
    """(:func:`_iso_date`, :func:`_iso_datetime`, whether a time is given: a ``T`` in the text)
    of one ISO text."""
    return _iso_date(text), _iso_datetime(text), "T" in text


def dtc_timing(dtc: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(date, datetime, has_time)`` of ISO ``--DTC`` values as numpy arrays: the values of
    :func:`dtc_date` and :func:`dtc_datetime` (datetime64[us]; NaT for partial or missing) and
    whether the text holds a time (``T``; False when missing), from one pass over the distinct
    texts (EPOCH needs all three of every record)."""
    codes, table = _per_distinct(dtc, _iso_timing, (_NAT, _NAT, False))
    dates, datetimes, has_time = zip(*table)
    return (np.array(dates, dtype="datetime64[us]")[codes], np.array(datetimes, dtype="datetime64[us]")[codes],
            np.array(has_time, dtype=bool)[codes])


def is_complete_date(dtc: pd.Series) -> pd.Series:
    """True where an ISO ``--DTC`` value holds a complete calendar date (YYYY-MM-DD)."""
    return dtc_date(dtc).notna()


def iso_from_timestamp(ts: pd.Series) -> pd.Series:
    """ISO 8601 date text (YYYY-MM-DD) from datetime64 values; ``""`` for NaT."""
    return ts.dt.strftime("%Y-%m-%d").astype(object).where(ts.notna(), "")


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
