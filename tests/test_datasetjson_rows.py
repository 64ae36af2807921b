"""The Dataset-JSON row text assembled in one join (rows_text) equals the column-by-column
reference (row_lines) and parses back to the values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.export import datasetjson

cells = st.tuples(st.text(max_size=8), st.one_of(st.just(float("nan")), st.floats(allow_nan=False, allow_infinity=False)),
                  st.integers(-10 ** 6, 10 ** 6), st.sampled_from(["", "2024-01-02", "2024-05"]))


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(cells, max_size=25))
def test_rows_text_equals_the_reference(rows):
    frame = pd.DataFrame({"S": pd.Series([r[0] for r in rows], dtype=object),
                          "D": pd.Series([r[1] for r in rows], dtype="float64"),
                          "I": pd.Series([float(r[2]) for r in rows], dtype="float64"),
                          "T": pd.Series([r[3] for r in rows], dtype=object)})
    dtypes = ["string", "double", "integer", "date"]
    text = datasetjson.rows_text(frame, dtypes)
    assert text == ",\n  ".join(datasetjson.row_lines(frame, dtypes))
    back = json.loads("[" + text + "]")
    assert [r[0] for r in back] == [r[0] for r in rows]
    assert [r[2] for r in back] == [r[2] for r in rows]
    assert [r[3] for r in back] == [r[3] or None for r in rows]
    assert [np.nan if r[1] is None else r[1] for r in back] == pytest_nan_list([r[1] for r in rows])


def pytest_nan_list(values):
    """NaN compares unequal to itself: a list where NaN is replaced by the same object."""
    return [np.nan if v != v else v for v in values]


def test_rows_text_edges():
    assert datasetjson.rows_text(pd.DataFrame({"A": pd.Series([], dtype=object)}), ["string"]) == ""
    assert datasetjson.rows_text(pd.DataFrame(index=range(2)), []) == "[],\n  []"
    one = pd.DataFrame({"A": ["x\"y"], "B": [np.nan]})
    assert datasetjson.rows_text(one, ["string", "double"]) == '["x\\"y",null]'
