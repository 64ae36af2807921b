"""``manifest.csv``: every file of a study's output folder with its rows, columns and SHA-256.

Columns ``file, rows, columns, sha256``, one line per file (paths relative to the study
folder, ``/``-separated), sorted by ``file``. ``rows``/``columns`` are the records and
variables of ``.xpt`` and ``.json`` datasets and the data rows/columns of ``.csv`` files;
empty for other files (build.log, define.xml, listings). The manifest excludes itself and any
file listed in :data:`EXCLUDED` (non-hashed files such as timings, which are not deterministic).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pandas as pd

from pipeline.export.writer import csv_bytes

MANIFEST = "manifest.csv"
#: files never listed (the manifest itself; timings, which change from run to run)
EXCLUDED = {MANIFEST, "timings.csv"}
#: files written into a built folder later, by other commands (``python -m pipeline conformance``
#: writes reports/core_*, ``python -m pipeline package`` the guides' drafts in guides/), which the
#: build's manifest therefore cannot list
LATER_PREFIXES = ("reports/core_", "guides/")
COLUMNS = ["file", "rows", "columns", "sha256"]


def _listed(rel: str) -> bool:
    return rel not in EXCLUDED and not rel.startswith(LATER_PREFIXES)



def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: how a Dataset-JSON document written by :mod:`pipeline.export.datasetjson` starts its rows
_ROWS_KEY = b'\n "rows": '


def _json_head(path: Path) -> dict | None:
    """The metadata of a Dataset-JSON file without its rows: the text up to the top-level
    ``"rows"`` key (the last key, as the writer lays it out), closed and parsed. Reads a few
    kilobytes instead of the whole file (an ADLB of hundreds of megabytes would otherwise be
    parsed into Python objects only to count its records). None when the file is not laid out
    like that (the caller then parses it whole)."""
    head = b""
    with open(path, "rb") as fh:
        while _ROWS_KEY not in head:
            block = fh.read(1 << 16)
            if not block or len(head) > (1 << 24):
                return None
            head += block
    text = head[:head.index(_ROWS_KEY)].rstrip()
    if not text.endswith(b","):
        return None
    try:
        doc = json.loads(text[:-1] + b"\n}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _xpt_record_layout(path: Path) -> tuple[int, int, int] | None:
    """(variables, bytes per record, bytes of the observation section) of a one-member XPT v5
    file, from its NAMESTR records (SAS TS-140); None when the headers are not as expected."""
    from pipeline.export import xpt

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(min(size, 8 * xpt.RECORD))
        if not head.startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!") or len(head) < 8 * xpt.RECORD:
            return None
        try:
            count = int(head[7 * xpt.RECORD + 54:7 * xpt.RECORD + 58])
        except ValueError:
            return None
        names = fh.read(count * xpt.NAMESTR)
        obs_header = 8 * xpt.RECORD + -(-count * xpt.NAMESTR // xpt.RECORD) * xpt.RECORD
        obs_start = obs_header + xpt.RECORD
        fh.seek(obs_header)
        if not fh.read(xpt.RECORD).startswith(b"HEADER RECORD*******OBS     HEADER RECORD") or len(names) < count * xpt.NAMESTR:
            return None
    row_len = sum(int.from_bytes(names[i * xpt.NAMESTR + 4:i * xpt.NAMESTR + 6], "big") for i in range(count))
    return count, row_len, size - obs_start


def _xpt_shape(path: Path) -> tuple[int, int]:
    """(records, variables) of an XPT file. The record count is taken from the Dataset-JSON file
    beside it (written from the same frame) when the XPT file's size agrees with it exactly
    (headers + records of the NAMESTR widths, blank-padded to 80 bytes); otherwise, or with no
    such file, the XPT file is read whole with pyreadstat."""
    layout = _xpt_record_layout(path)
    sibling = path.with_suffix(".json")
    doc = _json_head(sibling) if layout and sibling.is_file() else None
    if layout and doc and isinstance(doc.get("records"), int) and isinstance(doc.get("columns"), list):
        count, row_len, obs_bytes = layout
        records = doc["records"]
        if len(doc["columns"]) == count and -(-records * row_len // 80) * 80 == obs_bytes:
            return records, count
    import pyreadstat

    frame, _ = pyreadstat.read_xport(str(path))
    return frame.shape


def _shape(path: Path, shapes: dict[str, tuple[int, int]], rel: str) -> tuple[str, str]:
    if rel in shapes:
        r, c = shapes[rel]
        return str(r), str(c)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            n = sum(1 for _ in reader)
        return (str(n), str(len(header))) if header is not None else ("0", "0")
    if suffix == ".json":
        doc = _json_head(path)
        if not (isinstance(doc, dict) and "records" in doc and "columns" in doc):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return "", ""
        if isinstance(doc, dict) and "records" in doc and "columns" in doc:
            return str(doc["records"]), str(len(doc["columns"]))
    if suffix == ".xpt":
        r, c = _xpt_shape(path)
        return str(r), str(c)
    return "", ""


def manifest_frame(folder: Path, shapes: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """The manifest of ``folder``. ``shapes`` (relative path -> (rows, columns)) saves
    re-reading datasets the caller just wrote."""
    folder = Path(folder)
    shapes = shapes or {}
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if not _listed(rel):
            continue
        r, c = _shape(path, shapes, rel)
        rows.append({"file": rel, "rows": r, "columns": c, "sha256": sha256_file(path)})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("file", kind="mergesort").reset_index(drop=True)


def write_manifest(folder: Path, shapes: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    m = manifest_frame(folder, shapes)
    (Path(folder) / MANIFEST).write_bytes(csv_bytes(m))
    return m


def verify_manifest(folder: Path) -> list[str]:
    """Files whose SHA-256 no longer matches the manifest (or that are missing/unlisted)."""
    folder = Path(folder)
    listed = pd.read_csv(io.BytesIO((folder / MANIFEST).read_bytes()), dtype=str, keep_default_na=False)
    problems = []
    for r in listed.itertuples(index=False):  # one row per output file
        p = folder / r.file
        if not p.is_file():
            problems.append(f"{r.file}: missing")
        elif sha256_file(p) != r.sha256:
            problems.append(f"{r.file}: SHA-256 differs")
    present = {rel for p in folder.rglob("*") if p.is_file() and _listed(rel := p.relative_to(folder).as_posix())}
    problems += [f"{f}: not in the manifest" for f in sorted(present - set(listed["file"]))]
    return problems
