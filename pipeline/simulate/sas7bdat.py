"""A small, pure-Python writer of SAS7BDAT datasets (uncompressed, 64-bit little-endian).

pyreadstat and pandas can read SAS7BDAT but neither writes it, so the simulator uses this
module to ship a raw CRF form as a SAS dataset. It writes one flavour of the format only:

* the **u64** layout (8-byte integers, 24-byte subheader pointers, 40-byte page headers),
  little-endian, "UNIX" platform byte, as written by 64-bit SAS on Linux;
* no compression, no deleted rows, no indexes;
* character variables (width = longest value in bytes, space padded) and 8-byte numeric
  variables (IEEE doubles; NaN is written as the SAS ordinary missing value ``.``);
* character data and labels encoded as **UTF-8**, declared with encoding code 20 in the
  header, so non-ASCII text (e.g. Chinese) survives a round trip through pyreadstat and
  ``pandas.read_sas``. Variable and dataset *names* are restricted to SAS V7 names
  (ASCII letters, digits, underscore; at most 32 characters), stored upper case.

Layout written (offsets are those of the u64 layout)::

    +-----------------------+  HEADER_LENGTH bytes: magic number, layout flags, encoding,
    | file header           |  dataset name, timestamps, header/page size, page count,
    +-----------------------+  release and host strings
    | page 1: mix page      |  subheader pointers, the first rows, subheaders packed from
    +-----------------------+  the page end
    | page 2..: data pages  |  packed rows right after the 40-byte page header
    +-----------------------+

Format knowledge comes from the public reverse-engineering notes "SAS7BDAT Database Binary
Format" (M. Shotwell, with u64 extensions by C. Cummins, CC BY-SA 3.0; sas7bdat R package
vignette) and the later note that row-size bytes 672..708 are (index, offset, length) text
references (BioStatMatt/sas7bdat issue #14). That the reference at 678 holds the dataset
label was established here by experiment (writing files with the label referenced from each
candidate offset and seeing which one ReadStat reports as the file label). Fields whose
meaning is unknown are written as zeros. The files are verified with two independent readers
(pyreadstat/ReadStat and pandas); they have not been checked with SAS itself.

Limits: at most MAX_COLUMNS (4095) variables (one column attributes subheader), character
values up to 32767 bytes, labels up to 256 UTF-8 bytes; all metadata sits on page 1, whose
size grows in 64 KiB steps when the metadata plus one row needs more than 64 KiB.

Things the readers do to values, so callers are not surprised:

* trailing blanks of character values are not significant in SAS and both readers strip
  them (leading blanks are kept);
* a blank character value is SAS's character missing value: pyreadstat returns ``""``,
  ``pandas.read_sas`` returns NaN (its ``blank_missing`` behaviour);
* every numeric is a double, so integer columns come back as float64.

Output is deterministic: no clock, no randomness. The header timestamps come from
``created`` or, when it is None, from ``SOURCE_DATE_EPOCH`` (seconds since 1970-01-01 UTC)
if set, else the SAS epoch 1960-01-01T00:00:00.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, DataError, PipelineError

__all__ = ["write_sas7bdat", "sas_datetime_seconds", "MAX_COLUMNS", "MAX_CHAR_WIDTH"]

# --------------------------------------------------------------------------------------
# Constants of the u64 little-endian layout
# --------------------------------------------------------------------------------------

#: 32-byte file identifier that every SAS7BDAT file starts with.
MAGIC = bytes.fromhex(
    "0000000000000000" "00000000c2ea8160" "b31411cfbd920800" "09c7318c181f1011"
)
#: Bytes 32..39: 0x33 at 32 = u64 layout (a2 = 4), 0x33 at 35 = 4 bytes of alignment padding
#: before the timestamps (a1 = 4), 0x01 at 37 = little-endian, '1' at 39 = UNIX platform.
#: The other bytes are the values observed in u64 files written on Linux.
LAYOUT_BYTES = bytes([0x33, 0x22, 0x00, 0x33, 0x33, 0x01, 0x02, 0x31])
#: Character encoding code 20 = UTF-8 (header byte 70).
ENCODING_UTF8 = 20

HEADER_LENGTH = 8192          # u64 header length observed in SAS files
PAGE_UNIT = 65536             # pages are a multiple of 64 KiB (64 KiB unless a row or metadata needs more)
PAGE_HEADER_LENGTH = 40       # page header of the u64 layout: 32 bytes + type, block count, subheader count, pad
POINTER_LENGTH = 24           # u64 subheader pointer: offset(8) length(8) compression(1) type(1) pad(6)
INT = 8                       # integer / signature width in the u64 layout

PAGE_MIX = 0x0200
PAGE_DATA = 0x0100

SIG_ROW_SIZE = struct.pack("<Q", 0x00000000F7F7F7F7)
SIG_COLUMN_SIZE = struct.pack("<Q", 0x00000000F6F6F6F6)
SIG_COUNTS = struct.pack("<q", -1024)
SIG_COLUMN_TEXT = struct.pack("<q", -3)
SIG_COLUMN_NAME = struct.pack("<q", -1)
SIG_COLUMN_ATTRS = struct.pack("<q", -4)
SIG_FORMAT_LABEL = struct.pack("<q", -1026)

#: subheader pointer "type" byte: 0 for row size, column size, counts, format/label;
#: 1 for column text, column name, column attributes (and column list).
ST_FIXED, ST_VARIABLE = 0, 1

#: SAS ordinary missing value "." as stored on IEEE little-endian hosts (0xFFFFFE0000000000).
SAS_MISSING = struct.pack("<Q", 0xFFFFFE0000000000)
SAS_EPOCH = datetime(1960, 1, 1)
UNIX_EPOCH = datetime(1970, 1, 1)

SAS_RELEASE = b"9.0401M6"     # release string in the form readers parse (d.ddddMd)
SAS_HOST = b"Linux"
OS_NAME = b"x86_64"

MAX_CHAR_WIDTH = 32767        # longest SAS character variable, in bytes
MAX_LABEL_BYTES = 256         # SAS label limit, enforced on the UTF-8 bytes
MAX_BLOCKS = 65535            # page block count and subheader count are 2-byte fields
MAX_COLUMNS = 4095            # one column attributes subheader: 8 + 16*n must fit its 2-byte length field
MAX_TEXT_BLOB = 32752         # bytes of one column text subheader after its signature
FIRST_TEXT_START = 36         # first free offset in text block 0: size, pad, compression, creator proc
NEXT_TEXT_START = 12          # first free offset in later text blocks
TEXT_TAIL = 12                # zero tail: the text size field counts QL - 20, i.e. 12 bytes fewer than the block

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def _align(n: int, k: int = 8) -> int:
    return (n + k - 1) // k * k


# --------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------

def sas_datetime_seconds(created: datetime | None) -> float:
    """Seconds since 1960-01-01T00:00:00, the SAS datetime used for the header timestamps.

    ``created`` naive is taken as is; timezone-aware is converted to UTC first. When it is
    None, ``SOURCE_DATE_EPOCH`` (reproducible-builds convention: integer seconds since
    1970-01-01 UTC) is used if set, else 0.0 (1960-01-01).
    """
    if created is None:
        env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if not env:
            return 0.0
        try:
            epoch = int(env)
        except ValueError:
            raise ConfigError(f"SOURCE_DATE_EPOCH must be an integer number of seconds, got {env!r}") from None
        created = UNIX_EPOCH + timedelta(seconds=epoch)
    if created.tzinfo is not None:
        created = created.astimezone(timezone.utc).replace(tzinfo=None)
    return (created - SAS_EPOCH).total_seconds()


# --------------------------------------------------------------------------------------
# Columns and the column text store
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextRef:
    """Where a string lives: text block ``index``, byte ``offset`` from the end of that
    column text subheader's signature, ``length`` in bytes. (0, 0, 0) means "no text"."""

    index: int = 0
    offset: int = 0
    length: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HHH", self.index, self.offset, self.length)


@dataclass(frozen=True)
class Column:
    """One variable: SAS name, label, kind ('num' or 'char'), width and offset in the row."""

    name: str
    label: str
    kind: str
    width: int
    offset: int
    name_ref: TextRef
    label_ref: TextRef


class TextStore:
    """Packs names and labels into column text blocks.

    A column text subheader is the signature followed by a block whose first two bytes are
    its size; strings start at 4-byte aligned offsets inside the block. Block 0 reserves
    bytes 12..36 (compression literal at 12, creator PROC name at 28; all zero here, i.e.
    uncompressed). When a block would exceed MAX_TEXT_BLOB a new block (and subheader) is
    started. The dataset label is added first, so it sits at offset 36 of block 0.
    """

    def __init__(self) -> None:
        self.blocks: list[bytearray] = [bytearray(FIRST_TEXT_START)]

    def add(self, text: bytes) -> TextRef:
        if not text:
            return TextRef()
        block = self.blocks[-1]
        start = _align(len(block), 4)
        if start + len(text) + TEXT_TAIL > MAX_TEXT_BLOB:
            block = bytearray(NEXT_TEXT_START)
            self.blocks.append(block)
            start = NEXT_TEXT_START
        block.extend(b"\x00" * (start - len(block)))
        block.extend(text)
        return TextRef(len(self.blocks) - 1, start, len(text))


# --------------------------------------------------------------------------------------
# Validation and row encoding (vectorised over rows)
# --------------------------------------------------------------------------------------

def _sas_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"SAS7BDAT {what} {name!r} is not a SAS name (letter or _, then letters, "
                          "digits or _, at most 32 characters)")
    return name.upper()


def _label_bytes(label: object, what: str) -> bytes:
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return b""
    if not isinstance(label, str):
        raise ConfigError(f"SAS7BDAT {what} label must be text, got {label!r}")
    try:
        raw = label.rstrip(" ").encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"SAS7BDAT {what} label {label!r} cannot be encoded as UTF-8") from None
    if len(raw) > MAX_LABEL_BYTES:
        raise ConfigError(f"SAS7BDAT {what} label is {len(raw)} bytes in UTF-8, more than {MAX_LABEL_BYTES}")
    return raw


def _column_kind(series: pd.Series) -> str:
    """'num' for numeric dtypes, 'char' for str/object columns holding only text or missing."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise DataError(f"SAS7BDAT column {series.name!r}: boolean columns are not supported "
                        "(convert to text or 0/1 first)")
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "num"
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("string", "empty"):
            return "char"
        raise DataError(f"SAS7BDAT column {series.name!r}: object column holds {kind} values, "
                        "only text (or missing) is supported")
    raise DataError(f"SAS7BDAT column {series.name!r}: dtype {dtype} is not supported "
                    "(use text or numeric columns)")


def _numeric_bytes(series: pd.Series) -> np.ndarray:
    """(n, 8) uint8: little-endian doubles, NaN/NA written as the SAS missing value."""
    values = pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(values).any():
        raise DataError(f"SAS7BDAT column {series.name!r}: infinite values cannot be stored in SAS")
    out = np.ascontiguousarray(values.astype("<f8")).view(np.uint8).reshape(len(values), 8).copy()
    out[np.isnan(values)] = np.frombuffer(SAS_MISSING, dtype=np.uint8)
    return out


def _char_bytes(series: pd.Series) -> np.ndarray:
    """(n, width) uint8: UTF-8 bytes padded with blanks; missing written as blanks."""
    text = series.astype(object).where(series.notna(), "")
    try:
        encoded = text.str.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"SAS7BDAT column {series.name!r}: value cannot be encoded as UTF-8 ({exc.reason})") from None
    lengths = encoded.str.len().to_numpy(dtype="int64") if len(encoded) else np.zeros(0, dtype="int64")
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    if width > MAX_CHAR_WIDTH:
        raise DataError(f"SAS7BDAT column {series.name!r}: a value is {width} bytes in UTF-8, "
                        f"more than the SAS maximum of {MAX_CHAR_WIDTH}")
    fixed = np.array(encoded.tolist(), dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width).copy()
    fixed[np.arange(width)[None, :] >= lengths[:, None]] = 0x20
    return fixed


def _build_columns(df: pd.DataFrame, store: TextStore) -> tuple[list[Column], np.ndarray]:
    """Validate the frame, register names/labels in ``store`` and pack the rows.

    Physical order inside a row: numeric variables first (so every double is 8-byte
    aligned), then character variables; the row length is padded to a multiple of 8.
    The logical (reading) order is the frame's column order.
    """
    if df.shape[1] == 0:
        raise DataError("SAS7BDAT: the frame has no columns")
    if df.shape[1] > MAX_COLUMNS:
        raise DataError(f"SAS7BDAT: {df.shape[1]} columns, this writer supports at most {MAX_COLUMNS}")
    labels = df.attrs.get("column_labels", {}) or {}
    names = [_sas_name(c, "column name") for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"SAS7BDAT: column names not unique when upper-cased: {', '.join(dupes)}")

    blocks: list[np.ndarray] = []
    kinds: list[str] = []
    for col in df.columns:
        series = df[col]
        kind = _column_kind(series)
        kinds.append(kind)
        blocks.append(_numeric_bytes(series) if kind == "num" else _char_bytes(series))

    order = [i for i, k in enumerate(kinds) if k == "num"] + [i for i, k in enumerate(kinds) if k == "char"]
    offsets: dict[int, int] = {}
    pos = 0
    for i in order:
        offsets[i] = pos
        pos += blocks[i].shape[1]
    row_length = _align(pos)

    columns = []
    for i, (col, name) in enumerate(zip(df.columns, names)):
        label = _label_bytes(labels.get(col, labels.get(name)), f"column {name}")
        name_ref = store.add(name.encode("ascii"))
        label_ref = store.add(label)
        columns.append(Column(name, label.decode("utf-8"), kinds[i], blocks[i].shape[1], offsets[i],
                              name_ref, label_ref))

    rows = np.zeros((len(df), row_length), dtype=np.uint8)
    for i in order:
        rows[:, offsets[i]:offsets[i] + blocks[i].shape[1]] = blocks[i]
    return columns, rows


# --------------------------------------------------------------------------------------
# Subheaders (u64 layout). Each function returns the subheader bytes; its length is QL.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Numbers several subheaders refer to, computed before any of them is built."""

    row_length: int
    row_count: int
    column_count: int
    page_size: int
    page_count: int
    rows_per_page: int
    mix_page_rows: int
    text_count: int
    meta_subheader_count: int
    last_page_blocks: int
    max_name: int
    max_label: int
    file_label_ref: TextRef


def row_size_subheader(lay: Layout) -> bytes:
    """Row size subheader (signature F7F7F7F7, 808 bytes in u64).

    Offsets used: 40 row length RL; 48 total row count; 72/80 number of column format and
    label subheaders on the first/second page where they appear; 104 page size; 120 rows on
    the "mix" page (the most that fit after the metadata); 128..143 sixteen FF bytes (end of the
    initial part); 528/536 number of pages with subheader data and the number of subheaders
    on the last of them (544/552 repeat them, the count + 2 as observed); 560/568 page count
    and block count of the last page; 672..707 six (index, offset, length) text references
    into the column text: the one at 678 is the dataset label (its length is the field
    Shotwell calls LCS; Stat/Transfer stores its name there), the compression literal (690)
    and creator PROC (702) references stay zero, i.e. uncompressed, no creator strings;
    748 number of column text subheaders; 750/752 longest variable name and label; 766 rows
    on a full data page. Everything else is zero.
    """
    b = bytearray(808)
    b[0:8] = SIG_ROW_SIZE
    struct.pack_into("<qq", b, 40, lay.row_length, lay.row_count)
    struct.pack_into("<qq", b, 72, lay.column_count, 0)
    struct.pack_into("<q", b, 104, lay.page_size)
    struct.pack_into("<q", b, 120, lay.mix_page_rows)
    b[128:144] = b"\xff" * 16
    b[678:684] = lay.file_label_ref.pack()
    struct.pack_into("<qH", b, 528, 1, lay.meta_subheader_count)
    struct.pack_into("<qH", b, 544, 1, lay.meta_subheader_count + 2)
    struct.pack_into("<qH", b, 560, lay.page_count, lay.last_page_blocks)
    struct.pack_into("<HHH", b, 748, lay.text_count, lay.max_name, lay.max_label)
    struct.pack_into("<H", b, 766, lay.rows_per_page)
    return bytes(b)


def column_size_subheader(column_count: int) -> bytes:
    """Column size subheader (signature F6F6F6F6, 24 bytes): number of columns at offset 8."""
    return SIG_COLUMN_SIZE + struct.pack("<qq", column_count, 0)


def subheader_counts_subheader(text_positions: list[int], name_position: int, attrs_position: int) -> bytes:
    """Subheader counts subheader (signature -1024, 600 bytes in u64).

    Offset 16 holds 4 and offset 24 holds 7 (values observed in SAS files); from offset 120,
    twelve 40-byte count vectors: signature, page of the first occurrence, its 1-based pointer
    position on that page, page of the last occurrence, its position. The first seven
    signatures are always -4 (column attributes), -3 (column text), -1 (column name),
    -2 (column list), -5, -6, -7; page 0 means "not present". All metadata of this writer
    sits on page 1.
    """
    b = bytearray(600)
    b[0:8] = SIG_COUNTS
    struct.pack_into("<q", b, 16, 4)
    struct.pack_into("<H", b, 24, 7)
    where = {-4: (attrs_position, attrs_position), -3: (text_positions[0], text_positions[-1]),
             -1: (name_position, name_position)}
    for k, sig in enumerate([-4, -3, -1, -2, -5, -6, -7]):
        base = 120 + 40 * k
        struct.pack_into("<q", b, base, sig)
        if sig in where:
            first, last = where[sig]
            struct.pack_into("<qH", b, base + 8, 1, first)
            struct.pack_into("<qH", b, base + 24, 1, last)
    return bytes(b)


def column_text_subheader(block: bytearray) -> bytes:
    """Column text subheader (signature -3).

    Layout: signature (8), then the text block: 2-byte size field, strings at the offsets the
    text references give, and a zero tail. The size field holds QL - 20 (what readers check),
    which is 12 bytes less than the block, hence the 12-byte zero tail; the subheader is
    padded to a multiple of 8.
    """
    body = bytearray(block)
    body.extend(b"\x00" * (_align(len(body) + TEXT_TAIL) - len(body)))
    ql = INT + len(body)
    struct.pack_into("<H", body, 0, ql - 20)
    return SIG_COLUMN_TEXT + bytes(body)


def column_name_subheader(columns: list[Column]) -> bytes:
    """Column name subheader (signature -1): 2-byte remaining length (QL - 20) at offset 8,
    then from offset 16 one 8-byte pointer per column (text index, offset, length, 2 zero
    bytes), then 12 zero bytes. QL = 28 + 8 * NCOL."""
    ql = 28 + 8 * len(columns)
    b = bytearray(ql)
    b[0:8] = SIG_COLUMN_NAME
    struct.pack_into("<H", b, 8, ql - 20)
    for i, c in enumerate(columns):
        b[16 + 8 * i:22 + 8 * i] = c.name_ref.pack()
    return bytes(b)


def column_attributes_subheader(columns: list[Column]) -> bytes:
    """Column attributes subheader (signature -4): 2-byte remaining length (QL - 20) at 8,
    then from offset 16 one 16-byte vector per column: offset in the row (8), width (4),
    name-length flag (2: 4 when the name has at most 8 characters, else 2048), type (1:
    1 = numeric, 2 = character), 1 zero byte; then 12 zero bytes. QL = 28 + 16 * NCOL."""
    ql = 28 + 16 * len(columns)
    b = bytearray(ql)
    b[0:8] = SIG_COLUMN_ATTRS
    struct.pack_into("<H", b, 8, ql - 20)
    for i, c in enumerate(columns):
        flag = 4 if len(c.name) <= 8 else 2048
        struct.pack_into("<qiHB", b, 16 + 16 * i, c.offset, c.width, flag, 1 if c.kind == "num" else 2)
    return bytes(b)


def format_label_subheader(column: Column) -> bytes:
    """Column format and label subheader (signature -1026, 64 bytes in u64), one per column:
    text reference of the format at 46 (none here) and of the label at 52."""
    b = bytearray(64)
    b[0:8] = SIG_FORMAT_LABEL
    b[46:52] = TextRef().pack()
    b[52:58] = column.label_ref.pack()
    return bytes(b)


# --------------------------------------------------------------------------------------
# Pages and file header
# --------------------------------------------------------------------------------------

def _page_header(page: bytearray, page_type: int, blocks: int, subheaders: int) -> None:
    """Page header: bytes 0..31 unknown (zero), 32 page type, 34 data block count
    (subheaders + rows), 36 subheader pointer count, 38 zero."""
    struct.pack_into("<HHH", page, 32, page_type, blocks, subheaders)


def mix_page(subheaders: list[tuple[bytes, int]], rows: np.ndarray, page_size: int) -> bytes:
    """Page of type 'mix' (page 1): subheader pointers from offset 40, then the first rows
    (40 + 24 * SC is always a multiple of 8, so no alignment gap), and the subheaders
    themselves packed downward from the end of the page, each on an 8-byte boundary. A
    pointer is offset (8), length QL (8), compression (0 = none), type byte, six zero bytes.
    Block count = subheaders + rows. SAS writes its first page this way; a file whose only
    page is a pure 'meta' page (no rows) is not readable by pandas, a mix page with 0 rows is.
    """
    page = bytearray(page_size)
    _page_header(page, PAGE_MIX, len(subheaders) + rows.shape[0], len(subheaders))
    raw = rows.tobytes()
    first_row = PAGE_HEADER_LENGTH + POINTER_LENGTH * len(subheaders)
    page[first_row:first_row + len(raw)] = raw
    end = page_size
    for k, (data, st) in enumerate(subheaders):
        start = (end - len(data)) // 8 * 8
        page[start:start + len(data)] = data
        struct.pack_into("<qqBB", page, PAGE_HEADER_LENGTH + POINTER_LENGTH * k, start, len(data), 0, st)
        end = start
    return bytes(page)


def data_page(rows: np.ndarray, page_size: int) -> bytes:
    """Page of type 'data': the packed rows start right after the 40-byte page header; the
    block count is the number of rows on the page."""
    page = bytearray(page_size)
    _page_header(page, PAGE_DATA, rows.shape[0], 0)
    raw = rows.tobytes()
    page[PAGE_HEADER_LENGTH:PAGE_HEADER_LENGTH + len(raw)] = raw
    return bytes(page)


def file_header(table_name: str, stamp: float, page_size: int, page_count: int) -> bytes:
    """The HEADER_LENGTH-byte file header (u64, a1 = a2 = 4).

    0 magic; 32 layout bytes (repeated at 56); 70 encoding code; 84 'SAS FILE'; 92 dataset
    name (64 bytes, blank padded); 156 'DATA    '; 164 four alignment bytes; 168 created and
    176 modified timestamps (doubles, seconds since 1960); 200 header length (4); 204 page
    size (4); 208 page count (8); 224 SAS release; 232 host; 248 OS version; 264 OS maker;
    280 OS name (16 bytes each). Everything else is zero.
    """
    h = bytearray(HEADER_LENGTH)
    h[0:32] = MAGIC
    h[32:40] = LAYOUT_BYTES
    h[56:64] = LAYOUT_BYTES
    h[70] = ENCODING_UTF8
    h[84:92] = b"SAS FILE"
    h[92:156] = table_name.encode("ascii").ljust(64, b" ")
    h[156:164] = b"DATA    "
    struct.pack_into("<dd", h, 168, stamp, stamp)
    struct.pack_into("<iiq", h, 200, HEADER_LENGTH, page_size, page_count)
    h[224:232] = SAS_RELEASE
    h[232:248] = SAS_HOST.ljust(16, b"\x00")
    h[280:296] = OS_NAME.ljust(16, b"\x00")
    return bytes(h)


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------

def write_sas7bdat(df: pd.DataFrame, path: Path, table_name: str = "DATA", label: str = "",
                   created: datetime | None = None) -> None:
    """Write ``df`` to ``path`` as an uncompressed u64 little-endian SAS7BDAT file.

    Columns: numeric dtypes (int, float, nullable Int64/Float64) become 8-byte numeric
    variables, NaN/NA the SAS missing value; str/object columns holding only text become
    character variables as wide as their longest UTF-8 value (at least 1), missing written
    as blanks. Column names must be SAS names (at most 32 characters) and are stored upper
    case; labels come from ``df.attrs["column_labels"]`` (keyed by column name), at most 256
    UTF-8 bytes. ``table_name`` is the dataset name (a SAS name), ``label`` the dataset label.
    Header timestamps: see :func:`sas_datetime_seconds`. Identical input gives identical bytes.

    Raises ConfigError for bad names or labels, DataError for unsupported columns or values,
    PipelineError when the file cannot be written.
    """
    name = _sas_name(table_name, "dataset name")
    stamp = sas_datetime_seconds(created)
    store = TextStore()
    file_label_ref = store.add(_label_bytes(label, "dataset"))
    columns, rows = _build_columns(df, store)

    ncol, nrow, row_length = len(columns), rows.shape[0], rows.shape[1]
    text_count = len(store.blocks)
    # pointer positions (1-based) on page 1
    text_positions = list(range(4, 4 + text_count))
    name_position = 4 + text_count
    attrs_position = name_position + 1
    meta_count = 5 + text_count + ncol

    texts = [column_text_subheader(b) for b in store.blocks]
    names_sh = column_name_subheader(columns)
    attrs_sh = column_attributes_subheader(columns)
    formats = [format_label_subheader(c) for c in columns]
    sizes = [808, 24, 600] + [len(t) for t in texts] + [len(names_sh), len(attrs_sh)] + [len(f) for f in formats]
    meta_need = PAGE_HEADER_LENGTH + POINTER_LENGTH * meta_count + sum(_align(s) for s in sizes)
    # page 1 must hold all metadata and at least one row (pandas reads one row from a mix page
    # before checking the count), so the page grows in 64 KiB steps when needed
    page_size = _align(meta_need + row_length, PAGE_UNIT)
    # block counts are 2-byte fields, hence the 65535 caps
    mix_max = min((page_size - meta_need) // row_length, MAX_BLOCKS - meta_count)
    mix_rows = min(nrow, mix_max)
    rows_per_page = min((page_size - PAGE_HEADER_LENGTH) // row_length, MAX_BLOCKS)
    data_pages = -(-(nrow - mix_rows) // rows_per_page)
    page_count = 1 + data_pages
    if data_pages:
        last_blocks = nrow - mix_rows - (data_pages - 1) * rows_per_page
    else:
        last_blocks = meta_count + mix_rows

    lay = Layout(row_length=row_length, row_count=nrow, column_count=ncol, page_size=page_size,
                 page_count=page_count, rows_per_page=rows_per_page, mix_page_rows=mix_max,
                 text_count=text_count,
                 meta_subheader_count=meta_count, last_page_blocks=last_blocks,
                 max_name=max(len(c.name) for c in columns),
                 max_label=max(c.label_ref.length for c in columns), file_label_ref=file_label_ref)
    subheaders = ([(row_size_subheader(lay), ST_FIXED), (column_size_subheader(ncol), ST_FIXED),
                   (subheader_counts_subheader(text_positions, name_position, attrs_position), ST_FIXED)]
                  + [(t, ST_VARIABLE) for t in texts]
                  + [(names_sh, ST_VARIABLE), (attrs_sh, ST_VARIABLE)]
                  + [(f, ST_FIXED) for f in formats])

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(file_header(name, stamp, page_size, page_count))
            fh.write(mix_page(subheaders, rows[:mix_rows], page_size))
            for start in range(mix_rows, nrow, rows_per_page):
                fh.write(data_page(rows[start:start + rows_per_page], page_size))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PipelineError(f"cannot write SAS7BDAT file {path}: {exc.strerror or exc}") from None
