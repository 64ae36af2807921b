"""LB (Laboratory Test Results, SDTMIG 3.4 section 6.3.5.6), with derived creatinine clearance,
CTCAE grades (the study's ``[safety] ctcae_version``) and the study's eligibility-lab check.

Record path (all vectorised):

- **Identity**: LBTESTCD from the CRF; LBTEST, LBSPEC and LBMETHOD from the CDISC CT test
  table ``specs/rules/lab_tests.csv`` (collected LBSPEC/LBMETHOD win when given); LBCAT as
  collected. CAR-T expansion tests (``lbcat`` CAR-T EXPANSION) are not LB: they go to PC
  (:mod:`pipeline.domains.pc`).
- **Results as collected**: LBORRES, LBORNRLO/LBORNRHI as collected; LBORRESU in its CDISC CT
  spelling (``ct_unit`` of ``lab_units.csv``: ``µmol/L`` -> ``umol/L``).
- **Standard results**: LBSTRESN/LBSTRESC/LBSTRESU and LBSTNRLO/LBSTNRHI in the test's one
  standard unit, by :mod:`pipeline.rules.units`. An unknown unit is an error finding and the
  record keeps no standard result. Censored results (``<x``/``>x``) keep their text in
  LBSTRESC (limit converted) and leave LBSTRESN empty.
- **LBNRIND** against the standard range (:func:`reference_indicator`).
- **LBLOBXFL** (SDTMIG 3.4): last record with a result before the first exposure to any protocol
  treatment (DM.RFXSTDTC = first lymphodepletion dose), per subject and test (shared
  :func:`~pipeline.derive.baseline.last_obs_before_exposure`, which states the same-day rules).
  This pre-lymphodepletion value is the baseline of the CTCAE baseline clauses; records after
  RFXSTDTC are the post-baseline records those clauses apply to.
- **Creatinine clearance** (LBTESTCD CREATCLR, LBDRVFL Y): :func:`creatinine_clearance`.
- **LBTOX/LBTOXGR**: :func:`pipeline.rules.ctcae_lab.grade_labs` (criteria in
  ``specs/rules/ctcae_lab.csv``, the rows of the study's CTCAE version; a result is graded
  against the thresholds CTCAE states in the unit it was reported in, LBORRESU, when CTCAE
  states them in that unit, else against those in the standard unit).
- LBDTC/LBDY, VISIT/VISITNUM, EPOCH and LBSEQ with the shared derivations.

Reports: ``eligibility_labs`` (every enrolled subject x eligibility threshold, see
:mod:`pipeline.rules.eligibility`) and ``lb_toxicity_shift`` (baseline and worst post-baseline
CTCAE grade per subject and term).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.baseline import before_exposure, last_obs_before_exposure
from pipeline.derive.dates import dtc_date, dtc_datetime
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.visits import visit_numbers
from pipeline.derive.identifiers import by_subject
from pipeline.domains.dm import C_YES, concat, ct_term, make_findings, make_rejected, raw_dtc, subject_ids, text
from pipeline.errors import ConfigError, DataError
from pipeline.rules import ctcae_lab, eligibility
from pipeline.rules.units import (UnitTable, censored_text, clean_number, format_number, load_unit_table,
                                  lookup_units, parse_results)
from pipeline.spec import Spec

EXPANSION_CATEGORY = "CAR-T EXPANSION"
NOT_DONE = "NOT DONE"
CRCL_TEST = "CREATCLR"
CREAT_TEST = "CREAT"


# ---------------------------------------------------------------------------------------------
# shared with PC: raw lab rows -> standardised findings records
# ---------------------------------------------------------------------------------------------
def per_distinct(values: pd.Series, func) -> pd.Series | pd.DataFrame:
    """Evaluate ``func`` once per distinct value of ``values`` and broadcast back (lab columns
    repeat a lot: a million records hold a few thousand distinct texts). Missing values are
    passed to ``func`` as NaN."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    res = func(pd.Series(np.asarray(uniques, dtype=object)))
    if isinstance(res, pd.DataFrame):
        out = res.iloc[codes].reset_index(drop=True)
        out.index = values.index
        return out
    return pd.Series(np.asarray(res)[codes], index=values.index)


def raw_text(raw: pd.DataFrame, col: str) -> pd.Series:
    """A raw column as stripped text, ``""`` for missing or absent (evaluated per distinct value)."""
    if col not in raw:
        return pd.Series("", index=raw.index, dtype=object)
    return per_distinct(raw[col], text).astype(object)


def sample_level(ctx: StudyContext, raw: pd.DataFrame, form: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Timing of each distinct sample (site, subject, visit, date, time): USUBJID, LBDTC (ISO),
    ``bad_date``, LBDY, VISITNUM, VISIT, EPOCH, ``pre`` (before the first exposure DM.RFXSTDTC,
    i.e. before lymphodepletion, or the subject was never exposed) and ``post`` (after it). Returns (samples, code of each raw row)."""
    keys = ["SITEID", "SUBJID", "VISIT", "LBDAT", "LBTIM"]
    present = [k for k in keys if k in raw]
    codes = raw.groupby(present, sort=False, dropna=False).ngroup().to_numpy() if len(raw) else np.zeros(0, dtype=int)
    first = pd.Series(np.arange(len(raw))).groupby(codes, sort=True).first().to_numpy() if len(raw) else np.zeros(0, dtype=int)
    smp = raw.iloc[first].reset_index(drop=True)
    dm = ctx.datasets["DM"]
    ids = subject_ids(smp, ctx.study.studyid)
    iso, bad = raw_dtc(smp, "LBDAT", "LBTIM")
    out = pd.DataFrame({"USUBJID": ids, "LBDTC": iso, "bad_date": bad, "_FILE": text(smp["_FILE"]) if "_FILE" in smp else "",
                        "_ROW": smp["_ROW"].to_numpy()})
    out["LBDY"] = study_day_by_subject(out["LBDTC"], out["USUBJID"], dm)
    vis = visit_numbers(smp["VISIT"], ctx.study, out["LBDY"], out["USUBJID"], out["LBDTC"])
    out["VISITNUM"], out["VISIT"] = vis["VISITNUM"].to_numpy(), vis["VISIT"].to_numpy()
    out["EPOCH"] = record_epoch(ctx, out["USUBJID"], out["LBDTC"]).to_numpy()
    rfx = out["USUBJID"].map(by_subject(dm, "RFXSTDTC")).fillna("").astype(str)
    dated = dtc_date(out["LBDTC"]).notna()
    before = before_exposure(out["LBDTC"], rfx)
    out["pre"] = (rfx.ne("") & before) | (rfx.eq("") & dated)
    out["post"] = rfx.ne("") & dated & ~before
    out["_dt"] = dtc_datetime(out["LBDTC"])
    return out, codes


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Factorize: codes per row and the distinct values (NaN kept as a value)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, pd.Series(np.asarray(uniques, dtype=object))


def _factorize_pairs(value: np.ndarray, censor: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Codes of distinct (value, censor) pairs and the distinct values and censors."""
    vcode, vuniq = pd.factorize(value, use_na_sentinel=False)
    key = vcode.astype(np.int64) * 3 + (censor.astype(np.int64) + 1)
    code, kuniq = pd.factorize(key)
    return code, (np.asarray(vuniq, dtype="float64")[kuniq // 3], (kuniq % 3 - 1).astype("int8"))


def map_lab_records(ctx: StudyContext, raw: pd.DataFrame, table: UnitTable, form: str = "lb"
                    ) -> tuple[pd.DataFrame, list[pd.DataFrame], list[pd.DataFrame]]:
    """Raw lab rows -> one standardised record per row (LB variable names) plus helper columns
    ``value``/``censor`` (standard-unit number or limit), ``LLN``/``ULN``, ``pre``/``post``
    (timing against the first exposure, DM.RFXSTDTC), ``_dt`` (datetime), ``_ROW``/``_FILE``.

    Returns (records, findings, rejected). Rows of subjects absent from DM and rows with an
    impossible date are rejected with a reason; an unknown unit is an error finding.
    Timing is derived once per distinct sample, units once per distinct (test, unit) and
    results once per distinct text: a million records hold a few thousand of each.
    """
    sid = ctx.study.studyid
    raw = raw.reset_index(drop=True)
    smp, scodes = sample_level(ctx, raw, form)
    known_smp = smp["USUBJID"].isin(ctx.datasets["DM"]["USUBJID"]).to_numpy()
    known = known_smp[scodes] if len(raw) else np.zeros(0, dtype=bool)
    bad_date = (smp["bad_date"].to_numpy() & known_smp)[scodes] if len(raw) else np.zeros(0, dtype=bool)
    rejected = [make_rejected(form, raw[~known], "SUBJID", "subject not in DM (no dm form row for this SITEID/SUBJID)"),
                make_rejected(form, raw[bad_date], "LBDAT", "impossible collection date/time")]
    findings = [make_findings(sid, raw[bad_date], "LBDAT", "lb.date_impossible", "error",
                              "impossible LBDAT/LBTIM for subject " + raw_text(raw[bad_date], "SUBJID"))]
    keep = known & ~bad_date
    raw, scodes = raw[keep].reset_index(drop=True), scodes[keep]
    n = len(raw)
    timing = smp.drop(columns=["bad_date", "_FILE", "_ROW"]).iloc[scodes].reset_index(drop=True)

    # test identity and unit: once per distinct (test, unit)
    tests = table.tests.set_index("lbtestcd")
    tcode, tuniq = _codes(raw["LBTESTCD"])
    tuniq = text(tuniq).str.upper()
    ucode, uuniq = _codes(raw["LBORRESU"] if "LBORRESU" in raw else pd.Series(np.nan, index=raw.index))
    uuniq = text(uuniq)
    pair = tcode.astype(np.int64) * (len(uuniq) + 1) + ucode
    pcode, puniq = pd.factorize(pair)
    p_test = tuniq.to_numpy()[puniq // (len(uuniq) + 1)]
    p_unit = uuniq.to_numpy()[puniq % (len(uuniq) + 1)]
    lk = lookup_units(pd.Series(p_test, dtype=object), pd.Series(p_unit, dtype=object), table)
    code = pd.Series(tuniq.to_numpy()[tcode], dtype=object)
    unit_raw = pd.Series(uuniq.to_numpy()[ucode], dtype=object)
    factor = lk["factor"].to_numpy()[pcode]
    unit_known = lk["unit_known"].to_numpy()[pcode]
    ct_unit = pd.Series(lk["ct_unit"].to_numpy()[pcode], dtype=object)
    si_unit = pd.Series(tuniq.map(tests["si_unit"]).fillna("").to_numpy()[tcode], dtype=object)

    def by_test(col: str) -> pd.Series:
        return pd.Series(tuniq.map(tests[col]).fillna("").to_numpy()[tcode], dtype=object)

    # results and ranges: once per distinct text
    ocode, ouniq = _codes(raw["LBORRES"] if "LBORRES" in raw else pd.Series(np.nan, index=raw.index))
    ouniq = text(ouniq)
    op = parse_results(ouniq)
    orres = pd.Series(ouniq.to_numpy()[ocode], dtype=object)
    value = op["value"].to_numpy()[ocode]
    censor = op["censor"].to_numpy()[ocode]
    numeric = op["numeric"].to_numpy()[ocode]
    has_result = ~op["missing"].to_numpy()[ocode]

    def ranges(col: str) -> tuple[pd.Series, np.ndarray]:
        c, u = _codes(raw[col] if col in raw else pd.Series(np.nan, index=raw.index))
        u = text(u)
        pr = parse_results(u)
        return pd.Series(u.to_numpy()[c], dtype=object), pr["value"].where(pr["censor"].eq(0)).to_numpy()[c]

    nrlo_txt, nrlo = ranges("LBORNRLO")
    nrhi_txt, nrhi = ranges("LBORNRHI")
    lln = np.where(unit_known, clean_number(nrlo * factor), np.nan)
    uln = np.where(unit_known, clean_number(nrhi * factor), np.nan)

    unknown_unit = has_result & ~unit_known
    if unknown_unit.any():
        bad = raw[unknown_unit]
        findings.append(make_findings(
            sid, bad, "LBORRESU", "lb.unit_unknown", "error",
            pd.Series("unit '" + unit_raw[unknown_unit] + "' of " + code[unknown_unit]
                      + " is not in specs/rules/lab_units.csv; no conversion is guessed", index=bad.index)))
    text_result = has_result & ~numeric
    if text_result.any():
        bad = raw[text_result]
        findings.append(make_findings(
            sid, bad, "LBORRES", "lb.result_not_numeric", "warning",
            pd.Series(code[text_result] + ": result '" + orres[text_result] + "' is neither a number nor <x / >x; kept as text",
                      index=bad.index)))
    converted = has_result & numeric & unit_known
    si = np.where(converted, clean_number(value * factor), np.nan)
    censor = np.where(converted, censor, 0).astype("int8")
    # LBSTRESC: formatted once per distinct (value, censor); the sign of censored values is in the key
    fmt_code, fmt_uniq = _factorize_pairs(si, censor)
    fmt_vals = censored_text(pd.Series(fmt_uniq[0]), pd.Series(fmt_uniq[1]))
    stresc = pd.Series(fmt_vals.to_numpy(dtype=object)[fmt_code], dtype=object)
    stresc = stresc.where(converted, orres.where(text_result, ""))
    stresn = np.where(censor == 0, si, np.nan)
    stresu = si_unit.where(converted | text_result, "")
    orresu = ct_unit.where(unit_known, unit_raw).where(has_result | unit_raw.ne(""), "")

    def distinct_text(col: str, upper: bool = False) -> pd.Series:
        if col not in raw:
            return pd.Series("", index=range(n), dtype=object)
        c, u = _codes(raw[col])
        u = text(u).str.upper() if upper else text(u)
        return pd.Series(u.to_numpy()[c], dtype=object)

    def raw_or_table(col: str, table_col: str) -> pd.Series:
        given = distinct_text(col, upper=True)
        return given.where(given.ne(""), by_test(table_col))

    cat = distinct_text("LBCAT", upper=True)
    lbtest = by_test("lbtest")
    rec = pd.DataFrame({
        "STUDYID": sid, "DOMAIN": "LB", "USUBJID": timing["USUBJID"], "LBTESTCD": code,
        "LBTEST": lbtest.where(lbtest.ne(""), distinct_text("LBTEST")),
        "LBCAT": cat.where(cat.ne(""), by_test("lbcat")),
        "LBORRES": orres, "LBORRESU": orresu, "LBORNRLO": nrlo_txt, "LBORNRHI": nrhi_txt,
        "LBSTRESC": stresc, "LBSTRESN": stresn, "LBSTRESU": stresu, "LBSTNRLO": lln, "LBSTNRHI": uln,
        "LBSTAT": distinct_text("LBSTAT", upper=True), "LBREASND": distinct_text("LBREASND"),
        "LBSPEC": raw_or_table("LBSPEC", "lbspec"), "LBMETHOD": raw_or_table("LBMETHOD", "lbmethod"),
        "LBDRVFL": "", "LBDTC": timing["LBDTC"], "LBDY": timing["LBDY"], "VISITNUM": timing["VISITNUM"],
        "VISIT": timing["VISIT"], "EPOCH": timing["EPOCH"], "pre": timing["pre"], "post": timing["post"],
        "_dt": timing["_dt"], "value": si, "censor": censor,
        "_ROW": raw["_ROW"].to_numpy(), "_FILE": distinct_text("_FILE"),
        # the reported unit and its factor: CTCAE thresholds stated in that unit apply (ctcae_lab rule 8)
        "ORIG_UNIT": orresu, "ORIG_FACTOR": np.where(unit_known, factor, np.nan),
    })
    rec["LLN"], rec["ULN"] = rec["LBSTNRLO"], rec["LBSTNRHI"]
    return rec, findings, rejected


def record_epoch(ctx: StudyContext, usubjid: pd.Series, dtc: pd.Series) -> pd.Series:
    """EPOCH from SE (built after EX); computed from DM and EX when SE is absent; else ``""``."""
    se = ctx.datasets.get("SE")
    if se is None and "EX" in ctx.datasets:
        se = subject_elements(ctx.datasets["DM"], ctx.datasets["EX"], ctx.study)
    if se is None or se.empty:
        return pd.Series("", index=dtc.index, dtype=object)
    return derive_epoch(usubjid, dtc, se)


# ---------------------------------------------------------------------------------------------
# derivations
# ---------------------------------------------------------------------------------------------
def reference_indicator(value: pd.Series, censor: pd.Series, lln: pd.Series, uln: pd.Series) -> pd.Series:
    """LBNRIND (CDISC CT NRIND): LOW / HIGH / NORMAL against LBSTNRLO-LBSTNRHI.

    Exact values: LOW below LLN, HIGH above ULN, NORMAL otherwise when a limit exists.
    Censored values only when certain (lab results are not negative): ``<x`` is LOW when
    x <= LLN and NORMAL when LLN <= 0 (or absent) and x <= ULN; ``>x`` is HIGH when x >= ULN.
    Anything else, and records without a result or range, stay empty.
    """
    v, c = value.to_numpy(dtype="float64"), censor.to_numpy(dtype="int8")
    lo, hi = lln.to_numpy(dtype="float64"), uln.to_numpy(dtype="float64")
    tol_lo = 1e-9 * np.abs(np.nan_to_num(lo)) + 1e-12
    tol_hi = 1e-9 * np.abs(np.nan_to_num(hi)) + 1e-12
    with np.errstate(invalid="ignore"):
        below = v < lo - tol_lo
        above = v > hi + tol_hi
        at_or_below_lo = v <= lo + tol_lo
        at_or_above_hi = v >= hi - tol_hi
        within_hi = np.isnan(hi) | (v <= hi + tol_hi)
        within_lo = np.isnan(lo) | (v >= lo - tol_lo)
    has_range = ~np.isnan(lo) | ~np.isnan(hi)
    exact = c == 0
    low = (exact & below) | ((c < 0) & at_or_below_lo)
    high = (exact & above) | ((c > 0) & at_or_above_hi)
    normal = has_range & ((exact & within_lo & within_hi)
                          | ((c < 0) & (np.isnan(lo) | (np.nan_to_num(lo) <= 0)) & within_hi))
    out = np.select([np.isnan(v), low, high, normal], ["", "LOW", "HIGH", "NORMAL"], default="")
    return pd.Series(out, index=value.index, dtype=object)


def load_crcl_parameters(spec: Spec) -> dict[str, str]:
    """Cockcroft-Gault constants from ``specs/rules/crcl_cockcroft_gault.csv``."""
    t = spec.rule("crcl_cockcroft_gault")
    p = dict(zip(t["parameter"], t["value"]))
    need = ["age_constant", "divisor", "female_factor", "creatinine_unit", "weight_unit", "min_age"]
    missing = [k for k in need if k not in p]
    if missing:
        raise ConfigError(f"specs/rules/crcl_cockcroft_gault.csv lacks {', '.join(missing)}")
    return p


def creatinine_clearance(age: pd.Series, weight_kg: pd.Series, creat_mg_dl: pd.Series, sex: pd.Series,
                         params: dict[str, str]) -> pd.Series:
    """Cockcroft-Gault creatinine clearance (mL/min; Cockcroft & Gault, Nephron 1976):

        CrCl = (140 - age) x weight[kg] / (72 x serum creatinine[mg/dL])  (x 0.85 if female)

    NaN where an input is missing, the creatinine is not positive, the sex is neither M nor F,
    or the age is below ``min_age`` (the formula is for adults; see the rule table).
    """
    a = pd.to_numeric(age, errors="coerce").to_numpy(dtype="float64")
    w = pd.to_numeric(weight_kg, errors="coerce").to_numpy(dtype="float64")
    cr = pd.to_numeric(creat_mg_dl, errors="coerce").to_numpy(dtype="float64")
    sx = sex.astype(object).where(sex.notna(), "").astype(str).to_numpy()
    k_age, k_div = float(params["age_constant"]), float(params["divisor"])
    f = np.where(sx == "F", float(params["female_factor"]), np.where(sx == "M", 1.0, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        crcl = (k_age - a) * w / (k_div * cr) * f
    ok = (a >= float(params["min_age"])) & (cr > 0) & np.isfinite(crcl)
    return pd.Series(np.where(ok, crcl, np.nan), index=age.index)


def screening_weight(ctx: StudyContext) -> pd.DataFrame:
    """Weights in kg with their dates: VS (VSTESTCD WEIGHT) when built, else the raw vs form.
    Columns USUBJID, WT_DTC, WEIGHT."""
    vs = ctx.datasets.get("VS")
    if vs is not None and not vs.empty:
        w = vs[(vs["VSTESTCD"] == "WEIGHT") & (vs["VSSTRESU"] == "kg")]
        return pd.DataFrame({"USUBJID": w["USUBJID"], "WT_DTC": w["VSDTC"],
                             "WEIGHT": pd.to_numeric(w["VSSTRESN"], errors="coerce")}).dropna(subset=["WEIGHT"])
    raw = ctx.form("vs")
    if raw.empty:
        return pd.DataFrame(columns=["USUBJID", "WT_DTC", "WEIGHT"])
    w = raw[(text(raw["VSTESTCD"]).str.upper() == "WEIGHT") & (text(raw["VSORRESU"]) == "kg")]
    iso, bad = raw_dtc(w, "VSDAT")
    return pd.DataFrame({"USUBJID": subject_ids(w, ctx.study.studyid), "WT_DTC": iso.where(~bad, ""),
                         "WEIGHT": pd.to_numeric(text(w["VSORRES"]), errors="coerce")}).dropna(subset=["WEIGHT"])


def derive_crcl_records(lb: pd.DataFrame, dm: pd.DataFrame, weights: pd.DataFrame, table: UnitTable,
                        params: dict[str, str], pre: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Derived CREATCLR records (LBDRVFL Y) from pre-exposure serum creatinine records (before
    the first lymphodepletion dose, DM.RFXSTDTC: the eligibility values).

    Weight: the pre-exposure weight nearest in time to the creatinine sample (weight is collected
    at screening only, so CrCl is not derived after treatment starts, where fluid shifts make a
    screening weight wrong). Age and sex from DM. Creatinine in mg/dL via the CREAT mg/dL row of
    lab_units.csv. Returns (records, notes) where notes (USUBJID, LBTESTCD, note) say why a
    subject has no CrCl.
    """
    cr = lb[(lb["LBTESTCD"] == CREAT_TEST) & pre & lb["value"].notna()].copy()
    cr_unit = params["creatinine_unit"]
    factor = lookup_units(cr["LBTESTCD"], pd.Series(cr_unit, index=cr.index), table)["factor"]
    if factor.isna().any():
        raise ConfigError(f"lab_units.csv has no {CREAT_TEST} row in {cr_unit} (needed for Cockcroft-Gault)")
    cr["mgdl"] = cr["value"] / factor
    demo = dm.set_index("USUBJID")
    cr["AGE"] = cr["USUBJID"].map(demo["AGE"])
    cr["SEX"] = cr["USUBJID"].map(demo["SEX"]).fillna("")
    w = weights.copy()
    # one datetime unit on both sides: pandas gives datetime64[s] for an empty or all-NaT
    # column and [us] otherwise, and merge_asof refuses keys of different units
    w["_t"] = dtc_date(w["WT_DTC"]).astype("datetime64[ns]")
    rfx = w["USUBJID"].map(demo["RFXSTDTC"]).fillna("")
    w = w[w["_t"].notna() & (before_exposure(w["WT_DTC"], rfx) | rfx.eq(""))]
    cr["_t"] = dtc_date(cr["LBDTC"]).astype("datetime64[ns]")
    cr["_pos"] = np.arange(len(cr))
    left = cr[cr["_t"].notna()].sort_values("_t", kind="mergesort")
    right = w.sort_values("_t", kind="mergesort")[["USUBJID", "_t", "WEIGHT"]]
    left = left.assign(USUBJID=left["USUBJID"].astype(object))
    right = right.assign(USUBJID=right["USUBJID"].astype(object))
    near = pd.merge_asof(left[["USUBJID", "_t", "_pos"]], right, on="_t", by="USUBJID", direction="nearest")
    cr["WEIGHT"] = pd.Series(near["WEIGHT"].to_numpy(), index=near["_pos"].to_numpy()).reindex(np.arange(len(cr))).to_numpy()
    cr["crcl"] = creatinine_clearance(cr["AGE"], cr["WEIGHT"], cr["mgdl"], cr["SEX"], params).to_numpy()
    cr["censored"] = cr["censor"].ne(0)
    cr.loc[cr["censored"], "crcl"] = np.nan

    age = pd.to_numeric(cr["AGE"], errors="coerce")
    reason = np.select(
        [age < float(params["min_age"]), age.isna(), ~cr["SEX"].isin(["M", "F"]), cr["WEIGHT"].isna(), cr["censored"]],
        ["CrCl not derived: age " + age.fillna(-1).astype(int).astype(str) + " < " + params["min_age"]
         + " (Cockcroft-Gault is for adults; no paediatric formula applied)",
         "CrCl not derived: age missing in DM", "CrCl not derived: sex is neither M nor F",
         "CrCl not derived: no pre-treatment weight", "CrCl not derived: creatinine result is censored"],
        default="")
    notes = pd.DataFrame({"USUBJID": cr["USUBJID"], "LBTESTCD": CRCL_TEST, "note": reason, "crcl": cr["crcl"]})
    notes = notes[notes["note"].ne("")].drop_duplicates("USUBJID", keep="last")
    have = set(cr.loc[cr["crcl"].notna(), "USUBJID"])
    notes = notes[~notes["USUBJID"].isin(have)][["USUBJID", "LBTESTCD", "note"]]

    d = cr[cr["crcl"].notna()].copy()
    tests = table.tests.set_index("lbtestcd")
    decimals = int(tests.at[CRCL_TEST, "decimals"] or 1)
    val = pd.Series(np.round(d["crcl"].to_numpy(dtype="float64"), decimals), index=d.index)
    unit = tests.at[CRCL_TEST, "si_unit"]
    out = pd.DataFrame({
        "STUDYID": d["STUDYID"], "DOMAIN": "LB", "USUBJID": d["USUBJID"], "LBTESTCD": CRCL_TEST,
        "LBTEST": tests.at[CRCL_TEST, "lbtest"], "LBCAT": tests.at[CRCL_TEST, "lbcat"],
        "LBORRES": format_number(val), "LBORRESU": unit, "LBORNRLO": "", "LBORNRHI": "",
        "LBSTRESC": format_number(val), "LBSTRESN": val, "LBSTRESU": unit,
        "LBSTNRLO": np.nan, "LBSTNRHI": np.nan, "LBSTAT": "", "LBREASND": "",
        "LBSPEC": tests.at[CRCL_TEST, "lbspec"], "LBMETHOD": tests.at[CRCL_TEST, "lbmethod"],
        "LBDRVFL": "Y", "LBDTC": d["LBDTC"], "value": val, "censor": np.int8(0),
        "_ROW": d["_ROW"], "_FILE": d["_FILE"], "LLN": np.nan, "ULN": np.nan,
        "LBDY": d["LBDY"], "VISITNUM": d["VISITNUM"], "VISIT": d["VISIT"], "EPOCH": d["EPOCH"],
        "pre": d["pre"], "post": d["post"], "_dt": d["_dt"], "ORIG_UNIT": unit, "ORIG_FACTOR": 1.0,
    })
    return out, notes


def sdtm_test_codes(lb: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """LBTESTCD/LBTEST as CDISC CT submission values. A CRF test code whose CT term differs
    (``lab_tests.csv`` ``sdtm_lbtestcd``/``sdtm_lbtest``, e.g. CRF BUN -> UREAN Urea Nitrogen,
    CDISC CT 2025-03-28 LBTESTCD) is renamed on output; the rule tables stay keyed by the CRF code."""
    if "sdtm_lbtestcd" not in tests.columns:
        return lb
    ren = tests[tests["sdtm_lbtestcd"].astype(str).str.strip() != ""]
    if ren.empty:
        return lb
    out = lb.copy(deep=False)  # copy-on-write: only the two renamed columns are copied
    hit = out["LBTESTCD"].isin(ren["lbtestcd"])
    names = dict(zip(ren["lbtestcd"], ren["sdtm_lbtest"]))
    out.loc[hit, "LBTEST"] = out.loc[hit, "LBTESTCD"].map(names).where(lambda s: s.astype(str).ne(""),
                                                                        out.loc[hit, "LBTEST"])
    out.loc[hit, "LBTESTCD"] = out.loc[hit, "LBTESTCD"].map(dict(zip(ren["lbtestcd"], ren["sdtm_lbtestcd"])))
    return out


def baseline_flag(lb: pd.DataFrame, dm: pd.DataFrame, spec: Spec) -> pd.Series:
    """LBLOBXFL by the shared :func:`~pipeline.derive.baseline.last_obs_before_exposure`.

    Only records that can be flagged are passed to it: pre-exposure records with a result that
    are the latest of their subject and test (ties kept). The shared function then applies its
    rule (last by date/time, then by record order) on this small frame.
    """
    cand = lb[lb["pre"] & lb["LBSTRESC"].ne("")]
    key = cand["_dt"].astype("int64").where(cand["_dt"].notna(), np.iinfo("int64").min)
    grp = [cand["USUBJID"], cand["LBTESTCD"]]
    cand = cand[key.eq(key.groupby(grp, sort=False).transform("max"))]
    rfx = cand["USUBJID"].map(by_subject(dm, "RFXSTDTC")).fillna("").astype(str)
    flag = last_obs_before_exposure(cand, ["USUBJID", "LBTESTCD"], "LBDTC", pd.Series(True, index=cand.index), rfx)
    out = pd.Series("", index=lb.index, dtype=object)
    out[flag.index[flag.eq("Y")]] = ct_term(spec, "NY", C_YES)
    return out


def baseline_columns(lb: pd.DataFrame) -> pd.DataFrame:
    """BASE, BASE_CENSOR, BASE_LLN, BASE_ULN: the subject's LBLOBXFL record of each test."""
    b = lb[lb["LBLOBXFL"] == "Y"].drop_duplicates(["USUBJID", "LBTESTCD"])
    b = b[["USUBJID", "LBTESTCD", "value", "censor", "LLN", "ULN"]].rename(
        columns={"value": "BASE", "censor": "BASE_CENSOR", "LLN": "BASE_LLN", "ULN": "BASE_ULN"})
    out = lb[["USUBJID", "LBTESTCD"]].merge(b, on=["USUBJID", "LBTESTCD"], how="left")
    out.index = lb.index
    return out[["BASE", "BASE_CENSOR", "BASE_LLN", "BASE_ULN"]]


def lb_seq(lb: pd.DataFrame) -> pd.Series:
    """LBSEQ: 1..n per subject after sorting by LBCAT, LBTESTCD, date/time, VISITNUM and CRF row
    (shared :func:`~pipeline.derive.seq.assign_seq`, on sorted integer codes of the text keys,
    which sort like the texts)."""
    keys = pd.DataFrame({"_subj": pd.factorize(lb["USUBJID"], sort=True)[0],
                         "_cat": pd.factorize(lb["LBCAT"], sort=True)[0],
                         "_test": pd.factorize(lb["LBTESTCD"], sort=True)[0],
                         "_dt": lb["_dt"], "_dtc": pd.factorize(lb["LBDTC"], sort=True)[0],
                         "VISITNUM": lb["VISITNUM"], "_ROW": lb["_ROW"]}, index=lb.index)
    return assign_seq(keys, ["_cat", "_test", "_dt", "_dtc", "VISITNUM", "_ROW"], by="_subj")


def enrolled_subjects(ctx: StudyContext) -> pd.Series:
    """USUBJIDs of enrolled subjects: DM records with a planned arm (screen failures have none)."""
    dm = ctx.datasets["DM"]
    arm = dm["ARMCD"].astype(object).where(dm["ARMCD"].notna(), "").astype(str) if "ARMCD" in dm else pd.Series("", index=dm.index)
    return dm.loc[arm.ne(""), "USUBJID"].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------
def expansion_tests(table: UnitTable) -> set[str]:
    t = table.tests
    return set(t.loc[t["lbcat"] == EXPANSION_CATEGORY, "lbtestcd"])


def is_expansion(raw: pd.DataFrame, table: UnitTable) -> pd.Series:
    """Raw lab rows that belong to PC (CAR-T expansion), by category or by test."""
    exp = expansion_tests(table)
    cat = per_distinct(raw["LBCAT"], lambda u: text(u).str.upper().eq(EXPANSION_CATEGORY)) if "LBCAT" in raw \
        else pd.Series(False, index=raw.index)
    code = per_distinct(raw["LBTESTCD"], lambda u: text(u).str.upper().isin(exp))
    return (cat.astype(bool) | code.astype(bool)).astype(bool)


def build(ctx: StudyContext) -> DomainResult:
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    if "DM" not in ctx.datasets:
        raise DataError(f"{sid}: LB needs DM, which was not built")
    dm = ctx.datasets["DM"]
    table = load_unit_table(spec)
    criteria = ctcae_lab.load_criteria(spec, ctcae_lab.check_version(spec, study))
    params = load_crcl_parameters(spec)
    raw_all = ctx.form("lb")
    raw = raw_all[~is_expansion(raw_all, table)]
    lb, findings, rejected = map_lab_records(ctx, raw, table)
    res = DomainResult()

    crcl, crcl_notes = derive_crcl_records(lb, dm, screening_weight(ctx), table, params, lb["pre"])
    lb = pd.concat([lb, crcl], ignore_index=True)
    lb["LBNRIND"] = reference_indicator(lb["value"], lb["censor"], lb["LLN"], lb["ULN"])
    lb.loc[lb["LBDRVFL"].eq("Y"), "LBNRIND"] = ""
    lb["LBLOBXFL"] = baseline_flag(lb, dm, spec)

    # CTCAE grades (the study's [safety] ctcae_version)
    gin = pd.concat([lb[["LBTESTCD", "LBSTRESU", "value", "censor", "LLN", "ULN", "post", *ctcae_lab.UNIT_COLUMNS]],
                     baseline_columns(lb)], axis=1)
    grades = ctcae_lab.grade_labs(gin, criteria)
    lb["LBTOX"], lb["LBTOXGR"] = grades.frame["LBTOX"], grades.frame["LBTOXGR"]
    for d, col in ctcae_lab.DIRECTION_COLUMNS.items():  # per-direction grades for worst_grades (not in LB)
        lb[col] = grades.by_direction[d]
    mm = grades.unit_mismatch
    findings.append(_record_findings(sid, lb[mm], "LBSTRESU", "lb.ctcae_unit_mismatch", "error",
                                     lb.loc[mm, "LBTESTCD"] + ": standard unit '" + lb.loc[mm, "LBSTRESU"]
                                     + "' is not the CTCAE criteria unit '" + grades.expected_unit[mm] + "'; not graded"))
    findings.append(_range_missing_summary(sid, lb, grades.range_missing))

    # LBSEQ and the dataset
    lb["LBSEQ"] = lb_seq(lb)
    res.datasets["LB"] = sdtm_test_codes(lb[spec.var_names("LB")].reset_index(drop=True), table.tests)

    # reports
    thresholds = eligibility.load_thresholds(study.table("eligibility_labs"), sid)
    first = study.elements["epoch"].iloc[0] if not study.elements.empty else "SCREENING"
    first_visit = float(study.visits["VISITNUM"].min()) if not study.visits.empty else np.nan
    scr = eligibility.screening_values(lb, first, first_visit)
    names = dict(zip(table.tests["lbtestcd"], table.tests["lbtest"]))
    report = eligibility.evaluate_eligibility(thresholds, scr, enrolled_subjects(ctx), sid, names, crcl_notes)
    res.reports["eligibility_labs"] = report
    failed = report[report["criterion_result"].eq("FAIL")].drop_duplicates(["USUBJID", "IETESTCD"])
    if len(failed):
        findings.append(pd.DataFrame({
            "study": sid, "file": "LB", "row": "", "column": "IETESTCD", "value": failed["IETESTCD"].to_numpy(),
            "check": "lb.eligibility_lab_failed", "severity": "warning",
            "message": ("subject " + failed["USUBJID"] + " enrolled although screening labs fail "
                        + failed["IETESTCD"] + " (see reports/eligibility_labs.csv)").to_numpy()}))
    res.reports["lb_toxicity_shift"] = ctcae_lab.worst_grades(lb, criteria)

    res.consumed = ctx.consumed_rows("lb", lb.loc[lb["LBDRVFL"].ne("Y"), "_ROW"], "LB")
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res


def _record_findings(sid: str, rows: pd.DataFrame, column: str, check: str, severity: str,
                     message: pd.Series) -> pd.DataFrame:
    if rows.empty:
        return empty(FINDING_COLUMNS)
    return pd.DataFrame({"study": sid, "file": rows["_FILE"].to_numpy(), "row": rows["_ROW"].to_numpy(),
                         "column": column, "value": rows[column].to_numpy(), "check": check, "severity": severity,
                         "message": message.to_numpy()})[FINDING_COLUMNS]


def _range_missing_summary(sid: str, lb: pd.DataFrame, missing: pd.Series) -> pd.DataFrame:
    """One warning per test whose records could not be graded for lack of a reference range."""
    if not missing.any():
        return empty(FINDING_COLUMNS)
    counts = lb.loc[missing, "LBTESTCD"].value_counts().sort_index()
    return pd.DataFrame({"study": sid, "file": "LB", "row": "", "column": "LBTOXGR", "value": counts.index.to_numpy(),
                         "check": "lb.ctcae_range_missing", "severity": "warning",
                         "message": [f"{n} {t} record(s) not graded: the reference range a CTCAE criterion needs is missing"
                                     for t, n in counts.items()]})[FINDING_COLUMNS]
