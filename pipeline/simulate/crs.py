"""Daily CRS/ICANS assessments (form ``crs``), graded to be consistent with ASTCT 2019.

ASTCT consensus grading (Lee et al., Biol Blood Marrow Transplant 2019) drives what each
day shows:

- CRS grade 1: fever >= 38.0 C. Grade 2: fever with hypotension not needing vasopressors
  and/or hypoxia needing low-flow nasal cannula (<= 6 L/min) or blow-by. Grade 3: one
  vasopressor (with or without vasopressin) and/or high-flow nasal cannula (> 6 L/min),
  facemask, non-rebreather or Venturi mask. Grade 4: several vasopressors (vasopressin not
  counted) and/or positive pressure (CPAP, BiPAP, mechanical ventilation). After
  antipyretics or anti-cytokine therapy the fever may be masked (ANTIPYR=Y, temperature
  < 38 C); that happens here only on days whose grade rests on hypotension or hypoxia.
- ICANS: ICE 7-9 grade 1, 3-6 grade 2, 0-2 grade 3, 0 and unarousable grade 4 (age >= 12);
  CAPD 1-8 grades 1-2, >= 9 grade 3, not possible grade 4 (age < 12); depressed level of
  consciousness, seizures, motor findings and cerebral edema per the ASTCT ICANS table.

One row per treated subject and day from the infusion (day 0) to day 14, longer while an
episode lasts, never after death, withdrawal or the data cut-off. Boundary values appear
now and then: 37.9 C on days without CRS, exactly 38.0 C on grade 1 days, 6 L/min on
low-flow and 7 L/min on high-flow nasal cannula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOC = np.array(["NORMAL", "AWAKENS SPONTANEOUSLY", "AWAKENS TO VOICE", "AWAKENS ONLY TO TACTILE STIMULUS",
                "UNAROUSABLE OR STUPOR OR COMA"], dtype=object)


def episode_grade(day: np.ndarray, onset: np.ndarray, dur: np.ndarray, grade: np.ndarray,
                  hold_peak: np.ndarray | None = None) -> np.ndarray:
    """Daily grade of one episode: 1 on the first day, the peak grade for about a third of the
    episode, then falling by one a day (not below 1) until the episode ends."""
    e = day - onset
    inside = (grade > 0) & (e >= 0) & (e < dur)
    peak_len = np.maximum(1, dur // 3)
    g = np.where(e == 0, 1, np.where(e <= peak_len, grade, np.maximum(1, grade - (e - peak_len))))
    if hold_peak is not None:
        g = np.where(hold_peak & (e > 0), grade, g)
    return np.where(inside, np.minimum(g, grade), 0).astype(int)


def daily_grid(S: pd.DataFrame) -> pd.DataFrame:
    """Subject-day grid of the treated with the CRS and ICANS grade of each day."""
    T = S[S["treated"]]
    crs_end = np.where(T["crs_grade"] > 0, T["crs_on"] + T["crs_dur"], 0)
    icans_end = np.where(T["icans_grade"] > 0, T["icans_on"] + T["icans_dur"], 0)
    last = np.minimum(np.maximum.reduce([np.full(len(T), 14), crs_end, icans_end]), T["end_day"].to_numpy())
    last = np.maximum(last, 0)
    reps = last + 1
    i = np.repeat(T["i"].to_numpy(), reps)
    start = np.repeat(np.cumsum(reps) - reps, reps)
    day = np.arange(len(i)) - start
    g = pd.DataFrame({"i": i, "day": day})
    s = S.set_index("i").loc[i]
    crs_death = (s["death_cause"].to_numpy() == "CYTOKINE RELEASE SYNDROME") & s["died"].to_numpy()
    g["crs_g"] = episode_grade(day, s["crs_on"].to_numpy(), s["crs_dur"].to_numpy(), s["crs_grade"].to_numpy(),
                               hold_peak=crs_death)
    g["icans_g"] = episode_grade(day, s["icans_on"].to_numpy(), s["icans_dur"].to_numpy(),
                                 s["icans_grade"].to_numpy())
    g["date"] = s["d0"].to_numpy() + day
    g["ped"] = s["ped"].to_numpy()
    g["crs_on"] = s["crs_on"].to_numpy()
    return g


def crs_form(g: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Column arrays of the ``crs`` form for the grid (dates still day numbers)."""
    m = len(g)
    cg, ig = g["crs_g"].to_numpy(), g["icans_g"].to_numpy()
    day, on = g["day"].to_numpy(), g["crs_on"].to_numpy()
    ped = g["ped"].to_numpy()
    u = rng.random((12, m))

    # which component carries the grade on grade >= 2 days: 0 hypotension, 1 hypoxia, 2 both
    mode = np.floor(u[0] * 3).astype(int)
    hypo_lvl = np.where(cg >= 2, np.where(mode != 1, cg, np.minimum(cg - 1, 1 + (u[1] < 0.5))), 0)
    oxy_lvl = np.where(cg >= 2, np.where(mode != 0, cg, np.where(u[2] < 0.3, np.minimum(cg - 1, 2), 0)), 0)
    hypo_lvl = np.where(hypo_lvl < 2, 0, hypo_lvl)   # "grade 1" of a component = absent
    oxy_lvl = np.where(oxy_lvl < 2, 0, oxy_lvl)

    hypoten = np.where(hypo_lvl >= 2, "Y", "N").astype(object)
    vasonum = np.select([hypo_lvl == 3, hypo_lvl == 4], [1, 2 + (u[3] < 0.25)], 0)
    vasoprsn = np.where((hypo_lvl == 3) & (u[4] < 0.3), "Y", "N").astype(object)

    dev2 = np.where(u[5] < 0.85, "LOW-FLOW NASAL CANNULA", "BLOW-BY")
    dev3 = np.array(["HIGH-FLOW NASAL CANNULA", "HIGH-FLOW NASAL CANNULA", "FACEMASK", "NON-REBREATHER MASK",
                     "VENTURI MASK"], dtype=object)[np.minimum((u[6] * 5).astype(int), 4)]
    dev4 = np.array(["CPAP", "BIPAP", "MECHANICAL VENTILATION"], dtype=object)[np.minimum((u[6] * 3).astype(int), 2)]
    oxydev = np.select([oxy_lvl == 2, oxy_lvl == 3, oxy_lvl == 4], [dev2, dev3, dev4], "NONE").astype(object)
    flow = np.full(m, np.nan)
    lf = oxydev == "LOW-FLOW NASAL CANNULA"
    first_lf = np.zeros(m, bool)
    first_hf = np.zeros(m, bool)
    if lf.any():
        first_lf[np.flatnonzero(lf)[0]] = True
    flow[lf] = np.where((u[7][lf] < 0.2) | first_lf[lf], 6.0, np.floor(1 + u[8][lf] * 5))   # 1-5, boundary 6
    hf = oxydev == "HIGH-FLOW NASAL CANNULA"
    if hf.any():
        first_hf[np.flatnonzero(hf)[0]] = True
    flow[hf] = np.where((u[7][hf] < 0.2) | first_hf[hf], 7.0, np.round(10 + u[8][hf] * 40))   # boundary 7, else 10-50
    mask = np.isin(oxydev, ["FACEMASK", "NON-REBREATHER MASK", "VENTURI MASK"])
    flow[mask] = np.round(6 + u[8][mask] * 9)

    # antipyretic / anti-cytokine therapy from the first grade >= 2 day of the episode
    first2 = pd.Series(np.where(cg >= 2, day, 10**6)).groupby(g["i"].to_numpy()).transform("min").to_numpy()
    antipyr = (cg > 0) & (day >= first2)
    antipyr |= (cg > 0) & (u[9] < 0.15) & (day > on)
    masked = antipyr & (cg >= 2) & (u[10] < 0.5)
    fever = np.round(38.1 + rng.gamma(2.0, 0.35, m), 1)
    fever = np.where((cg == 1) & (u[11] < 0.12), 38.0, fever)
    normal = np.round(36.3 + rng.random(m) * 1.2, 1)
    normal = np.where((cg == 0) & (rng.random(m) < 0.03), 37.9, normal)
    masked_t = np.round(36.6 + rng.random(m) * 1.2, 1)
    temp = np.where(cg > 0, np.where(masked, masked_t, np.minimum(fever, 41.2)), normal)

    # ICANS
    w = rng.random((6, m))
    ice = np.select([ig == 0, ig == 1, ig == 2, ig == 3], [10, 7 + np.floor(w[0] * 3), 3 + np.floor(w[0] * 4),
                                                           np.floor(w[0] * 3)], 0).astype(int)
    capd = np.select([ig == 0, ig <= 2, ig == 3], [0, 1 + np.floor(w[0] * 8), 9 + np.floor(w[0] * 12)], -1).astype(int)
    unarous = np.where(ig == 4, "Y", "N").astype(object)
    peak = (ig >= 3)
    seizure = np.full(m, "NONE", dtype=object)
    seizure[peak & (ig == 3) & (w[1] < 0.10)] = "FOCAL OR GENERALIZED RESOLVING RAPIDLY"
    seizure[peak & (ig == 3) & (w[1] >= 0.10) & (w[1] < 0.15)] = "NONCONVULSIVE ON EEG RESOLVING WITH INTERVENTION"
    seizure[(ig == 4) & (w[1] < 0.15)] = "PROLONGED SEIZURE OVER 5 MINUTES"
    seizure[(ig == 4) & (w[1] >= 0.15) & (w[1] < 0.2)] = "REPETITIVE SEIZURES WITHOUT RETURN TO BASELINE"
    motor = np.where((ig == 4) & (w[2] < 0.15), "DEEP FOCAL MOTOR WEAKNESS", "NONE").astype(object)
    edema = np.full(m, "NONE", dtype=object)
    edema[(ig == 3) & (w[3] < 0.08)] = "FOCAL OR LOCAL EDEMA ON NEUROIMAGING"
    edema[(ig == 4) & (w[3] < 0.10)] = "DIFFUSE CEREBRAL EDEMA ON NEUROIMAGING"
    icescore = np.where(ped, None, ice.astype(str).astype(object))
    capdscr = np.where(ped & (capd >= 0), capd.astype(str).astype(object), None)

    return {
        "FADAT": g["date"].to_numpy(),
        "TEMP": np.char.mod("%.1f", temp).astype(object),
        "ANTIPYR": np.where(antipyr, "Y", "N").astype(object),
        "HYPOTEN": hypoten,
        "VASONUM": vasonum.astype(int).astype(str).astype(object),
        "VASOPRSN": vasoprsn,
        "OXYDEV": oxydev,
        "OXYFLOW": np.where(np.isnan(flow), None, np.char.mod("%.0f", np.nan_to_num(flow)).astype(object)),
        "ICESCORE": icescore,
        "CAPDSCR": capdscr,
        "UNAROUS": unarous,
        "LOC": LOC[ig],
        "SEIZURE": seizure,
        "MOTOR": motor,
        "ICPEDEMA": edema,
    }
