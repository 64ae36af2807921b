"""CAR-T cellular kinetics: Cmax, Tmax and AUC over days 0-28 by non-compartmental analysis.

Conventions (written into the PP/PC spec comments and the ``cellular_kinetics`` report):

- **Time** is elapsed days since the first CAR-T infusion (DM.RFSTDTC = protocol day 0):
  the exact difference of date-times when both carry a time, else the difference of dates.
  A sample dated on the infusion day without a time counts as drawn before the infusion
  (time 0), as for LBLOBXFL.
- **Window** 0 <= t <= 28 days. Samples before the infusion are not used.
- **Below the limit of quantification** (``<x``) counts as 0; an above-limit result (``>x``)
  counts as its limit x (a lower bound, flagged in the report).
- **Cmax** is the highest concentration observed in the window and **Tmax** the first time it
  is observed (days). Both need at least one sample in the window.
- **AUC0-28** by the linear trapezoidal rule from t = 0 to t = 28 days. CAR transgene and CAR+
  cells are absent before the infusion, so when no sample exists at t = 0 the profile starts
  at (0, 0). The end point at day 28 is the sample at day 28 when there is one, else the
  linear interpolation between the last sample before and the first sample after day 28.
  When the profile ends before day 28 AUC0-28 is not computed (it is not extrapolated);
  the reason is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.dates import dtc_date, dtc_datetime

WINDOW_END_DAYS = 28.0
PARAM_COLUMNS = ["n_obs", "CMAX", "TMAX", "AUC", "auc_status"]


def elapsed_days(dtc: pd.Series, ref: pd.Series) -> pd.Series:
    """Days from ``ref`` (first infusion) to ``dtc``: exact when both have a time, else the
    difference of dates. NaN when either date is partial or missing."""
    d_txt = dtc.astype(object).where(dtc.notna(), "").astype(str)
    r_txt = pd.Series(ref.to_numpy(), index=dtc.index).astype(object).fillna("").astype(str)
    both_time = d_txt.str.contains("T", regex=False) & r_txt.str.contains("T", regex=False)
    exact = (dtc_datetime(d_txt) - dtc_datetime(r_txt)).dt.total_seconds() / 86400.0
    by_date = (dtc_date(d_txt) - dtc_date(r_txt)).dt.days.astype("float64")
    return exact.where(both_time, by_date).astype("float64")


def nca_parameters(profile: pd.DataFrame, by: list[str], window_end: float = WINDOW_END_DAYS) -> pd.DataFrame:
    """Cmax, Tmax and AUC(0-window_end) per ``by`` group.

    ``profile`` columns: the ``by`` keys, ``t`` (elapsed days, see :func:`elapsed_days`) and
    ``conc`` (concentration, 0 for results below the limit of quantification). Returns one row
    per group with ``n_obs`` (samples in the window), ``CMAX``, ``TMAX``, ``AUC`` (NaN when not
    computable) and ``auc_status`` (``""`` or the reason AUC is missing).
    """
    p = profile[by + ["t", "conc"]].copy()
    p = p[p["t"].notna() & p["conc"].notna() & (p["t"] >= 0)]
    groups = profile[by].drop_duplicates().reset_index(drop=True)
    if p.empty:
        out = groups.copy()
        out["n_obs"], out["CMAX"], out["TMAX"], out["AUC"] = 0, np.nan, np.nan, np.nan
        out["auc_status"] = "no sample after the infusion"
        return out
    # several samples at the same time: their mean (replicates)
    p = p.groupby(by + ["t"], sort=True, as_index=False)["conc"].mean()
    inwin = p[p["t"] <= window_end]
    stats = inwin.sort_values(by + ["conc", "t"], ascending=[True] * len(by) + [False, True], kind="mergesort")
    cmax = stats.drop_duplicates(by, keep="first").set_index(by)[["conc", "t"]].rename(columns={"conc": "CMAX", "t": "TMAX"})
    n_obs = inwin.groupby(by).size().rename("n_obs")

    # point at day 0: observed, else (0, 0)
    has0 = inwin[inwin["t"] == 0][by].drop_duplicates().assign(_has0=True)
    starts = groups.merge(has0, on=by, how="left")
    zero = starts[starts["_has0"].isna()][by].assign(t=0.0, conc=0.0)
    # end point at window_end: observed or interpolated from the bracketing samples
    before = p[p["t"] <= window_end].sort_values(by + ["t"], kind="mergesort").drop_duplicates(by, keep="last")
    after = p[p["t"] > window_end].sort_values(by + ["t"], kind="mergesort").drop_duplicates(by, keep="first")
    br = before.merge(after, on=by, how="inner", suffixes=("_b", "_a"))
    br = br[br["t_b"] < window_end]
    frac = (window_end - br["t_b"]) / (br["t_a"] - br["t_b"])
    end = br[by].assign(t=window_end, conc=br["conc_b"] + frac * (br["conc_a"] - br["conc_b"]))
    pts = pd.concat([zero, inwin[by + ["t", "conc"]], end], ignore_index=True)
    pts = pts.sort_values(by + ["t"], kind="mergesort").reset_index(drop=True)
    same = (pts[by].shift() == pts[by]).all(axis=1)
    dt = pts["t"] - pts["t"].shift()
    trap = (dt * (pts["conc"] + pts["conc"].shift()) / 2).where(same, 0.0)
    auc = trap.groupby([pts[k] for k in by]).sum().rename("AUC")
    reach = pts.groupby(by)["t"].max().rename("t_end")

    # the per-group statistics side by side (aligned on the group keys), then one merge
    per_group = pd.concat([n_obs, cmax, auc, reach], axis=1)
    out = groups.merge(per_group.reset_index(), on=by, how="left")
    out["n_obs"] = out["n_obs"].fillna(0).astype(int)
    complete = out["t_end"] >= window_end
    no_obs = out["n_obs"].eq(0)
    short = ~complete & ~no_obs
    last = out["t_end"].map(lambda x: "" if pd.isna(x) else f"{x:g}")  # one value per group
    out["auc_status"] = ""
    out.loc[no_obs, "auc_status"] = f"no sample in days 0-{window_end:g}"
    out.loc[short, "auc_status"] = (f"profile ends before day {window_end:g} (last sample day "
                                    + last[short] + "); not extrapolated")
    out["AUC"] = out["AUC"].where(complete & out["n_obs"].gt(0))
    return out[by + PARAM_COLUMNS]
