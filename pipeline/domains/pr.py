"""PR (Procedures, SDTMIG 3.4 section 6.1.4).

Prior hematopoietic stem cell transplant (raw ``phsct`` form, :func:`prior_hsct`): the CRF asks
every subject whether a transplant was received before the study, so each subject has a
pre-specified PR record (PRPRESP Y) with PROCCUR Y/N; each transplant has its type in PRTRT and
its date in PRSTDTC. PRCAT PRIOR HSCT separates them from the procedures of the study
(leukapheresis, HSCT after CAR-T: the ``pr`` helper's part of this module, each source form
with its own function joined in :func:`build` before PRSEQ is assigned).
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.domains.dm import C_YES, concat, ct_term, dated_form, text

PRIOR_HSCT = "PRIOR HSCT"


def prior_hsct(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame, list, list]:
    """PR records of the raw ``phsct`` form, their provenance, rejections and findings."""
    sid = ctx.study.studyid
    raw, ids, known, st, bad, rejected, findings = dated_form(ctx, "phsct", "PRSTDAT", "transplant")
    keep = known & ~bad
    r = raw[keep]
    pr = pd.DataFrame({"STUDYID": sid, "DOMAIN": "PR", "USUBJID": ids[keep], "PRSPID": text(r["PRSPID"]),
                       "PRTRT": text(r["PRTRT"]), "PRCAT": PRIOR_HSCT,
                       "PRPRESP": ct_term(ctx.spec, "NY", C_YES), "PROCCUR": text(r["PROCCUR"]),
                       "PRSTDTC": st[keep]})
    return pr, ctx.consumed_rows("phsct", r["_ROW"], "PR"), rejected, findings


def build(ctx: StudyContext) -> DomainResult:
    spec = ctx.spec
    res = DomainResult()
    pr, consumed, rejected, findings = prior_hsct(ctx)
    parts = [pr]                # the other PR sources append their records here
    nonempty = [p for p in parts if len(p)]
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    if not nonempty:
        return res
    pr = pd.concat(nonempty, ignore_index=True)
    pr["PRSTDY"] = study_day_by_subject(pr["PRSTDTC"], pr["USUBJID"], ctx.datasets["DM"])
    se = ctx.datasets.get("SE")
    pr["EPOCH"] = derive_epoch(pr["USUBJID"], pr["PRSTDTC"], se) if se is not None else ""
    pr["PRSEQ"] = assign_seq(pr, ["PRCAT", "PRSTDTC", "PRSPID"])
    res.datasets["PR"] = pr[spec.var_names("PR")].reset_index(drop=True)
    res.consumed = consumed
    return res
