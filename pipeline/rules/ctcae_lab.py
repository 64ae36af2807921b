"""NCI CTCAE grading of laboratory results (LBTOX / LBTOXGR, SDTMIG 3.4 LB).

The criteria are data: ``specs/rules/ctcae_lab.csv`` holds one row per CTCAE version, term,
test, grade, baseline condition, clause and threshold unit, with the CTCAE text it encodes
(``source_text``) and any assumption made. The version is the study's parameter
(``[safety] ctcae_version`` of the study TOML): only that version's rows are used, and a version
with no rows is a configuration error (:func:`load_criteria`), never a silent grading by another
version. A row's range is

    lower x ref(lower_basis) + lower_offset  <(=)  value  <(=)  upper x ref(upper_basis) + upper_offset

(``lower_incl`` / ``upper_incl`` = Y for an inclusive bound; an empty bound is open; an empty
offset is 0; offsets are in the row's threshold unit: "Increase in >0 - 2 g/dL" above the ULN is
1 x ULN + 20 g/L), where ref(SI) = 1 (an absolute value in the row's ``threshold_unit``),
ref(ULN) = LBSTNRHI,
ref(LLN) = LBSTNRLO and ref(BASELINE) = the subject's baseline value of the test (the
LBLOBXFL record: the last value before the first exposure to protocol treatment, DM.RFXSTDTC,
i.e. before lymphodepletion, so depleted counts are never the baseline). Rules of evaluation:

1. **Grade = the highest grade whose row is met** (grade 0 when the record was evaluated and
   no row is met). Rows with ``lab_gradable = N`` need clinical information and are never
   assigned; their assumption says so.
2. **Baseline** (``baseline`` column): ``normal`` rows apply to pre-treatment records and to
   records whose subject's baseline is not abnormal in the term's direction; ``abnormal`` rows
   apply to post-baseline records when the baseline is abnormal in that direction (above its
   ULN for ``high`` terms, below its LLN for ``low`` terms); ``any`` rows always apply, but a
   row that uses the BASELINE basis only to post-baseline records with a baseline value.
   Pre-treatment records (the baseline record included) are therefore graded against the
   normal range only: the baseline is never graded against itself. No baseline -> normal.
3. **Missing reference range**: a row whose ULN/LLN is missing cannot be evaluated. The grade
   is reported only when no such row could give a higher grade than the one found;
   otherwise LBTOXGR is empty (unknown), never guessed.
4. **Censored results** (``<x`` / ``>x``, LBSTRESN empty) are graded at their limit approached
   from the censored side (``<0.5`` as a value just below 0.5). In the direction of censoring
   this is the grade the result certainly reaches (every value below 0.5 x 10^9/L neutrophils
   is grade 4; ``<1.0`` is at least grade 3), in the other direction it is the most severe
   grade the result could have. A limit is never read as a worse value than it states.
5. **Two-direction tests** (potassium, sodium, calcium): both terms are evaluated and the record
   gets the term of the abnormal direction (the higher grade); when both grades are 0 the term
   is the one on the side of the value relative to the middle of the normal range. When one
   direction is unknown by rule 3 (its LLN or ULN missing), the record is graded only if the
   other direction is abnormal (grade >= 1: a value below the LLN cannot also be above the
   ULN); a grade 0 in one direction with the other unknown is not a grade (LBTOXGR empty). Glucose
   has only Hypoglycemia (CTCAE v5.0 Hyperglycemia is not defined by a value).
6. **Units**: the grader is given standard-unit values; a record whose LBSTRESU differs from
   the criteria's ``si_unit`` is not graded and is reported (an error, not a grade).
7. Equality uses a relative tolerance of 1e-9 so that a value of exactly 3.0 x ULN converted
   from another unit still sits on the boundary.
8. **Conventional and SI thresholds**: CTCAE states many absolute thresholds in both
   conventional and SI units, and they are not exact conversions of each other (calcium
   8.0 mg/dL is 1.996 mmol/L, CTCAE says 2.0 mmol/L). A test whose CTCAE text gives both has its
   rows twice, one set per ``threshold_unit`` (empty = the standard unit ``si_unit``). A result
   is graded against the rows in the unit it was reported in (``ORIG_UNIT``, the CDISC CT
   spelling of LBORRESU) when the term has rows in that unit, else against the rows in the
   standard unit: a result reported in mg/dL is graded against the mg/dL thresholds, one in
   mmol/L against the mmol/L thresholds, as the CTCAE text reads. The thresholds of rows in a
   non-standard unit are converted with the record's own factor (``ORIG_FACTOR``, the factor
   that converted the result: ``lab_units.csv``), so that comparing in standard units equals
   comparing in the reported unit. Without ``ORIG_UNIT`` every record is taken as reported in
   its standard unit.

Vectorised: a loop over the criteria rows (about a hundred), grouped by test, each evaluated
over all records of its test at once (the test's records are gathered once for all its rows).
"""

from __future__ import annotations

import re
from collections import namedtuple
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

CRITERIA_COLUMNS = ["ctcae_version", "term", "meddra_code", "lbtestcd", "direction", "grade", "baseline", "clause",
                    "lab_gradable", "lower", "lower_basis", "lower_incl", "lower_offset", "upper", "upper_basis",
                    "upper_incl", "upper_offset", "si_unit", "threshold_unit", "source_text", "assumption", "source"]
#: a row's identity (a row defined twice is an error)
ROW_KEY = ["ctcae_version", "lbtestcd", "term", "grade", "baseline", "clause", "threshold_unit"]
BASES = {"SI", "ULN", "LLN", "BASELINE"}
DIRECTIONS = ("low", "high")
REL_TOL = 1e-9

#: optional columns of :func:`worst_grades`: the record's grade per direction (NaN = unknown)
DIRECTION_COLUMNS = {"low": "_TOXGR_LOW", "high": "_TOXGR_HIGH"}

#: columns :func:`grade_labs` reads
INPUT_COLUMNS = ["LBTESTCD", "LBSTRESU", "value", "censor", "LLN", "ULN", "post", "BASE", "BASE_CENSOR",
                 "BASE_LLN", "BASE_ULN"]
#: optional columns of :func:`grade_labs` (rule 8): the unit the result was reported in (CT
#: spelling) and the factor that converted it to the standard unit
UNIT_COLUMNS = ["ORIG_UNIT", "ORIG_FACTOR"]


def versions(spec: Spec) -> list[str]:
    """The CTCAE versions ``specs/rules/ctcae_lab.csv`` has criteria for."""
    c = spec.rule("ctcae_lab")
    if "ctcae_version" not in c.columns:
        raise ConfigError("specs/rules/ctcae_lab.csv lacks the column ctcae_version")
    return sorted(set(c["ctcae_version"].astype(str).str.strip()) - {""})


def study_version(study) -> str:
    """The study's CTCAE version (``[safety] ctcae_version`` of its TOML), e.g. ``"5.0"``."""
    v = str(study.get("safety", {}).get("ctcae_version", "")).strip()
    if not v:
        raise ConfigError(f"study {study.studyid}: [safety] lacks ctcae_version (the NCI CTCAE version the "
                          "protocol grades adverse events and laboratory results by, e.g. \"5.0\")")
    return v


def check_version(spec: Spec, study) -> str:
    """The study's CTCAE version, checked against the criteria table: a version without rows is
    one ConfigError naming the versions there are (no silent grading by another version)."""
    v = study_version(study)
    have = versions(spec)
    if v not in have:
        raise ConfigError(f"study {study.studyid}: [safety] ctcae_version = {v!r} has no laboratory criteria in "
                          f"specs/rules/ctcae_lab.csv (versions there: {', '.join(have) or 'none'}); add that "
                          "version's rows or correct the study parameter")
    return v


def with_study_version(spec: Spec, study) -> Spec:
    """The spec with ``standards['ctcae_version']`` set to the study's checked CTCAE version, so
    that every text that states the version (define.xml ExternalCodeList of CTCAE, TS TSVCDVER of
    a CTCAE-coded value, the ADaM define) takes it from the study parameter. The study's
    ``ae_grading`` text (SUPPAE TOXGRSCL), when it names a CTCAE version, must name the same one.
    A spec folder without a CTCAE criteria table (a specification that grades nothing) and a
    study without the parameter leave the spec as it is; with the table the parameter is required."""
    if not (Path(spec.root) / "rules" / "ctcae_lab.csv").is_file() and \
            not str(study.get("safety", {}).get("ctcae_version", "")).strip():
        return spec
    v = check_version(spec, study)
    grading = str(study.get("safety", {}).get("ae_grading", ""))
    named = re.findall(r"CTCAE\s*v?\s*(\d+(?:\.\d+)*)", grading, flags=re.IGNORECASE)
    if named and named[0] != v:
        raise ConfigError(f"study {study.studyid}: [safety] ae_grading {grading!r} names CTCAE {named[0]} but "
                          f"ctcae_version is {v!r}")
    # one spec object per (loaded spec, version): the studies of a build that grade by the same
    # version share it, and with it everything remembered per spec (variables by dataset,
    # codelist terms, value-level groups, the output checks' plans; issue 14)
    return per_object(spec, ("with_ctcae_version", v), lambda s: replace(s, standards={**s.standards, "ctcae_version": v}))


def load_criteria(spec: Spec, version: str) -> pd.DataFrame:
    """Read and check the rows of one CTCAE ``version`` of ``specs/rules/ctcae_lab.csv``;
    bounds and offsets become floats, ``grade`` int. A version without rows is a ConfigError.
    A row in a threshold unit other than the standard unit must name a unit that
    ``lab_units.csv`` lists for the test (else no result could ever use it). Read and checked
    once per loaded spec and version; a copy is handed out."""
    return per_object(spec, ("ctcae_lab_criteria", version), lambda s: _load_criteria(s, version)).copy()


def _load_criteria(spec: Spec, version: str) -> pd.DataFrame:
    """:func:`load_criteria` without the memo."""
    c = spec.rule("ctcae_lab")
    missing = [k for k in CRITERIA_COLUMNS if k not in c.columns]
    if missing:
        raise ConfigError(f"specs/rules/ctcae_lab.csv lacks columns {', '.join(missing)}")
    have = versions(spec)
    c = c[c["ctcae_version"].astype(str).str.strip() == str(version).strip()]
    if c.empty:
        raise ConfigError(f"CTCAE version {version!r} has no laboratory criteria in specs/rules/ctcae_lab.csv "
                          f"(versions there: {', '.join(have) or 'none'})")
    c = check_criteria(c)
    units = spec.rule("lab_units")
    known = set(zip(units["lbtestcd"], units["ct_unit"]))
    other = c[c["threshold_unit"] != c["si_unit"]]
    bad = sorted({(t, u) for t, u in zip(other["lbtestcd"], other["threshold_unit"]) if (t, u) not in known})
    if bad:
        raise ConfigError("CTCAE lab criteria problems:\n  " + "\n  ".join(
            f"ctcae_lab.csv: {t} rows in threshold unit {u!r}, which lab_units.csv does not list for {t}" for t, u in bad))
    return c


def check_criteria(c: pd.DataFrame) -> pd.DataFrame:
    """Validate a criteria table (see module docstring); ConfigError lists every problem."""
    c = c.copy()
    problems = []
    for col in ("ctcae_version", "threshold_unit", "lower_offset", "upper_offset"):  # optional in hand-made tables
        if col not in c.columns:
            c[col] = ""
    c["threshold_unit"] = c["threshold_unit"].fillna("").astype(str).where(lambda u: u.str.strip().ne(""), c["si_unit"])
    c["grade"] = pd.to_numeric(c["grade"], errors="coerce")
    problems += [f"ctcae_lab.csv row {i + 2}: grade {g!r} is not 1-4" for i, g in c["grade"].items() if g not in (1, 2, 3, 4)]
    problems += [f"ctcae_lab.csv row {i + 2}: direction {d!r} is not low/high"
                 for i, d in c["direction"].items() if d not in DIRECTIONS]
    problems += [f"ctcae_lab.csv row {i + 2}: baseline {b!r} is not any/normal/abnormal"
                 for i, b in c["baseline"].items() if b not in ("any", "normal", "abnormal")]
    gradable = c["lab_gradable"].eq("Y")
    for side in ("lower", "upper"):
        num = pd.to_numeric(c[side], errors="coerce")
        bad_num = c[side].ne("") & num.isna()
        problems += [f"ctcae_lab.csv row {i + 2}: {side} {c.at[i, side]!r} is not a number" for i in c.index[bad_num]]
        has = c[side].ne("")
        bad_basis = has & ~c[f"{side}_basis"].isin(BASES)
        problems += [f"ctcae_lab.csv row {i + 2}: {side}_basis {c.at[i, side + '_basis']!r} is not SI/ULN/LLN/BASELINE"
                     for i in c.index[bad_basis]]
        bad_incl = has & ~c[f"{side}_incl"].isin(["Y", "N"])
        problems += [f"ctcae_lab.csv row {i + 2}: {side}_incl must be Y or N" for i in c.index[bad_incl]]
        c[side] = num
        off_txt = c[f"{side}_offset"].fillna("").astype(str).str.strip()
        off = pd.to_numeric(off_txt, errors="coerce")
        bad_off = off_txt.ne("") & off.isna()
        problems += [f"ctcae_lab.csv row {i + 2}: {side}_offset {c.at[i, side + '_offset']!r} is not a number"
                     for i in c.index[bad_off]]
        lone = off_txt.ne("") & ~has
        problems += [f"ctcae_lab.csv row {i + 2}: {side}_offset without a {side} bound" for i in c.index[lone]]
        c[f"{side}_offset"] = off.fillna(0.0)
    no_bound = gradable & c["lower"].isna() & c["upper"].isna()
    problems += [f"ctcae_lab.csv row {i + 2}: a lab-gradable row needs a bound" for i in c.index[no_bound]]
    no_source = c["source"].str.strip().eq("")
    problems += [f"ctcae_lab.csv row {i + 2}: source is empty" for i in c.index[no_source]]
    dup = c[c.duplicated(ROW_KEY, keep=False)]
    problems += [f"ctcae_lab.csv: {r.term} ({r.lbtestcd}) grade {r.grade} {r.baseline} clause {r.clause} "
                 f"in {r.threshold_unit or 'no unit'} defined twice"
                 for r in dup.drop_duplicates(ROW_KEY).itertuples()]  # rule/spec rows in error
    dirs = c.drop_duplicates(["lbtestcd", "direction", "term"]).groupby(["lbtestcd", "direction"]).size()
    problems += [f"ctcae_lab.csv: {t} has several terms in direction {d}" for (t, d), n in dirs.items() if n > 1]
    units = c.drop_duplicates(["lbtestcd", "si_unit"]).groupby("lbtestcd").size()
    problems += [f"ctcae_lab.csv: {t} has rows in several units" for t, n in units.items() if n > 1]
    if not problems:
        problems += _band_gaps_and_overlaps(c)
    if problems:
        raise ConfigError("CTCAE lab criteria problems:\n  " + "\n  ".join(problems))
    c["grade"] = c["grade"].astype(int)
    return c.reset_index(drop=True)


def _band_gaps_and_overlaps(c: pd.DataFrame) -> list[str]:
    """Consecutive value grades of one term, baseline and clause must meet (grades between them
    that no value defines, CTCAE "-" or clinical-only, are skipped): for an increase the upper
    bound of grade g is the lower bound of grade g+1 (for a decrease, the lower bound of g is the
    upper bound of g+1), on the same basis, with exactly one of the two inclusive (CTCAE
    ">3.0 - 5.0 x ULN" after "... - 3.0 x ULN"). A gap leaves values ungraded and an overlap
    hides a wrong bound behind the higher grade, so both are table errors. Pairs on different
    bases (an absolute bound beside a x ULN band) are not compared. Each threshold unit's rows
    are a band set of their own."""
    problems = []
    keys = ["ctcae_version", "lbtestcd", "term", "baseline", "clause", "threshold_unit"]
    n_rows = c[c["lab_gradable"] != "Y"]
    undefined = n_rows.groupby(["ctcae_version", "lbtestcd", "term"])["grade"].agg(set).to_dict()
    groups: dict[tuple, list[dict]] = {}
    for r in c.to_dict("records"):  # metadata rows, grouped in order of first appearance
        key = tuple(r[k] for k in keys)
        if not any(pd.isna(v) for v in key):  # as groupby, which drops missing keys
            groups.setdefault(key, []).append(r)
    for (_, _, term, base, clause, tu), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["grade"])
        gradable = {r["grade"] for r in rows if r["lab_gradable"] == "Y"}
        # a grade no value defines is so for the term in every unit and baseline condition
        skipped = undefined.get((rows[0]["ctcae_version"], rows[0]["lbtestcd"], term), set()) if rows else set()
        rows = [r for r in rows if r["lab_gradable"] == "Y"]
        for a, b in zip(rows, rows[1:]):  # consecutive value grades (a handful per term)
            between = set(range(a["grade"] + 1, b["grade"]))
            # grades between that CTCAE leaves undefined or clinical ("-": Alkalosis 1 -> 3) are skipped
            if not between <= skipped or between & gradable:
                continue
            first, second = ("upper", "lower") if a["direction"] == "high" else ("lower", "upper")
            va, vb = a[first], b[second]
            if pd.isna(va) or pd.isna(vb) or a[f"{first}_basis"] != b[f"{second}_basis"]:
                continue
            oa, ob = a[f"{first}_offset"], b[f"{second}_offset"]
            if va != vb or oa != ob or (a[f"{first}_incl"] == "Y") == (b[f"{second}_incl"] == "Y"):
                sa = f" + {oa:g}" if oa else ""
                sb = f" + {ob:g}" if ob else ""
                unit = f", {tu}" if tu else ""
                problems.append(f"ctcae_lab.csv: {term} ({base}, clause {clause}{unit}) grade {int(a['grade'])} "
                                f"{first} {va:g}{sa} ({a[f'{first}_incl']}) does not meet grade {int(b['grade'])} "
                                f"{second} {vb:g}{sb} ({b[f'{second}_incl']})")
    return problems


@dataclass
class Grades:
    """Result of :func:`grade_labs`, aligned to the input records."""

    #: LBTOX (CTCAE term, "" when not graded) and LBTOXGR ("0".."4", "" when not graded)
    frame: pd.DataFrame
    #: True where the record's unit is not the criteria's unit (not graded: an error)
    unit_mismatch: pd.Series
    #: the unit the criteria expect for each record's test ("" for tests without criteria)
    expected_unit: pd.Series
    #: True where a missing reference range prevented a grade
    range_missing: pd.Series
    #: the grade of each direction (columns ``low``, ``high``): NaN when the direction is
    #: unknown (rule 3) or the test has no criteria in that direction
    by_direction: pd.DataFrame | None = None


def _sign(value: np.ndarray, censor: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """-1 / 0 / +1: value below / on / above threshold, with relative tolerance, a censored
    value sitting just on its censored side of its limit."""
    d = value - threshold
    tol = REL_TOL * np.maximum(np.abs(value), np.abs(threshold)) + 1e-12
    s = np.where(d > tol, 1, np.where(d < -tol, -1, 0))
    return np.where(s == 0, censor, s)


def _reference(basis: str, rec: dict[str, np.ndarray], n: int) -> np.ndarray:
    if basis == "SI":
        return np.ones(n)
    return {"ULN": rec["ULN"], "LLN": rec["LLN"], "BASELINE": rec["BASE"]}[basis]


def _baseline_abnormal(rec: dict[str, np.ndarray], direction: str) -> np.ndarray:
    """Baseline abnormal in the direction of the term (above its ULN / below its LLN)."""
    if direction == "high":
        s = _sign(rec["BASE"], rec["BASE_CENSOR"], rec["BASE_ULN"])
        return np.isfinite(rec["BASE"]) & np.isfinite(rec["BASE_ULN"]) & (s > 0)
    s = _sign(rec["BASE"], rec["BASE_CENSOR"], rec["BASE_LLN"])
    return np.isfinite(rec["BASE"]) & np.isfinite(rec["BASE_LLN"]) & (s < 0)


#: the columns of a criteria row that :func:`grade_labs` reads
_Criterion = namedtuple("_Criterion", ["direction", "grade", "baseline", "lower", "lower_basis", "lower_incl",
                                       "lower_offset", "upper", "upper_basis", "upper_incl", "upper_offset",
                                       "si_unit", "threshold_unit"])


def _gradable_rows(criteria: pd.DataFrame) -> dict[str, list[_Criterion]]:
    """The ``lab_gradable`` rows of each test, tests in order of first appearance and rows in
    table order (what ``groupby("lbtestcd", sort=False)`` gives, without a namedtuple class
    made per test by ``itertuples``)."""
    rows = criteria[(criteria["lab_gradable"] == "Y") & criteria["lbtestcd"].notna()]
    by_test: dict[str, list[_Criterion]] = {}
    # plain lists: iterating a pandas column costs a call per element
    for test, *values in zip(rows["lbtestcd"].tolist(), *(rows[f].tolist() for f in _Criterion._fields)):  # criteria rows
        by_test.setdefault(test, []).append(_Criterion(*values))
    return by_test


def _threshold_units(by_test: dict[str, list[_Criterion]]) -> dict[tuple[str, str], tuple[list[str], str]]:
    """(test, direction) -> (the threshold units of its rows, the standard unit of its first row)."""
    out: dict[tuple[str, str], tuple[list[str], str]] = {}
    for test, rows in by_test.items():  # criteria rows
        for r in rows:
            units, _si = out.setdefault((test, r.direction), ([], r.si_unit))
            if r.threshold_unit not in units:
                units.append(r.threshold_unit)
    return out


def grade_labs(frame: pd.DataFrame, criteria: pd.DataFrame) -> Grades:
    """CTCAE grade of each record (rules in the module docstring).

    ``frame`` columns (:data:`INPUT_COLUMNS`): LBTESTCD, LBSTRESU, ``value`` (standard-unit
    number, or the limit of a censored result), ``censor`` (-1/0/+1), ``LLN``/``ULN``
    (LBSTNRLO/LBSTNRHI), ``post`` (bool: after the first exposure, DM.RFXSTDTC), ``BASE``,
    ``BASE_CENSOR``, ``BASE_LLN``, ``BASE_ULN`` (the subject's baseline record of the test,
    NaN when none); optionally ``ORIG_UNIT`` and ``ORIG_FACTOR`` (rule 8).
    """
    n = len(frame)
    idx = frame.index
    tcode, tuniq = pd.factorize(frame["LBTESTCD"].astype(object).fillna(""), use_na_sentinel=False)
    tuniq = pd.Series(np.asarray(tuniq, dtype=object)).astype(str)
    ucode, uuniq = pd.factorize(frame["LBSTRESU"].astype(object).fillna(""), use_na_sentinel=False)
    uuniq = np.asarray(uuniq, dtype=object).astype(str)
    rec = {k: frame[k].to_numpy(dtype="float64") for k in ("value", "LLN", "ULN", "BASE", "BASE_LLN", "BASE_ULN")}
    rec["censor"] = frame["censor"].to_numpy(dtype="float64")
    rec["BASE_CENSOR"] = np.nan_to_num(frame["BASE_CENSOR"].to_numpy(dtype="float64"))
    post = frame["post"].to_numpy(dtype=bool)
    has_value = np.isfinite(rec["value"])
    if all(c in frame.columns for c in UNIT_COLUMNS):
        ocode, ouniq = pd.factorize(frame["ORIG_UNIT"].astype(object).fillna(""), use_na_sentinel=False)
        orig_factor = frame["ORIG_FACTOR"].to_numpy(dtype="float64")
    else:
        ocode, ouniq = ucode, uuniq
        orig_factor = np.ones(n)
    ouniq = np.array([str(u) for u in ouniq], dtype=object)  # the reported units (a few)
    orig_unit = ouniq[ocode]

    expected = dict(zip(criteria["lbtestcd"].tolist(), criteria["si_unit"].tolist()))
    exp_u = tuniq.map(expected)
    has_criteria = exp_u.notna().to_numpy()[tcode]
    exp_of_test = exp_u.fillna("").to_numpy(dtype=object)
    expected_unit = pd.Series(exp_of_test[tcode], index=idx, dtype=object)
    # rule 6 per distinct (test, unit): a few dozen tests by a few dozen units
    differs = np.array([[str(u) != str(e) for u in uuniq] for e in exp_of_test], dtype=bool).reshape(
        len(exp_of_test), len(uuniq))
    mismatch = has_criteria & has_value & differs[tcode, ucode]
    gradable = has_criteria & has_value & ~mismatch

    by_code = pd.Series(np.arange(n)).groupby(tcode).indices if n else {}
    positions = {tuniq.iloc[c]: pos for c, pos in by_code.items()}
    sat = {d: np.zeros(n) for d in DIRECTIONS}
    unev = {d: np.zeros(n) for d in DIRECTIONS}
    has_dir = {d: np.zeros(n, dtype=bool) for d in DIRECTIONS}
    terms = {}
    for d in DIRECTIONS:
        sub = criteria[criteria["direction"] == d]
        terms[d] = dict(zip(sub["lbtestcd"].tolist(), sub["term"].tolist()))
    base_abn = {d: _baseline_abnormal(rec, d) for d in DIRECTIONS}
    # rule 8: the threshold unit each record is graded in, per test and direction (one term each)
    grading_unit = {d: np.full(n, "", dtype=object) for d in DIRECTIONS}
    by_test = _gradable_rows(criteria)
    for (test, d), (threshold_units, si_unit) in _threshold_units(by_test).items():  # tests x directions (metadata)
        pos = positions.get(test)
        if pos is None:
            continue
        own = np.isin(ocode[pos], np.flatnonzero(np.isin(ouniq, threshold_units)))
        grading_unit[d][pos] = np.where(own, orig_unit[pos], si_unit)

    for test, test_rows in by_test.items():  # tests (metadata)
        pos = positions.get(test)
        if pos is None:
            continue
        pos = pos[gradable[pos]]
        if not len(pos):
            continue
        # the test's records gathered once for all its rows; its grades kept locally and
        # written back once (a row's result does not depend on the order of the rows)
        own = {k: rec[k][pos] for k in ("value", "censor", "ULN", "LLN", "BASE")}
        p, f_orig = post[pos], orig_factor[pos]
        has_base = np.isfinite(own["BASE"])
        ones = np.ones(len(pos))
        local = {d: (sat[d][pos], unev[d][pos], grading_unit[d][pos], base_abn[d][pos])
                 for d in {r.direction for r in test_rows}}
        for r in test_rows:  # the test's criteria rows, each over its records
            t_sat, t_unev, t_unit, ab = local[r.direction]
            has_dir[r.direction][pos] = True
            in_unit = t_unit == r.threshold_unit
            # absolute thresholds and offsets of a row in a non-standard unit, in standard units (rule 8)
            f = ones if r.threshold_unit == r.si_unit else f_orig
            applies = in_unit  # a fresh array per row
            if r.baseline == "normal":
                applies &= ~(p & ab)
            elif r.baseline == "abnormal":
                applies &= p & ab
            if "BASELINE" in (r.lower_basis, r.upper_basis):
                applies &= p & has_base
            v, cz = own["value"], own["censor"]
            ok = evaluable = np.True_  # no bound: every record (broadcast)
            for side in ("lower", "upper"):
                mult = getattr(r, side)
                if np.isnan(mult):
                    continue
                basis, incl = getattr(r, f"{side}_basis"), getattr(r, f"{side}_incl") == "Y"
                # ref(SI) = 1 in the row's threshold unit, i.e. f in standard units (rule 8)
                ref = f if basis == "SI" else _reference(basis, own, len(pos))
                thr = mult * ref + getattr(r, f"{side}_offset") * f
                evaluable = evaluable & np.isfinite(thr)
                sg = _sign(v, cz, thr)
                if side == "lower":
                    ok = ok & ((sg >= 0) if incl else (sg > 0))
                else:
                    ok = ok & ((sg <= 0) if incl else (sg < 0))
            met = applies & evaluable & ok
            blocked = applies & ~evaluable
            # the highest grade met / blocked so far, in place
            np.maximum(t_sat, r.grade, out=t_sat, where=met)
            np.maximum(t_unev, r.grade, out=t_unev, where=blocked)
        for d, (t_sat, t_unev, _, _) in local.items():
            sat[d][pos], unev[d][pos] = t_sat, t_unev

    grade = {}
    for d in DIRECTIONS:
        known = has_dir[d] & (unev[d] <= sat[d])
        grade[d] = np.where(known, sat[d], np.nan)
    lo, hi = grade["low"], grade["high"]
    lo_s, hi_s = np.nan_to_num(lo, nan=-1), np.nan_to_num(hi, nan=-1)
    mid = (rec["LLN"] + rec["ULN"]) / 2
    below_mid = np.where(np.isfinite(mid), _sign(rec["value"], rec["censor"], np.nan_to_num(mid)) < 0,
                         rec["censor"] <= 0)
    pick_low = has_dir["low"] & (~has_dir["high"] | (lo_s > hi_s) | ((lo_s == hi_s) & below_mid))
    chosen = np.where(pick_low, lo, hi)
    # rule 3 with rule 5: one direction unknown and the other not abnormal -> unknown, never 0
    both = has_dir["low"] & has_dir["high"]
    one_unknown = both & (np.isnan(lo) | np.isnan(hi))
    chosen = np.where(one_unknown & ~(np.nan_to_num(chosen, nan=0.0) >= 1), np.nan, chosen)
    # a direction without any term maps to all-missing floats: made objects before the empty fill
    term_lo = tuniq.map(terms["low"]).astype(object).fillna("").to_numpy(dtype=object)[tcode]
    term_hi = tuniq.map(terms["high"]).astype(object).fillna("").to_numpy(dtype=object)[tcode]
    term = np.where(pick_low, term_lo, term_hi)
    graded = np.isfinite(chosen)
    out = pd.DataFrame({
        "LBTOX": np.where(graded, term, ""),
        "LBTOXGR": np.where(graded, np.array(["0", "1", "2", "3", "4"], dtype=object)[np.nan_to_num(chosen).astype(int)], ""),
    }, index=idx).astype(object)
    range_missing = pd.Series(gradable & (has_dir["low"] | has_dir["high"]) & ~graded, index=idx)
    by_direction = pd.DataFrame({d: np.where(has_dir[d], grade[d], np.nan) for d in DIRECTIONS}, index=idx)
    return Grades(frame=out, unit_mismatch=pd.Series(mismatch, index=idx), expected_unit=expected_unit,
                  range_missing=range_missing, by_direction=by_direction)


def worst_grades(lb: pd.DataFrame, criteria: pd.DataFrame) -> pd.DataFrame:
    """Per subject and CTCAE term: baseline grade and worst post-baseline grade (shift table input).

    ``lb`` needs USUBJID, LBTESTCD, LBTOX, LBTOXGR, LBLOBXFL and ``post`` (bool). A record
    graded in the other direction of a two-direction test counts for this term with its grade
    in this direction, taken from the optional columns :data:`DIRECTION_COLUMNS` (the
    :attr:`Grades.by_direction` of :func:`grade_labs`); where that grade is unknown (rule 3) the
    record does not count for this term: an ungraded direction is never a 0. Without those
    columns it counts as 0, which holds for grades made by :func:`grade_labs` (rule 5: a graded
    record has both directions known, or an abnormal one, and a value below the LLN is not
    above the ULN).
    Columns: USUBJID, LBTESTCD, LBTOX, baseline_grade, worst_post_grade, n_post_graded.
    """
    # terms a value can grade (Hyperglycemia, with no value-based grade, never has a shift row)
    terms = criteria[criteria["lab_gradable"] == "Y"].drop_duplicates(["lbtestcd", "term"])[
        ["lbtestcd", "term", "direction"]].rename(
        columns={"lbtestcd": "LBTESTCD", "term": "LBTOX"})
    # only the columns read here are taken from the graded records (LB may hold a million
    # records of some forty columns)
    used = ["USUBJID", "LBTESTCD", "LBTOX", "LBTOXGR", "LBLOBXFL", "post",
            *(c for c in DIRECTION_COLUMNS.values() if c in lb.columns)]
    graded = lb.loc[lb["LBTOXGR"].astype(str).ne(""), used]
    cols = ["USUBJID", "LBTESTCD", "LBTOX", "baseline_grade", "worst_post_grade", "n_post_graded"]
    if graded.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    # integer codes for the text keys: one per column, then one per (test, term) pair of codes
    scode, suniq = pd.factorize(graded["USUBJID"])
    tcode, tuniq = pd.factorize(graded["LBTESTCD"], use_na_sentinel=False)
    xcode, xuniq = pd.factorize(graded["LBTOX"], use_na_sentinel=False)
    kcode, kpair = pd.factorize(tcode.astype(np.int64) * len(xuniq) + xcode)
    gcode, guniq = pd.factorize(graded["LBTOXGR"], use_na_sentinel=False)  # "0" to "4": converted once each
    grade = pd.to_numeric(pd.Series(np.asarray(guniq, dtype=object))).to_numpy(dtype="float64")[gcode]
    g = pd.DataFrame({"s": scode, "k": kcode, "grade": grade,
                      "base": graded["LBLOBXFL"].eq("Y").to_numpy(), "post": graded["post"].to_numpy(dtype=bool)})
    has_dirs = all(c in graded.columns for c in DIRECTION_COLUMNS.values())
    for d, col in DIRECTION_COLUMNS.items():  # two directions
        g[f"g_{d}"] = (pd.to_numeric(graded[col], errors="coerce").to_numpy(dtype="float64") if has_dirs
                       else np.zeros(len(g)))
    keys = pd.DataFrame({"k": np.arange(len(kpair)), "LBTESTCD": np.asarray(tuniq, dtype=object)[kpair // len(xuniq)],
                         "LBTOX_rec": np.asarray(xuniq, dtype=object)[kpair % len(xuniq)]})
    terms = terms.reset_index(drop=True).assign(term_id=lambda t: np.arange(len(t)))
    pairs = keys.merge(terms, on="LBTESTCD")  # each (test, graded term) x each term of the test (small)
    pairs["same"] = pairs["LBTOX_rec"] == pairs["LBTOX"]
    g = g.merge(pairs[["k", "term_id", "same", "direction"]], on="k")
    other = np.where(g["direction"].eq("low"), g["g_low"], g["g_high"])
    g["grade"] = np.where(g["same"], g["grade"], other)
    g = g[g["grade"].notna()]
    by = ["s", "term_id"]
    base = g[g["base"]].groupby(by)["grade"].max()
    postg = g[g["post"]].groupby(by)["grade"].agg(["max", "size"])
    out = pd.concat([base.rename("baseline_grade"), postg["max"].rename("worst_post_grade"),
                     postg["size"].rename("n_post_graded")], axis=1).reset_index()
    out = out.merge(terms, on="term_id", how="left")
    out["USUBJID"] = np.asarray(suniq, dtype=object)[out["s"].to_numpy()]
    out["n_post_graded"] = out["n_post_graded"].fillna(0).astype(int)
    out = out.sort_values(["USUBJID", "LBTESTCD", "LBTOX"], kind="mergesort").reset_index(drop=True)
    return out[cols]
