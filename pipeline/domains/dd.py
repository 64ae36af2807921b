"""DD (Death Details, SDTMIG 3.4 section 6.3.3) and the death and disposition cross-checks.

DD: one record per subject with a collected primary cause of death (``ds.DTHCAUS`` on a death:
DSDECOD DEATH or a death date): DDTESTCD PRCDTH, DDORRES as written, DDSTRESC in upper case,
DDDTC = the date of the disposition form (``ds.DSSTDAT``; the CRF has no other collection date).
DM holds the death date and flag (DTHDTC/DTHFL) and DS the DEATH disposition.

Cross-checks (this module runs after AE, so both DS and AE are built):

- **Every death has its fatal AE or a documented reason** (report ``death_reconciliation``):
  a subject with DM.DTHFL = Y needs an AE with AEOUT FATAL or AESDTH Y, unless a row of
  ``specs/rules/death_without_fatal_ae.csv`` applies: the primary cause is listed there
  (``condition = cause``), or the death precedes the first exposure (``condition = timing``,
  ``BEFORE_FIRST_EXPOSURE``: RFXSTDTC empty or after the death date). Otherwise the warning
  ``dd_death_without_fatal_ae`` asks the site for the missing AE.
- **No AE after the end of study** (CORE-000717): an AE that starts after the subject's
  end-of-study disposition (the latest DS record of category DISPOSITION EVENT or OTHER EVENT)
  is the warning ``ds_ae_after_disposition``. Subjects still ongoing at the data cut-off have
  no such record (see :mod:`pipeline.domains.ds`), so nothing is compared for them.
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.dates import dtc_date
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.domains.dm import C_DEATH, C_YES, concat, ct_term, known_subject, raw_dtc, subject_ids, text
from pipeline.domains.ds import C_DISPOSITION, C_OTHER_EVENT
from pipeline.errors import ConfigError

PRIMARY_CAUSE = "PRCDTH"
RULE_TABLE = "death_without_fatal_ae"
#: NCI codes of the CT terms used here (OUT: FATAL)
C_FATAL = "C48275"
RECONCILIATION_COLUMNS = ["USUBJID", "DTHDTC", "primary_cause", "RFXSTDTC", "fatal_ae_seq", "fatal_ae_decod",
                          "fatal_ae_end", "status", "reason"]


def lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """``values`` (indexed by key) looked up for ``keys`` as text, ``""`` where absent."""
    out = keys.map(values.astype(object)).astype(object)
    return out.where(out.notna(), "").astype(str)


def death_causes(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw ds rows that record a death with a primary cause (subject in DM, valid dates), one per
    subject (the last row when a subject has several), and those rows."""
    sid = ctx.study.studyid
    raw = ctx.form("ds")
    ids = subject_ids(raw, sid)
    known, _ = known_subject(ctx, "ds", raw, ids)   # DS rejects the unknown subjects
    bad = pd.Series(False, index=raw.index)
    for col in ("DSSTDAT", "DTHDAT"):
        _, b = raw_dtc(raw, col)
        bad |= b
    cause = text(raw["DTHCAUS"]) if "DTHCAUS" in raw else pd.Series("", index=raw.index)
    died = text(raw["DSDECOD"]).str.upper().eq(ct_term(ctx.spec, "NCOMPLT", C_DEATH)) | text(raw["DTHDAT"]).ne("")
    rows = raw[known & ~bad & died & cause.ne("")]
    dsdat, _ = raw_dtc(rows, "DSSTDAT")
    recs = pd.DataFrame({"USUBJID": ids[rows.index], "DDORRES": cause[rows.index], "DDDTC": dsdat,
                         "_ROW": rows["_ROW"]})
    recs = recs.drop_duplicates("USUBJID", keep="last")
    return recs, rows


def reconcile_deaths(dm: pd.DataFrame, ae: pd.DataFrame | None, causes: pd.DataFrame, rules: pd.DataFrame,
                     spec) -> pd.DataFrame:
    """One row per subject with DM.DTHFL = Y: the fatal AE found, or the documented reason, or
    status ``QUERY`` (columns :data:`RECONCILIATION_COLUMNS`)."""
    yes = ct_term(spec, "NY", C_YES)
    dead = dm[dm["DTHFL"].astype(str).eq(yes)][["USUBJID", "DTHDTC", "RFXSTDTC"]].copy()
    if dead.empty:
        return empty(RECONCILIATION_COLUMNS)
    dead["primary_cause"] = lookup(dead["USUBJID"], causes.set_index("USUBJID")["DDORRES"])
    fatal_term = ct_term(spec, "OUT", C_FATAL)
    if ae is not None and len(ae):
        f = ae[ae["AEOUT"].astype(str).eq(fatal_term) | ae["AESDTH"].astype(str).eq(yes)]
        f = f.sort_values(["USUBJID", "AESEQ"], kind="mergesort").drop_duplicates("USUBJID", keep="first")
        f = f.set_index("USUBJID")
        seq = pd.to_numeric(dead["USUBJID"].map(f["AESEQ"]), errors="coerce")
        dead["fatal_ae_seq"] = seq.astype("Int64").astype(str).where(seq.notna(), "")
        dead["fatal_ae_decod"] = lookup(dead["USUBJID"], f["AEDECOD"])
        dead["fatal_ae_end"] = lookup(dead["USUBJID"], f["AEENDTC"])
    else:
        dead["fatal_ae_seq"] = dead["fatal_ae_decod"] = dead["fatal_ae_end"] = ""
    by_cause = rules[rules["condition"] == "cause"].set_index(rules.loc[rules["condition"] == "cause", "value"]
                                                               .str.upper())["reason"]
    timing = rules[(rules["condition"] == "timing") & (rules["value"] == "BEFORE_FIRST_EXPOSURE")]["reason"]
    death_d, first_d = dtc_date(dead["DTHDTC"]), dtc_date(dead["RFXSTDTC"])
    before = first_d.isna() | (death_d.notna() & (death_d < first_d))
    cause_reason = dead["primary_cause"].str.upper().str.strip().map(by_cause)
    has_ae = dead["fatal_ae_seq"].ne("")
    dead["status"] = "FATAL AE"
    dead["reason"] = ""
    documented_cause = ~has_ae & cause_reason.notna()
    dead.loc[documented_cause, "status"] = "DOCUMENTED"
    dead.loc[documented_cause, "reason"] = cause_reason[documented_cause]
    documented_time = ~has_ae & ~documented_cause & before & (len(timing) > 0)
    dead.loc[documented_time, "status"] = "DOCUMENTED"
    dead.loc[documented_time, "reason"] = timing.iloc[0] if len(timing) else ""
    query = ~has_ae & ~documented_cause & ~documented_time
    dead.loc[query, "status"] = "QUERY"
    dead.loc[query, "reason"] = "no AE with AEOUT FATAL or AESDTH Y and no documented reason"
    return dead[RECONCILIATION_COLUMNS].sort_values("USUBJID", kind="mergesort").reset_index(drop=True)


def ae_after_disposition(ds: pd.DataFrame, ae: pd.DataFrame | None, spec) -> pd.DataFrame:
    """AE records starting after the subject's last end-of-study DS record (date parts).
    Columns USUBJID, AESEQ, AETERM, AESTDTC, DSDECOD, DSSTDTC."""
    cols = ["USUBJID", "AESEQ", "AETERM", "AESTDTC", "DSDECOD", "DSSTDTC"]
    if ae is None or ae.empty or ds.empty:
        return empty(cols)
    cats = {ct_term(spec, "DSCAT", C_DISPOSITION), ct_term(spec, "DSCAT", C_OTHER_EVENT)}
    end = ds[ds["DSCAT"].isin(cats)].copy()
    end["_d"] = dtc_date(end["DSSTDTC"])
    end = end.dropna(subset=["_d"]).sort_values(["USUBJID", "_d"], kind="mergesort").drop_duplicates("USUBJID", keep="last")
    a = ae.merge(end[["USUBJID", "DSDECOD", "DSSTDTC", "_d"]], on="USUBJID", how="inner")
    late = a[dtc_date(a["AESTDTC"]) > a["_d"]]
    return late[cols].reset_index(drop=True)


def build(ctx: StudyContext) -> DomainResult:
    spec, sid = ctx.spec, ctx.study.studyid
    res = DomainResult()
    dm = ctx.datasets["DM"]
    causes, rows = death_causes(ctx)
    dd = pd.DataFrame({
        "STUDYID": sid, "DOMAIN": "DD", "USUBJID": causes["USUBJID"].to_numpy(),
        "DDTESTCD": PRIMARY_CAUSE, "DDTEST": spec.decode_map("DDTESTCD").get(PRIMARY_CAUSE, ""),
        "DDORRES": causes["DDORRES"].to_numpy(),
        "DDSTRESC": causes["DDORRES"].str.strip().str.upper().to_numpy(), "DDDTC": causes["DDDTC"].to_numpy()})
    if dd["DDTEST"].eq("").any():
        raise ConfigError(f"codelist DDTESTCD of the spec has no term {PRIMARY_CAUSE}")
    dd["DDDY"] = study_day_by_subject(dd["DDDTC"], dd["USUBJID"], dm)
    dd["DDSEQ"] = assign_seq(dd, ["DDTESTCD"])
    if len(dd):  # no deaths -> no DD: FDA's Technical Conformance Guide asks not to submit empty datasets
        res.datasets["DD"] = dd[spec.var_names("DD")].reset_index(drop=True)
    res.consumed = ctx.consumed_rows("ds", causes["_ROW"], "DD")

    rules = spec.rule(RULE_TABLE)
    ae = ctx.datasets.get("AE")
    recon = reconcile_deaths(dm, ae, causes, rules, spec)
    res.reports["death_reconciliation"] = recon
    findings = []
    q = recon[recon["status"] == "QUERY"]
    if len(q):
        findings.append(pd.DataFrame({
            "study": sid, "file": "DM", "row": "", "column": "DTHFL", "value": "Y",
            "check": "dd_death_without_fatal_ae", "severity": "warning",
            "message": ("subject " + q["USUBJID"] + " died (DTHDTC " + q["DTHDTC"] + ", cause '" + q["primary_cause"]
                        + "') but AE has no record with AEOUT FATAL or AESDTH Y, and " + f"specs/rules/{RULE_TABLE}.csv"
                        + " gives no reason; see reports/death_reconciliation.csv").to_numpy()}))
    late = ae_after_disposition(ctx.datasets.get("DS", empty(["USUBJID", "DSCAT", "DSSTDTC", "DSDECOD"])), ae, spec)
    if len(late):
        findings.append(pd.DataFrame({
            "study": sid, "file": "AE", "row": "", "column": "AESTDTC", "value": late["AESTDTC"].to_numpy(),
            "check": "ds_ae_after_disposition", "severity": "warning",
            "message": ("subject " + late["USUBJID"] + ": AE '" + late["AETERM"] + "' (AESEQ "
                        + late["AESEQ"].astype("Int64").astype(str) + ") starts " + late["AESTDTC"]
                        + ", after the end-of-study disposition " + late["DSDECOD"] + " on " + late["DSSTDTC"]).to_numpy()}))
    res.findings = concat(findings, FINDING_COLUMNS)
    res.rejected = empty(REJECTED_COLUMNS)
    return res
