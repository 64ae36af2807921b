"""Study day (SDTMIG 3.4 4.4.4): no day 0, partial dates give no --DY."""

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from pipeline.derive.studyday import protocol_day_to_study_day, study_day

REF = "2024-03-05T10:30"


@pytest.mark.parametrize("dtc, expected", [
    ("2024-03-05", 1),            # infusion day is day 1
    ("2024-03-05T08:00", 1),      # time ignored (date parts only)
    ("2024-03-06", 2),
    ("2024-03-04", -1),           # the day before is -1: there is no day 0
    ("2024-02-05", -29),          # across February of a leap year (29 days)
    ("2025-03-05", 366),          # one leap year later
])
def test_study_day_edges(dtc, expected):
    assert study_day(pd.Series([dtc]), pd.Series([REF])).iloc[0] == expected


@pytest.mark.parametrize("dtc, ref", [("2024-03", REF), ("2024", REF), ("", REF), ("2024-03-06", "2024-03"), ("2024-03-06", "")])
def test_study_day_missing_when_partial(dtc, ref):
    assert pd.isna(study_day(pd.Series([dtc]), pd.Series([ref])).iloc[0])


@given(st.dates(dt.date(2000, 1, 1), dt.date(2040, 1, 1)), st.dates(dt.date(2000, 1, 1), dt.date(2040, 1, 1)))
def test_never_zero_and_sign_follows_order(d, r):
    dy = study_day(pd.Series([d.isoformat()]), pd.Series([r.isoformat()])).iloc[0]
    assert dy != 0
    assert (dy > 0) == (d >= r)
    assert dy == ((d - r).days + 1 if d >= r else (d - r).days)


def test_protocol_day_zero_is_study_day_one():
    assert protocol_day_to_study_day(pd.Series([-5, -1, 0, 21, 28])).tolist() == [-5, -1, 1, 22, 29]


def _study_day_by_datetimes(dtc: pd.Series, rfstdtc: pd.Series) -> pd.Series:
    """The study day as computed before the day numbers: the difference of two datetime Series."""
    from pipeline.derive.dates import dtc_date
    import numpy as np
    d = dtc_date(dtc)
    r = dtc_date(pd.Series(rfstdtc.to_numpy(), index=dtc.index))
    delta = (d - r).dt.days.astype("float64")
    return pd.Series(np.where(delta >= 0, delta + 1, delta), index=dtc.index, dtype="float64")


_DTC = st.one_of(
    st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)).map(dt.date.isoformat),
    st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2040, 1, 1)).map(lambda x: x.strftime("%Y-%m-%dT%H:%M")),
    st.sampled_from(["", "2024", "2024-03", "2023-02-29", "2024-13-01", "2024-02-30", "garbage", None, float("nan")]))


@given(st.lists(st.tuples(_DTC, _DTC), max_size=30), st.integers(0, 5))
def test_study_day_equals_datetime_difference(pairs, shift):
    """study_day on day numbers equals the datetime-Series difference it replaced (random
    complete, partial, invalid and missing values; an index that is not 0..n-1)."""
    dtc = pd.Series([p[0] for p in pairs], index=range(shift, shift + len(pairs)), dtype=object)
    ref = pd.Series([p[1] for p in pairs], dtype=object)
    pd.testing.assert_series_equal(study_day(dtc, ref), _study_day_by_datetimes(dtc, ref))
