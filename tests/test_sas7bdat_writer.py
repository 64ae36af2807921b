"""Tests of pipeline.simulate.sas7bdat: files written here are read back with two
independent readers, pyreadstat (ReadStat, C) and pandas.read_sas (pandas' own parser),
and compared value by value, plus hand-computed header/page-layout numbers."""

from __future__ import annotations

import struct
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.io.sas.sas7bdat import SAS7BDATReader

from pipeline.errors import ConfigError, DataError
from pipeline.simulate.sas7bdat import sas_datetime_seconds, write_sas7bdat

HEADER = 8192


def read_pyreadstat(path: Path):
    return pyreadstat.read_sas7bdat(str(path))


def read_pandas(path: Path) -> pd.DataFrame:
    return pd.read_sas(path, format="sas7bdat", encoding="infer")


def pandas_columns(path: Path) -> list[tuple[str, str, bytes, int]]:
    """(name, label, ctype, width) per column as the pandas reader parses them."""
    reader = SAS7BDATReader(path, encoding="infer")
    try:
        return [(c.name, c.label, c.ctype, c.length) for c in reader.columns]
    finally:
        reader.close()


def header_ints(path: Path) -> tuple[int, int, int]:
    """(header length, page size, page count) from the u64 header."""
    raw = path.read_bytes()[:HEADER]
    return struct.unpack_from("<iiq", raw, 200)


def mixed_frame() -> pd.DataFrame:
    df = pd.DataFrame({
        "STUDYID": ["CD7-SAA", "CD7-SAA", None, ""],
        "AGE": [34.0, np.nan, 1.5, -2.25],
        "AETERM": ["发热 fever", "  leading blanks kept", "x" * 200, np.nan],
        "visitnum": pd.array([1, None, 3, 4], dtype="Int64"),
    })
    df.attrs["column_labels"] = {"STUDYID": "Study Identifier", "AGE": "年龄 Age",
                                 "AETERM": "Reported Term for the Adverse Event"}
    return df


# ---------------------------------------------------------------------------------------
# Round trips through both readers
# ---------------------------------------------------------------------------------------

def test_mixed_frame_round_trips_through_pyreadstat(tmp_path):
    path = tmp_path / "ae.sas7bdat"
    write_sas7bdat(mixed_frame(), path, table_name="ae", label="Adverse Events 不良事件",
                   created=datetime(2024, 5, 6, 7, 8, 9))
    df, meta = read_pyreadstat(path)

    assert meta.column_names == ["STUDYID", "AGE", "AETERM", "VISITNUM"]
    assert meta.column_labels == ["Study Identifier", "年龄 Age", "Reported Term for the Adverse Event", None]
    assert meta.readstat_variable_types == {"STUDYID": "string", "AGE": "double",
                                            "AETERM": "string", "VISITNUM": "double"}
    # widths in bytes: "CD7-SAA" = 7; "x"*200 = 200 (the Chinese value is 6*3 + 6 = 24 bytes)
    assert meta.variable_storage_width == {"STUDYID": 7, "AGE": 8, "AETERM": 200, "VISITNUM": 8}
    assert meta.table_name == "AE"
    assert meta.file_label == "Adverse Events 不良事件"
    assert meta.file_encoding == "UTF-8"
    assert meta.number_rows == 4
    assert meta.creation_time == datetime(2024, 5, 6, 7, 8, 9)
    assert meta.modification_time == datetime(2024, 5, 6, 7, 8, 9)

    assert df["STUDYID"].tolist() == ["CD7-SAA", "CD7-SAA", "", ""]
    assert df["AETERM"].tolist() == ["发热 fever", "  leading blanks kept", "x" * 200, ""]
    np.testing.assert_array_equal(df["AGE"].to_numpy(), [34.0, np.nan, 1.5, -2.25])
    np.testing.assert_array_equal(df["VISITNUM"].to_numpy(), [1.0, np.nan, 3.0, 4.0])


def test_mixed_frame_round_trips_through_pandas(tmp_path):
    path = tmp_path / "ae.sas7bdat"
    write_sas7bdat(mixed_frame(), path, table_name="AE", created=datetime(2024, 5, 6, 7, 8, 9))
    df = read_pandas(path)

    assert list(df.columns) == ["STUDYID", "AGE", "AETERM", "VISITNUM"]
    # pandas turns blank character values into NaN (blank_missing)
    assert df["STUDYID"].tolist()[:2] == ["CD7-SAA", "CD7-SAA"]
    assert df["STUDYID"].isna().tolist() == [False, False, True, True]
    assert df["AETERM"].tolist()[:3] == ["发热 fever", "  leading blanks kept", "x" * 200]
    assert pd.isna(df["AETERM"].iloc[3])
    np.testing.assert_array_equal(df["AGE"].to_numpy(), [34.0, np.nan, 1.5, -2.25])
    np.testing.assert_array_equal(df["VISITNUM"].to_numpy(), [1.0, np.nan, 3.0, 4.0])

    assert pandas_columns(path) == [
        ("STUDYID", "Study Identifier", b"s", 7),
        ("AGE", "年龄 Age", b"d", 8),
        ("AETERM", "Reported Term for the Adverse Event", b"s", 200),
        ("VISITNUM", "", b"d", 8),
    ]
    reader = SAS7BDATReader(path, encoding="infer")
    try:
        assert reader.date_created == datetime(2024, 5, 6, 7, 8, 9)
        assert reader.encoding == "utf-8"
    finally:
        reader.close()


def test_one_row(tmp_path):
    path = tmp_path / "one.sas7bdat"
    write_sas7bdat(pd.DataFrame({"A": ["only"], "B": [2.5]}), path)
    df, meta = read_pyreadstat(path)
    assert meta.number_rows == 1
    assert df.to_dict("list") == {"A": ["only"], "B": [2.5]}
    assert read_pandas(path).to_dict("list") == {"A": ["only"], "B": [2.5]}
    # header 8192 + one 64 KiB mix page holding metadata and the row
    assert header_ints(path) == (8192, 65536, 1)
    assert path.stat().st_size == 8192 + 65536


def test_zero_rows_keep_columns_and_types(tmp_path):
    path = tmp_path / "empty.sas7bdat"
    frame = pd.DataFrame({"A": pd.Series([], dtype=str), "B": pd.Series([], dtype="float64")})
    frame.attrs["column_labels"] = {"A": "Label A"}
    write_sas7bdat(frame, path)
    df, meta = read_pyreadstat(path)
    assert df.shape == (0, 2)
    assert meta.column_names == ["A", "B"]
    assert meta.column_labels == ["Label A", None]
    assert meta.readstat_variable_types == {"A": "string", "B": "double"}
    assert read_pandas(path).shape == (0, 2)
    assert [(n, t) for n, _, t, _ in pandas_columns(path)] == [("A", b"s"), ("B", b"d")]
    assert header_ints(path) == (8192, 65536, 1)


def test_5000_rows_span_many_pages(tmp_path):
    """10 numeric + 10 character columns of exactly 200 bytes: row length 80 + 2000 = 2080.

    Page 1 (mix): 26 subheaders -> 40 + 26*24 = 664 bytes of header and pointers, plus the
    subheaders 808 + 24 + 600 + 136 (text: 36 + 20 names*4 + 12 tail, + 8 signature)
    + 192 (names) + 352 (attributes) + 20*64 (formats/labels) = 3392, total 4056;
    (65536 - 4056) // 2080 = 29 rows. Data pages hold (65536 - 40) // 2080 = 31 rows:
    4971 rows -> 161 data pages, 162 pages in all, 4971 - 160*31 = 11 rows on the last.
    """
    n = 5000
    rng = np.random.default_rng(7)
    cols: dict[str, object] = {}
    for j in range(10):
        values = rng.normal(size=n) * 10 ** j
        values[rng.random(n) < 0.1] = np.nan
        cols[f"N{j}"] = values
    letters = np.array(list("ABCDEFGHIJ中文测试 "))
    for j in range(10):
        text = ["".join(rng.choice(letters, size=rng.integers(0, 60))) for _ in range(n)]
        text[j] = "Z" * 200                       # every column reaches 200 bytes
        cols[f"C{j}"] = text
    frame = pd.DataFrame(cols)
    # keep the hand-computed width: no value may exceed 200 bytes
    assert max(frame[f"C{j}"].str.encode("utf-8").str.len().max() for j in range(10)) == 200
    path = tmp_path / "big.sas7bdat"
    write_sas7bdat(frame, path)

    assert header_ints(path) == (8192, 65536, 162)
    assert path.stat().st_size == 8192 + 162 * 65536
    raw = path.read_bytes()
    last_page = 8192 + 161 * 65536
    assert struct.unpack_from("<HHH", raw, last_page + 32) == (0x0100, 11, 0)      # data page, 11 rows
    assert struct.unpack_from("<HHH", raw, 8192 + 32) == (0x0200, 26 + 29, 26)     # mix page

    df, meta = read_pyreadstat(path)
    pdf = read_pandas(path)
    assert meta.number_rows == n and len(pdf) == n
    for j in range(10):
        np.testing.assert_array_equal(df[f"N{j}"].to_numpy(), frame[f"N{j}"].to_numpy())
        np.testing.assert_array_equal(pdf[f"N{j}"].to_numpy(), frame[f"N{j}"].to_numpy())
        expected = frame[f"C{j}"].str.rstrip(" ")
        assert df[f"C{j}"].tolist() == expected.tolist()
        assert pdf[f"C{j}"].fillna("").tolist() == expected.tolist()


def test_wide_frame_with_long_labels_uses_several_text_blocks(tmp_path):
    """300 columns, names C000..C299 (4 bytes) and 250-byte labels: each column takes 256
    bytes of column text. Block 0 holds labels of columns 0..126, block 1 of 127..253,
    block 2 the rest, so 3 column text subheaders; the metadata (~110 KiB) needs 128 KiB pages.
    """
    names = [f"C{i:03d}" for i in range(300)]
    frame = pd.DataFrame({c: ([float(i), np.nan] if i % 2 else [f"v{i}", ""]) for i, c in enumerate(names)})
    frame.attrs["column_labels"] = {c: "L" * 246 + c for c in names}
    path = tmp_path / "wide.sas7bdat"
    write_sas7bdat(frame, path)

    assert header_ints(path) == (8192, 131072, 1)
    raw = path.read_bytes()
    row_size_at = 8192 + struct.unpack_from("<q", raw, 8192 + 40)[0]   # first pointer: row size
    assert raw[row_size_at:row_size_at + 4] == b"\xf7\xf7\xf7\xf7"
    assert struct.unpack_from("<HHH", raw, row_size_at + 748) == (3, 4, 250)   # NCT, longest name, label

    df, meta = read_pyreadstat(path)
    assert meta.column_names == names
    assert meta.column_labels == ["L" * 246 + c for c in names]
    assert df["C001"].tolist()[0] == 1.0 and df["C002"].tolist() == ["v2", ""]
    assert [(n, lab) for n, lab, _, _ in pandas_columns(path)] == [(c, "L" * 246 + c) for c in names]
    assert read_pandas(path)["C299"].tolist()[0] == 299.0


# ---------------------------------------------------------------------------------------
# Bytes on disk
# ---------------------------------------------------------------------------------------

def test_header_fields(tmp_path):
    path = tmp_path / "h.sas7bdat"
    write_sas7bdat(pd.DataFrame({"X": [1.0]}), path, table_name="Dm")
    raw = path.read_bytes()
    assert raw[:32] == bytes(12) + bytes.fromhex("c2ea8160b31411cfbd920800" "09c7318c181f1011")
    assert raw[32] == 0x33 and raw[35] == 0x33      # u64 layout, 4 alignment bytes before timestamps
    assert raw[37] == 0x01                          # little-endian
    assert raw[70] == 20                            # UTF-8
    assert raw[84:92] == b"SAS FILE"
    assert raw[92:156] == b"DM" + b" " * 62
    assert raw[156:164] == b"DATA    "


def test_numeric_missing_is_the_sas_dot_value(tmp_path):
    """One numeric column: page 1 has 7 subheaders (row size, column size, counts, text,
    names, attributes, 1 format/label), so the first row starts at 8192 + 40 + 7*24 = 8400.
    SAS '.' is 0xFFFFFE0000000000, little-endian 00 00 00 00 00 FE FF FF."""
    path = tmp_path / "m.sas7bdat"
    write_sas7bdat(pd.DataFrame({"X": [np.nan, 1.0]}), path)
    raw = path.read_bytes()
    assert raw[8400:8408] == bytes.fromhex("0000000000feffff")
    assert raw[8408:8416] == struct.pack("<d", 1.0)
    df, meta = pyreadstat.read_sas7bdat(str(path), user_missing=True)
    assert pd.isna(df["X"].iloc[0]) and meta.missing_user_values == {}


def test_character_values_are_blank_padded(tmp_path):
    """One character column of width 4 (longest value 'abcd'): rows start at 8400 as above,
    row length is padded to 8; short and missing values are filled with blanks (0x20), as
    SAS does, not NULs."""
    path = tmp_path / "c.sas7bdat"
    write_sas7bdat(pd.DataFrame({"S": ["ab", "abcd", None]}), path)
    raw = path.read_bytes()
    assert raw[8400:8424] == b"ab  \0\0\0\0" + b"abcd\0\0\0\0" + b"    \0\0\0\0"


def test_rewrite_is_byte_identical(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    frame = mixed_frame()
    a, b = tmp_path / "a.sas7bdat", tmp_path / "b.sas7bdat"
    write_sas7bdat(frame, a, table_name="AE", label="x")
    write_sas7bdat(frame.copy(), b, table_name="AE", label="x")
    assert a.read_bytes() == b.read_bytes()
    write_sas7bdat(frame, a, table_name="AE", label="x")          # overwrite in place
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
    # default timestamp: the SAS epoch
    assert struct.unpack_from("<dd", a.read_bytes(), 168) == (0.0, 0.0)
    assert read_pyreadstat(a)[1].creation_time == datetime(1960, 1, 1)


def test_source_date_epoch_sets_timestamps(tmp_path, monkeypatch):
    # 1700000000 s after 1970-01-01 = 2023-11-14T22:13:20 UTC; SAS seconds add 3653 days
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    path = tmp_path / "e.sas7bdat"
    write_sas7bdat(pd.DataFrame({"X": [1.0]}), path)
    assert struct.unpack_from("<d", path.read_bytes(), 168)[0] == 1700000000 + 3653 * 86400
    assert read_pyreadstat(path)[1].creation_time == datetime(2023, 11, 14, 22, 13, 20)


def test_sas_datetime_seconds_boundaries(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert sas_datetime_seconds(None) == 0.0
    assert sas_datetime_seconds(datetime(1960, 1, 2)) == 86400.0
    assert sas_datetime_seconds(datetime(1959, 12, 31, 23, 59, 59)) == -1.0
    assert sas_datetime_seconds(datetime(1970, 1, 1, 1, tzinfo=timezone.utc)) == 3653 * 86400 + 3600
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert sas_datetime_seconds(None) == 3653 * 86400.0


# ---------------------------------------------------------------------------------------
# Bad input: one clear line
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("frame, error, words", [
    (pd.DataFrame({"1ABC": [1.0]}), ConfigError, "not a SAS name"),
    (pd.DataFrame({"A-B": [1.0]}), ConfigError, "not a SAS name"),
    (pd.DataFrame({"A" * 33: [1.0]}), ConfigError, "not a SAS name"),
    (pd.DataFrame({"ok": [1.0], "OK": [2.0]}), ConfigError, "not unique"),
    (pd.DataFrame({"FLAG": [True, False]}), DataError, "boolean"),
    (pd.DataFrame({"MIXED": pd.Series([1, "a"], dtype=object)}), DataError, "only text"),
    (pd.DataFrame({"X": [1.0, np.inf]}), DataError, "infinite"),
    (pd.DataFrame({"D": pd.to_datetime(["2024-01-01"])}), DataError, "not supported"),
    (pd.DataFrame({"T": ["x" * 32768]}), DataError, "32767"),
    (pd.DataFrame(index=range(2)), DataError, "no columns"),
])
def test_bad_frames_raise_one_line(tmp_path, frame, error, words):
    with pytest.raises(error) as info:
        write_sas7bdat(frame, tmp_path / "bad.sas7bdat")
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "bad.sas7bdat").exists()


def test_bad_labels_and_names(tmp_path, monkeypatch):
    frame = pd.DataFrame({"A": [1.0]})
    frame.attrs["column_labels"] = {"A": "标" * 86}           # 258 bytes in UTF-8
    with pytest.raises(ConfigError, match="258 bytes"):
        write_sas7bdat(frame, tmp_path / "x.sas7bdat")
    frame.attrs["column_labels"] = {"A": "标" * 85}           # 255 bytes: accepted
    write_sas7bdat(frame, tmp_path / "x.sas7bdat")
    assert read_pyreadstat(tmp_path / "x.sas7bdat")[1].column_labels == ["标" * 85]
    with pytest.raises(ConfigError, match="dataset name"):
        write_sas7bdat(frame, tmp_path / "x.sas7bdat", table_name="my table")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        write_sas7bdat(frame, tmp_path / "x.sas7bdat")


# ---------------------------------------------------------------------------------------
# Property: random small frames survive pyreadstat
# ---------------------------------------------------------------------------------------

SAFE_TEXT = st.text(alphabet="ABCXYZabcxyz0123456789 -_.,/:()中文测试发热", max_size=40)
FLOATS = st.floats(allow_nan=True, allow_infinity=False, width=64)


@st.composite
def small_frames(draw):
    nrows = draw(st.integers(0, 25))
    ncols = draw(st.integers(1, 6))
    data = {}
    for j in range(ncols):
        if draw(st.booleans()):
            values = draw(st.lists(st.one_of(SAFE_TEXT, st.none()), min_size=nrows, max_size=nrows))
            data[f"C{j}"] = pd.Series(values, dtype=object)
        else:
            data[f"N{j}"] = pd.Series(draw(st.lists(FLOATS, min_size=nrows, max_size=nrows)), dtype="float64")
    return pd.DataFrame(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=small_frames())
def test_random_frames_round_trip_through_pyreadstat(frame):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.sas7bdat"
        write_sas7bdat(frame, path)
        df, meta = read_pyreadstat(path)
    assert meta.column_names == list(frame.columns)
    assert meta.number_rows == len(frame)
    for col in frame.columns:
        if col.startswith("C"):
            assert meta.readstat_variable_types[col] == "string"
            expected = [("" if v is None else v.rstrip(" ")) for v in frame[col]]
            assert df[col].tolist() == expected
        else:
            assert meta.readstat_variable_types[col] == "double"
            got = df[col].to_numpy(dtype="float64")
            want = frame[col].to_numpy()
            assert np.array_equal(np.isnan(got), np.isnan(want))
            assert np.array_equal(got[~np.isnan(want)], want[~np.isnan(want)])
