"""Read the raw CRF extracts of one study: ``raw/<STUDYID>/<form>.{csv,xlsx,sas7bdat}``.

Every form of ``specs/raw/forms.csv`` is looked for in the study folder. The study's
parameters give the expected format (``[raw].formats``, default CSV) and the CSV encoding
(``[raw].encoding``: ``utf-8``, ``utf-8-sig`` or ``gb18030``); whichever single file exists
is read. Each form comes back with every column as text (stripped, empty as NaN), the spec's
columns first (absent optional columns added empty), then any extra columns, then ``_FILE``
(file name) and ``_ROW`` (spreadsheet row: header = 1, first record = 2).

A file that cannot be read never raises: it becomes ONE finding (severity error) naming the
study, the file and the problem, and the form is skipped. Problems covered: ambiguous
(two files for one form), missing mandatory form, a directory or other non-file where a form
file belongs, empty file, undecodable bytes (with byte offset and line), a byte-order mark or
bytes of another encoding than the declared one (the finding names the encoding found), a
wrong delimiter, a duplicated, blank or missing required column, a malformed CSV record, and
a truncated or corrupt XLSX or SAS7BDAT file.

Mandatory forms: each study declares them in its TOML, ``[raw].mandatory_forms`` (``dm`` is
always mandatory). A missing mandatory form is an error, so a deleted ``ae`` file never reads
as "no adverse events". A mandatory form delivered with its header only is valid and means
"none" (a warning says so); for ``dm`` it is an error (no subjects).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.context import FINDING_COLUMNS, empty
from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.intake.checks import MONTHS
from pipeline.spec import Spec

#: file formats the reader understands, in the order they are looked for
FORMATS = ("csv", "xlsx", "sas7bdat")
#: forms without which no study can be built (every SDTM domain keys on DM); a study adds its
#: own in ``[raw].mandatory_forms``
MANDATORY_FORMS = ("dm",)
#: encodings tried, in order, to name what a file really is when it is not the declared one
CANDIDATE_ENCODINGS = ("utf-8", "gb18030", "cp1252")
#: byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE)
BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 LE"), (b"\x00\x00\xfe\xff", "UTF-32 BE"), (b"\xef\xbb\xbf", "UTF-8"),
        (b"\xff\xfe", "UTF-16 LE"), (b"\xfe\xff", "UTF-16 BE"))
_UTF8_NAMES = ("utf-8", "utf8", "utf-8-sig", "utf8-sig")
_MONTHS = np.array(MONTHS, dtype=object)
_OTHER_DELIMITERS = (";", "\t", "|")


class UnreadableFile(Exception):
    """Raised inside the reader; caught by :func:`read_study` and turned into one finding."""

    def __init__(self, check: str, message: str, row: int | None = None):
        super().__init__(message)
        self.check = check
        self.message = message
        self.row = row


def file_finding(study: str, file: str, check: str, severity: str, message: str,
                 row: int | None = None) -> pd.DataFrame:
    """One file-level finding (no column; a row when the problem sits on one line)."""
    return pd.DataFrame([{
        "study": study, "file": file, "row": pd.NA if row is None else row, "column": "", "value": "",
        "check": check, "severity": severity, "message": message,
    }], columns=FINDING_COLUMNS).astype({"row": "Int64"})


def mandatory_forms(study: Study, spec: Spec) -> tuple[str, ...]:
    """``dm`` plus the study's ``[raw].mandatory_forms``; an unknown form name is a ConfigError."""
    declared = study.get("raw", {}).get("mandatory_forms", [])
    if not isinstance(declared, list) or not all(isinstance(f, str) for f in declared):
        raise ConfigError(f"{study.path.name}: [raw].mandatory_forms must be a list of form names")
    unknown = [f for f in declared if f not in spec.forms]
    if unknown:
        raise ConfigError(f"{study.path.name}: [raw].mandatory_forms names {', '.join(unknown)}, not a form of "
                          f"specs/raw/forms.csv ({', '.join(spec.forms)})")
    return tuple(dict.fromkeys([*MANDATORY_FORMS, *declared]))


# ---------------------------------------------------------------------------------------
# cell text
# ---------------------------------------------------------------------------------------
def format_dates(values: pd.Series) -> pd.Series:
    """datetime64 values as CDASH ``DD-MMM-YYYY`` text (``DD-MMM-YYYY HH:MM`` when a time is set)."""
    s = pd.to_datetime(values, errors="coerce")
    ok = s.notna()
    day = s.dt.day.astype("Int64").astype(str).str.zfill(2)
    month = pd.Series(_MONTHS[(s.dt.month.fillna(1).astype(int) - 1).to_numpy()], index=s.index)
    year = s.dt.year.astype("Int64").astype(str).str.zfill(4)
    text = day + "-" + month + "-" + year
    has_time = ok & ((s.dt.hour != 0) | (s.dt.minute != 0) | (s.dt.second != 0))
    if has_time.any():
        hhmm = s.dt.hour.astype("Int64").astype(str).str.zfill(2) + ":" + s.dt.minute.astype("Int64").astype(str).str.zfill(2)
        text = text.where(~has_time, text + " " + hhmm)
    return text.astype(object).where(ok, None)


def format_numbers(values: pd.Series) -> pd.Series:
    """Numbers as text: whole numbers without a spurious ``.0``, others in shortest round-trip form."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    arr = v.to_numpy()
    finite = np.isfinite(arr)
    whole = finite & (np.floor(np.where(finite, arr, 0)) == arr) & (np.abs(np.where(finite, arr, 0)) < 2**63)
    out = pd.Series([None] * len(v), index=v.index, dtype=object)
    if whole.any():
        out[whole] = v[whole].astype("int64").astype(str).to_numpy()
    frac = finite & ~whole
    if frac.any():
        out[frac] = v[frac].astype(str).to_numpy()  # shortest text that round-trips
    return out


def cell_text(value) -> str | None:
    """One spreadsheet cell as text (openpyxl gives Python objects; None for an empty cell)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None if math.isnan(value) else str(value)
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        text = f"{value.day:02d}-{MONTHS[value.month - 1]}-{value.year:04d}"
        if value.hour or value.minute or value.second:
            text += f" {value.hour:02d}:{value.minute:02d}"
        return text
    if isinstance(value, dt.date):
        return f"{value.day:02d}-{MONTHS[value.month - 1]}-{value.year:04d}"
    if isinstance(value, dt.time):
        return f"{value.hour:02d}:{value.minute:02d}"
    return str(value)


# ---------------------------------------------------------------------------------------
# format readers: each returns (header names, DataFrame with positional columns and _ROW)
# ---------------------------------------------------------------------------------------
def _decodes_as(data: bytes, declared: str) -> str | None:
    """The first of :data:`CANDIDATE_ENCODINGS` (other than ``declared``) that decodes ``data``.

    GB18030 decodes almost any byte pair, so when every non-ASCII byte stands alone between
    ASCII bytes (Western single-byte text: ``Fi\xe8vre``) the single-byte cp1252 is tried first;
    Chinese GB18030 text has runs of two or more non-ASCII bytes.
    """
    import re

    runs = [len(m) for m in re.findall(rb"[\x80-\xff]+", data[:1_000_000])]
    order = CANDIDATE_ENCODINGS
    if runs and max(runs) == 1:
        order = tuple(sorted(CANDIDATE_ENCODINGS, key=lambda e: e != "cp1252"))
    for enc in order:  # three encodings
        if enc == declared or (enc == "utf-8" and declared in _UTF8_NAMES):
            continue
        try:
            data.decode(enc)
        except UnicodeDecodeError:
            continue
        return enc
    return None


def diagnose_encoding(data: bytes, encoding: str, name: str) -> None:
    """Raise ``file.encoding`` when the bytes are plainly not in the declared encoding.

    A byte-order mark other than UTF-8's under a UTF-8 declaration, any BOM under another
    declared encoding (a UTF-8 BOM in a GB18030 study would otherwise read as a garbled first
    column name), NUL bytes (UTF-16/32 without BOM), and, under a non-UTF-8 declaration, text
    that is valid UTF-8 with non-ASCII characters (a UTF-8 export in a GB18030 study decodes
    without error into wrong characters).
    """
    enc = encoding.lower().replace("_", "-")
    utf8 = enc in _UTF8_NAMES
    for bom, what in BOMS:  # five byte-order marks
        if data.startswith(bom):
            if what == "UTF-8" and utf8:
                return
            raise UnreadableFile("file.encoding",
                                 f"{name} starts with a {what} byte-order mark ({bom.hex(' ')}): the file is {what}, "
                                 f"but the study declares {encoding} ([raw].encoding); re-export it as {encoding} "
                                 f"without byte-order mark, or declare the file's encoding", row=1)
    if b"\x00" in data[:4096]:
        at = data.index(b"\x00")
        raise UnreadableFile("file.encoding",
                             f"{name} holds NUL bytes (first at byte offset {at}): it looks like UTF-16 or UTF-32 "
                             f"without byte-order mark, not {encoding}; re-export it as {encoding}",
                             row=data.count(b"\n", 0, at) + 1)
    if not utf8 and not data.isascii():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        first = next(i for i, ch in enumerate(text) if ord(ch) > 127)
        n = sum(1 for ch in text if ord(ch) > 127)  # over characters of one file's text (no records)
        raise UnreadableFile("file.encoding",
                             f"{name} is UTF-8 ({n} non-ASCII character(s), the first {text[first]!r} on line "
                             f"{text.count(chr(10), 0, first) + 1}), but the study declares {encoding} "
                             f"([raw].encoding); re-export it as {encoding} or declare utf-8",
                             row=text.count("\n", 0, first) + 1)


def _decode(data: bytes, encoding: str, name: str) -> str:
    enc = encoding.lower().replace("_", "-")
    try:
        "".encode(enc)
    except LookupError:
        raise ConfigError(f"unknown raw encoding {encoding!r} in the study parameters") from None
    diagnose_encoding(data, encoding, name)
    if enc in ("utf-8", "utf8") and data.startswith(b"\xef\xbb\xbf"):
        enc = "utf-8-sig"  # a BOM is accepted when plain UTF-8 is declared
    try:
        return data.decode(enc)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        context = data[exc.start:exc.start + 4].hex(" ")
        found = _decodes_as(data, enc)
        hint = (f"the file decodes as {found}: re-export it as {encoding} or declare {found}" if found else
                f"re-export the file as {encoding} or fix the study's [raw].encoding")
        raise UnreadableFile("file.encoding",
                             f"{name}: byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line {line}) is not "
                             f"valid {encoding} (bytes there: {context}); {hint}", row=line) from None


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` as ``io.StringIO(text)`` yields them (each ends after its ``\\n``),
    made one at a time: the header needs the first line or two, and a StringIO would first copy
    the whole text of the file."""
    start = 0
    while start < len(text):  # only as far as the reader asks: the header record
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def csv_source(data: bytes, text: str, encoding: str) -> io.BytesIO | io.StringIO:
    """What pandas parses of a CSV file whose bytes ``data`` decoded to ``text``. pandas' C
    parser reads UTF-8 bytes and encodes a text buffer back to UTF-8 first; for a UTF-8 file
    that gives back the bytes after any byte-order mark (the strict decoding succeeded), so
    those are parsed directly: half the read time of a large lab extract. Text in any other
    encoding is parsed from ``text``."""
    if encoding.lower().replace("_", "-") in _UTF8_NAMES:
        return io.BytesIO(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
    return io.StringIO(text)


def csv_table(source: io.BytesIO | io.StringIO) -> pd.DataFrame:
    """Every cell of a CSV source as text, the header line as row 0, blank lines kept.
    header=None: the header line fixes the field count, so a record with more fields is an
    error instead of silently becoming an index column (pandas' implicit index)."""
    return pd.read_csv(source, dtype=str, header=None, keep_default_na=False, na_filter=False,
                       skip_blank_lines=False, engine="c")


def read_csv_file(path: Path, encoding: str) -> tuple[list[str], pd.DataFrame]:
    """A CSV extract as text. Blank lines keep their row number and are dropped later."""
    data = path.read_bytes()
    text = _decode(data, encoding, path.name)
    if not text or text.isspace():
        raise UnreadableFile("file.empty", f"{path.name} is empty (no header, no records)")
    try:
        header = next(csv.reader(_lines(text)))
    except (csv.Error, StopIteration) as exc:
        raise UnreadableFile("file.unreadable", f"{path.name}: header line cannot be parsed ({exc})") from None
    if len(header) == 1:
        for d in _OTHER_DELIMITERS:
            if d in header[0]:
                shown = {";": "semicolons", "\t": "tabs", "|": "pipes"}[d]
                raise UnreadableFile("file.delimiter",
                                     f"{path.name}: the header is one column containing {shown} "
                                     f"({header[0][:60]!r}): the file is not comma-separated; re-export it as CSV "
                                     "with ',' as delimiter")
    _check_header(header, path.name)
    try:
        df = csv_table(csv_source(data, text, encoding))
    except (pd.errors.ParserError, ValueError) as exc:
        raise UnreadableFile("file.unreadable",
                             f"{path.name}: malformed CSV ({str(exc).strip()}); every record must have "
                             f"{len(header)} comma-separated fields, quoted when they contain commas") from None
    df = df.iloc[1:].reset_index(drop=True)
    df.columns = range(len(df.columns))
    df["_ROW"] = np.arange(2, len(df) + 2, dtype="int64")
    return header, df


#: sheet XML that python-calamine reads differently from openpyxl: error cells (``t="e"``, which
#: calamine reads as empty), ISO date cells (``t="d"``) and integers too long for a double
_CALAMINE_UNSAFE = re.compile(rb't="[ed]"|<v>-?\d{16}')
#: :data:`_CALAMINE_UNSAFE` as two literal searches and one regex with a literal prefix, which
#: find the same pieces about 6x faster than the alternation (0.1 s a 13 MB sheet; issue 14)
_CALAMINE_UNSAFE_TEXT = (b't="e"', b't="d"')
_CALAMINE_LONG_NUMBER = re.compile(rb"<v>-?\d{16}")


def _calamine_unsafe(xml: bytes) -> bool:
    """True when ``xml`` holds a match of :data:`_CALAMINE_UNSAFE`."""
    return any(t in xml for t in _CALAMINE_UNSAFE_TEXT) or _CALAMINE_LONG_NUMBER.search(xml) is not None


def _calamine_safe(path: Path) -> bool:
    """True when no worksheet of the workbook holds :data:`_CALAMINE_UNSAFE` (read in 1 MB
    pieces that overlap by more than the longest match)."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            with z.open(name) as f:
                tail = b""
                while chunk := f.read(1 << 20):
                    if _calamine_unsafe(tail + chunk):
                        return False
                    tail = chunk[-32:]
    return True


def _xlsx_rows_calamine(path: Path) -> list | None:
    """The first sheet's cells by python-calamine (about 15x faster than openpyxl on a large
    sheet), or None when the workbook holds anything calamine reads differently
    (:data:`_CALAMINE_UNSAFE`, a chart sheet first) or cannot read: openpyxl reads it then.
    Calamine gives ``""`` for an empty cell where openpyxl gives None."""
    try:
        import python_calamine
        if not _calamine_safe(path):
            return None
        wb = python_calamine.CalamineWorkbook.from_path(str(path))
        if not wb.sheets_metadata or wb.sheets_metadata[0].typ != python_calamine.SheetTypeEnum.WorkSheet:
            return None
        cells = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception:  # noqa: BLE001 - whatever calamine cannot read, openpyxl reads or reports
        return None
    return [[None if v == "" else v for v in row] for row in cells]


def _xlsx_rows_openpyxl(path: Path) -> list:
    """The first sheet's cells by openpyxl (None for an empty cell); UnreadableFile when the
    workbook is truncated or corrupt."""
    import openpyxl  # imported here: only studies with Excel extracts pay for it

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            ws = wb.worksheets[0]
            ws.reset_dimensions()  # do not trust the stored sheet size
            return list(ws.iter_rows(values_only=True))
        finally:
            wb.close()
    except Exception as exc:  # noqa: BLE001 - any failure inside a workbook means the file is unusable
        raise UnreadableFile("file.corrupt",
                             f"{path.name} is not a readable Excel workbook ({type(exc).__name__}: "
                             f"{str(exc) or 'no detail'}); the file is truncated or corrupt: re-export it") from None


def read_xlsx_file(path: Path) -> tuple[list[str], pd.DataFrame]:
    """The first sheet of an Excel workbook as text (Excel dates -> DD-MMM-YYYY, whole numbers without .0)."""
    rows = _xlsx_rows_calamine(path)
    if rows is None:
        rows = _xlsx_rows_openpyxl(path)
    while rows and all(v is None or (isinstance(v, str) and not v.strip()) for v in rows[-1]):
        rows.pop()
    if not rows:
        raise UnreadableFile("file.empty", f"{path.name} is empty (the first sheet has no header)")
    width = max(len(r) for r in rows)
    header = [cell_text(v) or "" for v in rows[0]] + [""] * (width - len(rows[0]))
    body = rows[1:]
    if any(len(r) != width for r in body):  # ragged rows (openpyxl): padded with empty cells
        body = [tuple(r) + (None,) * (width - len(r)) for r in body]
    cols = list(zip(*body)) if body else [()] * width
    # text cells (most of them) are their own text: cell_text is called for the others only
    df = pd.DataFrame({i: [v if type(v) is str else cell_text(v) for v in col] for i, col in enumerate(cols)},
                      dtype=object)
    df = df.reindex(columns=range(width))
    df["_ROW"] = np.arange(2, len(body) + 2, dtype="int64")
    header = _trim_blank_columns(header, df)
    _check_header(header, path.name)
    return header, df


def read_sas_file(path: Path) -> tuple[list[str], pd.DataFrame]:
    """A SAS7BDAT dataset as text (whole numbers without .0, SAS dates -> DD-MMM-YYYY)."""
    import pyreadstat

    try:
        raw, _meta = pyreadstat.read_sas7bdat(str(path), dates_as_pandas_datetime=True)
    except Exception as exc:  # noqa: BLE001 - pyreadstat raises several types for broken files
        raise UnreadableFile("file.corrupt",
                             f"{path.name} is not a readable SAS7BDAT dataset ({type(exc).__name__}: "
                             f"{str(exc) or 'no detail'}); the file is truncated or corrupt: re-export it") from None
    header = [str(c) for c in raw.columns]
    _check_header(header, path.name)
    out = {}
    for i, c in enumerate(raw.columns):
        s = raw[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[i] = format_dates(s)
        elif pd.api.types.is_numeric_dtype(s):
            out[i] = format_numbers(s)
        else:
            # text, or date/time objects pyreadstat left as Python values: convert each distinct value once
            codes, uniques = pd.factorize(s, use_na_sentinel=True)
            conv = np.array([cell_text(u) for u in uniques] + [None], dtype=object)
            out[i] = pd.Series(conv[codes], index=s.index, dtype=object)
    df = pd.DataFrame(out, index=raw.index).reset_index(drop=True)
    df = df.reindex(columns=range(len(header)))
    df["_ROW"] = np.arange(2, len(df) + 2, dtype="int64")
    return header, df


def strip_text(values: pd.Series) -> pd.Series:
    """Text with surrounding whitespace removed and empty cells as NaN (``str`` dtype).

    Works on the distinct values (a raw column repeats a few thousand values a million times).
    """
    return pd.Series(strip_texts([values])[0], index=values.index)


def strip_texts(columns: list[pd.Series]) -> list[pd.api.extensions.ExtensionArray]:
    """:func:`strip_text` of equally long columns (a form's), as ``str`` arrays: the distinct
    values of all of them are stripped together, so a form costs one factorisation and one
    ``str`` array instead of one per column (issue 14)."""
    n = len(columns[0]) if columns else 0
    block = np.concatenate([c.to_numpy(dtype=object) for c in columns]) if columns else np.empty(0, dtype=object)
    codes, uniques = pd.factorize(block, use_na_sentinel=True)
    table = [str(u).strip() or None for u in uniques]  # distinct values, not records
    table.append(None)  # missing
    # the str array is made (and its values checked) over the distinct values, then taken
    text = pd.array(table, dtype="str")
    return [text.take(codes[k * n:(k + 1) * n]) for k in range(len(columns))]


def _trim_blank_columns(header: list[str], df: pd.DataFrame) -> list[str]:
    """Drop unnamed trailing columns that hold no data (spreadsheets often carry them)."""
    while header and not header[-1].strip() and df[len(header) - 1].isna().all():
        df.drop(columns=len(header) - 1, inplace=True)
        header = header[:-1]
    return header


def _check_header(header: list[str], name: str) -> None:
    names = [h.strip() for h in header]
    dups = sorted({h for h in names if h and names.count(h) > 1})
    if dups:
        raise UnreadableFile("file.duplicate_column",
                             f"{name}: column {', '.join(dups)} appears more than once in the header; "
                             "each column must appear once")
    if not any(names):
        raise UnreadableFile("file.header", f"{name}: the header row has no column names")


# ---------------------------------------------------------------------------------------
# one form
# ---------------------------------------------------------------------------------------
def _spec_layout(form: str, spec: Spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The form's columns and its required columns in ``specs/raw/columns.csv`` order, once per
    loaded spec (the reader asks for every form of every study; issue 14)."""
    def layout(s: Spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
        c = s.form_columns(form)
        return tuple(c["column"]), tuple(c.loc[c["required"] == "Y", "column"])
    return per_object(spec, ("raw_form_layout", form), layout)


def normalised_frame(texts: dict[str, pd.api.extensions.ExtensionArray], columns: list[str], file_name: str,
                     rows: np.ndarray) -> pd.DataFrame:
    """The form's frame in one construction: ``columns`` in order (a column not delivered is
    empty text), then ``_FILE`` (text) and ``_ROW`` (int64, the file's row number), without the
    blank records (every delivered cell empty; a file without columns has only blank records).

    Built once from the arrays instead of adding, reordering and filtering columns one call at a
    time (issue 14).
    """
    keep = ~np.logical_and.reduce([texts[c].isna() for c in texts]) if texts else np.zeros(len(rows), dtype=bool)
    n = int(keep.sum())
    empty_text = pd.array(np.full(n, None, dtype=object), dtype="str")
    data = {c: texts[c][keep] if c in texts else empty_text.copy() for c in columns}
    data["_FILE"] = pd.array(np.full(n, file_name, dtype=object), dtype="str")
    data["_ROW"] = rows[keep].astype("int64")
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _normalise(header: list[str], df: pd.DataFrame, form: str, file_name: str, spec: Spec,
               studyid: str) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Name, strip and order the columns; drop blank records; check the spec's columns."""
    names = [h.strip() for h in header]
    data_cols = [i for i, n in enumerate(names) if n]
    for i, n in enumerate(names):  # unnamed columns (e.g. trailing commas) must hold no data
        if not n:
            s = df[i].astype("str").str.strip()
            if (s.notna() & (s != "")).any():
                raise UnreadableFile("file.header",
                                     f"{file_name}: header column {i + 1} has no name but holds data; "
                                     "every column needs its name in the first row")
    texts = dict(zip((names[i] for i in data_cols), strip_texts([df[i] for i in data_cols])))
    columns, required = _spec_layout(form, spec)
    missing_req = [c for c in required if c not in texts]
    if missing_req:
        raise UnreadableFile("file.missing_column",
                             f"{file_name}: required column{'s' if len(missing_req) > 1 else ''} "
                             f"{', '.join(missing_req)} missing from the header (see specs/raw/columns.csv)")
    notes: list[pd.DataFrame] = []
    absent = [c for c in columns if c not in texts]
    extra = [c for c in texts if c not in set(columns)]
    if absent:
        notes.append(file_finding(studyid, file_name, "file.optional_column_absent", "warning",
                                  f"{file_name}: optional column{'s' if len(absent) > 1 else ''} "
                                  f"{', '.join(absent)} not delivered (read as empty)"))
    if extra:
        notes.append(file_finding(studyid, file_name, "file.extra_column", "warning",
                                  f"{file_name}: column{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
                                  f"not in specs/raw/columns.csv for form {form} (kept, not checked)"))
    frame = normalised_frame(texts, list(columns) + extra, file_name, df["_ROW"].to_numpy())
    if frame.empty:
        if form in MANDATORY_FORMS:
            notes.append(file_finding(studyid, file_name, "file.no_records", "error",
                                      f"{file_name} has a header but no records: a study needs its {form} records"))
        else:
            notes.append(file_finding(studyid, file_name, "file.no_records", "warning",
                                      f"{file_name} has a header but no records: read as none (no {form} records)"))
    return frame, notes


def read_form(path: Path, form: str, study: Study, spec: Spec) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Read one form file; raises :class:`UnreadableFile` when it cannot be used."""
    if path.stat().st_size == 0:
        raise UnreadableFile("file.empty", f"{path.name} is empty (0 bytes)")
    ext = path.suffix.lower().lstrip(".")
    if ext == "csv":
        header, df = read_csv_file(path, study.encoding)
    elif ext == "xlsx":
        header, df = read_xlsx_file(path)
    else:
        header, df = read_sas_file(path)
    return _normalise(header, df, form, path.name, spec, study.studyid)


def read_study(raw_dir: Path, study: Study, spec: Spec) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Read every delivered form of one study from ``raw_dir/<STUDYID>/``.

    Returns ``(forms, findings)``: the readable forms by name, and the reader's findings
    (one per unusable file; warnings for absent optional or extra columns and stray files).
    A form without a file is simply absent, except mandatory forms (dm), which is an error.
    """
    sid = study.studyid
    folder = Path(raw_dir) / sid
    found: list[pd.DataFrame] = []
    forms: dict[str, pd.DataFrame] = {}
    declared = study.raw_formats
    if not folder.is_dir():
        name = f"dm.{declared.get('dm', 'csv')}"
        found.append(file_finding(sid, name, "file.missing", "error",
                                  f"no raw folder {folder} for study {sid}: nothing to validate"))
        return forms, _concat(found)
    known_files: set[str] = set()
    mandatory = mandatory_forms(study, spec)
    for form in spec.forms:
        expected = declared.get(form, "csv")
        candidates = [folder / f"{form}.{ext}" for ext in FORMATS]
        not_files = [p for p in candidates if os.path.lexists(p) and not p.is_file()]
        if not_files:
            p = not_files[0]
            what = ("a directory" if p.is_dir() else "a broken link" if p.is_symlink() and not p.exists()
                    else "not a regular file")
            found.append(file_finding(sid, p.name, "file.not_a_file", "error",
                                      f"{p.name} is {what}, not a file: form {form} cannot be read; put the "
                                      f"{form} extract there as a file"))
            known_files.update(c.name for c in candidates)
            continue
        paths = [p for p in candidates if p.is_file()]
        known_files.update(p.name for p in paths)
        if len(paths) > 1:
            found.append(file_finding(sid, paths[0].name, "file.ambiguous", "error",
                                      f"form {form} is delivered twice ({', '.join(p.name for p in paths)}); "
                                      f"keep only {form}.{expected}"))
            continue
        if not paths:
            if form in mandatory:
                found.append(file_finding(sid, f"{form}.{expected}", "file.missing", "error",
                                          f"mandatory form {form} is missing: expected {folder / f'{form}.{expected}'} "
                                          f"({study.path.name} [raw].mandatory_forms); deliver it, with its header "
                                          "only when there are no records"))
            continue
        path = paths[0]
        try:
            df, notes = read_form(path, form, study, spec)
        except UnreadableFile as exc:
            found.append(file_finding(sid, path.name, exc.check, "error", exc.message, exc.row))
            continue
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - the reader's last line of defence: one finding, no traceback
            found.append(file_finding(sid, path.name, "file.unreadable", "error",
                                      f"{path.name} cannot be read ({type(exc).__name__}: {exc})"))
            continue
        if path.suffix.lstrip(".") != expected:
            found.append(file_finding(sid, path.name, "file.format", "warning",
                                      f"form {form} delivered as {path.name}; the study parameters declare "
                                      f"{form}.{expected} ([raw].formats)"))
        found.extend(notes)
        forms[form] = df
    stray = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name not in known_files)
    for name in stray:
        found.append(file_finding(sid, name, "file.unexpected", "warning",
                                  f"{name} is not a form of specs/raw/forms.csv (expected <form>.csv, .xlsx "
                                  "or .sas7bdat); it was not read"))
    return forms, _concat(found)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        out = empty(FINDING_COLUMNS)
        out["row"] = out["row"].astype("Int64")
        return out
    return pd.concat(frames, ignore_index=True)
