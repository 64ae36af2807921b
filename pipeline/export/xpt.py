"""SAS transport (XPT) version 5 files, one per dataset, written with numpy (SAS TS-140 layout).

What the FDA Study Data Technical Conformance Guide asks of a v5 transport file, and how it is met:

- file name = lower-case dataset name (``dm.xpt``); member name = upper-case dataset name;
- dataset label from ``specs/sdtm/datasets.csv``; variable labels from the spec;
- variables in spec order, rows sorted by the dataset's keys (``datasets.csv`` ``keys``);
- character variables as wide as their longest value actually present (at least 1), never
  a blanket 200; numerics 8 bytes;
- names <= 8, labels <= 40, values <= 200 characters, printable ASCII only: a violation
  raises :class:`~pipeline.errors.DataError` naming the variable (the output checks report
  these as findings before export, so this is the last line of defence).

The file (:func:`write_xpt`), every part a sequence of 80-byte records:

1. **Headers** (:func:`header_bytes`): the library header (3 records, with the created and
   modified stamps ``ddMMMyy:hh:mm:ss``), the member and descriptor headers (5 records: data
   set name, stamps, data set label, NAMESTR count), one 140-byte NAMESTR record per variable
   (:func:`namestr`: type, length, number, name, label, display format, position), blank-padded
   to a whole record, and the OBS header line.
2. **Records** (:func:`observation_bytes`): each record is the variables side by side,
   character values blank-padded to the variable's width (each distinct value encoded once),
   numerics as 8-byte IBM System/370 doubles computed with integer arithmetic
   (:func:`ibm_doubles`), missing as SAS ``.`` (``0x2E`` then seven zero bytes); the last
   80-byte record is blank-padded. Built in chunks of :data:`CHUNK_ROWS` records (numpy
   arrays, no Python work per record).

Determinism: both stamps are :func:`build_timestamp` (``SOURCE_DATE_EPOCH`` when set, else the
study's data cut-off at 00:00:00), so a rebuild is byte-identical.

The result is byte-identical to ``pyreadstat.write_xport`` of the same frame, the tests' oracle
(:func:`write_xpt_pyreadstat`; proved for every XPT file of a built shipped study, SDTM and
ADaM, and for generated frames in ``tests/test_xpt_writer.py``), and about 4 times faster on
large datasets. One deliberate difference: a numeric value that the writers cannot store exactly
(NaN is missing and fine; +-inf, or a non-zero magnitude outside 5.4e-79 up to 9.0e74, IEEE
subnormals included, see :func:`ibm_doubles`) raises :class:`~pipeline.errors.DataError` naming
the dataset, the variable and the record, before the file is opened, where pyreadstat would
silently write the largest IBM number (for inf) or 0 (for tiny values).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.export.memo import per_object
from pipeline.spec import NUMERIC_TYPES, Spec

MAX_NAME = 8
MAX_LABEL = 40
MAX_VALUE = 200
_STAMP_RE = re.compile(rb"^\d{2}[A-Z]{3}\d{2}:\d{2}:\d{2}:\d{2}$")
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
RECORD = 80
_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
#: a text value made only of printable ASCII (0x20-0x7E): ``printable_ascii(text)`` is a match or None
printable_ascii = re.compile(r"[\x20-\x7e]*").fullmatch


def source_date_epoch() -> datetime | None:
    """``SOURCE_DATE_EPOCH`` (integer seconds since 1970-01-01 UTC, the reproducible-builds
    convention) as a naive UTC datetime, or None when it is unset or empty."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), tz=UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        raise DataError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None


def creation_time() -> datetime:
    """When the files of this build are created: ``SOURCE_DATE_EPOCH`` when set (a fixed clock,
    so that a rebuild is byte-identical), else the current UTC time to the second."""
    fixed = source_date_epoch()
    return fixed if fixed is not None else datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def cutoff_time(data_cutoff: str) -> datetime:
    """The study's data cut-off (``YYYY-MM-DD``) at 00:00:00."""
    try:
        return datetime.strptime(str(data_cutoff)[:10], "%Y-%m-%d")
    except ValueError:
        raise DataError(f"data_cutoff {data_cutoff!r} is not a YYYY-MM-DD date") from None


def build_timestamp(data_cutoff: str) -> datetime:
    """The reproducible stamp of the XPT headers (and of define.xml, listings, ADaM):
    ``SOURCE_DATE_EPOCH`` when set, else the data cut-off date (UTC)."""
    fixed = source_date_epoch()
    return fixed if fixed is not None else cutoff_time(data_cutoff)


def sas_stamp(ts: datetime) -> bytes:
    """``ddMMMyy:hh:mm:ss`` as in the XPT v5 headers."""
    return f"{ts.day:02d}{_MONTHS[ts.month - 1]}{ts.year % 100:02d}:{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}".encode("ascii")


def _is_export_text(s: pd.Series) -> bool:
    """True when a character column is already as written: object dtype, every value a ``str``
    (the convention of the domain modules and what :func:`xpt_frame` returns)."""
    return s.dtype == object and pd.api.types.infer_dtype(s.to_numpy(), skipna=False) in ("string", "empty")


def export_text(s: pd.Series) -> np.ndarray:
    """A character variable's values as written: an object array of ``str``, ``""`` for missing.
    A column already in that form (:func:`_is_export_text`) is returned without a copy."""
    if _is_export_text(s):
        return s.to_numpy()
    return _as_export_text(s)


def _as_export_text(s: pd.Series) -> np.ndarray:
    """:func:`export_text` of a column that is not in export form (checked by the caller)."""
    if isinstance(s.dtype, pd.StringDtype):
        return s.to_numpy(dtype=object, na_value="")
    return s.astype("object").where(s.notna(), "").astype(str).to_numpy(dtype=object)


def spec_types(spec: Spec, name: str) -> MappingProxyType:
    """Variable -> spec ``type`` of one dataset (read-only), made once per spec and dataset:
    the writers and define.xml ask for it for every dataset (``spec.vars`` copies its frame)."""
    def types(s: Spec) -> MappingProxyType:
        v = s.vars(name)
        return MappingProxyType(dict(zip(v["variable"], v["type"])))
    return per_object(spec, ("variable_types", name), types)


def xpt_frame(frame: pd.DataFrame, spec: Spec, name: str) -> pd.DataFrame:
    """The frame as written: spec variables in spec order (those present), character columns
    as object with ``""`` for missing, numerics float64, a 0..n-1 index. Idempotent and cheap on
    a frame that is already in this form (the writers and define.xml call it on exported frames).

    Columns already in export form are not copied: they are taken as pandas Series into a frame
    built with ``copy=False``, which pandas' copy-on-write tracks (a later change to either
    frame copies the column then), and the frame is not consolidated into one 2-D block.

    A frame :func:`write_xpt` returned for this spec and dataset (:func:`_written_for`) is in
    this form by construction: its shallow copy is returned without its columns being looked at
    again (define.xml asks for every exported dataset, ~40 a study)."""
    if _written_for(frame, spec, name):
        return frame.copy(deep=False)
    types = spec_types(spec, name)
    cols = [c for c in types if c in frame.columns]
    out = {}
    converted = {}  # the columns not yet as written
    for c in cols:  # loop over variables
        s = frame[c]
        if types[c] in NUMERIC_TYPES:
            out[c] = s if s.dtype == np.float64 else pd.to_numeric(s, errors="raise").astype("float64")
        elif _is_export_text(s):
            out[c] = s
        else:
            out[c] = pd.Series(_as_export_text(s), dtype=object, index=s.index)
        if out[c] is not s:
            converted[c] = out[c]
    if not cols:
        return pd.DataFrame(index=range(len(frame)))
    if cols == list(frame.columns) and isinstance(frame.index, pd.RangeIndex) and \
            frame.index.equals(pd.RangeIndex(len(frame))):
        # the variables already in place (an exported frame, read again by define.xml; the
        # frames of checks.order_dataset): a shallow copy with the converted columns set, not a
        # new frame assembled from its columns (~2.5 ms a dataset, ~80 times a study)
        result = frame.copy(deep=False)
        for c, values in converted.items():  # the converted variables
            result[c] = values
        return result
    result = pd.DataFrame(out, columns=cols, copy=False)
    if not result.index.equals(pd.RangeIndex(len(result))):
        result = result.reset_index(drop=True)
    return result


def _longest(distinct) -> int:
    """Length of the longest of some distinct ``str`` values, at least 1."""
    return max([1, *map(len, distinct)])


def observed_lengths(frame: pd.DataFrame, spec: Spec, name: str) -> dict[str, int]:
    """Length of each variable as exported: character = longest value present (min 1);
    numeric = 8 (XPT storage). The define.xml writer uses the same numbers."""
    types = spec_types(spec, name)
    out = {}
    for c in frame.columns:
        if types.get(c) in NUMERIC_TYPES:
            out[c] = 8
        else:
            out[c] = _longest(pd.unique(export_text(frame[c])))
    return out


def xpt_problems(frame: pd.DataFrame, spec: Spec, name: str, distinct: dict | None = None) -> list[str]:
    """XPT v5 limits violated by the frame (one line each, naming the variable).
    ``distinct`` (variable -> its distinct values) saves recomputing them."""
    problems = []
    if len(name) > MAX_NAME:
        problems.append(f"{name}: dataset name longer than {MAX_NAME}")
    ds_label = str(spec.dataset(name)["label"])
    if len(ds_label) > MAX_LABEL or not ds_label.isascii():
        problems.append(f"{name}: dataset label {ds_label!r} over {MAX_LABEL} characters or not ASCII")
    labels = spec.labels(name)
    for c, dtype in zip(frame.columns, frame.dtypes):  # loop over variables; a column is taken only without its distinct values
        if len(c) > MAX_NAME or not _NAME_RE.fullmatch(c):
            problems.append(f"{name}.{c}: variable name must be upper case, at most {MAX_NAME} characters")
        lab = labels.get(c, "")
        if len(lab) > MAX_LABEL or not lab.isascii():
            problems.append(f"{name}.{c}: label {lab!r} over {MAX_LABEL} characters or not ASCII")
        if not pd.api.types.is_numeric_dtype(dtype):
            problems += _value_problems(name, c, distinct[c] if distinct and c in distinct else pd.unique(frame[c]))
    return problems


def _value_problems(name: str, c: str, uniq) -> list[str]:
    """The length and ASCII problems of one character variable, from its distinct values: the
    first value over 200 characters and the first with a non-ASCII or control character."""
    uniq = np.asarray(uniq, dtype=object)
    problems = []
    if pd.api.types.infer_dtype(uniq, skipna=False) in ("string", "empty"):
        # every distinct value a str (export form): C-level map over the distinct values
        n = len(uniq)
        long = np.flatnonzero(np.fromiter(map(len, uniq), dtype=np.int64, count=n) > MAX_VALUE)
        bad = np.flatnonzero(~np.fromiter(map(printable_ascii, uniq), dtype=bool, count=n))
        first_long = uniq[long[0]] if len(long) else None
        first_bad = uniq[bad[0]] if len(bad) else None
    else:
        text = pd.Series(uniq, dtype=object).astype(str)
        long_values = text[text.str.len() > MAX_VALUE]
        bad_values = text[text.str.contains(r"[^\x20-\x7e]", regex=True)]
        first_long = long_values.iloc[0] if len(long_values) else None
        first_bad = bad_values.iloc[0] if len(bad_values) else None
    if first_long is not None:
        problems.append(f"{name}.{c}: value longer than {MAX_VALUE} characters: {first_long[:40]!r}...")
    if first_bad is not None:
        problems.append(f"{name}.{c}: value with a non-ASCII or control character: {first_bad[:60]!r}")
    return problems


def _stamp_positions(head: bytes, where: str) -> list[int]:
    """Byte offsets of the four created/modified stamps in a v5 file's headers.

    v5 layout (80-byte records): record 1 is the library header line; record 2 holds the
    created stamp in bytes 64-80 and record 3 the modified stamp in bytes 0-16. The member
    descriptor header line is followed by a record with the created stamp in bytes 64-80 and
    one with the modified stamp in bytes 0-16.
    """
    hit = head.find(b"HEADER RECORD*******DSCRPTR HEADER RECORD")
    if hit < 0:
        raise DataError(f"{where}: no member descriptor header in the XPT file")
    positions = [RECORD + 64, 2 * RECORD, hit + RECORD + 64, hit + 2 * RECORD]
    for pos in positions:
        current = head[pos:pos + 16]
        if not _STAMP_RE.match(current):
            raise DataError(f"{where}: unexpected XPT header layout at byte {pos} ({current!r})")
    return positions


def stamped(head: bytes, ts: datetime, where: str = "XPT header") -> bytes:
    """``head`` (the start of a v5 file) with its created/modified stamps set to ``ts``."""
    out = bytearray(head)
    stamp = sas_stamp(ts)
    for pos in _stamp_positions(head, where):
        out[pos:pos + 16] = stamp
    return bytes(out)


def patch_timestamps(path: Path, ts: datetime) -> None:
    """Overwrite the created/modified stamps of a v5 file's headers with ``ts`` (in place)."""
    stamp = sas_stamp(ts)
    with open(path, "r+b") as fh:
        # one member per file: the headers are within the first 8 records (library 3, member 5)
        head = fh.read(8 * RECORD)
        for pos in _stamp_positions(head, str(path)):
            fh.seek(pos)
            fh.write(stamp)


# ---------------------------------------------------------------------------------------
# headers: library, member, NAMESTR and OBS records (SAS TS-140)
# ---------------------------------------------------------------------------------------
NAMESTR = 140
#: the fixed first 48 bytes of a header record, then its 32 bytes of digits and blanks
_HEADER = "HEADER RECORD*******{:<8}HEADER RECORD!!!!!!!{}  "
#: what the header records say wrote the file (the identification pyreadstat (ReadStat) uses too:
#: SAS version 6.06 on bsd4.2; SAS and readers ignore it, but it is part of the bytes compared)
_SAS_VERSION, _SAS_OS = "6.06", "bsd4.2"
_FORMAT_RE = re.compile(r"^(\$?[A-Z_][A-Z0-9_]*?)?(\d*)\.(\d*)$")


def _record(text: str | bytes) -> bytes:
    """One 80-byte header record: ``text`` (ASCII) blank-padded; longer text is a bug here."""
    data = text.encode("ascii") if isinstance(text, str) else text
    if len(data) > RECORD:
        raise ValueError(f"header record longer than {RECORD} bytes: {data[:20]!r}...")
    return data.ljust(RECORD, b" ")


def _field(text: str, width: int) -> str:
    """A fixed-width character field of a header: blank-padded, cut at ``width`` (names and
    labels are checked against the v5 limits before any header is made)."""
    return text[:width].ljust(width)


def library_header(ts: datetime) -> bytes:
    """The first three records: the library header line, then the SAS identification with the
    created stamp in bytes 64-80, then the modified stamp in bytes 0-16."""
    stamp = sas_stamp(ts).decode("ascii")
    ident = "SAS     SAS     SASLIB  " + _field(_SAS_VERSION, 8) + _field(_SAS_OS, 8) + " " * 24 + stamp
    return _record(_HEADER.format("LIBRARY", "0" * 30)) + _record(ident) + _record(stamp)


def member_header(name: str, label: str, nvars: int, ts: datetime) -> bytes:
    """The member header line (NAMESTR length 140), the descriptor header line, two descriptor
    records (data set name, created stamp; modified stamp, data set label, blank type) and the
    NAMESTR header line with the number of variables."""
    stamp = sas_stamp(ts).decode("ascii")
    return b"".join([
        _record(_HEADER.format("MEMBER", "0" * 17 + "16" + "0" * 8 + f"{NAMESTR:03d}")),
        _record(_HEADER.format("DSCRPTR", "0" * 30)),
        _record("SAS     " + _field(name.upper(), 8) + "SASDATA " + _field(_SAS_VERSION, 8) + _field(_SAS_OS, 8)
                + " " * 24 + stamp),
        _record(stamp + " " * 16 + _field(label, 40) + " " * 8),
        _record(_HEADER.format("NAMESTR", f"000000{nvars:04d}" + "0" * 20)),
    ])


def parse_format(fmt: str, where: str) -> tuple[str, int, int]:
    """A SAS display format ``NAMEw.d`` (``DATE9.``, ``DATETIME20.``, ``8.2``) as (name, width,
    decimals) for the NAMESTR record; anything else raises :class:`DataError`."""
    m = _FORMAT_RE.match(fmt.strip().upper())
    if not m:
        raise DataError(f"{where}: display format {fmt!r} is not of the form NAMEw.d")
    return m.group(1) or "", int(m.group(2) or 0), int(m.group(3) or 0)


def namestr(varnum: int, var: str, is_char: bool, width: int, position: int, label: str,
            fmt: tuple[str, int, int] | None) -> bytes:
    """One 140-byte NAMESTR record (big-endian integers): type (1 numeric, 2 character), hash 0,
    length, variable number, name, label, format name/width/decimals, justification (1 = right
    for numerics, 0 for characters), informat blank, position in the record, 52 zero bytes."""
    fname, fwidth, fdec = fmt if fmt else ("", 0, 0)
    return b"".join([
        (2 if is_char else 1).to_bytes(2, "big"), b"\0\0", width.to_bytes(2, "big"), varnum.to_bytes(2, "big"),
        _field(var, 8).encode("ascii"), _field(label, 40).encode("ascii"), _field(fname, 8).encode("ascii"),
        fwidth.to_bytes(2, "big"), fdec.to_bytes(2, "big"), (0 if is_char else 1).to_bytes(2, "big"), b"\0\0",
        b" " * 8, b"\0\0", b"\0\0", position.to_bytes(4, "big"), b"\0" * 52,
    ])


def header_bytes(name: str, label: str, layout: list[tuple[str, bool, int, int]], labels: dict[str, str],
                 formats: dict[str, str], ts: datetime) -> bytes:
    """Every header of a one-member v5 file, up to and including the OBS header line.
    ``layout`` is ``(variable, is_character, width, position)`` in record order."""
    names = b"".join(namestr(i + 1, var, is_char, width, pos, labels.get(var, ""),
                             parse_format(formats[var], f"{name}.{var}") if var in formats else None)
                     for i, (var, is_char, width, pos) in enumerate(layout))  # loop over variables
    names += b" " * (-len(names) % RECORD)
    return (library_header(ts) + member_header(name, label, len(layout), ts) + names
            + _record(_HEADER.format("OBS", "0" * 30)))


def layout_of(out: pd.DataFrame, distinct: dict[str, np.ndarray]) -> list[tuple[str, bool, int, int]]:
    """(variable, is_character, width, position) of every variable of an export frame: character
    width = the longest value present (at least 1), numerics 8, side by side in column order."""
    layout, pos = [], 0
    for c in out.columns:  # loop over variables
        is_char = c in distinct
        width = _longest(distinct[c]) if is_char else 8
        layout.append((c, is_char, width, pos))
        pos += width
    return layout


# ---------------------------------------------------------------------------------------
# records: IBM doubles and blank-padded characters
# ---------------------------------------------------------------------------------------
#: records encoded and written per chunk (bounds the memory of large datasets)
CHUNK_ROWS = 100_000
#: the 8 bytes of a SAS missing value ``.``
MISSING = np.frombuffer(b"." + b"\0" * 7, dtype=">u8")[0]


#: smallest magnitude an IBM double holds normalised (16**-65, about 5.4e-79)
IBM_MIN = 2.0 ** -260
#: magnitudes from here on are refused: IBM doubles reach about 7.2e75, but pyreadstat (ReadStat)
#: writes every value from 2**249 (about 9.0e74) on as the largest IBM number, so this is where
#: the two writers stop agreeing
XPT_MAX = 2.0 ** 249


def ibm_doubles(values: np.ndarray, where: str = "value") -> np.ndarray:
    """IEEE float64 -> IBM System/370 double-precision bytes (big-endian ``>u8``), exactly.

    IEEE: value = m * 2**e2 with a 53-bit integer m (the implicit 1 included) for a normal
    number. IBM: value = F * 16**(E - 64) / 2**56 with a 56-bit fraction F whose first hex digit
    is not 0 and a 7-bit exponent E. Shifting m left by s = e2 mod 4 (0..3 bits) makes the
    power of two a power of 16, and m << s still fits in 56 bits, so no bit is lost:
    F = m << s, E = (e2 - s + 56) / 4 + 64. Zero (either sign) is eight zero bytes and NaN is
    SAS missing ``.``.

    A value outside :data:`IBM_MIN` <= |x| < :data:`XPT_MAX` (about 5.4e-79 to 9.0e74), or
    +-inf, raises :class:`DataError` naming ``where`` and the first such record: pyreadstat
    would silently write 0 or the largest IBM number there. That includes IEEE subnormals and
    every other non-zero magnitude below 16**-65 (IBM underflow): writing them as 0 would change
    a value without a word, so they are refused like overflow (the output checks report them
    first, see :mod:`pipeline.export.numeric_guard`).
    """
    x = np.ascontiguousarray(values, dtype=np.float64)
    nan = np.isnan(x)
    zero = x == 0
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(x)
        bad = ~nan & ~zero & ~((magnitude >= IBM_MIN) & (magnitude < XPT_MAX))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: {float(x[i])!r} (record {i + 1}) cannot be stored in an XPT v5 numeric "
                        "(finite, magnitude 5.4e-79 up to 9.0e74, or 0); fix the value or leave it missing")
    bits = x.view(np.uint64)
    sign = bits >> np.uint64(63)
    biased = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    mant = (bits & np.uint64((1 << 52) - 1)) | np.uint64(1 << 52)
    e2 = biased - 1075
    shift = np.mod(e2, 4)
    exponent = np.clip((e2 - shift + 56) // 4 + 64, 0, 127).astype(np.uint64)  # clip: NaN/0 lanes only
    ibm = (sign << np.uint64(63)) | (exponent << np.uint64(56)) | (mant << shift.astype(np.uint64))
    ibm[zero] = 0
    ibm[nan] = MISSING
    return ibm.astype(">u8")


def compact_codes(codes: np.ndarray, distinct: int) -> np.ndarray:
    """Non-negative codes below ``distinct`` in the smallest unsigned integer type that holds them
    (most SDTM columns have few distinct values: 1 or 2 bytes a record instead of 8)."""
    return codes.astype(np.min_scalar_type(max(distinct - 1, 0)), copy=False)


def factorize_text(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """variable -> (codes, distinct values) of every character (object) column of an export frame."""
    out = {}
    for c, dtype in zip(frame.columns, frame.dtypes):  # loop over variables; one column's 8-byte codes alive at a time
        if dtype == object:
            values = frame[c].to_numpy()
            # an export-form column has no missing value, and then the NA-sentinel path (no
            # separate pass for nulls, ~35% faster) gives the same codes and distinct values
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            if len(codes) and codes.min() < 0:  # a null after all: kept as a value of its own
                codes, uniques = pd.factorize(values, use_na_sentinel=False)
            out[c] = (compact_codes(codes, len(uniques)), uniques)
    return out


def _char_table(codes: np.ndarray, uniques: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, table): ``table[codes]`` is the column as ``S<width>`` blank-padded ASCII bytes.
    Each distinct value is padded and encoded once (SDTM columns repeat a lot)."""
    # a loop over the distinct values of one column, not over records
    padded = [str(u).ljust(width).encode("ascii") for u in uniques]
    return codes, np.array(padded, dtype=f"S{width}") if padded else np.array([b" " * width], dtype=f"S{width}")


def observation_bytes(frame: pd.DataFrame, layout: list[tuple[str, bool, int, int]], name: str = "dataset",
                      factorized: dict | None = None):
    """The observation section of a v5 file, as an iterator over bytes-like chunks of
    :data:`CHUNK_ROWS` records (uint8 arrays; the last one blank padding). Every numeric is
    converted (and range-checked) before the first chunk is returned.

    ``layout`` is ``(variable, is_character, width, position)`` per variable in record order
    (:func:`layout_of`); ``factorized`` is :func:`factorize_text` of ``frame`` when the caller
    has it. The last chunk is blank-padded to a whole 80-byte record.
    """
    n = len(frame)
    row_len = sum(w for _, _, w, _ in layout)
    factorized = factorized if factorized is not None else factorize_text(frame)
    prepared = []  # per variable: ("c", position, width, codes, table) or ("n", position, 8, IBM bytes)
    for var, is_char, width, pos in layout:  # loop over variables
        if is_char:
            prepared.append(("c", pos, width, *_char_table(*factorized[var], width)))
        else:
            prepared.append(("n", pos, width, ibm_doubles(frame[var].to_numpy(dtype=np.float64), f"{name}.{var}")))
    return _chunks(n, row_len, merged_char_tables(prepared, n))


#: the most distinct values a merged run of adjacent columns may have (:func:`merge_limit`);
#: shared by this writer and the Dataset-JSON writer
MERGED_TABLE_MAX = 4096


def merge_limit(n: int) -> int:
    """The largest merged table for ``n`` records: :data:`MERGED_TABLE_MAX`, never more
    entries than records."""
    return max(1, min(MERGED_TABLE_MAX, n))


def merge_tables(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], join, dtype
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Two coded columns, ``(codes, table)`` each, side by side as one: the table holds
    ``join(x, y)`` for every pair of entries and a record's code is ``i * len(table_b) + j``.
    A loop over the distinct pairs (at most :data:`MERGED_TABLE_MAX`), not over records."""
    (codes_a, table_a), (codes_b, table_b) = a, b
    pairs = np.array([join(x, y) for x in table_a.tolist() for y in table_b.tolist()], dtype=dtype)
    return compact_codes(codes_a.astype(np.int64) * len(table_b) + codes_b, len(pairs)), pairs


def merged_char_tables(prepared: list[tuple], n: int) -> list[tuple]:
    """The prepared variables of :func:`observation_bytes` with every run of adjacent character
    variables merged into one (:func:`merge_tables`) wherever the product of their table sizes
    stays within :func:`merge_limit`: the merged table holds every pair of padded values
    ``a + b`` (``S<w1 + w2>``, the two fields side by side as in the record). The record bytes
    are the same; each chunk is only filled in fewer, wider copies (most character variables
    have few distinct values: ADLB's 29 become about 10)."""
    limit = merge_limit(n)
    out: list[tuple] = []
    for part in prepared:  # loop over variables
        if out and part[0] == "c" and out[-1][0] == "c" and len(out[-1][4]) * len(part[4]) <= limit:
            _, pos, width, codes, table = out[-1]
            _, _, width_b, codes_b, table_b = part
            merged = merge_tables((codes, table), (codes_b, table_b), bytes.__add__, f"S{width + width_b}")
            out[-1] = ("c", pos, width + width_b, *merged)
        else:
            out.append(part)
    return out


def _chunks(n: int, row_len: int, parts: list[tuple]):
    """The records ``CHUNK_ROWS`` at a time, each chunk one array of record bytes (written as
    it is: no bytes copy), then the blank padding to a whole 80-byte record."""
    total = 0
    for start in range(0, n, CHUNK_ROWS):
        stop = min(n, start + CHUNK_ROWS)
        buf = np.empty((stop - start, row_len), dtype=np.uint8)
        for kind, pos, width, *data in parts:  # loop over (merged) variables
            cells = data[1][data[0][start:stop]] if kind == "c" else data[0][start:stop]
            buf[:, pos:pos + width] = cells.view(np.uint8).reshape(stop - start, width)
        total += buf.nbytes
        yield buf
    if total % RECORD:
        yield b" " * (RECORD - total % RECORD)


def write_xpt(frame: pd.DataFrame, spec: Spec, name: str, path: Path, timestamp: datetime,
              factorized: dict | None = None) -> pd.DataFrame:
    """Write one dataset as ``path`` (XPT v5, see the module docstring). ``frame`` is already in
    key order (:func:`pipeline.export.checks.order_dataset`). Returns the frame as written.

    ``factorized``: an empty dict to receive :func:`factorize_text` of the frame as written
    (the Dataset-JSON writer takes it, so that the character columns of a large dataset are
    factorised once for both files: ~1.2 s of CPU for ADLB at 2,000 subjects)."""
    out = xpt_frame(frame, spec, name)
    codes = factorize_text(out)
    if factorized is not None:
        factorized.update(codes)
    factorized = codes
    distinct = {c: u for c, (_, u) in factorized.items()}
    problems = xpt_problems(out, spec, name, distinct)
    if problems:
        raise DataError("cannot write XPT v5: " + "; ".join(problems[:5]))
    layout = layout_of(out, distinct)
    head = header_bytes(name, str(spec.dataset(name)["label"]), layout, spec.labels(name),
                        display_formats(spec, name, list(out.columns)), timestamp)
    chunks = observation_bytes(out, layout, name, factorized)  # checks the numerics before the file opens
    with open(path, "wb") as fh:
        fh.write(head)
        for chunk in chunks:
            fh.write(chunk)
    written_distinct(out).update(distinct)
    _written_as(out).append((spec, name, tuple(out.columns)))
    return out


def _written_as(frame: pd.DataFrame) -> list[tuple[Spec, str, tuple]]:
    """``[(spec, dataset, columns)]`` when ``frame`` is the frame :func:`write_xpt` returned
    (:func:`xpt_frame` of that spec and dataset, with those columns), else empty."""
    return per_object(frame, "xpt_written_as", lambda _frame: [])


def _written_for(frame: pd.DataFrame, spec: Spec, name: str) -> bool:
    """``frame`` is what :func:`write_xpt` returned for ``spec`` and dataset ``name``, and still
    has its columns (a frame is not changed once written, :mod:`pipeline.export.memo`; the
    columns are compared all the same)."""
    return any(s is spec and n == name and cols == tuple(frame.columns) for s, n, cols in _written_as(frame))


def written_distinct(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Variable -> the distinct values of each character column of ``frame`` as
    :func:`write_xpt` wrote them, when ``frame`` is the frame it returned (empty for any other
    frame). define.xml takes the lengths, codelist terms and date types of such a frame from
    these instead of hashing every record again (:class:`pipeline.export.define._Columns`);
    the widths are then the XPT file's by construction."""
    return per_object(frame, "written_distinct", lambda _frame: {})


def write_xpt_pyreadstat(frame: pd.DataFrame, spec: Spec, name: str, path: Path, timestamp: datetime) -> pd.DataFrame:
    """The same file written wholly by ``pyreadstat.write_xport`` (the reference the tests compare
    :func:`write_xpt` with, byte for byte; no range check on numerics)."""
    import pyreadstat  # the tests' oracle only: the build does not import it

    out = xpt_frame(frame, spec, name)
    problems = xpt_problems(out, spec, name)
    if problems:
        raise DataError("cannot write XPT v5: " + "; ".join(problems[:5]))
    labels = spec.labels(name)
    formats = display_formats(spec, name, list(out.columns))
    pyreadstat.write_xport(
        out, str(path), file_label=str(spec.dataset(name)["label"]),
        column_labels=[labels.get(c, "") for c in out.columns], table_name=name.upper(),
        file_format_version=5, variable_format=formats or None)
    patch_timestamps(Path(path), timestamp)
    return out


def display_formats(spec: Spec, name: str, columns: list[str]) -> dict[str, str]:
    """SAS display formats of the spec's optional ``display_format`` column (ADaM numeric dates:
    DATE9., DATETIME20.), for the variables present. The dataset's formats are read from the
    spec once per loaded spec (:func:`spec_display_formats`; ~40 datasets a study ask)."""
    present = set(columns)
    return {var: fmt for var, fmt in spec_display_formats(spec, name).items() if var in present}


def spec_display_formats(spec: Spec, name: str) -> MappingProxyType:
    """Variable -> the spec's non-empty ``display_format`` of dataset ``name``, in spec order
    (empty when the spec has no such column), once per spec object (:func:`per_object`)."""
    def formats(s: Spec) -> MappingProxyType:
        v = s.vars(name)
        if "display_format" not in v:
            return MappingProxyType({})
        f = v[v["display_format"] != ""]
        return MappingProxyType(dict(zip(f["variable"], f["display_format"])))
    return per_object(spec, ("display_formats", name), formats)


def xpt_name(name: str) -> str:
    """File name of a dataset's transport file."""
    return f"{name.lower()}.xpt"


def read_xpt(path: Path) -> tuple[pd.DataFrame, object]:
    """Read a transport file back (tests, round trips): frame and pyreadstat metadata."""
    import pyreadstat
    return pyreadstat.read_xport(str(path))

