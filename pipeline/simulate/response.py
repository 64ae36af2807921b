"""Disease assessments (form ``rs``) per the study's ``[response].family``.

The investigator's response (RSORRES) is the category the simulator's criteria give for
the recorded values, except for the planted disagreements listed below.

Criteria used (the simulator's reading; the pipeline's rule tables are authoritative):

leukemia (NCCN ALL v3.2023 / ELN 2017; as specs/rules/response_leukemia.csv)
    The SCREENING marrow is the baseline (RSORRES NE). After a CR, CRh or CRi, disease
    (blasts >= 5%, circulating blasts or extramedullary disease) -> RELAPSE. PD: blasts
    >= 5% and >= 25% above baseline (ALL) / > 50% above baseline and >= 15 points when the
    baseline is < 30% (AML), or new extramedullary disease. With blasts < 5%, no circulating
    blasts and no extramedullary disease, by the counts at the same visit: ANC >= 1.0 and
    PLT >= 100 x 10^9/L -> CR; ANC > 0.5 and PLT > 50 -> CRh (if the study has CRh); one of
    ANC >= 1.0 or PLT >= 100 -> CRi; cellularity < 10% -> APLASTIC MARROW (if the study has
    it); else MLFS. AML blasts 5-25% down >= 50% from baseline with CR counts -> PR (if the
    study has PR); other disease -> NR.
aplastic_anemia (Chinese expert consensus 2017)
    HGB > 100 g/L, ANC > 1.5 and PLT > 100 x 10^9/L -> CR;
    transfusion independent and fewer than two of ANC < 0.5, PLT < 20, RETI < 20 -> PR;
    else NR.
autoimmune (study-defined, SLEDAI-2K)
    score 0 with prednisone-equivalent <= 5 mg/day -> CR; score >= baseline + 4 -> PD;
    score <= 50% of baseline -> PR; else NR. The SCREENING row holds the baseline (RSORRES NE).

Planted investigator disagreements (subject order = SUBJID order):

- RS-BLAST5: leukemia, first responder with a first assessment: BMBLAST 5.0 (not < 5%),
  investigator CR.
- RS-COUNTS: leukemia, second responder: platelets 72 x 10^9/L in the labs of that visit,
  investigator CR (criteria: CRh or CRi).
- RS-PBBLAST: leukemia, third responder: circulating blasts 2.0% with marrow blasts < 5%,
  investigator CR.
- RS-SAA-CR: aplastic anemia, first assessment whose criteria give PR at the ORR visit,
  investigator CR (if none, the first NR there reported as PR).
- RS-AID-GC: autoimmune, first SLE complete responder at the ORR visit: clinical SLEDAI-2K 0
  and PGA < 0.5 but glucocorticoid 7.5 mg/day, investigator CR (criteria PR: LLDAS, not DORIS).
- RS-AID-PR: autoimmune, first non-responder at the first assessment: investigator PR
  (criteria NR by the subject's disease instrument).

- RS-MRD-SENS: leukemia, fourth responder (the BMBLAST 4.9 subject), first not-detected MRD:
  assay sensitivity 0.1% (10^-3), worse than the NCCN 10^-4 threshold (MRD status NE).

- CNS-WBC5: leukemia studies with [response.cns], first CNS-3 subject at screening: CSF WBC
  exactly 5/uL with blasts (NCCN CNS-3 boundary, >= 5).

Boundary values that agree with the criteria: a fourth leukemia responder has BMBLAST 4.9
(criteria CR-type) and the second non-responder BMBLAST 5.0 (NR).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import table
from pipeline.simulate.subjects import stream


def assessment_rows(study: Study, V: pd.DataFrame, with_screening: bool = False,
                    treated: np.ndarray | None = None) -> pd.DataFrame:
    """Visits held that are assessment visits of the study, in subject and date order (with the
    screening visit of subjects who have a later assessment, when asked)."""
    visits = list(study["response"].get("assessment_visits", []))
    A = V[V["VISIT"].isin(visits)]
    if with_screening:
        scr = str(study.visits.sort_values("VISITNUM")["VISIT"].iloc[0])
        B = V[(V["VISIT"] == scr) & V["i"].isin(A["i"])]
        A = pd.concat([B, A])
    A = A.sort_values(["i", "date"], kind="stable").reset_index(drop=True)
    A["k"] = A.groupby("i").cumcount()
    return A


def plan_leukemia_plants(study: Study, S: pd.DataFrame, V: pd.DataFrame) -> dict[str, int]:
    """Which subjects carry the planted leukemia items (first assessment of each)."""
    if study["response"]["family"] != "leukemia":
        return {}
    A = assessment_rows(study, V)
    first = A[A["k"] == 0]          # first post-infusion assessment
    resp = S.loc[first["i"], "responder"].to_numpy()
    r_ids = first["i"].to_numpy()[resp]
    nr_ids = first["i"].to_numpy()[~resp]
    out = {}
    for key, pos in (("RS-BLAST5", 0), ("RS-COUNTS", 1), ("RS-PBBLAST", 2), ("B49", 3)):
        if len(r_ids) > pos:
            out[key] = int(r_ids[pos])
    if len(nr_ids) > 1:
        out["B50"] = int(nr_ids[1])
    return out


def count_overrides(study: Study, V: pd.DataFrame, plants: dict[str, int]) -> list[tuple[int, str, str, float]]:
    """Lab values the planted items need: (subject, visit, test, SI value)."""
    if "RS-COUNTS" not in plants:
        return []
    A = assessment_rows(study, V)
    i = plants["RS-COUNTS"]
    visit = A.loc[(A["i"] == i) & (A["k"] == 0), "VISIT"].iloc[0]
    return [(i, visit, "PLAT", 72.0), (i, visit, "NEUT", 1.6)]


def _counts(L: pd.DataFrame, D: pd.DataFrame, A: pd.DataFrame, tests=("NEUT", "PLAT", "HGB", "RETI")) -> pd.DataFrame:
    """Reported counts (SI) at each assessment: same subject, same date."""
    X = L[L["test"].isin(tests)]
    date = D["date"].to_numpy()[X["draw"].to_numpy()]
    P = pd.DataFrame({"i": X["i"].to_numpy(), "date": date, "test": X["test"].to_numpy(), "v": X["si_rep"].to_numpy()})
    P = P.pivot_table(index=["i", "date"], columns="test", values="v", aggfunc="first")
    key = pd.MultiIndex.from_arrays([A["i"], A["date"]])
    return P.reindex(key).reset_index(drop=True).reindex(columns=list(tests))


def _fmt(x, d=1):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def leukemia(study, S, A, C, rng, plants, cfg):
    """Leukemia assessments; row k=0 of each subject is the SCREENING (baseline) marrow."""
    cats = set(study["response"]["categories"])
    n = len(A)
    u = rng.random((10, n))
    i = A["i"].to_numpy()
    k = A["k"].to_numpy()
    base = k == 0
    resp = S["responder"].to_numpy()[i]
    relapsed = A["day"].to_numpy() >= S["relapse_day"].to_numpy()[i]
    prolonged = S["prolonged"].to_numpy()[i]
    aml = S["primdiag"].to_numpy()[i] == "ACUTE MYELOID LEUKEMIA"
    ns = len(S)
    bl_blast = np.round(20 + rng.random(ns) * 70, 1)
    emd_subj = rng.random(ns) < 0.15
    bl = bl_blast[i]
    # non-responders: first post-infusion marrow at 40-115% of baseline, then rising
    f1 = 0.4 + 0.75 * rng.random(ns)
    rise = pd.Series(np.where(k >= 2, np.log(1.0 + 0.45 * u[1]), 0.0)).groupby(i).cumsum().to_numpy()
    nr_blast = np.clip(np.round(bl * f1[i] * np.exp(rise), 1), 6.0, 95.0)
    cr_blast = np.round(0.2 + u[2] * 4.2, 1)
    rel_blast = np.round(8 + u[3] * 50, 1)
    bm = np.where(base, bl, np.where(resp & ~relapsed, cr_blast, np.where(resp, rel_blast, nr_blast)))
    pb = np.where(base, np.round(u[5] * 30, 1), np.where(resp & ~relapsed, 0.0,
                  np.where(u[4] < 0.35, 0.0, np.round(1 + u[5] * 40, 1))))
    emd_s = emd_subj[i] & ~resp
    emd = np.where(base, np.where(emd_s | (u[6] < 0.05), "Y", "N"), np.where(emd_s, "Y", "N")).astype(object)
    cns = np.where(~resp & (u[7] < 0.1), "CNS-2", "CNS-1").astype(object)
    low_cell = (3 + u[0] * 6) if "APLASTIC MARROW" in cats else (12 + u[0] * 8)
    cell = np.round(np.where(base, 70 + u[8] * 25, np.where(resp & ~relapsed, np.where(prolonged, low_cell, 20 + u[1] * 40),
                                                               50 + u[2] * 45)))
    mrd = np.where(resp & ~relapsed & ~base, np.where(u[3] < 0.6, 0.0, np.round(0.01 + u[4] * 0.5, 2)),
                   np.round(bm * (0.6 + 0.4 * u[5]), 2))
    first_i = k == 1
    for key, val in (("RS-BLAST5", 5.0), ("B49", 4.9), ("B50", 5.0)):
        if key in plants:
            sel = first_i & (i == plants[key])
            bm[sel] = val
    if "RS-PBBLAST" in plants:
        pb[first_i & (i == plants["RS-PBBLAST"])] = 2.0

    anc, plt = C["NEUT"].to_numpy(), C["PLAT"].to_numpy()
    crit = np.empty(n, dtype=object)
    blv = pd.Series(bm).groupby(i).transform("first").to_numpy()
    emd_bl = pd.Series(emd).groupby(i).transform("first").to_numpy()
    prior = {}
    for j in range(n):            # one row per assessment (a few per subject): in time order
        s = i[j]
        if base[j]:
            crit[j] = "NE"
            continue
        clear = bm[j] < 5 and pb[j] == 0 and emd[j] == "N"
        rchg = (bm[j] - blv[j]) / blv[j] * 100 if blv[j] > 0 else np.nan
        if prior.get(s) and not clear:
            c = "RELAPSE"
        elif (not aml[j] and bm[j] >= 5 and rchg >= 25) or (emd[j] == "Y" and emd_bl[j] == "N") or (
                aml[j] and rchg > 50 and (blv[j] >= 30 or bm[j] - blv[j] >= 15)):
            c = "PD"
        elif clear and anc[j] >= 1.0 and plt[j] >= 100:
            c = "CR"
        elif clear and "CRh" in cats and anc[j] > 0.5 and plt[j] > 50:
            c = "CRh"
        elif clear and (anc[j] >= 1.0 or plt[j] >= 100):
            c = "CRi"
        elif clear and "APLASTIC MARROW" in cats and cell[j] < 10:
            c = "APLASTIC MARROW"
        elif clear and cell[j] >= 10:
            c = "MLFS"
        elif (aml[j] and "PR" in cats and 5 <= bm[j] <= 25 and rchg <= -50 and pb[j] == 0
              and anc[j] >= 1.0 and plt[j] >= 100):
            c = "PR"
        elif not clear:
            c = "NR"
        else:
            c = "NE"
        if c not in cats:
            c = "NE"
        if c in ("CR", "CRh", "CRi"):
            prior[s] = True
        crit[j] = c
    inv = crit.copy()
    for key in ("RS-BLAST5", "RS-COUNTS", "RS-PBBLAST"):
        if key in plants:
            inv[first_i & (i == plants[key])] = "CR"
    cols = {
        "BMBLAST": [_fmt(x) for x in bm], "BMCELL": [_fmt(x, 0) for x in cell], "PBBLAST": [_fmt(x) for x in pb],
        "EMD": emd, "CNSSTAT": cns,
    }
    cols.update(mrd_columns(mrd, i, k, cfg, plants if study["response"].get("mrd") else {}))
    if study["response"].get("cns"):
        cols.update(csf_columns(i, base, resp & ~relapsed, pb, len(S), cfg))
    return cols, inv, crit


def csf_columns(i: np.ndarray, base: np.ndarray, in_remission: np.ndarray, pb: np.ndarray, n_subjects: int,
                cfg: dict) -> dict:
    """CSF examination at every leukemia assessment (own stream ``rs_csf``), studies with
    ``[response.cns]``: a fifth of the subjects have CNS disease at screening (half CNS-2: blasts
    with WBC 1-4/uL, half CNS-3: blasts with WBC 5-60/uL), which clears (CNS-1) while the marrow
    is in remission and persists otherwise. One lumbar puncture in ten is traumatic (RBC
    200-5000/uL), only where no blasts circulate (the NCCN WBC/RBC comparison then is not
    needed). CNSSTAT (the investigator's) is the NCCN status of these values. Planted
    (CNS-WBC5): the first CNS-3 subject's screening CSF WBC is exactly 5/uL."""
    g = stream(cfg, "rs_csf")
    su = g.random((2, n_subjects))
    u = g.random((4, len(i)))
    involved = su[0] < 0.2
    cns3 = su[1] < 0.5
    pos = involved[i] & (base | ~in_remission)
    wbc = np.where(pos, np.where(cns3[i], 5 + np.floor(u[0] * 56), 1 + np.floor(u[0] * 4)), np.floor(u[0] * 5))
    first3 = np.flatnonzero(base & pos & cns3[i])
    if len(first3):
        wbc[first3[0]] = 5.0
    traumatic = (u[1] < 0.1) & (pb == 0)
    rbc = np.where(traumatic, 200 + np.floor(u[2] * 4800), np.floor(u[2] * 6))
    status = np.where(~pos, "CNS-1", np.where(wbc >= 5, "CNS-3", "CNS-2"))
    return {"CSFWBC": np.array([_fmt(x, 0) for x in wbc], dtype=object),
            "CSFRBC": np.array([_fmt(x, 0) for x in rbc], dtype=object),
            "CSFBLAST": np.where(pos, "POSITIVE", "NEGATIVE").astype(object),
            "CSFCOND": np.where(traumatic, "TRAUMATIC TAP", None).astype(object),
            "CNSSIGN": np.full(len(i), "N", dtype=object), "CNSSTAT": status.astype(object)}


def mrd_columns(mrd: np.ndarray, i: np.ndarray, k: np.ndarray, cfg: dict, plants: dict[str, int]) -> dict:
    """MRD result, not-detected flag, method and assay sensitivity (own stream ``rs_mrd``).

    Flow cytometry with a sensitivity (LLOQ) of 0.01% (10^-4) for most results, 0.001% for a
    fifth of them; a result of 0 is "not detected" (MRDND = Y, MRDRES blank); a quantified
    result below the LLOQ is reported as not detected too. Planted (RS-MRD-SENS): the first
    not-detected result of the fourth responder (plan ``B49``) comes from an assay with a
    sensitivity of 0.1% (10^-3), worse than the 10^-4 threshold: not detected, yet not MRD
    negative. Only in studies with ``[response.mrd]`` (the others derive no MRD status)."""
    u = stream(cfg, "rs_mrd").random((2, len(mrd)))
    lloq = np.where(u[0] < 0.2, 0.001, 0.01)
    nd = mrd < lloq
    if "B49" in plants:
        cand = np.flatnonzero((i == plants["B49"]) & (k >= 1) & nd)
        if len(cand):
            lloq[cand[0]] = 0.1
    return {"MRDRES": np.array([None if d else _fmt(x, 3) for x, d in zip(mrd, nd)], dtype=object),
            "MRDND": np.where(nd, "Y", "N").astype(object),
            "MRDMETH": np.full(len(mrd), "FLOW CYTOMETRY", dtype=object),
            "MRDLLOQ": np.array([_fmt(x, 3) for x in lloq], dtype=object)}


def aplastic(study, S, A, C, rng, plants_out):
    n = len(A)
    u = rng.random((2, n))
    i = A["i"].to_numpy()
    resp = S["responder"].to_numpy()[i]
    day = A["day"].to_numpy()
    cell = np.where(resp & (day >= 56), np.round(25 + u[0] * 25), np.round(5 + u[0] * 15))
    trans = np.where(resp & (day >= 56), "Y", "N").astype(object)
    anc, plt, hgb, reti = (C[t].to_numpy() for t in ("NEUT", "PLAT", "HGB", "RETI"))
    severe = (np.nan_to_num(anc, nan=0) < 0.5).astype(int) + (np.nan_to_num(plt, nan=0) < 20) + (np.nan_to_num(reti, nan=0) < 20)
    crit = np.where((hgb > 100) & (anc > 1.5) & (plt > 100), "CR",
                    np.where((trans == "Y") & (severe < 2), "PR", "NR")).astype(object)
    inv = crit.copy()
    orr_visit = _orr_visit(study)
    at = A["VISIT"].to_numpy() == orr_visit
    pr = np.flatnonzero(at & (crit == "PR"))
    if len(pr):
        inv[pr[0]] = "CR"
        plants_out.append({"subject": int(i[pr[0]]), "form": "rs", "item": "RS-SAA-CR",
                           "description": f"{orr_visit}: criteria PR, investigator CR"})
    else:
        nr = np.flatnonzero(at & (crit == "NR"))
        if len(nr):
            inv[nr[0]] = "PR"
            plants_out.append({"subject": int(i[nr[0]]), "form": "rs", "item": "RS-SAA-CR",
                               "description": f"{orr_visit}: criteria NR, investigator PR"})
    return {"BMCELL": [_fmt(x, 0) for x in cell], "TRANSIND": trans}, inv, crit


def _orr_visit(study: Study) -> str:
    v = study.visits
    day = int(study["orr"]["timepoint_day"])
    return str(v.loc[(v["day"] - day).abs().idxmin(), "VISIT"])


def disease_groups(S: pd.DataFrame) -> np.ndarray:
    """Each subject's disease group (SLE, AAV, IIM, SSC ...): the subtype of its primary
    diagnosis in ``data/mh_diseases.csv`` (the same table the mh form is simulated from)."""
    dis = table("mh_diseases").drop_duplicates("primdiag").set_index("primdiag")["subtype"]
    return S["primdiag"].map(dis).fillna("").to_numpy(dtype=object)


def autoimmune_states(A, resp, crt, flare, early, u2, screening):
    """The disease state each assessment shows: BL (screening), CR, PR, NR or PD, from the
    subject's responder status, remission type and flare (the same timeline as the SLEDAI-2K)."""
    day = A["day"].to_numpy()
    late_pd = ~resp & (day >= 180) & (u2 < 0.2)
    return np.select([screening, resp & flare & ~early, resp & ~early & crt, resp, late_pd],
                     ["BL", "PD", "CR", "PR", "PD"], "NR").astype(object)


def aid_instruments(group, state, score, gc, b_sle, i, ns, rng):
    """Each disease's instrument at each assessment, consistent with ``state``:

    - SLE: SLEDAI-2K (DASCORE) with 0/2/4 serology points, clinical SLEDAI-2K (CSLEDAI = total
      without serology), SELENA-SLEDAI physician global assessment (PGA 0-3); a PR state stays
      within LLDAS (SLEDAI-2K <= 4, PGA <= 1, glucocorticoid <= 7.5 mg/day);
    - AAV: BVAS v3 (0 in remission, <= 45% of baseline in response, above baseline in worsening);
    - IIM: ACR/EULAR Total Improvement Score (steps of 2.5; >= 60 major in remission, 20-57.5
      in response, < 20 otherwise; not scored at baseline);
    - SSC: mRSS (skin progression > 25% and >= 5 units in worsening) and the ACR CRISS
      probability (>= 0.60 when improved; not scored at baseline).
    Values of the other diseases' instruments are empty. Returns the columns, the glucocorticoid
    dose and each row's baseline (the screening value the criteria compare with)."""
    n = len(i)
    v = rng.random((6, n))
    vs = rng.random((2, ns))
    sle, aav, iim, ssc = (group == "SLE"), (group == "AAV"), (group == "IIM"), (group == "SSC")
    st = state
    # SLE
    sero = np.where(np.isin(st, ["CR", "PR"]), np.where(v[0] < 0.35, 2, 0), np.where(v[0] < 0.5, 4, 2))
    das = np.where(st == "CR", sero, np.where(st == "PR", np.minimum(score, 4), score)).astype(float)
    csl = np.maximum(das - np.minimum(sero, das), 0)
    pga = np.select([st == "BL", st == "PD", st == "NR", st == "PR", st == "CR"],
                    [1.5 + 1.3 * v[1], 2.0 + 1.0 * v[1], 1.1 + 1.2 * v[1], 0.5 + 0.5 * v[1], 0.4 * v[1]])
    pga = np.floor(pga * 10) / 10
    gc = np.where(sle & (st == "PR"), np.minimum(gc, 7.5), gc)
    # AAV
    b_bvas = (8 + np.floor(vs[0] * 18))[i]
    bvas = np.select([st == "BL", st == "CR", st == "PR", st == "PD"],
                     [b_bvas, 0, np.maximum(1, np.floor(b_bvas * (0.1 + 0.35 * v[2]))), b_bvas + 1 + np.floor(5 * v[2])],
                     np.minimum(np.ceil(b_bvas * (0.6 + 0.4 * v[2])), b_bvas))
    # IIM
    tis = np.select([st == "BL", st == "CR", st == "PR"],
                    [np.nan, 60 + 2.5 * np.floor(v[3] * 11), 20 + 2.5 * np.floor(v[3] * 16)], 2.5 * np.floor(v[3] * 8))
    # SSC
    b_mrss = (15 + np.floor(vs[1] * 21))[i]
    mrss = np.select([st == "BL", np.isin(st, ["CR", "PR"]), st == "PD"],
                     [b_mrss, np.round(b_mrss * (0.5 + 0.3 * v[4])), np.round(b_mrss * 1.3) + 5],
                     np.round(b_mrss * (0.85 + 0.25 * v[4])))
    criss = np.select([st == "BL", np.isin(st, ["CR", "PR"]), st == "PD"],
                      [np.nan, np.round(0.60 + 0.39 * v[5], 2), 0.0], np.round(0.55 * v[5], 2))
    cols = {"DASCORE": np.where(sle, das, np.nan), "CSLEDAI": np.where(sle, csl, np.nan),
            "PGA": np.where(sle, pga, np.nan), "BVAS": np.where(aav, bvas, np.nan),
            "TIS": np.where(iim, tis, np.nan), "MRSS": np.where(ssc, mrss, np.nan),
            "CRISS": np.where(ssc, criss, np.nan)}
    base = {"DASCORE_BL": b_sle, "BVAS_BL": b_bvas, "MRSS_BL": b_mrss}
    return cols, gc, base


def aid_criteria(group, cols, gc, base, screening):
    """The category the study's rules give (``specs/rules/response_autoimmune.csv`` after the
    protocol category map: major -> CR, moderate/minimal -> PR), for the plants and checks."""
    das, csl, pga, bvas, tis, mrss, criss = (cols[c] for c in ("DASCORE", "CSLEDAI", "PGA", "BVAS", "TIS", "MRSS", "CRISS"))
    with np.errstate(invalid="ignore"):
        sle = np.select([(csl == 0) & (pga < 0.5) & (gc <= 5), das - base["DASCORE_BL"] >= 4,
                         (das <= 4) & (pga <= 1) & (gc <= 7.5)], ["CR", "PD", "PR"], "NR")
        aav = np.select([(bvas == 0) & (gc <= 7.5), bvas > base["BVAS_BL"], bvas <= 0.5 * base["BVAS_BL"]],
                        ["CR", "PD", "PR"], "NR")
        iim = np.select([tis >= 60, tis >= 20], ["CR", "PR"], "NR")
        ssc = np.select([(mrss > 1.25 * base["MRSS_BL"]) & (mrss - base["MRSS_BL"] >= 5), criss >= 0.6], ["PD", "PR"], "NR")
    crit = np.select([group == "SLE", group == "AAV", group == "IIM", group == "SSC"], [sle, aav, iim, ssc], "NE")
    return np.where(screening, "NE", crit).astype(object)


def autoimmune(study, S, A, rng, plants_out, cfg):
    n = len(A)
    u = rng.random((6, n))
    i = A["i"].to_numpy()
    ns = len(S)
    base = 2 * rng.integers(3, 12, ns)                 # SLEDAI-2K baseline 6-22
    gc0 = rng.choice(np.array([10.0, 15.0, 20.0, 25.0, 30.0, 40.0]), ns)
    cr_type = rng.random(ns) < 0.6
    b = base[i]
    resp = S["responder"].to_numpy()[i]
    crt = cr_type[i]
    day = A["day"].to_numpy()
    screening = A["VISIT"].to_numpy() == str(study.visits.sort_values("VISITNUM")["VISIT"].iloc[0])
    flare = day >= S["relapse_day"].to_numpy()[i]
    early = day < 60
    score = np.where(resp, np.where(early, np.round(b * (0.35 + 0.3 * u[0])),
                                    np.where(crt, 0, np.round(b * (0.15 + 0.3 * u[1])))),
                     np.where((day >= 180) & (u[2] < 0.2), b + 4 + np.floor(u[3] * 5), np.round(b * (0.7 + 0.35 * u[4]))))
    score = np.where(resp & flare & ~early, b + 4 + np.floor(u[3] * 4), score)
    gc = np.where(resp & ~early, np.where(crt, np.where(u[5] < 0.5, 2.5, 5.0), np.where(u[5] < 0.5, 5.0, 10.0)),
                  np.round(gc0[i] * 0.75 / 2.5) * 2.5)
    score = np.where(screening, b, score)
    gc = np.where(screening, gc0[i], gc)
    # each disease's instrument (own stream: the shared draws above are unchanged)
    group = disease_groups(S)[i]
    state = autoimmune_states(A, resp, crt, flare, early, u[2], screening)
    cols, gc, base = aid_instruments(group, state, score, gc, b, i, len(S), stream(cfg, "aid_instruments"))
    orr_visit = _orr_visit(study)
    cand = np.flatnonzero((A["VISIT"].to_numpy() == orr_visit) & resp & crt & ~flare & (group == "SLE"))
    if len(cand):
        gc[cand[0]] = 7.5
    crit = aid_criteria(group, cols, gc, base, screening)
    inv = crit.copy()
    if len(cand):
        inv[cand[0]] = "CR"
        plants_out.append({"subject": int(i[cand[0]]), "form": "rs", "item": "RS-AID-GC",
                           "description": f"{orr_visit}: CSLEDAI 0 and PGA < 0.5 with GCDOSE 7.5 mg/day "
                                          "(DORIS needs <= 5: criteria PR by LLDAS), investigator CR"})
    first_nr = np.flatnonzero((A["k"].to_numpy() == 1) & ~resp & (crit == "NR"))
    if len(first_nr):
        inv[first_nr[0]] = "PR"
        plants_out.append({"subject": int(i[first_nr[0]]), "form": "rs", "item": "RS-AID-PR",
                           "description": f"{A['VISIT'].iat[first_nr[0]]}: criteria NR by the {group[first_nr[0]]} "
                                          "instrument, investigator PR"})
    dec = {"DASCORE": 0, "CSLEDAI": 0, "PGA": 1, "BVAS": 0, "TIS": 1, "MRSS": 0, "CRISS": 2}
    out = {c: [_fmt(float(x), dec[c]) for x in v] for c, v in cols.items()}  # a few columns (metadata)
    out["GCDOSE"] = [_fmt(x, 1) for x in gc]
    return out, inv, crit


def rs_form(study: Study, S: pd.DataFrame, V: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame,
            rng: np.random.Generator, leuk_plants: dict[str, int], plants_out: list[dict], cfg: dict) -> dict:
    """Column arrays of the ``rs`` form (plus ``_i`` and ``_crit``, the criteria category)."""
    fam = study["response"]["family"]
    if fam == "autoimmune":
        scr = str(study.visits.sort_values("VISITNUM")["VISIT"].iloc[0])
        visits = [scr] + list(study["response"].get("assessment_visits", []))
        A = V[V["VISIT"].isin(visits) & S["treated"].to_numpy()[V["i"].to_numpy()]]
        A = A.sort_values(["i", "date"], kind="stable").reset_index(drop=True)
        A["k"] = A.groupby("i").cumcount()
        cols, inv, crit = autoimmune(study, S, A, rng, plants_out, cfg)
    else:
        A = assessment_rows(study, V, with_screening=(fam == "leukemia"))
        C = _counts(L, D, A)
        if fam == "leukemia":
            cols, inv, crit = leukemia(study, S, A, C, rng, leuk_plants, cfg)
            desc = {"RS-BLAST5": "BMBLAST 5.0 (not < 5%), investigator CR",
                    "RS-COUNTS": "platelets 72 x 10^9/L at the visit, investigator CR",
                    "RS-PBBLAST": "circulating blasts 2.0%, investigator CR"}
            if "CSFWBC" in cols:
                w5 = np.flatnonzero((cols["CSFWBC"] == "5") & (cols["CSFBLAST"] == "POSITIVE"))
                for j in w5[:1]:  # at most one planted row
                    plants_out.append({"subject": int(A["i"].iat[j]), "form": "rs", "item": "CNS-WBC5",
                                       "description": f"{A['VISIT'].iat[j]}: CSF WBC exactly 5/uL with blasts: CNS-3"})
            sens = np.flatnonzero(cols["MRDLLOQ"] == "0.100")
            for j in sens[:1]:  # at most one planted row
                plants_out.append({"subject": int(A["i"].iat[j]), "form": "rs", "item": "RS-MRD-SENS",
                                   "description": f"{A['VISIT'].iat[j]}: MRD not detected at sensitivity 0.1% "
                                                  "(worse than the 0.01% threshold): MRD status NE, not negative"})
            for key, d in desc.items():
                if key in leuk_plants:
                    v = A.loc[(A["i"] == leuk_plants[key]) & (A["k"] == 1), "VISIT"].iloc[0]
                    plants_out.append({"subject": leuk_plants[key], "form": "rs", "item": key,
                                       "description": f"{v}: {d}"})
        elif fam == "aplastic_anemia":
            cols, inv, crit = aplastic(study, S, A, C, rng, plants_out)
        else:
            cols, inv, crit = {}, np.full(len(A), "NE", dtype=object), np.full(len(A), "NE", dtype=object)
    out = {"VISIT": A["VISIT"].to_numpy(), "RSDAT": A["date"].to_numpy(), "RSORRES": np.asarray(inv, dtype=object),
           "_i": A["i"].to_numpy(), "_crit": np.asarray(crit, dtype=object)}
    for c, v in cols.items():
        out[c] = np.asarray(v, dtype=object)
    return out


EMD_SITES = np.array(["MEDIASTINUM", "CERVICAL LYMPH NODE", "AXILLARY LYMPH NODE", "INGUINAL LYMPH NODE"], dtype=object)


def emd_form(study: Study, S: pd.DataFrame, rs_cols: dict, cfg: dict, plants_out: list[dict]) -> dict:
    """Form ``emd`` (own stream ``emd``): CT/PET-CT lesions of the subjects with extramedullary
    disease at screening, studies with ``[response.emd]`` (empty otherwise).

    The first two responders also have screening EMD (rs.EMD set to Y on their SCREENING row;
    the derived responses of the simulator do not use the screening indicator). Each EMD subject
    has 1-3 target lesions (the first mediastinal), 25-90 mm long, the perpendicular 50-90% of it,
    PET positive. Afterwards, at every assessment: a responder in remission has its lesions
    resolved (0 x 0, PET negative) or, for half of them, reduced to 40-65% of each diameter
    (PET positive: EMD PR); after a relapse, and in non-responders, the lesions grow 0-35% per
    assessment. Planted: EMD-PR50 (first PR responder: one mediastinal lesion 40 x 20 -> 40 x 10,
    SPD exactly -50%) and EMD-NEW (first non-responder with a second assessment: a new 15 x 12 mm
    pleural lesion there).
    """
    empty_cols = {c: np.array([], dtype=object) for c in ("VISIT", "TULNKID", "TULOC", "TRMETHOD", "TUNEW", "LDIAM",
                                                           "LPERP", "PETPOS")}
    empty_cols.update({"_i": np.array([], dtype=np.int64), "TRDAT": np.array([], dtype=np.int64)})
    if not study["response"].get("emd") or study["response"]["family"] != "leukemia":
        return empty_cols
    i = np.asarray(rs_cols["_i"])
    n = len(i)
    k = pd.Series(np.arange(n)).groupby(i).cumcount().to_numpy()
    base = k == 0
    crit = np.asarray(rs_cols["_crit"], dtype=object)
    resp = S["responder"].to_numpy()[i]
    emd = np.asarray(rs_cols["EMD"], dtype=object).copy()
    responders = np.unique(i[resp & base])[:2]
    emd[base & np.isin(i, responders)] = "Y"
    rs_cols["EMD"] = emd
    subj = np.unique(i[base & (emd == "Y")])
    if not len(subj):
        return empty_cols
    g = stream(cfg, "emd")
    ns = len(S)
    n_les = 1 + np.floor(g.random(ns) * 3).astype(int)
    pr_type = g.random(ns) < 0.5
    pr_type[responders[:1]] = True
    rows = []
    later = np.zeros(n, dtype=bool)
    relapsed = pd.Series(crit == "RELAPSE").groupby(i).cummax().to_numpy()
    grow = np.exp(pd.Series(np.where(base, 0.0, np.log(1 + 0.35 * g.random(n)))).groupby(i).cumsum().to_numpy())
    first_pr = responders[0] if len(responders) else -1
    new_subj = [s for s in subj if not resp[np.flatnonzero(i == s)[0]] and (i == s).sum() >= 3][:1]
    for s in subj:  # the few EMD subjects (subject level); lesions vectorised below
        idx = np.flatnonzero(i == s)
        m = int(n_les[s])
        u = g.random((3, m))
        ld0 = np.round(25 + u[0] * 65)
        lp0 = np.round(ld0 * (0.5 + 0.4 * u[1]))
        if s == first_pr:
            m, ld0, lp0 = 1, np.array([40.0]), np.array([20.0])
        for j in idx:  # a few assessments per subject
            in_rem = resp[j] and not relapsed[j]
            if base[j]:
                f_ld, f_lp, pet = 1.0, 1.0, "Y"
            elif in_rem and pr_type[s]:
                f_ld, f_lp = (1.0, 0.5) if s == first_pr else (0.4 + 0.25 * u[2][0], 0.4 + 0.25 * u[2][0])
                pet = "Y"
            elif in_rem:
                f_ld, f_lp, pet = 0.0, 0.0, "N"
            else:
                f_ld = f_lp = float(grow[j])
                pet = "Y"
            for les in range(m):  # 1-3 lesions
                rows.append((j, f"T{les + 1:02d}", "MEDIASTINUM" if les == 0 else EMD_SITES[1 + les % 3], "N",
                             float(np.round(ld0[les] * f_ld)), float(np.round(lp0[les] * f_lp)), pet))
            if s in new_subj and k[j] >= 2:
                rows.append((j, "N01", "PLEURA", "Y", 15.0, 12.0, "Y"))
                later[j] = True
    R_ = pd.DataFrame(rows, columns=["j", "TULNKID", "TULOC", "TUNEW", "LDIAM", "LPERP", "PETPOS"])
    j = R_["j"].to_numpy()
    if first_pr >= 0:
        js = np.flatnonzero((i == first_pr) & ~base)
        if len(js):
            plants_out.append({"subject": int(first_pr), "form": "emd", "item": "EMD-PR50",
                               "description": f"{rs_cols['VISIT'][js[0]]}: mediastinal lesion 40 x 20 -> 40 x 10 mm, "
                                              "SPD exactly 50% below baseline (EMD PR)"})
    for s in new_subj:
        jn = np.flatnonzero((i == s) & later)
        plants_out.append({"subject": int(s), "form": "emd", "item": "EMD-NEW",
                           "description": f"{rs_cols['VISIT'][jn[0]]}: new pleural lesion 15 x 12 mm (EMD PD)"})
    return {"_i": i[j], "VISIT": np.asarray(rs_cols["VISIT"], dtype=object)[j],
            "TRDAT": np.asarray(rs_cols["RSDAT"])[j], "TULNKID": R_["TULNKID"].to_numpy(dtype=object),
            "TULOC": R_["TULOC"].to_numpy(dtype=object), "TRMETHOD": np.full(len(R_), "PET/CT SCAN", dtype=object),
            "TUNEW": R_["TUNEW"].to_numpy(dtype=object),
            "LDIAM": np.array([_fmt(x, 0) for x in R_["LDIAM"]], dtype=object),
            "LPERP": np.array([_fmt(x, 0) for x in R_["LPERP"]], dtype=object),
            "PETPOS": R_["PETPOS"].to_numpy(dtype=object)}
