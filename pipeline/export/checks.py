"""Output checks: every SDTM dataset against a pandera schema generated from ``specs/sdtm``.

Nothing here is written per dataset: :func:`output_schemas` reads the dataset's variables,
codelists and value-level metadata from the :class:`~pipeline.spec.Spec` and returns two
``pandera.DataFrameSchema`` objects, one whose failures are errors (they block the study's
export) and one whose failures are warnings. Both are validated lazily, and every failure
becomes a finding in the gate's columns (``study, file, row, column, value, check, severity,
message``) with ``file`` = the dataset name and ``row`` = the record number (1-based) in the
exported order (rows sorted by the dataset's keys, see :func:`order_dataset`).

Checks (check id -> rule):

=================  ========  ===================================================================
check              severity  rule
=================  ========  ===================================================================
variable_missing   error     a Req or Exp variable of the spec is absent (SDTMIG 3.4 4.1.4: Req
                             and Exp variables are always included)
not_in_spec        error     a variable that the spec does not define for the dataset
required_value     error /   a Req variable is null or empty on a record (SDTMIG 3.4 4.1.4); a
                   warning   warning when the variable is coded with an external dictionary
                             (AEDECOD of a verbatim under coding query, listed in its report)
ct_value           error /   a value outside the variable's codelist; non-extensible codelists
                   warning   give errors, extensible codelists warnings. Codelists that stand
                             for an external dictionary (``dictionary`` filled: MedDRA, CTCAE,
                             ISO 3166) are not checked term by term.
valuelevel_ct      idem      the codelist of a value-level row (``specs/sdtm/valuelevel``), for
                             records matching its where clause
iso8601            error     a date/datetime variable that is not ISO 8601 in one of the
                             right-truncated forms (YYYY, YYYY-MM, YYYY-MM-DD, ...Thh, ...Thh:mm,
                             ...Thh:mm:ss) or not a real calendar date/time (SDTMIG 3.4 4.4.2)
numeric_type       error     a numeric (integer/float) variable holding text
integer_value      error     an ``integer`` variable holding a fraction
max_length_200     error     a character value longer than 200 (XPT v5 limit, SDTMIG 3.4 4.5.3)
spec_length        error     a character value longer than the spec's ``length``
ascii              error     a character value with a non-ASCII or control character
studyid            error     STUDYID differs from the study being built
domain             error     DOMAIN (RDOMAIN in SUPP--) differs from the dataset
seq_unique         error     --SEQ not unique within USUBJID (SDTMIG 3.4 4.1.9)
usubjid_in_dm      error     a USUBJID absent from DM (SDTMIG 3.4 5.2: DM has every subject)
study_day          error     --DY / --STDY / --ENDY differs from the value recomputed from the
                             matching --DTC and DM.RFSTDTC (:func:`pipeline.derive.studyday.study_day`)
duplicate_keys     warning   several records share the dataset's key variables (datasets.csv)
label_length       error     dataset label (datasets.csv) or variable label over 40 characters
dataset_not_in_spec error    a dataset a domain returned that datasets.csv does not list
=================  ========  ===================================================================

At most :data:`MAX_FINDINGS_PER_CHECK` findings are listed per dataset, variable and check;
the rest are counted in one summary finding (``row`` empty) so that a systematic error in a
million-row dataset gives a readable report.

Checks that repeat over values (ISO 8601, ASCII, length) are evaluated once per distinct value
and broadcast back: SDTM columns repeat a lot.
"""

from __future__ import annotations

import re
from collections import namedtuple
from functools import lru_cache
from itertools import repeat
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype

from pipeline.context import FINDING_COLUMNS, empty
from pipeline.derive.seq import key_order
from pipeline.derive.dates import dtc_day_numbers
from pipeline.derive.studyday import study_day_of_difference
from pipeline.export.memo import per_object
from pipeline.spec import NUMERIC_TYPES, Spec

MAX_FINDINGS_PER_CHECK = 50
MAX_VALUE_LENGTH = 200
MAX_LABEL_LENGTH = 40
DATE_TYPES = {"date", "partialDate"}
DATETIME_TYPES = {"datetime", "partialDatetime", "incompleteDatetime"}
_SEP = "|"

MESSAGES: dict[str, str] = {
    "variable_missing": "{ds}: variable {col} (core {detail}) is missing",
    "not_in_spec": "{ds}: variable {col} is not defined for this dataset in the spec",
    "required_value": "{ds}.{col} is required (core Req) but empty",
    "ct_value": "{ds}.{col}: value {val!r} is not a term of codelist {detail}",
    "valuelevel_ct": "{ds}.{col}: value {val!r} is not a term of the value-level codelist for {detail}",
    "iso8601": "{ds}.{col}: {val!r} is not an ISO 8601 right-truncated calendar date/time",
    "numeric_type": "{ds}.{col} is numeric but holds text {val!r}",
    "integer_value": "{ds}.{col} is integer but holds {val!r}",
    "max_length_200": "{ds}.{col}: value longer than 200 characters: {val!r}",
    "spec_length": "{ds}.{col}: value longer than the spec length {detail}: {val!r}",
    "ascii": "{ds}.{col}: value has a non-ASCII or control character: {val!r}",
    "studyid": "{ds}.{col}: {val!r} is not the study being built ({detail})",
    "domain": "{ds}.{col}: {val!r} should be {detail}",
    "seq_unique": "{ds}.{col}: {val!r} is not unique within USUBJID",
    "usubjid_in_dm": "{ds}.{col}: subject {val!r} is not in DM",
    "study_day": "{ds}.{col}: {val!r} differs from the study day recomputed from {detail} and DM.RFSTDTC",
    "duplicate_keys": "{ds}: several records share the keys {detail}",
}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def order_dataset(frame: pd.DataFrame, spec: Spec, name: str) -> pd.DataFrame:
    """Rows sorted by the dataset's keys (stable), index 0..n-1; spec variables first in spec
    order, then any others (so the checks can still report them)."""
    names = spec.var_names(name)
    keys = [k for k in spec.keys(name) if k in frame.columns]
    order = key_order(frame, keys) if keys else None
    # a frame already in key order (most are: the domains sort their records) is not taken again
    out = frame.take(order) if order is not None and (order != np.arange(len(order))).any() else frame
    cols = [c for c in names if c in out.columns] + sorted(c for c in out.columns if c not in names)
    # nor are its columns selected again when already in this order (every dataset a domain builds)
    return (out if cols == list(out.columns) else out[cols]).reset_index(drop=True)


def _values(series: pd.Series) -> np.ndarray:
    """A column's values as :func:`_distinct` hashes them (object unless numeric)."""
    return series.to_numpy(dtype=object) if not pd.api.types.is_numeric_dtype(series.dtype) else series.to_numpy()


def _distinct(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct non-null values as an object array) of a column; code -1 = null."""
    codes, uniques = pd.factorize(_values(series), use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


def _distinct_values(series: pd.Series) -> np.ndarray:
    """The distinct non-null values of :func:`_distinct` (object array, same order), without
    the per-record codes."""
    uniques = pd.unique(_values(series))
    return np.asarray(uniques[~pd.isna(uniques)], dtype=object)


def _broadcast(codes: np.ndarray, result: np.ndarray, missing: bool, index: pd.Index) -> pd.Series:
    """Per-record booleans from the result of each distinct value (``missing`` for nulls: code
    -1 takes the appended last entry)."""
    return pd.Series(np.append(np.asarray(result, dtype=bool), missing)[codes], index=index, dtype=bool)


def by_distinct(series: pd.Series, func: Callable[[pd.Series], pd.Series], missing: bool = True) -> pd.Series:
    """Evaluate a boolean ``func`` once per distinct non-null value and broadcast back.
    Null values get ``missing``."""
    codes, uniques = _distinct(series)
    if len(uniques) == 0:
        return pd.Series(missing, index=series.index, dtype=bool)
    return _broadcast(codes, np.asarray(func(pd.Series(uniques)), dtype=bool), missing, series.index)


def _value_rules_ok(series: pd.Series, rules, cl_info) -> pd.Series:
    """The ``value_rules`` check of one variable: every rule (:func:`_rule_results`) over its
    distinct values, broadcast back; nulls pass."""
    codes, uniques = _distinct(series)
    if len(uniques) == 0:
        return pd.Series(True, index=series.index, dtype=bool)
    return _broadcast(codes, np.logical_and.reduce(_rule_results(uniques, rules, cl_info)), True, series.index)


#: the most values one set of :func:`_passing_text` remembers (bounds its memory on large builds)
PASSING_TEXT_MAX = 1 << 16


def _passing_text(spec: Spec, rules: tuple) -> set[str]:
    """The ``str`` values known to pass every one of ``rules`` (:func:`_value_rules_pass`), one
    set per spec and rule tuple: the same values come back in many variables, datasets and
    studies of a build (STUDYID, USUBJID, dates, codelist terms), each judged once."""
    return per_spec(spec, ("passing_text", rules), lambda _spec: set())


def _value_rules_pass(series: pd.Series, rules, cl_info, passing: set[str] | None = None) -> bool:
    """:func:`_value_rules_ok` is all True: every distinct non-null value passes every rule
    (the clean case, decided without a per-record result).

    ``passing`` (:func:`_passing_text`): values already known to pass. On an object column
    whose values not in it are all ``str``, only those are judged (each rule is value by value
    on text values, :func:`_rule_results`) and, when they pass, remembered; a ``set`` of a small
    column costs less than pandas' ``unique`` (issue 14). Anything else (nulls, numbers, a
    numeric column) is judged over the column's distinct values as before."""
    if passing is not None and series.dtype == object:
        new = set(series.to_numpy()).difference(passing)
        if not new:
            return True
        if all(type(v) is str for v in new):
            if not all(ok.all() for ok in _rule_results(np.array(list(new), dtype=object), rules, cl_info)):
                return False
            if len(passing) < PASSING_TEXT_MAX:
                passing.update(new)
            return True
    uniques = _distinct_values(series)
    return all(ok.all() for ok in _rule_results(uniques, rules, cl_info)) if len(uniques) else True


def _text(s: pd.Series) -> pd.Series:
    """Values as text, null as ''."""
    return s.astype("object").where(s.notna(), "").astype(str)


def _blank(s: pd.Series) -> pd.Series:
    """True where a value is null or an empty/blank string."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.isna()
    return pd.Series(_blank_text(s), index=s.index)


def _blank_text(s: pd.Series) -> np.ndarray:
    """:func:`_blank` of a column that is not numeric, as a numpy array."""
    values = s.to_numpy(dtype=object)
    blank = pd.isna(values)
    blank[~blank] = values[~blank] == ""
    return blank


def _none_blank(s: pd.Series) -> bool:
    """``~_blank(s)`` is all True (the clean case of ``required_value``)."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return not s.isna().any()
    return not _blank_text(s).any()


_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.\d+)?)?)?)?)?)?$")
#: days in each month of a common year
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def iso8601_valid(values: pd.Series, with_time: bool = True) -> pd.Series:
    """True where a text value is a right-truncated ISO 8601 date (or datetime) that exists on
    the calendar (month 01-12, day within its month, 29 February only in leap years, hour
    00-23, minute and second 00-59). Empty text is valid (missing is checked elsewhere)."""
    return pd.Series(_iso8601_ok(_text(values).to_numpy(dtype=object), with_time), index=values.index)


def _iso8601_ok(text: np.ndarray, with_time: bool) -> np.ndarray:
    """:func:`iso8601_valid` of text values (object array of str): each distinct ASCII text is
    judged once by :func:`_iso8601_text_ok` (memoised: dates repeat across the datasets and
    studies of a build); text with other characters by :func:`_iso8601_valid_pandas`."""
    ok = np.fromiter(map(_iso8601_text_ok, text, repeat(with_time, len(text))), dtype=bool, count=len(text))
    other = np.flatnonzero(~np.fromiter(map(str.isascii, text), dtype=bool, count=len(text)))
    if len(other):  # e.g. digits of another script, which \d matches
        ok[other] = _iso8601_valid_pandas(pd.Series(text[other], dtype=object), with_time).to_numpy(dtype=bool)
    return ok


@lru_cache(maxsize=1 << 16)
def _iso8601_text_ok(text: str, with_time: bool) -> bool:
    """One ASCII text value: empty, or a right-truncated ISO 8601 date/datetime whose month,
    day, hour, minute and second exist. The calendar is the proleptic Gregorian one of pandas'
    date parser (every year 0000-9999; 0000 is a leap year)."""
    if text == "":
        return True
    m = (_DATETIME_RE if with_time else _DATE_RE).search(text)
    if m is None:
        return False
    year, month, day, hour, minute, second = (*m.groups(), None, None, None)[:6]
    if month is not None and not 1 <= int(month) <= 12:
        return False
    if day is not None:
        y, mo = int(year), int(month)
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        if not 1 <= int(day) <= _MONTH_DAYS[mo - 1] + (mo == 2 and leap):
            return False
    return all(v is None or int(v) <= top for v, top in ((hour, 23), (minute, 59), (second, 59)))


def _iso8601_valid_pandas(values: pd.Series, with_time: bool = True) -> pd.Series:
    """:func:`iso8601_valid` with pandas' string and date functions (the text values that are not
    ASCII; the tests compare it with :func:`_iso8601_text_ok` on ASCII text)."""
    s = _text(values)
    parts = s.str.extract(_DATETIME_RE if with_time else _DATE_RE)
    parts.columns = ["y", "m", "d", "h", "mi", "se"][: parts.shape[1]]
    shaped = parts["y"].notna()
    num = parts.apply(pd.to_numeric, errors="coerce")
    month_ok = num["m"].isna() | num["m"].between(1, 12)
    full = parts["y"] + "-" + parts["m"] + "-" + parts["d"]
    day_ok = parts["d"].isna() | pd.to_datetime(full, format="%Y-%m-%d", errors="coerce").notna()
    ok = shaped & month_ok & day_ok
    if with_time:
        ok &= (num["h"].isna() | num["h"].between(0, 23)) & (num["mi"].isna() | num["mi"].between(0, 59)) \
            & (num["se"].isna() | num["se"].between(0, 59))
    return s.eq("") | ok


def _check(fn, check: str, col: str, detail: str = "", all_pass: Callable[[pd.Series], bool] | None = None
           ) -> pa.Check:
    """A pandera check whose name carries (check id, target variable, detail). ``all_pass``: a
    cheaper test that ``fn`` is all True (over distinct values, without a per-record Series),
    which :func:`_clean` asks instead of ``fn``; pandera always runs ``fn``."""
    chk = pa.Check(fn, name=_SEP.join([check, col, detail]), ignore_na=False)
    chk.all_pass = all_pass
    return chk


# ---------------------------------------------------------------------------------------
# schema generation
# ---------------------------------------------------------------------------------------
def per_spec(spec: Spec, name: str, compute: Callable[[Spec], object]):
    """``compute(spec)``, evaluated once per loaded spec and remembered under ``name``
    (:func:`pipeline.export.memo.per_object`; also used for the DM frame of a study)."""
    return per_object(spec, name, compute)


def _compute_codelist_info(spec: Spec) -> dict[str, tuple[frozenset[str], bool, bool]]:
    cl = spec.codelists
    if cl.empty:
        return {}
    flags = pd.DataFrame({
        "codelist": cl["codelist"],
        "extensible": cl["extensible"].str.strip().str.lower().isin(["yes", "y", "true"]),
        "dictionary": cl["dictionary"].str.strip().ne("") if "dictionary" in cl else False,
    }).groupby("codelist", sort=True)[["extensible", "dictionary"]].any()
    terms = cl.groupby("codelist", sort=True)["term"].agg(frozenset)
    return {cid: (terms[cid], bool(ext), bool(dic))
            for cid, ext, dic in zip(flags.index, flags["extensible"], flags["dictionary"])}


def _codelist_info(spec: Spec) -> dict[str, tuple[frozenset[str], bool, bool]]:
    """codelist id -> (terms, extensible, external dictionary); computed once per spec."""
    return per_spec(spec, "codelist_info", _compute_codelist_info)


#: the spec columns of one variable that its checks read
_Var = namedtuple("_Var", "variable type core codelist length")


def _spec_variables(spec: Spec, name: str) -> list[_Var]:
    """The variables of one dataset in spec order (zip of columns: ``itertuples`` builds a
    namedtuple class per call)."""
    v = spec.vars(name)
    return [_Var(*row) for row in zip(v["variable"], v["type"], v["core"], v["codelist"], v["length"])]


def _dm_subjects(dm: pd.DataFrame) -> frozenset[str]:
    """The subjects of DM as text, once per DM frame (every dataset of a study is checked
    against the same DM)."""
    return per_spec(dm, "subjects", lambda d: frozenset(_text(d["USUBJID"])))


def _dm_reference_days(dm: pd.DataFrame) -> tuple[pd.Index, np.ndarray] | None:
    """DM's subjects (USUBJID, the first record of each) and the day number of their RFSTDTC
    (:func:`~pipeline.derive.dates.dtc_day_numbers`; NaN when partial or missing); None
    without RFSTDTC. Once per DM frame: every --DY variable of the study is checked with it."""
    def compute(d: pd.DataFrame):
        if "RFSTDTC" not in d:
            return None
        first = d.drop_duplicates("USUBJID")
        return pd.Index(first["USUBJID"]), dtc_day_numbers(first["RFSTDTC"])
    return per_spec(dm, "rfstdtc_days", compute)


@dataclass
class _Plan:
    """What one generated pandera schema checks, before it is built: ``columns`` maps a
    variable to (its checks, required, title). Building a ``pandera.DataFrameSchema`` deep-copies
    every column and check (~1.5 ms a dataset), so the build makes one only for a dataset that
    fails (:func:`check_dataset`); :func:`output_schemas` makes both."""

    name: str
    columns: dict[str, tuple[list[pa.Check], bool, str | None]]
    checks: list[pa.Check]
    strict: bool

    def schema(self) -> pa.DataFrameSchema:
        cols = {col: pa.Column(None, checks=chks, nullable=True, required=required, name=col, title=title)
                for col, (chks, required, title) in self.columns.items()}
        return pa.DataFrameSchema(cols, checks=self.checks, strict=self.strict, name=self.name)


def output_schemas(spec: Spec, name: str, studyid: str | None = None,
                   dm: pd.DataFrame | None = None) -> dict[str, pa.DataFrameSchema]:
    """``{"error": schema, "warning": schema}`` for one dataset, generated from the spec.

    ``dm`` (the DM dataset) enables the USUBJID-in-DM and study-day checks; ``studyid``
    enables the STUDYID check.
    """
    return {severity: plan.schema() for severity, plan in _plans(spec, name, studyid, dm).items()}


#: the checks of one dataset that depend on the spec alone (:func:`_spec_plan`): per variable
#: (variable, core, error checks, warning checks), then the frame checks around the study-day ones
_SpecPlan = namedtuple("_SpecPlan", "variables names seq_checks warn_frame_checks valuelevel")


def _spec_plan(spec: Spec, name: str) -> _SpecPlan:
    """The spec-only part of :func:`_plans`, built once per spec and dataset (a build worker
    checks 2-3 studies with one spec; the ~30 pandera checks of a dataset were made again for
    each, issue 14). The checks are only called, never changed, so the studies share them."""
    return per_spec(spec, ("spec_plan", name), lambda sp: _compute_spec_plan(sp, name))


def _compute_spec_plan(spec: Spec, name: str) -> _SpecPlan:
    variables = _spec_variables(spec, name)
    names = {var.variable for var in variables}
    cl_info = _codelist_info(spec)
    out = []
    for var in variables:  # one pass per spec variable (metadata, not records)
        col, typ, core = var.variable, var.type, var.core
        checks: list[pa.Check] = []
        wchecks: list[pa.Check] = []
        numeric = typ in NUMERIC_TYPES
        if core == "Req":
            # a dictionary-coded Req variable (AEDECOD) may be empty while its coding query is open
            coded = bool(var.codelist) and var.codelist in cl_info and cl_info[var.codelist][2]
            (wchecks if coded else checks).append(_check(lambda s: ~_blank(s), "required_value", col,
                                                         all_pass=_none_blank))
        if numeric:
            checks.append(_check(_numeric_ok, "numeric_type", col, all_pass=_numeric_pass))
            if typ == "integer":
                checks.append(_check(_integer_ok, "integer_value", col, all_pass=_integer_pass))
        rules = value_rules(var, cl_info)
        err_rules = [r for r in rules if r[0] != "ct_value" or not cl_info[r[1]][1]]
        warn_rules = [r for r in rules if r[0] == "ct_value" and cl_info[r[1]][1]]
        if err_rules:
            r = tuple(err_rules)
            checks.append(_check(lambda s, r=r, c=cl_info: _value_rules_ok(s, r, c),
                                 "value_rules", col, _rules_text(err_rules),
                                 all_pass=lambda s, r=r, c=cl_info, p=_passing_text(spec, r): _value_rules_pass(s, r, c, p)))
        if warn_rules:
            r = tuple(warn_rules)
            wchecks.append(_check(lambda s, r=r, c=cl_info: _value_rules_ok(s, r, c),
                                  "value_rules", col, _rules_text(warn_rules),
                                  all_pass=lambda s, r=r, c=cl_info, p=_passing_text(spec, r): _value_rules_pass(s, r, c, p)))
        if col == "DOMAIN":
            # a split dataset (SDTMIG 3.4 4.1.7, e.g. LBDA) carries its 2-letter domain
            checks.append(_check(lambda s, d=name[:2]: s.eq(d), "domain", col, name[:2]))
        if col == "RDOMAIN" and name.startswith("SUPP") and len(name) > 4:
            checks.append(_check(lambda s, d=name[4:]: s.eq(d), "domain", col, name[4:]))
        out.append((col, core, tuple(checks), tuple(wchecks)))

    seq_checks: list[pa.Check] = []
    # --SEQ unique within USUBJID (a split dataset such as LBDA keeps its domain's LBSEQ)
    seq = f"{name}SEQ" if f"{name}SEQ" in names else f"{name[:2]}SEQ"
    if seq in names and "USUBJID" in names:
        seq_checks.append(_check(
            lambda d, c=seq: _guard(d, ["USUBJID", c], lambda: ~d.duplicated(["USUBJID", c], keep=False)),
            "seq_unique", seq, all_pass=lambda d, c=seq: _unique_keys(d, ("USUBJID", c))))
    warn_frame_checks: list[pa.Check] = []
    # key uniqueness (warning)
    keys = spec.keys(name)
    if keys:
        warn_frame_checks.append(_check(
            lambda d, k=tuple(keys): _guard(d, list(k), lambda: ~d.duplicated(list(k), keep=False)),
            "duplicate_keys", keys[-1], ", ".join(keys), all_pass=lambda d, k=tuple(keys): _unique_keys(d, k)))
    return _SpecPlan(tuple(out), frozenset(names), tuple(seq_checks), tuple(warn_frame_checks),
                     tuple(_valuelevel_checks(spec, name, names)))


def _plans(spec: Spec, name: str, studyid: str | None, dm: pd.DataFrame | None) -> dict[str, _Plan]:
    """The two schemas of :func:`output_schemas`, as plans: the spec's checks of the dataset
    (:func:`_spec_plan`) with those of the study (STUDYID, USUBJID in DM, study days) added in
    the same places."""
    plan = _spec_plan(spec, name)
    names = plan.names
    err_cols: dict[str, tuple[list[pa.Check], bool, str | None]] = {}
    warn_cols: dict[str, tuple[list[pa.Check], bool, str | None]] = {}
    for col, core, spec_checks, wchecks in plan.variables:  # the spec variables (metadata)
        checks = list(spec_checks)
        if col == "STUDYID" and studyid:
            checks.append(_check(lambda s, sid=studyid: s.eq(sid), "studyid", col, studyid))
        if col == "USUBJID" and dm is not None and name != "DM":
            # e.g. RELREC dataset-level relationships have no USUBJID (SDTMIG 3.4 8.3)
            subjects = _dm_subjects(dm)
            subj = subjects if core == "Req" else subjects | {""}
            checks.append(_check(lambda s, subj=subj: s.isin(subj), "usubjid_in_dm", col))
        err_cols[col] = (checks, core in ("Req", "Exp"), f"core {core}")
        if wchecks:
            warn_cols[col] = (list(wchecks), False, None)

    err_frame_checks = list(plan.seq_checks)
    warn_frame_checks = list(plan.warn_frame_checks)
    # --DY against --DTC and DM.RFSTDTC
    if dm is not None and "USUBJID" in names:
        ref = _dm_reference_days(dm)
        for dy in sorted(n for n in names if n.endswith("DY") and n != "VISITDY"):
            dtc = dy[:-2] + "DTC"
            if dtc in names and ref is not None:
                err_frame_checks.append(_check(
                    lambda d, dy=dy, dtc=dtc, ref=ref: _guard(d, ["USUBJID", dy, dtc], lambda: _study_day_ok(d, dy, dtc, ref)),
                    "study_day", dy, dtc))
    # value-level codelists
    for severity, chk in plan.valuelevel:
        (err_frame_checks if severity == "error" else warn_frame_checks).append(chk)

    return {"error": _Plan(name, err_cols, err_frame_checks, strict=True),
            "warning": _Plan(name, warn_cols, warn_frame_checks, strict=False)}


def value_rules(var, cl_info) -> list[tuple[str, str]]:
    """The per-value rules of one spec variable: ``(check id, detail)`` pairs. They are run as one
    pandera check over the column's distinct values (:func:`_value_rules_ok`); a failing value is then
    attributed to the rule(s) it breaks (:func:`_value_rule_findings`)."""
    rules: list[tuple[str, str]] = []
    numeric = var.type in NUMERIC_TYPES
    if not numeric:
        rules += [("max_length_200", ""), ("ascii", "")]
        length = str(var.length).strip()
        if length.isdigit():
            rules.append(("spec_length", length))
        if var.type in DATE_TYPES or var.type in DATETIME_TYPES or var.variable.endswith("DTC"):
            rules.append(("iso8601", "date" if var.type in DATE_TYPES else "datetime"))
    if var.codelist and var.codelist in cl_info and not cl_info[var.codelist][2]:
        rules.append(("ct_value", var.codelist))
    return rules


def _rules_text(rules) -> str:
    return ",".join(f"{c}:{d}" for c, d in rules)


def _rules_parse(text: str) -> list[tuple[str, str]]:
    return [tuple(x.split(":", 1)) for x in text.split(",") if x]


#: a text value made only of printable ASCII (0x20-0x7E); the ``ascii`` rule
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*").fullmatch


def _as_text(values: np.ndarray) -> np.ndarray:
    """Distinct non-null values (object array) as text: the values themselves when all are str,
    else pandas' ``astype(str)`` of them (a number in a character variable)."""
    if infer_dtype(values, skipna=False) == "string":
        return values
    return pd.Series(values, dtype=object).astype(str).to_numpy(dtype=object)


def _ct_ok(values: np.ndarray, text: np.ndarray, terms: frozenset[str]) -> np.ndarray:
    """True where a distinct value is empty or a term of the codelist."""
    if infer_dtype(values, skipna=False) == "string":
        return (values == "") | np.fromiter(map(terms.__contains__, values), dtype=bool, count=len(values))
    # a numeric variable with a codelist (e.g. a coded integer): compare its text form
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    num_text = num.map(lambda x: str(int(x)) if pd.notna(x) and float(x).is_integer() else str(x))
    return (pd.Series(text, dtype=object).isin(terms) | num_text.isin(terms)).to_numpy(dtype=bool)


def _rule_results(values: np.ndarray, rules, cl_info) -> list[np.ndarray]:
    """For each ``(rule, detail)``, True where a distinct value (object array, no nulls) passes it.

    The column's text and lengths are computed once for all its rules; the per-value work is
    C-level ``map`` over the distinct values (what pandas' ``.str`` methods do element by
    element), without building a Series per rule."""
    n = len(values)
    text = _as_text(values)
    lengths = None
    out = []
    for rule, detail in rules:  # the column's few rules (metadata)
        if rule in ("max_length_200", "spec_length"):
            if lengths is None:
                lengths = np.fromiter(map(len, text), dtype=np.int64, count=n)
            out.append(lengths <= (MAX_VALUE_LENGTH if rule == "max_length_200" else int(detail)))
        elif rule == "ascii":
            out.append(np.fromiter(map(_PRINTABLE_ASCII, text), dtype=bool, count=n))
        elif rule == "iso8601":
            out.append(_iso8601_ok(text, with_time=detail != "date"))
        elif rule == "ct_value":
            out.append(_ct_ok(values, text, cl_info[detail][0]))
        else:
            raise ValueError(rule)
    return out


def _rule_ok(values: pd.Series, rule: str, detail: str, cl_info) -> pd.Series:
    """True where distinct ``values`` (object, no nulls) pass one rule."""
    return pd.Series(_rule_results(values.to_numpy(dtype=object), [(rule, detail)], cl_info)[0], index=values.index)


def _guard(frame: pd.DataFrame, needed: list[str], fn: Callable[[], pd.Series]) -> pd.Series:
    """Run a frame-level check only when its variables are present (their absence is
    reported once, as variable_missing)."""
    if any(c not in frame.columns for c in needed):
        return pd.Series(True, index=frame.index)
    return fn()


#: the largest product of the keys' distinct counts that one int64 code of a key combination holds
_KEY_CODE_SPAN = 2 ** 62


def _unique_keys(frame: pd.DataFrame, keys: tuple[str, ...]) -> bool:
    """The clean case of ``seq_unique`` and ``duplicate_keys``: no two records share the values of
    ``keys``, compared as ``DataFrame.duplicated`` compares them, or a key variable is absent
    (:func:`_guard`; reported once as variable_missing).

    Over two or more keys, each is factorised once (every missing value one code, as pandas'
    factorize makes None and NaN one value); the codes are combined into one int64 per record
    (mixed radix, missing as 0), renumbered whenever the product of the distinct counts would
    overflow; the keys are unique when the combined codes are. That is what ``duplicated`` does,
    without its per-record boolean Series, which only a failing dataset needs (for the findings).
    One key goes to ``Series.duplicated``, as ``DataFrame.duplicated`` does (it tells None from NaN)."""
    if any(k not in frame.columns for k in keys):
        return True
    if len(keys) == 1:
        return not frame[keys[0]].duplicated(keep=False).any()
    combined = np.zeros(len(frame), dtype=np.int64)
    span = 1
    for k in keys:  # the dataset's few key variables
        codes, uniques = pd.factorize(frame[k], use_na_sentinel=True)
        radix = len(uniques) + 1
        if span * radix > _KEY_CODE_SPAN:
            combined, distinct = pd.factorize(combined)
            span = len(distinct)
        combined = combined * radix + (codes + 1)
        span *= radix
    return len(pd.unique(combined)) == len(combined)


def _numeric_ok(s: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(True, index=s.index)
    # an object column: numbers and nulls pass, text does not (only on an already-wrong dtype)
    is_text = s.map(lambda x: isinstance(x, str | bool))
    return s.isna() | ~is_text


def _numeric_pass(s: pd.Series) -> bool:
    """``_numeric_ok(s)`` is all True (a numeric column always is)."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return True
    return bool(_numeric_ok(s).all())


def _integer_ok(s: pd.Series) -> pd.Series:
    n = pd.to_numeric(s, errors="coerce")
    return n.isna() | (n == np.round(n))


def _integer_pass(s: pd.Series) -> bool:
    """``_integer_ok(s)`` is all True, on the float64 values of a numpy float or integer column."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiu":
        n = s.to_numpy(dtype=np.float64)
        return bool((np.isnan(n) | (n == np.round(n))).all())
    return bool(_integer_ok(s).all())


def _study_day_ok(frame: pd.DataFrame, dy: str, dtc: str, ref: tuple[pd.Index, np.ndarray]) -> pd.Series:
    """Recompute --DY as :func:`~pipeline.derive.studyday.study_day` does from --DTC (each
    distinct date text read once) and the subject's DM.RFSTDTC (``ref``:
    :func:`_dm_reference_days`; a subject not in DM has none)."""
    subjects, reference_days = ref
    rfstdtc_days = np.append(reference_days, np.nan)[subjects.get_indexer(frame["USUBJID"])]
    expected = study_day_of_difference(dtc_day_numbers(frame[dtc]) - rfstdtc_days)
    actual = pd.to_numeric(frame[dy], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.Series((np.isnan(expected) & np.isnan(actual)) | (expected == actual), index=frame.index)


def _compute_valuelevel_groups(spec: Spec) -> dict[str, list[tuple[str, str, str, pd.MultiIndex, frozenset]]]:
    """dataset -> [(variable, where variable, severity, allowed (where value, term) pairs,
    restricted where values)] of the value-level codelists, in (variable, where variable)
    order, errors (non-extensible codelists) before warnings; once per spec."""
    vl = spec.valuelevel
    out: dict[str, list] = {}
    if vl.empty or not {"dataset", "variable", "where_variable", "where_value", "codelist"} <= set(vl.columns):
        return out
    cl_info = _codelist_info(spec)
    rows = vl[(vl["codelist"] != "") & (vl["where_variable"] != "")]
    for (ds, var, wvar), grp in rows.groupby(["dataset", "variable", "where_variable"], sort=True):
        for severity in ("error", "warning"):
            pairs = []
            for where_value, codelist in zip(grp["where_value"], grp["codelist"]):  # metadata rows
                if codelist not in cl_info:
                    continue
                terms, extensible, dictionary = cl_info[codelist]
                if dictionary or (severity == "error") == extensible:
                    continue
                pairs += [(where_value, t) for t in terms]
            if pairs:
                out.setdefault(ds, []).append(
                    (var, wvar, severity, pd.MultiIndex.from_tuples(pairs), frozenset(p[0] for p in pairs)))
    return out


def _text_values(s: pd.Series) -> np.ndarray:
    """:func:`_text` of a column as an object array (the column's own array when it holds only
    ``str``, the export form)."""
    values = s.to_numpy()
    if s.dtype == object and infer_dtype(values, skipna=False) == "string":
        return values
    return _text(s).to_numpy(dtype=object)


def _valuelevel_ok(where: np.ndarray, value: np.ndarray, allowed: frozenset, restricted: frozenset) -> np.ndarray:
    """True where a record's (where value, value) pair passes a value-level codelist: the where
    value has no codelist (not in ``restricted``), the value is empty, or the pair is ``allowed``.
    Judged once per distinct pair and broadcast back."""
    wc, wu = pd.factorize(where)
    vc, vu = pd.factorize(value)
    width = max(len(vu), 1)
    pc, pairs = pd.factorize(wc.astype(np.int64) * width + vc)
    ok = [w not in restricted or v == "" or (w, v) in allowed  # distinct pairs, not records
          for w, v in zip(np.asarray(wu, dtype=object)[pairs // width], np.asarray(vu, dtype=object)[pairs % width])]
    return np.array(ok, dtype=bool)[pc]


def _valuelevel_checks(spec: Spec, name: str, names: set[str]) -> list[tuple[str, pa.Check]]:
    out = []
    for var, wvar, severity, allowed, restricted in per_spec(spec, "valuelevel_groups", _compute_valuelevel_groups
                                                             ).get(name, []):
        if var not in names or wvar not in names:
            continue

        def fn(d, var=var, wvar=wvar, allowed=frozenset(allowed.tolist()), restricted=restricted):
            def inner():
                return pd.Series(_valuelevel_ok(_text_values(d[wvar]), _text_values(d[var]), allowed, restricted),
                                 index=d.index)
            return _guard(d, [var, wvar], inner)
        out.append((severity, _check(fn, "valuelevel_ct", var, f"{wvar}")))
    return out


# ---------------------------------------------------------------------------------------
# running the checks
# ---------------------------------------------------------------------------------------
def _value_rule_findings(frame, idx, ds, target, studyid, severity, detail, cl_info) -> list[dict]:
    """Attribute the failing records of a ``value_rules`` check to the rule(s) each breaks."""
    values = frame[target].iloc[idx.to_numpy()]
    rows = []
    for rule, rdetail in _rules_parse(detail):
        bad = ~_rule_ok(values.astype(object).reset_index(drop=True), rule, rdetail, cl_info).to_numpy(dtype=bool)
        bad_idx = idx[bad]
        rows += _listed(frame, bad_idx, ds, target, studyid, rule, severity, rdetail)
    return rows


def _listed(frame, idx, ds, target, studyid, check, severity, detail) -> list[dict]:
    """Findings for the first :data:`MAX_FINDINGS_PER_CHECK` records and one summary line."""
    rows = []
    shown = idx.iloc[:MAX_FINDINGS_PER_CHECK]
    values = frame[target].iloc[shown.to_numpy()] if target in frame.columns else pd.Series([""] * len(shown))
    for i, val in zip(shown.tolist(), values.tolist()):
        rows.append(_finding(studyid, ds, i + 1, target, val, check, severity, detail=detail))
    if len(idx) > len(shown):
        rows.append({"study": studyid, "file": ds, "row": "", "column": target, "value": "", "check": check,
                     "severity": severity,
                     "message": f"{ds}.{target}: {len(idx) - len(shown)} more record(s) fail {check} "
                                f"({len(idx)} in all; first {len(shown)} listed)"})
    return rows


def _failures_to_findings(fc: pd.DataFrame, frame: pd.DataFrame, ds: str, studyid: str, severity: str,
                          schema: pa.DataFrameSchema, cl_info=None) -> pd.DataFrame:
    rows = []
    for (check_name, column), grp in fc.groupby(["check", fc["column"].fillna("")], sort=True, dropna=False):
        check_name = str(check_name)
        if check_name in ("column_in_dataframe", "column_in_schema"):
            for val in sorted(grp["failure_case"].astype(str)):
                if check_name == "column_in_dataframe":
                    core = schema.columns[val].title.replace("core ", "") if val in schema.columns else ""
                    rows.append(_finding(studyid, ds, "", val, "", "variable_missing", severity, detail=core))
                else:
                    rows.append(_finding(studyid, ds, "", val, "", "not_in_spec", severity))
            continue
        if _SEP not in check_name:
            # pandera itself failed a check (e.g. an exception): report it verbatim
            for r in grp.itertuples(index=False):  # pandera's own check errors: a few, not records
                rows.append({"study": studyid, "file": ds, "row": "", "column": str(column), "value": "",
                             "check": "check_error", "severity": severity,
                             "message": f"{ds}.{column}: check {check_name} failed: {r.failure_case}"})
            continue
        check, target, detail = check_name.split(_SEP, 2)
        if column and column != target:
            continue  # a frame-level check lists every variable of a failing row: keep the target
        idx = pd.to_numeric(grp["index"], errors="coerce").dropna().astype(int).drop_duplicates().sort_values()
        if idx.empty:
            rows.append(_finding(studyid, ds, "", target, "", check, severity, detail=detail))
            continue
        if check == "value_rules":
            rows += _value_rule_findings(frame, idx, ds, target, studyid, severity, detail, cl_info)
            continue
        rows += _listed(frame, idx, ds, target, studyid, check, severity, detail)
    return pd.DataFrame(rows, columns=FINDING_COLUMNS) if rows else empty(FINDING_COLUMNS)


def _finding(studyid, ds, row, col, val, check, severity, detail="") -> dict:
    if isinstance(val, float) and np.isnan(val):
        val = ""
    sval = str(val)
    shown = sval if len(sval) <= 60 else sval[:57] + "..."
    msg = MESSAGES.get(check, "{ds}.{col}: check {check} failed").format(ds=ds, col=col, val=shown, detail=detail,
                                                                         check=check)
    return {"study": studyid, "file": ds, "row": row, "column": col, "value": sval[:200], "check": check,
            "severity": severity, "message": msg}


def _all_true(result) -> bool:
    """A check function's result is a pass: a boolean Series/array that is all True, or True."""
    if isinstance(result, bool | np.bool_):
        return bool(result)
    if isinstance(result, pd.Series | np.ndarray) and result.dtype == bool:
        return bool(result.all())
    return False  # anything else is judged by pandera itself


def _passes_check(chk: pa.Check, obj) -> bool:
    """One check of :func:`_clean` on a column or frame: its ``all_pass`` test when it has one
    (:func:`_check`), else its function's result judged by :func:`_all_true`."""
    all_pass = getattr(chk, "all_pass", None)
    return bool(all_pass(obj)) if all_pass is not None else _all_true(chk._check_fn(obj))


def passes(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    """True when ``schema.validate(frame, lazy=True)`` raises nothing, decided by calling the
    schema's check functions (all ours, :func:`output_schemas`) directly: required columns
    present, no column outside a strict schema, every column and frame check all True. When
    it is False (or a check raises), pandera validates as before and reports the failures, so
    the findings do not change; a clean dataset (the usual case) skips pandera's per-check
    bookkeeping, about a fifth of the output checks' time."""
    columns = schema.columns
    if frame.columns.has_duplicates or any(c.dtype is not None or c.unique or c.regex for c in columns.values()):
        return False
    return _clean({name: (col.checks, col.required) for name, col in columns.items()}, schema.checks,
                  bool(schema.strict), frame)


def _clean(columns: dict[str, tuple], frame_checks: list[pa.Check], strict: bool, frame: pd.DataFrame) -> bool:
    """The test of :func:`passes` over ``columns`` (variable -> (checks, required, ...)) and
    ``frame_checks``, on a frame whose column names are unique."""
    if strict and any(c not in columns for c in frame.columns):
        return False
    try:
        for name, (col_checks, required, *_) in columns.items():
            if name not in frame.columns:
                if required:
                    return False
                continue
            values = frame[name]
            if not all(_passes_check(chk, values) for chk in col_checks):
                return False
        return all(_passes_check(chk, frame) for chk in frame_checks)
    except Exception:  # noqa: BLE001 - pandera reports a failing check function as before
        return False


def check_dataset(frame: pd.DataFrame, spec: Spec, name: str, studyid: str,
                  dm: pd.DataFrame | None = None) -> pd.DataFrame:
    """Findings of one dataset (already in :func:`order_dataset` order)."""
    found = [spec_findings(spec, name, studyid)] if name in _long_label_datasets(spec) else []
    for severity, plan in _plans(spec, name, studyid, dm).items():
        if not frame.columns.has_duplicates and _clean(plan.columns, plan.checks, plan.strict, frame):
            continue  # pandera would find nothing: its schema and bookkeeping are spared (issue 14)
        schema = plan.schema()
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            found.append(_failures_to_findings(exc.failure_cases, frame, name, studyid, severity, schema,
                                               _codelist_info(spec)))
    return concat_findings(found)


def _long_label_datasets(spec: Spec) -> frozenset[str]:
    """Datasets with a label over 40 characters in datasets.csv or in their variables (a
    superset of those :func:`spec_findings` reports on; the others are spared the look-up)."""
    def compute(sp: Spec) -> frozenset[str]:
        ds, v = sp.datasets, sp.variables
        return frozenset(ds.loc[ds["label"].str.len() > MAX_LABEL_LENGTH, "dataset"]) | \
            frozenset(v.loc[v["label"].str.len() > MAX_LABEL_LENGTH, "dataset"])
    return per_spec(spec, "long_label_datasets", compute)


def spec_findings(spec: Spec, name: str, studyid: str) -> pd.DataFrame:
    """Spec-level problems of one dataset: labels over 40 characters."""
    rows = []
    label = str(spec.dataset(name)["label"])
    if len(label) > MAX_LABEL_LENGTH:
        rows.append({"study": studyid, "file": name, "row": "", "column": "", "value": label, "check": "label_length",
                     "severity": "error", "message": f"{name}: dataset label over {MAX_LABEL_LENGTH} characters"})
    v = spec.vars(name)
    for r in v[v["label"].str.len() > MAX_LABEL_LENGTH].itertuples(index=False):  # spec rows in error
        rows.append({"study": studyid, "file": name, "row": "", "column": r.variable, "value": r.label,
                     "check": "label_length", "severity": "error",
                     "message": f"{name}.{r.variable}: label over {MAX_LABEL_LENGTH} characters"})
    return pd.DataFrame(rows, columns=FINDING_COLUMNS) if rows else empty(FINDING_COLUMNS)


def specified_datasets(spec: Spec) -> set[str]:
    """Datasets listed in datasets.csv that also have variables in the spec."""
    return set(spec.datasets["dataset"]) & set(spec.variables["dataset"])


def check_datasets(datasets: dict[str, pd.DataFrame], spec: Spec, studyid: str) -> pd.DataFrame:
    """Findings over every dataset of a study (each already ordered with :func:`order_dataset`)."""
    found = []
    known = specified_datasets(spec)
    dm = datasets.get("DM")
    if dm is None and datasets:
        found.append(pd.DataFrame([{
            "study": studyid, "file": "DM", "row": "", "column": "USUBJID", "value": "", "check": "usubjid_in_dm",
            "severity": "warning", "message": "DM was not built: USUBJID-in-DM and study-day checks skipped"}],
            columns=FINDING_COLUMNS))
    for name in sorted(datasets):
        if name not in known:
            found.append(pd.DataFrame([{
                "study": studyid, "file": name, "row": "", "column": "", "value": "", "check": "dataset_not_in_spec",
                "severity": "error",
                "message": f"{name}: dataset is not in specs/sdtm/datasets.csv or has no variables in specs/sdtm/variables/"}],
                columns=FINDING_COLUMNS))
            continue
        found.append(check_dataset(datasets[name], spec, name, studyid, dm))
    return concat_findings(found)


def concat_findings(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return empty(FINDING_COLUMNS)
    return pd.concat([f[FINDING_COLUMNS].astype("object") for f in frames], ignore_index=True)


def sort_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: errors first, then by file, column, check and row."""
    if findings.empty:
        return findings
    f = findings.copy()
    f["_sev"] = f["severity"].map({"error": 0, "warning": 1}).fillna(2)
    f["_row"] = pd.to_numeric(f["row"], errors="coerce").fillna(-1)
    f = f.sort_values(["_sev", "study", "file", "column", "check", "_row", "value", "message"], kind="mergesort")
    return f.drop(columns=["_sev", "_row"]).reset_index(drop=True)
