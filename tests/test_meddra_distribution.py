"""The MedDRA ASCII distribution reader (pipeline.rules.meddra) on the tiny hand-made
distribution tests/fixtures/meddra (see its README: invented codes start with 9)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.rules import meddra

FIX = Path(__file__).resolve().parent / "fixtures" / "meddra"
ICANS = "Immune effector cell-associated neurotoxicity syndrome"


@pytest.fixture(scope="module")
def dist():
    return meddra.load_distribution(FIX, "28.0")


def test_read_asc_fields_and_codes():
    llt = meddra.read_asc(FIX / "llt.asc", meddra.LAYOUT["llt"])
    assert list(llt.columns) == meddra.LAYOUT["llt"] and len(llt) == 8
    row = llt.set_index("llt_code").loc[90040002]
    assert (row["llt_name"], row["pt_code"], row["llt_currency"]) == ("Giddiness (test)", 10013573, "N")
    assert llt["llt_code"].dtype == "int64"


def test_a_record_without_the_trailing_dollar_is_read(tmp_path):
    (tmp_path / "x.asc").write_text("10013573$90020001$\n10013946$90020003\n", encoding="utf-8")
    f = meddra.read_asc(tmp_path / "x.asc", ["pt_code", "hlt_code"])
    assert f.values.tolist() == [[10013573, 90020001], [10013946, 90020003]]


def test_a_short_record_names_the_file_and_line(tmp_path):
    (tmp_path / "hlt_pt.asc").write_text("90020001$10013573$\n90020003$\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"hlt_pt.asc line 2 has 1 field\(s\), 2 expected"):
        meddra.read_asc(tmp_path / "hlt_pt.asc", meddra.LAYOUT["hlt_pt"])


def test_a_code_that_is_not_a_number_is_refused(tmp_path):
    (tmp_path / "hlt_pt.asc").write_text("90020001$10013573$\n9002000X$10013946$\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="hlt_pt.asc line 2: hlt_code '9002000X' is not a code"):
        meddra.read_asc(tmp_path / "hlt_pt.asc", meddra.LAYOUT["hlt_pt"])


def test_primary_path_of_a_multiaxial_pt(dist):
    p = dist.paths.set_index("llt_code")
    # ICANS is linked to an HLT in Immune system disorders too; its primary SOC is Nervous system disorders
    ic = p.loc[90040004]
    assert (ic["llt_name"], ic["pt_code"], ic["pt_name"], ic["hlt_code"], ic["hlgt_code"], ic["soc_code"],
            ic["soc_name"]) == ("ICANS (test)", 90030001, ICANS, 90020004, 90010001, 10029205, "Nervous system disorders")
    assert len(dist.paths) == 8 and dist.version == "28.0"


def test_code_with_distribution_by_code_then_by_name(dist):
    term = pd.Series(["Dizziness", "upset STOMACH (test)", "Giddiness (test)", ICANS, "Nothing like it", ""])
    code = pd.Series([10013573, None, 90040002, None, None, None])
    h = meddra.code_with_distribution(term, code, dist)
    assert h.loc[0, ["AELLT", "AELLTCD", "AEDECOD", "AEPTCD", "AEHLT", "AEHLTCD", "AEHLGT", "AEHLGTCD", "AEBODSYS",
                     "AEBDSYCD", "AESOC", "AESOCCD"]].tolist() == [
        "Dizziness", 10013573, "Dizziness", 10013573, "Neurological signs and symptoms NEC (test)", 90020001,
        "Neurological disorders NEC (test)", 90010001, "Nervous system disorders", 10029205,
        "Nervous system disorders", 10029205]
    # an LLT below a PT of another name: AEDECOD is the PT
    assert h.loc[1, ["AELLT", "AELLTCD", "AEDECOD", "AEPTCD", "AESOC"]].tolist() == [
        "Upset stomach (test)", 90040003, "Dyspepsia", 10013946, "Gastrointestinal disorders"]
    assert h["found"].tolist() == [True, True, True, True, False, False]
    assert h["current"].tolist() == [True, True, False, True, False, False]   # Giddiness is not current
    assert h.loc[3, ["AEDECOD", "AEPTCD", "AESOCCD"]].tolist() == [ICANS, 90030001, 10029205]
    assert h.loc[4, "AEDECOD"] == "" and pd.isna(h.loc[4, "AEPTCD"])


def test_a_non_current_llt_is_not_found_by_name(dist):
    h = meddra.code_with_distribution(pd.Series(["Giddiness (test)"]), pd.Series([None]), dist)
    assert h["found"].tolist() == [False]


def test_mdhier_must_agree_with_the_link_files(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(FIX, d)
    text = (d / "mdhier.asc").read_text().replace("10013573$90020001$90010001$", "10013573$90020004$90010001$")
    (d / "mdhier.asc").write_text(text)
    with pytest.raises(ConfigError, match="primary path of PT 10013573 in mdhier.asc disagrees"):
        meddra.load_distribution(d, "28.0")


def test_the_distribution_version_must_be_the_declared_one():
    with pytest.raises(ConfigError, match="is version 28.0, but the declared version .* is 26.0"):
        meddra.load_distribution(FIX, "26.0")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        meddra.load_distribution(tmp_path / "nowhere", "28.0")
    d = tmp_path / "m"
    shutil.copytree(FIX, d)
    (d / "soc_hlgt.asc").unlink()
    with pytest.raises(ConfigError, match="soc_hlgt.asc is missing"):
        meddra.load_distribution(d, "28.0")


def test_decision_lookup_accepts_current_llts_only(dist):
    bad = meddra.llt_lookup(dist)
    names = pd.Series(["Upset stomach (test)", "Giddiness (test)", "Dizziness", "Dizziness"])
    codes = pd.Series([90040003, 90040002, 10013573, 10013946])
    assert bad(names, codes).tolist() == [False, True, False, True]


# ---------------------------------------------------------------------------------------
# the AE domain with a distribution ([coding] meddra_dir)
# ---------------------------------------------------------------------------------------
def _ae_with_distribution(rows, mode="final", folder=FIX, study_path=None):
    import test_ae_domain as t
    from pipeline.config import Study
    from pipeline.context import StudyContext
    from pipeline.domains import ae as aemod

    study = Study(studyid=t.SID, path=study_path or t.STUDY.path,
                  raw={**t.STUDY.raw, "coding": {"meddra_dir": str(folder)}})
    forms = {"ae": t.ae_raw(rows), "crs": t.default_crs(), "ds": t.ds_raw()}
    ctx = StudyContext(study=study, spec=t.SPEC, forms=forms, datasets={"DM": t.dm_frame(), "SE": t.se_frame()},
                       mode=mode)
    return aemod.build(ctx)


def test_ae_gets_the_full_hierarchy_from_the_distribution():
    import test_ae_domain as t
    r = _ae_with_distribution([
        t.ok_row(AESPID="1", AETERM="Dizziness"),
        t.ok_row(AESPID="2", AETERM="upset stomach (test)"),            # an LLT name, not a CTCAE term
        t.ok_row(AESPID="3", AETERM="felt strange in the head"),        # the study's decision -> Dizziness
        t.ok_row(AESPID="4", AETERM="CRS", AESTDAT="02-MAY-2024", AEENDAT="04-MAY-2024", AETOXGR="2"),
        t.ok_row(AESPID="5", AETERM="ICANS", AESTDAT="03-MAY-2024", AEENDAT="03-MAY-2024", AETOXGR="2"),
        t.ok_row(AESPID="6", AETERM="Anemia"),                          # a CTCAE term this distribution lacks
    ])
    ae = r.datasets["AE"].set_index("AESPID")
    cols = ["AELLT", "AELLTCD", "AEDECOD", "AEPTCD", "AEHLT", "AEHLTCD", "AEHLGT", "AEHLGTCD", "AESOC", "AESOCCD"]
    assert ae.loc["1", cols].tolist() == ["Dizziness", 10013573, "Dizziness", 10013573,
                                          "Neurological signs and symptoms NEC (test)", 90020001,
                                          "Neurological disorders NEC (test)", 90010001, "Nervous system disorders",
                                          10029205]
    assert ae.loc["2", ["AELLT", "AEDECOD", "AEPTCD", "AEBODSYS"]].tolist() == [
        "Upset stomach (test)", "Dyspepsia", 10013946, "Gastrointestinal disorders"]
    assert ae.loc["3", ["AELLT", "AEDECOD"]].tolist() == ["Dizziness", "Dizziness"]
    assert ae.loc["5", ["AEDECOD", "AEPTCD", "AESOC"]].tolist() == [ICANS, 90030001, "Nervous system disorders"]
    # RELREC still relates the CRS and ICANS AEs to their FA records (FAOBJ = AEDECOD = the PT)
    rel = r.datasets["RELREC"]
    assert set(rel["RELID"]) == {"CRS-1", "ICANS-1"}
    # Anemia is not in this distribution: an open coding query, an error in a final build
    assert ae.loc["6", "AEDECOD"] == ""
    e = r.findings[(r.findings["check"] == "ae_uncoded") & (r.findings["severity"] == "error")]
    assert e["value"].tolist() == ["Anemia"]
    q = r.reports["coding_queries"].set_index("AESPID")
    assert q.loc["6", "status"] == "OPEN" and q.loc["3", "status"] == "RESOLVED" and "1" not in q.index


def test_a_non_current_llt_is_a_warning_and_a_decision_for_it_is_refused(tmp_path):
    import test_ae_domain as t
    d = tmp_path / "m"
    shutil.copytree(FIX, d)
    llt = (d / "llt.asc").read_text().replace("10013573$Dizziness$10013573$$$$$$$Y$", "10013573$Dizziness$10013573$$$$$$$N$")
    (d / "llt.asc").write_text(llt)
    # the shipped decision of NCT06316427 codes 'felt strange in the head' to Dizziness: no longer current
    with pytest.raises(ConfigError, match="row 2: LLT 'Dizziness' code 10013573 is not a current LLT"):
        _ae_with_distribution([t.ok_row(AESPID="1", AETERM="Dizziness")], folder=d)
    # without decisions (another study file location), the CTCAE term's LLT code is found, not current
    r = _ae_with_distribution([t.ok_row(AESPID="1", AETERM="Dizziness")], folder=d,
                              study_path=tmp_path / f"{t.SID}.toml")
    w = r.findings[r.findings["check"] == "ae_llt_not_current"]
    assert w["severity"].tolist() == ["warning"] and "not current" in w["message"].iloc[0]
    assert r.datasets["AE"]["AEDECOD"].tolist() == ["Dizziness"]
