"""Procedures: leukapheresis (form ``aph``) and allogeneic HSCT after CAR-T (form ``hsct``),
with the transplant's effect on the blood counts.

Every draw here comes from streams of its own (:func:`pipeline.simulate.subjects.stream`):
``procedures.aph``, ``procedures.hsct``, ``procedures.hsct_labs``.

Model
-----
- Leukapheresis: one collection on the subject's ``aph_day`` for every enrolled subject of an
  arm with an autologous product (``[simulation] leukapheresis_arms``, default every arm); a
  second collection the next day when the first yielded under 1 x 10^9 CD3+ cells.
- Allogeneic HSCT: among the treated responders who are alive, not withdrawn and not relapsed,
  a share ``[simulation] hsct_rate`` is transplanted on a day drawn in ``hsct_days`` (protocol
  days after the infusion), with conditioning from 6-10 days before. Neutrophils engraft 10-17
  days after the stem cell infusion (haploidentical grafts 2 days later), platelets 0-10 days
  after the neutrophils; about 5% of grafts fail (no engraftment).
- Blood counts (ANC, platelets, WBC) from the first conditioning day follow the transplant's
  curve: conditioning nadir, log-linear rise crossing the threshold on the engraftment day, a
  plateau at donor-graft levels. The transplant centre draws them daily from conditioning to
  about 10 days after platelet engraftment (rows of VISIT UNSCHEDULED in ``lb``, SI units); the
  scheduled visits in that period and after it get values of the same curve. A daily draw is
  sometimes not done (its result missing), as in real transplant-centre data.
- The centre's recorded engraftment dates are the model's; now and then the centre records the
  first day over the threshold although the run was broken, which the engraftment
  discrepancy report then shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import NODAY
from pipeline.simulate.subjects import NEVER, stream

#: tests whose values follow the transplant curve
HSCT_TESTS = ("WBC", "NEUT", "PLAT")
DONORS = np.array(["HAPLOIDENTICAL", "MATCHED RELATED", "MATCHED UNRELATED"], dtype=object)
#: donor weights by disease family (the SAA seed: related donors, at least haploidentical)
DONOR_WEIGHTS = {"aplastic_anemia": [0.75, 0.25, 0.0], "leukemia": [0.55, 0.25, 0.20]}
REGIMENS = {("aplastic_anemia", "HAPLOIDENTICAL"): "BU/FLU/CY/ATG",
            ("aplastic_anemia", "MATCHED RELATED"): "FLU/CY/ATG",
            ("leukemia", "HAPLOIDENTICAL"): "BU/CY/ATG",
            ("leukemia", "MATCHED RELATED"): "BU/FLU/ATG",
            ("leukemia", "MATCHED UNRELATED"): "BU/FLU/CY/ATG"}
AGVHD = np.array(["0", "I", "II", "III", "IV"], dtype=object)
CGVHD = np.array(["NONE", "MILD", "MODERATE", "SEVERE"], dtype=object)


def _hsct_settings(study: Study, cfg: dict) -> tuple[float, tuple[int, int]]:
    sim = study.get("simulation", {}) or {}
    rate = float(sim.get("hsct_rate", 0.0))
    lo, hi = sim.get("hsct_days", [45, 100])
    return rate, (int(lo), int(hi))


def plan_hsct(study: Study, cfg: dict, S: pd.DataFrame) -> pd.DataFrame:
    """Add the transplant timeline to the subject frame (protocol days; NEVER when none).

    Columns: ``hsct`` (bool), ``hsct_day`` (stem cell infusion), ``cond_day`` (first
    conditioning day), ``neut_eng`` / ``plat_eng`` (protocol day of engraftment, NEVER for graft
    failure), ``donor``, ``source``, ``regimen``, ``agvhd`` (MAGIC grade text), ``agvhd_day``,
    ``cgvhd`` (NIH severity or None), ``cgvhd_day``, ``hsct_asmt`` (last transplant follow-up day),
    ``neut_rec`` / ``plat_rec`` (engraftment day the centre recorded, NEVER when none).
    Needs ``end_day`` from :func:`pipeline.simulate.subjects.visit_days`."""
    fam = study["response"]["family"]
    rate, (lo, hi) = _hsct_settings(study, cfg)
    rng = stream(cfg, "procedures.hsct")
    n = len(S)
    u = rng.random((12, n))
    day = lo + np.floor(u[0] * (hi - lo + 1)).astype(int)
    cond = day - (6 + np.floor(u[1] * 5).astype(int))
    end = S["end_day"].to_numpy().astype(int) if "end_day" in S else np.full(n, NEVER)
    ok = (S["treated"].to_numpy() & S["responder"].to_numpy() & (rate > 0)
          & (S["relapse_day"].to_numpy() > day + 10) & (S["death_day"].to_numpy() > day + 3)
          & (S["wd_day"].to_numpy() > day + 3) & (end >= day + 3) & (cond > 28))
    chosen = ok & (u[2] < rate)
    w = np.asarray(DONOR_WEIGHTS.get(fam, [0.55, 0.25, 0.20]), float)
    donor = DONORS[np.searchsorted(np.cumsum(w / w.sum()), u[3], side="right").clip(0, 2)]
    haplo = donor == "HAPLOIDENTICAL"
    source = np.where(haplo & (u[4] < 0.6), "BONE MARROW AND PERIPHERAL BLOOD",
                      np.where(u[4] < 0.85, "PERIPHERAL BLOOD", "BONE MARROW")).astype(object)
    regimen = np.array([REGIMENS.get((fam, d), "BU/FLU/CY/ATG") for d in donor], dtype=object)  # per subject, few
    failed = u[5] < 0.05
    neut_rel = 10 + np.floor(u[6] * 8).astype(int) + np.where(haplo, 2, 0)
    plat_rel = neut_rel + np.floor(u[7] * 11).astype(int)
    neut = np.where(chosen & ~failed, day + neut_rel, NEVER)
    plat = np.where(chosen & ~failed, day + plat_rel, NEVER)
    asmt = np.minimum(end, day + 100)
    g = np.searchsorted(np.cumsum([0.55, 0.20, 0.15, 0.07, 0.03]), u[8], side="right").clip(0, 4)
    agvhd_day = day + 14 + np.floor(u[9] * 47).astype(int)
    g = np.where(agvhd_day <= asmt, g, 0)
    c = np.searchsorted(np.cumsum([0.70, 0.17, 0.10, 0.03]), u[10], side="right").clip(0, 3)
    has_c = chosen & (end >= day + 100)
    # the centre's record: the model's date, the day before now and then (a broken first run)
    slip = u[11] < 0.12
    # recorded only once the defining run is complete (3 days for ANC, 7 for platelets)
    neut_rec = np.where(neut + 2 <= asmt, np.where(slip, neut - 1, neut), NEVER)
    plat_rec = np.where(plat + 6 <= asmt, plat, NEVER)
    S = S.copy()
    S["hsct"] = chosen
    S["hsct_day"] = np.where(chosen, day, NEVER)
    S["cond_day"] = np.where(chosen, cond, NEVER)
    S["neut_eng"], S["plat_eng"] = neut, plat
    S["neut_rec"], S["plat_rec"] = neut_rec, plat_rec
    S["donor"], S["source"], S["regimen"] = donor, source, regimen
    S["agvhd"] = np.where(chosen, AGVHD[g], None)
    S["agvhd_day"] = np.where(chosen & (g > 0), agvhd_day, NEVER)
    S["cgvhd"] = np.where(has_c, CGVHD[c], None)
    S["cgvhd_day"] = np.where(has_c, day + 100, NEVER)
    S["hsct_asmt"] = np.where(chosen, asmt, NEVER)
    return S


def hsct_counts(S: pd.DataFrame, i: np.ndarray, t: np.ndarray, test: np.ndarray, z: np.ndarray) -> np.ndarray:
    """SI value of ``test`` for subject ``i`` on protocol day ``t`` under the transplant curve
    (``z``: standard normal noise per value). NaN where the subject has no transplant or the
    day is before conditioning."""
    cond = S["cond_day"].to_numpy()[i].astype(float)
    h = S["hsct_day"].to_numpy()[i].astype(float)
    ne = S["neut_eng"].to_numpy()[i].astype(float)
    pe = S["plat_eng"].to_numpy()[i].astype(float)
    failed = ne >= NEVER
    rel = t - h
    # ANC: from 1.2 at conditioning start down to 0.02 on HSCT day +3; log-linear rise from
    # +4 reaching 0.6 on the engraftment day (0.35 the day before), to a plateau of 3.0
    pre = np.log(1.2) + (np.log(0.02) - np.log(1.2)) * np.clip((t - cond) / np.maximum(h + 3 - cond, 1), 0, 1)
    slope = np.log(0.6 / 0.02) / np.maximum(ne - (h + 3), 1)
    up = np.minimum(np.log(0.02) + slope * (t - (h + 3)), np.log(3.0))
    anc = np.where(rel <= 3, pre, np.where(failed, np.log(0.08), up))
    # platelets: from 40 down to 8 by +5 (transfused, not counted here), 26 on the engraftment
    # day (17 the day before), rising 10% a day to a plateau of 160
    ppre = np.log(40) + (np.log(8) - np.log(40)) * np.clip((t - cond) / np.maximum(h + 5 - cond, 1), 0, 1)
    pup = np.where(t < pe, np.log(8) + (np.log(17) - np.log(8)) * np.clip((t - (h + 5)) / np.maximum(pe - 1 - (h + 5), 1), 0, 1),
                   np.minimum(np.log(26) + 0.10 * (t - pe), np.log(160)))
    plt = np.where(rel <= 5, ppre, np.where(failed, np.log(9), pup))
    sd = np.where(test == "PLAT", 0.04, 0.06)
    lnv = np.where(test == "PLAT", plt, np.where(test == "WBC", np.log(np.exp(anc) * 1.35 + 0.15), anc)) + sd * z
    out = np.exp(lnv)
    return np.where(S["hsct"].to_numpy()[i] & (t >= cond), out, np.nan)


def apply_hsct_to_labs(S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Scheduled (and early unscheduled) draws from the first conditioning day on follow the
    transplant curve; those values are locked (never NOT DONE)."""
    if not S["hsct"].any():
        return L
    rng = stream(cfg, "procedures.hsct_labs.visits")
    i = L["i"].to_numpy()
    t = D["day"].to_numpy()[L["draw"].to_numpy()].astype(float)
    test = L["test"].astype(str).to_numpy()
    z = rng.normal(0, 1, len(L))
    v = hsct_counts(S, i, t, test, z)
    sel = np.isin(test, HSCT_TESTS) & ~np.isnan(v)
    if not sel.any():
        return L
    L = L.copy()
    si = L["si"].to_numpy().copy()
    si[sel] = v[sel]
    L["si"] = si
    locked = L["locked"].to_numpy().copy() if "locked" in L else np.zeros(len(L), bool)
    locked[sel] = True
    L["locked"] = locked
    return L


def hsct_daily_labs(study: Study, S: pd.DataFrame, D: pd.DataFrame, T: pd.DataFrame, ranges: pd.DataFrame,
                    cfg: dict) -> dict:
    """The transplant centre's daily counts (lb form columns; ``_i`` subject, LBDAT day number):
    every day from conditioning to 10 days after platelet engraftment (28 days after HSCT for a
    failed graft), not beyond the subject's observation, skipping days with a protocol draw."""
    H = S[S["hsct"]]
    rng = stream(cfg, "procedures.hsct_labs.daily")
    if H.empty:
        return {}
    last = np.where(H["plat_eng"] < NEVER, H["plat_eng"] + 10, H["hsct_day"] + 28)
    obs = np.where(H["died"], H["death_day"] - 1, H["end_day"]).astype(int)
    last = np.minimum(last, obs)
    start = H["cond_day"].to_numpy().astype(int)
    span = np.maximum(last - start + 1, 0)
    i = np.repeat(H["i"].to_numpy(), span)
    off = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)
    day = np.repeat(start, span) + off
    d0 = S["d0"].to_numpy()[i]
    date = d0 + day
    taken = pd.MultiIndex.from_arrays([D["i"].to_numpy(), D["date"].to_numpy()])
    keep = ~pd.MultiIndex.from_arrays([i, date]).isin(taken)
    i, day, date = i[keep], day[keep], date[keep]
    k = len(i)
    tests = np.array(HSCT_TESTS, dtype=object)
    ii, dd, dt = np.repeat(i, 3), np.repeat(day, 3), np.repeat(date, 3)
    tt = np.tile(tests, k)
    z = rng.normal(0, 1, 3 * k)
    v = hsct_counts(S, ii, dd.astype(float), tt, z)
    tmin = np.repeat(rng.integers(6 * 60, 8 * 60, k), 3)
    not_done = np.repeat(rng.random(k) < 0.03, 3)
    tinfo = T.set_index("lbtestcd")
    dec = tinfo["decimals"].astype(int).reindex(tt).to_numpy()
    unit = tinfo["si_unit"].reindex(tt).to_numpy().astype(object)
    res = np.array([f"{x:.{d}f}" for x, d in zip(v, dec)], dtype=object)  # per value formatting
    site_i = S["site_i"].to_numpy()[ii]
    female = S["female"].to_numpy()[ii]
    rr = ranges.set_index(["site_i", "test", "female"])
    key = pd.MultiIndex.from_arrays([site_i, tt, female])
    lo = rr["si_lo"].reindex(key).to_numpy()
    hi = rr["si_hi"].reindex(key).to_numpy()
    nrlo = np.array([None if np.isnan(x) else f"{x:.{d}f}" for x, d in zip(lo, dec)], dtype=object)
    nrhi = np.array([None if np.isnan(x) else f"{x:.{d}f}" for x, d in zip(hi, dec)], dtype=object)
    res[not_done] = None
    unit = np.where(not_done, None, unit)
    nrlo[not_done], nrhi[not_done] = None, None
    from pipeline.simulate._util import hhmm
    return {
        "VISIT": np.full(3 * k, "UNSCHEDULED", dtype=object), "LBDAT": dt.astype(np.int64),
        "LBTIM": hhmm(tmin), "LBCAT": tinfo["lbcat"].reindex(tt).to_numpy().astype(object),
        "LBTESTCD": tt, "LBTEST": tinfo["lbtest"].reindex(tt).to_numpy().astype(object),
        "LBSPEC": np.where(tinfo["lbspec"].reindex(tt).to_numpy() == "", None, tinfo["lbspec"].reindex(tt).to_numpy()),
        "LBMETHOD": np.full(3 * k, None, dtype=object),
        "LBORRES": res, "LBORRESU": unit, "LBORNRLO": nrlo, "LBORNRHI": nrhi,
        "LBSTAT": np.where(not_done, "NOT DONE", None).astype(object),
        "LBREASND": np.where(not_done, "SAMPLE NOT RECEIVED", None).astype(object),
        "_i": ii,
    }


def merge_lab_columns(a: dict, b: dict) -> dict:
    """The lb form's columns with the daily transplant counts appended after the other rows (the
    rows before keep their row numbers)."""
    if not b:
        return a
    out = {}
    for c, x in a.items():  # the form's ~17 columns
        x = np.asarray(x)
        y = np.asarray(b[c]) if c in b else np.full(len(b["_i"]), None, dtype=object)
        if x.dtype.kind in "iu" and y.dtype.kind in "iu":
            out[c] = np.concatenate([x.astype(np.int64), y.astype(np.int64)])
        else:
            out[c] = np.concatenate([x.astype(object), y.astype(object)])
    return out


def aph_form(study: Study, cfg: dict, S: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Leukapheresis collections (form ``aph``)."""
    sim = study.get("simulation", {}) or {}
    arms = sim.get("leukapheresis_arms")
    rng = stream(cfg, "procedures.aph")
    n = len(S)
    u = rng.random((5, n))
    who = S["enrolled"].to_numpy() & (S["aph_day"].to_numpy() != NODAY)
    if arms is not None:
        who &= S["armcd"].isin(list(arms)).to_numpy()
    fam = study["response"]["family"]
    # CD3+ yield (10^9 cells): lymphopenic leukemia patients collect less
    mu = np.log(2.5) if fam == "leukemia" else np.log(4.0)
    cd3 = np.exp(mu + 0.6 * rng.normal(0, 1, n))
    second = who & (cd3 < 1.0)
    vol = np.round(150 + u[0] * 200, 0)
    vol2 = np.round(150 + u[1] * 150, 0)
    cd3_2 = cd3 * (0.8 + 0.6 * u[2])
    d0 = S["d0"].to_numpy()
    aph = S["aph_day"].to_numpy()
    idx1 = np.flatnonzero(who)
    idx2 = np.flatnonzero(second)
    i = np.concatenate([idx1, idx2])
    first = np.concatenate([np.ones(len(idx1), bool), np.zeros(len(idx2), bool)])
    order = np.lexsort((~first, i))
    i, first = i[order], first[order]
    date = np.where(first, d0[i] + aph[i], d0[i] + aph[i] + 1).astype(np.int64)
    tmin = (8 * 60 + np.floor(u[3][i] * 90)).astype(int)
    tmin = np.where(u[4][i] < 0.05, -1, tmin)
    v = np.where(first, vol[i], vol2[i])
    c = np.where(first, cd3[i], cd3_2[i])
    cols = {"PRSPID": np.where(first, "APH-1", "APH-2").astype(object),
            "PRTRT": np.full(len(i), "LEUKAPHERESIS", dtype=object),
            "PRSTDAT": date, "PRSTTIM": tmin,
            "APHVOL": np.array([f"{x:.0f}" for x in v], dtype=object),
            "APHCD3": np.array([f"{x:.2f}" for x in c], dtype=object)}
    return i, cols


def hsct_form(study: Study, S: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """One row per transplanted subject (form ``hsct``)."""
    H = S[S["hsct"]]
    i = H["i"].to_numpy()
    d0 = H["d0"].to_numpy()

    def dates(col):
        v = H[col].to_numpy()
        return np.where(v < NEVER, d0 + v, NODAY).astype(np.int64)

    neut_rec, plat_rec = H["neut_rec"].to_numpy(), H["plat_rec"].to_numpy()
    return i, {
        "PRSPID": np.full(len(i), "HSCT-1", dtype=object),
        "PRTRT": np.full(len(i), "ALLOGENEIC HSCT", dtype=object),
        "PRSTDAT": dates("hsct_day"), "HSCDONOR": H["donor"].to_numpy(), "HSCSRC": H["source"].to_numpy(),
        "CONDREG": H["regimen"].to_numpy(), "CONDSTDAT": dates("cond_day"),
        "NEUTENG": np.where(neut_rec < NEVER, "Y", "N").astype(object), "NEUTENGDAT": dates("neut_rec"),
        "PLATENG": np.where(plat_rec < NEVER, "Y", "N").astype(object), "PLATENGDAT": dates("plat_rec"),
        "AGVHDGR": H["agvhd"].to_numpy(), "AGVHDDAT": dates("agvhd_day"),
        "CGVHDSEV": H["cgvhd"].to_numpy(), "CGVHDDAT": dates("cgvhd_day"),
        "HSCASDAT": dates("hsct_asmt"),
    }


__all__ = ["plan_hsct", "hsct_counts", "apply_hsct_to_labs", "hsct_daily_labs", "merge_lab_columns",
           "aph_form", "hsct_form", "HSCT_TESTS"]
