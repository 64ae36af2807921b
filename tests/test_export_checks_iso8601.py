"""ISO 8601 check of the output checks (issue 14): the memoised per-text rule
(:func:`checks._iso8601_text_ok`) agrees with the pandas implementation it replaced
(:func:`checks._iso8601_valid_pandas`, still used for non-ASCII text), and both give the
hand-computed answers at the calendar boundaries."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.export import checks

# (text, valid as a datetime, valid as a date): leap years by the Gregorian rule (divisible by 4,
# centuries only when divisible by 400; pandas' calendar is proleptic, so year 0000 is leap)
BOUNDARIES = [
    ("2024-02-29", True, True), ("2023-02-29", False, False), ("1900-02-29", False, False),
    ("2000-02-29", True, True), ("0000-02-29", True, True), ("2100-02-29", False, False),
    ("2023-02-28", True, True), ("2024-04-30", True, True), ("2024-04-31", False, False),
    ("2024-01-31", True, True), ("2024-01-32", False, False), ("2024-01-00", False, False),
    ("2024-00", False, False), ("2024-12", True, True), ("2024-13", False, False), ("2024", True, True),
    ("2024-05-01T00:00:00", True, False), ("2024-05-01T23:59:59", True, False),
    ("2024-05-01T24", False, False), ("2024-05-01T23:60", False, False), ("2024-05-01T23:59:60", False, False),
    ("2024-05-01T12:30:15.250", True, False), ("", True, True),
    ("24-05-01", False, False), ("2024-5-01", False, False), ("2024/05/01", False, False),
    ("2024-05-01T", False, False), ("2024---01", False, False), (" 2024", False, False),
]


@pytest.mark.parametrize("text,as_datetime,as_date", BOUNDARIES)
def test_hand_computed_boundaries(text, as_datetime, as_date):
    for with_time, expected in ((True, as_datetime), (False, as_date)):
        assert checks._iso8601_text_ok(text, with_time) is expected
        assert checks._iso8601_valid_pandas(pd.Series([text], dtype=object), with_time).tolist() == [expected]
        assert checks.iso8601_valid(pd.Series([text], dtype=object), with_time).tolist() == [expected]


_two = st.integers(0, 99).map(lambda n: f"{n:02d}")
_year = st.one_of(st.sampled_from(["0000", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "9999"]),
                  st.integers(0, 9999).map(lambda n: f"{n:04d}"))


@st.composite
def _dtc(draw):
    """Text shaped like a (possibly broken) right-truncated ISO 8601 value."""
    parts = [draw(_year), "-" + draw(_two), "-" + draw(_two), "T" + draw(_two), ":" + draw(_two), ":" + draw(_two),
             draw(st.sampled_from(["", ".5", ".123"]))]
    text = "".join(parts[:draw(st.integers(1, len(parts)))])
    damage = draw(st.sampled_from(["", "cut", "space", "newline", "slash"]))
    return {"": text, "cut": text[:-1], "space": " " + text, "newline": text + "\n",
            "slash": text.replace("-", "/")}[damage]


@settings(max_examples=400, deadline=None)
@given(st.lists(_dtc(), min_size=1, max_size=20), st.booleans())
def test_memoised_rule_agrees_with_the_pandas_implementation(texts, with_time):
    expected = checks._iso8601_valid_pandas(pd.Series(texts, dtype=object), with_time).tolist()
    assert [checks._iso8601_text_ok(t, with_time) for t in texts] == expected
    assert checks.iso8601_valid(pd.Series(texts, dtype=object), with_time).tolist() == expected


def test_non_ascii_text_goes_through_pandas():
    texts = ["\u0662\u0660\u0662\u0664", "2024-02-30\u00e9", "2024-02-29"]  # Arabic-Indic digits match \d
    got = checks.iso8601_valid(pd.Series(texts, dtype=object)).tolist()
    assert got == checks._iso8601_valid_pandas(pd.Series(texts, dtype=object)).tolist()
    assert got[1] is False and got[2] is True
