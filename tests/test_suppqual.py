"""SUPP-- records of :func:`pipeline.derive.suppqual.build_supp` (SDTMIG 3.4 section 8.4): values
by hand, equality with the per-qualifier implementation it replaced (on generated parents and on
the parents the domain modules build from the hand-built forms), and the qualifier metadata
selected once per spec."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from conftest import SPECS
from dm_ex_ds_fixture import context, run
from pipeline.derive import suppqual
from pipeline.derive.suppqual import build_supp, supp_qualifiers
from pipeline.spec import load_spec

COLS = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL", "QVAL", "QORIG", "QEVAL"]


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


def per_qualifier(parent: pd.DataFrame, rdomain: str, spec, idvar):
    """The implementation before the grid (one selection and one frame per qualifier), kept as
    the reference."""
    quals = supp_qualifiers(spec, rdomain)
    present = quals[quals["qnam"].isin(parent.columns)]
    frames = []
    for q in present.itertuples(index=False):
        val = parent[q.qnam].astype("object").where(parent[q.qnam].notna(), "").astype(str)
        keep = val.ne("")
        if not keep.any():
            continue
        sub = parent.loc[keep]
        if idvar:
            idv = sub[idvar]
            idval = idv.round().astype("Int64").astype(str) if idv.dtype.kind == "f" else idv.astype(str)
        frames.append(pd.DataFrame({
            "STUDYID": sub["STUDYID"].to_numpy(), "RDOMAIN": rdomain, "USUBJID": sub["USUBJID"].to_numpy(),
            "IDVAR": idvar or "", "IDVARVAL": idval.to_numpy() if idvar else "", "QNAM": q.qnam,
            "QLABEL": q.label, "QVAL": val[keep].to_numpy(), "QORIG": q.origin, "QEVAL": q.qeval,
        }))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLS})
    return pd.concat(frames, ignore_index=True)[COLS]


def test_records_by_hand(spec):
    """Qualifier by qualifier in metadata order (SUPPCM: LINENUM before BESTRESP, as in
    valuelevel/SUPPCM.csv) whatever the parent's column order, records in parent order; empty and missing values make no record; a
    float --SEQ is written as a whole number."""
    qnams = list(supp_qualifiers(spec, "CM")["qnam"])
    a, b = qnams[0], qnams[1]
    parent = pd.DataFrame({"STUDYID": ["S", "S", "S"], "USUBJID": ["S-1", "S-1", "S-2"],
                           "CMSEQ": [1.0, 2.0, 1.0], b: ["x", None, " y"], a: [np.nan, "", 3],
                           "OTHER": ["not", "a", "qualifier"]})
    out = build_supp(parent, "CM", spec, "CMSEQ")
    assert list(out.columns) == COLS
    assert out[["USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QVAL"]].values.tolist() == [
        ["S-2", "CMSEQ", "1", a, "3"],
        ["S-1", "CMSEQ", "1", b, "x"], ["S-2", "CMSEQ", "1", b, " y"]]
    assert out["RDOMAIN"].eq("CM").all() and out.index.tolist() == [0, 1, 2]


def test_subject_level_and_none_present(spec):
    """DM: IDVAR and IDVARVAL empty; a parent without any QNAM column gives no records."""
    q = supp_qualifiers(spec, "DM")["qnam"].iloc[0]
    parent = pd.DataFrame({"STUDYID": ["S", "S"], "USUBJID": ["S-1", "S-2"], q: ["", "v"]})
    out = build_supp(parent, "DM", spec, None)
    assert out[["USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QVAL"]].values.tolist() == [["S-2", "", "", q, "v"]]
    none = build_supp(parent[["STUDYID", "USUBJID"]], "DM", spec, None)
    assert none.empty and list(none.columns) == COLS


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_equals_per_qualifier_implementation(spec, data):
    """Same frame (values, dtypes, index) as the per-qualifier implementation, on parents with
    text, missing, blank and numeric qualifier values and float/int/text --SEQ."""
    rdomain = data.draw(st.sampled_from(["AE", "CM", "EX", "MH", "DS", "PR"]))
    qnams = list(supp_qualifiers(spec, rdomain)["qnam"])
    n = data.draw(st.integers(0, 6))
    cell = st.one_of(st.text(max_size=3), st.none(), st.just(np.nan), st.integers(-2, 2), st.floats(-2, 2),
                     st.just(" "))
    parent = pd.DataFrame({"STUDYID": ["S"] * n, "USUBJID": [f"S-{i % 3}" for i in range(n)]})
    seq = data.draw(st.sampled_from(["float", "int", "str"]))
    parent["SEQ"] = {"float": np.arange(n, dtype="float64") + 1, "int": np.arange(n) + 1,
                     "str": [str(i + 1) for i in range(n)]}[seq]
    for q in data.draw(st.lists(st.sampled_from(qnams), unique=True)):
        values = data.draw(st.lists(cell, min_size=n, max_size=n))
        parent[q] = pd.Series(values, dtype=object)
        if data.draw(st.booleans()) and all(isinstance(v, str) or v is None for v in values):
            parent[q] = parent[q].astype("str")
    pd.testing.assert_frame_equal(build_supp(parent, rdomain, spec, "SEQ"), per_qualifier(parent, rdomain, spec, "SEQ"))


def test_equals_per_qualifier_on_domain_parents(monkeypatch):
    """The parents DM, EX, DS, CM, PR and MH hand to build_supp from the hand-built forms give
    the same SUPP-- frames as the per-qualifier implementation."""
    seen = []

    def both(parent, rdomain, spec, idvar):
        new = build_supp(parent, rdomain, spec, idvar)
        pd.testing.assert_frame_equal(new, per_qualifier(parent, rdomain, spec, idvar))
        seen.append((rdomain, len(new)))
        return new

    import importlib
    for m in ("dm", "ex", "ds", "cm", "pr", "mh"):
        monkeypatch.setattr(importlib.import_module(f"pipeline.domains.{m}"), "build_supp", both)
    from test_domains_mh import history_forms
    run(context(history_forms()), ("dm", "ex", "se", "ds", "cm", "pr", "mh"))
    assert {r for r, _ in seen} == {"DM", "EX", "DS", "CM", "PR", "MH"}
    assert sum(k for _, k in seen) > 0


def test_qualifiers_selected_once_per_spec(spec):
    """The QNAM rows are spec-only: the value-level table is filtered once per spec and domain
    (a worker builds several studies with one spec), and a caller's copy may be changed."""
    own = dataclasses.replace(spec)
    parent = pd.DataFrame({"STUDYID": ["S"], "USUBJID": ["S-1"], "AESEQ": [1],
                           supp_qualifiers(spec, "AE")["qnam"].iloc[0]: ["v"]})
    first = build_supp(parent, "AE", own, "AESEQ")
    before = supp_qualifiers(own, "AE")
    # the table is not consulted again: with it emptied, the same records still come
    object.__setattr__(own, "valuelevel", own.valuelevel.iloc[0:0])
    pd.testing.assert_frame_equal(build_supp(parent, "AE", own, "AESEQ"), first)
    pd.testing.assert_frame_equal(supp_qualifiers(own, "AE"), before)
    mine = supp_qualifiers(own, "AE")
    mine["qnam"] = "CHANGED"
    assert (supp_qualifiers(own, "AE")["qnam"] != "CHANGED").all()
    assert suppqual.supp_qualifiers(spec, "AE").equals(supp_qualifiers(spec, "AE"))
