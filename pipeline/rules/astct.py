"""ASTCT consensus grading of CRS and ICANS (Lee DW et al., Biol Blood Marrow Transplant
2019;25:625-638), evaluated from rule tables, vectorised over all assessment days.

Rule tables ``specs/rules/astct_crs.csv`` and ``specs/rules/astct_icans.csv`` hold one row per
criterion clause: ``event, rule, component, role, field, operator, value, grade, source``.
Clauses that share a ``rule`` id are ANDed; a rule that holds gives its ``grade`` to its
``component`` (a domain of the grading table, e.g. hypotension, hypoxia, ICE score, seizure).
Operators: ``>=``, ``>``, ``<=``, ``<`` (numeric), ``==``, ``!=``, ``in``, ``not in`` (text,
values ``|``-separated), ``missing`` and ``present``. ``role`` says how a rule is used:

``grade``  severity criteria: the day's component grade is the highest grade that holds.
``fever``  CRS only: the fever criterion (grade 1); every CRS grade requires it.
``mask``   CRS only: fever masked by antipyretic or anti-cytokine therapy. It counts as fever
           once a fever has occurred in the same episode (Lee 2019, Table 2 footnote).
``death``  grade 5: death caused by the event (evaluated on the subject's cause of death).

Daily CRS grade: 0 unless the fever criterion is met; else the highest of 1 and the
hypotension and hypoxia grades. Daily ICANS grade: the highest grade over its domains (ICE
or, under 12 years, CAPD; level of consciousness; seizure; motor findings; raised ICP or
cerebral edema). Episodes: consecutive calendar days with grade >= 1; the episode grade is the
highest daily grade; a day with grade 0, or a day without assessment, ends the episode.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.text import stripped_upper_text
from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

RULE_COLUMNS = ["event", "rule", "component", "role", "field", "operator", "value", "grade", "source"]
NUMERIC_OPS = {">=", ">", "<=", "<"}
TEXT_OPS = {"==", "!=", "in", "not in"}
PRESENCE_OPS = {"missing", "present"}
ROLES = {"grade", "fever", "mask", "death"}
TABLES = {"CRS": "astct_crs", "ICANS": "astct_icans"}


def load_rules(spec: Spec, event: str) -> pd.DataFrame:
    """The rule table of ``event`` (``CRS`` or ``ICANS``), checked; ``grade`` as int. Checked
    once per loaded spec (:func:`~pipeline.export.memo.per_object`; every study of a build asks)
    and handed out as a copy."""
    if event not in TABLES:
        raise ConfigError(f"ASTCT: unknown event {event!r} (known: {', '.join(TABLES)})")
    table = TABLES[event]
    checked = per_object(spec, ("astct_rules", event), lambda s: check_rules(s.rule(table), f"specs/rules/{table}.csv"))
    return checked.copy()


def check_rules(rules: pd.DataFrame, where: str = "ASTCT rule table") -> pd.DataFrame:
    """Validate a rule table's shape (columns, operators, roles, numeric thresholds, one grade
    per rule id) and return it with ``grade`` as int."""
    missing = [c for c in RULE_COLUMNS if c not in rules]
    if missing:
        raise ConfigError(f"{where} lacks column(s) {', '.join(missing)}")
    r = rules.copy()
    bad_op = sorted(set(r["operator"]) - NUMERIC_OPS - TEXT_OPS - PRESENCE_OPS)
    if bad_op:
        raise ConfigError(f"{where}: unknown operator(s) {', '.join(bad_op)}")
    bad_role = sorted(set(r["role"]) - ROLES)
    if bad_role:
        raise ConfigError(f"{where}: unknown role(s) {', '.join(bad_role)}")
    num = r["operator"].isin(NUMERIC_OPS)
    bad_num = r[num & pd.to_numeric(r["value"], errors="coerce").isna()]
    if not bad_num.empty:
        raise ConfigError(f"{where}: rule {bad_num['rule'].iloc[0]} compares {bad_num['field'].iloc[0]} "
                          f"with a non-numeric value {bad_num['value'].iloc[0]!r}")
    grade = pd.to_numeric(r["grade"], errors="coerce")
    if grade.isna().any() or not grade.between(1, 5).all():
        raise ConfigError(f"{where}: grades must be 1-5")
    r["grade"] = grade.astype(int)
    inconsistent = r.groupby("rule")[["grade", "component", "role"]].nunique().gt(1).any(axis=1)
    if inconsistent.any():
        raise ConfigError(f"{where}: rule(s) {', '.join(inconsistent[inconsistent].index)} mix grades, "
                          "components or roles across their clauses")
    if r["source"].str.strip().eq("").any():
        raise ConfigError(f"{where}: every row needs a source")
    return r


def _views(frame: pd.DataFrame, field: str) -> tuple[np.ndarray, np.ndarray]:
    """A field as upper-case stripped text and as float (NaN when not a number), as arrays."""
    if field not in frame:
        n = len(frame)
        return np.full(n, "", dtype=object), np.full(n, np.nan)
    col = frame[field]
    text = stripped_upper_text(col).to_numpy(dtype=object)  # once per distinct value
    num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    return text, num


def _clause(text: np.ndarray, num: np.ndarray, op: str, value: str) -> np.ndarray:
    """One clause over every record (False where the field is missing, except ``missing``)."""
    if op in PRESENCE_OPS:
        return (text == "") if op == "missing" else (text != "")
    if op in NUMERIC_OPS:
        v = float(value)
        with np.errstate(invalid="ignore"):
            return {">=": num >= v, ">": num > v, "<=": num <= v, "<": num < v}[op]
    target = str(value).strip().upper()
    if op == "==":
        return text == target
    if op == "!=":
        return (text != target) & (text != "")
    hit = np.isin(text, [s.strip().upper() for s in str(value).split("|")])
    return hit if op == "in" else (~hit & (text != ""))


def rule_hits(frame: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame (records x rule ids): True where every clause of the rule holds."""
    views = {f: _views(frame, f) for f in dict.fromkeys(rules["field"])}  # each field converted once
    out: dict[str, np.ndarray] = {}
    for clause in rules.itertuples(index=False):  # a few dozen clauses, each vectorised over records
        hit = _clause(*views[clause.field], clause.operator, clause.value)
        out[clause.rule] = hit if clause.rule not in out else (out[clause.rule] & hit)
    return pd.DataFrame(out, index=frame.index)


def component_grades(frame: pd.DataFrame, rules: pd.DataFrame, role: str = "grade",
                     hits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per record and component, the highest grade among the ``role`` rules that hold (0 if none).
    ``hits`` (from :func:`rule_hits`) may be passed to avoid evaluating the rules again."""
    sub = rules[rules["role"] == role]
    if hits is None:
        hits = rule_hits(frame, sub)
    meta = sub.drop_duplicates("rule")
    h = hits[meta["rule"].tolist()].to_numpy() * meta["grade"].to_numpy()
    comp = meta["component"].to_numpy()
    out = {c: h[:, comp == c].max(axis=1) for c in dict.fromkeys(comp)}
    return pd.DataFrame(out, index=frame.index, dtype=int) if out else pd.DataFrame(index=frame.index)


def _consecutive(usubjid: pd.Series, day: pd.Series) -> pd.Series:
    """True where the previous record (same subject, data sorted) is the previous calendar day."""
    prev_subj = usubjid.shift()
    prev_day = day.shift()
    return (usubjid.eq(prev_subj) & (day - prev_day).eq(pd.Timedelta(days=1))).fillna(False)


def _runs(flag: pd.Series, usubjid: pd.Series, day: pd.Series) -> pd.Series:
    """Run id (1, 2, ... over the whole frame) of consecutive-day stretches where ``flag`` is True;
    0 where it is False. The frame must be sorted by subject and day."""
    prev = flag.shift(fill_value=False)
    start = flag & ~(prev & _consecutive(usubjid, day))
    run = start.cumsum()
    return run.where(flag, 0).astype(int)


def crs_daily(assess: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """ASTCT CRS grade per assessment day.

    ``assess`` has USUBJID, ``day`` (datetime64, one row per subject and day) and the CRS
    fields of the rule table. Returns, aligned to ``assess``: ``fever`` (temperature criterion
    met that day), ``masked`` (antipyretic or anti-cytokine therapy given), ``fever_met``
    (fever criterion met, masking applied), one column per severity component, and ``grade``.

    Masking (Lee 2019, Table 2 footnote): a day without fever but with antipyretic or
    anti-cytokine therapy meets the fever criterion when a fever occurred earlier in an
    unbroken run of consecutive days each with fever or such therapy. Before the first fever
    of the episode masking counts for nothing.
    """
    a = assess.reset_index(drop=True)
    order = np.lexsort((a["day"].to_numpy(), a["USUBJID"].astype(str).to_numpy()))
    s = a.iloc[order].reset_index(drop=True)
    hits = rule_hits(s, rules[rules["role"].isin(["fever", "mask", "grade"])])
    fever = component_grades(s, rules, "fever", hits).max(axis=1).gt(0) if (rules["role"] == "fever").any() \
        else pd.Series(False, index=s.index)
    masked = component_grades(s, rules, "mask", hits).max(axis=1).gt(0) if (rules["role"] == "mask").any() \
        else pd.Series(False, index=s.index)
    eligible = fever | masked
    run = _runs(eligible, s["USUBJID"], s["day"])
    seen = fever.astype(int).groupby(run).cummax().astype(bool)
    fever_met = eligible & seen
    comps = component_grades(s, rules, "grade", hits)
    fever_grade = int(rules.loc[rules["role"] == "fever", "grade"].max()) if (rules["role"] == "fever").any() else 1
    severity = comps.max(axis=1) if comps.shape[1] else pd.Series(0, index=s.index)
    grade = np.where(fever_met, np.maximum(fever_grade, severity), 0)
    out = pd.concat([pd.DataFrame({"fever": fever, "masked": masked, "fever_met": fever_met}), comps], axis=1)
    out["grade"] = grade.astype(int)
    back = np.empty(len(order), dtype=int)
    back[order] = np.arange(len(order))
    return out.iloc[back].set_index(assess.index)


def icans_daily(assess: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """ASTCT ICANS grade per assessment day: one column per domain and ``grade`` = the worst.

    ``assess`` has the ICANS fields of the rule table and AGE (years): the rules select the
    ICE score for age >= 12 and the CAPD score under 12 (Lee 2019, Tables 5 and 6).
    """
    comps = component_grades(assess, rules, "grade")
    grade = comps.max(axis=1) if comps.shape[1] else pd.Series(0, index=assess.index)
    out = comps.copy()
    out["grade"] = grade.astype(int)
    return out


def episodes(usubjid: pd.Series, day: pd.Series, grade: pd.Series) -> pd.Series:
    """Episode number per subject (1, 2, ...) of each day with grade >= 1; 0 on other days.

    An episode is a run of consecutive calendar days with grade >= 1; a grade-0 day or a
    missing assessment day ends it.
    """
    frame = pd.DataFrame({"u": usubjid.astype(str).to_numpy(), "d": day.to_numpy(), "g": grade.to_numpy()})
    order = np.lexsort((frame["d"].to_numpy(), frame["u"].to_numpy()))
    s = frame.iloc[order].reset_index(drop=True)
    pos = s["g"].ge(1)
    run = _runs(pos, s["u"], s["d"])
    start = pos & run.ne(run.shift(fill_value=0))
    num = start.astype(int).groupby(s["u"]).cumsum().where(pos, 0)
    back = np.empty(len(order), dtype=int)
    back[order] = np.arange(len(order))
    return pd.Series(num.to_numpy()[back], index=usubjid.index, dtype=int)


def episode_table(usubjid: pd.Series, day: pd.Series, grade: pd.Series, episode: pd.Series) -> pd.DataFrame:
    """One row per (USUBJID, episode >= 1): ``start``, ``end`` (first and last day with grade
    >= 1), ``grade`` (maximum), ``days`` (number of days), ``resolved`` (a later assessment of
    the subject exists, so the episode was seen to end) and ``last_assessment`` (the subject's
    last assessment day)."""
    f = pd.DataFrame({"USUBJID": usubjid.to_numpy(), "day": pd.to_datetime(day.to_numpy()),
                      "grade": grade.to_numpy(), "episode": episode.to_numpy()})
    if not (f["episode"] > 0).any():
        return pd.DataFrame({"USUBJID": pd.Series(dtype="object"), "episode": pd.Series(dtype=int),
                             "start": pd.Series(dtype="datetime64[ns]"), "end": pd.Series(dtype="datetime64[ns]"),
                             "grade": pd.Series(dtype=int), "days": pd.Series(dtype=int),
                             "last_assessment": pd.Series(dtype="datetime64[ns]"), "resolved": pd.Series(dtype=bool)})
    last = f.groupby("USUBJID")["day"].max()
    e = f[f["episode"] > 0].groupby(["USUBJID", "episode"], sort=True).agg(
        start=("day", "min"), end=("day", "max"), grade=("grade", "max"), days=("day", "size")).reset_index()
    e["last_assessment"] = pd.to_datetime(e["USUBJID"].map(last))
    e["resolved"] = e["end"] < e["last_assessment"]
    return e


def death_grade(subjects: pd.DataFrame, rules: pd.DataFrame) -> pd.Series:
    """Grade 5 where the subject's cause of death (field of the ``death`` rules, DTHCAUS)
    is the event; 0 otherwise. ``subjects`` has one row per subject."""
    if not (rules["role"] == "death").any():
        return pd.Series(0, index=subjects.index, dtype=int)
    return component_grades(subjects, rules, "death").max(axis=1).astype(int)


def fields(rules: pd.DataFrame, roles: tuple[str, ...] = ("grade", "fever", "mask")) -> list[str]:
    """Assessment fields a rule table reads (in table order), excluding AGE and death fields."""
    f = rules.loc[rules["role"].isin(roles), "field"]
    return [x for x in dict.fromkeys(f) if x != "AGE"]
