"""Eligibility laboratory thresholds checked against screening labs.

The thresholds are the study's ``[[eligibility_labs]]`` (``specs/studies/<STUDYID>.toml``):
``criterion`` (the TI.IETESTCD it belongs to), ``lbtestcd``, ``op`` (<, <=, >, >=), ``value``,
``basis`` (``SI``: an absolute value in the test's standard unit; ``ULN``: a multiple of the
upper limit of normal of the screening record), ``text`` and optionally ``group`` and
``min_met`` ("at least two of ..." in the SAA study: the group passes when at least
``min_met`` of its rows are met).

The screening value of a test is the last record with a result at the screening visit (the
first visit of the schedule); a test not done at that visit takes the last result of the
screening epoch (the epoch of the study's first element, from informed consent to the first
lymphodepleting dose).

Each row's result is three-valued, so that a censored result is never over-read:
``MET`` when the value certainly satisfies the threshold (``<0.5`` satisfies ``< 0.5``),
``NOT MET`` when it certainly does not, ``INDETERMINATE`` when a censored value straddles the
threshold (``<1.0`` against ``< 0.5``), ``MISSING`` when there is no screening value (or no
ULN for a ULN-based threshold, or no derived value, e.g. CrCl of a child). A criterion is
``FAIL`` when any of its rows (or groups) certainly fails, ``PASS`` when all pass, else
``NOT EVALUABLE``. Equality uses a relative tolerance of 1e-9 (1.5 x ULN exactly is ``<= 1.5
x ULN``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.dates import dtc_datetime
from pipeline.errors import ConfigError

OPS = ("<", "<=", ">", ">=")
REL_TOL = 1e-9
REPORT_COLUMNS = ["STUDYID", "USUBJID", "IETESTCD", "group", "min_met", "LBTESTCD", "LBTEST", "criterion_text",
                  "op", "threshold", "basis", "threshold_si", "LBDTC", "LBSTRESC", "LBSTRESU", "LBSTNRHI",
                  "row_result", "group_met", "group_result", "criterion_result", "note"]


def load_thresholds(study_table: pd.DataFrame, studyid: str) -> pd.DataFrame:
    """Check the study's ``[[eligibility_labs]]`` table (ConfigError on a bad row)."""
    t = study_table.copy()
    if t.empty:
        return pd.DataFrame(columns=["criterion", "group", "min_met", "lbtestcd", "op", "value", "basis", "text"])
    for c in ("group", "min_met", "text"):
        if c not in t:
            t[c] = np.nan
    problems = []
    for c in ("criterion", "lbtestcd", "op", "value", "basis"):
        if c not in t:
            problems.append(f"eligibility_labs lacks '{c}'")
    if problems:
        raise ConfigError(f"study {studyid}: " + "; ".join(problems))
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    bad = t[~t["op"].isin(OPS) | ~t["basis"].isin(["SI", "ULN"]) | t["value"].isna()]
    problems += [f"eligibility_labs row {i + 1}: op must be one of {', '.join(OPS)}, basis SI or ULN, value a number"
                 for i in bad.index]
    grouped = t["group"].notna() & t["group"].astype(str).ne("")
    t["group"] = t["group"].where(grouped, "").astype(str)
    t["min_met"] = pd.to_numeric(t["min_met"], errors="coerce")
    bad = t[grouped & ~(t["min_met"] >= 1)]
    problems += [f"eligibility_labs row {i + 1}: group {g!r} needs min_met >= 1" for i, g in bad["group"].items()]
    if problems:
        raise ConfigError(f"study {studyid}: " + "; ".join(problems))
    t["text"] = t["text"].where(t["text"].notna(), "").astype(str)
    t["order"] = np.arange(len(t))
    return t.reset_index(drop=True)


def screening_values(lb: pd.DataFrame, screening_epoch: str, screening_visitnum: float) -> pd.DataFrame:
    """The screening result per subject and test: the last record with a result at the
    screening visit (the first visit of the schedule); when the test was not done at that
    visit, the last record with a result in the screening epoch (e.g. a pre-lymphodepletion
    re-test).

    ``lb`` needs USUBJID, LBTESTCD, LBDTC, EPOCH, VISITNUM, ``value`` and ``censor`` (the
    parsed standard-unit result), LBSTRESC, LBSTRESU, LBSTNRHI (and ``_dt`` if available).
    """
    at_visit = lb["VISITNUM"].eq(screening_visitnum)
    in_epoch = lb["EPOCH"].eq(screening_epoch)
    cand = lb[(at_visit | in_epoch) & lb["value"].notna()].copy()
    cand["_rank"] = np.where(at_visit[cand.index], 1, 0)  # the screening visit wins over the epoch
    cand["_k"] = cand["_dt"] if "_dt" in cand else dtc_datetime(cand["LBDTC"])
    cand["_i"] = np.arange(len(cand))
    cand = cand.sort_values(["USUBJID", "LBTESTCD", "_rank", "_k", "_i"], kind="mergesort", na_position="first")
    return cand.drop_duplicates(["USUBJID", "LBTESTCD"], keep="last").drop(columns=["_rank", "_k", "_i"])


def _bounds(value: np.ndarray, censor: np.ndarray):
    """Interval of possible true values: (lo, lo_open, hi, hi_open)."""
    lo = np.where(censor < 0, -np.inf, value)
    hi = np.where(censor > 0, np.inf, value)
    return lo, censor > 0, hi, censor < 0


def _cmp3(value: np.ndarray, censor: np.ndarray, op: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """1 certainly true, 0 certainly false, -1 indeterminate, -2 missing (NaN value/threshold)."""
    lo, lo_open, hi, hi_open = _bounds(value, censor)

    def eq(a, b):
        return np.isfinite(a) & (np.abs(a - b) <= REL_TOL * np.maximum(np.abs(a), np.abs(b)) + 1e-12)

    def lt(a, b):
        return (a < b) & ~eq(a, b)

    with np.errstate(invalid="ignore"):
        true = np.select(
            [op == "<", op == "<=", op == ">", op == ">="],
            [lt(hi, thr) | (eq(hi, thr) & hi_open),
             lt(hi, thr) | eq(hi, thr),
             lt(thr, lo) | (eq(lo, thr) & lo_open),
             lt(thr, lo) | eq(lo, thr)], default=False)
        false = np.select(
            [op == "<", op == "<=", op == ">", op == ">="],
            [lt(thr, lo) | eq(lo, thr),
             lt(thr, lo) | (eq(lo, thr) & lo_open),
             lt(hi, thr) | eq(hi, thr),
             lt(hi, thr) | (eq(hi, thr) & hi_open)], default=False)
    out = np.where(true, 1, np.where(false, 0, -1))
    return np.where(np.isnan(value) | np.isnan(thr), -2, out)


def evaluate_eligibility(thresholds: pd.DataFrame, screening: pd.DataFrame, subjects: pd.Series,
                         studyid: str, test_names: dict[str, str] | None = None,
                         notes: pd.DataFrame | None = None) -> pd.DataFrame:
    """One report row per subject x threshold row (see module docstring for the results).

    ``screening`` comes from :func:`screening_values`; ``subjects`` are the enrolled USUBJIDs;
    ``notes`` (USUBJID, LBTESTCD, note) explain missing values (e.g. CrCl not derived).
    """
    if thresholds.empty or len(subjects) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REPORT_COLUMNS})
    grid = pd.DataFrame({"USUBJID": pd.Series(subjects).drop_duplicates().to_numpy()}).merge(thresholds, how="cross")
    scr = screening[["USUBJID", "LBTESTCD", "LBDTC", "value", "censor", "LBSTRESC", "LBSTRESU", "LBSTNRHI"]]
    g = grid.merge(scr, left_on=["USUBJID", "lbtestcd"], right_on=["USUBJID", "LBTESTCD"], how="left")
    g["LBTESTCD"] = g["lbtestcd"]
    uln = pd.to_numeric(g["LBSTNRHI"], errors="coerce")
    g["threshold_si"] = np.where(g["basis"].eq("ULN"), g["value_x"] * uln, g["value_x"])
    res = _cmp3(g["value_y"].to_numpy(dtype="float64"), np.nan_to_num(g["censor"].to_numpy(dtype="float64")),
                g["op"].to_numpy(dtype=object), g["threshold_si"].to_numpy(dtype="float64"))
    g["row_result"] = np.select([res == 1, res == 0, res == -1], ["MET", "NOT MET", "INDETERMINATE"], default="MISSING")

    # groups: pass when at least min_met rows are met; fail when even the undecided ones cannot reach it
    grp = g[g["group"].ne("")]
    met = grp["row_result"].eq("MET").groupby([grp["USUBJID"], grp["criterion"], grp["group"]]).sum()
    open_ = grp["row_result"].isin(["INDETERMINATE", "MISSING"]).groupby(
        [grp["USUBJID"], grp["criterion"], grp["group"]]).sum()
    need = grp.groupby(["USUBJID", "criterion", "group"])["min_met"].first()
    gres = pd.DataFrame({"group_met": met, "open": open_, "need": need})
    gres["group_result"] = np.select([gres["group_met"] >= gres["need"], gres["group_met"] + gres["open"] < gres["need"]],
                                     ["PASS", "FAIL"], default="NOT EVALUABLE")
    g = g.merge(gres[["group_met", "group_result"]].reset_index(), on=["USUBJID", "criterion", "group"], how="left")
    # unit of decision: a group, or a single ungrouped row
    unit_res = np.where(g["group"].ne(""), g["group_result"],
                        np.select([g["row_result"].eq("MET"), g["row_result"].eq("NOT MET")], ["PASS", "FAIL"],
                                  default="NOT EVALUABLE"))
    g["_unit"] = unit_res
    fail = g["_unit"].eq("FAIL").groupby([g["USUBJID"], g["criterion"]]).transform("any")
    allpass = g["_unit"].eq("PASS").groupby([g["USUBJID"], g["criterion"]]).transform("all")
    g["criterion_result"] = np.select([fail, allpass], ["FAIL", "PASS"], default="NOT EVALUABLE")

    g["note"] = ""
    if notes is not None and not notes.empty:
        nmap = notes.drop_duplicates(["USUBJID", "LBTESTCD"]).set_index(["USUBJID", "LBTESTCD"])["note"]
        key = pd.MultiIndex.from_arrays([g["USUBJID"], g["LBTESTCD"]])
        g["note"] = pd.Series(nmap.reindex(key).to_numpy(), index=g.index).fillna("")
        g["note"] = g["note"].where(g["row_result"].eq("MISSING"), "")
    missing_uln = g["row_result"].eq("MISSING") & g["basis"].eq("ULN") & g["value_y"].notna() & uln.isna()
    g.loc[missing_uln & g["note"].eq(""), "note"] = "screening record has no upper limit of normal"
    g.loc[g["row_result"].eq("MISSING") & g["value_y"].isna() & g["note"].eq(""), "note"] = "no screening result"

    names = test_names or {}
    out = pd.DataFrame({
        "STUDYID": studyid, "USUBJID": g["USUBJID"], "IETESTCD": g["criterion"], "group": g["group"],
        "min_met": g["min_met"], "LBTESTCD": g["LBTESTCD"], "LBTEST": g["LBTESTCD"].map(names).astype(object).fillna(""),
        "criterion_text": g["text"], "op": g["op"], "threshold": g["value_x"], "basis": g["basis"],
        "threshold_si": g["threshold_si"], "LBDTC": g["LBDTC"].fillna(""), "LBSTRESC": g["LBSTRESC"].fillna(""),
        "LBSTRESU": g["LBSTRESU"].fillna(""), "LBSTNRHI": uln, "row_result": g["row_result"],
        "group_met": g["group_met"], "group_result": g["group_result"].fillna(""),
        "criterion_result": g["criterion_result"], "note": g["note"],
    })
    out["_o"] = g["order"].to_numpy()
    out = out.sort_values(["USUBJID", "_o"], kind="mergesort").drop(columns="_o").reset_index(drop=True)
    return out[REPORT_COLUMNS]
