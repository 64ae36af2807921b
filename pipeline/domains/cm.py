"""CM (Concomitant/Prior Medications, SDTMIG 3.4 section 6.1.2) and the CM-AE relationships.

Sources
    Every raw form listed in ``specs/rules/cm_sources.csv`` feeds CM: one row per (form,
    target), the target being a column of the ``cm`` form's contract (CMTRT, CMCAT, CMSTDAT,
    ...) filled from a column of that form or from a constant ``value`` (e.g. a prior-therapy
    form can set CMCAT = PRIOR CANCER THERAPY). The ``cm`` form itself maps column to column. A
    second form thus joins CM by spec rows, without code; its rows are consumed and rejected
    under their own form name. CMSPID must be unique per subject across the source forms.

CM holds what was collected: verbatim CMTRT, category, indication, dose, unit, frequency,
route, start/end dates (partial dates kept, SDTMIG 3.4 4.4.2). Derived: USUBJID, CMSEQ, CMSTDY,
CMENDY, EPOCH, CMENRTPT/CMENTPT (CMONGO = Y: ONGOING at the data cut-off, as for AE), and
CMDECOD from the sponsor coding table ``specs/rules/cm_coding.csv``.

Dictionary (WHODrug Global, licensed like MedDRA)
    CMDECOD is the WHODrug Global preferred name. The pipeline reads no WHODrug release (none
    is licensed here); the coding table maps each verbatim (upper case, spaces collapsed) to
    the INN generic name, which is the WHODrug preferred name of the single-ingredient
    product, and define.xml declares the WHODrug version of ``specs/sdtm/standards.toml``.
    A verbatim missing from the table leaves CMDECOD empty and is an OPEN row of the
    ``cm_coding_queries`` report with a warning (CMDECOD is Permissible in SDTMIG 3.4).

RELREC (SDTMIG 3.4 8.2)
    A medication given for an adverse event names the event's AE line number (``CMAENO`` =
    AESPID). Each such pair becomes two RELREC records with one RELID (``CMAE-<CMSEQ>``): the CM
    record (IDVAR CMSEQ) and the AE record (IDVAR AESEQ). CMINDC keeps the indication text as
    collected. A link naming no AE of the subject is an error finding ``cm_ae_link`` (the gate
    reports it too, ``cm.ae_link``); the medication still reaches CM.

Prior systemic therapy lines (raw ``prtx`` form, :func:`prior_therapy`, the ``mh`` helper's
part): SDTMIG 3.4 holds prior as well as concomitant medications in CM, a category identifying
prior cancer therapy. One CM record per line: CMTRT = the regimen as written, CMCAT = the study's
``[history] prior_therapy_category``, CMGRPID = ``LINE n``; the line number and the best response
to the line are SUPPCM qualifiers LINENUM and BESTRESP. Regimens are not coded (CMDECOD empty:
WHODrug codes single products, a regimen's agents are not collected separately).

Reports: ``cm_coding_queries`` and ``crs_icans_treatments`` (each CRS/ICANS AE with the
treatments related to it: the listing a reviewer reads next to the ASTCT grades).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.domains.dm import (concat, dated_form, known_subject, make_findings, make_rejected, raw_dtc, subject_ids,
                                 text)
from pipeline.errors import ConfigError
from pipeline.spec import Spec

DOMAIN = "CM"
#: the canonical input columns (the cm form's contract): every source form is mapped onto them
SOURCE_FORM = "cm"
ONGOING = "ONGOING"
YES = "Y"


def source_map(spec: Spec) -> pd.DataFrame:
    """``specs/rules/cm_sources.csv``: form, target, column, value (checked against the raw
    contract: each target is a column of the cm form; each column a column of its form)."""
    src = spec.rule("cm_sources")
    targets = set(spec.form_columns(SOURCE_FORM)["column"])
    bad = src[~src["target"].isin(targets)]
    if len(bad):
        raise ConfigError(f"cm_sources.csv: target(s) {', '.join(sorted(set(bad['target'])))} are not columns of "
                          f"form {SOURCE_FORM} (specs/raw/columns.csv)")
    for form, rows in src.groupby("form", sort=False):  # a few source forms (metadata)
        cols = set(spec.form_columns(form)["column"])
        missing = rows[rows["column"].ne("") & ~rows["column"].isin(cols)]
        if len(missing):
            raise ConfigError(f"cm_sources.csv: column(s) {', '.join(missing['column'])} are not in form {form}")
    return src


def source_records(ctx: StudyContext, src: pd.DataFrame) -> pd.DataFrame:
    """The raw rows of every source form as cm-form columns, with ``_FORM``, ``_FILE``, ``_ROW``."""
    targets = ctx.spec.form_columns(SOURCE_FORM)["column"].tolist()
    frames = []
    for form, rows in src.groupby("form", sort=False):  # a few source forms (metadata)
        raw = ctx.form(form)
        out = pd.DataFrame(index=raw.index)
        for c in ("STUDYID", "SITEID", "SUBJID"):
            out[c] = raw[c] if c in raw else np.nan
        for r in rows.itertuples(index=False):  # one spec row per target column (metadata)
            out[r.target] = raw[r.column] if r.column else (r.value if len(raw) else np.nan)
        for c in targets:
            if c not in out:
                out[c] = np.nan
        out["_FORM"] = form
        out["_FILE"] = raw["_FILE"] if "_FILE" in raw else ""
        out["_ROW"] = raw["_ROW"] if "_ROW" in raw else np.arange(len(raw)) + 2
        frames.append(out)
    if not frames:
        return empty(targets + ["_FORM", "_FILE", "_ROW"])
    return pd.concat(frames, ignore_index=True)


def _normalised(s: pd.Series) -> pd.Series:
    return text(s).str.upper().str.replace(r"\s+", " ", regex=True)


def coded_names(verbatim: pd.Series, spec: Spec) -> pd.Series:
    """CMDECOD of each verbatim from ``specs/rules/cm_coding.csv`` ('' when not in the table)."""
    table = spec.rule("cm_coding")
    dup = table["verbatim"].str.upper().duplicated(keep=False)
    if dup.any():
        raise ConfigError(f"cm_coding.csv: verbatim(s) listed twice: {', '.join(sorted(set(table.loc[dup, 'verbatim'])))}")
    lookup = pd.Series(table["cmdecod"].to_numpy(), index=_normalised(table["verbatim"]).to_numpy())
    return _normalised(verbatim).map(lookup).fillna("").astype(str)


def medication_records(raw: pd.DataFrame, ids: pd.Series, studyid: str, cutoff: str, spec: Spec) -> pd.DataFrame:
    """CM variables of the raw rows (collected values, coding, ongoing end point) with the
    bookkeeping columns; dates already known valid."""
    st, _ = raw_dtc(raw, "CMSTDAT")
    en, _ = raw_dtc(raw, "CMENDAT")
    out = pd.DataFrame({"STUDYID": studyid, "DOMAIN": DOMAIN, "USUBJID": ids.to_numpy(),
                        "CMSPID": text(raw["CMSPID"]).to_numpy(), "CMTRT": text(raw["CMTRT"]).to_numpy()},
                       index=raw.index)
    out["CMDECOD"] = coded_names(raw["CMTRT"], spec)
    for c in ("CMCAT", "CMINDC", "CMDOSU", "CMDOSFRQ", "CMROUTE", "CMAENO"):
        out[c] = text(raw[c])
    out["CMDOSE"] = pd.to_numeric(raw["CMDOSE"], errors="coerce").astype("float64")
    out["CMSTDTC"], out["CMENDTC"] = st, en
    ongoing = text(raw["CMONGO"]).eq(YES) & en.eq("")
    out["CMENRTPT"] = np.where(ongoing, ONGOING, "")
    out["CMENTPT"] = np.where(ongoing, cutoff, "")
    for c in ("_FORM", "_FILE", "_ROW"):
        out[c] = raw[c]
    return out


def ae_relationships(cm: pd.DataFrame, ae: pd.DataFrame | None, studyid: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELREC records of each CM record linked (CMAENO) to an AE of the same subject, and the
    CM rows whose link names no AE (SDTMIG 3.4 8.2; RELID = CMAE-<CMSEQ>, one per pair)."""
    cols = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELTYPE", "RELID"]
    linked = cm[cm["CMAENO"].ne("")]
    if linked.empty:
        return empty(cols), linked
    if ae is None or ae.empty:
        return empty(cols), linked
    key = ae.drop_duplicates(["USUBJID", "AESPID"]).set_index(["USUBJID", "AESPID"])["AESEQ"]
    aeseq = pd.Series(key.reindex(pd.MultiIndex.from_arrays([linked["USUBJID"], linked["CMAENO"]])).to_numpy(),
                      index=linked.index)
    ok = aeseq.notna()
    good = linked[ok]
    relid = "CMAE-" + good["CMSEQ"].astype(int).astype(str)
    cm_part = pd.DataFrame({"USUBJID": good["USUBJID"], "RDOMAIN": "CM", "IDVAR": "CMSEQ",
                            "IDVARVAL": good["CMSEQ"].astype(int).astype(str), "RELID": relid})
    ae_part = pd.DataFrame({"USUBJID": good["USUBJID"], "RDOMAIN": "AE", "IDVAR": "AESEQ",
                            "IDVARVAL": aeseq[ok].astype(int).astype(str), "RELID": relid})
    rel = pd.concat([cm_part, ae_part], ignore_index=True)
    rel.insert(0, "STUDYID", studyid)
    rel["RELTYPE"] = ""
    rel["_n"] = rel["RELID"].str.slice(5).astype(int)
    rel = rel.sort_values(["USUBJID", "_n", "RDOMAIN"], ascending=[True, True, False], kind="mergesort")
    return rel[cols].reset_index(drop=True), linked[~ok]


def coding_queries(cm: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct verbatim: its CMDECOD and status (RESOLVED, or OPEN when uncoded)."""
    g = cm.groupby("CMTRT", sort=True).agg(CMDECOD=("CMDECOD", "first"), records=("CMTRT", "size")).reset_index()
    g["status"] = np.where(g["CMDECOD"].ne(""), "RESOLVED", "OPEN")
    return g[["CMTRT", "CMDECOD", "records", "status"]]


def crs_icans_treatments(cm: pd.DataFrame, rel: pd.DataFrame, ae: pd.DataFrame | None) -> pd.DataFrame:
    """The ``crs_icans_treatments`` report: each CM record related to an AE in RELREC, with the
    AE's term, grade and dates next to the treatment's name, dose and dates."""
    cols = ["USUBJID", "AESEQ", "AETERM", "AEDECOD", "AETOXGR", "AESTDTC", "AEENDTC", "CMSEQ", "CMTRT", "CMDECOD",
            "CMDOSE", "CMDOSU", "CMDOSFRQ", "CMROUTE", "CMSTDTC", "CMENDTC", "CMSTDY"]
    if rel.empty or ae is None:
        return empty(cols)
    c = rel[rel["RDOMAIN"].eq("CM")][["USUBJID", "RELID", "IDVARVAL"]].rename(columns={"IDVARVAL": "CMSEQ"})
    a = rel[rel["RDOMAIN"].eq("AE")][["USUBJID", "RELID", "IDVARVAL"]].rename(columns={"IDVARVAL": "AESEQ"})
    p = c.merge(a, on=["USUBJID", "RELID"])
    p["CMSEQ"], p["AESEQ"] = p["CMSEQ"].astype(int), p["AESEQ"].astype(int)
    p = p.merge(cm.assign(CMSEQ=cm["CMSEQ"].astype(int)), on=["USUBJID", "CMSEQ"])
    p = p.merge(ae.assign(AESEQ=pd.to_numeric(ae["AESEQ"]).astype(int))[
        ["USUBJID", "AESEQ", "AETERM", "AEDECOD", "AETOXGR", "AESTDTC", "AEENDTC"]], on=["USUBJID", "AESEQ"])
    return p.sort_values(["USUBJID", "AESEQ", "CMSTDTC", "CMSEQ"], kind="mergesort")[cols].reset_index(drop=True)


def prior_therapy(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame, list, list]:
    """CM records (with QNAM columns LINENUM, BESTRESP and ``_ROW``) of the raw ``prtx`` form,
    and its rejections and findings. See the module docstring for the mapping."""
    sid = ctx.study.studyid
    cat = str(ctx.study.get("history", {}).get("prior_therapy_category", "")).strip()
    raw, ids, known, st, bad, rejected, findings = dated_form(ctx, "prtx", "CMSTDAT", "line start")
    if len(raw) and not cat:
        raise ConfigError(f"study {sid}: [history] prior_therapy_category is missing (CMCAT of the prior lines)")
    en, bad_en = raw_dtc(raw, "CMENDAT")
    bad_en = bad_en & known & ~bad
    rejected.append(make_rejected("prtx", raw[bad_en], "CMENDAT", "impossible line end date"))
    findings.append(make_findings(sid, raw[bad_en], "CMENDAT", "prtx_impossible_date", "error",
                                  "impossible CMENDAT, subject " + text(raw["SUBJID"])))
    keep = known & ~bad & ~bad_en
    r = raw[keep]
    line = text(r["LINENUM"])
    cm = pd.DataFrame({"STUDYID": sid, "DOMAIN": "CM", "USUBJID": ids[keep], "CMGRPID": "LINE " + line,
                       "CMSPID": "PT-" + line, "CMTRT": text(r["CMTRT"]), "CMCAT": cat,
                       "CMSTDTC": st[keep], "CMENDTC": en[keep], "LINENUM": line,
                       "BESTRESP": text(r["BESTRESP"]), "_ROW": r["_ROW"].to_numpy()})
    return cm, ctx.consumed_rows("prtx", r["_ROW"], "CM"), rejected, findings


def build(ctx: StudyContext) -> DomainResult:
    """CM and its RELREC records from the source forms (see the module docstring)."""
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    src = source_map(spec)
    raw = source_records(ctx, src)
    ids = subject_ids(raw, sid)
    known, rej = known_subject(ctx, SOURCE_FORM, raw, ids)
    rejected, findings = [rej.assign(form=raw.loc[~known, "_FORM"].to_numpy())], []
    bad = pd.Series(False, index=raw.index)
    for col in ("CMSTDAT", "CMENDAT"):  # the two date columns
        _, b = raw_dtc(raw, col)
        b &= known & ~bad
        sub = raw[b]
        if len(sub):
            rejected.append(make_rejected(SOURCE_FORM, sub, col, f"impossible {col}").assign(form=sub["_FORM"].to_numpy()))
            findings.append(make_findings(sid, sub, col, "cm_impossible_date", "error",
                                          f"impossible {col}, subject " + text(sub["SUBJID"])))
        bad |= b
    keep = known & ~bad
    raw, ids = raw[keep], ids[keep]
    dm = ctx.datasets["DM"]
    cm = medication_records(raw, ids, sid, study.data_cutoff, spec)
    cm["CMGRPID"] = ""
    prior, prior_consumed, prior_rej, prior_find = prior_therapy(ctx)
    rejected += prior_rej
    findings += prior_find
    if len(prior):
        prior = prior.assign(CMDECOD="", CMINDC="", CMDOSU="", CMDOSFRQ="", CMROUTE="", CMAENO="", CMDOSE=np.nan,
                             CMENRTPT="", CMENTPT="", _FORM="prtx", _FILE="")
        cm = pd.concat([cm, prior], ignore_index=True)
    cm["CMSTDY"] = study_day_by_subject(cm["CMSTDTC"], cm["USUBJID"], dm)
    cm["CMENDY"] = study_day_by_subject(cm["CMENDTC"], cm["USUBJID"], dm)
    se = ctx.datasets.get("SE")
    cm["EPOCH"] = derive_epoch(cm["USUBJID"], cm["CMSTDTC"], se) if se is not None and len(cm) else ""
    cm["CMSEQ"] = assign_seq(cm, ["CMSTDTC", "CMSPID", "CMTRT"]) if len(cm) else np.nan

    ae = ctx.datasets.get("AE")
    rel, dangling = ae_relationships(cm, ae, sid)
    if len(dangling):
        findings.append(make_findings(sid, dangling, "CMAENO", "cm_ae_link", "error",
                                      "CMAENO " + dangling["CMAENO"] + " names no AE (AESPID) of subject "
                                      + dangling["USUBJID"] + ": the treatment cannot be related to its AE in RELREC"))
    uncoded = cm[cm["CMDECOD"].eq("") & cm["_FORM"].ne("prtx")]
    if len(uncoded):
        findings.append(make_findings(sid, uncoded, "CMTRT", "cm_uncoded", "warning",
                                      "CMTRT '" + uncoded["CMTRT"] + "' is not in the coding table "
                                      "specs/rules/cm_coding.csv: CMDECOD left empty (report cm_coding_queries)"))

    consumed = [pd.DataFrame({"form": cm["_FORM"].to_numpy(), "row": cm["_ROW"].to_numpy(), "dataset": DOMAIN})]
    supp = build_supp(cm, DOMAIN, spec, "CMSEQ")
    if len(prior) and len(supp):
        consumed.append(ctx.consumed_rows("prtx", prior["_ROW"], "SUPPCM"))
    if len(rel):
        cm_rel = rel[rel["RDOMAIN"].eq("CM")]
        linked = cm[(cm["USUBJID"] + "|" + cm["CMSEQ"].astype(int).astype(str)).isin(
            cm_rel["USUBJID"] + "|" + cm_rel["IDVARVAL"])]
        consumed.append(pd.DataFrame({"form": linked["_FORM"].to_numpy(), "row": linked["_ROW"].to_numpy(),
                                      "dataset": "RELREC"}))
    datasets = {DOMAIN: cm[spec.var_names(DOMAIN)].reset_index(drop=True)}
    if len(supp):
        datasets["SUPPCM"] = supp
    if len(rel):
        datasets["RELREC"] = rel[spec.var_names("RELREC")]
    return DomainResult(
        datasets=datasets,
        reports={"cm_coding_queries": coding_queries(cm[cm["_FORM"].ne("prtx")]),
                 "crs_icans_treatments": crs_icans_treatments(cm, rel, ae)},
        consumed=concat(consumed, ["form", "row", "dataset"]),
        rejected=concat(rejected, REJECTED_COLUMNS),
        findings=concat(findings, FINDING_COLUMNS),
    )
