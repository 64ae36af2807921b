"""The visit-window and missed-visit deviations of the shipped extracts (raw/), pinned.

The simulator (:mod:`pipeline.simulate.deviations`) holds a few subjects' day-28 or month-3
response visit outside the window of the study's ``[[deviations]]`` rules and, in the
dose-escalation study, has one subject miss a visit of the DLT window. Every expected value
below was worked out by hand from the raw dates (CAR-T infusion date on form ex, assessment date
on form rs) and the windows of ``specs/studies/<STUDYID>.toml``:

- protocol day = assessment date - infusion date (infusion = day 0); SDTM study day = protocol
  day + 1 (no day 0);
- CD7-RRAL-DE: day 28 +/- 3 (DV-WIN-D28; days 25-31) and month 3 = day 90 +/- 7 ([orr],
  DV-WIN-PRIMARY; days 83-97); DLT window days 0-28 ([safety] dlt_window_days);
- NCT05164042: primary time point day 28 +/- 3 ([orr]; days 25-31);
- NCT06316427: day 28 +/- 3; month 3 +/- 7 ([orr]);
- ZJU-CD7-AID and ZJU-CD7-SAA: day 28 +/- 3; month 3 +/- 14 ([orr]; days 76-104).

For example CD7-RRAL-DE 003: infused 12-MAR-2024, MONTH 3 marrow 31-MAY-2024: 19 days left in
March + 30 (April) + 31 (May) = protocol day 80, 3 days before the window opens on day 83.
ZJU-CD7-SAA 002: infused 19-NOV-2024, MONTH 3 on 04-MAR-2025: 11 + 31 + 31 + 28 (February 2025)
+ 4 = day 105, one day after the +/- 14-day window closes on day 104.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.domains import dv as dv_mod

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "raw"
SPECS = ROOT / "specs"

#: (study, SUBJID, rule, VISIT, infusion date, assessment date, protocol day, target, window)
WINDOW = [
    ("CD7-RRAL-DE", "003", "DV-WIN-PRIMARY", "MONTH 3", "12-MAR-2024", "31-MAY-2024", 80, 90, 7),
    ("CD7-RRAL-DE", "027", "DV-WIN-D28", "DAY 28", "19-APR-2025", "21-MAY-2025", 32, 28, 3),
    ("NCT05164042", "003", "DV-WIN-PRIMARY", "DAY 28", "01-JUL-2021", "02-AUG-2021", 32, 28, 3),
    ("NCT05164042", "016", "DV-WIN-PRIMARY", "DAY 28", "07-APR-2023", "09-MAY-2023", 32, 28, 3),
    ("NCT06316427", "004", "DV-WIN-PRIMARY", "MONTH 3", "28-APR-2024", "17-JUL-2024", 80, 90, 7),
    ("NCT06316427", "022", "DV-WIN-D28", "DAY 28", "19-MAR-2025", "20-APR-2025", 32, 28, 3),
    ("ZJU-CD7-AID", "006", "DV-WIN-PRIMARY", "MONTH 3", "19-JUN-2024", "03-OCT-2024", 106, 90, 14),
    ("ZJU-CD7-AID", "023", "DV-WIN-D28", "DAY 28", "13-OCT-2025", "14-NOV-2025", 32, 28, 3),
    ("ZJU-CD7-SAA", "002", "DV-WIN-PRIMARY", "MONTH 3", "19-NOV-2024", "04-MAR-2025", 105, 90, 14),
    ("ZJU-CD7-SAA", "015", "DV-WIN-D28", "DAY 28", "07-JUN-2025", "30-JUN-2025", 23, 28, 3),
]
DECOD = {"DV-WIN-PRIMARY": "PRIMARY RESPONSE ASSESSMENT OUT OF WINDOW",
         "DV-WIN-D28": "DAY 28 RESPONSE ASSESSMENT OUT OF WINDOW"}
ISO = {"12-MAR-2024": "2024-03-12", "31-MAY-2024": "2024-05-31", "19-APR-2025": "2025-04-19",
       "21-MAY-2025": "2025-05-21", "01-JUL-2021": "2021-07-01", "02-AUG-2021": "2021-08-02",
       "07-APR-2023": "2023-04-07", "09-MAY-2023": "2023-05-09", "28-APR-2024": "2024-04-28",
       "17-JUL-2024": "2024-07-17", "19-MAR-2025": "2025-03-19", "20-APR-2025": "2025-04-20",
       "19-JUN-2024": "2024-06-19", "03-OCT-2024": "2024-10-03", "13-OCT-2025": "2025-10-13",
       "14-NOV-2025": "2025-11-14", "19-NOV-2024": "2024-11-19", "04-MAR-2025": "2025-03-04",
       "07-JUN-2025": "2025-06-07", "30-JUN-2025": "2025-06-30"}
#: CD7-RRAL-DE 011, infused 04-JUL-2024, misses DAY 21 (protocol day 21, window days 19-23): the
#: deviation is dated when the window closed, 04-JUL-2024 + 23 days = 2024-07-27 (study day 24)
MISSED = ("CD7-RRAL-DE", "011", "DAY 21", 21, "04-JUL-2024", "2024-07-27", 24)


def _raw(sid: str, form: str) -> pd.DataFrame:
    path = RAW / sid / f"{form}.csv"
    if not path.is_file():
        pytest.skip(f"raw/{sid}/{form}.csv is not in the tree (run `make raw`)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _infusion(sid: str, subjid: str) -> str:
    ex = _raw(sid, "ex")
    return ex.loc[(ex["SUBJID"] == subjid) & (ex["EXCAT"] == "CAR-T INFUSION"), "EXSTDAT"].iloc[0]


def test_iso_table_is_the_cdash_dates():
    """The test's own ISO spellings of the CDASH dates (one slip here would hide in every test)."""
    for cdash, iso in ISO.items():
        assert dt.datetime.strptime(cdash, "%d-%b-%Y").date().isoformat() == iso


@pytest.mark.parametrize("sid,subjid,rule,visit,inf,asmt,day,target,window", WINDOW)
def test_shipped_assessment_outside_its_window(sid, subjid, rule, visit, inf, asmt, day, target, window):
    """The raw dates are the ones worked out by hand; the day lies outside the TOML window and the
    visit is the rule's target visit; the simulator lists the deviation in planted.csv."""
    assert _infusion(sid, subjid) == inf
    rs = _raw(sid, "rs")
    assert rs.loc[(rs["SUBJID"] == subjid) & (rs["VISIT"] == visit), "RSDAT"].tolist() == [asmt]
    assert (dt.date.fromisoformat(ISO[asmt]) - dt.date.fromisoformat(ISO[inf])).days == day
    assert abs(day - target) > window
    study = load_study(SPECS, sid)
    rules = study.table("deviations").set_index("id")
    r = rules.loc[rule]
    assert (r["kind"], r["dataset"], r["testcd"]) == ("assessment_out_of_window", "RS", "OVRLRESP")
    orr = study["orr"]
    pair = (orr["timepoint_day"], orr["window_days"]) if r["day"] == "orr" else (r["day"], r["window_days"])
    assert pair == (target, window)
    v = study.visits
    assert v.loc[v["day"] == target, "VISIT"].tolist() == [visit]
    planted = pd.read_csv(RAW / "planted.csv", dtype=str, keep_default_na=False)
    hit = planted[(planted["study"] == sid) & (planted["subjid"] == subjid) & (planted["item"] == rule)]
    assert len(hit) == 1 and f"protocol day {day}," in hit["description"].iloc[0]


def test_every_planted_window_deviation_is_pinned():
    """No shipped window or missed-visit deviation escapes the table above."""
    planted = pd.read_csv(RAW / "planted.csv", dtype=str, keep_default_na=False)
    dv = planted[planted["item"].str.startswith("DV-")]
    got = set(zip(dv["study"], dv["subjid"], dv["item"]))
    want = {(s, subj, rule) for s, subj, rule, *_ in WINDOW} | {(MISSED[0], MISSED[1], "DV-DLT-MISSED")}
    assert got == want


def _shipped_dv(sid: str) -> pd.DataFrame:
    """DV of the assessment-window rules from the shipped rs and ex forms of one study: RS as the
    domain has it for the rules (OVRLRESP, VISITNUM of the schedule, RSDY, RSDTC) and DM.RFSTDTC =
    the first CAR-T infusion; the study's own rules evaluate it."""
    study = load_study(SPECS, sid)
    rs, ex = _raw(sid, "rs"), _raw(sid, "ex")
    inf = ex[ex["EXCAT"] == "CAR-T INFUSION"].groupby("SUBJID")["EXSTDAT"].first()
    rs = rs[rs["SUBJID"].isin(inf.index)]
    a = pd.to_datetime(rs["RSDAT"], format="%d-%b-%Y")
    d0 = pd.to_datetime(rs["SUBJID"].map(inf), format="%d-%b-%Y")
    pday = (a - d0).dt.days
    frame = pd.DataFrame({"DOMAIN": "RS", "USUBJID": f"{sid}-01-" + rs["SUBJID"], "RSTESTCD": "OVRLRESP",
                          "VISIT": rs["VISIT"], "VISITNUM": rs["VISIT"].map(dict(zip(study.visits["VISIT"],
                                                                                     study.visits["VISITNUM"]))),
                          "RSDTC": a.dt.strftime("%Y-%m-%d"), "RSDY": pday.where(pday < 0, pday + 1)})
    rules = dv_mod.load_rules(study)
    rules = rules[rules["kind"] == "assessment_out_of_window"]
    parts = [dv_mod.assessment_out_of_window(r, {"RS": frame}, study) for _, r in rules.iterrows()]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("sid", sorted({w[0] for w in WINDOW}))
def test_window_rules_find_exactly_the_shipped_deviations(sid):
    """The study's window rules, run on its shipped assessments, find the pinned records and no
    other, with DVTERM/DVDECOD/DVCAT as the TOML rules spell them."""
    dv = _shipped_dv(sid)
    want = {(f"{sid}-01-{subj}", rule,
             f"{visit} response assessment on protocol day {day}, outside day {target} +/- {window} days",
             DECOD[rule], "VISIT WINDOW", ISO[asmt])
            for s, subj, rule, visit, inf, asmt, day, target, window in WINDOW if s == sid}
    got = set(zip(dv["USUBJID"], dv["DVSPID"], dv["DVTERM"], dv["DVDECOD"], dv["DVCAT"], dv["DVSTDTC"]))
    assert got == want


def test_built_smallest_study_holds_its_window_deviations(built_study):
    """End to end (the session's build of the smallest shipped study): DV holds the pinned window
    records, with DVSTDY = protocol day + 1."""
    import pyreadstat

    sid = built_study.name
    rows = [w for w in WINDOW if w[0] == sid]
    if not rows:
        pytest.skip(f"{sid} has no pinned window deviation")
    dv = pyreadstat.read_xport(str(built_study / "dv.xpt"))[0]
    win = dv[dv["DVCAT"] == "VISIT WINDOW"]
    got = {(u, s, t, d, int(y)) for u, s, t, d, y in zip(win["USUBJID"], win["DVSPID"], win["DVTERM"],
                                                          win["DVSTDTC"], win["DVSTDY"])}
    want = {(f"{sid}-01-{subj}", rule,
             f"{visit} response assessment on protocol day {day}, outside day {target} +/- {window} days",
             ISO[asmt], day + 1)
            for _, subj, rule, visit, inf, asmt, day, target, window in rows}
    assert got == want


@pytest.fixture(scope="module")
def dose_escalation(tmp_path_factory):
    """SDTM of the shipped dose-escalation study (domains, then SV and DV), built in process
    without the exports."""
    import pipeline.build as build
    from pipeline.context import StudyContext
    from pipeline.derive import visits
    from pipeline.domains import AFTER_VISITS
    from pipeline.intake.gate import gate_detail
    from pipeline.progress import BuildLog
    from pipeline.spec import load_spec

    sid = MISSED[0]
    if not (RAW / sid).is_dir():
        pytest.skip(f"raw/{sid} is not in the tree (run `make raw`)")
    spec, study = load_spec(SPECS), load_study(SPECS, sid)
    gated = gate_detail(RAW, study, spec)
    ctx = StudyContext(study=study, spec=spec, forms=gated.forms)
    merged = build.run_domains(ctx, BuildLog())
    merged.datasets = visits.renumber_unscheduled(merged.datasets, study)
    ctx.datasets.update(merged.datasets)
    build.run_domains(ctx, BuildLog(), None, AFTER_VISITS, into=merged)
    assert not merged.failed
    return merged.datasets


@pytest.mark.slow
def test_dose_escalation_missed_dlt_visit_and_window_deviations(dose_escalation):
    """CD7-RRAL-DE: subject 011 has no record of DAY 21 although it came to DAY 14 and DAY 28 (SV
    SVOCCUR N) and DV says so (DV-DLT-MISSED, dated when the window closed); the two window
    deviations and the planted eligibility deviation (021, IN09) complete DV."""
    sid, subj, visit, pday, inf, closed, stdy = MISSED
    assert _infusion(sid, subj) == inf
    usubjid = f"{sid}-01-{subj}"
    sv = dose_escalation["SV"]
    mine = sv[sv["USUBJID"] == usubjid].set_index("VISIT")
    assert mine.loc[visit, "SVOCCUR"] == "N" and mine.loc[visit, "SVPRESP"] == "Y"
    assert (mine.loc[["DAY 14", "DAY 28"], "SVOCCUR"] == "Y").all()
    lb = dose_escalation["LB"]
    assert lb[(lb["USUBJID"] == usubjid) & (lb["VISIT"] == visit)].empty
    assert not lb[(lb["USUBJID"] == usubjid) & (lb["VISIT"] == "DAY 28")].empty
    dv = dose_escalation["DV"]
    got = {(u, s, t, c, d, int(y)) for u, s, t, c, d, y in zip(dv["USUBJID"], dv["DVSPID"], dv["DVTERM"], dv["DVCAT"],
                                                            dv["DVSTDTC"], dv["DVSTDY"])}
    want = {(usubjid, "DV-DLT-MISSED", f"{visit} (protocol day {pday}) of the DLT observation window not done",
             "MISSED ASSESSMENT", closed, stdy)}
    want |= {(f"{sid}-01-{s}", rule,
              f"{v} response assessment on protocol day {day}, outside day {target} +/- {window} days",
              "VISIT WINDOW", ISO[asmt], day + 1)
             for st, s, rule, v, _, asmt, day, target, window in WINDOW if st == sid}
    # planted ELIG-ULN: IE date 23-FEB-2025 on form ie, infused 20-MAR-2025: 5 + 20 = 25 days before (study day -25)
    want.add((f"{sid}-01-021", "DV-ELIG", "Enrolled although INCLUSION criterion IN09 was not met", "ELIGIBILITY",
              "2025-02-23", -25))
    assert got == want
    assert dv.loc[dv["DVSPID"] == "DV-DLT-MISSED", "DVDECOD"].tolist() == ["DLT WINDOW ASSESSMENT NOT DONE"]
