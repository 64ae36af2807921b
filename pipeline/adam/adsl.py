"""ADSL, the subject-level analysis dataset (ADaMIG 1.3 section 3.1), from SDTM DM, SUPPDM,
EX, DS, SUPPDS, RS and LBDA and the study parameters.

One record per subject of DM. Population flags follow ``specs/rules/adam_populations.csv``;
baseline disease characteristics ``specs/rules/adsl_baseline.csv``. Disease history and prior
therapy (:func:`history_variables`) from MH/SUPPMH (primary diagnosis), CM/SUPPCM (prior lines)
and PR (prior HSCT); the baseline glucocorticoid dose and the bridging-therapy flag from SDTM CM
(:func:`baseline_glucocorticoid`, :func:`bridging_flag`); the HSCT-after-CAR-T flag and
date (HSCTFL/HSCTDT) from SDTM PR by ``specs/rules/adsl_procedures.csv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import (dtc_to_sas_date, dtc_to_sas_datetime, num, sas_date, supp_value, text, text_values,
                                  yn_full)
from pipeline.config import Study
from pipeline.errors import ConfigError
from pipeline.rules import response as R
from pipeline.spec import Spec

CART = "CAR-T INFUSION"
LYMPHODEPLETION = "LYMPHODEPLETION"
#: datasets whose dates do not show the subject alive on that date
_NOT_ALIVE_EVIDENCE = {"DM", "DS", "SE", "TA", "TE", "TV", "TI", "TS", "RELREC"}


def treatment_dates(dm: pd.DataFrame, ex: pd.DataFrame) -> pd.DataFrame:
    """TRTSDT/TRTSDTM/TRTEDT/TRTEDTM = first and last CAR-T administration (EX with EXCAT CAR-T
    INFUSION; the first and last fraction of a split infusion); LDSTDT = first lymphodepletion
    dose (EXCAT LYMPHODEPLETION), its own date: lymphodepletion is background therapy, not the
    study treatment (ADaMIG 1.3 section 3.1.3, TRTSDT = date of first exposure to treatment)."""
    out = pd.DataFrame(index=pd.Index(text(dm["USUBJID"]), name="USUBJID"))
    exc = text(ex["EXCAT"])
    cart = ex[exc == CART]
    start = pd.DataFrame({"USUBJID": text(cart["USUBJID"]), "dt": dtc_to_sas_date(cart["EXSTDTC"]),
                          "dtm": dtc_to_sas_datetime(cart["EXSTDTC"])})
    end_dtc = text(cart["EXENDTC"]).where(text(cart["EXENDTC"]) != "", text(cart["EXSTDTC"]))
    end = pd.DataFrame({"USUBJID": text(cart["USUBJID"]), "dt": dtc_to_sas_date(end_dtc),
                        "dtm": dtc_to_sas_datetime(end_dtc)})
    out["TRTSDT"] = start.groupby("USUBJID")["dt"].min()
    out["TRTSDTM"] = start.groupby("USUBJID")["dtm"].min()
    out["TRTEDT"] = end.groupby("USUBJID")["dt"].max()
    out["TRTEDTM"] = end.groupby("USUBJID")["dtm"].max()
    dose = pd.DataFrame({"USUBJID": text(cart["USUBJID"]), "dose": num(cart["EXDOSE"])})
    out["DOSE01A"] = dose.groupby("USUBJID")["dose"].sum(min_count=1)
    units = text(cart["EXDOSU"]).groupby(text(cart["USUBJID"])).first()
    out["DOSE01U"] = text(units.reindex(out.index))
    ld = ex[exc == LYMPHODEPLETION]
    ldf = pd.DataFrame({"USUBJID": text(ld["USUBJID"]), "dt": dtc_to_sas_date(ld["EXSTDTC"])})
    out["LDSTDT"] = ldf.groupby("USUBJID")["dt"].min()
    return out.reset_index()


def treatment_variables(dm: pd.DataFrame, study: Study) -> pd.DataFrame:
    """TRT01P/TRT01PN from the planned arm (DM.ARMCD/ARM), TRT01A/TRT01AN from the actual arm
    (DM.ACTARMCD/ACTARM); the numeric code is the arm's position in the study's ``[[arms]]``
    (1-4 = dose levels 1-4 of the dose-escalation study); DOSE01P = the arm's planned dose
    (``dose_cells_per_kg``). Screen failures and subjects not treated have them null."""
    arms = study.arms
    order = {a: i + 1 for i, a in enumerate(arms["armcd"])} if len(arms) else {}
    dose = dict(zip(arms["armcd"], arms["dose_cells_per_kg"])) if "dose_cells_per_kg" in arms else {}
    armcd, act = text(dm["ARMCD"]), text(dm["ACTARMCD"])
    return pd.DataFrame({
        "USUBJID": text(dm["USUBJID"]),
        "TRT01P": text(dm["ARM"]), "TRT01PN": armcd.map(order).astype("float64"),
        "TRT01A": text(dm["ACTARM"]), "TRT01AN": act.map(order).astype("float64"),
        "DOSE01P": armcd.map(dose).astype("float64"),
    })


def death_variables(dm: pd.DataFrame, suppds: pd.DataFrame | None, dd: pd.DataFrame | None = None) -> pd.DataFrame:
    """DTHDT from DM.DTHDTC (complete dates), DTHFL from DM, DTHCAUS = the primary cause of
    death (SDTM DD, DDTESTCD PRCDTH, DDSTRESC; else SUPPDS.DTHCAUS)."""
    cause = supp_value(suppds, "DTHCAUS")
    if dd is not None and len(dd) and "DDTESTCD" in dd:
        p = dd[text(dd["DDTESTCD"]) == "PRCDTH"].drop_duplicates("USUBJID")
        cause = pd.Series(text(p["DDSTRESC"]).to_numpy(), index=text(p["USUBJID"]).to_numpy())
    u = text(dm["USUBJID"])
    return pd.DataFrame({"USUBJID": u, "DTHDT": dtc_to_sas_date(dm["DTHDTC"]).to_numpy(),
                         "DTHFL": text(dm["DTHFL"]).to_numpy(), "DTHCAUS": text(u.map(cause)).to_numpy()})


def last_known_alive(sdtm: dict[str, pd.DataFrame], subjects: pd.Series) -> pd.Series:
    """LSTALVDT: the latest complete date of any SDTM record that shows the subject alive
    (every ``--DTC`` of the subject-level datasets except DM, DS, SE, trial design and
    relationships; the SUPPDS last-known-alive date LKADTC; DM.RFICDTC), and the death date
    for subjects who died (ADaMIG 1.3 ADSL; FDA oncology convention for OS censoring)."""
    subj, dtc = [], []  # every (subject, ISO date text) of the evidence, converted at once below
    for name, ds in sorted(sdtm.items()):  # a few datasets and their date columns: metadata loop
        if name in _NOT_ALIVE_EVIDENCE or name.startswith("SUPP") or "USUBJID" not in ds:
            continue
        for col in [c for c in ds.columns if c.endswith("DTC") and c not in ("DTHDTC",)]:
            subj.append(text_values(ds["USUBJID"]))
            dtc.append(text_values(ds[col]))
    lka = supp_value(sdtm.get("SUPPDS"), "LKADTC")
    subj.append(np.asarray(lka.index, dtype=object))
    dtc.append(lka.to_numpy(dtype=object))
    dm = sdtm["DM"]
    for col in ("RFICDTC", "DTHDTC"):
        subj.append(text_values(dm["USUBJID"]))
        dtc.append(text_values(dm[col]))
    allp = pd.DataFrame({"USUBJID": np.concatenate(subj),
                         "dt": dtc_to_sas_date(pd.Series(np.concatenate(dtc), dtype=object)).to_numpy()})
    latest = allp.dropna(subset=["dt"]).groupby("USUBJID")["dt"].max()
    return subjects.map(latest).astype("float64")


def end_of_study(ds: pd.DataFrame, subjects: pd.Series) -> pd.DataFrame:
    """EOSSTT/DCSREAS/EOSDT from the DS disposition event of study participation: COMPLETED ->
    EOSSTT COMPLETED; any other DSDECOD -> DISCONTINUED with DCSREAS = DSDECOD; no disposition
    event -> ONGOING (ADaMIG 1.3 ADSL EOSSTT, DCSREAS)."""
    ev = ds[(text(ds["DSCAT"]) == "DISPOSITION EVENT") & (text(ds["DSSCAT"]) == "STUDY PARTICIPATION")]
    ev = ev.assign(_dt=dtc_to_sas_date(ev["DSSTDTC"])).sort_values(["USUBJID", "_dt"], kind="mergesort")
    first = ev.drop_duplicates("USUBJID", keep="first").set_index("USUBJID")
    decod = text(subjects.map(text(first["DSDECOD"])))
    status = np.select([decod == "COMPLETED", decod != ""], ["COMPLETED", "DISCONTINUED"], "ONGOING")
    return pd.DataFrame({"USUBJID": subjects.to_numpy(), "EOSSTT": status,
                         "DCSREAS": decod.where(decod != "COMPLETED", "").to_numpy(),
                         "EOSDT": subjects.map(first["_dt"]).astype("float64").to_numpy()})


def baseline_characteristics(sdtm: dict[str, pd.DataFrame], spec: Spec, subjects: pd.Series,
                             trtsdt: pd.Series) -> pd.DataFrame:
    """Baseline disease characteristics of ``specs/rules/adsl_baseline.csv``: per variable, the
    last non-missing result of the named test on or before TRTSDT (the pre-infusion
    assessment); a study without the test gets the variable null."""
    rules = spec.rule("adsl_baseline")
    out = pd.DataFrame({"USUBJID": subjects.to_numpy()})
    ref = pd.Series(trtsdt.to_numpy(), index=subjects.to_numpy())
    for r in rules.to_dict("records"):  # one pass per baseline variable (metadata)
        ds = sdtm.get(r["dataset"])
        if ds is None or r["testcd_var"] not in ds:
            out[r["variable"]] = np.nan if r["result_var"].endswith("STRESN") else ""
            continue
        sub = ds[text(ds[r["testcd_var"]]) == r["testcd"]]
        dtc = sub[[c for c in sub.columns if c.endswith("DTC")][0]]
        val = num(sub[r["result_var"]]) if r["result_var"].endswith("STRESN") else text(sub[r["result_var"]])
        f = pd.DataFrame({"USUBJID": text(sub["USUBJID"]), "dt": dtc_to_sas_date(dtc), "val": val})
        has = f["val"].notna() & (f["val"].astype(str) != "")
        f = f[has & (f["dt"] <= f["USUBJID"].map(ref))]
        last = f.sort_values(["USUBJID", "dt"], kind="mergesort").drop_duplicates("USUBJID", keep="last")
        mapped = out["USUBJID"].map(last.set_index("USUBJID")["val"])
        out[r["variable"]] = mapped if r["result_var"].endswith("STRESN") else text(mapped)
    return out


def history_variables(sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study, subjects: pd.Series,
                      rficdt: pd.Series) -> pd.DataFrame:
    """Disease history and prior therapy at study entry.

    - DISSUBTP: SUPPMH.QVAL (QNAM DISSUBTP) of the MH record with MHCAT PRIMARY DIAGNOSIS;
    - DIAGDT/DIAGDTF: MHSTDTC of that record, a partial date imputed by the DIAGDT rows of
      ``specs/rules/adam_date_imputation.csv`` (ADaMIG 1.3 section 3.1.5);
    - DURDIS: disease duration in months at informed consent, (RFICDT - DIAGDT) / 30.4375,
      rounded to 0.1;
    - PRIORLN: number of prior lines = distinct SUPPCM LINENUM of the CM records with CMCAT the
      study's ``[history] prior_therapy_category``; 0 for a subject with an MH primary-diagnosis
      record (history collected) and no line; null when no history was collected;
    - PHSCTFL/PHSCTDT: Y when a PR record with PRCAT PRIOR HSCT has PROCCUR Y (date of the last
      such transplant, complete dates only), N when the pre-specified question was answered N.
    """
    from pipeline.adam.adae import impute_date
    u = subjects.reset_index(drop=True)
    out = pd.DataFrame({"USUBJID": u})
    mh = sdtm.get("MH")
    if mh is not None and len(mh):
        p = mh[text(mh["MHCAT"]) == "PRIMARY DIAGNOSIS"].drop_duplicates("USUBJID")
        dtc = pd.Series(text(u.map(pd.Series(text(p["MHSTDTC"]).to_numpy(), index=text(p["USUBJID"]).to_numpy()))).to_numpy())
        imp = impute_date(dtc, spec.rule("adam_date_imputation"), "DIAGDT", pd.Series(np.nan, index=dtc.index),
                          pd.Series(np.asarray(rficdt, dtype="float64")))
        out["DIAGDT"] = imp["dt"].to_numpy()
        out["DIAGDTF"] = imp["flag"].to_numpy()
        out["DURDIS"] = ((np.asarray(rficdt, dtype="float64") - out["DIAGDT"]) / 30.4375).round(1)
        supp = sdtm.get("SUPPMH")
        sub = pd.Series(dtype="object")
        if supp is not None and len(supp):
            s = supp[text(supp["QNAM"]) == "DISSUBTP"]
            seq = p.set_index(text(p["USUBJID"]))["MHSEQ"]
            s = s[text(s["IDVARVAL"]) == text(text(s["USUBJID"]).map(seq.round().astype("Int64").astype(str)))]
            sub = pd.Series(text(s["QVAL"]).to_numpy(), index=text(s["USUBJID"]).to_numpy())
        out["DISSUBTP"] = text(u.map(sub)).to_numpy()
        collected = u.isin(set(text(p["USUBJID"])))
    else:
        out["DIAGDT"], out["DIAGDTF"], out["DURDIS"], out["DISSUBTP"] = np.nan, "", np.nan, ""
        collected = pd.Series(False, index=u.index)
    cm, suppcm = sdtm.get("CM"), sdtm.get("SUPPCM")
    lines = pd.Series(dtype="float64")
    if cm is not None and len(cm) and suppcm is not None and len(suppcm):
        cat = str(study.get("history", {}).get("prior_therapy_category", ""))
        prior = cm[text(cm["CMCAT"]) == cat]
        keys = pd.DataFrame({"u": text(prior["USUBJID"]), "k": prior["CMSEQ"].round().astype("Int64").astype(str)})
        ln = suppcm[text(suppcm["QNAM"]) == "LINENUM"]
        ln = pd.DataFrame({"u": text(ln["USUBJID"]), "k": text(ln["IDVARVAL"]), "line": text(ln["QVAL"])})
        ln = ln.merge(keys, on=["u", "k"], how="inner")
        lines = ln[["u", "line"]].drop_duplicates().groupby("u").size().astype("float64")
    out["PRIORLN"] = u.map(lines).astype("float64").where(~(collected & u.map(lines).isna()), 0.0).to_numpy()
    pr = sdtm.get("PR")
    out["PHSCTFL"], out["PHSCTDT"] = "", np.nan
    if pr is not None and len(pr):
        h = pr[text(pr["PRCAT"]) == "PRIOR HSCT"]
        yes = h[text(h["PROCCUR"]) == "Y"]
        dt = pd.DataFrame({"u": text(yes["USUBJID"]), "dt": dtc_to_sas_date(yes["PRSTDTC"])}).groupby("u")["dt"].max()
        asked = u.isin(set(text(h["USUBJID"])))
        out["PHSCTFL"] = np.where(u.isin(dt.index), "Y", np.where(asked, "N", ""))
        out["PHSCTDT"] = u.map(dt).astype("float64").to_numpy()
    return out


#: CM category of bridging therapy (CDISC-style sponsor codelist CMCAT of the SDTM spec)
BRIDGING = "BRIDGING THERAPY"


def baseline_glucocorticoid(cm: pd.DataFrame | None, spec: Spec, subjects: pd.Series, trtsdt: pd.Series) -> pd.Series:
    """BLGCDOSE: the prednisone-equivalent glucocorticoid daily dose (mg/day) on TRTSDT, the
    CAR-T infusion day, from the CM records covering that day (the GCDOSE row of
    ``specs/rules/cm_dose_features.csv``, :func:`pipeline.rules.response.cm_daily_dose`). Null
    for every subject when the study has no CM record of that category (no background
    glucocorticoid collected), and for a subject without TRTSDT."""
    feat = R.cm_dose_features(spec)
    feat = feat[feat["feature"] == "GCDOSE"]
    out = pd.Series(np.nan, index=subjects.index, dtype="float64")
    if cm is None or cm.empty or feat.empty:
        return out
    r = feat.iloc[0]
    if not text(cm["CMCAT"]).eq(r["cmcat"]).any():
        return out
    date = pd.to_datetime(pd.Series(trtsdt.to_numpy(), index=subjects.index), unit="D", origin="1960-01-01",
                          errors="coerce")
    points = pd.DataFrame({"USUBJID": subjects.to_numpy(), "_date": date.to_numpy()}, index=subjects.index)
    has = points["_date"].notna()
    dose = R.cm_daily_dose(points[has], cm, r["cmcat"], r["drug_class"], spec.rule("cm_drug_classes"),
                           spec.rule("cm_frequency"))
    out[has] = dose.to_numpy()
    return out


def bridging_flag(cm: pd.DataFrame | None, subjects: pd.Series) -> pd.Series:
    """BRIDGFL: Y when the subject has a CM record of category BRIDGING THERAPY (therapy between
    leukapheresis and lymphodepletion, as collected), else N."""
    if cm is None or cm.empty:
        return yn_full(pd.Series(False, index=subjects.index))
    bridged = set(text(cm.loc[text(cm["CMCAT"]).eq(BRIDGING), "USUBJID"]))
    return yn_full(pd.Series(text(subjects).isin(bridged).to_numpy(), index=subjects.index))


def procedure_variables(sdtm: dict[str, pd.DataFrame], spec: Spec, subjects: pd.Series,
                        trtsdt: pd.Series) -> pd.DataFrame:
    """Procedure flags and dates of ``specs/rules/adsl_procedures.csv`` (e.g. HSCTFL/HSCTDT, the
    allogeneic HSCT after CAR-T): per row, the earliest ``date_variable`` of the ``dataset``
    records where ``where_variable`` = ``where_value``; the flag is Y with a date, N for the
    other treated subjects (TRTSDT present), null for the untreated. A study without the dataset
    gets N/null."""
    rules = spec.rule("adsl_procedures")
    out = pd.DataFrame({"USUBJID": subjects.to_numpy()})
    treated = pd.Series(trtsdt.to_numpy()).notna().to_numpy()
    for r in rules.to_dict("records"):  # one pass per procedure variable pair (metadata)
        ds = sdtm.get(r["dataset"])
        first = pd.Series(dtype=float)
        if ds is not None and len(ds) and r["where_variable"] in ds:
            sub = ds[text(ds[r["where_variable"]]) == r["where_value"]]
            f = pd.DataFrame({"USUBJID": text(sub["USUBJID"]), "dt": dtc_to_sas_date(sub[r["date_variable"]])})
            first = f.dropna().groupby("USUBJID")["dt"].min()
        dt = out["USUBJID"].map(first).astype("float64")
        out[r["date"]] = dt
        out[r["flag"]] = np.where(dt.notna(), "Y", np.where(treated, "N", ""))
    return out


def population_rules(spec: Spec, studyid: str) -> pd.DataFrame:
    """The population definitions of the study (rows of ``study`` = the STUDYID override ``*``)."""
    rules = spec.rule("adam_populations")
    own = rules[rules["study"] == studyid]
    rest = rules[(rules["study"] == "*") & ~rules["flag"].isin(set(own["flag"]))]
    return pd.concat([own, rest], ignore_index=True)


def populations(adsl: pd.DataFrame, sdtm: dict[str, pd.DataFrame], spec: Spec, studyid: str) -> pd.DataFrame:
    """ENRLFL, SAFFL, EFFFL by ``specs/rules/adam_populations.csv`` (DLTEVLFL needs ADAE and is
    set by :func:`dlt_population`)."""
    out = adsl.copy()
    rs = sdtm.get("RS")
    assessed = set()
    if rs is not None and len(rs):
        ov = rs[text(rs["RSTESTCD"]) == "OVRLRESP"]
        f = pd.DataFrame({"USUBJID": text(ov["USUBJID"]), "dt": dtc_to_sas_date(ov["RSDTC"])})
        f = f[f["dt"] > f["USUBJID"].map(adsl.set_index("USUBJID")["TRTSDT"])]
        assessed = set(f["USUBJID"])
    criteria = {
        "informed_consent": lambda: adsl["RFICDT"].notna(),
        "received_cart": lambda: adsl["TRTSDT"].notna(),
        "received_cart_and_assessed": lambda: adsl["TRTSDT"].notna() & adsl["USUBJID"].isin(assessed),
    }
    for r in population_rules(spec, studyid).to_dict("records"):  # a few flags (metadata)
        if r["criterion"] == "dlt_evaluable":
            continue
        if r["criterion"] not in criteria:
            raise ConfigError(f"adam_populations.csv: unknown criterion {r['criterion']!r} for {r['flag']}")
        out[r["flag"]] = yn_full(criteria[r["criterion"]]())
    return out


def dlt_population(adsl: pd.DataFrame, adae: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """DLTEVLFL (``specs/rules/adam_populations.csv`` criterion ``dlt_evaluable``): safety
    population and either a DLT (ADAE.DLTFL Y) or observed through the DLT window
    (LSTALVDT >= TRTSDT + window, death before the window end without DLT = not evaluable);
    DLTFL (subject had >= 1 DLT)."""
    out = adsl.copy()
    had = set(adae.loc[text(adae["DLTFL"]) == "Y", "USUBJID"]) if len(adae) else set()
    dlt = out["USUBJID"].isin(had)
    observed = out["LSTALVDT"] >= out["TRTSDT"] + window_days
    out["DLTFL"] = yn_full(dlt & out["TRTSDT"].notna())
    out["DLTEVLFL"] = yn_full(out["TRTSDT"].notna() & (dlt | observed))
    return out


def build(sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study) -> pd.DataFrame:
    """ADSL before the DLT population (see :func:`dlt_population`)."""
    dm = sdtm["DM"]
    ex = sdtm.get("EX", pd.DataFrame(columns=["USUBJID", "EXCAT", "EXSTDTC", "EXENDTC", "EXDOSE", "EXDOSU"]))
    u = text(dm["USUBJID"])
    adsl = pd.DataFrame({c: dm[c].to_numpy() for c in ("STUDYID", "USUBJID", "SUBJID", "SITEID", "AGE", "AGEU", "SEX",
                                                       "RACE", "ETHNIC", "COUNTRY", "ARM", "ARMCD", "ACTARM",
                                                       "ACTARMCD", "ARMNRS") if c in dm})
    adsl["USUBJID"] = u.to_numpy()
    adsl["RFICDT"] = dtc_to_sas_date(dm["RFICDTC"]).to_numpy()
    adsl = adsl.merge(treatment_variables(dm, study), on="USUBJID", how="left")
    adsl = adsl.merge(treatment_dates(dm, ex), on="USUBJID", how="left")
    adsl["PRIMDIAG"] = text(u.map(supp_value(sdtm.get("SUPPDM"), "PRIMDIAG"))).to_numpy()
    adsl = adsl.merge(baseline_characteristics(sdtm, spec, adsl["USUBJID"], adsl["TRTSDT"]), on="USUBJID", how="left")
    adsl = adsl.merge(history_variables(sdtm, spec, study, adsl["USUBJID"], adsl["RFICDT"]), on="USUBJID", how="left")
    adsl["BLGCDOSE"] = baseline_glucocorticoid(sdtm.get("CM"), spec, adsl["USUBJID"], adsl["TRTSDT"]).to_numpy()
    adsl["BRIDGFL"] = bridging_flag(sdtm.get("CM"), adsl["USUBJID"]).to_numpy()
    adsl = adsl.merge(death_variables(dm, sdtm.get("SUPPDS"), sdtm.get("DD")), on="USUBJID", how="left")
    adsl = adsl.merge(procedure_variables(sdtm, spec, adsl["USUBJID"], adsl["TRTSDT"]), on="USUBJID", how="left")
    adsl["LSTALVDT"] = last_known_alive(sdtm, adsl["USUBJID"]).to_numpy()
    ds = sdtm.get("DS", pd.DataFrame(columns=["USUBJID", "DSCAT", "DSSCAT", "DSDECOD", "DSSTDTC"]))
    adsl = adsl.merge(end_of_study(ds, adsl["USUBJID"]), on="USUBJID", how="left")
    adsl["DCUTDT"] = float(sas_date(pd.Series([pd.Timestamp(study.data_cutoff)])).iloc[0])
    adsl = populations(adsl, sdtm, spec, study.studyid)
    return adsl
