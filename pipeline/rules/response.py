"""Disease response derived from the data, best overall response, ORR and event dates.

The criteria are data: ``specs/rules/response_leukemia.csv``, ``response_aplastic_anemia.csv``
and ``response_autoimmune.csv`` hold one row per condition::

    criteria, category, priority, group, feature, operator, value, if_missing, unit, source

``criteria`` is the study's ``[response].criteria`` text. A *category* (CR, CRh, ...) is met
when any of its *groups* is met; a group is met when all of its conditions are met (a
disjunction of conjunctions). A condition compares one *feature* of an assessment (a column
computed by the domain module: marrow blasts, the nearest ANC, the change from baseline ...)
with ``value`` using ``operator`` (``lt le gt ge eq ne in notin``; ``in``/``notin`` take a
``|``-separated list). Numeric features are compared after rounding to 9 decimals, so a count
converted to SI units compares exactly at its threshold (1000/mm3 x 0.001 = 1.0).

Missing data use three-valued logic. ``if_missing`` says what a condition is when its feature
is missing: ``NE`` (unknown), ``TRUE`` or ``FALSE``. A group is true when all its conditions
are true, false when one is false, else unknown; a category is true when one group is true,
false when all are false, else unknown. Categories are tried in ``priority`` order (ascending);
the response is the first category that is true, *unless a category before it is unknown*,
in which case the response is NE (the data cannot tell the better category from the worse).
No category true: NE. Categories not listed in the study's ``[response].categories`` are
skipped (e.g. CRh where the study does not use it).

``specs/rules/response_order.csv`` ranks the categories for the best overall response
(``rank``; lower is better), says which are evaluable, which are a remission (a later return
of disease is a RELAPSE) and which are a progression event, and the tie rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.spec import Spec

RULE_COLUMNS = ["criteria", "category", "priority", "group", "feature", "operator", "value", "if_missing", "unit", "source"]
ORDER_COLUMNS = ["category", "rank", "evaluable", "remission", "progression", "tie_break", "source"]
FAMILY_TABLES = {
    "leukemia": "response_leukemia",
    "aplastic_anemia": "response_aplastic_anemia",
    "autoimmune": "response_autoimmune",
}
OPERATORS = {
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal,
}
SET_OPERATORS = ("in", "notin")
MISSING_RULES = ("NE", "TRUE", "FALSE")
NE = "NE"
DECIMALS = 9
#: feature a rule may use to require an earlier remission (set by :func:`derive_response`)
PRIOR_REMISSION = "PRIOR_REMISSION"


# ---------------------------------------------------------------------------------------
# rule tables
# ---------------------------------------------------------------------------------------
def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def validate_rules(rules: pd.DataFrame, name: str) -> pd.DataFrame:
    """Check a response rule table; return it with ``priority`` and ``group`` as int.

    Raises :class:`ConfigError` naming the table and the first bad rows (unknown operator or
    missing-data rule, non-numeric priority or group, an order comparison with a text value,
    an empty source).
    """
    missing = [c for c in RULE_COLUMNS if c not in rules.columns]
    if missing:
        raise ConfigError(f"rule table {name}: missing column(s) {', '.join(missing)}")
    r = rules.copy()
    problems = []
    bad_op = ~r["operator"].isin(list(OPERATORS) + list(SET_OPERATORS))
    problems += [f"row {i + 2}: unknown operator {v!r}" for i, v in r.loc[bad_op, "operator"].items()]
    bad_miss = ~r["if_missing"].isin(MISSING_RULES)
    problems += [f"row {i + 2}: if_missing {v!r} is not one of {', '.join(MISSING_RULES)}"
                 for i, v in r.loc[bad_miss, "if_missing"].items()]
    for col in ("priority", "group"):
        bad = pd.to_numeric(r[col], errors="coerce").isna()
        problems += [f"row {i + 2}: {col} {v!r} is not a number" for i, v in r.loc[bad, col].items()]
    ordered = r["operator"].isin(["lt", "le", "gt", "ge"])
    not_num = ordered & pd.to_numeric(r["value"], errors="coerce").isna()
    problems += [f"row {i + 2}: {r.at[i, 'operator']} needs a number, got {r.at[i, 'value']!r}" for i in r.index[not_num]]
    no_source = r["source"].astype(str).str.strip().eq("")
    problems += [f"row {i + 2}: empty source" for i in r.index[no_source]]
    if problems:
        raise ConfigError(f"rule table {name}: " + "; ".join(problems[:5]))
    r["priority"] = pd.to_numeric(r["priority"]).astype(int)
    r["group"] = pd.to_numeric(r["group"]).astype(int)
    return r


def response_rules(spec: Spec, family: str, criteria: str) -> pd.DataFrame:
    """The rule rows of one criteria set (the study's ``[response].criteria``) of a family."""
    if family not in FAMILY_TABLES:
        raise ConfigError(f"response family {family!r} has no rule table (known: {', '.join(FAMILY_TABLES)})")
    name = FAMILY_TABLES[family]
    rules = validate_rules(spec.rule(name), name)
    rows = rules[rules["criteria"] == criteria]
    if rows.empty:
        known = "; ".join(sorted(set(rules["criteria"])))
        raise ConfigError(f"criteria {criteria!r} has no rows in specs/rules/{name}.csv (known: {known})")
    return rows.reset_index(drop=True)


def response_order(spec: Spec) -> pd.DataFrame:
    """``specs/rules/response_order.csv`` with ``rank`` as float (NaN = not ranked) and the
    Y/N columns as bool."""
    o = spec.rule("response_order")
    missing = [c for c in ORDER_COLUMNS if c not in o.columns]
    if missing:
        raise ConfigError(f"rule table response_order: missing column(s) {', '.join(missing)}")
    out = o.copy()
    out["rank"] = pd.to_numeric(out["rank"], errors="coerce")
    for col in ("evaluable", "remission", "progression"):
        out[col] = out[col].str.strip().str.upper().eq("Y")
    if (out["evaluable"] & out["rank"].isna()).any():
        raise ConfigError("rule table response_order: an evaluable category has no rank")
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# the three-valued evaluator
# ---------------------------------------------------------------------------------------
class FeatureArrays:
    """Each feature column converted once: stripped text and (for numeric comparisons) floats
    rounded to :data:`DECIMALS`, as numpy arrays."""

    def __init__(self, features: pd.DataFrame):
        self.features = features
        self._text: dict[str, np.ndarray] = {}
        self._num: dict[str, np.ndarray] = {}

    def text(self, name: str) -> np.ndarray:
        if name not in self._text:
            v = self.features[name]
            self._text[name] = v.astype("object").where(v.notna(), "").astype(str).str.strip().to_numpy(dtype=str)
        return self._text[name]

    def num(self, name: str) -> np.ndarray:
        if name not in self._num:
            v = pd.to_numeric(self.features[name], errors="coerce").astype("float64")
            self._num[name] = np.round(v.to_numpy(), DECIMALS)
        return self._num[name]


def condition_state(arrays: FeatureArrays, feature: str, operator: str, value: str,
                    if_missing: str) -> tuple[np.ndarray, np.ndarray]:
    """``(true, unknown)`` boolean arrays of one condition over a feature column.

    A numeric ``value`` compares numerically (values that are not numbers count as missing);
    otherwise the comparison is on stripped text. ``in``/``notin`` test membership of a
    ``|``-separated list.
    """
    if operator in SET_OPERATORS:
        text = arrays.text(feature)
        missing = text == ""
        hit = np.isin(text, [v.strip() for v in str(value).split("|")])
        result = hit if operator == "in" else ~hit
    else:
        const = _as_float(value)
        if const is not None:
            num = arrays.num(feature)
            missing = np.isnan(num)
            with np.errstate(invalid="ignore"):
                result = OPERATORS[operator](num, round(const, DECIMALS))
        else:
            text = arrays.text(feature)
            missing = text == ""
            result = OPERATORS[operator](text, str(value).strip())
    result = np.asarray(result, dtype=bool) & ~missing
    unknown = missing & (if_missing == "NE")
    if if_missing == "TRUE":
        result = result | missing
    return result, unknown


def category_states(features: pd.DataFrame, rules: pd.DataFrame) -> dict[str, dict]:
    """Per category: ``true``/``unknown`` arrays and, per feature, where its absence left a
    condition unknown (``missing``: feature -> bool array)."""
    n = len(features)
    arrays = FeatureArrays(features)
    grouped: dict[str, dict[int, list[dict]]] = {}
    for r in rules.to_dict("records"):  # rule rows (metadata), not records
        if r["feature"] not in features.columns:
            raise ConfigError(f"response rule uses feature {r['feature']!r} which the module does not compute "
                              f"(criteria {r['criteria']!r}, category {r['category']})")
        grouped.setdefault(str(r["category"]), {}).setdefault(int(r["group"]), []).append(r)
    out: dict[str, dict] = {}
    for category, groups in grouped.items():  # a handful of categories, vectorised over records
        cat_true = np.zeros(n, dtype=bool)
        cat_false = np.ones(n, dtype=bool)
        missing: dict[str, np.ndarray] = {}
        for g in sorted(groups):
            g_true = np.ones(n, dtype=bool)
            g_false = np.zeros(n, dtype=bool)
            for r in groups[g]:
                t, u = condition_state(arrays, r["feature"], r["operator"], r["value"], r["if_missing"])
                g_true &= t
                g_false |= ~t & ~u
                if u.any():
                    missing[r["feature"]] = missing.get(r["feature"], np.zeros(n, dtype=bool)) | u
            cat_true |= g_true
            cat_false &= g_false
        out[category] = {"true": cat_true, "unknown": ~cat_true & ~cat_false, "missing": missing}
    return out


def evaluate_criteria(features: pd.DataFrame, rules: pd.DataFrame, categories: Iterable[str]) -> pd.DataFrame:
    """Response of each assessment (row of ``features``) under ``rules``.

    Returns columns ``response`` (a category or NE) and ``basis`` (``"<CAT> met"``, or why
    the response is NE: the first undetermined category and the missing features).
    """
    allowed = set(categories)
    rules = rules[rules["category"].isin(allowed)]
    n = len(features)
    states = category_states(features.reset_index(drop=True), rules)
    priority = rules.groupby("category", sort=False)["priority"].min().sort_values(kind="mergesort")
    response = np.full(n, "", dtype=object)
    basis = np.full(n, "", dtype=object)
    blocked = np.zeros(n, dtype=bool)
    for category in priority.index:  # categories in priority order
        st = states[category]
        open_ = (response == "") & ~blocked
        hit = open_ & st["true"]
        response[hit] = category
        basis[hit] = f"{category} met"
        block = open_ & st["unknown"]
        if block.any():
            why = np.full(n, "", dtype=object)
            for feat, u in st["missing"].items():  # features of this category, vectorised over records
                add = block & u
                why[add] = np.where(why[add] == "", feat, why[add].astype(str) + ", " + feat)
            basis[block] = [f"NE: {category} undetermined, missing {w}" for w in why[block]]
        blocked |= block
    none = response == ""
    response[none] = NE
    basis[none & (basis == "")] = "NE: no category met"
    return pd.DataFrame({"response": response, "basis": basis}, index=features.index)


def derive_response(features: pd.DataFrame, rules: pd.DataFrame, categories: Sequence[str],
                    remission: Iterable[str]) -> pd.DataFrame:
    """Responses in time order per subject, with ``PRIOR_REMISSION`` set from the derived history.

    ``features`` has ``USUBJID`` and ``_date`` (datetime64). PRIOR_REMISSION is ``Y`` on an
    assessment when an earlier assessment of the subject was derived as a remission category
    (response_order.csv ``remission``: CR, CRh, CRi), so that a return of disease is a RELAPSE
    (ELN 2017 hematologic relapse). Remission never depends on PRIOR_REMISSION (the relapse
    conditions contradict remission), so two passes give the sequential result.
    Returns ``response``, ``basis`` and ``PRIOR_REMISSION`` aligned to ``features``.
    """
    rem = set(remission)
    f = features.copy()
    f[PRIOR_REMISSION] = "N"
    first = evaluate_criteria(f, rules, categories)
    is_rem = first["response"].isin(rem).astype(int)
    order = f.sort_values(["USUBJID", "_date"], kind="mergesort").index
    cum = is_rem.loc[order].groupby(f.loc[order, "USUBJID"], sort=False).cumsum()
    prior = (cum - is_rem.loc[order]).gt(0).reindex(f.index)
    f[PRIOR_REMISSION] = np.where(prior, "Y", "N")
    out = evaluate_criteria(f, rules, categories)
    out[PRIOR_REMISSION] = f[PRIOR_REMISSION]
    return out


def protocol_categories(derived: pd.DataFrame, category_map: dict[str, str], categories: Sequence[str]
                        ) -> pd.DataFrame:
    """The derived response in the protocol's categories: a finer criteria category that the
    protocol does not name maps into its coarser one (``[response].category_map`` of the study
    TOML, e.g. ``{ CRh = "CRi" }`` when the endpoint is CR/CRi: CRh, platelets >50 and ANC >0.5
    x10^9/L with blasts <5%, also meets CRi, CR with residual cytopenia, ELN 2017 Table 5).

    ``response`` is replaced, ``basis`` keeps the criteria category met and says it was mapped
    (``"CRh met; CRi per protocol category map"``). Every map target must be a study category.
    """
    if not category_map:
        return derived
    bad = sorted(set(category_map.values()) - set(categories))
    if bad:
        raise ConfigError(f"[response].category_map maps into {', '.join(bad)}, not in [response].categories")
    out = derived.copy()
    finer = out["response"].map(category_map)
    hit = finer.notna().to_numpy()
    out.loc[hit, "basis"] = (out.loc[hit, "basis"].astype(str) + "; " + finer[hit].astype(str)
                             + " per protocol category map")
    out.loc[hit, "response"] = finer[hit]
    return out


# ---------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------
def nearest_in_window(anchors: pd.DataFrame, results: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """The result nearest each anchor date within +/- ``window_days`` (whole days).

    ``anchors``: ``USUBJID``, ``_date`` (datetime64, NaT allowed); ``results``: ``USUBJID``,
    ``_date``, ``value``. Returns, aligned to ``anchors``, ``value``, ``date`` (the result's
    datetime) and ``days`` (result date minus anchor date). A result exactly ``window_days``
    away counts; one further away does not. Ties (one before, one after, same distance): the
    earlier result. Several results on the same date: the last one given.
    """
    a = anchors[["USUBJID", "_date"]].copy()
    a["_key"] = np.arange(len(a))
    a["_date"] = pd.to_datetime(a["_date"]).dt.normalize().astype("datetime64[ns]")
    r = results[["USUBJID", "_date", "value"]].dropna(subset=["_date"]).copy()
    r["_date"] = pd.to_datetime(r["_date"]).dt.normalize().astype("datetime64[ns]")
    r = r.dropna(subset=["value"]).drop_duplicates(["USUBJID", "_date"], keep="last")
    r["_rdate"] = r["_date"]
    a["USUBJID"] = a["USUBJID"].astype(str).astype("object")      # merge_asof needs one key dtype
    r["USUBJID"] = r["USUBJID"].astype(str).astype("object")
    out = pd.DataFrame({"value": np.nan, "date": pd.NaT, "days": np.nan}, index=a.index)
    valid = a[a["_date"].notna()].sort_values("_date", kind="mergesort")
    r = r.sort_values("_date", kind="mergesort")
    if valid.empty or r.empty:
        return out.set_axis(anchors.index)
    tol = pd.Timedelta(days=int(window_days))
    picks = []
    for direction in ("backward", "forward"):
        m = pd.merge_asof(valid, r, on="_date", by="USUBJID", direction=direction, tolerance=tol,
                          allow_exact_matches=True)
        m["_dist"] = (m["_rdate"] - m["_date"]).dt.days.abs()
        picks.append(m.set_index("_key"))
    back, fwd = picks[0].reindex(a["_key"]), picks[1].reindex(a["_key"])
    bd, fd = back["_dist"].to_numpy(dtype="float64"), fwd["_dist"].to_numpy(dtype="float64")
    use_fwd = ~np.isnan(fd) & (np.isnan(bd) | (fd < bd))
    value = np.where(use_fwd, fwd["value"].to_numpy(dtype="float64"), back["value"].to_numpy(dtype="float64"))
    rdate = pd.to_datetime(np.where(use_fwd, fwd["_rdate"].to_numpy(), back["_rdate"].to_numpy()))
    out = pd.DataFrame({
        "value": value,
        "date": rdate,
        "days": (rdate - pd.to_datetime(a["_date"].to_numpy())).days.astype("float64"),
    }, index=anchors.index)
    return out


def change_from_baseline(value: pd.Series, baseline: pd.Series) -> pd.DataFrame:
    """Absolute (``achg``) and relative (``rchg``, %) change from baseline; relative change is
    missing when the baseline is 0 or missing."""
    v = pd.to_numeric(value, errors="coerce").astype("float64")
    b = pd.to_numeric(baseline, errors="coerce").astype("float64")
    achg = v - b
    rchg = (achg / b.where(b != 0)) * 100.0
    return pd.DataFrame({"achg": achg, "rchg": rchg}, index=value.index)


# ---------------------------------------------------------------------------------------
# best overall response, timepoint response, ORR
# ---------------------------------------------------------------------------------------
def protocol_day(dy: pd.Series) -> pd.Series:
    """Protocol day (infusion = day 0) of a study day (SDTM: infusion = day 1, no day 0)."""
    d = pd.to_numeric(dy, errors="coerce").astype("float64")
    return d.where(d < 1, d - 1)


def best_overall_response(resp: pd.DataFrame, order: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Best overall response per subject and evaluator within ``window_days`` after infusion.

    ``resp``: ``USUBJID``, ``RSEVAL``, ``RSDTC``, ``RSDY``, ``response``. Assessments on
    protocol days 1..window_days count (issue 6: BOR within the study's window; the infusion
    day is not a response assessment). The best is the lowest ``rank`` of response_order.csv
    (CR > CRh > CRi > MLFS > APLASTIC MARROW > PR > SD/NR > PD/RELAPSE); NE and categories
    without a rank are not evaluable. Ties (several assessments with the best rank): the
    earliest gives the category and date. No evaluable assessment: BOR = NE without a date.
    Returns ``USUBJID, RSEVAL, BOR, RSDTC, RSDY, n_assessments, n_evaluable``.
    """
    cols = ["USUBJID", "RSEVAL", "BOR", "RSDTC", "RSDY", "n_assessments", "n_evaluable"]
    if resp.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    rank = dict(zip(order["category"], order["rank"]))
    evaluable = set(order.loc[order["evaluable"], "category"])
    pday = protocol_day(resp["RSDY"])
    inwin = resp[(pday >= 1) & (pday <= window_days)].copy()
    inwin["_rank"] = inwin["response"].map(rank).where(inwin["response"].isin(evaluable))
    inwin["_date"] = pd.to_datetime(inwin["RSDTC"].astype(str).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    keys = ["USUBJID", "RSEVAL"]
    by = inwin.groupby(keys, sort=True)  # (size and count, not a named agg: ~3x less per call)
    counts = pd.DataFrame({"n_assessments": by.size(), "n_evaluable": by["_rank"].count()}).reset_index()
    ev = inwin[inwin["_rank"].notna()].sort_values(keys + ["_rank", "_date", "RSDTC"], kind="mergesort")
    best = ev.drop_duplicates(keys, keep="first")[keys + ["response", "RSDTC", "RSDY"]].rename(columns={"response": "BOR"})
    out = counts.merge(best, on=keys, how="left")
    out["BOR"] = out["BOR"].fillna(NE)
    out["RSDTC"] = out["RSDTC"].fillna("")
    out["RSDY"] = pd.to_numeric(out["RSDY"], errors="coerce").astype("float64")
    for c in ("n_assessments", "n_evaluable"):
        out[c] = out[c].astype("int64")
    return out[cols].reset_index(drop=True)


def response_at_timepoint(resp: pd.DataFrame, timepoint_day: int, window_days: int) -> pd.DataFrame:
    """Per subject and evaluator, the assessment nearest protocol day ``timepoint_day`` within
    +/- ``window_days`` (ties: the earlier). Returns ``USUBJID, RSEVAL, response, RSDTC, RSDY``."""
    pday = protocol_day(resp["RSDY"])
    dist = (pday - timepoint_day).abs()
    r = resp.assign(_dist=dist, _pday=pday)
    r = r[(r["_pday"] >= 1) & (r["_dist"] <= window_days)]
    r = r.sort_values(["USUBJID", "RSEVAL", "_dist", "_pday"], kind="mergesort")
    return r.drop_duplicates(["USUBJID", "RSEVAL"], keep="first")[["USUBJID", "RSEVAL", "response", "RSDTC", "RSDY"]]


def clopper_pearson(x: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided 1-alpha confidence interval of a proportion x/n:
    lower = Beta(alpha/2; x, n-x+1), upper = Beta(1-alpha/2; x+1, n-x); lower = 0 when x = 0,
    upper = 1 when x = n (Clopper CJ, Pearson ES. Biometrika 1934;26:404-413)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= x <= n:
        raise ValueError(f"responders {x} outside 0..{n}")
    # the beta quantile is the inverse regularised incomplete beta function, which is what
    # scipy.stats.beta.ppf evaluates; scipy.special is imported here, and not scipy.stats at
    # module level, because scipy.stats costs about 1 s of start-up for this one quantile
    from scipy.special import betaincinv

    lower = 0.0 if x == 0 else float(betaincinv(x, n - x + 1, alpha / 2))
    upper = 1.0 if x == n else float(betaincinv(x + 1, n - x, 1 - alpha / 2))
    return lower, upper


ORR_COLUMNS = ["STUDYID", "RSEVAL", "primary", "label", "timepoint_day", "window_days", "categories",
               "denominator", "n_responders", "n_evaluable", "n_assessed", "orr_pct", "ci_lower_pct",
               "ci_upper_pct", "ci_method"]


def objective_response_rate(resp: pd.DataFrame, treated: pd.Series, categories: Sequence[str], timepoint_day: int,
                            window_days: int, evaluators: Sequence[str], studyid: str, label: str,
                            denominator: str, primary: bool = True, alpha: float = 0.05) -> pd.DataFrame:
    """ORR at a protocol timepoint, one row per evaluator, with the exact 95% CI.

    Responder: the subject's assessment at the timepoint (:func:`response_at_timepoint`) is in
    ``categories``. N = ``treated`` (every treated subject; no assessment in the window, or NE,
    counts as a non-responder). Percentages rounded to 1 decimal.
    """
    at = response_at_timepoint(resp[resp["USUBJID"].isin(set(treated))], timepoint_day, window_days)
    n = int(pd.Series(treated).nunique())
    rows = []
    for ev in evaluators:  # two evaluators
        a = at[at["RSEVAL"] == ev]
        x = int(a["response"].isin(set(categories)).sum())
        lo, hi = clopper_pearson(x, n, alpha)
        rows.append({
            "STUDYID": studyid, "RSEVAL": ev, "primary": "Y" if primary else "N", "label": label,
            "timepoint_day": int(timepoint_day), "window_days": int(window_days),
            "categories": "|".join(categories), "denominator": denominator, "n_responders": x,
            "n_evaluable": n, "n_assessed": int(len(a)),
            "orr_pct": round(100.0 * x / n, 1) if n else float("nan"),
            "ci_lower_pct": round(100.0 * lo, 1), "ci_upper_pct": round(100.0 * hi, 1),
            "ci_method": f"Clopper-Pearson exact {int(round(100 * (1 - alpha)))}%",
        })
    return pd.DataFrame(rows, columns=ORR_COLUMNS)


# ---------------------------------------------------------------------------------------
# event dates
# ---------------------------------------------------------------------------------------
EVENT_COLUMNS = ["USUBJID", "RSEVAL", "RFSTDTC", "first_response_date", "first_response", "progression_date",
                 "progression", "DTHDTC", "last_known_alive_date"]


def event_dates(resp: pd.DataFrame, subjects: pd.DataFrame, response_categories: Sequence[str],
                order: pd.DataFrame, last_alive: pd.Series, evaluators: Sequence[str]) -> pd.DataFrame:
    """Dates for duration of remission, PFS and OS, per subject and evaluator (no analysis).

    - first_response_date: first post-infusion assessment whose response is in
      ``response_categories`` (the study's ORR categories); first_response its category;
    - progression_date: first post-infusion assessment that is a progression event
      (response_order.csv ``progression``: PD, RELAPSE); progression its category;
    - DTHDTC: DM.DTHDTC; last_known_alive_date: ``last_alive`` (index USUBJID).
    ``subjects``: ``USUBJID``, ``RFSTDTC``, ``DTHDTC`` of the treated subjects.
    """
    prog = set(order.loc[order["progression"], "category"])
    r = resp[protocol_day(resp["RSDY"]) >= 1].copy()
    r["_date"] = r["RSDTC"].astype(str).str.slice(0, 10)
    r = r.sort_values(["USUBJID", "RSEVAL", "_date"], kind="mergesort")
    keys = ["USUBJID", "RSEVAL"]
    first = r[r["response"].isin(set(response_categories))].drop_duplicates(keys)
    first = first[keys + ["_date", "response"]].rename(columns={"_date": "first_response_date",
                                                              "response": "first_response"})
    pd_ = r[r["response"].isin(prog)].drop_duplicates(keys)
    pd_ = pd_[keys + ["_date", "response"]].rename(columns={"_date": "progression_date", "response": "progression"})
    grid = subjects[["USUBJID", "RFSTDTC", "DTHDTC"]].merge(pd.DataFrame({"RSEVAL": list(evaluators)}), how="cross")
    out = grid.merge(first, on=keys, how="left").merge(pd_, on=keys, how="left")
    out["last_known_alive_date"] = out["USUBJID"].map(last_alive)
    out = out.fillna("")
    return out.sort_values(keys, kind="mergesort")[EVENT_COLUMNS].reset_index(drop=True)


def last_known_alive(dated: pd.DataFrame, death: pd.Series) -> pd.Series:
    """Latest complete date per subject among ``dated`` (``USUBJID``, ``date`` as ISO text),
    not later than the subject's death date (``death``, index USUBJID, ISO text)."""
    d = dated.assign(_d=pd.to_datetime(dated["date"].astype(str).str.slice(0, 10), format="%Y-%m-%d", errors="coerce"))
    d = d.dropna(subset=["_d"])
    dth = pd.to_datetime(d["USUBJID"].map(death).fillna("").astype(str).str.slice(0, 10), format="%Y-%m-%d",
                         errors="coerce")
    d = d[dth.isna() | (d["_d"] <= dth)]
    latest = d.groupby("USUBJID", sort=True)["_d"].max()
    return latest.dt.strftime("%Y-%m-%d")


# ---------------------------------------------------------------------------------------
# criteria inputs read from CM (the glucocorticoid dose of the autoimmune criteria)
# ---------------------------------------------------------------------------------------
def _dtc_bounds(dtc: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Earliest and latest day an ISO 8601 date (possibly partial: YYYY or YYYY-MM) can be;
    NaT for an empty one."""
    d = dtc.astype("object").where(dtc.notna(), "").astype(str).str.slice(0, 10)
    full = d.str.len() == 10
    month = d.str.len() == 7
    year = d.str.len() == 4
    lo_txt = d.where(full, (d + "-01").where(month, (d + "-01-01").where(year, "")))
    lo = pd.to_datetime(lo_txt.where(lo_txt.ne(""), None), errors="coerce", format="%Y-%m-%d")
    hi = lo.where(full, np.nan)
    hi = hi.where(~month, lo + pd.offsets.MonthEnd(0))
    hi = hi.where(~year, lo + pd.offsets.YearEnd(0))
    return lo, pd.to_datetime(hi)


def cm_dose_features(spec: Spec) -> pd.DataFrame:
    """``specs/rules/cm_dose_features.csv``: feature, cmcat, drug_class, unit, source."""
    t = spec.rule("cm_dose_features")
    need = {"feature", "cmcat", "drug_class", "unit", "source"}
    if not need <= set(t.columns):
        raise ConfigError(f"cm_dose_features.csv needs columns {', '.join(sorted(need))}")
    return t


def cm_daily_dose(points: pd.DataFrame, cm: pd.DataFrame | None, cmcat: str, drug_class: str,
                  classes: pd.DataFrame, frequency: pd.DataFrame) -> pd.Series:
    """Daily dose (in the drug class's reference drug, e.g. mg/day prednisone equivalent) on
    each ``points`` row (``USUBJID``, ``_date``): the sum, over the subject's CM records of
    category ``cmcat`` whose CMDECOD is of ``drug_class`` (``cm_drug_classes.csv``) and whose
    start-to-end range covers the date, of CMDOSE x administrations per day of CMDOSFRQ
    (``cm_frequency.csv``) x the drug's equivalence factor.

    Coverage counts the first and the last day of a record (CMSTDTC <= date <= CMENDTC); an
    ongoing record (no CMENDTC) covers every later date; a partial start covers from the
    earliest day it can be, a partial end up to the latest. No covering record: 0. A covering
    record with no dose, an unknown frequency or a drug without a factor: NaN (unknown).
    Indexed like ``points``.
    """
    out = pd.Series(0.0, index=points.index)
    if cm is None or cm.empty or points.empty:
        return out
    txt = lambda s: s.astype("object").where(s.notna(), "").astype(str).str.strip()
    cls = classes[classes["drug_class"] == drug_class]
    factor = pd.to_numeric(pd.Series(cls["prednisone_equivalent_per_mg"].to_numpy(), index=cls["cmdecod"].to_numpy()),
                           errors="coerce")
    per_day = pd.to_numeric(pd.Series(frequency["per_day"].to_numpy(), index=frequency["cmdosfrq"].to_numpy()),
                            errors="coerce")
    c = cm[txt(cm["CMCAT"]).eq(cmcat) & txt(cm["CMDECOD"]).isin(set(cls["cmdecod"]))]
    if c.empty:
        return out
    lo, _ = _dtc_bounds(txt(c["CMSTDTC"]))
    _, hi = _dtc_bounds(txt(c["CMENDTC"]))
    dose = (pd.to_numeric(c["CMDOSE"], errors="coerce") * txt(c["CMDOSFRQ"]).map(per_day)
            * txt(c["CMDECOD"]).map(factor))
    rec = pd.DataFrame({"USUBJID": txt(c["USUBJID"]).to_numpy(), "lo": lo.to_numpy(), "hi": hi.to_numpy(),
                        "dose": dose.to_numpy()})
    p = pd.DataFrame({"USUBJID": points["USUBJID"].to_numpy(), "_date": pd.to_datetime(points["_date"]).to_numpy(),
                      "_k": np.arange(len(points))})
    m = p.merge(rec, on="USUBJID")
    cover = (m["lo"] <= m["_date"]) & (m["hi"].isna() | (m["_date"] <= m["hi"])) & m["lo"].notna()
    m = m[cover]
    total = m.groupby("_k")["dose"].sum(min_count=1)
    unknown = m["dose"].isna().groupby(m["_k"]).any()
    total[unknown.reindex(total.index, fill_value=False).to_numpy()] = np.nan
    vals = out.to_numpy().copy()
    vals[total.index.to_numpy()] = total.to_numpy()
    return pd.Series(vals, index=points.index)
