"""IE (Inclusion/Exclusion Criteria Not Met, SDTMIG 3.4 section 6.3.4).

The ``ie`` form has one row with IEYN=Y when every criterion was met (consumed, no IE record:
IE holds only criteria not met) or one row per criterion not met (IEYN=N). For each of those,
IETEST and IECAT come from the study's TI (``[[ti]]``); IEORRES/IESTRESC are oriented per SDTMIG
3.4 IE assumption 2: an inclusion criterion not met is ``N``, an exclusion criterion met is
``Y``. Eligibility is assessed at the SCREENING visit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.visits import visit_numbers
from pipeline.domains.dm import C_NO, C_YES, concat, ct_term, dated_form, make_findings, make_rejected, text

C_INCLUSION = "C25532"          # IECAT INCLUSION
#: visit of the schedule at which eligibility is assessed
SCREENING_VISIT = "SCREENING"
#: consumed-dataset label of IEYN=Y rows (no IE record: all criteria met)
ALL_MET = "IE (all criteria met)"


def criteria(ctx: StudyContext) -> pd.DataFrame:
    """The study's TI criteria indexed by IETESTCD (columns IETEST, IECAT)."""
    ti = ctx.study.table("ti")
    if ti.empty:
        return pd.DataFrame(columns=["IETEST", "IECAT"])
    return pd.DataFrame({"IETEST": ti["ietest"].astype(str).to_numpy(),
                         "IECAT": ti["iecat"].astype(str).str.upper().to_numpy()},
                        index=ti["ietestcd"].astype(str).to_numpy())


def ie_result(iecat: pd.Series, spec) -> pd.Series:
    """IEORRES: N for an inclusion criterion not met, Y for an exclusion criterion met."""
    inclusion = iecat.eq(ct_term(spec, "IECAT", C_INCLUSION))
    return pd.Series(np.where(inclusion, ct_term(spec, "NY", C_NO), ct_term(spec, "NY", C_YES)), index=iecat.index)


def build(ctx: StudyContext) -> DomainResult:
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    res = DomainResult()
    raw, ids, known, iso, bad, rejected, findings = dated_form(ctx, "ie", "IEDAT", "eligibility assessment")
    ok = known & ~bad
    yes = ct_term(spec, "NY", C_YES)
    all_met = ok & text(raw["IEYN"]).str.upper().eq(yes)
    ti = criteria(ctx)
    testcd = text(raw["IETESTCD"]).str.upper()
    not_met = ok & ~all_met
    unknown = not_met & ~testcd.isin(ti.index)
    rejected.append(make_rejected("ie", raw[unknown], "IETESTCD", "IETESTCD is not a criterion of the study's TI"))
    findings.append(make_findings(sid, raw[unknown], "IETESTCD", "ie_criterion_not_in_ti", "error",
                                  "IETESTCD " + testcd + " is not in TI of " + sid + ", subject " + text(raw["SUBJID"])))
    rows = not_met & ~unknown
    sub = raw[rows]
    iecat = testcd[rows].map(ti["IECAT"])
    raw_cat = text(sub["IECAT"]).str.upper()
    mism = raw_cat.ne("") & raw_cat.ne(iecat)
    findings.append(make_findings(sid, sub[mism], "IECAT", "ie_category_mismatch", "error",
                                  "IECAT " + raw_cat + " differs from TI (" + iecat + ") for " + testcd[rows]))

    ie = pd.DataFrame({"STUDYID": sid, "DOMAIN": "IE", "USUBJID": ids[rows], "IETESTCD": testcd[rows],
                       "IETEST": testcd[rows].map(ti["IETEST"]), "IECAT": iecat, "IEDTC": iso[rows]})
    ie["IEORRES"] = ie_result(ie["IECAT"], spec)
    ie["IESTRESC"] = ie["IEORRES"]
    dm = ctx.datasets["DM"]
    ie["IEDY"] = study_day_by_subject(ie["IEDTC"], ie["USUBJID"], dm)
    vis = visit_numbers(pd.Series(SCREENING_VISIT, index=ie.index), study)
    ie["VISITNUM"], ie["VISIT"] = vis["VISITNUM"], vis["VISIT"]
    se = ctx.datasets.get("SE")
    ie["EPOCH"] = derive_epoch(ie["USUBJID"], ie["IEDTC"], se) if se is not None else ""
    ie["IESEQ"] = assign_seq(ie, ["IETESTCD"])
    res.datasets["IE"] = ie[spec.var_names("IE")].reset_index(drop=True)

    # enrolled although a criterion was not met: a protocol deviation to review
    enrolled = dm.set_index("USUBJID")["ARMCD"].ne("")
    dev = sub[ids[rows].map(enrolled).fillna(False).astype(bool)]
    findings.append(make_findings(sid, dev, "IETESTCD", "ie_enrolled_not_eligible", "warning",
                                  "subject " + text(raw["SUBJID"]) + " enrolled although criterion " + testcd + " was not met"))
    res.consumed = pd.concat([ctx.consumed_rows("ie", raw.loc[all_met, "_ROW"], ALL_MET),
                              ctx.consumed_rows("ie", sub["_ROW"], "IE")], ignore_index=True)
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
