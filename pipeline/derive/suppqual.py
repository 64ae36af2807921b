"""Supplemental qualifiers SUPP-- (SDTMIG 3.4 section 8.4).

A collected or derived value with no standard variable goes to SUPP<domain>. Which QNAMs
exist, and their QLABEL, QORIG, QEVAL and codelist, come only from the value-level metadata
``specs/sdtm/valuelevel/SUPP<domain>.csv`` (rows with variable QVAL, where_variable QNAM).
A domain module puts the values in columns named after the QNAMs on its parent frame and
calls :func:`build_supp`; records with an empty value are not created (SDTMIG 8.4.1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

SUPP_COLUMNS = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL", "QVAL", "QORIG", "QEVAL"]


def _qualifiers(spec: Spec, rdomain: str) -> pd.DataFrame:
    vl = spec.valuelevel
    name = f"SUPP{rdomain}"
    if vl.empty or "dataset" not in vl:
        raise ConfigError(f"{name}: no value-level metadata in specs/sdtm/valuelevel/")
    rows = vl[(vl["dataset"] == name) & (vl["variable"] == "QVAL") & (vl["where_variable"] == "QNAM")]
    if rows.empty:
        raise ConfigError(f"{name}: no QNAM rows in specs/sdtm/valuelevel/{name}.csv")
    out = pd.DataFrame({
        "qnam": rows["where_value"], "label": rows["label"], "origin": rows["origin"],
        "qeval": rows["qeval"] if "qeval" in rows else "", "codelist": rows["codelist"],
    })
    return out.reset_index(drop=True)


def supp_qualifiers(spec: Spec, rdomain: str) -> pd.DataFrame:
    """The QNAM rows of SUPP<rdomain> from value-level metadata (qnam, label, origin, qeval, codelist).

    Spec-only, so selected once per spec and domain (a build worker builds several studies with
    one spec); the caller gets a copy it may change."""
    return _selected(spec, rdomain).copy()


def _selected(spec: Spec, rdomain: str) -> pd.DataFrame:
    return per_object(spec, ("supp_qualifiers", rdomain), lambda s: _qualifiers(s, rdomain))


def _qualifier_arrays(spec: Spec, rdomain: str) -> tuple[list[str], np.ndarray]:
    """``(qnams, meta)``: the QNAMs in metadata order and, per QNAM, its (QLABEL, QORIG, QEVAL)
    as a ``(n, 3)`` object array (once per spec and domain)."""
    def compute(s: Spec):
        q = _selected(s, rdomain)
        return list(q["qnam"]), q[["label", "origin", "qeval"]].to_numpy(dtype=object)
    return per_object(spec, ("supp_qualifier_arrays", rdomain), compute)


def build_supp(parent: pd.DataFrame, rdomain: str, spec: Spec, idvar: str | None) -> pd.DataFrame:
    """SUPP<rdomain> records from the QNAM columns present on ``parent``.

    ``parent`` holds STUDYID, USUBJID, the ``idvar`` column (e.g. AESEQ; ``None`` for DM,
    whose qualifiers relate to the subject) and one column per QNAM. QVAL is text; numeric
    IDVARVAL values are written without a decimal part. Records come qualifier by qualifier
    (metadata order), each in parent order.

    The qualifier columns are written as text together and the records picked from the
    ``(record, qualifier)`` grid at once, one frame built: the studies are small, so one frame
    and one row selection per qualifier cost more than the values (0.5 % of a build's CPU).
    """
    qnams, meta = _qualifier_arrays(spec, rdomain)
    present = [j for j, q in enumerate(qnams) if q in parent.columns]
    if present:
        block = parent[[qnams[j] for j in present]].astype("object")
        grid = block.where(block.notna(), "").astype(str).to_numpy(dtype=object)
        qual, rec = np.nonzero((grid != "").T)  # qualifier-major: per qualifier, records in order
    if not present or not len(rec):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SUPP_COLUMNS})
    if idvar:
        idv = parent[idvar]
        idval = idv.round().astype("Int64").astype(str) if idv.dtype.kind == "f" else idv.astype(str)
        idval = idval.to_numpy()[rec]
    m = meta[np.asarray(present)[qual]]
    return pd.DataFrame({
        "STUDYID": parent["STUDYID"].to_numpy()[rec],
        "RDOMAIN": rdomain,
        "USUBJID": parent["USUBJID"].to_numpy()[rec],
        "IDVAR": idvar or "",
        "IDVARVAL": idval if idvar else "",
        "QNAM": np.array(qnams, dtype=object)[np.asarray(present)[qual]],
        "QLABEL": m[:, 0],
        "QVAL": grid[rec, qual],
        "QORIG": m[:, 1],
        "QEVAL": m[:, 2],
    })
