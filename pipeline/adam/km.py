"""Kaplan-Meier estimates of ADTTE parameters (medians with 95% CIs) for the tables.

The estimator is statsmodels' ``SurvfuncRight`` (product-limit estimate, Greenwood standard
errors; the median's confidence interval by inverting the pointwise test with the log-log
transformation, Brookmeyer and Crowley 1982, method ``cloglog``). lifelines would be the
first choice but pins pandas < 3, which the pipeline uses. An upper limit that the data do not
reach is reported as missing (NE), as SAS PROC LIFETEST and R survival do. The median follows
the same convention as SAS PROC LIFETEST and R survival (:func:`km_median`): the smallest event
time at which the estimate falls below 0.5, or, where the estimate equals 0.5 exactly over an
interval, the midpoint of that interval's start and the next event time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CI_METHOD = "cloglog"
CI_LABEL = "95% CI: Brookmeyer-Crowley with log-log transformation (Greenwood variance)"


def km_median(times: pd.Series, survival: pd.Series, tol: float = 1e-12) -> float:
    """Median of a product-limit curve given at its event times (ascending): the first time
    with S(t) < 0.5; when S(t) = 0.5 exactly from an event time t_i on, (t_i + t_(i+1)) / 2 with
    t_(i+1) the next event time (Brookmeyer and Crowley 1982; SAS PROC LIFETEST, R survival);
    t_i itself when the curve stays at 0.5 to the end of follow-up (no later event time).
    NaN when the curve never reaches 0.5 (not reached)."""
    t = pd.to_numeric(times, errors="coerce").to_numpy(dtype="float64")
    s = pd.to_numeric(survival, errors="coerce").to_numpy(dtype="float64")
    at_half = np.flatnonzero(np.abs(s - 0.5) <= tol)
    below = np.flatnonzero(s < 0.5 - tol)
    if len(at_half):
        return float((t[at_half[0]] + t[below[0]]) / 2.0) if len(below) else float(t[at_half[0]])
    return float(t[below[0]]) if len(below) else float("nan")


def km_estimate(time: pd.Series, cnsr: pd.Series, alpha: float = 0.05) -> dict:
    """n, events, median and its 1-alpha CI of one group (``cnsr`` 1 = censored, ADaM CNSR)."""
    from statsmodels.duration.survfunc import SurvfuncRight

    t = pd.to_numeric(time, errors="coerce").to_numpy(dtype="float64")
    status = 1.0 - pd.to_numeric(cnsr, errors="coerce").to_numpy(dtype="float64")
    ok = ~np.isnan(t) & ~np.isnan(status)
    t, status = t[ok], status[ok]
    out = {"n": int(len(t)), "events": int(status.sum()), "median": np.nan, "lower": np.nan, "upper": np.nan}
    if not len(t) or not status.any():
        return out
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) at S = 0 inside statsmodels
        sf = SurvfuncRight(t, status)
        med = km_median(pd.Series(sf.surv_times), pd.Series(sf.surv_prob))
        lo, hi = sf.quantile_ci(0.5, alpha=alpha, method=CI_METHOD)

    def finite(x) -> float:
        x = float(x)
        return x if np.isfinite(x) else np.nan
    out.update(median=finite(med), lower=finite(lo), upper=finite(hi))
    return out


def km_summary(adtte: pd.DataFrame, by: tuple[str, ...] = ("PARAMCD", "PARAM", "TRT01AN", "TRT01A")) -> pd.DataFrame:
    """One row per ADTTE parameter and group (and per parameter over all subjects, TRT01A
    ``ALL``): n, events, censored, median and 95% CI in days."""
    rows = []
    overall = adtte.assign(TRT01AN=np.nan, TRT01A="ALL")
    for frame in (adtte, overall):  # by dose level, then all subjects
        for key, g in frame.groupby(list(by), dropna=False, sort=True):  # a few groups
            est = km_estimate(g["AVAL"], g["CNSR"])
            rows.append({**dict(zip(by, key)), **est, "censored": est["n"] - est["events"], "ci_method": CI_LABEL})
    cols = list(by) + ["n", "events", "censored", "median", "lower", "upper", "ci_method"]
    return pd.DataFrame(rows, columns=cols)
