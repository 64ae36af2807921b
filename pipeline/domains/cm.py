"""CM (Concomitant/Prior Medications, SDTMIG 3.4 section 6.1.2) and SUPPCM.

Prior systemic therapy lines (raw ``prtx`` form, :func:`prior_therapy`): SDTMIG 3.4 holds prior
as well as concomitant medications in CM, a category identifying prior cancer therapy. One CM
record per line: CMTRT = the regimen as written, CMCAT = the study's ``[history]
prior_therapy_category`` (PRIOR CANCER THERAPY, PRIOR IMMUNOSUPPRESSIVE THERAPY), CMGRPID =
``LINE n``; the line number and the best response to the line, which have no standard CM
variable, are SUPPCM qualifiers LINENUM and BESTRESP.

Concomitant medications (CRS/ICANS treatment, bridging, prophylaxis, steroids) are the ``cm``
helper's part of this module; each source form has its own function and :func:`build` joins
their records before CMSEQ is assigned.
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.domains.dm import concat, dated_form, make_findings, make_rejected, raw_dtc, text
from pipeline.errors import ConfigError


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
    spec = ctx.spec
    res = DomainResult()
    cm, consumed, rejected, findings = prior_therapy(ctx)
    parts = [cm]                # the other CM sources append their records here
    cm = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else cm
    if cm.empty:
        res.rejected = concat(rejected, REJECTED_COLUMNS)
        res.findings = concat(findings, FINDING_COLUMNS)
        return res
    dm = ctx.datasets["DM"]
    cm["CMSTDY"] = study_day_by_subject(cm["CMSTDTC"], cm["USUBJID"], dm)
    cm["CMENDY"] = study_day_by_subject(cm["CMENDTC"], cm["USUBJID"], dm)
    se = ctx.datasets.get("SE")
    cm["EPOCH"] = derive_epoch(cm["USUBJID"], cm["CMSTDTC"], se) if se is not None else ""
    cm["CMSEQ"] = assign_seq(cm, ["CMCAT", "CMSTDTC", "CMSPID"])
    supp = build_supp(cm, "CM", spec, "CMSEQ")
    res.datasets["CM"] = cm[spec.var_names("CM")].reset_index(drop=True)
    if len(supp):
        res.datasets["SUPPCM"] = supp
    res.consumed = consumed
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
