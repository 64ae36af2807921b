"""The cell texts and Excel values of the listings, computed on numpy arrays
(``tables.text_values``, ``listings.number_texts``, ``excel._cell_values``), against the
per-value pandas expressions they replace (the oracles below), on hypothesis-drawn columns;
the workbook's data rows written directly (``excel.data_rows``) against openpyxl's cells."""

from __future__ import annotations

import io
import math
import zipfile
from datetime import datetime

import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

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
    got = got.tolist()
    assert got == want and [type(v) for v in got] == [type(v) for v in want]
    assert lengths.tolist() == [len(str(v)) for v in want if v is not None]


def test_excel_cells_by_hand():
    got, lengths = excel._cell_values(pd.Series([1.0, 2.5, np.nan, 3e20]), True)
    got = got.tolist()
    assert got == [1, 2.5, None, 300000000000000000000] and type(got[0]) is int
    assert lengths.tolist() == [1, 3, 21]
    got, lengths = excel._cell_values(pd.Series([2**60 + 1, 5], dtype="int64"), True)
    assert got.tolist() == [2**60 + 1, 5]  # exact beyond 2**53
    got, _ = excel._cell_values(pd.Series([7, None], dtype="Int64"), True)
    assert got.tolist() == [7, None]
    got, _ = excel._cell_values(pd.Series(["12", "x", ""], dtype=object), True)
    assert got.tolist() == [12, None, None]
    got, lengths = excel._cell_values(pd.Series(["ab", None, "=x"], dtype=object), False)
    assert got.tolist() == ["ab", "", "=x"] and lengths.tolist() == [2, 0, 2]
    assert excel._width("Head", lengths) == 6.0 and excel._width("A header", np.array([70])) == 60.0


def _workbooks(sheets, monkeypatch):
    stamp = datetime(2025, 1, 2, 3, 4, 5)
    fast = excel.workbook_bytes(sheets, "Study T", "cut-off", stamp)
    monkeypatch.setattr(excel, "DIRECT_ROWS", False)
    slow = excel.workbook_bytes(sheets, "Study T", "cut-off", stamp)
    return fast, slow


def _tricky_sheets():
    a = pd.DataFrame({"USUBJID": ["S-1", "S-1", "", "S-2"], "AETERM": ["=HYPERLINK(1)", " padded", "", "µ ≥ 5\r\nx"],
                      "AESEQ": [1.0, np.nan, np.nan, 2.5], "N": pd.array([3, None, None, 2**60], dtype="Int64"),
                      "EMPTY": ["", "", "", ""]})
    b = pd.DataFrame({"X": ["", "y", "-1", "<&>\"'"], "V": [np.nan, 1e20, -0.0, 7.0]})
    return [excel.Sheet("first", "Title & <one>", a, ["Subject", "=Term", "Seq", "N", "Empty"], "a note",
                        {"AESEQ", "N"}),
            excel.Sheet("second", "Two", b, ["@x", "V"], "", {"V"}),
            excel.Sheet("empty", "Nothing", a.iloc[:0], ["Subject", "=Term", "Seq", "N", "Empty"], "", {"AESEQ"}),
            excel.Sheet("first", "Again", b.iloc[2:], ["X", "V"], "+note", {"V"})]


def test_direct_rows_write_the_bytes_openpyxl_writes(monkeypatch):
    """The data rows written as XML (excel.data_rows) make the same workbook, byte for byte,
    as every cell made and written by openpyxl: formula-like texts with the quote prefix (in
    data, headers and notes of several sheets: the style numbers follow openpyxl's order),
    texts lxml escapes, outer spaces, empty cells, rows and sheets, whole and fractional
    numbers, a number beyond 2**53."""
    made = []
    real = excel.data_rows
    monkeypatch.setattr(excel, "data_rows", lambda *a: made.append(real(*a)) or made[-1])
    fast, slow = _workbooks(_tricky_sheets(), monkeypatch)
    assert fast == slow
    assert [m is not None for m in made[:4]] == [True, True, False, True]  # the empty sheet: openpyxl's cells
    wb = openpyxl.load_workbook(io.BytesIO(fast))
    ws = wb["first"]
    assert ws["B6"].value == "=HYPERLINK(1)" and ws["B6"].data_type == "s" and ws["B6"].quotePrefix
    assert ws["B9"].value == "µ ≥ 5\r\nx" and ws["D9"].value == 2**60 and ws["C9"].value == 2.5
    assert ws["A8"].value is None and ws.max_row == 9
    assert wb["second"]["B6"].value == 100000000000000000000 and wb["second"]["C6"].value is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_texts.filter(lambda t: not ILLEGAL_CHARACTERS_RE.search(t)),
                          st.one_of(_floats, st.none())), min_size=1, max_size=6))
def test_direct_rows_on_drawn_columns(rows):
    """Texts a worksheet can hold (the others: the test below) and numbers, drawn."""
    frame = pd.DataFrame({"T": [t for t, _ in rows], "V": [v for _, v in rows]}, dtype=object)
    sheets = [excel.Sheet("s", "t", frame, ["T", "V"], "", {"V"})]
    stamp = datetime(2025, 1, 2)
    fast = excel.workbook_bytes(sheets, "S", "c", stamp)
    excel.DIRECT_ROWS = False
    try:
        slow = excel.workbook_bytes(sheets, "S", "c", stamp)
    finally:
        excel.DIRECT_ROWS = True
    assert fast == slow


def test_a_column_openpyxl_must_check_goes_through_its_cells(monkeypatch):
    """A text beyond 32,767 characters is truncated, and a character a worksheet cannot hold
    refused, exactly as openpyxl does (the sheet is written through openpyxl's cells)."""
    from openpyxl.utils.exceptions import IllegalCharacterError
    long = pd.DataFrame({"T": ["x" * 40_000, "=y"]})
    fast, slow = _workbooks([excel.Sheet("s", "t", long, ["T"], "", set())], monkeypatch)
    assert fast == slow
    monkeypatch.setattr(excel, "DIRECT_ROWS", True)
    with pytest.raises(IllegalCharacterError):
        excel.workbook_bytes([excel.Sheet("s", "t", pd.DataFrame({"T": ["bell\x07"]}), ["T"], "", set())],
                             "S", "c", datetime(2025, 1, 2))


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("sheets", [_tricky_sheets, list], ids=["sheets", "no sheet"])
def test_workbook_saved_in_memory_is_the_workbook_openpyxl_saves(monkeypatch, direct, sheets):
    """excel.saved_workbook (sheets serialised in memory, entries stored uncompressed) makes the
    same workbook, byte for byte, as openpyxl's Workbook.save (a temporary file per sheet,
    entries deflated), through both ways of writing the data rows, and without sheets; no
    temporary file is made."""
    from openpyxl.worksheet import _writer as sheet_writer
    monkeypatch.setattr(excel, "DIRECT_ROWS", direct)
    stamp = datetime(2025, 1, 2, 3, 4, 5)
    monkeypatch.setattr(excel, "SAVE_IN_MEMORY", False)
    saved = excel.workbook_bytes(sheets(), "Study T", "cut-off", stamp)
    monkeypatch.setattr(excel, "SAVE_IN_MEMORY", True)

    def no_file(*_a, **_k):
        raise AssertionError("a temporary file")
    monkeypatch.setattr(sheet_writer, "create_temporary_file", no_file)
    assert excel.workbook_bytes(sheets(), "Study T", "cut-off", stamp) == saved


def test_saved_workbook_entries_are_those_of_workbook_save():
    """The entries of excel.saved_workbook: the names, order and contents of Workbook.save's
    (but docProps/core.xml, whose modified time Workbook.save sets to the clock), stored."""
    wb = openpyxl.Workbook()
    wb.active["A1"] = "x"
    wb.create_sheet("two")["B2"] = 2.5
    ours = zipfile.ZipFile(io.BytesIO(excel.saved_workbook(wb)))
    buf = io.BytesIO()
    wb.save(buf)
    theirs = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    assert ours.namelist() == theirs.namelist() and "xl/worksheets/sheet2.xml" in ours.namelist()
    assert {i.compress_type for i in ours.infolist()} == {zipfile.ZIP_STORED}
    for name in ours.namelist():
        if name != excel.CORE_PROPERTIES:
            assert ours.read(name) == theirs.read(name), name


def test_column_headers_share_one_style():
    """Every column header cell is bold, filled and wrapped (one style, set on the first and
    copied), a formula-like header keeps its quote prefix on top of it."""
    wb = openpyxl.load_workbook(io.BytesIO(excel.workbook_bytes(_tricky_sheets(), "S", "c", datetime(2025, 1, 2))))
    for name, row, headers in (("first", 5, ["Subject", "=Term", "Seq", "N", "Empty"]), ("second", 4, ["@x", "V"]),
                               ("empty", 4, ["Subject", "=Term", "Seq", "N", "Empty"]), ("first (2)", 5, ["X", "V"])):
        cells = wb[name][row][:len(headers)]
        assert [c.value for c in cells] == headers
        for c in cells:
            assert c.font.b and c.fill.fgColor.rgb == "00DDE4EE" and c.alignment.wrap_text and c.alignment.vertical == "top"
            assert c.quotePrefix == c.value.startswith(("=", "@")), c.value
        assert wb[name][1][0].font.sz == 12 and not wb[name][2][0].font.b


def _lxml_text_element(v: str) -> str:
    """The <t> element as lxml serialises it (what excel._text_cells wrote for every text before)."""
    from lxml import etree
    from openpyxl.xml.functions import XML_NS
    el = etree.Element("t", {f"{{{XML_NS}}}space": "preserve"} if v != v.strip() else {})
    el.text = v
    return etree.tostring(el).decode("ascii")


@settings(max_examples=300, deadline=None)
@given(st.one_of(_texts, st.text(alphabet="ab &<>\"'\t\n\r;#", max_size=12),
                 st.text(alphabet=st.characters(max_codepoint=0x2fff), max_size=8))
       .filter(lambda t: not ILLEGAL_CHARACTERS_RE.search(t)))
def test_text_element_is_lxmls(v):
    """excel.text_element: the <t> element lxml writes, for drawn texts: escapes, quotes, outer
    spaces, tabs, newlines, carriage returns, beyond ASCII, empty."""
    assert excel.text_element(v) == _lxml_text_element(v)


def test_text_element_by_hand():
    assert excel.text_element("a & <b> \"c\" 'd'") == "<t>a &amp; &lt;b&gt; \"c\" 'd'</t>"
    assert excel.text_element(" padded") == '<t xml:space="preserve"> padded</t>'
    assert excel.text_element("µ ≥ 5\r\nx") == "<t>&#181; &#8805; 5&#13;\nx</t>"
    assert excel.text_element("") == "<t></t>" == _lxml_text_element("")


@pytest.mark.parametrize("direct", [True, False])
def test_workbook_from_the_display_texts_is_the_same(monkeypatch, direct):
    """A sheet given its frame's display texts (listings.display_values, as write_listings
    passes them) makes the workbook it makes from the frame alone, byte for byte; the texts
    are not changed by it."""
    monkeypatch.setattr(excel, "DIRECT_ROWS", direct)
    stamp = datetime(2025, 1, 2, 3, 4, 5)
    sheets = _tricky_sheets()
    alone = excel.workbook_bytes(sheets, "Study T", "cut-off", stamp)
    given = [excel.Sheet(s.name, s.title, s.frame, s.headers, s.note, s.numeric, listings.display_values(s.frame, s.numeric))
             for s in sheets]
    before = [{c: v.copy() for c, v in s.texts.items()} for s in given]
    assert excel.workbook_bytes(given, "Study T", "cut-off", stamp) == alone
    assert all(all((s.texts[c] == v).all() for c, v in b.items()) for s, b in zip(given, before))
    assert given[0].texts["AETERM"].tolist() == ["=HYPERLINK(1)", " padded", "", "µ ≥ 5\r\nx"]
