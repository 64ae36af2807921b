"""intake.readers._normalise builds a form's frame in one construction (normalised_frame, issue 14).

The oracle is the previous implementation, kept verbatim below: for any header (spec columns in
any order, some absent, extra columns, an unnamed empty column) and any cells (blank, padded,
missing; blank records anywhere), the new code gives the same frame (values, dtypes, column order,
index) and the same notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.intake import readers
from pipeline.intake.readers import (MANDATORY_FORMS, UnreadableFile, _spec_layout, file_finding,
                                     normalised_frame, strip_texts)
from pipeline.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"


def old_normalise(header, df, form, file_name, spec, studyid):
    """The implementation before issue 14's one-construction frame (verbatim)."""
    names = [h.strip() for h in header]
    data_cols = [i for i, n in enumerate(names) if n]
    for i, n in enumerate(names):
        if not n:
            s = df[i].astype("str").str.strip()
            if (s.notna() & (s != "")).any():
                raise UnreadableFile("file.header",
                                     f"{file_name}: header column {i + 1} has no name but holds data; "
                                     "every column needs its name in the first row")
    texts = strip_texts([df[i] for i in data_cols])
    frame = pd.DataFrame({names[i]: t for i, t in zip(data_cols, texts)}, index=df.index)
    columns, required = _spec_layout(form, spec)
    missing_req = [c for c in required if c not in frame.columns]
    if missing_req:
        raise UnreadableFile("file.missing_column",
                             f"{file_name}: required column{'s' if len(missing_req) > 1 else ''} "
                             f"{', '.join(missing_req)} missing from the header (see specs/raw/columns.csv)")
    notes = []
    absent = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in set(columns)]
    if absent:
        notes.append(file_finding(studyid, file_name, "file.optional_column_absent", "warning",
                                  f"{file_name}: optional column{'s' if len(absent) > 1 else ''} "
                                  f"{', '.join(absent)} not delivered (read as empty)"))
    if extra:
        notes.append(file_finding(studyid, file_name, "file.extra_column", "warning",
                                  f"{file_name}: column{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
                                  f"not in specs/raw/columns.csv for form {form} (kept, not checked)"))
    for c in absent:
        frame[c] = pd.Series(np.nan, index=frame.index, dtype="str")
    frame = frame[list(columns) + extra]
    blank = frame.isna().all(axis=1) if len(frame.columns) else pd.Series(True, index=frame.index)
    frame["_FILE"] = file_name
    frame["_ROW"] = df["_ROW"].to_numpy()
    frame = frame[~blank.to_numpy()].reset_index(drop=True)
    frame["_FILE"] = frame["_FILE"].astype("str")
    frame["_ROW"] = frame["_ROW"].astype("int64")
    if frame.empty:
        if form in MANDATORY_FORMS:
            notes.append(file_finding(studyid, file_name, "file.no_records", "error",
                                      f"{file_name} has a header but no records: a study needs its {form} records"))
        else:
            notes.append(file_finding(studyid, file_name, "file.no_records", "warning",
                                      f"{file_name} has a header but no records: read as none (no {form} records)"))
    return frame, notes


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


CELLS = st.sampled_from(["", " ", "  ", "Y", " Y ", "2024-01-0 ", "a,b", "NA", "0"])


@st.composite
def delivered_form(draw, spec):
    form = draw(st.sampled_from(["ae", "dm", "lb", "cm"]))
    columns, required = _spec_layout(form, spec)
    optional = [c for c in columns if c not in required]
    chosen = list(required) + draw(st.lists(st.sampled_from(optional), unique=True)) if optional else list(required)
    extra = draw(st.lists(st.sampled_from(["XCOMMENT", "ZZNOTE", "SITE_LOCAL"]), unique=True, max_size=2))
    header = draw(st.permutations(chosen + extra))
    header = [f" {h}" if draw(st.booleans()) else h for h in header]  # padded names are stripped
    unnamed = draw(st.booleans())
    if unnamed:
        header = header + [" "]
    n = draw(st.integers(0, 7))
    cols = {i: draw(st.lists(CELLS, min_size=n, max_size=n)) for i in range(len(header))}
    if unnamed:
        cols[len(header) - 1] = [""] * n
    blank_rows = draw(st.lists(st.booleans(), min_size=n, max_size=n))  # whole blank records anywhere
    cols = {i: [" " if b else v for v, b in zip(values, blank_rows)] for i, values in cols.items()}
    df = pd.DataFrame(cols, index=pd.RangeIndex(n), dtype=object).astype("str") if cols else pd.DataFrame(index=range(n))
    df["_ROW"] = np.arange(2, n + 2, dtype="int64")
    return form, header, df


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_one_construction_gives_the_old_frame_and_notes(spec, data):
    form, header, df = data.draw(delivered_form(spec))
    old, old_notes = old_normalise(header, df.copy(), form, f"{form}.csv", spec, "S1")
    new, new_notes = readers._normalise(header, df.copy(), form, f"{form}.csv", spec, "S1")
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert list(new.dtypes.astype(str)) == list(old.dtypes.astype(str))
    assert len(new_notes) == len(old_notes)
    for a, b in zip(new_notes, old_notes):
        pd.testing.assert_frame_equal(a, b)


def test_blank_records_are_dropped_and_rows_keep_their_file_numbers():
    texts = dict(zip(["A", "B"], strip_texts([pd.Series(["x", " ", None, "  y"]), pd.Series(["", "", None, "z"])])))
    f = normalised_frame(texts, ["B", "C", "A"], "f.csv", np.array([2, 3, 5, 6]))
    assert list(f.columns) == ["B", "C", "A", "_FILE", "_ROW"]
    assert f["A"].tolist() == ["x", "y"]
    assert f["B"].isna().tolist() == [True, False] and f["B"].iloc[1] == "z"
    assert f["C"].isna().all() and str(f["C"].dtype) == "str"
    assert f["_FILE"].tolist() == ["f.csv", "f.csv"] and str(f["_FILE"].dtype) == "str"
    assert f["_ROW"].tolist() == [2, 6] and f["_ROW"].dtype == "int64"
    assert isinstance(f.index, pd.RangeIndex) and list(f.index) == [0, 1]


def test_a_file_without_delivered_columns_has_no_records():
    f = normalised_frame({}, ["A"], "f.csv", np.array([2, 3]))
    assert f.shape == (0, 3) and list(f.columns) == ["A", "_FILE", "_ROW"]
