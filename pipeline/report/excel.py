"""Excel workbooks of listings (openpyxl), deterministic and safe.

Each sheet: a title row (study, listing title), a row with the data cut-off and the
generation stamp, an optional note row, then the header (labels) and the records. The header
row is frozen and carries an auto-filter; column widths follow the content (capped).

Safety: a text cell is always a string cell, never a formula. openpyxl turns a string
starting with ``=`` into a formula, so such cells are forced back to text, and every text
beginning with a character a spreadsheet may read as a formula (``= + - @``, tab, carriage
return) is stored with Excel's *quote prefix* (the cell shows the text and stays text when
edited).

Determinism: the workbook's creation/modification properties are the build stamp and the
zip entries are rewritten with a fixed timestamp and fixed attributes, so a rebuild is
byte-identical.
"""

from __future__ import annotations

import io
import math
from copy import copy
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from openpyxl import Workbook
from lxml import etree
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.compat import safe_string
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.writer import excel as openpyxl_writer
from openpyxl.xml.functions import XML_NS, tostring

from pipeline.report.tables import text_values

#: first characters that make a spreadsheet read text as a formula (OWASP CSV injection)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_WIDTH = 60
MIN_WIDTH = 6
SHEET_NAME_MAX = 31
_BAD_SHEET_CHARS = str.maketrans({c: "-" for c in "[]:*?/\\"})
ZIP_STAMP = (1980, 1, 1, 0, 0, 0)
CREATOR = "cart-sdtm-pipeline"
CORE_PROPERTIES = "docProps/core.xml"


@dataclass
class Sheet:
    """One listing as a sheet: ``frame`` (columns in display order), ``headers`` (one per column)."""

    name: str
    title: str
    frame: pd.DataFrame
    headers: list[str]
    note: str = ""
    numeric: set[str] = field(default_factory=set)
    #: the texts of the frame's columns as :func:`pipeline.report.tables.text_values` makes them
    #: (:func:`pipeline.report.listings.display_values`), when the caller has them: the text
    #: columns' cells are then not made again (the numeric columns' cells are numbers)
    texts: dict[str, np.ndarray] | None = None


def sheet_name(name: str, taken: set[str]) -> str:
    """A valid, unique Excel sheet name (<= 31 characters, no ``[]:*?/\\``)."""
    base = name.translate(_BAD_SHEET_CHARS).strip("'")[:SHEET_NAME_MAX] or "Sheet"
    out, n = base, 2
    while out.lower() in {t.lower() for t in taken}:
        suffix = f" ({n})"
        out, n = base[:SHEET_NAME_MAX - len(suffix)] + suffix, n + 1
    taken.add(out)
    return out


def is_formula_like(value: str) -> bool:
    return value.startswith(FORMULA_PREFIXES)


def set_text(cell, value: str) -> None:
    """Write ``value`` as a text cell, never a formula (see module docstring)."""
    cell.value = value
    if cell.data_type != "s":
        cell.data_type = "s"
    if is_formula_like(value):
        cell.quotePrefix = True


def _cell_values(s: pd.Series, numeric: bool, texts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The cell values of one column (an object array), and the length of each non-empty one as text (for the
    column width). Numbers: an ``int`` when whole, else a ``float``, ``None`` when missing;
    converted once per distinct value. Texts: :func:`pipeline.report.tables.text_values`
    (``texts``, when the caller has them)."""
    if not numeric:
        values = text_values(s) if texts is None else texts
        return values, np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    num = s if s.dtype.kind in "fiu" else pd.to_numeric(s, errors="coerce")
    if num.dtype.kind in "iu":  # whole numbers as they are (exact beyond 2**53), None where missing
        missing = num.isna().to_numpy()
        out = np.array(num.to_numpy(dtype="int64", na_value=0).tolist(), dtype=object)
        out[missing] = None
        present = ~missing
    else:
        values = num.to_numpy(dtype=float, na_value=np.nan)
        present = ~np.isnan(values)
        distinct, at = np.unique(values[present], return_inverse=True)
        cells = [int(v) if v.is_integer() else v for v in distinct.tolist()]  # distinct values of one column
        out = np.full(len(values), None, dtype=object)
        out[present] = np.array(cells, dtype=object)[at.reshape(-1)] if cells else []
    return out, np.fromiter(map(len, map(str, out[present])), dtype=np.int64, count=int(present.sum()))


def put_column(ws, column: int, first_row: int, values: list, numeric: bool) -> None:
    """The non-empty ``values`` of one column into ``ws`` from ``first_row`` down: numbers as
    number cells, texts as text cells (:func:`set_text`).

    The cells are made directly, as ``ws.cell(...)`` and the value setter would make them:
    a number cell holds an ``int``/``float`` (type ``n``), a text cell the text (type ``s``,
    the quote prefix when it looks like a formula). The setter's per-value checks of a text
    (characters a worksheet cannot hold, the 32,767-character limit) are made once over the
    column's distinct texts; a column that fails them goes through :func:`set_text` cell by
    cell, which raises or truncates exactly as openpyxl does."""
    texts = [] if numeric else {v for v in values if v}
    if not numeric and (any(len(v) > 32767 for v in texts) or ILLEGAL_CHARACTERS_RE.search("".join(texts))):
        for i, v in enumerate(values, start=first_row):  # the rows of a column openpyxl must check
            if v:
                set_text(ws.cell(row=i, column=column), v)
        return
    cells = ws._cells
    last = 0
    for i, v in enumerate(values, start=first_row):  # the rows of one column
        if v is None or v == "":
            continue
        cell = Cell(ws, row=i, column=column)
        cell._value = v
        if not numeric:
            cell.data_type = "s"
            if is_formula_like(v):
                cell.quotePrefix = True
        cells[(i, column)] = cell
        last = i
    ws._current_row = max(ws._current_row, last)


#: set False to write every data cell through openpyxl's cells (slower; same bytes)
DIRECT_ROWS = True
_SHEET_DATA_END = b"</sheetData>"


@dataclass
class DataRows:
    """A sheet's data rows as the XML openpyxl writes for them, and the sheet's dimension
    before (header rows only, as openpyxl saved it) and after (with the data rows)."""

    xml: bytes
    saved_ref: str
    ref: str

    def splice(self, sheet_xml: bytes) -> bytes:
        """openpyxl's XML of the sheet (its header rows) with the data rows and dimension."""
        old = b'<dimension ref="%s"/>' % self.saved_ref.encode("ascii")
        if sheet_xml.count(old) != 1 or sheet_xml.count(_SHEET_DATA_END) != 1:
            raise AssertionError("worksheet XML not as openpyxl writes it")  # a defect, never data
        sheet_xml = sheet_xml.replace(old, b'<dimension ref="%s"/>' % self.ref.encode("ascii"))
        return sheet_xml.replace(_SHEET_DATA_END, self.xml + _SHEET_DATA_END)


def text_element(v: str) -> str:
    """The ``<t>`` element of an inline string cell holding ``v`` as openpyxl's writer makes it
    (``xml:space="preserve"`` when ``v`` has outer spaces) and lxml serialises it in ASCII. A
    non-empty ASCII text without a carriage return (almost every cell) is escaped here as lxml
    escapes text (``& < >``; quotes stay); other texts (characters lxml writes as references)
    go through lxml itself."""
    preserve = v != v.strip()
    if v and v.isascii() and "\r" not in v:
        body = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f'<t xml:space="preserve">{body}</t>' if preserve else f"<t>{body}</t>"
    el = etree.Element("t", {f"{{{XML_NS}}}space": "preserve"} if preserve else {})
    el.text = v
    return etree.tostring(el).decode("ascii")


def _text_cells(values: np.ndarray, quote_style) -> tuple[np.ndarray, np.ndarray] | None:
    """Per non-empty text, the end of its ``<c>`` element after the coordinate, as openpyxl's
    ``lxml_write_cell`` writes it (``t="inlineStr"``, the text as lxml escapes it, ``xml:space``
    when it has outer spaces, the quote prefix's style when it looks like a formula); and
    which values are empty. None when a text needs openpyxl's own checks (characters a
    worksheet cannot hold, longer than a cell holds)."""
    present = values != ""
    codes, distinct = pd.factorize(values[present])
    tails = []
    for v in distinct.tolist():  # the distinct texts of one column
        if len(v) > 32767 or ILLEGAL_CHARACTERS_RE.search(v):
            return None
        style = f' s="{quote_style()}"' if is_formula_like(v) else ""
        tails.append(f'"{style} t="inlineStr"><is>{text_element(v)}</is></c>')
    return np.array(tails, dtype=object)[codes] if tails else np.array([], dtype=object), present


def _number_cells(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """As :func:`_text_cells` for numbers (``t="n"``, openpyxl's ``safe_string``); None for a
    number that is not finite."""
    present = ~pd.isna(values)
    codes, distinct = pd.factorize(values[present])
    tails = []
    for v in distinct.tolist():  # the distinct numbers of one column
        if not math.isfinite(v):
            return None
        tails.append(f'" t="n"><v>{safe_string(v)}</v></c>')
    return np.array(tails, dtype=object)[codes] if tails else np.array([], dtype=object), present


def _register_styles(ws) -> None:
    """The cell styles of ``ws``'s cells registered in the workbook in the order openpyxl
    writes the cells (row by row), as saving would: a style's number is its first use."""
    for _, cell in sorted(ws._cells.items()):  # the cells of a sheet without its direct rows
        if cell.has_style:
            _ = cell.style_id


def data_rows(ws, first_row: int, n: int, columns: list[tuple[np.ndarray, bool]]) -> DataRows | None:
    """The ``n`` data rows of ``ws`` from ``first_row`` on (``columns``: per column its
    :func:`_cell_values` and whether it is numeric), as the XML openpyxl would write for the
    cells :func:`put_column` makes, plus the empty cell of the frozen pane at column A of the
    first data row: built column by column on arrays instead of one ``Cell`` per value. Empty
    values make no cell, a row without cells is left out (but the pane's row). A text that
    looks like a formula gets the style of the quote prefix, registered in the workbook's
    cell styles when openpyxl would first write it (its header rows' styles come first). None
    when a column needs openpyxl's own checks of a value (:func:`_text_cells`)."""
    if not n:
        return None  # nothing to gain: openpyxl writes the frozen pane's empty row
    _register_styles(ws)  # the header rows' styles, before the data rows' quote prefix
    quote: list[int] = []

    def quote_style() -> int:
        if not quote:
            cell = Cell(ws)  # a cell outside the sheet: only its style is used
            cell.quotePrefix = True
            quote.append(cell.style_id)
        return quote[0]

    numbers = np.arange(first_row, first_row + n).astype(str).astype(object)
    content = np.full(n, "", dtype=object)
    written = np.zeros(n, dtype=bool)
    written[0] = True  # the frozen pane's (empty) cell
    last_col = 0
    for j, (values, numeric) in enumerate(columns, start=1):  # the columns of one sheet
        got = _number_cells(values) if numeric else _text_cells(values, quote_style)
        if got is None:
            return None
        tails, present = got
        if present.any():
            content[present] = content[present] + (f'<c r="{get_column_letter(j)}' + numbers[present] + tails)
            written |= present
            last_col = j
    rows = np.where(written, '<row r="' + numbers + '">' + content + "</row>", "")
    keys = list(ws._cells)
    saved = ws.calculate_dimension()
    max_row = max([r for r, _ in keys] + [first_row + int(np.flatnonzero(written)[-1])])
    max_col = max([c for _, c in keys] + [last_col, 1])
    min_row = min([r for r, _ in keys] + [first_row])
    min_col = min([c for _, c in keys] + [1])
    ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{max_row}"
    return DataRows("".join(rows.tolist()).encode("ascii"), saved, ref)


def _width(header: str, lengths: np.ndarray) -> float:
    """A column's width: its longest text (header, or one of its first 5,000 values) + 2, capped."""
    longest = max(len(header), int(lengths[:5000].max())) if len(lengths) else len(header)
    return float(min(MAX_WIDTH, max(MIN_WIDTH, longest + 2)))


#: set False to save through openpyxl's ``Workbook.save`` (a temporary file per sheet, every
#: entry compressed before :func:`normalise_zip` compresses it again; slower, same bytes)
SAVE_IN_MEMORY = True


class _MemorySheetWriter(WorksheetWriter):
    """openpyxl's worksheet writer serialising a sheet into memory instead of a temporary file
    (openpyxl writes each sheet to a file, copies it into the archive and deletes it: deleting
    a file costs ~4 ms of wall time on a disk mounted with ``discard``)."""

    def __init__(self, ws, out=None):
        super().__init__(ws, io.BytesIO() if out is None else out)

    def cleanup(self) -> None:
        """No temporary file to delete."""


class _StoredArchive(zipfile.ZipFile):
    """The zip openpyxl saves into: its entries uncompressed (:func:`normalise_zip` rewrites
    and compresses every entry, once), a sheet serialised in memory (:class:`_MemorySheetWriter`)
    added from memory."""

    def write(self, filename, arcname=None, *args, **kwargs):
        if isinstance(filename, io.BytesIO):
            self.writestr(arcname, filename.getvalue())
        else:
            super().write(filename, arcname, *args, **kwargs)


def saved_workbook(wb: Workbook) -> bytes:
    """The zip openpyxl writes for ``wb``: the same entries, in the same order and with the same
    contents as ``wb.save`` (with ``SAVE_IN_MEMORY``: uncompressed and without temporary files;
    openpyxl's ``ExcelWriter`` on a :class:`_StoredArchive`, its sheets through
    :class:`_MemorySheetWriter`). Unlike ``wb.save`` it leaves the workbook's ``modified``
    property alone (the caller writes the core properties itself)."""
    buf = io.BytesIO()
    if not SAVE_IN_MEMORY:
        wb.save(buf)
        return buf.getvalue()
    archive = _StoredArchive(buf, "w", zipfile.ZIP_STORED, allowZip64=True)
    with mock.patch.object(openpyxl_writer, "WorksheetWriter", _MemorySheetWriter):
        openpyxl_writer.ExcelWriter(wb, archive).save()
    return buf.getvalue()


def workbook_bytes(sheets: list[Sheet], study_line: str, stamp_line: str, stamp: datetime) -> bytes:
    """The workbook as deterministic XLSX bytes."""
    wb = Workbook()
    wb.remove(wb.active)
    taken: set[str] = set()
    bold = Font(bold=True)
    title_font = Font(bold=True, size=12)
    head_fill = PatternFill("solid", fgColor="DDE4EE")
    wrap = Alignment(wrap_text=True, vertical="top")
    direct: dict = {}  # worksheet -> its data rows as XML (data_rows)
    head_style = None  # a column header cell's style (bold, filled, wrapped), set once
    for sh in sheets:
        ws = wb.create_sheet(sheet_name(sh.name, taken))
        set_text(ws.cell(row=1, column=1), f"{study_line}: {sh.title}")
        ws.cell(row=1, column=1).font = title_font
        set_text(ws.cell(row=2, column=1), stamp_line)
        row = 3
        if sh.note:
            set_text(ws.cell(row=3, column=1), sh.note)
            row = 4
        header_row = row + 1
        ncol = max(1, len(sh.headers))
        for j, h in enumerate(sh.headers, start=1):
            c = ws.cell(row=header_row, column=j)
            if head_style is None:
                c.font = bold
                c.fill = head_fill
                c.alignment = wrap
                head_style = copy(c._style)
            else:  # the same font, fill and alignment: their numbers in the workbook's lists, copied
                c._style = copy(head_style)
            set_text(c, h)
        columns = list(sh.frame.columns)
        cells = []
        for j, col in enumerate(columns, start=1):
            numeric = col in sh.numeric
            values, lengths = _cell_values(sh.frame[col], numeric, None if sh.texts is None else sh.texts.get(col))
            cells.append((values, numeric))
            ws.column_dimensions[get_column_letter(j)].width = _width(sh.headers[j - 1], lengths)
        rows = data_rows(ws, header_row + 1, len(sh.frame), cells) if DIRECT_ROWS else None
        if rows is None:  # every data cell through openpyxl
            for j, (values, numeric) in enumerate(cells, start=1):
                put_column(ws, j, header_row + 1, values, numeric)
            ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
            _register_styles(ws)
        else:
            ws.freeze_panes = f"A{header_row + 1}"  # the pane's cell is in the rows written directly
            direct[ws] = rows
        last = header_row + len(sh.frame)
        ws.auto_filter.ref = f"A{header_row}:{get_column_letter(ncol)}{max(last, header_row)}"
        ws.print_title_rows = f"{header_row}:{header_row}"
    if not sheets:
        ws = wb.create_sheet("Listings")
        set_text(ws.cell(row=1, column=1), f"{study_line}: no listing could be produced")
    props = wb.properties
    props.creator = CREATOR
    props.lastModifiedBy = CREATOR
    props.created = stamp
    props.modified = stamp
    props.title = study_line
    saved = saved_workbook(wb)
    # openpyxl stamps "modified" with the clock when saving: write the core properties again
    props.modified = stamp
    core = tostring(props.to_tree())
    replace = {CORE_PROPERTIES: core}
    if direct:
        src = zipfile.ZipFile(io.BytesIO(saved))
        for ws, rows in direct.items():  # the sheets (a few dozen)
            name = ws.path[1:]
            replace[name] = rows.splice(src.read(name))
    return normalise_zip(saved, replace)


def normalise_zip(data: bytes, replace: dict[str, bytes] | None = None) -> bytes:
    """Rewrite a zip with fixed entry timestamps and attributes (entries in their order),
    replacing the contents of the entries named in ``replace``."""
    replace = replace or {}
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=ZIP_STAMP)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            zi.create_system = 0
            dst.writestr(zi, replace.get(info.filename, src.read(info.filename)))
    return out.getvalue()


def write_workbook(path: Path, sheets: list[Sheet], study_line: str, stamp_line: str, stamp: datetime) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(workbook_bytes(sheets, study_line, stamp_line, stamp))
