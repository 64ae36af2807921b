"""MH (Medical History, SDTMIG 3.4 section 6.2.6) and SUPPMH from the raw ``mh`` form.

What the history of these studies is, and where SDTMIG 3.4 puts each part (also said in the
dataset comments of ``specs/sdtm/datasets.csv``):

- the disease under study: one MH record with MHCAT PRIMARY DIAGNOSIS, the date of diagnosis in
  MHSTDTC (partial as collected), the disease subtype (leukemia subtype, aplastic anemia
  severity, autoimmune disease group) in SUPPMH.DISSUBTP;
- the history the eligibility criteria depend on (CNS disease, GvHD after an allogeneic HSCT):
  pre-specified MH records (MHPRESP Y, MHOCCUR Y/N);
- prior systemic lines of therapy: CM records (:func:`pipeline.domains.cm.prior_therapy`);
- a prior HSCT: PR records (:func:`pipeline.domains.pr.prior_hsct`).

Coding (:func:`code_history`): MHDECOD/MHBODSYS are the MedDRA PT and primary SOC of the term,
through the study's coding decisions and ``specs/rules/mh_terms.csv`` (and the MedDRA
distribution when the study has one). The module also writes the ``medical_history`` report:
one row per subject with diagnosis, subtype, date, prior lines and prior HSCT.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.derive.visits import visit_numbers
from pipeline.domains.dm import concat, ct_term, dated_form, make_findings, make_rejected, raw_dtc, text
from pipeline.rules import meddra
from pipeline.rules.ctcae_terms import decisions_path, load_coding_decisions, normalise_term
from pipeline.spec import Spec

PRIMARY = "PRIMARY DIAGNOSIS"
C_ONGOING = "C53279"           # STENRF ONGOING
#: MHCAT sort order within a subject (primary diagnosis first)
CAT_ORDER = {PRIMARY: 0, "CNS DISEASE HISTORY": 1, "GVHD HISTORY": 2}


def code_history(term: pd.Series, table: pd.DataFrame, decisions: pd.DataFrame | None = None,
                 dist: meddra.Distribution | None = None) -> pd.DataFrame:
    """MHDECOD (MedDRA PT) and MHBODSYS (primary SOC) of each verbatim MHTERM.

    The normalised verbatim (:func:`pipeline.rules.ctcae_terms.normalise_term`) selects an LLT
    name: the study's coding decision for that verbatim first, else ``mh_terms.csv``. With a
    MedDRA distribution the LLT's primary path gives PT and SOC
    (:func:`pipeline.rules.meddra.code_with_distribution`); without one, the table's PT and SOC
    of that LLT. Returns MHDECOD, MHBODSYS and ``coded`` aligned with ``term``.
    """
    key = normalise_term(term)
    tab_key = normalise_term(table["verbatim"])
    llt = key.map(pd.Series(table["llt_name"].to_numpy(), index=tab_key.to_numpy()))
    if decisions is not None and len(decisions):
        dkey = normalise_term(decisions["verbatim"])
        decided = key.map(pd.Series(decisions["llt_name"].astype(str).to_numpy(), index=dkey.to_numpy()))
        llt = decided.where(decided.notna(), llt)
    llt = llt.astype("object").fillna("")
    if dist is not None:
        hier = meddra.code_with_distribution(llt, pd.Series(np.nan, index=term.index), dist)
        decod, soc = hier["AEDECOD"].astype(str), hier["AEBODSYS"].astype(str)
    else:
        by_llt = table.drop_duplicates("llt_name").set_index("llt_name")
        decod = llt.map(by_llt["pt_name"]).fillna("").astype(str)
        soc = llt.map(by_llt["soc_name"]).fillna("").astype(str)
    return pd.DataFrame({"MHDECOD": decod, "MHBODSYS": soc, "coded": decod.ne("")}, index=term.index)


def ongoing_at_screening(ongo: pd.Series, endtc: pd.Series, dtc: pd.Series, spec: Spec) -> tuple[pd.Series, pd.Series]:
    """MHENRTPT = ONGOING and MHENTPT = MHDTC when the condition is ongoing at the screening
    collection (mh.MHONGO = Y) and has no end date (SDTMIG 3.4 4.4.7)."""
    on = ongo.eq("Y") & endtc.eq("")
    return (pd.Series(np.where(on, ct_term(spec, "STENRF", C_ONGOING), ""), index=ongo.index),
            pd.Series(np.where(on, dtc, ""), index=ongo.index))


def subject_summary(mh: pd.DataFrame, supp: pd.DataFrame, cm: pd.DataFrame | None,
                    suppcm: pd.DataFrame | None, pr: pd.DataFrame | None) -> pd.DataFrame:
    """Report ``medical_history``: per subject the primary diagnosis (term, MedDRA PT, subtype,
    date), CNS/GvHD history answers, the number of prior lines and the prior HSCT."""
    p = mh[mh["MHCAT"].eq(PRIMARY)].drop_duplicates("USUBJID")
    sub = supp[supp["QNAM"].eq("DISSUBTP")] if len(supp) else supp
    seq_sub = pd.Series(sub["QVAL"].to_numpy(), index=sub["USUBJID"].to_numpy()) if len(sub) else pd.Series(dtype=str)
    out = pd.DataFrame({"USUBJID": p["USUBJID"].to_numpy(), "MHTERM": p["MHTERM"].to_numpy(),
                        "MHDECOD": p["MHDECOD"].to_numpy(), "MHSTDTC": p["MHSTDTC"].to_numpy()})
    out["DISSUBTP"] = out["USUBJID"].map(seq_sub).astype("str").fillna("")  # str first: no subtype maps to float64
    for cat, col in (("CNS DISEASE HISTORY", "CNS_HISTORY"), ("GVHD HISTORY", "GVHD_HISTORY")):  # two items
        r = mh[mh["MHCAT"].eq(cat)].drop_duplicates("USUBJID")
        out[col] = out["USUBJID"].map(pd.Series(r["MHOCCUR"].to_numpy(dtype=object), index=r["USUBJID"].to_numpy())).astype(object).fillna("")
    lines = pd.Series(dtype=float)
    if suppcm is not None and len(suppcm):
        ln = suppcm[suppcm["QNAM"].eq("LINENUM")]
        lines = pd.to_numeric(ln["QVAL"], errors="coerce").groupby(ln["USUBJID"].to_numpy()).max()
    out["PRIOR_LINES"] = out["USUBJID"].map(lines).fillna(0).astype(int)
    if pr is not None and len(pr):
        done = pr[pr["PROCCUR"].eq("Y")].sort_values("PRSTDTC", kind="stable")
        last = done.drop_duplicates("USUBJID", keep="last").set_index("USUBJID")
        out["PRIOR_HSCT"] = np.where(out["USUBJID"].isin(last.index), "Y",
                                     np.where(out["USUBJID"].isin(pr["USUBJID"]), "N", ""))
        # str before the fill: with no completed HSCT the mapped values are all-missing float64
        out["PRIOR_HSCT_TYPE"] = out["USUBJID"].map(last["PRTRT"]).astype("str").fillna("")
        out["PRIOR_HSCT_DATE"] = out["USUBJID"].map(last["PRSTDTC"]).astype("str").fillna("")
    return out.sort_values("USUBJID", kind="stable").reset_index(drop=True)


def build(ctx: StudyContext) -> DomainResult:
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    res = DomainResult()
    raw, ids, known, iso, bad, rejected, findings = dated_form(ctx, "mh", "MHDAT", "collection")
    st, bad_st = raw_dtc(raw, "MHSTDAT")
    en, bad_en = raw_dtc(raw, "MHENDAT")
    for col, b in (("MHSTDAT", bad_st), ("MHENDAT", bad_en)):  # two date columns
        b = b & known & ~bad
        rejected.append(make_rejected("mh", raw[b], col, f"impossible {col}"))
        findings.append(make_findings(sid, raw[b], col, "mh_impossible_date", "error",
                                      f"impossible {col}, subject " + text(raw["SUBJID"])))
        bad = bad | b
    keep = known & ~bad
    r = raw[keep]
    mh = pd.DataFrame({"STUDYID": sid, "DOMAIN": "MH", "USUBJID": ids[keep], "MHSPID": text(r["MHSPID"]),
                       "MHTERM": text(r["MHTERM"]), "MHCAT": text(r["MHCAT"]).str.upper(),
                       "MHPRESP": text(r["MHPRESP"]), "MHOCCUR": text(r["MHOCCUR"]),
                       "MHDTC": iso[keep], "MHSTDTC": st[keep], "MHENDTC": en[keep]})
    table = spec.rule("mh_terms")
    decisions = load_coding_decisions(decisions_path(study))
    folder = meddra.distribution_folder(study)
    dist = meddra.load_distribution(folder, str(spec.standards.get("meddra_version", ""))) if folder else None
    coded = code_history(mh["MHTERM"], table, decisions, dist)
    mh["MHDECOD"], mh["MHBODSYS"] = coded["MHDECOD"], coded["MHBODSYS"]
    mh["MHSOC"] = mh["MHBODSYS"]          # the primary SOC (analysis uses the primary path)
    final = ctx.mode == "final"
    unc = ~coded["coded"]
    findings.append(make_findings(sid, r[unc.to_numpy()], "MHTERM", "mh_uncoded", "error" if final else "warning",
                                  "MHTERM is not coded: add it to the study's coding decisions (specs/studies/"
                                  f"{sid}.coding.csv) or specs/rules/mh_terms.csv" + ("" if final else " (draft build: allowed)")))
    dm = ctx.datasets["DM"]
    mh["MHDY"] = study_day_by_subject(mh["MHDTC"], mh["USUBJID"], dm)
    mh["MHSTDY"] = study_day_by_subject(mh["MHSTDTC"], mh["USUBJID"], dm)
    mh["MHENDY"] = study_day_by_subject(mh["MHENDTC"], mh["USUBJID"], dm)
    vis = visit_numbers(r["VISIT"], study, mh["MHDY"], mh["USUBJID"], mh["MHDTC"])
    mh["VISITNUM"], mh["VISIT"] = vis["VISITNUM"], vis["VISIT"]
    se = ctx.datasets.get("SE")
    mh["EPOCH"] = derive_epoch(mh["USUBJID"], mh["MHDTC"], se) if se is not None else ""
    mh["MHENRTPT"], mh["MHENTPT"] = ongoing_at_screening(text(r["MHONGO"]), mh["MHENDTC"], mh["MHDTC"], spec)
    mh["_cat"] = mh["MHCAT"].map(CAT_ORDER).fillna(len(CAT_ORDER))
    mh["MHSEQ"] = assign_seq(mh, ["_cat", "MHSPID"])
    mh["DISSUBTP"] = text(r["DISSUBTP"]).where(mh["MHCAT"].eq(PRIMARY), "")
    supp = build_supp(mh, "MH", spec, "MHSEQ")
    res.datasets["MH"] = mh[spec.var_names("MH")].reset_index(drop=True)
    if len(supp):
        res.datasets["SUPPMH"] = supp
    res.reports["medical_history"] = subject_summary(res.datasets["MH"], supp, ctx.datasets.get("CM"),
                                                     ctx.datasets.get("SUPPCM"), ctx.datasets.get("PR"))
    res.consumed = ctx.consumed_rows("mh", r["_ROW"], "MH")
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res


__all__ = ["code_history", "ongoing_at_screening", "subject_summary", "build"]
