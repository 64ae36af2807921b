"""Investigator-reported adverse events (form ``ae``), CTCAE v5.0 terms and grades.

Sources of AEs for each treated subject (collected from the infusion on):

- CRS: "Cytokine release syndrome" from the first to the last day with CRS in the daily
  assessments (form ``crs``), grade = the highest daily ASTCT grade (5 when the subject
  died of CRS, on the date of death).
- ICANS: verbatim "Encephalopathy" (CTCAE term), "ICANS" or "Immune effector
  cell-associated neurotoxicity syndrome", grade = the highest daily ICANS grade.
- Laboratory AEs (``data/ae_lab_grades.csv``): cytopenias, transaminase, bilirubin,
  creatinine, potassium and albumin abnormalities graded by CTCAE from the simulated
  results, from the first draw worse than baseline to the first draw back at baseline.
- Clinical AEs (``data/ae_terms.csv``): per-subject probabilities by disease family;
  grades drawn only among the grades CTCAE allows for the term.
- Fatal AEs: death from infection gives "Sepsis" or "Lung infection" grade 5, intracranial
  hemorrhage "Intracranial hemorrhage" grade 5; their end date is the date of death (and the
  ds DEATH record's date). Disease progression is not an AE.

Rules kept: grade 5 only with AEOUT=FATAL, AESDTH=Y and AESER=Y; AESER=Y exactly when a
seriousness flag is Y; AEONGO=Y has no AEENDAT (events still going at death, withdrawal or
the cut-off); AESPID AE-001, AE-002, ... per subject in order of onset.

Mess at low rates: verbatim variants (``data/ae_verbatims.csv``: case, spacing,
misspellings such as "Thrombocytopaenia", lay terms such as "low platelets"), partial dates
(UN-MMM-YYYY, only when the month alone still orders start after infusion and end after
start), and about 1% deliberately unmappable verbatims:
"felt strange in the head", "tummy upset and unwell", "funny turn in the evening",
"not himself after the cells", "out of sorts all day" (used in that order, at least one
per study).

Planted disagreements with the daily CRS/ICANS assessments (subjects in SUBJID order among
the treated with a non-fatal CRS AE whose daily maximum is grade <= 3):

- AE-CRS-GRADE: the 2nd such subject: AETOXGR = daily maximum + 1.
- AE-CRS-DATE: the 4th such subject: AESTDAT = first CRS day + 2 days (+1 if the episode
  lasts 2 days), grade agreeing.
- AE-ICANS-GRADE: the first subject with daily ICANS grade >= 2: AETOXGR = daily maximum - 1
  (if no ICANS reaches grade 2, the first ICANS subject gets + 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.simulate._util import NODAY, date_parts, table

UNMAPPABLE_RATE = 0.01
VARIANT_RATE = 0.03


def _grades(spec: str) -> list[int]:
    return [int(g) for g in str(spec).split("|") if g]


def _episode_aes(g: pd.DataFrame, S: pd.DataFrame, col: str) -> pd.DataFrame:
    x = g[g[col] > 0]
    if x.empty:
        return pd.DataFrame(columns=["i", "st", "en", "grade"])
    a = x.groupby("i").agg(st=("date", "min"), en=("date", "max"), grade=(col, "max")).reset_index()
    return a


def lab_aes(S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, ranges: pd.DataFrame, rng) -> pd.DataFrame:
    """AEs from laboratory grades: one episode per subject and term."""
    rules = table("ae_lab_grades")
    out = []
    day = D["day"].to_numpy()
    date = D["date"].to_numpy()
    u_report = rng.random((len(rules), len(S)))
    rr = ranges.set_index(["site_i", "test", "female"])
    treated = S["treated"].to_numpy()
    for k, r in rules.iterrows():  # rule-table rows (metadata)
        X = L[(L["test"] == r["lbtestcd"]) & treated[L["i"].to_numpy()]]
        if X.empty:
            continue
        i = X["i"].to_numpy()
        v = X["si"].to_numpy()
        key = pd.MultiIndex.from_arrays([S["site_i"].to_numpy()[i], X["test"].to_numpy(), S["female"].to_numpy()[i]])
        lo = rr["si_lo"].reindex(key).to_numpy()
        hi = rr["si_hi"].reindex(key).to_numpy()
        gr = np.zeros(len(X), dtype=int)
        for level, col in enumerate(("g1", "g2", "g3", "g4"), start=1):
            t = r[col]
            if t == "":
                continue
            if r["direction"] == "low":
                lim = lo if t == "LLN" else float(t)
                gr = np.where(v < lim, level, gr)
            else:
                lim = hi * float(t)
                gr = np.where(v > lim, level, gr)
        d = day[X["draw"].to_numpy()]
        dt = date[X["draw"].to_numpy()]
        F = pd.DataFrame({"i": i, "day": d, "date": dt, "gr": gr})
        base = F[F["day"] < 0].groupby("i")["gr"].last()
        F["base"] = base.reindex(F["i"]).fillna(0).to_numpy().astype(int)
        F = F[F["day"] >= 0]
        F["abn"] = (F["gr"] > F["base"]) & (F["gr"] >= 1)
        first = F[F["abn"]].groupby("i")["date"].min()
        F["first"] = first.reindex(F["i"]).to_numpy()
        F = F[F["first"].notna() & (F["date"] >= F["first"])]
        rec = F[~F["abn"]].groupby("i")["date"].min()
        F["rec"] = rec.reindex(F["i"]).to_numpy()
        W = F[F["rec"].isna() | (F["date"] < F["rec"])]
        A = W.groupby("i").agg(st=("date", "min"), grade=("gr", "max")).reset_index()
        A["en"] = rec.reindex(A["i"]).fillna(NODAY).to_numpy().astype(np.int64)
        keep = (A["grade"] >= 2) | (u_report[k][A["i"].to_numpy()] < 0.3)
        A = A[keep]
        A["term"] = r["term"]
        A["kind"] = "lab"
        A["aerel"] = r["aerel"]
        out.append(A)
    if not out:
        return pd.DataFrame(columns=["i", "st", "en", "grade", "term", "kind", "aerel"])
    return pd.concat(out, ignore_index=True)


def clinical_aes(study, S: pd.DataFrame, rng) -> pd.DataFrame:
    fam = study["response"]["family"]
    terms = table("ae_terms")
    T = S[S["treated"]]
    n = len(T)
    out = []
    for _, r in terms.iterrows():  # AE term table rows (metadata)
        p = float(r.get(f"p_{fam}", "0") or 0)
        u = rng.random(n)
        onset = np.round(rng.exponential(float(r["onset_mean"]), n)).astype(int)
        dur = 1 + np.round(rng.exponential(float(r["dur_mean"]), n)).astype(int)
        allowed = _grades(r["grades"])
        w = np.array([float(x) for x in r["grade_w"].split("|")])
        w = np.where(np.isin(np.arange(1, 5), allowed), w, 0)
        grade = rng.choice(np.arange(1, 5), n, p=w / w.sum())
        sel = (u < p) & (onset <= T["end_day"].to_numpy())
        if not sel.any():
            continue
        d0 = T["d0"].to_numpy()[sel]
        out.append(pd.DataFrame({"i": T["i"].to_numpy()[sel], "st": d0 + onset[sel], "en": d0 + onset[sel] + dur[sel],
                                 "grade": grade[sel], "term": r["term"], "kind": "clinical", "aerel": r["aerel"]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["i", "st", "en", "grade", "term", "kind", "aerel"])


def build_ae(study, S: pd.DataFrame, g: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, ranges: pd.DataFrame,
             cfg: dict, rng, plants: list[dict]) -> dict:
    """Column arrays of the ``ae`` form (dates as day numbers or partial-date text)."""
    cutoff = S.attrs["cutoff"]
    crs = _episode_aes(g, S, "crs_g").assign(term="Cytokine release syndrome", kind="crs", aerel="RELATED")
    ican = _episode_aes(g, S, "icans_g").assign(term="Encephalopathy", kind="icans", aerel="RELATED")
    died = S["died"].to_numpy()
    cause = S["death_cause"].to_numpy()
    death_date = S["d0"].to_numpy() + S["death_day"].to_numpy()
    crs_death = died[crs["i"].to_numpy()] & (cause[crs["i"].to_numpy()] == "CYTOKINE RELEASE SYNDROME") if len(crs) else np.zeros(0, bool)
    crs.loc[crs_death, "grade"] = 5
    crs.loc[crs_death, "en"] = death_date[crs.loc[crs_death, "i"].to_numpy()]

    # planted CRS / ICANS disagreements
    order = crs[~crs_death & (crs["grade"] <= 3)].sort_values("i")
    subj = S["SUBJID"].to_numpy()
    if len(order) > 1:
        j = order.index[1]
        plants.append({"subject": int(crs.at[j, "i"]), "form": "ae", "item": "AE-CRS-GRADE",
                       "description": f"CRS AE grade {crs.at[j, 'grade'] + 1}, daily assessments maximum {crs.at[j, 'grade']}"})
        crs.at[j, "grade"] = crs.at[j, "grade"] + 1
    if len(order) > 3:
        j = order.index[3]
        shift = 2 if crs.at[j, "en"] - crs.at[j, "st"] >= 2 else 1
        plants.append({"subject": int(crs.at[j, "i"]), "form": "ae", "item": "AE-CRS-DATE",
                       "description": f"CRS AE starts {shift} day(s) after the first CRS day of the daily assessments"})
        crs.at[j, "st"] = crs.at[j, "st"] + shift
    if len(ican):
        hi = ican[ican["grade"] >= 2].sort_values("i")
        j = hi.index[0] if len(hi) else ican.sort_values("i").index[0]
        delta = -1 if ican.at[j, "grade"] >= 2 else 1
        plants.append({"subject": int(ican.at[j, "i"]), "form": "ae", "item": "AE-ICANS-GRADE",
                       "description": f"ICANS AE grade {ican.at[j, 'grade'] + delta}, daily assessments maximum {ican.at[j, 'grade']}"})
        ican.at[j, "grade"] = ican.at[j, "grade"] + delta

    lab = lab_aes(S, D, L, ranges, rng)
    clin = clinical_aes(study, S, rng)

    # fatal AEs for deaths from infection or hemorrhage
    T = S[S["treated"] & S["died"]]
    u = rng.random(len(T))
    back = rng.integers(2, 10, len(T))
    fatal = []
    for (idx, s), uu, b in zip(T.iterrows(), u, back):  # only subjects who died (a few per study)
        dd = int(s["d0"] + s["death_day"])
        if s["death_cause"] == "INFECTION":
            term = "Sepsis" if uu < 0.6 else "Lung infection"
        elif s["death_cause"] == "INTRACRANIAL HEMORRHAGE":
            term = "Intracranial hemorrhage"
        else:
            continue
        fatal.append((int(s["i"]), max(int(s["d0"]) + 1, dd - int(b)), dd, 5, term, "fatal", "POSSIBLY RELATED"))
    fat = pd.DataFrame(fatal, columns=["i", "st", "en", "grade", "term", "kind", "aerel"])

    A = pd.concat([crs, ican, lab, clin, fat], ignore_index=True)
    A["i"] = A["i"].astype(int)
    A["st"] = A["st"].astype(np.int64)
    A["en"] = A["en"].astype(np.int64)
    A["grade"] = A["grade"].astype(int)
    # observation window of each subject
    d0 = S["d0"].to_numpy()[A["i"].to_numpy()]
    last = np.minimum(d0 + S["end_day"].to_numpy()[A["i"].to_numpy()], cutoff)
    A = A[A["st"].to_numpy() <= last].reset_index(drop=True)
    d0 = S["d0"].to_numpy()[A["i"].to_numpy()]
    last = np.minimum(d0 + S["end_day"].to_numpy()[A["i"].to_numpy()], cutoff)
    fatal_m = A["grade"].to_numpy() == 5
    ongoing = ~fatal_m & ((A["en"].to_numpy() == NODAY) | (A["en"].to_numpy() > last))
    A["ongoing"] = ongoing
    A.loc[ongoing, "en"] = NODAY
    A = A.sort_values(["i", "st", "kind", "term"], kind="stable").reset_index(drop=True)
    ongoing = A["ongoing"].to_numpy()
    A["seq"] = A.groupby("i").cumcount() + 1
    m = len(A)
    grade = A["grade"].to_numpy()
    kind = A["kind"].to_numpy()
    term = A["term"].to_numpy()
    infection = np.isin(term, ["Sepsis", "Lung infection", "Febrile neutropenia", "Upper respiratory infection",
                               "Cytomegalovirus infection reactivation"])
    uu = rng.random((8, m))

    # verbatim
    vt = table("ae_verbatims")
    variants = vt[vt["kind"] == "variant"].groupby("term")["verbatim"].agg(list).to_dict()
    unmappable = vt.loc[vt["kind"] == "unmappable", "verbatim"].tolist()
    verb = term.astype(object).copy()
    ic = kind == "icans"
    verb[ic] = np.where(uu[0][ic] < 0.5, "Encephalopathy", np.where(uu[1][ic] < 0.5, "ICANS",
                        "Immune effector cell-associated neurotoxicity syndrome"))
    for j in np.flatnonzero((uu[2] < VARIANT_RATE) & ~ic):
        opts = variants.get(term[j])
        if opts:
            verb[j] = opts[int(uu[3][j] * len(opts))]
    cand = np.flatnonzero((kind == "clinical") & (grade <= 2))
    n_un = min(len(cand), max(1, int(round(UNMAPPABLE_RATE * m)))) if unmappable else 0
    if n_un:
        pick = np.sort(rng.choice(cand, n_un, replace=False))
        for q, j in enumerate(pick):
            verb[j] = unmappable[q % len(unmappable)]
            plants.append({"subject": int(A.at[j, "i"]), "form": "ae", "item": "AE-UNMAPPABLE",
                           "description": f"AETERM '{verb[j]}' (deliberately unmappable)"})

    # seriousness
    sdth = grade == 5
    slife = (grade == 4) & (uu[4] < 0.8)
    shosp = ((grade == 3) & ((uu[5] < 0.4) | infection)) | ((kind == "crs") & (grade >= 2) & (uu[5] < 0.5)) | (sdth & (uu[6] < 0.5))
    smie = (kind == "icans") & (grade >= 3)
    ser = sdth | slife | shosp | smie
    yn = lambda b: np.where(b, "Y", "N").astype(object)

    # outcome
    out = np.where(sdth, "FATAL", np.where(ongoing, np.where(uu[6] < 0.7, "NOT RECOVERED/NOT RESOLVED",
                   "RECOVERING/RESOLVING"), np.where((grade >= 3) & (uu[7] < 0.05),
                   "RECOVERED/RESOLVED WITH SEQUELAE", "RECOVERED/RESOLVED"))).astype(object)
    split = S["split"].to_numpy()[A["i"].to_numpy()]
    d0 = S["d0"].to_numpy()[A["i"].to_numpy()]
    acn = np.where(split & (A["st"].to_numpy() == d0), "DOSE NOT CHANGED", "NOT APPLICABLE").astype(object)

    # partial dates at the mess rate (never for CRS, ICANS or fatal events)
    st, en = A["st"].to_numpy(), A["en"].to_numpy()
    sy, sm, _ = date_parts(st)
    dy, dm_, _ = date_parts(d0)
    ey, em, _ = date_parts(np.where(en == NODAY, st, en))
    plain = np.isin(kind, ["clinical", "lab"])
    rate = 1.5 * float(cfg["mess_rate"])      # about the mess rate of all AEs once the month rules apply
    st_partial = plain & (uu[0] < rate) & ((sy * 12 + sm) > (dy * 12 + dm_)) & ((en == NODAY) | ((ey * 12 + em) > (sy * 12 + sm)))
    en_partial = plain & ~st_partial & (en != NODAY) & (uu[1] < rate) & ((ey * 12 + em) > (sy * 12 + sm))
    tim = np.where(uu[3] < 0.25, np.round(uu[4] * 23 * 60 + 30).astype(int), -1)
    return {
        "_i": A["i"].to_numpy(), "_term": term, "_kind": kind, "_st_partial": st_partial, "_en_partial": en_partial,
        "AESPID": np.array([f"AE-{q:03d}" for q in A["seq"]], dtype=object),
        "AETERM": verb, "AESTDAT": st, "AESTTIM": tim, "AEENDAT": en,
        "AEONGO": yn(ongoing), "AETOXGR": grade.astype(str).astype(object),
        "AESER": yn(ser), "AESDTH": yn(sdth), "AESLIFE": yn(slife), "AESHOSP": yn(shosp),
        "AESDISAB": yn(np.zeros(m, bool)), "AESCONG": yn(np.zeros(m, bool)), "AESMIE": yn(smie),
        "AEREL": A["aerel"].to_numpy().astype(object), "AEACN": acn, "AEOUT": out,
    }
