"""Text of raw and derived columns: ``""`` for a missing cell, surrounding blanks removed.

Called a few hundred times per study on small columns (every raw text field a domain reads),
so it works on the column's distinct values: a raw column repeats a few values many times.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: pandas' ``"str"`` dtype, resolved once: a dtype given by name is looked up in pandas' dtype
#: registry on every call (~40 us, as much as building the small column itself)
STR = pd.api.types.pandas_dtype("str")


def stripped_text(s: pd.Series) -> pd.Series:
    """``s`` as text (``str`` dtype, same index and name): ``""`` where missing, else
    ``str(value).strip()``. Text columns are stripped once per distinct value; a column holding
    numbers or mixed values goes the generic pandas way (distinct-value hashing would equate
    ``1``, ``1.0`` and ``True``)."""
    values = s.to_numpy(dtype=object)
    if not (isinstance(s.dtype, pd.StringDtype) or pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")):
        return s.astype("object").where(s.notna(), "").astype(str).str.strip()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = [u.strip() for u in uniques]  # distinct values, not records
    table.append("")  # missing
    # the str array is made (and its values checked) over the distinct values, then taken
    return pd.Series(pd.array(table, dtype=STR).take(codes), index=s.index, name=s.name)


def stripped_upper_text(s: pd.Series) -> pd.Series:
    """``stripped_text(s).str.upper()``, each distinct value stripped and upper-cased once
    (``str`` dtype, same index and name; ``""`` where missing)."""
    codes, texts = _texts(s)
    table = pd.array([t.strip().upper() for t in texts], dtype=STR)  # distinct texts, not records
    return pd.Series(table.take(codes), index=s.index, name=s.name)


def text_codes(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(stripped_text(s))`` without making the text column: each cell's code into
    the distinct stripped texts (object array; ``""`` for missing). Only the numbering differs:
    the texts come in the order of the distinct raw values (missing last), not of first record."""
    codes, texts = _texts(s)
    text_code, distinct = pd.factorize(np.array([t.strip() for t in texts], dtype=object))  # distinct texts
    return text_code[codes], np.asarray(distinct, dtype=object)


def _texts(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """``(codes, texts)``: the distinct texts of ``s`` (``""`` for missing, last) and each cell's
    position among them. Non-text columns are first written as text the generic pandas way."""
    values = s.to_numpy(dtype=object)
    if not (isinstance(s.dtype, pd.StringDtype) or pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")):
        values = s.astype("object").where(s.notna(), "").astype(str).to_numpy(dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = list(uniques)
    texts.append("")  # missing
    return codes, texts


def date_part(dtc: pd.Series, pattern: re.Pattern) -> tuple[pd.Series, np.ndarray]:
    """The first 10 characters of each ISO date/time text (``str`` dtype, ``""`` when missing) and
    whether they match ``pattern`` (a complete date); computed once per distinct text."""
    codes, texts = _texts(dtc)
    heads = [t[:10] for t in texts]  # distinct texts, not records
    dated = np.array([pattern.match(h) is not None for h in heads], dtype=bool)[codes]
    return pd.Series(np.array(heads, dtype=object)[codes], index=dtc.index, name=dtc.name, dtype=STR), dated
