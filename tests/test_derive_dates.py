"""ISO 8601 conversion of CDASH dates (SDTMIG 3.4 4.4.2): hand-computed cases and properties."""

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from pipeline.derive.dates import (MONTHS, cdash_to_iso, dtc_date, is_complete_date, max_dtc, min_dtc,
                                   parse_cdash_date)
from pipeline.errors import DataError

MON = {v: k for k, v in MONTHS.items()}


@pytest.mark.parametrize("raw, iso", [
    ("05-MAR-2024", "2024-03-05"),
    ("UN-MAR-2024", "2024-03"),
    ("UNK-MAR-2024", "2024-03"),
    ("UN-UNK-2024", "2024"),
    ("UNK-UNK-2024", "2024"),
    ("29-FEB-2024", "2024-02-29"),   # leap year
    ("29-feb-2024", "2024-02-29"),   # case-insensitive month
    (" 01-JAN-2025 ", "2025-01-01"),
])
def test_valid_dates_convert(raw, iso):
    assert cdash_to_iso(pd.Series([raw])).tolist() == [iso]


@pytest.mark.parametrize("raw", ["31-FEB-2024", "29-FEB-2023", "45-JAN-2024", "01-ABC-2024", "12-UNK-2024",
                                 "2024-03-05", "5-MAR-2024", "00-JAN-2024", "31-APR-2024", "01-JAN-0000"])
def test_impossible_dates_never_pass_silently(raw):
    assert not parse_cdash_date(pd.Series([raw]))["valid"].iloc[0]
    with pytest.raises(DataError, match="impossible"):
        cdash_to_iso(pd.Series([raw]))


def test_missing_is_empty_not_error():
    out = cdash_to_iso(pd.Series([None, "", float("nan")], dtype="object"))
    assert out.tolist() == ["", "", ""]


def test_time_kept_only_on_complete_dates():
    d = pd.Series(["05-MAR-2024", "UN-MAR-2024", "05-MAR-2024", "05-MAR-2024"])
    t = pd.Series(["08:05", "08:05", None, "23:59"])
    assert cdash_to_iso(d, t).tolist() == ["2024-03-05T08:05", "2024-03", "2024-03-05", "2024-03-05T23:59"]


@pytest.mark.parametrize("bad_time", ["24:00", "12:60", "7:30", "noon"])
def test_bad_times_raise(bad_time):
    with pytest.raises(DataError):
        cdash_to_iso(pd.Series(["05-MAR-2024"]), pd.Series([bad_time]))


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_every_real_date_round_trips(d):
    raw = f"{d.day:02d}-{MON[f'{d.month:02d}']}-{d.year:04d}"
    assert cdash_to_iso(pd.Series([raw])).iloc[0] == d.isoformat()


@given(st.integers(1900, 2100), st.integers(1, 12), st.integers(29, 40))
def test_days_past_month_end_rejected(y, m, day):
    last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
    raw = f"{day:02d}-{MON[f'{m:02d}']}-{y}"
    assert parse_cdash_date(pd.Series([raw]))["valid"].iloc[0] == (day <= last)


def test_dtc_date_and_completeness():
    s = pd.Series(["2024-03-05T10:00", "2024-03", "", "2024"])
    assert is_complete_date(s).tolist() == [True, False, False, False]
    assert dtc_date(s).iloc[0] == pd.Timestamp("2024-03-05")


def test_min_max_dtc_by_group_keep_time_and_skip_partials():
    dtc = pd.Series(["2024-03-06T09:00", "2024-03-05T14:00", "2024-03", "2024-04-01"])
    by = pd.Series(["A", "A", "A", "B"])
    assert min_dtc(dtc, by).to_dict() == {"A": "2024-03-05T14:00", "B": "2024-04-01"}
    assert max_dtc(dtc, by).to_dict() == {"A": "2024-03-06T09:00", "B": "2024-04-01"}


from hypothesis import settings  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["05-MAR-2024", "UN-MAR-2024", "UN-UNK-2024", "31-FEB-2024", "29-FEB-2023",
                                           "29-FEB-2024", " 01-jan-2020 ", "05-UNK-2024", "", "1899"]),
                          st.text(max_size=11), st.none(), st.just(float("nan"))), max_size=20))
def test_complete_cdash_dates_equals_parse_cdash_date(values):
    """The (iso, complete) arrays equal parse_cdash_date's columns of the same values."""
    from pipeline.derive.dates import complete_cdash_dates
    s = pd.Series(values, dtype=object)
    iso, complete = complete_cdash_dates(s)
    parsed = parse_cdash_date(s)
    assert iso.dtype == object and complete.dtype == bool
    assert iso.tolist() == parsed["iso"].tolist() and complete.tolist() == parsed["complete"].tolist()
