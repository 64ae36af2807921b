"""CDISC Dataset-JSON v1.1 files (``dm.json``), one beside each XPT.

Structure (Dataset-JSON v1.1 user guide), top-level keys in this order:
``datasetJSONCreationDateTime, datasetJSONVersion, fileOID, dbLastModifiedDateTime, originator,
sourceSystem {name, version}, studyOID, metaDataVersionOID, metaDataRef, itemGroupOID, records,
name, label, columns, rows``.

OIDs shared with define.xml (the define writer must use the same functions/constants):

=====================  ===========================================  ======================
what                   OID                                          function
=====================  ===========================================  ======================
Study/@OID             ``S.<STUDYID>``                              :func:`study_oid`
MetaDataVersion/@OID   ``MDV.<STUDYID>.SDTMIG.<sdtmig_version>``    :func:`metadata_version_oid`
ItemGroupDef/@OID      ``IG.<DATASET>``                             :func:`item_group_oid`
ItemDef/@OID           ``IT.<DATASET>.<VARIABLE>``                  :func:`item_oid`
=====================  ===========================================  ======================

``metaDataRef`` is ``define.xml`` (same folder). ``fileOID`` is ``<STUDYID>.SDTM.<DATASET>``.

Column data types (spec ``type`` = define.xml DataType -> Dataset-JSON ``dataType``):
text -> string; integer -> integer; float -> double (XPT stores 8-byte doubles);
date/partialDate -> date; datetime/partialDatetime/incompleteDatetime -> datetime;
time/partialTime -> time; durationDatetime -> string. ``length`` is given for character
columns only: the longest value present (min 1), the same number as the XPT width and the
define.xml Length. ``keySequence`` numbers the dataset's keys (datasets.csv) in order.

Values: character missing -> ``""`` for string columns and ``null`` for date/datetime/time
columns (an empty string is not an ISO 8601 value); numeric missing -> ``null``; integers are
JSON integers; doubles use Python's shortest round-trip representation.

Datetimes, as the Dataset-JSON v1.1 standard defines them (UTC, ``YYYY-MM-DDThh:mm:ss``):

- ``datasetJSONCreationDateTime``: when the file was created. The SDTM build passes
  :func:`pipeline.export.xpt.creation_time`: ``SOURCE_DATE_EPOCH`` when it is set, else the
  current time. A fixed ``SOURCE_DATE_EPOCH`` is how a rebuild stays byte-identical (the
  reproducible-builds convention); ``make sdtm`` sets it to the commit time of the checkout
  when it is not set, so reruns of ``make sdtm`` are byte-identical.
- ``dbLastModifiedDateTime``: when the source data were last modified before the file was
  created. Our source is the raw extract, taken as of the study's data cut-off
  (``data_cutoff`` in ``specs/studies/<STUDYID>.toml``): no record is later than it, so the
  build passes the cut-off date at 00:00:00 (:func:`pipeline.export.xpt.cutoff_time`),
  whatever the clock of the build.

Rows are written one per line for readable diffs.
"""

from __future__ import annotations

import json
from datetime import datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path

import numpy as np
import pandas as pd

import pipeline
from pipeline.export.xpt import compact_codes, merge_limit, merge_tables, observed_lengths, spec_types, xpt_frame
from pipeline.spec import Spec

VERSION = "1.1.0"
SOURCE_SYSTEM = "cart-sdtm-pipeline"
DATA_TYPES = {
    "text": "string", "integer": "integer", "float": "double",
    "date": "date", "partialDate": "date",
    "datetime": "datetime", "partialDatetime": "datetime", "incompleteDatetime": "datetime",
    "time": "time", "partialTime": "time", "durationDatetime": "string",
}
_NULL_WHEN_EMPTY = {"date", "datetime", "time"}


def study_oid(studyid: str) -> str:
    return f"S.{studyid}"


def metadata_version_oid(studyid: str, spec: Spec) -> str:
    std = spec.standards  # SDTMIG for specs/sdtm, ADaMIG for specs/adam (standards.toml ig_name, ig_version)
    return f"MDV.{studyid}.{std.get('ig_name', 'SDTMIG')}.{std.get('ig_version', std.get('sdtmig_version', ''))}"


def item_group_oid(dataset: str) -> str:
    return f"IG.{dataset}"


def item_oid(dataset: str, variable: str) -> str:
    return f"IT.{dataset}.{variable}"


def json_name(name: str) -> str:
    return f"{name.lower()}.json"


def iso_stamp(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def columns_metadata(frame: pd.DataFrame, spec: Spec, name: str, lengths: dict[str, int] | None = None) -> list[dict]:
    """The ``columns`` array for a frame already in export form (:func:`xpt_frame`).
    ``lengths`` (variable -> exported length) saves recomputing :func:`observed_lengths`."""
    types, labels = spec_types(spec, name), spec.labels(name)
    keys = spec.keys(name)
    lengths = lengths if lengths is not None else observed_lengths(frame, spec, name)
    cols = []
    for c in frame.columns:
        dtype = DATA_TYPES[types[c]]
        col = {"itemOID": item_oid(name, c), "name": c, "label": labels[c], "dataType": dtype}
        if dtype not in ("integer", "double"):
            col["length"] = lengths[c]
        if c in keys:
            col["keySequence"] = keys.index(c) + 1
        cols.append(col)
    return cols


def _column_cells(s: pd.Series, dtype: str, factorized: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """(index, table, length) of one column: ``table[index]`` is the JSON text of every value
    (each distinct value encoded once); ``length`` is the longest distinct text value (at least
    1, the exported length of a character variable; 8 for numbers). ``factorized``: the
    (codes, distinct values) of a character column as written to XPT
    (:func:`pipeline.export.xpt.factorize_text`: every value a ``str``, no missing code), used
    instead of factorising the column again.

    Each distinct value is encoded as ``json.dumps`` does it (a loop over distinct values, not
    records): a finite float by ``float.__repr__``, an integer by ``int.__repr__``, a string by
    ``json.encoder.encode_basestring_ascii`` (what ``json.dumps(text, ensure_ascii=True)``
    calls), without ``json.dumps``' per-call set-up."""
    if dtype in ("integer", "double"):
        num = s if s.dtype == np.float64 else pd.to_numeric(s, errors="raise").astype("float64")
        codes, uniques = pd.factorize(num.to_numpy(), use_na_sentinel=True)
        if dtype == "integer":
            enc = [repr(int(u)) for u in uniques]  # int() refuses +-inf, as json.dumps(int(u)) did
        else:
            if not np.isfinite(uniques).all():  # json.dumps(allow_nan=False) refused them
                bad = float(uniques[~np.isfinite(uniques)][0])
                raise ValueError(f"Out of range float values are not JSON compliant: {bad!r}")
            enc = [float.__repr__(float(u)) for u in uniques]
        length = 8
    else:
        if factorized is not None:
            codes, uniques = factorized
        else:
            values = s.to_numpy() if s.dtype == object else s.astype("object").to_numpy()
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
        null_empty = dtype in _NULL_WHEN_EMPTY
        text = [u if isinstance(u, str) else str(u) for u in uniques]
        enc = ["null" if (u == "" and null_empty) else encode_basestring_ascii(t) for u, t in zip(uniques, text)]
        length = max([1, *map(len, text)])
    if codes.dtype.kind == "i" and (codes < 0).any():  # a missing value: its cell is the table's last entry
        table = np.array(enc + ["null"], dtype=object)
        return compact_codes(np.where(codes >= 0, codes, len(enc)), len(table)), table, length
    return compact_codes(codes, len(enc)), np.array(enc, dtype=object), length


def merged_cells(cells: list[tuple[np.ndarray, np.ndarray]], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (index, table) pairs of adjacent columns merged into one (:func:`merge_tables`)
    wherever the product of their table sizes stays within :func:`merge_limit`: the merged
    table holds the text of every pair, ``a + "," + b``. A record's row text is the same; it is
    only joined from fewer, longer cells. Most columns have few distinct values (study, site,
    treatment, flags, units), so a record of ~50 columns becomes ~15 cells and the final join
    has a third of the pieces (ADLB at 2,000 subjects: ~1M records)."""
    limit = merge_limit(n)
    out = [cells[0]]
    for index, table in cells[1:]:  # loop over columns
        if len(out[-1][1]) * len(table) <= limit:
            out[-1] = merge_tables(out[-1], (index, table), _comma_joined, object)
        else:
            out.append((index, table))
    return out


def _comma_joined(a: str, b: str) -> str:
    """Two adjacent cells of a row array."""
    return a + "," + b


def _encode_column(s: pd.Series, dtype: str) -> np.ndarray:
    """JSON text of every value of one column (encoded once per distinct value)."""
    index, table, _ = _column_cells(s, dtype)
    return table[index]


def _join_rows(cells: list[np.ndarray]) -> str:
    """Records as JSON arrays from the encoded cells of each column (same length, at least one
    column and one record): laid out record by record in one object array, interleaved with the
    separators (``,`` between values, ``],\n  [`` between records), joined by one ``str.join``:
    no Python-level work per record."""
    n, k = len(cells[0]), len(cells)
    tokens = np.empty((n, 2 * k), dtype=object)
    for i, column in enumerate(cells):  # loop over columns
        tokens[:, 2 * i] = column
    tokens[:, 1:-1:2] = ","
    tokens[:, -1] = "],\n  ["
    tokens[-1, -1] = "]"
    return "[" + "".join(tokens.ravel().tolist())


def rows_text(frame: pd.DataFrame, dtypes: list[str]) -> str:
    """The records as JSON arrays, one per line, separated by ``",\n  "`` (each column encoded
    once by :func:`_column_cells`, adjacent columns merged by :func:`merged_cells`, the rows
    assembled by :func:`_join_rows`)."""
    n, k = frame.shape
    if n == 0:
        return ""
    if k == 0:
        return ",\n  ".join(["[]"] * n)
    cells = [_column_cells(frame.iloc[:, i], dtypes[i])[:2] for i in range(k)]
    return _join_rows([table[index] for index, table in merged_cells(cells, n)])


def row_lines(frame: pd.DataFrame, dtypes: list[str]) -> list[str]:
    """One JSON array text per record, built column-wise (vectorised string concatenation).
    The reference :func:`rows_text` is tested against (``",\n  ".join(row_lines(...))``)."""
    if len(frame) == 0:
        return []
    if not len(frame.columns):
        return ["[]"] * len(frame)
    acc = pd.Series(_encode_column(frame.iloc[:, 0], dtypes[0]), dtype=object)
    for i in range(1, len(frame.columns)):
        acc = acc + "," + pd.Series(_encode_column(frame.iloc[:, i], dtypes[i]), dtype=object)
    return ("[" + acc + "]").tolist()


#: records encoded and written per chunk (bounds the memory of large datasets)
CHUNK_ROWS = 100_000


def _document_parts(frame: pd.DataFrame, spec: Spec, name: str, studyid: str, originator: str,
                    timestamp: datetime, db_modified: datetime | None = None, exported: bool = False,
                    factorized: dict | None = None):
    """Yield the document text in pieces: head, rows chunk by chunk, tail. ``exported``: the
    frame is already :func:`xpt_frame`'s output (what :func:`pipeline.export.xpt.write_xpt`
    returns), so it is not converted a second time; ``factorized``: the XPT writer's
    factorisation of its character columns (``write_xpt(..., factorized={})``)."""
    out = frame if exported else xpt_frame(frame, spec, name)
    factorized = factorized if exported and factorized else {}
    types = spec_types(spec, name)
    # each column factorised once for the whole dataset: the distinct values give both the
    # encoded cells and the character lengths of the column metadata
    cells = [_column_cells(out[c], DATA_TYPES[types[c]], factorized.get(c)) for c in out.columns]  # loop over variables
    columns = columns_metadata(out, spec, name, {c: length for c, (_, _, length) in zip(out.columns, cells)})
    head = {
        "datasetJSONCreationDateTime": iso_stamp(timestamp),
        "datasetJSONVersion": VERSION,
        "fileOID": f"{studyid}.{'SDTM' if spec.standard == 'sdtm' else 'ADaM'}.{name}",
        "dbLastModifiedDateTime": iso_stamp(db_modified if db_modified is not None else timestamp),
        "originator": originator,
        "sourceSystem": {"name": SOURCE_SYSTEM, "version": pipeline.__version__},
        "studyOID": study_oid(studyid),
        "metaDataVersionOID": metadata_version_oid(studyid, spec),
        "metaDataRef": "define.xml",
        "itemGroupOID": item_group_oid(name),
        "records": int(len(out)),
        "name": name,
        "label": str(spec.dataset(name)["label"]),
        "columns": columns,
        "rows": "@ROWS@",
    }
    text = json.dumps(head, indent=1, ensure_ascii=True)
    before, after = text.rsplit('"@ROWS@"', 1)
    if len(out) == 0:
        yield before + "[]" + after + "\n"
        return
    yield before + "["
    merged = merged_cells([(index, table) for index, table, _ in cells], len(out)) if cells else []
    for start in range(0, len(out), CHUNK_ROWS):  # loop over chunks of records
        stop = start + CHUNK_ROWS
        rows = (_join_rows([table[index[start:stop]] for index, table in merged]) if merged
                else ",\n  ".join(["[]"] * (min(stop, len(out)) - start)))
        yield ("\n  " if start == 0 else ",\n  ") + rows
    yield "\n ]" + after + "\n"


def dataset_json_text(frame: pd.DataFrame, spec: Spec, name: str, studyid: str, originator: str,
                      timestamp: datetime, db_modified: datetime | None = None) -> str:
    """The whole Dataset-JSON document as text (frame in key order, spec variables)."""
    return "".join(_document_parts(frame, spec, name, studyid, originator, timestamp, db_modified))


def write_dataset_json(frame: pd.DataFrame, spec: Spec, name: str, path: Path, studyid: str,
                       originator: str, timestamp: datetime, db_modified: datetime | None = None,
                       exported: bool = False, factorized: dict | None = None) -> None:
    """Write ``path``, streaming the rows in chunks of :data:`CHUNK_ROWS` records.

    ``exported=True`` when ``frame`` is what :func:`pipeline.export.xpt.write_xpt` returned (the
    frame as written to XPT): it is then used as it is, not converted again; ``factorized``
    is then what that call put in its ``factorized`` dict (the character columns' codes).

    ``timestamp`` is the file's creation time (``datasetJSONCreationDateTime``); ``db_modified``
    when the source data were last modified (``dbLastModifiedDateTime``; default ``timestamp``).
    See the module docstring for what the build passes."""
    with open(path, "wb") as fh:
        for part in _document_parts(frame, spec, name, studyid, originator, timestamp, db_modified, exported,
                                    factorized):
            fh.write(part.encode("ascii"))


def read_dataset_json(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read a Dataset-JSON file back: a frame (columns named, object values) and the metadata."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    names = [c["name"] for c in doc["columns"]]
    frame = pd.DataFrame(doc.get("rows", []), columns=names, dtype=object)
    meta = {k: v for k, v in doc.items() if k != "rows"}
    return frame, meta
