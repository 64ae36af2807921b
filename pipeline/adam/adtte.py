"""ADTTE, time-to-event analysis dataset (ADaMIG 1.3 BDS; ADaM Basic Data Structure for
Time-to-Event Analyses 1.0), from ADSL, ADRS and ADLB (cytopenia recovery).

Every parameter, its population, origin date, events and censoring rules are the rows of
``specs/rules/adtte_censoring.csv`` (each with its source). For a subject:

1. the origin STARTDT is the row's ``start`` date (TRTSDT, or FIRSTRSP for duration of remission);
2. the event is the earliest of the ``event`` dates on or after STARTDT (CNSR = 0, EVNTDESC);
3. without an event, the censoring date is the first available ``censor`` date in ``priority``
   order (CNSR = 1, CNSDTDSC), never before STARTDT;
4. AVAL = ADT - STARTDT + 1 days (the origin day is day 1).

Dates the rules can name: TRTSDT, DEATH (ADSL.DTHDT), LSTALVDT (ADSL), FIRSTRSP (first derived
ADRS OVRLRESP in ``[orr].categories``), PROGRESSION (first derived OVRLRESP that is a progression
event in ``response_order.csv``), LASTASMT (last evaluable derived OVRLRESP, on or after the
origin), RECOVERY and LASTLAB (cytopenia recovery of the parameter's test, from ADLB,
``specs/rules/cytopenia_recovery.csv``), HSCTDT (ADSL: the allogeneic HSCT after CAR-T), ENGRAFT
and LASTLAB of an engraftment parameter (:mod:`pipeline.adam.engraftment`,
``specs/rules/engraftment.csv``). Populations: SAFFL (safety population), RESPONDER (with
a FIRSTRSP), CYTOPENIC (safety population with a post-infusion value of the test below the
recovery threshold), HSCT (safety population with ADSL.HSCTFL = Y).

A rule of kind ``truncate`` (e.g. HSCTDT for PFS and DOR: a consolidating transplant is a new
therapy) ends the observation at its date: events after it do not count, censoring dates after
it are not used, and without an event the subject is censored at the last censoring date on or
before it, else at the truncation date itself, with the rule's CNSDTDSC (FDA 2018 endpoints
guidance, censoring at new anticancer therapy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import merge_adsl, num, response_order, text
from pipeline.config import Study
from pipeline.errors import ConfigError
from pipeline.spec import Spec

ADSL_VARS = ["STUDYID", "SITEID", "TRT01P", "TRT01PN", "TRT01A", "TRT01AN", "SAFFL", "EFFFL"]
SOURCES = ("TRTSDT", "DEATH", "LSTALVDT", "FIRSTRSP", "PROGRESSION", "LASTASMT", "RECOVERY", "LASTLAB", "HSCTDT",
           "ENGRAFT")


def _dates(frame: pd.DataFrame, date: str, srcdom: str, srcvar: str, seq: str | None) -> pd.DataFrame:
    """A date source: USUBJID, dt, SRCDOM, SRCVAR, SRCSEQ."""
    f = frame[frame[date].notna()]
    return pd.DataFrame({"USUBJID": text(f["USUBJID"]).to_numpy(), "dt": num(f[date]).to_numpy(), "SRCDOM": srcdom,
                         "SRCVAR": srcvar, "SRCSEQ": num(f[seq]).to_numpy() if seq else np.nan})


def response_dates(adrs: pd.DataFrame | None, spec: Spec, study: Study) -> dict[str, pd.DataFrame]:
    """FIRSTRSP, PROGRESSION and every evaluable assessment (for LASTASMT) from the derived
    ADRS OVRLRESP records (traced to their ASEQ)."""
    empty = pd.DataFrame(columns=["USUBJID", "dt", "SRCDOM", "SRCVAR", "SRCSEQ"])
    if adrs is None or adrs.empty:
        return {"FIRSTRSP": empty, "PROGRESSION": empty, "ASSESSMENTS": empty}
    order = response_order(spec)
    prog = set(order.loc[order["progression"], "category"])
    evaluable = set(order.loc[order["evaluable"], "category"])
    r = adrs[(adrs["PARAMCD"] == "OVRLRESP") & adrs["ADT"].notna()].sort_values(["USUBJID", "ADT"], kind="mergesort")
    first = r[r["AVALC"].isin(set(study["orr"]["categories"]))].drop_duplicates("USUBJID")
    pd_ = r[r["AVALC"].isin(prog)]
    ev = r[r["AVALC"].isin(evaluable)]
    return {"FIRSTRSP": _dates(first, "ADT", "ADRS", "ASEQ", "ASEQ"),
            "PROGRESSION": _dates(pd_, "ADT", "ADRS", "ASEQ", "ASEQ"),
            "ASSESSMENTS": _dates(ev, "ADT", "ADRS", "ASEQ", "ASEQ")}


def recovery_dates(adlb_rec: pd.DataFrame | None, paramcd: str) -> dict[str, pd.DataFrame]:
    """RECOVERY, LASTLAB and the CYTOPENIC subjects of one recovery parameter (frame of
    :func:`pipeline.adam.adlb.recovery`)."""
    cols = ["USUBJID", "dt", "SRCDOM", "SRCVAR", "SRCSEQ"]
    if adlb_rec is None or adlb_rec.empty:
        e = pd.DataFrame(columns=cols)
        return {"RECOVERY": e, "LASTLAB": e, "CYTOPENIC": set()}
    r = adlb_rec[adlb_rec["PARAMCD"] == paramcd]
    return {"RECOVERY": _dates(r, "RECDT", "LB", "LBSEQ", "RECSEQ"),
            "LASTLAB": _dates(r, "LASTDT", "LB", "LBSEQ", "LASTSEQ"),
            "CYTOPENIC": set(r.loc[r["CYTOPENIC"], "USUBJID"])}


def recovery_dates_by_parameter(adlb_rec: pd.DataFrame | None, paramcds: list[str]) -> dict[str, dict]:
    """:func:`recovery_dates` of each of ``paramcds`` (the same frames), with each date source
    made once for all the parameters and then split by PARAMCD: a parameter's records keep the
    frame's order, as :func:`recovery_dates` filters them (ADTTE has ~10 parameters a study)."""
    if adlb_rec is None or adlb_rec.empty:
        return {p: recovery_dates(adlb_rec, p) for p in paramcds}
    out: dict[str, dict] = {p: {} for p in paramcds}
    for name, date, seq in (("RECOVERY", "RECDT", "RECSEQ"), ("LASTLAB", "LASTDT", "LASTSEQ")):  # two sources
        has = adlb_rec[adlb_rec[date].notna()]
        dates = _dates(has, date, "LB", "LBSEQ", seq)
        rows = pd.Series(np.arange(len(has))).groupby(has["PARAMCD"].to_numpy()).indices  # PARAMCD -> positions
        none = _dates(adlb_rec.iloc[:0], date, "LB", "LBSEQ", seq)  # a parameter without such a date
        for p in paramcds:
            out[p][name] = dates.iloc[rows[p]].reset_index(drop=True) if p in rows else none.copy()
    low = adlb_rec[adlb_rec["CYTOPENIC"]]
    cytopenic = pd.Series(low["USUBJID"].to_numpy()).groupby(low["PARAMCD"].to_numpy()).unique()
    for p in paramcds:
        out[p]["CYTOPENIC"] = set(cytopenic[p]) if p in cytopenic.index else set()
    return out


def time_to_event(rules: pd.DataFrame, subjects: pd.Series, start: pd.DataFrame, sources: dict[str, pd.DataFrame]
                  ) -> pd.DataFrame:
    """One parameter's records (rules = its rows of adtte_censoring.csv), by the module rules 1-4.

    ``start``: USUBJID, dt (+ SRC*) of the origin; ``sources``: name -> date frame
    (USUBJID, dt, SRCDOM, SRCVAR, SRCSEQ), several rows per subject allowed; ``subjects``: the
    population's USUBJIDs (unique). The records are in the population's order."""
    paramcd = rules["paramcd"].iloc[0]
    out = times_to_event(rules, {paramcd: subjects}, {paramcd: start}, {paramcd: sources})
    order = pd.Index(subjects.to_numpy()).get_indexer(out["USUBJID"])
    return out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def _subject_keys(paramcd, usubjid) -> np.ndarray:
    """(parameter, subject) as one text key per record."""
    return (pd.Series(np.asarray(paramcd, dtype=object)) + "\x1f"
            + pd.Series(np.asarray(usubjid, dtype=object))).to_numpy(dtype=object)


def times_to_event(rules: pd.DataFrame, populations: dict[str, pd.Series], starts: dict[str, pd.DataFrame],
                   sources: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """The records of every parameter at once (rules = the rows of adtte_censoring.csv of the
    parameters), by the module rules 1-4, each parameter's subjects apart from the others'.

    Per parameter (PARAMCD): ``populations`` its subjects' USUBJIDs (unique), ``starts`` the
    origin frame (USUBJID, dt), ``sources`` its date sources, name -> frame (USUBJID, dt,
    SRCDOM, SRCVAR, SRCSEQ; several rows per subject allowed). One record per parameter and
    subject with an origin and a chosen date; the order of the records is not defined."""
    rows = rules.reset_index(drop=True)
    params = list(dict.fromkeys(rows["paramcd"]))  # the parameters in rule order (metadata)
    for r in rows.to_dict("records"):  # a few rule rows (metadata)
        if r["source_date"] not in sources[r["paramcd"]]:
            raise ConfigError(f"adtte_censoring.csv: {r['paramcd']} names unknown date {r['source_date']!r} "
                              f"(one of {', '.join(SOURCES)})")
    # the origin STARTDT of every (parameter, subject) of the populations
    origins = []
    for p in params:  # one origin per parameter (metadata loop, vectorised over subjects)
        first = starts[p].drop_duplicates("USUBJID")
        subjects = populations[p]
        origins.append(pd.Series(subjects.map(pd.Series(first["dt"].to_numpy(), index=first["USUBJID"].to_numpy())
                                              ).to_numpy(), index=_subject_keys(np.full(len(subjects), p, dtype=object),
                                                                                 subjects.to_numpy())))
    base_start = pd.concat(origins).dropna()
    # the candidate dates of every rule row at once: the rows' date sources one after
    # another (rule row k's records tagged _k = k), each with its (parameter, subject) origin
    frames = [sources[p][name] for p, name in zip(rows["paramcd"], rows["source_date"])]
    c = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    c = c.assign(_k=np.repeat(rows.index.to_numpy(), [len(f) for f in frames]))
    c = c.assign(_key=_subject_keys(rows["paramcd"].to_numpy()[c["_k"].to_numpy()], c["USUBJID"].to_numpy()))
    c = c.assign(STARTDT=c["_key"].map(base_start))
    c = c[c["STARTDT"].notna()]  # the population's subjects with an origin

    def rule(column: str) -> np.ndarray:
        """The rule row's ``column`` for each candidate of ``c``."""
        return rows[column].to_numpy()[c["_k"].to_numpy()]

    # events, the last assessment and a truncation count from the origin on
    from_origin = (rule("kind") == "event") | (rule("source_date") == "LASTASMT") | (rule("kind") == "truncate")
    c = c[~from_origin | (c["dt"] >= c["STARTDT"]).to_numpy()]
    # a truncation: its first date per subject
    cut = (rule("kind") == "truncate") & (rule("source_date") != "LASTASMT")
    firsts = c[cut].sort_values("dt", kind="mergesort").drop_duplicates(["_k", "USUBJID"]).index
    c = c[~cut | c.index.isin(firsts)]
    c = c.assign(kind=rule("kind"), priority=rule("priority").astype("int64"), EVNTDESC=rule("evntdesc"),
                 CNSDTDSC=rule("cnsdtdsc"), PARAMCD=rule("paramcd")).drop(columns="_k")
    trunc = c[c["kind"] == "truncate"]
    if len(trunc):
        stop = c["_key"].map(trunc.set_index("_key")["dt"])
        c = c[stop.isna() | (c["kind"] == "truncate") | (c["dt"] <= stop)]
        # the truncation date itself is the last-resort censoring date
        c = c.assign(kind=c["kind"].replace("truncate", "censor"))
    events = c[c["kind"] == "event"].sort_values(["_key", "dt", "priority"], kind="mergesort").drop_duplicates("_key")
    cens = c[(c["kind"] == "censor") & ~c["_key"].isin(set(events["_key"]))]
    # the first priority; within it the latest date (LASTASMT: the last evaluable assessment)
    cens = cens.sort_values(["_key", "priority", "dt"], ascending=[True, True, False],
                            kind="mergesort").drop_duplicates("_key")
    cens = cens.assign(dt=np.maximum(cens["dt"], cens["STARTDT"]), EVNTDESC="")
    events = events.assign(CNSDTDSC="")
    out = pd.concat([events.assign(CNSR=0.0), cens.assign(CNSR=1.0)], ignore_index=True)
    out["ADT"] = out["dt"]
    out["AVAL"] = out["ADT"] - out["STARTDT"] + 1
    first = rows.drop_duplicates("paramcd")
    out["PARAM"] = out["PARAMCD"].map(pd.Series(first["param"].to_numpy(), index=first["paramcd"].to_numpy()))
    return out.drop(columns=["dt", "kind", "priority", "_key"])


def engraftment_dates(eng: pd.DataFrame | None, paramcd: str) -> dict[str, pd.DataFrame]:
    """ENGRAFT and LASTLAB of one engraftment parameter (:mod:`pipeline.adam.engraftment`),
    traced to the LB record of the engraftment day and of the last result."""
    if eng is None or eng.empty:
        e = pd.DataFrame(columns=["USUBJID", "dt", "SRCDOM", "SRCVAR", "SRCSEQ"])
        return {"ENGRAFT": e, "LASTLAB": e}
    r = eng[eng["PARAMCD"] == paramcd]
    return {"ENGRAFT": _dates(r, "ENGDT", "LB", "LBSEQ", "ENGSEQ"), "LASTLAB": _dates(r, "LASTDT", "LB", "LBSEQ", "LASTSEQ")}


def build(sdtm: dict[str, pd.DataFrame], adam: dict[str, pd.DataFrame], spec: Spec, study: Study) -> dict:
    """ADTTE: every parameter of ``specs/rules/adtte_censoring.csv`` with its population."""
    adsl = adam["ADSL"]
    rules = spec.rule("adtte_censoring")
    resp = response_dates(adam.get("ADRS"), spec, study)
    rec_frame = adam.get("_recovery")
    safety = adsl.loc[text(adsl["SAFFL"]) == "Y", "USUBJID"]
    fixed = {
        "TRTSDT": _dates(adsl, "TRTSDT", "ADSL", "TRTSDT", None),
        "DEATH": _dates(adsl, "DTHDT", "ADSL", "DTHDT", None),
        "LSTALVDT": _dates(adsl, "LSTALVDT", "ADSL", "LSTALVDT", None),
        "FIRSTRSP": resp["FIRSTRSP"], "PROGRESSION": resp["PROGRESSION"],
        "LASTASMT": resp["ASSESSMENTS"],
        "HSCTDT": _dates(adsl, "HSCTDT", "ADSL", "HSCTDT", None),
    }
    eng_frame = adam.get("_engraftment")
    hsct = set(text(adsl.loc[text(adsl["HSCTFL"]) == "Y", "USUBJID"]))
    populations, starts, sources_of = {}, {}, {}
    recovered = recovery_dates_by_parameter(rec_frame, list(dict.fromkeys(rules["paramcd"])))
    for paramcd, r in rules.groupby("paramcd", sort=False):  # each parameter's sources (metadata)
        sources = dict(fixed)
        rec = recovered[paramcd]
        sources["RECOVERY"], sources["LASTLAB"] = rec["RECOVERY"], rec["LASTLAB"]
        if (r["source_date"] == "ENGRAFT").any():
            sources.update(engraftment_dates(eng_frame, paramcd))
        pop = r["population"].iloc[0]
        if pop == "SAFFL":
            subjects = safety
        elif pop == "RESPONDER":
            subjects = safety[safety.isin(set(resp["FIRSTRSP"]["USUBJID"]))]
        elif pop == "CYTOPENIC":
            subjects = safety[safety.isin(rec["CYTOPENIC"])]
        elif pop == "HSCT":
            subjects = safety[safety.isin(hsct)]
        else:
            raise ConfigError(f"adtte_censoring.csv: {paramcd} has unknown population {pop!r}")
        if subjects.empty:
            continue
        populations[paramcd], starts[paramcd], sources_of[paramcd] = subjects, sources[r["start"].iloc[0]], sources
    if not populations:
        return {}
    adtte = times_to_event(rules[rules["paramcd"].isin(set(populations))], populations, starts, sources_of)
    adtte = merge_adsl(adtte, adsl, ADSL_VARS)
    adtte["AVALU"] = "DAYS"
    adtte = adtte.sort_values(["USUBJID", "PARAMCD"], kind="mergesort")
    adtte["ASEQ"] = adtte.groupby("USUBJID").cumcount().astype("float64") + 1
    return {"ADTTE": adtte}
