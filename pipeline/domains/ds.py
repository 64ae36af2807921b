"""DS (Disposition, SDTMIG 3.4 section 6.2.3) and SUPPDS.

Records per subject:

- protocol milestone INFORMED CONSENT OBTAINED (DSCAT PROTOCOL MILESTONE) on ``dm.ICDAT``;
- the end-of-study disposition of the ``ds`` form (DSCAT DISPOSITION EVENT, DSSCAT STUDY
  PARTICIPATION, DSDECOD from CT NCOMPLT, DSTERM verbatim or the decode when none was written),
  dated ``DSSTDAT``, or the death date when the disposition is DEATH;
- a death after another disposition (DTHDAT with DSDECOD not DEATH): DSDECOD DEATH with
  DSCAT OTHER EVENT on the death date.

SUPPDS: the last-known-alive date (LKADTC) on the disposition record. DM.DTHDTC/DTHFL come from
the same ds.DTHDAT (see dm.py). The primary cause of death (ds.DTHCAUS) is the DD record PRCDTH
(:mod:`pipeline.domains.dd`, SDTMIG 3.4 Death Details), not a supplemental qualifier.

Disposition as of the data cut-off (report ``disposition_status``, one row per DM subject):
COMPLETED (end-of-study disposition COMPLETED), DISCONTINUED with the reason (any other
end-of-study disposition, screen failures and deaths included) or ONGOING (no end-of-study
disposition collected by the cut-off ``data_cutoff`` of the study parameters). The status words
are the CDISC (ADaM) CT Subject Trial Status terms (C124296: COMPLETED C25250, DISCONTINUED
C25484, ONGOING C53279). SDTM DS holds only what was collected: an ongoing subject has no
end-of-study record, so its last DSSTDTC is the consent and the CORE check of AEs after the last
DSSTDTC (CORE-000717) is explained by this status, not by an invented record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.domains.dm import (C_DEATH, concat, ct_term, known_subject, make_findings, make_rejected, raw_dtc,
                                 subject_ids, text)

# NCI codes of the CT terms assigned here
C_CONSENT = "C16735"            # PROTMLST INFORMED CONSENT OBTAINED
C_MILESTONE = "C74588"          # DSCAT PROTOCOL MILESTONE
C_DISPOSITION = "C74590"        # DSCAT DISPOSITION EVENT
C_OTHER_EVENT = "C150824"       # DSCAT OTHER EVENT
#: sponsor subcategory of the end-of-study disposition (codelist DSSCAT of the spec)
STUDY_PARTICIPATION = "STUDY PARTICIPATION"


def consent_records(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """INFORMED CONSENT OBTAINED milestones from dm.ICDAT (rows with a valid consent date)."""
    spec, sid = ctx.spec, ctx.study.studyid
    dm_raw = ctx.form("dm")
    ids = subject_ids(dm_raw, sid)
    iso, bad = raw_dtc(dm_raw, "ICDAT")
    keep = iso.ne("") & ~bad & ids.isin(ctx.datasets["DM"]["USUBJID"]) & ~ids.duplicated()
    term = ct_term(spec, "PROTMLST", C_CONSENT)
    recs = pd.DataFrame({"USUBJID": ids[keep], "DSTERM": term, "DSDECOD": term,
                         "DSCAT": ct_term(spec, "DSCAT", C_MILESTONE), "DSSCAT": "", "DSSTDTC": iso[keep],
                         "_FORM": "dm", "_ROW": dm_raw.loc[keep, "_ROW"]})
    return recs, dm_raw[keep]


def disposition_records(ctx: StudyContext, raw: pd.DataFrame) -> pd.DataFrame:
    """End-of-study dispositions and deaths from the ds form (rows already validated)."""
    spec, sid = ctx.spec, ctx.study.studyid
    ids = subject_ids(raw, sid)
    decod = text(raw["DSDECOD"]).str.upper()
    verbatim = text(raw["DSTERM"])
    stdat, _ = raw_dtc(raw, "DSSTDAT")
    dthdat, _ = raw_dtc(raw, "DTHDAT")
    lka, _ = raw_dtc(raw, "LKADAT")
    death = ct_term(spec, "NCOMPLT", C_DEATH)
    is_death = decod.eq(death)
    disp = pd.DataFrame({
        "USUBJID": ids, "DSTERM": verbatim.where(verbatim.ne(""), decod), "DSDECOD": decod,
        "DSCAT": ct_term(spec, "DSCAT", C_DISPOSITION), "DSSCAT": STUDY_PARTICIPATION,
        "DSSTDTC": dthdat.where(is_death & dthdat.ne(""), stdat),
        "LKADTC": lka,
        "_FORM": "ds", "_ROW": raw["_ROW"]})
    later = ~is_death & dthdat.ne("")
    after = pd.DataFrame({
        "USUBJID": ids[later], "DSTERM": death, "DSDECOD": death,
        "DSCAT": ct_term(spec, "DSCAT", C_OTHER_EVENT), "DSSCAT": "", "DSSTDTC": dthdat[later],
        "LKADTC": "", "_FORM": "ds", "_ROW": raw.loc[later, "_ROW"]})
    return pd.concat([disp, after], ignore_index=True)


#: Subject Trial Status terms (CDISC ADaM CT C124296) used by the disposition_status report
COMPLETED, DISCONTINUED, ONGOING = "COMPLETED", "DISCONTINUED", "ONGOING"
C_COMPLETED = "C25250"          # NCOMPLT COMPLETED


def disposition_status(ds: pd.DataFrame, dm: pd.DataFrame, spec, cutoff: str) -> pd.DataFrame:
    """Each DM subject's status at the data cut-off from its latest DISPOSITION EVENT record.

    Columns USUBJID, status (COMPLETED / DISCONTINUED / ONGOING), reason (DSDECOD of the
    disposition; empty when ongoing or completed), DSSTDTC, data_cutoff, death_after (DSSTDTC of
    a DEATH recorded as OTHER EVENT after the disposition, else empty).
    """
    disp = ds[ds["DSCAT"] == ct_term(spec, "DSCAT", C_DISPOSITION)]
    disp = disp.sort_values(["USUBJID", "DSSTDTC", "DSSEQ"], kind="mergesort").drop_duplicates("USUBJID", keep="last")
    disp = disp.set_index("USUBJID")
    other = ds[ds["DSCAT"] == ct_term(spec, "DSCAT", C_OTHER_EVENT)].drop_duplicates("USUBJID", keep="last")
    out = pd.DataFrame({"USUBJID": dm["USUBJID"].astype(str).to_numpy()})
    decod = out["USUBJID"].map(disp["DSDECOD"].astype(object)).astype(object)
    decod = decod.where(decod.notna(), "")
    completed = decod.eq(ct_term(spec, "NCOMPLT", C_COMPLETED))
    out["status"] = np.select([decod.eq(""), completed], [ONGOING, COMPLETED], default=DISCONTINUED)
    out["reason"] = decod.where(~completed, "")
    stdtc = out["USUBJID"].map(disp["DSSTDTC"].astype(object)).astype(object)
    out["DSSTDTC"] = stdtc.where(stdtc.notna(), "")
    out["data_cutoff"] = cutoff
    after = out["USUBJID"].map(other.set_index("USUBJID")["DSSTDTC"].astype(object)).astype(object)
    out["death_after"] = after.where(after.notna(), "")
    return out.sort_values("USUBJID", kind="mergesort").reset_index(drop=True)


def build(ctx: StudyContext) -> DomainResult:
    spec, sid = ctx.spec, ctx.study.studyid
    res = DomainResult()
    raw = ctx.form("ds")
    ids = subject_ids(raw, sid)
    known, rej = known_subject(ctx, "ds", raw, ids)
    rejected, findings = [rej], []
    bad = pd.Series(False, index=raw.index)
    for col in ("DSSTDAT", "DTHDAT", "LKADAT"):
        _, b = raw_dtc(raw, col)
        bad |= b
    bad &= known
    rejected.append(make_rejected("ds", raw[bad], "DSSTDAT", "impossible disposition, death or last-known-alive date"))
    findings.append(make_findings(sid, raw[bad], "DSSTDAT", "ds_impossible_date", "error",
                                  "impossible DS date, subject " + text(raw["SUBJID"])))
    terms = spec.terms("NCOMPLT")
    decod = text(raw["DSDECOD"]).str.upper()
    off_ct = known & ~bad & ~decod.isin(terms)
    findings.append(make_findings(sid, raw[off_ct], "DSDECOD", "ds_decod_codelist", "error",
                                  "DSDECOD " + decod + " is not a term of NCOMPLT"))
    no_dth = known & ~bad & decod.eq(ct_term(spec, "NCOMPLT", C_DEATH)) & text(raw["DTHDAT"]).eq("")
    findings.append(make_findings(sid, raw[no_dth], "DTHDAT", "ds_death_without_date", "warning",
                                  "DSDECOD=DEATH without a death date, subject " + text(raw["SUBJID"])))
    raw = raw[known & ~bad]

    consent, consent_rows = consent_records(ctx)
    recs = pd.concat([consent.assign(LKADTC=""), disposition_records(ctx, raw)], ignore_index=True)
    recs.insert(0, "STUDYID", sid)
    recs.insert(1, "DOMAIN", "DS")
    dm = ctx.datasets["DM"]
    se = ctx.datasets.get("SE")
    recs["EPOCH"] = derive_epoch(recs["USUBJID"], recs["DSSTDTC"], se) if se is not None else ""
    recs["DSSTDY"] = study_day_by_subject(recs["DSSTDTC"], recs["USUBJID"], dm)
    recs["_CATORD"] = recs["DSCAT"].map({ct_term(spec, "DSCAT", C_MILESTONE): 0}).fillna(1)
    recs["DSSEQ"] = assign_seq(recs, ["DSSTDTC", "_CATORD", "DSDECOD"])
    res.datasets["DS"] = recs[spec.var_names("DS")].reset_index(drop=True)
    res.datasets["SUPPDS"] = build_supp(recs, "DS", spec, "DSSEQ")[spec.var_names("SUPPDS")]
    res.reports["disposition_status"] = disposition_status(res.datasets["DS"], dm, spec, ctx.study.data_cutoff)

    res.consumed = pd.concat([
        ctx.consumed_rows("dm", consent_rows["_ROW"], "DS"),
        ctx.consumed_rows("ds", raw["_ROW"], "DS"),
        ctx.consumed_rows("ds", recs.loc[(recs["_FORM"] == "ds") & recs["LKADTC"].ne(""),
                                         "_ROW"].drop_duplicates(), "SUPPDS"),
    ], ignore_index=True)
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
