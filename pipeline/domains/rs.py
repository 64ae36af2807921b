"""RS (Disease Response) with the supporting marrow and blast results (LBDA), from form ``rs``.

Where the data go (SDTMIG 3.4)
------------------------------
- The investigator's overall response at each assessment: RS, ``RSTESTCD = OVRLRESP``,
  ``RSCAT`` = the study's ``[response].criteria``, ``RSEVAL = INVESTIGATOR``.
- Nothing derived: the response derived by the study's criteria, the best overall response,
  ORR and the event dates are analysis results and live in ADaM ADRS/ADTTE
  (:mod:`pipeline.adam.adrs`, SDTMIG 3.4 RS assumption 3); the response reports are built there
  from ADRS (:mod:`pipeline.adam.reports`). BESTRESP is not collected on form rs, so RS has none.
- Marrow blasts, circulating blasts, MRD and marrow cellularity are laboratory results
  (RS assumption 5a: source data go to their topic domain): LB, in the split dataset ``LBDA``
  (SDTMIG 3.4 4.1.7: ``DOMAIN = LB``, split on ``LBCAT``, ``LBSEQ`` unique across LB and LBDA
  by numbering after the subject's last LB record). ``LBLNKGRP`` = ``RSLNKGRP`` of the
  assessment (RS assumption 4); dataset-level RELREC rows relate RS.RSLNKGRP to LB.LBLNKGRP
  (appended to the shared RELREC by the build).
- Findings collected with the response on the assessment form that are inputs of the
  criteria (extramedullary disease, CNS status, transfusion independence, glucocorticoid
  dose, the disease activity score): RS records of the same assessment (``RSGRPID``), as the
  RS clinical-classification assumption 3b allows for values collected on the instrument.

Which raw column feeds which test, its type and unit come from the value-level metadata
(``specs/sdtm/valuelevel/RS.csv`` and ``LBDA.csv``: ``source = CRF rs.<column>``); specimen,
method and fixed categories from value-level rows with a one-term codelist.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.baseline import before_exposure, last_obs_before_exposure
from pipeline.derive.dates import dtc_date
from pipeline.derive.seq import assign_seq
from pipeline.derive.text import stripped_text
from pipeline.domains.dm import complete_dated_rows, place_in_study
from pipeline.errors import ConfigError
from pipeline.rules import response as R
from pipeline.spec import NUMERIC_TYPES, Spec
from pipeline.derive.identifiers import by_subject

FORM = "rs"
INVESTIGATOR = "INVESTIGATOR"
OVERALL = "OVRLRESP"
BEST = "BESTRESP"


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _text(s: pd.Series) -> pd.Series:
    return stripped_text(s)


def _finding(studyid: str, file: str, row, column: str, value, check: str, severity: str, message: str) -> dict:
    return {"study": studyid, "file": file, "row": row, "column": column, "value": value, "check": check,
            "severity": severity, "message": message}


def _format_number(x: pd.Series) -> pd.Series:
    """Numbers as short text (shortest round-trip form of the value rounded to 6 decimals, no
    trailing ``.0``); NaN -> ''."""
    v = pd.to_numeric(x, errors="coerce").astype("float64").round(6)
    txt = v.astype(str).str.replace(r"\.0$", "", regex=True)
    return txt.where(v.notna(), "").astype("object")


def single_term(spec: Spec, codelist: str) -> str:
    """The one term of a one-term codelist (a value assigned through value-level metadata)."""
    terms = spec.terms(codelist)
    if len(terms) != 1:
        raise ConfigError(f"codelist {codelist} must hold exactly one term (it assigns a value), has {len(terms)}")
    return terms[0]


def collected_tests(spec: Spec, dataset: str, result_var: str, testcd_var: str) -> pd.DataFrame:
    """Tests fed by a raw column of form rs, from value-level metadata rows
    ``<dataset>.<result_var>`` where ``<testcd_var>`` = test and ``source = CRF rs.<column>``.

    A second field in the source (``CRF rs.MRDRES rs.MRDND``) is the test's not-detected flag:
    Y there means the result is below the assay's sensitivity (:func:`lab_records`).
    Returns ``testcd, column, flag, type, unit, codelist`` in metadata order.
    """
    vl = spec.valuelevel
    need = {"dataset", "variable", "where_variable", "where_value", "source", "type", "unit", "codelist"}
    if vl.empty or not need <= set(vl.columns):
        raise ConfigError(f"{dataset}: value-level metadata for {result_var} is missing (specs/sdtm/valuelevel)")
    rows = vl[(vl["dataset"] == dataset) & (vl["variable"] == result_var) & (vl["where_variable"] == testcd_var)]
    src = rows["source"].str.extract(rf"^CRF {FORM}\.(?P<column>\w+)(?: {FORM}\.(?P<flag>\w+))?$")
    keep = src["column"].notna()
    rows, src = rows[keep], src[keep]
    return pd.DataFrame({"testcd": rows["where_value"].to_numpy(), "column": src["column"].to_numpy(),
                         "flag": src["flag"].fillna("").to_numpy(),
                         "type": rows["type"].to_numpy(), "unit": rows["unit"].to_numpy(),
                         "codelist": rows["codelist"].to_numpy()})


def assigned_values(spec: Spec, dataset: str, variable: str, testcd_var: str) -> dict[str, str]:
    """Test -> value assigned to ``variable`` by a value-level row whose codelist has one term."""
    vl = spec.valuelevel
    if vl.empty or "dataset" not in vl:
        return {}
    rows = vl[(vl["dataset"] == dataset) & (vl["variable"] == variable) & (vl["where_variable"] == testcd_var)
              & (vl["codelist"] != "") & ~vl["source"].str.startswith(f"CRF {FORM}.")]
    return {r.where_value: single_term(spec, r.codelist) for r in rows.itertuples(index=False)}  # value-level spec rows


def collected_qualifiers(spec: Spec, dataset: str, variable: str, testcd_var: str) -> dict[str, str]:
    """Test -> raw column of form rs that feeds ``variable`` of that test's records (value-level
    rows ``<dataset>.<variable>`` with ``source = CRF rs.<column>``: the MRD method and assay
    sensitivity, the CSF specimen condition)."""
    vl = spec.valuelevel
    if vl.empty or "dataset" not in vl:
        return {}
    rows = vl[(vl["dataset"] == dataset) & (vl["variable"] == variable) & (vl["where_variable"] == testcd_var)]
    src = rows["source"].str.extract(rf"^CRF {FORM}\.(?P<column>\w+)$")["column"]
    return dict(zip(rows.loc[src.notna(), "where_value"], src[src.notna()]))


# ---------------------------------------------------------------------------------------
# assessments
# ---------------------------------------------------------------------------------------
def assessments(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One row per usable raw assessment: identifiers, RSDTC, RSDY, visit, EPOCH, post-infusion
    flag and the raw columns; plus the rejected rows and findings.

    Rejected: subjects not in DM, missing or impossible assessment dates (RSDTC must be a
    complete date: the response is timed by it).
    """
    dm = ctx.datasets["DM"]
    a, iso, rejected = complete_dated_rows(ctx, FORM, "RSDAT", "assessment")
    a["RSDTC"] = iso
    a = place_in_study(ctx, a, "RSDTC", "RSDY")
    a["_date"] = dtc_date(a["RSDTC"])
    a["_post"] = R.protocol_day(a["RSDY"]) >= 1
    rfx = a["USUBJID"].map(by_subject(dm, "RFXSTDTC")).fillna("")
    a["_pre"] = before_exposure(a["RSDTC"], rfx) & rfx.ne("")
    a["_grp"] = "RS-" + a["RSDTC"].astype(str)
    a = a.sort_values(["USUBJID", "_date", "_ROW"], kind="mergesort")
    return a, rejected, empty(FINDING_COLUMNS)


# ---------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------
def response_categories(ctx: StudyContext) -> dict[str, str]:
    """Upper-cased category -> the study's spelling (CRh, CRi keep their case)."""
    return {c.upper(): c for c in ctx.study["response"]["categories"]}


def investigator_records(a: pd.DataFrame, ctx: StudyContext, lnk: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OVRLRESP records of the investigator (collected RSORRES; RSSTRESC in the study's category
    spelling) and findings for categories the study does not use."""
    studyid = ctx.study.studyid
    cats = response_categories(ctx)
    orres = _text(a["RSORRES"])
    has = orres.ne("")
    sub = a[has]
    std = orres[has].str.upper().map(cats)
    bad = std.isna()
    allowed = ", ".join(ctx.study["response"]["categories"])
    findings = pd.DataFrame({
        "study": studyid, "file": sub.loc[bad, "_FILE"].to_numpy(), "row": sub.loc[bad, "_ROW"].to_numpy(),
        "column": "RSORRES", "value": orres[has][bad].to_numpy(), "check": "rs_category", "severity": "warning",
        "message": (f"{studyid}: investigator response '" + orres[has][bad] + "' is not a category of the study ("
                    + allowed + ")").to_numpy()}, columns=FINDING_COLUMNS)
    recs = _base_records(sub, ctx).assign(
        RSTESTCD=OVERALL, RSCAT=ctx.study["response"]["criteria"], RSORRES=orres[has].to_numpy(),
        RSSTRESC=std.fillna(orres[has]).to_numpy(), RSEVAL=INVESTIGATOR,
        RSLNKGRP=lnk.loc[sub.index].to_numpy())
    return recs, findings


def component_records(a: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """Criteria inputs collected with the response (value-level metadata of RS.RSORRES with
    ``source = CRF rs.<column>``): one record per assessment and non-empty value."""
    tests = collected_tests(ctx.spec, "RS", "RSORRES", "RSTESTCD")
    rscat = assigned_values(ctx.spec, "RS", "RSCAT", "RSTESTCD")
    parts = []
    tests = tests[~tests["testcd"].isin([OVERALL, BEST])]
    for t in tests.itertuples(index=False):  # a few tests, vectorised over assessments
        if t.column not in a.columns:
            continue
        val = _text(a[t.column])
        keep = val.ne("")
        if not keep.any():
            continue
        sub = a[keep]
        numeric = t.type in NUMERIC_TYPES
        num = pd.to_numeric(val[keep], errors="coerce") if numeric else pd.Series(np.nan, index=sub.index)
        parts.append(_base_records(sub, ctx).assign(
            RSTESTCD=t.testcd, RSCAT=rscat.get(t.testcd, ctx.study["response"]["criteria"]),
            RSORRES=val[keep].to_numpy(), RSORRESU=t.unit,
            RSSTRESC=(_format_number(num) if numeric else val[keep]).to_numpy(),
            RSSTRESN=num.to_numpy(dtype="float64"), RSSTRESU=t.unit, RSEVAL=INVESTIGATOR))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _base_records(sub: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    return pd.DataFrame({
        "STUDYID": ctx.study.studyid, "DOMAIN": "RS", "USUBJID": sub["USUBJID"].to_numpy(),
        "RSGRPID": sub["_grp"].to_numpy(), "RSLNKGRP": "", "RSORRESU": "", "RSSTRESN": np.nan, "RSSTRESU": "",
        "VISITNUM": sub["VISITNUM"].to_numpy(dtype="float64"), "VISIT": sub["VISIT"].to_numpy(),
        "EPOCH": np.asarray(sub["EPOCH"], dtype=object), "RSDTC": sub["RSDTC"].to_numpy(),
        "RSDY": sub["RSDY"].to_numpy(dtype="float64"), "_ROW": sub["_ROW"].to_numpy(),
    })


#: not-detected flag column of a test whose value-level source names only its result column
#: (rs.MRDND = Y: no MRD detected at the assay sensitivity rs.MRDLLOQ; annotated in
#: specs/raw/crf_annotations.csv); a two-field source ``CRF rs.<result> rs.<flag>`` overrides it
NOT_DETECTED_FLAGS = {"MRD": "MRDND"}


def _column_text(a: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None or column not in a.columns:
        return pd.Series("", index=a.index, dtype="object")
    return _text(a[column])


def lab_records(a: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """LBDA records (split LB, SDTMIG 4.1.7) of the marrow, blast, MRD and CSF results of each
    assessment: tests, types and units from the value-level metadata of LBDA.LBORRES; LBSPEC,
    LBMETHOD and LBSPCCND from one-term codelists in value-level rows, or per record from the
    raw column a value-level row names (``source = CRF rs.<column>``: MRD method, CSF specimen
    condition); LBLLOQ (assay sensitivity) likewise; LBCAT the one term of LBCAT's codelist.

    A result the form flags as not detected (the second field of the value-level source, MRD:
    ``CRF rs.MRDRES rs.MRDND``, rs.MRDND = Y)
    with an empty value is below the assay's sensitivity: LBORRES = LBSTRESC = ``<LBLLOQ``
    (e.g. ``<0.01``), LBSTRESN null (SDTMIG 3.4 LB, results below the limit of quantitation);
    without a sensitivity it is ``NOT DETECTED``."""
    spec = ctx.spec
    tests = collected_tests(spec, "LBDA", "LBORRES", "LBTESTCD")
    var_cl = spec.vars("LBDA").set_index("variable")["codelist"]
    decode = spec.decode_map(var_cl["LBTESTCD"])
    lbcat = single_term(spec, var_cl["LBCAT"])
    fixed = {v: assigned_values(spec, "LBDA", v, "LBTESTCD") for v in ("LBSPEC", "LBMETHOD", "LBSPCCND")}
    per_record = {v: collected_qualifiers(spec, "LBDA", v, "LBTESTCD") for v in ("LBMETHOD", "LBSPCCND", "LBLLOQ")}
    parts = []
    for t in tests.itertuples(index=False):  # a few tests, vectorised over assessments
        if t.column not in a.columns:
            continue
        val = _text(a[t.column])
        lloq_txt = _column_text(a, per_record["LBLLOQ"].get(t.testcd))
        lloq = pd.to_numeric(lloq_txt, errors="coerce")
        nd = _column_text(a, t.flag or NOT_DETECTED_FLAGS.get(t.testcd)).str.upper().eq("Y") & val.eq("")
        below = np.where(lloq.notna(), "<" + _format_number(lloq).astype(str), "NOT DETECTED")
        val = val.where(~nd, pd.Series(below, index=a.index))
        keep = val.ne("")
        if not keep.any():
            continue
        sub = a[keep]
        num = pd.to_numeric(val[keep], errors="coerce")
        stresc = _format_number(num).where(num.notna(), val[keep])
        qual = {v: (_column_text(sub, per_record[v][t.testcd]) if t.testcd in per_record[v]
                    else pd.Series(fixed[v].get(t.testcd, ""), index=sub.index)) for v in ("LBMETHOD", "LBSPCCND")}
        parts.append(pd.DataFrame({
            "STUDYID": ctx.study.studyid, "DOMAIN": "LB", "USUBJID": sub["USUBJID"].to_numpy(),
            "LBLNKGRP": sub["_grp"].to_numpy(), "LBTESTCD": t.testcd,
            "LBTEST": decode.get(t.testcd, ""), "LBCAT": lbcat,
            "LBORRES": val[keep].to_numpy(), "LBORRESU": t.unit, "LBORNRLO": "", "LBORNRHI": "",
            "LBSTRESC": stresc.to_numpy(), "LBSTRESN": num.to_numpy(dtype="float64"),
            "LBSTRESU": t.unit, "LBSTNRLO": np.nan, "LBSTNRHI": np.nan, "LBNRIND": "",
            "LBSPEC": fixed["LBSPEC"].get(t.testcd, ""), "LBMETHOD": qual["LBMETHOD"].to_numpy(),
            "LBSPCCND": qual["LBSPCCND"].to_numpy(), "LBLLOQ": lloq[keep].to_numpy(dtype="float64"),
            "VISITNUM": sub["VISITNUM"].to_numpy(dtype="float64"), "VISIT": sub["VISIT"].to_numpy(),
            "EPOCH": np.asarray(sub["EPOCH"], dtype=object), "LBDTC": sub["RSDTC"].to_numpy(),
            "LBDY": sub["RSDY"].to_numpy(dtype="float64"), "_ROW": sub["_ROW"].to_numpy(),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def lb_seq_offset(ctx: StudyContext, subjects: pd.Series) -> pd.Series:
    """Per record, the subject's highest LBSEQ in the LB dataset (0 when none): LBDA numbers
    after it so that LBSEQ is unique across the split LB datasets (SDTMIG 3.4 4.1.7 rule 3)."""
    lb = ctx.datasets.get("LB")
    if lb is None or lb.empty:
        return pd.Series(0.0, index=subjects.index)
    top = pd.to_numeric(lb["LBSEQ"], errors="coerce").groupby(lb["USUBJID"]).max()
    return subjects.map(top).fillna(0.0).astype("float64")


def relationship_rows(ctx: StudyContext, lbda: pd.DataFrame) -> pd.DataFrame:
    """Dataset-level RELREC rows relating RS.RSLNKGRP (ONE) to LB.LBLNKGRP (MANY) (SDTMIG 3.4
    8.3; RS assumption 4), in RELREC's columns. RELREC is shared: the build appends these
    rows to the RELREC records other domains contribute (pipeline.build.SHARED_DATASETS)."""
    cols = ctx.spec.var_names("RELREC") if "RELREC" in set(ctx.spec.datasets["dataset"]) else \
        ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELTYPE", "RELID"]
    if lbda.empty:
        return pd.DataFrame(columns=cols)
    rel = pd.DataFrame({"STUDYID": ctx.study.studyid, "RDOMAIN": ["RS", "LB"], "USUBJID": "",
                        "IDVAR": ["RSLNKGRP", "LBLNKGRP"], "IDVARVAL": "", "RELTYPE": ["ONE", "MANY"],
                        "RELID": "RSLB"})
    return rel.reindex(columns=cols, fill_value="")


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------
def _finish(frame: pd.DataFrame, spec: Spec, name: str) -> pd.DataFrame:
    """Columns exactly the spec's variables; text '' and numbers float for missing."""
    cols = spec.var_names(name)
    v = spec.vars(name).set_index("variable")
    out = frame.reindex(columns=cols)
    for c in cols:
        if v.at[c, "type"] in NUMERIC_TYPES:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        else:
            out[c] = _text(out[c]).astype("object")
    return out.reset_index(drop=True)


def build(ctx: StudyContext) -> DomainResult:
    """RS and LBDA (collected records only); see the module docstring."""
    spec, study = ctx.spec, ctx.study
    studyid = study.studyid
    result = DomainResult()
    if "DM" not in ctx.datasets:
        raise ConfigError(f"{studyid}: RS needs DM, which was not built")
    dm = ctx.datasets["DM"]
    a, rejected, findings = assessments(ctx)
    found = [findings]
    if a.empty:  # form not delivered or every row rejected: no RS
        result.rejected = rejected
        result.findings = pd.DataFrame([_finding(
            studyid, f"{FORM}", "", "", "", "rs_no_assessments", "warning",
            f"{studyid}: no usable disease assessment in form {FORM}: RS is not built")],
            columns=FINDING_COLUMNS)
        return result

    # LBDA first: RSLNKGRP only where supporting lab records exist
    lab = lab_records(a, ctx)
    if len(lab):
        lab["LBSEQ"] = assign_seq(lab, ["LBDTC", "LBTESTCD"]) + lb_seq_offset(ctx, lab["USUBJID"])
        rfx = lab["USUBJID"].map(by_subject(dm, "RFXSTDTC")).fillna("")
        lab["LBLOBXFL"] = last_obs_before_exposure(lab, ["USUBJID", "LBTESTCD"], "LBDTC", lab["LBSTRESN"].notna(), rfx)
    if len(lab):
        linked = pd.MultiIndex.from_arrays([a["USUBJID"], a["_grp"]]).isin(
            pd.MultiIndex.from_arrays([lab["USUBJID"], lab["LBLNKGRP"]]))
    else:
        linked = np.zeros(len(a), dtype=bool)
    lnk = a["_grp"].where(linked, "").astype("object")

    inv, f_inv = investigator_records(a, ctx, lnk)
    found.append(f_inv)
    comp = component_records(a, ctx)
    rs = pd.concat([x for x in (inv, comp) if len(x)], ignore_index=True)
    if len(rs):
        rs["RSTEST"] = rs["RSTESTCD"].map(spec.decode_map(spec.vars("RS").set_index("variable").at["RSTESTCD", "codelist"]))
        rs["_testorder"] = np.where(rs["RSTESTCD"].eq(OVERALL), 0, 1)
        rs["RSSEQ"] = assign_seq(rs, ["RSDTC", "_testorder", "RSTESTCD"])
        rfx = rs["USUBJID"].map(by_subject(dm, "RFXSTDTC")).fillna("")
        rs["RSLOBXFL"] = last_obs_before_exposure(rs, ["USUBJID", "RSTESTCD", "RSEVAL"], "RSDTC",
                                                  _text(rs["RSSTRESC"]).ne(""), rfx)
    result.datasets["RS"] = _finish(rs, spec, "RS")
    if len(lab):  # no marrow or blast results (autoimmune study): no LBDA dataset
        result.datasets["LBDA"] = _finish(lab, spec, "LBDA")

    # provenance
    cons = [ctx.consumed_rows(FORM, a["_ROW"], "RS")]
    if len(lab):
        cons.append(ctx.consumed_rows(FORM, pd.Series(sorted(set(lab["_ROW"]))), "LBDA"))
    result.consumed = pd.concat(cons, ignore_index=True)
    result.rejected = rejected
    relrec = relationship_rows(ctx, lab)
    if len(relrec):
        result.datasets["RELREC"] = relrec
    result.findings = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) \
        else empty(FINDING_COLUMNS)
    return result
