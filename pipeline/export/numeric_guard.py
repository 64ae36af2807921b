"""The last numeric check before any writer: finite values within the IBM float range.

SAS XPORT v5 stores numbers as IBM System/360 double-precision floats: the largest magnitude
is 16**63 x (1 - 16**-14), about 7.24E+75; a larger IEEE double has no IBM representation.
Dataset-JSON v1.1 is JSON (RFC 8259), which has no NaN or Infinity literals. Missing values
(NaN) are fine in both (XPT missing ``.``, JSON ``null``); ``+inf``, ``-inf`` and magnitudes
above the IBM limit are not.

:func:`numeric_findings` looks at every numeric column of every dataset (and at text columns
the spec declares ``integer`` or ``float``) and returns one error finding per offending value,
naming the dataset (``file``), the record number in the dataset (``row``, 1 = first record),
the variable (``column``), the value and the subject (USUBJID) in the message. The build
calls it before export, so a study with such a value fails with that finding and its previous
outputs stay untouched; no writer ever sees the value.

Values smaller than the IBM minimum (about 5.4E-79) become 0 in XPT; they are not refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, empty
from pipeline.spec import Spec

#: largest magnitude an IBM double (XPT v5) can hold: 16**63 x (1 - 16**-14)
#: (the largest IEEE double not above it: (1 - 2**-53) x 2**252; the next double, 2**252, overflows)
IBM_MAX = float.fromhex("0x1.fffffffffffffp+251")
CHECK = "numeric.not_exportable"
#: spec types whose values are numbers in XPT and Dataset-JSON
NUMERIC_TYPES = {"integer", "float"}


def _numeric_columns(frame: pd.DataFrame, spec_types: dict[str, str]) -> list[str]:
    cols = []
    for c in frame.columns:  # loop over variables (metadata), each checked vectorised
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]):
            cols.append(c)
        elif spec_types.get(c) in NUMERIC_TYPES:
            cols.append(c)
    return cols


def _spec_types(spec: Spec | None, dataset: str) -> dict[str, str]:
    if spec is None:
        return {}
    try:
        v = spec.variables
    except AttributeError:
        return {}
    sub = v[v["dataset"] == dataset]
    return dict(zip(sub["variable"], sub["type"]))


def numeric_findings(datasets: dict[str, pd.DataFrame], spec: Spec | None, studyid: str) -> pd.DataFrame:
    """Error findings for non-finite or out-of-IBM-range numbers (see module docstring)."""
    found = []
    for name in sorted(datasets):  # loop over datasets (a few dozen)
        frame = datasets[name]
        if frame is None or not len(frame):
            continue
        subject = frame["USUBJID"].astype(object) if "USUBJID" in frame.columns else None
        for col in _numeric_columns(frame, _spec_types(spec, name)):
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
            with np.errstate(invalid="ignore"):
                bad = np.isinf(values) | (np.abs(values) > IBM_MAX)
            if not bad.any():
                continue
            pos = np.flatnonzero(bad)
            vals = values[pos]
            subj = (subject.iloc[pos].fillna("").astype(str).to_numpy() if subject is not None
                    else np.full(len(pos), "", dtype=object))
            value_text = pd.Series(vals).map(repr).to_numpy()  # over the few offending values
            reason = np.where(np.isinf(vals), "is not finite (no NaN or Infinity in Dataset-JSON, none in XPT)",
                              f"exceeds the IBM float range of XPT v5 (|x| <= {IBM_MAX:.4e})")
            who = np.where(subj != "", " for subject " + subj.astype(object), "")
            msg = (f"{name}.{col} = " + value_text.astype(object) + who.astype(object) + " (record "
                   + (pos + 1).astype(str).astype(object) + ") " + reason.astype(object)
                   + "; not exported: correct the source value")
            found.append(pd.DataFrame({
                "study": studyid, "file": name, "row": pos + 1, "column": col, "value": value_text,
                "check": CHECK, "severity": "error", "message": msg}, columns=FINDING_COLUMNS))
    if not found:
        return empty(FINDING_COLUMNS)
    return pd.concat(found, ignore_index=True)
