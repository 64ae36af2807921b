"""CTCAE v5.0 term table, synonyms, coding and grade validity (pipeline.rules.ctcae_terms)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.rules.ctcae_terms import (code_terms, coding_dictionary, defined_grades, grade_exists, normalise_term,
                                        synonyms)
from pipeline.spec import load_spec, read_table

from conftest import SPECS

SPEC = load_spec(SPECS)
DICT = coding_dictionary(SPEC)
SYN = synonyms(SPEC, DICT)
TERMS = read_table(SPECS / "rules" / "ctcae_terms.csv")


def test_table_has_all_837_terms_with_source():
    assert len(TERMS) == 837
    assert TERMS["term"].is_unique
    assert TERMS["source"].str.startswith("NCI CTCAE v5.0 (27 Nov 2017), Clean Copy").all()
    assert TERMS["meddra_code"].str.fullmatch(r"100\d{5}").all()
    assert TERMS["soc_code"].str.fullmatch(r"100\d{5}").all()
    assert TERMS[[f"grade{g}" for g in range(1, 6)]].isin(["Y", "N"]).all().all()


@pytest.mark.parametrize("term, expected", [
    ("Alopecia", "YYNNN"),                        # stops at grade 2
    ("Neutrophil count decreased", "YYYYN"),      # no grade 5
    ("Cytokine release syndrome", "YYYYY"),
    ("Acute kidney injury", "NNYYY"),             # starts at grade 3
    ("Disseminated intravascular coagulation", "NYYYY"),
    ("Hypoxia", "NYYYY"),
])
def test_known_grades(term, expected):
    row = TERMS.set_index("term").loc[term]
    assert "".join(row[f"grade{g}"] for g in range(1, 6)) == expected


def test_table_matches_the_shared_reference(shared_dir):
    ref = pd.read_csv(shared_dir / "reference" / "ctcae-v5" / "CTCAE_v5.0_terms.csv", dtype=str,
                      keep_default_na=False).apply(lambda c: c.str.strip())
    mine = TERMS.set_index("term")
    ref = ref.set_index("CTCAE Term")
    assert set(mine.index) == set(ref.index)
    assert (mine["meddra_code"] == ref.loc[mine.index, "MedDRA Code"]).all()
    assert (mine["soc"] == ref.loc[mine.index, "MedDRA SOC"]).all()
    for g in range(1, 6):
        exists = ref.loc[mine.index, f"Grade {g}"].ne("-").map({True: "Y", False: "N"})
        assert (mine[f"grade{g}"] == exists).all(), g


def test_soc_codes_are_the_other_specify_codes():
    other = TERMS[TERMS["term"].str.endswith("- Other, specify")]
    assert len(other) == TERMS["soc"].nunique() == 26
    assert (other["meddra_code"] == other["soc_code"]).all()
    assert TERMS.groupby("soc")["soc_code"].nunique().eq(1).all()
    assert TERMS.loc[TERMS["soc"] == "Nervous system disorders", "soc_code"].iloc[0] == "10029205"


def test_icans_sponsor_term_joins_the_dictionary():
    row = DICT.set_index("term").loc["Immune effector cell-associated neurotoxicity syndrome"]
    assert row["soc"] == "Nervous system disorders" and row["soc_code"] == "10029205"
    assert row["meddra_code"] == ""
    assert len(DICT) == 838


def test_astct_event_terms_agree_with_ctcae():
    ev = read_table(SPECS / "rules" / "astct_events.csv").set_index("event")
    crs = TERMS.set_index("term").loc[ev.loc["CRS", "term"]]
    assert (ev.loc["CRS", "meddra_code"], ev.loc["CRS", "soc"], ev.loc["CRS", "soc_code"]) == (
        crs["meddra_code"], crs["soc"], crs["soc_code"])
    assert set(ev["facat"]) <= set(SPEC.terms("FACAT"))


def test_normalise_term():
    s = pd.Series(["  Platelet count  decreased ", "Rash maculo-papular", "CYTOKINE release Syndrom.", "Anémie", None])
    assert normalise_term(s).tolist() == ["PLATELET COUNT DECREASED", "RASH MACULO PAPULAR",
                                          "CYTOKINE RELEASE SYNDROM", "ANEMIE", ""]


@pytest.mark.parametrize("verbatim, decod, how", [
    ("Thrombocytopaenia", "Platelet count decreased", "SYNONYM"),
    ("low platelets", "Platelet count decreased", "SYNONYM"),
    ("Platelet count  decreased", "Platelet count decreased", "EXACT"),
    ("NEUTROPHIL COUNT DECREASED", "Neutrophil count decreased", "EXACT"),
    ("neutropenia", "Neutrophil count decreased", "SYNONYM"),
    ("Cytokine Release Syndrom", "Cytokine release syndrome", "SYNONYM"),
    ("CRS", "Cytokine release syndrome", "SYNONYM"),
    ("ICANS", "Immune effector cell-associated neurotoxicity syndrome", "SYNONYM"),
    ("Anaemia", "Anemia", "SYNONYM"),
    ("Febrile  neutropenia", "Febrile neutropenia", "EXACT"),
    ("Head ache", "Headache", "SYNONYM"),
    ("Pneumonia", "Lung infection", "SYNONYM"),
])
def test_coding_variants(verbatim, decod, how):
    out = code_terms(pd.Series([verbatim]), DICT, SYN).iloc[0]
    assert (out["AEDECOD"], out["match"], bool(out["coded"])) == (decod, how, True)
    row = DICT.set_index("term").loc[decod]
    assert out["AEBODSYS"] == row["soc"] == out["AESOC"]
    assert out["AEBDSYCD"] == float(row["soc_code"])


def test_coded_codes():
    out = code_terms(pd.Series(["Alopecia"]), DICT, SYN).iloc[0]
    assert (out["AELLT"], out["AELLTCD"], out["AEBODSYS"], out["AEBDSYCD"]) == (
        "Alopecia", 10001760.0, "Skin and subcutaneous tissue disorders", 10040785.0)


@pytest.mark.parametrize("verbatim", ["felt strange in the head", "tummy upset and unwell", "", None])
def test_vague_verbatims_stay_uncoded(verbatim):
    out = code_terms(pd.Series([verbatim]), DICT, SYN).iloc[0]
    assert not out["coded"] and out["AEDECOD"] == "" and pd.isna(out["AELLTCD"])


class _FakeSpec:
    """A spec whose ae_synonyms table is given (for the table checks)."""

    def __init__(self, table: pd.DataFrame):
        self.table = table

    def rule(self, name: str) -> pd.DataFrame:
        return self.table


def test_synonym_table_checks_are_clear_config_errors():
    unknown = pd.DataFrame({"verbatim_normalised": ["FOO"], "ctcae_term": ["Not a CTCAE term"], "source": ["x"]})
    with pytest.raises(ConfigError, match="not in the coding dictionary"):
        synonyms(_FakeSpec(unknown), DICT)
    twice = pd.DataFrame({"verbatim_normalised": ["low platelets", "LOW  PLATELETS"],
                          "ctcae_term": ["Platelet count decreased"] * 2, "source": ["x", "y"]})
    with pytest.raises(ConfigError, match="listed twice"):
        synonyms(_FakeSpec(twice), DICT)


def test_synonym_table_rows_have_sources_and_unique_keys():
    syn = read_table(SPECS / "rules" / "ae_synonyms.csv")
    assert syn["source"].str.strip().ne("").all()
    assert normalise_term(syn["verbatim_normalised"]).is_unique
    # a synonym must not shadow a real CTCAE term
    assert not normalise_term(syn["verbatim_normalised"]).isin(set(DICT["key"])).any()


def test_grade_exists():
    term = pd.Series(["Alopecia", "Alopecia", "Alopecia", "Neutrophil count decreased", "Neutrophil count decreased",
                      "", "Anemia", "Acute kidney injury"])
    grade = pd.Series(["1", "2", "3", "4", "5", "3", None, "2"])
    got = [x if isinstance(x, bool) else None for x in grade_exists(term, grade, DICT).tolist()]
    assert got == [True, True, False, True, False, None, None, False]


def test_defined_grades_text():
    assert defined_grades(pd.Series(["Alopecia", "Acute kidney injury", "x"]), DICT).tolist() == ["1|2", "3|4|5", ""]
