"""ADLB, laboratory analysis dataset (ADaMIG 1.3 BDS), from SDTM LB, EX (via ADSL) and ADRS.

- One record per LB result with a standard numeric result (LBSTRESN): PARAMCD = LBTESTCD,
  AVAL = LBSTRESN in the test's one standard unit (SDTM LB converted it with
  ``specs/rules/lab_units.csv``), traced to LBSEQ.
- Baseline: the last result on or before the first lymphodepletion dose (ADSL.LDSTDT; its
  time when both carry one, :func:`pipeline.derive.baseline.before_exposure`), else on or before
  the CAR-T infusion for subjects without lymphodepletion; ABLFL, BASE, CHG, PCHG.
- ATOXGR/ATOXGRN: the NCI CTCAE grade of the result in the study's ``[safety] ctcae_version``
  (SDTM LBTOXGR, graded by
  :mod:`pipeline.rules.ctcae_lab` from ``specs/rules/ctcae_lab.csv``); BTOXGR the baseline
  record's grade. Per direction (ADaMIG 1.3 low/high toxicity variables): ATOXDSCL/ATOXDSCH the
  parameter's low/high CTCAE term, ATOXGRL/ATOXGRH the record's grade in it, BTOXGRL/BTOXGRH the
  baseline's, SHIFT1/SHIFT2 the low/high shift, ANL01FL/ANL02FL the worst post-baseline low/high
  grade record per subject and parameter (the earliest among equal grades).
- ICAHT (EHA/EBMT 2023): parameters ICAHTE (early, days 0-30) and ICAHTL (late, after day 30),
  one record per safety-population subject with neutrophil results, by ``specs/rules/icaht.csv``
  and the counting conventions of ``specs/rules/icaht_counting.csv``.
- Cytopenia recovery (ANC >= 0.5 / 1.0, platelets >= 20 / 50 x10^9/L with the sustained-recovery
  rule of ``specs/rules/cytopenia_recovery.csv``) is computed here (:func:`recovery`) and
  analysed as time to event in ADTTE.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import (analysis_day, before_exposure, dtc_to_sas_date, dtc_to_sas_datetime, merge_adsl,
                                  num, per_distinct, response_order, spec_table, text, text_values)
from pipeline.config import Study
from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

ADSL_VARS = ["STUDYID", "SITEID", "TRT01P", "TRT01PN", "TRT01A", "TRT01AN", "TRTSDT", "LDSTDT", "SAFFL"]
#: the SDTM LB variables an ADLB record takes
LB_COLUMNS = ["USUBJID", "LBSEQ", "LBTESTCD", "LBTEST", "LBCAT", "LBSTRESN", "LBSTRESU", "LBSTNRLO", "LBSTNRHI",
              "LBNRIND", "LBTOX", "LBTOXGR", "VISITNUM", "VISIT", "LBDTC"]
OPS = {"le": np.less_equal, "lt": np.less, "ge": np.greater_equal, "gt": np.greater}


def _iso_of(days: pd.Series) -> pd.Series:
    ts = pd.Timestamp("1960-01-01") + pd.to_timedelta(num(days), unit="D")
    return ts.dt.strftime("%Y-%m-%d").astype("object").where(ts.notna(), "")


def _param_label(test: pd.Series, unit: pd.Series) -> pd.Series:
    """PARAM of a lab parameter: the test name and its standard unit, ``Test (unit)``."""
    return test + np.where(unit != "", " (" + unit + ")", "")


def lab_records(lb: pd.DataFrame) -> pd.DataFrame:
    """LB results with a numeric standard result, as BDS records (PARAMCD, PARAM, AVAL, ADT, ...)."""
    lb = lb.loc[num(lb["LBSTRESN"]).notna().to_numpy(), LB_COLUMNS]  # the columns used (LB has ~30)
    dtc = text(lb["LBDTC"])
    return pd.DataFrame({
        "USUBJID": text_values(lb["USUBJID"]), "PARAMCD": text_values(lb["LBTESTCD"]),
        "PARAM": per_distinct(_param_label, lb["LBTEST"], lb["LBSTRESU"]).to_numpy(),
        "PARCAT1": text_values(lb["LBCAT"]), "AVAL": num(lb["LBSTRESN"]).to_numpy(), "AVALU": text_values(lb["LBSTRESU"]),
        "ANRLO": num(lb["LBSTNRLO"]).to_numpy(), "ANRHI": num(lb["LBSTNRHI"]).to_numpy(),
        "ANRIND": text_values(lb["LBNRIND"]), "ATOXGR": text_values(lb["LBTOXGR"]),
        "_TOX": text_values(lb["LBTOX"]),
        "ADT": dtc_to_sas_date(dtc).to_numpy(), "ADTM": dtc_to_sas_datetime(dtc).to_numpy(),
        "LBDTC": dtc.to_numpy(), "AVISIT": text_values(lb["VISIT"]),
        "AVISITN": num(lb["VISITNUM"]).to_numpy(),
        "SRCDOM": "LB", "SRCVAR": "LBSTRESN", "SRCSEQ": num(lb["LBSEQ"]).to_numpy(),
    })


def baseline(adlb: pd.DataFrame, ld_dtc: pd.Series) -> pd.DataFrame:
    """ABLFL/BASE/CHG/PCHG and BTOXGR: baseline = last result on or before the first
    lymphodepletion dose (``ld_dtc``: USUBJID -> ISO EXSTDTC of the first lymphodepletion dose,
    else the CAR-T infusion), per subject and parameter; the latest such record (ties: the
    highest SRCSEQ) is the baseline record."""
    ref = text(adlb["USUBJID"].map(ld_dtc))
    pre = before_exposure(adlb["LBDTC"], ref) & ref.ne("")
    cand = adlb.loc[pre, ["USUBJID", "PARAMCD", "ADT", "ADTM", "SRCSEQ", "AVAL", "ATOXGR"]]
    cand = cand.sort_values(["USUBJID", "PARAMCD", "ADT", "ADTM", "SRCSEQ"], kind="mergesort", na_position="first")
    last = cand.drop_duplicates(["USUBJID", "PARAMCD"], keep="last")
    out = adlb.copy(deep=False)  # copy-on-write: the new columns do not reach the caller's frame
    out["ABLFL"] = np.where(out.index.isin(last.index), "Y", "")
    key = pd.MultiIndex.from_arrays([out["USUBJID"], out["PARAMCD"]])
    lk = last.set_index(["USUBJID", "PARAMCD"])
    out["BASE"] = lk["AVAL"].reindex(key).to_numpy()
    out["BTOXGR"] = text(pd.Series(lk["ATOXGR"].reindex(key).to_numpy(), index=out.index))
    post = ~pre & out["ADT"].notna() & (out["ADT"] >= out["TRTSDT"])
    out["_post"] = post
    out["CHG"] = (out["AVAL"] - out["BASE"]).where(post)
    out["PCHG"] = (100.0 * (out["AVAL"] - out["BASE"]) / out["BASE"].where(out["BASE"] != 0)).where(post)
    return out


def toxicity_terms(spec: Spec) -> pd.DataFrame:
    """Per lab test (index PARAMCD = LBTESTCD): its low-direction and high-direction CTCAE term
    (columns ``low``, ``high``; "" where the test has no criteria in that direction), from the
    criteria table ``specs/rules/ctcae_lab.csv`` (term, lbtestcd, direction), its CRF test codes
    mapped to the SDTM LBTESTCD by ``specs/rules/lab_tests.csv``. Only the rows of the study's
    CTCAE version (``standards['ctcae_version']``, set from ``[safety] ctcae_version``) that a
    value can grade: a term without a value-based grade (CTCAE v5.0 Hyperglycemia) is no
    direction of its test, so a glucose record never claims a Hyperglycemia grade 0."""
    c = spec.rule("ctcae_lab")
    if "ctcae_version" in c.columns and spec.standards.get("ctcae_version"):
        c = c[c["ctcae_version"] == str(spec.standards["ctcae_version"])]
    if "lab_gradable" in c.columns:
        c = c[c["lab_gradable"] == "Y"]
    c = c[["lbtestcd", "direction", "term"]].drop_duplicates(["lbtestcd", "direction"])
    tests = spec.rule("lab_tests")
    sdtm_code = dict(zip(tests["lbtestcd"], tests["sdtm_lbtestcd"].where(tests["sdtm_lbtestcd"] != "", tests["lbtestcd"])))
    c = c.assign(lbtestcd=c["lbtestcd"].map(sdtm_code).fillna(c["lbtestcd"]))
    wide = c.pivot(index="lbtestcd", columns="direction", values="term")
    return wide.reindex(columns=["low", "high"]).fillna("")


def toxicity_directions(adlb: pd.DataFrame, terms: pd.DataFrame) -> pd.DataFrame:
    """ATOXDSCL/ATOXDSCH (the parameter's low/high CTCAE term) and ATOXGRL/ATOXGRH (ADaMIG 1.3
    low/high toxicity grades) of every graded record.

    SDTM LB grades each record in one term (LBTOX, LBTOXGR): the term of its abnormal direction,
    and a record is graded only when that direction is abnormal or both are known
    (:mod:`pipeline.rules.ctcae_lab` rule 5). So a graded record has its grade in LBTOX's
    direction and grade 0 in the other direction of a two-direction test; an ungraded record
    (LBTOXGR empty) has neither. A direction the parameter has no term for stays empty."""
    out = adlb.copy(deep=False)
    code = text(out["PARAMCD"])
    graded = text(out["ATOXGR"]) != ""
    tox = text(out["_TOX"])
    for d, dsc, gr in (("low", "ATOXDSCL", "ATOXGRL"), ("high", "ATOXDSCH", "ATOXGRH")):  # two directions
        term = code.map(terms[d]).fillna("")
        out[dsc] = term
        out[gr] = np.where(graded & (term != "") & (tox == term), text(out["ATOXGR"]),
                           np.where(graded & (term != ""), "0", ""))
    return out


def toxicity_shift(adlb: pd.DataFrame) -> pd.DataFrame:
    """ATOXGRN/BTOXGRN; per direction the baseline grade (BTOXGRL/BTOXGRH = the baseline
    record's ATOXGRL/ATOXGRH), the shift of graded post-baseline records (SHIFT1 low:
    ``<BTOXGRL> to <ATOXGRL>``, SHIFT2 high, ``Missing`` for no baseline grade) and the worst
    post-baseline record flag (ANL01FL low, ANL02FL high: the highest grade per subject and
    parameter, the earliest on ties). Shift tables count subjects by these flags."""
    out = adlb.copy(deep=False)
    out["ATOXGRN"] = num(out["ATOXGR"])
    out["BTOXGRN"] = num(out["BTOXGR"])
    key = pd.MultiIndex.from_arrays([out["USUBJID"], out["PARAMCD"]])
    base = out.loc[out["ABLFL"] == "Y", ["USUBJID", "PARAMCD", "ATOXGRL", "ATOXGRH"]].set_index(["USUBJID", "PARAMCD"])
    for d, shift, flag in (("L", "SHIFT1", "ANL01FL"), ("H", "SHIFT2", "ANL02FL")):  # two directions
        gr, bgr = f"ATOXGR{d}", f"BTOXGR{d}"
        out[bgr] = text(pd.Series(base[gr].reindex(key).to_numpy(), index=out.index))
        grade = num(out[gr])
        graded = out["_post"] & grade.notna()
        b = out[bgr].where(out[bgr] != "", "Missing")
        out[shift] = np.where(graded, per_distinct(_shift_text, b, out[gr]), "")
        g = out.loc[graded, ["USUBJID", "PARAMCD", "ADT"]].assign(_g=grade[graded])
        g = g.sort_values(["USUBJID", "PARAMCD", "_g", "ADT"], ascending=[True, True, False, True], kind="mergesort")
        worst = g.drop_duplicates(["USUBJID", "PARAMCD"])
        out[flag] = np.where(out.index.isin(worst.index), "Y", "")
    return out


def _shift_text(baseline_grade: pd.Series, grade: pd.Series) -> pd.Series:
    """A shift category: ``<baseline grade> to <grade>``."""
    return baseline_grade + " to " + grade


def daily_values(lab: pd.DataFrame, start: pd.Series, last_day: int) -> pd.DataFrame:
    """One row per subject and protocol day 0..``last_day``: the value of the latest result on
    or before that day (carry forward, ``icaht_counting.csv`` carry_forward), with the
    subject's infusion date ``start`` (USUBJID -> SAS date). Days before any result: NaN."""
    subjects = pd.Index(sorted(set(lab["USUBJID"]) & set(start.dropna().index)))
    if subjects.empty:
        return pd.DataFrame(columns=["USUBJID", "day", "value"])
    grid = pd.DataFrame({"USUBJID": np.repeat(subjects.to_numpy(), last_day + 1),
                         "day": np.tile(np.arange(last_day + 1, dtype="float64"), len(subjects))})
    r = lab[lab["USUBJID"].isin(subjects)].copy()
    r["day"] = r["ADT"] - r["USUBJID"].map(start)
    r = r.dropna(subset=["day"]).sort_values(["day", "ADTM", "SRCSEQ"], kind="mergesort", na_position="first")
    r = r.drop_duplicates(["USUBJID", "day"], keep="last")
    r["day"] = r["day"].clip(lower=0)   # pre-infusion results carry into day 0
    r = r.sort_values(["day"], kind="mergesort").drop_duplicates(["USUBJID", "day"], keep="last")
    grid = grid.sort_values("day", kind="mergesort")
    right = r[["USUBJID", "day", "AVAL"]].sort_values("day", kind="mergesort")
    grid["USUBJID"] = grid["USUBJID"].astype(str).astype("object")     # merge_asof needs one key dtype
    right["USUBJID"] = right["USUBJID"].astype(str).astype("object")
    m = pd.merge_asof(grid, right, on="day", by="USUBJID", direction="backward")
    return m.rename(columns={"AVAL": "value"}).sort_values(["USUBJID", "day"], kind="mergesort").reset_index(drop=True)


def below_days(daily: pd.DataFrame, op: str, threshold: float, stable_days: int, stop: pd.Series) -> pd.Series:
    """Cumulative days per subject with the value ``op`` ``threshold`` (``le`` / ``lt``), where a
    run of days not below that is shorter than ``stable_days`` and lies between days below counts
    as below (non-stable recovery), and days on or after ``stop`` (USUBJID -> protocol day of
    progression or death) are not counted (censoring)."""
    d = daily[daily["day"] < daily["USUBJID"].map(stop).fillna(np.inf)]
    if d.empty:
        return pd.Series(dtype="float64")
    below = OPS[op](d["value"].to_numpy(dtype="float64"), threshold) & d["value"].notna().to_numpy()
    subject = d["USUBJID"].to_numpy()  # the days of a subject are contiguous (daily_values' order)
    # runs of equal state per subject: where each starts, its state, subject and length
    starts = np.flatnonzero(np.r_[True, (subject[1:] != subject[:-1]) | (below[1:] != below[:-1])])
    run_below, run_subject = below[starts], subject[starts]
    n = np.diff(np.r_[starts, len(d)])
    same_prev = np.r_[False, run_subject[1:] == run_subject[:-1]]
    same_next = np.r_[run_subject[:-1] == run_subject[1:], False]
    prev_below = np.r_[False, run_below[:-1]] & same_prev
    next_below = np.r_[run_below[1:], False] & same_next
    gap = ~run_below & prev_below & next_below & (n < stable_days)
    counted = np.where(run_below | gap, n, 0)
    return pd.Series(counted).groupby(run_subject).sum().astype("float64")


def icaht_table_problems(rules: pd.DataFrame, window: int) -> list[str]:
    """What is wrong with the EARLY rows of ``icaht.csv`` as a grading table (Rejeski et al. 2023,
    Table 2: the cumulative days of one ANC cut-off are graded in bands that follow each other).

    Per ANC cut-off (operator and threshold), the day bands ``min_days``-``max_days`` sorted by
    ``min_days`` must start at 1 day or more, each begin the day after the previous one ends
    (no gap, no overlap), end at ``window`` + 1 days (every day 0..window counted) and rise in
    grade. An overlapping, gapped or truncated band would silently change the grade of the days
    at its edge, so it is a table error, not a rule."""
    problems = []
    early = rules[rules["phase"] == "EARLY"].copy()
    early["_min"] = pd.to_numeric(early["min_days"], errors="coerce")
    early["_max"] = pd.to_numeric(early["max_days"], errors="coerce")
    early["_grade"] = pd.to_numeric(early["grade"], errors="coerce")
    for (op, thr), g in early.groupby(["operator", "threshold"], sort=True):  # a few cut-offs (metadata)
        g = g.sort_values("_min")
        where = f"icaht.csv EARLY {op} {thr}"
        if g[["_min", "_max", "_grade"]].isna().any().any():
            problems.append(f"{where}: min_days, max_days and grade must be numbers")
            continue
        if g["_min"].iloc[0] < 1:
            problems.append(f"{where}: the first band starts at {g['_min'].iloc[0]:g} days (at least 1)")
        ends, starts = g["_max"].to_numpy()[:-1], g["_min"].to_numpy()[1:]
        for end, start in zip(ends, starts):  # adjacent bands of one cut-off (metadata)
            if start != end + 1:
                problems.append(f"{where}: a band ends at {end:g} days and the next starts at {start:g} "
                                f"(must be {end + 1:g})")
        if (g["_max"] < g["_min"]).any():
            problems.append(f"{where}: a band ends before it starts")
        if g["_max"].iloc[-1] != window + 1:
            problems.append(f"{where}: the last band ends at {g['_max'].iloc[-1]:g} days; days 0-{window} "
                            f"are {window + 1} days")
        if not g["_grade"].is_monotonic_increasing:
            problems.append(f"{where}: the grade must rise with the days")
    return problems


def icaht(lab: pd.DataFrame, adsl: pd.DataFrame, stop: pd.Series, spec: Spec) -> pd.DataFrame:
    """ICAHTE and ICAHTL records (AVAL = grade 0-4) for safety-population subjects with ANC
    results: early = the highest grade of ``icaht.csv`` EARLY rows met by the cumulative days
    (:func:`below_days`) over protocol days 0..30; late = the highest grade of the LATE rows met
    by at least ``min_occasions`` results after day 30 (before progression or death)."""
    rules = spec.rule("icaht")
    conv = dict(zip(spec.rule("icaht_counting")["convention"], spec.rule("icaht_counting")["value"]))
    window = int(conv["early_window_days"])
    stable = int(conv["stable_recovery_days"])
    # the table is checked once per loaded spec (its rule tables do not change)
    problems = per_object(spec, ("icaht table problems", window), lambda _spec: icaht_table_problems(rules, window))
    if problems:
        raise ConfigError("; ".join(problems))
    test = rules["lbtestcd"].iloc[0]
    anc = lab[lab["PARAMCD"] == test]
    safety = adsl[text(adsl["SAFFL"]) == "Y"]
    start = safety.set_index("USUBJID")["TRTSDT"]
    anc = anc[anc["USUBJID"].isin(start.index)]
    if anc.empty:
        return pd.DataFrame()
    subjects = pd.Index(sorted(set(anc["USUBJID"])))
    daily = daily_values(anc, start, window)
    early = pd.Series(0.0, index=subjects)
    er = rules[rules["phase"] == "EARLY"]
    counted: dict[tuple[str, float], pd.Series] = {}  # days below, per ANC cut-off (several grades share one)
    for r in er.to_dict("records"):  # a few rule rows (metadata), vectorised over subjects
        cut = (r["operator"], float(r["threshold"]))
        if cut not in counted:
            counted[cut] = below_days(daily, *cut, stable, stop).reindex(subjects).fillna(0)
        n = counted[cut]
        hit = (n >= float(r["min_days"])) & (n <= float(r["max_days"]))
        early = early.where(~hit | (early >= float(r["grade"])), float(r["grade"]))
    late = pd.Series(0.0, index=subjects)
    post = anc.assign(day=anc["ADT"] - anc["USUBJID"].map(start))
    post = post[(post["day"] > window) & (post["day"] < post["USUBJID"].map(stop).fillna(np.inf))]
    for r in rules[rules["phase"] == "LATE"].to_dict("records"):  # metadata loop
        hit_rows = post[OPS[r["operator"]](post["AVAL"].to_numpy(dtype="float64"), float(r["threshold"]))]
        count = hit_rows.groupby("USUBJID").size().reindex(subjects).fillna(0)
        hit = count >= float(r["min_occasions"])
        late = late.where(~hit | (late >= float(r["grade"])), float(r["grade"]))
    has_late = post.groupby("USUBJID").size().reindex(subjects).fillna(0) > 0
    rows = []
    for code, grade, mask in (("ICAHTE", early, pd.Series(True, index=subjects)), ("ICAHTL", late, has_late)):
        g = grade[mask]
        rows.append(pd.DataFrame({"USUBJID": g.index, "PARAMCD": code, "AVAL": g.to_numpy(),
                                  "AVALC": "Grade " + g.astype(int).astype(str).to_numpy(),
                                  "PARCAT1": "ICAHT", "SRCDOM": "ADLB", "SRCVAR": "PARAMCD", "SRCSEQ": np.nan,
                                  "ATOXGR": g.astype(int).astype(str).to_numpy()}))
    out = pd.concat(rows, ignore_index=True)
    out["PARAM"] = out["PARAMCD"].map({"ICAHTE": "Early ICAHT Grade (Days 0-30)", "ICAHTL": "Late ICAHT Grade (After Day 30)"})
    return out


def recovery(lab: pd.DataFrame, adsl: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """Per recovery parameter of ``specs/rules/cytopenia_recovery.csv`` and safety-population
    subject with results of its test from the infusion day on: CYTOPENIC (a result below the
    threshold); RECDT = date of the first *sustained* recovery: a result >= threshold right after
    a result below it, with no result below the threshold in the next ``sustain_days`` - 1 days
    (the next low result is at least ``sustain_days`` later, or there is none); a dip within that
    span makes the rise not sustained and the next rise is tried. RECSEQ = its LBSEQ;
    LASTDT/LASTSEQ = the subject's last result of the test."""
    rules = spec.rule("cytopenia_recovery").reset_index(drop=True)
    start = adsl[text(adsl["SAFFL"]) == "Y"].set_index("USUBJID")["TRTSDT"]
    # every parameter at once: each result of a parameter's test, tagged with the rule row _k
    # (a test feeds several parameters: ANC >= 0.5 and >= 1.0), grouped by (_k, USUBJID)
    tests = pd.DataFrame({"PARAMCD": rules["lbtestcd"].to_numpy(), "_k": rules.index.to_numpy()})
    x = lab.loc[lab["USUBJID"].isin(start.index), ["USUBJID", "PARAMCD", "ADT", "ADTM", "SRCSEQ", "AVAL"]]
    x = x.merge(tests, on="PARAMCD")
    x["day"] = x["ADT"] - x["USUBJID"].map(start)
    x = x[x["day"] >= 0].sort_values(["_k", "USUBJID", "ADT", "ADTM", "SRCSEQ"], kind="mergesort", na_position="first")
    if x.empty:
        return pd.DataFrame()
    k = x["_k"].to_numpy()
    thr = rules["threshold"].astype(float).to_numpy()[k]
    sustain = rules["sustain_days"].astype(int).to_numpy()[k]
    x["low"] = x["AVAL"].to_numpy() < thr
    by = [x["_k"], x["USUBJID"]]
    x["seen_low"] = x.groupby(by)["low"].cummax()
    # date of the next low result after each record
    x["_lowdt"] = x["ADT"].where(x["low"])
    rev = x.iloc[::-1]
    x["next_low"] = rev.groupby([rev["_k"], rev["USUBJID"]])["_lowdt"].ffill().iloc[::-1].to_numpy()
    x["next_low"] = x["next_low"].where(~x["low"])  # for a high record: the next low result's date
    prev_low = x.groupby(by)["low"].shift(fill_value=False)
    rise = ~x["low"] & x["seen_low"] & prev_low
    sustained = rise & (x["next_low"].isna() | (x["next_low"] - x["ADT"] >= sustain))
    keys = ["_k", "USUBJID"]
    rec = x[sustained].drop_duplicates(keys).set_index(keys)
    last = x.drop_duplicates(keys, keep="last").set_index(keys)
    cyt = x.groupby(keys)["low"].any()
    out = pd.DataFrame({"USUBJID": cyt.index.get_level_values("USUBJID"),
                        "PARAMCD": rules["paramcd"].to_numpy()[cyt.index.get_level_values("_k")],
                        "CYTOPENIC": cyt.to_numpy()})
    out["RECDT"] = rec["ADT"].reindex(cyt.index).to_numpy()
    out["RECSEQ"] = rec["SRCSEQ"].reindex(cyt.index).to_numpy()
    out["LASTDT"] = last["ADT"].reindex(cyt.index).to_numpy()
    out["LASTSEQ"] = last["SRCSEQ"].reindex(cyt.index).to_numpy()
    return out


def stop_days(adam: dict[str, pd.DataFrame], adsl: pd.DataFrame, spec: Spec) -> pd.Series:
    """USUBJID -> protocol day of the first of progression/relapse (derived ADRS OVRLRESP) and
    death: the ICAHT counting stops there (``icaht_counting.csv`` censor)."""
    start = adsl.set_index("USUBJID")["TRTSDT"]
    days = [(adsl.set_index("USUBJID")["DTHDT"] - start)]
    adrs = adam.get("ADRS")
    if adrs is not None and len(adrs):
        order = response_order(spec)
        prog = set(order.loc[order["progression"], "category"])
        p = adrs[(adrs["PARAMCD"] == "OVRLRESP") & adrs["AVALC"].isin(prog)]
        days.append((p.groupby("USUBJID")["ADT"].min() - start).dropna())
    return pd.concat(days, axis=1).min(axis=1)


def sequence_numbers(adlb: pd.DataFrame) -> np.ndarray:
    """ASEQ: 1, 2, ... within each subject in the order USUBJID, PARCAT1, PARAMCD, ADT, ADTM,
    SRCSEQ (missing dates last, ICAHT records after the laboratory tests of their category).

    Only these key columns are sorted; the records stay where they are. The stage orders every
    dataset by its spec keys (ADLB: STUDYID, USUBJID, PARCAT1, PARAMCD, ADT, ASEQ,
    :func:`pipeline.export.checks.order_dataset`), which puts them in this order: sorting the
    whole frame here as well copied its ~50 columns once more (~1.5 s at 2,000 subjects)."""
    keys = ["USUBJID", "PARCAT1", "PARAMCD", "ADT", "ADTM", "SRCSEQ"]
    ordered = adlb[keys].sort_values(keys, kind="mergesort", na_position="last")
    aseq = np.empty(len(adlb), dtype="float64")
    aseq[adlb.index.get_indexer(ordered.index)] = ordered.groupby("USUBJID", sort=False).cumcount().to_numpy() + 1
    return aseq


def build(sdtm: dict[str, pd.DataFrame], adam: dict[str, pd.DataFrame], spec: Spec, study: Study) -> dict:
    """ADLB and ``_recovery`` (recovery dates for ADTTE)."""
    lb = sdtm.get("LB")
    if lb is None or lb.empty:
        return {}
    adsl = adam["ADSL"]
    recs = lab_records(lb)
    recs = merge_adsl(recs, adsl, ADSL_VARS)
    ex = sdtm.get("EX")
    ld = pd.Series(dtype="object")
    if ex is not None and len(ex):
        e = ex[text(ex["EXCAT"]) == "LYMPHODEPLETION"]
        e = e.assign(_k=dtc_to_sas_datetime(e["EXSTDTC"]).fillna(dtc_to_sas_date(e["EXSTDTC"]) * 86400))
        e = e.sort_values(["USUBJID", "_k"], kind="mergesort").drop_duplicates("USUBJID")
        ld = pd.Series(text(e["EXSTDTC"]).to_numpy(), index=text(e["USUBJID"]).to_numpy())
    infusion = pd.Series(_iso_of(adsl["TRTSDT"]).to_numpy(), index=adsl["USUBJID"].to_numpy())
    ref = ld.reindex(infusion.index).fillna(infusion)
    recs = toxicity_directions(recs, spec_table(spec, "toxicity_terms", toxicity_terms))
    recs = baseline(recs, ref)
    recs = toxicity_shift(recs)
    recs["BASETYPE"] = "LAST BEFORE LYMPHODEPLETION"
    ic = icaht(recs, adsl, stop_days(adam, adsl, spec), spec)
    if len(ic):
        ic = merge_adsl(ic, adsl, ADSL_VARS)
    adlb = pd.concat([recs, ic], ignore_index=True)
    adlb["ADY"] = analysis_day(adlb["ADT"], adlb["TRTSDT"])
    adlb["ASEQ"] = sequence_numbers(adlb)
    if adlb.duplicated(["USUBJID", "ASEQ"]).any():
        raise ConfigError("ADLB: ASEQ not unique")
    return {"ADLB": adlb, "_recovery": recovery(recs, adsl, spec)}
