"""Small helpers of the simulator: day numbers, CDASH date text, number text, data tables.

Dates are carried as integer day numbers (days since 1970-01-01) and turned into CDASH
``DD-MMM-YYYY`` text (upper-case English month) only when a form is assembled.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).with_name("data")
MONTHS = np.array(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
_EPOCH = _dt.date(1970, 1, 1)
#: marker for "no date" in day-number arrays
NODAY = np.iinfo(np.int64).min


def day_number(iso: str) -> int:
    """ISO 8601 date text -> day number."""
    return (_dt.date.fromisoformat(str(iso)) - _EPOCH).days


def _parts(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(days, dtype="datetime64[D]")
    y = d.astype("datetime64[Y]").astype(int) + 1970
    m = d.astype("datetime64[M]").astype(int) % 12 + 1
    dd = (d - d.astype("datetime64[M]")).astype(int) + 1
    return y, m, dd


def date_parts(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) arrays of day numbers."""
    return _parts(np.asarray(days, dtype=np.int64))


def cdash_date(days: np.ndarray) -> np.ndarray:
    """Day numbers -> object array of ``DD-MMM-YYYY`` (None where the day is NODAY)."""
    days = np.asarray(days, dtype=np.int64)
    out = np.full(days.shape, None, dtype=object)
    ok = days != NODAY
    if not ok.any():
        return out
    uniq, inv = np.unique(days[ok], return_inverse=True)
    y, m, d = _parts(uniq)
    text = np.array([f"{dd:02d}-{MONTHS[mm - 1]}-{yy:04d}" for yy, mm, dd in zip(y, m, d)], dtype=object)
    out[ok] = text[inv]
    return out


def partial_month(days: np.ndarray) -> np.ndarray:
    """Day numbers -> ``UN-MMM-YYYY`` (day unknown)."""
    days = np.asarray(days, dtype=np.int64)
    y, m, _ = _parts(days)
    return np.array([f"UN-{MONTHS[mm - 1]}-{yy:04d}" for yy, mm in zip(y, m)], dtype=object)


def hhmm(minutes: np.ndarray) -> np.ndarray:
    """Minutes after midnight -> ``HH:MM`` (None where negative)."""
    minutes = np.asarray(minutes, dtype=np.int64)
    out = np.full(minutes.shape, None, dtype=object)
    ok = minutes >= 0
    uniq, inv = np.unique(minutes[ok], return_inverse=True)
    text = np.array([f"{v // 60 % 24:02d}:{v % 60:02d}" for v in uniq], dtype=object)
    out[ok] = text[inv]
    return out


def _int_text(v: int, k: int) -> str:
    a = abs(v)
    t = str(a) if k == 0 else f"{a // 10**k}.{a % 10**k:0{k}d}"
    return "-" + t if v < 0 else t


def fixed(values: np.ndarray, decimals) -> np.ndarray:
    """Numbers -> text with a fixed number of decimals (scalar or per-value array); the digits
    are those of ``round(value * 10**decimals)``. Each distinct value is formatted once."""
    values = np.asarray(values, dtype=float)
    dec = np.broadcast_to(np.asarray(decimals, dtype=np.int64), values.shape)
    out = np.empty(values.shape, dtype=object)
    for k in np.unique(dec):
        k = int(k)
        sel = dec == k
        x = np.round(values[sel] * 10.0**k).astype(np.int64)
        uniq, inv = np.unique(x, return_inverse=True)
        text = np.array([_int_text(v, k) for v in uniq.tolist()], dtype=object)
        out[sel] = text[inv]
    return out


def plain_number(x: float) -> str:
    """A dose as plain decimal text: 1000000, 250000, 30, 12.5."""
    if float(x).is_integer():
        return str(int(round(float(x))))
    return np.format_float_positional(float(x), trim="-")


@lru_cache(maxsize=None)
def _table(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8")


def table(name: str) -> pd.DataFrame:
    """A simulator parameter table ``pipeline/simulate/data/<name>.csv`` (cells as str)."""
    return _table(name).copy()


def num(s: pd.Series, default: float = np.nan) -> np.ndarray:
    """Text column -> float array ('' -> default)."""
    return pd.to_numeric(s.replace("", np.nan), errors="coerce").fillna(default).to_numpy(dtype=float)
