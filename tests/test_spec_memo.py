"""Spec look-ups computed once per dataset (issue 14): the same answer as computing them from
the tables, every call; a caller that modifies what it got does not change the next answer; an
unknown name is still one ConfigError each time; a replaced Spec starts afresh."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from pipeline.context import empty
from pipeline.errors import ConfigError
from pipeline.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


def test_vars_equal_the_table_rows_in_order_and_are_copies(spec):
    first = spec.vars("DM")
    by_hand = spec.variables[spec.variables["dataset"] == "DM"].copy()
    by_hand["order"] = by_hand["order"].astype(int)
    by_hand = by_hand.sort_values("order").reset_index(drop=True)
    pd.testing.assert_frame_equal(first, by_hand)
    first.loc[0, "label"] = "changed by a caller"
    first["extra"] = 1
    again = spec.vars("DM")
    pd.testing.assert_frame_equal(again, by_hand)
    assert spec.var_names("DM") == by_hand["variable"].tolist()
    assert spec.labels("DM") == dict(zip(by_hand["variable"], by_hand["label"]))


def test_dataset_keys_and_codelist_are_copies(spec):
    row = spec.dataset("AE")
    keys = spec.keys("AE")
    assert keys == [k for k in spec.datasets.loc[spec.datasets["dataset"] == "AE", "keys"].iloc[0].split("|") if k]
    row["keys"] = "X"
    assert spec.keys("AE") == keys and spec.dataset("AE")["keys"] != "X"
    cl = spec.codelist("NY")
    cl.loc[0, "term"] = "changed"
    assert "changed" not in spec.terms("NY")


def test_unknown_names_raise_every_time(spec):
    for _ in range(2):
        with pytest.raises(ConfigError, match="NOPE has no variables"):
            spec.vars("NOPE")
        with pytest.raises(ConfigError, match="NOPE is not in"):
            spec.dataset("NOPE")
        with pytest.raises(ConfigError, match="C0 is not in"):
            spec.codelist("C0")


def test_a_replaced_spec_does_not_share_answers(spec):
    spec.vars("DM")
    variables = spec.variables.copy()
    variables.loc[variables["dataset"] == "DM", "label"] = "relabelled"
    other = replace(spec, variables=variables)
    assert set(other.vars("DM")["label"]) == {"relabelled"}
    assert "relabelled" not in set(spec.vars("DM")["label"])


def test_empty_frame_has_object_columns_and_no_rows():
    e = empty(["a", "b"])
    assert list(e.columns) == ["a", "b"] and len(e) == 0
    assert list(e.dtypes) == [object, object]
    assert isinstance(e.index, pd.RangeIndex)


def test_a_spec_rebuilt_from_its_fields_works_and_starts_afresh(spec):
    spec.vars("DM")
    rebuilt = type(spec)(**spec.__dict__)
    pd.testing.assert_frame_equal(rebuilt.vars("DM"), spec.vars("DM"))


def test_terms_and_decode_map_are_memoised_copies(spec):
    """terms/decode_map are made once per codelist; a caller changing its list or dict does not
    change what the next caller gets (values as read from the codelist rows)."""
    rows = spec.codelists[spec.codelists["codelist"] == "NY"]
    by_hand_terms = rows["term"].tolist()
    by_hand_decode = {t: (d if d != "" else t) for t, d in zip(rows["term"], rows["decode"])}
    terms, decode = spec.terms("NY"), spec.decode_map("NY")
    assert terms == by_hand_terms and decode == by_hand_decode
    terms.append("changed")
    terms[0] = "changed"
    decode["Y"] = "changed"
    decode["extra"] = "x"
    assert spec.terms("NY") == by_hand_terms
    assert spec.decode_map("NY") == by_hand_decode
    assert spec.terms("NY") is not spec.terms("NY")
    assert spec.decode_map("NY") is not spec.decode_map("NY")
