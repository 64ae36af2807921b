"""The cell texts and Excel values of the listings, computed on numpy arrays
(``tables.text_values``, ``listings.number_texts``, ``excel._cell_values``), against the
per-value pandas expressions they replace (the oracles below), on hypothesis-drawn columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from pipeline.report import excel, listings, tables

_texts = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "=1", "Y", "2024-05-10"]))
_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=64),
                    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e20, 1 / 3, 1e-7]))
_mixed = st.lists(st.one_of(_texts, st.none(), st.just(np.nan), st.integers(-10**6, 10**6), _floats,
                            st.booleans()), max_size=12)


def _oracle_text(s: pd.Series) -> list:
    return s.astype("object").where(s.notna(), "").astype(str).tolist()


@settings(max_examples=150, deadline=None)
@given(_mixed)
def test_text_values_are_the_pandas_texts(values):
    s = pd.Series(values, dtype=object, index=range(10, 10 + len(values)), name="X")
    got = tables.text(s)
    assert got.tolist() == _oracle_text(s)
    assert all(type(v) is str for v in tables.text_values(s))
    assert got.index.equals(s.index) and got.name == "X"
    assert got.dtype == s.astype("object").where(s.notna(), "").astype(str).dtype


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), _texts), max_size=12))
def test_text_values_of_a_string_column(values):
    s = pd.Series(values, dtype=str)
    assert tables.text(s).tolist() == _oracle_text(s)


def test_text_values_by_hand():
    s = pd.Series(["a", None, 1.5, 2, True, pd.NA, np.nan], dtype=object)
    assert tables.text_values(s).tolist() == ["a", "", "1.5", "2", "True", "", ""]


def _oracle_number_texts(values: list) -> list:
    out = []
    for v in values:  # the oracle: one value at a time
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("")
        elif float(v) == round(float(v)):
            out.append(str(int(v)))
        else:
            out.append(np.format_float_positional(float(v), trim="-"))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_floats, st.none()), max_size=12))
def test_number_texts(values):
    s = pd.Series(values, dtype=float)
    assert listings.number_texts(s).tolist() == _oracle_number_texts(s.tolist())


def test_number_texts_by_hand():
    s = pd.Series([2.0, 2.5, np.nan, -0.0, 1e-7, 1 / 3, 1e20])
    assert listings.number_texts(s).tolist() == ["2", "2.5", "", "0", "0.0000001", "0.3333333333333333",
                                                 "100000000000000000000"]
    assert listings.number_texts(pd.Series([1, None, 3], dtype="Int64")).tolist() == ["1", "", "3"]


def _oracle_cells(s: pd.Series, numeric: bool) -> list:
    if not numeric:
        return _oracle_text(s)
    num = pd.to_numeric(s, errors="coerce")
    return [None if pd.isna(v) else (int(v) if float(v).is_integer() else float(v)) for v in num.to_numpy()]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_floats, st.none(), st.just(float("inf"))), max_size=12))
def test_excel_number_cells(values):
    s = pd.Series(values, dtype=float)
    got, lengths = excel._cell_values(s, True)
    want = _oracle_cells(s, True)
    assert got == want and [type(v) for v in got] == [type(v) for v in want]
    assert lengths.tolist() == [len(str(v)) for v in want if v is not None]


def test_excel_cells_by_hand():
    got, lengths = excel._cell_values(pd.Series([1.0, 2.5, np.nan, 3e20]), True)
    assert got == [1, 2.5, None, 300000000000000000000] and type(got[0]) is int
    assert lengths.tolist() == [1, 3, 21]
    got, lengths = excel._cell_values(pd.Series([2**60 + 1, 5], dtype="int64"), True)
    assert got == [2**60 + 1, 5]  # exact beyond 2**53
    got, _ = excel._cell_values(pd.Series([7, None], dtype="Int64"), True)
    assert got == [7, None]
    got, _ = excel._cell_values(pd.Series(["12", "x", ""], dtype=object), True)
    assert got == [12, None, None]
    got, lengths = excel._cell_values(pd.Series(["ab", None, "=x"], dtype=object), False)
    assert got == ["ab", "", "=x"] and lengths.tolist() == [2, 0, 2]
    assert excel._width("Head", lengths) == 6.0 and excel._width("A header", np.array([70])) == 60.0
