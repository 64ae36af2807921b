"""Pandera schemas of the raw CRF forms, generated from ``specs/raw/columns.csv``.

``columns.csv`` is the single source of the raw contract: one row per form column with
``type`` (char, int, float, date, pdate, time), ``required`` (Y/N), ``allowed`` values
(``|``-separated), hard limits ``min``/``max`` and plausibility limits ``warn_min``/``warn_max``.
Nothing of it is restated here: :func:`form_schema` turns the rows of one form into a
``pandera.DataFrameSchema`` and a rule table (check id, severity, message) used to turn
pandera's failure cases into gate findings.

Check ids emitted (the ``check`` column of the gate report)

=================  ========  ==========================================================
``column.missing``  error    a required column is absent
``required``        error    a required column has an empty cell
``type.int``        error    not a whole number
``type.float``      error    not a number (``.`` as decimal separator)
``type.date``       error    not a complete, real ``DD-MMM-YYYY`` date in the allowed years
``type.pdate``      error    as ``type.date``, but ``UN-MMM-YYYY`` and ``UN-UNK-YYYY`` allowed
``type.time``       error    not ``HH:MM`` 00:00-23:59
``allowed``         error    not one of the ``allowed`` values
``range``           error    outside ``min``/``max``
``plausibility``    warning  outside ``warn_min``/``warn_max`` (confirm with the site)
=================  ========  ==========================================================
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from pipeline.config import Study
from pipeline.context import FINDING_COLUMNS, empty
from pipeline.export.memo import per_object
from pipeline.intake import checks as ck
from pipeline.spec import Spec

RAW_TYPES = ("char", "int", "float", "date", "pdate", "time")
RULE_COLUMNS = ["column", "check", "severity", "message"]

# pandera registers its pandas backends (importing its hypothesis strategies, ~0.1 s) on the first
# validation of a process; done here, at import, the build's forked workers inherit it instead
# of each paying for it (the build imports this module before forking, pipeline.parallel)
pa.DataFrameSchema({}).validate(pd.DataFrame())


@dataclass(frozen=True)
class FormSchema:
    """The generated schema of one raw form and the message and severity of each of its checks."""

    form: str
    schema: pa.DataFrameSchema
    rules: pd.DataFrame  # RULE_COLUMNS
    #: column -> (check name, test) in the order of the column's pandera checks: the test each
    #: check applies (see :class:`ColumnValues`), for :func:`passes`
    tests: dict[str, tuple[tuple[str, "ColumnTest"], ...]] = field(default_factory=dict)

    @property
    def checks(self) -> list[str]:
        """Check ids this schema can emit (for the JUnit report), in a stable order."""
        return sorted(set(self.rules["check"]) | {"column.missing"})


class ColumnValues:
    """The non-missing values of one column of a prepared form, as a schema check sees them
    (pandera drops missing values first: ``ignore_na``), with their number values and CDASH date
    parts taken from the validate call's :class:`~pipeline.intake.checks.ParsedForms`: the
    column's type, range and plausibility checks, and cross checks reading it, parse it once."""

    def __init__(self, forms: ck.ParsedForms, form: str, column: str, keep: np.ndarray | None = None):
        self.forms, self.form, self.column, self.keep = forms, form, column, keep

    @property
    def text(self) -> pd.Series:
        """The values themselves (taken when a test asks: most read numbers or dates)."""
        values = self.forms[self.form][self.column]
        return values if self.keep is None else values[self.keep]

    @classmethod
    def of(cls, series: pd.Series) -> ColumnValues:
        """The values pandera hands a check function (its own Series, no memo shared)."""
        return cls(ck.ParsedForms({"": pd.DataFrame({"": series})}), "", "")

    def _kept(self, values: np.ndarray) -> np.ndarray:
        return values if self.keep is None else values[self.keep]

    def number(self, integer: bool) -> np.ndarray:
        """:func:`~pipeline.intake.checks.number_value` (NaN: not a finite number of that kind)."""
        return self._kept(ck.form_number_value(self.forms, self.form, self.column, integer).to_numpy())

    def date_valid(self, partial_ok: bool, max_year: int) -> np.ndarray:
        """:func:`~pipeline.intake.checks.cdash_date_valid`."""
        return self._kept(ck.form_date_parts(self.forms, self.form, self.column, partial_ok, max_year)["valid"]
                          .to_numpy())


#: what one schema check tests: True for each value that passes
ColumnTest = Callable[[ColumnValues], np.ndarray]


def _check(test: ColumnTest, name: str) -> pa.Check:
    """The pandera check applying ``test`` to the values pandera gives it."""
    return pa.Check(lambda s: pd.Series(test(ColumnValues.of(s)), index=s.index, dtype=bool), name=name)


def _number(text: str) -> float | None:
    text = str(text).strip()
    return float(text) if text else None


def _limits_text(lo: str, hi: str) -> str:
    if lo and hi:
        return f"between {lo} and {hi}"
    return f">= {lo}" if lo else f"<= {hi}"


def _type_check(column: str, typ: str, max_year: int) -> tuple[ColumnTest, str, str] | None:
    """The test, check name and message for one column type (None for free text). A value is a
    number when :func:`~pipeline.intake.checks.number_value` reads one (``number_valid``)."""
    if typ == "int":
        return (lambda v: ~np.isnan(v.number(True)), "type.int", f"{column} must be a whole number (digits only)")
    if typ == "float":
        return (lambda v: ~np.isnan(v.number(False)), "type.float",
                f"{column} must be a number with '.' as decimal separator (e.g. 12.5)")
    if typ == "date":
        return (lambda v: v.date_valid(False, max_year), "type.date",
                f"{column} must be a complete date DD-MMM-YYYY (e.g. 05-MAR-2024): a day that exists in "
                f"that month, month JAN-DEC in capitals, year {ck.MIN_YEAR}-{max_year}")
    if typ == "pdate":
        return (lambda v: v.date_valid(True, max_year), "type.pdate",
                f"{column} must be a date DD-MMM-YYYY, or partial with unknown day UN-MAR-2024 or unknown "
                f"day and month UN-UNK-2024 (a known day needs a known month); year {ck.MIN_YEAR}-{max_year}")
    if typ == "time":
        return (lambda v: ck.time_valid(v.text).to_numpy(), "type.time",
                f"{column} must be a time HH:MM from 00:00 to 23:59")
    return None


def form_schema(spec: Spec, form: str, max_year: int) -> FormSchema:
    """Generate the schema of one raw form from its rows in ``specs/raw/columns.csv``.

    ``max_year`` is the latest year accepted in dates (the study's data cutoff year + 1).
    Unknown types in the spec are a configuration error of the spec, reported by
    :func:`spec_problems`; such columns get no type check here. Generated once per loaded
    spec, form and ``max_year`` (the studies of a build share them; issue 14).
    """
    return per_object(spec, ("raw_form_schema", form, max_year), lambda s: _generate_form_schema(s, form, max_year))


#: the columns.csv fields of one form column that its schema reads
_RawColumn = namedtuple("_RawColumn", "column type required allowed min max warn_min warn_max unit")


def _form_rows(spec: Spec, form: str) -> list[_RawColumn]:
    """The rows of one form in ``specs/raw/columns.csv``, in file order (a zip of its columns:
    ``itertuples`` takes every column of the frame by position first, ~40% of the schema's
    generation)."""
    c = spec.form_columns(form)
    return [_RawColumn(*row) for row in zip(*(c[f] for f in _RawColumn._fields))]


def _generate_form_schema(spec: Spec, form: str, max_year: int) -> FormSchema:
    """:func:`form_schema` without the memo."""
    columns: dict[str, pa.Column] = {}
    rules: list[tuple[str, str, str, str]] = []
    tests: dict[str, tuple[tuple[str, ColumnTest], ...]] = {}
    for r in _form_rows(spec, form):  # spec rows, not records
        col, typ, required = r.column, r.type, r.required == "Y"
        col_tests: list[tuple[str, ColumnTest]] = []
        tc = _type_check(col, typ, max_year)
        if tc:
            col_tests.append((tc[1], tc[0]))
            rules.append((col, tc[1], "error", tc[2]))
        allowed = [a for a in str(r.allowed).split("|") if a != ""]
        if allowed:
            col_tests.append(("allowed", lambda v, a=tuple(allowed): v.text.isin(a).to_numpy()))
            rules.append((col, "allowed", "error", f"{col} must be one of: {', '.join(allowed)}"))
        integer = typ == "int"
        # allowed values already bound the value: no separate range finding for the same cell
        if (r.min or r.max) and not allowed:
            lo, hi = _number(r.min), _number(r.max)
            col_tests.append(("range", lambda v, lo=lo, hi=hi, i=integer: ck.within(v.number(i), lo, hi)))
            rules.append((col, "range", "error", f"{col} must be {_limits_text(r.min, r.max)}"
                          + (f" {r.unit}" if r.unit else "")))
        if r.warn_min or r.warn_max:
            lo, hi = _number(r.warn_min), _number(r.warn_max)
            hard_lo, hard_hi = _number(r.min), _number(r.max)
            # a value outside the hard limits is already an error: no plausibility warning on top
            col_tests.append(("plausibility", lambda v, lo=lo, hi=hi, hlo=hard_lo, hhi=hard_hi, i=integer:
                              ck.within(v.number(i), lo, hi) | ~ck.within(v.number(i), hlo, hhi)))
            rules.append((col, "plausibility", "warning",
                          f"{col} is outside the plausible range {_limits_text(r.warn_min, r.warn_max)}"
                          + (f" {r.unit}" if r.unit else "") + ": please confirm with the site"))
        if required:
            rules.append((col, "required", "error", f"{col} is required but empty"))
        columns[col] = pa.Column(None, nullable=not required, required=required,
                                 checks=[_check(test, name) for name, test in col_tests])
        tests[col] = tuple(col_tests)
    schema = pa.DataFrameSchema(columns, strict=False, name=f"raw.{form}")
    return FormSchema(form, schema, pd.DataFrame(rules, columns=RULE_COLUMNS), tests)


def spec_problems(spec: Spec) -> list[str]:
    """Problems of ``specs/raw/columns.csv`` that make a schema impossible (unknown types, bad limits).

    Found once per loaded spec (the gate asks before every study, and a build worker gates
    several studies with one spec; issue 14). The list is shared: read it, do not change it."""
    return per_object(spec, "raw_spec_problems", _spec_problems)


def _spec_problems(spec: Spec) -> list[str]:
    """:func:`spec_problems` without the memo."""
    c = spec.raw_columns
    problems = [f"specs/raw/columns.csv {f}.{col}: unknown type {t!r} (known: {', '.join(RAW_TYPES)})"
                for f, col, t in zip(c["form"], c["column"], c["type"]) if t not in RAW_TYPES]
    for lim in ("min", "max", "warn_min", "warn_max"):
        bad = pd.to_numeric(c[lim].where(c[lim] != ""), errors="coerce").isna() & (c[lim] != "")
        problems += [f"specs/raw/columns.csv {f}.{col}: {lim} {v!r} is not a number"
                     for f, col, v in zip(c.loc[bad, "form"], c.loc[bad, "column"], c.loc[bad, lim])]
    return problems + plausibility_problems(spec)


def plausibility_problems(spec: Spec) -> list[str]:
    """Problems of ``specs/rules/lab_plausibility.csv``: columns, numeric limits, listed units."""
    from pipeline.intake.checks import PLAUSIBILITY_COLUMNS

    name = "specs/rules/lab_plausibility.csv"
    if not (spec.root / "rules" / "lab_plausibility.csv").is_file():
        return []  # no table: every lab result must still be finite and not negative
    t = spec.rule("lab_plausibility")
    missing = [k for k in PLAUSIBILITY_COLUMNS if k not in t.columns]
    if missing:
        return [f"{name}: columns {', '.join(missing)} missing"]
    problems = []
    for lim in ("error_min", "error_max", "warn_min", "warn_max"):  # four limit columns
        bad = pd.to_numeric(t[lim].where(t[lim] != ""), errors="coerce").isna() & (t[lim] != "")
        problems += [f"{name} {k}: {lim} {v!r} is not a number" for k, v in zip(t.loc[bad, "lbtestcd"], t.loc[bad, lim])]
    problems += [f"{name}: test {k} appears more than once" for k in sorted(set(t["lbtestcd"][t["lbtestcd"].duplicated()]))]
    units = spec.rule("lab_units")
    listed = set(zip(units["lbtestcd"], units["raw_unit"]))
    problems += [f"{name} {k}: unit {u!r} is not listed for {k} in specs/rules/lab_units.csv"
                 for k, u in zip(t["lbtestcd"], t["unit"]) if (k, u) not in listed]
    problems += [f"{name} {k}: no source" for k, src in zip(t["lbtestcd"], t["source"]) if not str(src).strip()]
    return problems


def schema_findings(df: pd.DataFrame, form: str, study: Study, spec: Spec,
                    fs: FormSchema | None = None, forms: ck.ParsedForms | None = None) -> pd.DataFrame:
    """Validate one form (lazily: all failures) and return them as gate findings.

    ``df`` must have a default index and the ``_FILE``/``_ROW`` bookkeeping columns. ``forms``:
    the validate call's prepared forms with ``forms[form] is df`` (their parsed values are shared
    with the cross checks); without it, ``df``'s values are parsed for this call only.
    """
    fs = fs or form_schema(spec, form, int(study.data_cutoff[:4]) + 1)
    if forms is None or forms.get(form) is not df:
        forms = ck.ParsedForms({form: df})
    if passes(fs, df, forms):
        return empty(FINDING_COLUMNS)  # pandera would find nothing: its bookkeeping is spared (issue 14)
    try:
        fs.schema.validate(df, lazy=True)
        return empty(FINDING_COLUMNS)
    except SchemaErrors as exc:
        fc = exc.failure_cases
    return failure_cases_to_findings(fc, df, form, study, fs)


def _passed(result) -> bool:
    """A test's result is a pass: a boolean array that is all True."""
    return isinstance(result, np.ndarray) and result.dtype == bool and bool(result.all())


def passes(fs: FormSchema, df: pd.DataFrame, forms: ck.ParsedForms) -> bool:
    """True when ``fs.schema.validate(df, lazy=True)`` would raise nothing, decided by applying
    the test of each generated check (:attr:`FormSchema.tests`, the ones its pandera checks
    apply) to the column's non-null values (pandera's ``ignore_na``): every required column
    present, no null in a required column, every test all True. The values are parsed once per
    column for all its tests (``forms``, ``forms[fs.form] is df``). False whenever in doubt (a
    test raising, a check without its test, a schema feature :func:`form_schema` does not use):
    pandera then validates and reports as before, so the findings do not change. A clean form
    (the usual case) skips pandera's per-check bookkeeping: ~0.13 s CPU per shipped study."""
    schema = fs.schema
    if (df.columns.has_duplicates or schema.strict or schema.checks or schema.coerce or schema.unique
            or schema.index is not None or schema.ordered or schema.add_missing_columns):
        return False
    try:
        for name, col in schema.columns.items():  # loop over the form's spec columns
            if col.dtype is not None or col.unique or col.regex or col.coerce:
                return False
            if name not in df.columns:
                if col.required:
                    return False
                continue
            if col.nullable and not col.checks:
                continue  # free text: nothing to check
            tests = fs.tests.get(name, ())
            if [chk.name for chk in col.checks] != [t[0] for t in tests]:
                return False
            nulls = df[name].array.isna()
            has_nulls = bool(nulls.any())
            if has_nulls and not col.nullable:
                return False
            values = ColumnValues(forms, fs.form, name, ~nulls if has_nulls else None)  # pandera's dropna
            for chk, (_name, test) in zip(col.checks, tests):
                if chk.ignore_na is not True or chk.groupby is not None or chk.element_wise:
                    return False
                if not _passed(test(values)):
                    return False
    except Exception:  # noqa: BLE001 - pandera reports a failing check function as before
        return False
    return True


def failure_cases_to_findings(fc: pd.DataFrame, df: pd.DataFrame, form: str, study: Study,
                              fs: FormSchema) -> pd.DataFrame:
    """Map pandera's ``failure_cases`` to findings with the real ``_ROW`` and a message naming the rule."""
    fc = fc.copy()
    file_name = str(df["_FILE"].iloc[0]) if len(df) else f"{form}.csv"
    present = fc["check"] == "column_in_dataframe"
    fc["column"] = fc["column"].astype(object).where(~present, fc["failure_case"])
    fc["check"] = fc["check"].astype(str).replace({"column_in_dataframe": "column.missing",
                                                   "not_nullable": "required"})
    fc = fc.merge(fs.rules, on=["column", "check"], how="left")
    idx = pd.to_numeric(fc["index"], errors="coerce")
    has_row = idx.notna().to_numpy()
    rows = np.full(len(fc), -1, dtype="int64")
    pos = idx[has_row].astype("int64").to_numpy()
    rows[has_row] = df["_ROW"].to_numpy()[pos]
    files = np.full(len(fc), file_name, dtype=object)
    files[has_row] = df["_FILE"].to_numpy()[pos]
    col_missing = fc["check"] == "column.missing"
    message = fc["message"].astype(object)
    message = message.where(~col_missing, "required column " + fc["column"].astype(str)
                            + f" is missing from {file_name} (see specs/raw/columns.csv)")
    other = message.isna()
    message = message.where(~other, fc["check"].astype(str) + " failed: " + fc["failure_case"].astype(str))
    value = fc["failure_case"].astype(object)
    value = value.where(value.notna() & ~col_missing, "")
    out = pd.DataFrame({
        "study": study.studyid,
        "file": files,
        "row": pd.array(np.where(has_row, rows, 0), dtype="Int64"),
        "column": fc["column"].astype(object).fillna("").astype(str).to_numpy(),
        "value": value.astype(str).to_numpy(),
        "check": fc["check"].to_numpy(),
        "severity": fc["severity"].fillna("error").to_numpy(),
        "message": message.astype(str).to_numpy(),
    })
    out.loc[~has_row, "row"] = pd.NA
    return out[FINDING_COLUMNS]
