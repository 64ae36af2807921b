"""EX (Exposure, SDTMIG 3.4 section 6.1.3): lymphodepleting agents and the CAR-T infusion.

One record per administration record of the raw ``ex`` form (lymphodepletion: one per agent and
day; CAR-T: one per infusion fraction, EXSPID CART-1, CART-2, ... for a split infusion).
EXDOSE/EXDOSU/EXDOSFRM/EXROUTE are kept as collected and checked against the spec's codelists
(EXDOSU ``cells/kg`` is a sponsor extension of the CDISC UNIT codelist, see the spec).
EPOCH needs the subject elements, which need EX (first lymphodepletion dose): they are computed
here with the same shared :func:`pipeline.derive.epoch.subject_elements` the SE module uses.
VISITNUM is not mapped: the ex form carries no visit.

The cell product of a CAR-T administration: EXLOT (standard EX variable) = the lot infused;
the total CAR+ cells of the fraction (ex.EXCARTOT, 10^6 cells), the lot's viability (EXVIAB, %)
and transduction efficiency (EXTREFF, %) go to SUPPEX (QNAM CARTOT, VIABIL, TRANSEFF; IDVAR EXSEQ).
They are collected on the infusion record and describe what this subject received, so they
qualify the EX record; SDTMIG 3.4 has no domain for the characteristics of an administered
product lot (BS and CP describe the subject's own specimens and cells). The gate checks
EXCARTOT = EXDOSE x screening weight (:func:`pipeline.intake.checks.check_cell_product`).
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.domains.dm import (concat, known_subject, make_findings, make_rejected, raw_dtc, subject_ids,
                                 text)

#: variables checked against their codelist (variable -> raw column)
CODED = {"EXDOSU": "EXDOSU", "EXDOSFRM": "EXDOSFRM", "EXROUTE": "EXROUTE", "EXCAT": "EXCAT"}


def exposure_records(raw: pd.DataFrame, studyid: str) -> pd.DataFrame:
    """EX variables that come straight from the raw rows (no DM/SE needed), aligned to ``raw``."""
    start, _ = raw_dtc(raw, "EXSTDAT", "EXSTTIM")
    end, _ = raw_dtc(raw, "EXENDAT", "EXENTIM")
    return pd.DataFrame({
        "STUDYID": studyid, "DOMAIN": "EX", "USUBJID": subject_ids(raw, studyid),
        "EXSPID": text(raw["EXSPID"]), "EXTRT": text(raw["EXTRT"]), "EXCAT": text(raw["EXCAT"]).str.upper(),
        "EXDOSE": pd.to_numeric(raw["EXDOSE"], errors="coerce").astype("float64"),
        "EXDOSU": text(raw["EXDOSU"]), "EXDOSFRM": text(raw["EXDOSFRM"]).str.upper(),
        "EXROUTE": text(raw["EXROUTE"]).str.upper(), "EXSTDTC": start, "EXENDTC": end,
        "EXLOT": text(raw["EXLOT"]) if "EXLOT" in raw else "",
    }, index=raw.index)


#: SUPPEX QNAM -> raw column of the ex form (cell product of a CAR-T administration)
PRODUCT_QUALIFIERS = {"CARTOT": "EXCARTOT", "VIABIL": "EXVIAB", "TRANSEFF": "EXTREFF"}


def product_qualifiers(raw: pd.DataFrame) -> pd.DataFrame:
    """The SUPPEX qualifier columns (QNAM names) of the CAR-T product, as collected (text)."""
    return pd.DataFrame({q: text(raw[c]) if c in raw else "" for q, c in PRODUCT_QUALIFIERS.items()},
                        index=raw.index)


def build(ctx: StudyContext) -> DomainResult:
    study, spec = ctx.study, ctx.spec
    sid = study.studyid
    raw = ctx.form("ex")
    res = DomainResult()
    rejected, findings = [], []

    ids = subject_ids(raw, sid)
    known, rej = known_subject(ctx, "ex", raw, ids)
    rejected.append(rej)
    _, bad_start = raw_dtc(raw, "EXSTDAT", "EXSTTIM")
    _, bad_end = raw_dtc(raw, "EXENDAT", "EXENTIM")
    bad_date = known & (bad_start | bad_end)
    rejected.append(make_rejected("ex", raw[bad_date], "EXSTDAT", "impossible start or end date/time"))
    findings.append(make_findings(sid, raw[bad_date], "EXSTDAT", "ex_impossible_date", "error",
                                  "impossible EX start/end date or time, subject " + text(raw["SUBJID"])))
    treatments = study.treatments
    declared = dict(zip(treatments["extrt"].astype(str).str.upper(), treatments["excat"].astype(str).str.upper()))
    extrt = text(raw["EXTRT"]).str.upper()
    undeclared = known & ~bad_date & ~extrt.isin(list(declared))
    rejected.append(make_rejected("ex", raw[undeclared], "EXTRT", "EXTRT is not a treatment of the study parameters"))
    findings.append(make_findings(sid, raw[undeclared], "EXTRT", "ex_treatment_not_in_study", "error",
                                  "EXTRT " + extrt + " is not declared in [[treatments]] of " + sid))
    keep = known & ~bad_date & ~undeclared
    raw = raw[keep]

    ex = exposure_records(raw, sid)
    wrong_cat = ex["EXCAT"].ne(ex["EXTRT"].str.upper().map(declared))
    findings.append(make_findings(sid, raw[wrong_cat], "EXCAT", "ex_category_mismatch", "error",
                                  "EXCAT " + ex["EXCAT"] + " differs from the category of " + ex["EXTRT"]
                                  + " in the study parameters"))
    for var, col in CODED.items():
        cl = spec.vars("EX").set_index("variable").loc[var, "codelist"]
        if cl:
            bad = ex[var].ne("") & ~ex[var].isin(spec.terms(cl))
            findings.append(make_findings(sid, raw[bad], col, "ex_codelist", "error",
                                          var + " " + ex[var] + " is not a term of codelist " + cl))

    dm = ctx.datasets["DM"]
    se = subject_elements(dm, ex, study)
    ex["EPOCH"] = derive_epoch(ex["USUBJID"], ex["EXSTDTC"], se)
    ex["EXSTDY"] = study_day_by_subject(ex["EXSTDTC"], ex["USUBJID"], dm)
    ex["EXENDY"] = study_day_by_subject(ex["EXENDTC"], ex["USUBJID"], dm)
    ex["EXSEQ"] = assign_seq(ex, ["EXSTDTC", "EXTRT", "EXSPID"])
    res.datasets["EX"] = ex[spec.var_names("EX")].reset_index(drop=True)
    supp = build_supp(ex.join(product_qualifiers(raw)), "EX", spec, "EXSEQ")
    if len(supp):
        res.datasets["SUPPEX"] = supp[spec.var_names("SUPPEX")].reset_index(drop=True)
    res.derived["subject_elements"] = se  # SE reads them instead of deriving them again
    res.consumed = ctx.consumed_rows("ex", raw["_ROW"], "EX")
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
