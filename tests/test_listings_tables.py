"""Listing and table content on the hand-built study TESTR (tests/fixtures/report): counts
hand-computed from the fixture and recomputed here independently (plain Python over the
records), boundaries of the DLT window, lab shift with two-direction tests, supplemental
qualifiers, skipped listings."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.report import reportkit as kit
from pipeline.report import listings, tables


@pytest.fixture(scope="module")
def data():
    return kit.exported()


@pytest.fixture(scope="module")
def inp(data):
    return listings.prepare(data, kit.reports(), kit.context(data))


@pytest.fixture(scope="module")
def built(inp):
    done, skipped = listings.build_listings(inp)
    return {lst.id: lst for lst in done}, skipped


def _u(s):
    return f"{kit.STUDY}-01-{s}"


# ---------------------------------------------------------------------------------------
# subjects, supplemental qualifiers, days
# ---------------------------------------------------------------------------------------
def test_subjects_treated_and_cohort(inp):
    s = inp.subjects.set_index("USUBJID")
    assert s["treated"].to_dict() == {_u("001"): True, _u("002"): True, _u("003"): True, _u("004"): False}
    assert s.loc[_u("003"), "COHORT"] == "Dose level 2"
    # not treated: ACTARM empty, so the planned ARM is the cohort
    assert s.loc[_u("004"), "COHORT"] == "Dose level 2"


def test_with_supp_merges_qualifiers_by_seq(data):
    ae = tables.with_supp(data["AE"], data["SUPPAE"], "AESEQ")
    row = ae[(ae["USUBJID"] == _u("001")) & (ae["AESEQ"] == 3)].iloc[0]
    assert (row["ASTCTDUP"], row["AETRTEM"], row["TOXGRSCL"]) == ("Y", "Y", "ASTCT 2019")
    other = ae[(ae["USUBJID"] == _u("002")) & (ae["AESEQ"] == 3)].iloc[0]
    assert (other["ASTCTDUP"], other["DLTWINFL"]) == ("", "N")
    assert len(ae) == len(data["AE"])


@pytest.mark.parametrize("dy,day", [(1, 0), (2, 1), (29, 28), (-1, -1), (-5, -5)])
def test_days_after_infusion_has_no_day_zero_gap(dy, day):
    assert tables.days_after_infusion(pd.Series([float(dy)])).iloc[0] == day


def test_duration_days_needs_complete_dates():
    d = tables.duration_days(pd.Series(["2025-01-12", "2025-01-12", "2025-01", "2024-02-28"]),
                             pd.Series(["2025-01-15", "2025-01-12", "2025-01-20", "2024-03-01"]))
    assert d.iloc[0] == 4 and d.iloc[1] == 1 and np.isnan(d.iloc[2]) and d.iloc[3] == 3  # leap year


# ---------------------------------------------------------------------------------------
# AE summary: hand-computed and recomputed independently
# ---------------------------------------------------------------------------------------
def _independent_ae_counts(data):
    """Plain-Python recount: subjects by worst grade per term, SOC and overall."""
    ae = data["AE"].to_dict("records")
    supp = defaultdict(dict)
    for r in data["SUPPAE"].to_dict("records"):
        supp[(r["USUBJID"], int(r["IDVARVAL"]))][r["QNAM"]] = r["QVAL"]
    treated = {r["USUBJID"] for r in data["DM"].to_dict("records") if r["RFSTDTC"]}
    worst = defaultdict(dict)  # key -> subject -> worst grade (None = only missing)
    for r in ae:
        q = supp[(r["USUBJID"], int(r["AESEQ"]))]
        if r["USUBJID"] not in treated or q.get("AETRTEM") != "Y" or q.get("ASTCTDUP") == "Y":
            continue
        soc = r["AEBODSYS"] if r["AEDECOD"] else "Not coded (coding query open)"
        term = r["AEDECOD"] or r["AETERM"]
        g = int(r["AETOXGR"]) if r["AETOXGR"] else None
        for key in (("any", "", ""), ("soc", soc, ""), ("term", soc, term)):
            prev = worst[key].get(r["USUBJID"], "unset")
            if prev == "unset" or (g is not None and (prev is None or g > prev)):
                worst[key][r["USUBJID"]] = g
    out = {}
    for key, subj in worst.items():
        for g in subj.values():
            k = (*key, "missing" if g is None else str(g))
            out[k] = out.get(k, 0) + 1
        out[(*key, "any")] = len(subj)
    return out


def test_ae_summary_counts_hand_computed_and_recomputed(data, inp):
    ae = tables.countable_teae(tables.with_supp(data["AE"], data["SUPPAE"], "AESEQ"))
    counts = tables.ae_summary_counts(ae, inp.treated(), "Not coded (coding query open)")
    got = {(r.level, r.soc, r.term, r.grade): r.n for r in counts.itertuples()}
    assert got == _independent_ae_counts(data)
    # by hand (see reportkit): N = 3 treated subjects, every one with a worst grade 3
    assert got[("any", "", "", "3")] == 3 and got[("any", "", "", "any")] == 3
    assert got[("term", kit.GENERAL, "Fever", "2")] == 1 and got[("term", kit.GENERAL, "Fever", "3")] == 1
    assert got[("soc", kit.BLOOD, "", "missing")] == 1 and got[("soc", kit.BLOOD, "", "2")] == 1
    assert got[("soc", kit.GI, "", "3")] == 1 and ("soc", kit.GI, "", "1") not in got  # subject 003: worst of 1, 3
    assert got[("term", kit.IMMUNE, kit.CRS, "3")] == 1 and ("term", kit.IMMUNE, kit.CRS, "2") not in got  # dup out
    assert got[("term", "Not coded (coding query open)", kit.INJECTION_HYPERLINK, "1")] == 1
    assert not any(k[2] == "Headache" for k in got)  # not treatment emergent
    assert not any(k[2] == "Rash maculo-papular" for k in got)  # subject never treated


@settings(max_examples=300, deadline=None)
@given(grades=st.lists(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 2.7])), max_size=30))
def test_grade_text_is_the_per_value_rule_it_replaced(grades):
    """tables.grade_text (the AE summary's and the lab shift table's worst and baseline grades)
    gives, for every value at once, what ``missing if isna(v) else str(int(v))`` gave one value
    at a time: missing grades, whole numbers stored as floats, a fraction truncated like int."""
    g = pd.Series([np.nan if v is None else v for v in grades], dtype="float64")
    want = ["missing" if v is None else str(int(v)) for v in grades]
    assert tables.grade_text(g, "missing").tolist() == want


def test_grade_text():
    got = tables.grade_text(pd.Series([1.0, np.nan, 3.0, 0.0, 2.0]), "missing").tolist()
    assert got == ["1", "missing", "3", "0", "2"]


def test_ae_summary_table_layout(built):
    t = built[0]["ae_summary"]
    f = t.frame
    assert t.headers[:2] == ["Body System or Organ Class", "Dictionary-Derived Term"]
    assert t.headers[2:] == ["Grade 1", "Grade 2", "Grade 3", "Grade 4", "Grade 5", "Grade Missing", "Any Grade"]
    assert f.iloc[0].tolist() == ["Any adverse event", "", "0", "0", "3 (100.0%)", "0", "0", "0", "3 (100.0%)"]
    # SOCs by descending subjects, then name: Blood (2), General (2), GI (1), Immune (1), Nervous (1), Not coded (1)
    socs = f.loc[f["AEDECOD"] == "", "AEBODSYS"].tolist()[1:]
    assert socs == [kit.BLOOD, kit.GENERAL, kit.GI, kit.IMMUNE, kit.NERVOUS, "Not coded (coding query open)"]
    fever = f[f["AEDECOD"] == "Fever"].iloc[0]
    assert (fever["Grade 2"], fever["Grade 3"], fever["Any Grade"]) == ("1 (33.3%)", "1 (33.3%)", "2 (66.7%)")
    assert "N = 3 subjects." in t.note


def _summary_table_by_class(counts, n_treated, grades, labels):
    """tables.ae_summary_table as it was before tables.summary_rows: a filter and a sort of
    the terms per system organ class, the pieces concatenated."""
    wide = counts.pivot_table(index=["level", "soc", "term"], columns="grade", values="n", aggfunc="sum",
                              fill_value=0)
    show = list(grades) + (["missing"] if "missing" in wide.columns else []) + ["any"]
    for g in show:
        if g not in wide.columns:
            wide[g] = 0
    wide = wide[show].reset_index()
    anyrow = wide[wide["level"] == "any"]
    socs = wide[wide["level"] == "soc"].sort_values(["any", "soc"], ascending=[False, True], kind="mergesort")
    terms = wide[wide["level"] == "term"]
    parts = [anyrow.assign(soc=labels.get("any_event", "Any adverse event"), term="")]
    for soc in socs["soc"]:
        parts.append(socs[socs["soc"] == soc].assign(term=""))
        t = terms[terms["soc"] == soc].sort_values(["any", "term"], ascending=[False, True], kind="mergesort")
        parts.append(t.assign(soc=""))
    table = pd.concat(parts, ignore_index=True)
    out = pd.DataFrame({"soc": table["soc"].to_numpy(), "term": table["term"].to_numpy()})
    for g in show:
        head = labels["any_grade"] if g == "any" else labels["missing_grade"] if g == "missing" else f"{labels['grade']} {g}"
        out[head] = tables.percent(table[g].reset_index(drop=True), n_treated).to_numpy()
    return out


_NAMES = st.sampled_from(["", "A", "B", "b", "Blood", "Cardiac", "Not coded"])


@settings(max_examples=300, deadline=None)
@given(rows=st.dictionaries(st.tuples(_NAMES, _NAMES), st.dictionaries(
           st.sampled_from(["1", "2", "3", "missing"]), st.integers(1, 4), min_size=1), min_size=1),
       soc_rows=st.sets(_NAMES), n_treated=st.integers(0, 9))
def test_summary_rows_order_what_a_sort_per_class_ordered(rows, soc_rows, n_treated):
    """tables.ae_summary_table (one sort, tables.summary_rows) gives the table the filter and
    sort per system organ class gave, on random counts: ties of the subject counts, names
    differing by case, an empty class name, terms of a class without its own row (left
    out), classes without terms."""
    records = [("any", "", "", g, n) for g, n in next(iter(rows.values())).items()]
    records += [("term", soc, term, g, n) for (soc, term), by in rows.items() for g, n in by.items()]
    records += [("soc", soc, "", g, n) for soc in sorted(soc_rows) for g, n in
                rows.get((soc, soc), {"2": 1}).items()]
    counts = pd.DataFrame(records, columns=["level", "soc", "term", "grade", "n"])
    anyn = counts.groupby(["level", "soc", "term"], as_index=False)["n"].sum().assign(grade="any")
    counts = pd.concat([counts, anyn], ignore_index=True)
    labels = {"any_grade": "Any Grade", "missing_grade": "Grade Missing", "grade": "Grade"}
    got = tables.ae_summary_table(counts, n_treated, ["1", "2", "3", "4"], labels)
    want = _summary_table_by_class(counts, n_treated, ["1", "2", "3", "4"], labels)
    pd.testing.assert_frame_equal(got, want)


def test_percent_text():
    assert tables.percent(pd.Series([0, 1, 2, 3]), 3).tolist() == ["0", "1 (33.3%)", "2 (66.7%)", "3 (100.0%)"]


# ---------------------------------------------------------------------------------------
# CRS/ICANS, DLT
# ---------------------------------------------------------------------------------------
def test_crs_icans_listing(built):
    f = built[0]["crs_icans"].frame
    got = [(r.USUBJID, r.AESPID, r.ONSETDAY, r.DURATION, r.AETOXGR) for r in f.itertuples()]
    assert got == [(_u("001"), "AE-3", 2, 3, "2"), (_u("001"), "CRS-1", 2, 4, "3"),
                   (_u("002"), "ICANS-1", 5, 2, "1")]
    assert built[0]["crs_icans"].headers[f.columns.get_loc("ONSETDAY")] == "Onset Day After Infusion (Day 0 = Infusion)"


def _independent_dlt(data, window):
    """AEs with onset on protocol days 0..window (study days 1..window+1), treatment emergent,
    not ASTCT duplicates."""
    supp = defaultdict(dict)
    for r in data["SUPPAE"].to_dict("records"):
        supp[(r["USUBJID"], int(r["IDVARVAL"]))][r["QNAM"]] = r["QVAL"]
    out = []
    for r in data["AE"].to_dict("records"):
        q = supp[(r["USUBJID"], int(r["AESEQ"]))]
        if pd.notna(r["AESTDY"]) and 1 <= r["AESTDY"] <= window + 1 and q.get("AETRTEM") == "Y" \
                and q.get("ASTCTDUP") != "Y":
            out.append((r["USUBJID"], int(r["AESEQ"])))
    return sorted(out)


def test_dlt_listing_window_boundaries(built, data):
    f = built[0]["ae_dlt_window"].frame
    got = sorted(zip(f["USUBJID"], f["AESEQ"].astype(int)))
    assert got == _independent_dlt(data, 28)
    assert got == [(_u("001"), 1), (_u("001"), 2), (_u("001"), 4), (_u("001"), 5), (_u("002"), 1), (_u("002"), 2),
                   (_u("003"), 1), (_u("003"), 2)]
    # study day 29 = day 28 after infusion is in, study day 30 (Vomiting) is out
    assert "Nausea" in set(f["AEDECOD"]) and "Vomiting" not in set(f["AEDECOD"])
    # worst grade first within a subject
    assert f[f["USUBJID"] == _u("001")]["AETOXGR"].tolist() == ["3", "2", "1", "1"]
    assert built[0]["ae_dlt_window"].title.endswith("(day 0 to day 28 after infusion)")


def test_dlt_listing_without_the_qualifier_uses_the_window(data, inp):
    ae = tables.with_supp(data["AE"], data["SUPPAE"][data["SUPPAE"]["QNAM"] != "DLTWINFL"], "AESEQ")
    f = tables.dlt_listing(ae, inp.subjects, 28)
    assert sorted(zip(f["USUBJID"], f["AESEQ"].astype(int))) == _independent_dlt(data, 28)
    assert len(tables.dlt_listing(ae, inp.subjects, 27)) == 7  # Nausea (day 28) drops out
    assert tables.dlt_listing(ae, inp.subjects, 28, min_grade=3)["AESEQ"].astype(int).tolist() == [4, 1]


# ---------------------------------------------------------------------------------------
# lab shift
# ---------------------------------------------------------------------------------------
def test_lab_worst_grades(data, inp):
    w = tables.lab_worst_grades(data["LB"], inp.subjects)
    got = {(r.USUBJID, r.LBTESTCD, r.LBTOX): (None if pd.isna(r.baseline) else r.baseline, r.worst)
           for r in w.itertuples()}
    assert got == {
        (_u("001"), "ALT", "Alanine aminotransferase increased"): (0, 2),
        # baseline on the infusion day before the infusion time: baseline, not post-baseline
        (_u("002"), "ALT", "Alanine aminotransferase increased"): (1, 0),
        (_u("003"), "ALT", "Alanine aminotransferase increased"): (None, 3),
        # two-direction test: a hyperkalemia grade counts 0 for hypokalemia and vice versa
        (_u("001"), "K", "Hypokalemia"): (1, 0),
        (_u("001"), "K", "Hyperkalemia"): (0, 2),
    }  # subject 004 was never infused: no post-baseline record; 002's K record is not graded


def test_lab_shift_table(built):
    t = built[0]["lab_shift"]
    f = t.frame.set_index(["LBTESTCD", "LBTOX", "baseline_grade"])
    alt = "Alanine aminotransferase increased"
    assert f.loc[("ALT", alt, "0"), "Grade 2"] == 1 and f.loc[("ALT", alt, "0"), "total"] == 1
    assert f.loc[("ALT", alt, "1"), "Grade 0"] == 1
    assert f.loc[("ALT", alt, "Grade Missing"), "Grade 3"] == 1
    assert f.loc[("ALT", alt, "4"), "total"] == 0
    assert int(t.frame.loc[t.frame["LBTESTCD"] == "ALT", "total"].sum()) == 3
    assert f.loc[("K", "Hyperkalemia", "0"), "Grade 2"] == 1
    assert ("K", "Hypokalemia", "Grade Missing") not in f.index  # no missing baseline for that term
    assert t.headers[:4] == ["Lab Test or Examination Short Name.", "Lab Test or Examination Name", "Toxicity",
                             "Baseline Grade"]


# ---------------------------------------------------------------------------------------
# eligibility, response, reports, skipped
# ---------------------------------------------------------------------------------------
def test_failed_eligibility_lists_the_failing_criterion_rows(built):
    f = built[0]["eligibility_failed"].frame
    assert f[["USUBJID", "LBTESTCD", "row_result"]].values.tolist() == [[_u("003"), "ALT", "NOT MET"],
                                                                         [_u("003"), "BILI", "MET"]]
    assert f["COHORT"].tolist() == ["Dose level 2"] * 2


def test_response_listing(built):
    f = built[0]["response"].frame
    assert len(f) == 5
    assert f[f["USUBJID"] == _u("001")][["RSEVAL", "RSTESTCD", "RSSTRESC"]].values.tolist() == [
        ["INVESTIGATOR", "OVRLRESP", "CR"], ["INVESTIGATOR", "BESTRESP", "CR"], ["SPONSOR", "OVRLRESP", "PR"]]


def test_reports_are_listed_and_headed(built):
    done, _ = built
    assert done["orr"].frame["orr_pct"].tolist() == [33.3]
    assert done["orr"].headers == ["Evaluator", "Responders", "Evaluable", "Rate (%)", "95% CI Lower (%)",
                                   "95% CI Upper (%)"]
    assert "orr_pct" in done["orr"].numeric and "RSEVAL" not in done["orr"].numeric
    assert done["coding_queries"].headers == ["Unique Subject Identifier", "Sponsor-Defined Identifier",
                                              "Reported Term for the Adverse Event", "Query"]
    # a report not named in specs/tlf/outputs.csv is still rendered
    assert done["report_extra_report"].frame["note"].tolist() == ["free text <b>bold</b>"]


def test_listings_whose_inputs_are_absent_are_skipped(data):
    partial = {k: v for k, v in data.items() if k in ("DM", "AE", "SUPPAE")}
    inp = listings.prepare(partial, {}, kit.context(partial))
    done, skipped = listings.build_listings(inp)
    reasons = {s.id: s.reason for s in skipped}
    assert reasons["lab_shift"] == "dataset LB is not in this build"
    assert reasons["response"] == "dataset RS is not in this build"
    assert reasons["orr"] == "report orr_summary is not in this build"
    assert {"ae_by_subject", "ae_summary", "crs_icans", "ae_dlt_window"} <= {d.id for d in done}
    # the DLT listing needs ADAE's DLT flag: without the ADaM layer it is not produced
    assert reasons["dlt"] == "dataset ADAE is not in this build"


def test_listing_headers_come_from_the_spec(built):
    t = built[0]["ae_by_subject"]
    h = dict(zip(t.frame.columns, t.headers))
    assert h["AETERM"] == "Reported Term for the Adverse Event"
    assert h["AESTDY"] == "Study Day of Start of Adverse Event"
    assert h["TOXGRSCL"] == "Toxicity Grading Scale"  # QLABEL from value-level metadata
    assert h["COHORT"] == "Cohort"
    assert {"AESEQ", "AESTDY", "AEENDY"} <= t.numeric and "AETERM" not in t.numeric
