"""AE, SUPPAE, FA and RELREC: adverse events coded to CTCAE v5.0, and CRS/ICANS graded by
ASTCT consensus from the daily assessments.

Records in AE (SDTMIG 3.4 section 6.2 AE):

- Investigator-reported AEs (raw form ``ae``): AETERM as collected; AEDECOD, AELLT, AELLTCD,
  AEBODSYS, AEBDSYCD, AESOC, AESOCCD from the CTCAE v5.0 term (:mod:`pipeline.rules.ctcae_terms`).
  AECAT is null. A verbatim that cannot be coded stays in AE with AEDECOD empty and goes
  to the ``coding_queries`` report.
- One AE per CRS or ICANS episode derived from the daily assessments (raw form ``crs``) by
  ASTCT grading (:mod:`pipeline.rules.astct`); AECAT from ``specs/rules/astct_events.csv``.

Which scale graded a record is in SUPPAE.TOXGRSCL (the study's ``[safety]`` ``ae_grading``,
``crs_grading`` or ``icans_grading``): CTCAE's own CRS criteria differ from ASTCT's.

Counting rule (no double counting): when the investigator also reported a CRS or ICANS AE
that overlaps a derived episode of the same event (or an AE coded to a term the event is
also reported under, e.g. Encephalopathy for ICANS, ``astct_events.csv`` ``also_reported_as``,
kept as coded), both records stay in AE, they are related
in RELREC (same RELID as the episode), the investigator's record gets SUPPAE.ASTCTDUP = "Y",
and incidence counts exclude records with ASTCTDUP = "Y". Grade and date disagreements go
to the ``crs_icans_discrepancies`` report.

FA holds the daily components (one record per subject, day and component, FAOBJ = the
event) and the derived daily grade (FATESTCD TOXGR). FAGRPID = the episode id (e.g.
``CRS-1``) on episode days; RELREC relates the episode's AE record (IDVAR AESEQ) to its FA
records (IDVAR FAGRPID) under RELID = the episode id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.config import Study
from pipeline.derive.dates import cdash_to_iso, dtc_date, dtc_datetime, iso_from_timestamp
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.identifiers import usubjid as make_usubjid
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.derive.visits import UNSCHEDULED, visit_numbers
from pipeline.errors import ConfigError, DataError
from pipeline.rules import astct
from pipeline.rules.ctcae_terms import code_terms, coding_dictionary, defined_grades, grade_exists, synonyms
from pipeline.spec import Spec

#: ICH E2A seriousness criteria as SDTMIG 3.4 AE variables (AE assumption 7a)
SERIOUSNESS_CRITERIA = ["AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE"]
EVENTS = ("CRS", "ICANS")
_INV_COLUMNS = ["AESER", "AEACN", "AEREL", "AEOUT", *SERIOUSNESS_CRITERIA]


# ---------------------------------------------------------------------------------------
# controlled terms the derivations rely on (checked against the spec, never invented here)
# ---------------------------------------------------------------------------------------
def ct_term(spec: Spec, codelist: str, term: str) -> str:
    """``term`` after checking that codelist ``codelist`` of the spec has it."""
    if term not in spec.terms(codelist):
        raise ConfigError(f"codelist {codelist} lacks the term {term!r} that AE derivations use")
    return term


class _CT:
    """The CDISC submission values used by the derivations, each verified in the spec."""

    def __init__(self, spec: Spec):
        self.Y = ct_term(spec, "NY", "Y")
        self.N = ct_term(spec, "NY", "N")
        self.FATAL = ct_term(spec, "OUT", "FATAL")
        self.RESOLVED = ct_term(spec, "OUT", "RECOVERED/RESOLVED")
        self.NOT_RESOLVED = ct_term(spec, "OUT", "NOT RECOVERED/NOT RESOLVED")
        self.ONGOING = ct_term(spec, "STENRF", "ONGOING")
        self.DEATH = ct_term(spec, "NCOMPLT", "DEATH")


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _text(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), "").astype(str).str.strip()


def _finding(frame: pd.DataFrame, mask: pd.Series, study: str, column: str, value: pd.Series,
             check: str, severity: str, message: pd.Series) -> pd.DataFrame:
    """Finding rows for the records where ``mask`` holds (file and row from _FILE/_ROW)."""
    if not mask.any():
        return empty(FINDING_COLUMNS)
    sub = frame.loc[mask]
    return pd.DataFrame({
        "study": study, "file": _text(sub["_FILE"]).to_numpy() if "_FILE" in sub else "",
        "row": _rows(sub["_ROW"]) if "_ROW" in sub else "", "column": column,
        "value": _text(value[mask]).to_numpy(), "check": check, "severity": severity,
        "message": message[mask].to_numpy()})


def _rows(row: pd.Series) -> np.ndarray:
    """Spreadsheet row numbers as integers (objects, so that missing stays missing)."""
    return pd.to_numeric(row, errors="coerce").astype("Int64").to_numpy(dtype=object)


def _one_finding(study: str, check: str, severity: str, message: str, file: str = "", column: str = "",
                 value: str = "") -> pd.DataFrame:
    return pd.DataFrame([{"study": study, "file": file, "row": "", "column": column, "value": value,
                          "check": check, "severity": severity, "message": message}], columns=FINDING_COLUMNS)


def _subject_findings(study: str, check: str, usubjid: pd.Series, text: str) -> pd.DataFrame:
    """Warning findings on daily-assessment subjects (message = USUBJID + text)."""
    if usubjid.empty:
        return empty(FINDING_COLUMNS)
    return pd.DataFrame({"study": study, "file": "crs", "row": "", "column": "DTHCAUS",
                         "value": usubjid.to_numpy(), "check": check, "severity": "warning",
                         "message": (usubjid.astype(str) + text).to_numpy()})


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[columns] if frames else empty(columns)


def date_bounds(dtc: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Earliest and latest calendar date an ISO --DTC (possibly right-truncated) can stand for.

    ``2024-05-10T08:00`` -> (2024-05-10, 2024-05-10); ``2024-05`` -> (2024-05-01, 2024-05-31);
    ``2024`` -> (2024-01-01, 2024-12-31); missing -> (NaT, NaT).
    """
    s = _text(dtc)
    parts = s.str.extract(r"^(?P<y>\d{4})(?:-(?P<m>\d{2}))?(?:-(?P<d>\d{2}))?")
    y = pd.to_numeric(parts["y"], errors="coerce")
    m = pd.to_numeric(parts["m"], errors="coerce")
    d = pd.to_numeric(parts["d"], errors="coerce")
    lo = pd.to_datetime(pd.DataFrame({"year": y, "month": m.fillna(1), "day": d.fillna(1)}), errors="coerce")
    hi_month = pd.to_datetime(pd.DataFrame({"year": y, "month": m.fillna(12), "day": 1}), errors="coerce")
    hi = hi_month + pd.offsets.MonthEnd(0)
    hi = hi.where(d.isna(), lo)
    return lo.where(y.notna()), hi.where(y.notna())


# ---------------------------------------------------------------------------------------
# subject-level inputs
# ---------------------------------------------------------------------------------------
def subject_deaths(dm: pd.DataFrame, ds: pd.DataFrame | None, raw_ds: pd.DataFrame, ct: _CT) -> pd.DataFrame:
    """Per USUBJID in DM: ``died`` (DM.DTHFL = Y, DM.DTHDTC present, or a DS death record),
    ``DTHDTC`` (DM, else the raw DS death date) and ``DTHCAUS`` (raw ds.DTHCAUS, upper case)."""
    out = dm[["USUBJID"]].drop_duplicates().set_index("USUBJID")
    dthfl = _text(dm.set_index("USUBJID")["DTHFL"]) if "DTHFL" in dm else pd.Series("", index=dm["USUBJID"])
    dthdtc = _text(dm.set_index("USUBJID")["DTHDTC"]) if "DTHDTC" in dm else pd.Series("", index=dm["USUBJID"])
    died = dthfl.eq(ct.Y) | dthdtc.ne("")
    if ds is not None and len(ds) and "DSDECOD" in ds:
        died = died | pd.Series(dm["USUBJID"].isin(set(ds.loc[_text(ds["DSDECOD"]).eq(ct.DEATH), "USUBJID"])).to_numpy(),
                                index=dm["USUBJID"])
    cause = pd.Series("", index=out.index, dtype="object")
    raw_date = pd.Series("", index=out.index, dtype="object")
    if len(raw_ds) and {"STUDYID", "SITEID", "SUBJID"} <= set(raw_ds.columns):
        r = raw_ds.assign(USUBJID=make_usubjid(raw_ds))
        is_death = _text(r["DSDECOD"]).eq(ct.DEATH) if "DSDECOD" in r else pd.Series(False, index=r.index)
        died = died | pd.Series(dm["USUBJID"].isin(set(r.loc[is_death, "USUBJID"])).to_numpy(), index=dm["USUBJID"])
        if "DTHCAUS" in r:
            c = r.loc[_text(r["DTHCAUS"]).ne("")].drop_duplicates("USUBJID", keep="last")
            cause = out.index.to_series().map(dict(zip(c["USUBJID"], _text(c["DTHCAUS"]).str.upper())))
            cause = cause.astype("object").where(cause.notna(), "")
        if "DTHDAT" in r:
            dd = r.loc[_text(r["DTHDAT"]).ne("")].drop_duplicates("USUBJID", keep="last")
            iso = cdash_to_iso(dd["DTHDAT"], what="ds.DTHDAT")
            raw_date = out.index.to_series().map(dict(zip(dd["USUBJID"], iso)))
            raw_date = raw_date.astype("object").where(raw_date.notna(), "")
    out["died"] = died.groupby(level=0).any().reindex(out.index).fillna(False).astype(bool)
    out["DTHDTC"] = dthdtc.groupby(level=0).first().reindex(out.index).fillna("")
    out["DTHDTC"] = out["DTHDTC"].where(out["DTHDTC"].ne(""), raw_date)
    out["DTHCAUS"] = cause
    return out


def event_terms(spec: Spec, study: Study) -> pd.DataFrame:
    """``astct_events.csv`` indexed by event, with ``scale`` = the study's grading scale
    (``[safety]`` ``crs_grading`` / ``icans_grading``)."""
    ev = spec.rule("astct_events").set_index("event")
    missing = sorted(set(EVENTS) - set(ev.index))
    if missing:
        raise ConfigError(f"specs/rules/astct_events.csv lacks event(s) {', '.join(missing)}")
    safety = study.get("safety", {})
    keys = {e: f"{e.lower()}_grading" for e in EVENTS}
    absent = [k for k in keys.values() if k not in safety]
    if absent:
        raise ConfigError(f"study {study.studyid}: [safety] lacks {', '.join(absent)}")
    ev = ev.loc[list(EVENTS)].copy()
    ev["scale"] = [str(safety[keys[e]]) for e in ev.index]
    return ev


# ---------------------------------------------------------------------------------------
# investigator-reported AEs
# ---------------------------------------------------------------------------------------
def investigator_ae(raw: pd.DataFrame, dictionary: pd.DataFrame, synonym_table: pd.DataFrame, ct: _CT,
                    cutoff: str) -> pd.DataFrame:
    """AE records from the raw ``ae`` form (SDTMIG 3.4 AE), coded, with ``_FILE``/``_ROW``.

    AESTDTC/AEENDTC keep partial dates (SDTMIG 3.4 4.4.2). An event marked ongoing (AEONGO = Y)
    gets AEENRTPT = ONGOING with AEENTPT = the data cut-off date (SDTMIG 3.4 4.4.7.2).
    """
    r = raw.reset_index(drop=True)
    coded = code_terms(r["AETERM"], dictionary, synonym_table)
    out = pd.DataFrame({
        "STUDYID": _text(r["STUDYID"]), "DOMAIN": "AE", "USUBJID": make_usubjid(r),
        "AESPID": _text(r["AESPID"]), "AETERM": _text(r["AETERM"]),
    })
    out = pd.concat([out, coded.drop(columns=["coded", "match", "normalised"])], axis=1)
    out["AECAT"] = ""
    for col in _INV_COLUMNS:
        out[col] = _text(r[col]) if col in r else ""
    out["AETOXGR"] = _text(r["AETOXGR"])
    out["AESTDTC"] = cdash_to_iso(r["AESTDAT"], r["AESTTIM"] if "AESTTIM" in r else None, what="ae.AESTDAT/AESTTIM")
    out["AEENDTC"] = cdash_to_iso(r["AEENDAT"], what="ae.AEENDAT")
    ongoing = _text(r["AEONGO"]).eq(ct.Y) if "AEONGO" in r else pd.Series(False, index=r.index)
    out["AEENRTPT"] = np.where(ongoing & out["AEENDTC"].eq(""), ct.ONGOING, "")
    out["AEENTPT"] = np.where(out["AEENRTPT"].ne(""), cutoff, "")
    out["event"] = ""
    out["episode"] = 0
    out["coded"] = coded["coded"].to_numpy()
    out["normalised"] = coded["normalised"].to_numpy()
    out["_FILE"] = r["_FILE"].to_numpy() if "_FILE" in r else ""
    out["_ROW"] = r["_ROW"].to_numpy() if "_ROW" in r else np.arange(len(r)) + 2
    return out


def ae_rule_findings(ae: pd.DataFrame, dictionary: pd.DataFrame, deaths: pd.DataFrame, ct: _CT,
                     study: str) -> pd.DataFrame:
    """Gate findings on investigator-reported AEs, each naming the record (file, row, USUBJID, AESPID).

    - ``ae_grade_exists`` (error): AETOXGR is a grade CTCAE v5.0 defines for the term
      (CTCAE marks impossible grades with "-", e.g. Alopecia has grades 1-2 only).
    - ``ae_grade5_outcome`` (error): grade 5 (death related to the AE, CTCAE v5.0) if and only
      if AEOUT = FATAL.
    - ``ae_grade5_death`` (error): a grade 5 AE needs a death in DM (DTHFL/DTHDTC) or DS.
    - ``ae_serious_criteria`` (error): AESER = Y needs at least one seriousness criterion = Y,
      AESER = N allows none (SDTMIG 3.4 AE assumption 7a; ICH E2A).
    - ``ae_death_flag`` (warning): AESDTH = Y if and only if AEOUT = FATAL.
    - ``ae_uncoded`` (warning): verbatim not coded; listed in the coding-query report.
    """
    who = ae["USUBJID"] + " AESPID " + ae["AESPID"] + " (" + ae["AETERM"] + ")"
    grade = pd.to_numeric(ae["AETOXGR"], errors="coerce")
    found = []
    exists = grade_exists(ae["AEDECOD"], ae["AETOXGR"], dictionary)
    bad = exists.eq(False)
    found.append(_finding(ae, bad, study, "AETOXGR", ae["AETOXGR"], "ae_grade_exists", "error",
                          who + ": AETOXGR " + ae["AETOXGR"] + " does not exist for CTCAE term '" + ae["AEDECOD"]
                          + "' (grades " + defined_grades(ae["AEDECOD"], dictionary) + ")"))
    fatal = ae["AEOUT"].eq(ct.FATAL)
    g5 = grade.eq(5)
    found.append(_finding(ae, g5 & ~fatal, study, "AEOUT", ae["AEOUT"], "ae_grade5_outcome", "error",
                          who + ": AETOXGR 5 but AEOUT is " + ae["AEOUT"].where(ae["AEOUT"].ne(""), "empty")
                          + " (grade 5 means death, AEOUT must be FATAL)"))
    found.append(_finding(ae, fatal & ~g5 & grade.notna(), study, "AETOXGR", ae["AETOXGR"], "ae_grade5_outcome",
                          "error", who + ": AEOUT FATAL but AETOXGR is " + ae["AETOXGR"] + " (a fatal AE is grade 5)"))
    died = ae["USUBJID"].map(deaths["died"]).fillna(False).astype(bool)
    found.append(_finding(ae, g5 & ~died, study, "AETOXGR", ae["AETOXGR"], "ae_grade5_death", "error",
                          who + ": AETOXGR 5 but the subject has no death in DM (DTHFL/DTHDTC) or DS"))
    crit = pd.concat([ae[c].eq(ct.Y) for c in SERIOUSNESS_CRITERIA], axis=1).any(axis=1)
    found.append(_finding(ae, ae["AESER"].eq(ct.Y) & ~crit, study, "AESER", ae["AESER"], "ae_serious_criteria",
                          "error", who + ": AESER Y but no seriousness criterion (" + ", ".join(SERIOUSNESS_CRITERIA)
                          + ") is Y"))
    named = pd.Series("", index=ae.index, dtype="object")
    for c in SERIOUSNESS_CRITERIA:
        named = named + np.where(ae[c].eq(ct.Y), c + " ", "")
    found.append(_finding(ae, ae["AESER"].eq(ct.N) & crit, study, "AESER", ae["AESER"], "ae_serious_criteria",
                          "error", who + ": AESER N but seriousness criterion " + named.str.strip() + " is Y"))
    sdth = ae["AESDTH"].eq(ct.Y)
    found.append(_finding(ae, sdth != fatal, study, "AESDTH", ae["AESDTH"], "ae_death_flag", "warning",
                          who + ": AESDTH " + ae["AESDTH"].where(ae["AESDTH"].ne(""), "empty") + " disagrees with AEOUT "
                          + ae["AEOUT"].where(ae["AEOUT"].ne(""), "empty")))
    found.append(_finding(ae, ~ae["coded"], study, "AETERM", ae["AETERM"], "ae_uncoded", "warning",
                          who + ": verbatim term not coded to CTCAE v5.0 (coding query raised)"))
    return _concat(found, FINDING_COLUMNS)


def coding_queries(ae: pd.DataFrame) -> pd.DataFrame:
    """The coding-query report: one row per uncoded investigator AE (study, subject, AESPID,
    verbatim term), sorted by subject and AESPID."""
    q = ae.loc[~ae["coded"].astype(bool)]
    out = pd.DataFrame({
        "STUDYID": q["STUDYID"], "USUBJID": q["USUBJID"], "AESPID": q["AESPID"], "AETERM": q["AETERM"],
        "AESTDTC": q["AESTDTC"], "AETOXGR": q["AETOXGR"], "normalised_term": q["normalised"],
        "file": q["_FILE"], "row": _rows(q["_ROW"]),
        "query": "Verbatim term could not be coded to a CTCAE v5.0 term; please clarify or correct the term",
    })
    return out.sort_values(["USUBJID", "AESPID", "row"], kind="mergesort").reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# CRS / ICANS from the daily assessments
# ---------------------------------------------------------------------------------------
def daily_assessments(raw: pd.DataFrame, dm: pd.DataFrame, crs_rules: pd.DataFrame,
                      icans_rules: pd.DataFrame) -> pd.DataFrame:
    """One row per raw ``crs`` row: USUBJID, ``day`` (datetime64), FADTC, AGE (from DM), the raw
    fields, the ASTCT daily grades per component (prefixed ``crs_`` / ``icans_``), ``CRS`` and
    ``ICANS`` (daily grades) and ``CRS_episode`` / ``ICANS_episode`` (0 outside episodes)."""
    r = raw.reset_index(drop=True).copy()
    r["USUBJID"] = make_usubjid(r)
    r["FADTC"] = cdash_to_iso(r["FADAT"], what="crs.FADAT")
    r["day"] = dtc_date(r["FADTC"])
    age = dm.drop_duplicates("USUBJID").set_index("USUBJID")["AGE"] if "AGE" in dm else pd.Series(dtype=float)
    r["AGE"] = pd.to_numeric(r["USUBJID"].map(age), errors="coerce")
    crs = astct.crs_daily(r, crs_rules)
    icans = astct.icans_daily(r, icans_rules)
    for name, g in (("CRS", crs), ("ICANS", icans)):
        comps = g.drop(columns=["grade"]).add_prefix(f"{name.lower()}_")
        r = pd.concat([r, comps], axis=1)
        r[name] = g["grade"].to_numpy()
        r[f"{name}_episode"] = astct.episodes(r["USUBJID"], r["day"], r[name]).to_numpy()
    return r


def derived_episode_ae(daily: pd.DataFrame, deaths: pd.DataFrame, events: pd.DataFrame,
                       rules: dict[str, pd.DataFrame], dictionary: pd.DataFrame, synonym_table: pd.DataFrame,
                       ct: _CT, studyid: str) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """One AE record per CRS or ICANS episode (ASTCT, Lee 2019), and warning findings.

    AESTDTC = the first day with grade >= 1; AEENDTC = the last such day when a later
    assessment shows the episode over, else empty with AEENRTPT = ONGOING and AEENTPT = the
    last assessment date. AETOXGR = the highest daily grade; grade 5 (AEOUT FATAL, AESDTH Y,
    AESER Y, AEENDTC = death date) when the subject's cause of death is the event, on the
    subject's last episode of that event starting on or before the death.
    """
    recs, found = [], []
    subjects = deaths.reset_index()
    for event in EVENTS:  # two events, vectorised over episodes
        ev = events.loc[event]
        tab = astct.episode_table(daily["USUBJID"], daily["day"], daily[event], daily[f"{event}_episode"])
        five = astct.death_grade(subjects, rules[event]).to_numpy() == 5
        fatal_subj = subjects.loc[five & subjects["died"].to_numpy(), ["USUBJID", "DTHDTC"]]
        tab["fatal"] = False
        if len(fatal_subj):
            dlo, _ = date_bounds(fatal_subj["DTHDTC"])
            death_day = pd.Series(dlo.to_numpy(), index=fatal_subj["USUBJID"].to_numpy())
            dd = tab["USUBJID"].map(death_day)
            cand = tab[tab["USUBJID"].isin(set(fatal_subj["USUBJID"])) & (dd.isna() | (tab["start"] <= dd))]
            last = cand.sort_values(["USUBJID", "episode"]).drop_duplicates("USUBJID", keep="last")
            tab.loc[last.index, "fatal"] = True
            no_epi = pd.Series(sorted(set(fatal_subj["USUBJID"]) - set(last["USUBJID"])), dtype="object")
            found.append(_subject_findings(studyid, f"astct_{event.lower()}_death", no_epi,
                                           f": cause of death is {event} but the daily assessments show no {event} "
                                           "episode starting on or before the death"))
            gap = (tab["fatal"] & dd.notna() & ((dd - tab["end"]).dt.days > 1))
            found.append(_subject_findings(studyid, f"astct_{event.lower()}_death", tab.loc[gap, "USUBJID"],
                                           f": death from {event} more than one day after the last day of the last "
                                           f"{event} episode in the daily assessments"))
        if tab.empty:
            continue
        death_dtc = tab["USUBJID"].map(deaths["DTHDTC"]).fillna("")
        fatal = tab["fatal"].to_numpy()
        resolved = tab["resolved"].to_numpy()
        start = iso_from_timestamp(tab["start"])
        end = iso_from_timestamp(tab["end"])
        term = pd.Series(ev["term"], index=tab.index)
        coded = code_terms(term, dictionary, synonym_table)
        rec = pd.DataFrame({
            "STUDYID": studyid, "DOMAIN": "AE", "USUBJID": tab["USUBJID"],
            "AESPID": event + "-" + tab["episode"].astype(str), "AETERM": term,
        })
        rec = pd.concat([rec, coded.drop(columns=["coded", "match", "normalised"])], axis=1)
        rec["AECAT"] = ev["aecat"]
        rec["AESER"] = np.where(fatal, ct.Y, "")
        rec["AEACN"] = ""
        rec["AEREL"] = ""
        rec["AEOUT"] = np.select([fatal, resolved], [ct.FATAL, ct.RESOLVED], ct.NOT_RESOLVED)
        for c in SERIOUSNESS_CRITERIA:
            rec[c] = ""
        rec["AESDTH"] = np.where(fatal, ct.Y, "")
        rec["AETOXGR"] = np.where(fatal, "5", tab["grade"].astype(int).astype(str))
        rec["AESTDTC"] = start
        rec["AEENDTC"] = np.select([fatal, resolved], [death_dtc.where(death_dtc.ne(""), end), end], "")
        rec["AEENRTPT"] = np.where(~fatal & ~resolved, ct.ONGOING, "")
        rec["AEENTPT"] = np.where(~fatal & ~resolved, iso_from_timestamp(tab["last_assessment"]), "")
        rec["event"] = event
        rec["episode"] = tab["episode"].to_numpy()
        rec["coded"] = True
        rec["normalised"] = coded["normalised"]
        rec["_FILE"] = ""
        rec["_ROW"] = np.nan
        rec["days"] = tab["days"].to_numpy()
        recs.append(rec)
    out = pd.concat(recs, ignore_index=True) if recs else None
    return out, _concat(found, FINDING_COLUMNS)


# ---------------------------------------------------------------------------------------
# timing and supplemental qualifiers
# ---------------------------------------------------------------------------------------
def treatment_emergent(aestdtc: pd.Series, rfstdtc: pd.Series, ct: _CT) -> pd.Series:
    """SUPPAE.AETRTEM: Y when the onset is on or after the first CAR-T infusion (RFSTDTC).

    Same day: times are compared when both are collected, otherwise the AE counts as on/after.
    A partial onset counts as on/after unless its latest possible date is before the
    infusion date (conservative: treatment emergence cannot be excluded). A missing onset
    counts as treatment emergent. N when the subject was never infused (RFSTDTC empty).
    """
    rf_date = dtc_date(rfstdtc)
    lo, hi = date_bounds(aestdtc)
    complete = dtc_date(aestdtc).notna()
    both_times = _text(aestdtc).str.contains("T") & _text(rfstdtc).str.contains("T")
    same = complete & (lo == rf_date)
    te = np.where(hi.isna(), True, hi >= rf_date)
    te = np.where(same & both_times, dtc_datetime(aestdtc) >= dtc_datetime(rfstdtc), te)
    te = np.where(rf_date.isna(), False, te)
    return pd.Series(np.where(te, ct.Y, ct.N), index=aestdtc.index, dtype="object")


def dlt_window(aestdtc: pd.Series, rfstdtc: pd.Series, teae: pd.Series, window_days: int, ct: _CT) -> pd.Series:
    """SUPPAE.DLTWINFL: Y when the onset falls in the DLT window.

    "Within N days after infusion" = protocol days 0..N, infusion = protocol day 0 = study
    day 1, so the window is study days 1..N+1 (21 days: study day 22 is in, 23 is out). It is
    the CAR-T element of the study (``[[elements]]`` duration_days) that ends on protocol day
    N. The AE must be treatment emergent (AETRTEM = Y); a partial onset whose earliest
    possible date is within N days of the infusion counts as in the window (conservative).
    """
    rf_date = dtc_date(rfstdtc)
    lo, _ = date_bounds(aestdtc)
    pday_lo = (lo - rf_date).dt.days
    inside = teae.eq(ct.Y) & (pday_lo.isna() | (pday_lo <= window_days)) & rf_date.notna()
    return pd.Series(np.where(inside, ct.Y, ct.N), index=aestdtc.index, dtype="object")


def toxicity_scale(event: pd.Series, events: pd.DataFrame, study: Study) -> pd.Series:
    """SUPPAE.TOXGRSCL: the study's ``[safety]`` grading scale of each record: ``crs_grading``
    or ``icans_grading`` for CRS and ICANS (ASTCT), ``ae_grading`` (CTCAE) otherwise.
    Investigator-reported CRS/ICANS are graded by ASTCT too (raw ae.AETOXGR contract)."""
    safety = study.get("safety", {})
    if "ae_grading" not in safety:
        raise ConfigError(f"study {study.studyid}: [safety] lacks ae_grading")
    return event.map(events["scale"]).fillna(str(safety["ae_grading"])).astype("object")


def record_event(aedecod: pd.Series, events: pd.DataFrame) -> pd.Series:
    """CRS/ICANS when AEDECOD is the event's term, else ``""``."""
    return aedecod.map(dict(zip(events["term"], events.index))).fillna("").astype("object")


def candidate_event(aedecod: pd.Series, events: pd.DataFrame) -> pd.Series:
    """CRS/ICANS when AEDECOD is a term under which an investigator may report the event
    (``astct_events.csv`` column ``also_reported_as``, ``|``-separated; e.g. ICANS reported as the
    CTCAE term Encephalopathy), else ``""``. Such AEs keep their coding; they are reconciled
    with an overlapping episode of the event."""
    alt = {}
    for event, terms in events["also_reported_as"].items():  # two events
        alt.update({t.strip(): event for t in str(terms).split("|") if t.strip()})
    return aedecod.map(alt).fillna("").astype("object")


# ---------------------------------------------------------------------------------------
# reconciliation of investigator CRS/ICANS AEs with the derived episodes
# ---------------------------------------------------------------------------------------
DISCREPANCY_COLUMNS = ["STUDYID", "USUBJID", "AEDECOD", "discrepancy", "AESEQ", "AESPID", "AETOXGR", "AESTDTC",
                       "AEENDTC", "derived_aeseq", "derived_aespid", "derived_aetoxgr", "derived_aestdtc",
                       "derived_aeendtc"]


def reconcile(ae: pd.DataFrame, ct: _CT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match investigator-reported CRS/ICANS AEs with derived episodes of the same subject and
    event whose date ranges overlap (partial dates by their widest bounds, an ongoing or
    open end as unbounded). Investigator AEs coded to a term the event may be reported under
    (``alt_event``, e.g. Encephalopathy for ICANS) take part too, but only when they overlap an
    episode. Returns (matched pairs: inv_index, der_index; discrepancy report).

    Report rows: each matched pair that disagrees on grade, start date or end date, each
    investigator record without an overlapping episode (NO DERIVED EPISODE) and each episode
    the investigator did not report (NOT REPORTED BY INVESTIGATOR).
    """
    inv = ae[(ae["AECAT"] == "") & (ae["event"].ne("") | ae["alt_event"].ne(""))].copy()
    inv["primary"] = inv["event"].ne("")
    inv["event"] = inv["event"].where(inv["primary"], inv["alt_event"])
    der = ae[ae["AECAT"].ne("") & ae["event"].ne("")].copy()
    far = pd.Timestamp.max.normalize()
    for f in (inv, der):
        f["_lo"], _ = date_bounds(f["AESTDTC"])
        _, hi = date_bounds(f["AEENDTC"])
        f["_hi"] = hi.fillna(far)
        f["_idx"] = f.index
    pairs = inv.merge(der, on=["USUBJID", "event"], suffixes=("", "_d"))
    pairs = pairs[(pairs["_lo"].fillna(pd.Timestamp.min) <= pairs["_hi_d"]) & (pairs["_lo_d"] <= pairs["_hi"])]

    def same_date(a: pd.Series, b: pd.Series) -> pd.Series:
        """Same calendar date; a partial date agrees with any date it contains."""
        a10, b10 = _text(a).str.slice(0, 10), _text(b).str.slice(0, 10)
        n = a10.str.len()
        b_cut = pd.Series(np.select([n.eq(4), n.eq(7)], [b10.str.slice(0, 4), b10.str.slice(0, 7)], b10),
                          index=b10.index)
        return a10.eq(b10) | (a10.ne("") & n.lt(10) & a10.eq(b_cut))

    grade_diff = pairs["AETOXGR"].ne(pairs["AETOXGR_d"])
    start_diff = ~same_date(pairs["AESTDTC"], pairs["AESTDTC_d"])
    end_diff = ~same_date(pairs["AEENDTC"], pairs["AEENDTC_d"])
    what = pd.Series("", index=pairs.index, dtype="object")
    for flag, text in ((grade_diff, "GRADE"), (start_diff, "START DATE"), (end_diff, "END DATE")):
        what = what + np.where(flag, text + "; ", "")
    rep = []
    diff = pairs[what.ne("")]
    if len(diff):
        rep.append(pd.DataFrame({
            "STUDYID": diff["STUDYID"], "USUBJID": diff["USUBJID"], "AEDECOD": diff["AEDECOD"],
            "discrepancy": what[what.ne("")].str.rstrip("; "), "AESEQ": diff["AESEQ"], "AESPID": diff["AESPID"],
            "AETOXGR": diff["AETOXGR"], "AESTDTC": diff["AESTDTC"], "AEENDTC": diff["AEENDTC"],
            "derived_aeseq": diff["AESEQ_d"], "derived_aespid": diff["AESPID_d"],
            "derived_aetoxgr": diff["AETOXGR_d"], "derived_aestdtc": diff["AESTDTC_d"],
            "derived_aeendtc": diff["AEENDTC_d"]}))
    # an AE under an alternative term (e.g. Encephalopathy) without an ICANS episode may be another event
    lone_inv = inv[~inv["_idx"].isin(set(pairs["_idx"])) & inv["primary"]]
    if len(lone_inv):
        rep.append(pd.DataFrame({
            "STUDYID": lone_inv["STUDYID"], "USUBJID": lone_inv["USUBJID"], "AEDECOD": lone_inv["AEDECOD"],
            "discrepancy": "NO DERIVED EPISODE", "AESEQ": lone_inv["AESEQ"], "AESPID": lone_inv["AESPID"],
            "AETOXGR": lone_inv["AETOXGR"], "AESTDTC": lone_inv["AESTDTC"], "AEENDTC": lone_inv["AEENDTC"]}))
    lone_der = der[~der["_idx"].isin(set(pairs["_idx_d"]))]
    if len(lone_der):
        rep.append(pd.DataFrame({
            "STUDYID": lone_der["STUDYID"], "USUBJID": lone_der["USUBJID"], "AEDECOD": lone_der["AEDECOD"],
            "discrepancy": "NOT REPORTED BY INVESTIGATOR", "derived_aeseq": lone_der["AESEQ"],
            "derived_aespid": lone_der["AESPID"], "derived_aetoxgr": lone_der["AETOXGR"],
            "derived_aestdtc": lone_der["AESTDTC"], "derived_aeendtc": lone_der["AEENDTC"]}))
    report = pd.concat(rep, ignore_index=True) if rep else empty(DISCREPANCY_COLUMNS)
    report = report.reindex(columns=DISCREPANCY_COLUMNS)
    for c in DISCREPANCY_COLUMNS:
        if c in ("AESEQ", "derived_aeseq"):
            report[c] = pd.to_numeric(report[c], errors="coerce").astype("Int64")
        else:
            report[c] = report[c].astype("object").where(report[c].notna(), "")
    report = report.sort_values(["USUBJID", "AEDECOD", "AESTDTC", "derived_aestdtc", "AESPID", "derived_aespid"],
                                kind="mergesort").reset_index(drop=True)
    matched = pairs[["_idx", "_idx_d"]].rename(columns={"_idx": "inv", "_idx_d": "der"}).reset_index(drop=True)
    return matched, report


# ---------------------------------------------------------------------------------------
# FA and RELREC
# ---------------------------------------------------------------------------------------
def fa_tests(spec: Spec, rules: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """FA tests: one row per raw field graded by the ASTCT tables (FATESTCD = the raw column),
    with its event, FATEST (decode of codelist FATESTCD), type and unit (value-level metadata
    of FA.FAORRES), plus the derived daily grade (TOXGR) of each event."""
    rows = []
    for event in EVENTS:
        for f in astct.fields(rules[event]):
            rows.append({"event": event, "FATESTCD": f, "derived": False})
        rows.append({"event": event, "FATESTCD": "TOXGR", "derived": True})
    t = pd.DataFrame(rows).drop_duplicates(["event", "FATESTCD"]).reset_index(drop=True)
    t["order"] = np.arange(len(t))
    decode = spec.decode_map("FATESTCD")
    missing = sorted(set(t["FATESTCD"]) - set(decode))
    if missing:
        raise ConfigError(f"codelist FATESTCD lacks {', '.join(missing)} (specs/sdtm/codelists/ae.csv)")
    t["FATEST"] = t["FATESTCD"].map(decode)
    vl = spec.valuelevel
    vl = vl[(vl.get("dataset") == "FA") & (vl.get("variable") == "FAORRES") & (vl.get("where_variable") == "FATESTCD")] \
        if len(vl) else vl
    meta = vl.set_index("where_value") if len(vl) else pd.DataFrame(columns=["type", "unit"])
    t["type"] = t["FATESTCD"].map(meta["type"]).fillna("text") if "type" in meta else "text"
    t["unit"] = t["FATESTCD"].map(meta["unit"]).fillna("") if "unit" in meta else ""
    return t


def findings_about(daily: pd.DataFrame, tests: pd.DataFrame, events: pd.DataFrame, dm: pd.DataFrame,
                   se: pd.DataFrame | None, study: Study) -> pd.DataFrame:
    """FA records (SDTMIG 3.4 6.4 Findings About): one per subject, assessment day and
    component with a value, plus the derived daily ASTCT grade (TOXGR) of each event.

    FAOBJ = the event's object (astct_events.csv), FACAT from the same table, FAORRES as
    collected, FASTRESC = FAORRES, FASTRESN for numeric tests, units from the value-level
    metadata. FAGRPID = the episode id on episode days. VISITNUM/VISIT: the planned visit
    whose planned study day equals FADY, else UNSCHEDULED (numbered after the last planned
    visit on or before the day, :func:`pipeline.derive.visits.visit_numbers`).
    """
    parts = []
    for t in tests.itertuples(index=False):  # ~16 tests, each vectorised over assessment days
        if t.derived:
            val = daily[t.event].astype(int).astype(str)
        elif t.FATESTCD in daily:
            val = _text(daily[t.FATESTCD])
        else:
            continue
        keep = val.ne("")
        sub = daily.loc[keep]
        epi = sub[f"{t.event}_episode"].astype(int)
        parts.append(pd.DataFrame({
            "STUDYID": study.studyid, "DOMAIN": "FA", "USUBJID": sub["USUBJID"].to_numpy(),
            "FAGRPID": np.where(epi > 0, t.event + "-" + epi.astype(str), ""),
            "FATESTCD": t.FATESTCD, "FATEST": t.FATEST, "FAOBJ": events.loc[t.event, "faobj"],
            "FACAT": events.loc[t.event, "facat"], "FAORRES": val[keep].to_numpy(),
            "FAORRESU": t.unit, "FASTRESC": val[keep].to_numpy(),
            "FASTRESN": pd.to_numeric(val[keep], errors="coerce").to_numpy() if t.type in ("integer", "float")
            else np.nan,
            "FASTRESU": t.unit, "FADTC": sub["FADTC"].to_numpy(), "_order": t.order,
            "_FILE": sub["_FILE"].to_numpy() if "_FILE" in sub else "",
            "_ROW": sub["_ROW"].to_numpy() if "_ROW" in sub else np.nan}))
    cols = ["STUDYID", "DOMAIN", "USUBJID", "FAGRPID", "FATESTCD", "FATEST", "FAOBJ", "FACAT", "FAORRES",
            "FAORRESU", "FASTRESC", "FASTRESN", "FASTRESU", "FADTC", "_order", "_FILE", "_ROW"]
    fa = pd.concat(parts, ignore_index=True) if parts else empty(cols)
    fa["FASTRESN"] = pd.to_numeric(fa["FASTRESN"], errors="coerce").astype("float64")
    fa["FADY"] = study_day_by_subject(fa["FADTC"], fa["USUBJID"], dm)
    planned = dict(zip(study.visits["VISITDY"].astype(float), study.visits["VISIT"])) if len(study.visits) else {}
    names = fa["FADY"].map(planned).fillna(UNSCHEDULED)
    vis = visit_numbers(names, study, fa["FADY"])
    fa["VISITNUM"] = vis["VISITNUM"].to_numpy()
    fa["VISIT"] = vis["VISIT"].to_numpy()
    fa["EPOCH"] = derive_epoch(fa["USUBJID"], fa["FADTC"], se) if se is not None and len(fa) else ""
    fa["FASEQ"] = assign_seq(fa, ["FADTC", "_order"])
    return fa


def relrec(ae: pd.DataFrame, matched: pd.DataFrame, fa: pd.DataFrame, studyid: str) -> pd.DataFrame:
    """RELREC (SDTMIG 3.4 8.2): per episode, RELID = the episode id (e.g. CRS-1) relating the
    derived AE record (IDVAR AESEQ), the episode's FA records (IDVAR FAGRPID) and the
    investigator's overlapping CRS/ICANS AE records (IDVAR AESEQ)."""
    der = ae[ae["AECAT"].ne("") & ae["event"].ne("")]
    relid = der["AESPID"]
    parts = [pd.DataFrame({"USUBJID": der["USUBJID"], "RDOMAIN": "AE", "IDVAR": "AESEQ",
                           "IDVARVAL": der["AESEQ"].astype(int).astype(str), "RELID": relid})]
    grp = fa.loc[fa["FAGRPID"].ne(""), ["USUBJID", "FAGRPID"]].drop_duplicates()
    parts.append(pd.DataFrame({"USUBJID": grp["USUBJID"], "RDOMAIN": "FA", "IDVAR": "FAGRPID",
                               "IDVARVAL": grp["FAGRPID"], "RELID": grp["FAGRPID"]}))
    if len(matched):
        inv = ae.loc[matched["inv"].to_numpy()]
        parts.append(pd.DataFrame({"USUBJID": inv["USUBJID"].to_numpy(), "RDOMAIN": "AE", "IDVAR": "AESEQ",
                                   "IDVARVAL": inv["AESEQ"].astype(int).astype(str).to_numpy(),
                                   "RELID": ae.loc[matched["der"].to_numpy(), "AESPID"].to_numpy()}))
    rel = pd.concat(parts, ignore_index=True).drop_duplicates()
    rel.insert(0, "STUDYID", studyid)
    rel["RELTYPE"] = ""
    return rel.sort_values(["USUBJID", "RELID", "RDOMAIN", "IDVARVAL"], kind="mergesort").reset_index(drop=True)


def episode_report(ae: pd.DataFrame) -> pd.DataFrame:
    """CRS/ICANS episodes derived by ASTCT grading, one row per episode (for listings)."""
    der = ae[ae["AECAT"].ne("") & ae["event"].ne("")]
    out = pd.DataFrame({
        "STUDYID": der["STUDYID"], "USUBJID": der["USUBJID"], "AEDECOD": der["AEDECOD"], "AESPID": der["AESPID"],
        "AESEQ": der["AESEQ"].astype("Int64"), "AETOXGR": der["AETOXGR"], "AESTDTC": der["AESTDTC"], "AEENDTC": der["AEENDTC"],
        "AEENRTPT": der["AEENRTPT"], "AEOUT": der["AEOUT"], "AESTDY": der["AESTDY"].astype("Int64"),
        "episode_days": der["days"].astype("Int64")})
    return out.sort_values(["USUBJID", "AEDECOD", "AESTDTC"], kind="mergesort").reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------
def _reject_unknown_subjects(raw: pd.DataFrame, form: str, dm: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose subject is not in DM cannot reach SDTM: rejected with the reason."""
    if raw.empty:
        return raw, empty(REJECTED_COLUMNS)
    u = make_usubjid(raw)
    known = u.isin(set(dm["USUBJID"]))
    bad = raw.loc[~known]
    rej = pd.DataFrame({"form": form, "file": bad["_FILE"].to_numpy() if "_FILE" in bad else "",
                        "row": bad["_ROW"].to_numpy() if "_ROW" in bad else "", "column": "SUBJID",
                        "value": _text(bad["SUBJID"]).to_numpy(), "reason": "subject not in DM"})
    return raw.loc[known], rej if len(rej) else empty(REJECTED_COLUMNS)


def _subject_elements(ctx: StudyContext, dm: pd.DataFrame) -> pd.DataFrame | None:
    se = ctx.datasets.get("SE")
    if se is not None:
        return se
    ex = ctx.datasets.get("EX")
    if ex is None:
        return None
    return subject_elements(dm, ex, ctx.study)


def build(ctx: StudyContext) -> DomainResult:
    """AE, SUPPAE, FA and RELREC of one study, with the coding-query, CRS/ICANS discrepancy
    and episode reports and the AE gate findings (see the module docstring)."""
    study, spec = ctx.study, ctx.spec
    if "DM" not in ctx.datasets:
        raise DataError(f"{study.studyid}: AE needs DM, which was not built")
    dm = ctx.datasets["DM"]
    ct = _CT(spec)
    dictionary = coding_dictionary(spec)
    syn = synonyms(spec, dictionary)
    events = event_terms(spec, study)
    rules = {e: astct.load_rules(spec, e) for e in EVENTS}
    se = _subject_elements(ctx, dm)

    raw_ae, rej_ae = _reject_unknown_subjects(ctx.form("ae"), "ae", dm)
    raw_crs, rej_crs = _reject_unknown_subjects(ctx.form("crs"), "crs", dm)
    deaths = subject_deaths(dm, ctx.datasets.get("DS"), ctx.form("ds"), ct)

    inv = investigator_ae(raw_ae, dictionary, syn, ct, study.data_cutoff)
    daily = daily_assessments(raw_crs, dm, rules["CRS"], rules["ICANS"])
    der, der_findings = derived_episode_ae(daily, deaths, events, rules, dictionary, syn, ct, study.studyid)
    inv["days"] = np.nan
    ae = pd.concat([inv, der], ignore_index=True) if der is not None else inv
    ae["event"] = record_event(ae["AEDECOD"], events)
    ae["alt_event"] = candidate_event(ae["AEDECOD"], events)

    rf = ae["USUBJID"].map(dm.drop_duplicates("USUBJID").set_index("USUBJID")["RFSTDTC"]).fillna("")
    ae["AESTDY"] = study_day_by_subject(ae["AESTDTC"], ae["USUBJID"], dm)
    ae["AEENDY"] = study_day_by_subject(ae["AEENDTC"], ae["USUBJID"], dm)
    ae["EPOCH"] = derive_epoch(ae["USUBJID"], ae["AESTDTC"], se) if se is not None and len(ae) else ""
    ae["AESEQ"] = assign_seq(ae, ["AESTDTC", "AECAT", "AESPID", "AETERM"]) if len(ae) else np.nan

    matched, discrepancies = reconcile(ae, ct)
    ae["AETRTEM"] = treatment_emergent(ae["AESTDTC"], rf, ct)
    ae["DLTWINFL"] = dlt_window(ae["AESTDTC"], rf, ae["AETRTEM"], study.dlt_window_days, ct)
    # an AE under an alternative term that matched an episode reports that event (graded by ASTCT)
    if len(matched):
        ae.loc[matched["inv"].unique(), "event"] = ae.loc[matched["der"].to_numpy(), "event"].groupby(
            matched["inv"].to_numpy()).first()
    ae["TOXGRSCL"] = toxicity_scale(ae["event"], events, study)
    ae["ASTCTDUP"] = ""
    if len(matched):
        ae.loc[matched["inv"].unique(), "ASTCTDUP"] = ct.Y

    tests = fa_tests(spec, rules)
    fa = findings_about(daily, tests, events, dm, se, study)
    rel = relrec(ae, matched, fa, study.studyid)

    is_inv = ae["AECAT"].eq("")
    findings = [ae_rule_findings(ae.loc[is_inv], dictionary, deaths, ct, study.studyid), der_findings]
    no_age = raw_crs.index[daily["AGE"].isna().to_numpy()] if len(daily) else []
    if len(no_age):
        findings.append(_one_finding(study.studyid, "astct_icans_age", "warning",
                                     f"{len(no_age)} daily assessment(s) of subjects without DM.AGE: ICE/CAPD "
                                     "not graded (ASTCT selects ICE or CAPD by age)", file="crs", column="AGE"))
    if len(discrepancies):
        findings.append(_one_finding(study.studyid, "crs_icans_reconciliation", "warning",
                                     f"{len(discrepancies)} CRS/ICANS discrepancies between investigator-reported AEs "
                                     "and ASTCT-derived episodes (report crs_icans_discrepancies)"))

    ae_cols = ctx.spec.var_names("AE")
    fa_cols = ctx.spec.var_names("FA")
    rel_cols = ctx.spec.var_names("RELREC")
    supp = build_supp(ae, "AE", spec, "AESEQ")

    consumed = [ctx.consumed_rows("ae", pd.Series(inv["_ROW"]), "AE"),
                ctx.consumed_rows("ae", pd.Series(inv["_ROW"]), "SUPPAE"),
                ctx.consumed_rows("crs", raw_crs["_ROW"] if "_ROW" in raw_crs else pd.Series(dtype=int), "FA")]
    in_epi = daily[(daily["CRS_episode"] > 0) | (daily["ICANS_episode"] > 0)] if len(daily) else daily
    if len(in_epi) and "_ROW" in in_epi:
        consumed.append(ctx.consumed_rows("crs", in_epi["_ROW"], "AE"))
        consumed.append(ctx.consumed_rows("crs", in_epi["_ROW"], "RELREC"))

    return DomainResult(
        datasets={"AE": ae[ae_cols].reset_index(drop=True), "SUPPAE": supp,
                  "FA": fa[fa_cols].reset_index(drop=True), "RELREC": rel[rel_cols]},
        reports={"coding_queries": coding_queries(ae.loc[is_inv]),
                 "crs_icans_discrepancies": discrepancies,
                 "crs_icans_episodes": episode_report(ae)},
        consumed=_concat(consumed, ["form", "row", "dataset"]),
        rejected=_concat([rej_ae, rej_crs], REJECTED_COLUMNS),
        findings=_concat(findings, FINDING_COLUMNS),
    )
