"""The last numeric check before any writer: finite values that XPT v5 stores exactly.

SAS XPORT v5 stores numbers as IBM System/360 double-precision floats. Dataset-JSON v1.1 is JSON
(RFC 8259), which has no NaN or Infinity literals. Missing values (NaN) are fine in both (XPT
missing ``.``, JSON ``null``), and so is 0; a number is refused when

- it is ``+inf`` or ``-inf``;
- its magnitude is :data:`pipeline.export.xpt.XPT_MAX` (2**249, about 9.0e74) or more: IBM
  doubles end near 7.2e75, and pyreadstat, the reference the XPT writer is proved against,
  already writes every value from 2**249 on as the largest IBM number;
- it is not 0 and its magnitude is below :data:`pipeline.export.xpt.IBM_MIN` (16**-65, about
  5.4e-79; IEEE subnormals included): IBM underflow. SAS and pyreadstat would write 0, which
  changes the value silently, so it is refused like an overflow (no collected or derived
  clinical number is that small; such a value is an upstream error to correct).

:func:`numeric_findings` looks at every numeric column of every dataset (and at text columns
the spec declares ``integer`` or ``float``) and returns one error finding per offending value,
naming the dataset (``file``), the record number in the dataset (``row``, 1 = first record),
the variable (``column``), the value and the subject (USUBJID) in the message. The build
calls it before export, so a study with such a value fails with that finding and its previous
outputs stay untouched; no writer ever sees the value (the XPT writer refuses the same values
with one error line, as the last line of defence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, empty
from pipeline.export import xpt
from pipeline.export.memo import per_object
from pipeline.spec import Spec

#: largest magnitude an IBM double (XPT v5) can hold: 16**63 x (1 - 16**-14)
#: (the largest IEEE double not above it: (1 - 2**-53) x 2**252); values are refused from
#: :data:`XPT_MAX` on, below it (see the module docstring)
IBM_MAX = float.fromhex("0x1.fffffffffffffp+251")
XPT_MAX, IBM_MIN = xpt.XPT_MAX, xpt.IBM_MIN
CHECK = "numeric.not_exportable"
#: spec types whose values are numbers in XPT and Dataset-JSON
NUMERIC_TYPES = {"integer", "float"}


def _numeric_columns(frame: pd.DataFrame, spec_types: dict[str, str]) -> list[str]:
    cols = []
    for c, dtype in zip(frame.columns, frame.dtypes):  # loop over variables (metadata), each checked vectorised
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            cols.append(c)
        elif spec_types.get(c) in NUMERIC_TYPES:
            cols.append(c)
    return cols


def _types_by_dataset(variables: pd.DataFrame) -> dict[str, dict[str, str]]:
    """dataset -> {variable: spec type}, in the rows' order (a later row of the same variable wins)."""
    return {ds: dict(zip(sub["variable"], sub["type"]))
            for ds, sub in variables.groupby("dataset", sort=False)}  # loop over datasets


def _spec_types(spec: Spec | None, dataset: str) -> dict[str, str]:
    """Variable -> spec type of one dataset ({} without a spec); made once per variables table
    for all the datasets (issue 14)."""
    if spec is None:
        return {}
    try:
        v = spec.variables
    except AttributeError:
        return {}
    return per_object(v, "numeric_guard_types", _types_by_dataset).get(dataset, {})


def numeric_findings(datasets: dict[str, pd.DataFrame], spec: Spec | None, studyid: str) -> pd.DataFrame:
    """Error findings for non-finite or out-of-IBM-range numbers (see module docstring)."""
    found = []
    for name in sorted(datasets):  # loop over datasets (a few dozen)
        frame = datasets[name]
        if frame is None or not len(frame):
            continue
        for col in _numeric_columns(frame, _spec_types(spec, name)):
            s = frame[col]
            values = s.to_numpy() if s.dtype == np.float64 else \
                pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
            with np.errstate(invalid="ignore"):
                magnitude = np.abs(values)
                bad = np.isinf(values) | (magnitude >= XPT_MAX) | ((magnitude < IBM_MIN) & (values != 0))
            if not bad.any():
                continue
            pos = np.flatnonzero(bad)
            vals = values[pos]
            subject = frame["USUBJID"].astype(object) if "USUBJID" in frame.columns else None
            subj = (subject.iloc[pos].fillna("").astype(str).to_numpy() if subject is not None
                    else np.full(len(pos), "", dtype=object))
            value_text = pd.Series(vals).map(repr).to_numpy()  # over the few offending values
            reason = np.select(
                [np.isinf(vals), np.abs(vals) >= XPT_MAX],
                ["is not finite (no NaN or Infinity in Dataset-JSON, none in XPT)",
                 f"exceeds the IBM float range of XPT v5 (|x| < {XPT_MAX:.4e})"],
                f"is below the smallest IBM float of XPT v5 ({IBM_MIN:.4e}, 16**-65) and would be written as 0")
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
