"""Coding decisions (specs/studies/<STUDYID>.coding.csv): validation of the file, precedence over
synonyms and exact matches, the shipped decisions of the five studies, and the build mode switch."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.cli import build_parser
from pipeline.config import load_study
from pipeline.errors import ConfigError
from pipeline.rules.ctcae_terms import (DECISION_COLUMNS, check_decisions, code_terms, coding_dictionary,
                                        decisions_path, load_coding_decisions, synonyms)
from pipeline.spec import load_spec

from conftest import RAW, SPECS

SPEC = load_spec(SPECS)
DICT = coding_dictionary(SPEC)
SYN = synonyms(SPEC, DICT)
GOOD = {"verbatim": "tummy upset", "llt_name": "Dyspepsia", "llt_code": "10013946", "decided_by": "A. Coder",
        "decided_on": "2025-01-31", "rationale": "lay term"}


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, **r} for r in rows], columns=DECISION_COLUMNS)


def test_a_valid_decision():
    d = check_decisions(frame({}), DICT)
    assert d[["key", "term", "llt_code", "decided_by", "decided_on"]].values.tolist() == [
        ["TUMMY UPSET", "Dyspepsia", 10013946, "A. Coder", "2025-01-31"]]


@pytest.mark.parametrize("change, message", [
    ({"llt_code": "10013947"}, "row 2: llt_code 10013947 is not the code of 'Dyspepsia' (10013946)"),
    ({"llt_name": "Upset stomach"}, "row 2: 'Upset stomach' is not a term of the coding dictionary"),
    ({"decided_by": " "}, "row 2: decided_by is empty"),
    ({"llt_code": ""}, "row 2: llt_code is empty"),
    ({"decided_on": "31-JAN-2025"}, "row 2: decided_on '31-JAN-2025' is not an ISO 8601 date"),
    ({"decided_on": "2025-02-30"}, "row 2: decided_on '2025-02-30' is not an ISO 8601 date"),
])
def test_invalid_decisions_name_the_row(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_decisions(frame(change), DICT)


def test_a_verbatim_decided_twice_is_refused_even_when_spelled_differently():
    with pytest.raises(ConfigError, match="row 2: verbatim 'tummy upset' is decided more than once"):
        check_decisions(frame({}, {"verbatim": "Tummy-Upset", "llt_name": "Nausea", "llt_code": "10028813"}), DICT)


def test_missing_columns_are_refused():
    with pytest.raises(ConfigError, match="lacks column"):
        check_decisions(frame({}).drop(columns=["decided_on"]), DICT)


def test_no_file_means_no_decisions(tmp_path):
    d = load_coding_decisions(tmp_path / "X.coding.csv")
    assert list(d.columns) == DECISION_COLUMNS and d.empty
    assert check_decisions(d, DICT).empty


def test_a_decision_takes_precedence_over_synonyms_and_exact_matches():
    # "NAUSEA" is a CTCAE term (exact), "LOW PLATELETS" a synonym; a decision overrides both
    dec = check_decisions(frame({"verbatim": "Nausea", "llt_name": "Vomiting", "llt_code": "10047700"},
                                {"verbatim": "low platelets", "llt_name": "Anemia", "llt_code": "10002272"}), DICT)
    coded = code_terms(pd.Series(["nausea", "LOW PLATELETS", "Headache", "zzz"]), DICT, SYN, dec)
    assert coded[["AEDECOD", "match"]].values.tolist() == [
        ["Vomiting", "DECISION"], ["Anemia", "DECISION"], ["Headache", "EXACT"], ["", ""]]
    assert coded["AELLTCD"].tolist()[:2] == [10047700.0, 10002272.0]


@pytest.mark.parametrize("studyid", ["CD7-RRAL-DE", "NCT05164042", "NCT06316427", "ZJU-CD7-AID", "ZJU-CD7-SAA"])
def test_shipped_decisions_cover_every_planted_uncoded_term(studyid):
    study = load_study(SPECS, studyid)
    dec = check_decisions(load_coding_decisions(decisions_path(study)), DICT)
    planted = RAW / "planted.csv"
    if not planted.is_file():
        pytest.skip("raw/planted.csv not present (run `make raw`)")
    p = pd.read_csv(planted, dtype=str, keep_default_na=False)
    p = p[(p["study"] == studyid) & (p["item"] == "AE-UNMAPPABLE")]
    verbatims = p["description"].str.extract(r"AETERM '(.*)'")[0]
    assert len(verbatims) > 0
    coded = code_terms(verbatims, DICT, SYN, dec)
    assert coded["match"].eq("DECISION").all(), verbatims[~coded["match"].eq("DECISION")].tolist()


def test_build_mode_switch():
    parse = build_parser().parse_args
    assert parse(["build"]).mode == "final"
    assert parse(["build", "--draft"]).mode == "draft"
    assert parse(["build", "--mode", "draft"]).mode == "draft"
    assert parse(["build", "--mode", "final"]).mode == "final"
    with pytest.raises(SystemExit):
        parse(["build", "--mode", "sloppy"])
