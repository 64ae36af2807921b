"""Subjects and their timelines: status, demographics, arm, dates, outcomes, visits.

Everything here is drawn from the study's one random generator in a fixed order; the
subject table ``S`` (one row per consented subject, in SUBJID order) is what the form
builders read. Days are protocol days (infusion = day 0) unless a column ends in ``_date``
(a day number, see :mod:`pipeline.simulate._util`).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import NODAY, date_parts, day_number, table

#: simulation settings and their defaults; a study overrides them in ``[simulation]``
DEFAULTS: dict = {
    "seed": 0,
    "subjects": 20,
    "screen_fail_rate": 0.10,
    "not_treated_rate": 0.05,
    "pediatric_fraction": 0.0,
    "crs_rate": 0.70,
    "icans_rate": 0.15,
    "death_rate": 0.10,
    "response_rate": 0.70,
    "primdiag": ["UNKNOWN"],
    "female_fraction": 0.45,
    "withdrawal_rate": 0.06,
    "split_infusion_rate": 0.10,
    "enrollment_gap_days": 100,
    "relapse_rate": 0.30,
    "crs_grade_weights": [0.48, 0.33, 0.14, 0.05],
    "icans_grade_weights": [0.36, 0.32, 0.22, 0.10],
    "prolonged_cytopenia_rate": 0.15,
    "mess_rate": 0.02,
    "window_deviations": 1,     # per visit-window deviation rule (pipeline.simulate.deviations)
    "missed_dlt_visits": 0,     # per missed-visit deviation rule (pipeline.simulate.deviations)
}

NEVER = 10**6          # a protocol day that never comes


def settings(study: Study, n_subjects: int | None, seed: int | None) -> dict:
    """The study's ``[simulation]`` table over :data:`DEFAULTS`, with the overrides applied."""
    cfg = dict(DEFAULTS)
    cfg.update(study.get("simulation", {}) or {})
    if n_subjects is not None:
        cfg["subjects"] = int(n_subjects)
    if seed is not None:
        cfg["seed"] = int(seed)
    cfg["subjects"] = max(1, int(cfg["subjects"]))
    return cfg


def _count(n: int, rate: float) -> int:
    """How many of n get a property of this rate: at least one when the rate is positive."""
    if rate <= 0 or n <= 0:
        return 0
    return int(min(n, max(1, round(n * rate))))


def _exactly(rng: np.random.Generator, n: int, among: np.ndarray, rate: float,
             weight: np.ndarray | None = None) -> np.ndarray:
    """Mask with exactly round(len(among) * rate) of ``among`` set, drawn without replacement
    (with probabilities proportional to ``weight`` when given)."""
    k = int(round(len(among) * rate))
    out = np.zeros(n, dtype=bool)
    if k <= 0 or len(among) == 0:
        rng.random(1)       # keep the number of draws independent of the outcome
        return out
    p = None
    if weight is not None:
        p = np.asarray(weight, float)[among]
        p = p / p.sum()
    out[rng.choice(among, min(k, len(among)), replace=False, p=p)] = True
    return out


def _floor_age(birth: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Completed years between two day-number arrays."""
    by, bm, bd = date_parts(birth)
    ry, rm, rd = date_parts(ref)
    return ry - by - ((rm < bm) | ((rm == bm) & (rd < bd)))


def grade_draws(rng: np.random.Generator, armcd: np.ndarray, cfg: dict, key: str) -> np.ndarray:
    """Grades 1-4, one per subject, from the weights ``cfg[key]``, or per arm from
    ``cfg[key + "_by_arm"]`` (ARMCD -> weights: toxicity rising with the dose level in a dose
    escalation). One uniform per subject, read through the cumulative weights as
    ``Generator.choice`` does, so a study without per-arm weights draws what it drew before."""
    u = rng.random(len(armcd))
    w = np.asarray(cfg[key], float)
    cdf = np.tile(np.cumsum(w) / w.sum(), (len(armcd), 1))
    for arm, wa in (cfg.get(key + "_by_arm") or {}).items():  # the study's few arms
        wa = np.asarray(wa, float)
        cdf[armcd == arm] = np.cumsum(wa) / wa.sum()
    return 1 + (u[:, None] >= cdf).sum(axis=1).clip(max=3)


def build_subjects(study: Study, cfg: dict, rng: np.random.Generator) -> pd.DataFrame:
    """One row per consented subject with status, demographics, arm, key dates and outcomes."""
    n = cfg["subjects"]
    family = study["response"]["family"]
    start = day_number(study["study_start"])
    cutoff = day_number(study.data_cutoff)
    enroll_end = max(start + 1, cutoff - int(cfg["enrollment_gap_days"]))

    # -- status: screen failure (SF), enrolled but not treated (NT), treated (TRT)
    status = np.full(n, "TRT", dtype=object)
    perm = rng.permutation(n)
    n_sf = _count(n, float(cfg["screen_fail_rate"]))
    n_nt = _count(n - n_sf, float(cfg["not_treated_rate"]))
    status[perm[:n_sf]] = "SF"
    status[perm[n_sf:n_sf + n_nt]] = "NT"
    if n > 1 and (status == "TRT").sum() == 0:
        status[perm[-1]] = "TRT"

    # -- consent in order of SUBJID, spread over the enrollment period
    icdat = np.sort(rng.integers(start, enroll_end, n))
    sites = study.sites
    site_ids = sites["siteid"].astype(str).to_numpy()
    site_i = rng.integers(0, len(site_ids), n)
    width = max(3, len(str(n)))
    subjid = np.array([f"{i + 1:0{width}d}" for i in range(n)], dtype=object)

    # -- demographics
    female = rng.random(n) < float(cfg["female_fraction"])
    ped = rng.random(n) < float(cfg["pediatric_fraction"])
    age_min, age_max = int(study.get("age_min", 18)), int(study.get("age_max", 75))
    adult_lo = max(age_min, 12)
    ped_lo, ped_hi = max(age_min, 1), 11
    ped &= ped_lo <= ped_hi
    u = rng.beta(1.6, 1.6, n)
    age_target = np.where(ped, ped_lo + np.floor(u * (ped_hi - ped_lo + 1)),
                          adult_lo + np.floor(u * (age_max - adult_lo + 1))).astype(int)
    into_year = rng.integers(1, 365, n)
    birth = icdat - np.round(age_target * 365.2425).astype(np.int64) - into_year
    age = _floor_age(birth, icdat)
    # keep the completed age inside the protocol limits
    birth = np.where(age < age_min, birth - 366, np.where(age > age_max, birth + 366, birth))
    age = _floor_age(birth, icdat)
    ped = age < 12
    bpartial = rng.random(n)
    primdiag = np.asarray(cfg["primdiag"], dtype=object)
    diag = primdiag[rng.integers(0, len(primdiag), n)]

    # -- body size: children by an approximate growth curve, adults by sex
    h_adult = np.where(female, rng.normal(158, 6, n), rng.normal(170, 6.5, n))
    h_child = 76 + 6.1 * age + rng.normal(0, 4, n)
    height = np.round(np.where(ped, h_child, h_adult), 1)
    bmi = np.where(ped, rng.normal(16.5, 1.5, n), rng.normal(22.0, 2.8, n))
    weight = np.round(np.clip(bmi * (height / 100) ** 2, 8, 140), 1)

    # -- arm: distinct doses = dose escalation in order of enrollment; else random cohorts
    arms = study.arms
    armcd = np.full(n, None, dtype=object)
    dose = np.zeros(n)
    enrolled = status != "SF"
    idx = np.flatnonzero(enrolled)
    doses = arms["dose_cells_per_kg"].astype(float).to_numpy()
    if len(arms) > 1 and len(np.unique(doses)) > 1:
        order = np.argsort(doses, kind="stable")
        cohort = np.minimum((np.arange(len(idx)) * len(arms)) // max(len(idx), 1), len(arms) - 1)
        arm_i = order[cohort]
    else:
        arm_i = rng.integers(0, len(arms), len(idx))
    armcd[idx] = arms["armcd"].astype(str).to_numpy()[arm_i]
    dose[idx] = doses[arm_i]

    # -- screening and infusion dates
    v = study.visits
    scr = v.sort_values("VISITNUM").iloc[0]
    c = rng.integers(0, 4, n)                                   # consent 0-3 days before screening
    scr_day = rng.integers(int(scr["window_lo"]), int(scr["window_hi"]) + 1, n)
    scr_date = icdat + c
    d0 = scr_date - scr_day                                     # infusion date (planned for NT)

    # -- disease course and toxicities: exact counts among the treated (the study's rates),
    #    the details drawn for everyone
    trt = np.flatnonzero(status == "TRT")
    cut_day = cutoff - d0
    last_day = int(v["day"].max())
    avail = np.minimum(cut_day, last_day)
    responder = _exactly(rng, n, trt, float(cfg["response_rate"]))
    relapse = responder & (rng.random(n) < float(cfg["relapse_rate"]))
    relapse_day = np.where(relapse, rng.integers(60, 400, n), NEVER)
    prolonged = rng.random(n) < float(cfg["prolonged_cytopenia_rate"])
    has_crs = _exactly(rng, n, trt, float(cfg["crs_rate"]))
    crs_grade = np.where(has_crs, grade_draws(rng, armcd, cfg, "crs_grade_weights"), 0)
    crs_on = 1 + np.minimum(rng.poisson(1.6, n), 8)
    crs_dur = np.clip(np.round(crs_grade + 1 + rng.gamma(2.0, 1.2, n)), 2, 10).astype(int)
    has_icans = _exactly(rng, n, trt, float(cfg["icans_rate"]), weight=np.where(has_crs, 3.0, 1.0))
    icans_grade = np.where(has_icans, grade_draws(rng, armcd, cfg, "icans_grade_weights"), 0)
    icans_on = np.where(has_crs, crs_on + rng.integers(1, 4, n), rng.integers(4, 10, n))
    icans_dur = np.clip(np.round(icans_grade + rng.gamma(2.0, 1.0, n)), 2, 8).astype(int)

    # -- death (before the cut-off): more likely without response; CRS deaths only after grade 4
    dies = _exactly(rng, n, trt, float(cfg["death_rate"]),
                    weight=np.where(responder, np.where(relapse, 2.0, 1.0), 4.0))
    u_cause = rng.random(n)
    u_t = rng.random(n)
    t_prog = np.round(45 + u_t * np.maximum(np.minimum(avail, 400) - 46, 1)).astype(int)
    t_inf = np.round(15 + u_t * np.maximum(np.minimum(avail, 200) - 16, 1)).astype(int)
    crs_death = dies & (crs_grade == 4) & (u_cause < 0.5)
    if family == "leukemia":
        prog = dies & ~crs_death & ((~responder & (u_cause < 0.8)) | relapse | (responder & (u_cause < 0.3)))
        cause = np.where(crs_death, "CYTOKINE RELEASE SYNDROME", np.where(prog, "DISEASE PROGRESSION", "INFECTION"))
        death_day = np.where(crs_death, crs_on + crs_dur - 1, np.where(prog, t_prog, t_inf))
        # a responder dying of progression relapsed first
        relapse_day = np.where(prog & responder, np.maximum(30, death_day - rng.integers(20, 60, n)), relapse_day)
    elif family == "aplastic_anemia":
        bleed = dies & ~crs_death & ~responder & (u_cause < 0.4)
        cause = np.where(crs_death, "CYTOKINE RELEASE SYNDROME",
                         np.where(bleed, "INTRACRANIAL HEMORRHAGE", "INFECTION"))
        death_day = np.where(crs_death, crs_on + crs_dur - 1, t_inf)
    else:
        cause = np.where(crs_death, "CYTOKINE RELEASE SYNDROME", "INFECTION")
        death_day = np.where(crs_death, crs_on + crs_dur - 1, t_inf)
    death_day = np.where(dies, death_day, NEVER)
    cause = np.where(dies, cause, None)

    wd = rng.random(n) < float(cfg["withdrawal_rate"])
    wd_day = np.where(wd, rng.integers(30, 420, n), NEVER)
    wd_kind = np.where(rng.random(n) < 0.6, "WITHDRAWAL BY SUBJECT", "LOST TO FOLLOW-UP")
    split = rng.random(n) < float(cfg["split_infusion_rate"])
    split_frac = rng.choice(np.array([0.3, 0.4, 0.5]), n)
    nt_death = rng.random(n) < 0.3
    nt_day = rng.integers(14, 40, n)
    unit_offset = int(rng.integers(0, 3))

    S = pd.DataFrame({
        "i": np.arange(n), "SUBJID": subjid, "site_i": site_i, "SITEID": site_ids[site_i],
        "status": status, "enrolled": enrolled, "treated": status == "TRT",
        "icdat": icdat, "scr_date": scr_date, "scr_day": scr_day, "d0": d0,
        "female": female, "ped": ped, "age": age, "birth": birth, "bpartial": bpartial,
        "primdiag": diag, "height": height, "weight": weight, "armcd": armcd, "dose": dose,
        "responder": responder, "relapse_day": relapse_day, "prolonged": prolonged,
        "crs_grade": crs_grade, "crs_on": crs_on, "crs_dur": crs_dur,
        "icans_grade": icans_grade, "icans_on": icans_on, "icans_dur": icans_dur,
        "death_day": death_day, "death_cause": cause, "wd_day": wd_day, "wd_kind": wd_kind,
        "split": split, "split_frac": split_frac, "nt_death": nt_death, "nt_day": nt_day,
    })
    S["aph_day"] = apheresis_days(study, cfg, S)
    S.attrs["unit_offset"] = unit_offset
    S.attrs["cutoff"] = cutoff
    return S


def stream(cfg: dict, name: str) -> np.random.Generator:
    """A random stream of its own for one simulated form or timeline item, keyed by the study
    seed and ``name``: adding or changing one form never shifts the draws of the others."""
    return np.random.Generator(np.random.PCG64([int(cfg["seed"]), zlib.crc32(name.encode())]))


def apheresis_days(study: Study, cfg: dict, S: pd.DataFrame) -> np.ndarray:
    """Protocol day of leukapheresis for each enrolled subject (NODAY for screen failures):
    on or after the screening visit and before the first lymphodepletion day."""
    ld = [d for t in study.treatments.itertuples()  # the study's few treatments (metadata)
          if t.excat == "LYMPHODEPLETION" for d in t.days]
    ld_start = min(ld) if ld else -1
    scr = S["scr_day"].to_numpy().astype(int)
    span = np.maximum(ld_start - scr, 1)
    u = stream(cfg, "apheresis").random(len(S))
    day = np.minimum(scr + np.floor(u * span).astype(int), ld_start - 1)
    return np.where(S["enrolled"].to_numpy(), day, NODAY)


def visit_days(study: Study, S: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Actual visits: one row per subject and visit held, with protocol day and date.

    Screening for everyone; the treated then follow the schedule (each visit jittered inside
    its window) until death, withdrawal, completion or the data cut-off. Also sets the
    subject's end of observation and disposition in ``S``.
    """
    cutoff = S.attrs["cutoff"]
    v = study.visits.sort_values("VISITNUM").reset_index(drop=True)
    n, nv = len(S), len(v)
    day = v["day"].astype(int).to_numpy()
    lo, hi = v["window_lo"].astype(int).to_numpy(), v["window_hi"].astype(int).to_numpy()
    sd = (hi - lo) / 8.0
    jit = np.round(rng.normal(0, 1, (n, nv)) * sd)
    actual = np.clip(day + jit, lo, hi).astype(int)
    actual[:, 0] = S["scr_day"].to_numpy()
    # the lymphodepletion visit is the first lymphodepletion day
    ld_days = [d for t in study.treatments.itertuples()  # the study's few treatments (metadata)
               if t.excat == "LYMPHODEPLETION" for d in t.days]
    if ld_days:
        ld_vis = np.flatnonzero((lo <= min(ld_days)) & (min(ld_days) <= hi) & (day < 0) & (np.arange(nv) > 0))
        if len(ld_vis):
            actual[:, ld_vis[0]] = min(ld_days)
    d0 = S["d0"].to_numpy()
    treated = S["treated"].to_numpy()
    cut_day = cutoff - d0
    death, wd = S["death_day"].to_numpy(), S["wd_day"].to_numpy()
    last_planned = actual[:, -1]
    completed = treated & (death > last_planned) & (wd > last_planned) & (last_planned <= cut_day)
    # end of observation (protocol day, inclusive)
    end = np.minimum.reduce([np.where(completed, last_planned, NEVER), death, wd, cut_day])
    died = treated & (death <= np.minimum(wd, cut_day)) & ~completed
    withdrew = treated & ~died & ~completed & (wd <= cut_day)
    S["end_day"] = np.where(treated, end, S["scr_day"].to_numpy())
    S["died"] = died
    S["completed"] = completed
    S["withdrew"] = withdrew

    keep = np.zeros((n, nv), dtype=bool)
    keep[:, 0] = True
    visit_end = np.where(died, death - 1, np.where(withdrew, wd - 1, end))
    keep[:, 1:] = treated[:, None] & (actual[:, 1:] <= visit_end[:, None])
    si, vi = np.nonzero(keep)
    out = pd.DataFrame({
        "i": si, "VISITNUM": v["VISITNUM"].to_numpy()[vi], "VISIT": v["VISIT"].to_numpy()[vi],
        "planned": day[vi], "day": actual[si, vi],
    })
    out["date"] = d0[si] + out["day"].to_numpy()
    out.loc[out["VISITNUM"] == v["VISITNUM"].iloc[0], "date"] = S["scr_date"].to_numpy()[out.loc[out["VISITNUM"] == v["VISITNUM"].iloc[0], "i"]]
    last_visit = out.groupby("i")["date"].max()
    S["last_visit_date"] = last_visit.reindex(S["i"]).to_numpy()
    return out


def names(kind: str) -> np.ndarray:
    t = table("names")
    return t.loc[t["kind"] == kind, "value"].to_numpy(dtype=object)


__all__ = ["DEFAULTS", "NEVER", "NODAY", "settings", "stream", "build_subjects", "apheresis_days", "visit_days", "names"]
