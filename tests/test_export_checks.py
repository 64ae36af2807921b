"""Output checks: pandera schemas generated from the spec fail on planted violations."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit  # noqa: E402

from pipeline.export.checks import (check_datasets, iso8601_valid, order_dataset, output_schemas,  # noqa: E402
                                    sort_findings)
from pipeline.spec import load_spec  # noqa: E402

SID = "TEST01"


@pytest.fixture(scope="module")
def spec():
    return load_spec(exportkit.SPECS)


def dm_frame():
    return pd.DataFrame({
        "STUDYID": [SID, SID], "DOMAIN": "DM", "USUBJID": ["TEST01-01-001", "TEST01-01-002"],
        "SUBJID": ["001", "002"], "RFSTDTC": ["2025-01-10T10:00", "2025-02-15"], "AGE": [45.0, 60.0],
        "SEX": ["M", "F"], "COUNTRY": ["CHN", "CHN"]})


def ae_frame():
    return pd.DataFrame({
        "STUDYID": SID, "DOMAIN": "AE", "USUBJID": ["TEST01-01-001", "TEST01-01-001", "TEST01-01-002"],
        "AESEQ": [1.0, 2.0, 1.0], "AETERM": ["Fever", "Headache", "Rash"], "AESER": ["N", "N", "Y"],
        "EPOCH": ["TREATMENT", "SCREENING", ""], "AESTDTC": ["2025-01-12", "2025-01-08", "2025-02"],
        "AESTDY": [3.0, -2.0, np.nan]})


def lb_frame():
    return pd.DataFrame({
        "STUDYID": SID, "DOMAIN": "LB", "USUBJID": "TEST01-01-001", "LBSEQ": [1.0, 2.0],
        "LBTESTCD": ["ALT", "HGB"], "LBSTRESN": [20.0, 131.5], "LBSTRESU": ["U/L", "g/L"],
        "LBDTC": ["2025-01-09", "2025-01-10T09:30"], "LBDY": [-1.0, 1.0]})


def run(spec, dm=None, ae=None, lb=None) -> pd.DataFrame:
    frames = {"DM": dm if dm is not None else dm_frame(), "AE": ae if ae is not None else ae_frame(),
              "LB": lb if lb is not None else lb_frame()}
    ordered = {n: order_dataset(f, spec, n) for n, f in frames.items()}
    return sort_findings(check_datasets(ordered, spec, SID))


def errors(f: pd.DataFrame) -> pd.DataFrame:
    return f[f["severity"] == "error"]


def test_clean_study_has_no_findings(spec):
    f = run(spec)
    assert f.empty, f.to_string()


def test_req_null_is_an_error(spec):
    ae = ae_frame()
    ae.loc[1, "AETERM"] = ""
    e = errors(run(spec, ae=ae))
    assert e[["file", "column", "check"]].values.tolist() == [["AE", "AETERM", "required_value"]]
    # the empty term sorts first by the keys STUDYID|USUBJID|AETERM|AESTDTC -> record 1
    assert e["row"].tolist() == [1]


def test_req_numeric_nan_is_an_error(spec):
    ae = ae_frame()
    ae.loc[0, "AESEQ"] = np.nan
    e = errors(run(spec, ae=ae))
    assert ("AESEQ", "required_value") in set(zip(e["column"], e["check"]))


def test_bad_ct_value_non_extensible_is_error_extensible_is_warning(spec):
    dm = dm_frame()
    dm.loc[1, "SEX"] = "FEMALE"
    ae = ae_frame()
    ae.loc[0, "EPOCH"] = "FOLLOWUP"
    f = run(spec, dm=dm, ae=ae)
    assert errors(f)[["file", "column", "value", "check"]].values.tolist() == [["DM", "SEX", "FEMALE", "ct_value"]]
    warn = f[f["severity"] == "warning"]
    assert warn[["file", "column", "value", "check"]].values.tolist() == [["AE", "EPOCH", "FOLLOWUP", "ct_value"]]


def test_dictionary_codelist_is_not_checked_term_by_term(spec):
    dm = dm_frame()
    dm.loc[0, "COUNTRY"] = "USA"  # COUNTRY carries dictionary ISO 3166-1 alpha-3
    assert run(spec, dm=dm).empty


def test_valuelevel_codelist(spec):
    lb = lb_frame()
    lb.loc[1, "LBSTRESU"] = "g/dL"
    e = errors(run(spec, lb=lb))
    assert e[["column", "value", "check", "row"]].values.tolist() == [["LBSTRESU", "g/dL", "valuelevel_ct", 2]]


@pytest.mark.parametrize("value", ["2025-02-30", "2025-13", "2024-02-30", "2023-02-29", "2025-01-10T24:00",
                                   "2025-01-10T10:60", "2025-1-10", "10-JAN-2025", "2025---10", "2025-01-10T",
                                   "--01-10"])
def test_impossible_or_malformed_dates_are_errors(spec, value):
    ae = ae_frame()
    ae.loc[0, "AESTDTC"] = value
    ae.loc[0, "AESTDY"] = np.nan
    e = errors(run(spec, ae=ae))
    assert ("AESTDTC", "iso8601") in set(zip(e["column"], e["check"])), value


def test_iso8601_accepts_right_truncated_forms():
    values = pd.Series(["2024", "2024-02", "2024-02-29", "2024-02-29T23", "2024-02-29T23:59", "2024-02-29T23:59:59",
                        "", "2023-02-28T00:00:00.5"])
    assert iso8601_valid(values).tolist() == [True] * 8
    assert iso8601_valid(pd.Series(["2024-02-29T10:00"]), with_time=False).tolist() == [False]


@settings(max_examples=60, deadline=None)
@given(st.dates(min_value=pd.Timestamp("1900-01-01").date(), max_value=pd.Timestamp("2100-12-31").date()),
       st.integers(0, 23), st.integers(0, 59))
def test_iso8601_every_real_datetime_passes(d, h, m):
    text = f"{d.isoformat()}T{h:02d}:{m:02d}"
    assert iso8601_valid(pd.Series([text, d.isoformat(), d.isoformat()[:7], d.isoformat()[:4]])).all()


def test_duplicate_seq_is_an_error(spec):
    ae = ae_frame()
    ae.loc[1, "AESEQ"] = 1.0
    e = errors(run(spec, ae=ae))
    seq = e[e["check"] == "seq_unique"]
    assert seq["column"].tolist() == ["AESEQ", "AESEQ"]
    assert sorted(seq["row"].tolist()) == [1, 2]


def test_usubjid_not_in_dm_is_an_error(spec):
    lb = lb_frame()
    lb.loc[1, "USUBJID"] = "TEST01-09-999"
    lb.loc[1, "LBDY"] = np.nan  # no RFSTDTC for an unknown subject
    e = errors(run(spec, lb=lb))
    assert e[["column", "value", "check"]].values.tolist() == [["USUBJID", "TEST01-09-999", "usubjid_in_dm"]]


def test_wrong_study_day_is_an_error(spec):
    ae = ae_frame()
    # 2025-01-08 is two days before RFSTDTC 2025-01-10: study day -2 (no day 0); -3 is wrong
    ae.loc[1, "AESTDY"] = -3.0
    e = errors(run(spec, ae=ae))
    assert e[["column", "value", "check"]].values.tolist() == [["AESTDY", "-3.0", "study_day"]]
    # and a study day given for a partial date (must be missing) is wrong too
    ae = ae_frame()
    ae.loc[2, "AESTDY"] = 1.0
    e = errors(run(spec, ae=ae))
    assert e[["column", "check"]].values.tolist() == [["AESTDY", "study_day"]]


def test_non_ascii_and_overlong_values_are_errors_naming_the_variable(spec):
    ae = ae_frame()
    ae.loc[0, "AETERM"] = "Fi\u00e8vre"
    ae.loc[1, "AETERM"] = "H" * 201
    e = errors(run(spec, ae=ae))
    got = set(zip(e["column"], e["check"]))
    assert ("AETERM", "ascii") in got and ("AETERM", "max_length_200") in got
    msg = e.loc[e["check"] == "ascii", "message"].iloc[0]
    assert "AE.AETERM" in msg and "Fi\u00e8vre" in msg
    # exactly 200 characters is allowed
    ae = ae_frame()
    ae.loc[1, "AETERM"] = "H" * 200
    assert errors(run(spec, ae=ae)).empty


def test_spec_length_and_integer_and_numeric_type(spec):
    ae = ae_frame()
    ae.loc[0, "AESER"] = "NO"  # spec length 1 and not in NY
    dm = dm_frame()
    dm["AGE"] = [45.5, 60.0]
    lb = lb_frame()
    lb["LBSTRESN"] = pd.Series(["20", 131.5], dtype=object)
    e = errors(run(spec, dm=dm, ae=ae, lb=lb))
    got = set(zip(e["file"], e["column"], e["check"]))
    assert {("AE", "AESER", "spec_length"), ("AE", "AESER", "ct_value"), ("DM", "AGE", "integer_value"),
            ("LB", "LBSTRESN", "numeric_type")} <= got


def test_missing_and_extra_variables(spec):
    ae = ae_frame().drop(columns=["AESER", "EPOCH"]).assign(AEXTRA="x")
    e = errors(run(spec, ae=ae))
    got = set(zip(e["column"], e["check"]))
    # AESER is Exp (must be present); EPOCH is Perm (may be absent); AEXTRA is not in the spec
    assert got == {("AESER", "variable_missing"), ("AEXTRA", "not_in_spec")}


def test_studyid_and_domain_values(spec):
    ae = ae_frame()
    ae.loc[0, "STUDYID"] = "OTHER"
    ae.loc[1, "DOMAIN"] = "XX"
    e = errors(run(spec, ae=ae))
    got = set(zip(e["column"], e["check"]))
    assert ("STUDYID", "studyid") in got and ("DOMAIN", "domain") in got


def test_findings_are_capped_per_check(spec):
    n = 120
    lb = pd.DataFrame({"STUDYID": SID, "DOMAIN": "LB", "USUBJID": "TEST01-01-001", "LBSEQ": np.arange(1, n + 1.0),
                       "LBTESTCD": "ALT", "LBSTRESN": 1.0, "LBSTRESU": "U/L", "LBDTC": "2025-02-30", "LBDY": np.nan})
    e = errors(run(spec, lb=lb))
    iso = e[e["check"] == "iso8601"]
    assert len(iso) == 51  # 50 listed + 1 summary
    assert "70 more record(s)" in iso.loc[iso["row"] == "", "message"].iloc[0]


def test_schema_is_generated_from_the_spec(spec):
    schemas = output_schemas(spec, "AE", SID, dm_frame())
    cols = schemas["error"].columns
    assert list(cols) == ["STUDYID", "DOMAIN", "USUBJID", "AESEQ", "AETERM", "AESER", "EPOCH", "AESTDTC", "AESTDY"]
    assert cols["AESER"].required and not cols["EPOCH"].required
    assert schemas["error"].strict is True
    assert list(schemas["warning"].columns) == ["EPOCH"]  # extensible codelist


def test_dataset_not_in_spec_is_an_error(spec):
    f = check_datasets({"XX": pd.DataFrame({"A": [1]})}, spec, SID)
    assert f[["file", "check", "severity"]].values.tolist()[-1] == ["XX", "dataset_not_in_spec", "error"]


def test_order_dataset_rows_by_keys_columns_in_spec_order(spec):
    """Keys STUDYID, USUBJID, AETERM, AESTDTC (datasets.csv of the kit); spec variables first in
    spec order, then the others by name; index 0..n-1 whether or not anything moved, and the
    input frame is left as it was."""
    frame = ae_frame().iloc[[2, 1, 0]].set_axis([7, 8, 9])
    ordered = order_dataset(frame, spec, "AE")
    assert ordered["AETERM"].tolist() == ["Fever", "Headache", "Rash"]
    assert list(ordered.index) == [0, 1, 2]
    assert list(frame.index) == [7, 8, 9] and frame["AETERM"].tolist() == ["Rash", "Headache", "Fever"]
    in_place = order_dataset(ae_frame(), spec, "AE")  # rows and columns already in order
    pd.testing.assert_frame_equal(in_place, ae_frame())
    shuffled = ae_frame()[list(reversed(ae_frame().columns))].assign(ZZ=1, AA=2)
    assert list(order_dataset(shuffled, spec, "AE").columns) == list(ae_frame().columns) + ["AA", "ZZ"]
