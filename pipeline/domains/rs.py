"""RS (Disease Response) with the supporting marrow and blast results (LBDA), from form ``rs``.

Where the data go (SDTMIG 3.4)
------------------------------
- The investigator's overall response at each assessment: RS, ``RSTESTCD = OVRLRESP``,
  ``RSCAT`` = the study's ``[response].criteria``, ``RSEVAL = INVESTIGATOR``.
- The response derived from the data by the study's criteria (``specs/rules/response_*.csv``,
  evaluated by :mod:`pipeline.rules.response`): RS ``OVRLRESP`` records beside the
  investigator's, ``RSEVAL = SPONSOR`` and ``RSDRVFL = Y``, ``RSORRES`` null and the derived
  category in ``RSSTRESC`` (SDTMIG 4.1.8.2 / --DRVFL). Best overall response per evaluator:
  ``RSTESTCD = BESTRESP``, ``RSDRVFL = Y``, ``RSEVAL`` = the evaluator whose assessments it
  summarises. SDTMIG 3.4 RS assumption 3 puts sponsor-derived responses in ADaM; they are kept
  here beside the collected ones because issue 6 asks for both in the tabulation, flagged so
  that they can be told apart and dropped (``RSDRVFL = Y``).
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

Derivation (the rules themselves are in ``specs/rules``; see :mod:`pipeline.rules.response`)
--------------------------------------------------------------------------------------
Post-infusion assessments (protocol day >= 1) are derived; the baseline is the last
assessment before the first exposure DM.RFXSTDTC (before lymphodepletion, as for --LOBXFL).
Features: the raw columns named by the rules; ``<X>_BL``, ``<X>_ACHG``, ``<X>_RCHG`` (baseline, absolute and relative
change of raw column X); a feature that is an LB test code (NEUT, PLAT, HGB, RETI) is the
standard-unit result nearest the assessment date within ``[response].count_window_days``
(inclusive; ties: the earlier; none in the window: missing, so the criteria needing it give
NE); ``PRIMDIAG`` from form dm; ``PRIOR_REMISSION`` from the derived history. Counts come from
the LB dataset (LBSTRESN); when LB was not built, from form lb converted with
:mod:`pipeline.rules.units` (a warning says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.baseline import before_exposure, last_obs_before_exposure
from pipeline.derive.dates import dtc_date, parse_cdash_date
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.identifiers import usubjid
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.visits import visit_numbers
from pipeline.errors import ConfigError
from pipeline.rules import response as R
from pipeline.spec import NUMERIC_TYPES, Spec

FORM = "rs"
INVESTIGATOR = "INVESTIGATOR"
#: evaluator of the records derived by the pipeline (codelist EVAL, sponsor-applied algorithm)
DERIVED_EVALUATOR = "SPONSOR"
OVERALL = "OVRLRESP"
BEST = "BESTRESP"
SUFFIXES = ("_BL", "_ACHG", "_RCHG")


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _text(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), "").astype(str).str.strip()


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

    Returns ``testcd, column, type, unit, codelist`` in metadata order.
    """
    vl = spec.valuelevel
    need = {"dataset", "variable", "where_variable", "where_value", "source", "type", "unit", "codelist"}
    if vl.empty or not need <= set(vl.columns):
        raise ConfigError(f"{dataset}: value-level metadata for {result_var} is missing (specs/sdtm/valuelevel)")
    rows = vl[(vl["dataset"] == dataset) & (vl["variable"] == result_var) & (vl["where_variable"] == testcd_var)]
    src = rows["source"].str.extract(rf"^CRF {FORM}\.(?P<column>\w+)$")["column"]
    rows = rows[src.notna()]
    return pd.DataFrame({"testcd": rows["where_value"].to_numpy(), "column": src[src.notna()].to_numpy(),
                         "type": rows["type"].to_numpy(), "unit": rows["unit"].to_numpy(),
                         "codelist": rows["codelist"].to_numpy()})


def assigned_values(spec: Spec, dataset: str, variable: str, testcd_var: str) -> dict[str, str]:
    """Test -> value assigned to ``variable`` by a value-level row whose codelist has one term."""
    vl = spec.valuelevel
    if vl.empty or "dataset" not in vl:
        return {}
    rows = vl[(vl["dataset"] == dataset) & (vl["variable"] == variable) & (vl["where_variable"] == testcd_var)
              & (vl["codelist"] != "")]
    return {r.where_value: single_term(spec, r.codelist) for r in rows.itertuples(index=False)}


# ---------------------------------------------------------------------------------------
# assessments
# ---------------------------------------------------------------------------------------
def assessments(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One row per usable raw assessment: identifiers, RSDTC, RSDY, visit, EPOCH, post-infusion
    flag and the raw columns; plus the rejected rows and findings.

    Rejected: subjects not in DM, missing or impossible assessment dates (RSDTC must be a
    complete date: the response is timed by it).
    """
    raw = ctx.form(FORM)
    dm = ctx.datasets["DM"]
    a = raw.copy()
    a["USUBJID"] = usubjid(a) if len(a) else pd.Series(dtype="object")
    parsed = parse_cdash_date(a["RSDAT"]) if len(a) else pd.DataFrame({"iso": [], "complete": []})
    known = a["USUBJID"].isin(set(dm["USUBJID"]))
    bad_date = ~parsed["complete"].astype(bool)
    rejected = []
    for mask, col, reason in ((~known, "SUBJID", "subject not in DM"),
                              (known & bad_date, "RSDAT", "assessment date missing, partial or impossible")):
        sub = a[mask]
        rejected.append(pd.DataFrame({"form": FORM, "file": sub["_FILE"].to_numpy(), "row": sub["_ROW"].to_numpy(),
                                      "column": col, "value": _text(sub[col]).to_numpy(), "reason": reason}))
    rejected = pd.concat(rejected, ignore_index=True) if rejected else empty(REJECTED_COLUMNS)
    a = a[known & ~bad_date].copy()
    a["RSDTC"] = parsed.loc[a.index, "iso"].astype("object")
    a["RSDY"] = study_day_by_subject(a["RSDTC"], a["USUBJID"], dm)
    vis = visit_numbers(a["VISIT"], ctx.study, a["RSDY"], a["USUBJID"], a["RSDTC"])
    a["VISITNUM"], a["VISIT"] = vis["VISITNUM"], vis["VISIT"]
    se = ctx.datasets.get("SE")
    if se is None and "EX" in ctx.datasets:
        se = subject_elements(dm, ctx.datasets["EX"], ctx.study)
    a["EPOCH"] = derive_epoch(a["USUBJID"], a["RSDTC"], se) if se is not None and len(se) else ""
    a["_date"] = dtc_date(a["RSDTC"])
    a["_post"] = R.protocol_day(a["RSDY"]) >= 1
    rfx = a["USUBJID"].map(dm.set_index("USUBJID")["RFXSTDTC"]).fillna("")
    a["_pre"] = before_exposure(a["RSDTC"], rfx) & rfx.ne("")
    a["_grp"] = "RS-" + a["RSDTC"].astype(str)
    a = a.sort_values(["USUBJID", "_date", "_ROW"], kind="mergesort")
    return a, rejected, empty(FINDING_COLUMNS)


def count_results(ctx: StudyContext, tests: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Standard-unit lab results of ``tests`` (USUBJID, LBTESTCD, _date, value) for the nearest-
    count features, from the LB dataset, else from form lb converted to SI units; findings say
    which source was used or that none exists."""
    studyid = ctx.study.studyid
    cols = ["USUBJID", "LBTESTCD", "_date", "value"]
    if not tests:
        return pd.DataFrame(columns=cols), empty(FINDING_COLUMNS)
    lb = ctx.datasets.get("LB")
    if lb is not None:
        spec_ok = lb["LBSPEC"].isin(["", "BLOOD"]) if "LBSPEC" in lb else pd.Series(True, index=lb.index)
        sub = lb[lb["LBTESTCD"].isin(tests) & spec_ok]
        out = pd.DataFrame({"USUBJID": sub["USUBJID"], "LBTESTCD": sub["LBTESTCD"], "_date": dtc_date(sub["LBDTC"]),
                            "value": pd.to_numeric(sub["LBSTRESN"], errors="coerce")})
        return out.dropna(subset=["value", "_date"])[cols], empty(FINDING_COLUMNS)
    raw = ctx.forms.get("lb")
    if raw is None or raw.empty:
        f = _finding(studyid, "", "", "LBTESTCD", "|".join(tests), "rs_counts_missing", "warning",
                     f"{studyid}: no LB dataset and no form lb: {', '.join(tests)} unavailable, responses "
                     "that need blood counts are derived as NE")
        return pd.DataFrame(columns=cols), pd.DataFrame([f], columns=FINDING_COLUMNS)
    from pipeline.rules import units  # the lab teammate's unit conversion

    sub = raw[_text(raw["LBTESTCD"]).isin(tests)].copy()
    table = units.load_unit_table(ctx.spec)
    parsed = units.parse_results(sub["LBORRES"])
    num = pd.to_numeric(parsed["value"] if "value" in parsed else parsed.iloc[:, 0], errors="coerce")
    si = units.to_si(num, _text(sub["LBTESTCD"]), _text(sub["LBORRESU"]), table)
    out = pd.DataFrame({"USUBJID": usubjid(sub), "LBTESTCD": _text(sub["LBTESTCD"]),
                        "_date": dtc_date(parse_cdash_date(sub["LBDAT"])["iso"]), "value": si["si_value"]})
    f = _finding(studyid, "", "", "LBTESTCD", "|".join(tests), "rs_counts_source", "warning",
                 f"{studyid}: LB dataset not built; blood counts for the derived response taken from form lb "
                 "converted to standard units")
    return out.dropna(subset=["value", "_date"])[cols], pd.DataFrame([f], columns=FINDING_COLUMNS)


def response_features(a: pd.DataFrame, rules: pd.DataFrame, counts: pd.DataFrame, window_days: int,
                      ctx: StudyContext, lab_tests: set[str]) -> pd.DataFrame:
    """The features the rules name, one row per assessment of ``a`` (see the module docstring).

    Counts: nearest result within +/- ``window_days`` (:func:`pipeline.rules.response.nearest_in_window`);
    the result's date and distance are kept as ``<TEST>_date`` and ``<TEST>_days``.
    """
    needed = sorted(set(rules["feature"]))
    f = pd.DataFrame({"USUBJID": a["USUBJID"], "_date": a["_date"]}, index=a.index)
    base_cols = sorted({n[: -len(s)] for n in needed for s in SUFFIXES if n.endswith(s)})
    for col in sorted(set(needed) | set(base_cols)):
        if col in a.columns and col not in ("USUBJID",):
            f[col] = a[col]
    for col in base_cols:
        if col not in a.columns:
            raise ConfigError(f"response rule uses {col}_BL/_ACHG/_RCHG but form rs has no column {col}")
        val = a[col]
        has = _text(val).ne("")
        pre = a[a["_pre"] & has]
        bl = pre.sort_values(["USUBJID", "_date"], kind="mergesort").drop_duplicates("USUBJID", keep="last")
        f[f"{col}_BL"] = a["USUBJID"].map(bl.set_index("USUBJID")[col])
        ch = R.change_from_baseline(val, f[f"{col}_BL"])
        f[f"{col}_ACHG"], f[f"{col}_RCHG"] = ch["achg"], ch["rchg"]
    for test in sorted(set(needed) & lab_tests):
        res = counts[counts["LBTESTCD"] == test]
        near = R.nearest_in_window(f[["USUBJID", "_date"]], res, window_days)
        f[test], f[f"{test}_date"], f[f"{test}_days"] = near["value"], near["date"], near["days"]
    if "PRIMDIAG" in needed:
        dm_raw = ctx.form("dm")
        diag = pd.Series(_text(dm_raw["PRIMDIAG"]).to_numpy(), index=usubjid(dm_raw).to_numpy()) if len(dm_raw) \
            else pd.Series(dtype="object")
        f["PRIMDIAG"] = a["USUBJID"].map(diag[~diag.index.duplicated()]).fillna("")
    f[R.PRIOR_REMISSION] = "N"
    unknown = [n for n in needed if n not in f.columns]
    if unknown:
        raise ConfigError(f"response rules use feature(s) {', '.join(unknown)} that are neither a column of form rs, "
                          "an LB test code, PRIMDIAG, PRIOR_REMISSION nor <column>_BL/_ACHG/_RCHG")
    return f


def derived_responses(a: pd.DataFrame, ctx: StudyContext, counts: pd.DataFrame, lab_tests: set[str]
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Derived response of each post-infusion assessment (``response``, ``basis``) and the
    features used, indexed like ``a``'s post-infusion rows."""
    cfg = ctx.study["response"]
    rules = R.response_rules(ctx.spec, cfg["family"], cfg["criteria"])
    order = R.response_order(ctx.spec)
    post = a[a["_post"]]
    feats = response_features(a, rules, counts, int(cfg["count_window_days"]), ctx, lab_tests).loc[post.index]
    remission = set(order.loc[order["remission"], "category"])
    if post.empty:
        return pd.DataFrame({"response": pd.Series(dtype="object"), "basis": pd.Series(dtype="object"),
                             R.PRIOR_REMISSION: pd.Series(dtype="object")}), feats
    res = R.derive_response(feats, rules, list(cfg["categories"]), remission)
    return res, feats


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
        RSSTRESC=std.fillna(orres[has]).to_numpy(), RSEVAL=INVESTIGATOR, RSDRVFL="",
        RSLNKGRP=lnk.loc[sub.index].to_numpy())
    return recs, findings


def derived_records(a: pd.DataFrame, derived: pd.DataFrame, ctx: StudyContext, lnk: pd.Series) -> pd.DataFrame:
    """OVRLRESP records derived by the study's criteria (RSEVAL SPONSOR, RSDRVFL Y)."""
    sub = a.loc[derived.index]
    return _base_records(sub, ctx).assign(
        RSTESTCD=OVERALL, RSCAT=ctx.study["response"]["criteria"], RSORRES="",
        RSSTRESC=derived["response"].to_numpy(), RSEVAL=DERIVED_EVALUATOR, RSDRVFL="Y",
        RSLNKGRP=lnk.loc[sub.index].to_numpy())


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
            RSSTRESN=num.to_numpy(dtype="float64"), RSSTRESU=t.unit, RSEVAL=INVESTIGATOR, RSDRVFL=""))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _base_records(sub: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    return pd.DataFrame({
        "STUDYID": ctx.study.studyid, "DOMAIN": "RS", "USUBJID": sub["USUBJID"].to_numpy(),
        "RSGRPID": sub["_grp"].to_numpy(), "RSLNKGRP": "", "RSORRESU": "", "RSSTRESN": np.nan, "RSSTRESU": "",
        "VISITNUM": sub["VISITNUM"].to_numpy(dtype="float64"), "VISIT": sub["VISIT"].to_numpy(),
        "EPOCH": np.asarray(sub["EPOCH"], dtype=object), "RSDTC": sub["RSDTC"].to_numpy(),
        "RSDY": sub["RSDY"].to_numpy(dtype="float64"), "_ROW": sub["_ROW"].to_numpy(),
    })


def best_response_records(ctx: StudyContext, bor: pd.DataFrame) -> pd.DataFrame:
    """BESTRESP records, one per subject and evaluator with a post-infusion OVRLRESP
    (RSDRVFL Y; RSDTC/RSDY of the best assessment, empty when the BOR is NE)."""
    if bor.empty:
        return pd.DataFrame()
    se = ctx.datasets.get("SE")
    epoch = derive_epoch(bor["USUBJID"], bor["RSDTC"], se) if se is not None and len(se) else ""
    return pd.DataFrame({
        "STUDYID": ctx.study.studyid, "DOMAIN": "RS", "USUBJID": bor["USUBJID"].to_numpy(), "RSGRPID": "",
        "RSLNKGRP": "", "RSTESTCD": BEST, "RSCAT": ctx.study["response"]["criteria"], "RSORRES": "",
        "RSORRESU": "", "RSSTRESC": bor["BOR"].to_numpy(), "RSSTRESN": np.nan, "RSSTRESU": "",
        "RSEVAL": bor["RSEVAL"].to_numpy(), "RSDRVFL": "Y", "VISITNUM": np.nan, "VISIT": "",
        "EPOCH": np.asarray(epoch, dtype=object), "RSDTC": bor["RSDTC"].to_numpy(),
        "RSDY": pd.to_numeric(bor["RSDY"], errors="coerce").to_numpy(dtype="float64"),
    })


def lab_records(a: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """LBDA records (split LB, SDTMIG 4.1.7) of the marrow and blast results of each assessment:
    tests, types and units from the value-level metadata of LBDA.LBORRES; LBSPEC and LBMETHOD
    from one-term codelists in value-level rows; LBCAT the one term of LBCAT's codelist."""
    spec = ctx.spec
    tests = collected_tests(spec, "LBDA", "LBORRES", "LBTESTCD")
    var_cl = spec.vars("LBDA").set_index("variable")["codelist"]
    decode = spec.decode_map(var_cl["LBTESTCD"])
    lbcat = single_term(spec, var_cl["LBCAT"])
    specimen = assigned_values(spec, "LBDA", "LBSPEC", "LBTESTCD")
    method = assigned_values(spec, "LBDA", "LBMETHOD", "LBTESTCD")
    parts = []
    for t in tests.itertuples(index=False):  # four tests, vectorised over assessments
        if t.column not in a.columns:
            continue
        val = _text(a[t.column])
        keep = val.ne("")
        if not keep.any():
            continue
        sub = a[keep]
        num = pd.to_numeric(val[keep], errors="coerce")
        parts.append(pd.DataFrame({
            "STUDYID": ctx.study.studyid, "DOMAIN": "LB", "USUBJID": sub["USUBJID"].to_numpy(),
            "LBLNKGRP": sub["_grp"].to_numpy(), "LBTESTCD": t.testcd,
            "LBTEST": decode.get(t.testcd, ""), "LBCAT": lbcat,
            "LBORRES": val[keep].to_numpy(), "LBORRESU": t.unit, "LBORNRLO": "", "LBORNRHI": "",
            "LBSTRESC": _format_number(num).to_numpy(), "LBSTRESN": num.to_numpy(dtype="float64"),
            "LBSTRESU": t.unit, "LBSTNRLO": np.nan, "LBSTNRHI": np.nan, "LBNRIND": "",
            "LBSPEC": specimen.get(t.testcd, ""), "LBMETHOD": method.get(t.testcd, ""),
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
# reports
# ---------------------------------------------------------------------------------------
def discrepancy_report(a: pd.DataFrame, inv: pd.DataFrame, derived: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """Every post-infusion assessment where the derived response differs from the
    investigator's (NE against a category counts as a difference), with the inputs used."""
    assess = assessment_report(a, inv, derived, feats)
    diff = assess[assess["investigator_response"] != assess["derived_response"]]
    return diff.reset_index(drop=True)


def assessment_report(a: pd.DataFrame, inv: pd.DataFrame, derived: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """All post-infusion assessments: investigator and derived response, the basis and every
    feature (counts with their date and distance in days)."""
    if derived.empty:
        return pd.DataFrame(columns=["USUBJID", "VISIT", "VISITNUM", "RSDTC", "RSDY", "investigator_response",
                                     "derived_response", "derivation_basis"])
    sub = a.loc[derived.index]
    inv_map = inv.set_index(["USUBJID", "RSDTC"])["RSSTRESC"]
    key = pd.MultiIndex.from_arrays([sub["USUBJID"], sub["RSDTC"]])
    out = pd.DataFrame({
        "USUBJID": sub["USUBJID"].to_numpy(), "VISIT": sub["VISIT"].to_numpy(),
        "VISITNUM": sub["VISITNUM"].to_numpy(), "RSDTC": sub["RSDTC"].to_numpy(), "RSDY": sub["RSDY"].to_numpy(),
        "investigator_response": inv_map.reindex(key).fillna("").to_numpy(),
        "derived_response": derived["response"].to_numpy(), "derivation_basis": derived["basis"].to_numpy(),
    })
    for col in [c for c in feats.columns if c not in ("USUBJID", "_date", R.PRIOR_REMISSION)]:
        v = feats[col]
        if pd.api.types.is_datetime64_any_dtype(v):
            v = v.dt.strftime("%Y-%m-%d").fillna("")
        out[col.lower()] = v.to_numpy()
    out["prior_remission"] = derived[R.PRIOR_REMISSION].to_numpy()
    return out.sort_values(["USUBJID", "RSDTC"], kind="mergesort").reset_index(drop=True)


def dated_records(ctx: StudyContext, a: pd.DataFrame) -> pd.DataFrame:
    """(USUBJID, date) of every dated record of the subject that shows the subject alive:
    --DTC of the datasets built so far except DM, DS, SE, trial design and relationship
    datasets, the assessments of form rs, and DS last-known-alive dates of form ds."""
    skip = {"DM", "DS", "SE", "TA", "TE", "TV", "TI", "TS", "RELREC"}
    parts = [a[["USUBJID", "RSDTC"]].rename(columns={"RSDTC": "date"})]
    for name, ds in sorted(ctx.datasets.items()):  # datasets and their date columns: metadata loops
        if name in skip or name.startswith("SUPP") or "USUBJID" not in ds:
            continue
        for col in [c for c in ds.columns if c.endswith("DTC") and c != "DTHDTC"]:
            parts.append(pd.DataFrame({"USUBJID": ds["USUBJID"].to_numpy(), "date": _text(ds[col]).to_numpy()}))
    raw_ds = ctx.forms.get("ds")
    if raw_ds is not None and len(raw_ds) and "LKADAT" in raw_ds:
        lka = parse_cdash_date(raw_ds["LKADAT"])
        parts.append(pd.DataFrame({"USUBJID": usubjid(raw_ds).to_numpy(), "date": lka["iso"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def orr_summary(resp: pd.DataFrame, ctx: StudyContext, treated: pd.Series) -> pd.DataFrame:
    """ORR at the protocol timepoint per evaluator, plus one row per ``[orr].timepoints_days``
    (other than the primary timepoint) when the study lists them."""
    orr = ctx.study["orr"]
    denominator = "treated subjects (DM.RFSTDTC not null: received CAR-T); no assessment in the window or NE = non-responder"
    evaluators = [INVESTIGATOR, DERIVED_EVALUATOR]
    parts = [R.objective_response_rate(resp, treated, orr["categories"], int(orr["timepoint_day"]),
                                       int(orr["window_days"]), evaluators, ctx.study.studyid, orr["label"],
                                       denominator, primary=True)]
    for day in orr.get("timepoints_days", []):
        if int(day) == int(orr["timepoint_day"]):
            continue
        parts.append(R.objective_response_rate(resp, treated, orr["categories"], int(day), int(orr["window_days"]),
                                               evaluators, ctx.study.studyid, orr["label"], denominator,
                                               primary=False))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["RSEVAL", "timepoint_day"], kind="mergesort").reset_index(drop=True)


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
    """RS and LBDA with the response reports; see the module docstring."""
    spec, study = ctx.spec, ctx.study
    studyid = study.studyid
    result = DomainResult()
    if "DM" not in ctx.datasets:
        raise ConfigError(f"{studyid}: RS needs DM, which was not built")
    dm = ctx.datasets["DM"]
    a, rejected, findings = assessments(ctx)
    found = [findings]
    if a.empty:  # form not delivered or every row rejected: no RS, no derived reports
        result.rejected = rejected
        result.findings = pd.DataFrame([_finding(
            studyid, f"{FORM}", "", "", "", "rs_no_assessments", "warning",
            f"{studyid}: no usable disease assessment in form {FORM}: RS and the response reports are not built")],
            columns=FINDING_COLUMNS)
        return result
    order = R.response_order(spec)
    cfg = study["response"]

    # derived responses
    lab_tests = set(spec.rule("lab_tests")["lbtestcd"])
    rules = R.response_rules(spec, cfg["family"], cfg["criteria"])
    needed_counts = sorted(set(rules["feature"]) & lab_tests)
    counts, f_counts = count_results(ctx, needed_counts) if (a["_post"].any()) else (pd.DataFrame(), empty(FINDING_COLUMNS))
    found.append(f_counts)
    derived, feats = derived_responses(a, ctx, counts if len(counts) else
                                       pd.DataFrame(columns=["USUBJID", "LBTESTCD", "_date", "value"]), lab_tests)

    # LBDA first: RSLNKGRP only where supporting lab records exist
    lab = lab_records(a, ctx)
    if len(lab):
        lab["LBSEQ"] = assign_seq(lab, ["LBDTC", "LBTESTCD"]) + lb_seq_offset(ctx, lab["USUBJID"])
        rfx = lab["USUBJID"].map(dm.set_index("USUBJID")["RFXSTDTC"]).fillna("")
        lab["LBLOBXFL"] = last_obs_before_exposure(lab, ["USUBJID", "LBTESTCD"], "LBDTC", lab["LBSTRESN"].notna(), rfx)
    if len(lab):
        linked = pd.MultiIndex.from_arrays([a["USUBJID"], a["_grp"]]).isin(
            pd.MultiIndex.from_arrays([lab["USUBJID"], lab["LBLNKGRP"]]))
    else:
        linked = np.zeros(len(a), dtype=bool)
    lnk = a["_grp"].where(linked, "").astype("object")

    inv, f_inv = investigator_records(a, ctx, lnk)
    found.append(f_inv)
    drv = derived_records(a, derived, ctx, lnk)
    comp = component_records(a, ctx)
    overall = pd.concat([inv, drv], ignore_index=True)
    resp = overall.rename(columns={"RSSTRESC": "response"})[["USUBJID", "RSEVAL", "RSDTC", "RSDY", "response"]]
    bor = R.best_overall_response(resp, order, int(cfg["bor_window_days"]))
    best = best_response_records(ctx, bor)
    rs = pd.concat([x for x in (overall, comp, best) if len(x)], ignore_index=True)
    if len(rs):
        rs["RSTEST"] = rs["RSTESTCD"].map(spec.decode_map(spec.vars("RS").set_index("variable").at["RSTESTCD", "codelist"]))
        rs["_evalorder"] = rs["RSEVAL"].map({INVESTIGATOR: 0, DERIVED_EVALUATOR: 1}).fillna(2)
        rs["_testorder"] = np.select([rs["RSTESTCD"].eq(OVERALL), rs["RSTESTCD"].eq(BEST)], [0, 2], 1)
        rs["RSSEQ"] = assign_seq(rs, ["RSDTC", "_testorder", "RSTESTCD", "_evalorder"])
        rfx = rs["USUBJID"].map(dm.set_index("USUBJID")["RFXSTDTC"]).fillna("")
        collected = rs["RSDRVFL"].ne("Y")
        flag = last_obs_before_exposure(rs[collected], ["USUBJID", "RSTESTCD", "RSEVAL"], "RSDTC",
                                        _text(rs.loc[collected, "RSSTRESC"]).ne(""), rfx[collected])
        rs["RSLOBXFL"] = flag.reindex(rs.index).fillna("")
    result.datasets["RS"] = _finish(rs, spec, "RS")
    if len(lab):  # no marrow or blast results (autoimmune study): no LBDA dataset
        result.datasets["LBDA"] = _finish(lab, spec, "LBDA")

    # provenance
    cons = [ctx.consumed_rows(FORM, a["_ROW"], "RS")]
    if len(lab):
        cons.append(ctx.consumed_rows(FORM, pd.Series(sorted(set(lab["_ROW"]))), "LBDA"))
    result.consumed = pd.concat(cons, ignore_index=True)
    result.rejected = rejected

    # reports
    treated_dm = dm[_text(dm["RFSTDTC"]).ne("")]
    treated = treated_dm["USUBJID"]
    result.reports["response_assessments"] = assessment_report(a, inv, derived, feats)
    result.reports["response_discrepancies"] = discrepancy_report(a, inv, derived, feats)
    result.reports["bor"] = bor.assign(RSCAT=cfg["criteria"])
    relrec = relationship_rows(ctx, lab)
    if len(relrec):
        result.datasets["RELREC"] = relrec
    result.reports["orr_summary"] = orr_summary(resp, ctx, treated)
    alive = R.last_known_alive(dated_records(ctx, a), dm.set_index("USUBJID")["DTHDTC"])
    result.reports["event_dates"] = R.event_dates(resp, treated_dm, study["orr"]["categories"], order, alive,
                                                  [INVESTIGATOR, DERIVED_EVALUATOR])
    result.findings = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) \
        else empty(FINDING_COLUMNS)
    return result
