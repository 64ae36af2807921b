"""Listing and summary-table content from the SDTM datasets: pure functions over DataFrames.

Every function takes exported SDTM frames (character variables as text with ``""`` for
missing, numerics as float) and returns a frame whose columns are SDTM variable names where
one exists, so that the listings take their headers from the spec. Nothing here reads or
writes files; :mod:`pipeline.report.listings` renders the results.

Conventions:

- *Treated subjects*: DM records whose reference start (``[population] treated_variable`` of
  ``specs/tlf/settings.toml``, RFSTDTC = first CAR-T infusion) is not empty; the denominator N.
- *Cohort*: the first non-empty of ``[population] cohort_variables`` (ACTARM, then ARM).
- *Day after infusion* (protocol day): infusion = day 0 = study day 1, SDTM has no day 0
  (SDTMIG 3.4 section 4.4.4), so the protocol day is ``--DY - 1`` for ``--DY >= 1`` and
  ``--DY`` before the infusion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from pipeline.derive.baseline import before_exposure
from pipeline.derive.dates import dtc_date


def text_values(s: pd.Series) -> np.ndarray:
    """Values as text, missing as ``""``: an object array of ``str``, as
    ``s.astype(object).where(s.notna(), "").astype(str)`` makes them. Done on the column's
    numpy array (a few pandas calls per column cost more than the texts of a small study);
    a column holding other things than texts (numbers, dates) is turned into text by pandas."""
    values = s.to_numpy(dtype=object)
    out = np.where(pd.isna(values), "", values)
    if infer_dtype(out, skipna=False) != "string":
        out = pd.Series(out, dtype=object).astype(str).to_numpy(dtype=object)
    return out


def text(s: pd.Series) -> pd.Series:
    """Values as text (``str`` dtype), missing as ``""`` (:func:`text_values`)."""
    return pd.Series(text_values(s), index=s.index, name=s.name, dtype=str)


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as text, or ``""`` everywhere when the frame lacks it."""
    if name in frame.columns:
        return text(frame[name])
    return pd.Series("", index=frame.index, dtype="object")


# ---------------------------------------------------------------------------------------
# subjects, supplemental qualifiers, days
# ---------------------------------------------------------------------------------------
def subjects(dm: pd.DataFrame, treated_variable: str, cohort_variables: list[str]) -> pd.DataFrame:
    """One row per DM subject: USUBJID, COHORT, ``treated`` (bool) and the DM dates used by
    the listings (RFSTDTC, RFXSTDTC, RFPENDTC, DTHDTC, DTHFL), sorted by USUBJID."""
    out = pd.DataFrame({"USUBJID": column(dm, "USUBJID")})
    cohort = pd.Series("", index=dm.index, dtype="object")
    for var in reversed(cohort_variables):
        v = column(dm, var)
        cohort = v.where(v != "", cohort)
    out["COHORT"] = cohort
    out["treated"] = column(dm, treated_variable) != ""
    for var in ("RFSTDTC", "RFXSTDTC", "RFPENDTC", "DTHDTC", "DTHFL"):
        out[var] = column(dm, var)
    return out.sort_values("USUBJID", kind="mergesort").reset_index(drop=True)


def with_supp(parent: pd.DataFrame, supp: pd.DataFrame | None, idvar: str) -> pd.DataFrame:
    """``parent`` with one column per QNAM of its SUPP-- records (SDTMIG 3.4 section 8.4:
    matched on USUBJID and IDVAR/IDVARVAL = ``idvar``), ``""`` where a record has none."""
    out = parent.copy()
    if supp is None or supp.empty or idvar not in parent.columns:
        return out
    s = supp[column(supp, "IDVAR") == idvar]
    if s.empty:
        return out
    key = text(pd.to_numeric(out[idvar], errors="coerce").round().astype("Int64"))
    wide = s.assign(_k=column(s, "IDVARVAL").str.strip()).pivot_table(
        index=["USUBJID", "_k"], columns="QNAM", values="QVAL", aggfunc="first")
    wide.columns = [str(c) for c in wide.columns]
    merged = pd.DataFrame({"USUBJID": text(out["USUBJID"]).to_numpy(), "_k": key.to_numpy()}).merge(
        wide.reset_index(), on=["USUBJID", "_k"], how="left")
    for q in wide.columns:
        if q not in out.columns:
            out[q] = text(merged[q]).to_numpy()
    return out


def days_after_infusion(dy: pd.Series) -> pd.Series:
    """Protocol day from a study day: ``dy - 1`` on or after the infusion (study day 1 = day
    0), ``dy`` before it (SDTMIG 3.4 section 4.4.4: no study day 0)."""
    d = pd.to_numeric(dy, errors="coerce")
    return d.where(d < 1, d - 1)


def duration_days(start: pd.Series, end: pd.Series) -> pd.Series:
    """End date - start date + 1 (days), when both are complete dates; NaN otherwise."""
    return ((dtc_date(end) - dtc_date(start)).dt.days + 1).astype("float64")


def grade_number(grade: pd.Series) -> pd.Series:
    """A toxicity grade (text "0".."5") as a number; NaN when missing or not a number."""
    return pd.to_numeric(text(grade), errors="coerce")


def grade_text(grade: pd.Series, missing: str) -> pd.Series:
    """A numeric toxicity grade as displayed: the whole number as text (``2.0`` -> ``"2"``,
    truncated like ``int``), or ``missing`` when there is none."""
    whole = grade.fillna(0).astype("int64").astype(str)
    return whole.where(grade.notna(), missing)


def with_cohort(frame: pd.DataFrame, subj: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the subject's COHORT."""
    out = frame.copy()
    out["COHORT"] = text(out["USUBJID"]).map(subj.set_index("USUBJID")["COHORT"]).fillna("")
    return out


def _sort(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    cols = [c for c in by if c in frame.columns]
    return frame.sort_values(cols, kind="mergesort").reset_index(drop=True) if cols else frame.reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# adverse events
# ---------------------------------------------------------------------------------------
def ae_listing(ae: pd.DataFrame, suppae: pd.DataFrame | None, subj: pd.DataFrame) -> pd.DataFrame:
    """Every AE record with its SUPPAE qualifiers and the subject's cohort, by subject and
    start date."""
    out = with_cohort(with_supp(ae, suppae, "AESEQ"), subj)
    return _sort(out, ["USUBJID", "AESTDTC", "AESEQ"])


def cm_listing(cm: pd.DataFrame, subj: pd.DataFrame, categories: list[str] | None = None) -> pd.DataFrame:
    """Every CM record (of ``categories`` when given) with the subject's cohort, by subject,
    start date and CMSEQ."""
    out = cm if not categories else cm[column(cm, "CMCAT").isin(categories)]
    return _sort(with_cohort(out, subj), ["USUBJID", "CMSTDTC", "CMSEQ"])


def countable_teae(ae: pd.DataFrame) -> pd.DataFrame:
    """AEs that count in incidence tables: treatment emergent (AETRTEM = Y when the column
    exists, e.g. from ADaM; else an onset on or after the first infusion, AESTDY >= 1, with a
    partial or missing onset counted) and not an investigator duplicate of an ASTCT-derived
    episode (ASTCTDUP = Y, older builds)."""
    keep = pd.Series(True, index=ae.index)
    if "AETRTEM" in ae.columns:
        keep &= column(ae, "AETRTEM") == "Y"
    elif "AESTDY" in ae.columns:
        day = pd.to_numeric(ae["AESTDY"], errors="coerce")
        keep &= day.isna() | (day >= 1)
    if "ASTCTDUP" in ae.columns:
        keep &= column(ae, "ASTCTDUP") != "Y"
    return ae[keep]


def ae_summary_counts(ae: pd.DataFrame, treated: pd.Series, not_coded: str) -> pd.DataFrame:
    """Subjects by worst grade, per term, per system organ class and for any event.

    ``ae``: the AEs to count (:func:`countable_teae`) of the ``treated`` subjects. A subject
    counts once per row at the worst numeric AETOXGR of its records in the row; a subject
    whose records in the row all lack a grade counts under ``grade`` = ``"missing"``. Uncoded
    records (AEDECOD empty) are grouped under the system organ class ``not_coded`` with their
    verbatim term. Columns: ``level`` (any/soc/term), ``soc``, ``term``, ``grade`` (a number
    as text, or missing), ``n``; plus one ``grade`` = ``"any"`` row per (level, soc, term).
    """
    a = ae[text(ae["USUBJID"]).isin(set(treated))]
    decod = column(a, "AEDECOD")
    coded = decod != ""
    d = pd.DataFrame({
        "USUBJID": text(a["USUBJID"]),
        "soc": column(a, "AEBODSYS").where(coded, not_coded),
        "term": decod.where(coded, column(a, "AETERM")),
        "g": grade_number(column(a, "AETOXGR")),
    })
    levels = [("any", []), ("soc", ["soc"]), ("term", ["soc", "term"])]
    frames = []
    for level, keys in levels:
        per = d.groupby(["USUBJID", *keys], sort=False)["g"].max().reset_index()
        per["grade"] = grade_text(per["g"], "missing")
        for k in ("soc", "term"):
            if k not in per:
                per[k] = ""
        by_grade = per.groupby(["soc", "term", "grade"]).size().rename("n").reset_index()
        anyg = per.groupby(["soc", "term"]).size().rename("n").reset_index().assign(grade="any")
        frames.append(pd.concat([by_grade, anyg], ignore_index=True).assign(level=level))
    out = pd.concat(frames, ignore_index=True)
    return out[["level", "soc", "term", "grade", "n"]].sort_values(
        ["level", "soc", "term", "grade"], kind="mergesort").reset_index(drop=True)


def percent(n: pd.Series | int, total: int) -> pd.Series:
    """``n (x.x%)`` text; ``0`` without a percentage."""
    n = pd.Series(n, dtype="float64") if not isinstance(n, pd.Series) else n.astype("float64")
    pct = (100.0 * n / total) if total else n * np.nan
    txt = n.astype("Int64").astype(str) + " (" + pct.map(lambda v: f"{v:.1f}") + "%)"
    return txt.where(n > 0, "0")


def ae_summary_table(counts: pd.DataFrame, n_treated: int, grades: list[str], labels: dict[str, str]) -> pd.DataFrame:
    """The AE summary as displayed: one row for any event, then each system organ class
    followed by its terms (by descending number of subjects, then name); columns soc, term,
    one per grade (``labels['grade'] n``), missing when any, and any grade, each ``n (%)``."""
    if counts.empty:
        return pd.DataFrame(columns=["soc", "term"])
    wide = counts.pivot_table(index=["level", "soc", "term"], columns="grade", values="n", aggfunc="sum",
                              fill_value=0)
    show = [g for g in grades] + (["missing"] if "missing" in wide.columns else []) + ["any"]
    for g in show:
        if g not in wide.columns:
            wide[g] = 0
    table = summary_rows(wide[show].reset_index(), labels.get("any_event", "Any adverse event"))
    out = pd.DataFrame({"soc": table["soc"].to_numpy(), "term": table["term"].to_numpy()})
    for g in show:
        head = labels["any_grade"] if g == "any" else labels["missing_grade"] if g == "missing" else f"{labels['grade']} {g}"
        out[head] = percent(table[g].reset_index(drop=True), n_treated).to_numpy()
    return out


def summary_rows(wide: pd.DataFrame, any_event: str) -> pd.DataFrame:
    """The rows of the AE summary in display order: the ``any`` row (soc = ``any_event``),
    then each system organ class (``soc`` rows, by descending ``any`` then name), each
    followed by its terms (``term`` rows, by descending ``any`` then name); soc rows show no
    term, term rows no soc. ``wide``: one row per (level, soc, term) with its ``any`` count.
    Terms of a class without its own row are left out (there are none: both are counted from
    the same records). One sort on (class rank, soc row first, -any, term) instead of a
    filter and a sort per class."""
    level = wide["level"].to_numpy()
    socs = wide[level == "soc"].sort_values(["any", "soc"], ascending=[False, True], kind="mergesort")
    rank = pd.Series(np.arange(1, len(socs) + 1, dtype="float64"), index=socs["soc"].to_numpy())
    group = np.where(level == "any", 0.0, wide["soc"].map(rank).to_numpy(dtype="float64", na_value=np.nan))
    keys = pd.DataFrame({"group": group, "is_term": level == "term", "any": wide["any"].to_numpy(),
                         "term": wide["term"].to_numpy()})
    keys = keys[~np.isnan(group) & np.isin(level, ["any", "soc", "term"])]
    order = keys.sort_values(["group", "is_term", "any", "term"], ascending=[True, True, False, True],
                             kind="mergesort").index
    table = wide.loc[order].reset_index(drop=True)
    lev = table["level"].to_numpy()
    table["soc"] = np.where(lev == "any", any_event, np.where(lev == "term", "", table["soc"].to_numpy(dtype=object)))
    table["term"] = np.where(lev == "term", table["term"].to_numpy(dtype=object), "")
    return table


def crs_icans_listing(ae: pd.DataFrame, subj: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """CRS/ICANS records (AEDECOD in ``terms``): onset day after infusion (``ONSETDAY``) and
    duration in days (``DURATION``), worst grade = AETOXGR of the record."""
    c = ae[column(ae, "AEDECOD").isin(set(terms))].copy()
    c["ONSETDAY"] = days_after_infusion(c["AESTDY"]) if "AESTDY" in c else np.nan
    c["DURATION"] = duration_days(column(c, "AESTDTC"), column(c, "AEENDTC"))
    return _sort(with_cohort(c, subj), ["USUBJID", "AEDECOD", "AESTDTC", "AESEQ"])


def dlt_listing(ae: pd.DataFrame, subj: pd.DataFrame, window_days: int, min_grade: int | None = None) -> pd.DataFrame:
    """AEs with onset in the DLT window: SUPPAE.DLTWINFL = Y when the qualifier exists, else a
    treatment-emergent onset on protocol days 0..``window_days``; ASTCT duplicates excluded;
    with ``min_grade``, only AEs of at least that grade. By subject, worst grade first."""
    c = ae.copy()
    c["ONSETDAY"] = days_after_infusion(c["AESTDY"]) if "AESTDY" in c else np.nan
    if "DLTWINFL" in c.columns:
        inside = column(c, "DLTWINFL") == "Y"
    else:
        inside = c["ONSETDAY"].between(0, window_days)
        if "AETRTEM" in c.columns:
            inside &= column(c, "AETRTEM") == "Y"
    if "ASTCTDUP" in c.columns:
        inside &= column(c, "ASTCTDUP") != "Y"
    if min_grade is not None:
        inside &= grade_number(column(c, "AETOXGR")) >= min_grade
    c = with_cohort(c[inside], subj)
    c["_g"] = -grade_number(column(c, "AETOXGR")).fillna(-1)
    return _sort(c, ["USUBJID", "_g", "AESTDTC", "AESEQ"]).drop(columns="_g")


def dlt_flagged(adae: pd.DataFrame, subj: pd.DataFrame, evaluable: pd.Series | None = None) -> pd.DataFrame:
    """ADAE records flagged as dose-limiting toxicities (DLTFL = Y) with the cohort, of the
    ``evaluable`` subjects when given; by subject and analysis start date."""
    keep = column(adae, "DLTFL") == "Y"
    if evaluable is not None:
        keep &= text(adae["USUBJID"]).isin(set(evaluable))
    c = with_cohort(adae[keep], subj)
    return _sort(c, ["USUBJID", "ASTDT", "AESEQ"])


#: SAS dates count days from 1960-01-01
SAS_EPOCH = pd.Timestamp("1960-01-01")


def adam_dates_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric ADaM dates (``*DT``, SAS days since 1960-01-01; ADaMIG 1.3 section 3.3.3
    naming) as ISO 8601 dates for display; other columns unchanged."""
    out = frame.copy()
    for c in out.columns:
        if c.endswith("DT") and pd.api.types.is_numeric_dtype(out[c]):
            days = pd.to_numeric(out[c], errors="coerce")
            iso = (SAS_EPOCH + pd.to_timedelta(days, unit="D")).dt.strftime("%Y-%m-%d")
            out[c] = iso.where(days.notna(), "")
    return out


# ---------------------------------------------------------------------------------------
# laboratory
# ---------------------------------------------------------------------------------------
def lab_worst_grades(lb: pd.DataFrame, subj: pd.DataFrame) -> pd.DataFrame:
    """Per subject, test and CTCAE term: baseline grade and worst post-baseline grade.

    Graded records: LBTOXGR not empty. The terms of a test are the LBTOX values of its graded
    records; a record graded for another term of the same test (two-direction tests) counts as
    grade 0 for the term. Baseline: LBLOBXFL = Y. Post-baseline: dated after DM.RFXSTDTC
    (:func:`pipeline.derive.baseline.before_exposure`). Subjects with at least one graded
    post-baseline record. Columns USUBJID, LBTESTCD, LBTEST, LBTOX, baseline (number or NaN),
    worst (number).
    """
    g = lb[column(lb, "LBTOXGR") != ""].copy()
    cols = ["USUBJID", "LBTESTCD", "LBTEST", "LBTOX", "baseline", "worst"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    g["USUBJID"] = text(g["USUBJID"])
    rfx = g["USUBJID"].map(subj.set_index("USUBJID")["RFXSTDTC"]).fillna("")
    g["post"] = (rfx != "") & dtc_date(column(g, "LBDTC")).notna() & ~before_exposure(column(g, "LBDTC"), rfx)
    g["base"] = column(g, "LBLOBXFL") == "Y"
    g["grade"] = grade_number(g["LBTOXGR"])
    g["LBTOX"] = column(g, "LBTOX")
    g["LBTEST"] = column(g, "LBTEST")
    terms = g[g["LBTOX"] != ""].drop_duplicates(["LBTESTCD", "LBTOX"])[["LBTESTCD", "LBTOX"]]
    x = g.rename(columns={"LBTOX": "rec_tox"}).merge(terms, on="LBTESTCD")
    x["g"] = np.where(x["rec_tox"] == x["LBTOX"], x["grade"], 0.0)
    keys = ["USUBJID", "LBTESTCD", "LBTOX"]
    base = x[x["base"]].groupby(keys)["g"].max().rename("baseline")
    worst = x[x["post"]].groupby(keys)["g"].max().rename("worst")
    name = x.groupby("LBTESTCD")["LBTEST"].first()
    out = pd.concat([worst, base], axis=1).reset_index()
    out = out[out["worst"].notna()]
    out["LBTEST"] = out["LBTESTCD"].map(name).fillna("")
    return out[cols].sort_values(keys, kind="mergesort").reset_index(drop=True)


def lab_shift_table(worst: pd.DataFrame, grades: list[str], labels: dict[str, str],
                    keys: tuple[str, str, str] = ("LBTESTCD", "LBTEST", "LBTOX")) -> pd.DataFrame:
    """Shift table: per test and term, one row per baseline grade (``grades``, then missing
    when any), one column per worst post-baseline grade, and the total; cells = subjects.
    ``keys``: the worst frame's test code, test name and term columns (SDTM LB names, or
    PARAMCD, PARAM, ATOXDSC for :func:`adlb_worst_grades`)."""
    cols = list(keys) + ["baseline_grade"] + [f"{labels['grade']} {g}" for g in grades] + ["total"]
    if worst.empty:
        return pd.DataFrame(columns=cols)
    w = worst.rename(columns=dict(zip(keys, ("LBTESTCD", "LBTEST", "LBTOX"))))
    w["b"] = grade_text(w["baseline"], labels["missing_grade"])
    w["p"] = w["worst"].astype("int64").astype(str)  # a worst grade is never missing
    counts = w.groupby(["LBTESTCD", "LBTEST", "LBTOX", "b", "p"]).size().rename("n").reset_index()
    tests = w.drop_duplicates(["LBTESTCD", "LBTOX"])[["LBTESTCD", "LBTEST", "LBTOX"]]
    rows = [str(g) for g in grades]
    has_missing = set(w.loc[w["b"] == labels["missing_grade"], "LBTESTCD"] + "\0" + w.loc[w["b"] == labels["missing_grade"], "LBTOX"])
    grid = tests.merge(pd.DataFrame({"b": rows + [labels["missing_grade"]]}), how="cross")
    grid = grid[(grid["b"] != labels["missing_grade"]) | (grid["LBTESTCD"] + "\0" + grid["LBTOX"]).isin(has_missing)]
    wide = counts.pivot_table(index=["LBTESTCD", "LBTOX", "b"], columns="p", values="n", aggfunc="sum", fill_value=0)
    for g in rows:
        if g not in wide.columns:
            wide[g] = 0
    wide = wide[rows].reset_index()
    out = grid.merge(wide, on=["LBTESTCD", "LBTOX", "b"], how="left").fillna({g: 0 for g in rows})
    order = {b: i for i, b in enumerate(rows + [labels["missing_grade"]])}
    out["_o"] = out["b"].map(order)
    out = out.sort_values(["LBTESTCD", "LBTOX", "_o"], kind="mergesort").reset_index(drop=True)
    table = pd.DataFrame({"LBTESTCD": out["LBTESTCD"], "LBTEST": out["LBTEST"], "LBTOX": out["LBTOX"],
                          "baseline_grade": out["b"]})
    for g in rows:
        table[f"{labels['grade']} {g}"] = out[g].astype(int)
    table["total"] = table[[f"{labels['grade']} {g}" for g in rows]].sum(axis=1)
    return table.rename(columns=dict(zip(("LBTESTCD", "LBTEST", "LBTOX"), keys)))[cols]


def adlb_worst_grades(adlb: pd.DataFrame, population: pd.Series) -> pd.DataFrame:
    """Per subject of ``population``, parameter and CTCAE term, from ADLB: the baseline grade
    and the worst post-baseline grade of each direction (ADaMIG 1.3 low/high variables):
    the record flagged ANL01FL (low) / ANL02FL (high) by :func:`pipeline.adam.adlb.toxicity_shift`
    gives the term ATOXDSCL/ATOXDSCH, the worst grade ATOXGRL/ATOXGRH and the baseline grade
    BTOXGRL/BTOXGRH (NaN when the subject has no baseline grade). Columns USUBJID, PARAMCD,
    PARAM, ATOXDSC, baseline, worst."""
    cols = ["USUBJID", "PARAMCD", "PARAM", "ATOXDSC", "baseline", "worst"]
    parts = []
    pop = set(text(population))
    for flag, term, grade, base in (("ANL01FL", "ATOXDSCL", "ATOXGRL", "BTOXGRL"),  # two directions
                                    ("ANL02FL", "ATOXDSCH", "ATOXGRH", "BTOXGRH")):
        if flag not in adlb.columns:
            continue
        r = adlb[(column(adlb, flag) == "Y") & text(adlb["USUBJID"]).isin(pop)]
        parts.append(pd.DataFrame({
            "USUBJID": text(r["USUBJID"]), "PARAMCD": column(r, "PARAMCD"), "PARAM": column(r, "PARAM"),
            "ATOXDSC": column(r, term), "baseline": grade_number(column(r, base)),
            "worst": grade_number(column(r, grade))}))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["USUBJID", "PARAMCD", "ATOXDSC"], kind="mergesort").reset_index(drop=True)[cols]


# ---------------------------------------------------------------------------------------
# eligibility, response
# ---------------------------------------------------------------------------------------
def failed_eligibility(report: pd.DataFrame, subj: pd.DataFrame, fail: str = "FAIL") -> pd.DataFrame:
    """Rows of the eligibility-lab report whose criterion result is ``fail``, with the cohort;
    by subject and criterion."""
    r = report[column(report, "criterion_result") == fail]
    return _sort(with_cohort(r, subj), ["USUBJID", "IETESTCD", "LBTESTCD"])


def response_listing(rs: pd.DataFrame, subj: pd.DataFrame, testcodes: list[str]) -> pd.DataFrame:
    """RS records of ``testcodes`` with the cohort, by subject, evaluator and date."""
    r = rs[column(rs, "RSTESTCD").isin(set(testcodes))]
    r = with_cohort(r, subj)
    r["_t"] = column(r, "RSTESTCD").map({t: i for i, t in enumerate(testcodes)})
    return _sort(r, ["USUBJID", "RSEVAL", "_t", "RSDTC"]).drop(columns="_t")


def adam_parameter_listing(adam: pd.DataFrame, subj: pd.DataFrame, paramcds: list[str]) -> pd.DataFrame:
    """Records of a BDS dataset for ``paramcds`` with the cohort and ISO dates, by subject,
    analysis date and the order of ``paramcds`` (e.g. ADRS INVRESP beside OVRLRESP)."""
    r = adam[column(adam, "PARAMCD").isin(set(paramcds))]
    r = adam_dates_as_text(with_cohort(r, subj))
    r["_p"] = column(r, "PARAMCD").map({p: i for i, p in enumerate(paramcds)})
    return _sort(r, ["USUBJID", "ADT", "_p"]).drop(columns="_p")
