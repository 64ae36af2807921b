"""Response reports built from ADRS (they used to be computed inside the SDTM RS module).

Same names and columns as before, so that the listings keep rendering them:

- ``response_assessments``: every post-infusion assessment with the two ADRS parameters side by
  side (INVRESP, OVRLRESP), the derivation basis and every criteria input used;
- ``response_discrepancies``: the assessments where the two parameters differ;
- ``bor``: ADRS BOR/INVBOR per subject and evaluator;
- ``orr_summary``: ORR at the protocol timepoints with the exact 95% CI
  (:func:`pipeline.rules.response.objective_response_rate`), denominator the safety population;
- ``event_dates``: first response, first progression/relapse, death and last known alive dates;
- ``dlt_by_dose_level``: DLT-evaluable subjects and DLTs per actual dose level with the
  escalation decision of ``specs/rules/dose_escalation.csv`` (3+3);
- ``cellular_kinetics_by_dose``: ADPP parameters summarised by actual dose level;
- ``km_summary``: Kaplan-Meier median and 95% CI of every ADTTE parameter, by dose level and
  overall (:mod:`pipeline.adam.km`);
- ``icaht_summary``: subjects by early and late ICAHT grade (ADLB ICAHTE/ICAHTL), by dose level
  and overall.
"""

from __future__ import annotations

import pandas as pd

from pipeline.adam.adrs import DERIVED, INVESTIGATOR, analysed_parameter, timepoint_days
from pipeline.adam.common import from_sas_date, response_order, sas_date_texts, text
from pipeline.config import Study
from pipeline.rules import response as R
from pipeline.spec import Spec

EVALUATORS = [INVESTIGATOR, DERIVED]


def _iso(days: pd.Series) -> pd.Series:
    """SAS dates as ISO 8601 text (object, ``""`` when missing), by numpy where it can
    (:func:`pipeline.adam.common.sas_date_texts`)."""
    texts = sas_date_texts(days)
    if texts is None:  # not whole days in range: the pandas datetimes
        ts = from_sas_date(days)
        return ts.dt.strftime("%Y-%m-%d").astype("object").where(ts.notna(), "")
    return pd.Series(texts, index=days.index, name=days.name, dtype=object)


def response_assessments(adrs: pd.DataFrame, features: tuple) -> pd.DataFrame:
    """One row per post-infusion assessment: investigator (INVRESP) and derived (OVRLRESP)
    response, basis and the features of the derivation."""
    a, derived, feats = features
    cols = ["USUBJID", "VISIT", "VISITNUM", "RSDTC", "RSDY", "investigator_response", "derived_response",
            "derivation_basis"]
    if derived.empty:
        return pd.DataFrame(columns=cols)
    sub = a.loc[derived.index]
    inv = adrs[adrs["PARAMCD"] == "INVRESP"]
    inv_map = pd.Series(text(inv["AVALC"]).to_numpy(),
                        index=pd.MultiIndex.from_arrays([text(inv["USUBJID"]), _iso(inv["ADT"])]))
    inv_map = inv_map[~inv_map.index.duplicated()]
    key = pd.MultiIndex.from_arrays([sub["USUBJID"], sub["RSDTC"].str.slice(0, 10)])
    out = pd.DataFrame({
        "USUBJID": sub["USUBJID"].to_numpy(), "VISIT": sub["VISIT"].to_numpy(), "VISITNUM": sub["VISITNUM"].to_numpy(),
        "RSDTC": sub["RSDTC"].to_numpy(), "RSDY": sub["RSDY"].to_numpy(),
        "investigator_response": inv_map.reindex(key).fillna("").to_numpy(),
        "derived_response": derived["response"].to_numpy(), "derivation_basis": derived["basis"].to_numpy()})
    for col in [c for c in feats.columns if c not in ("USUBJID", "_date", R.PRIOR_REMISSION)]:
        v = feats[col]
        if pd.api.types.is_datetime64_any_dtype(v):
            v = v.dt.strftime("%Y-%m-%d").fillna("")
        out[col.lower()] = v.to_numpy()
    out["prior_remission"] = derived[R.PRIOR_REMISSION].to_numpy()
    return out.sort_values(["USUBJID", "RSDTC"], kind="mergesort").reset_index(drop=True)


def response_discrepancies(assess: pd.DataFrame) -> pd.DataFrame:
    """Assessments where ADRS INVRESP and OVRLRESP differ (NE against a category counts)."""
    return assess[assess["investigator_response"] != assess["derived_response"]].reset_index(drop=True)


def bor_report(adrs: pd.DataFrame, study: Study) -> pd.DataFrame:
    b = adrs[adrs["PARAMCD"].isin(["BOR", "INVBOR"])]
    return pd.DataFrame({"USUBJID": b["USUBJID"].to_numpy(), "RSEVAL": b["RSEVAL"].to_numpy(),
                         "BOR": b["AVALC"].to_numpy(), "RSDTC": _iso(b["ADT"]).to_numpy(),
                         "RSDY": b["ADY"].to_numpy(), "n_assessments": b["NASSESS"].to_numpy(),
                         "n_evaluable": b["NEVAL"].to_numpy(), "RSCAT": study["response"]["criteria"]})


def _resp(adrs: pd.DataFrame, study: Study) -> pd.DataFrame:
    r = adrs[adrs["PARAMCD"].isin(["INVRESP", analysed_parameter(study)])]
    return pd.DataFrame({"USUBJID": r["USUBJID"].to_numpy(), "RSEVAL": r["RSEVAL"].to_numpy(),
                         "RSDTC": _iso(r["ADT"]).to_numpy(), "RSDY": r["ADY"].to_numpy(),
                         "response": r["AVALC"].to_numpy()})


def orr_summary(adrs: pd.DataFrame, adsl: pd.DataFrame, study: Study) -> pd.DataFrame:
    """ORR per evaluator at the primary timepoint and every ``[orr].timepoints_days``."""
    orr = study["orr"]
    treated = adsl.loc[text(adsl["SAFFL"]) == "Y", "USUBJID"]
    denominator = "safety population (ADSL.SAFFL Y: received CAR-T); no assessment in the window or NE = non-responder"
    resp = _resp(adrs, study)
    parts = [R.objective_response_rate(resp, treated, orr["categories"], day, int(orr["window_days"]), EVALUATORS,
                                       study.studyid, orr["label"], denominator,
                                       primary=day == int(orr["timepoint_day"]))
             for day in timepoint_days(study)]  # a few timepoints
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["RSEVAL", "timepoint_day"], kind="mergesort").reset_index(drop=True)


def event_dates(adrs: pd.DataFrame, adsl: pd.DataFrame, spec: Spec, study: Study) -> pd.DataFrame:
    """Event dates per treated subject and evaluator (:func:`pipeline.rules.response.event_dates`)."""
    t = adsl[text(adsl["SAFFL"]) == "Y"]
    subjects = pd.DataFrame({"USUBJID": t["USUBJID"].to_numpy(), "RFSTDTC": _iso(t["TRTSDT"]).to_numpy(),
                             "DTHDTC": _iso(t["DTHDT"]).to_numpy()})
    alive = pd.Series(_iso(t["LSTALVDT"]).to_numpy(), index=t["USUBJID"].to_numpy())
    return R.event_dates(_resp(adrs, study), subjects, study["orr"]["categories"], response_order(spec), alive, EVALUATORS)


def response_reports(adam: dict[str, pd.DataFrame], extras: dict, spec: Spec, study: Study) -> dict[str, pd.DataFrame]:
    """The DLT report and the five response reports (those only when the study has ADRS)."""
    out = {"dlt_by_dose_level": dlt_by_dose_level(adam["ADSL"], spec, study)}
    if "ADTTE" in adam:
        from pipeline.adam.km import km_summary

        out["km_summary"] = km_summary(adam["ADTTE"])
    if "ADLB" in adam:
        out["icaht_summary"] = icaht_summary(adam["ADLB"], adam["ADSL"])
    if "ADPP" in adam:
        from pipeline.adam.adpp import by_dose_level

        out["cellular_kinetics_by_dose"] = by_dose_level(adam["ADPP"])
    if "ADRS" not in adam or "_features" not in extras:
        return out
    adrs, adsl = adam["ADRS"], adam["ADSL"]
    assess = response_assessments(adrs, extras["_features"])
    out.update({"response_assessments": assess, "response_discrepancies": response_discrepancies(assess),
                "bor": bor_report(adrs, study), "orr_summary": orr_summary(adrs, adsl, study),
                "event_dates": event_dates(adrs, adsl, spec, study)})
    depth = leukemia_depth(adrs)
    if len(depth):
        out["leukemia_depth"] = depth
    return out


#: ADRS parameters of the leukemia depth listing (MRD, CNS, extramedullary, combined response)
DEPTH_PARAMS = ["MRDSTAT", "MRDNCR", "CNSSTAT", "CNSRESP", "EMDSPD", "EMDRESP", "BMRESP", "CMBRESP"]


def leukemia_depth(adrs: pd.DataFrame) -> pd.DataFrame:
    """MRD status, MRD-negative remission, CNS status and response, EMD SPD and response, and the
    combined overall response per subject and date, with the basis of each (from ADRS)."""
    d = adrs[adrs["PARAMCD"].isin(DEPTH_PARAMS)].copy()
    if d.empty:
        return pd.DataFrame()
    d["_o"] = d["PARAMCD"].map({p: k for k, p in enumerate(DEPTH_PARAMS)})
    d = d.sort_values(["USUBJID", "ADT", "_o"], kind="mergesort", na_position="last")
    return pd.DataFrame({"USUBJID": d["USUBJID"].to_numpy(), "PARAMCD": d["PARAMCD"].to_numpy(),
                         "PARAM": d["PARAM"].to_numpy(), "ADT": _iso(d["ADT"]).to_numpy(), "ADY": d["ADY"].to_numpy(),
                         "AVALC": d["AVALC"].to_numpy(), "ABASIS": d["ABASIS"].to_numpy(),
                         "SRCDOM": d["SRCDOM"].to_numpy(), "SRCSEQ": d["SRCSEQ"].to_numpy()})


def dlt_by_dose_level(adsl: pd.DataFrame, spec: Spec, study: Study) -> pd.DataFrame:
    """Per actual dose level (TRT01AN/TRT01A): safety and DLT-evaluable subjects, subjects with a
    DLT, and the escalation decision of the first row of ``specs/rules/dose_escalation.csv``
    whose evaluable-count and DLT-count ranges contain the level's."""
    rules = spec.rule("dose_escalation")
    s = adsl[text(adsl["SAFFL"]) == "Y"]
    ev = s[text(s["DLTEVLFL"]) == "Y"]
    g = s.groupby(["TRT01AN", "TRT01A"], dropna=False).size().rename("n_safety").reset_index()
    by = ev.assign(_dlt=ev["DLTFL"] == "Y").groupby(["TRT01AN", "TRT01A"], dropna=False)
    e = pd.DataFrame({"n_dlt_evaluable": by.size(), "n_with_dlt": by["_dlt"].sum()}).reset_index()
    out = g.merge(e, on=["TRT01AN", "TRT01A"], how="left").fillna({"n_dlt_evaluable": 0, "n_with_dlt": 0})
    out["decision"], out["rule"] = "", ""
    for r in rules.sort_values("rule", key=lambda c: c.astype(int)).to_dict("records"):  # a few rule rows
        n, d = out["n_dlt_evaluable"], out["n_with_dlt"]
        hit = (out["decision"] == "") & n.between(int(r["n_min"]), int(r["n_max"])) & \
            d.between(int(r["dlt_min"]), int(r["dlt_max"]))
        out.loc[hit, "decision"], out.loc[hit, "rule"] = r["decision"], r["rule"]
    out["dlt_window_days"] = study.dlt_window_days
    out.insert(0, "STUDYID", study.studyid)
    return out.sort_values("TRT01AN", kind="mergesort").reset_index(drop=True)


ICAHT_PARAMS = ("ICAHTE", "ICAHTL")
ICAHT_GRADES = (0, 1, 2, 3, 4)


def icaht_summary(adlb: pd.DataFrame, adsl: pd.DataFrame) -> pd.DataFrame:
    """Per ICAHT parameter (ADLB ICAHTE early, ICAHTL late) and actual dose level (TRT01AN/
    TRT01A, then all subjects as ``ALL``): the safety-population subjects with the parameter
    (n), the number (%) of them at each grade 0-4 (AVAL) and at grade 3 or higher (severe
    ICAHT, Rejeski et al., Blood 2023). Percentages of n, one decimal."""
    safety = set(text(adsl.loc[text(adsl["SAFFL"]) == "Y", "USUBJID"]))
    r = adlb[text(adlb["PARAMCD"]).isin(ICAHT_PARAMS) & text(adlb["USUBJID"]).isin(safety)]
    r = r.assign(PARAMCD=text(r["PARAMCD"]), TRT01A=text(r["TRT01A"]), grade=pd.to_numeric(r["AVAL"], errors="coerce"))
    both = pd.concat([r, r.assign(TRT01AN=float("nan"), TRT01A="ALL")], ignore_index=True)
    keys = ["PARAMCD", "PARAM", "TRT01AN", "TRT01A"]
    n = both.groupby(keys, dropna=False).size().rename("n")
    counts = both.groupby(keys + ["grade"], dropna=False).size().unstack("grade", fill_value=0)
    counts = counts.reindex(columns=[float(g) for g in ICAHT_GRADES], fill_value=0)
    out = n.to_frame().join(counts).reset_index()

    def cell(k: pd.Series) -> pd.Series:
        pct = (100.0 * k / out["n"]).round(1)
        return k.astype(int).astype(str) + " (" + pct.map("{:.1f}".format) + ")"

    for g in ICAHT_GRADES:  # five grade columns
        out[f"grade_{g}"] = cell(out[float(g)])
    out["grade_3_or_more"] = cell(out[[3.0, 4.0]].sum(axis=1))
    out["_all"] = out["TRT01A"] == "ALL"
    out = out.sort_values(["PARAMCD", "_all", "TRT01AN"], kind="mergesort")
    cols = keys + ["n"] + [f"grade_{g}" for g in ICAHT_GRADES] + ["grade_3_or_more"]
    return out[cols].reset_index(drop=True)
