"""Prior and concomitant medications (form ``cm``), consistent with the other simulated forms.

Drawn from the form's own random stream (:func:`pipeline.simulate.subjects.stream`, name
``cm``): adding this form shifted no other form's draws. Only enrolled subjects have records
(a screen failure has data only in dm, ie, vs, ds and screening lb); the CRS/ICANS,
prophylaxis, G-CSF and transfusion records belong to the treated.

What each category holds, and what it agrees with:

- **CRS/ICANS TREATMENT** (linked to the AE by ``CMAENO`` = the AE's ``AESPID``), from the daily
  grades of the ``crs`` form (:func:`pipeline.simulate.crs.daily_grid`):
  tocilizumab 8 mg/kg IV (at most 800 mg) once on the first CRS day of grade >= 2 (the day the
  daily form first shows ANTIPYR=Y because of grade >= 2), a second dose the next day when CRS
  reaches grade 3; dexamethasone 10 mg IV every 6 h from the first day of CRS grade >= 3 to its
  last such day; for ICANS grade >= 2 dexamethasone 10 mg IV every 6 h over the ICANS days of
  grade >= 2, and methylprednisolone 1000 mg IV daily for 3 days (within the episode) at
  ICANS grade 4; anakinra 100 mg SC every 6 h for refractory events (CRS grade 4 or ICANS
  grade >= 3, half of them) from the day after the first steroid dose; norepinephrine as a
  continuous infusion (ug/kg/min) over the days the daily form counts >= 1 vasopressor.
  Every record lies inside the subject's episode (ASTCT daily grades) and observation.
- **BRIDGING THERAPY** (leukemia studies): about 60% of the treated, one single-agent regimen
  from the day after leukapheresis (``S["aph_day"]``) to two days before lymphodepletion,
  when that leaves at least 3 days.
- **ANTI-INFECTIVE PROPHYLAXIS**: acyclovir or valacyclovir from the first lymphodepletion day
  for 6-12 months; TMP-SMX three times a week from day 0 for 6 months; fluconazole (posaconazole
  in aplastic anemia) from day 0 to day 28. Courses still running at the end of observation are
  ongoing (CMONGO=Y); a subject who died stops on the day of death.
- **GROWTH FACTOR**: filgrastim 5 ug/kg SC daily for 5-10 days from the first lab draw after
  day 14 with neutrophils < 0.5 x 10^9/L.
- **TRANSFUSION**: a platelet transfusion (250 mL apheresis platelets) on a draw day with
  platelets < 10 x 10^9/L (< 20 x 10^9/L half of the time), red cells (300 mL) with hemoglobin
  < 70 g/L, from the first lymphodepletion day on (aplastic anemia: from screening); at most one
  per product in a 3-day (platelets) or 7-day (red cells) period. In aplastic
  anemia the rs form's transfusion status holds: no transfusion in the 8 weeks (56 days)
  before an assessment with TRANSIND=Y, and at least one before an assessment with TRANSIND=N.
- **BACKGROUND GLUCOCORTICOID** (autoimmune study): the prednisone-equivalent daily dose of
  each assessment of the response form becomes CM records whose dose covers the assessment
  date: the first (started 3 months to 2 years before consent, its start day sometimes
  unknown) runs until the dose changes; each change starts a new record between the day
  after the previous assessment and the assessment itself (on the assessment day about one
  time in five, the boundary case); the last one is ongoing. About 30% of the subjects take
  methylprednisolone (4 mg = prednisone 5 mg) instead of prednisone.

Verbatim names vary as a site writes them (trade names, abbreviations, case); the coding table
``specs/rules/cm_coding.csv`` maps every one the simulator writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import NODAY, cdash_date, partial_month, plain_number
from pipeline.simulate.subjects import stream

#: columns of the intermediate record table (dates as day numbers, NODAY = none)
_COLS = ["i", "CMTRT", "CMCAT", "CMINDC", "CMAENO", "CMDOSE", "CMDOSU", "CMDOSFRQ", "CMROUTE", "st", "en"]

#: the form's columns this module fills (STUDYID, SITEID and SUBJID come from the subject table)
CM_COLUMNS = ["CMSPID", "CMTRT", "CMCAT", "CMINDC", "CMAENO", "CMDOSE", "CMDOSU", "CMDOSFRQ", "CMROUTE", "CMSTDAT",
              "CMENDAT", "CMONGO"]

#: bridging regimens (verbatim, dose, unit, frequency, route)
BRIDGING = [("DEXAMETHASONE", "10", "mg", "QD", "INTRAVENOUS"),
            ("Cytarabine", "100", "mg/m2", "QD", "INTRAVENOUS"),
            ("VENETOCLAX", "400", "mg", "QD", "ORAL"),
            ("Hydroxyurea", "1000", "mg", "QD", "ORAL")]


def _records(i, trt, cat, indc, aeno, dose, dosu, frq, route, st, en) -> pd.DataFrame:
    n = len(i)
    full = lambda v: np.asarray(v, dtype=object) if np.ndim(v) else np.full(n, v, dtype=object)
    return pd.DataFrame({"i": np.asarray(i, dtype=int), "CMTRT": full(trt), "CMCAT": full(cat), "CMINDC": full(indc),
                         "CMAENO": full(aeno), "CMDOSE": full(dose), "CMDOSU": full(dosu), "CMDOSFRQ": full(frq),
                         "CMROUTE": full(route), "st": np.asarray(st, dtype=np.int64),
                         "en": np.asarray(en, dtype=np.int64)})


def _event_aes(ae_cols: dict, kind: str) -> pd.Series:
    """AESPID of the subject's CRS or ICANS AE (the first when several), by subject index."""
    k = np.asarray(ae_cols["_kind"], dtype=object)
    sel = k == kind
    s = pd.Series(np.asarray(ae_cols["AESPID"], dtype=object)[sel], index=np.asarray(ae_cols["_i"])[sel])
    return s[~s.index.duplicated()]


def crs_icans_treatments(S: pd.DataFrame, grid: pd.DataFrame, crs_cols: dict, ae_cols: dict,
                         rng: np.random.Generator) -> pd.DataFrame:
    """Tocilizumab, corticosteroids, anakinra and vasopressors within each CRS/ICANS episode,
    linked to the subject's CRS/ICANS AE (see the module docstring)."""
    g = grid.assign(vaso=pd.to_numeric(pd.Series(crs_cols["VASONUM"]), errors="coerce").fillna(0).to_numpy())
    crs_ae, icans_ae = _event_aes(ae_cols, "crs"), _event_aes(ae_cols, "icans")
    weight = S["weight"].to_numpy()
    parts = []

    def span(mask: np.ndarray) -> pd.DataFrame:
        x = g[mask]
        return x.groupby("i").agg(first=("date", "min"), last=("date", "max"), peak=("crs_g", "max"),
                                  ipeak=("icans_g", "max")).reset_index()

    # tocilizumab: first CRS day of grade >= 2 (a second dose the next day at grade >= 3)
    t = span(g["crs_g"].to_numpy() >= 2)
    if len(t):
        i = t["i"].to_numpy()
        dose = np.array([plain_number(x) for x in np.minimum(np.round(8 * weight[i] / 10) * 10, 800)], dtype=object)
        aeno = crs_ae.reindex(i).to_numpy()
        parts.append(_records(i, np.where(rng.random(len(i)) < 0.2, "Actemra", "TOCILIZUMAB"), "CRS/ICANS TREATMENT",
                              "CYTOKINE RELEASE SYNDROME", aeno, dose, "mg", "ONCE", "INTRAVENOUS",
                              t["first"], t["first"]))
        two = (t["peak"].to_numpy() >= 3) & (t["last"].to_numpy() > t["first"].to_numpy())
        parts.append(_records(i[two], "TOCILIZUMAB", "CRS/ICANS TREATMENT", "CYTOKINE RELEASE SYNDROME", aeno[two],
                              dose[two], "mg", "ONCE", "INTRAVENOUS", t["first"].to_numpy()[two] + 1,
                              t["first"].to_numpy()[two] + 1))
    steroid_start = pd.Series(dtype="int64")
    # dexamethasone for CRS grade >= 3
    d = span(g["crs_g"].to_numpy() >= 3)
    if len(d):
        i = d["i"].to_numpy()
        parts.append(_records(i, np.where(rng.random(len(i)) < 0.25, "Dex", "DEXAMETHASONE"), "CRS/ICANS TREATMENT",
                              "CYTOKINE RELEASE SYNDROME", crs_ae.reindex(i).to_numpy(), "10", "mg", "Q6H",
                              "INTRAVENOUS", d["first"], d["last"]))
        steroid_start = pd.Series(d["first"].to_numpy(), index=i)
    # dexamethasone for ICANS grade >= 2; methylprednisolone pulse at grade 4
    n2 = span(g["icans_g"].to_numpy() >= 2)
    if len(n2):
        i = n2["i"].to_numpy()
        parts.append(_records(i, "DEXAMETHASONE", "CRS/ICANS TREATMENT", "ICANS", icans_ae.reindex(i).to_numpy(), "10",
                              "mg", "Q6H", "INTRAVENOUS", n2["first"], n2["last"]))
        s2 = pd.Series(n2["first"].to_numpy(), index=i)
        steroid_start = pd.concat([steroid_start, s2]).groupby(level=0).min()
    n4 = span(g["icans_g"].to_numpy() >= 4)
    if len(n4):
        i = n4["i"].to_numpy()
        last_icans = g[g["icans_g"] > 0].groupby("i")["date"].max().reindex(i).to_numpy()
        en = np.minimum(n4["first"].to_numpy() + 2, last_icans)
        parts.append(_records(i, np.where(rng.random(len(i)) < 0.3, "Solu-Medrol", "METHYLPREDNISOLONE"),
                              "CRS/ICANS TREATMENT", "ICANS", icans_ae.reindex(i).to_numpy(), "1000", "mg", "QD",
                              "INTRAVENOUS", n4["first"], en))
    # anakinra for refractory events (half of CRS grade 4 / ICANS grade >= 3)
    u = rng.random(len(S))
    refr = span((g["crs_g"].to_numpy() >= 4) | (g["icans_g"].to_numpy() >= 3))
    if len(refr):
        i = refr["i"].to_numpy()
        keep = (u[i] < 0.5) & steroid_start.reindex(i).notna().to_numpy()
        i = i[keep]
        start = steroid_start.reindex(i).to_numpy().astype(np.int64) + 1
        ep_last = g[(g["crs_g"] > 0) | (g["icans_g"] > 0)].groupby("i")["date"].max().reindex(i).to_numpy()
        en = np.minimum(start + 2 + (u[i] * 3).astype(int), ep_last)
        ok = en >= start
        is_crs = refr.set_index("i")["peak"].reindex(i).to_numpy() >= 4
        aeno = np.where(is_crs, crs_ae.reindex(i).to_numpy(), icans_ae.reindex(i).to_numpy())
        parts.append(_records(i[ok], "ANAKINRA", "CRS/ICANS TREATMENT",
                              np.where(is_crs, "CYTOKINE RELEASE SYNDROME", "ICANS")[ok], aeno[ok], "100", "mg",
                              "Q6H", "SUBCUTANEOUS", start[ok], en[ok]))
    # norepinephrine over the days with >= 1 vasopressor
    v = g[g["vaso"].to_numpy() >= 1].groupby("i").agg(first=("date", "min"), last=("date", "max")).reset_index()
    if len(v):
        i = v["i"].to_numpy()
        rate = np.array([plain_number(x) for x in np.round(0.05 + rng.random(len(i)) * 0.25, 2)], dtype=object)
        parts.append(_records(i, "NOREPINEPHRINE", "CRS/ICANS TREATMENT", "HYPOTENSION DUE TO CYTOKINE RELEASE SYNDROME",
                              crs_ae.reindex(i).to_numpy(), rate, "ug/kg/min", "CONTINUOUS", "INTRAVENOUS",
                              v["first"], v["last"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_COLS)


def _ld_start(study: Study) -> int:
    ld = [d for t in study.treatments.itertuples()  # the study's few treatments (metadata)
          if t.excat == "LYMPHODEPLETION" for d in t.days]
    return min(ld) if ld else -1


def _observation_end(S: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Last observed date and whether the subject died on it, per subject."""
    return S["d0"].to_numpy() + S["end_day"].to_numpy(), S["died"].to_numpy()


def _course(S: pd.DataFrame, i: np.ndarray, st: np.ndarray, planned_en: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End date of a course (NODAY when ongoing at the end of observation; death ends it)."""
    last, died = _observation_end(S)
    last, died = last[i], died[i]
    en = np.where(planned_en <= last, planned_en, np.where(died, last, NODAY))
    return np.where(st <= last, en, NODAY), st <= last


def bridging(study: Study, S: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Bridging therapy between leukapheresis and lymphodepletion (leukemia studies)."""
    if study["response"]["family"] != "leukemia":
        return pd.DataFrame(columns=_COLS)
    ld = _ld_start(study)
    T = S[S["treated"]]
    u = rng.random((2, len(T)))
    st_day = T["aph_day"].to_numpy() + 1
    en_day = np.full(len(T), ld - 2)
    sel = (u[0] < 0.6) & (en_day - st_day >= 2)
    k = np.minimum((u[1] * len(BRIDGING)).astype(int), len(BRIDGING) - 1)[sel]
    reg = np.array(BRIDGING, dtype=object)[k] if sel.any() else np.empty((0, 5), dtype=object)
    i = T["i"].to_numpy()[sel]
    d0 = T["d0"].to_numpy()[sel]
    return _records(i, reg[:, 0], "BRIDGING THERAPY", S["primdiag"].to_numpy()[i], None, reg[:, 1], reg[:, 2],
                    reg[:, 3], reg[:, 4], d0 + st_day[sel], d0 + en_day[sel])


def prophylaxis(study: Study, S: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Antiviral, anti-pneumocystis and antifungal prophylaxis of the treated."""
    T = S[S["treated"]]
    n = len(T)
    u = rng.random((6, n))
    i, d0 = T["i"].to_numpy(), T["d0"].to_numpy()
    ld = _ld_start(study)
    aplastic = study["response"]["family"] == "aplastic_anemia"
    parts = []
    items = [
        (u[0] < 0.9, np.where(u[1] < 0.7, "ACYCLOVIR", "Valaciclovir"), np.where(u[1] < 0.7, "400", "500"), "BID",
         d0 + ld, d0 + 180 + (u[2] * 185).astype(int), "HERPES VIRUS PROPHYLAXIS"),
        (u[3] < 0.7, np.where(u[4] < 0.8, "SULFAMETHOXAZOLE/TRIMETHOPRIM", "Bactrim"), "960", "3 TIMES PER WEEK",
         d0, d0 + 180, "PNEUMOCYSTIS PROPHYLAXIS"),
        (u[5] < (0.8 if aplastic else 0.6), "POSACONAZOLE" if aplastic else "FLUCONAZOLE", "300" if aplastic else "200",
         "QD", d0, d0 + 28, "ANTIFUNGAL PROPHYLAXIS"),
    ]
    for sel, trt, dose, frq, st, pen, indc in items:  # three prophylaxis items (metadata)
        trt = np.broadcast_to(np.asarray(trt, dtype=object), (n,))
        dose = np.broadcast_to(np.asarray(dose, dtype=object), (n,))
        en, ok = _course(S, i, st, pen)
        sel = sel & ok
        parts.append(_records(i[sel], trt[sel], "ANTI-INFECTIVE PROPHYLAXIS", indc, None, dose[sel], "mg", frq, "ORAL",
                              st[sel], en[sel]))
    return pd.concat(parts, ignore_index=True)


def _counts(D: pd.DataFrame, L: pd.DataFrame, test: str) -> pd.DataFrame:
    x = L[L["test"].astype(str) == test]
    return pd.DataFrame({"i": x["i"].to_numpy(), "day": D["day"].to_numpy()[x["draw"].to_numpy()],
                         "date": D["date"].to_numpy()[x["draw"].to_numpy()], "v": x["si"].to_numpy()})


def growth_factor(S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Filgrastim from the first draw after day 14 with neutrophils < 0.5 x 10^9/L."""
    c = _counts(D, L, "NEUT")
    c = c[(c["day"] > 14) & (c["v"] < 0.5) & S["treated"].to_numpy()[c["i"].to_numpy()]]
    f = c.groupby("i")["date"].min()
    if f.empty:
        return pd.DataFrame(columns=_COLS)
    i = f.index.to_numpy()
    st = f.to_numpy().astype(np.int64)
    en, ok = _course(S, i, st, st + 4 + (rng.random(len(i)) * 6).astype(int))
    return _records(i[ok], "FILGRASTIM", "GROWTH FACTOR", "NEUTROPENIA", None, "5", "ug/kg", "QD", "SUBCUTANEOUS",
                    st[ok], en[ok])


def transfusions(study: Study, S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, rs_cols: dict,
                 rng: np.random.Generator) -> pd.DataFrame:
    """Platelet and red-cell transfusions on draw days with low counts; in aplastic anemia
    made to agree with the rs form's transfusion status (8 weeks before each assessment)."""
    aplastic = study["response"]["family"] == "aplastic_anemia"
    first_day = -10**6 if aplastic else _ld_start(study)
    enrolled = S["enrolled"].to_numpy() & S["treated"].to_numpy()
    plt, hgb = _counts(D, L, "PLAT"), _counts(D, L, "HGB")
    up, uh = rng.random(len(plt)), rng.random(len(hgb))
    plt = plt[(plt["day"] >= first_day) & enrolled[plt["i"].to_numpy()] & ((plt["v"] < 10) | ((plt["v"] < 20) & (up < 0.5)))]
    hgb = hgb[(hgb["day"] >= first_day) & enrolled[hgb["i"].to_numpy()] & (hgb["v"] < 70)]
    # a platelet unit lasts about 3 days, red cells 1-2 weeks: one transfusion per product and
    # 3-day (platelets) or 7-day (red cells) period of the subject's protocol days
    plt = plt[~pd.DataFrame({"i": plt["i"], "k": plt["day"] // 3}).duplicated().to_numpy()]
    hgb = hgb[~pd.DataFrame({"i": hgb["i"], "k": hgb["day"] // 7}).duplicated().to_numpy()]
    P = _records(plt["i"], "APHERESIS PLATELETS", "TRANSFUSION", "THROMBOCYTOPENIA", None, "250", "mL", "ONCE",
                 "INTRAVENOUS", plt["date"], plt["date"])
    R = _records(hgb["i"], np.where(rng.random(len(hgb)) < 0.3, "Suspended RBC", "RED BLOOD CELLS"), "TRANSFUSION",
                 "ANEMIA", None, "300", "mL", "ONCE", "INTRAVENOUS", hgb["date"], hgb["date"])
    X = pd.concat([P, R], ignore_index=True)
    if not aplastic or "TRANSIND" not in rs_cols:
        return X
    A = pd.DataFrame({"i": np.asarray(rs_cols["_i"], dtype=int), "date": np.asarray(rs_cols["RSDAT"], dtype=np.int64),
                      "ti": np.asarray(rs_cols["TRANSIND"], dtype=object)})
    # no transfusion in the 56 days before (and on) an assessment with TRANSIND=Y
    m = X.reset_index().merge(A[A["ti"] == "Y"], on="i")
    inside = (m["st"] >= m["date"] - 56) & (m["st"] <= m["date"])
    X = X.drop(index=m.loc[inside, "index"].unique()).reset_index(drop=True)
    # at least one before an assessment with TRANSIND=N: a platelet transfusion 7 days before
    N = A[A["ti"] == "N"]
    m = N.reset_index().merge(X[["i", "st"]], on="i", how="left")
    m["hit"] = (m["st"] >= m["date"] - 56) & (m["st"] <= m["date"])
    has = m.groupby("index")["hit"].any().reindex(N.index, fill_value=False).to_numpy(dtype=bool)
    need = N[~has].drop_duplicates(["i", "date"])
    add = _records(need["i"], "APHERESIS PLATELETS", "TRANSFUSION", "THROMBOCYTOPENIA", None, "250", "mL", "ONCE",
                   "INTRAVENOUS", need["date"] - 7, need["date"] - 7)
    X = pd.concat([X, add], ignore_index=True)
    # the TRANSIND=Y rule wins where an added transfusion falls in a later assessment's 8 weeks
    m = X.reset_index().merge(A[A["ti"] == "Y"], on="i")
    inside = (m["st"] >= m["date"] - 56) & (m["st"] <= m["date"])
    return X.drop(index=m.loc[inside, "index"].unique()).reset_index(drop=True)


def glucocorticoid(study: Study, S: pd.DataFrame, rs_gc: dict | None, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Background glucocorticoid records of the autoimmune study from the daily dose at each
    assessment (see the module docstring); also a mask of records whose start is partial."""
    if not rs_gc or study["response"]["family"] != "autoimmune":
        return pd.DataFrame(columns=_COLS), np.zeros(0, bool)
    A = pd.DataFrame({"i": np.asarray(rs_gc["_i"], dtype=int), "date": np.asarray(rs_gc["RSDAT"], dtype=np.int64),
                      "gc": pd.to_numeric(pd.Series(rs_gc["GCDOSE"]), errors="coerce").to_numpy()})
    A = A.dropna(subset=["gc"]).sort_values(["i", "date"], kind="stable").reset_index(drop=True)
    prev_gc = A.groupby("i")["gc"].shift()
    prev_date = A.groupby("i")["date"].shift()
    first = prev_gc.isna().to_numpy()
    change = first | (A["gc"].to_numpy() != prev_gc.to_numpy())
    u = rng.random((3, len(A)))
    ns = len(S)
    mp = rng.random(ns) < 0.3                      # methylprednisolone instead of prednisone
    icdat = S["icdat"].to_numpy()[A["i"].to_numpy()]
    gap = np.nan_to_num(A["date"].to_numpy() - prev_date.to_numpy(), nan=1).astype(np.int64)
    st = np.where(first, icdat - 90 - (u[0] * 640).astype(np.int64),
                  np.where(u[1] < 0.2, A["date"].to_numpy(),
                           np.nan_to_num(prev_date.to_numpy(), nan=0).astype(np.int64) + 1
                           + np.floor(u[2] * np.maximum(gap, 1)).astype(np.int64)))
    R = A[change].assign(st=st[change]).reset_index(drop=True)
    nxt = R.groupby("i")["st"].shift(-1)
    last, died = _observation_end(S)
    i = R["i"].to_numpy()
    en = np.where(nxt.notna(), np.nan_to_num(nxt.to_numpy(), nan=0).astype(np.int64) - 1,
                  np.where(died[i], last[i], NODAY))
    use_mp = mp[i]
    dose = np.where(use_mp, R["gc"].to_numpy() * 0.8, R["gc"].to_numpy())
    out = _records(i, np.where(use_mp, "METHYLPREDNISOLONE", "PREDNISONE"), "BACKGROUND GLUCOCORTICOID",
                   S["primdiag"].to_numpy()[i], None, [plain_number(round(x, 1)) for x in dose], "mg", "QD", "ORAL",
                   R["st"], en)
    partial = (R.groupby("i").cumcount() == 0).to_numpy() & (rng.random(len(R)) < 0.3)
    return out, partial


def build_cm(study: Study, S: pd.DataFrame, grid: pd.DataFrame, crs_cols: dict, ae_cols: dict, D: pd.DataFrame,
             L: pd.DataFrame, rs_cols: dict, rs_gc: dict | None, cfg: dict) -> dict:
    """Column arrays of the ``cm`` form (dates as CDASH text) with ``_i`` (subject index)."""
    rng = stream(cfg, "cm")
    gc, gc_partial = glucocorticoid(study, S, rs_gc, rng)
    parts = [crs_icans_treatments(S, grid, crs_cols, ae_cols, rng), bridging(study, S, rng),
             prophylaxis(study, S, rng), growth_factor(S, D, L, rng), transfusions(study, S, D, L, rs_cols, rng), gc]
    partial = np.concatenate([np.zeros(sum(len(p) for p in parts[:-1]), bool), gc_partial])
    if not any(len(p) for p in parts):
        return {"_i": np.zeros(0, int), **{c: np.zeros(0, dtype=object) for c in CM_COLUMNS}}
    X = pd.concat([p for p in parts if len(p)], ignore_index=True).assign(_partial=partial)
    X = X.astype({"i": int, "st": np.int64, "en": np.int64})
    X = X.sort_values(["i", "st", "CMCAT", "CMTRT"], kind="stable").reset_index(drop=True)
    X = X.drop_duplicates(["i", "st", "CMTRT", "CMDOSE"]).reset_index(drop=True)
    seq = X.groupby("i").cumcount() + 1
    st_txt = cdash_date(X["st"].to_numpy())
    p = X["_partial"].to_numpy()
    if p.any():
        st_txt[p] = partial_month(X["st"].to_numpy()[p])
    en = X["en"].to_numpy()
    return {
        "_i": X["i"].to_numpy(),
        "CMSPID": np.array([f"CM-{k:03d}" for k in seq], dtype=object),
        "CMTRT": X["CMTRT"].to_numpy(), "CMCAT": X["CMCAT"].to_numpy(), "CMINDC": X["CMINDC"].to_numpy(),
        "CMAENO": X["CMAENO"].to_numpy(), "CMDOSE": X["CMDOSE"].to_numpy(), "CMDOSU": X["CMDOSU"].to_numpy(),
        "CMDOSFRQ": X["CMDOSFRQ"].to_numpy(), "CMROUTE": X["CMROUTE"].to_numpy(),
        "CMSTDAT": st_txt, "CMENDAT": cdash_date(en),
        "CMONGO": np.where(en == NODAY, "Y", "N").astype(object),
    }
