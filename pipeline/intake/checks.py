"""Value predicates and cross-record / cross-form checks of the raw-extract gate.

Two kinds of functions live here, all pure and vectorised:

* **Predicates** over one text Series (``cdash_date_valid``, ``time_valid``, ``number_valid``,
  ``censored_number_valid``) and the date splitter :func:`cdash_date_parts`. They return
  boolean arrays aligned with the input; missing values are *not* valid (callers decide what
  missing means). They are evaluated once per distinct value (raw columns repeat a lot:
  a million laboratory rows hold a few thousand distinct dates), then broadcast back.
* **Cross checks**: one function per rule, each registered with :func:`cross_check` under
  the ``check`` ids it can emit. Each takes the prepared forms (every spec column present,
  ``_FILE`` and ``_ROW`` set, default index), the :class:`~pipeline.config.Study` and the
  :class:`~pipeline.spec.Spec`, and returns findings in ``FINDING_COLUMNS``.
  A cross check ignores values that are missing or malformed: the schema already reports
  those, and one wrong cell should give one finding.

The ISO 8601 converter is :mod:`pipeline.derive.dates`; this module only decides validity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.context import FINDING_COLUMNS, empty
from pipeline.export.memo import per_object
from pipeline.spec import Spec

#: CDASH month abbreviations (DD-MMM-YYYY), upper case
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTH_NUMBER = {m: i for i, m in enumerate(MONTHS, start=1)}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
#: CDASH unknown-part tokens: UN-MAR-2024 (day unknown), UN-UNK-2024 (day and month unknown)
DAY_UNKNOWN = "UN"
MONTH_UNKNOWN = "UNK"
#: earliest year accepted in any raw date (the latest is the study's data cutoff year + 1)
MIN_YEAR = 1900

#: visit name allowed in every form that has a VISIT column, besides the study's schedule
UNSCHEDULED = "UNSCHEDULED"
#: EXCAT of the CAR-T administration (specs/raw/columns.csv ex.EXCAT)
INFUSION_CATEGORY = "CAR-T INFUSION"
#: forms in which a screen failure (dm.ENRYN=N) may appear; in lb only at the screening visit
SCREEN_FAILURE_FORMS = ("dm", "ie", "vs", "lb", "ds", "mh", "prtx", "phsct")
#: date columns not compared with informed consent (born before consenting, by nature)
DATES_BEFORE_CONSENT_ALLOWED = {("dm", "BRTHDAT"), ("dm", "ICDAT"),
                                # history collected at screening: it happened before consent
                                ("mh", "MHSTDAT"), ("mh", "MHENDAT"), ("prtx", "CMSTDAT"),
                                ("prtx", "CMENDAT"), ("phsct", "PRSTDAT"),
                                # a prior medication still taken at consent started before it
                                ("cm", "CMSTDAT")}
#: history dates that must not be after informed consent (form, column)
HISTORY_DATES = (("mh", "MHSTDAT"), ("mh", "MHENDAT"), ("prtx", "CMSTDAT"), ("prtx", "CMENDAT"),
                 ("phsct", "PRSTDAT"))
_INT_RE = r"[+-]?\d+"
_FLOAT_RE = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


# ---------------------------------------------------------------------------------------
# predicates
# ---------------------------------------------------------------------------------------
def _per_distinct(series: pd.Series, func: Callable[[pd.Series], object]):
    """Evaluate ``func`` on the distinct non-missing values of ``series`` and broadcast back.

    Returns ``(codes, result)``: ``result`` is func's output over the distinct values (default
    index) and ``codes`` the position of each input value in it (-1 for missing).
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    values = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
    return codes, func(values)


def _broadcast_bool(series: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    codes, res = _per_distinct(series, func)
    res = np.append(np.asarray(res, dtype=bool), False)  # code -1 -> last slot -> False
    return pd.Series(res[codes], index=series.index, dtype=bool)


def _codepoints(u: pd.Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Text as a (n, >= width) array of Unicode code points (0-padded) and the text lengths.

    Lets the date and time rules run as integer arithmetic on whole arrays.
    """
    if not len(u):
        return np.zeros((0, width), dtype=np.uint32), np.zeros(0, dtype=int)
    # one character more than needed is enough to tell "too long" (and bounds the memory)
    a = np.asarray(u.str.slice(0, width + 1).to_numpy(dtype=object), dtype=str)
    if a.dtype.itemsize // 4 < width:
        a = a.astype(f"U{width}")
    cp = a.view(np.uint32).reshape(len(a), -1)
    return cp, np.char.str_len(a)


def _digits(cp: np.ndarray, cols: range) -> tuple[np.ndarray, np.ndarray]:
    """Whether the characters at ``cols`` are all ASCII digits, and their decimal value."""
    block = cp[:, cols.start:cols.stop].astype(np.int64) - 48
    ok = ((block >= 0) & (block <= 9)).all(axis=1)
    value = (np.where(ok[:, None], block, 0) * (10 ** np.arange(block.shape[1] - 1, -1, -1))).sum(axis=1)
    return ok, value


def _word(cp: np.ndarray, cols: range) -> np.ndarray:
    """Code points at ``cols`` packed into one integer per row (21 bits per character)."""
    out = np.zeros(len(cp), dtype=np.uint64)
    for c in cols:
        out = (out << np.uint64(21)) | cp[:, c].astype(np.uint64)
    return out


def _pack(text: str) -> int:
    out = 0
    for ch in text:
        out = (out << 21) | ord(ch)
    return out


_MONTH_CODES = {_pack(m): i for i, m in enumerate(MONTHS, start=1)}
_MONTH_KEYS = np.array(sorted(_MONTH_CODES), dtype=np.uint64)
_MONTH_VALUES = np.array([_MONTH_CODES[k] for k in sorted(_MONTH_CODES)], dtype=float)
_MONTH_UNKNOWN_CODE = np.uint64(_pack(MONTH_UNKNOWN))
_DAY_UNKNOWN_CODE = np.uint64(_pack(DAY_UNKNOWN))


def _date_parts_distinct(u: pd.Series, partial_ok: bool, max_year: int | None) -> pd.DataFrame:
    cp, length = _codepoints(u, 11)
    shaped = (length == 11) & (cp[:, 2] == ord("-")) & (cp[:, 6] == ord("-"))
    day_digits, day = _digits(cp, range(0, 2))
    year_digits, year = _digits(cp, range(7, 11))
    day_unknown = _word(cp, range(0, 2)) == _DAY_UNKNOWN_CODE
    mword = _word(cp, range(3, 6))
    pos = np.clip(np.searchsorted(_MONTH_KEYS, mword), 0, len(_MONTH_KEYS) - 1)
    month_known = _MONTH_KEYS[pos] == mword
    month = np.where(month_known, _MONTH_VALUES[pos], np.nan)
    month_unknown = mword == _MONTH_UNKNOWN_CODE
    year_ok = year_digits & (year >= MIN_YEAR) & (year <= (max_year if max_year is not None else 9999))
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    mi = np.where(month_known, month, 1).astype(int) - 1
    dim = _DAYS_IN_MONTH[mi] + ((mi == 1) & leap)
    day_ok = day_digits & month_known & (day >= 1) & (day <= dim)
    if partial_ok:
        month_ok = month_known | (month_unknown & day_unknown)
        day_ok = day_ok | (day_unknown & month_ok)
    else:
        month_ok = month_known
    valid = shaped & year_ok & month_ok & day_ok
    return {
        "valid": valid,
        "year": np.where(valid, year, np.nan),
        "month": np.where(valid, month, np.nan),
        "day": np.where(valid & day_digits, day, np.nan),
    }


def _time_valid_distinct(u: pd.Series) -> np.ndarray:
    cp, length = _codepoints(u, 5)
    hh_ok, hh = _digits(cp, range(0, 2))
    mm_ok, mm = _digits(cp, range(3, 5))
    return (length == 5) & (cp[:, 2] == ord(":")) & hh_ok & mm_ok & (hh <= 23) & (mm <= 59)


def cdash_date_parts(series: pd.Series, partial_ok: bool = True, max_year: int | None = None) -> pd.DataFrame:
    """Split CDASH ``DD-MMM-YYYY`` dates into validity and numeric parts.

    Returns a frame aligned with ``series`` with ``valid`` (bool) and float ``year``,
    ``month``, ``day`` (NaN when unknown, missing or invalid). Rules (CDASHIG date
    collection format ``DD-MMM-YYYY``; SDTMIG 3.4 section 4.4.2 for partial dates):

    * month is one of JAN..DEC in upper case; day is two digits and exists in that month
      and year (29-FEB only in leap years); year has four digits, from 1900 to ``max_year``;
    * with ``partial_ok``: the day may be ``UN`` (``UN-MAR-2024``), and the month ``UNK``
      only when the day is also unknown (``UN-UNK-2024``); a known day under an unknown
      month is invalid. Without ``partial_ok`` the date must be complete.
    """
    codes, res = _per_distinct(series, lambda u: _date_parts_distinct(u, partial_ok, max_year))
    pad = {"valid": False, "year": np.nan, "month": np.nan, "day": np.nan}
    return pd.DataFrame({k: np.append(np.asarray(v, dtype=bool if k == "valid" else float), pad[k])[codes]
                         for k, v in res.items()}, index=series.index)


def cdash_date_valid(series: pd.Series, partial_ok: bool = False, max_year: int | None = None) -> pd.Series:
    """True where the value is a valid CDASH date (see :func:`cdash_date_parts`); missing is False."""
    return cdash_date_parts(series, partial_ok=partial_ok, max_year=max_year)["valid"]


def time_valid(series: pd.Series) -> pd.Series:
    """True where the value is a 24-hour clock time ``HH:MM`` from 00:00 to 23:59."""
    return _broadcast_bool(series, _time_valid_distinct)


def _matched_numbers(u: pd.Series, pattern: str, strip: str = "") -> np.ndarray:
    """The value of each distinct text that matches ``pattern`` (read after removing leading
    ``strip`` characters), NaN for the others. The texts are handed to ``pd.to_numeric`` as an
    object array with NaN for the non-matching ones (what ``u.where(ok)`` gave it, without the
    str-Series round trips: the gate asks for a few hundred columns a study)."""
    ok = u.str.fullmatch(pattern, na=False).to_numpy(dtype=bool)
    values = u.to_numpy(dtype=object)
    if strip:
        values = np.array([v.lstrip(strip) for v in values], dtype=object)  # distinct texts
    return pd.to_numeric(np.where(ok, values, np.nan), errors="coerce").astype("float64")


def _finite_match(u: pd.Series, pattern: str, strip: str = "") -> np.ndarray:
    """Distinct texts matching ``pattern`` whose value is a finite double (``1e999`` is not)."""
    return np.isfinite(_matched_numbers(u, pattern, strip))


def _finite_value(u: pd.Series, pattern: str, strip: str = "") -> np.ndarray:
    """The value of the distinct texts of :func:`_finite_match`, NaN for the others."""
    num = _matched_numbers(u, pattern, strip)
    return np.where(np.isfinite(num), num, np.nan)


def number_valid(series: pd.Series, integer: bool = False) -> pd.Series:
    """True where the text is a plain, finite decimal number (``.`` as separator; an integer when asked).

    Text that overflows a double (``1e999``) is not a number: it would reach the exports as
    infinity. Finite but huge values (``1e308``) are the range rules' business.
    """
    pattern = _INT_RE if integer else _FLOAT_RE
    return _broadcast_bool(series, lambda u: _finite_match(u, pattern))


def censored_number_valid(series: pd.Series) -> pd.Series:
    """True where the text is a finite number, or a censored number ``<x`` / ``>x`` (below / above a limit)."""
    return _broadcast_bool(series, lambda u: _finite_match(u, f"[<>]?{_FLOAT_RE}", "<>"))


def _broadcast_float(series: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    codes, res = _per_distinct(series, func)
    res = np.append(np.asarray(res, dtype="float64"), np.nan)  # code -1 (missing) -> NaN
    return pd.Series(res[codes], index=series.index, name=series.name, dtype=float)


def censored_number_value(series: pd.Series) -> pd.Series:
    """Float value of numbers and of the limit of censored ``<x``/``>x`` results; NaN otherwise
    (parsed once per distinct text)."""
    pattern = f"[<>]?{_FLOAT_RE}"
    return _broadcast_float(series, lambda u: _finite_value(u, pattern, "<>"))


def number_value(series: pd.Series, integer: bool = False) -> pd.Series:
    """Float value of well-formed numbers (per :func:`number_valid`), NaN otherwise (parsed once
    per distinct text)."""
    pattern = _INT_RE if integer else _FLOAT_RE
    return _broadcast_float(series, lambda u: _finite_value(u, pattern))


def in_range(series: pd.Series, low: float | None, high: float | None, integer: bool = False) -> pd.Series:
    """True where the value is not a well-formed number (the type check reports it) or lies in [low, high]."""
    return pd.Series(within(number_value(series, integer=integer).to_numpy(), low, high), index=series.index)


def within(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """:func:`in_range` of :func:`number_value` ``values`` (NaN: not a number, True)."""
    ok = np.ones(len(values), dtype=bool)
    if low is not None:
        ok &= ~(values < low)
    if high is not None:
        ok &= ~(values > high)
    return ok


def definitely_before(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """True where date ``a`` is before date ``b`` at the precision both know.

    ``a`` and ``b`` are :func:`cdash_date_parts` frames (aligned). Years are compared first,
    then months when both are known, then days when both are known; an unknown part on
    either side stops the comparison (no finding when it cannot be decided).
    """
    ya, ma, da = (a[c].to_numpy() for c in ("year", "month", "day"))
    yb, mb, db = (b[c].to_numpy() for c in ("year", "month", "day"))
    with np.errstate(invalid="ignore"):
        same_y = ya == yb
        same_m = same_y & (ma == mb)
        return (ya < yb) | (same_y & (ma < mb)) | (same_m & (da < db))


# ---------------------------------------------------------------------------------------
# parsed values of the gate's own working forms
# ---------------------------------------------------------------------------------------
class ParsedForms(dict):
    """The prepared forms of ONE validate call (form -> frame) and the parsed values of their
    columns (number values, CDASH date parts, censored numbers), each parsed once for that call:
    the schema's type, range and plausibility checks and several cross checks read the same
    columns (issue 14). It holds only the working copies that call made itself
    (:func:`pipeline.intake.gate.validate_detail`), which do not change while it runs, and goes
    with the call. A plain dict of forms (a caller's own frames, which it may change between two
    calls) gets no memo: every helper below then parses afresh. The memo is never keyed on a
    frame's identity, so a frame changed in place is never judged on stale values."""

    def __init__(self, forms=()):
        super().__init__(forms)
        self._parsed: dict[tuple, object] = {}

    def parsed(self, key: tuple, compute: Callable[[], object]):
        """``compute()``, once per ``key`` in this call (the result is shared: read it, do not change it)."""
        if key not in self._parsed:
            self._parsed[key] = compute()
        return self._parsed[key]


def _once(forms: dict[str, pd.DataFrame], key: tuple, compute: Callable[[], object]):
    return forms.parsed(key, compute) if isinstance(forms, ParsedForms) else compute()


def form_number_value(forms: dict[str, pd.DataFrame], form: str, column: str, integer: bool = False) -> pd.Series:
    """:func:`number_value` of ``forms[form][column]``, once per validate call (see :class:`ParsedForms`)."""
    return _once(forms, ("number", form, column, integer),
                 lambda: number_value(forms[form][column], integer=integer))


def form_censored_value(forms: dict[str, pd.DataFrame], form: str, column: str) -> pd.Series:
    """:func:`censored_number_value` of ``forms[form][column]``, once per validate call."""
    return _once(forms, ("censored", form, column), lambda: censored_number_value(forms[form][column]))


def form_date_parts(forms: dict[str, pd.DataFrame], form: str, column: str, partial_ok: bool,
                    max_year: int | None) -> pd.DataFrame:
    """:func:`cdash_date_parts` of ``forms[form][column]``, once per validate call: the date
    cross checks each compare every date column of every form, and the schema checks them too."""
    return _once(forms, ("date", form, column, partial_ok, max_year),
                 lambda: cdash_date_parts(forms[form][column], partial_ok=partial_ok, max_year=max_year))


# ---------------------------------------------------------------------------------------
# findings
# ---------------------------------------------------------------------------------------
def _text(values) -> pd.Series:
    s = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values.astype(object)
    return s.where(s.notna(), "").astype(str)


def make_findings(study: str, df: pd.DataFrame, mask, column: str, check: str, severity: str,
                  message, value=None) -> pd.DataFrame:
    """Findings for the rows of ``df`` selected by ``mask``.

    ``message`` and ``value`` may be scalars, Series aligned with ``df``, or callables
    taking the selected rows and returning either (so that per-row text is only built for the
    few rows that fail, not for a million that pass); ``value`` defaults to the cell of ``column``.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return _NO_FINDINGS
    sub = df.loc[mask]
    if callable(message):
        message = message(sub)
    if callable(value):
        value = value(sub)
    if value is None:
        value = sub[column] if column in sub.columns else ""
    elif isinstance(value, pd.Series):
        value = value.loc[mask] if len(value) == len(df) else value
    if isinstance(message, pd.Series):
        message = message.loc[mask] if len(message) == len(df) else message
    out = pd.DataFrame({
        "study": study,
        "file": _text(sub["_FILE"]).to_numpy(),
        "row": sub["_ROW"].astype("Int64").to_numpy(),
        "column": column,
        "value": _text(value).to_numpy() if isinstance(value, pd.Series) else str(value),
        "check": check,
        "severity": severity,
        "message": _text(message).to_numpy() if isinstance(message, pd.Series) else str(message),
    })
    out["row"] = out["row"].astype("Int64")
    return out[FINDING_COLUMNS]


#: the shared empty result (read-only: callers concatenate findings, never modify them)
_NO_FINDINGS = empty(FINDING_COLUMNS)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return _NO_FINDINGS
    return pd.concat(frames, ignore_index=True)


def _s(x) -> pd.Series:
    """Text of a column, '' for missing (for building messages)."""
    return x.astype(object).where(x.notna(), "").astype(str)


def _max_year(study: Study) -> int:
    return int(study.data_cutoff[:4]) + 1


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CrossCheck:
    """A registered cross check: the function, the check ids it emits, the forms it reports on."""

    func: Callable[[dict[str, pd.DataFrame], Study, Spec], pd.DataFrame]
    checks: tuple[str, ...]
    forms: tuple[str, ...] | None  # None: every delivered form


CROSS_CHECKS: list[CrossCheck] = []


def cross_check(*checks: str, forms: tuple[str, ...] | None = None):
    """Register a cross check under the ``check`` ids it can emit."""
    def deco(func):
        CROSS_CHECKS.append(CrossCheck(func, checks, forms))
        return func
    return deco


def _dm_subjects(forms: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """dm rows with a subject id, one per SUBJID (first row wins)."""
    dm = forms.get("dm")
    if dm is None:
        return None
    return dm[dm["SUBJID"].notna()].drop_duplicates("SUBJID")


# ---------------------------------------------------------------------------------------
# cross-record checks
# ---------------------------------------------------------------------------------------
@cross_check("key.duplicate")
def check_unique_keys(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """Each form's natural key (``specs/raw/forms.csv`` ``keys``) identifies one record.

    Every repeat of a key after its first occurrence is an error naming the first row.
    """
    keys_of = dict(zip(spec.raw_forms["form"], spec.raw_forms["keys"]))
    out = []
    for form, df in forms.items():
        keys = [k for k in keys_of.get(form, "").split("|") if k]
        if not keys or df.empty:
            continue
        dup = df.duplicated(keys, keep="first")
        if not dup.any():
            continue
        involved = df.duplicated(keys, keep=False)
        sub = df.loc[involved]
        first = sub.groupby(keys, dropna=False, sort=False)["_ROW"].transform("min")

        def message(rows, first=first, keys=keys):
            shown = f"{keys[0]}=" + _s(rows[keys[0]])
            for k in keys[1:]:
                shown = shown + f" {k}=" + _s(rows[k])
            return ("duplicate record: " + shown + " already at row " + first.loc[rows.index].astype(str)
                    + f"; the key ({', '.join(keys)}) must be unique")

        def value(rows, keys=keys):
            text = _s(rows[keys[0]])
            for k in keys[1:]:
                text = text + "|" + _s(rows[k])
            return text

        out.append(make_findings(study.studyid, df, dup, "|".join(keys), "key.duplicate", "error", message, value))
    return _concat(out)


@cross_check("id.studyid", "id.siteid")
def check_identifiers(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """STUDYID equals the study (folder name); SITEID is one of the study's ``[[sites]]``."""
    sites = [str(s) for s in study.sites.get("siteid", pd.Series(dtype=object)).tolist()]
    out = []
    for form, df in forms.items():
        bad = _failing(df["STUDYID"], lambda u: u == study.studyid)
        out.append(make_findings(study.studyid, df, bad, "STUDYID", "id.studyid", "error",
                                 f"STUDYID must be {study.studyid} (the study this extract belongs to)"))
        bad = _failing(df["SITEID"], lambda u: pd.Index(u).isin(sites))
        out.append(make_findings(study.studyid, df, bad, "SITEID", "id.siteid", "error",
                                 f"SITEID is not a site of {study.studyid}; sites: {', '.join(sites) or 'none declared'}"))
    return _concat(out)


@cross_check("subject.not_in_dm", "subject.site_mismatch")
def check_subjects_in_dm(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """Every subject of every form is a consented subject of dm, at the same site.

    Skipped when dm was not delivered (its absence is reported by the reader).
    """
    dm = _dm_subjects(forms)
    if dm is None:
        return _NO_FINDINGS
    site_of = pd.Series(dm["SITEID"].to_numpy(), index=dm["SUBJID"].to_numpy())
    dm_sites = np.append(dm["SITEID"].to_numpy(dtype=object), np.nan)  # position -1: not in dm
    out = []
    for form, df in forms.items():
        if form == "dm":
            continue
        # each record's dm row by one lookup (isin and map of the same keys were two)
        pos = site_of.index.get_indexer(df["SUBJID"])
        known = pos >= 0
        bad = df["SUBJID"].notna().to_numpy() & ~known
        out.append(make_findings(study.studyid, df, bad, "SUBJID", "subject.not_in_dm", "error",
                                 f"subject is not in dm: every subject in {form} must have a dm record (informed consent)"))
        site, dm_site = df["SITEID"].to_numpy(dtype=object), dm_sites[pos]
        bad = known & pd.notna(site) & pd.notna(dm_site) & (site != dm_site)
        out.append(make_findings(study.studyid, df, bad, "SITEID", "subject.site_mismatch", "error",
                                 lambda rows: "SITEID differs from the subject's site in dm ("
                                 + _s(rows["SUBJID"].map(site_of)) + ")"))
    return _concat(out)


def _failing(values: pd.Series, passes: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """True where a value is present and fails ``passes``, judged once per distinct value
    (``passes`` gets them as an object array; an identifier column holds a handful)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    judged = ~np.asarray(passes(np.asarray(uniques, dtype=object)), dtype=bool)
    return np.append(judged, False)[codes]  # code -1 (missing) -> last slot -> not failing


def _screening_visit(study: Study) -> str | None:
    v = study.visits
    if v.empty:
        return None
    return str(v.sort_values("VISITNUM")["VISIT"].iloc[0])


@cross_check("subject.screen_failure")
def check_screen_failures(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """A screen failure (dm.ENRYN=N) has data only in dm, ie, vs, ds and lb at the screening visit.

    The screening visit is the first visit (lowest VISITNUM) of the study's schedule.
    """
    dm = _dm_subjects(forms)
    if dm is None:
        return _NO_FINDINGS
    failures = set(dm.loc[dm["ENRYN"] == "N", "SUBJID"])
    if not failures:
        return _NO_FINDINGS
    screening = _screening_visit(study)
    allowed = ", ".join(f for f in SCREEN_FAILURE_FORMS if f != "lb")
    out = []
    for form, df in forms.items():
        is_sf = df["SUBJID"].isin(failures)
        if form == "lb":
            bad = is_sf & (df["VISIT"] != screening)
            msg = (f"subject is a screen failure (dm.ENRYN=N): laboratory data are allowed only at "
                   f"visit {screening}")
            out.append(make_findings(study.studyid, df, bad, "VISIT", "subject.screen_failure", "error", msg))
        elif form not in SCREEN_FAILURE_FORMS:
            msg = (f"subject is a screen failure (dm.ENRYN=N) and must not have {form} records; "
                   f"allowed: {allowed} and screening lb")
            out.append(make_findings(study.studyid, df, is_sf, "SUBJID", "subject.screen_failure", "error", msg))
    return _concat(out)


@cross_check("dm.armcd_required", "dm.armcd_unknown", forms=("dm",))
def check_arm(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """ARMCD is required for an enrolled subject (ENRYN=Y) and must be an arm of the study."""
    dm = forms.get("dm")
    if dm is None:
        return _NO_FINDINGS
    arms = [str(a) for a in study.arms.get("armcd", pd.Series(dtype=object)).tolist()]
    missing = (dm["ENRYN"] == "Y") & dm["ARMCD"].isna()
    unknown = dm["ARMCD"].notna() & ~dm["ARMCD"].isin(arms)
    return _concat([
        make_findings(study.studyid, dm, missing, "ARMCD", "dm.armcd_required", "error",
                      f"ARMCD is required for an enrolled subject (ENRYN=Y); arms: {', '.join(arms)}"),
        make_findings(study.studyid, dm, unknown, "ARMCD", "dm.armcd_unknown", "error",
                      f"ARMCD is not an arm of {study.studyid}; arms: {', '.join(arms)}"),
    ])


@cross_check("visit.unknown")
def check_visits(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """VISIT is a visit of the study's schedule (``[[visits]]``) or UNSCHEDULED."""
    visits = study.visits["VISIT"].astype(str).tolist() if not study.visits.empty else []
    allowed = visits + [UNSCHEDULED]
    with_visit = set(spec.raw_columns.loc[spec.raw_columns["column"] == "VISIT", "form"])
    out = []
    for form, df in forms.items():
        if form not in with_visit:
            continue
        bad = df["VISIT"].notna() & ~df["VISIT"].isin(allowed)
        out.append(make_findings(study.studyid, df, bad, "VISIT", "visit.unknown", "error",
                                 f"VISIT is not in the schedule of {study.studyid}; allowed: {', '.join(allowed)}"))
    return _concat(out)


def _date_columns(spec: Spec, form: str) -> list[tuple[str, bool]]:
    """(column, partial allowed) of the form's date and partial-date columns, in spec order;
    made once per raw spec table for every form."""
    def by_form(raw: pd.DataFrame) -> dict[str, list[tuple[str, bool]]]:
        cols = raw[raw["type"].isin(["date", "pdate"])]
        out: dict[str, list[tuple[str, bool]]] = {}
        for f, column, typ in zip(cols["form"], cols["column"], cols["type"]):  # spec rows
            out.setdefault(f, []).append((column, typ == "pdate"))
        return out
    return list(per_object(spec.raw_columns, "gate_date_columns", by_form).get(form, ()))


@cross_check("date.before_consent")
def check_dates_after_consent(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """No event or assessment date precedes the subject's informed consent (dm.ICDAT).

    ICH E6(R2) 4.8.8: consent is obtained before participation. Every date and partial date
    column of every form is compared (except dm.BRTHDAT), at the precision the date knows.
    """
    dm = _dm_subjects(forms)
    if dm is None:
        return _NO_FINDINGS
    cap = _max_year(study)
    ic = cdash_date_parts(dm["ICDAT"], partial_ok=False, max_year=cap)
    ic = ic[ic["valid"]]
    ic_by_subject = ic.set_index(dm.loc[ic.index, "SUBJID"].to_numpy())
    ic_text = pd.Series(dm.loc[ic.index, "ICDAT"].to_numpy(), index=ic_by_subject.index)
    out = []
    for form, df in forms.items():
        subj = df["SUBJID"]
        known = subj.isin(ic_by_subject.index)
        if not known.any():
            continue
        ref = ic_by_subject.reindex(subj.to_numpy())  # the form's consent dates, for all its date columns
        ref.index = df.index
        for column, partial in _date_columns(spec, form):
            if (form, column) in DATES_BEFORE_CONSENT_ALLOWED:
                continue
            parts = form_date_parts(forms, form, column, partial, cap)
            bad = known.to_numpy() & definitely_before(parts, ref)
            def msg(rows, column=column):
                return (f"{column} is before informed consent (dm.ICDAT " + _s(rows["SUBJID"].map(ic_text))
                        + "): no study event or assessment may precede consent")
            out.append(make_findings(study.studyid, df, bad, column, "date.before_consent", "error", msg))
    return _concat(out)


@cross_check("ae.end_before_start", "ae.ongoing_with_end", "ae.end_missing", forms=("ae",))
def check_ae_dates(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """AE end not before start (at known precision); AEONGO=Y has no end date; AEONGO=N has one.

    CDASHIG AE: the end date is collected only for resolved events (AEONGO=N).
    A resolved AE without an end date is a warning (query the site), not a block.
    """
    ae = forms.get("ae")
    if ae is None:
        return _NO_FINDINGS
    return _concat(_start_end_ongoing(forms, "ae", study, "event", "resolved"))


def _start_end_ongoing(forms: dict[str, pd.DataFrame], form: str, study: Study, noun: str,
                       stopped: str) -> list[pd.DataFrame]:
    """The findings of an event/intervention form's start, end and ongoing fields (``form`` ae
    or cm, prefix AE or CM): the end not before the start at the precision both are known to;
    <prefix>ONGO=Y with an end date (an error); <prefix>ONGO=N without one (a warning: query the site)."""
    frame, p, prefix = forms[form], form, form.upper()
    start, end, ongo = f"{prefix}STDAT", f"{prefix}ENDAT", frame[f"{prefix}ONGO"]
    cap = _max_year(study)
    st = form_date_parts(forms, form, start, True, cap)
    en = form_date_parts(forms, form, end, True, cap)
    return [
        make_findings(study.studyid, frame, definitely_before(en, st), end, f"{p}.end_before_start", "error",
                      lambda rows: f"{end} is before {start} (" + _s(rows[start]) + "): the end must be on or after "
                      "the start"),
        make_findings(study.studyid, frame, (ongo == "Y") & frame[end].notna(), end, f"{p}.ongoing_with_end", "error",
                      f"{end} is given but {prefix}ONGO=Y: an ongoing {noun} has no end date; clear one of them"),
        make_findings(study.studyid, frame, (ongo == "N") & frame[end].isna(), end, f"{p}.end_missing", "warning",
                      f"{end} is empty but {prefix}ONGO=N: a {stopped} {noun} needs its end date"),
    ]


@cross_check("cm.end_before_start", "cm.ongoing_with_end", "cm.end_missing", "cm.dose_unit_missing",
             "cm.ae_link", forms=("cm",))
def check_cm(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """Concomitant medications: end not before start (at known precision); CMONGO=Y has no end
    date and CMONGO=N has one (a warning, as for AEs); a dose has its unit; and the AE link
    CMAENO names an ae record (AESPID) of the same subject.

    CDASHIG CM: the end date is collected only for stopped medications (CMONGO=N). The AE link
    becomes a RELREC relationship (SDTMIG 3.4 8.2), so a link to no AE is an error: the
    treatment would be related to nothing.
    """
    cm = forms.get("cm")
    if cm is None or not len(cm):
        return _NO_FINDINGS
    out = _start_end_ongoing(forms, "cm", study, "medication", "stopped") + [
        make_findings(study.studyid, cm, cm["CMDOSE"].notna() & cm["CMDOSU"].isna(), "CMDOSU",
                      "cm.dose_unit_missing", "error",
                      lambda rows: "CMDOSE " + _s(rows["CMDOSE"]) + " has no unit (CMDOSU): a dose without its unit "
                      "cannot be read"),
    ]
    linked = cm["CMAENO"].notna() & cm["SUBJID"].notna()
    if linked.any():
        ae = forms.get("ae")
        known = set()
        if ae is not None and len(ae):
            known = set(_s(ae["SUBJID"]) + "|" + _s(ae["AESPID"]))
        bad = linked & ~(_s(cm["SUBJID"]) + "|" + _s(cm["CMAENO"])).isin(known)
        out.append(make_findings(
            study.studyid, cm, bad, "CMAENO", "cm.ae_link", "error",
            lambda rows: "CMAENO " + _s(rows["CMAENO"]) + " is not an AESPID of subject " + _s(rows["SUBJID"])
            + " in ae: the medication must be linked to an adverse event of the same subject (RELREC)"))
    return _concat(out)


@cross_check("ex.infusion_missing", "ex.infusion_unexpected", forms=("dm",))
def check_infusion(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """dm.TRTYN=Y requires a CAR-T infusion record in ex; TRTYN=N allows none. Reported on dm."""
    dm = forms.get("dm")
    if dm is None:
        return _NO_FINDINGS
    ex = forms.get("ex")
    infused = set() if ex is None else set(ex.loc[ex["EXCAT"] == INFUSION_CATEGORY, "SUBJID"].dropna())
    has = dm["SUBJID"].isin(infused)
    return _concat([
        make_findings(study.studyid, dm, (dm["TRTYN"] == "Y") & dm["SUBJID"].notna() & ~has, "TRTYN",
                      "ex.infusion_missing", "error",
                      f"TRTYN=Y but ex has no EXCAT={INFUSION_CATEGORY} record for this subject"),
        make_findings(study.studyid, dm, (dm["TRTYN"] == "N") & has, "TRTYN", "ex.infusion_unexpected", "error",
                      f"TRTYN=N but ex has an EXCAT={INFUSION_CATEGORY} record for this subject"),
    ])


@cross_check("lb.testcd_unknown", "lb.testcd_derived", "lb.test_mismatch", "lb.unit_invalid", "lb.result_invalid",
             "lb.result_missing", "lb.result_not_done", "lb.range_order", forms=("lb",))
def check_lab(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """Laboratory records against ``specs/rules/lab_tests.csv`` and ``lab_units.csv``.

    LBTESTCD is a known test and LBTEST its name; LBORRESU is a unit listed for the test
    (empty only for unitless tests); LBORRES is numeric or censored ``<x``/``>x`` and empty
    only when LBSTAT=NOT DONE (SDTMIG 3.4 LB: --STAT/--REASND); LBORNRLO <= LBORNRHI.
    """
    lb = forms.get("lb")
    if lb is None:
        return _NO_FINDINGS
    sid = study.studyid
    tests = spec.rule("lab_tests")
    units = spec.rule("lab_units")
    name_of = pd.Series(tests["lbtest"].to_numpy(), index=tests["lbtestcd"].to_numpy())
    code = lb["LBTESTCD"]
    known = code.isin(name_of.index)
    out = [make_findings(sid, lb, code.notna() & ~known, "LBTESTCD", "lb.testcd_unknown", "error",
                         "LBTESTCD is not a test of specs/rules/lab_tests.csv")]
    derived_codes = tests.loc[tests.get("origin", pd.Series("", index=tests.index)).eq("Derived"), "lbtestcd"]
    out.append(make_findings(sid, lb, code.isin(derived_codes), "LBTESTCD", "lb.testcd_derived", "error",
                             "LBTESTCD is derived by the pipeline (origin Derived in specs/rules/lab_tests.csv) "
                             "and must not be delivered as a collected result"))
    bad = known & lb["LBTEST"].notna() & (lb["LBTEST"] != code.map(name_of))
    out.append(make_findings(sid, lb, bad, "LBTEST", "lb.test_mismatch", "error",
                             lambda rows: "LBTEST does not match LBTESTCD " + _s(rows["LBTESTCD"])
                             + "; expected " + _s(rows["LBTESTCD"].map(name_of))))

    listed = (units.assign(u=units["raw_unit"].where(units["raw_unit"] != "", "(no unit)"))
              .groupby("lbtestcd", sort=False)["u"].agg(", ".join))
    unit = lb["LBORRESU"].astype(object).where(lb["LBORRESU"].notna(), "")
    has_result = lb["LBORRES"].notna() | lb["LBORRESU"].notna()
    listed_pairs = pd.MultiIndex.from_arrays([units["lbtestcd"], units["raw_unit"]])
    unit_ok = pd.MultiIndex.from_arrays([code.astype(object).where(code.notna(), ""), unit]).isin(listed_pairs)
    bad = known.to_numpy() & has_result.to_numpy() & ~unit_ok
    out.append(make_findings(sid, lb, bad, "LBORRESU", "lb.unit_invalid", "error",
                             lambda rows: ("unit '" + _s(rows["LBORRESU"]) + "'").where(rows["LBORRESU"].notna(),
                                                                                        "an empty unit")
                             + " is not valid for LBTESTCD " + _s(rows["LBTESTCD"]) + "; allowed: "
                             + _s(rows["LBTESTCD"].map(listed)),
                             value=lambda rows: _s(rows["LBORRESU"])))

    res = lb["LBORRES"]
    not_done = lb["LBSTAT"] == "NOT DONE"
    bad = res.notna() & form_censored_value(forms, "lb", "LBORRES").isna()  # censored_number_valid
    out.append(make_findings(sid, lb, bad, "LBORRES", "lb.result_invalid", "error",
                             "LBORRES must be a number or a censored value <x or >x (e.g. 12.5, <0.1, >1000)"))
    out.append(make_findings(sid, lb, res.isna() & ~not_done, "LBORRES", "lb.result_missing", "error",
                             "LBORRES is empty: give the result, or set LBSTAT=NOT DONE with LBREASND"))
    out.append(make_findings(sid, lb, res.notna() & not_done, "LBSTAT", "lb.result_not_done", "warning",
                             "LBSTAT=NOT DONE but LBORRES holds a result; clear one of them"))
    lo, hi = form_number_value(forms, "lb", "LBORNRLO"), form_number_value(forms, "lb", "LBORNRHI")
    out.append(make_findings(sid, lb, (lo > hi).to_numpy(), "LBORNRLO", "lb.range_order", "error",
                             lambda rows: "reference range lower limit LBORNRLO is above the upper limit "
                             "LBORNRHI (" + _s(rows["LBORNRHI"]) + ")"))
    return _concat(out)


def _age_at(ref: pd.DataFrame, y, m, d) -> np.ndarray:
    """Completed years from birth (y, m, d) to ``ref`` (a complete date): floor of the age."""
    before_birthday = (ref["month"].to_numpy() < m) | ((ref["month"].to_numpy() == m) & (ref["day"].to_numpy() < d))
    return ref["year"].to_numpy() - y - before_birthday


@cross_check("dm.age_mismatch", "dm.age_uncertain", forms=("dm",))
def check_age(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """AGE equals completed years from BRTHDAT to informed consent (ICDAT) (SDTMIG 3.4 DM AGE).

    Complete birth date: any disagreement is an error. Partial birth date (UN-MMM-YYYY or
    UN-UNK-YYYY): AGE must lie within the ages the possible birth dates give; one year
    outside is a warning, more an error.
    """
    dm = forms.get("dm")
    if dm is None:
        return _NO_FINDINGS
    cap = _max_year(study)
    ic = form_date_parts(forms, "dm", "ICDAT", False, cap)
    b = form_date_parts(forms, "dm", "BRTHDAT", True, cap)
    age = form_number_value(forms, "dm", "AGE", integer=True).to_numpy()
    by, bm, bd = b["year"].to_numpy(), b["month"].to_numpy(), b["day"].to_numpy()
    # earliest and latest possible birth dates
    e_m = np.where(np.isnan(bm), 1, bm)
    e_d = np.where(np.isnan(bd), 1, bd)
    l_m = np.where(np.isnan(bm), 12, bm)
    yr = np.nan_to_num(by, nan=2000).astype(int)
    leap = (yr % 4 == 0) & ((yr % 100 != 0) | (yr % 400 == 0))
    lm_i = l_m.astype(int) - 1
    l_d = np.where(np.isnan(bd), _DAYS_IN_MONTH[lm_i] + ((lm_i == 1) & leap), bd)
    oldest = _age_at(ic, by, e_m, e_d)     # born earliest -> oldest
    youngest = _age_at(ic, by, l_m, l_d)
    usable = ic["valid"].to_numpy() & b["valid"].to_numpy() & ~np.isnan(age)
    complete = usable & ~np.isnan(bd)
    with np.errstate(invalid="ignore"):
        off = np.maximum(youngest - age, age - oldest)
    mismatch = (complete & (off > 0)) | (usable & ~complete & (off > 1))
    uncertain = usable & ~complete & (off == 1)
    expect = np.where(oldest == youngest, pd.Series(oldest).astype("Int64").astype(str),
                      pd.Series(youngest).astype("Int64").astype(str) + "-" + pd.Series(oldest).astype("Int64").astype(str))
    expect = pd.Series(expect, index=dm.index)

    def msg(rows: pd.DataFrame) -> pd.Series:
        return ("AGE disagrees with BRTHDAT " + _s(rows["BRTHDAT"]) + " and ICDAT " + _s(rows["ICDAT"])
                + ": completed years at consent = " + expect.loc[rows.index])
    return _concat([
        make_findings(study.studyid, dm, mismatch, "AGE", "dm.age_mismatch", "error", msg),
        make_findings(study.studyid, dm, uncertain, "AGE", "dm.age_uncertain", "warning",
                      lambda rows: msg(rows) + " (partial birth date; please confirm)"),
    ])


@cross_check("ie.criterion_missing", "ie.criterion_unknown", "ie.category_mismatch",
             "ie.criterion_unexpected", forms=("ie",))
def check_eligibility(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """CDASHIG IE: IEYN=N rows name the criterion not met (IETESTCD, IECAT) from the study's TI.

    The TI comparison is skipped, without a finding, when the study parameters have no ``[[ti]]``.
    """
    ie = forms.get("ie")
    if ie is None:
        return _NO_FINDINGS
    sid = study.studyid
    no = ie["IEYN"] == "N"
    out = [
        make_findings(sid, ie, no & ie["IETESTCD"].isna(), "IETESTCD", "ie.criterion_missing", "error",
                      "IEYN=N requires IETESTCD, the criterion not met"),
        make_findings(sid, ie, no & ie["IECAT"].isna(), "IECAT", "ie.criterion_missing", "error",
                      "IEYN=N requires IECAT (INCLUSION or EXCLUSION) of the criterion not met"),
        make_findings(sid, ie, (ie["IEYN"] == "Y") & ie["IETESTCD"].notna(), "IETESTCD",
                      "ie.criterion_unexpected", "warning",
                      "IEYN=Y (all criteria met) should have no IETESTCD"),
    ]
    ti = pd.DataFrame(study.get("ti", []) or [])
    if not ti.empty and {"ietestcd", "iecat"} <= set(ti.columns):
        cat_of = pd.Series(ti["iecat"].astype(str).to_numpy(), index=ti["ietestcd"].astype(str).to_numpy())
        cat_of = cat_of[~cat_of.index.duplicated()]
        code = ie["IETESTCD"]
        known = code.isin(cat_of.index)
        shown = ", ".join(cat_of.index[:12]) + (" ..." if len(cat_of) > 12 else "")
        out.append(make_findings(sid, ie, code.notna() & ~known, "IETESTCD", "ie.criterion_unknown", "error",
                                 f"IETESTCD is not a criterion of the study's TI; criteria: {shown}"))
        expected = code.map(cat_of)
        bad = known & ie["IECAT"].notna() & (ie["IECAT"] != expected)
        out.append(make_findings(sid, ie, bad, "IECAT", "ie.category_mismatch", "error",
                                 lambda rows: "IECAT does not match the TI category of " + _s(rows["IETESTCD"])
                                 + " (" + _s(expected.loc[rows.index]) + ")"))
    return _concat(out)


@cross_check("vs.unit_invalid", "vs.range", forms=("vs",))
def check_vital_sign_ranges(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """VSORRES within the hard limits of ``specs/rules/vs_ranges.csv`` for its test and unit."""
    vs = forms.get("vs")
    if vs is None:
        return _NO_FINDINGS
    rules = spec.rule("vs_ranges")
    key = rules["vstestcd"] + "\x1f" + rules["vsorresu"]
    lo = pd.Series(pd.to_numeric(rules["min"]).to_numpy(), index=key.to_numpy())
    hi = pd.Series(pd.to_numeric(rules["max"]).to_numpy(), index=key.to_numpy())
    limits = pd.Series((rules["min"] + "-" + rules["max"] + " " + rules["vsorresu"]).to_numpy(), index=key.to_numpy())
    listed = rules.groupby("vstestcd", sort=False)["vsorresu"].agg(", ".join)
    test_known = vs["VSTESTCD"].isin(rules["vstestcd"])
    k = _s(vs["VSTESTCD"]) + "\x1f" + _s(vs["VSORRESU"])
    unit_ok = k.isin(key)
    v = form_number_value(forms, "vs", "VSORRES")
    vlo, vhi = k.map(lo), k.map(hi)
    outside = unit_ok & ((v < vlo) | (v > vhi))
    return _concat([
        make_findings(study.studyid, vs, test_known & vs["VSORRESU"].notna() & ~unit_ok, "VSORRESU",
                      "vs.unit_invalid", "error",
                      lambda rows: "unit is not valid for VSTESTCD " + _s(rows["VSTESTCD"]) + "; allowed: "
                      + _s(rows["VSTESTCD"].map(listed))),
        make_findings(study.studyid, vs, outside, "VSORRES", "vs.range", "error",
                      lambda rows: _s(rows["VSTESTCD"]) + " " + _s(rows["VSORRES"]) + " " + _s(rows["VSORRESU"])
                      + " is outside the possible range " + _s(k.loc[rows.index].map(limits))),
    ])


@cross_check("rs.response_category", forms=("rs",))
def check_response_category(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """RSORRES is one of the study's response categories (``[response].categories``)."""
    rs = forms.get("rs")
    if rs is None:
        return _NO_FINDINGS
    cats = [str(c) for c in study.get("response", {}).get("categories", [])]
    bad = rs["RSORRES"].notna() & ~rs["RSORRES"].isin(cats)
    return make_findings(study.studyid, rs, bad, "RSORRES", "rs.response_category", "error",
                         f"RSORRES is not a response category of {study.studyid} "
                         f"({study.get('response', {}).get('criteria', '')}); allowed: {', '.join(cats)}")


@cross_check("ex.treatment_unknown", "ex.dose_unit", "ex.category_mismatch", forms=("ex",))
def check_treatments(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """EXTRT is a treatment of the study (``[[treatments]]``) with its EXCAT and dose unit."""
    ex = forms.get("ex")
    if ex is None:
        return _NO_FINDINGS
    tr = study.treatments
    if tr.empty:
        tr = pd.DataFrame(columns=["extrt", "excat", "dosu"])
    names = tr["extrt"].astype(str).tolist()
    dosu = pd.Series(tr["dosu"].astype(str).to_numpy(), index=names)
    excat = pd.Series(tr["excat"].astype(str).to_numpy(), index=names)
    known = ex["EXTRT"].isin(names)
    exp_u, exp_c = ex["EXTRT"].map(dosu), ex["EXTRT"].map(excat)
    return _concat([
        make_findings(study.studyid, ex, ex["EXTRT"].notna() & ~known, "EXTRT", "ex.treatment_unknown", "error",
                      f"EXTRT is not a treatment of {study.studyid}; treatments: {', '.join(names)}"),
        make_findings(study.studyid, ex, known & ex["EXDOSU"].notna() & (ex["EXDOSU"] != exp_u), "EXDOSU",
                      "ex.dose_unit", "error",
                      lambda rows: "EXDOSU does not match the dose unit of " + _s(rows["EXTRT"]) + " ("
                      + _s(exp_u.loc[rows.index]) + ")"),
        make_findings(study.studyid, ex, known & ex["EXCAT"].notna() & (ex["EXCAT"] != exp_c), "EXCAT",
                      "ex.category_mismatch", "error",
                      lambda rows: "EXCAT does not match the category of " + _s(rows["EXTRT"]) + " ("
                      + _s(exp_c.loc[rows.index]) + ")"),
    ])


@cross_check("ds.death_date_missing", "ds.death_after_cutoff", forms=("ds",))
def check_death(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """DSDECOD=DEATH requires DTHDAT; DTHDAT is not after the data cutoff (at known precision)."""
    ds = forms.get("ds")
    if ds is None:
        return _NO_FINDINGS
    cutoff = pd.Timestamp(study.data_cutoff)
    cut = pd.DataFrame({"year": float(cutoff.year), "month": float(cutoff.month), "day": float(cutoff.day)},
                       index=ds.index)
    dth = form_date_parts(forms, "ds", "DTHDAT", True, _max_year(study))
    return _concat([
        make_findings(study.studyid, ds, (ds["DSDECOD"] == "DEATH") & ds["DTHDAT"].isna(), "DTHDAT",
                      "ds.death_date_missing", "error", "DSDECOD=DEATH requires the date of death DTHDAT"),
        make_findings(study.studyid, ds, definitely_before(cut, dth), "DTHDAT", "ds.death_after_cutoff", "error",
                      f"DTHDAT is after the data cutoff {study.data_cutoff}"),
    ])


# ---------------------------------------------------------------------------------------
# laboratory plausibility (specs/rules/lab_plausibility.csv)
# ---------------------------------------------------------------------------------------
PLAUSIBILITY_COLUMNS = ["lbtestcd", "unit", "error_min", "error_max", "warn_min", "warn_max", "source"]


def _plausibility_limits(forms: dict[str, pd.DataFrame], spec: Spec) -> pd.DataFrame:
    """Per lab record: the result in the table's unit and the four limits (NaN when none).

    The table has one row per test in one unit; a result in another unit listed for the test in
    ``lab_units.csv`` is converted with the two ``to_si_factor`` values (raw -> SI -> table unit).
    """
    lb = forms["lb"]
    table = (spec.rule("lab_plausibility") if (spec.root / "rules" / "lab_plausibility.csv").is_file()
             else pd.DataFrame(columns=PLAUSIBILITY_COLUMNS, dtype=str))
    units = spec.rule("lab_units")
    factor = pd.Series(pd.to_numeric(units["to_si_factor"], errors="coerce").to_numpy(),
                       index=pd.MultiIndex.from_arrays([units["lbtestcd"], units["raw_unit"]]))
    code = _s(lb["LBTESTCD"])
    unit = _s(lb["LBORRESU"])
    tests = pd.factorize(code, use_na_sentinel=False)  # once for the pair and the six lookups below
    rec_f = pd.Series(_lookup_pairs(tests, unit, factor), index=lb.index)
    t = table.set_index("lbtestcd")
    tab_f = factor.reindex(pd.MultiIndex.from_arrays([t.index, t["unit"]]))
    tab_f = pd.Series(tab_f.to_numpy(), index=t.index)
    value = form_censored_value(forms, "lb", "LBORRES")
    table_unit = _map_distinct(code, t["unit"], tests)
    same_unit = unit.eq(table_unit.fillna("\x00"))
    converted = value * rec_f / _map_distinct(code, tab_f, tests)
    out = pd.DataFrame({"value": value.where(same_unit, converted), "table_unit": table_unit}, index=lb.index)
    for lim in ("error_min", "error_max", "warn_min", "warn_max"):  # four limit columns
        out[lim] = _map_distinct(code, pd.to_numeric(t[lim], errors="coerce"), tests)
    return out


def _map_distinct(keys: pd.Series, table: pd.Series, distinct: tuple | None = None) -> pd.Series:
    """``keys.map(table)``, looked up once per distinct key (a lab column repeats a few dozen
    tests a million times). ``distinct``: ``pd.factorize(keys, use_na_sentinel=False)`` when
    the caller has it already (several tables looked up by the same keys)."""
    codes, uniques = distinct if distinct is not None else pd.factorize(keys, use_na_sentinel=False)
    out = pd.Series(uniques).map(table).take(codes)
    out.index, out.name = keys.index, keys.name
    return out


def _lookup_pairs(first: tuple, second: pd.Series, table: pd.Series) -> np.ndarray:
    """``table.reindex(pd.MultiIndex.from_arrays([keys, second])).to_numpy()``, looked up once per
    distinct (key, second) pair; ``first`` is ``pd.factorize(keys, use_na_sentinel=False)`` (a lab
    extract holds a few dozen test and unit pairs in thousands of records)."""
    codes_a, uniques_a = first
    codes_b, uniques_b = pd.factorize(second, use_na_sentinel=False)
    width = max(len(uniques_b), 1)
    pair_of_row, pairs = pd.factorize(codes_a.astype(np.int64) * width + codes_b)
    keys = pd.MultiIndex.from_arrays([np.asarray(uniques_a, dtype=object)[pairs // width],
                                      np.asarray(uniques_b, dtype=object)[pairs % width]])
    return table.reindex(keys).to_numpy()[pair_of_row]


def _limits(lo: pd.Series, hi: pd.Series, unit: pd.Series) -> pd.Series:
    def num(x: pd.Series) -> pd.Series:
        return x.map(lambda v: "" if pd.isna(v) else f"{v:g}")  # over the few failing rows
    lo_t, hi_t = num(lo), num(hi)
    both = lo_t.ne("") & hi_t.ne("")
    text = ("between " + lo_t + " and " + hi_t).where(both, (">= " + lo_t).where(lo_t.ne(""), "<= " + hi_t))
    return text + (" " + _s(unit)).where(_s(unit).ne(""), "")


@cross_check("lb.result_impossible", "lb.result_implausible", forms=("lb",))
def check_lab_plausibility(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """LBORRES within the physiological limits of ``specs/rules/lab_plausibility.csv``.

    Outside ``error_min``/``error_max`` (a negative count or concentration, a value no living
    patient has) is an error; outside ``warn_min``/``warn_max`` (possible but implausible) a
    warning to confirm with the site. A censored result is judged by its limit. Tests without a
    row: numbers must still be finite (the type check) and not negative.
    """
    lb = forms.get("lb")
    if lb is None or not len(lb):
        return _NO_FINDINGS
    lim = _plausibility_limits(forms, spec)
    v = lim["value"]
    no_row = lim["error_min"].isna() & lim["error_max"].isna()
    err_lo = lim["error_min"].where(~no_row, 0.0)
    impossible = (v < err_lo) | (v > lim["error_max"])
    implausible = ~impossible & ((v < lim["warn_min"]) | (v > lim["warn_max"]))

    def msg(kind: str, lo: str, hi: str):
        def build(rows: pd.DataFrame) -> pd.Series:
            ll = lim.loc[rows.index]
            lo_v = ll[lo] if lo != "error_min" else err_lo.loc[rows.index]
            shown = ("" + _s(rows["LBORRES"]) + " " + _s(rows["LBORRESU"])).str.strip()
            conv = (" (= " + ll["value"].map(lambda x: f"{x:.6g}") + " " + _s(ll["table_unit"]) + ")").where(
                _s(rows["LBORRESU"]).ne(_s(ll["table_unit"])) & ll["table_unit"].notna(), "")
            return (_s(rows["LBTESTCD"]) + " result " + shown + conv + f" is {kind}: outside "
                    + _limits(lo_v, ll[hi], ll["table_unit"]) + " (specs/rules/lab_plausibility.csv)")
        return build
    return _concat([
        make_findings(study.studyid, lb, impossible.to_numpy(), "LBORRES", "lb.result_impossible", "error",
                      lambda rows: msg("physiologically impossible", "error_min", "error_max")(rows)
                      + "; correct it with the site"),
        make_findings(study.studyid, lb, implausible.to_numpy(), "LBORRES", "lb.result_implausible", "warning",
                      lambda rows: msg("implausible", "warn_min", "warn_max")(rows) + "; please confirm with the site"),
    ])


# ---------------------------------------------------------------------------------------
# dates against the study: data cut-off, death, infusion
# ---------------------------------------------------------------------------------------
#: date columns not compared with the data cut-off by ``date.after_cutoff`` (own check)
DATES_AFTER_CUTOFF_EXEMPT = {("ds", "DTHDAT")}
#: date columns not compared with the date of death (the death date itself)
DATES_AFTER_DEATH_EXEMPT = {("ds", "DTHDAT")}


def _death_dates(forms: dict[str, pd.DataFrame], study: Study) -> pd.DataFrame:
    """Earliest valid ds.DTHDAT per subject: date parts indexed by SUBJID and the text."""
    ds = forms.get("ds")
    cols = ["year", "month", "day", "text"]
    if ds is None or not len(ds):
        return pd.DataFrame(columns=cols)
    d = form_date_parts(forms, "ds", "DTHDAT", True, _max_year(study))
    d = d[d["valid"] & ds["SUBJID"].notna()]
    d = d.assign(SUBJID=ds.loc[d.index, "SUBJID"].to_numpy(), text=ds.loc[d.index, "DTHDAT"].to_numpy())
    d = d.sort_values(["year", "month", "day"], na_position="last", kind="mergesort").drop_duplicates("SUBJID")
    return d.set_index("SUBJID")[cols]


@cross_check("date.after_cutoff")
def check_dates_before_cutoff(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """No date of any form is after the study's data cut-off (``data_cutoff``), at known precision.

    Data collected after the cut-off do not belong to this extract (ICH E3 / the data cut-off
    defines the analysis database); ds.DTHDAT has its own check ``ds.death_after_cutoff``.
    """
    cutoff = pd.Timestamp(study.data_cutoff)
    out = []
    for form, df in forms.items():  # loop over forms and their date columns (metadata)
        if not len(df):
            continue
        cut = pd.DataFrame({"year": float(cutoff.year), "month": float(cutoff.month), "day": float(cutoff.day)},
                           index=df.index)
        for column, partial in _date_columns(spec, form):
            if (form, column) in DATES_AFTER_CUTOFF_EXEMPT:
                continue
            parts = form_date_parts(forms, form, column, partial, _max_year(study))
            bad = parts["valid"].to_numpy() & definitely_before(cut, parts)
            out.append(make_findings(study.studyid, df, bad, column, "date.after_cutoff", "error",
                                     f"{column} is after the data cut-off {study.data_cutoff} of {study.studyid}: "
                                     "data after the cut-off do not belong in this extract"))
    return _concat(out)


@cross_check("date.after_death")
def check_nothing_after_death(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """No date of any form is after the subject's death (ds.DTHDAT), at known precision.

    An assessment, event or administration dated after death is a data error (wrong subject or
    wrong date). The same day is allowed (a fatal AE ends on the day of death).
    """
    death = _death_dates(forms, study)
    if death.empty:
        return _NO_FINDINGS
    out = []
    for form, df in forms.items():  # loop over forms and their date columns (metadata)
        if not len(df):
            continue
        known = df["SUBJID"].isin(death.index).to_numpy()
        if not known.any():
            continue
        ref = death.reindex(df["SUBJID"].to_numpy())
        ref.index = df.index
        for column, partial in _date_columns(spec, form):
            if (form, column) in DATES_AFTER_DEATH_EXEMPT:
                continue
            parts = form_date_parts(forms, form, column, partial, _max_year(study))
            bad = known & parts["valid"].to_numpy() & definitely_before(ref, parts)
            out.append(make_findings(
                study.studyid, df, bad, column, "date.after_death", "error",
                lambda rows, column=column: f"{column} of subject " + _s(rows["SUBJID"]) + " is after the subject's "
                "death (ds.DTHDAT " + _s(rows["SUBJID"].map(death["text"])) + "): nothing can be dated after death"))
    return _concat(out)


@cross_check("ds.death_before_infusion", forms=("ds",))
def check_death_before_infusion(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """A death dated before the subject's first CAR-T infusion is reported for review (warning).

    Reported on the ds row with both dates; records dated after that death are errors of
    ``date.after_death`` (the infusion itself among them).
    """
    ds, ex = forms.get("ds"), forms.get("ex")
    if ds is None or ex is None or not len(ds) or not len(ex):
        return _NO_FINDINGS
    cap = _max_year(study)
    inf = ex[(ex["EXCAT"] == INFUSION_CATEGORY) & ex["SUBJID"].notna()]
    p = cdash_date_parts(inf["EXSTDAT"], partial_ok=False, max_year=cap)
    p = p[p["valid"]].assign(SUBJID=inf.loc[p[p["valid"]].index, "SUBJID"].to_numpy(),
                             text=inf.loc[p[p["valid"]].index, "EXSTDAT"].to_numpy())
    first = p.sort_values(["year", "month", "day"], kind="mergesort").drop_duplicates("SUBJID").set_index("SUBJID")
    if first.empty:
        return _NO_FINDINGS
    dth = form_date_parts(forms, "ds", "DTHDAT", True, cap)
    ref = first.reindex(ds["SUBJID"].to_numpy())
    ref.index = ds.index
    bad = dth["valid"].to_numpy() & ds["SUBJID"].isin(first.index).to_numpy() & definitely_before(dth, ref)
    return make_findings(study.studyid, ds, bad, "DTHDAT", "ds.death_before_infusion", "warning",
                         lambda rows: "subject " + _s(rows["SUBJID"]) + " died on " + _s(rows["DTHDAT"])
                         + " (ds.DTHDAT), before the first CAR-T infusion on "
                         + _s(rows["SUBJID"].map(first["text"])) + " (ex.EXSTDAT): review the death and "
                         "infusion records with the site")


# ---------------------------------------------------------------------------------------
# medical history, prior therapy lines, prior HSCT (mh, prtx, phsct)
# ---------------------------------------------------------------------------------------
@cross_check("history.after_consent", forms=("mh", "prtx", "phsct"))
def check_history_before_consent(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """History collected at screening (diagnosis, prior lines, prior HSCT) is not after the
    subject's informed consent (dm.ICDAT), at the precision the date knows: such a record
    belongs to AE/CM/PR of the study, not to the history (CDASHIG MH, CM prior medications)."""
    dm = _dm_subjects(forms)
    if dm is None:
        return _NO_FINDINGS
    cap = _max_year(study)
    ic = cdash_date_parts(dm["ICDAT"], partial_ok=False, max_year=cap)
    ic = ic[ic["valid"]].set_index(dm.loc[ic[ic["valid"]].index, "SUBJID"].to_numpy())
    out = []
    for form, column in HISTORY_DATES:  # five date columns (metadata)
        df = forms.get(form)
        if df is None or column not in df:
            continue
        parts = form_date_parts(forms, form, column, True, cap)
        ref = ic.reindex(df["SUBJID"].to_numpy())
        ref.index = df.index
        bad = df["SUBJID"].isin(ic.index).to_numpy() & definitely_before(ref, parts)
        out.append(make_findings(study.studyid, df, bad, column, "history.after_consent", "error",
                                 f"{column} is after informed consent: history collected at screening "
                                 "cannot start or end after consent (report it as an AE, CM or PR of the study)"))
    return _concat(out)


@cross_check("mh.primary_diagnosis_missing", "mh.primary_diagnosis_repeated", "mh.diagnosis_date_missing",
             "mh.occurrence_missing", "mh.ongoing_with_end", forms=("mh",))
def check_medical_history(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """Each dm subject has one PRIMARY DIAGNOSIS row with its date of diagnosis; a pre-specified
    question (MHPRESP=Y) has its answer (MHOCCUR); an ongoing condition has no end date."""
    mh, dm = forms.get("mh"), _dm_subjects(forms)
    if mh is None or dm is None:
        return _NO_FINDINGS
    pd_rows = mh["MHCAT"].eq("PRIMARY DIAGNOSIS")
    count = mh.loc[pd_rows, "SUBJID"].value_counts()
    missing = ~dm["SUBJID"].isin(count.index)
    repeated = pd_rows & mh["SUBJID"].map(count).gt(1)
    return _concat([
        make_findings(study.studyid, dm, missing.to_numpy(), "SUBJID", "mh.primary_diagnosis_missing", "error",
                      "no PRIMARY DIAGNOSIS row in mh for this subject: the disease under study must be recorded"),
        make_findings(study.studyid, mh, repeated.to_numpy(), "MHCAT", "mh.primary_diagnosis_repeated", "error",
                      "more than one PRIMARY DIAGNOSIS row for this subject"),
        make_findings(study.studyid, mh, (pd_rows & mh["MHSTDAT"].isna()).to_numpy(), "MHSTDAT",
                      "mh.diagnosis_date_missing", "error", "the primary diagnosis has no date of diagnosis"),
        make_findings(study.studyid, mh, (mh["MHPRESP"].eq("Y") & mh["MHOCCUR"].isna()).to_numpy(), "MHOCCUR",
                      "mh.occurrence_missing", "error", "a pre-specified history question (MHPRESP=Y) has no answer"),
        make_findings(study.studyid, mh, (mh["MHONGO"].eq("Y") & mh["MHENDAT"].notna()).to_numpy(), "MHENDAT",
                      "mh.ongoing_with_end", "error", "MHENDAT is given but MHONGO=Y: clear one of them"),
    ])


@cross_check("prtx.end_before_start", "prtx.line_gap", "prtx.line_overlap", forms=("prtx",))
def check_prior_lines(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """A line ends on or after its start; lines are numbered 1..n without gaps per subject; a
    line does not start before the previous line started (at the precision both dates know)."""
    pt = forms.get("prtx")
    if pt is None or pt.empty:
        return _NO_FINDINGS
    cap = _max_year(study)
    st = form_date_parts(forms, "prtx", "CMSTDAT", True, cap)
    en = form_date_parts(forms, "prtx", "CMENDAT", True, cap)
    line = form_number_value(forms, "prtx", "LINENUM", integer=True)
    n_lines = pt.groupby("SUBJID")["LINENUM"].transform("size")
    gap = line.notna() & (line > n_lines)
    order = pd.DataFrame({"s": pt["SUBJID"], "k": line}).sort_values(["s", "k"], kind="stable")
    prev_idx = pd.Series(order.index, index=order.index).groupby(order["s"]).shift(1).reindex(pt.index)
    has_prev = prev_idx.notna().to_numpy()
    prev_st = st.reindex(prev_idx.fillna(-1).astype(int).to_numpy())
    prev_st.index = pt.index
    overlap = has_prev & definitely_before(st, prev_st)
    return _concat([
        make_findings(study.studyid, pt, definitely_before(en, st), "CMENDAT", "prtx.end_before_start", "error",
                      lambda rows: "the line ends before it starts (" + _s(rows["CMSTDAT"]) + ")"),
        make_findings(study.studyid, pt, gap.to_numpy(), "LINENUM", "prtx.line_gap", "warning",
                      "line numbers of this subject are not 1..n without gaps"),
        make_findings(study.studyid, pt, overlap, "CMSTDAT", "prtx.line_overlap", "warning",
                      "this line starts before the previous line started: check the line numbers"),
    ])


@cross_check("phsct.date_missing", "phsct.date_without_transplant", "phsct.question_missing", forms=("phsct",))
def check_prior_hsct(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """PROCCUR=Y has the transplant date; PROCCUR=N has none; every dm subject answered the
    pre-specified prior-HSCT question (at least one phsct row)."""
    h, dm = forms.get("phsct"), _dm_subjects(forms)
    if h is None or dm is None:
        return _NO_FINDINGS
    return _concat([
        make_findings(study.studyid, h, (h["PROCCUR"].eq("Y") & h["PRSTDAT"].isna()).to_numpy(), "PRSTDAT",
                      "phsct.date_missing", "error", "a prior HSCT (PROCCUR=Y) needs its date"),
        make_findings(study.studyid, h, (h["PROCCUR"].eq("N") & h["PRSTDAT"].notna()).to_numpy(), "PRSTDAT",
                      "phsct.date_without_transplant", "error", "PRSTDAT is given but PROCCUR=N: clear one of them"),
        make_findings(study.studyid, dm, (~dm["SUBJID"].isin(h["SUBJID"])).to_numpy(), "SUBJID",
                      "phsct.question_missing", "warning", "no phsct row: the prior-HSCT question was not answered"),
    ])


#: product fields of a CAR-T administration on the ex form; the first two are required there
PRODUCT_REQUIRED = ("EXLOT", "EXCARTOT")
PRODUCT_FIELDS = PRODUCT_REQUIRED + ("EXVIAB", "EXTREFF")
#: EXCARTOT is in 10^6 cells, EXDOSE in cells/kg
CELLS_PER_TOTAL_UNIT = 1e6


def screening_weight(vs: pd.DataFrame | None, study: Study, spec: Spec | None = None) -> pd.Series:
    """Per SUBJID, the weight (kg) the dose was calculated on: the last one recorded at the
    screening visit (the first visit of the schedule), else the subject's first weight on the form.
    A weight that is not a number or outside the hard limits of ``vs_ranges`` (reported by
    :func:`check_vital_sign_ranges`) is not used: NaN, so that nothing is judged on it twice."""
    if vs is None or vs.empty:
        return pd.Series(dtype="float64")
    w = vs[(vs["VSTESTCD"] == "WEIGHT") & (vs["VSORRESU"] == "kg")].copy()
    w["_v"] = number_value(w["VSORRES"])
    if spec is not None:
        r = spec.rule("vs_ranges")
        r = r[(r["vstestcd"] == "WEIGHT") & (r["vsorresu"] == "kg")]
        if len(r):
            lo, hi = float(r["min"].iloc[0]), float(r["max"].iloc[0])
            w["_v"] = w["_v"].where((w["_v"] >= lo) & (w["_v"] <= hi))
    w["_scr"] = w["VISIT"].eq(_screening_visit(study) or "")
    w["_r"] = np.where(w["_scr"], w["_ROW"], -w["_ROW"])   # screening: last row; otherwise: first row
    w = w.sort_values(["SUBJID", "_scr", "_r"], kind="mergesort")
    return w.drop_duplicates("SUBJID", keep="last").set_index("SUBJID")["_v"]


def expected_total_cells(dose_per_kg: pd.Series, weight_kg: pd.Series) -> pd.Series:
    """CAR+ cells of a fraction in 10^6 cells: EXDOSE (cells/kg) x weight (kg) / 10^6."""
    return dose_per_kg * weight_kg / CELLS_PER_TOTAL_UNIT


def total_cells_consistent(recorded: pd.Series, expected: pd.Series, rel_tolerance: float) -> pd.Series:
    """|recorded - expected| <= rel_tolerance x expected (a value exactly at the tolerance passes;
    a 1e-9 relative slack absorbs binary rounding of the product). NaN on either side: not judged (True)."""
    slack = (rel_tolerance + 1e-9) * expected.abs()
    ok = (recorded - expected).abs() <= slack
    return ok | recorded.isna() | expected.isna()


@cross_check("ex.product_missing", "ex.product_unexpected", "ex.total_cells_mismatch", "ex.total_cells_no_weight",
             forms=("ex",))
def check_cell_product(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """The CAR-T cell product of each infusion fraction (study ``[cell_product]``): lot and total CAR+
    cells present on CAR-T rows and absent on lymphodepletion rows; EXCARTOT = EXDOSE x the
    screening weight (vs) / 10^6 within ``total_cells_rel_tolerance``. Every fraction is checked,
    so the fractions of a split infusion add up to the subject's total dose x weight."""
    ex = forms.get("ex")
    if ex is None or ex.empty or not set(PRODUCT_FIELDS) <= set(ex.columns):
        return _NO_FINDINGS
    sid = study.studyid
    # rows whose category and treatment agree (a mismatch is ex.category_mismatch, not judged here)
    declared = dict(zip(study.treatments["extrt"].astype(str), study.treatments["excat"].astype(str)))
    consistent = ex["EXTRT"].map(declared).eq(ex["EXCAT"])
    car = consistent & (ex["EXCAT"] == INFUSION_CATEGORY)
    other = consistent & (ex["EXCAT"] != INFUSION_CATEGORY)
    out = []
    for col in PRODUCT_REQUIRED:  # two columns
        out.append(make_findings(sid, ex, car & ex[col].isna(), col, "ex.product_missing", "error",
                                 f"{col} is required on a {INFUSION_CATEGORY} row (the infused cell product)"))
    for col in PRODUCT_FIELDS:  # four columns
        out.append(make_findings(sid, ex, other & ex[col].notna(), col, "ex.product_unexpected",
                                 "error", lambda rows, col=col: f"{col} describes the CAR-T product; this row is "
                                 + _s(rows["EXCAT"])))
    tol = float((study.get("cell_product", {}) or {}).get("total_cells_rel_tolerance", 0.01))
    vs = forms.get("vs")
    weight = ex["SUBJID"].map(screening_weight(vs, study, spec))
    has_weight_row = ex["SUBJID"].isin(set(vs.loc[vs["VSTESTCD"] == "WEIGHT", "SUBJID"])) if vs is not None \
        else pd.Series(False, index=ex.index)
    dose = form_number_value(forms, "ex", "EXDOSE")
    recorded = form_number_value(forms, "ex", "EXCARTOT")
    expected = expected_total_cells(dose, weight)
    judged = car & recorded.notna() & dose.notna()
    out.append(make_findings(sid, ex, judged & ~has_weight_row, "EXCARTOT", "ex.total_cells_no_weight", "error",
                             "no screening weight (vs WEIGHT in kg) to check EXCARTOT against EXDOSE x weight"))
    bad = judged & weight.notna() & ~total_cells_consistent(recorded, expected, tol)
    out.append(make_findings(
        sid, ex, bad, "EXCARTOT", "ex.total_cells_mismatch", "error",
        lambda r: ("EXCARTOT " + _s(r["EXCARTOT"]) + " x 10^6 cells differs from EXDOSE " + _s(r["EXDOSE"])
                   + " cells/kg x weight " + weight[r.index].round(1).astype(str) + " kg = "
                   + expected[r.index].round(4).astype(str) + " x 10^6 by more than "
                   + f"{tol:.1%} ([cell_product] total_cells_rel_tolerance)")))
    return _concat(out)
