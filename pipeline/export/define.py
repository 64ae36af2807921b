"""define.xml (CDISC Define-XML 2.1) and define.html for one study, from the spec and the data.

What goes in, and where it comes from:

==========================  ==============================================================
element                     source
==========================  ==============================================================
ODM / Study                 study parameters (title, sponsor), build stamp
                            (:func:`pipeline.export.xpt.build_timestamp`)
def:Standards               ``specs/sdtm/standards.toml``: SDTMIG ``sdtmig_version`` (IG) and
                            the CDISC CT package ``ct_version`` (CT, publishing set SDTM)
ItemGroupDef                ``specs/sdtm/datasets.csv`` (label, class, structure, keys, repeating,
                            reference data, comment) for every dataset *in the data*; def:leaf
                            points to the dataset's XPT (``<ds>.xpt``)
ItemRef / ItemDef           ``specs/sdtm/variables`` for every variable *in the data*: label,
                            DataType, role, core (Mandatory = Yes for Req), key sequence,
                            origin, method; Length from the data (the XPT width, character
                            variables; 8 for numerics); SignificantDigits of floats from the data
CodeList                    ``specs/sdtm/codelists``: only the terms present in the data, with
                            NCI C-codes as ``nci:ExtCodeID`` aliases; a value outside an
                            extensible codelist (or a sponsor term added to a CDISC codelist)
                            gets ``def:ExtendedValue="Yes"``; a codelist with ``dictionary``
                            filled (MedDRA, CTCAE, ISO 3166) is an ExternalCodeList
ValueListDef/WhereClauseDef ``specs/sdtm/valuelevel`` rows whose where clause matches data
                            (``where_variable EQ where_value``); Length from the matching records.
                            A Findings dataset whose ``--STRESN`` has no value-level rows in the
                            spec gets them from the data: one per ``--TESTCD`` with its data type
                            and standard unit (``--STRESU``)
MethodDef                   ``specs/sdtm/methods`` for every method an included item refers to;
                            the implementing function as FormalExpression (context Python)
def:CommentDef              comments of datasets, variables and value-level rows (identical
                            texts share one CommentDef); a comment that is the id of a row of
                            ``specs/sdtm/comments`` refers to that comment
def:Origin                  Collected (Source Investigator, or Vendor when the spec source says
                            so), Derived/Assigned/Protocol (Source Sponsor), Predecessor (the
                            predecessor variable as description); the spec ``source`` text is the
                            origin's description
==========================  ==============================================================

OIDs are shared with Dataset-JSON (:mod:`pipeline.export.datasetjson`): ``S.<STUDYID>``,
``MDV.<STUDYID>.SDTMIG.<version>``, ``IG.<DS>``, ``IT.<DS>.<VAR>``; value-level items are
``IT.<DS>.<VAR>.<VALUE>``, where clauses ``WC.<DS>.<WHEREVAR>.<VALUE>``, value lists
``VL.<DS>.<VAR>``, codelists ``CL.<codelist>``, methods keep their spec id (``MT.*``),
comments ``COM.*``, leaves ``LF.<DS>``.

The XML is rendered with a jinja2 template (``templates/define.xml.j2``, autoescaping on: every
text from the spec or the data is escaped), then parsed back and checked for referential
integrity (:func:`integrity_problems`) and against the Define-XML 2.1 schema that defineutils
ships (lxml); a failure raises :class:`~pipeline.errors.DataError` so that a broken
define.xml never reaches a package. ``define.html`` is the define.xml rendered with the CDISC
define 2.1 stylesheet that defineutils ships (lxml XSLT).

Determinism: the creation stamp is the build stamp, all lists are in spec or sorted order, so a
rebuild is byte-identical.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections import Counter
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from lxml import etree

import pipeline
from pipeline.export import datasetjson, xpt
from pipeline.export.memo import per_object
from pipeline.errors import ConfigError, DataError
from pipeline.spec import NUMERIC_TYPES, Spec

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "define.xml.j2"
DEFINE_XML = "define.xml"
DEFINE_HTML = "define.html"
STYLESHEET_HREF = "define2-1.xsl"

NS = {
    "odm": "http://www.cdisc.org/ns/odm/v1.3",
    "def": "http://www.cdisc.org/ns/def/v2.1",
    "xlink": "http://www.w3.org/1999/xlink",
}
ORIGIN_TYPES = ("Collected", "Derived", "Assigned", "Protocol", "Predecessor")
METHOD_TYPES = ("Computation", "Imputation")
STD_IG = "STD.SDTMIG"
STD_CT = "STD.CT.SDTM"
#: result and unit variables of a Findings dataset described per test by data-derived
#: value-level metadata (when the spec gives none for the variable)
_VLM_RESULT = ("ORRES", "ORRESU", "STRESC", "STRESN", "STRESU")
#: additional where-clause conditions a value-level row may carry (where2_*, where3_*)
_WHERE_EXTRA = (2, 3)
_OID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def oid_part(value: str) -> str:
    """A value as an OID fragment: runs of characters other than letters, digits, ``. _ -``
    become ``_`` (the where-clause value itself is kept verbatim in CheckValue)."""
    part = _OID_UNSAFE.sub("_", str(value)).strip("_")
    return part or "BLANK"


def xml_text(value) -> str:
    """Text safe for XML 1.0 (control characters that XML cannot carry are dropped)."""
    return _XML_INVALID.sub("", "" if value is None else str(value))


def _text(s: pd.Series) -> pd.Series:
    """Values as text, null as ``""`` (:func:`pipeline.export.xpt.export_text`: an exported
    character column, already so, is not converted again)."""
    return pd.Series(xpt.export_text(s), index=s.index, dtype=object)


def _records(frame: pd.DataFrame) -> list[dict]:
    """``frame.to_dict("records")`` of a small metadata frame (the same Python values), without
    its per-cell boxing: one ``tolist`` per column."""
    cols = list(frame.columns)
    return [dict(zip(cols, row)) for row in zip(*(frame[c].tolist() for c in cols))] if cols else \
        [{} for _ in range(len(frame))]


class _Columns:
    """The columns of one dataset as define.xml reads them, each worked out once.

    define.xml reads a column many times: for its length, data type and codelist terms
    (:func:`dataset_items`), for the where values present (:func:`valuelevel_rows`), for the
    records of each value-level row (:func:`value_lists`) and for the value-level rows derived
    from a Findings dataset (:func:`_findings_vlm`). Here a column's text is made once and
    factorised once, into one integer code per record and the distinct texts; the callers then
    work on the codes and on the few distinct values instead of on the records' text (at 2,000
    subjects LB has ~920k records and a few hundred distinct values in most columns).

    ``frame`` is an :func:`pipeline.export.xpt.xpt_frame`: its character columns are object
    columns of ``str`` already, its numeric columns float64. ``written``: the distinct values of
    its character columns as the XPT writer found them
    (:func:`pipeline.export.xpt.written_distinct`), when the frame was written; the columns that
    only need their distinct values (most of them) are then not read again."""

    def __init__(self, frame: pd.DataFrame, written: dict[str, np.ndarray] | None = None):
        self.frame = frame
        self._written = written or {}
        self._text: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lengths: dict[str, np.ndarray] = {}

    def numeric(self, c: str) -> bool:
        """True for a numeric column."""
        return pd.api.types.is_numeric_dtype(self.frame[c])

    def text(self, c: str) -> np.ndarray:
        """The column as exported text (:func:`_text`), an object array (``""`` for null)."""
        if c not in self._text:
            s = self.frame[c]
            # an object column of an xpt_frame is export text already (not checked again)
            self._text[c] = s.to_numpy() if s.dtype == object else xpt.export_text(s)
        return self._text[c]

    def codes(self, c: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, distinct)``: the column's text factorised, ``distinct[codes]`` is
        :meth:`text` (distinct texts in order of first appearance)."""
        if c not in self._codes:
            codes, distinct = pd.factorize(self.text(c))
            self._codes[c] = (codes, np.asarray(distinct, dtype=object))
        return self._codes[c]

    def distinct(self, c: str, pos: np.ndarray | None = None) -> np.ndarray:
        """The distinct texts of the column, of the records at positions ``pos`` only when given."""
        if pos is None and c in self._written:
            return self._written[c]
        codes, distinct = self.codes(c)
        return distinct if pos is None else distinct[pd.unique(codes[pos])]

    def present(self, c: str) -> np.ndarray:
        """Per record: the column has a value (not null, text not ``""``)."""
        if self.numeric(c):  # the text of a number is "" exactly when it is null
            return self.frame[c].notna().to_numpy()
        codes, distinct = self.codes(c)
        return (distinct != "")[codes]

    def longest(self, c: str, pos: np.ndarray | None = None) -> int:
        """Length of the longest text of the column (of the records at ``pos`` when given), at
        least 1: the XPT width (:func:`pipeline.export.xpt.observed_lengths`)."""
        if pos is None:
            return max([1, *map(len, self.distinct(c))])
        codes, distinct = self.codes(c)
        if c not in self._lengths:
            self._lengths[c] = np.fromiter(map(len, distinct), dtype=np.int64, count=len(distinct))
        lengths = self._lengths[c][codes[pos]]
        return max(1, int(lengths.max())) if len(lengths) else 1

    def positions(self, c: str) -> dict[str, np.ndarray]:
        """Text value -> the positions (ascending) of the records holding it: what
        ``groupby(...).indices`` gives, from the codes and one stable sort."""
        codes, distinct = self.codes(c)
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(distinct)))[:-1]
        return dict(zip(distinct.tolist(), np.split(order, bounds)))

    def date_type(self, spec_type: str, c: str, pos: np.ndarray | None = None) -> str:
        """:func:`date_datatype` of the column (of the records at ``pos`` when given)."""
        if spec_type not in _FULL or self.numeric(c):
            return spec_type
        return _date_type_of_texts(spec_type, self.distinct(c, pos))


def _unique_oid(oid: str, taken: set[str]) -> str:
    out, n = oid, 2
    while out in taken:
        out, n = f"{oid}.{n}", n + 1
    taken.add(out)
    return out


def define_version(spec: Spec) -> str:
    """``def:DefineVersion`` (``2.1.n``) from ``standards.toml`` ``define_version``."""
    v = str(spec.standards.get("define_version", "2.1"))
    return v if v.count(".") >= 2 else f"{v}.0"


def significant_digits(values: pd.Series) -> int | None:
    """Decimal places needed to show every value of a numeric or numeric-text column exactly
    (shortest round-trip form); ``None`` when the column has no number."""
    num = pd.to_numeric(values, errors="coerce").dropna()
    if num.empty:
        return None
    uniq = pd.unique(num.to_numpy(dtype="float64"))
    # a whole number (and an infinity) shows no decimals; the others: the decimals of each
    # distinct value (a loop over distinct values, not records)
    fractions = uniq[uniq != np.floor(uniq)]
    return min(max(map(_decimals, fractions.tolist()), default=0), 15)


def _decimals(value: float) -> int:
    """Decimal places of the shortest round-trip positional form of a non-whole ``value``
    (``np.format_float_positional(value, trim="-")``). Python's ``repr`` is the same shortest
    round-trip form (the same digits) and ~10x cheaper; it is used unless it is in exponent
    notation (below 1e-4 or from 1e16 on)."""
    text = repr(value)
    if "e" in text:
        text = np.format_float_positional(value, trim="-")
    return len(text.partition(".")[2])


def char_length(values: pd.Series) -> int:
    """Longest value as exported (at least 1), as :func:`pipeline.export.xpt.observed_lengths`."""
    t = _text(values)
    return max(1, int(t.str.len().max())) if len(t) else 1


def origin_entry(origin: str, source: str, where: str) -> dict:
    """One def:Origin: Type, Source attribute and description (spec ``source``)."""
    origin, source = str(origin).strip(), str(source).strip()
    if origin not in ORIGIN_TYPES:
        raise ConfigError(f"{where}: origin {origin!r} is not one of {', '.join(ORIGIN_TYPES)} (define.xml 2.1)")
    if origin == "Predecessor" and not source:
        raise ConfigError(f"{where}: origin Predecessor needs the predecessor variable in 'source'")
    if origin == "Collected":
        attr = "Vendor" if "vendor" in source.lower() else "Investigator"
    elif origin == "Predecessor":
        attr = ""
    else:
        attr = "Sponsor"
    return {"type": origin, "source": attr, "description": source, "pages": []}


# ---------------------------------------------------------------------------------------
# the model: everything the template writes
# ---------------------------------------------------------------------------------------
class _Registry:
    """Collects codelist, method and comment references while items are built."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.codelist_values: dict[tuple[str, str], set[str]] = {}
        self.codelist_users: dict[tuple[str, str], str] = {}
        self.methods: dict[str, str] = {}
        self.comments: dict[str, str] = {}  # text -> oid
        self.comment_ids = set(spec.comments["comment"]) if "comment" in spec.comments else set()
        self.codelist_ids = set(spec.codelists["codelist"])
        self.taken: set[str] = set()

    def codelist(self, codelist: str, datatype: str, values: pd.Series | None, where: str,
                 texts: np.ndarray | None = None) -> str:
        """Register the values a codelist-controlled item takes; returns the (codelist, data
        type) key, resolved to an OID by :meth:`codelist_oids`, or ``None`` when the item has no
        value (no CodeListRef then). ``texts``: the values already as text (:func:`_text`),
        instead of ``values``."""
        if not codelist:
            return None
        if codelist not in self.codelist_ids:
            raise ConfigError(f"{where}: codelist {codelist} is not defined in specs/sdtm/codelists")
        used = (set(texts) if texts is not None else set(_text(values).unique())) - {""}
        if not used:
            return None
        key = (codelist, datatype)
        self.codelist_values.setdefault(key, set()).update(used)
        self.codelist_users.setdefault(key, where)
        return key

    def codelist_oids(self) -> dict[tuple[str, str], str]:
        """OID of each (codelist, data type): ``CL.<codelist>``; a codelist used by items of
        several data types gets one CodeList per type (CodeList/@DataType must match its items):
        ``CL.<codelist>`` for text (or the first type) and ``CL.<codelist>.<type>`` for the others."""
        out = {}
        for codelist in sorted({c for c, _ in self.codelist_values}):
            types = sorted(t for c, t in self.codelist_values if c == codelist)
            main = "text" if "text" in types else types[0]
            for t in types:
                out[(codelist, t)] = f"CL.{oid_part(codelist)}" + ("" if t == main else f".{oid_part(t)}")
        return out

    def method(self, method: str, where: str) -> str:
        method = str(method).strip()
        if not method:
            return ""
        self.methods.setdefault(method, where)
        return method

    def comment(self, text: str, oid: str) -> str:
        text = str(text).strip()
        if not text:
            return ""
        if text in self.comment_ids:
            self.comments.setdefault(f"@{text}", text)
            return text
        if text not in self.comments:
            self.comments[text] = _unique_oid(oid, self.taken)
        return self.comments[text]


_FULL_DATE = r"\d{4}-\d{2}-\d{2}"
_FULL = {"date": re.compile(f"^{_FULL_DATE}$"), "datetime": re.compile(f"^{_FULL_DATE}T\\d{{2}}:\\d{{2}}:\\d{{2}}$"),
         "time": re.compile(r"^\d{2}:\d{2}:\d{2}$")}
#: left-truncated ISO 8601 values (precision reduced from the right only): YYYY, YYYY-MM, ... hh:mm
_TRUNCATED = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2})?)?)?)?)?$")


def date_datatype(spec_type: str, values: pd.Series) -> str:
    """Define-XML 2.1 DataType of an ISO 8601 date/time item from the values it holds: the spec
    type (``date``, ``datetime``, ``time``) when every value is complete; ``partialDate``,
    ``partialDatetime`` (or ``partialTime``) when some value has reduced precision (e.g.
    ``2024-07``, or a datetime without its time); ``incompleteDatetime`` when a component in the
    middle is missing (e.g. ``2024---15``). Define-XML 2.1 section 4.3.1: ``date`` may not hold
    ``2024-07``."""
    if spec_type not in _FULL or pd.api.types.is_numeric_dtype(values):
        return spec_type  # a numeric date (ADaM *DT, SAS date) is typed by the spec
    return _date_type_of_texts(spec_type, _text(values).unique())


def _date_type_of_texts(spec_type: str, texts) -> str:
    """:func:`date_datatype` of a date/time item from the distinct texts of its values (a loop
    over distinct values, not records)."""
    t = [x for x in texts if x != ""]
    full = _FULL[spec_type]
    if all(full.match(x) for x in t):
        return spec_type
    if spec_type == "time":
        return "partialTime"
    if all(_TRUNCATED.match(x) for x in t):
        return "partialDate" if spec_type == "date" and not any("T" in x for x in t) else "partialDatetime"
    return "incompleteDatetime"


def _codelist_datatype(item_type: str) -> str:
    """CodeList/@DataType for items of a define DataType (integer, float or text)."""
    return item_type if item_type in NUMERIC_TYPES else "text"


def dataset_items(frame: pd.DataFrame, spec: Spec, ds: str, reg: _Registry,
                  cols: _Columns | None = None) -> tuple[list[dict], list[dict]]:
    """ItemRefs and ItemDefs of one dataset: the spec variables present in ``frame`` (in spec
    order), lengths from the data (``cols``: the frame's :class:`_Columns`, when the caller has it)."""
    cols = cols or _Columns(frame)
    present = set(frame.columns)
    variables = [r for r in _spec_variables(spec, ds) if r["variable"] in present]
    types = xpt.spec_types(spec, ds)
    # the XPT width of each variable, as xpt.observed_lengths: 8 for a number, else the longest text
    lengths = {r["variable"]: 8 if types.get(r["variable"]) in NUMERIC_TYPES else cols.longest(r["variable"])
               for r in variables}
    keys = [k for k in spec.keys(ds) if k in lengths]
    refs, defs = [], []
    for i, r in enumerate(variables, start=1):
        name, where = r["variable"], f"{ds}.{r['variable']}"
        oid = datasetjson.item_oid(ds, name)
        reg.taken.add(oid)
        dtype = cols.date_type(r["type"], name)
        sig = significant_digits(frame[name]) if dtype == "float" else None
        defs.append({
            "oid": oid, "name": name, "datatype": dtype, "length": lengths[name], "significant_digits": sig,
            "label": r["label"], "display_format": str(r.get("display_format", "") or ""),
            "codelist_key": reg.codelist(r["codelist"], _codelist_datatype(dtype), None, where,
                                         texts=cols.distinct(name) if r["codelist"] else None),
            "origin": origin_entry(r["origin"], r["source"], where),
            "comment_oid": reg.comment(r["comment"], f"COM.{ds}.{name}"),
            "valuelist_oid": "", "method_oid": str(r["method"]).strip(),
        })
        refs.append({
            "item_oid": oid, "order": i, "mandatory": "Yes" if r["core"] == "Req" else "No",
            "key_sequence": keys.index(name) + 1 if name in keys else None, "role": r["role"],
            "method_oid": reg.method(r["method"], where),
        })
    return refs, defs


def _spec_variables(spec: Spec, ds: str) -> tuple[dict, ...]:
    """The spec's variables of one dataset (``spec.vars``) as dicts, in spec order, made once
    per spec and dataset (not changed by the callers)."""
    return per_object(spec, ("define_variables", ds), lambda s: tuple(_records(s.vars(ds))))


def _first_positions(codes: np.ndarray, n: int) -> np.ndarray:
    """Position of the first occurrence of each code ``0 .. n-1`` in ``codes`` (``len(codes)``
    for a code that does not occur): one pass, no sort."""
    first = np.full(n, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first


def _combinations(cols: _Columns, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct combinations of the texts of some columns (e.g. test code, category,
    specimen): ``(combination, first)``, the combination of each record as an integer code
    (``0 .. k-1``) and the position of the first record of each combination."""
    code, k = np.zeros(len(cols.frame), dtype=np.int64), 1
    for c in names:  # loop over the few key columns
        codes, distinct = cols.codes(c)
        code, uniques = pd.factorize(code * len(distinct) + codes)
        k = len(uniques)
    return code, _first_positions(code, k if len(code) else 0)


def _distinguishing(tests: np.ndarray, values: np.ndarray) -> set[str]:
    """The tests (test codes) that occur with more than one value of a column (e.g. a test
    measured in two specimens), from the distinct (test, value) combinations."""
    seen: dict[str, set] = {}
    for test, value in zip(tests.tolist(), values.tolist()):  # the distinct combinations (a few hundred)
        seen.setdefault(test, set()).add(value)
    return {test for test, vals in seen.items() if len(vals) > 1}


def _findings_vlm(frame: pd.DataFrame, spec: Spec, ds: str, cols: _Columns | None = None) -> list[dict]:
    """Value-level rows derived from the data for the result and unit variables of a Findings
    dataset (``--ORRES``, ``--ORRESU``, ``--STRESC``, ``--STRESN``, ``--STRESU``) that have no
    value-level rows in the spec: one per test (``--TESTCD``), with ``--CAT`` and ``--SPEC`` added
    to the where clause for a test that occurs in several categories or specimens. Label ``--TEST``
    (of the test's first record with a result; with the test's units for
    ``--ORRES``/``--STRESC``/``--STRESN``); ``--STRESN`` integer when every result is whole, else
    float; the others text; units with the variable's codelist. Rows (dicts with every key of
    :data:`_VLM_COLUMNS`) sorted by variable (in :data:`_VLM_RESULT` order), then where clause.

    The records are not grouped by their text: each record gets the integer code of its
    (test, category, specimen) combination (:func:`_combinations`), the where clause is worked
    out once per combination, and each result variable's records are then grouped by the code
    of their where clause."""
    cls = str(spec.dataset(ds)["class"]).upper()
    if not cls.startswith("FINDINGS") or ds.startswith("SUPP"):
        return []
    prefix = ds[:2]
    testcd, test = f"{prefix}TESTCD", f"{prefix}TEST"
    if testcd not in frame.columns:
        return []
    cols = cols or _Columns(frame)
    extra = [c for c in (f"{prefix}CAT", f"{prefix}SPEC") if c in frame.columns]
    combination, first = _combinations(cols, [testcd, *extra])
    # the where clause of each combination: the test, and the category/specimen only for the
    # tests it distinguishes
    tests = cols.text(testcd)[first]
    clause = {"where_value": tests}
    for k, c in enumerate(extra, start=2):
        values = cols.text(c)[first]
        keep = pd.Series(tests, dtype=object).isin(_distinguishing(tests, values)).to_numpy()
        clause[f"where{k}_variable"] = np.where(keep, c, "").astype(object)
        clause[f"where{k}_value"] = np.where(keep, values, "").astype(object)
    # combinations with the same where clause (a test in one category only) share one value-level row
    clause_keys: dict[tuple, int] = {}
    clause_of = np.array([clause_keys.setdefault(key, len(clause_keys))  # loop over the combinations
                          for key in zip(*(v.tolist() for v in clause.values()))], dtype=np.int64)
    clauses = list(clause_keys)
    label = cols.text(test) if test in frame.columns else np.full(len(frame), "", dtype=object)
    tested = cols.present(testcd)
    codelists = dict(zip(spec.vars(ds)["variable"], spec.vars(ds)["codelist"]))
    blank = dict.fromkeys(_VLM_COLUMNS, "") | {"dataset": ds, "where_variable": testcd}
    rows = []
    for suffix in _VLM_RESULT:  # loop over the five result variables
        var = f"{prefix}{suffix}"
        if var not in frame.columns:
            continue
        at = np.flatnonzero(cols.present(var) & tested)  # the records with a result
        if not len(at):
            continue
        group = clause_of[combination[at]]  # the where clause of each record with a result
        first_at = _first_positions(group, len(clauses))  # its first record with a result
        whole = np.ones(len(clauses), dtype=bool)
        if suffix == "STRESN":  # integer when every result of the test is whole
            results = pd.to_numeric(frame[var].iloc[at], errors="coerce")
            whole[group[~(results == np.round(results)).to_numpy()]] = False
        units: dict[int, list[str]] = {}
        unit_var = f"{prefix}ORRESU" if suffix == "ORRES" else f"{prefix}STRESU"
        if suffix in ("ORRES", "STRESC", "STRESN") and unit_var in frame.columns:
            # the distinct (where clause, unit) pairs: a few per test
            codes, distinct = cols.codes(unit_var)
            unit = codes[at]
            has_unit = (distinct != "")[unit]
            pairs = pd.unique(group[has_unit] * len(distinct) + unit[has_unit])
            for g, u in zip((pairs // len(distinct)).tolist(), distinct[pairs % len(distinct)].tolist()):
                units.setdefault(g, []).append(u)
        var_type = "text" if suffix != "STRESN" else None
        present = [g for g in range(len(clauses)) if first_at[g] < len(at)]
        for g in sorted(present, key=clauses.__getitem__):  # loop over value-level rows
            rows.append({**blank, **dict(zip(clause, clauses[g])), "label": label[at[first_at[g]]],
                         "unit": ", ".join(sorted(units.get(g, ()))),
                         "type": var_type or ("integer" if whole[g] else "float"), "variable": var,
                         "codelist": codelists.get(var, "") if suffix.endswith("U") else ""})
    return rows


_VLM_COLUMNS = ["dataset", "variable", "where_variable", "where_value", "label", "type", "length",
                "significant_digits", "codelist", "origin", "source", "method", "comment", "unit",
                *(f"where{k}_{p}" for k in _WHERE_EXTRA for p in ("variable", "value"))]


def _valuelevel_records(vl: pd.DataFrame) -> dict[str, tuple[dict, ...]]:
    """Dataset -> the rows of a value-level table as dicts with every key of
    :data:`_VLM_COLUMNS` (missing ones empty), in file order."""
    if not len(vl) or "dataset" not in vl:
        return {}
    rows = vl.reindex(columns=_VLM_COLUMNS, fill_value="").fillna("")
    out: dict[str, list[dict]] = {}
    for r in _records(rows):  # value-level rows (metadata)
        out.setdefault(r["dataset"], []).append(r)
    return {ds: tuple(rs) for ds, rs in out.items()}


def _spec_valuelevel(spec: Spec, ds: str) -> tuple[dict, ...]:
    """The spec's value-level rows of one dataset (:func:`_valuelevel_records`), made once per
    value-level table for all its datasets (not changed by the callers)."""
    return per_object(spec.valuelevel, "define_valuelevel_by_dataset", _valuelevel_records).get(ds, ())


def valuelevel_rows(frame: pd.DataFrame, spec: Spec, ds: str, cols: _Columns | None = None) -> list[dict]:
    """The value-level rows (dicts with the keys of :data:`_VLM_COLUMNS`) of one dataset whose
    variable and where variable are in the data and whose where value occurs; spec rows first,
    then data-derived Findings rows (see :func:`_findings_vlm`) for result variables the spec
    gives no value-level rows for. ``cols``: the frame's :class:`_Columns`, when the caller has it.
    Value-level rows are metadata (a few hundred a study): plain dicts, not frames."""
    cols = cols or _Columns(frame)
    rows = list(_spec_valuelevel(spec, ds))
    in_spec = {r["variable"] for r in rows}
    rows += [r for r in _findings_vlm(frame, spec, ds, cols) if r["variable"] not in in_spec]
    columns = set(frame.columns)
    rows = [r for r in rows if r["variable"] in columns and r["where_variable"] in columns]
    # the values of each where variable once (not once per value-level row: ~600 rows a study)
    values = {w: set(cols.distinct(w)) for w in {r["where_variable"] for r in rows}}
    return [r for r in rows if r["where_value"] in values[r["where_variable"]]]


def value_lists(frame: pd.DataFrame, spec: Spec, ds: str, parents: dict[str, dict], reg: _Registry,
                cols: _Columns | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """ValueListDefs, WhereClauseDefs and value-level ItemDefs of one dataset; sets the parent
    ItemDefs' ``valuelist_oid``. ``cols``: the frame's :class:`_Columns`, when the caller has it."""
    cols = cols or _Columns(frame)
    rows = valuelevel_rows(frame, spec, ds, cols)
    vlists, wheres, items = [], [], []
    if not rows:
        return vlists, wheres, items
    vtypes = dict(zip(spec.vars(ds)["variable"], spec.vars(ds)["type"]))
    where_oids: dict[tuple, str] = {}
    # row positions of each where value, from the column's codes (not once per value-level row)
    wvars = {r["where_variable"] for r in rows} | {r[f"where{k}_variable"] for k in _WHERE_EXTRA for r in rows
                                                   if r[f"where{k}_variable"]}
    groups = {w: cols.positions(w) for w in sorted(wvars)}
    by_variable: dict[str, list[dict]] = {}  # the rows of each variable, variables in order of first row
    for r in rows:
        by_variable.setdefault(r["variable"], []).append(r)
    for var, group in by_variable.items():
        vl_oid = f"VL.{ds}.{var}"
        refs = []
        parent = parents[datasetjson.item_oid(ds, var)]
        for order, r in enumerate(group, start=1):
            conds = [(r["where_variable"], r["where_value"])] + [
                (r[f"where{k}_variable"], r[f"where{k}_value"]) for k in _WHERE_EXTRA if r[f"where{k}_variable"]]
            wkey = tuple(conds)
            suffix = ".".join(oid_part(v) for _, v in conds)
            if wkey not in where_oids:
                names = ".".join(f"{oid_part(w)}.{oid_part(v)}" for w, v in conds)
                w_oid = _unique_oid(f"WC.{ds}.{names}", reg.taken)
                where_oids[wkey] = w_oid
                wheres.append({"oid": w_oid, "checks": [
                    {"item_oid": datasetjson.item_oid(ds, w), "comparator": "EQ", "check_values": [v]} for w, v in conds]})
            pos = groups[conds[0][0]].get(conds[0][1], np.zeros(0, dtype=np.int64))
            for w, v in conds[1:]:
                pos = np.intersect1d(pos, groups[w].get(v, np.zeros(0, dtype=np.int64)))
            where = f"{ds}.{var} where " + " and ".join(f"{w} = {v}" for w, v in conds)
            # the data type, length and codelist terms of the records at ``pos``, from the
            # variable's codes (cols)
            dtype = cols.date_type(r["type"], var, pos) if r["type"] else parent["datatype"]
            length = 8 if vtypes.get(var) in NUMERIC_TYPES else cols.longest(var, pos)  # = char_length
            sig = None
            if dtype == "float":
                sig = int(r["significant_digits"]) if str(r["significant_digits"]).strip() else \
                    significant_digits(frame[var].iloc[pos])
            label = r["label"] or parent["label"]
            if r["unit"]:
                label = f"{label} ({r['unit']})"
            item_oid = _unique_oid(f"IT.{ds}.{var}.{suffix}", reg.taken)
            origin = r["origin"] or parent["origin"]["type"]
            source = r["source"] if r["origin"] else (r["source"] or parent["origin"]["description"])
            items.append({
                "oid": item_oid, "name": var, "datatype": dtype, "length": length, "significant_digits": sig,
                "label": label,
                "codelist_key": reg.codelist(r["codelist"], _codelist_datatype(dtype), None, where,
                                             texts=cols.distinct(var, pos) if r["codelist"] else None),
                "origin": origin_entry(origin, source, where),
                "comment_oid": reg.comment(r["comment"], f"COM.{ds}.{var}.{suffix}"),
                "valuelist_oid": "", "display_format": parent.get("display_format", ""),
            })
            # a row that inherits the variable's origin inherits its method too
            method = r["method"] if r["origin"] else parent.get("method_oid", "")
            refs.append({"item_oid": item_oid, "order": order,
                         "mandatory": "No", "method_oid": reg.method(method, where),
                         "where_oid": where_oids[wkey]})
        vlists.append({"oid": vl_oid, "refs": refs})
        parent["valuelist_oid"] = vl_oid
    return vlists, wheres, items


def _codelist_rows(spec: Spec) -> dict[str, list[dict]]:
    """codelist id -> its rows of the codelist tables as dicts, in file order (what
    :meth:`Spec.codelist` returns), once per codelist table: every study's define.xml reads the
    same table (the study's spec copies share it, :func:`pipeline.rules.ctcae_lab.with_study_version`)."""
    def group(cl: pd.DataFrame) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in cl.to_dict("records"):  # codelist rows (metadata)
            out.setdefault(r["codelist"], []).append(r)
        return out
    return per_object(spec.codelists, "codelist_rows", group)


def codelists(reg: _Registry, spec: Spec) -> list[dict]:
    """CodeLists with only the terms used (spec order, then values outside the codelist)."""
    out = []
    oids = reg.codelist_oids()
    table = _codelist_rows(spec)
    for (codelist, dtype) in sorted(reg.codelist_values):
        used = reg.codelist_values[(codelist, dtype)]
        rows = table.get(codelist)
        if not rows:
            raise ConfigError(f"codelist {codelist} is not in specs/sdtm/codelists/")
        first = rows[0]
        oid = oids[(codelist, dtype)]
        cdisc = bool(str(first["ncit_code"]).strip())
        entry = {"oid": oid, "name": first["name"] or codelist, "datatype": dtype, "code": first["ncit_code"],
                 "standard_oid": STD_CT if cdisc else "", "external": None, "terms": [], "decoded": False}
        dictionary = [r for r in rows if str(r["dictionary"]).strip() != ""]
        if dictionary:
            # the one declared version of a dictionary (standards.toml <dictionary>_version, e.g.
            # meddra_version) wins over the codelist row, so that AE, define.xml, TS and build.log agree
            version = str(spec.standards.get(f"{str(dictionary[0]['dictionary']).strip().lower()}_version",
                                             dictionary[0]["version"]))
            entry["external"] = {"dictionary": dictionary[0]["dictionary"], "version": version}
            entry["standard_oid"] = ""
            out.append(entry)
            continue
        terms = [t for t in rows if t["term"] in used]
        extra = sorted(used - {t["term"] for t in rows},
                       key=lambda t: (len(t), t) if dtype in NUMERIC_TYPES else (0, t))
        items = []
        for t in terms:
            sponsor = cdisc and not str(t["term_ncit_code"]).strip() and "sponsor" in str(t["version"]).lower()
            items.append({"value": t["term"], "decode": t["decode"] or t["term"], "code": t["term_ncit_code"],
                          "extended": sponsor})
        for t in extra:
            items.append({"value": t, "decode": t, "code": "", "extended": cdisc})
        if dtype in NUMERIC_TYPES:
            items.sort(key=lambda i: float(i["value"]) if _is_number(i["value"]) else float("inf"))
        for n, i in enumerate(items, start=1):
            i["order"] = n
        entry["terms"] = items
        entry["decoded"] = any(i["decode"] != i["value"] for i in items)
        out.append(entry)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def method_defs(reg: _Registry, spec: Spec) -> list[dict]:
    """MethodDefs of every method an included item refers to (sorted by OID)."""
    m = spec.methods
    table = {r["method"]: r for r in m.to_dict("records")} if len(m) and "method" in m else {}
    out = []
    for oid in sorted(reg.methods):
        if oid not in table:
            raise ConfigError(f"define.xml: method {oid} (used by {reg.methods[oid]}) is not in specs/sdtm/methods")
        r = table[oid]
        mtype = str(r.get("type", "")).strip()
        if mtype not in METHOD_TYPES:
            raise ConfigError(f"define.xml: method {oid} has type {mtype!r}, not one of {', '.join(METHOD_TYPES)}")
        # the spec's ``source`` (the implementing function) stays in the spec: define.xml
        # describes the derivation for a reviewer, without internal names
        out.append({"oid": oid, "name": r.get("name", "") or oid, "type": mtype,
                    "description": r.get("description", "") or r.get("name", "") or oid})
    return out


def comment_defs(reg: _Registry, spec: Spec) -> list[dict]:
    """CommentDefs: free-text comments of the spec rows, and referenced comment ids."""
    table = dict(zip(spec.comments["comment"], spec.comments["description"])) \
        if len(spec.comments) and "description" in spec.comments else {}
    out = []
    for text, oid in reg.comments.items():
        if text.startswith("@"):
            out.append({"oid": oid, "text": table.get(oid, oid)})
        else:
            out.append({"oid": oid, "text": text})
    return sorted(out, key=lambda c: c["oid"])


def crf_page_refs(spec: Spec, study, item_defs: list[dict], vlists: list[dict], vl_items: list[dict]) -> dict | None:
    """The annotated CRF as a define.xml document (SDTM only), and the def:PDFPageRef pages of
    every Collected origin, set on the items in place.

    Pages come from the layout the aCRF is drawn from (:func:`pipeline.package.acrf.crf_layout`):
    the page of each ``form.COLUMN`` the origin's source names (every page of a bare form name).
    A variable whose own source names no field gets the pages of its value-level items. None
    (no def:AnnotatedCRF) for ADaM or when the study's CRF has no form page."""
    if spec.standard != "sdtm":
        return None
    from pipeline.package import acrf

    layout = acrf.crf_layout(study, spec)
    if not any(p.form for p in layout.pages):
        return None
    for item in item_defs + vl_items:
        if item["origin"]["type"] == "Collected":
            item["origin"]["pages"] = acrf.pages_for_source(layout, item["origin"]["description"])
    by_oid = {i["oid"]: i for i in vl_items}
    vl = spec.valuelevel
    for item in item_defs:
        if item["origin"]["type"] != "Collected" or item["origin"]["pages"]:
            continue
        pages: set[int] = set()
        if item["valuelist_oid"]:
            refs = next(v["refs"] for v in vlists if v["oid"] == item["valuelist_oid"])
            pages = {p for r in refs for p in by_oid[r["item_oid"]]["origin"]["pages"]}
        if not pages and not vl.empty:
            # value-level rows of the spec that did not become a value list (one test only)
            ds, var = item["oid"].split(".")[1:3]
            rows = vl[(vl["dataset"] == ds) & (vl["variable"] == var)]
            pages = {p for src in rows["source"] for p in acrf.pages_for_source(layout, src)}
        item["origin"]["pages"] = sorted(pages)
    return {"id": acrf.LEAF_ID, "href": acrf.ACRF_PDF, "title": acrf.LEAF_TITLE}


def define_model(datasets: dict[str, pd.DataFrame], spec: Spec, study, timestamp: datetime,
                 build_mode: str = "final") -> dict:
    """Everything define.xml says about one study's datasets, as plain dicts and lists.

    ``build_mode`` (``final`` or ``draft``, ``python -m pipeline build --mode``) is stated in the
    MetaDataVersion description.

    ``datasets``: name -> frame as exported (only datasets listed in datasets.csv are described).
    """
    sid = study.studyid
    reg = _Registry(spec)
    known = set(spec.datasets["dataset"])
    groups, item_defs, vlists, wheres, vl_items = [], [], [], [], []
    for ds in sorted(d for d in datasets if d in known):
        frame = xpt.xpt_frame(datasets[ds], spec, ds)
        row = spec.dataset(ds)
        # each column's text and codes, made once for all that follows
        cols = _Columns(frame, xpt.written_distinct(datasets[ds]))
        refs, defs = dataset_items(frame, spec, ds, reg, cols)
        parents = {d["oid"]: d for d in defs}
        vl, wc, vi = value_lists(frame, spec, ds, parents, reg, cols)
        vlists += vl
        wheres += wc
        vl_items += vi
        item_defs += defs
        groups.append({
            "oid": datasetjson.item_group_oid(ds), "name": ds, "sas_name": ds,
            # a split dataset (SDTMIG 3.4 4.1.7, e.g. LBDA) belongs to its 2-letter domain
            # (ADaM datasets have no Domain attribute)
            "domain": "" if spec.standard != "sdtm" else ds[:2] if len(ds) == 4 and not ds.startswith("SUPP") else ds,
            "repeating": "Yes" if str(row["repeating"]).strip() == "Yes" else "No",
            "reference": "Yes" if str(row["reference_data"]).strip() == "Yes" else "No",
            "structure": row["structure"], "class_name": str(row["class"]).strip(), "label": row["label"],
            "subclass": str(row.get("subclass", "")).strip(),
            "comment_oid": reg.comment(row.get("comment", ""), f"COM.{ds}"),
            "refs": refs, "records": int(len(frame)),
            "leaf": {"id": f"LF.{ds}", "href": xpt.xpt_name(ds), "title": xpt.xpt_name(ds)},
        })
    annotated_crf = crf_page_refs(spec, study, item_defs, vlists, vl_items)
    oids = reg.codelist_oids()
    for item in item_defs + vl_items:
        key = item.pop("codelist_key")
        item["codelist_oid"] = oids[key] if key else ""
    std = spec.standards
    # the standard of the spec folder: SDTMIG (specs/sdtm) or ADaMIG (specs/adam, standards.toml ig_name/ig_version)
    ig_name = str(std.get("ig_name", "SDTMIG"))
    ig_version = str(std.get("ig_version", std.get("sdtmig_version", "")))
    model = "SDTM" if spec.standard == "sdtm" else "ADaM"
    kind = "tabulation" if spec.standard == "sdtm" else "analysis"
    return {
        "file_oid": f"{sid}.{model}.define",
        "creation": datasetjson.iso_stamp(timestamp),
        "originator": str(study.get("sponsor", "")) or sid,
        "source_system": datasetjson.SOURCE_SYSTEM,
        "source_version": pipeline.__version__,
        "stylesheet": STYLESHEET_HREF,
        "study_oid": datasetjson.study_oid(sid),
        "study_name": sid,
        "study_description": str(study.get("title", "")) or sid,
        "protocol_name": str(study.get("registry_id", "")) or sid,
        "mdv_oid": datasetjson.metadata_version_oid(sid, spec),
        "mdv_name": f"Study {sid}, {model} data definitions",
        "mdv_description": (f"{ig_name} {ig_version} {kind} datasets of study {sid}, "
                            f"data cut-off {study.data_cutoff}; {build_mode} build"
                            + (" (every verbatim AE term coded)" if build_mode == "final"
                               else " (open coding queries allowed; not for submission)")),
        "define_version": define_version(spec),
        "purpose": str(std.get("purpose", "Tabulation")),
        "standards": [
            {"oid": STD_IG, "name": ig_name, "type": "IG", "publishing_set": "",
             "version": ig_version, "status": "Final"},
            {"oid": STD_CT, "name": "CDISC/NCI", "type": "CT", "publishing_set": str(std.get("ct_publishing_set", "SDTM")),
             "version": str(std.get("ct_version", "")), "status": "Final"},
        ],
        "ig_oid": STD_IG,
        "annotated_crf": annotated_crf,
        "value_lists": vlists,
        "where_clauses": wheres,
        "item_groups": groups,
        "item_defs": item_defs + vl_items,
        "codelists": codelists(reg, spec),
        "methods": method_defs(reg, spec),
        "comments": comment_defs(reg, spec),
    }


# ---------------------------------------------------------------------------------------
# rendering, checking, writing
# ---------------------------------------------------------------------------------------
class _ModelEnvironment(jinja2.Environment):
    """The templates' environment, which looks ``x.name`` up as a key first where ``x`` is a dict.

    The define.xml model is made of dicts (:func:`define_model`), and jinja's ``x.name`` tries
    the attribute first: on a dict that raises and catches an AttributeError before the key is
    found, about 47,000 times for the two define.xml files of a study (about half of rendering
    them). No key of the model is the name of a dict method, so the lookup finds the same values;
    what is not a dict is looked up as jinja does."""

    def getattr(self, obj, attribute):
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = _ModelEnvironment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                            lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["x"] = xml_text
    return env


def render_define(model: dict) -> str:
    """define.xml text of a model (:func:`define_model`)."""
    return _environment().get_template(TEMPLATE).render(**model)


def integrity_problems(xml: bytes | etree._Element) -> list[str]:
    """Referential integrity of a define.xml (its bytes, or its parsed root element): every
    ItemRef/@ItemOID, CodeListRef, MethodOID, def:CommentOID, def:ValueListRef,
    def:WhereClauseRef, RangeCheck/@def:ItemOID, def:StandardOID and def:leaf reference
    resolves; OIDs are unique; every def is used."""
    root = etree.fromstring(xml) if isinstance(xml, bytes) else xml
    mdv = root.find(".//odm:MetaDataVersion", NS)
    if mdv is None:
        return ["no MetaDataVersion"]
    problems = []

    def oids(xpath: str) -> list[str]:
        return [str(o) for o in mdv.xpath(xpath, namespaces=NS)]

    defined = {
        "ItemDef": oids("odm:ItemDef/@OID"), "ItemGroupDef": oids("odm:ItemGroupDef/@OID"),
        "CodeList": oids("odm:CodeList/@OID"), "MethodDef": oids("odm:MethodDef/@OID"),
        "CommentDef": oids("def:CommentDef/@OID"), "ValueListDef": oids("def:ValueListDef/@OID"),
        "WhereClauseDef": oids("def:WhereClauseDef/@OID"), "leaf": oids(".//def:leaf/@ID"),
        "Standard": oids("def:Standards/def:Standard/@OID"),
    }
    for kind, values in defined.items():
        dup = sorted(v for v, n in Counter(values).items() if n > 1)
        problems += [f"{kind} {v} defined more than once" for v in dup]
    refs = {
        "ItemDef": oids(".//odm:ItemRef/@ItemOID") + oids(".//odm:RangeCheck/@def:ItemOID"),
        "CodeList": oids(".//odm:CodeListRef/@CodeListOID"),
        "MethodDef": oids(".//odm:ItemRef/@MethodOID"),
        "CommentDef": oids(".//@def:CommentOID"),
        "ValueListDef": oids(".//def:ValueListRef/@ValueListOID"),
        "WhereClauseDef": oids(".//def:WhereClauseRef/@WhereClauseOID"),
        "leaf": oids(".//odm:ItemGroupDef/@def:ArchiveLocationID") + oids(".//def:DocumentRef/@leafID"),
        "Standard": oids(".//@def:StandardOID"),
    }
    for kind, values in refs.items():
        missing = sorted(set(values) - set(defined[kind]))
        problems += [f"{kind} {v} is referenced but not defined" for v in missing]
    for kind in ("ItemDef", "CodeList", "MethodDef", "CommentDef", "ValueListDef", "WhereClauseDef"):
        unused = sorted(set(defined[kind]) - set(refs[kind]))
        problems += [f"{kind} {v} is defined but never referenced" for v in unused]
    return problems


def defineutils_folder(needed_for: str) -> Path:
    """The installed defineutils package's folder, found without importing it: importing it
    imports its validator and with it xmlschema (about 0.5 s of CPU), while the build needs only
    two files it ships (the schema and the stylesheet) and validates with lxml."""
    found = importlib.util.find_spec("defineutils")
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"{needed_for} needs the package defineutils (pip install defineutils)")
    return Path(next(iter(found.submodule_search_locations)))


def schema_path() -> Path:
    """The Define-XML 2.1 schema (``define2-1-0.xsd``) shipped by defineutils."""
    path = defineutils_folder("define.xml validation") / "validate" / "schema" / "cdisc-define-2.1" / "define2-1-0.xsd"
    if not path.is_file():
        raise ConfigError(f"defineutils does not ship the Define-XML 2.1 schema at {path}")
    return path


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(schema_path())))


def schema_problems(xml: bytes | etree._Element, limit: int = 5) -> list[str]:
    """Define-XML 2.1 XSD violations (at most ``limit``) of a define.xml (its bytes, or its parsed
    root element), validated with lxml against the schema defineutils ships (the tests validate
    again with defineutils' own validator)."""
    schema = _schema()
    if schema.validate(etree.fromstring(xml) if isinstance(xml, bytes) else xml):
        return []
    return [f"line {e.line}: {e.message}" for e in list(schema.error_log)[:limit]]


def stylesheet_path() -> Path:
    """The CDISC define 2.1 stylesheet shipped by defineutils."""
    path = defineutils_folder("define.html") / "definehtml" / "define2-1.xsl"
    if not path.is_file():
        raise ConfigError(f"defineutils does not ship the define stylesheet at {path}")
    return path


#: the stylesheet's look-ups by OID, answered by an ``xsl:key`` index instead of a scan:
#: key name -> (match pattern, use). The stylesheet finds, e.g., the ItemDef of every value-level
#: ItemRef with ``$g_seqItemDefs[@OID=$valueDefOID]``, a scan of all ItemDefs: quadratic, about
#: 2 s of CPU for the ~800 kB define.xml of a shipped study (the ADaM one: 0.1 s).
_XSL_KEYS = {
    "ItemDefs": ("odm:ItemDef", "@OID"),
    "ItemGroupDefs": ("odm:ItemGroupDef", "@OID"),
    "WhereClauseDefs": ("def:WhereClauseDef", "@OID"),
    "ValueListDefs": ("def:ValueListDef", "@OID"),
    "CommentDefs": ("def:CommentDef", "@OID"),
    "MethodDefs": ("odm:MethodDef", "@OID"),
    "CodeLists": ("odm:CodeList", "@OID"),
    "Standard": ("def:Standards/def:Standard", "@OID"),
    "ItemGroupItemRefs": ("odm:ItemGroupDef/odm:ItemRef", "@ItemOID"),
    "ValueListRefs": ("odm:ItemDef/def:ValueListRef", "@ValueListOID"),
    "ItemDefNames": ("odm:ItemDef", "@Name"),
}
_XSL_ARG = r"(\$[A-Za-z_][\w.:/@-]*)"  # a variable, possibly with a path: $ItemOID, $ItemDef/def:ValueListRef/@ValueListOID
#: (expression of the stylesheet, the same look-up through a key). Each scan selects, in a
#: define.xml with one Study and one MetaDataVersion, exactly the nodes the key returns, in the
#: same (document) order: the OID comparisons are the keys' ``use``, the scanned node sets are
#: the keys' ``match`` (``../..`` of a value-level ItemRef is the MetaDataVersion)
_XSL_LOOKUPS = [
    (re.compile(r"\$g_seq(ItemDefs|ItemGroupDefs|WhereClauseDefs|ValueListDefs|CommentDefs|MethodDefs|CodeLists|Standard)"
                r"\[@OID ?= ?" + _XSL_ARG + r"\]"), r"key('define.\1', \2)"),
    (re.compile(r"\$g_seqItemGroupDefs/odm:ItemRef\[@ItemOID ?= ?" + _XSL_ARG + r"\]"),
     r"key('define.ItemGroupItemRefs', \1)"),
    (re.compile(r"\.\./\.\./odm:ItemDef\[@OID ?= ?" + _XSL_ARG + r"\]"), r"key('define.ItemDefs', \1)"),
    (re.compile(r"\.\./\.\./odm:ItemDef/def:ValueListRef\[@ValueListOID ?= ?" + _XSL_ARG + r"\]"),
     r"key('define.ValueListRefs', \1)"),
    (re.compile(r"//odm:ItemGroupDef\[@OID ?= ?" + _XSL_ARG + r"\]"), r"key('define.ItemGroupDefs', \1)"),
    (re.compile(r"/odm:ODM/odm:Study/odm:MetaDataVersion/odm:(ItemDef|ItemGroupDef)\[@OID ?= ?" + _XSL_ARG + r"\]"),
     r"key('define.\1s', \2)"),
    # the ItemDefs of one name (the QVAL of every SUPP-- dataset, once per dataset's keys)
    (re.compile(r"\$g_seqItemDefs\[@Name ?= ?('[A-Za-z0-9_]*')\]"), r"key('define.ItemDefNames', \1)"),
    # the ItemRefs of a dataset whose ItemDef has value-level metadata: the ItemDef of each
    # ref through the key, instead of comparing each ref with the OID of every such ItemDef
    (re.compile(r"odm:ItemRef\[@ItemOID ?= ?\$g_seqItemDefsValueListRef/\.\./@OID\]"),
     r"odm:ItemRef[key('define.ItemDefs', @ItemOID)/def:ValueListRef]"),
]


def keyed_stylesheet(text: str) -> tuple[str, int]:
    """The define 2.1 stylesheet with its OID look-ups through ``xsl:key`` indexes
    (:data:`_XSL_LOOKUPS`), and how many expressions were rewritten. The HTML it makes is
    byte-identical to the original's for a define.xml with one Study and one MetaDataVersion
    (tests compare both on real builds); it is computed here from the file defineutils ships,
    which stays the stylesheet that define.xml names and that is copied next to it."""
    n = 0
    for pattern, key in _XSL_LOOKUPS:
        text, k = pattern.subn(key, text)
        n += k
    declarations = "".join(f'\n  <xsl:key name="define.{name}" match="{match}" use="{use}"/>'
                           for name, (match, use) in _XSL_KEYS.items())
    text, k = re.subn(r"(<xsl:output\b[^>]*/>)", lambda m: m.group(1) + declarations, text, count=1)
    return (text, n) if k else (text, 0)


@lru_cache(maxsize=1)
def _plain_transform() -> etree.XSLT:
    """The stylesheet exactly as shipped."""
    return etree.XSLT(etree.parse(str(stylesheet_path())))


@lru_cache(maxsize=1)
def _transform() -> etree.XSLT:
    """The stylesheet with keyed look-ups (:func:`keyed_stylesheet`); the shipped one if no
    expression could be rewritten (another stylesheet version)."""
    text, n = keyed_stylesheet(stylesheet_path().read_text(encoding="utf-8"))
    if not n:
        return _plain_transform()
    return etree.XSLT(etree.XML(text.encode("utf-8"), base_url=stylesheet_path().as_uri()))


def define_html(xml: bytes | etree._Element, keyed: bool = True) -> bytes:
    """define.html: the define.xml (its bytes, or its parsed root element: :func:`checked_define`)
    through the define 2.1 stylesheet (lxml XSLT), with the comments table and the length/format
    columns shown. ``keyed`` (default) uses the keyed look-ups of :func:`keyed_stylesheet` when the
    document has one Study and one MetaDataVersion (always, for ours); the result is the same bytes."""
    doc = etree.fromstring(xml) if isinstance(xml, bytes) else xml
    single = len(doc.xpath("/odm:ODM/odm:Study", namespaces=NS)) == 1 and \
        len(doc.xpath("/odm:ODM/odm:Study/odm:MetaDataVersion", namespaces=NS)) == 1
    transform = _transform() if keyed and single else _plain_transform()
    try:
        result = transform(doc, displayCommentsTable="1", displayLengthDFormatSD="1")
    except etree.XSLTApplyError as exc:
        raise DataError(f"define.html: the stylesheet failed: {exc}") from None
    return etree.tostring(result, method="html", pretty_print=True, encoding="utf-8", doctype="<!DOCTYPE html>")


def define_xml(datasets: dict[str, pd.DataFrame], spec: Spec, study, timestamp: datetime,
               validate: bool = True, build_mode: str = "final") -> bytes:
    """define.xml bytes for ``datasets``; checked for integrity (and schema validity when
    ``validate``). Raises DataError on a problem."""
    return checked_define(datasets, spec, study, timestamp, validate, build_mode)[0]


def checked_define(datasets: dict[str, pd.DataFrame], spec: Spec, study, timestamp: datetime,
                   validate: bool = True, build_mode: str = "final") -> tuple[bytes, etree._Element]:
    """:func:`define_xml`, and the root element of those bytes as parsed for the checks (neither
    check changes it), for :func:`define_html` to transform without parsing them again."""
    text = render_define(define_model(datasets, spec, study, timestamp, build_mode))
    data = text.encode("utf-8")
    try:
        root = etree.fromstring(data)  # parsed once for both checks
    except etree.XMLSyntaxError as exc:
        raise DataError(f"define.xml is not well-formed: {exc}") from None
    problems = integrity_problems(root)
    if validate:
        problems += schema_problems(root)
    if problems:
        raise DataError("define.xml: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    return data, root


def write_define(study_dir: Path, datasets: dict[str, pd.DataFrame], ctx) -> None:
    """Post-export hook: ``define.xml`` and ``define.html`` into the study's output folder."""
    study, spec = ctx.study, ctx.spec
    stamp = xpt.build_timestamp(study.data_cutoff)
    data, root = checked_define(datasets, spec, study, stamp, build_mode=getattr(ctx, "mode", "final"))
    Path(study_dir, DEFINE_XML).write_bytes(data)
    Path(study_dir, DEFINE_HTML).write_bytes(define_html(root))
    # the stylesheet the xml-stylesheet instruction names, so that define.xml renders in a browser
    Path(study_dir, STYLESHEET_HREF).write_bytes(stylesheet_path().read_bytes())


def _prepare() -> None:
    """Parse the Define-XML schema and compile the stylesheet and the template now, at import
    (~0.2 s of CPU). The build imports this module in its parent process before it forks the
    study workers (:func:`pipeline.parallel.preload`), which then inherit them instead of each
    paying it again. A problem (defineutils missing) is left to the first use to report: the
    caches keep no failure."""
    with contextlib.suppress(ConfigError, OSError, etree.LxmlError, jinja2.TemplateError):
        _schema()
        _transform()
        _environment().get_template(TEMPLATE)


_prepare()
