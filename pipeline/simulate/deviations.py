"""Visit-window and missed-visit protocol deviations in the simulated timelines.

The visit schedule of :func:`pipeline.simulate.subjects.visit_days` keeps every visit inside
its window, so without this module the shipped data has no deviation for the rules
``assessment_out_of_window`` and ``planned_visit_missed`` of the study's ``[[deviations]]``
(:mod:`pipeline.domains.dv`). Here a few subjects deviate. The subjects are drawn from streams
of their own (``visit_deviations``, ``visit_missed``; :func:`pipeline.simulate.subjects.stream`)
and the deviations are applied to the drawn records (dates moved, records removed), never to the
timeline the other forms draw from: the draws of every other form stay as they were.

``[simulation] window_deviations`` (default 1): per ``assessment_out_of_window`` rule, that
many subjects have the rule's target visit (the planned visit of protocol day ``day``) held
1-3 days outside ``day`` +/- ``window_days``: late in three cases of four, else early (the other
direction when the neighbouring visits leave no room). The whole visit moves: its laboratory
draws (lb), its assessment (rs) and imaging (emd) share the new date, and the glucocorticoid
and transfusion records of form cm are drawn around the new assessment date. The visit stays
between the subject's previous and next visits and before any transplant conditioning.
Candidates: treated subjects who hold the target visit and the one after it, one deviation per
subject, whose visit date is no AE start or end (lab-graded AEs start and end on draw dates). Form cm
reads the moved draws, so a transfusion or G-CSF given on a draw day moves with it.

``[simulation] missed_dlt_visits`` (default 0): per ``planned_visit_missed`` rule, that many
subjects do not come to one planned visit with protocol day in [``from_day``, ``to_day``]:
every record of that visit (laboratory draws, the only forms at such a visit) is removed after
all forms are drawn. Candidates: visits that are no response assessment visit, after the end of
the subject's daily CRS/ICANS assessments (the daily form holds the planned days of the first
weeks), of a subject who holds a later visit, on a date that no AE or CM record of the subject
starts or ends on.

Each deviation is listed in ``raw/planted.csv`` (item = the rule id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.simulate._util import NODAY
from pipeline.simulate.subjects import NEVER, stream


def _rule_number(study: Study, rule: dict, key: str) -> float | None:
    """A rule parameter as a number; ``"orr"`` / ``"dlt_window_days"`` name the study's values
    (as :func:`pipeline.domains.dv._param` reads them)."""
    value = rule.get(key)
    if value == "orr":
        return float(study["orr"]["timepoint_day" if key == "day" else "window_days"])
    if value == "dlt_window_days":
        return float(study.dlt_window_days)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rules(study: Study, kind: str) -> list[dict]:
    return [dict(r) for r in (study.get("deviations", []) or []) if r.get("kind") == kind]


def _busy(i: np.ndarray, date: np.ndarray, events: pd.DataFrame) -> np.ndarray:
    """Which (subject, day number) pairs are in ``events`` (columns ``i``, ``date``)."""
    return pd.MultiIndex.from_arrays([i, date]).isin(
        pd.MultiIndex.from_arrays([events["i"].to_numpy(), events["date"].to_numpy()]))


def shift_window_visits(study: Study, cfg: dict, S: pd.DataFrame, V: pd.DataFrame,
                        events: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """The visits a few subjects hold outside the rules' windows (module docstring): columns
    ``i``, ``VISIT``, ``shift`` (days, + late / - early), with the planted items. ``events``:
    (``i``, ``date``) pairs a moved visit must not be on (:func:`event_days` of the AEs)."""
    none = pd.DataFrame({"i": pd.Series(dtype="int64"), "VISIT": pd.Series(dtype="object"),
                         "shift": pd.Series(dtype="int64")})
    per_rule = int(cfg.get("window_deviations", 1))
    rules = _rules(study, "assessment_out_of_window")
    if per_rule <= 0 or not rules:
        return none, []
    g = stream(cfg, "visit_deviations")
    V = V.reset_index(drop=True)   # rows in subject and visit order (visit_days)
    i = V["i"].to_numpy()
    prev_day = V.groupby("i")["day"].shift(1).to_numpy()
    next_day = V.groupby("i")["day"].shift(-1).to_numpy()
    cond = S["cond_day"].to_numpy()[i] if "cond_day" in S else np.full(len(V), NEVER)
    ok = S["treated"].to_numpy()[i] & ~np.isnan(next_day) & ~_busy(i, V["date"].to_numpy(), events)
    sched = study.visits
    out, plants = [], []
    for rule in rules:  # the study's one or two window rules (metadata)
        target, window = _rule_number(study, rule, "day"), _rule_number(study, rule, "window_days")
        if target is None or window is None:
            continue
        vnum = sched.loc[sched["day"].astype(float).eq(target), "VISITNUM"]
        if vnum.empty:
            continue
        rows = np.flatnonzero((V["VISITNUM"].to_numpy() == vnum.iloc[0]) & ok)
        u = g.random((3, len(rows)))
        order = np.argsort(u[0], kind="stable")
        done = 0
        for j in order:  # a few candidate subjects, until the rule has its deviations
            r = rows[j]
            if done >= per_rule:
                break
            if int(i[r]) in {s for s, _, _ in out}:
                continue
            lo = (prev_day[r] if not np.isnan(prev_day[r]) else -NEVER) + 1
            hi = min(next_day[r], cond[r]) - 1
            beyond = 1 + int(np.floor(u[1][j] * 3))
            late, early = int(target + window + beyond), int(target - window - beyond)
            pick = [late, early] if u[2][j] < 0.75 else [early, late]
            new = next((d for d in pick if lo <= d <= hi), None)
            if new is None:
                continue
            out.append((int(i[r]), str(V["VISIT"].iat[r]), int(new - V["day"].iat[r])))
            done += 1
            plants.append({"subject": int(i[r]), "form": "rs", "item": str(rule["id"]),
                           "description": f"{V['VISIT'].iat[r]} visit held on protocol day {new}, outside day "
                                          f"{target:g} +/- {window:g} days"})
    if not out:
        return none, plants
    return pd.DataFrame(out, columns=["i", "VISIT", "shift"]).astype({"i": "int64", "shift": "int64"}), plants


def shift_draws(D: pd.DataFrame, shifts: pd.DataFrame) -> pd.DataFrame:
    """The laboratory draw table with the moved visits' draws on their new day and date (what
    form cm reads to date the transfusions and G-CSF given on a draw day)."""
    if shifts.empty:
        return D
    key = pd.MultiIndex.from_arrays([shifts["i"].to_numpy(), shifts["VISIT"].to_numpy()])
    pos = key.get_indexer(pd.MultiIndex.from_arrays([D["i"].to_numpy(), D["VISIT"].to_numpy()]))
    delta = np.where(pos >= 0, shifts["shift"].to_numpy()[np.maximum(pos, 0)], 0)
    return D.assign(day=D["day"].to_numpy() + delta, date=D["date"].to_numpy() + delta)


def shift_dates(cols: dict, date_key: str, shifts: pd.DataFrame) -> dict:
    """A form's column arrays (``_i``, ``VISIT`` and day-number ``date_key``) with the dates of
    the moved visits' records shifted (:func:`shift_window_visits`)."""
    if shifts.empty or not len(cols["_i"]):
        return cols
    key = pd.MultiIndex.from_arrays([shifts["i"].to_numpy(), shifts["VISIT"].to_numpy()])
    pos = key.get_indexer(pd.MultiIndex.from_arrays([np.asarray(cols["_i"], dtype=np.int64),
                                                     np.asarray(cols["VISIT"], dtype=object)]))
    dates = np.asarray(cols[date_key])
    if dates.dtype.kind not in "iu":
        raise TypeError(f"{date_key}: day numbers expected, got {dates.dtype}")
    hit = pos >= 0
    dates = dates.copy()
    dates[hit] += shifts["shift"].to_numpy()[pos[hit]]
    return dict(cols, **{date_key: dates})


def _day_numbers(text: np.ndarray) -> np.ndarray:
    """CDASH ``DD-MMM-YYYY`` text -> day numbers (NODAY where partial or missing)."""
    ts = pd.to_datetime(pd.Series(text, dtype="object"), format="%d-%b-%Y", errors="coerce")
    days = (ts - pd.Timestamp("1970-01-01")).dt.days
    return days.fillna(NODAY).astype(np.int64).to_numpy()


def event_days(ae_cols: dict, cm_cols: dict | None = None) -> pd.DataFrame:
    """(subject ``i``, day number) of every AE (and CM) start and end date (AE dates are day
    numbers before the form is assembled; CM dates are already CDASH text)."""
    ai = np.asarray(ae_cols["_i"], dtype=np.int64)
    i = [ai, ai]
    d = [np.asarray(ae_cols["AESTDAT"], dtype=np.int64), np.asarray(ae_cols["AEENDAT"], dtype=np.int64)]
    if cm_cols is not None:
        ci = np.asarray(cm_cols["_i"], dtype=np.int64)
        i += [ci, ci]
        d += [_day_numbers(cm_cols["CMSTDAT"]), _day_numbers(cm_cols["CMENDAT"])]
    return pd.DataFrame({"i": np.concatenate(i), "date": np.concatenate(d)})


def missed_visits(study: Study, cfg: dict, S: pd.DataFrame, V: pd.DataFrame, grid: pd.DataFrame,
                  events: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """The (subject ``i``, ``VISIT``) pairs a few subjects miss inside the rules' day ranges
    (module docstring), and the planted items. ``events``: :func:`event_days`."""
    per_rule = int(cfg.get("missed_dlt_visits", 0))
    rules = _rules(study, "planned_visit_missed")
    none = pd.DataFrame({"i": pd.Series(dtype="int64"), "VISIT": pd.Series(dtype="object")})
    if per_rule <= 0 or not rules:
        return none, []
    g = stream(cfg, "visit_missed")
    assess = list(study["response"].get("assessment_visits", []))
    grid_last = grid.groupby("i")["day"].max().reindex(S["i"]).fillna(-1).to_numpy()
    last_visit = V.groupby("i")["day"].max().reindex(S["i"]).to_numpy()
    i = V["i"].to_numpy()
    busy = _busy(i, V["date"].to_numpy(), events)
    out, plants = [], []
    for rule in rules:  # the study's planned-visit rule(s) (metadata)
        lo, hi = _rule_number(study, rule, "from_day"), _rule_number(study, rule, "to_day")
        if lo is None or hi is None:
            continue
        cand = (V["planned"].between(lo, hi).to_numpy() & ~V["VISIT"].isin(assess).to_numpy()
                & S["treated"].to_numpy()[i] & (V["planned"].to_numpy() > grid_last[i])
                & (last_visit[i] > V["day"].to_numpy()) & ~busy & ~np.isin(i, [s for s, _ in out]))
        rows = np.flatnonzero(cand)
        rows = rows[np.argsort(g.random(len(rows)), kind="stable")]
        # one missed visit per subject: the first candidate row of each subject, in drawn order
        rows = rows[~pd.Series(i[rows]).duplicated().to_numpy()][:per_rule]
        for r in rows:  # the rule's one or two missed visits
            out.append((int(i[r]), str(V["VISIT"].iat[r])))
            plants.append({"subject": int(i[r]), "form": "lb", "item": str(rule["id"]),
                           "description": f"{V['VISIT'].iat[r]} (protocol day {int(V['planned'].iat[r])}) not "
                                          "held: no record of the visit"})
    return pd.DataFrame(out, columns=["i", "VISIT"]).astype({"i": "int64"}) if out else none, plants


def drop_missed(forms: dict[str, pd.DataFrame], S: pd.DataFrame, missed: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The forms without the records of the missed visits (every form with a VISIT column)."""
    if missed.empty:
        return forms
    keys = pd.MultiIndex.from_arrays([S["SUBJID"].to_numpy()[missed["i"].to_numpy()], missed["VISIT"].to_numpy()])
    out = {}
    for name, df in forms.items():  # the study's forms (metadata)
        if "VISIT" in df and "SUBJID" in df:
            hit = pd.MultiIndex.from_arrays([df["SUBJID"], df["VISIT"]]).isin(keys)
            df = df[~hit].reset_index(drop=True)
        out[name] = df
    return out
