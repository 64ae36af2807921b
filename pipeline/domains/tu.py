"""TU (Tumor/Lesion Identification) and TR (Tumor/Lesion Results) from form ``emd``.

Where the data go (SDTMIG 3.4, oncology domains TU/TR/RS)
---------------------------------------------------------
Extramedullary (lymphomatous) disease of T-LBL / ALL is measured on CT or PET-CT like a
lymphoma mass. Its lesions are tumour findings, so they follow the oncology domains rather than
a Y/N item on the response form:

- **TU**: one record per lesion at the imaging that first identified it: ``TUTESTCD TUMIDENT``,
  ``TUORRES TARGET`` for the lesions measured at baseline, ``NEW`` for a lesion first seen after
  it (form ``emd.TUNEW = Y``); ``TULNKID`` the lesion identifier, ``TULOC``, ``TUMETHOD``.
- **TR**: the measurements of every lesion at every imaging, linked to TU by ``TRLNKID``:
  ``LDIAM`` (longest diameter, mm), ``LPERP`` (longest perpendicular, mm), ``PETPOS`` (FDG-avid).
  ``TRGRPID`` groups the records of one imaging assessment.
- Nothing derived here: the sum of the products of the diameters (SPD), its change and the
  extramedullary response (NCCN) are analysis values in ADaM ADRS (:mod:`pipeline.adam.adrs`).

Tests, types and units come from the value-level metadata of TR.TRORRES (``source = CRF emd.<column>``).
Rows of subjects not in DM and rows without a complete imaging date are rejected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.baseline import last_obs_before_exposure
from pipeline.derive.seq import assign_seq
from pipeline.domains.dm import complete_dated_rows, place_in_study
from pipeline.domains.rs import _finish, _format_number, _text, single_term
from pipeline.spec import NUMERIC_TYPES
from pipeline.derive.identifiers import by_subject

FORM = "emd"
EVALUATOR = "INVESTIGATOR"


def imaging_rows(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Usable rows of form emd with USUBJID, TRDTC, TRDY, VISITNUM/VISIT, EPOCH; plus rejections."""
    a, iso, rejected = complete_dated_rows(ctx, FORM, "TRDAT", "imaging")
    a["TRDTC"] = iso
    a = place_in_study(ctx, a, "TRDTC", "TRDY")
    a["TULNKID"] = _text(a["TULNKID"])
    return a.sort_values(["USUBJID", "TRDTC", "TULNKID", "_ROW"], kind="mergesort"), rejected


def lesions(a: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """TU: the first imaging row of each subject's lesion (TULNKID)."""
    spec = ctx.spec
    cl = spec.vars("TU").set_index("variable")["codelist"]
    first = a.drop_duplicates(["USUBJID", "TULNKID"], keep="first")
    testcd = single_term(spec, cl["TUTESTCD"])
    res = np.where(_text(first["TUNEW"]).str.upper().eq("Y"), "NEW", "TARGET")
    return pd.DataFrame({
        "STUDYID": ctx.study.studyid, "DOMAIN": "TU", "USUBJID": first["USUBJID"].to_numpy(),
        "TULNKID": first["TULNKID"].to_numpy(), "TUTESTCD": testcd,
        "TUTEST": spec.decode_map(cl["TUTESTCD"]).get(testcd, ""), "TUORRES": res, "TUSTRESC": res,
        "TULOC": _text(first["TULOC"]).str.upper().to_numpy(), "TUMETHOD": _text(first["TRMETHOD"]).to_numpy(),
        "TUEVAL": EVALUATOR, "VISITNUM": first["VISITNUM"].to_numpy(dtype="float64"),
        "VISIT": first["VISIT"].to_numpy(), "EPOCH": np.asarray(first["EPOCH"], dtype=object),
        "TUDTC": first["TRDTC"].to_numpy(), "TUDY": first["TRDY"].to_numpy(dtype="float64"),
    })


def measurements(a: pd.DataFrame, ctx: StudyContext) -> pd.DataFrame:
    """TR: one record per lesion, imaging and test with a value (value-level metadata of
    TR.TRORRES with ``source = CRF emd.<column>``)."""
    spec = ctx.spec
    vl = spec.valuelevel
    rows = vl[(vl["dataset"] == "TR") & (vl["variable"] == "TRORRES") & (vl["where_variable"] == "TRTESTCD")]
    src = rows["source"].str.extract(rf"^CRF {FORM}\.(?P<column>\w+)$")["column"]
    decode = spec.decode_map(spec.vars("TR").set_index("variable").at["TRTESTCD", "codelist"])
    parts = []
    for testcd, column, typ, unit in zip(rows["where_value"], src, rows["type"], rows["unit"]):  # three tests
        if not isinstance(column, str) or column not in a.columns:
            continue
        val = _text(a[column])
        keep = val.ne("")
        sub = a[keep]
        numeric = typ in NUMERIC_TYPES
        num = pd.to_numeric(val[keep], errors="coerce") if numeric else pd.Series(np.nan, index=sub.index)
        parts.append(pd.DataFrame({
            "STUDYID": ctx.study.studyid, "DOMAIN": "TR", "USUBJID": sub["USUBJID"].to_numpy(),
            "TRGRPID": ("TR-" + sub["TRDTC"].astype(str)).to_numpy(), "TRLNKID": sub["TULNKID"].to_numpy(),
            "TRTESTCD": testcd, "TRTEST": decode.get(testcd, ""), "TRORRES": val[keep].to_numpy(),
            "TRORRESU": unit, "TRSTRESC": (_format_number(num) if numeric else val[keep]).to_numpy(),
            "TRSTRESN": num.to_numpy(dtype="float64"), "TRSTRESU": unit,
            "TRMETHOD": _text(sub["TRMETHOD"]).to_numpy(), "TREVAL": EVALUATOR,
            "VISITNUM": sub["VISITNUM"].to_numpy(dtype="float64"), "VISIT": sub["VISIT"].to_numpy(),
            "EPOCH": np.asarray(sub["EPOCH"], dtype=object), "TRDTC": sub["TRDTC"].to_numpy(),
            "TRDY": sub["TRDY"].to_numpy(dtype="float64"), "_ROW": sub["_ROW"].to_numpy(),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def build(ctx: StudyContext) -> DomainResult:
    """TU and TR (collected records only); nothing when form emd was not delivered."""
    result = DomainResult()
    if "DM" not in ctx.datasets or FORM not in ctx.forms or ctx.forms[FORM].empty:
        return result
    a, rejected = imaging_rows(ctx)
    result.rejected = rejected
    result.findings = empty(FINDING_COLUMNS)
    if a.empty:
        return result
    dm = ctx.datasets["DM"]
    rfx = by_subject(dm, "RFXSTDTC")
    tu = lesions(a, ctx)
    tu["TUSEQ"] = assign_seq(tu, ["TUDTC", "TULNKID"])
    tr = measurements(a, ctx)
    if len(tr):
        tr["TRSEQ"] = assign_seq(tr, ["TRDTC", "TRLNKID", "TRTESTCD"])
        tr["TRLOBXFL"] = last_obs_before_exposure(tr, ["USUBJID", "TRLNKID", "TRTESTCD"], "TRDTC",
                                                  _text(tr["TRSTRESC"]).ne(""), tr["USUBJID"].map(rfx).fillna(""))
        result.datasets["TR"] = _finish(tr, ctx.spec, "TR")
    result.datasets["TU"] = _finish(tu, ctx.spec, "TU")
    result.consumed = pd.concat([ctx.consumed_rows(FORM, a["_ROW"], "TR")], ignore_index=True)
    return result
