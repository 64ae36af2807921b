"""Screen failures, eligibility rows (form ``ie``) and screening labs against ``[[eligibility_labs]]``.

- Enrolled subjects' screening labs are moved inside every eligibility threshold of the study
  (multiples of the site ULN, absolute SI limits, groups with ``min_met``, and creatinine
  clearance by Cockcroft-Gault from creatinine, age, weight and sex: Cockcroft & Gault,
  Nephron 1976), except the planted violators below.
- Planted (the eligibility-labs report has content): one treated subject fails the first
  ULN-based criterion at 1.28 x its limit (e.g. ALT 3.2 x ULN against <= 2.5 x ULN); in a
  study with a grouped criterion (severe aplastic anemia: two of ANC < 0.5, PLT < 20,
  RETI < 20) another treated subject meets one criterion fewer than needed.
- About half of the screen failures fail a laboratory criterion (their screening value is on
  the wrong side of the limit); the others fail a criterion of the study's TI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study

CG_CONST = {"age_from": 140.0, "divisor": 72.0, "female": 0.85}   # Cockcroft-Gault 1976


def ti_table(study: Study) -> pd.DataFrame:
    """The study's criteria (``[[ti]]``); without them, the eligibility-lab criterion ids."""
    ti = pd.DataFrame(study.get("ti", []) or [])
    if not ti.empty and {"ietestcd", "iecat"} <= set(ti.columns):
        return ti[["ietestcd", "iecat"]].astype(str).drop_duplicates("ietestcd").reset_index(drop=True)
    el = pd.DataFrame(study.get("eligibility_labs", []) or [])
    codes = el["criterion"].astype(str).drop_duplicates().tolist() if not el.empty else ["IN01"]
    return pd.DataFrame({"ietestcd": codes,
                         "iecat": ["EXCLUSION" if c.startswith("EX") else "INCLUSION" for c in codes]})


def lab_criteria(study: Study) -> pd.DataFrame:
    el = pd.DataFrame(study.get("eligibility_labs", []) or [])
    if el.empty:
        return pd.DataFrame(columns=["criterion", "lbtestcd", "op", "value", "basis", "group", "min_met"])
    for c in ("group", "min_met"):
        if c not in el.columns:
            el[c] = None
    el["group"] = el["group"].where(el["group"].notna(), None)
    return el.reset_index(drop=True)


def plan_screen_failures(study: Study, S: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Criteria not met by each screen failure: columns i, ietestcd, iecat, lab_row (-1 if not a lab)."""
    ti = ti_table(study)
    el = lab_criteria(study)
    sf = S.index[S["status"] == "SF"].to_numpy()
    k = len(sf)
    use_lab = rng.random(k) < 0.5
    lab_pick = rng.integers(0, max(len(el), 1), k)
    ti_pick = rng.integers(0, len(ti), k)
    second = rng.random(k) < 0.15
    ti_pick2 = rng.integers(0, len(ti), k)
    cat_of = dict(zip(ti["ietestcd"], ti["iecat"]))
    rows = []
    for j, i in enumerate(sf):
        if use_lab[j] and len(el):
            r = int(lab_pick[j])
            code = str(el.loc[r, "criterion"])
            rows.append((i, code, cat_of.get(code, "EXCLUSION" if code.startswith("EX") else "INCLUSION"), r))
        else:
            rows.append((i, ti.loc[ti_pick[j], "ietestcd"], ti.loc[ti_pick[j], "iecat"], -1))
        if second[j] and ti.loc[ti_pick2[j], "ietestcd"] != rows[-1][1]:
            rows.append((i, ti.loc[ti_pick2[j], "ietestcd"], ti.loc[ti_pick2[j], "iecat"], -1))
    return pd.DataFrame(rows, columns=["i", "ietestcd", "iecat", "lab_row"])


def _crcl_creat_limit(S: pd.DataFrame, i: np.ndarray, crcl: float, creat_factor: float) -> np.ndarray:
    """Creatinine (SI) giving exactly ``crcl`` mL/min by Cockcroft-Gault."""
    age = S["age"].to_numpy()[i]
    wt = S["weight"].to_numpy()[i]
    sexf = np.where(S["female"].to_numpy()[i], CG_CONST["female"], 1.0)
    scr_mg = (CG_CONST["age_from"] - age) * wt * sexf / (CG_CONST["divisor"] * crcl)
    return scr_mg * creat_factor


def _holds(v, op, lim):
    return {"<": v < lim, "<=": v <= lim, ">": v > lim, ">=": v >= lim}[op]


def apply_eligibility(study: Study, S: pd.DataFrame, D: pd.DataFrame, L: pd.DataFrame, ranges: pd.DataFrame,
                      spec, failures: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, list[dict]]:
    """Move screening lab values to match each subject's eligibility; returns L and the plants."""
    el = lab_criteria(study)
    plants: list[dict] = []
    L = L.copy()
    if "locked" not in L.columns:
        L["locked"] = False
    if el.empty or L.empty:
        return L, plants
    units = spec.rule("lab_units")
    cf = units[(units["lbtestcd"] == "CREAT") & (units["raw_unit"] == "mg/dL")]["to_si_factor"]
    creat_factor = float(cf.iloc[0]) if len(cf) else 88.402
    planned = D["planned"].to_numpy()[L["draw"].to_numpy()]
    scr_rows = planned == D["planned"].min()
    si_vals = L["si"].to_numpy().copy()
    locked = L["locked"].to_numpy().copy()
    subj_i = L["i"].to_numpy()
    site_i = S["site_i"].to_numpy()[subj_i]
    female = S["female"].to_numpy()[subj_i]
    rr = ranges.set_index(["site_i", "test", "female"])

    scr = np.flatnonzero(scr_rows)
    scr_map = {t: pd.Series(scr[L["test"].to_numpy()[scr] == t], index=subj_i[scr[L["test"].to_numpy()[scr] == t]])
               for t in np.unique(L["test"].to_numpy()[scr])}

    def rows_of(test, who, keep_shape=False):
        s = scr_map.get(test)
        if s is None:
            r = np.full(len(who), -1)
        else:
            s = s[~s.index.duplicated()]
            r = s.reindex(np.asarray(who)).fillna(-1).astype(int).to_numpy()
        return r if keep_shape else r[r >= 0]

    def limit(r, rows):
        """Limit in SI for criterion row r at the given L rows."""
        crit = el.loc[r]
        if crit["lbtestcd"] == "CRCL":
            return _crcl_creat_limit(S, subj_i[rows], float(crit["value"]), creat_factor)
        if str(crit["basis"]).upper() == "ULN":
            key = pd.MultiIndex.from_arrays([site_i[rows], np.repeat(crit["lbtestcd"], len(rows)), female[rows]])
            return float(crit["value"]) * rr["si_hi"].reindex(key).to_numpy()
        return np.full(len(rows), float(crit["value"]))

    def force(r, who, ok: bool, margin: float):
        """Make criterion r hold (ok) or fail for subjects ``who`` with a relative margin."""
        crit = el.loc[r]
        test = "CREAT" if crit["lbtestcd"] == "CRCL" else crit["lbtestcd"]
        op = str(crit["op"])
        if crit["lbtestcd"] == "CRCL":   # CrCl > x  <=>  creatinine < limit
            op = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
        rows = rows_of(test, who)
        if not len(rows):
            return rows
        lim = limit(r, rows)
        upper = op in ("<", "<=")
        if ok:
            target = lim * (1 - margin) if upper else lim * (1 + margin)
            bad = ~_holds(si_vals[rows], op, lim)
            si_vals[rows[bad]] = target[bad] * rng.uniform(0.75, 1.0, bad.sum()) if upper else target[bad] * rng.uniform(1.0, 1.2, bad.sum())
        else:
            si_vals[rows] = lim * (1 + margin) if upper else lim * (1 - margin)
        locked[rows] = True
        return rows

    treated = S.index[S["treated"]].to_numpy()
    enrolled = S.index[S["enrolled"]].to_numpy()
    # planted violators among the treated (chosen once, in a fixed order of draws)
    pick = rng.permutation(treated) if len(treated) else treated
    uln_rows = [r for r in el.index if str(el.loc[r, "basis"]).upper() == "ULN" and pd.isna(el.loc[r, "group"])]
    groups = [g for g in el["group"].dropna().unique()]
    planted_uln = int(pick[0]) if len(pick) > 0 and uln_rows else None
    planted_grp = int(pick[1]) if len(pick) > 1 and groups else None

    # 1. every enrolled subject meets every non-group criterion
    for r in el.index:
        if pd.isna(el.loc[r, "group"]):
            force(r, enrolled, ok=True, margin=0.12)
    # 2. groups: at least min_met criteria hold (one criterion fewer for the planted subject)
    for g in groups:
        rows_g = el.index[el["group"] == g].tolist()
        need = int(el.loc[rows_g[0], "min_met"] or len(rows_g))
        k = len(rows_g)
        met = np.zeros((len(enrolled), k), dtype=bool)
        for j, r in enumerate(rows_g):
            rw = rows_of(el.loc[r, "lbtestcd"], enrolled, keep_shape=True)
            ok = rw >= 0
            if ok.any():
                met[ok, j] = _holds(si_vals[rw[ok]], str(el.loc[r, "op"]), limit(r, rw[ok]))
        want = np.where(enrolled == planted_grp, need - 1, need)
        order = np.argsort(~met, axis=1, kind="stable")
        pos = np.argsort(order, axis=1, kind="stable")
        ok_mask = pos < want[:, None]
        for j, r in enumerate(rows_g):
            force(r, enrolled[ok_mask[:, j] & ~met[:, j]], ok=True, margin=0.2)
            if planted_grp is not None:
                sel = (enrolled == planted_grp) & ~ok_mask[:, j]
                force(r, enrolled[sel], ok=False, margin=0.2)
        if planted_grp is not None:
            plants.append({"subject": planted_grp, "form": "lb", "item": "ELIG-GROUP",
                           "description": f"enrolled although only {need - 1} of the {g} criteria "
                                          f"({el.loc[rows_g[0], 'criterion']}) are met at screening"})
    # 3. planted ULN violator
    if planted_uln is not None:
        r = uln_rows[0]
        force(r, [planted_uln], ok=False, margin=0.28)
        plants.append({"subject": planted_uln, "form": "lb", "item": "ELIG-ULN",
                       "description": f"enrolled with screening {el.loc[r, 'lbtestcd']} at 1.28 x the limit of "
                                      f"{el.loc[r, 'criterion']} ({el.loc[r, 'op']} {el.loc[r, 'value']} x ULN)"})
    # 4. screen failures with a laboratory criterion
    for f in failures[failures["lab_row"] >= 0].itertuples():  # a handful of planted screen failures
        r = int(f.lab_row)
        g = el.loc[r, "group"]
        if pd.isna(g):
            force(r, [f.i], ok=False, margin=0.3)
        else:
            for r2 in el.index[el["group"] == g]:
                force(r2, [f.i], ok=False, margin=0.3)
    L["si"] = si_vals
    L["locked"] = locked
    return L, plants
