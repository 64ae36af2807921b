"""IE (Inclusion/Exclusion Criteria Not Met, SDTMIG 3.4 section 6.3.4).

The ``ie`` form has one row with IEYN=Y when every criterion was met (consumed, no IE record:
IE holds only criteria not met) or one row per criterion not met (IEYN=N). For each of those,
IETEST and IECAT come from the study's TI (``[[ti]]``); IEORRES/IESTRESC are oriented per SDTMIG
3.4 IE assumption 2: an inclusion criterion not met is ``N``, an exclusion criterion met is
``Y``. Eligibility is assessed at the SCREENING visit.

Eligibility-lab failures: an enrolled subject whose screening labs certainly fail a criterion of
the study's ``[[eligibility_labs]]`` (``criterion_result`` FAIL in the ``eligibility_labs``
report of the LB module, :mod:`pipeline.rules.eligibility`) and who has no collected IE record for
that criterion gets a derived IE record for it (IESPID ``ELIGIBILITY LABS``; IEDTC = the date of
the earliest screening result that does not meet the threshold, else of the criterion's
screening results). The investigator ticked the criterion as met; the labs say it was not, and
DV reports the enrolment as a deviation (:mod:`pipeline.domains.dv`). IE therefore runs after LB.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.visits import visit_numbers
from pipeline.derive.identifiers import by_subject
from pipeline.domains.dm import C_NO, C_YES, concat, ct_term, dated_form, make_findings, make_rejected, text

C_INCLUSION = "C25532"          # IECAT INCLUSION
#: visit of the schedule at which eligibility is assessed
SCREENING_VISIT = "SCREENING"
#: consumed-dataset label of IEYN=Y rows (no IE record: all criteria met)
ALL_MET = "IE (all criteria met)"
#: IESPID of IE records derived from the eligibility-labs check
FROM_LABS = "ELIGIBILITY LABS"


def lab_failures(report: pd.DataFrame | None, collected: pd.DataFrame) -> pd.DataFrame:
    """USUBJID, IETESTCD, IEDTC of enrolled subjects whose screening labs fail a criterion
    (``eligibility_labs`` report, criterion_result FAIL) without a collected IE record for it."""
    cols = ["USUBJID", "IETESTCD", "IEDTC"]
    if report is None or report.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    fail = report[report["criterion_result"].eq("FAIL")].copy()
    fail["_date"] = fail["LBDTC"].astype(str).str.slice(0, 10)
    fail["_notmet"] = fail["row_result"].eq("NOT MET") | fail["group_result"].eq("FAIL")
    fail = fail[fail["_date"].str.match(r"^\d{4}-\d{2}-\d{2}$")]
    fail = fail.sort_values(["USUBJID", "IETESTCD", "_notmet", "_date"], ascending=[True, True, False, True],
                            kind="mergesort").drop_duplicates(["USUBJID", "IETESTCD"])
    have = pd.MultiIndex.from_frame(collected[["USUBJID", "IETESTCD"]].astype(str))
    new = ~pd.MultiIndex.from_frame(fail[["USUBJID", "IETESTCD"]].astype(str)).isin(have)
    return fail.loc[new, ["USUBJID", "IETESTCD", "_date"]].rename(columns={"_date": "IEDTC"}).reset_index(drop=True)


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

    ie = pd.DataFrame({"STUDYID": sid, "DOMAIN": "IE", "USUBJID": ids[rows], "IESPID": "", "IETESTCD": testcd[rows],
                       "IETEST": testcd[rows].map(ti["IETEST"]), "IECAT": iecat, "IEDTC": iso[rows]})
    labs = lab_failures(ctx.reports.get("eligibility_labs"), ie)
    labs = labs[labs["IETESTCD"].isin(ti.index)]
    if len(labs):
        ie = pd.concat([ie, pd.DataFrame({
            "STUDYID": sid, "DOMAIN": "IE", "USUBJID": labs["USUBJID"], "IESPID": FROM_LABS,
            "IETESTCD": labs["IETESTCD"], "IETEST": labs["IETESTCD"].map(ti["IETEST"]),
            "IECAT": labs["IETESTCD"].map(ti["IECAT"]), "IEDTC": labs["IEDTC"]})], ignore_index=True)
    ie["IEORRES"] = ie_result(ie["IECAT"], spec)
    ie["IESTRESC"] = ie["IEORRES"]
    dm = ctx.datasets["DM"]
    ie["IEDY"] = study_day_by_subject(ie["IEDTC"], ie["USUBJID"], dm)
    vis = visit_numbers(pd.Series(SCREENING_VISIT, index=ie.index), study)
    ie["VISITNUM"], ie["VISIT"] = vis["VISITNUM"], vis["VISIT"]
    se = ctx.datasets.get("SE")
    ie["EPOCH"] = derive_epoch(ie["USUBJID"], ie["IEDTC"], se) if se is not None else ""
    ie["IESEQ"] = assign_seq(ie, ["IETESTCD", "IESPID"])
    res.datasets["IE"] = ie[spec.var_names("IE")].reset_index(drop=True)

    # enrolled although a criterion was not met: a protocol deviation to review
    enrolled = by_subject(dm, "ARMCD").ne("")
    dev = sub[ids[rows].map(enrolled).fillna(False).astype(bool)]
    findings.append(make_findings(sid, dev, "IETESTCD", "ie_enrolled_not_eligible", "warning",
                                  "subject " + text(raw["SUBJID"]) + " enrolled although criterion " + testcd + " was not met"))
    res.consumed = pd.concat([ctx.consumed_rows("ie", raw.loc[all_met, "_ROW"], ALL_MET),
                              ctx.consumed_rows("ie", sub["_ROW"], "IE")], ignore_index=True)
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
