"""DV (Protocol Deviations, SDTMIG 3.4 section 6.2.4), detected by the study's rules.

The rules are data: the ``[[deviations]]`` tables of ``specs/studies/<STUDYID>.toml``, each with
``id`` (DVSPID), ``kind`` (below), ``dvcat``, ``dvdecod``, ``dvterm`` (a template: ``{NAME}`` is
replaced by the record's value of NAME), the kind's parameters and ``source`` (where in the
protocol or seed the rule comes from). One DV record per subject and rule hit.

Kinds (each a vectorised function over the datasets built before DV):

``ie_not_met``
    An enrolled subject (DM.ARMCD not null) with an IE record (a criterion not met, collected or
    derived from the screening labs, :mod:`pipeline.domains.ie`). Placeholders IETESTCD, IETEST,
    IECAT. DVSTDTC = IEDTC.
``assessment_out_of_window``
    A record of ``dataset`` with ``--TESTCD = testcd`` at the planned visit of protocol day
    ``day`` whose protocol day (--DY - 1 on or after the first infusion, else --DY) lies outside
    ``day`` +/- ``window_days``. ``day``/``window_days`` may be ``"orr"``: the study's
    ``[orr] timepoint_day`` / ``window_days`` (the primary response time point). A protocol day
    exactly ``window_days`` away is inside the window. Placeholders VISIT, DAY (the actual
    protocol day), TARGET, WINDOW. DVSTDTC = the record's --DTC.
``planned_visit_missed``
    A planned visit with protocol day in [``from_day``, ``to_day``] that did not occur (SV
    SVOCCUR ``N``: treated subject, window closed before the end of participation, no record in
    any domain). ``to_day`` may be ``"dlt_window_days"`` (``[safety]``). Placeholders VISIT, DAY.
    DVSTDTC = the date the visit window closed (RFSTDTC + the window's last protocol day).

No site-reported deviation log is collected: the CRFs of the five protocols (seeds) have no
deviation form, so DV holds the rule-detected deviations only (origin Derived, see the spec).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.context import DomainResult, StudyContext, empty
from pipeline.derive.dates import dtc_date, iso_from_timestamp
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.identifiers import by_subject
from pipeline.errors import ConfigError

KINDS = ("ie_not_met", "assessment_out_of_window", "planned_visit_missed")
RULE_KEYS = ("id", "kind", "dvcat", "dvdecod", "dvterm", "source")
HIT_COLUMNS = ["USUBJID", "DVSPID", "DVTERM", "DVDECOD", "DVCAT", "DVSTDTC"]


def load_rules(study: Study) -> pd.DataFrame:
    """The study's ``[[deviations]]`` rules, checked (ConfigError naming the bad rule)."""
    rules = study.table("deviations")
    if rules.empty:
        return pd.DataFrame(columns=list(RULE_KEYS))
    problems = [f"[[deviations]] lacks '{k}'" for k in RULE_KEYS if k not in rules]
    if problems:
        raise ConfigError(f"study {study.studyid}: " + "; ".join(problems))
    bad = rules[~rules["kind"].isin(KINDS)]
    problems += [f"[[deviations]] {r}: kind must be one of {', '.join(KINDS)}" for r in bad["id"]]
    dup = rules["id"][rules["id"].duplicated()]
    problems += [f"[[deviations]] id {r} repeated" for r in dup]
    if problems:
        raise ConfigError(f"study {study.studyid}: " + "; ".join(problems))
    return rules.reset_index(drop=True)


def _param(rule: pd.Series, key: str, study: Study) -> float:
    """A numeric rule parameter; ``"orr"`` and ``"dlt_window_days"`` name the study's own values."""
    value = rule.get(key)
    if isinstance(value, str):
        named = {"orr": {"day": study["orr"]["timepoint_day"], "window_days": study["orr"]["window_days"]},
                 "dlt_window_days": {"to_day": study.dlt_window_days}}
        if value in named and key in named[value]:
            return float(named[value][key])
        raise ConfigError(f"study {study.studyid}: [[deviations]] {rule['id']}: {key} = {value!r} is not a number "
                          "nor a study value this key can name")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise ConfigError(f"study {study.studyid}: [[deviations]] {rule['id']} ({rule['kind']}) needs '{key}'")
    return float(value)


def fill_template(template: str, values: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """``template`` with each ``{NAME}`` replaced by the aligned value of NAME (vectorised string
    concatenation); a placeholder the rule kind does not provide is a ConfigError."""
    pieces = re.split(r"\{([A-Z0-9_]+)\}", template)
    out = pd.Series(pieces[0], index=index, dtype="object")
    for k in range(1, len(pieces), 2):  # the template's few placeholders
        name = pieces[k]
        if name not in values:
            raise ConfigError(f"deviation term template {template!r}: {{{name}}} is not one of "
                              f"{', '.join('{' + v + '}' for v in values)}")
        out = out + values[name].astype(str).to_numpy() + pieces[k + 1]
    return out


def _hits(rule: pd.Series, usubjid: pd.Series, dtc: pd.Series, values: dict[str, pd.Series]) -> pd.DataFrame:
    idx = usubjid.index
    return pd.DataFrame({"USUBJID": usubjid, "DVSPID": str(rule["id"]),
                         "DVTERM": fill_template(str(rule["dvterm"]), values, idx),
                         "DVDECOD": str(rule["dvdecod"]), "DVCAT": str(rule["dvcat"]),
                         "DVSTDTC": dtc.astype("object").where(dtc.notna(), "").astype(str)}, index=idx)


def _protocol_day(dy: pd.Series) -> pd.Series:
    """Protocol day (infusion = day 0) of a study day (no day 0: day 1 = infusion)."""
    return dy.where(dy < 0, dy - 1)


def ie_not_met(rule: pd.Series, datasets: dict[str, pd.DataFrame], study: Study) -> pd.DataFrame:
    """Enrolled subjects with an IE record (module docstring)."""
    ie, dm = datasets.get("IE"), datasets["DM"]
    if ie is None or ie.empty:
        return empty(HIT_COLUMNS)
    enrolled = set(dm.loc[dm["ARMCD"].astype(str).ne(""), "USUBJID"])
    sub = ie[ie["USUBJID"].isin(enrolled)]
    return _hits(rule, sub["USUBJID"], sub["IEDTC"],
                 {"IETESTCD": sub["IETESTCD"], "IETEST": sub["IETEST"], "IECAT": sub["IECAT"]})


def assessment_out_of_window(rule: pd.Series, datasets: dict[str, pd.DataFrame], study: Study) -> pd.DataFrame:
    """Assessments at the target visit outside its window (module docstring)."""
    name = str(rule.get("dataset", ""))
    frame = datasets.get(name)
    target, window = _param(rule, "day", study), _param(rule, "window_days", study)
    if frame is None or frame.empty:
        return empty(HIT_COLUMNS)
    sched = study.visits
    visit = sched.loc[sched["day"].astype(float).eq(target), "VISITNUM"].astype(float)
    if visit.empty:
        raise ConfigError(f"study {study.studyid}: [[deviations]] {rule['id']}: no visit of the schedule "
                          f"is planned on protocol day {target:g}")
    dom = str(frame["DOMAIN"].iloc[0])
    sel = frame[frame[f"{dom}TESTCD"].eq(str(rule["testcd"])) & frame["VISITNUM"].isin(visit.tolist())]
    day = _protocol_day(pd.to_numeric(sel[f"{dom}DY"], errors="coerce"))
    out = day.notna() & ((day - target).abs() > window)
    sel, day = sel[out], day[out]
    return _hits(rule, sel["USUBJID"], sel[f"{dom}DTC"].str.slice(0, 10),
                 {"VISIT": sel["VISIT"], "DAY": day.astype(int), "TARGET": pd.Series(int(target), index=sel.index),
                  "WINDOW": pd.Series(int(window), index=sel.index)})


def planned_visit_missed(rule: pd.Series, datasets: dict[str, pd.DataFrame], study: Study) -> pd.DataFrame:
    """Planned visits in [from_day, to_day] that did not occur (SV SVOCCUR N; module docstring)."""
    sv, dm = datasets.get("SV"), datasets["DM"]
    lo, hi = _param(rule, "from_day", study), _param(rule, "to_day", study)
    if sv is None or sv.empty:
        return empty(HIT_COLUMNS)
    sched = study.visits.set_index(study.visits["VISITNUM"].astype(float))
    missed = sv[sv["SVOCCUR"].eq("N")]
    pday = missed["VISITNUM"].map(sched["day"].astype(float))
    missed, pday = missed[pday.between(lo, hi)], pday[pday.between(lo, hi)]
    close = missed["VISITNUM"].map(sched["window_hi"].astype(float)).fillna(pday)
    start = dtc_date(missed["USUBJID"].map(by_subject(dm, "RFSTDTC")).fillna(""))
    closed = iso_from_timestamp(start + pd.to_timedelta(close, unit="D"))
    return _hits(rule, missed["USUBJID"], closed, {"VISIT": missed["VISIT"], "DAY": pday.astype(int)})


def deviations(datasets: dict[str, pd.DataFrame], study: Study, spec) -> pd.DataFrame:
    """DV from every rule of the study (module docstring)."""
    rules = load_rules(study)
    kinds = {"ie_not_met": ie_not_met, "assessment_out_of_window": assessment_out_of_window,
             "planned_visit_missed": planned_visit_missed}
    parts = [kinds[r["kind"]](r, datasets, study) for _, r in rules.iterrows()]  # a handful of rules
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(spec.var_names("DV"))
    dv = pd.concat(parts, ignore_index=True)
    dm = datasets["DM"]
    dv.insert(0, "STUDYID", study.studyid)
    dv.insert(1, "DOMAIN", "DV")
    se = datasets.get("SE")
    dv["EPOCH"] = derive_epoch(dv["USUBJID"], dv["DVSTDTC"], se) if se is not None else ""
    dv["DVSTDY"] = study_day_by_subject(dv["DVSTDTC"], dv["USUBJID"], dm)
    dv["DVSEQ"] = assign_seq(dv, ["DVSTDTC", "DVSPID", "DVTERM"])
    return dv[spec.var_names("DV")].sort_values(["USUBJID", "DVSEQ"], kind="mergesort").reset_index(drop=True)


def build(ctx: StudyContext) -> DomainResult:
    dv = deviations(ctx.datasets, ctx.study, ctx.spec)
    res = DomainResult()
    if len(dv):  # no empty dataset (FDA TCG); the report (listing 16.2.2.2) says "none" instead
        res.datasets["DV"] = dv
    res.reports["protocol_deviations"] = dv.drop(columns=["STUDYID", "DOMAIN"])
    return res
