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
