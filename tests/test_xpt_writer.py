"""The numpy XPT v5 writer (pipeline.export.xpt.write_xpt) against pyreadstat.write_xport:
byte-identical on every dataset of a shipped study and on generated frames, read back equal by
pyreadstat, IBM doubles computed by hand, and the values pyreadstat would silently corrupt refused."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import DataError
from pipeline.export import xpt
from pipeline.spec import load_spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURE_SPECS = HERE / "fixtures" / "export" / "specs"
STAMP = datetime(2025, 6, 30)


def both(frame, spec, name, tmp_path) -> tuple[bytes, bytes]:
    a, b = tmp_path / "numpy.xpt", tmp_path / "pyreadstat.xpt"
    xpt.write_xpt(frame, spec, name, a, STAMP)
    xpt.write_xpt_pyreadstat(frame, spec, name, b, STAMP)
    return a.read_bytes(), b.read_bytes()


# ---- IBM doubles by hand ------------------------------------------------------------------
@pytest.mark.parametrize("value, hexbytes", [
    (1.0, "4110000000000000"),      # 1/16 * 16**1: exponent 65 = 0x41, fraction 0x1
    (1.5, "4118000000000000"),
    (-2.5, "c128000000000000"),     # sign bit, 0x28/256 * 16**1... = 2.5
    (16.0, "4210000000000000"),
    (0.0, "0000000000000000"),
    (-0.0, "0000000000000000"),     # SAS has one zero
    (float("nan"), "2e00000000000000"),  # SAS missing "."
    (2.0 ** -260, "0010000000000000"),   # 16**-65: the smallest normalised IBM double
])
def test_ibm_doubles_by_hand(value, hexbytes):
    assert xpt.ibm_doubles(np.array([value])).tobytes().hex() == hexbytes


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 1e75, -(2.0 ** 249), 1e-79, -(2.0 ** -261),
                                   5e-324])
def test_values_pyreadstat_would_corrupt_are_refused(value, tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    frame = pd.DataFrame({"STUDYID": ["TEST01"] * 2, "DOMAIN": ["LB"] * 2, "USUBJID": ["S1", "S2"],
                          "LBSEQ": [1.0, 2.0], "LBTESTCD": ["ALT", "HGB"], "LBSTRESN": [3.0, value]})
    with pytest.raises(DataError, match=r"LB\.LBSTRESN: .* \(record 2\) cannot be stored in an XPT v5 numeric"):
        xpt.write_xpt(frame, spec, "LB", tmp_path / "lb.xpt", STAMP)


def test_largest_and_smallest_accepted_values_match_pyreadstat(tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    edge = [np.nextafter(2.0 ** 249, 0), -np.nextafter(2.0 ** 249, 0), 2.0 ** -260, -(2.0 ** -260), 0.1, 1 / 3]
    frame = pd.DataFrame({"STUDYID": "TEST01", "DOMAIN": "LB", "USUBJID": [f"S{i}" for i in range(6)],
                          "LBSEQ": 1.0, "LBTESTCD": "ALT", "LBSTRESN": edge})
    a, b = both(frame, spec, "LB", tmp_path)
    assert a == b
    back, _ = pyreadstat.read_xport(str(tmp_path / "numpy.xpt"))
    assert back["LBSTRESN"].tolist() == edge


# ---- byte identity ---------------------------------------------------------------------------
#: printable ASCII (blanks included), the only characters XPT v5 output allows here
text = st.text(alphabet=string.printable[:95], max_size=30)
#: numbers across the whole accepted range: negatives, +-0, missing, integers, and magnitudes
#: from the smallest normalised IBM double (16**-65) to just below 2**249
in_range = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or xpt.IBM_MIN <= abs(x) < xpt.XPT_MAX)
numbers = st.one_of(in_range, st.just(float("nan")), st.just(-0.0), st.integers(-10 ** 15, 10 ** 15).map(float),
                    st.sampled_from([xpt.IBM_MIN, -xpt.IBM_MIN, float(np.nextafter(xpt.XPT_MAX, 0)), 1e-78, 1e74]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text, text, numbers, numbers), min_size=1, max_size=40),
       long_value=st.booleans())
def test_generated_frames_byte_identical_and_read_back(rows, long_value, tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    frame = pd.DataFrame({
        "STUDYID": "TEST01", "DOMAIN": "LB", "USUBJID": [r[0] for r in rows], "LBSEQ": [r[2] for r in rows],
        "LBTESTCD": [r[1] for r in rows], "LBSTRESN": [r[3] for r in rows], "LBSTRESU": "",
        "LBDTC": "2025-01-0" + pd.Series(range(len(rows))).mod(9).add(1).astype(str)})
    if long_value:  # the longest value XPT v5 allows (200 characters) in the first record
        frame.loc[0, "LBTESTCD"] = "X" * xpt.MAX_VALUE
    a, b = both(frame, spec, "LB", tmp_path)
    assert a == b
    back, meta = pyreadstat.read_xport(str(tmp_path / "numpy.xpt"))
    assert meta.table_name == "LB" and list(back.columns) == list(frame.columns)
    # pyreadstat strips trailing blanks of character values when reading
    assert back["USUBJID"].tolist() == [r[0].rstrip() for r in rows]
    assert back["LBTESTCD"].tolist() == frame["LBTESTCD"].str.rstrip().tolist()
    for c in ("LBSEQ", "LBSTRESN"):
        want = frame[c].to_numpy(dtype=float)
        assert np.array_equal(back[c].to_numpy(), np.where(want == 0, 0.0, want), equal_nan=True), c


def test_no_records_and_empty_character_columns(tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in ("STUDYID", "DOMAIN", "USUBJID")})
    a, b = both(empty, spec, "LB", tmp_path)
    assert a == b
    blank = pd.DataFrame({"STUDYID": ["TEST01"] * 3, "DOMAIN": "", "USUBJID": [None, "", np.nan]})
    a, b = both(blank, spec, "LB", tmp_path)
    assert a == b


@pytest.mark.parametrize("value, why", [("é", "non-ASCII"), ("a\tb", "non-ASCII or control"),
                                        ("X" * 201, "longer than 200")])
def test_characters_xpt_v5_cannot_hold_are_refused(value, why, tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    frame = pd.DataFrame({"STUDYID": ["TEST01"], "DOMAIN": ["LB"], "USUBJID": [value]})
    with pytest.raises(DataError, match=f"LB.USUBJID: value .*{why.split()[0]}"):
        xpt.write_xpt(frame, spec, "LB", tmp_path / "lb.xpt", STAMP)
    assert not (tmp_path / "lb.xpt").exists()


@pytest.mark.parametrize("fmt", ["DATE9.", "DATETIME20.", "8.2", "BEST12.", "E8601DA."])
def test_display_formats_in_the_namestr_records_match_pyreadstat(fmt, tmp_path, monkeypatch):
    spec = load_spec(FIXTURE_SPECS)
    monkeypatch.setattr(xpt, "display_formats", lambda spec, name, cols: {"LBSTRESN": fmt, "USUBJID": fmt})
    frame = pd.DataFrame({"STUDYID": ["TEST01"] * 2, "DOMAIN": "LB", "USUBJID": ["S1", "S22"],
                          "LBSTRESN": [23000.0, np.nan]})
    a, b = both(frame, spec, "LB", tmp_path)
    assert a == b
    _, meta = pyreadstat.read_xport(str(tmp_path / "numpy.xpt"), disable_datetime_conversion=True)
    assert meta.original_variable_types["LBSTRESN"].rstrip(".") == fmt.rstrip(".")


def test_a_refused_value_leaves_no_file(tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    frame = pd.DataFrame({"STUDYID": ["TEST01"], "DOMAIN": ["LB"], "USUBJID": ["S1"], "LBSTRESN": [float("inf")]})
    with pytest.raises(DataError):
        xpt.write_xpt(frame, spec, "LB", tmp_path / "lb.xpt", STAMP)
    assert not (tmp_path / "lb.xpt").exists()


def _frame_from_json(path: Path) -> pd.DataFrame:
    """A built dataset as the writer received it, from its Dataset-JSON (exact: strings keep
    their trailing blanks, doubles their shortest round-trip text); null -> "" / NaN."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    rows = doc["rows"]
    cols = {}
    for i, col in enumerate(doc["columns"]):  # loop over variables
        values = [r[i] for r in rows]
        if col["dataType"] in ("integer", "double"):
            cols[col["name"]] = pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
        else:
            cols[col["name"]] = pd.Series(["" if v is None else v for v in values], dtype=object)
    return pd.DataFrame(cols, columns=[c["name"] for c in doc["columns"]])


def test_every_built_dataset_byte_identical_to_pyreadstat(built_study, tmp_path):
    """Every XPT file of the session's build of a shipped study (SDTM and ADaM) is byte-identical
    to what pyreadstat writes for the same frame, and reads back with the same values."""
    from conftest import BUILT_EPOCH

    from pipeline.adam.stage import adam_spec

    sdtm = load_spec(ROOT / "specs")
    specs = {built_study: sdtm, built_study / "adam": adam_spec(sdtm)}
    stamp = datetime.fromtimestamp(int(BUILT_EPOCH), tz=UTC).replace(tzinfo=None)
    seen = 0
    for folder, spec in specs.items():
        for built in sorted(folder.glob("*.xpt")):  # loop over datasets
            name = built.stem.upper()
            frame = _frame_from_json(built.with_suffix(".json"))
            a, b = tmp_path / "numpy.xpt", tmp_path / "pyreadstat.xpt"
            xpt.write_xpt(frame, spec, name, a, stamp)
            xpt.write_xpt_pyreadstat(frame, spec, name, b, stamp)
            assert a.read_bytes() == b.read_bytes(), name
            assert built.read_bytes() == a.read_bytes(), name
            back, meta = pyreadstat.read_xport(str(built), disable_datetime_conversion=True)
            assert meta.table_name == name and list(back.columns) == list(frame.columns), name
            for c in frame.columns:
                if frame[c].dtype == object:
                    assert back[c].tolist() == frame[c].str.rstrip().tolist(), f"{name}.{c}"
                else:
                    assert np.array_equal(back[c].to_numpy(), frame[c].to_numpy(), equal_nan=True), f"{name}.{c}"
            seen += 1
    assert seen >= 25  # every SDTM and ADaM dataset of the study


def test_manifest_shapes_without_reading_the_datasets_whole(built_study):
    """The manifest counts the records of the XPT and Dataset-JSON files it did not write itself
    (ADaM) from their headers; the counts are those of reading each file whole."""
    from pipeline.export import manifest

    listed = pd.read_csv(built_study / "manifest.csv", dtype=str, keep_default_na=False).set_index("file")
    files = sorted(built_study.rglob("*.xpt")) + sorted(built_study.rglob("*.json"))
    assert any(p.parent.name == "adam" for p in files)
    for path in files:  # loop over output files
        rel = path.relative_to(built_study).as_posix()
        if path.suffix == ".xpt":
            frame, _ = pyreadstat.read_xport(str(path), disable_datetime_conversion=True)
            want = frame.shape
        else:
            doc = json.loads(path.read_text(encoding="utf-8"))
            want = (doc["records"], len(doc["columns"])) if "records" in doc else ("", "")
            assert len(doc.get("rows", [])) == want[0] or want == ("", "")
        assert manifest._shape(path, {}, rel) == tuple(map(str, want)), rel
        assert (listed.loc[rel, "rows"], listed.loc[rel, "columns"]) == tuple(map(str, want)), rel
    # the session's build folder also receives files after the build (make package writes the
    # guides' drafts into <study>/guides/): compare the files the build's manifest lists
    written = [r for r in pd.read_csv(built_study / "manifest.csv", dtype=str, keep_default_na=False).values.tolist()
               if r[0] != "manifest.csv"]
    now = manifest.manifest_frame(built_study)[["file", "rows", "columns", "sha256"]]
    assert now[now["file"].isin([r[0] for r in written])].values.tolist() == written


def test_xpt_shape_falls_back_to_pyreadstat_when_sizes_disagree(tmp_path, monkeypatch):
    from pipeline.export import manifest

    read = []
    real = pyreadstat.read_xport
    monkeypatch.setattr(pyreadstat, "read_xport", lambda p, **k: (read.append(p), real(p, **k))[1])

    spec = load_spec(FIXTURE_SPECS)
    frame = pd.DataFrame({"STUDYID": ["TEST01"] * 3, "DOMAIN": "LB", "USUBJID": ["S1", "S2", "S3"]})
    xpt.write_xpt(frame, spec, "LB", tmp_path / "lb.xpt", STAMP)
    (tmp_path / "lb.json").write_text('{"records": 9,\n "columns": [1, 2, 3],\n "rows": []}')  # wrong count
    assert manifest._xpt_shape(tmp_path / "lb.xpt") == (3, 3) and len(read) == 1
    (tmp_path / "lb.json").write_text('{"records": 3,\n "columns": [1, 2, 3],\n "rows": []}')
    assert manifest._xpt_shape(tmp_path / "lb.xpt") == (3, 3) and len(read) == 1  # from the headers, not read


def test_display_formats_per_spec_same_as_reading_the_variables():
    """display_formats (the dataset's formats read once per spec) gives the dict the spec's
    variables gave when filtered on every call: ADaM dates DATE9./DATETIME20., in spec order,
    only the columns present (any order), none for a spec without the column (SDTM)."""
    from conftest import SPECS

    def read_each_call(spec, name, columns):
        v = spec.vars(name)
        if "display_format" not in v:
            return {}
        f = v[(v["display_format"] != "") & v["variable"].isin(columns)]
        return dict(zip(f["variable"], f["display_format"]))

    adam = load_spec(SPECS, "adam")
    rng = np.random.default_rng(7)
    for name in adam.datasets["dataset"]:  # every ADaM dataset of the spec
        names = adam.vars(name)["variable"].tolist()
        for columns in (names, names[::-1], list(rng.permutation(names)[: len(names) // 2]), [], ["NOTAVAR"]):
            assert xpt.display_formats(adam, name, columns) == read_each_call(adam, name, columns)
            assert list(xpt.display_formats(adam, name, columns)) == list(read_each_call(adam, name, columns))
    assert xpt.display_formats(adam, "ADSL", ["TRTSDT", "USUBJID"]) == {"TRTSDT": "DATE9."}
    sdtm = load_spec(FIXTURE_SPECS)
    assert xpt.display_formats(sdtm, "LB", sdtm.vars("LB")["variable"].tolist()) == {}
