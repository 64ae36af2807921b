"""SAS transport (XPT) version 5 files, one per dataset, with pyreadstat.

What the FDA Study Data Technical Conformance Guide asks of a v5 transport file, and how it is met:

- file name = lower-case dataset name (``dm.xpt``); member name = upper-case dataset name;
- dataset label from ``specs/sdtm/datasets.csv``; variable labels from the spec;
- variables in spec order, rows sorted by the dataset's keys (``datasets.csv`` ``keys``);
- character variables as wide as their longest value actually present (at least 1), never
  a blanket 200 (pyreadstat sizes each character column to its longest value); numerics 8 bytes;
- names <= 8, labels <= 40, values <= 200 characters, printable ASCII only: a violation
  raises :class:`~pipeline.errors.DataError` naming the variable (the output checks report
  these as findings before export, so this is the last line of defence).

Determinism: pyreadstat stamps the current time into the library and member headers
(``ddMMMyy:hh:mm:ss``, 16 characters, fixed positions in the 80-byte header records).
:func:`write_xpt` overwrites both stamps with :func:`build_timestamp` (``SOURCE_DATE_EPOCH``
when set, else the study's data cut-off at 00:00:00), so a rebuild is byte-identical.

Speed: with pandas 3, pyreadstat writes character columns about 2.5 times faster from object
dtype than from the ``str`` dtype, so character columns are converted to object first.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyreadstat

from pipeline.errors import DataError
from pipeline.spec import NUMERIC_TYPES, Spec

MAX_NAME = 8
MAX_LABEL = 40
MAX_VALUE = 200
_STAMP_RE = re.compile(rb"^\d{2}[A-Z]{3}\d{2}:\d{2}:\d{2}:\d{2}$")
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
RECORD = 80


def build_timestamp(data_cutoff: str) -> datetime:
    """The one timestamp written into every export: ``SOURCE_DATE_EPOCH`` (seconds since
    1970, the reproducible-builds convention) when set, else the data cut-off date (UTC)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), tz=UTC).replace(tzinfo=None)
        except ValueError:
            raise DataError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None
    try:
        return datetime.strptime(str(data_cutoff)[:10], "%Y-%m-%d")
    except ValueError:
        raise DataError(f"data_cutoff {data_cutoff!r} is not a YYYY-MM-DD date") from None


def sas_stamp(ts: datetime) -> bytes:
    """``ddMMMyy:hh:mm:ss`` as in the XPT v5 headers."""
    return f"{ts.day:02d}{_MONTHS[ts.month - 1]}{ts.year % 100:02d}:{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}".encode("ascii")


def xpt_frame(frame: pd.DataFrame, spec: Spec, name: str) -> pd.DataFrame:
    """The frame as written: spec variables in spec order (those present), character columns
    as object with ``""`` for missing, numerics float64."""
    v = spec.vars(name)
    cols = [c for c in v["variable"] if c in frame.columns]
    types = dict(zip(v["variable"], v["type"]))
    out = {}
    for c in cols:
        s = frame[c]
        if types[c] in NUMERIC_TYPES:
            out[c] = pd.Series(pd.to_numeric(s, errors="raise").astype("float64").to_numpy(), dtype="float64")
        else:
            if isinstance(s.dtype, pd.StringDtype):
                text = s.to_numpy(dtype=object, na_value="")
            else:
                text = s.astype("object").where(s.notna(), "").astype(str).to_numpy(dtype=object)
            out[c] = pd.Series(text, dtype=object)
    return pd.DataFrame(out, columns=cols) if cols else pd.DataFrame(index=range(len(frame)))


def observed_lengths(frame: pd.DataFrame, spec: Spec, name: str) -> dict[str, int]:
    """Length of each variable as exported: character = longest value present (min 1);
    numeric = 8 (XPT storage). The define.xml writer uses the same numbers."""
    types = dict(zip(spec.vars(name)["variable"], spec.vars(name)["type"]))
    out = {}
    for c in frame.columns:
        if types.get(c) in NUMERIC_TYPES:
            out[c] = 8
        else:
            s = frame[c].astype("object").where(frame[c].notna(), "").astype(str)
            out[c] = max(1, int(s.str.len().max())) if len(s) else 1
    return out


def xpt_problems(frame: pd.DataFrame, spec: Spec, name: str) -> list[str]:
    """XPT v5 limits violated by the frame (one line each, naming the variable)."""
    problems = []
    if len(name) > MAX_NAME:
        problems.append(f"{name}: dataset name longer than {MAX_NAME}")
    ds_label = str(spec.dataset(name)["label"])
    if len(ds_label) > MAX_LABEL or not ds_label.isascii():
        problems.append(f"{name}: dataset label {ds_label!r} over {MAX_LABEL} characters or not ASCII")
    labels = spec.labels(name)
    for c in frame.columns:
        if len(c) > MAX_NAME or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", c):
            problems.append(f"{name}.{c}: variable name must be upper case, at most {MAX_NAME} characters")
        lab = labels.get(c, "")
        if len(lab) > MAX_LABEL or not lab.isascii():
            problems.append(f"{name}.{c}: label {lab!r} over {MAX_LABEL} characters or not ASCII")
        s = frame[c]
        if not pd.api.types.is_numeric_dtype(s.dtype):
            uniq = pd.Series(pd.unique(s), dtype=object).astype(str)
            long = uniq[uniq.str.len() > MAX_VALUE]
            if len(long):
                problems.append(f"{name}.{c}: value longer than {MAX_VALUE} characters: {long.iloc[0][:40]!r}...")
            bad = uniq[uniq.str.contains(r"[^\x20-\x7e]", regex=True)]
            if len(bad):
                problems.append(f"{name}.{c}: value with a non-ASCII or control character: {bad.iloc[0][:60]!r}")
    return problems


def patch_timestamps(path: Path, ts: datetime) -> None:
    """Overwrite the created/modified stamps of the library and member headers with ``ts``.

    v5 layout (80-byte records): record 1 is the library header line; record 2 holds
    the created stamp in bytes 64-80 and record 3 the modified stamp in bytes 0-16. The member
    descriptor header line is followed by a record with the created stamp in bytes 64-80 and
    one with the modified stamp in bytes 0-16.
    """
    stamp = sas_stamp(ts)
    with open(path, "r+b") as fh:
        # one member per file: the headers are within the first 8 records (library 3, member 5)
        head = fh.read(8 * RECORD)
        marker = b"HEADER RECORD*******DSCRPTR HEADER RECORD"
        hit = head.find(marker)
        if hit < 0:
            raise DataError(f"{path}: no member descriptor header in the XPT file")
        for pos in (RECORD + 64, 2 * RECORD, hit + RECORD + 64, hit + 2 * RECORD):
            current = head[pos:pos + 16]
            if not _STAMP_RE.match(current):
                raise DataError(f"{path}: unexpected XPT header layout at byte {pos} ({current!r})")
            fh.seek(pos)
            fh.write(stamp)


def write_xpt(frame: pd.DataFrame, spec: Spec, name: str, path: Path, timestamp: datetime) -> pd.DataFrame:
    """Write one dataset as ``path`` (XPT v5). ``frame`` is already in key order
    (:func:`pipeline.export.checks.order_dataset`). Returns the frame as written."""
    out = xpt_frame(frame, spec, name)
    problems = xpt_problems(out, spec, name)
    if problems:
        raise DataError("cannot write XPT v5: " + "; ".join(problems[:5]))
    labels = spec.labels(name)
    try:
        pyreadstat.write_xport(
            out, str(path), file_label=str(spec.dataset(name)["label"]),
            column_labels=[labels.get(c, "") for c in out.columns], table_name=name.upper(),
            file_format_version=5)
    except Exception as exc:  # noqa: BLE001 - turn a writer failure into one clear line
        raise DataError(f"{name}: XPT writer failed: {exc}") from None
    patch_timestamps(path, timestamp)
    return out


def xpt_name(name: str) -> str:
    """File name of a dataset's transport file."""
    return f"{name.lower()}.xpt"


def read_xpt(path: Path) -> tuple[pd.DataFrame, object]:
    """Read a transport file back (tests, round trips): frame and pyreadstat metadata."""
    return pyreadstat.read_xport(str(path))

