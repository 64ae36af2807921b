"""SV (Subject Visits, SDTMIG 3.4 section 5.4), derived from the visits of every other domain.

SV is not collected on a form of its own: it is built from the visit of every record of every
subject-level dataset of the study that carries USUBJID, VISITNUM and VISIT (VS, IE, LB, LBDA,
PC, FA, RS today; any domain added later with those variables is picked up without a change
here). It runs after :func:`pipeline.derive.visits.renumber_unscheduled` (``AFTER_VISITS`` in
:mod:`pipeline.domains`), so it sees the final VISITNUM of each unscheduled visit.

One record per subject and visit (USUBJID, VISITNUM):

- **Visits that occurred**: every (USUBJID, VISITNUM) found in a domain. SVSTDTC/SVENDTC = the
  earliest/latest date/time of the visit's records across domains, with the time when one was
  collected (records with partial or missing dates are not used; a visit with only such records
  keeps SVSTDTC null). Keeping the time places a visit on the day an element starts in the
  right epoch (pre-dose labs at 07:00 of the first lymphodepletion day are still screening); SVSTDY/SVENDY from
  RFSTDTC (:mod:`pipeline.derive.studyday`); EPOCH of SVSTDTC from the subject's elements.
  Planned visits (VISIT of the schedule, TV): VISIT and VISITDY from TV, SVPRESP and SVOCCUR ``Y``.
  Unscheduled visits (VISIT ``UNSCHEDULED``): VISITNUM as numbered across the domains, VISITDY
  null, SVPRESP and SVOCCUR null (SDTMIG 3.4 SV: SVPRESP is Y for planned visits and null for
  unplanned ones; SVOCCUR is null for unplanned visits) and
  SVUPDES = ``Unscheduled assessment (<datasets>)`` naming the datasets holding records of it.
- **Planned visits that did not occur** (SDTMIG 3.4 SV assumption: SV may hold planned visits
  that did not occur, SVPRESP ``Y``, SVOCCUR ``N``): for a treated subject (DM.RFSTDTC known), a
  visit of the schedule that some subject of the study had (a visit no form collects is never
  "missed"), whose window had closed by the subject's end of participation (RFSTDTC date + the
  visit window's last protocol day <= DM.RFPENDTC, or the data cut-off when RFPENDTC is
  unknown), and of which the subject has no record. No dates, EPOCH or reason (the CRF collects
  none: SVREASOC is not in the dataset).

Consistency is checked, as error findings: a VISITNUM of one subject named differently in two
domains (``sv_visit_name_conflict``) and a planned VISIT whose VISITNUM differs from TV
(``sv_not_in_tv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.context import FINDING_COLUMNS, DomainResult, StudyContext, empty
from pipeline.derive.dates import dtc_date, dtc_datetime
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.text import STR
from pipeline.derive.visits import UNSCHEDULED
from pipeline.domains.dm import C_NO, C_YES, ct_term

#: datasets never read for visits (relationship and supplemental datasets, SV itself)
SKIP = ("SV", "RELREC")
_DATE = r"^\d{4}-\d{2}-\d{2}"
COLUMNS = ["USUBJID", "VISITNUM", "VISIT", "date", "dataset"]


def _timing_column(name: str, frame: pd.DataFrame) -> str | None:
    """The record's date variable: ``--DTC`` (findings) else ``--STDTC`` (events, interventions);
    a split dataset (LBDA) uses its DOMAIN prefix."""
    prefixes = [name]
    if "DOMAIN" in frame and len(frame):
        prefixes.append(str(frame["DOMAIN"].iloc[0]))
    for suffix in ("DTC", "STDTC"):
        for p in prefixes:
            if f"{p}{suffix}" in frame:
                return f"{p}{suffix}"
    return None


def visit_records(datasets: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per distinct (dataset, USUBJID, VISITNUM, VISIT, date) of every subject-level
    dataset with USUBJID, VISITNUM and VISIT; ``date`` is the record's ISO date/time when its date
    is complete, else "".

    The four columns of every dataset are stacked first (as object arrays) and normalised and
    made distinct once for all: a study has a few dozen datasets, and normalising each on its
    own cost a dozen pandas calls per dataset. Rows keep the order of their first record, datasets
    in name order, as one distinct part per dataset would."""
    names, columns = [], {"USUBJID": [], "VISITNUM": [], "VISIT": [], "dtc": []}
    for name, frame in sorted(datasets.items()):  # a few dozen datasets
        if name in SKIP or name.startswith("SUPP") or frame.empty:
            continue
        if not {"USUBJID", "VISITNUM", "VISIT"} <= set(frame.columns):
            continue
        col = _timing_column(name, frame)
        for c in ("USUBJID", "VISITNUM", "VISIT"):
            columns[c].append(frame[c].to_numpy(dtype=object))
        columns["dtc"].append(frame[col].to_numpy(dtype=object) if col is not None else np.full(len(frame), "", dtype=object))
        names.append(np.full(len(frame), name, dtype=object))
    if not names:
        return empty(COLUMNS)
    stacked = {c: pd.Series(np.concatenate(v), dtype=object) for c, v in columns.items()}
    stacked["dataset"] = pd.Series(np.concatenate(names), dtype=object)
    # one row per distinct record comes out: only the distinct raw combinations are normalised
    raw = pd.DataFrame(stacked).drop_duplicates()
    num = pd.to_numeric(raw["VISITNUM"], errors="coerce")
    has = num.notna()
    dtc = raw["dtc"].where(raw["dtc"].notna(), "").astype(str)
    date = dtc.where(dtc.str.match(_DATE), "")   # complete date, with its time when collected
    out = pd.DataFrame({
        "USUBJID": raw.loc[has, "USUBJID"].astype(str).to_numpy(dtype=object),
        "VISITNUM": num[has].astype("float64").to_numpy(),
        "VISIT": raw.loc[has, "VISIT"].fillna("").astype(str).str.strip().to_numpy(dtype=object),
        "date": date[has].to_numpy(dtype=object),
        "dataset": pd.array(raw.loc[has, "dataset"].to_numpy(dtype=object), dtype=STR)}).drop_duplicates()
    if raw.loc[has, "dataset"].nunique() < len(names):
        # the dtypes one part per dataset gave: a dataset without a numbered visit was an empty
        # part, whose text columns made those of the whole object
        out = out.astype({"USUBJID": object, "VISIT": object, "date": object})
    return out.reset_index(drop=True)


def occurred_visits(records: pd.DataFrame) -> pd.DataFrame:
    """Per (USUBJID, VISITNUM): VISIT, SVSTDTC/SVENDTC (earliest/latest record date/time, with
    its time when collected) and the datasets holding it (``datasets``, comma separated, sorted)."""
    r = records.copy()
    key = ["USUBJID", "VISITNUM"]
    base = r.drop_duplicates(key)[key].reset_index(drop=True)
    dated = r[r["date"].ne("")].copy()
    dated["_t"] = dtc_datetime(dated["date"])
    dated = dated.sort_values(key + ["_t", "date"], kind="mergesort")
    first = dated.drop_duplicates(key, keep="first").set_index(key)["date"].rename("SVSTDTC")
    last = dated.drop_duplicates(key, keep="last").set_index(key)["date"].rename("SVENDTC")
    out = base.join(visit_names(r, key), on=key).join(first, on=key).join(last, on=key).join(holding_datasets(r, key), on=key)
    out[["SVSTDTC", "SVENDTC"]] = out[["SVSTDTC", "SVENDTC"]].fillna("")
    return out


def visit_names(records: pd.DataFrame, key: list[str]) -> pd.Series:
    """Per ``key``: the VISIT name, or the distinct names sorted and joined by ``|`` when the
    records disagree (reported as ``sv_visit_name_conflict``). Only the few disagreeing visits
    are joined group by group."""
    d = records.drop_duplicates(key + ["VISIT"])
    if d.empty:
        return d.groupby(key)["VISIT"].agg(lambda s: "|".join(sorted(s))).rename("VISIT")
    several = d.duplicated(key, keep=False)
    single = d.loc[~several & d[key].notna().all(axis=1)].set_index(key)["VISIT"]
    if several.any():
        single = pd.concat([single, d.loc[several].groupby(key)["VISIT"].agg(lambda s: "|".join(sorted(s)))])
    return single.astype("str").rename("VISIT")  # text, as pandas infers for joined names


def holding_datasets(records: pd.DataFrame, key: list[str]) -> pd.Series:
    """Per ``key``: the datasets holding records of it, sorted, comma separated. Each dataset is
    one bit of an integer, summed per visit; the text is made once per distinct set of datasets."""
    d = records.drop_duplicates(key + ["dataset"])
    names = sorted(d["dataset"].unique())
    if d.empty or len(names) > 62:  # nothing, or more datasets than bits: join group by group
        return d.sort_values("dataset", kind="mergesort").groupby(key)["dataset"].agg(", ".join).rename("datasets")
    bit = d["dataset"].map({n: 1 << i for i, n in enumerate(names)}).astype("int64")
    sets = bit.groupby([d[k] for k in key]).sum()
    text = {m: ", ".join(n for i, n in enumerate(names) if m >> i & 1) for m in sets.unique()}  # few distinct sets
    return sets.map(text).rename("datasets")


def missed_planned_visits(occurred: pd.DataFrame, dm: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Planned visits that did not occur (module docstring): USUBJID, VISITNUM."""
    sched = study.visits
    if sched.empty or occurred.empty:
        return pd.DataFrame({"USUBJID": pd.Series(dtype=object), "VISITNUM": pd.Series(dtype="float64")})
    collected = set(occurred["VISITNUM"][occurred["VISIT"].ne(UNSCHEDULED)])
    sched = sched[sched["VISITNUM"].astype(float).isin(collected)]
    treated = dm[dm["RFSTDTC"].astype(str).str.match(_DATE)]
    start = dtc_date(treated["RFSTDTC"])
    end = dtc_date(treated["RFPENDTC"]).fillna(pd.Timestamp(study.data_cutoff))
    subj = pd.DataFrame({"USUBJID": treated["USUBJID"].astype(str).to_numpy(dtype=object),
                         "_start": start.to_numpy(), "_end": end.to_numpy()})
    hi = pd.to_numeric(sched["window_hi"], errors="coerce") if "window_hi" in sched else \
        pd.Series(np.nan, index=sched.index)
    hi = hi.fillna(sched["day"].astype(float))   # a visit without a window closes on its planned day
    plan = pd.DataFrame({"VISITNUM": sched["VISITNUM"].astype(float).to_numpy(), "_hi": hi.to_numpy()})
    grid = subj.merge(plan, how="cross")
    closed = grid["_start"] + pd.to_timedelta(grid["_hi"], unit="D") <= grid["_end"]
    grid = grid[closed]
    seen = pd.MultiIndex.from_frame(occurred[["USUBJID", "VISITNUM"]])
    missing = ~pd.MultiIndex.from_frame(grid[["USUBJID", "VISITNUM"]]).isin(seen)
    return grid.loc[missing, ["USUBJID", "VISITNUM"]].reset_index(drop=True)


def _findings(sid: str, rows: pd.DataFrame, check: str, message: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"study": sid, "file": "SV", "row": "", "column": "VISITNUM",
                         "value": rows["VISITNUM"].astype(str).to_numpy(), "check": check, "severity": "error",
                         "message": message.to_numpy()}, columns=FINDING_COLUMNS)


def subject_visits(datasets: dict[str, pd.DataFrame], study: Study, spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SV and its consistency findings from the study's datasets (module docstring)."""
    sid = study.studyid
    dm = datasets["DM"]
    sched = study.visits
    tv_name = dict(zip(sched["VISITNUM"].astype(float), sched["VISIT"].astype(str)))
    tv_num = {v.upper(): k for k, v in tv_name.items()}
    tv_dy = dict(zip(sched["VISITNUM"].astype(float), sched["VISITDY"].astype(float)))
    occ = occurred_visits(visit_records(datasets))
    findings = []
    conflict = occ["VISIT"].str.contains("|", regex=False)
    findings.append(_findings(sid, occ[conflict], "sv_visit_name_conflict",
                              "subject " + occ.loc[conflict, "USUBJID"] + ": VISITNUM has several VISIT names ("
                              + occ.loc[conflict, "VISIT"] + ") across " + occ.loc[conflict, "datasets"]))
    unsched = occ["VISIT"].str.upper().eq(UNSCHEDULED)
    expected = occ["VISIT"].str.upper().map(tv_num)
    not_tv = ~unsched & ~conflict & ~expected.eq(occ["VISITNUM"])
    findings.append(_findings(sid, occ[not_tv], "sv_not_in_tv",
                              "subject " + occ.loc[not_tv, "USUBJID"] + ": VISIT " + occ.loc[not_tv, "VISIT"]
                              + " with VISITNUM " + occ.loc[not_tv, "VISITNUM"].astype(str)
                              + " is not a visit of TV (" + occ.loc[not_tv, "datasets"] + ")"))
    y, n = ct_term(spec, "NY", C_YES), ct_term(spec, "NY", C_NO)
    sv = pd.DataFrame({
        "USUBJID": occ["USUBJID"], "VISITNUM": occ["VISITNUM"], "VISIT": occ["VISIT"],
        "SVPRESP": np.where(unsched, "", y), "SVOCCUR": np.where(unsched, "", y),
        "SVSTDTC": occ["SVSTDTC"], "SVENDTC": occ["SVENDTC"],
        "SVUPDES": np.where(unsched, "Unscheduled assessment (" + occ["datasets"] + ")", ""),
    })
    missed = missed_planned_visits(occ, dm, study)
    if len(missed):
        sv = pd.concat([sv, pd.DataFrame({
            "USUBJID": missed["USUBJID"], "VISITNUM": missed["VISITNUM"], "VISIT": missed["VISITNUM"].map(tv_name),
            "SVPRESP": y, "SVOCCUR": n, "SVSTDTC": "", "SVENDTC": "", "SVUPDES": ""})], ignore_index=True)
    sv.insert(0, "STUDYID", sid)
    sv.insert(1, "DOMAIN", "SV")
    sv["VISITDY"] = sv["VISITNUM"].map(tv_dy).where(sv["VISIT"].str.upper().ne(UNSCHEDULED)).astype("float64")
    se = datasets.get("SE")
    sv["EPOCH"] = derive_epoch(sv["USUBJID"], sv["SVSTDTC"], se) if se is not None and len(sv) else ""
    sv["SVSTDY"] = study_day_by_subject(sv["SVSTDTC"], sv["USUBJID"], dm)
    sv["SVENDY"] = study_day_by_subject(sv["SVENDTC"], sv["USUBJID"], dm)
    sv = sv.sort_values(["USUBJID", "VISITNUM"], kind="mergesort").reset_index(drop=True)
    found = [f for f in findings if len(f)]
    return sv, (pd.concat(found, ignore_index=True) if found else empty(FINDING_COLUMNS))


def build(ctx: StudyContext) -> DomainResult:
    sv, findings = subject_visits(ctx.datasets, ctx.study, ctx.spec)
    res = DomainResult()
    if len(sv):
        res.datasets["SV"] = sv[ctx.spec.var_names("SV")]
    res.findings = findings
    return res

