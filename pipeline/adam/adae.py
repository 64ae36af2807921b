"""ADAE, the adverse event analysis dataset (ADaMIG 1.3 OCCDS; ADaM Structure for Occurrence
Data 1.1), from SDTM AE, FA, CM and RELREC and ADSL.

One record per investigator-reported AE (SDTM AE record; AE records of category DAILY
CRS/ICANS ASSESSMENT, derived episodes of an older SDTM build, are analysis results and are
not carried). Rules as data:

- partial dates: ``specs/rules/adam_date_imputation.csv`` (ASTDT/ASTDTF, AENDT/AENDTF);
- DLT: ``specs/rules/dlt_definition.csv`` and ``dlt_relatedness.csv``, within the window
  ``[safety].dlt_window_days`` of the study parameters;
- the ASTCT 2019 grade of a CRS/ICANS AE is the highest daily ASTCT grade (SDTM FA, FATESTCD
  TOXGR) of the FA records related to the AE in RELREC (the investigator's grade stays AETOXGR).

- whether tocilizumab (TOCIFL) or a corticosteroid (CSTRFL) was given for a CRS/ICANS AE: the
  SDTM CM records related to the AE in RELREC (``specs/rules/adae_cm_flags.csv``); the FA daily
  assessments also say whether an antipyretic or anti-cytokine therapy was given (ACYTOFL).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import analysis_day, dtc_to_sas_date, merge_adsl, num, protocol_day, sas_date, text, yn
from pipeline.config import Study
from pipeline.errors import ConfigError
from pipeline.spec import Spec

EPISODE_CATEGORY = "DAILY CRS/ICANS ASSESSMENT"
ADSL_VARS = ["SITEID", "AGE", "SEX", "RACE", "TRT01P", "TRT01PN", "TRT01A", "TRT01AN", "TRTSDT", "TRTEDT",
             "SAFFL", "DTHDT", "DCUTDT"]
IMPUTE_TO = ("first_of_month", "first_of_year", "last_of_month", "last_of_year", "none")


def _parts(dtc: pd.Series) -> pd.DataFrame:
    """Year, month, day of ISO date text (NaN where absent)."""
    t = text(dtc).str.slice(0, 10)
    m = t.str.extract(r"^(?P<y>\d{4})(?:-(?P<m>\d{2}))?(?:-(?P<d>\d{2}))?")
    return m.apply(pd.to_numeric, errors="coerce") if len(m) else pd.DataFrame({"y": [], "m": [], "d": []})


def impute_date(dtc: pd.Series, rules: pd.DataFrame, target: str, trtsdt: pd.Series,
                ceiling: pd.Series) -> pd.DataFrame:
    """Analysis date (SAS) and imputation flag of ISO ``dtc`` by the ``target`` rows of
    ``specs/rules/adam_date_imputation.csv`` (ADaMIG 1.3 section 3.1.5: flag D when the day was
    imputed, M when month and day, null when complete; year missing: no date).

    ``limit`` TRTSDT_same_month / TRTSDT_same_year: a start imputed before TRTSDT in the same
    month / year becomes TRTSDT. DTHDT_CUTOFF: an imputed end is at most ``ceiling`` (the
    earlier of death and data cut-off); RFICDT: an imputed history date is at most ``ceiling``
    (informed consent)."""
    rules = rules[rules["target"] == target].set_index("missing")
    bad = set(rules["impute_to"]) - set(IMPUTE_TO)
    if bad:
        raise ConfigError(f"adam_date_imputation.csv: unknown impute_to {sorted(bad)} for {target}")
    p = _parts(dtc)
    y, m, d = p["y"], p["m"], p["d"]
    missing = np.select([y.isna(), m.isna(), d.isna()], ["Y", "M", "D"], "")
    if not len(p):
        return pd.DataFrame({"dt": pd.Series(dtype="float64"), "flag": pd.Series(dtype="object")})
    complete = pd.to_datetime(pd.DataFrame({"year": y, "month": m, "day": d}), errors="coerce")
    out = sas_date(complete)
    flag = pd.Series("", index=p.index, dtype="object")
    trt = pd.Series(np.asarray(trtsdt, dtype="float64"), index=p.index)
    ceil = pd.Series(np.asarray(ceiling, dtype="float64"), index=p.index)
    for miss in ("D", "M"):  # two cases of the rule table (metadata)
        if miss not in rules.index:
            continue
        r = rules.loc[miss]
        sel = pd.Series(missing == miss, index=p.index)
        if r["impute_to"] == "none" or not sel.any():
            continue
        yy = y[sel]
        mm = m[sel] if miss == "D" else pd.Series(np.where(r["impute_to"].startswith("first"), 1, 12), index=yy.index)
        first = pd.to_datetime(pd.DataFrame({"year": yy, "month": mm, "day": 1}), errors="coerce")
        if r["impute_to"] in ("first_of_month", "first_of_year"):
            val = sas_date(first)
        else:
            val = sas_date(first + pd.offsets.MonthEnd(0))
        limit = str(r["limit"])
        if limit.startswith("TRTSDT"):
            tr = pd.to_datetime(SAS_EPOCH + pd.to_timedelta(trt[sel], unit="D"))
            same = (tr.dt.year == yy) & ((tr.dt.month == mm) if limit == "TRTSDT_same_month" else True)
            val = val.where(~(same & (val < trt[sel])), trt[sel])
        elif limit in ("DTHDT_CUTOFF", "RFICDT"):  # the caller passes that ceiling
            val = val.where(~(val > ceil[sel]), ceil[sel])
        out.loc[sel] = val
        flag.loc[sel] = r["flag"]
    return pd.DataFrame({"dt": out.astype("float64"), "flag": flag})


SAS_EPOCH = pd.Timestamp("1960-01-01")


def analysis_dates(ae: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """ASTDT/ASTDTF and AENDT/AENDTF (rules: :func:`impute_date`); an imputed end before the
    start is set to the start."""
    rules = spec.rule("adam_date_imputation")
    ceiling = pd.concat([num(ae["DTHDT"]), num(ae["DCUTDT"])], axis=1).min(axis=1)
    st = impute_date(ae["AESTDTC"], rules, "ASTDT", ae["TRTSDT"], ceiling)
    en = impute_date(ae["AEENDTC"], rules, "AENDT", ae["TRTSDT"], ceiling)
    fix = (en["flag"] != "") & (en["dt"] < st["dt"])
    en.loc[fix, "dt"] = st.loc[fix, "dt"]
    return pd.DataFrame({"ASTDT": st["dt"].to_numpy(), "ASTDTF": st["flag"].to_numpy(),
                         "AENDT": en["dt"].to_numpy(), "AENDTF": en["flag"].to_numpy()}, index=ae.index)


def treatment_emergent(astdt: pd.Series, trtsdt: pd.Series, followup_months: int) -> pd.Series:
    """TRTEMFL = Y when the AE starts on or after the CAR-T infusion date (TRTSDT) and no later
    than ``[safety].ae_followup_months`` after it (months of 30.4375 days); an AE with no start
    date at all is counted as treatment-emergent when the subject was treated (conservative,
    ADaMIG 1.3 OCCDS TRTEMFL; project rule)."""
    limit = trtsdt + followup_months * 30.4375
    inside = (astdt >= trtsdt) & (astdt <= limit)
    unknown = astdt.isna() & trtsdt.notna()
    return yn(inside | unknown)


def astct_grade(ae: pd.DataFrame, fa: pd.DataFrame | None, relrec: pd.DataFrame | None) -> pd.Series:
    """ASTCTGRN: highest daily ASTCT 2019 grade (FA FATESTCD TOXGR, FASTRESN) of the FA records
    related to the AE in RELREC (AE by AESEQ, FA by FAGRPID, same RELID; SDTMIG 3.4 8.2), with
    FAOBJ equal to the AE's AEDECOD. Null when the AE has no related daily assessment."""
    out = pd.Series(np.nan, index=ae.index, dtype="float64")
    if fa is None or relrec is None or fa.empty or relrec.empty:
        return out
    rr = relrec.assign(USUBJID=text(relrec["USUBJID"]), IDVAR=text(relrec["IDVAR"]), RDOMAIN=text(relrec["RDOMAIN"]))
    a = rr[(rr["RDOMAIN"] == "AE") & (rr["IDVAR"] == "AESEQ")]
    f = rr[(rr["RDOMAIN"] == "FA") & (rr["IDVAR"] == "FAGRPID")]
    links = a[["USUBJID", "IDVARVAL", "RELID"]].rename(columns={"IDVARVAL": "AESEQ"}).merge(
        f[["USUBJID", "IDVARVAL", "RELID"]].rename(columns={"IDVARVAL": "FAGRPID"}), on=["USUBJID", "RELID"])
    tox = fa[text(fa["FATESTCD"]) == "TOXGR"]
    tox = pd.DataFrame({"USUBJID": text(tox["USUBJID"]), "FAGRPID": text(tox["FAGRPID"]),
                        "FAOBJ": text(tox["FAOBJ"]).str.upper(), "grade": num(tox["FASTRESN"])})
    links["AESEQ"] = num(links["AESEQ"])
    m = links.merge(tox, on=["USUBJID", "FAGRPID"])
    worst = m.groupby(["USUBJID", "AESEQ", "FAOBJ"])["grade"].max()
    key = pd.MultiIndex.from_arrays([text(ae["USUBJID"]), num(ae["AESEQ"]), text(ae["AEDECOD"]).str.upper()])
    return pd.Series(worst.reindex(key).to_numpy(dtype="float64"), index=ae.index)


def anticytokine_given(ae: pd.DataFrame, fa: pd.DataFrame | None) -> pd.Series:
    """ACYTOFL = Y when an FA daily assessment of the AE's event (FAOBJ = AEDECOD) dated
    within [ASTDT, AENDT] (AENDT missing: to the data cut-off) records an antipyretic or
    anti-cytokine therapy (FATESTCD ANTIPYR = Y). Only for AEs whose event has daily
    assessments; null otherwise."""
    out = pd.Series("", index=ae.index, dtype="object")
    if fa is None or fa.empty:
        return out
    ap = fa[(text(fa["FATESTCD"]) == "ANTIPYR") & (text(fa["FASTRESC"]) == "Y")]
    days = pd.DataFrame({"USUBJID": text(ap["USUBJID"]), "obj": text(ap["FAOBJ"]).str.upper(),
                         "dt": dtc_to_sas_date(ap["FADTC"])})
    objs = set(text(fa["FAOBJ"]).str.upper())
    rec = pd.DataFrame({"USUBJID": text(ae["USUBJID"]), "obj": text(ae["AEDECOD"]).str.upper(),
                        "st": num(ae["ASTDT"]), "en": num(ae["AENDT"]).fillna(num(ae["DCUTDT"])), "i": ae.index})
    m = rec.merge(days, on=["USUBJID", "obj"])
    hit = set(m.loc[(m["dt"] >= m["st"]) & (m["dt"] <= m["en"]), "i"])
    assessed = rec["obj"].isin(objs)
    out[assessed.to_numpy()] = "N"
    out[ae.index.isin(hit)] = "Y"
    return out


def dlt_flags(ae: pd.DataFrame, spec: Spec, window_days: int) -> pd.DataFrame:
    """DLTWINFL (onset within the DLT window: protocol day ``0 <= ASTDT - TRTSDT <= window``,
    both edges included) and DLTFL (a treatment-emergent AE in the window meeting a row of
    ``specs/rules/dlt_definition.csv``: term (``*`` = any), grade >= ``min_grade`` using the
    investigator's ATOXGRN or the worse of it and the ASTCT grade (``grade_source`` worst),
    relatedness per ``dlt_relatedness.csv`` when ``related_required``, SOC and term not excluded);
    DLTRULE = the first rule met."""
    rules = spec.rule("dlt_definition")
    related = spec.rule("dlt_relatedness")
    rel_yes = set(related.loc[related["related"] == "Y", "aerel"])
    day = protocol_day(ae["ASTDT"], ae["TRTSDT"])
    inwin = (day >= 0) & (day <= window_days)
    teae = text(ae["TRTEMFL"]) == "Y"
    inv = num(ae["ATOXGRN"])
    worst = pd.concat([inv, num(ae["ASTCTGRN"])], axis=1).max(axis=1)
    term = text(ae["AEDECOD"]).str.upper()
    soc = text(ae["AEBODSYS"])
    is_rel = text(ae["AEREL"]).isin(rel_yes)
    rule = pd.Series("", index=ae.index, dtype="object")
    for r in rules.to_dict("records"):  # a few rule rows (metadata), vectorised over AEs
        grade = worst if r["grade_source"] == "worst" else inv
        ok = inwin & teae & (grade >= float(r["min_grade"]))
        if r["term"] != "*":
            ok &= term == r["term"].upper()
        if r["related_required"] == "Y":
            ok &= is_rel
        if r["excluded_soc"]:
            ok &= ~soc.isin(r["excluded_soc"].split("|"))
        if r.get("excluded_terms"):
            ok &= ~term.isin([t.upper() for t in r["excluded_terms"].split("|")])
        rule = rule.where(rule != "", pd.Series(np.where(ok, r["rule"], ""), index=ae.index))
    return pd.DataFrame({"DLTWINFL": yn(inwin), "DLTFL": yn(rule != ""), "DLTRULE": rule}, index=ae.index)


def cm_given_flags(ae: pd.DataFrame, cm: pd.DataFrame | None, relrec: pd.DataFrame | None,
                   fa: pd.DataFrame | None, spec: Spec) -> pd.DataFrame:
    """TOCIFL / CSTRFL (the variables of ``specs/rules/adae_cm_flags.csv``): Y when a CM record
    related to the AE in RELREC (CM by CMSEQ and AE by AESEQ under one RELID, SDTMIG 3.4 8.2) is
    of the row's CMDECOD or drug class (``cm_drug_classes.csv``); N for the other AEs whose event
    has daily CRS/ICANS assessments (AEDECOD = an FA FAOBJ); null for all other AEs."""
    flags = spec.rule("adae_cm_flags")
    out = pd.DataFrame({v: pd.Series("", index=ae.index, dtype="object") for v in flags["variable"]})
    if fa is None or fa.empty:
        return out
    assessed = text(ae["AEDECOD"]).str.upper().isin(set(text(fa["FAOBJ"]).str.upper())).to_numpy()
    pairs = pd.DataFrame(columns=["USUBJID", "AESEQ", "CMDECOD"])
    if cm is not None and len(cm) and relrec is not None and len(relrec):
        rr = relrec.assign(USUBJID=text(relrec["USUBJID"]), IDVARVAL=text(relrec["IDVARVAL"]))
        c = rr[(text(rr["RDOMAIN"]) == "CM") & (text(rr["IDVAR"]) == "CMSEQ")][["USUBJID", "RELID", "IDVARVAL"]]
        a = rr[(text(rr["RDOMAIN"]) == "AE") & (text(rr["IDVAR"]) == "AESEQ")][["USUBJID", "RELID", "IDVARVAL"]]
        p = c.rename(columns={"IDVARVAL": "CMSEQ"}).merge(a.rename(columns={"IDVARVAL": "AESEQ"}), on=["USUBJID", "RELID"])
        names = pd.DataFrame({"USUBJID": text(cm["USUBJID"]), "CMSEQ": num(cm["CMSEQ"]).astype("Int64").astype(str),
                              "CMDECOD": text(cm["CMDECOD"]).str.upper()})
        pairs = p.merge(names, on=["USUBJID", "CMSEQ"])[["USUBJID", "AESEQ", "CMDECOD"]]
    classes = spec.rule("cm_drug_classes")
    key = text(ae["USUBJID"]) + "|" + num(ae["AESEQ"]).astype("Int64").astype(str)
    for r in flags.itertuples(index=False):  # two flags (metadata)
        drugs = {r.cmdecod.upper()} if r.cmdecod else set(classes.loc[classes["drug_class"] == r.drug_class, "cmdecod"])
        given = pairs[pairs["CMDECOD"].isin(drugs)]
        hit = key.isin(set(given["USUBJID"] + "|" + given["AESEQ"])).to_numpy()
        col = np.where(assessed, np.where(hit, "Y", "N"), "")
        out[r.variable] = col
    return out


def build(sdtm: dict[str, pd.DataFrame], adsl: pd.DataFrame, spec: Spec, study: Study) -> pd.DataFrame:
    """ADAE records (see module docstring); ADSL variables merged by USUBJID."""
    ae = sdtm.get("AE")
    if ae is None:
        return pd.DataFrame(columns=spec.var_names("ADAE"))
    ae = ae[text(ae["AECAT"]) != EPISODE_CATEGORY] if "AECAT" in ae else ae
    ae = ae.copy()
    ae["USUBJID"] = text(ae["USUBJID"])
    ae = merge_adsl(ae.reset_index(drop=True), adsl, ADSL_VARS)
    ae = pd.concat([ae, analysis_dates(ae, spec)], axis=1)
    ae["ASTDY"] = analysis_day(ae["ASTDT"], ae["TRTSDT"])
    ae["AENDY"] = analysis_day(ae["AENDT"], ae["TRTSDT"])
    ae["ASTPDY"] = protocol_day(ae["ASTDT"], ae["TRTSDT"])
    ae["ADURN"] = num(ae["AENDT"]) - num(ae["ASTDT"]) + 1
    ae["ADURU"] = np.where(ae["ADURN"].notna(), "DAYS", "")
    ae["ATOXGR"] = text(ae["AETOXGR"])
    ae["ATOXGRN"] = num(ae["AETOXGR"])
    ae["TRTEMFL"] = treatment_emergent(num(ae["ASTDT"]), num(ae["TRTSDT"]),
                                       int(study["safety"].get("ae_followup_months", 24)))
    ae["ASTCTGRN"] = astct_grade(ae, sdtm.get("FA"), sdtm.get("RELREC"))
    ae["ASTCTGR"] = ae["ASTCTGRN"].astype("Int64").astype(str).replace("<NA>", "")
    ae["ACYTOFL"] = anticytokine_given(ae, sdtm.get("FA"))
    ae = pd.concat([ae, cm_given_flags(ae, sdtm.get("CM"), sdtm.get("RELREC"), sdtm.get("FA"), spec)], axis=1)
    ae = pd.concat([ae, dlt_flags(ae, spec, study.dlt_window_days)], axis=1)
    ae["SRCDOM"], ae["SRCVAR"], ae["SRCSEQ"] = "AE", "AESEQ", num(ae["AESEQ"])
    return ae
