"""Assemble the raw CRF forms of one study from the simulated subjects and events."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate import ae as ae_mod
from pipeline.simulate import cm as cm_mod
from pipeline.simulate import crs as crs_mod
from pipeline.simulate import deviations, eligibility, history, labs, procedures, response
from pipeline.simulate._util import NODAY, cdash_date, date_parts, hhmm, partial_month, plain_number
from pipeline.simulate.subjects import build_subjects, names, settings, stream, visit_days
from pipeline.spec import Spec

PLANT_COLUMNS = ["study", "subjid", "form", "item", "description"]


def _frame(spec: Spec, form: str, study: Study, S: pd.DataFrame, i: np.ndarray, cols: dict) -> pd.DataFrame:
    """A form in the raw contract's column order; dates given as day numbers become text."""
    spec_cols = spec.form_columns(form)
    n = len(i)
    out = {}
    for c, typ in zip(spec_cols["column"], spec_cols["type"]):
        if c == "STUDYID":
            v = np.full(n, study.studyid, dtype=object)
        elif c == "SITEID":
            v = S["SITEID"].to_numpy()[i].astype(object)
        elif c == "SUBJID":
            v = S["SUBJID"].to_numpy()[i].astype(object)
        elif c in cols:
            v = cols[c]
            if typ in ("date", "pdate") and np.asarray(v).dtype.kind in "iu":
                v = cdash_date(np.asarray(v, dtype=np.int64))
            elif typ == "time" and np.asarray(v).dtype.kind in "iu":
                v = hhmm(np.asarray(v))
            v = np.asarray(v, dtype=object)
        else:
            v = np.full(n, None, dtype=object)
        v = np.asarray(v, dtype=object)
        miss = pd.isna(v)
        if miss.any():
            v = v.copy()
            v[miss] = None
        out[c] = v
    return pd.DataFrame(out, columns=spec_cols["column"].tolist(), dtype=object)


def _dm(study, S, cfg, rng):
    n = len(S)
    gb = study.encoding.lower().replace("-", "") in ("gb18030", "gbk", "gb2312")
    py = names("pinyin")
    if gb:
        sur, giv = names("surname"), names("given")
        a, b, c = rng.integers(0, len(sur), n), rng.integers(0, len(giv), n), rng.integers(0, len(giv), n)
        three = rng.random(n) < 0.5
        init = np.array([sur[x] + giv[y] + (giv[z] if t else "") for x, y, z, t in zip(a, b, c, three)], dtype=object)
    else:
        a, b, c = (rng.integers(0, len(py), n) for _ in range(3))
        three = rng.random(n) < 0.6
        init = np.array([py[x][0] + py[y][0] + (py[z][0] if t else "") for x, y, z, t in zip(a, b, c, three)], dtype=object)
    hosp = np.array([f"ZY{v:07d}" for v in rng.integers(0, 10**7, n)], dtype=object)
    phone = np.array([f"1{p}{v:09d}" for p, v in zip(rng.choice([3, 5, 8], n), rng.integers(0, 10**9, n))], dtype=object)
    race = np.where(rng.random(n) < 0.99, "ASIAN", "NOT REPORTED").astype(object)
    eth = np.where(rng.random(n) < 0.97, "NOT HISPANIC OR LATINO", "NOT REPORTED").astype(object)
    birth = S["birth"].to_numpy()
    bp = S["bpartial"].to_numpy()
    btxt = cdash_date(birth)
    month_unknown = bp < 0.03
    by, _, _ = date_parts(birth)
    btxt = np.where(month_unknown, partial_month(birth), btxt)
    year_only = (bp >= 0.03) & (bp < 0.045)
    btxt = np.where(year_only, np.array([f"UN-UNK-{y:04d}" for y in by], dtype=object), btxt)
    cols = {
        "SUBJINIT": init, "HOSPNUM": hosp, "PHONE": phone,
        "ICDAT": S["icdat"].to_numpy(), "DMDAT": S["icdat"].to_numpy(), "BRTHDAT": btxt,
        "AGE": S["age"].astype(str).to_numpy().astype(object), "AGEU": np.full(n, "YEARS", dtype=object),
        "SEX": np.where(S["female"], "F", "M").astype(object), "RACE": race, "ETHNIC": eth,
        "COUNTRY": np.full(n, str(study.get("country", "CHN")), dtype=object),
        "PRIMDIAG": S["primdiag"].to_numpy(), "ENRYN": np.where(S["enrolled"], "Y", "N").astype(object),
        "ARMCD": S["armcd"].to_numpy(), "TRTYN": np.where(S["treated"], "Y", "N").astype(object),
    }
    return np.arange(n), cols


def _vs(study, S):
    scr = str(study.visits.sort_values("VISITNUM")["VISIT"].iloc[0])
    n = len(S)
    i = np.repeat(np.arange(n), 2)
    test = np.tile(np.array(["HEIGHT", "WEIGHT"], dtype=object), n)
    val = np.where(test == "HEIGHT", S["height"].to_numpy()[i], S["weight"].to_numpy()[i])
    return i, {"VISIT": np.full(len(i), scr, dtype=object), "VSDAT": S["scr_date"].to_numpy()[i],
               "VSTESTCD": test, "VSORRES": np.char.mod("%.1f", val).astype(object),
               "VSORRESU": np.where(test == "HEIGHT", "cm", "kg").astype(object)}


def _ie(S, failures):
    ok = S.index[S["enrolled"]].to_numpy()
    i = np.concatenate([ok, failures["i"].to_numpy().astype(int)])
    yn = np.concatenate([np.full(len(ok), "Y", dtype=object), np.full(len(failures), "N", dtype=object)])
    code = np.concatenate([np.full(len(ok), None, dtype=object), failures["ietestcd"].to_numpy().astype(object)])
    cat = np.concatenate([np.full(len(ok), None, dtype=object), failures["iecat"].to_numpy().astype(object)])
    order = np.lexsort((np.arange(len(i)), i))
    return i[order], {"IEDAT": S["scr_date"].to_numpy()[i[order]], "IEYN": yn[order],
                      "IETESTCD": code[order], "IECAT": cat[order]}


def _ex(study, S, rng):
    """Lymphodepletion per agent and day, then the CAR-T infusion (CART-1, and CART-2 the next
    day for a split infusion; the fractions add up to the arm's dose)."""
    T = S[S["treated"]]
    n = len(T)
    tr = study.treatments
    abbrev: dict = {}
    for t in tr.itertuples():  # the study's few treatments, not records
        a = str(t.extrt)[:3].upper()
        abbrev[t.extrt] = a if a not in abbrev.values() else f"{a}{len(abbrev)}"
    u = rng.random((4, n))
    i, d0, dose = T["i"].to_numpy(), T["d0"].to_numpy(), T["dose"].to_numpy()
    split, frac = T["split"].to_numpy(), T["split_frac"].to_numpy()
    parts = []

    def part(sel, spid, t, dose_text, day, start, dur):
        k = int(sel.sum())
        parts.append(pd.DataFrame({
            "i": i[sel], "EXSPID": spid, "EXCAT": t.excat, "EXTRT": t.extrt, "EXDOSE": dose_text,
            "EXDOSU": t.dosu, "EXDOSFRM": t.dosfrm, "EXSTDAT": d0[sel] + day, "st": start[sel],
            "EXENDAT": d0[sel] + day, "en": start[sel] + dur[sel] if np.ndim(dur) else start[sel] + dur,
        }, index=range(k)))

    for t in tr.itertuples():  # the study's few treatments, not records
        if t.excat == "CAR-T INFUSION":
            start = 13 * 60 + 30 + (u[0] * 120).astype(int)
            dur = 15 + (u[1] * 20).astype(int)
            whole = np.array([plain_number(round(x)) for x in dose], dtype=object)
            f1 = np.array([plain_number(round(x * f)) for x, f in zip(dose, frac)], dtype=object)
            f2 = np.array([plain_number(round(x) - round(x * f)) for x, f in zip(dose, frac)], dtype=object)
            part(~split, "CART-1", t, whole[~split], 0, start, dur)
            part(split, "CART-1", t, f1[split], 0, start, dur)
            part(split, "CART-2", t, f2[split], 1, start, dur)
        else:
            flu = abbrev[t.extrt].startswith("FLU")
            start = (9 if flu else 10) * 60 + (u[2] * 40).astype(int)
            for k, day in enumerate(t.days):
                part(np.ones(n, bool), f"LD-{abbrev[t.extrt]}-{k + 1}", t, plain_number(t.dose), day, start,
                     30 if flu else 60)
    X = pd.concat(parts, ignore_index=True)
    X = X.sort_values(["i", "EXSTDAT", "st", "EXSPID"], kind="stable").reset_index(drop=True)
    miss = rng.random(len(X)) < 0.02
    cols = {c: X[c].to_numpy().astype(object) for c in ("EXSPID", "EXCAT", "EXTRT", "EXDOSE", "EXDOSU", "EXDOSFRM")}
    cols.update({"EXROUTE": np.full(len(X), "INTRAVENOUS", dtype=object),
                 "EXSTDAT": X["EXSTDAT"].to_numpy().astype(np.int64), "EXENDAT": X["EXENDAT"].to_numpy().astype(np.int64),
                 "EXSTTIM": np.where(miss, -1, X["st"].to_numpy()), "EXENTIM": np.where(miss, -1, X["en"].to_numpy())})
    return X["i"].to_numpy(), cols


def significant(x: np.ndarray, digits: int = 3) -> np.ndarray:
    """``x`` rounded to ``digits`` significant figures (as a CRF records a cell count)."""
    x = np.asarray(x, dtype=float)
    mag = np.floor(np.log10(np.where(x > 0, x, 1.0)))
    return np.round(x / 10 ** (mag - digits + 1)) * 10 ** (mag - digits + 1)


def _ex_product(study, S, cfg, i, cols):
    """The cell product of each CAR-T administration (own random stream ``ex_product``):
    EXLOT (one manufactured lot per subject, shared by the fractions of a split infusion),
    EXCARTOT = the fraction's CAR+ cells/kg (EXDOSE) x the screening weight as recorded in vs,
    in 10^6 cells to 3 significant figures, EXVIAB viability (%) and EXTREFF transduction
    efficiency (%) of the lot (release ranges of autologous/allogeneic CAR-T products: viability
    80-98%, CAR+ 20-70%). Lymphodepletion rows get none."""
    n = len(i)
    car = cols["EXCAT"] == "CAR-T INFUSION"
    rs = stream(cfg, "ex_product")
    ns = len(S)
    lot_no = rs.permutation(ns) + 1
    viab = np.round(rs.uniform(80.0, 98.0, ns), 1)
    treff = np.round(rs.uniform(20.0, 70.0, ns), 1)
    weight = np.round(S["weight"].to_numpy(dtype=float), 1)     # as written to vs (one decimal)
    prefix = "".join(ch for ch in study.studyid if ch.isalnum())[-4:].upper()
    dose = pd.to_numeric(pd.Series(cols["EXDOSE"]), errors="coerce").where(car).to_numpy(dtype=float)
    total = significant(dose * weight[i] / 1e6)
    lot = np.char.add(f"{prefix}-L", np.char.zfill(lot_no[i].astype(str), 4)).astype(object)
    text = np.array([np.format_float_positional(t, precision=3, unique=False, fractional=False, trim="-")
                     if c else None for t, c in zip(total, car)], dtype=object)   # CAR-T rows only
    return {"EXLOT": np.where(car, lot, None), "EXCARTOT": text,
            "EXVIAB": np.where(car, np.char.mod("%.1f", viab[i]), None).astype(object),
            "EXTREFF": np.where(car, np.char.mod("%.1f", treff[i]), None).astype(object)}


def _ds(study, S, failures):
    fam = study["response"]["family"]
    rows = []
    for s in S.itertuples():  # one disposition row per subject (subject level, not the record path)
        if s.status == "SF":
            rows.append((s.i, "SCREEN FAILURE", "SCREEN FAILURE", s.scr_date, None, None, s.scr_date))
        elif s.status == "NT":
            day = s.scr_date + s.nt_day
            if s.nt_death:
                cause = "DISEASE PROGRESSION" if fam == "leukemia" else "INFECTION"
                rows.append((s.i, "DEATH", "DEATH BEFORE CAR-T INFUSION", day, day, cause, None))
            else:
                rows.append((s.i, "PHYSICIAN DECISION", "CAR-T MANUFACTURING FAILURE", day, None, None, day))
        elif s.died:
            day = s.d0 + s.death_day
            rows.append((s.i, "DEATH", "DEATH", day, day, s.death_cause, None))
        elif s.completed:
            rows.append((s.i, "COMPLETED", "COMPLETED FOLLOW-UP", s.last_visit_date, None, None, s.last_visit_date))
        elif s.withdrew:
            day = s.d0 + s.wd_day
            term = "WITHDREW CONSENT" if s.wd_kind == "WITHDRAWAL BY SUBJECT" else "LOST TO FOLLOW-UP"
            lka = day if s.wd_kind == "WITHDRAWAL BY SUBJECT" else s.last_visit_date
            rows.append((s.i, s.wd_kind, term, day, None, None, lka))
    X = pd.DataFrame(rows, columns=["i", "DSDECOD", "DSTERM", "DSSTDAT", "DTHDAT", "DTHCAUS", "LKADAT"])
    cols = {c: X[c].to_numpy().astype(object) for c in ("DSDECOD", "DSTERM", "DTHCAUS")}
    for c in ("DSSTDAT", "DTHDAT", "LKADAT"):
        cols[c] = X[c].fillna(NODAY).to_numpy().astype(np.int64)
    return X["i"].to_numpy(), cols


def _extra_labs(study: Study, S: pd.DataFrame, D: pd.DataFrame, spec: Spec, cfg: dict, lb_cols: dict) -> dict:
    """The lab tests added for issue 16 (LDH, uric acid, ionized calcium, lipids, haptoglobin,
    pH; ``stream = own`` in ``data/lab_model.csv``), drawn at the same blood draws from a random
    stream of their own and appended after the original rows: the original panel's values,
    units, ranges and row numbers are those of a simulation without them."""
    T = labs.lab_tables(spec, stream="own")
    if T.empty:
        return lb_cols
    rx = stream(cfg, "lab_extra")
    L = labs.lab_values(study, S, D, T, rx)
    ranges = labs.site_ranges(study, T, rx)
    cols, _ = labs.lab_form(study, S, D, L, T, spec, cfg, ranges, rx)
    out = {}
    for k in lb_cols:  # form columns (a few dozen)
        a, x = np.asarray(lb_cols[k]), np.asarray(cols[k])
        same = a.dtype.kind == x.dtype.kind and a.dtype.kind in "iuf"  # day numbers stay numbers for _frame
        out[k] = np.concatenate([a, x]) if same else np.concatenate([a.astype(object), x.astype(object)])
    return out


def simulate_with_plants(study: Study, spec: Spec, n_subjects: int | None = None,
                         seed: int | None = None) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The forms of :func:`pipeline.simulate.simulate_study` and the table of planted items."""
    cfg = settings(study, n_subjects, seed)
    rng = np.random.Generator(np.random.PCG64(int(cfg["seed"])))
    plants: list[dict] = []
    S = build_subjects(study, cfg, rng)
    V = visit_days(study, S, rng)
    S = procedures.plan_hsct(study, cfg, S)       # own stream: the shared draws are unchanged
    failures = eligibility.plan_screen_failures(study, S, rng)
    grid = crs_mod.daily_grid(S)
    crs_cols = crs_mod.crs_form(grid, rng)

    T = labs.lab_tables(spec)
    D = labs.draws(study, S, V, rng)
    L = labs.lab_values(study, S, D, T, rng)
    ranges = labs.site_ranges(study, T, rng)
    L, elig_plants = eligibility.apply_eligibility(study, S, D, L, ranges, spec, failures, rng)
    plants += elig_plants
    leuk = response.plan_leukemia_plants(study, S, V)
    overrides = response.count_overrides(study, V, leuk)
    if overrides:
        vis = D["VISIT"].to_numpy()[L["draw"].to_numpy()]
        si = L["si"].to_numpy().copy()
        locked = L["locked"].to_numpy().copy()
        for i, visit, test, val in overrides:
            sel = (L["i"].to_numpy() == i) & (vis == visit) & (L["test"].to_numpy() == test)
            si[sel] = val
            locked[sel] = True
        L["si"] = si
        L["locked"] = locked
    # after an allogeneic HSCT the counts follow the transplant (conditioning nadir, engraftment);
    # changes values only, so lab_form draws the same numbers; rs and ae see the new counts
    L = procedures.apply_hsct_to_labs(S, D, L, cfg)
    lb_cols, L = labs.lab_form(study, S, D, L, T, spec, cfg, ranges, rng)
    lb_cols = _extra_labs(study, S, D, spec, cfg, lb_cols)
    lb_cols = procedures.merge_lab_columns(lb_cols, procedures.hsct_daily_labs(study, S, D, T, ranges, cfg))
    rs_cols = response.rs_form(study, S, V, D, L, rng, leuk, plants, cfg)
    emd_cols = response.emd_form(study, S, rs_cols, cfg, plants)
    ae_cols = ae_mod.build_ae(study, S, grid, D, L, ranges, cfg, rng, plants)
    # a few visits held outside the deviation rules' windows (own stream): the drawn records of
    # the visit get the new date, before cm draws its records around the assessment dates
    shifts, window_plants = deviations.shift_window_visits(study, cfg, S, V, deviations.event_days(ae_cols))
    plants += window_plants
    D = deviations.shift_draws(D, shifts)
    rs_cols = deviations.shift_dates(rs_cols, "RSDAT", shifts)
    emd_cols = deviations.shift_dates(emd_cols, "TRDAT", shifts)
    lb_cols = deviations.shift_dates(lb_cols, "LBDAT", shifts)
    # the glucocorticoid dose of each assessment is a CM record (form cm), not an rs column
    rs_gc = {k: rs_cols[k] for k in ("_i", "RSDAT", "GCDOSE")} if "GCDOSE" in rs_cols else None
    cm_cols = cm_mod.build_cm(study, S, grid, crs_cols, ae_cols, D, L, rs_cols, rs_gc, cfg)
    # a planned visit of the DLT window not held (own stream; its records are removed below)
    missed, missed_plants = deviations.missed_visits(study, cfg, S, V, grid, deviations.event_days(ae_cols, cm_cols))
    plants += missed_plants

    forms: dict[str, pd.DataFrame] = {}
    i, cols = _dm(study, S, cfg, rng)
    forms["dm"] = _frame(spec, "dm", study, S, i, cols)
    i, cols = _vs(study, S)
    forms["vs"] = _frame(spec, "vs", study, S, i, cols)
    i, cols = _ie(S, failures)
    forms["ie"] = _frame(spec, "ie", study, S, i, cols)
    i, cols = _ex(study, S, rng)
    cols.update(_ex_product(study, S, cfg, i, cols))
    forms["ex"] = _frame(spec, "ex", study, S, i, cols)

    # ae: partial dates become text after the plain dates are formatted
    st = cdash_date(ae_cols["AESTDAT"])
    en = cdash_date(ae_cols["AEENDAT"])
    sp, ep = ae_cols["_st_partial"], ae_cols["_en_partial"]
    if sp.any():
        st[sp] = partial_month(ae_cols["AESTDAT"][sp])
    if ep.any():
        en[ep] = partial_month(ae_cols["AEENDAT"][ep])
    ae_cols = dict(ae_cols, AESTDAT=st, AEENDAT=en)
    forms["ae"] = _frame(spec, "ae", study, S, ae_cols["_i"], ae_cols)
    forms["crs"] = _frame(spec, "crs", study, S, grid["i"].to_numpy(), crs_cols)
    forms["cm"] = _frame(spec, "cm", study, S, cm_cols["_i"], cm_cols)
    forms["lb"] = _frame(spec, "lb", study, S, lb_cols["_i"], lb_cols)
    forms["rs"] = _frame(spec, "rs", study, S, rs_cols["_i"], rs_cols)
    forms["emd"] = _frame(spec, "emd", study, S, emd_cols["_i"], emd_cols)
    i, cols = _ds(study, S, failures)
    forms["ds"] = _frame(spec, "ds", study, S, i, cols)
    # medical history, prior lines and prior HSCT: their own random streams (history.py)
    for form, (i, cols) in history.history_forms(study, S, cfg, D, L).items():
        forms[form] = _frame(spec, form, study, S, i, cols)
    i, cols = procedures.aph_form(study, cfg, S)
    forms["aph"] = _frame(spec, "aph", study, S, i, cols)
    i, cols = procedures.hsct_form(study, S)
    forms["hsct"] = _frame(spec, "hsct", study, S, i, cols)

    forms = deviations.drop_missed({f: forms[f] for f in spec.forms if f in forms}, S, missed)
    P = pd.DataFrame(plants, columns=["subject", "form", "item", "description"])
    P.insert(0, "study", study.studyid)
    P["subjid"] = S["SUBJID"].to_numpy()[P["subject"].astype(int).to_numpy()] if len(P) else []
    P = P[PLANT_COLUMNS].sort_values(["form", "item", "subjid"], kind="stable").reset_index(drop=True)
    return forms, P
