"""Laboratory results and units: parsing, conversion to one standard (SI) unit per test and back.

The conversion table is ``specs/rules/lab_units.csv``: one row per test and raw unit spelling,
with the CDISC CT form of that spelling (``ct_unit``, e.g. ``µmol/L`` -> ``umol/L``) and the
factor that turns a value in the raw unit into the test's standard unit
(``specs/rules/lab_tests.csv`` ``si_unit``)::

    value_SI = value_raw x to_si_factor          value_raw = value_SI / to_si_factor

Factors of molar conversions come from molecular weights (``mw_g_per_mol`` of the test):
1 mg/dL = 10 mg/L = 10 / MW mmol/L = 10 000 / MW umol/L.

A unit the table does not list for the test is never guessed: :func:`to_si` marks the record
``unit_known = False`` and leaves the SI value empty, and the domain module turns that into an
error finding (SDTMIG 3.4 LB: LBSTRESU must be one standard unit per test).

Results (SDTMIG 3.4 section 4.5.1): ``LBORRES`` is a number or a censored value ``<x`` /
``>x`` (below / above a limit of quantification). A censored result keeps its text (``<x`` in
the standard unit goes to ``LBSTRESC``) and has no numeric result (``LBSTRESN`` empty);
:func:`parse_results` returns the limit and the side so that graders can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

#: a number, or a number with a leading < or > (censored); e.g. 12.5, <0.5, > 1000, 1e3
RESULT_RE = r"^(?P<op>[<>])?\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)$"
#: significant digits kept in converted values (removes binary noise such as 1.5000000000000002)
SIGNIFICANT_DIGITS = 10


@dataclass(frozen=True)
class UnitTable:
    """The unit rows (``units``) and the test rows (``tests``) as validated frames."""

    units: pd.DataFrame
    tests: pd.DataFrame

    def si_unit(self, lbtestcd: pd.Series) -> pd.Series:
        """Standard unit (CDISC CT spelling) of each test; ``""`` for unknown tests."""
        m = dict(zip(self.tests["lbtestcd"], self.tests["si_unit"]))
        return _text(lbtestcd).map(m).fillna("").astype(object)


def _text(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), "").astype(str).str.strip()


def load_unit_table(spec: Spec) -> UnitTable:
    """Read and check ``lab_units.csv`` and ``lab_tests.csv`` (ConfigError on a bad table).

    Checks: factors are positive numbers; a (test, raw unit) pair is listed once; every unit
    row's test exists; every test's standard unit is listed for it with factor 1. Read and
    checked once per loaded spec (LB and PC of every study ask); the frames handed out are copies.
    """
    table = per_object(spec, "unit_table", _load_unit_table)
    return UnitTable(units=table.units.copy(), tests=table.tests.copy())


def _load_unit_table(spec: Spec) -> UnitTable:
    """:func:`load_unit_table` without the memo."""
    units = spec.rule("lab_units")
    tests = spec.rule("lab_tests")
    need_u = {"lbtestcd", "raw_unit", "ct_unit", "to_si_factor"}
    need_t = {"lbtestcd", "si_unit"}
    if not need_u <= set(units.columns) or not need_t <= set(tests.columns):
        raise ConfigError("specs/rules/lab_units.csv or lab_tests.csv lacks required columns "
                          f"({', '.join(sorted(need_u))}; {', '.join(sorted(need_t))})")
    units = units.copy()
    units["factor"] = pd.to_numeric(units["to_si_factor"], errors="coerce")
    problems = []
    bad = units[~(units["factor"] > 0)]
    problems += [f"lab_units.csv: {r.lbtestcd} {r.raw_unit!r}: factor {r.to_si_factor!r} is not a positive number"
                 for r in bad.itertuples()]  # rule rows in error
    dup = units[units.duplicated(["lbtestcd", "raw_unit"], keep=False)]
    problems += [f"lab_units.csv: {r.lbtestcd} {r.raw_unit!r} listed twice" for r in dup.drop_duplicates(["lbtestcd", "raw_unit"]).itertuples()]  # rule rows in error
    unknown = sorted(set(units["lbtestcd"]) - set(tests["lbtestcd"]))
    problems += [f"lab_units.csv: test {t} is not in lab_tests.csv" for t in unknown]
    std = tests.merge(units, left_on=["lbtestcd", "si_unit"], right_on=["lbtestcd", "raw_unit"], how="left")
    missing = std[~(std["factor"] == 1.0)]
    problems += [f"lab_tests.csv: standard unit {r.si_unit!r} of {r.lbtestcd} is not listed with factor 1 in lab_units.csv"
                 for r in missing.itertuples()]  # rule rows in error
    if problems:
        raise ConfigError("unit table problems:\n  " + "\n  ".join(problems))
    return UnitTable(units=units.reset_index(drop=True), tests=tests.reset_index(drop=True))


def parse_results(orres: pd.Series) -> pd.DataFrame:
    """Split collected results into ``value`` (float: the number, or the limit of a censored
    result), ``censor`` (-1 for ``<x``, +1 for ``>x``, 0 for an exact value), ``numeric``
    (the text is a number or a censored number) and ``missing`` (empty text)."""
    s = _text(orres)
    parts = s.str.extract(RESULT_RE)
    numeric = parts["num"].notna()
    value = pd.to_numeric(parts["num"], errors="coerce").astype("float64")
    op = parts["op"].fillna("")
    censor = np.select([op.eq("<"), op.eq(">")], [-1, 1], default=0).astype("int8")
    return pd.DataFrame({"value": value, "censor": censor, "numeric": numeric, "missing": s.eq("")},
                        index=orres.index)


def lookup_units(lbtestcd: pd.Series, unit: pd.Series, table: UnitTable) -> pd.DataFrame:
    """Per record: ``factor`` (NaN when unknown), ``ct_unit`` (``""`` when unknown) and
    ``unit_known``. The unit must match a ``raw_unit`` of the test exactly (after trimming)."""
    key = pd.DataFrame({"lbtestcd": _text(lbtestcd).to_numpy(), "raw_unit": _text(unit).to_numpy()})
    ref = table.units[["lbtestcd", "raw_unit", "ct_unit", "factor"]]
    out = key.merge(ref, on=["lbtestcd", "raw_unit"], how="left", validate="many_to_one")
    known = out["factor"].notna().to_numpy()
    return pd.DataFrame({"factor": out["factor"].to_numpy(dtype="float64"),
                         "ct_unit": out["ct_unit"].fillna("").to_numpy(dtype=object),
                         "unit_known": known}, index=lbtestcd.index)


def clean_number(x: np.ndarray | pd.Series) -> np.ndarray:
    """Round to :data:`SIGNIFICANT_DIGITS` significant digits (NaN stays NaN)."""
    a = np.asarray(x, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(a)))
    mag = np.where(np.isfinite(mag), mag, 0.0)
    scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - mag)
    return np.where(np.isfinite(a) & (a != 0), np.round(a * scale) / scale, a)


def format_number(x: pd.Series) -> pd.Series:
    """Numbers as short text (``%.10g``: 1.5, 30.7872, 0.001); NaN as ``""``."""
    a = pd.Series(np.asarray(x, dtype="float64"), index=x.index)
    txt = a.map("{:.10g}".format).astype(object)
    return txt.where(a.notna(), "")


def to_si(value: pd.Series, lbtestcd: pd.Series, unit: pd.Series, table: UnitTable) -> pd.DataFrame:
    """Convert values to each test's standard unit.

    Returns ``si_value`` (NaN where the value or the unit is unknown), ``si_unit`` (the test's
    standard unit in CDISC CT spelling), ``ct_unit`` (CT spelling of the raw unit),
    ``factor`` and ``unit_known``.
    """
    lk = lookup_units(lbtestcd, unit, table)
    si = clean_number(np.asarray(value, dtype="float64") * lk["factor"].to_numpy())
    return pd.DataFrame({"si_value": si, "si_unit": table.si_unit(lbtestcd).to_numpy(dtype=object),
                         "ct_unit": lk["ct_unit"].to_numpy(dtype=object), "factor": lk["factor"].to_numpy(),
                         "unit_known": lk["unit_known"].to_numpy()}, index=lbtestcd.index)


def from_si(si_value: pd.Series, lbtestcd: pd.Series, unit: pd.Series, table: UnitTable) -> pd.Series:
    """Convert standard-unit values back to a listed raw unit (NaN where the unit is unknown)."""
    lk = lookup_units(lbtestcd, unit, table)
    return pd.Series(clean_number(np.asarray(si_value, dtype="float64") / lk["factor"].to_numpy()),
                     index=lbtestcd.index)


def censored_text(value: pd.Series, censor: pd.Series) -> pd.Series:
    """Result text: the number, with ``<`` / ``>`` in front for censored results."""
    prefix = pd.Series(np.select([np.asarray(censor) < 0, np.asarray(censor) > 0], ["<", ">"], default=""),
                       index=value.index, dtype=object)
    num = format_number(value)
    return (prefix + num).where(num.ne(""), "")
