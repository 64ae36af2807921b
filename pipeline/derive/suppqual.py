"""Supplemental qualifiers SUPP-- (SDTMIG 3.4 section 8.4).

A collected or derived value with no standard variable goes to SUPP<domain>. Which QNAMs
exist, and their QLABEL, QORIG, QEVAL and codelist, come only from the value-level metadata
``specs/sdtm/valuelevel/SUPP<domain>.csv`` (rows with variable QVAL, where_variable QNAM).
A domain module puts the values in columns named after the QNAMs on its parent frame and
calls :func:`build_supp`; records with an empty value are not created (SDTMIG 8.4.1).
"""

from __future__ import annotations

import pandas as pd

from pipeline.errors import ConfigError
from pipeline.spec import Spec


def supp_qualifiers(spec: Spec, rdomain: str) -> pd.DataFrame:
    """The QNAM rows of SUPP<rdomain> from value-level metadata (qnam, label, origin, qeval, codelist)."""
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


def build_supp(parent: pd.DataFrame, rdomain: str, spec: Spec, idvar: str | None) -> pd.DataFrame:
    """SUPP<rdomain> records from the QNAM columns present on ``parent``.

    ``parent`` holds STUDYID, USUBJID, the ``idvar`` column (e.g. AESEQ; ``None`` for DM,
    whose qualifiers relate to the subject) and one column per QNAM. QVAL is text; numeric
    IDVARVAL values are written without a decimal part.
    """
    quals = supp_qualifiers(spec, rdomain)
    present = quals[quals["qnam"].isin(parent.columns)]
    frames = []
    for q in present.itertuples(index=False):  # one pass per qualifier, vectorised over records
        val = parent[q.qnam].astype("object").where(parent[q.qnam].notna(), "").astype(str)
        keep = val.ne("")
        if not keep.any():
            continue
        sub = parent.loc[keep]
        if idvar:
            idv = sub[idvar]
            idval = idv.round().astype("Int64").astype(str) if idv.dtype.kind == "f" else idv.astype(str)
        frames.append(pd.DataFrame({
            "STUDYID": sub["STUDYID"].to_numpy(),
            "RDOMAIN": rdomain,
            "USUBJID": sub["USUBJID"].to_numpy(),
            "IDVAR": idvar or "",
            "IDVARVAL": idval.to_numpy() if idvar else "",
            "QNAM": q.qnam,
            "QLABEL": q.label,
            "QVAL": val[keep].to_numpy(),
            "QORIG": q.origin,
            "QEVAL": q.qeval,
        }))
    cols = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL", "QVAL", "QORIG", "QEVAL"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    return pd.concat(frames, ignore_index=True)[cols]
