"""AE, SUPPAE, FA and RELREC: the investigator's adverse events coded to CTCAE v5.0, and
the daily CRS/ICANS assessments with their ASTCT consensus grades as Findings About.

AE (SDTMIG 3.4 section 6.2) holds one record per event the investigator reported (raw form
``ae``), nothing else: AETERM as collected; AEDECOD, AELLT, AELLTCD, AEBODSYS, AEBDSYCD,
AESOC, AESOCCD from the dictionary term (:mod:`pipeline.rules.ctcae_terms`), the study's
coding decisions (``specs/studies/<STUDYID>.coding.csv``) resolving what the dictionary and
synonyms cannot. Every such verbatim is in the ``coding_queries`` report (RESOLVED or OPEN); an
OPEN one leaves AEDECOD empty, which is an error in a final build (``build --mode final``, the
default) and a warning in a draft build (``--mode draft``). Which scale graded a record is in
SUPPAE.TOXGRSCL (the study's ``[safety]`` ``ae_grading``, ``crs_grading`` or
``icans_grading``): CTCAE's own CRS criteria differ from ASTCT's. Analysis flags (treatment
emergence, DLT window) are ADaM's (ADAE), not SDTM's.

FA (SDTMIG 3.4 section 6.4) holds the daily components as collected (one record per subject,
day and component; FATESTCD = the raw column) and the derived daily ASTCT grade of each event
(FATESTCD TOXGR, 0-4) (:mod:`pipeline.rules.astct`). FAOBJ = the event's dictionary term, which
is the AEDECOD of the investigator's AE. FAGRPID = the episode id (``CRS-1``, ``ICANS-2``: the
n-th run of consecutive days with grade >= 1) on episode days.

RELREC (SDTMIG 3.4 section 8.2) relates each investigator CRS/ICANS AE (IDVAR AESEQ) to the FA
records of the overlapping episode (IDVAR FAGRPID), RELID = the episode id.

Episodes are analysis results, not SDTM records: they are in the ``crs_icans_episodes`` report
(ADaM derives them again from FA). Where the daily assessments show an episode the investigator
did not report, or grades, dates or terms disagree, the ``crs_icans_discrepancies`` report
raises a data query; no AE record is created from the assessments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext, empty
from pipeline.config import Study
from pipeline.derive.dates import cdash_to_iso, dtc_date, iso_from_timestamp
from pipeline.derive.epoch import derive_epoch, subject_elements
from pipeline.derive.identifiers import by_subject, usubjid as make_usubjid
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.suppqual import build_supp
from pipeline.derive.text import stripped_text
from pipeline.derive.visits import UNSCHEDULED, visit_numbers
from pipeline.errors import ConfigError, DataError
from pipeline.export.memo import per_object
from pipeline.rules import astct, meddra
from pipeline.rules.ctcae_terms import (check_decisions, code_terms, coding_dictionary, decisions_path, defined_grades,
                                        grade_exists, load_coding_decisions, synonyms)
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
    return stripped_text(s)


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
    dthfl = _text(by_subject(dm, "DTHFL")) if "DTHFL" in dm else pd.Series("", index=dm["USUBJID"])
    dthdtc = _text(by_subject(dm, "DTHDTC")) if "DTHDTC" in dm else pd.Series("", index=dm["USUBJID"])
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
                    cutoff: str, decisions: pd.DataFrame | None = None,
                    dist: meddra.Distribution | None = None) -> pd.DataFrame:
    """AE records from the raw ``ae`` form (SDTMIG 3.4 AE), coded, with ``_FILE``/``_ROW``.

    Coding: the verbatim is matched to a CTCAE v5.0 term (or the study's decision,
    :func:`pipeline.rules.ctcae_terms.code_terms`); with a MedDRA distribution (``dist``) the
    selected LLT's primary path gives the whole hierarchy (AEDECOD = its PT,
    :func:`pipeline.rules.meddra.code_with_distribution`), else the CTCAE fallback
    (:func:`pipeline.rules.meddra.ctcae_fallback`). ``ctcae_term`` keeps the CTCAE term for the
    grade checks; ``llt_current`` is False for a non-current LLT of the distribution.

    AESTDTC/AEENDTC keep partial dates (SDTMIG 3.4 4.4.2). An event marked ongoing (AEONGO = Y)
    gets AEENRTPT = ONGOING with AEENTPT = the data cut-off date (SDTMIG 3.4 4.4.7.2).
    """
    r = raw.reset_index(drop=True)
    coded = code_terms(r["AETERM"], dictionary, synonym_table, decisions)
    if dist is not None:
        # the CTCAE term (by its LLT code, else by name), else the verbatim itself as an LLT name
        lookup = coded["AELLT"].where(coded["coded"], _text(r["AETERM"]))
        hier = meddra.code_with_distribution(lookup, coded["AELLTCD"], dist)
    else:
        hier = meddra.ctcae_fallback(coded)
    out = pd.DataFrame({
        "STUDYID": _text(r["STUDYID"]), "DOMAIN": "AE", "USUBJID": make_usubjid(r),
        "AESPID": _text(r["AESPID"]), "AETERM": _text(r["AETERM"]),
    })
    out = pd.concat([out, hier[meddra.HIERARCHY_VARIABLES]], axis=1)
    out["ctcae_term"] = coded["AEDECOD"].to_numpy()
    for col in _INV_COLUMNS:
        out[col] = _text(r[col]) if col in r else ""
    out["AETOXGR"] = _text(r["AETOXGR"])
    out["AESTDTC"] = cdash_to_iso(r["AESTDAT"], r["AESTTIM"] if "AESTTIM" in r else None, what="ae.AESTDAT/AESTTIM")
    out["AEENDTC"] = cdash_to_iso(r["AEENDAT"], what="ae.AEENDAT")
    ongoing = _text(r["AEONGO"]).eq(ct.Y) if "AEONGO" in r else pd.Series(False, index=r.index)
    out["AEENRTPT"] = np.where(ongoing & out["AEENDTC"].eq(""), ct.ONGOING, "")
    out["AEENTPT"] = np.where(out["AEENRTPT"].ne(""), cutoff, "")
    if dist is not None:
        out["coded"] = hier["found"].to_numpy()
        out["match"] = np.where(~out["coded"], "", np.where(coded["coded"], coded["match"], "MEDDRA"))
    else:
        out["coded"] = coded["coded"].to_numpy()
        out["match"] = coded["match"].to_numpy()
    out["llt_current"] = hier["current"].to_numpy() if dist is not None else True
    out["normalised"] = coded["normalised"].to_numpy()
    out["_FILE"] = r["_FILE"].to_numpy() if "_FILE" in r else ""
    out["_ROW"] = r["_ROW"].to_numpy() if "_ROW" in r else np.arange(len(r)) + 2
    return out


def ae_rule_findings(ae: pd.DataFrame, dictionary: pd.DataFrame, deaths: pd.DataFrame, ct: _CT,
                     study: str, mode: str = "final") -> pd.DataFrame:
    """Gate findings on investigator-reported AEs, each naming the record (file, row, USUBJID, AESPID).

    - ``ae_grade_exists`` (error): AETOXGR is a grade CTCAE v5.0 defines for the term
      (CTCAE marks impossible grades with "-", e.g. Alopecia has grades 1-2 only).
    - ``ae_grade5_outcome`` (error): grade 5 (death related to the AE, CTCAE v5.0) if and only
      if AEOUT = FATAL.
    - ``ae_grade5_death`` (error): a grade 5 AE needs a death in DM (DTHFL/DTHDTC) or DS.
    - ``ae_serious_criteria`` (error): AESER = Y needs at least one seriousness criterion = Y,
      AESER = N allows none (SDTMIG 3.4 AE assumption 7a; ICH E2A).
    - ``ae_death_flag`` (warning): AESDTH = Y if and only if AEOUT = FATAL.
    - ``ae_uncoded`` (error in a final build, warning in a draft build): verbatim not coded by
      the dictionary, the synonyms or the study's coding decisions; listed in the coding-query
      report. AEDECOD is Required (SDTMIG 3.4), so a final build cannot have it empty.
    """
    who = ae["USUBJID"] + " AESPID " + ae["AESPID"] + " (" + ae["AETERM"] + ")"
    grade = pd.to_numeric(ae["AETOXGR"], errors="coerce")
    found = []
    exists = grade_exists(ae["ctcae_term"], ae["AETOXGR"], dictionary)
    bad = exists.eq(False)
    found.append(_finding(ae, bad, study, "AETOXGR", ae["AETOXGR"], "ae_grade_exists", "error",
                          who + ": AETOXGR " + ae["AETOXGR"] + " does not exist for CTCAE term '" + ae["ctcae_term"]
                          + "' (grades " + defined_grades(ae["ctcae_term"], dictionary) + ")"))
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
    if "llt_current" in ae:
        stale = ae["coded"].astype(bool) & ~ae["llt_current"].astype(bool)
        found.append(_finding(ae, stale, study, "AELLT", ae["AELLT"], "ae_llt_not_current", "warning",
                              who + ": LLT " + ae["AELLT"] + " is not current in the MedDRA distribution; "
                              "recode to a current LLT"))
    final = mode == "final"
    found.append(_finding(ae, ~ae["coded"], study, "AETERM", ae["AETERM"], "ae_uncoded",
                          "error" if final else "warning",
                          who + ": verbatim term not coded (coding query raised); add a decision to "
                          f"specs/studies/{study}.coding.csv" + ("" if final else " (draft build: allowed)")))
    return _concat(found, FINDING_COLUMNS)


def coding_queries(ae: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """The coding-query report: one row per investigator AE whose verbatim neither the
    dictionary nor the synonym table codes, sorted by subject and AESPID. ``status`` RESOLVED
    when the study's coding decisions code it (with the LLT, who decided, when and why), else
    OPEN (AEDECOD empty: an error in a final build)."""
    q = ae.loc[ae["match"].isin(["DECISION", ""])]
    def decided(col: str) -> pd.Series:
        got = q["normalised"].map(dict(zip(decisions["key"], decisions[col]))).astype("object")
        return got.where(got.notna(), "")

    resolved = q["match"].eq("DECISION")
    out = pd.DataFrame({
        "STUDYID": q["STUDYID"], "USUBJID": q["USUBJID"], "AESPID": q["AESPID"], "AETERM": q["AETERM"],
        "AESTDTC": q["AESTDTC"], "AETOXGR": q["AETOXGR"], "normalised_term": q["normalised"],
        "file": q["_FILE"], "row": _rows(q["_ROW"]),
        "status": np.where(resolved, "RESOLVED", "OPEN"),
        "AELLT": q["AELLT"], "AELLTCD": q["AELLTCD"],
        "decided_by": decided("decided_by"),
        "decided_on": decided("decided_on"),
        "rationale": decided("rationale"),
        "query": np.where(resolved, "Resolved by the study's coding decision",
                          "Verbatim term could not be coded; please clarify or correct the term"),
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


EPISODE_COLUMNS = ["STUDYID", "USUBJID", "event", "term", "episode_id", "episode_grade", "episode_start",
                   "episode_end", "episode_ongoing", "episode_outcome", "episode_start_day", "episode_days",
                   "last_assessment", "linked_aeseq"]


def derived_episodes(daily: pd.DataFrame, deaths: pd.DataFrame, events: pd.DataFrame,
                     rules: dict[str, pd.DataFrame], ct: _CT, studyid: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CRS and ICANS episodes derived by ASTCT grading (Lee 2019) from the daily assessments,
    one row per episode, and warning findings. These are analysis results, not SDTM records:
    they feed the ``crs_icans_episodes`` report and the reconciliation with the investigator's
    AEs (ADaM derives them again from FA).

    ``episode_start`` = the first day with grade >= 1; ``episode_end`` = the last such day when a
    later assessment shows the episode over, else empty with ``episode_ongoing`` = ONGOING.
    ``episode_grade`` = the highest daily grade; 5 (outcome FATAL, end = death date) when the
    subject's cause of death is the event, on the subject's last episode of that event starting
    on or before the death.
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
        end = iso_from_timestamp(tab["end"])
        recs.append(pd.DataFrame({
            "STUDYID": studyid, "USUBJID": tab["USUBJID"].to_numpy(), "event": event, "term": ev["term"],
            "episode_id": (event + "-" + tab["episode"].astype(str)).to_numpy(),
            "episode_grade": np.where(fatal, "5", tab["grade"].astype(int).astype(str)),
            "episode_start": iso_from_timestamp(tab["start"]).to_numpy(),
            "episode_end": np.select([fatal, resolved], [death_dtc.where(death_dtc.ne(""), end), end], ""),
            "episode_ongoing": np.where(~fatal & ~resolved, ct.ONGOING, ""),
            "episode_outcome": np.select([fatal, resolved], [ct.FATAL, ct.RESOLVED], ct.NOT_RESOLVED),
            "episode_days": tab["days"].to_numpy(),
            "last_assessment": iso_from_timestamp(tab["last_assessment"]).to_numpy()}))
    out = pd.concat(recs, ignore_index=True) if recs else empty(EPISODE_COLUMNS)
    out["episode_start_day"] = np.nan
    out["linked_aeseq"] = ""
    return out.reindex(columns=EPISODE_COLUMNS), _concat(found, FINDING_COLUMNS)


# ---------------------------------------------------------------------------------------
# supplemental qualifiers and event terms
# ---------------------------------------------------------------------------------------
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
                       "AEENDTC", "episode_id", "episode_grade", "episode_start", "episode_end"]


def _same_date(a: pd.Series, b: pd.Series) -> pd.Series:
    """Same calendar date; a partial date agrees with any date it contains."""
    a10, b10 = _text(a).str.slice(0, 10), _text(b).str.slice(0, 10)
    n = a10.str.len()
    b_cut = pd.Series(np.select([n.eq(4), n.eq(7)], [b10.str.slice(0, 4), b10.str.slice(0, 7)], b10),
                      index=b10.index)
    return a10.eq(b10) | (a10.ne("") & n.lt(10) & a10.eq(b_cut))


def reconcile(ae: pd.DataFrame, episodes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match the investigator's CRS/ICANS AEs with the ASTCT episodes derived from the daily
    assessments (same subject and event, overlapping date ranges: partial dates by their
    widest bounds, an ongoing or open end as unbounded). AEs coded to a term the event may be
    reported under (``alt_event``, e.g. Encephalopathy for ICANS) take part too, but only when
    they overlap an episode.

    Returns (pairs, report). ``pairs``: ``ae`` (index into ``ae``), ``episode`` (index into
    ``episodes``) and ``primary`` (the AE's AEDECOD is the event's own term: only such pairs
    are related in RELREC, because FAOBJ must equal the related AE's AEDECOD).

    The report is a list of data queries, one row per: matched pair that disagrees on grade,
    start date or end date, or whose AE is coded to another term (``AE TERM``: e.g. ICANS
    reported as Encephalopathy, for the investigator to confirm); investigator CRS/ICANS AE
    without an overlapping episode (NO DERIVED EPISODE); episode the investigator did not
    report (NOT REPORTED BY INVESTIGATOR). No AE record is created from the assessments.
    """
    inv = ae[ae["event"].ne("") | ae["alt_event"].ne("")].copy()
    inv["primary"] = inv["event"].ne("")
    inv["event"] = inv["event"].where(inv["primary"], inv["alt_event"])
    der = episodes.copy()
    far = pd.Timestamp.max.normalize()
    inv["_lo"], _ = date_bounds(inv["AESTDTC"])
    inv["_hi"] = date_bounds(inv["AEENDTC"])[1].fillna(far)
    inv["_idx"] = inv.index
    der["_lo_d"], _ = date_bounds(der["episode_start"])
    der["_hi_d"] = date_bounds(der["episode_end"])[1].fillna(far)
    der["_idx_d"] = der.index
    pairs = inv.merge(der.drop(columns=["STUDYID"]), on=["USUBJID", "event"])
    pairs = pairs[(pairs["_lo"].fillna(pd.Timestamp.min) <= pairs["_hi_d"]) & (pairs["_lo_d"] <= pairs["_hi"])]

    flags = ((~pairs["primary"], "AE TERM"), (pairs["AETOXGR"].ne(pairs["episode_grade"]), "GRADE"),
             (~_same_date(pairs["AESTDTC"], pairs["episode_start"]), "START DATE"),
             (~_same_date(pairs["AEENDTC"], pairs["episode_end"]), "END DATE"))
    what = pd.Series("", index=pairs.index, dtype="object")
    for flag, text in flags:  # four kinds of disagreement
        what = what + np.where(flag, text + "; ", "")
    rep = []
    diff = pairs[what.ne("")]
    show = ["STUDYID", "USUBJID", "AEDECOD", "AESEQ", "AESPID", "AETOXGR", "AESTDTC", "AEENDTC"]
    ep_cols = ["episode_id", "episode_grade", "episode_start", "episode_end"]
    if len(diff):
        rep.append(diff[show + ep_cols].assign(discrepancy=what[what.ne("")].str.rstrip("; ")))
    lone_inv = inv[~inv["_idx"].isin(set(pairs["_idx"])) & inv["primary"]]
    if len(lone_inv):
        rep.append(lone_inv[show].assign(discrepancy="NO DERIVED EPISODE"))
    lone_der = der[~der["_idx_d"].isin(set(pairs["_idx_d"]))]
    if len(lone_der):
        rep.append(lone_der[["STUDYID", "USUBJID", *ep_cols]].assign(
            AEDECOD=lone_der["term"], discrepancy="NOT REPORTED BY INVESTIGATOR"))
    report = pd.concat(rep, ignore_index=True) if rep else empty(DISCREPANCY_COLUMNS)
    report = report.reindex(columns=DISCREPANCY_COLUMNS)
    for c in DISCREPANCY_COLUMNS:
        if c == "AESEQ":
            report[c] = pd.to_numeric(report[c], errors="coerce").astype("Int64")
        else:
            report[c] = report[c].astype("object").where(report[c].notna(), "")
    report = report.sort_values(["USUBJID", "AEDECOD", "AESTDTC", "episode_start", "AESPID", "episode_id"],
                                kind="mergesort").reset_index(drop=True)
    matched = pd.DataFrame({"ae": pairs["_idx"].to_numpy(), "episode": pairs["_idx_d"].to_numpy(),
                            "primary": pairs["primary"].to_numpy(dtype=bool)})
    return matched, report


# ---------------------------------------------------------------------------------------
# FA and RELREC
# ---------------------------------------------------------------------------------------
def spec_fa_tests(spec: Spec) -> pd.DataFrame:
    """:func:`fa_tests` of the spec's own ASTCT rule tables, made once per loaded spec
    (:func:`~pipeline.export.memo.per_object`) and handed out as a copy."""
    made = per_object(spec, "fa_tests", lambda s: fa_tests(s, {e: astct.load_rules(s, e) for e in EVENTS}))
    return made.copy()


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

    FAOBJ = the event's dictionary term (``astct_events.csv`` ``term``, e.g. Cytokine release
    syndrome), which is the AEDECOD of the investigator's AE related to the FA records in
    RELREC (SDTMIG 3.4 6.4.3). FACAT from the same table, FAORRES as
    collected, FASTRESC = FAORRES, FASTRESN for numeric tests, units from the value-level
    metadata. FAGRPID = the episode id on episode days. VISITNUM/VISIT: the planned visit
    whose planned study day equals FADY, else UNSCHEDULED (numbered after the last planned
    visit on or before the day, :func:`pipeline.derive.visits.visit_numbers`).
    """
    # the columns every test reads, taken from the (wide) daily frame once, and each event's
    # FAGRPID of every assessment day ("" outside episodes) made once per event, not per test
    subjects, dtcs = daily["USUBJID"].to_numpy(), daily["FADTC"].to_numpy()
    files = daily["_FILE"].to_numpy() if "_FILE" in daily else None
    rows = daily["_ROW"].to_numpy() if "_ROW" in daily else None
    groups = {}
    parts = []
    for t in tests.itertuples(index=False):  # ~16 tests, each vectorised over assessment days
        if t.derived:
            val = daily[t.event].astype(int).astype(str)
        elif t.FATESTCD in daily:
            val = _text(daily[t.FATESTCD])
        else:
            continue
        if t.event not in groups:
            epi = daily[f"{t.event}_episode"].astype(int)
            groups[t.event] = np.where(epi > 0, t.event + "-" + epi.astype(str), "")
        keep = val.ne("").to_numpy()
        kept = val[keep]
        result = kept.to_numpy()
        parts.append(pd.DataFrame({
            "STUDYID": study.studyid, "DOMAIN": "FA", "USUBJID": subjects[keep],
            "FAGRPID": groups[t.event][keep],
            "FATESTCD": t.FATESTCD, "FATEST": t.FATEST, "FAOBJ": events.at[t.event, "term"],
            "FACAT": events.at[t.event, "facat"], "FAORRES": result,
            "FAORRESU": t.unit, "FASTRESC": result.copy(),
            "FASTRESN": pd.to_numeric(kept, errors="coerce").to_numpy() if t.type in ("integer", "float")
            else np.nan,
            "FASTRESU": t.unit, "FADTC": dtcs[keep], "_order": t.order,
            "_FILE": files[keep] if files is not None else "",
            "_ROW": rows[keep] if rows is not None else np.nan}))
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


def relrec(ae: pd.DataFrame, matched: pd.DataFrame, episodes: pd.DataFrame, fa: pd.DataFrame,
           studyid: str) -> pd.DataFrame:
    """RELREC (SDTMIG 3.4 8.2): the investigator's CRS/ICANS AE and the FA records of the
    overlapping ASTCT episode, RELID = the episode id (e.g. CRS-1): the AE record (RDOMAIN AE,
    IDVAR AESEQ) and the episode's FA records (RDOMAIN FA, IDVAR FAGRPID). Only AEs whose
    AEDECOD is the event's term (= FAOBJ) are related; an episode without such an AE has no
    relationship (it is a data query in the discrepancy report)."""
    m = matched[matched["primary"]] if len(matched) else matched
    cols = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELTYPE", "RELID"]
    if m.empty:
        return empty(cols)
    a = ae.loc[m["ae"].to_numpy()]
    ep = episodes.loc[m["episode"].to_numpy()]
    ae_part = pd.DataFrame({"USUBJID": a["USUBJID"].to_numpy(), "RDOMAIN": "AE", "IDVAR": "AESEQ",
                            "IDVARVAL": a["AESEQ"].astype(int).astype(str).to_numpy(),
                            "RELID": ep["episode_id"].to_numpy()})
    grp = fa.loc[fa["FAGRPID"].ne(""), ["USUBJID", "FAGRPID"]].drop_duplicates()
    linked = ae_part[["USUBJID", "RELID"]].drop_duplicates()
    grp = grp.merge(linked, left_on=["USUBJID", "FAGRPID"], right_on=["USUBJID", "RELID"])
    fa_part = pd.DataFrame({"USUBJID": grp["USUBJID"], "RDOMAIN": "FA", "IDVAR": "FAGRPID",
                            "IDVARVAL": grp["FAGRPID"], "RELID": grp["RELID"]})
    rel = pd.concat([ae_part, fa_part], ignore_index=True).drop_duplicates()
    rel.insert(0, "STUDYID", studyid)
    rel["RELTYPE"] = ""
    return rel.sort_values(["USUBJID", "RELID", "RDOMAIN", "IDVARVAL"], kind="mergesort").reset_index(drop=True)[cols]


def episode_report(episodes: pd.DataFrame, ae: pd.DataFrame, matched: pd.DataFrame, dm: pd.DataFrame) -> pd.DataFrame:
    """The ``crs_icans_episodes`` report: one row per ASTCT episode (analysis result, not SDTM),
    with its study day of onset and the AESEQ of the investigator's AE(s) related to it in
    RELREC (``|``-separated, empty when none)."""
    out = episodes.copy()
    out["episode_start_day"] = study_day_by_subject(out["episode_start"], out["USUBJID"], dm) if len(out) else np.nan
    if len(matched) and matched["primary"].any():
        m = matched[matched["primary"]]
        seq = pd.DataFrame({"episode": m["episode"].to_numpy(),
                            "seq": ae.loc[m["ae"].to_numpy(), "AESEQ"].astype(int).to_numpy()})
        seq = seq.sort_values(["episode", "seq"]).astype({"seq": str}).groupby("episode")["seq"].agg("|".join)
        out["linked_aeseq"] = out.index.to_series().map(seq).fillna("")
    for c in ("episode_start_day", "episode_days"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
    out = out.drop(columns=["event"])
    return out.sort_values(["USUBJID", "term", "episode_start"], kind="mergesort").reset_index(drop=True)


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

    folder = meddra.distribution_folder(study)
    dist = meddra.load_distribution(folder, str(spec.standards.get("meddra_version", ""))) if folder else None
    decisions = check_decisions(load_coding_decisions(decisions_path(study)), dictionary,
                                meddra.llt_lookup(dist) if dist is not None else None)
    ae = investigator_ae(raw_ae, dictionary, syn, ct, study.data_cutoff, decisions, dist)
    daily = daily_assessments(raw_crs, dm, rules["CRS"], rules["ICANS"])
    episodes, epi_findings = derived_episodes(daily, deaths, events, rules, ct, study.studyid)
    ae["event"] = record_event(ae["AEDECOD"], events)        # AEDECOD = FAOBJ: related in RELREC
    ae["alt_event"] = candidate_event(ae["ctcae_term"], events)

    ae["AESTDY"] = study_day_by_subject(ae["AESTDTC"], ae["USUBJID"], dm)
    ae["AEENDY"] = study_day_by_subject(ae["AEENDTC"], ae["USUBJID"], dm)
    ae["EPOCH"] = derive_epoch(ae["USUBJID"], ae["AESTDTC"], se) if se is not None and len(ae) else ""
    ae["AESEQ"] = assign_seq(ae, ["AESTDTC", "AESPID", "AETERM"]) if len(ae) else np.nan

    matched, discrepancies = reconcile(ae, episodes)
    ae["TOXGRSCL"] = toxicity_scale(ae["event"], events, study)

    tests = spec_fa_tests(spec)
    fa = findings_about(daily, tests, events, dm, se, study)
    rel = relrec(ae, matched, episodes, fa, study.studyid)

    findings = [ae_rule_findings(ae, dictionary, deaths, ct, study.studyid, ctx.mode), epi_findings]
    no_age = raw_crs.index[daily["AGE"].isna().to_numpy()] if len(daily) else []
    if len(no_age):
        findings.append(_one_finding(study.studyid, "astct_icans_age", "warning",
                                     f"{len(no_age)} daily assessment(s) of subjects without DM.AGE: ICE/CAPD "
                                     "not graded (ASTCT selects ICE or CAPD by age)", file="crs", column="AGE"))
    if len(discrepancies):
        findings.append(_one_finding(study.studyid, "crs_icans_reconciliation", "warning",
                                     f"{len(discrepancies)} CRS/ICANS data queries between investigator-reported AEs "
                                     "and the ASTCT grading of the daily assessments (report crs_icans_discrepancies)"))

    ae_cols = ctx.spec.var_names("AE")
    fa_cols = ctx.spec.var_names("FA")
    rel_cols = ctx.spec.var_names("RELREC")
    supp = build_supp(ae, "AE", spec, "AESEQ")

    consumed = [ctx.consumed_rows("ae", pd.Series(ae["_ROW"]), "AE"),
                ctx.consumed_rows("ae", pd.Series(ae["_ROW"]), "SUPPAE"),
                ctx.consumed_rows("crs", raw_crs["_ROW"] if "_ROW" in raw_crs else pd.Series(dtype=int), "FA")]
    if len(rel) and len(daily) and "_ROW" in daily:
        # daily assessment rows in a related episode also reach RELREC (through their FA group)
        fa_rel = rel[rel["RDOMAIN"].eq("FA")]
        rel_keys = set(fa_rel["USUBJID"] + "/" + fa_rel["IDVARVAL"])
        in_rel = pd.Series(False, index=daily.index)
        for event in EVENTS:  # two events, vectorised over assessment days
            in_rel |= (daily["USUBJID"] + "/" + event + "-" + daily[f"{event}_episode"].astype(str)).isin(rel_keys)
        consumed.append(ctx.consumed_rows("crs", daily.loc[in_rel, "_ROW"], "RELREC"))

    return DomainResult(
        datasets={"AE": ae[ae_cols].reset_index(drop=True), "SUPPAE": supp,
                  "FA": fa[fa_cols].reset_index(drop=True), "RELREC": rel[rel_cols]},
        reports={"coding_queries": coding_queries(ae, decisions),
                 "crs_icans_discrepancies": discrepancies,
                 "crs_icans_episodes": episode_report(episodes, ae, matched, dm)},
        consumed=_concat(consumed, ["form", "row", "dataset"]),
        rejected=_concat([rej_ae, rej_crs], REJECTED_COLUMNS),
        findings=_concat(findings, FINDING_COLUMNS),
    )
