"""Laboratory results (form ``lb``), vectorised over all draws one test at a time.

Model (natural-log scale, SI units of ``specs/rules/lab_tests.csv``)::

    ln v = ln B + recovery(t) - depth * cytopenia(t) + organ effects(t) + noise

- ``B``: the subject's baseline, log-normal around the test's median (``data/lab_model.csv``;
  disease-specific baselines in ``data/lab_baseline.csv``: pancytopenia in severe aplastic
  anemia, marrow failure in leukemia).
- ``cytopenia(t)``: lymphodepletion from its first day, nadir on day 4-10, recovery with a
  time constant of 5-9 days (25-60 days in prolonged cytopenia).
- ``recovery(t)``: responders move from their baseline towards normal counts (leukemia,
  aplastic anemia); relapse reverses it.
- organ effects: CRP/ferritin/IL-6 peaks with CRS (higher with the grade), creatinine and
  INR rise and fibrinogen falls with grade >= 3 CRS, transaminase and bilirubin rises in
  some subjects, potassium dips, albumin falls with CRS, magnesium dips with CRS and rises with
  the acute kidney injury of grade >= 3 CRS.
- CAR-T expansion (qPCR copies/ug and flow cells/uL): log-linear rise from day 0 to a peak
  on day 7-14 and log-linear decline; values under the LLOQ are reported censored (<10).

Reported values: a site's unit profile (``data/unit_profiles.csv``; only units listed in
``specs/rules/lab_units.csv``), a row-level unit variant at the mess rate, site reference
ranges (the SI range jittered per site, converted and rounded), censoring at the assay
limits, LBSTAT=NOT DONE now and then.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import fixed, num, table

UNSCHEDULED_DAYS = (6, 8, 9, 11, 12, 13)
UNSCHEDULED_TESTS = ("WBC", "NEUT", "LYM", "HGB", "PLAT", "CRP", "FERRITIN", "IL6", "FIBRINO",
                     "LDH", "URATE", "CAION", "PH")
REASND = np.array(["SAMPLE HEMOLYZED", "INSUFFICIENT SAMPLE", "SAMPLE NOT RECEIVED", "SAMPLE CLOTTED"],
                  dtype=object)
NEVER_NOT_DONE = ("WBC", "NEUT", "HGB", "PLAT", "RETI")


def lab_tables(spec, stream: str = "") -> pd.DataFrame:
    """lab_tests.csv joined with the simulator's model parameters, in lab_tests order.

    ``stream`` selects the tests by the model's ``stream`` column: ``""`` the tests drawn from
    the shared random stream (the original panel), ``"own"`` the tests added later (issue 16:
    LDH, uric acid, ionized calcium, lipids, haptoglobin, pH), which draw from a stream of their
    own (:func:`pipeline.simulate.subjects.stream`) so that adding them shifted no other draw."""
    tests = spec.rule("lab_tests")
    if "origin" in tests.columns:      # derived tests (creatinine clearance) are never collected
        tests = tests[tests["origin"].str.upper() != "DERIVED"]
    model = table("lab_model")
    own = model["lbtestcd"][model["stream"].eq("own")] if "stream" in model.columns else pd.Series([], dtype=object)
    if stream == "own":
        tests = tests[tests["lbtestcd"].isin(own)]
    else:
        tests = tests[~tests["lbtestcd"].isin(own)]
    model = model[model["lbtestcd"].isin(tests["lbtestcd"])]
    t = tests.merge(model, on="lbtestcd", how="inner", validate="one_to_one")
    if len(t) != len(tests):
        missing = sorted(set(tests["lbtestcd"]) - set(model["lbtestcd"]))
        from pipeline.errors import ConfigError
        raise ConfigError(f"simulator has no lab model for {', '.join(missing)} (pipeline/simulate/data/lab_model.csv)")
    return t.reset_index(drop=True)


def draws(study: Study, S: pd.DataFrame, V: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Blood draws: every visit held, plus unscheduled daily counts in the second week."""
    sched = V[["i", "VISIT", "planned", "day", "date"]].assign(unsched=False)
    T = S[S["treated"]]
    nd = len(UNSCHEDULED_DAYS)
    i = np.repeat(T["i"].to_numpy(), nd)
    day = np.tile(np.array(UNSCHEDULED_DAYS), len(T))
    visit_end = np.where(T["died"], T["death_day"] - 1, T["end_day"]).repeat(nd)
    un = pd.DataFrame({"i": i, "VISIT": "UNSCHEDULED", "planned": day, "day": day,
                       "date": T["d0"].to_numpy().repeat(nd) + day, "unsched": True})
    un = un[un["day"].to_numpy() <= visit_end]
    taken = set(zip(sched["i"], sched["date"]))
    un = un[[(a, b) not in taken for a, b in zip(un["i"], un["date"])]]
    D = pd.concat([sched, un], ignore_index=True).sort_values(["i", "date"], kind="stable").reset_index(drop=True)
    m = len(D)
    tmin = np.where(D["unsched"], rng.integers(6 * 60, 21 * 60, m), rng.integers(6 * 60 + 30, 9 * 60 + 30, m))
    tmin = np.where(rng.random(m) < 0.02, -1, tmin)
    D["tmin"] = tmin
    return D


def _curve(t, peak, rise, fall):
    """Peak-shaped curve in [0, 1]: Gaussian rise to ``peak``, exponential fall after."""
    return np.where(t < peak, np.exp(-0.5 * ((t - peak) / rise) ** 2), np.exp(-(t - peak) / fall))


def lab_values(study: Study, S: pd.DataFrame, D: pd.DataFrame, T: pd.DataFrame,
               rng: np.random.Generator) -> pd.DataFrame:
    """SI values for every scheduled test of every draw: columns i, draw, test, si."""
    family = study["response"]["family"]
    n = len(S)
    nt = len(T)
    ld = [d for t in study.treatments.itertuples() if t.excat == "LYMPHODEPLETION" for d in t.days]  # study TOML treatments, a few
    ld_first = min(ld) if ld else -5

    # subject-level parameters, one block of draws in a fixed order
    z = rng.normal(0, 1, (nt, n))
    nadir = rng.uniform(4, 10, n)
    tau_short = rng.uniform(5, 9, n)
    tau_slow = rng.uniform(25, 60, n)
    # prolonged cytopenia: platelets (and red cells) always, neutrophils in half the non-responders
    slow_neut = S["prolonged"].to_numpy() & ~S["responder"].to_numpy() & (rng.random(n) < 0.5)
    depth_u = rng.random((nt, n))
    liver = rng.random(n) < 0.28
    liver_m = np.log(rng.uniform(1.8, 7.0, n))
    liver_pk = rng.uniform(5, 16, n)
    bili = rng.random(n) < 0.12
    bili_m = np.log(rng.uniform(1.4, 3.5, n))
    kdip = rng.random(n) < 0.25
    kdip_m = np.log(rng.uniform(0.72, 0.9, n))
    renal_m = np.log(rng.uniform(1.5, 2.6, n))
    coag_m = rng.uniform(0.5, 1.1, n)
    rec_short = rng.uniform(5, 12, n)
    rec_slow = rng.uniform(30, 60, n)
    saa_tau = rng.uniform(30, 60, n)
    saa_cr = rng.random(n) < 0.55
    cart_pk = rng.normal(4.4, 0.55, n)
    cart_day = rng.uniform(7, 14, n)
    cart_up = rng.uniform(0.35, 0.6, n)
    cart_dn = rng.uniform(0.02, 0.045, n)
    cell_off = rng.normal(-2.6, 0.3, n)
    noise = rng.normal(0, 1, (nt, len(D)))

    dose = S["dose"].to_numpy()
    dose_eff = np.where(dose > 0, 0.35 * np.log10(np.where(dose > 0, dose, 1e6) / 1e6), 0)
    cart_pk = cart_pk + dose_eff - 0.4 * ~S["responder"].to_numpy()
    base_fam = table("lab_baseline")
    base_fam = base_fam[base_fam["family"] == family].set_index("lbtestcd")

    si = D["i"].to_numpy()
    t = D["day"].to_numpy().astype(float)
    planned = D["planned"].to_numpy()
    screening = planned == planned.min() if len(D) else np.zeros(0, bool)
    female = S["female"].to_numpy()[si]
    crs_g = S["crs_grade"].to_numpy()[si]
    crs_on = S["crs_on"].to_numpy()[si].astype(float)
    treated = S["treated"].to_numpy()[si]
    responder = S["responder"].to_numpy()[si]
    relapse = S["relapse_day"].to_numpy()[si]
    ped = S["ped"].to_numpy()[si]
    age = S["age"].to_numpy()[si]

    prolonged = S["prolonged"].to_numpy()[si]

    def cytopenia(slow):
        tau = np.where(slow, tau_slow[si], tau_short[si])
        c = np.where(t < ld_first, 0.0, np.where(t <= nadir[si], (t - ld_first) / (nadir[si] - ld_first),
                                                 np.exp(-(t - nadir[si]) / tau)))
        return np.where(treated, c, 0.0)

    def recovery(slow):
        if family == "aplastic_anemia":
            r = 1 - np.exp(-np.maximum(t - 21, 0) / saa_tau[si])
        else:
            r = 1 - np.exp(-np.maximum(t - 7, 0) / np.where(slow, rec_slow[si], rec_short[si]))
        r = r * np.exp(-np.maximum(t - relapse, 0) / 15.0)
        return np.where(treated & responder & (t >= 0), r, 0.0)

    infl = np.where(treated & (t >= 0), _curve(t, crs_on + 1, 1.5, 3.5), 0.0)
    infl_il6 = np.where(treated & (t >= 0), _curve(t, crs_on, 1.0, 2.5), 0.0)
    infl_fer = np.where(treated & (t >= 0), _curve(t, crs_on + 2, 2.0, 7.0), 0.0)
    late = np.where(treated & (t >= 0), _curve(t, crs_on + 3, 1.5, 4.0), 0.0)
    depth_rng = {"NEUT": (2.5, 4.5), "WBC": (1.8, 3.2), "LYM": (2.5, 4.0), "CD4": (2.5, 4.0),
                 "PLAT": (0.8, 2.4), "HGB": (0.12, 0.30), "RETI": (1.5, 3.0)}
    frames = []
    for k, row in T.iterrows():  # one pass per lab test (~30), vectorised over draws
        code = row["lbtestcd"]
        sched = row["schedule"]
        sel = ~D["unsched"].to_numpy() | np.isin(code, UNSCHEDULED_TESTS)
        if sched == "early":
            sel &= t <= 28
        elif sched == "sparse":
            sel &= screening | np.isin(planned, (14, 28)) | (planned >= 60)
        elif sched == "expansion":
            sel &= (planned >= 0) & treated
        elif sched == "icu":  # blood gases in ICU-level CRS only: grade >= 3, from onset to a week after
            sel &= (crs_g >= 3) & (t >= crs_on) & (t <= crs_on + 7)
        if not sel.any():
            continue
        if row["kinetics"] == "expansion":
            pk = cart_pk[si] + (cell_off[si] if code == "CARTCELL" else 0.0)
            lg = np.where(t <= cart_day[si], pk - (cart_day[si] - t) * cart_up[si], pk - (t - cart_day[si]) * cart_dn[si])
            v = 10 ** (lg + row_noise(noise[k], float(row["noise_sd"])))
            frames.append(pd.DataFrame({"draw": np.flatnonzero(sel), "test": code, "si": v[sel]}))
            continue
        med, gsd = float(row["base_median"]), float(row["base_gsd"])
        if code in base_fam.index:
            med, gsd = float(base_fam.loc[code, "base_median"]), float(base_fam.loc[code, "base_gsd"])
        lnB = np.log(med) + np.log(gsd) * z[k][si]
        if code == "HGB":
            lnB = lnB + np.where(female, np.log(0.9), 0.0)
        if code == "CREAT":
            lnB = lnB + np.where(female, np.log(0.8), 0.0) + np.where(ped, np.log(np.clip(0.3 + 0.06 * age, 0.3, 1)), 0.0)
        lnv = lnB.copy()
        kin = row["kinetics"]
        if kin == "cytopenia":
            lo, hi = depth_rng.get(code, (0.5, 1.5))
            depth = lo + (hi - lo) * depth_u[k][si]
            lnN = np.log(float(row["base_median"])) + np.log(float(row["base_gsd"])) * z[k][si] * 0.5
            if code == "HGB":
                lnN = lnN + np.where(female, np.log(0.9), 0.0)
            target = lnN
            if family == "aplastic_anemia":
                target = np.where(saa_cr[si], lnN, lnB + 0.55 * (lnN - lnB))
            slow = prolonged & (np.isin(code, ("PLAT", "HGB", "RETI")) | (np.isin(code, ("NEUT", "WBC")) & slow_neut[si]))
            lnv = lnv + (target - lnB) * recovery(slow) * (1.0 if code != "HGB" else 0.6) - depth * cytopenia(slow)
        elif kin == "inflammation":
            amp = {"CRP": [3, 12, 25, 45, 70], "IL6": [3, 10, 40, 150, 600], "FERRITIN": [1.3, 2, 4, 10, 25]}[code]
            curve = {"CRP": infl, "IL6": infl_il6, "FERRITIN": infl_fer}[code]
            lnv = lnv + np.log(np.asarray(amp, float))[crs_g] * curve
        elif kin == "liver":
            f = 0.5 if code == "GGT" else 1.0
            lnv = lnv + f * np.where(liver[si] & treated & (t >= 0), liver_m[si] * _curve(t, liver_pk[si], 3, 6), 0.0)
            lnv = lnv + np.where(crs_g >= 3, np.log(1.8) * late, 0.0)
        elif kin == "bili":
            lnv = lnv + np.where(bili[si] & treated & (t >= 0), bili_m[si] * _curve(t, liver_pk[si] + 2, 3, 6), 0.0)
        elif kin == "renal":
            f = 0.8 if code == "BUN" else 1.0
            lnv = lnv + f * np.where(crs_g >= 3, renal_m[si] * late, 0.0)
        elif kin == "albumin":
            lnv = lnv + np.log(1 - 0.07 * crs_g * infl)
        elif kin == "fibrinogen":
            lnv = lnv + np.where(crs_g >= 3, -coag_m[si] * late, np.log(1.35) * infl * (crs_g > 0))
        elif kin == "coagulation":
            f = 0.35 if code == "INR" else 0.2
            lnv = lnv + np.where(crs_g >= 3, f * coag_m[si] * late, 0.0)
        elif kin == "potassium":
            lnv = lnv + np.where(kdip[si] & treated, kdip_m[si] * _curve(t, 6, 3, 5), 0.0)
        elif kin == "glucose":
            lnv = lnv + np.where(crs_g >= 3, np.log(1.5) * late, 0.0)
        elif kin == "ldh":  # CRS/HLH: up to x4 at grade 4
            lnv = lnv + np.log(np.array([1.0, 1.15, 1.4, 2.2, 4.0]))[crs_g] * infl_fer
        elif kin == "urate":  # tumour lysis in the first days after infusion, in some subjects
            lnv = lnv + np.where(bili[si] | (crs_g >= 2), np.log(1.6) * _curve(t, 3, 1.5, 4.0), 0.0) * treated
        elif kin == "magnesium":  # no new draw: the CRS grade and the renal factor already drawn
            # hypomagnesaemia with CRS (fluids, capillary leak, renal wasting): -5% per grade at the
            # inflammatory peak; with grade >= 3 CRS acute kidney injury retains it (about half the
            # creatinine rise, in log), so the trough is followed by a rise above the ULN in some
            lnv = lnv + np.log(1 - 0.05 * crs_g * infl) + np.where(crs_g >= 3, 0.45 * renal_m[si] * late, 0.0)
        elif kin == "ionized_calcium":
            lnv = lnv + np.log(1 - 0.035 * crs_g * infl)
        elif kin == "lipid":  # triglycerides rise in HLH-like severe CRS; cholesterol falls a little
            f = 1.0 if code == "TRIG" else -0.2
            lnv = lnv + f * np.where(crs_g >= 3, np.log(2.5) * infl_fer, 0.0)
        elif kin == "haptoglobin":  # acute-phase rise with CRS
            lnv = lnv + np.log(1.5) * infl * (crs_g > 0)
        elif kin == "ph":  # lactic acidosis at the CRS peak: pH down to about 7.2
            lnv = lnv + np.log(1 - 0.025 * coag_m[si] * late)
        v = np.exp(lnv + row_noise(noise[k], float(row["noise_sd"])))
        frames.append(pd.DataFrame({"draw": np.flatnonzero(sel), "test": code, "si": v[sel]}))
    L = pd.concat(frames, ignore_index=True)
    L["test"] = pd.Categorical(L["test"].to_numpy(), categories=T["lbtestcd"].tolist())
    L = L.assign(_o=L["test"].cat.codes).sort_values(["draw", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    L["i"] = D["i"].to_numpy()[L["draw"].to_numpy()]
    return L


def row_noise(z: np.ndarray, sd: float) -> np.ndarray:
    return z * sd


# ---- reference ranges and units ---------------------------------------------------------------
def site_ranges(study: Study, T: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """SI reference range per site, test and sex: the model range with its middle moved up to 3%
    and its width changed up to 10% per site (a lower limit of 0 stays 0)."""
    rows = []
    sites = study.sites["siteid"].astype(str).tolist()
    jit = rng.uniform(0.0, 1.0, (len(sites), len(T), 2))
    for s_i, site in enumerate(sites):
        for k, r in T.iterrows():  # tests x sites x sexes: reference-range metadata
            if r["ref_hi"] == "":
                continue
            for sex_i, female in enumerate((False, True)):
                lo = float(r["ref_lo_f"] if female and r["ref_lo_f"] else r["ref_lo"])
                hi = float(r["ref_hi_f"] if female and r["ref_hi_f"] else r["ref_hi"])
                d = int(r["decimals"])
                js = float(r["ref_jitter"]) if str(r.get("ref_jitter", "") or "") != "" else 1.0
                if js == 1.0:  # the original expression, so that the original ranges stay byte-identical
                    mid = (lo + hi) / 2 * (0.97 + 0.06 * jit[s_i, k, 0])
                    half = (hi - lo) / 2 * (0.9 + 0.2 * jit[s_i, k, 1])
                else:
                    mid = (lo + hi) / 2 * (1 - js * 0.03 + js * 0.06 * jit[s_i, k, 0])
                    half = (hi - lo) / 2 * (1 - js * 0.1 + js * 0.2 * jit[s_i, k, 1])
                new_lo = 0.0 if lo == 0 else round(mid - half, d)
                rows.append((s_i, r["lbtestcd"], female, new_lo, round(mid + half, d)))
    return pd.DataFrame(rows, columns=["site_i", "test", "female", "si_lo", "si_hi"])


def unit_choice(study: Study, S: pd.DataFrame, L: pd.DataFrame, spec, cfg: dict,
                rng: np.random.Generator) -> pd.DataFrame:
    """Reported unit per row (site profile, then a row-level variant at the mess rate) with its
    factor to SI and number of decimals."""
    units = spec.rule("lab_units")
    tests = spec.rule("lab_tests")
    si_unit = dict(zip(tests["lbtestcd"], tests["si_unit"]))
    dec_si = dict(zip(tests["lbtestcd"], tests["decimals"].astype(int)))
    prof = table("unit_profiles")
    listed = set(zip(units["lbtestcd"], units["raw_unit"]))
    prof = prof[[(a, b) in listed for a, b in zip(prof["lbtestcd"], prof["raw_unit"])]]
    names = ["SI", "MICRO", "CONV"]
    n_sites = len(study.sites)
    site_prof = [names[(s + S.attrs["unit_offset"]) % 3] for s in range(n_sites)]
    explicit = (study.get("simulation", {}) or {}).get("site_unit_profiles", {}) or {}
    sites = study.sites["siteid"].astype(str).tolist()
    site_prof = [str(explicit.get(sites[s], site_prof[s])) for s in range(n_sites)]

    site_i = S["site_i"].to_numpy()[L["i"].to_numpy()]
    codes = tests["lbtestcd"].tolist()
    test_i = pd.Categorical(L["test"].to_numpy(), categories=codes).codes
    test = L["test"].to_numpy()
    table_u = np.empty((n_sites, len(codes)), dtype=object)
    for s, p in enumerate(site_prof):
        pm = dict(zip(prof.loc[prof["profile"] == p, "lbtestcd"], prof.loc[prof["profile"] == p, "raw_unit"]))
        table_u[s] = [pm.get(c, si_unit[c]) for c in codes]
    unit = table_u[site_i, test_i]
    # row-level variant: another listed unit of the test (an outside laboratory)
    alts = units.groupby("lbtestcd")["raw_unit"].agg(list).to_dict()
    var = rng.random(len(L)) < float(cfg["mess_rate"]) * 0.5
    pick = rng.random(len(L))
    for j in np.flatnonzero(var):
        opts = [u for u in alts.get(test[j], []) if u != unit[j]]
        if opts:
            unit[j] = opts[int(pick[j] * len(opts))]
    fdict = dict(zip(zip(units["lbtestcd"], units["raw_unit"]), units["to_si_factor"].astype(float)))
    u_code, u_vals = pd.factorize(pd.Series(unit, dtype=object))
    pair = test_i.astype(np.int64) * 1000 + u_code
    upair, pinv = np.unique(pair, return_inverse=True)
    factor = np.array([fdict[(codes[p // 1000], u_vals[p % 1000])] for p in upair.tolist()])[pinv]
    dsi = np.array([dec_si[c] for c in codes])
    dec = dsi[test_i] + np.round(np.log10(factor)).astype(int)
    return pd.DataFrame({"unit": unit, "factor": factor, "dec": np.maximum(dec, 0)})


def lab_form(study: Study, S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, T: pd.DataFrame, spec,
             cfg: dict, ranges: pd.DataFrame, rng: np.random.Generator) -> tuple[dict, pd.DataFrame]:
    """Column arrays of the ``lb`` form, and L with ``si_rep`` (the reported value in SI)."""
    U = unit_choice(study, S, L, spec, cfg, rng)
    m = len(L)
    test = L["test"].to_numpy()
    tinfo = T.set_index("lbtestcd")
    raw = L["si"].to_numpy() / U["factor"].to_numpy()
    dec = U["dec"].to_numpy()
    rounded = np.round(raw, 0)
    for k in np.unique(dec):
        sel = dec == k
        rounded[sel] = np.round(raw[sel], int(k))
    res = fixed(rounded, dec)
    lloq = num(tinfo["lloq"]).astype(float)
    uloq = num(tinfo["uloq"]).astype(float)
    code_i = pd.Categorical(test, categories=tinfo.index.tolist()).codes
    lq = lloq[code_i] / U["factor"].to_numpy()
    uq = uloq[code_i] / U["factor"].to_numpy()
    below = ~np.isnan(lq) & (raw < lq)
    above = ~np.isnan(uq) & (raw > uq)
    res = res.copy()
    res[below] = "<" + fixed(lq[below], dec[below]).astype(object)
    res[above] = ">" + fixed(uq[above], dec[above]).astype(object)
    si_rep = np.where(below, lq, np.where(above, uq, rounded)) * U["factor"].to_numpy()

    # reference ranges in the reported unit
    site_i = S["site_i"].to_numpy()[L["i"].to_numpy()]
    female = S["female"].to_numpy()[L["i"].to_numpy()]
    key = pd.MultiIndex.from_arrays([site_i, test, female])
    rr = ranges.set_index(["site_i", "test", "female"])
    lo = rr["si_lo"].reindex(key).to_numpy() / U["factor"].to_numpy()
    hi = rr["si_hi"].reindex(key).to_numpy() / U["factor"].to_numpy()
    has = ~np.isnan(hi)
    nrlo = np.full(m, None, dtype=object)
    nrhi = np.full(m, None, dtype=object)
    nrlo[has] = fixed(lo[has], dec[has])
    nrhi[has] = fixed(hi[has], dec[has])

    # not done, now and then (never at screening, never for the counts responses rely on)
    draw = L["draw"].to_numpy()
    planned = D["planned"].to_numpy()[draw]
    eligible = (planned != planned.min()) & ~np.isin(test, NEVER_NOT_DONE) & ~L.get("locked", pd.Series(False, index=L.index)).to_numpy()
    nd = eligible & (rng.random(m) < 0.004)
    reason = REASND[rng.integers(0, len(REASND), m)]
    unit = U["unit"].to_numpy().astype(object)
    res[nd] = None
    unit[nd] = None
    nrlo[nd] = None
    nrhi[nd] = None
    unit = np.where(unit == "", None, unit)
    L = L.assign(si_rep=np.where(nd, np.nan, si_rep), unit=U["unit"].to_numpy())

    from pipeline.simulate._util import hhmm
    cols = {
        "VISIT": D["VISIT"].to_numpy()[draw],
        "LBDAT": D["date"].to_numpy()[draw],
        "LBTIM": hhmm(D["tmin"].to_numpy()[draw]),
        "LBCAT": tinfo["lbcat"].to_numpy()[code_i],
        "LBTESTCD": test.astype(object),
        "LBTEST": tinfo["lbtest"].to_numpy()[code_i],
        "LBSPEC": np.where(tinfo["lbspec"].to_numpy()[code_i] == "", None, tinfo["lbspec"].to_numpy()[code_i]),
        "LBMETHOD": np.where(tinfo["lbmethod"].to_numpy()[code_i] == "", None, tinfo["lbmethod"].to_numpy()[code_i]),
        "LBORRES": res,
        "LBORRESU": unit,
        "LBORNRLO": nrlo,
        "LBORNRHI": nrhi,
        "LBSTAT": np.where(nd, "NOT DONE", None),
        "LBREASND": np.where(nd, reason, None),
        "_i": L["i"].to_numpy(),
    }
    return cols, L
