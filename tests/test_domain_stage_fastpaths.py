"""The faster forms of the domain stage's shared helpers (issue 14) against the forms they
replaced, kept here as the reference: same values, dtypes, index and name on varied inputs
(missing values, numbers, empty frames)."""

import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from pipeline.derive.identifiers import usubjid


def _usubjid_before(frame: pd.DataFrame) -> pd.Series:
    """:func:`pipeline.derive.identifiers.usubjid` as it was (pandas ``str`` addition)."""
    return (frame["STUDYID"].astype(str) + "-" + frame["SITEID"].astype(str) + "-"
            + frame["SUBJID"].astype(str)).astype("object")


_PART = st.one_of(st.sampled_from(["01", "0007", " 2", "S1", ""]), st.none(), st.just(np.nan),
                  st.integers(0, 12), st.floats(0, 3, allow_nan=False))


def test_usubjid_by_hand():
    f = pd.DataFrame({"STUDYID": ["S1", "S1", "S1"], "SITEID": ["01", None, "02"], "SUBJID": ["0007", "8", np.nan]},
                     index=[4, 2, 9])
    out = usubjid(f)
    assert out.iloc[0] == "S1-01-0007" and out.iloc[1:].isna().all()
    assert list(out.index) == [4, 2, 9] and out.dtype == object and out.name is None
    assert usubjid(f.iloc[:0]).dtype == object and len(usubjid(f.iloc[:0])) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_PART, _PART, _PART), max_size=12), st.sampled_from(["object", "str", "mixed"]))
def test_usubjid_equals_the_str_addition(rows, kind):
    f = pd.DataFrame(rows, columns=["STUDYID", "SITEID", "SUBJID"], dtype=object)
    f.index = f.index * 3 + 1
    if kind == "str":
        f = f.map(lambda v: v if isinstance(v, str) else None).astype("str")
    elif kind == "mixed":
        f["STUDYID"] = f["STUDYID"].map(lambda v: v if isinstance(v, str) else None).astype("str")
    pd.testing.assert_series_equal(usubjid(f), _usubjid_before(f))
