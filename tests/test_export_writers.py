"""Round trips of the XPT v5 and Dataset-JSON writers, header stamps, manifest hashes."""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit  # noqa: E402

from pipeline.errors import DataError  # noqa: E402
from pipeline.export import datasetjson, manifest, xpt  # noqa: E402
from pipeline.export.checks import order_dataset  # noqa: E402
from pipeline.spec import load_spec  # noqa: E402

STAMP = datetime(2025, 6, 30, 0, 0, 0)


@pytest.fixture(scope="module")
def spec():
    return load_spec(exportkit.SPECS)


def ae_frame():
    return pd.DataFrame({
        "AESTDY": [3.0, -2.0, np.nan],
        "STUDYID": "TEST01", "DOMAIN": "AE", "USUBJID": ["TEST01-01-001", "TEST01-01-001", "TEST01-01-002"],
        "AESEQ": [2.0, 1.0, 1.0], "AETERM": ["Fever", "Headache", "Cytokine release syndrome"],
        "AESER": ["N", "N", "Y"], "EPOCH": ["", "", ""], "AESTDTC": ["2025-01-12", "2025-01-08", "2025-02"]})


def test_xpt_round_trip(spec, tmp_path):
    frame = order_dataset(ae_frame(), spec, "AE")
    path = tmp_path / xpt.xpt_name("AE")
    assert path.name == "ae.xpt"
    xpt.write_xpt(frame, spec, "AE", path, STAMP)
    back, meta = pyreadstat.read_xport(str(path))
    # spec variable order, rows in key order (STUDYID|USUBJID|AETERM|AESTDTC)
    assert list(back.columns) == spec.var_names("AE")
    assert back["AETERM"].tolist() == ["Fever", "Headache", "Cytokine release syndrome"]
    assert back["AESEQ"].tolist() == [2.0, 1.0, 1.0]
    assert back["AESTDY"].tolist()[:2] == [3.0, -2.0] and np.isnan(back["AESTDY"].iloc[2])
    assert back["EPOCH"].tolist() == ["", "", ""]
    assert meta.table_name == "AE" and meta.file_label == "Adverse Events"
    assert meta.column_names_to_labels["AESTDY"] == "Study Day of Start of Adverse Event"
    # character width = longest value present (min 1), numerics 8
    assert meta.variable_storage_width == {"STUDYID": 6, "DOMAIN": 2, "USUBJID": 13, "AESEQ": 8, "AETERM": 25,
                                           "AESER": 1, "EPOCH": 1, "AESTDTC": 10, "AESTDY": 8}
    assert meta.readstat_variable_types["AESEQ"] == "double"
    # the header stamps are the build timestamp
    assert meta.creation_time == datetime(2025, 6, 30) and meta.modification_time == datetime(2025, 6, 30)
    raw = path.read_bytes()
    assert raw.count(b"30JUN25:00:00:00") == 4
    # pandas reads it too
    via_pandas = pd.read_sas(path, format="xport", encoding="ascii")
    assert via_pandas["USUBJID"].tolist() == back["USUBJID"].tolist()
    assert via_pandas["AESTDY"].iloc[:2].tolist() == [3.0, -2.0]


def test_xpt_is_byte_identical_on_rewrite(spec, tmp_path):
    frame = order_dataset(ae_frame(), spec, "AE")
    a, b = tmp_path / "a.xpt", tmp_path / "b.xpt"
    xpt.write_xpt(frame, spec, "AE", a, STAMP)
    xpt.write_xpt(frame, spec, "AE", b, STAMP)
    assert a.read_bytes() == b.read_bytes()


def test_build_timestamp_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert xpt.build_timestamp("2025-09-30") == datetime(2025, 9, 30)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert xpt.build_timestamp("2025-09-30") == datetime(1970, 1, 2)
    assert xpt.sas_stamp(datetime(2024, 2, 29, 13, 5, 9)) == b"29FEB24:13:05:09"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(DataError):
        xpt.build_timestamp("2025-09-30")


def test_xpt_refuses_non_ascii_and_overlong_values(spec, tmp_path):
    frame = order_dataset(ae_frame(), spec, "AE")
    frame.loc[0, "AETERM"] = "na\u00efve"
    with pytest.raises(DataError, match="AE.AETERM"):
        xpt.write_xpt(frame, spec, "AE", tmp_path / "ae.xpt", STAMP)
    frame = order_dataset(ae_frame(), spec, "AE")
    frame.loc[0, "AETERM"] = "x" * 201
    with pytest.raises(DataError, match="AE.AETERM: value longer than 200"):
        xpt.write_xpt(frame, spec, "AE", tmp_path / "ae.xpt", STAMP)


def test_xpt_writes_only_spec_variables_in_spec_order(spec):
    out = xpt.xpt_frame(ae_frame(), spec, "AE")
    assert list(out.columns) == spec.var_names("AE")
    assert out["AETERM"].dtype == object and out["AESEQ"].dtype == np.float64


def test_xpt_frame_of_a_written_frame_is_its_shallow_copy(spec, tmp_path):
    """xpt_frame of what write_xpt returned (define.xml asks for it) skips the column checks and
    equals the frame xpt_frame makes by looking at every column; another dataset name, another
    spec or a frame with a column more is looked at as before."""
    written = xpt.write_xpt(order_dataset(ae_frame(), spec, "AE"), spec, "AE", tmp_path / "ae.xpt", STAMP)
    assert xpt._written_for(written, spec, "AE")
    fast = xpt.xpt_frame(written, spec, "AE")
    assert fast is not written and not xpt._written_for(fast, spec, "AE")  # a copy, never marked itself
    slow = xpt.xpt_frame(fast, spec, "AE")  # the column-by-column path
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    pd.testing.assert_frame_equal(fast, written, check_exact=True)
    assert fast["AETERM"].tolist() == ["Fever", "Headache", "Cytokine release syndrome"]  # key order
    assert fast["EPOCH"].tolist() == ["", "", ""] and fast["AESEQ"].dtype == np.float64
    assert not xpt._written_for(written, spec, "CM")
    assert not xpt._written_for(written, load_spec(exportkit.SPECS), "AE")
    wider = written.assign(EXTRA=1)
    assert not xpt._written_for(wider, spec, "AE")
    assert list(xpt.xpt_frame(wider, spec, "AE").columns) == spec.var_names("AE")


def test_xpt_problems_name_each_bad_character_variable_with_or_without_distinct_values(spec):
    """xpt_problems reads the character variables' distinct values when given (write_xpt) and
    takes the column otherwise (write_xpt_pyreadstat): the same lines; numerics are not read."""
    frame = xpt.xpt_frame(order_dataset(ae_frame(), spec, "AE"), spec, "AE")
    frame.loc[0, "AETERM"] = "na\u00efve"
    frame.loc[1, "AESER"] = "x" * 201
    expected = ["AE.AESER: value longer than 200 characters: " + repr("x" * 40) + "...",
                "AE.AETERM: value with a non-ASCII or control character: 'na\u00efve'"]
    assert sorted(xpt.xpt_problems(frame, spec, "AE")) == expected
    distinct = {c: u for c, (_, u) in xpt.factorize_text(frame).items()}
    assert sorted(xpt.xpt_problems(frame, spec, "AE", distinct)) == expected
    assert xpt.xpt_problems(xpt.xpt_frame(ae_frame(), spec, "AE"), spec, "AE") == []


def test_dataset_json_round_trip_and_schema(spec, tmp_path, shared_dir):
    jsonschema = pytest.importorskip("jsonschema")
    frame = order_dataset(ae_frame(), spec, "AE")
    path = tmp_path / "ae.json"
    datasetjson.write_dataset_json(frame, spec, "AE", path, "TEST01", "Sponsor", STAMP)
    doc = json.loads(path.read_text())
    schema = json.loads((shared_dir / "reference" / "dataset-json-1.1" / "dataset.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert list(doc)[:4] == ["datasetJSONCreationDateTime", "datasetJSONVersion", "fileOID", "dbLastModifiedDateTime"]
    assert doc["datasetJSONCreationDateTime"] == "2025-06-30T00:00:00"
    assert doc["datasetJSONVersion"] == "1.1.0"
    assert doc["itemGroupOID"] == "IG.AE" and doc["studyOID"] == "S.TEST01"
    assert doc["metaDataRef"] == "define.xml" and doc["records"] == 3
    assert doc["name"] == "AE" and doc["label"] == "Adverse Events"
    cols = {c["name"]: c for c in doc["columns"]}
    assert [c["name"] for c in doc["columns"]] == spec.var_names("AE")
    assert cols["AESEQ"] == {"itemOID": "IT.AE.AESEQ", "name": "AESEQ", "label": "Sequence Number", "dataType": "integer"}
    assert cols["AETERM"]["length"] == 25 and cols["AETERM"]["dataType"] == "string"
    assert cols["AESTDTC"]["dataType"] == "datetime" and cols["AESTDTC"]["keySequence"] == 4
    assert cols["USUBJID"]["keySequence"] == 2
    back, meta = datasetjson.read_dataset_json(path)
    assert back["AETERM"].tolist() == ["Fever", "Headache", "Cytokine release syndrome"]
    assert back["AESEQ"].tolist() == [2, 1, 1] and isinstance(back["AESEQ"].iloc[0], int)
    assert back["AESTDY"].tolist() == [3, -2, None]
    assert back["EPOCH"].tolist() == ["", "", ""]
    assert meta["records"] == 3


def test_dataset_json_matches_xpt(spec, tmp_path):
    frame = order_dataset(ae_frame(), spec, "AE")
    datasetjson.write_dataset_json(frame, spec, "AE", tmp_path / "ae.json", "TEST01", "S", STAMP)
    xpt.write_xpt(frame, spec, "AE", tmp_path / "ae.xpt", STAMP)
    j, meta = datasetjson.read_dataset_json(tmp_path / "ae.json")
    x, xmeta = pyreadstat.read_xport(str(tmp_path / "ae.xpt"))
    assert list(j.columns) == list(x.columns)
    for c in x.columns:
        if x[c].dtype == np.float64:
            assert np.allclose(pd.to_numeric(j[c]).astype(float), x[c], equal_nan=True), c
        else:
            assert j[c].fillna("").tolist() == x[c].tolist(), c
    lengths = {c["name"]: c.get("length") for c in meta["columns"]}
    for c, w in xmeta.variable_storage_width.items():
        if xmeta.readstat_variable_types[c] == "string":
            assert lengths[c] == w, c
    labels = {c["name"]: c["label"] for c in meta["columns"]}
    assert labels == dict(zip(xmeta.column_names, xmeta.column_labels))


def test_dataset_json_values_are_exact():
    rows = datasetjson.row_lines(pd.DataFrame({"A": ["x\"y", "", "z"], "B": [1.0, np.nan, -3.0],
                                               "C": [0.1, 2.5, np.nan], "D": ["2025-01", "", "2025"]}),
                                 ["string", "integer", "double", "datetime"])
    assert rows == ['["x\\"y",1,0.1,"2025-01"]', '["",null,2.5,null]', '["z",-3,null,"2025"]']


def test_empty_dataset_exports(spec, tmp_path):
    frame = order_dataset(ae_frame().iloc[0:0], spec, "AE")
    datasetjson.write_dataset_json(frame, spec, "AE", tmp_path / "ae.json", "TEST01", "S", STAMP)
    doc = json.loads((tmp_path / "ae.json").read_text())
    assert doc["records"] == 0 and doc["rows"] == []
    assert all(c.get("length", 1) == 1 for c in doc["columns"])


def test_manifest_hashes_and_shapes(tmp_path, spec):
    frame = order_dataset(ae_frame(), spec, "AE")
    xpt.write_xpt(frame, spec, "AE", tmp_path / "ae.xpt", STAMP)
    datasetjson.write_dataset_json(frame, spec, "AE", tmp_path / "ae.json", "TEST01", "S", STAMP)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "build.log").write_text("log\n")
    (tmp_path / "timings.csv").write_text("not hashed\n")
    m = manifest.write_manifest(tmp_path)
    assert m["file"].tolist() == ["ae.json", "ae.xpt", "build.log", "reports/r.csv"]
    for r in m.itertuples():
        assert r.sha256 == hashlib.sha256((tmp_path / r.file).read_bytes()).hexdigest()
    shapes = dict(zip(m["file"], zip(m["rows"], m["columns"])))
    assert shapes == {"ae.json": ("3", "9"), "ae.xpt": ("3", "9"), "build.log": ("", ""), "reports/r.csv": ("2", "2")}
    assert manifest.verify_manifest(tmp_path) == []
    (tmp_path / "build.log").write_text("changed\n")
    assert manifest.verify_manifest(tmp_path) == ["build.log: SHA-256 differs"]


def test_dataset_json_chunked_rows_are_identical_to_one_piece(spec, tmp_path, monkeypatch):
    frame = order_dataset(pd.concat([ae_frame()] * 3, ignore_index=True).assign(
        AESEQ=lambda d: d.index + 1.0), spec, "AE")
    datasetjson.write_dataset_json(frame, spec, "AE", tmp_path / "one.json", "TEST01", "S", STAMP)
    monkeypatch.setattr(datasetjson, "CHUNK_ROWS", 2)  # 9 records in chunks of 2
    datasetjson.write_dataset_json(frame, spec, "AE", tmp_path / "chunks.json", "TEST01", "S", STAMP)
    assert (tmp_path / "chunks.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert json.loads((tmp_path / "chunks.json").read_text())["records"] == 9
    assert len(json.loads((tmp_path / "chunks.json").read_text())["rows"]) == 9
