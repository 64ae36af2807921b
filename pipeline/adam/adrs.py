"""ADRS, the response analysis dataset (ADaMIG 1.3 BDS), from SDTM RS, LBDA, LB, DM and SUPPDM.

Parameters (PARAMCD; the spec's value-level metadata describes each):

- ``INVRESP``: the investigator's overall response at each post-infusion assessment, as
  collected (SDTM RS, RSTESTCD OVRLRESP, RSEVAL INVESTIGATOR).
- ``OVRLRESP``: the response derived by the study's criteria at each post-infusion assessment
  (:mod:`pipeline.rules.response`, rule tables ``specs/rules/response_<family>.csv``) from the
  SDTM criteria inputs: the RS and LBDA records whose value-level metadata names the raw column
  the rule feature is (``source = CRF rs.<column>``), the daily doses SDTM CM holds
  (``specs/rules/cm_dose_features.csv``: the autoimmune glucocorticoid dose GCDOSE on the
  assessment date), the nearest LB blood count within ``[response].count_window_days``, the
  primary diagnosis (SUPPDM) and the disease group (SUPPMH DISSUBTP of the MH primary
  diagnosis: in the autoimmune study it selects the disease's criteria).
- ``BOR`` / ``INVBOR``: best overall response within ``[response].bor_window_days``
  (``specs/rules/response_order.csv``: ranks, evaluable categories, tie = earliest).
- ``RSPDnnn`` / ``IRSPDnnn``: responder (Y/N) at protocol day nnn (``[orr].timepoint_day`` and
  ``[orr].timepoints_days``) within ``[orr].window_days``, categories ``[orr].categories``;
  every safety-population subject has a record (no assessment in the window = N).
- ``MRDSTAT``: MRD status (NEGATIVE / POSITIVE / NE) of each post-infusion MRD result by the
  rule of its method and the assay's sensitivity (``specs/rules/mrd_negativity.csv``);
- ``MRDNCR``: MRD-negative remission (CR/CRh/CRi with MRD NEGATIVE the same day) within the BOR
  window; both only in studies whose TOML has ``[response.mrd]`` (rule_set).
- ``CNSSTAT`` / ``CNSRESP``: CNS status (CNS-1/2/3 from the CSF WBC, blasts, traumatic tap and
  clinical signs, ``specs/rules/cns_status.csv``) and CNS response (CNS remission / relapse,
  ``cns_response.csv``) of each post-infusion assessment with a CSF examination; only in
  studies with ``[response.cns]``.

Traceability: SRCDOM/SRCVAR/SRCSEQ name the SDTM RS record (the investigator OVRLRESP of the
assessment, else its first record), the LBDA MRD record, or the ADRS record (ASEQ) a
subject-level parameter was chosen from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import (analysis_day, before_exposure, dtc_to_sas_date, merge_adsl, num, response_order,
                                  response_rules, sdtm_spec_of, spec_table, supp_value, text, text_values,
                                  validated_rules)
from pipeline.config import Study
from pipeline.derive.dates import dtc_date
from pipeline.errors import ConfigError
from pipeline.rules import response as R
from pipeline.spec import Spec

INVESTIGATOR = "INVESTIGATOR"
DERIVED = "SPONSOR"
ADSL_VARS = ["STUDYID", "SITEID", "TRT01P", "TRT01PN", "TRT01A", "TRT01AN", "TRTSDT", "SAFFL", "EFFFL"]
SUFFIXES = ("_BL", "_ACHG", "_RCHG")


def feature_sources(sdtm_spec: Spec) -> pd.DataFrame:
    """Where each raw response-form column went in SDTM: value-level rows of RS.RSORRES and
    LBDA.LBORRES with ``source = CRF rs.<column>`` (dataset, test code, column)."""
    vl = sdtm_spec.valuelevel
    vl = vl[vl["variable"].isin(["RSORRES", "LBORRES", "LBSPCCND"]) & vl["source"].str.startswith("CRF rs.")]
    col = vl["source"].str.replace("CRF rs.", "", regex=False).str.split(" ").str[0]
    return pd.DataFrame({"dataset": vl["dataset"].to_numpy(), "variable": vl["variable"].to_numpy(),
                         "testcd": vl["where_value"].to_numpy(), "column": col.to_numpy()})


def assessments(sdtm: dict[str, pd.DataFrame], sources: pd.DataFrame) -> pd.DataFrame:
    """One row per disease assessment (RS RSGRPID) with its criteria inputs as the raw column
    names the rules use (RSORRES / LBORRES text of the same subject and date), the RS record
    it traces to (investigator OVRLRESP, else the assessment's first record), ``_pre``
    (on or before the first CAR-T infusion, :func:`pipeline.derive.baseline.before_exposure`)
    and ``_post`` (protocol day >= 1)."""
    rs = sdtm["RS"]
    rs = rs[text(rs["RSGRPID"]) != ""].copy()
    rs["USUBJID"] = text(rs["USUBJID"])
    rs["_inv"] = (text(rs["RSTESTCD"]) == "OVRLRESP") & (text(rs["RSEVAL"]) == INVESTIGATOR)
    rs["_seq"] = num(rs["RSSEQ"])
    first = rs.sort_values(["USUBJID", "RSGRPID", "_inv", "_seq"], ascending=[True, True, False, True],
                           kind="mergesort").drop_duplicates(["USUBJID", "RSGRPID"])
    a = pd.DataFrame({"USUBJID": first["USUBJID"].to_numpy(), "RSGRPID": text(first["RSGRPID"]).to_numpy(),
                      "RSDTC": text(first["RSDTC"]).to_numpy(), "RSDY": num(first["RSDY"]).to_numpy(),
                      "VISIT": text(first["VISIT"]).to_numpy(), "VISITNUM": num(first["VISITNUM"]).to_numpy(),
                      "SRCSEQ": first["_seq"].to_numpy()})
    a["_date"] = dtc_date(a["RSDTC"])
    assessment_keys = (a["USUBJID"] + "|" + a["RSDTC"].str.slice(0, 10)).to_numpy(dtype=object)
    for ds_name, test_var, dtc_var in (("RS", "RSTESTCD", "RSDTC"), ("LBDA", "LBTESTCD", "LBDTC")):
        ds = sdtm.get(ds_name)
        src = sources[sources["dataset"] == ds_name]
        if ds is None or src.empty:
            continue
        # each (test, subject, date) of the dataset once: its last record (as a look-up of the
        # test's records by subject and date keeps the last of a key), indexed once for all inputs
        tests = text_values(ds[test_var])
        keys = (text(ds["USUBJID"]) + "|" + text(ds[dtc_var]).str.slice(0, 10)).to_numpy()  # subject and date
        test_keys = pd.Index(tests + "\x1f" + keys)
        last = np.flatnonzero(~test_keys.duplicated(keep="last"))
        lookup = test_keys[last]
        values: dict[str, np.ndarray] = {}
        for s in src.itertuples(index=False):  # a few criteria inputs (metadata loop)
            if s.column == "RSORRES" or s.variable not in ds.columns:
                continue
            if s.variable not in values:
                values[s.variable] = text_values(ds[s.variable])
            at = lookup.get_indexer(s.testcd + "\x1f" + assessment_keys)  # -1: no record of the test
            got = np.full(len(a), "", dtype=object)
            got[at >= 0] = values[s.variable][last[at[at >= 0]]]
            # a qualifier several tests share (the CSF specimen condition): the first non-empty
            prev = text_values(a[s.column]) if s.column in a.columns else np.full(len(a), "", dtype=object)
            a[s.column] = np.where(prev != "", prev, got).astype(object)
    dm = sdtm["DM"].drop_duplicates("USUBJID").set_index("USUBJID")
    rfx = text(a["USUBJID"].map(text(dm["RFXSTDTC"])))
    a["_pre"] = before_exposure(a["RSDTC"], rfx) & rfx.ne("")
    a["_post"] = R.protocol_day(a["RSDY"]) >= 1
    return a.sort_values(["USUBJID", "_date", "RSGRPID"], kind="mergesort").reset_index(drop=True)


def blood_counts(sdtm: dict[str, pd.DataFrame], tests: list[str]) -> pd.DataFrame:
    """Standard-unit blood counts of ``tests`` from SDTM LB (USUBJID, LBTESTCD, _date, value)."""
    lb = sdtm.get("LB")
    cols = ["USUBJID", "LBTESTCD", "_date", "value"]
    if lb is None or not tests:
        return pd.DataFrame(columns=cols)
    spec_ok = text(lb["LBSPEC"]).isin(["", "BLOOD"]) if "LBSPEC" in lb else True
    sub = lb[text(lb["LBTESTCD"]).isin(tests) & spec_ok]
    out = pd.DataFrame({"USUBJID": text(sub["USUBJID"]), "LBTESTCD": text(sub["LBTESTCD"]),
                        "_date": dtc_date(text(sub["LBDTC"])), "value": num(sub["LBSTRESN"])})
    return out.dropna(subset=["value", "_date"])[cols]


def nearest_counts(anchors: pd.DataFrame, counts: pd.DataFrame, tests: list[str], window_days: int
                   ) -> dict[str, pd.DataFrame]:
    """Test -> :func:`pipeline.rules.response.nearest_in_window` of the ``counts`` of that test
    (:func:`blood_counts`) for each anchor (USUBJID, _date), the same frames as one call per
    test, from one call for all of them: each anchor once per test, the subject key made of the
    subject and the test, so that an anchor only meets the results of its own subject and test
    (its nearest result, the same-date rule and the ties are those of the test's results alone).
    A test without results is a call of its own (its frame is that of no result)."""
    found = [t for t in tests if (counts["LBTESTCD"] == t).any()]
    out = {t: R.nearest_in_window(anchors, counts[counts["LBTESTCD"] == t], window_days)
           for t in tests if t not in found}  # a test without results (rare: metadata loop)
    if not found:
        return out
    n = len(anchors)
    subject = anchors["USUBJID"].astype(str).to_numpy(dtype=object)  # as nearest_in_window keys them
    stacked = pd.DataFrame({"USUBJID": np.concatenate([subject + f"\x1f{t}" for t in found]),
                            "_date": np.tile(anchors["_date"].to_numpy(), len(found))})
    c = counts[counts["LBTESTCD"].isin(found)]
    results = pd.DataFrame({"USUBJID": (c["USUBJID"].astype(str) + "\x1f" + c["LBTESTCD"].astype(str)).to_numpy(),
                            "_date": c["_date"].to_numpy(), "value": c["value"].to_numpy()})
    near = R.nearest_in_window(stacked, results, window_days)
    for k, t in enumerate(found):  # split back, one block of anchors per test
        out[t] = near.iloc[k * n:(k + 1) * n].set_axis(anchors.index)
    return out


def criteria_features(a: pd.DataFrame, rules: pd.DataFrame, counts: pd.DataFrame, window_days: int,
                      lab_tests: set[str], primdiag: pd.Series, subtype: pd.Series | None = None) -> pd.DataFrame:
    """The features the rules name, one row per assessment: criteria inputs, their baseline
    (last pre-infusion value) and absolute/relative change (``_BL``, ``_ACHG``, ``_RCHG``), the
    nearest blood count within +/- ``window_days`` (:func:`pipeline.rules.response.nearest_in_window`)
    with its date and distance, PRIMDIAG, DISSUBTP (the disease group of the MH primary diagnosis,
    SUPPMH QNAM DISSUBTP: it selects each autoimmune disease's criteria) and PRIOR_REMISSION (set by
    the derivation)."""
    needed = sorted(set(rules["feature"]))
    f = pd.DataFrame({"USUBJID": a["USUBJID"], "_date": a["_date"]}, index=a.index)
    base_cols = sorted({n[: -len(s)] for n in needed for s in SUFFIXES if n.endswith(s)})
    for col in sorted(set(needed) | set(base_cols)):
        if col in a.columns and col != "USUBJID":
            f[col] = a[col]
    for col in base_cols:
        if col not in a.columns:
            raise ConfigError(f"response rule uses {col}_BL/_ACHG/_RCHG but no SDTM variable holds rs.{col}")
        has = text(a[col]).ne("")
        pre = a[a["_pre"] & has].sort_values(["USUBJID", "_date"], kind="mergesort").drop_duplicates("USUBJID", keep="last")
        f[f"{col}_BL"] = a["USUBJID"].map(pre.set_index("USUBJID")[col])
        ch = R.change_from_baseline(a[col], f[f"{col}_BL"])
        f[f"{col}_ACHG"], f[f"{col}_RCHG"] = ch["achg"], ch["rchg"]
    tests = sorted(set(needed) & lab_tests)
    nearest = nearest_counts(f[["USUBJID", "_date"]], counts, tests, window_days)
    for test in tests:
        near = nearest[test]
        f[test], f[f"{test}_date"], f[f"{test}_days"] = near["value"], near["date"], near["days"]
    if "PRIMDIAG" in needed:
        f["PRIMDIAG"] = text(a["USUBJID"].map(primdiag))
    if "DISSUBTP" in needed:
        f["DISSUBTP"] = text(a["USUBJID"].map(subtype if subtype is not None else pd.Series(dtype="object")))
    f[R.PRIOR_REMISSION] = "N"
    unknown = [n for n in needed if n not in f.columns]
    if unknown:
        raise ConfigError(f"response rules use feature(s) {', '.join(unknown)} that no SDTM variable provides")
    return f


def cm_features(a: pd.DataFrame, cm: pd.DataFrame | None, rules: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """``a`` with the criteria inputs that SDTM CM holds (``specs/rules/cm_dose_features.csv``,
    e.g. GCDOSE = the prednisone-equivalent glucocorticoid daily dose on the assessment date,
    :func:`pipeline.rules.response.cm_daily_dose`), for the features the rules use."""
    table = R.cm_dose_features(spec)
    used = table[table["feature"].isin(set(rules["feature"]))]
    if used.empty:
        return a
    classes, freq = spec.rule("cm_drug_classes"), spec.rule("cm_frequency")
    a = a.copy()
    for r in used.itertuples(index=False):  # a few CM-based features (metadata)
        a[r.feature] = R.cm_daily_dose(a[["USUBJID", "_date"]], cm, r.cmcat, r.drug_class, classes, freq)
    return a


def derived_responses(a: pd.DataFrame, sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Criteria-derived response (``response``, ``basis``) of each post-infusion assessment and
    the features used (indexed like ``a``'s post-infusion rows)."""
    cfg = study["response"]
    rules = response_rules(spec, cfg["family"], cfg["criteria"])
    order = response_order(spec)
    lab_tests = set(spec.rule("lab_tests")["lbtestcd"])
    counts = blood_counts(sdtm, sorted(set(rules["feature"]) & lab_tests))
    primdiag = supp_value(sdtm.get("SUPPDM"), "PRIMDIAG")
    a = cm_features(a, sdtm.get("CM"), rules, spec)
    subtype = supp_value(sdtm.get("SUPPMH"), "DISSUBTP")
    feats = criteria_features(a, rules, counts, int(cfg["count_window_days"]), lab_tests, primdiag, subtype)
    post = a[a["_post"]]
    feats = feats.loc[post.index]
    if post.empty:
        empty = pd.DataFrame({"response": pd.Series(dtype="object"), "basis": pd.Series(dtype="object"),
                              R.PRIOR_REMISSION: pd.Series(dtype="object")})
        return empty, feats
    remission = set(order.loc[order["remission"], "category"])
    derived = R.derive_response(feats, rules, list(cfg["categories"]), remission)
    return R.protocol_categories(derived, dict(cfg.get("category_map", {})), list(cfg["categories"])), feats


def _records(base: pd.DataFrame, paramcd: str, avalc, srcdom, srcvar, srcseq, evaluator: str) -> pd.DataFrame:
    return pd.DataFrame({
        "USUBJID": base["USUBJID"].to_numpy(), "PARAMCD": paramcd, "AVALC": np.asarray(avalc, dtype=object),
        "ADT": dtc_to_sas_date(pd.Series(base["RSDTC"].to_numpy())).to_numpy(),
        "AVISIT": base["VISIT"].to_numpy() if "VISIT" in base else "",
        "AVISITN": base["VISITNUM"].to_numpy() if "VISITNUM" in base else np.nan,
        "RSEVAL": evaluator, "SRCDOM": srcdom, "SRCVAR": srcvar, "SRCSEQ": np.asarray(srcseq, dtype="float64"),
        "RSDTC": base["RSDTC"].to_numpy(), "RSDY": base["RSDY"].to_numpy() if "RSDY" in base else np.nan,
    })


def assessment_records(a: pd.DataFrame, derived: pd.DataFrame, sdtm: dict[str, pd.DataFrame],
                       study: Study) -> pd.DataFrame:
    """INVRESP (collected, SDTM RS investigator OVRLRESP) and OVRLRESP (derived) records of the
    post-infusion assessments. The investigator's response is RSSTRESC, the study's spelling."""
    rs = sdtm["RS"]
    inv = rs[(text(rs["RSTESTCD"]) == "OVRLRESP") & (text(rs["RSEVAL"]) == INVESTIGATOR)
             & (text(rs["RSSTRESC"]) != "")].copy()
    inv = inv[R.protocol_day(num(inv["RSDY"])) >= 1]
    inv_base = pd.DataFrame({"USUBJID": text(inv["USUBJID"]), "RSDTC": text(inv["RSDTC"]),
                             "RSDY": num(inv["RSDY"]), "VISIT": text(inv["VISIT"]), "VISITNUM": num(inv["VISITNUM"])})
    inv_rec = _records(inv_base, "INVRESP", text(inv["RSSTRESC"]), "RS", "RSSTRESC", num(inv["RSSEQ"]), INVESTIGATOR)
    post = a.loc[derived.index]
    drv = _records(post, "OVRLRESP", derived["response"], "RS", "RSGRPID", post["SRCSEQ"], DERIVED)
    drv["ABASIS"] = derived["basis"].astype(str).str.slice(0, 200).to_numpy()
    return pd.concat([inv_rec, drv], ignore_index=True)


def best_response_records(resp: pd.DataFrame, order: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """BOR (derived) and INVBOR (investigator) per subject (:func:`pipeline.rules.response.best_overall_response`),
    traced to the ADRS assessment record chosen (NE: the first assessment in the window)."""
    r = resp.rename(columns={"AVALC": "response"})
    bor = R.best_overall_response(r[["USUBJID", "RSEVAL", "RSDTC", "RSDY", "response"]], order, window_days)
    if bor.empty:
        return pd.DataFrame()
    key = ["USUBJID", "RSEVAL", "RSDTC"]
    chosen = bor.merge(resp[key + ["ASEQ"]].drop_duplicates(key), on=key, how="left")
    pday = R.protocol_day(resp["RSDY"])
    inwin = resp[(pday >= 1) & (pday <= window_days)]
    firsts = inwin.sort_values(["USUBJID", "RSEVAL", "ADT"], kind="mergesort").drop_duplicates(["USUBJID", "RSEVAL"])
    chosen = chosen.merge(firsts[["USUBJID", "RSEVAL", "ASEQ"]].rename(columns={"ASEQ": "_first"}),
                          on=["USUBJID", "RSEVAL"], how="left")
    chosen["ASEQ"] = chosen["ASEQ"].fillna(chosen["_first"])
    out = pd.DataFrame({
        "USUBJID": chosen["USUBJID"], "PARAMCD": np.where(chosen["RSEVAL"] == INVESTIGATOR, "INVBOR", "BOR"),
        "AVALC": chosen["BOR"], "ADT": dtc_to_sas_date(chosen["RSDTC"]), "RSEVAL": chosen["RSEVAL"],
        "SRCDOM": "ADRS", "SRCVAR": "ASEQ", "SRCSEQ": num(chosen["ASEQ"]), "RSDTC": chosen["RSDTC"],
        "RSDY": num(chosen["RSDY"]), "NASSESS": chosen["n_assessments"].astype("float64"),
        "NEVAL": chosen["n_evaluable"].astype("float64")})
    return out


def analysed_parameter(study: Study) -> str:
    """The derived assessment-level parameter the BOR and the responder parameters read:
    ``[orr].response`` (CMBRESP where the protocol's ORR combines marrow, CNS and extramedullary
    response), else OVRLRESP."""
    return str(study["orr"].get("response", "OVRLRESP"))


def analysis_responses(resp: pd.DataFrame, study: Study) -> pd.DataFrame:
    """INVRESP and the analysed derived parameter (:func:`analysed_parameter`)."""
    return resp[resp["PARAMCD"].isin(["INVRESP", analysed_parameter(study)])]


def timepoint_days(study: Study) -> list[int]:
    """The primary timepoint and any further ``[orr].timepoints_days`` (sorted, unique)."""
    orr = study["orr"]
    return sorted({int(orr["timepoint_day"]), *[int(x) for x in orr.get("timepoints_days", [])]})


def responder_records(resp: pd.DataFrame, adsl: pd.DataFrame, study: Study) -> pd.DataFrame:
    """RSPDnnn (derived) / IRSPDnnn (investigator): per safety-population subject and timepoint,
    Y when the assessment nearest protocol day nnn within +/- ``[orr].window_days`` (ties: the
    earlier; :func:`pipeline.rules.response.response_at_timepoint`) is in ``[orr].categories``,
    else N (no assessment in the window is N: every treated subject is in the denominator)."""
    orr = study["orr"]
    cats = set(orr["categories"])
    treated = adsl.loc[text(adsl["SAFFL"]) == "Y", "USUBJID"]
    r = resp.rename(columns={"AVALC": "response"})
    parts = []
    for day in timepoint_days(study):  # a few timepoints (metadata)
        at = R.response_at_timepoint(r[["USUBJID", "RSEVAL", "RSDTC", "RSDY", "response", "ASEQ"]],
                                     day, int(orr["window_days"]))
        at = at.merge(r[["USUBJID", "RSEVAL", "RSDTC", "ASEQ"]].drop_duplicates(["USUBJID", "RSEVAL", "RSDTC"]),
                      on=["USUBJID", "RSEVAL", "RSDTC"], how="left")
        for ev, prefix in ((DERIVED, "RSPD"), (INVESTIGATOR, "IRSPD")):  # two evaluators
            grid = pd.DataFrame({"USUBJID": treated.to_numpy()})
            g = grid.merge(at[at["RSEVAL"] == ev], on="USUBJID", how="left")
            has = g["ASEQ"].notna()
            parts.append(pd.DataFrame({
                "USUBJID": g["USUBJID"], "PARAMCD": f"{prefix}{day}",
                "AVALC": np.where(text(g["response"]).isin(cats), "Y", "N"),
                "ADT": dtc_to_sas_date(text(g["RSDTC"])), "RSEVAL": ev,
                "SRCDOM": np.where(has, "ADRS", "ADSL"), "SRCVAR": np.where(has, "ASEQ", "SAFFL"),
                "SRCSEQ": num(g["ASEQ"]), "RSDTC": text(g["RSDTC"]), "RSDY": num(g["RSDY"]),
                "ATPTDY": float(day)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


MRD_RULE_COLUMNS = ["rule_set", "lbtestcd", "method", "unit", "operator", "threshold", "max_lloq", "categories",
                    "description", "source"]


def mrd_rules(spec: Spec, study: Study) -> pd.DataFrame:
    """The rows of ``specs/rules/mrd_negativity.csv`` of the study's ``[response.mrd].rule_set``
    (one per MRD method), thresholds as float; empty when the study has no ``[response.mrd]``
    (its protocol names no MRD endpoint)."""
    cfg = study["response"].get("mrd")
    if not cfg:
        return pd.DataFrame(columns=MRD_RULE_COLUMNS)
    t = spec.rule("mrd_negativity")
    missing = [c for c in MRD_RULE_COLUMNS if c not in t.columns]
    if missing:
        raise ConfigError(f"rule table mrd_negativity: missing column(s) {', '.join(missing)}")
    rows = t[t["rule_set"] == cfg["rule_set"]].copy()
    if rows.empty:
        raise ConfigError(f"[response.mrd].rule_set {cfg['rule_set']!r} has no rows in specs/rules/mrd_negativity.csv")
    if not rows["operator"].isin(["lt"]).all():
        raise ConfigError("rule table mrd_negativity: operator must be lt (MRD negative = below the threshold)")
    for c in ("threshold", "max_lloq"):
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
        if rows[c].isna().any():
            raise ConfigError(f"rule table mrd_negativity: {c} must be a number")
    return rows.reset_index(drop=True)


def mrd_status(lbda: pd.DataFrame | None, rules: pd.DataFrame) -> pd.DataFrame:
    """MRD status of each MRD record (LBDA, LBTESTCD of the rules) by the rule of its method
    (``specs/rules/mrd_negativity.csv``):

    - a quantified result (LBSTRESN) at or above the assay's LLOQ: NEGATIVE when below
      ``threshold`` (``lt``: exactly 0.01% = 10^-4 is POSITIVE), else POSITIVE;
    - below the assay's sensitivity (LBORRES ``<LBLLOQ``, or LBSTRESN below LBLLOQ): not
      detected *at that sensitivity*: NEGATIVE when LBLLOQ <= ``max_lloq`` (the assay could see
      the threshold), else NE (not detected at 10^-3 says nothing about 10^-4);
    - not detected without a sensitivity, no result, or a method without a rule row: NE.

    Returns ``USUBJID, RSDTC (date), RSDY, LBSEQ, VISIT, VISITNUM, status, basis``."""
    cols = ["USUBJID", "RSDTC", "RSDY", "LBSEQ", "VISIT", "VISITNUM", "status", "basis"]
    if lbda is None or rules.empty:
        return pd.DataFrame(columns=cols)
    m = lbda[text(lbda["LBTESTCD"]).isin(set(rules["lbtestcd"]))]
    if m.empty:
        return pd.DataFrame(columns=cols)
    meth = text(m["LBMETHOD"]) if "LBMETHOD" in m else pd.Series("", index=m.index)
    r = rules.set_index("method")
    thr = meth.map(r["threshold"]).astype("float64")
    max_lloq = meth.map(r["max_lloq"]).astype("float64")
    val = num(m["LBSTRESN"])
    lloq = num(m["LBLLOQ"]) if "LBLLOQ" in m else pd.Series(np.nan, index=m.index)
    orres = text(m["LBORRES"])
    below = orres.str.startswith("<") | orres.str.upper().eq("NOT DETECTED") | (val < lloq).fillna(False)
    quantified = val.notna() & ~below
    pct = lambda x: x.map(lambda v: "" if pd.isna(v) else f"{v:g}%")  # noqa: E731 (formatting a few values)
    status = np.select(
        [thr.isna(), quantified & (val.round(9) < thr.round(9)), quantified,
         below & lloq.notna() & (lloq.round(9) <= max_lloq.round(9)), below & lloq.notna()],
        ["NE", "NEGATIVE", "POSITIVE", "NEGATIVE", "NE"], default="NE")
    basis = np.select(
        [thr.isna(), quantified, below & lloq.notna() & (lloq.round(9) <= max_lloq.round(9)), below & lloq.notna(),
         below],
        ["no MRD rule for method '" + meth + "'",
         "MRD " + pct(val) + np.where(val.round(9) < thr.round(9), " < ", " >= ") + pct(thr) + " (" + meth + ")",
         "not detected at sensitivity " + pct(lloq) + " <= " + pct(max_lloq) + " (" + meth + ")",
         "not detected at sensitivity " + pct(lloq) + ", worse than the " + pct(thr) + " threshold (" + meth + ")",
         "not detected, assay sensitivity not recorded"],
        default="no MRD result")
    return pd.DataFrame({"USUBJID": text(m["USUBJID"]).to_numpy(), "RSDTC": text(m["LBDTC"]).str.slice(0, 10).to_numpy(),
                         "RSDY": num(m["LBDY"]).to_numpy(), "LBSEQ": num(m["LBSEQ"]).to_numpy(),
                         "VISIT": text(m["VISIT"]).to_numpy(), "VISITNUM": num(m["VISITNUM"]).to_numpy(),
                         "status": status, "basis": np.asarray(basis, dtype=object)})


def mrd_status_records(status: pd.DataFrame) -> pd.DataFrame:
    """MRDSTAT per post-infusion MRD result: NEGATIVE / POSITIVE / NE (:func:`mrd_status`),
    ABASIS the reason, traced to the LBDA record."""
    s = status[R.protocol_day(status["RSDY"]) >= 1] if len(status) else status
    if s.empty:
        return pd.DataFrame()
    out = _records(s, "MRDSTAT", s["status"], "LB", "LBORRES", s["LBSEQ"], DERIVED)
    out["ABASIS"] = s["basis"].astype(str).str.slice(0, 200).to_numpy()
    return out


def mrd_negative_remission(resp: pd.DataFrame, status: pd.DataFrame, rules: pd.DataFrame, adsl: pd.DataFrame,
                           window_days: int) -> pd.DataFrame:
    """MRDNCR per safety-population subject: Y when a post-infusion assessment within the BOR
    window has a derived response (in the protocol's categories, after ``[response].category_map``)
    in the rule's remission categories (``specs/rules/mrd_negativity.csv``) and the MRD status
    of the same date is NEGATIVE (:func:`mrd_status`); traced to that MRD record (LB LBSEQ),
    else N traced to ADSL. Only in studies with ``[response.mrd]``."""
    if rules.empty:
        return pd.DataFrame()
    cats = set("|".join(rules["categories"]).split("|"))
    d = resp[(resp["RSEVAL"] == DERIVED) & resp["AVALC"].isin(cats)].copy()
    pday = R.protocol_day(d["RSDY"])
    d = d[(pday >= 1) & (pday <= window_days)]
    d["RSDTC"] = d["RSDTC"].str.slice(0, 10)
    neg = status[status["status"] == "NEGATIVE"][["USUBJID", "RSDTC", "LBSEQ"]]
    j = d.merge(neg, on=["USUBJID", "RSDTC"]).sort_values(["USUBJID", "ADT"], kind="mergesort")
    first = j.drop_duplicates("USUBJID")
    grid = pd.DataFrame({"USUBJID": adsl.loc[text(adsl["SAFFL"]) == "Y", "USUBJID"].to_numpy()})
    g = grid.merge(first[["USUBJID", "RSDTC", "LBSEQ", "RSDY", "AVALC"]], on="USUBJID", how="left")
    has = g["LBSEQ"].notna()
    return pd.DataFrame({"USUBJID": g["USUBJID"], "PARAMCD": "MRDNCR", "AVALC": np.where(has, "Y", "N"),
                         "ADT": dtc_to_sas_date(text(g["RSDTC"])), "RSEVAL": DERIVED,
                         "SRCDOM": np.where(has, "LB", "ADSL"), "SRCVAR": np.where(has, "LBSTRESC", "SAFFL"),
                         "SRCSEQ": g["LBSEQ"], "RSDTC": text(g["RSDTC"]), "RSDY": num(g["RSDY"]),
                         "ABASIS": np.where(has, text(g["AVALC"]) + " with MRD negative", "")})


# ---------------------------------------------------------------------------------------
# CNS status and CNS remission (NCCN ALL), studies with [response.cns]
# ---------------------------------------------------------------------------------------
def csf_blood_ratio(a: pd.DataFrame, sdtm: dict[str, pd.DataFrame], window_days: int) -> pd.Series:
    """CSF_RATIO of the NCCN traumatic-tap rule: (CSF WBC / CSF RBC) / (blood WBC / blood RBC),
    the blood counts from LB nearest the assessment within +/- ``window_days``
    (:func:`pipeline.rules.response.nearest_in_window`). CSF counts in 10^6/L, blood WBC in
    10^9/L and RBC in 10^12/L: the blood ratio is WBC / RBC / 1000. Missing (NaN) when a count
    is missing or a divisor is 0."""
    counts = blood_counts(sdtm, ["WBC", "RBC"])
    nearest = nearest_counts(a[["USUBJID", "_date"]], counts, ["WBC", "RBC"], window_days)
    wbc, rbc = nearest["WBC"]["value"], nearest["RBC"]["value"]
    csf_w = num(a["CSFWBC"]) if "CSFWBC" in a else pd.Series(np.nan, index=a.index)
    csf_r = num(a["CSFRBC"]) if "CSFRBC" in a else pd.Series(np.nan, index=a.index)
    blood = (wbc / rbc.where(rbc > 0)) / 1000.0
    return (csf_w / csf_r.where(csf_r > 0)) / blood.where(blood > 0)


def cns_statuses(a: pd.DataFrame, sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study) -> pd.DataFrame:
    """CNS status (CNS-1/2/3, NE) of every assessment with a CSF result, by the rows of
    ``specs/rules/cns_status.csv`` of ``[response.cns].criteria`` (the three-valued rule
    evaluator of :mod:`pipeline.rules.response`), and the CNS response of each post-infusion one
    by ``specs/rules/cns_response.csv`` (CNS remission: CNS-1 after CNS-2/3 at baseline; CNS
    relapse: new CNS-3 after CNS remission or from CNS-1; baseline = the last pre-infusion
    status that is not NE). Columns ``CNS``, ``CNS_basis``, ``CNSRESP``, ``CNSRESP_basis``
    aligned to ``a`` (empty text where no CSF was examined)."""
    cfg = study["response"]["cns"]
    st_rules = validated_rules(spec, "cns_status")
    st_rules = st_rules[st_rules["criteria"] == cfg["criteria"]]
    rp_rules = validated_rules(spec, "cns_response")
    rp_rules = rp_rules[rp_rules["criteria"] == cfg["criteria"]]
    if st_rules.empty or rp_rules.empty:
        raise ConfigError(f"[response.cns].criteria {cfg['criteria']!r} has no rows in specs/rules/cns_status.csv "
                          "and cns_response.csv")
    out = pd.DataFrame({"CNS": "", "CNS_basis": "", "CNSRESP": "", "CNSRESP_basis": ""}, index=a.index)
    csf_cols = [c for c in ("CSFBLAST", "CSFWBC", "CNSSIGN") if c in a.columns]
    has = pd.Series(False, index=a.index)
    for c in csf_cols:  # three raw columns
        has |= text(a[c]).ne("")
    if not has.any():
        return out
    f = pd.DataFrame(index=a.index)
    for feat in sorted(set(st_rules["feature"]) - {"CSF_RATIO"}):  # rule features (metadata)
        f[feat] = a[feat] if feat in a.columns else ""
    f["CSF_RATIO"] = csf_blood_ratio(a, sdtm, int(study["response"]["count_window_days"]))
    st = R.evaluate_criteria(f[has], st_rules, sorted(set(st_rules["category"])))
    out.loc[has, "CNS"], out.loc[has, "CNS_basis"] = st["response"], st["basis"]
    known = has & out["CNS"].ne("NE")
    base = a[a["_pre"] & known].assign(CNS=out["CNS"]).sort_values(["USUBJID", "_date"], kind="mergesort")
    base = base.drop_duplicates("USUBJID", keep="last").set_index("USUBJID")["CNS"]
    post = has & a["_post"]
    if post.any():
        g = pd.DataFrame({"USUBJID": a.loc[post, "USUBJID"], "_date": a.loc[post, "_date"],
                          "CNS": out.loc[post, "CNS"].where(out.loc[post, "CNS"].ne("NE"), ""),
                          "CNS_BL": text(a.loc[post, "USUBJID"].map(base))})
        rp = R.derive_response(g, rp_rules, sorted(set(rp_rules["category"])), {"CNS REMISSION"})
        out.loc[post, "CNSRESP"], out.loc[post, "CNSRESP_basis"] = rp["response"], rp["basis"]
    return out


def cns_records(a: pd.DataFrame, cns: pd.DataFrame) -> pd.DataFrame:
    """CNSSTAT (derived CNS status) and CNSRESP (CNS response) per post-infusion assessment
    with a CSF examination, traced to the assessment's RS record."""
    post = a[a["_post"] & cns["CNS"].ne("")]
    if post.empty:
        return pd.DataFrame()
    c = cns.loc[post.index]
    return _derived_with_basis(post, [("CNSSTAT", c["CNS"], c["CNS_basis"]),
                                      ("CNSRESP", c["CNSRESP"], c["CNSRESP_basis"])])


def _derived_with_basis(post: pd.DataFrame, params: list[tuple[str, pd.Series, pd.Series]]) -> pd.DataFrame:
    """Derived records of each (PARAMCD, value, basis) per assessment in ``post``, traced to the
    assessment's RS records (SRCDOM RS, SRCVAR RSGRPID) like OVRLRESP; ABASIS holds the basis
    text (first 200 characters, the XPT v5 limit)."""
    recs = []
    for paramcd, value, basis in params:   # loop over a few parameters, not over records
        r = _records(post, paramcd, value, "RS", "RSGRPID", post["SRCSEQ"], DERIVED)
        r["ABASIS"] = basis.astype(str).str.slice(0, 200).to_numpy()
        recs.append(r)
    return pd.concat(recs, ignore_index=True)


# ---------------------------------------------------------------------------------------
# extramedullary disease by imaging (NCCN ALL), studies with [response.emd]
# ---------------------------------------------------------------------------------------
def emd_features(sdtm: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per subject and imaging date (TR TRGRPID) with the features of
    ``specs/rules/emd_response.csv``: ``SPD`` (sum over the baseline TARGET lesions of TU of
    LDIAM x LPERP, mm2), ``SPD_BL`` (last imaging on or before the first exposure), ``SPD_RCHG``
    (% change from baseline), ``SPD_NCHG`` (% change from the nadir, the smallest SPD of the
    earlier imaging, baseline included; missing when the nadir is 0), ``NEWLES`` (a NEW lesion of
    TU measured > 0 mm), ``PETANY`` (any lesion PET positive), ``PET_BL`` (any PET positive at
    baseline); plus ``_date``, ``_pre``, ``TRDY`` and the first TRSEQ of the imaging."""
    tu, tr = sdtm.get("TU"), sdtm.get("TR")
    cols = ["USUBJID", "TRDTC", "_date", "TRDY", "TRSEQ", "VISIT", "VISITNUM", "SPD", "SPD_BL", "SPD_RCHG",
            "SPD_NCHG", "NEWLES", "PETANY", "PET_BL", "_pre"]
    if tu is None or tr is None or tr.empty:
        return pd.DataFrame(columns=cols)
    kind = pd.Series(text(tu["TUSTRESC"]).to_numpy(), index=(text(tu["USUBJID"]) + "|" + text(tu["TULNKID"])).to_numpy())
    t = pd.DataFrame({"USUBJID": text(tr["USUBJID"]), "TRDTC": text(tr["TRDTC"]).str.slice(0, 10),
                      "TRLNKID": text(tr["TRLNKID"]), "TRTESTCD": text(tr["TRTESTCD"]), "v": num(tr["TRSTRESN"]),
                      "c": text(tr["TRSTRESC"]), "TRSEQ": num(tr["TRSEQ"]), "TRDY": num(tr["TRDY"]),
                      "VISIT": text(tr["VISIT"]), "VISITNUM": num(tr["VISITNUM"])})
    t["kind"] = text((t["USUBJID"] + "|" + t["TRLNKID"]).map(kind))
    keys = ["USUBJID", "TRDTC", "TRLNKID"]
    wide = t.pivot_table(index=keys, columns="TRTESTCD", values="v", aggfunc="first")
    wide = wide.reindex(columns=["LDIAM", "LPERP"])
    les = wide.reset_index()
    les["kind"] = text((les["USUBJID"] + "|" + les["TRLNKID"]).map(kind))
    les["ppd"] = les["LDIAM"] * les["LPERP"]
    tgt = les[les["kind"] == "TARGET"]
    by = t.groupby(["USUBJID", "TRDTC"], sort=True)
    img = pd.DataFrame({"TRSEQ": by["TRSEQ"].min(), "TRDY": by["TRDY"].first(), "VISIT": by["VISIT"].first(),
                        "VISITNUM": by["VISITNUM"].first()})
    img["SPD"] = tgt.groupby(["USUBJID", "TRDTC"])["ppd"].sum(min_count=1)
    new = les[(les["kind"] == "NEW") & (les["LDIAM"] > 0)].groupby(["USUBJID", "TRDTC"]).size()
    img["NEWLES"] = np.where(img.index.isin(new.index), "Y", "N")
    petpos = t[t["TRTESTCD"] == "PETPOS"]
    pet = (petpos["c"] == "Y").groupby([petpos["USUBJID"], petpos["TRDTC"]]).any().map({True: "Y", False: "N"})
    img["PETANY"] = text(pet.reindex(img.index))
    img = img.reset_index()
    img["_date"] = dtc_date(img["TRDTC"])
    dm = sdtm["DM"].drop_duplicates("USUBJID").set_index("USUBJID")
    img["_pre"] = before_exposure(img["TRDTC"], text(img["USUBJID"].map(text(dm["RFXSTDTC"])))) & \
        text(img["USUBJID"].map(text(dm["RFXSTDTC"]))).ne("")
    bl = img[img["_pre"] & img["SPD"].notna()].drop_duplicates("USUBJID", keep="last").set_index("USUBJID")
    img["SPD_BL"] = img["USUBJID"].map(bl["SPD"])
    img["PET_BL"] = text(img["USUBJID"].map(bl["PETANY"]))
    img["SPD_RCHG"] = R.change_from_baseline(img["SPD"], img["SPD_BL"])["rchg"]
    prior_min = img.groupby("USUBJID")["SPD"].transform(lambda x: x.shift().cummin())  # per subject, few rows
    img["SPD_NCHG"] = R.change_from_baseline(img["SPD"], prior_min)["rchg"]
    return img[cols]


def emd_responses(sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study) -> pd.DataFrame:
    """EMD response (CR / PR / PD / RELAPSE / NR / NE) of each post-infusion imaging by the rows
    of ``specs/rules/emd_response.csv`` of ``[response.emd].criteria``, in time order (a
    regrowth after an EMD CR is a RELAPSE); only subjects with lesions at baseline."""
    crit = study["response"]["emd"]["criteria"]
    rules = validated_rules(spec, "emd_response")
    rules = rules[rules["criteria"] == crit]
    if rules.empty:
        raise ConfigError(f"[response.emd].criteria {crit!r} has no rows in specs/rules/emd_response.csv")
    f = emd_features(sdtm)
    f = f[f["SPD_BL"].notna() & (R.protocol_day(f["TRDY"]) >= 1)].reset_index(drop=True)
    if f.empty:
        return f.assign(response=pd.Series(dtype="object"), basis=pd.Series(dtype="object"))
    d = R.derive_response(f, rules, sorted(set(rules["category"])), {"CR"})
    return f.assign(response=d["response"].to_numpy(), basis=d["basis"].to_numpy())


def emd_records(emd: pd.DataFrame) -> pd.DataFrame:
    """EMDRESP (the EMD response) and EMDSPD (SPD in mm2: AVAL, and AVALC as text) per post-infusion imaging,
    traced to the imaging's first TR record; the SPD change from baseline is in ABASIS."""
    if emd.empty:
        return pd.DataFrame()
    base = emd.rename(columns={"TRDTC": "RSDTC", "TRDY": "RSDY"})
    rp = _records(base, "EMDRESP", emd["response"], "TR", "TRGRPID", emd["TRSEQ"], DERIVED)
    rp["ABASIS"] = emd["basis"].astype(str).str.slice(0, 200).to_numpy()
    sp = _records(base, "EMDSPD", _fmt_num(emd["SPD"]), "TR", "TRGRPID", emd["TRSEQ"], DERIVED)
    sp["_aval"] = num(emd["SPD"]).to_numpy()
    sp["ABASIS"] = ("baseline " + _fmt_num(emd["SPD_BL"]) + " mm2, change " + _fmt_num(emd["SPD_RCHG"].round(1))
                    + "%").to_numpy()
    return pd.concat([rp, sp], ignore_index=True)


def _fmt_num(x: pd.Series) -> pd.Series:
    v = num(x)
    return v.map(lambda z: "" if pd.isna(z) else f"{z:g}")  # a few values per subject


# ---------------------------------------------------------------------------------------
# overall response combining marrow, CNS and EMD, studies with [response.combined]
# ---------------------------------------------------------------------------------------
def _nearest_text(anchors: pd.DataFrame, src: pd.DataFrame, column: str, window_days: int) -> pd.Series:
    """``column`` of the ``src`` row (USUBJID, _date) nearest each anchor within the window."""
    if src.empty:
        return pd.Series("", index=anchors.index, dtype="object")
    pos = src.reset_index(drop=True)
    near = R.nearest_in_window(anchors[["USUBJID", "_date"]],
                               pd.DataFrame({"USUBJID": pos["USUBJID"], "_date": pos["_date"],
                                             "value": np.arange(len(pos), dtype="float64")}), window_days)
    idx = near["value"]
    vals = pos[column].astype(object).to_numpy()
    out = np.full(len(anchors), "", dtype=object)
    ok = idx.notna().to_numpy()
    out[ok] = vals[idx[ok].astype(int).to_numpy()]
    return pd.Series(out, index=anchors.index)


def combined_responses(a: pd.DataFrame, sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study,
                       cns: pd.DataFrame | None, emd: pd.DataFrame) -> pd.DataFrame:
    """BMRESP (blood and bone marrow response: ``[response.combined].marrow_criteria`` of
    specs/rules/response_leukemia.csv, without the EMD indicator) and CMBRESP (overall response:
    specs/rules/response_combined.csv over BM, the CNS response of the assessment and the EMD
    response of the imaging nearest it within ``[response].count_window_days``) of each
    post-infusion assessment, indexed like ``a``'s post-infusion rows."""
    cfg = study["response"]["combined"]
    sub = {**dict(study["response"]), "criteria": cfg["marrow_criteria"]}
    bm, _ = derived_responses(a, sdtm, spec, _StudyView(study, sub))
    post = a.loc[bm.index]
    f = pd.DataFrame({"USUBJID": post["USUBJID"], "_date": post["_date"], "BM": bm["response"]}, index=bm.index)
    f["CNSR"] = cns.loc[bm.index, "CNSRESP"] if cns is not None else ""
    if len(emd):
        f["EMDR"] = _nearest_text(f, emd.assign(_date=pd.to_datetime(emd["_date"])), "response",
                                  int(study["response"]["count_window_days"]))
    else:
        f["EMDR"] = ""
    rules = validated_rules(spec, "response_combined")
    rules = rules[rules["criteria"] == cfg["criteria"]]
    if rules.empty:
        raise ConfigError(f"[response.combined].criteria {cfg['criteria']!r} has no rows in "
                          "specs/rules/response_combined.csv")
    out = R.evaluate_criteria(f, rules, sorted(set(rules["category"])))
    return pd.DataFrame({"BM": bm["response"], "BM_basis": bm["basis"], "CMB": out["response"],
                         "CMB_basis": "BM " + f["BM"].astype(str) + "; CNS " + f["CNSR"].astype(str).replace("", "-")
                         + "; EMD " + f["EMDR"].astype(str).replace("", "-") + ": " + out["basis"].astype(str)},
                        index=bm.index)


class _StudyView:
    """A study whose ``[response]`` table is replaced (the marrow component's criteria)."""

    def __init__(self, study: Study, response: dict):
        self._study, self._response = study, response

    def __getitem__(self, key):
        return self._response if key == "response" else self._study[key]


def combined_records(a: pd.DataFrame, comb: pd.DataFrame) -> pd.DataFrame:
    """BMRESP and CMBRESP per post-infusion assessment, traced like OVRLRESP."""
    if comb.empty:
        return pd.DataFrame()
    post = a.loc[comb.index]
    return _derived_with_basis(post, [("BMRESP", comb["BM"], comb["BM_basis"]),
                                      ("CMBRESP", comb["CMB"], comb["CMB_basis"])])


def parameters(spec: Spec, adrs: pd.DataFrame) -> pd.DataFrame:
    """PARAM from the decode of the ADaM spec's ADRS.PARAMCD codelist (``specs/adam/codelists``);
    a timepoint the codelist lacks is a configuration error (add its RSPDnnn/IRSPDnnn terms)."""
    decode = spec.decode_map("ADRS.PARAMCD")
    unknown = sorted(set(adrs["PARAMCD"]) - set(decode))
    if unknown:
        raise ConfigError(f"ADRS parameters {', '.join(unknown)} are not terms of codelist ADRS.PARAMCD in specs/adam/codelists")
    adrs["PARAM"] = adrs["PARAMCD"].map(decode)
    return adrs


def build(sdtm: dict[str, pd.DataFrame], adam: dict[str, pd.DataFrame], spec: Spec, study: Study) -> dict:
    """ADRS (see module docstring) plus ``_resp`` (assessment-level responses) and ``_features``
    for the response reports built by :mod:`pipeline.adam.reports`."""
    adsl = adam["ADSL"]
    if "RS" not in sdtm or sdtm["RS"].empty:
        return {}
    a = assessments(sdtm, spec_table(sdtm_spec_of(spec), "feature_sources", feature_sources))
    derived, feats = derived_responses(a, sdtm, spec, study)
    order = response_order(spec)
    cfg = study["response"]
    resp = assessment_records(a, derived, sdtm, study)
    cns = cns_statuses(a, sdtm, spec, study) if cfg.get("cns") else None
    cns_recs = cns_records(a, cns) if cns is not None else pd.DataFrame()
    emd = emd_responses(sdtm, spec, study) if cfg.get("emd") else pd.DataFrame()
    emd_recs = emd_records(emd)
    comb = combined_responses(a, sdtm, spec, study, cns, emd) if cfg.get("combined") else pd.DataFrame()
    comb_recs = combined_records(a, comb)
    if len(comb_recs):
        resp = pd.concat([resp, comb_recs], ignore_index=True)
    resp = resp.sort_values(["USUBJID", "RSEVAL", "ADT", "PARAMCD"], kind="mergesort").reset_index(drop=True)
    resp["ASEQ"] = np.arange(1, len(resp) + 1, dtype="float64")  # provisional, renumbered below
    analysed = analysis_responses(resp, study)
    bor = best_response_records(analysed, order, int(cfg["bor_window_days"]))
    rsp = responder_records(analysed, adsl, study)
    mrules = mrd_rules(spec, study)
    mstat = mrd_status(sdtm.get("LBDA"), mrules)
    mrd = mrd_negative_remission(resp[resp["PARAMCD"] == "OVRLRESP"], mstat, mrules, adsl,
                                 int(cfg["bor_window_days"]))
    mrd_recs = mrd_status_records(mstat)
    adrs = pd.concat([x for x in (resp, bor, rsp, mrd, mrd_recs, cns_recs, emd_recs) if len(x)], ignore_index=True)
    adrs = merge_adsl(adrs, adsl, ADSL_VARS)
    adrs["ADY"] = analysis_day(adrs["ADT"], adrs["TRTSDT"])
    rank = dict(zip(order["category"], order["rank"]))
    adrs["AVAL"] = num(adrs["AVALC"].map(rank))
    if "_aval" in adrs:
        adrs["AVAL"] = num(adrs["_aval"]).where(num(adrs["_aval"]).notna(), adrs["AVAL"])
        adrs = adrs.drop(columns="_aval")
    adrs = parameters(spec, adrs)
    # ASEQ: 1..n per subject in a stable order; records chosen by ASEQ keep their link
    adrs["_o"] = adrs["PARAMCD"].map({"INVRESP": 0, "OVRLRESP": 1}).fillna(2)
    adrs = adrs.sort_values(["USUBJID", "_o", "PARAMCD", "ADT", "RSEVAL"], kind="mergesort", na_position="last")
    new = adrs.groupby("USUBJID").cumcount().astype("float64") + 1
    remap = pd.Series(new.to_numpy(), index=pd.MultiIndex.from_arrays([adrs["USUBJID"], adrs["ASEQ"]]))
    linked = adrs["SRCDOM"] == "ADRS"
    keys = pd.MultiIndex.from_arrays([adrs["USUBJID"], adrs["SRCSEQ"]])
    adrs.loc[linked, "SRCSEQ"] = remap[~remap.index.duplicated()].reindex(keys).to_numpy()[linked.to_numpy()]
    is_assess = adrs["PARAMCD"].isin(["INVRESP", "OVRLRESP"])
    adrs["ASEQ"] = new
    adrs = adrs.drop(columns="_o")
    resp_out = adrs[is_assess].rename(columns={"AVALC": "response"})
    return {"ADRS": adrs, "_resp": resp_out, "_features": (a, derived, feats)}
