"""PR (Procedures, SDTMIG 3.4 section 6.1.4), SUPPPR and FAPR (findings about the procedures),
with their RELREC rows.

Which raw forms feed PR is data: ``specs/sdtm/mapping/PR.csv`` has one row per source form
(PRCAT, PRDECOD, the raw columns of PRTRT, PRSPID and the start date/time, PRPRESP and the
PROCCUR column of a pre-specified question, the FAOBJ of the form's findings). A new source
form is a new row there, its QNAMs in ``specs/sdtm/valuelevel/SUPPPR.csv`` (source
``CRF <form>.<column>``) and its findings in ``specs/sdtm/mapping/FAPR.csv``; no code changes.
The sources today: leukapheresis (``aph``), allogeneic HSCT after CAR-T (``hsct``) and prior
HSCT (``phsct``: the CRF asks every subject whether a transplant was received before the study,
so each subject has a pre-specified record, PRPRESP Y, with PROCCUR Y/N; each transplant has its
type in PRTRT and its date in PRSTDTC; its form checks are in :mod:`pipeline.intake.checks`).

- PR: one record per raw row; PRSTDTC from the start date (+ time); EPOCH from SE; PRSTDY from
  DM.RFSTDTC; PRSEQ by PRSTDTC, PRCAT, PRSPID.
- SUPPPR: the value-level QNAMs whose source names a column of the form (IDVAR PRSEQ); a QNAM of
  type date is converted to ISO 8601.
- FAPR (split FA, DOMAIN FA): one record per mapped item with a result. FADTC is the item's date
  column; with ``date_when`` the date is used only when the result is one of those values, the
  ``fallback_date`` otherwise (engraftment N: the centre's last assessment). FASEQ continues after
  the subject's highest FA.FASEQ (unique across the split datasets, SDTMIG 3.4 4.1.7).
- RELREC: each procedure (IDVAR PRSEQ) with the findings whose FAOBJ is that procedure (RDOMAIN
  FA, IDVAR FASEQ), RELID = ``PR-<PRSEQ>``; the GvHD grades (FAOBJ the GvHD) carry the
  procedure's FASPID only.

Checks (findings): a date in a detail column that is not a date (error, the value is not
mapped); an engraftment or GvHD date missing where the result needs it (warning); a procedure of
category TRANSPLANT AFTER CAR-T before the first CAR-T infusion (error); a finding dated before
its procedure (warning).
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp, supp_qualifiers
from pipeline.derive.identifiers import by_subject
from pipeline.domains.dm import C_YES, concat, ct_term, dated_form, make_findings, make_rejected, raw_dtc, text
from pipeline.domains.vs import standard_text
from pipeline.errors import ConfigError
from pipeline.spec import Spec

RELREC_COLUMNS = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELTYPE", "RELID"]
#: PRCAT of procedures that must follow the CAR-T infusion
AFTER_CART = "TRANSPLANT AFTER CAR-T"


def procedure_records(raw: pd.DataFrame, source: pd.Series, ids: pd.Series, studyid: str, spec: Spec) -> pd.DataFrame:
    """PR variables straight from one source form's rows (``source``: its PR mapping row)."""
    start, _ = raw_dtc(raw, source["start_date"], source["start_time"] or None)
    presp = ct_term(spec, "NY", C_YES) if source["prpresp"] == "Y" else ""
    occur = text(raw[source["proccur"]]) if source["proccur"] else ""
    return pd.DataFrame({
        "STUDYID": studyid, "DOMAIN": "PR", "USUBJID": ids,
        "PRSPID": text(raw[source["prspid"]]), "PRTRT": text(raw[source["prtrt"]]).str.upper(),
        "PRDECOD": source["prdecod"], "PRCAT": source["prcat"], "PRPRESP": presp, "PROCCUR": occur,
        "PRSTDTC": start,
        "_form": source["form"], "_row": raw["_ROW"].to_numpy(), "_faobj": source["faobj"] or source["prdecod"],
    }, index=raw.index)


def form_qualifiers(spec: Spec, form: str) -> pd.DataFrame:
    """SUPPPR qualifiers collected on ``form``: qnam, column, type (from the value-level source
    ``CRF <form>.<column>``)."""
    vl = spec.valuelevel
    rows = vl[(vl["dataset"] == "SUPPPR") & (vl["variable"] == "QVAL") & (vl["where_variable"] == "QNAM")]
    src = rows["source"].str.extract(r"^CRF (\w+)\.(\w+)$")
    mine = src[0].eq(form)
    return pd.DataFrame({"qnam": rows.loc[mine, "where_value"].to_numpy(), "column": src.loc[mine, 1].to_numpy(),
                         "type": rows.loc[mine, "type"].to_numpy()})


def qualifier_values(raw: pd.DataFrame, quals: pd.DataFrame, studyid: str, form: str) -> tuple[pd.DataFrame, list]:
    """QNAM columns for the rows of one form, and findings for impossible dates (left empty)."""
    out = pd.DataFrame(index=raw.index)
    findings = []
    for q in quals.itertuples(index=False):  # a few qualifiers per form (metadata)
        if q.column not in raw:
            continue
        if q.type == "date":
            iso, bad = raw_dtc(raw, q.column)
            findings.append(make_findings(studyid, raw[bad], q.column, "pr_impossible_date", "error",
                                          f"{q.column} is not a date; {q.qnam} not mapped"))
            out[q.qnam] = iso
        else:
            out[q.qnam] = text(raw[q.column])
    return out, findings


def procedure_findings(raw: pd.DataFrame, recs: pd.DataFrame, items: pd.DataFrame, spec: Spec,
                       studyid: str) -> tuple[pd.DataFrame, list]:
    """FAPR records of one form's rows (``recs``: their PR records, same index) for the mapped
    ``items`` (rows of mapping/FAPR.csv of this form), and findings."""
    parts, findings = [], []
    decode = spec.decode_map("FATESTCD")
    vl = spec.valuelevel
    vl = vl[(vl["dataset"] == "FAPR") & (vl["variable"] == "FAORRES")].set_index("where_value")
    parsed: dict[str, tuple[pd.Series, pd.Series]] = {}  # several items share a date column (HSCASDAT)

    def dates(column: str) -> tuple[pd.Series, pd.Series]:
        """:func:`raw_dtc` of one date column of ``raw``, parsed once for all items."""
        if column not in parsed:
            parsed[column] = raw_dtc(raw, column)
        return parsed[column]

    for it in items.itertuples(index=False):  # the few collected items of the form (metadata)
        if it.result not in raw:
            continue
        res = text(raw[it.result])
        has = res.ne("")
        dtc, bad = dates(it.date)
        findings.append(make_findings(studyid, raw[has & bad], it.date, "pr_impossible_date", "error",
                                      f"{it.date} is not a date; FADTC of {it.fatestcd} not mapped"))
        if it.date_when:
            use = res.isin(it.date_when.split("|"))
            fb, fbad = dates(it.fallback_date) if it.fallback_date else (pd.Series("", index=raw.index), None)
            missing = has & use & dtc.eq("") & ~bad
            findings.append(make_findings(studyid, raw[missing], it.date, "pr_finding_date_missing", "warning",
                                          f"{it.result} = " + res + f" needs {it.date}; FADTC of {it.fatestcd} left empty"))
            dtc = dtc.where(use, fb)
        if it.fatestcd not in vl.index:
            raise ConfigError(f"mapping/FAPR.csv: {it.fatestcd} has no value-level row in valuelevel/FAPR.csv")
        meta = vl.loc[it.fatestcd]
        numeric = meta["type"] in ("float", "integer")
        unit = meta["unit"] if numeric else ""
        # FASTRESN for every numeric standard result (a grade 0 too), in the unit of the test
        num = pd.to_numeric(res, errors="coerce")
        stresc = standard_text(res).where(num.notna(), res) if numeric else res
        # one record per row with a result: the columns made for every row, the rows taken once
        parts.append(pd.DataFrame({
            "STUDYID": studyid, "DOMAIN": "FA", "USUBJID": recs["USUBJID"],
            "FASPID": recs["PRSPID"], "FATESTCD": it.fatestcd, "FATEST": decode.get(it.fatestcd, ""),
            "FAOBJ": it.faobj or recs["_faobj"], "FACAT": it.facat,
            "FAORRES": res, "FAORRESU": unit if unit else "", "FASTRESC": stresc,
            "FASTRESN": num.astype("float64"), "FASTRESU": unit if unit else "", "FADTC": dtc,
            "_prstdtc": recs["PRSTDTC"], "_key": recs["_key"], "_form": recs["_form"], "_row": recs["_row"],
        })[has.to_numpy()])
    return (pd.concat(parts) if parts else pd.DataFrame()), findings


def fa_seq_offset(ctx: StudyContext, subjects: pd.Series) -> pd.Series:
    """Per record, the subject's highest FASEQ in FA (0 when none): FAPR numbers after it."""
    fa = ctx.datasets.get("FA")
    if fa is None or fa.empty:
        return pd.Series(0, index=subjects.index, dtype="int64")
    top = pd.to_numeric(fa["FASEQ"], errors="coerce").groupby(fa["USUBJID"]).max()
    return subjects.map(top).fillna(0).astype("int64")


def relationships(pr: pd.DataFrame, fapr: pd.DataFrame, studyid: str) -> pd.DataFrame:
    """RELREC rows: each PR record with the FAPR records about it, RELID PR-<PRSEQ>."""
    # only findings whose FAOBJ is the procedure itself are related (SDTMIG 3.4 6.4: FAOBJ equals
    # the parent's --TRT/--DECOD); the GvHD grades are about the GvHD, linked by FASPID only
    fapr = fapr[fapr["FAOBJ"].to_numpy() == fapr["_key"].map(dict(zip(pr["_key"], pr["_faobj"]))).to_numpy()]
    if fapr.empty:
        return empty(RELREC_COLUMNS)
    parent = pr[pr["_key"].isin(set(fapr["_key"]))]
    seq = dict(zip(pr["_key"], pr["PRSEQ"].astype(int)))
    a = pd.DataFrame({"USUBJID": parent["USUBJID"], "RDOMAIN": "PR", "IDVAR": "PRSEQ",
                      "IDVARVAL": parent["PRSEQ"].astype(int).astype(str),
                      "RELID": "PR-" + parent["PRSEQ"].astype(int).astype(str)})
    b = pd.DataFrame({"USUBJID": fapr["USUBJID"], "RDOMAIN": "FA", "IDVAR": "FASEQ",
                      "IDVARVAL": fapr["FASEQ"].astype(int).astype(str),
                      "RELID": "PR-" + fapr["_key"].map(seq).astype(int).astype(str)})
    rel = pd.concat([a, b], ignore_index=True)
    rel.insert(0, "STUDYID", studyid)
    rel["RELTYPE"] = ""
    rel["_n"] = pd.to_numeric(rel["IDVARVAL"])
    rel = rel.sort_values(["USUBJID", "RELID", "RDOMAIN", "_n"], kind="mergesort")
    return rel[RELREC_COLUMNS].reset_index(drop=True)


def procedure_listing(pr: pd.DataFrame, supp: pd.DataFrame, fapr: pd.DataFrame | None, spec: Spec) -> pd.DataFrame:
    """The ``procedures`` report behind the PR listing: one row per PR record with its SUPPPR
    qualifiers and its numeric findings (FAPR FASTRESN, e.g. the leukapheresis product) as
    columns named after the QNAM / FATESTCD."""
    out = pr.copy()
    key = out["USUBJID"] + "|" + out["PRSEQ"].astype(int).astype(str)
    for q in supp_qualifiers(spec, "PR")["qnam"]:  # the few SUPPPR qualifiers (metadata)
        s = supp[supp["QNAM"] == q] if len(supp) else supp
        out[q] = key.map(dict(zip(s["USUBJID"] + "|" + s["IDVARVAL"], s["QVAL"]))).fillna("") if len(s) else ""
    if fapr is not None and len(fapr):
        seq = fapr.merge(pr[["USUBJID", "PRSPID", "PRSEQ"]], left_on=["USUBJID", "FASPID"],
                         right_on=["USUBJID", "PRSPID"], how="left")
        num_ = seq[seq["FASTRESN"].notna()]
        for t in num_["FATESTCD"].drop_duplicates():  # the numeric tests (a few)
            f = num_[num_["FATESTCD"] == t]
            out[t] = key.map(dict(zip(f["USUBJID"] + "|" + f["PRSEQ"].astype(int).astype(str), f["FASTRESN"])))
    return out.sort_values(["USUBJID", "PRSEQ"], kind="mergesort").drop(columns=["STUDYID", "DOMAIN"]).reset_index(drop=True)


def build(ctx: StudyContext) -> DomainResult:
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    res = DomainResult()
    sources = spec.mapping("PR")
    items = spec.mapping("FAPR")
    recs, quals, fas, consumed, rejected, findings = [], [], [], [], [], []
    for src in sources.to_dict("records"):  # one pass per source form (metadata, a few)
        form = src["form"]
        if form not in ctx.forms:
            continue
        src = pd.Series(src)
        raw, ids, known, iso, bad, rej, fnd = dated_form(ctx, form, src["start_date"], "procedure")
        rejected += rej
        findings += fnd
        if src["start_time"] and src["start_time"] in raw:
            _, bad_t = raw_dtc(raw, src["start_date"], src["start_time"])
            bad_t &= known & ~bad
            rejected.append(make_rejected(form, raw[bad_t], src["start_time"], "impossible procedure time"))
            findings.append(make_findings(sid, raw[bad_t], src["start_time"], f"{form}_impossible_time", "error",
                                          f"impossible {src['start_time']}, subject " + text(raw["SUBJID"])))
            bad = bad | bad_t
        keep = known & ~bad
        raw, ids = raw[keep], ids[keep]
        r = procedure_records(raw, src, ids, sid, spec)
        r["_key"] = form + ":" + r["_row"].astype(str)
        q, qf = qualifier_values(raw, form_qualifiers(spec, form), sid, form)
        findings += qf
        f, ff = procedure_findings(raw, r, items[items["form"] == form], spec, sid)
        findings += ff
        recs.append(r)
        quals.append(q.assign(_key=r["_key"]))
        fas.append(f)
        consumed.append(ctx.consumed_rows(form, raw["_ROW"], "PR"))
        if len(f):
            consumed.append(ctx.consumed_rows(form, f["_row"].drop_duplicates(), "FAPR"))
    pr_cols = spec.var_names("PR")
    if not recs:
        res.datasets["PR"] = empty(pr_cols)
        res.findings = concat(findings, FINDING_COLUMNS)
        res.rejected = concat(rejected, REJECTED_COLUMNS)
        return res
    pr = pd.concat(recs, ignore_index=True)
    dm = ctx.datasets["DM"]
    se = ctx.datasets.get("SE")
    pr["EPOCH"] = derive_epoch(pr["USUBJID"], pr["PRSTDTC"], se) if se is not None else ""
    pr["PRSTDY"] = study_day_by_subject(pr["PRSTDTC"], pr["USUBJID"], dm)
    pr["PRSEQ"] = assign_seq(pr, ["PRCAT", "PRSTDTC", "PRSPID"]).astype("float64")
    rf = pr["USUBJID"].map(by_subject(dm, "RFSTDTC")).fillna("")
    early = pr["PRCAT"].eq(AFTER_CART) & (rf.eq("") | (pr["PRSTDTC"].str[:10] < rf.str[:10]))
    findings.append(pd.DataFrame({
        "study": sid, "file": pr.loc[early, "_form"], "row": pr.loc[early, "_row"], "column": "PRSTDAT",
        "value": pr.loc[early, "PRSTDTC"], "check": "pr_transplant_before_cart", "severity": "error",
        "message": "transplant after CAR-T dated before the first CAR-T infusion (RFSTDTC " + rf[early] + ")"}))

    q = pd.concat(quals, ignore_index=True)
    supp_in = pr[["STUDYID", "USUBJID", "PRSEQ", "_key"]].merge(q, on="_key", how="left")
    qn = [c for c in supp_qualifiers(spec, "PR")["qnam"] if c in supp_in]
    supp = build_supp(supp_in[["STUDYID", "USUBJID", "PRSEQ"] + qn], "PR", spec, "PRSEQ")
    res.datasets["PR"] = pr[pr_cols].reset_index(drop=True)
    if len(supp):
        res.datasets["SUPPPR"] = supp[spec.var_names("SUPPPR")]

    fa = pd.concat([f for f in fas if len(f)], ignore_index=True) if any(len(f) for f in fas) else pd.DataFrame()
    if len(fa):
        before = fa["FADTC"].ne("") & (fa["FADTC"].str[:10] < fa["_prstdtc"].str[:10])
        findings.append(pd.DataFrame({
            "study": sid, "file": fa.loc[before, "_form"], "row": fa.loc[before, "_row"], "column": fa.loc[before, "FATESTCD"],
            "value": fa.loc[before, "FADTC"], "check": "pr_finding_before_procedure", "severity": "warning",
            "message": fa.loc[before, "FATESTCD"] + " dated before its procedure (" + fa.loc[before, "_prstdtc"] + ")"}))
        fa["EPOCH"] = derive_epoch(fa["USUBJID"], fa["FADTC"], se) if se is not None else ""
        fa["FADY"] = study_day_by_subject(fa["FADTC"], fa["USUBJID"], dm)
        fa["FASEQ"] = (assign_seq(fa, ["FADTC", "FASPID", "FATESTCD"]) + fa_seq_offset(ctx, fa["USUBJID"])).astype("float64")
        res.datasets["FAPR"] = fa[spec.var_names("FAPR")].reset_index(drop=True)
        res.datasets["RELREC"] = relationships(pr, fa, sid)
    res.reports["procedures"] = procedure_listing(res.datasets["PR"], supp, res.datasets.get("FAPR"), spec)
    res.consumed = concat(consumed, ["form", "row", "dataset"])
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
