"""DM (Demographics) and SUPPDM (SDTMIG 3.4 section 5.2).

One record per consented subject of the raw ``dm`` form. Reference dates come from the raw
``ex`` form (DM is built first, before EX):

- RFXSTDTC / RFXENDTC: first and last exposure to any protocol-specified treatment, i.e. the
  earliest EXSTDTC and the latest EXENDTC (EXSTDTC when no end was collected) over every EX
  record, lymphodepleting chemotherapy included (SDTMIG 3.4 DM; CORE-000239 / CG0148);
- RFSTDTC / RFENDTC: the sponsor-defined reference period = the CAR-T product administration:
  start of the first CAR-T fraction (protocol day 0 = study day 1) and end of the last fraction
  (its start when no end was collected). Study days (--DY) count from RFSTDTC;
- RFPENDTC: latest complete date of any dated field of any form of the subject (disposition,
  death and last-known-alive dates included);
- DTHDTC / DTHFL from ``ds.DTHDAT`` / ``ds.DSDECOD``.

Arms (SDTMIG 3.4 DM assumption 4, CT ARMNULRS): screen failures (ENRYN=N) have null ARMCD, ARM,
ACTARMCD, ACTARM and ARMNRS SCREEN FAILURE; enrolled subjects never infused have null ACTARMCD,
ACTARM and ARMNRS ASSIGNED, NOT TREATED.

Direct identifiers of the raw form (``identifier = Y`` in specs/raw/columns.csv) are never
copied: the output has only the spec's variables.

The small helpers at the top (:func:`ct_term`, :func:`raw_dtc`, :func:`make_findings`,
:func:`make_rejected`, :func:`subject_ids`) are shared by the other modules of this area
(ex, se, ds, ie, vs, trial_design).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.dates import complete_cdash_dates, dtc_date, max_dtc, min_dtc, parse_cdash_date, parse_time
from pipeline.derive.identifiers import usubjid
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.studyday import study_day, study_day_by_subject
from pipeline.derive.visits import visit_numbers
from pipeline.derive.suppqual import build_supp
from pipeline.derive.text import stripped_text, text_codes
from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

#: raw-contract value of ex.EXCAT for the CAR-T product (specs/raw/columns.csv)
CART_CATEGORY = "CAR-T INFUSION"
#: raw column types that hold CDASH dates (specs/raw/columns.csv ``type``)
RAW_DATE_TYPES = ("date", "pdate")

# NCI codes of the CDISC CT terms this module assigns (terms are read from the spec's codelists)
C_YES, C_NO = "C49488", "C49487"
C_SCREEN_FAILURE, C_ASSIGNED_NOT_TREATED, C_UNPLANNED = "C49628", "C142238", "C142240"
C_DEATH = "C28554"


# ---------------------------------------------------------------------------------------------
# helpers shared by the modules of this area
# ---------------------------------------------------------------------------------------------
def ct_term(spec: Spec, codelist: str, ncit_code: str) -> str:
    """The submission value of the CT term with NCI code ``ncit_code`` in ``codelist`` (spec).

    The domains ask ~30 times a study; each codelist's terms by code are made once per loaded
    spec (:func:`~pipeline.export.memo.per_object`: a spec is not changed once loaded)."""
    terms = per_object(spec, ("ct_terms_by_code", codelist), lambda s: terms_by_code(s, codelist))
    if ncit_code not in terms:
        raise ConfigError(f"codelist {codelist} has no term with NCI code {ncit_code} (specs/sdtm/codelists)")
    return terms[ncit_code]


def terms_by_code(spec: Spec, codelist: str) -> dict[str, str]:
    """NCI code -> submission value of the terms of ``codelist``; a code given twice keeps its
    first term (the order of the spec's codelist table)."""
    c = spec.codelist(codelist)
    out: dict[str, str] = {}
    for code, term in zip(c["term_ncit_code"], c["term"]):  # the terms of one codelist (metadata)
        out.setdefault(code, str(term))
    return out


def text(s: pd.Series) -> pd.Series:
    """Raw text column as str with ``""`` for missing, stripped."""
    return stripped_text(s)


def raw_dtc(frame: pd.DataFrame, date_col: str, time_col: str | None = None) -> tuple[pd.Series, pd.Series]:
    """ISO 8601 text of a CDASH date (+ time) column and a mask of impossible values.

    Impossible dates/times give ``""`` and ``True`` in the mask, so the caller can reject or
    report the record instead of failing the whole build (``cdash_to_iso`` raises on them).
    """
    if date_col not in frame:
        return pd.Series("", index=frame.index, dtype=object), pd.Series(False, index=frame.index)
    # the rules of :func:`pipeline.derive.dates.cdash_to_iso` on one parse of each column
    # (~50 calls a study: each column is parsed once, not once for the mask and once for the text)
    date = parse_cdash_date(frame[date_col])
    bad = ~date["valid"].to_numpy(dtype=bool)
    iso = date["iso"].to_numpy(dtype=object)
    if time_col and time_col in frame:
        time = parse_time(frame[time_col])
        bad |= ~time["valid"].to_numpy(dtype=bool)
        with_time = date["complete"].to_numpy(dtype=bool) & ~time["missing"].to_numpy(dtype=bool)
        iso = np.where(with_time, iso + "T" + time["iso"].to_numpy(dtype=object), iso)
    return (pd.Series(np.where(bad, "", iso), index=frame.index, dtype=object),
            pd.Series(bad, index=frame.index, name="valid"))


def make_findings(studyid: str, rows: pd.DataFrame, column: str, check: str, severity: str,
                  message: pd.Series | str) -> pd.DataFrame:
    """Findings (gate columns) for raw ``rows`` (with ``_FILE``/``_ROW``) about ``column``."""
    if rows.empty:
        return empty(FINDING_COLUMNS)
    value = text(rows[column]) if column in rows else ""
    msg = message if isinstance(message, str) else message.loc[rows.index].astype(str)
    return pd.DataFrame({
        "study": studyid, "file": text(rows["_FILE"]) if "_FILE" in rows else "",
        "row": rows["_ROW"].to_numpy() if "_ROW" in rows else np.nan,
        "column": column, "value": value, "check": check, "severity": severity, "message": msg,
    }).reset_index(drop=True)[FINDING_COLUMNS]


def make_rejected(form: str, rows: pd.DataFrame, column: str, reason: str | pd.Series) -> pd.DataFrame:
    """Rejection rows (context columns) for raw ``rows`` of ``form``."""
    if rows.empty:
        return empty(REJECTED_COLUMNS)
    return pd.DataFrame({
        "form": form, "file": text(rows["_FILE"]) if "_FILE" in rows else "",
        "row": rows["_ROW"].to_numpy(), "column": column,
        "value": text(rows[column]) if column in rows else "",
        "reason": reason if isinstance(reason, str) else reason.loc[rows.index].astype(str),
    }).reset_index(drop=True)[REJECTED_COLUMNS]


def concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[columns] if frames else empty(columns)


def subject_ids(frame: pd.DataFrame, studyid: str) -> pd.Series:
    """USUBJID of raw rows: STUDYID (the study being built) - SITEID - SUBJID, made by
    :func:`pipeline.derive.identifiers.usubjid` once per distinct (SITEID, SUBJID): a form
    repeats its subjects on every row.

    Made once per frame and study (:func:`~pipeline.export.memo.per_object`: a raw form is not
    changed once read, and several domains ask for the subjects of the same form: ds five
    times a study, dm and ex three times) and handed out as a shallow copy, which pandas'
    copy-on-write keeps separate."""
    made = per_object(frame, ("subject_ids", studyid), lambda f: _subject_ids(f, studyid))
    return made.copy(deep=False)


def _subject_ids(frame: pd.DataFrame, studyid: str) -> pd.Series:
    """:func:`subject_ids` without the memo."""
    site_code, sites = text_codes(frame["SITEID"])
    subj_code, subjects = text_codes(frame["SUBJID"])
    width = max(len(subjects), 1)
    pair_code, pairs = pd.factorize(site_code.astype(np.int64) * width + subj_code)
    keys = pd.DataFrame({"STUDYID": studyid, "SITEID": np.asarray(sites, dtype=object)[pairs // width],
                         "SUBJID": np.asarray(subjects, dtype=object)[pairs % width]})
    return pd.Series(usubjid(keys).to_numpy(dtype=object)[pair_code], index=frame.index, dtype=object)


def known_subject(ctx: StudyContext, form: str, frame: pd.DataFrame, ids: pd.Series) -> tuple[pd.Series, pd.DataFrame]:
    """Mask of rows whose subject is in DM, and rejections for the others."""
    dm = ctx.datasets.get("DM")
    known = ids.isin(dm["USUBJID"]) if dm is not None else pd.Series(False, index=frame.index)
    rej = make_rejected(form, frame[~known], "SUBJID", "subject not in DM (no dm form row for this SITEID/SUBJID)")
    return known, rej


def dated_form(ctx: StudyContext, form: str, date_col: str, what: str):
    """The common start of a findings-form build: the raw form, rows whose subject is in DM,
    the ISO date of ``date_col``, and the rows with an impossible date (rejected and reported
    as an error ``<form>_impossible_date``). Returns (raw, ids, known, iso, bad, rejected, findings)
    where ``ids`` is the USUBJID of every raw row."""
    sid = ctx.study.studyid
    raw = ctx.form(form)
    ids = subject_ids(raw, sid)
    known, rej = known_subject(ctx, form, raw, ids)
    iso, bad = raw_dtc(raw, date_col)
    bad &= known
    rejected = [rej, make_rejected(form, raw[bad], date_col, f"impossible {what} date")]
    findings = [make_findings(sid, raw[bad], date_col, f"{form}_impossible_date", "error",
                              f"impossible {date_col}, subject " + text(raw["SUBJID"]))]
    return raw, ids, known, iso, bad, rejected, findings


def complete_dated_rows(ctx: StudyContext, form: str, date_col: str, what: str) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """The common start of an assessment-form build (RS, TU/TR): the rows of ``form`` whose
    subject is in DM and whose ``date_col`` is a complete date, with USUBJID; their ISO date; and
    the rejections of the others (``subject not in DM``; ``<what> date missing, partial or
    impossible``). A response or an imaging result is timed by its date (the study day decides
    the visit window and the post-infusion flag), so a partial date cannot be placed and the row
    is rejected rather than imputed."""
    a = ctx.form(form).copy()
    dm = ctx.datasets["DM"]
    a["USUBJID"] = usubjid(a) if len(a) else pd.Series(dtype="object")
    parsed = parse_cdash_date(a[date_col]) if len(a) else pd.DataFrame({"iso": [], "complete": []})
    known = a["USUBJID"].isin(set(dm["USUBJID"]))
    bad = known & ~parsed["complete"].astype(bool)
    rejected = concat([make_rejected(form, a[~known], "SUBJID", "subject not in DM"),
                       make_rejected(form, a[bad], date_col, f"{what} date missing, partial or impossible")],
                      REJECTED_COLUMNS)
    keep = known & ~bad
    return a[keep].copy(), parsed.loc[keep, "iso"].astype("object"), rejected


def place_in_study(ctx: StudyContext, rows: pd.DataFrame, dtc: str, dy: str) -> pd.DataFrame:
    """Add the study day ``dy`` (SDTMIG: day 1 = RFSTDTC, no day 0), VISITNUM/VISIT (the
    collected visit, or the TV window the study day falls in) and EPOCH (the SE element the date
    falls in; SE is derived from DM and EX when not built yet) of ``rows`` dated by ``dtc``."""
    dm = ctx.datasets["DM"]
    rows[dy] = study_day_by_subject(rows[dtc], rows["USUBJID"], dm)
    vis = visit_numbers(rows["VISIT"], ctx.study, rows[dy], rows["USUBJID"], rows[dtc])
    rows["VISITNUM"], rows["VISIT"] = vis["VISITNUM"], vis["VISIT"]
    se = ctx.datasets.get("SE")
    if se is None and "EX" in ctx.datasets:
        se = subject_elements(dm, ctx.datasets["EX"], ctx.study)
    rows["EPOCH"] = derive_epoch(rows["USUBJID"], rows[dtc], se) if se is not None and len(se) else ""
    return rows


# ---------------------------------------------------------------------------------------------
# DM derivations
# ---------------------------------------------------------------------------------------------
def reference_dates(ex_raw: pd.DataFrame, studyid: str, treatments: pd.Series | None = None) -> pd.DataFrame:
    """RFSTDTC/RFENDTC (CAR-T product) and RFXSTDTC/RFXENDTC (any protocol treatment) per
    USUBJID from the raw ex form.

    SDTMIG 3.4 DM: RFXSTDTC/RFXENDTC are the first/last exposure to any protocol-specified
    treatment, equal to the earliest EXSTDTC and the latest EXENDTC (or EXSTDTC when no end was
    collected): lymphodepletion counts. RFSTDTC/RFENDTC are the sponsor's reference period:
    first CAR-T infusion start to last CAR-T fraction end (spec comment on DM.RFSTDTC).
    Rows with an impossible date, or a treatment not in ``treatments`` (the study's declared
    EXTRT values, when given) are ignored here, as EX rejects them: the dates equal what EX holds.
    """
    cols = ["RFSTDTC", "RFENDTC", "RFXSTDTC", "RFXENDTC"]
    if ex_raw.empty:
        return pd.DataFrame(columns=cols)
    ids = subject_ids(ex_raw, studyid)
    start, bad_s = raw_dtc(ex_raw, "EXSTDAT", "EXSTTIM")
    end, bad_e = raw_dtc(ex_raw, "EXENDAT", "EXENTIM")
    ok = ~(bad_s | bad_e) & start.ne("")
    if treatments is not None:
        ok &= text(ex_raw["EXTRT"]).str.upper().isin(set(treatments.astype(str).str.upper()))
    last = end.where(end.ne(""), start)
    cart = ok & text(ex_raw["EXCAT"]).str.upper().eq(CART_CATEGORY)
    out = pd.DataFrame({
        "RFSTDTC": min_dtc(start[cart], ids[cart]), "RFENDTC": max_dtc(last[cart], ids[cart]),
        "RFXSTDTC": min_dtc(start[ok], ids[ok]), "RFXENDTC": max_dtc(last[ok], ids[ok]),
    })
    return out.reindex(columns=cols).fillna("")


def reference_end_not_treated(dm: pd.DataFrame, ds_raw: pd.DataFrame, studyid: str, spec: Spec) -> pd.Series:
    """RFENDTC with the subjects assigned to an arm but never infused filled in.

    SDTMIG 3.4 DM: RFENDTC is required for every subject assigned to an arm and is usually the
    date the subject was determined to have ended the trial. A treated subject's RFENDTC is the
    end of the last CAR-T fraction (:func:`reference_dates`); a subject with ARMNRS ASSIGNED, NOT
    TREATED who has an end-of-study disposition on the ds form ended the trial then: RFENDTC =
    RFPENDTC (end of participation). One still waiting for the infusion at the cut-off keeps a
    null RFENDTC (not ended yet).
    """
    nt = dm["ARMNRS"].eq(ct_term(spec, "ARMNULRS", C_ASSIGNED_NOT_TREATED))
    ended = dm["USUBJID"].isin(set(subject_ids(ds_raw, studyid))) if len(ds_raw) else pd.Series(False, index=dm.index)
    fill = nt & ended & dm["RFENDTC"].eq("")
    return dm["RFENDTC"].where(~fill, dm["RFPENDTC"])


def last_dated_record(forms: dict[str, pd.DataFrame], spec: Spec, studyid: str) -> pd.Series:
    """Per USUBJID, the latest complete date found in any dated column of any raw form.

    The dated columns are those typed ``date``/``pdate`` in specs/raw/columns.csv; partial
    and impossible dates are ignored.
    """
    cols = spec.raw_columns
    dated_cols = cols[cols["type"].isin(RAW_DATE_TYPES)]
    columns_of: dict[str, list[str]] = {}  # form -> its dated columns, in spec order
    for form, col in zip(dated_cols["form"], dated_cols["column"]):  # spec rows
        columns_of.setdefault(form, []).append(col)
    subjects, dates = [], []  # numpy pieces of every complete date (~50 columns a study)
    for form, frame in sorted(forms.items()):  # a handful of forms, vectorised over rows
        if frame.empty or not {"SITEID", "SUBJID"} <= set(frame.columns):
            continue
        ids = subject_ids(frame, studyid).to_numpy(dtype=object)
        for col in columns_of.get(form, []):
            if col in frame:
                iso, keep = complete_cdash_dates(frame[col])
                subjects.append(ids[keep])
                dates.append(iso[keep])
    if not subjects:
        return pd.Series(dtype="object")
    return max_dtc(pd.Series(np.concatenate(dates), dtype="object"), pd.Series(np.concatenate(subjects), dtype="object"))


def end_of_participation(forms: dict[str, pd.DataFrame], spec: Spec, studyid: str, index: pd.Index) -> pd.Series:
    """RFPENDTC per USUBJID (``index``): latest of disposition, death, last-known-alive dates
    and the last dated record of any form (all are dated fields of the raw forms)."""
    return last_dated_record(forms, spec, studyid).reindex(index).fillna("").astype("object")


def death(ds_raw: pd.DataFrame, studyid: str, spec: Spec) -> pd.DataFrame:
    """DTHDTC and DTHFL per USUBJID from the ds form (SDTMIG 3.4 DM DTHDTC/DTHFL)."""
    if ds_raw.empty:
        return pd.DataFrame(columns=["DTHDTC", "DTHFL"])
    ids = subject_ids(ds_raw, studyid)
    dth, bad = raw_dtc(ds_raw, "DTHDAT")
    died = dth.ne("") | (text(ds_raw["DSDECOD"]).str.upper() == ct_term(spec, "NCOMPLT", C_DEATH))
    frame = pd.DataFrame({"USUBJID": ids, "DTHDTC": dth.where(~bad, ""), "died": died})
    frame = frame[frame["died"]].sort_values(["USUBJID", "DTHDTC"], kind="mergesort")
    frame = frame.drop_duplicates("USUBJID", keep="last").set_index("USUBJID")
    return pd.DataFrame({"DTHDTC": frame["DTHDTC"], "DTHFL": ct_term(spec, "NY", C_YES)})


def ct_values(spec: Spec, codelist: str, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Collected ``values`` written as the CT submission values of ``codelist`` (matched on the
    term or its decode, ignoring case and surrounding blanks), and a mask of non-empty values
    that are no term of the codelist (kept as collected and reported)."""
    c = spec.codelist(codelist)
    key = {str(t).strip().upper(): str(t) for t in c["term"]}
    key.update({str(d).strip().upper(): str(t) for t, d in zip(c["term"], c["decode"]) if str(d)})
    v = text(values)
    mapped = v.str.upper().map(key)
    bad = v.ne("") & mapped.isna()
    return mapped.where(mapped.notna(), v).astype(object), bad


def age_bounds(brthdtc: pd.Series, ref_date: pd.Series) -> pd.DataFrame:
    """Smallest and largest age in completed years at ``ref_date`` compatible with a birth date
    that may be partial (YYYY or YYYY-MM). Columns ``lo``, ``hi`` (float, NaN when unknown)."""
    parts = brthdtc.astype(str).str.extract(r"^(?P<y>\d{4})(?:-(?P<m>\d{2}))?(?:-(?P<d>\d{2}))?")
    y = pd.to_numeric(parts["y"], errors="coerce")
    m = pd.to_numeric(parts["m"], errors="coerce")
    d = pd.to_numeric(parts["d"], errors="coerce")
    earliest_m, latest_m = m.fillna(1), m.fillna(12)
    earliest_d = d.fillna(1)
    # latest possible day: the given day, else the last day of the latest possible month
    first_of_latest = pd.to_datetime(
        pd.DataFrame({"year": y, "month": latest_m, "day": 1}).dropna(), errors="coerce").reindex(y.index)
    latest_d = d.fillna(first_of_latest.dt.days_in_month)
    r = ref_date

    def completed_years(by, bm, bd):
        before_birthday = (r.dt.month < bm) | ((r.dt.month == bm) & (r.dt.day < bd))
        return r.dt.year - by - before_birthday.astype(float)

    hi = completed_years(y, earliest_m, earliest_d)
    lo = completed_years(y, latest_m, latest_d)
    return pd.DataFrame({"lo": lo.astype(float), "hi": hi.astype(float)})


def age_findings(raw: pd.DataFrame, brthdtc: pd.Series, icdtc: pd.Series, studyid: str) -> pd.DataFrame:
    """AGE (collected at consent) against BRTHDAT and ICDAT.

    Complete birth date: AGE must equal the completed years (error, naming the record).
    Partial birth date: a warning only when AGE is impossible for any day of the known period.
    """
    age = pd.to_numeric(raw["AGE"], errors="coerce")
    b = age_bounds(brthdtc, dtc_date(icdtc))
    complete = brthdtc.astype(str).str.match(r"^\d{4}-\d{2}-\d{2}$")
    checkable = age.notna() & b["lo"].notna() & b["hi"].notna()
    outside = checkable & ((age < b["lo"]) | (age > b["hi"]))
    msg = ("AGE " + text(raw["AGE"]) + " is inconsistent with BRTHDAT " + text(raw["BRTHDAT"])
           + " and ICDAT " + text(raw["ICDAT"]) + " (age at consent "
           + b["lo"].astype("Int64").astype(str) + np.where(b["lo"] == b["hi"], "", " to " + b["hi"].astype("Int64").astype(str))
           + "), subject " + text(raw["SUBJID"]))
    err = outside & complete
    warn = outside & ~complete
    return concat([
        make_findings(studyid, raw[err], "AGE", "dm_age_birth_date", "error", msg),
        make_findings(studyid, raw[warn], "AGE", "dm_age_partial_birth_date", "warning", msg),
    ], FINDING_COLUMNS)


#: unit of the arms' planned dose (``dose_cells_per_kg`` of [[arms]]) and of EX.EXDOSU for it
DOSE_UNIT = "cells/kg"


def administered_dose(ex_raw: pd.DataFrame, studyid: str) -> pd.Series:
    """Total CAR-T dose in cells/kg per USUBJID (the fractions of a split infusion summed);
    records in another unit or with an impossible date are left out."""
    if ex_raw.empty:
        return pd.Series(dtype="float64")
    _, bad_s = raw_dtc(ex_raw, "EXSTDAT", "EXSTTIM")
    _, bad_e = raw_dtc(ex_raw, "EXENDAT", "EXENTIM")
    keep = (text(ex_raw["EXCAT"]).str.upper().eq(CART_CATEGORY) & text(ex_raw["EXDOSU"]).eq(DOSE_UNIT)
            & ~bad_s & ~bad_e)
    dose = pd.to_numeric(text(ex_raw.loc[keep, "EXDOSE"]), errors="coerce")
    return dose.groupby(subject_ids(ex_raw[keep], studyid)).sum(min_count=1)


def actual_arm_by_dose(dose: pd.Series, study) -> tuple[pd.Series, bool]:
    """The arm whose planned dose the administered ``dose`` matches (relative tolerance
    ``[actual_arm].dose_tolerance`` of the study parameters), ``""`` when none does.

    Only for studies whose arms differ by dose (dose escalation): returns (``""`` for all,
    False) when the arms share one dose, since EX then cannot tell the arms apart.
    """
    planned = study.arms[["armcd", "dose_cells_per_kg"]].dropna()
    levels = pd.to_numeric(planned["dose_cells_per_kg"], errors="coerce")
    if levels.nunique() < 2:
        return pd.Series("", index=dose.index, dtype=object), False
    tol = study.get("actual_arm", {}).get("dose_tolerance")
    if tol is None:
        raise ConfigError(f"{study.studyid}: arms differ by dose, so the study parameters need "
                          "[actual_arm] dose_tolerance (relative, e.g. 0.2) to tell the actual arm from EX")
    d = dose.to_numpy(dtype="float64")[:, None]
    lv = levels.to_numpy(dtype="float64")[None, :]
    match = np.abs(d - lv) <= float(tol) * lv
    first = np.where(match.any(axis=1), match.argmax(axis=1), -1)
    codes = planned["armcd"].astype(str).to_numpy()
    return pd.Series(np.where(first >= 0, codes[np.clip(first, 0, None)], ""), index=dose.index, dtype=object), True


def arms(raw: pd.DataFrame, treated: pd.Series, ctx: StudyContext,
         dose: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ARMCD, ARM, ACTARMCD, ACTARM, ARMNRS, ACTARMUD per raw dm row, and arm findings.

    ``treated``: the subject has at least one CAR-T administration (RFSTDTC not null).
    ``dose``: the administered CAR-T dose (cells/kg) per raw dm row. When the arms differ by dose
    (:func:`actual_arm_by_dose`), the actual arm is the arm of the dose given: a dose of another
    arm gives that arm (warning), a dose of no arm gives ACTARMCD/ACTARM null, ARMNRS UNPLANNED
    TREATMENT and ACTARMUD describing it (SDTMIG 3.4 DM assumption 4). Otherwise the actual arm
    of a treated subject is the planned arm.
    """
    spec, study = ctx.spec, ctx.study
    yes, no = ct_term(spec, "NY", C_YES), ct_term(spec, "NY", C_NO)
    arm_names = dict(zip(study.arms["armcd"].astype(str), study.arms["arm"].astype(str)))
    enrolled = text(raw["ENRYN"]).str.upper().eq(yes)
    armcd = text(raw["ARMCD"]).where(enrolled, "")
    known = armcd.isin(list(arm_names))
    arm = armcd.map(arm_names).fillna("")
    out = pd.DataFrame(index=raw.index)
    out["ARMCD"] = armcd.where(known, "")
    out["ARM"] = arm.where(known, "")
    act = enrolled & treated & known
    given = dose if dose is not None else pd.Series(np.nan, index=raw.index)
    by_dose, applies = actual_arm_by_dose(given, study)
    actual = by_dose if applies else out["ARMCD"]
    unplanned = act & applies & by_dose.eq("")
    other_arm = act & applies & by_dose.ne("") & by_dose.ne(out["ARMCD"])
    out["ACTARMCD"] = actual.where(act & ~unplanned, "")
    out["ACTARM"] = out["ACTARMCD"].map(arm_names).fillna("")
    out["ARMNRS"] = np.select(
        [~enrolled, enrolled & ~treated, unplanned],
        [ct_term(spec, "ARMNULRS", C_SCREEN_FAILURE), ct_term(spec, "ARMNULRS", C_ASSIGNED_NOT_TREATED),
         ct_term(spec, "ARMNULRS", C_UNPLANNED)], default="")
    product = study.treatments.loc[study.treatments["excat"].astype(str).str.upper() == CART_CATEGORY, "extrt"]
    product = str(product.iloc[0]) if len(product) else "CAR-T"
    out["ACTARMUD"] = np.where(unplanned, product + " " + given.map("{:.4g}".format) + " " + DOSE_UNIT, "")
    trtyn = text(raw["TRTYN"]).str.upper()
    sid = ", subject " + text(raw["SUBJID"])
    f = [
        make_findings(study.studyid, raw[enrolled & armcd.eq("")], "ARMCD", "dm_arm_missing", "error",
                      "ENRYN=Y but no ARMCD" + sid),
        make_findings(study.studyid, raw[enrolled & armcd.ne("") & ~known], "ARMCD", "dm_arm_not_in_study", "error",
                      "ARMCD " + armcd + " is not an arm of study " + study.studyid + sid),
        make_findings(study.studyid, raw[trtyn.eq(yes) & ~treated], "TRTYN", "dm_trtyn_without_infusion", "error",
                      "TRTYN=Y but the ex form has no CAR-T infusion record" + sid),
        make_findings(study.studyid, raw[trtyn.eq(no) & treated], "TRTYN", "dm_infusion_without_trtyn", "error",
                      "TRTYN=N but the ex form has a CAR-T infusion record" + sid),
        make_findings(study.studyid, raw[~enrolled & treated], "ENRYN", "dm_screen_failure_treated", "error",
                      "ENRYN=N (screen failure) but the ex form has a CAR-T infusion record" + sid),
        make_findings(study.studyid, raw[other_arm], "ARMCD", "dm_actual_arm_differs", "warning",
                      "planned arm " + armcd + " but the CAR-T dose given (" + given.map("{:.4g}".format)
                      + " " + DOSE_UNIT + ") is that of arm " + by_dose + sid),
        make_findings(study.studyid, raw[unplanned], "ARMCD", "dm_unplanned_treatment", "warning",
                      "the CAR-T dose given (" + given.map("{:.4g}".format) + " " + DOSE_UNIT
                      + ") is the dose of no arm: ARMNRS UNPLANNED TREATMENT" + sid),
    ]
    return out, concat(f, FINDING_COLUMNS)


def build(ctx: StudyContext) -> DomainResult:
    """DM and SUPPDM from the dm form (reference dates from ex, death from ds)."""
    study, spec = ctx.study, ctx.spec
    sid = study.studyid
    raw = ctx.form("dm")
    res = DomainResult()
    ids = subject_ids(raw, sid)
    dup = ids.duplicated(keep="first")
    rejected = [make_rejected("dm", raw[dup], "SUBJID", "duplicate dm row for this subject (first row kept)")]
    raw, ids = raw[~dup], ids[~dup]

    findings = []
    dates = {}
    for col in ("ICDAT", "DMDAT", "BRTHDAT"):
        iso, bad = raw_dtc(raw, col)
        dates[col] = iso
        findings.append(make_findings(sid, raw[bad], col, "dm_impossible_date", "error",
                                      col + " is not a possible date, subject " + text(raw["SUBJID"])))

    race, bad_race = ct_values(spec, "RACE", raw["RACE"])
    ethnic, bad_ethnic = ct_values(spec, "ETHNIC", raw["ETHNIC"])
    for col, bad, cl in (("RACE", bad_race, "RACE"), ("ETHNIC", bad_ethnic, "ETHNIC")):
        findings.append(make_findings(sid, raw[bad], col, f"dm_{col.lower()}_not_ct", "error",
                                      col + " '" + text(raw[col]) + f"' is not a term of CDISC CT codelist {cl} "
                                      "(C74457 RACE / C66790 ETHNIC, non-extensible), subject " + text(raw["SUBJID"])))
    ref = reference_dates(ctx.form("ex"), sid, study.treatments["extrt"]).reindex(ids).fillna("")
    dth = death(ctx.form("ds"), sid, spec).reindex(ids).fillna("")
    treated = pd.Series(ref["RFSTDTC"].ne("").to_numpy(), index=raw.index)
    dose = administered_dose(ctx.form("ex"), sid).reindex(ids)
    arm_cols, arm_f = arms(raw, treated, ctx, pd.Series(dose.to_numpy(), index=raw.index))
    findings += [arm_f, age_findings(raw, dates["BRTHDAT"], dates["ICDAT"], sid)]

    dm = pd.DataFrame({
        "STUDYID": sid, "DOMAIN": "DM", "USUBJID": ids.to_numpy(), "SUBJID": text(raw["SUBJID"]).to_numpy(),
        "RFSTDTC": ref["RFSTDTC"].to_numpy(), "RFENDTC": ref["RFENDTC"].to_numpy(),
        "RFXSTDTC": ref["RFXSTDTC"].to_numpy(), "RFXENDTC": ref["RFXENDTC"].to_numpy(),
        "RFICDTC": dates["ICDAT"].to_numpy(),
        "RFPENDTC": end_of_participation(ctx.forms, spec, sid, pd.Index(ids)).to_numpy(),
        "DTHDTC": dth["DTHDTC"].to_numpy(), "DTHFL": dth["DTHFL"].to_numpy(),
        "SITEID": text(raw["SITEID"]).to_numpy(), "BRTHDTC": dates["BRTHDAT"].to_numpy(),
        "AGE": pd.to_numeric(raw["AGE"], errors="coerce").astype("float64").to_numpy(),
        "AGEU": text(raw["AGEU"]).to_numpy(), "SEX": text(raw["SEX"]).to_numpy(),
        "RACE": race.to_numpy(), "ETHNIC": ethnic.to_numpy(),
        **{c: arm_cols[c].to_numpy() for c in ["ARMCD", "ARM", "ACTARMCD", "ACTARM", "ARMNRS", "ACTARMUD"]},
        "COUNTRY": text(raw["COUNTRY"]).to_numpy(), "DMDTC": dates["DMDAT"].to_numpy(),
    })
    dm["RFENDTC"] = reference_end_not_treated(dm, ctx.form("ds"), sid, spec)
    dm["DMDY"] = study_day(dm["DMDTC"], dm["RFSTDTC"])
    res.datasets["DM"] = dm[spec.var_names("DM")].reset_index(drop=True)

    parent = dm[["STUDYID", "USUBJID"]].assign(PRIMDIAG=text(raw["PRIMDIAG"]).to_numpy())
    res.datasets["SUPPDM"] = build_supp(parent, "DM", spec, None)[spec.var_names("SUPPDM")]

    consumed = [ctx.consumed_rows("dm", raw["_ROW"], "DM")]
    has_diag = text(raw["PRIMDIAG"]).ne("")
    consumed.append(ctx.consumed_rows("dm", raw.loc[has_diag, "_ROW"], "SUPPDM"))
    res.consumed = pd.concat(consumed, ignore_index=True)
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
