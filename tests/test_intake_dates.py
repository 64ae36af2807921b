"""Date, time and number predicates of the raw gate (pipeline.intake.checks)."""

from __future__ import annotations

import calendar
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.intake.checks import (
    MONTHS,
    cdash_date_parts,
    cdash_date_valid,
    censored_number_valid,
    definitely_before,
    number_valid,
    time_valid,
)

MAX_YEAR = 2025  # a study with data cutoff in 2024


def valid(values, partial_ok=False, max_year=MAX_YEAR) -> list[bool]:
    return cdash_date_valid(pd.Series(values, dtype="str"), partial_ok=partial_ok, max_year=max_year).tolist()


@pytest.mark.parametrize("text", [
    "01-JAN-2024", "29-FEB-2024", "31-DEC-2025", "28-FEB-2023", "29-FEB-2000", "01-JAN-1900",
    "30-APR-2024", "31-JUL-2024",
])
def test_complete_dates_accepted(text):
    assert valid([text]) == [True]
    assert valid([text], partial_ok=True) == [True]


@pytest.mark.parametrize("text,why", [
    ("31-FEB-2024", "no 31 February"),
    ("30-FEB-2024", "no 30 February"),
    ("29-FEB-2023", "2023 is not a leap year"),
    ("29-FEB-1900", "1900 is not a leap year (century rule)"),
    ("31-APR-2024", "April has 30 days"),
    ("45-JAN-2024", "day 45"),
    ("00-JAN-2024", "day 0"),
    ("01-ABC-2024", "month ABC"),
    ("01-jan-2024", "month in lower case"),
    ("01-JAN-0000", "year 0000"),
    ("31-DEC-1899", "before 1900"),
    ("01-JAN-2026", "after the data cutoff year + 1"),
    ("1-JAN-2024", "one-digit day"),
    ("01-JAN-24", "two-digit year"),
    ("2024-01-01", "ISO, not CDASH"),
    ("01 JAN 2024", "spaces for dashes"),
    ("01-JAN-2024 10:00", "date with time"),
    ("UN-MAR-2024", "partial date where a complete one is required"),
    ("UN-UNK-2024", "partial date where a complete one is required"),
])
def test_invalid_complete_dates_rejected(text, why):
    assert valid([text]) == [False], why


@pytest.mark.parametrize("text,ok", [
    ("UN-MAR-2024", True),
    ("UN-UNK-2024", True),
    ("UN-FEB-2023", True),      # any month with an unknown day
    ("05-UNK-2024", False),     # a known day with an unknown month
    ("UN-UN-2024", False),      # month must be UNK
    ("UNK-MAR-2024", False),    # day must be UN
    ("UN-ABC-2024", False),
    ("UN-UNK-UNKN", False),     # a fully unknown date is left blank
    ("UN-UNK-1899", False),
    ("UN-UNK-2026", False),
    ("un-mar-2024", False),
])
def test_partial_dates(text, ok):
    assert valid([text], partial_ok=True) == [ok]


def test_missing_is_not_valid_and_index_is_kept():
    s = pd.Series(["01-JAN-2024", None, "31-FEB-2024", "01-JAN-2024"], index=[10, 11, 12, 13], dtype="str")
    out = cdash_date_valid(s, max_year=MAX_YEAR)
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out.tolist() == [True, False, False, True]


def test_max_year_boundary():
    assert valid(["31-DEC-2025", "01-JAN-2026"], max_year=2025) == [True, False]
    assert valid(["01-JAN-2026"], max_year=None) == [True]


def test_date_parts_known_precision():
    s = pd.Series(["15-MAR-2024", "UN-MAR-2024", "UN-UNK-2024", "31-FEB-2024", None], dtype="str")
    p = cdash_date_parts(s, partial_ok=True, max_year=MAX_YEAR)
    assert p["valid"].tolist() == [True, True, True, False, False]
    assert p["year"].tolist()[:3] == [2024, 2024, 2024]
    assert p["month"].tolist()[:2] == [3, 3]
    assert np.isnan(p["month"].iloc[2])
    assert p["day"].iloc[0] == 15 and np.isnan(p["day"].iloc[1])
    assert p.iloc[3:][["year", "month", "day"]].isna().all().all()  # invalid: no parts


@pytest.mark.parametrize("a,b,before", [
    ("01-JAN-2024", "02-JAN-2024", True),
    ("02-JAN-2024", "02-JAN-2024", False),    # same day is not before
    ("03-JAN-2024", "02-JAN-2024", False),
    ("UN-FEB-2024", "01-MAR-2024", True),     # month known on both sides
    ("UN-MAR-2024", "15-MAR-2024", False),    # same month, day unknown: undecidable
    ("UN-MAR-2024", "UN-MAR-2024", False),
    ("UN-UNK-2023", "01-JAN-2024", True),
    ("UN-UNK-2024", "01-JAN-2024", False),    # same year, month unknown: undecidable
    ("31-DEC-2023", "UN-UNK-2024", True),
    ("15-MAR-2024", "UN-FEB-2024", False),
])
def test_definitely_before(a, b, before):
    pa_ = cdash_date_parts(pd.Series([a], dtype="str"), partial_ok=True)
    pb = cdash_date_parts(pd.Series([b], dtype="str"), partial_ok=True)
    assert definitely_before(pa_, pb).tolist() == [before]


@pytest.mark.parametrize("text,ok", [
    ("00:00", True), ("23:59", True), ("09:05", True), ("12:30", True),
    ("24:00", False), ("12:60", False), ("9:05", False), ("09:5", False), ("0905", False),
    ("09:05:00", False), ("", False), (" 09:05", False),
])
def test_time_valid(text, ok):
    assert time_valid(pd.Series([text], dtype="str")).tolist() == [ok]


@pytest.mark.parametrize("text,as_int,as_float,censored", [
    ("42", True, True, True), ("-3", True, True, True), ("4.5", False, True, True),
    (".5", False, True, True), ("1e10", False, True, True), ("1,5", False, False, False),
    ("<0.5", False, False, True), (">1000", False, False, True), ("<=5", False, False, False),
    ("abc", False, False, False), ("4.5 g/L", False, False, False), ("nan", False, False, False),
])
def test_numbers(text, as_int, as_float, censored):
    s = pd.Series([text], dtype="str")
    assert number_valid(s, integer=True).tolist() == [as_int]
    assert number_valid(s).tolist() == [as_float]
    assert censored_number_valid(s).tolist() == [censored]


# ---- properties ------------------------------------------------------------------------
def cdash(d: dt.date) -> str:
    return f"{d.day:02d}-{MONTHS[d.month - 1]}-{d.year:04d}"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(MAX_YEAR, 12, 31)), min_size=1, max_size=40))
def test_any_real_date_is_accepted(dates):
    texts = [cdash(d) for d in dates]
    assert all(valid(texts))
    assert all(valid(texts, partial_ok=True))
    # and the partial forms of the same dates
    assert all(valid([f"UN-{t[3:]}" for t in texts], partial_ok=True))
    assert all(valid([f"UN-UNK-{t[7:]}" for t in texts], partial_ok=True))


@settings(max_examples=60, deadline=None)
@given(st.integers(1900, MAX_YEAR), st.integers(1, 12), st.integers(1, 60))
def test_day_beyond_month_end_is_rejected(year, month, extra):
    last = calendar.monthrange(year, month)[1]
    day = last + extra
    text = f"{day:02d}-{MONTHS[month - 1]}-{year}" if day < 100 else f"99-{MONTHS[month - 1]}-{year}"
    assert valid([text], partial_ok=True) == [False]


@settings(max_examples=80, deadline=None)
@given(st.integers(1900, MAX_YEAR), st.integers(1, 12), st.integers(0, 99))
def test_validity_agrees_with_the_calendar(year, month, day):
    text = f"{day:02d}-{MONTHS[month - 1]}-{year}"
    try:
        dt.date(year, month, day)
        real = True
    except ValueError:
        real = False
    assert valid([text]) == [real]
