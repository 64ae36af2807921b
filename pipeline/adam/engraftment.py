"""Engraftment after an allogeneic HSCT, derived from SDTM LB (and CM platelet transfusions)
by the definitions of ``specs/rules/engraftment.csv`` (one row per parameter, with its source).

Not a dataset of its own: the derived dates feed ADTTE (parameters NEUTENGT and PLATENGT, origin
ADSL.HSCTDT; :mod:`pipeline.adam.adtte`) and the data manager's ``engraftment_discrepancies``
report (derived against the transplant centre's dates in SDTM FAPR).

For one rule row and every subject with an HSCT date (ADSL.HSCTDT):

1. the LB results of ``lbtestcd`` (LBSTRESN, standard units) dated on or after HSCTDT, one per
   day (the lowest of the day; a day whose only record has no result counts as a day without a
   value);
2. counting starts after the nadir: the first day with a value below ``threshold``;
3. a day qualifies when its value is >= ``threshold`` and, where ``transfusion_free`` is Y, no
   transfusion (CM records matching the rule's pattern) fell on it or since the previous day
   with a result;
4. a run is a sequence of qualifying days each at most ``max_gap_days`` after the previous one;
   a missing day, a missing result or a non-qualifying day ends it;
5. the engraftment date is the first day of the first run of ``consecutive_days`` days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import STR, dtc_to_sas_date, num, sas_date_texts, text
from pipeline.spec import Spec

COLUMNS = ["USUBJID", "PARAMCD", "HSCTDT", "NADIRDT", "ENGDT", "ENGSEQ", "LASTDT", "LASTSEQ"]


def daily_values(lb: pd.DataFrame, lbtestcd: str, hsct: pd.DataFrame) -> pd.DataFrame:
    """One row per subject and day on or after HSCTDT: USUBJID, dt, val (lowest of the day,
    NaN when the day has no result), seq (LBSEQ of that value), HSCTDT."""
    x = lb[text(lb["LBTESTCD"]) == lbtestcd]
    f = pd.DataFrame({"USUBJID": text(x["USUBJID"]).to_numpy(), "dt": dtc_to_sas_date(x["LBDTC"]).to_numpy(),
                      "val": num(x["LBSTRESN"]).to_numpy(), "seq": num(x["LBSEQ"]).to_numpy()})
    f = f.merge(hsct[["USUBJID", "HSCTDT"]], on="USUBJID", how="inner")
    f = f[f["dt"].notna() & (f["dt"] >= f["HSCTDT"])]
    f = f.sort_values(["USUBJID", "dt", "val"], kind="mergesort", na_position="last")
    return f.drop_duplicates(["USUBJID", "dt"]).reset_index(drop=True)


def transfusion_dates(sdtm: dict[str, pd.DataFrame], rule: dict) -> pd.DataFrame:
    """USUBJID, dt of the transfusions a rule names (domain, variables, case-insensitive pattern);
    empty when the rule needs none or the domain was not collected."""
    empty = pd.DataFrame({"USUBJID": pd.Series(dtype=object), "dt": pd.Series(dtype=float)})
    if rule.get("transfusion_free", "N") != "Y":
        return empty
    ds = sdtm.get(rule["transfusion_domain"])
    if ds is None or ds.empty:
        return empty
    hit = pd.Series(False, index=ds.index)
    for var in rule["transfusion_variable"].split("|"):  # one or two variables of the rule (metadata)
        if var in ds:
            hit |= text(ds[var]).str.contains(rule["transfusion_pattern"], case=False, regex=True)
    d = ds[hit]
    dtc_var = rule["transfusion_domain"] + "STDTC"
    return pd.DataFrame({"USUBJID": text(d["USUBJID"]).to_numpy(), "dt": dtc_to_sas_date(d[dtc_var]).to_numpy()})


def engraftment_dates(days: pd.DataFrame, transfusions: pd.DataFrame, rule: dict) -> pd.DataFrame:
    """The engraftment date of one rule for the subjects of ``days`` (:func:`daily_values`), by the
    module rules 2-5. Columns :data:`COLUMNS` (ENGDT NaN when not engrafted)."""
    thr = float(rule["threshold"])
    n_days, gap = int(rule["consecutive_days"]), float(rule["max_gap_days"])
    d = days.copy()
    last = d[d["val"].notna()].drop_duplicates("USUBJID", keep="last").set_index("USUBJID")
    below = d[d["val"] < thr].groupby("USUBJID")["dt"].min()
    d["nadir"] = d["USUBJID"].map(below)
    d = d[d["nadir"].notna() & (d["dt"] > d["nadir"])].reset_index(drop=True)
    prev = d.groupby("USUBJID")["dt"].shift(1)
    prev = prev.where(prev.notna(), d["nadir"])
    ok = d["val"].ge(thr)
    if len(transfusions) and len(d):
        # transfusions in (prev, dt]: counts of sorted (subject, date) keys at or before each bound
        codes = {u: k for k, u in enumerate(sorted(set(d["USUBJID"]) | set(transfusions["USUBJID"])))}
        tx = transfusions[transfusions["dt"].notna()]
        keys = np.sort(tx["USUBJID"].map(codes).to_numpy() * 1e6 + tx["dt"].to_numpy())
        sc = d["USUBJID"].map(codes).to_numpy() * 1e6
        n_tx = (np.searchsorted(keys, sc + d["dt"].to_numpy(), side="right")
                - np.searchsorted(keys, sc + prev.to_numpy(), side="right"))
        ok &= n_tx == 0
    prev_ok = ok.groupby(d["USUBJID"]).shift(1, fill_value=False).astype(bool)
    cont = ok & prev_ok & ((d["dt"] - prev) <= gap)
    run = (~cont).cumsum()
    pos = cont.groupby(run).cumsum()
    done = ok & (pos >= n_days - 1)
    first_done = d[done].drop_duplicates("USUBJID")
    start = d.groupby(run)["dt"].transform("first")
    start_seq = d.groupby(run)["seq"].transform("first")
    eng = pd.DataFrame({"USUBJID": first_done["USUBJID"], "ENGDT": start.loc[first_done.index],
                        "ENGSEQ": start_seq.loc[first_done.index]}).set_index("USUBJID")
    subj = days.drop_duplicates("USUBJID")[["USUBJID", "HSCTDT"]].reset_index(drop=True)
    out = subj.assign(PARAMCD=rule["paramcd"], NADIRDT=subj["USUBJID"].map(below),
                      ENGDT=subj["USUBJID"].map(eng["ENGDT"]), ENGSEQ=subj["USUBJID"].map(eng["ENGSEQ"]),
                      LASTDT=subj["USUBJID"].map(last["dt"]), LASTSEQ=subj["USUBJID"].map(last["seq"]))
    return out[COLUMNS]


def hsct_subjects(adsl: pd.DataFrame) -> pd.DataFrame:
    """USUBJID, HSCTDT of the subjects with an HSCT after CAR-T."""
    if "HSCTDT" not in adsl:
        return pd.DataFrame({"USUBJID": pd.Series(dtype=object), "HSCTDT": pd.Series(dtype=float)})
    h = adsl[num(adsl["HSCTDT"]).notna()]
    return pd.DataFrame({"USUBJID": text(h["USUBJID"]).to_numpy(), "HSCTDT": num(h["HSCTDT"]).to_numpy()})


def derive(sdtm: dict[str, pd.DataFrame], adsl: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """Every parameter of ``engraftment.csv`` for every transplanted subject with results."""
    rules = spec.rule("engraftment")
    lb = sdtm.get("LB")
    hsct = hsct_subjects(adsl)
    if lb is None or lb.empty or hsct.empty:
        return pd.DataFrame(columns=COLUMNS)
    parts = [engraftment_dates(daily_values(lb, r["lbtestcd"], hsct), transfusion_dates(sdtm, r), r)
             for r in rules.to_dict("records")]  # one per engraftment parameter (metadata)
    return pd.concat(parts, ignore_index=True)


def build(sdtm: dict[str, pd.DataFrame], adam: dict[str, pd.DataFrame], spec: Spec, study) -> dict:
    """ADaM stage module: the derived dates as the extra ``_engraftment`` (no dataset)."""
    return {"_engraftment": derive(sdtm, adam["ADSL"], spec)}


def discrepancies(eng: pd.DataFrame, fapr: pd.DataFrame | None, spec: Spec) -> pd.DataFrame:
    """The ``engraftment_discrepancies`` report: per transplanted subject and parameter, the
    derived engraftment date next to the transplant centre's (FAPR FATESTCD of the rule, FAORRES
    Y with FADTC), and the status: AGREE, DIFFERENT DATE, DERIVED ONLY, COLLECTED ONLY."""
    rules = spec.rule("engraftment")
    code = dict(zip(rules["paramcd"], rules["collected_fatestcd"]))
    cols = ["USUBJID", "PARAMCD", "FATESTCD", "HSCTDT", "derived_date", "derived_day", "collected_result",
            "collected_date", "collected_day", "difference_days", "status", "FASEQ"]
    if eng.empty:
        return pd.DataFrame(columns=cols)
    e = eng.assign(FATESTCD=eng["PARAMCD"].map(code))
    if fapr is not None and len(fapr):
        c = pd.DataFrame({"USUBJID": text(fapr["USUBJID"]), "FATESTCD": text(fapr["FATESTCD"]),
                          "collected_result": text(fapr["FAORRES"]), "cdt": dtc_to_sas_date(fapr["FADTC"]),
                          "FASEQ": num(fapr["FASEQ"])})
        e = e.merge(c, on=["USUBJID", "FATESTCD"], how="left")
    else:
        e = e.assign(collected_result="", cdt=np.nan, FASEQ=np.nan)
    e["collected_result"] = text(e["collected_result"])
    cdt = e["cdt"].where(e["collected_result"] == "Y")
    der = e["ENGDT"]
    diff = der - cdt
    status = np.select([der.notna() & cdt.notna() & (diff == 0), der.notna() & cdt.notna(),
                        der.notna() & cdt.isna(), der.isna() & cdt.notna()],
                       ["AGREE", "DIFFERENT DATE", "DERIVED ONLY", "COLLECTED ONLY"], "NEITHER")

    def iso(x: pd.Series) -> pd.Series:
        return _iso(x)

    out = pd.DataFrame({"USUBJID": e["USUBJID"], "PARAMCD": e["PARAMCD"], "FATESTCD": e["FATESTCD"],
                        "HSCTDT": iso(e["HSCTDT"]), "derived_date": iso(der), "derived_day": der - e["HSCTDT"],
                        "collected_result": e["collected_result"], "collected_date": iso(cdt),
                        "collected_day": cdt - e["HSCTDT"], "difference_days": diff, "status": status,
                        "FASEQ": e["FASEQ"]})
    return out.sort_values(["USUBJID", "PARAMCD"], kind="mergesort").reset_index(drop=True)[cols]


def _iso(x: pd.Series) -> pd.Series:
    """SAS dates as ISO 8601 text ("" when missing), by numpy where it can
    (:func:`pipeline.adam.common.sas_date_texts`)."""
    texts = sas_date_texts(x)
    if texts is None:  # not whole days in range: the pandas datetimes
        d = pd.to_datetime(num(x), unit="D", origin="1960-01-01")
        return text(pd.Series(d.dt.strftime("%Y-%m-%d"), index=x.index))
    return pd.Series(texts, index=x.index, name=x.name, dtype=STR)


def transplant_listing(adsl: pd.DataFrame, eng: pd.DataFrame, sdtm: dict[str, pd.DataFrame], spec: Spec) -> pd.DataFrame:
    """The ``hsct_engraftment`` report behind the transplant listing: one row per subject with an
    HSCT after CAR-T: when (date, days after the CAR-T infusion), donor type, stem cell source,
    conditioning (SUPPPR), and when each lineage engrafted, derived (this module) and as the
    transplant centre recorded it (FAPR), with the maximum acute GvHD grade and chronic GvHD
    severity (FAPR). Days after HSCT: HSCT day 0 = the stem cell infusion."""
    cols = ["USUBJID", "TRT01A", "HSCTDT", "HSCT_DAY", "HSCDONOR", "HSCSRC", "CONDREG", "CONDSTDT",
            "NEUT_DERIVED", "NEUT_DERIVED_DAY", "NEUT_COLLECTED", "NEUT_COLLECTED_DAY",
            "PLAT_DERIVED", "PLAT_DERIVED_DAY", "PLAT_COLLECTED", "PLAT_COLLECTED_DAY", "AGVHDGR", "CGVHDSEV"]
    h = adsl[num(adsl["HSCTDT"]).notna()] if "HSCTDT" in adsl else adsl.iloc[:0]
    if h.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"USUBJID": text(h["USUBJID"]).to_numpy(), "TRT01A": text(h["TRT01A"]).to_numpy(),
                        "hdt": num(h["HSCTDT"]).to_numpy(), "tdt": num(h["TRTSDT"]).to_numpy()})
    out["HSCTDT"] = _iso(out["hdt"])
    out["HSCT_DAY"] = out["hdt"] - out["tdt"]
    pr, supp, fapr = sdtm.get("PR"), sdtm.get("SUPPPR"), sdtm.get("FAPR")
    hsct_seq = pd.Series(dtype=float)
    if pr is not None and len(pr):
        sub = pr[dtc_to_sas_date(pr["PRSTDTC"]).to_numpy() == text(pr["USUBJID"]).map(
            dict(zip(out["USUBJID"], out["hdt"]))).to_numpy()]
        hsct_seq = sub.drop_duplicates("USUBJID").set_index("USUBJID")["PRSEQ"].astype(float)
    for q in ("HSCDONOR", "HSCSRC", "CONDREG", "CONDSTDT"):  # the four SUPPPR qualifiers shown
        v = pd.Series(dtype=object)
        if supp is not None and len(supp):
            s = supp[(text(supp["QNAM"]) == q)]
            s = s[pd.to_numeric(s["IDVARVAL"], errors="coerce").to_numpy() == text(s["USUBJID"]).map(hsct_seq).to_numpy()]
            v = s.drop_duplicates("USUBJID").set_index("USUBJID")["QVAL"]
        out[q] = text(out["USUBJID"].map(v))
    rules = spec.rule("engraftment")
    for prefix, paramcd in (("NEUT", "NEUTENGT"), ("PLAT", "PLATENGT")):  # the two lineages
        e = eng[eng["PARAMCD"] == paramcd].set_index("USUBJID")["ENGDT"] if len(eng) else pd.Series(dtype=float)
        d = out["USUBJID"].map(e)
        out[f"{prefix}_DERIVED"], out[f"{prefix}_DERIVED_DAY"] = _iso(d), d - out["hdt"]
        code = rules.loc[rules["paramcd"] == paramcd, "collected_fatestcd"]
        c = pd.Series(dtype=float)
        if fapr is not None and len(fapr) and len(code):
            f = fapr[(text(fapr["FATESTCD"]) == code.iloc[0]) & (text(fapr["FAORRES"]) == "Y")]
            c = pd.Series(dtc_to_sas_date(f["FADTC"]).to_numpy(), index=text(f["USUBJID"]).to_numpy())
            c = c[~c.index.duplicated()]
        cd = out["USUBJID"].map(c)
        out[f"{prefix}_COLLECTED"], out[f"{prefix}_COLLECTED_DAY"] = _iso(cd), cd - out["hdt"]
    for testcd in ("AGVHDGR", "CGVHDSEV"):  # the two GvHD findings shown
        v = pd.Series(dtype=object)
        if fapr is not None and len(fapr):
            f = fapr[text(fapr["FATESTCD"]) == testcd]
            v = f.drop_duplicates("USUBJID").set_index("USUBJID")["FAORRES"]
        out[testcd] = text(out["USUBJID"].map(v))
    return out.sort_values(["USUBJID"], kind="mergesort").reset_index(drop=True)[cols]
