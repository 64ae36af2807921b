"""AE, SUPPAE, FA and RELREC (pipeline.domains.ae) on small hand-built fixtures: one AE record
per investigator-reported event, the ASTCT daily grades in FA, RELREC between them, and the
data queries where they disagree.

Subject 001: infused 2024-05-01 10:00, alive, age 30. Subject 002: infused 2024-06-01, age 8,
died 2024-06-06 of CRS. Subject 003: consented, never infused.
"""

from __future__ import annotations

import functools

import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.domains import ae as aemod
from pipeline.export.checks import check_dataset, order_dataset
from pipeline.spec import load_spec

from conftest import SPECS

SPEC = load_spec(SPECS)
STUDY = load_study(SPECS, "NCT06316427")           # 21-day DLT window
SID = "NCT06316427"
U1, U2, U3 = f"{SID}-01-001", f"{SID}-01-002", f"{SID}-01-003"


def dm_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "STUDYID": SID, "USUBJID": [U1, U2, U3], "SUBJID": ["001", "002", "003"],
        "RFSTDTC": ["2024-05-01T10:00", "2024-06-01", ""], "RFICDTC": ["2024-04-01", "2024-05-01", "2024-05-01"],
        "RFPENDTC": ["2025-01-01", "2024-06-06", "2024-05-20"], "AGE": [30.0, 8.0, 40.0],
        "DTHFL": ["", "Y", ""], "DTHDTC": ["", "2024-06-06", ""]})


def se_frame() -> pd.DataFrame:
    rows = [(U1, "CART", "TREATMENT", "2024-05-01T10:00", "2024-05-23", 3.0),
            (U1, "FU", "FOLLOW-UP", "2024-05-23", "2025-01-01", 4.0),
            (U2, "CART", "TREATMENT", "2024-06-01", "2024-06-06", 3.0),
            (U3, "SCRN", "SCREENING", "2024-05-01", "2024-05-20", 1.0)]
    se = pd.DataFrame(rows, columns=["USUBJID", "ETCD", "EPOCH", "SESTDTC", "SEENDTC", "TAETORD"])
    return se.assign(STUDYID=SID, ELEMENT=se["ETCD"])


AE_DEFAULT = {"STUDYID": SID, "SITEID": "01", "AESTTIM": None, "AEENDAT": None, "AEONGO": "N", "AESER": "N",
              "AESDTH": "N", "AESLIFE": "N", "AESHOSP": "N", "AESDISAB": "N", "AESCONG": "N", "AESMIE": "N",
              "AEREL": "RELATED", "AEACN": "NOT APPLICABLE", "AEOUT": "RECOVERED/RESOLVED"}


def ae_raw(rows: list[dict]) -> pd.DataFrame:
    cols = SPEC.form_columns("ae")["column"].tolist()
    out = pd.DataFrame([{**AE_DEFAULT, **r} for r in rows], columns=cols)
    return out.assign(_FILE="ae.csv", _ROW=range(2, 2 + len(out)))


CRS_DEFAULT = {"STUDYID": SID, "SITEID": "01", "TEMP": "37.0", "ANTIPYR": "N", "HYPOTEN": "N", "VASONUM": "0",
               "VASOPRSN": "N", "OXYDEV": "NONE", "OXYFLOW": None, "ICESCORE": "10", "CAPDSCR": None,
               "UNAROUS": "N", "LOC": "NORMAL", "SEIZURE": "NONE", "MOTOR": "NONE", "ICPEDEMA": "NONE"}


def crs_raw(subject: str, start: str, rows: list[dict]) -> pd.DataFrame:
    days = pd.date_range(start, periods=len(rows)).strftime("%d-%b-%Y").str.upper()
    return pd.DataFrame([{**CRS_DEFAULT, **r, "SUBJID": subject, "FADAT": d} for r, d in zip(rows, days)])


def default_crs() -> pd.DataFrame:
    """001: CRS grade 1, 2, then masked grade 1 (2024-05-02..04), resolved on 05-05; ICANS grade 2
    on 05-03 only. 002 (child): CRS grade 4 on 06-05..06 (died 06-06 of CRS), CAPD 9 on 06-06."""
    a = crs_raw("001", "2024-05-01", [
        {}, {"TEMP": "38.4"}, {"TEMP": "38.0", "HYPOTEN": "Y", "ICESCORE": "6"},
        {"TEMP": "37.0", "ANTIPYR": "Y"}, {}])
    b = crs_raw("002", "2024-06-04", [
        {"ICESCORE": None, "CAPDSCR": "0"}, {"TEMP": "39.0", "VASONUM": "2", "ICESCORE": None, "CAPDSCR": "3"},
        {"TEMP": "39.5", "OXYDEV": "CPAP", "ICESCORE": None, "CAPDSCR": "9"}])
    out = pd.concat([a, b], ignore_index=True)
    return out.assign(_FILE="crs.csv", _ROW=range(2, 2 + len(out)))


def ds_raw() -> pd.DataFrame:
    return pd.DataFrame({"STUDYID": SID, "SITEID": "01", "SUBJID": ["002"], "DSDECOD": ["DEATH"],
                         "DSSTDAT": ["06-JUN-2024"], "DTHDAT": ["06-JUN-2024"], "DTHCAUS": ["CYTOKINE RELEASE SYNDROME"],
                         "_FILE": "ds.csv", "_ROW": [2]})


def build(ae_rows: list[dict], crs: pd.DataFrame | None = None, study=STUDY, ds: pd.DataFrame | None = None):
    """Build AE on the fixtures; results with the default daily assessments are cached (read-only)."""
    if crs is None and ds is None and study is STUDY:
        return _cached(tuple(tuple(sorted(r.items(), key=str)) for r in ae_rows))
    return _build(ae_rows, crs, study, ds)


@functools.lru_cache(maxsize=None)
def _cached(key: tuple):
    return _build([dict(r) for r in key], None, STUDY, None)


def _build(ae_rows: list[dict], crs: pd.DataFrame | None, study, ds: pd.DataFrame | None):
    forms = {"ae": ae_raw(ae_rows), "crs": default_crs() if crs is None else crs,
             "ds": ds_raw() if ds is None else ds}
    ctx = StudyContext(study=study, spec=SPEC, forms=forms, datasets={"DM": dm_frame(), "SE": se_frame()})
    return aemod.build(ctx)


def ok_row(**kw) -> dict:
    base = {"SUBJID": "001", "AESPID": "1", "AETERM": "Nausea", "AESTDAT": "03-MAY-2024", "AEENDAT": "04-MAY-2024",
            "AETOXGR": "1"}
    return {**base, **kw}


def errors(result, check: str) -> pd.DataFrame:
    f = result.findings
    return f[(f["check"] == check) & (f["severity"] == "error")]


def supp(result, qnam: str) -> dict:
    s = result.datasets["SUPPAE"]
    s = s[s["QNAM"] == qnam]
    ae = result.datasets["AE"].set_index(["USUBJID", "AESEQ"])
    keys = zip(s["USUBJID"], s["IDVARVAL"].astype(float))
    return {ae.loc[k, "AESPID"]: v for k, v in zip(keys, s["QVAL"])}


# ---------------------------------------------------------------------------------------
# grade validity and seriousness (gate errors naming the record)
# ---------------------------------------------------------------------------------------
def test_valid_record_has_no_errors():
    r = build([ok_row()])
    assert (r.findings["severity"] != "error").all()


def test_alopecia_grade_3_is_an_error_naming_the_record():
    r = build([ok_row(AESPID="7", AETERM="Alopecia", AETOXGR="3")])
    e = errors(r, "ae_grade_exists")
    assert len(e) == 1
    assert (e["file"].iloc[0], e["row"].iloc[0], e["column"].iloc[0], e["value"].iloc[0]) == ("ae.csv", 2, "AETOXGR", "3")
    assert f"{U1} AESPID 7 (Alopecia)" in e["message"].iloc[0] and "grades 1|2" in e["message"].iloc[0]


def test_alopecia_grade_2_is_fine():
    assert errors(build([ok_row(AETERM="Alopecia", AETOXGR="2")]), "ae_grade_exists").empty


def test_grade_5_for_a_term_without_grade_5_is_an_error():
    r = build([ok_row(SUBJID="002", AETERM="Neutrophil count decreased", AESTDAT="03-JUN-2024", AEENDAT="06-JUN-2024",
                      AETOXGR="5", AEOUT="FATAL", AESER="Y", AESDTH="Y")])
    assert len(errors(r, "ae_grade_exists")) == 1
    assert errors(r, "ae_grade5_outcome").empty and errors(r, "ae_grade5_death").empty


def test_grade_5_needs_aeout_fatal():
    r = build([ok_row(SUBJID="002", AETERM="Sepsis", AESTDAT="03-JUN-2024", AEENDAT="06-JUN-2024", AETOXGR="5",
                      AEOUT="NOT RECOVERED/NOT RESOLVED", AESER="Y", AESDTH="Y")])
    e = errors(r, "ae_grade5_outcome")
    assert len(e) == 1 and "AEOUT must be FATAL" in e["message"].iloc[0]


def test_aeout_fatal_needs_grade_5():
    r = build([ok_row(SUBJID="002", AETERM="Sepsis", AESTDAT="03-JUN-2024", AEENDAT="06-JUN-2024", AETOXGR="4",
                      AEOUT="FATAL", AESER="Y", AESDTH="Y")])
    assert len(errors(r, "ae_grade5_outcome")) == 1


def test_grade_5_needs_a_death_in_dm_or_ds():
    r = build([ok_row(AETERM="Sepsis", AETOXGR="5", AEOUT="FATAL", AESER="Y", AESDTH="Y")])  # 001 is alive
    e = errors(r, "ae_grade5_death")
    assert len(e) == 1 and U1 in e["message"].iloc[0]
    # the same record for the subject who died: no error
    r = build([ok_row(SUBJID="002", AETERM="Sepsis", AESTDAT="03-JUN-2024", AEENDAT="06-JUN-2024", AETOXGR="5",
                      AEOUT="FATAL", AESER="Y", AESDTH="Y")])
    assert errors(r, "ae_grade5_death").empty and errors(r, "ae_grade5_outcome").empty


def test_death_from_ds_alone_is_enough():
    dm = dm_frame()
    dm.loc[dm["USUBJID"] == U2, ["DTHFL", "DTHDTC"]] = ""
    forms = {"ae": ae_raw([ok_row(SUBJID="002", AETERM="Sepsis", AESTDAT="03-JUN-2024", AEENDAT="06-JUN-2024",
                                  AETOXGR="5", AEOUT="FATAL", AESER="Y", AESDTH="Y")]),
             "crs": default_crs(), "ds": ds_raw()}
    r = aemod.build(StudyContext(study=STUDY, spec=SPEC, forms=forms, datasets={"DM": dm, "SE": se_frame()}))
    assert errors(r, "ae_grade5_death").empty


def test_aeser_y_without_criterion_is_an_error():
    e = errors(build([ok_row(AESER="Y")]), "ae_serious_criteria")
    assert len(e) == 1 and "no seriousness criterion" in e["message"].iloc[0]


def test_aeser_n_with_a_criterion_is_an_error():
    e = errors(build([ok_row(AESER="N", AESHOSP="Y")]), "ae_serious_criteria")
    assert len(e) == 1 and "AESHOSP" in e["message"].iloc[0]


def test_aeser_y_with_a_criterion_is_fine():
    assert errors(build([ok_row(AESER="Y", AESLIFE="Y")]), "ae_serious_criteria").empty


# ---------------------------------------------------------------------------------------
# coding
# ---------------------------------------------------------------------------------------
UNKNOWN = "completely indescribable complaint"


def test_unmapped_verbatim_is_an_open_query_and_an_error_in_a_final_build():
    r = build([ok_row(AESPID="4", AETERM=UNKNOWN), ok_row(AESPID="5", AETERM="Thrombocytopaenia")])
    q = r.reports["coding_queries"]
    assert q[["STUDYID", "USUBJID", "AESPID", "AETERM", "status"]].values.tolist() == [
        [SID, U1, "4", UNKNOWN, "OPEN"]]
    assert q["row"].tolist() == [2]
    ae = r.datasets["AE"].set_index("AESPID")
    assert ae.loc["4", "AETERM"] == UNKNOWN and ae.loc["4", "AEDECOD"] == ""
    assert ae.loc["5", "AETERM"] == "Thrombocytopaenia" and ae.loc["5", "AEDECOD"] == "Platelet count decreased"
    assert ae.loc["5", "AEBODSYS"] == "Investigations" and ae.loc["5", "AELLTCD"] == 10035528
    e = errors(r, "ae_uncoded")
    assert len(e) == 1 and (e["file"].iloc[0], e["row"].iloc[0]) == ("ae.csv", 2)
    assert f"specs/studies/{SID}.coding.csv" in e["message"].iloc[0]


def test_unmapped_verbatim_is_a_warning_in_a_draft_build():
    forms = {"ae": ae_raw([ok_row(AESPID="4", AETERM=UNKNOWN)]), "crs": default_crs(), "ds": ds_raw()}
    r = aemod.build(StudyContext(study=STUDY, spec=SPEC, forms=forms, datasets={"DM": dm_frame(), "SE": se_frame()},
                                 mode="draft"))
    w = r.findings[r.findings["check"] == "ae_uncoded"]
    assert w["severity"].tolist() == ["warning"] and "draft build" in w["message"].iloc[0]
    assert r.datasets["AE"]["AEDECOD"].tolist() == [""]


def test_the_study_coding_decision_resolves_a_query():
    """specs/studies/NCT06316427.coding.csv: 'felt strange in the head' -> Dizziness (10013573)."""
    r = build([ok_row(AESPID="4", AETERM="Felt strange in the HEAD")])
    ae = r.datasets["AE"].iloc[0]
    assert (ae["AETERM"], ae["AEDECOD"], ae["AELLT"], ae["AELLTCD"], ae["AESOC"], ae["AESOCCD"]) == (
        "Felt strange in the HEAD", "Dizziness", "Dizziness", 10013573, "Nervous system disorders", 10029205)
    q = r.reports["coding_queries"].iloc[0]
    assert (q["status"], q["AELLT"], q["decided_by"], q["decided_on"]) == (
        "RESOLVED", "Dizziness", "Sponsor medical coder (synthetic study)", "2025-10-14")
    assert r.findings[r.findings["check"] == "ae_uncoded"].empty


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------
def test_study_days_epoch_and_ongoing():
    r = build([ok_row(AESPID="1", AESTDAT="22-MAY-2024", AEENDAT=None, AEONGO="Y"),
               ok_row(AESPID="2", AESTDAT="23-MAY-2024", AEENDAT="24-MAY-2024"),
               ok_row(AESPID="3", AESTDAT="28-APR-2024", AEENDAT="29-APR-2024")])
    ae = r.datasets["AE"].set_index("AESPID")
    assert ae.loc["1", "AESTDY"] == 22 and ae.loc["2", "AESTDY"] == 23 and ae.loc["3", "AESTDY"] == -3
    assert (ae.loc["1", "AEENRTPT"], ae.loc["1", "AEENTPT"], ae.loc["1", "AEENDTC"]) == (
        "ONGOING", STUDY.data_cutoff, "")
    assert (ae.loc["1", "EPOCH"], ae.loc["2", "EPOCH"]) == ("TREATMENT", "FOLLOW-UP")


def test_analysis_flags_are_not_in_sdtm():
    """Treatment emergence and the DLT window are ADaM derivations (ADAE), not SUPPAE."""
    r = build([ok_row(AESPID="1")])
    assert set(r.datasets["SUPPAE"]["QNAM"]) == {"TOXGRSCL"}
    assert {"AETRTEM", "DLTWINFL", "ASTCTDUP", "AECAT"}.isdisjoint(r.datasets["AE"].columns)


def test_partial_dates_are_kept():
    r = build([ok_row(AESTDAT="UN-MAY-2024", AEENDAT="UN-UNK-2024")])
    ae = r.datasets["AE"].set_index("AESPID").loc["1"]
    assert (ae["AESTDTC"], ae["AEENDTC"]) == ("2024-05", "2024")
    assert pd.isna(ae["AESTDY"]) and ae["EPOCH"] == ""


# ---------------------------------------------------------------------------------------
# CRS/ICANS: no derived AE, episodes as a report, reconciliation, FA and RELREC
# ---------------------------------------------------------------------------------------
CRS_TERM = "Cytokine release syndrome"
ICANS_TERM = "Immune effector cell-associated neurotoxicity syndrome"


def test_no_ae_record_is_derived_from_the_daily_assessments():
    r = build([ok_row(AESPID="1")])        # the default daily assessments hold 4 episodes
    ae = r.datasets["AE"]
    assert ae["AESPID"].tolist() == ["1"] and len(r.reports["crs_icans_episodes"]) == 4
    assert sorted(r.consumed.query("dataset == 'AE'")["form"].unique()) == ["ae"]


def test_episode_report():
    r = build([])
    assert r.datasets["AE"].empty
    ep = r.reports["crs_icans_episodes"].set_index(["USUBJID", "episode_id"])
    crs1 = ep.loc[(U1, "CRS-1")]
    assert (crs1["term"], crs1["episode_grade"], crs1["episode_start"], crs1["episode_end"],
            crs1["episode_outcome"], crs1["episode_days"], crs1["episode_start_day"]) == (
        CRS_TERM, "2", "2024-05-02", "2024-05-04", "RECOVERED/RESOLVED", 3, 2)
    ican = ep.loc[(U1, "ICANS-1")]
    assert (ican["term"], ican["episode_grade"], ican["episode_start"], ican["episode_end"]) == (
        ICANS_TERM, "2", "2024-05-03", "2024-05-03")
    # the child who died of CRS: grade 5, fatal, ends on the death date; CAPD 9 -> ICANS grade 3, ongoing
    crs2 = ep.loc[(U2, "CRS-1")]
    assert (crs2["episode_grade"], crs2["episode_outcome"], crs2["episode_end"]) == ("5", "FATAL", "2024-06-06")
    ican2 = ep.loc[(U2, "ICANS-1")]
    assert (ican2["episode_grade"], ican2["episode_start"], ican2["episode_outcome"], ican2["episode_ongoing"],
            ican2["last_assessment"]) == ("3", "2024-06-05", "NOT RECOVERED/NOT RESOLVED", "ONGOING", "2024-06-06")
    assert ep["linked_aeseq"].eq("").all()


def test_child_icans_by_capd():
    r = build([])
    fa = r.datasets["FA"]
    g = fa[(fa["USUBJID"] == U2) & (fa["FATESTCD"] == "TOXGR") & (fa["FAOBJ"] == ICANS_TERM)]
    assert g.sort_values("FADTC")["FAORRES"].tolist() == ["0", "1", "3"]


def test_reconciliation_raises_data_queries():
    r = build([
        ok_row(AESPID="10", AETERM="CRS", AESTDAT="02-MAY-2024", AEENDAT="04-MAY-2024", AETOXGR="3"),   # ASTCT: 2
        ok_row(AESPID="11", AETERM="Encephalopathy", AESTDAT="03-MAY-2024", AEENDAT="04-MAY-2024", AETOXGR="2"),
        ok_row(AESPID="12", AETERM="Cytokine release syndrome", AESTDAT="20-MAY-2024", AEENDAT="21-MAY-2024",
               AETOXGR="1"),                                                                              # no episode
    ])
    rep = r.reports["crs_icans_discrepancies"]
    got = {(row.USUBJID, row.AESPID, row.episode_id): row.discrepancy for row in rep.itertuples()}
    assert got == {
        (U1, "10", "CRS-1"): "GRADE",
        # reported under another term and ends 05-04, the ICANS episode on 05-03
        (U1, "11", "ICANS-1"): "AE TERM; END DATE",
        (U1, "12", ""): "NO DERIVED EPISODE",
        (U2, "", "CRS-1"): "NOT REPORTED BY INVESTIGATOR",
        (U2, "", "ICANS-1"): "NOT REPORTED BY INVESTIGATOR",
    }
    g = rep.set_index("AESPID").loc["10"]
    assert (g["AETOXGR"], g["episode_grade"], g["AESTDTC"], g["episode_start"]) == ("3", "2", "2024-05-02",
                                                                                    "2024-05-02")
    assert rep.set_index("AESPID").loc["", "AEDECOD"].tolist() == [CRS_TERM, ICANS_TERM]
    # the investigator's records are unchanged: AEDECOD, grade and dates as reported
    ae = r.datasets["AE"].set_index("AESPID")
    assert len(ae) == 3 and ae.loc["11", "AEDECOD"] == "Encephalopathy" and ae.loc["10", "AETOXGR"] == "3"
    scale = supp(r, "TOXGRSCL")
    assert (scale["10"], scale["11"], scale["12"]) == ("ASTCT 2019", "NCI CTCAE v5.0", "ASTCT 2019")


def test_relrec_links_the_investigator_ae_to_the_episode_fa_records():
    r = build([ok_row(AESPID="10", AETERM="CRS", AESTDAT="02-MAY-2024", AEENDAT="04-MAY-2024", AETOXGR="2"),
               ok_row(AESPID="11", AETERM="Encephalopathy", AESTDAT="03-MAY-2024", AEENDAT="03-MAY-2024",
                      AETOXGR="2")])
    ae = r.datasets["AE"].set_index(["USUBJID", "AESPID"])
    rel = r.datasets["RELREC"]
    seq10 = str(int(ae.loc[(U1, "10"), "AESEQ"]))
    assert sorted(zip(rel["USUBJID"], rel["RELID"], rel["RDOMAIN"], rel["IDVAR"], rel["IDVARVAL"])) == [
        (U1, "CRS-1", "AE", "AESEQ", seq10), (U1, "CRS-1", "FA", "FAGRPID", "CRS-1")]
    fa = r.datasets["FA"]
    grp = fa[(fa["USUBJID"] == U1) & (fa["FAGRPID"] == "CRS-1")]
    assert sorted(set(grp["FADTC"])) == ["2024-05-02", "2024-05-03", "2024-05-04"]
    # FAOBJ of the related FA records = AEDECOD of the related AE
    assert set(grp["FAOBJ"]) == {ae.loc[(U1, "10"), "AEDECOD"]} == {CRS_TERM}
    assert r.reports["crs_icans_discrepancies"].query("AESPID == '10'").empty    # same grade and dates
    ep = r.reports["crs_icans_episodes"].set_index(["USUBJID", "episode_id"])
    assert ep.loc[(U1, "CRS-1"), "linked_aeseq"] == seq10 and ep.loc[(U1, "ICANS-1"), "linked_aeseq"] == ""
    # crs rows of the related episode reach RELREC
    assert sorted(r.consumed.query("form == 'crs' and dataset == 'RELREC'")["row"]) == [3, 4, 5]


def test_one_ae_spanning_two_episodes_is_related_to_both():
    crs = crs_raw("001", "2024-05-01", [{"TEMP": "38.5"}, {}, {"TEMP": "38.6"}, {}]).assign(
        _FILE="crs.csv", _ROW=[2, 3, 4, 5])
    r = build([ok_row(AESPID="1", AETERM="CRS", AESTDAT="01-MAY-2024", AEENDAT="03-MAY-2024", AETOXGR="1")], crs=crs)
    rel = r.datasets["RELREC"]
    assert sorted(zip(rel["RELID"], rel["RDOMAIN"], rel["IDVARVAL"])) == [
        ("CRS-1", "AE", "1"), ("CRS-1", "FA", "CRS-1"), ("CRS-2", "AE", "1"), ("CRS-2", "FA", "CRS-2")]
    rep = r.reports["crs_icans_discrepancies"]
    assert sorted(zip(rep["episode_id"], rep["discrepancy"])) == [("CRS-1", "END DATE"), ("CRS-2", "START DATE")]


def test_fa_records():
    r = build([])
    fa = r.datasets["FA"]
    day3 = fa[(fa["USUBJID"] == U1) & (fa["FADTC"] == "2024-05-03")].set_index(["FAOBJ", "FATESTCD"])
    assert day3.loc[(CRS_TERM, "TEMP"), ["FAORRES", "FAORRESU", "FASTRESN"]].tolist() == ["38.0", "C", 38.0]
    assert day3.loc[(CRS_TERM, "TOXGR"), "FASTRESN"] == 2
    icans = ICANS_TERM
    assert day3.loc[(icans, "ICESCORE"), "FASTRESN"] == 6 and day3.loc[(icans, "TOXGR"), "FAORRES"] == "2"
    assert (CRS_TERM, "OXYFLOW") not in day3.index     # not recorded -> no record
    assert day3["FATEST"].loc[(icans, "ICESCORE")] == "ICE Score"
    assert (day3["VISIT"].iloc[0], day3["VISITNUM"].iloc[0], day3["FADY"].iloc[0]) == ("DAY 2", 5.0, 3)
    assert fa.groupby("USUBJID")["FASEQ"].apply(lambda s: s.is_unique).all()
    # every raw crs row is mapped to FA
    assert sorted(r.consumed.query("form == 'crs' and dataset == 'FA'")["row"]) == list(range(2, 10))


def test_outputs_pass_the_spec_checks_and_are_deterministic():
    rows = [ok_row(AESPID="1"), ok_row(AESPID="2", AETERM="CRS", AESTDAT="02-MAY-2024", AETOXGR="3"),
            ok_row(AESPID="3", AETERM=UNKNOWN)]
    r1, r2 = build(rows), build(rows)
    for name in ("AE", "SUPPAE", "FA", "RELREC"):
        frame = order_dataset(r1.datasets[name], SPEC, name)
        f = check_dataset(frame, SPEC, name, SID, dm=dm_frame())
        assert f[f["severity"] == "error"].empty, f.to_string()
        if name == "AE":  # the uncoded verbatim: the output check warns; the AE domain errs (final)
            req = f[(f["check"] == "required_value") & (f["column"] == "AEDECOD")]
            assert len(req) == 1 and req["severity"].iloc[0] == "warning"
            assert len(errors(r1, "ae_uncoded")) == 1
        pd.testing.assert_frame_equal(r1.datasets[name], r2.datasets[name])
    for name in r1.reports:
        pd.testing.assert_frame_equal(r1.reports[name], r2.reports[name])


def test_rows_of_unknown_subjects_are_rejected_not_dropped():
    r = build([ok_row(SUBJID="999")])
    assert r.rejected[["form", "row", "reason"]].values.tolist() == [["ae", 2, "subject not in DM"]]
    assert r.datasets["AE"].empty            # the only AE row was rejected; nothing is derived


def test_missing_dm_is_a_clear_error():
    ctx = StudyContext(study=STUDY, spec=SPEC, forms={}, datasets={})
    with pytest.raises(aemod.DataError, match="AE needs DM"):
        aemod.build(ctx)


def test_crs_death_without_an_episode_is_a_warning():
    crs = crs_raw("002", "2024-06-04", [{"ICESCORE": None, "CAPDSCR": "0"}] * 3).assign(_FILE="crs.csv", _ROW=[2, 3, 4])
    r = build([ok_row()], crs=crs)
    w = r.findings[r.findings["check"] == "astct_crs_death"]
    assert w[["severity", "value"]].values.tolist() == [["warning", U2]]
    assert "no CRS episode" in w["message"].iloc[0]


def test_without_daily_assessments_ae_still_builds():
    cols = SPEC.form_columns("crs")["column"].tolist() + ["_FILE", "_ROW"]
    r = build([ok_row(), ok_row(AESPID="2", AETERM="CRS", AETOXGR="2")], crs=pd.DataFrame(columns=cols))
    assert len(r.datasets["AE"]) == 2 and r.datasets["FA"].empty and r.datasets["RELREC"].empty
    assert r.reports["crs_icans_episodes"].empty
    rep = r.reports["crs_icans_discrepancies"]
    assert rep[["AESPID", "discrepancy"]].values.tolist() == [["2", "NO DERIVED EPISODE"]]
