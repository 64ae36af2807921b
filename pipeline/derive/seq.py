"""``--SEQ`` (SDTMIG 3.4 section 4.1.9): a number unique per USUBJID within a domain.

Assigned after a deterministic sort, so the same input always yields the same numbers.
"""

from __future__ import annotations

import pandas as pd


def assign_seq(frame: pd.DataFrame, sort_by: list[str], by: str = "USUBJID") -> pd.Series:
    """1..n within ``by`` after a stable sort on ``[by] + sort_by``; returned aligned to ``frame``.

    Only the key columns are sorted and grouped (LB has ~35 columns and a million rows)."""
    keys = [by] + [c for c in sort_by if c != by]
    order = frame[keys].sort_values(keys, kind="mergesort").index
    ids = frame[by].loc[order]
    seq = ids.groupby(ids, sort=False).cumcount() + 1
    return seq.reindex(frame.index).astype("float64")
