"""Medical history, prior therapy lines and prior HSCT: the ``mh``, ``prtx`` and ``phsct`` forms.

Every draw comes from the stream ``stream(cfg, "mh")`` (and ``"prtx"``, ``"phsct"``), never from
the shared generator, so these forms never shift the draws of the others. What is drawn is
consistent with the rest of the subject's data and the eligibility criteria:

- the disease under study is ``S["primdiag"]`` (the dm form's PRIMDIAG); its verbatim, subtype
  and time since diagnosis come from ``data/mh_diseases.csv``; aplastic anemia is VSAA when the
  subject's screening ANC (the simulated lb value) is < 0.2 x 10^9/L (Camitta), else SAA;
- the diagnosis precedes the first line, every line ends at least ``min_gap_days`` (21) before
  consent (the 2-week wash-out of the protocols before screening/lymphodepletion), and a
  prior HSCT sits between the last two lines (it consolidated a remission that later relapsed,
  so the line before it is a CR); a GvHD history follows an allogeneic HSCT and ended at least
  5 weeks before consent (the 4-week GvHD exclusion);
- the number of lines is drawn within ``[simulation.history] prior_lines`` of the study (r/r
  disease needs >= 1; "after all standard treatments" >= 2); the best response to each line
  follows ``data/prior_response.csv`` (first, middle, last line of the family).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import NODAY, cdash_date, partial_month, table
from pipeline.simulate.subjects import stream

#: defaults of ``[simulation.history]`` (a study overrides them)
HISTORY_DEFAULTS: dict = {
    "prior_lines": [1, 4],
    "prior_hsct_rate": 0.0,
    "prior_hsct_type": "ALLOGENEIC HEMATOPOIETIC STEM CELL TRANSPLANT",
    "prior_cart_rate": 0.0,
    "gvhd_history_rate": 0.35,
    "cns_history_item": "",
    "cns_history_rate": 0.0,
    "cns_ongoing_rate": 0.0,
    "min_gap_days": 21,
    "partial_day_rate": 0.08,
    "partial_month_rate": 0.02,
}
RESPONSES = ["CR", "CRi", "PR", "SD", "NR", "PD", "NE"]
GENERIC_HSCT = "HEMATOPOIETIC STEM CELL TRANSPLANT"
GVHD_TERM = "GRAFT VERSUS HOST DISEASE"


def history_settings(cfg: dict) -> dict:
    out = dict(HISTORY_DEFAULTS)
    out.update(cfg.get("history", {}) or {})
    return out


def _pick(rng: np.random.Generator, options: pd.DataFrame, n: int) -> np.ndarray:
    """n draws of options["regimen"] by weight (None when there is no option)."""
    if options.empty:
        rng.random(n)
        return np.full(n, None, dtype=object)
    w = options["weight"].astype(float).to_numpy()
    return options["regimen"].to_numpy(dtype=object)[rng.choice(len(options), n, p=w / w.sum())]


def _partial(days: np.ndarray, u: np.ndarray, h: dict) -> np.ndarray:
    """CDASH text of day numbers; a share day-unknown (UN-MMM-YYYY) or month-unknown (UN-UNK-YYYY)."""
    out = cdash_date(days)
    ok = days != NODAY
    pday = ok & (u < float(h["partial_day_rate"]))
    pmon = ok & (u >= 1 - float(h["partial_month_rate"]))
    if pday.any():
        out[pday] = partial_month(days[pday])
    if pmon.any():
        out[pmon] = np.array([f"UN-UNK-{t[-4:]}" for t in cdash_date(days[pmon])], dtype=object)
    return out


def screening_anc(study: Study, S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame) -> np.ndarray:
    """Each subject's screening neutrophil count (10^9/L, the simulated SI value), NaN if none."""
    scr = str(study.visits.sort_values("VISITNUM")["VISIT"].iloc[0])
    draw_i = D["i"].to_numpy()[L["draw"].to_numpy()]
    draw_v = D["VISIT"].to_numpy()[L["draw"].to_numpy()]
    sel = (L["test"].to_numpy() == "NEUT") & (draw_v == scr)
    anc = pd.Series(L["si"].to_numpy()[sel], index=draw_i[sel]).groupby(level=0).first()
    return anc.reindex(S["i"].to_numpy()).to_numpy(dtype=float)


def subject_disease(study: Study, S: pd.DataFrame, cfg: dict, anc: np.ndarray) -> pd.DataFrame:
    """Per subject: MHTERM, subtype, diagnosis day number and the prior-therapy plan."""
    rng = stream(cfg, "mh")
    h = history_settings(cfg)
    n = len(S)
    dis = table("mh_diseases")
    prim = S["primdiag"].astype(str).to_numpy()
    term = np.full(n, None, dtype=object)
    sub = np.full(n, None, dtype=object)
    lo = np.full(n, 6.0)
    hi = np.full(n, 36.0)
    u = rng.random(n)
    for p, g in dis.groupby("primdiag", sort=True):  # the few diseases of the table (metadata)
        sel = prim == p
        w = g["weight"].astype(float).to_numpy()
        cum = np.cumsum(w / w.sum())
        k = np.minimum(np.searchsorted(cum, u[sel], side="right"), len(g) - 1)
        term[sel] = g["mhterm"].to_numpy(dtype=object)[k]
        sub[sel] = g["subtype"].to_numpy(dtype=object)[k]
        lo[sel] = g["diag_months_min"].astype(float).to_numpy()[k]
        hi[sel] = g["diag_months_max"].astype(float).to_numpy()[k]
    unknown = pd.isna(term)
    term[unknown] = prim[unknown]
    vsaa = (sub == "SAA") & (anc < 0.2)
    sub[vsaa] = "VSAA"
    lines_lo, lines_hi = (int(x) for x in h["prior_lines"])
    nlines = rng.integers(lines_lo, lines_hi + 1, n)
    months = lo + rng.beta(1.4, 2.2, n) * (hi - lo)
    gap = int(h["min_gap_days"]) + rng.integers(0, 70, n)
    # enough time for the lines: >= 45 days per line between diagnosis and the wash-out
    span = np.maximum(np.round(months * 30.44).astype(int), gap + 45 * np.maximum(nlines, 1) + 7)
    icdat = S["icdat"].to_numpy().astype(np.int64)
    diag = icdat - span
    hsct = (nlines >= 2) & (rng.random(n) < float(h["prior_hsct_rate"]))
    cart = (sub == "B-ALL") & (nlines >= 2) & (rng.random(n) < float(h["prior_cart_rate"]))
    return pd.DataFrame({"i": S["i"].to_numpy(), "mhterm": term, "subtype": sub, "diag": diag,
                         "nlines": nlines, "gap": gap, "hsct": hsct, "cart": cart,
                         "u_date": rng.random(n)})


def prior_lines(study: Study, P: pd.DataFrame, S: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """One row per prior line: subject, LINENUM, regimen, start and end day numbers, best response.

    The interval from diagnosis + 7 days to consent - gap is cut into ``nlines`` equal slots;
    line k starts in the first 40% of slot k and ends in its last 35% (ordered, no overlap).
    """
    rng = stream(cfg, "prtx")
    fam = study["response"]["family"]
    h = history_settings(cfg)
    i = np.repeat(P["i"].to_numpy(), P["nlines"].to_numpy())
    k = (pd.Series(i).groupby(i).cumcount().to_numpy() + 1) if len(i) else np.zeros(0, int)
    n = P.set_index("i")["nlines"].reindex(i).to_numpy()
    t0 = P.set_index("i")["diag"].reindex(i).to_numpy() + 7
    t1 = S["icdat"].to_numpy()[i] - P.set_index("i")["gap"].reindex(i).to_numpy()
    width = (t1 - t0) / np.maximum(n, 1)
    u1, u2, u3 = rng.random(len(i)), rng.random(len(i)), rng.random(len(i))
    start = np.floor(t0 + width * (k - 1 + 0.05 + 0.35 * u1)).astype(np.int64)
    end = np.floor(t0 + width * (k - 0.05 - 0.30 * u2)).astype(np.int64)
    end = np.where(k == n, t1, end)
    sub = P.set_index("i")["subtype"].reindex(i).to_numpy()
    regs = table("prior_regimens")
    reg = np.full(len(i), None, dtype=object)
    for s in np.unique(sub.astype(str)):  # the few subtypes of the study (metadata)
        sel = sub.astype(str) == s
        first = sel & (k == 1)
        later = sel & (k > 1)
        reg[first] = _pick(rng, regs[(regs["subtype"] == s) & (regs["position"] == "first")], int(first.sum()))
        reg[later] = _pick(rng, regs[(regs["subtype"] == s) & (regs["position"] == "later")], int(later.sum()))
    cart = P.set_index("i")["cart"].reindex(i).to_numpy() & (k == n)
    cart_reg = regs.loc[regs["position"] == "cart", "regimen"]
    if len(cart_reg):
        reg[cart] = cart_reg.iloc[0]
    # best response by position (first / middle / last line of the family)
    resp_t = table("prior_response")
    resp_t = resp_t[resp_t["family"] == fam].set_index("position")
    pos = np.where(k == n, "last", np.where(k == 1, "first", "middle"))
    best = np.full(len(i), "NE", dtype=object)
    ur = rng.random(len(i))
    for p in ("first", "middle", "last"):  # three positions (metadata)
        if p not in resp_t.index:
            continue
        w = resp_t.loc[p, RESPONSES].astype(float).to_numpy()
        cum = np.cumsum(w / w.sum())
        sel = pos == p
        best[sel] = np.array(RESPONSES, dtype=object)[np.minimum(np.searchsorted(cum, ur[sel], side="right"), len(RESPONSES) - 1)]
    # the line before a prior HSCT reached CR (the transplant consolidated it)
    hsct = P.set_index("i")["hsct"].reindex(i).to_numpy()
    before_hsct = hsct & (k == n - 1)
    best[before_hsct] = "CR"
    # a CAR-T failure: no response or relapse after it
    best[cart & ~np.isin(best, ["NR", "PD"])] = "NR"
    return pd.DataFrame({"i": i, "LINENUM": k, "CMTRT": reg, "start": start, "end": end,
                         "BESTRESP": best, "u": u3, "nlines": n})


def hsct_dates(P: pd.DataFrame, lines: pd.DataFrame) -> pd.Series:
    """Day number of the prior HSCT: midway between the end of line n-1 and the start of line n."""
    L = lines.set_index(["i", "LINENUM"])
    sel = P[P["hsct"]]
    key_prev = list(zip(sel["i"], sel["nlines"] - 1))
    key_last = list(zip(sel["i"], sel["nlines"]))
    prev_end = L["end"].reindex(key_prev).to_numpy()
    last_start = L["start"].reindex(key_last).to_numpy()
    return pd.Series(((prev_end + last_start) // 2).astype(np.int64), index=sel["i"].to_numpy())


def history_forms(study: Study, S: pd.DataFrame, cfg: dict, D: pd.DataFrame, L: pd.DataFrame) -> dict[str, tuple]:
    """The (subject index array, column dict) of the ``mh``, ``prtx`` and ``phsct`` forms."""
    h = history_settings(cfg)
    scr = str(study.visits.sort_values("VISITNUM")["VISIT"].iloc[0])
    P = subject_disease(study, S, cfg, screening_anc(study, S, D, L))
    lines = prior_lines(study, P, S, cfg)
    hdate = hsct_dates(P, lines)
    rng = stream(cfg, "phsct")
    n = len(S)
    icdat = S["icdat"].to_numpy().astype(np.int64)
    scr_date = S["scr_date"].to_numpy().astype(np.int64)

    # -- mh: primary diagnosis for every subject
    parts = [pd.DataFrame({"i": P["i"], "MHSPID": "PD", "MHCAT": "PRIMARY DIAGNOSIS", "MHTERM": P["mhterm"],
                           "MHPRESP": None, "MHOCCUR": None, "st": P["diag"], "en": NODAY,
                           "MHONGO": "Y", "DISSUBTP": P["subtype"], "u": P["u_date"]})]
    # -- CNS disease history (pre-specified), where the protocol's eligibility depends on it
    item = str(h["cns_history_item"])
    if item:
        u = rng.random((4, n))
        yes = u[0] < float(h["cns_history_rate"])
        ongoing = yes & (u[1] < float(h["cns_ongoing_rate"]))
        diag = P["diag"].to_numpy()
        st = np.where(yes, diag + np.floor(u[2] * np.maximum(icdat - diag - 30, 1)).astype(np.int64), NODAY)
        en = np.where(yes & ~ongoing, st + 14 + np.floor(u[3] * np.maximum(icdat - st - 28, 1)).astype(np.int64), NODAY)
        en = np.where(en != NODAY, np.minimum(en, icdat - 14), en)
        parts.append(pd.DataFrame({"i": S["i"].to_numpy(), "MHSPID": "MH-CNS", "MHCAT": "CNS DISEASE HISTORY",
                                   "MHTERM": item, "MHPRESP": "Y", "MHOCCUR": np.where(yes, "Y", "N"),
                                   "st": st, "en": en,
                                   "MHONGO": np.where(yes, np.where(ongoing, "Y", "N"), None),
                                   "DISSUBTP": None, "u": 0.5}))
    # -- GvHD history (pre-specified) for subjects after an allogeneic HSCT
    allo = "ALLOGENEIC" in str(h["prior_hsct_type"])
    if allo and len(hdate):
        g = rng.random((3, len(hdate)))
        yes = g[0] < float(h["gvhd_history_rate"])
        hs = hdate.to_numpy()
        ic = icdat[hdate.index.to_numpy()]
        st = np.where(yes, hs + 20 + np.floor(g[1] * 80).astype(np.int64), NODAY)
        en = np.where(yes, np.minimum(st + 30 + np.floor(g[2] * 170).astype(np.int64), ic - 35), NODAY)
        st = np.where(yes, np.minimum(st, en - 7), NODAY)
        parts.append(pd.DataFrame({"i": hdate.index.to_numpy(), "MHSPID": "MH-GVHD", "MHCAT": "GVHD HISTORY",
                                   "MHTERM": GVHD_TERM, "MHPRESP": "Y", "MHOCCUR": np.where(yes, "Y", "N"),
                                   "st": st, "en": en, "MHONGO": np.where(yes, "N", None),
                                   "DISSUBTP": None, "u": 0.5}))
    M = pd.concat(parts, ignore_index=True)
    M["_o"] = M["MHSPID"].map({"PD": 0, "MH-CNS": 1, "MH-GVHD": 2})
    M = M.sort_values(["i", "_o"], kind="stable").reset_index(drop=True)
    st = M["st"].to_numpy().astype(np.int64)
    en = M["en"].to_numpy().astype(np.int64)
    mh_cols = {"VISIT": np.full(len(M), scr, dtype=object), "MHDAT": scr_date[M["i"].to_numpy()],
               "MHSPID": M["MHSPID"].to_numpy(dtype=object), "MHCAT": M["MHCAT"].to_numpy(dtype=object),
               "MHTERM": M["MHTERM"].to_numpy(dtype=object), "MHPRESP": M["MHPRESP"].to_numpy(dtype=object),
               "MHOCCUR": M["MHOCCUR"].to_numpy(dtype=object),
               "MHSTDAT": _partial(st, M["u"].to_numpy(dtype=float), h), "MHENDAT": cdash_date(en),
               "MHONGO": M["MHONGO"].to_numpy(dtype=object), "DISSUBTP": M["DISSUBTP"].to_numpy(dtype=object)}

    # -- prtx: prior lines (start partial for some; the end of the last line is always known)
    ls = _partial(lines["start"].to_numpy().astype(np.int64), lines["u"].to_numpy(), h)
    prtx_cols = {"LINENUM": lines["LINENUM"].astype(str).to_numpy(dtype=object), "CMTRT": lines["CMTRT"].to_numpy(),
                 "CMSTDAT": ls, "CMENDAT": cdash_date(lines["end"].to_numpy().astype(np.int64)),
                 "BESTRESP": lines["BESTRESP"].to_numpy()}

    # -- phsct: the pre-specified question for everyone, and the transplants
    has = np.zeros(n, bool)
    has[hdate.index.to_numpy()] = True
    H = pd.DataFrame({"i": S["i"].to_numpy(), "PRSPID": np.where(has, "HSCT-1", "HSCT-0"),
                      "PROCCUR": np.where(has, "Y", "N"),
                      "PRTRT": np.where(has, str(h["prior_hsct_type"]), GENERIC_HSCT),
                      "day": pd.Series(hdate).reindex(S["i"].to_numpy()).fillna(NODAY).to_numpy().astype(np.int64)})
    phsct_cols = {"PRSPID": H["PRSPID"].to_numpy(dtype=object), "PROCCUR": H["PROCCUR"].to_numpy(dtype=object),
                  "PRTRT": H["PRTRT"].to_numpy(dtype=object), "PRSTDAT": cdash_date(H["day"].to_numpy())}
    return {"mh": (M["i"].to_numpy(), mh_cols), "prtx": (lines["i"].to_numpy(), prtx_cols),
            "phsct": (H["i"].to_numpy(), phsct_cols)}


__all__ = ["HISTORY_DEFAULTS", "history_settings", "history_forms", "subject_disease", "prior_lines", "hsct_dates"]
