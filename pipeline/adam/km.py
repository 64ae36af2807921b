"""Kaplan-Meier estimates of ADTTE parameters (medians with 95% CIs) for the tables.

The estimator is the product-limit estimate with Greenwood standard errors; the median's
confidence interval comes from inverting the pointwise test with the log-log transformation
(Brookmeyer and Crowley 1982, method ``cloglog``, as SAS PROC LIFETEST documents it). The
arithmetic is that of statsmodels' ``SurvfuncRight`` and ``quantile_ci``, operation for
operation (:func:`product_limit`, :func:`median_ci`), so the two give the same floats; the
tests compare them. It is computed here with numpy because importing
``statsmodels.duration.survfunc`` pulls in ``scipy.stats`` and costs seconds of CPU per
build for a handful of curves (issue 14). lifelines would be the first choice but pins
pandas < 3, which the pipeline uses. An upper limit that the data do not
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
    return _median(t, s, tol)


def _median(t: np.ndarray, s: np.ndarray, tol: float = 1e-12) -> float:
    """:func:`km_median` of float64 arrays of the event times and the survival estimates."""
    at_half = np.flatnonzero(np.abs(s - 0.5) <= tol)
    below = np.flatnonzero(s < 0.5 - tol)
    if len(at_half):
        return float((t[at_half[0]] + t[below[0]]) / 2.0) if len(below) else float(t[at_half[0]])
    return float(t[below[0]]) if len(below) else float("nan")


def product_limit(t: np.ndarray, status: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event times (ascending), product-limit survival S(t) and its Greenwood standard error,
    from times ``t`` and ``status`` (1 = event, 0 = censored), without weights or entry times.

    S(t_j) = prod_{i<=j} (1 - d_i / n_i), computed as exp(cumsum(log(...))) with S set to 0
    once a factor falls below 1e-16; se(t_j) = S(t_j) * sqrt(sum_{i<=j} d_i / (n_i (n_i - d_i))),
    missing where n_i = d_i. Same operations as statsmodels' ``_calc_survfunc_right``."""
    utime, rank = np.unique(t, return_inverse=True)
    d = np.bincount(rank, weights=status, minlength=len(utime))
    n = np.cumsum(np.bincount(rank, minlength=len(utime))[::-1])[::-1]  # at risk just before
    keep = np.flatnonzero(d > 0)  # event times only
    d, n, utime = d[keep], n[keep], utime[keep]
    sp = 1 - d / n.astype(np.float64)
    zero = sp < 1e-16
    sp[zero] = 1e-16
    sp = np.exp(np.cumsum(np.log(sp)))
    sp[zero] = 0
    se = d / np.clip(n * (n - d), 1e-12, np.inf).astype(np.float64)
    se[(n == d) | (n == 0)] = np.nan
    se = np.sqrt(np.cumsum(se))
    finite = np.isfinite(se) | (sp != 0)
    se[finite] *= sp[finite]
    se[~finite] = np.nan
    return utime, sp, se


def median_ci(times: np.ndarray, surv: np.ndarray, se: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Brookmeyer-Crowley 1-alpha confidence interval of the median with the log-log transform:
    the event times whose |g(S(t)) - g(0.5)| / (g'(S(t)) se(t)) <= z_(1-alpha/2), g(x) =
    log(-log x); lower = the first such time, upper = the event time after the last such time
    (infinite when the last is the last event time). Same operations as statsmodels'
    ``SurvfuncRight.quantile_ci(0.5, method="cloglog")``."""
    from scipy.special import ndtri  # the normal quantile; scipy.special only, not scipy.stats

    z = ndtri(1 - alpha / 2)
    r = np.log(-np.log(surv)) - np.log(-np.log(0.5))
    r /= (-1 / (surv * np.log(surv))) * se
    inside = np.flatnonzero(np.abs(r) <= z)
    if len(inside) == 0:
        return np.nan, np.nan
    upper = np.inf if inside[-1] == len(times) - 1 else times[inside[-1] + 1]
    return times[inside[0]], upper


def km_estimate(time: pd.Series, cnsr: pd.Series, alpha: float = 0.05) -> dict:
    """n, events, median and its 1-alpha CI of one group (``cnsr`` 1 = censored, ADaM CNSR)."""
    t = pd.to_numeric(time, errors="coerce").to_numpy(dtype="float64")
    status = 1.0 - pd.to_numeric(cnsr, errors="coerce").to_numpy(dtype="float64")
    return _estimate(t, status, alpha)


def _estimate(t: np.ndarray, status: np.ndarray, alpha: float = 0.05) -> dict:
    """:func:`km_estimate` of float64 times and statuses (1 = event; NaN where not a number)."""
    ok = ~np.isnan(t) & ~np.isnan(status)
    t, status = t[ok], status[ok]
    out = {"n": int(len(t)), "events": int(status.sum()), "median": np.nan, "lower": np.nan, "upper": np.nan}
    if not len(t) or not status.any():
        return out
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) at S = 0
        times, surv, se = product_limit(t, status)
        med = _median(times, surv)
        lo, hi = median_ci(times, surv, se, alpha=alpha)

    def finite(x) -> float:
        x = float(x)
        return x if np.isfinite(x) else np.nan
    out.update(median=finite(med), lower=finite(lo), upper=finite(hi))
    return out


def km_summary(adtte: pd.DataFrame, by: tuple[str, ...] = ("PARAMCD", "PARAM", "TRT01AN", "TRT01A")) -> pd.DataFrame:
    """One row per ADTTE parameter and group (and per parameter over all subjects, TRT01A
    ``ALL``): n, events, censored, median and 95% CI in days.

    AVAL and CNSR are made numbers once; each group's estimate reads its records' positions
    (the groups in the groupby's sorted order, :func:`_group_positions`), not a sub-frame per
    group (~30 groups a study)."""
    rows = []
    t = pd.to_numeric(adtte["AVAL"], errors="coerce").to_numpy(dtype="float64")
    status = 1.0 - pd.to_numeric(adtte["CNSR"], errors="coerce").to_numpy(dtype="float64")
    overall = adtte.assign(TRT01AN=np.nan, TRT01A="ALL")
    for frame in (adtte, overall):  # by dose level, then all subjects
        for key, pos in _group_positions(frame, list(by)):  # a few groups
            est = _estimate(t[pos], status[pos])
            rows.append({**dict(zip(by, key)), **est, "censored": est["n"] - est["events"], "ci_method": CI_LABEL})
    cols = list(by) + ["n", "events", "censored", "median", "lower", "upper", "ci_method"]
    return pd.DataFrame(rows, columns=cols)


def _group_positions(frame: pd.DataFrame, by: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """``(key, positions)`` of each group of ``frame.groupby(by, dropna=False, sort=True)``, in
    the order iterating the groupby gives them (a key is a tuple of the ``by`` values; the
    positions ascending, as the group's rows)."""
    gb = frame.groupby(by, dropna=False, sort=True)
    codes = gb.ngroup().to_numpy()
    index = gb.size().index
    keys = list(index) if isinstance(index, pd.MultiIndex) else [(k,) for k in index]
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(keys) + 1))
    return [(key, order[bounds[k]:bounds[k + 1]]) for k, key in enumerate(keys)]
