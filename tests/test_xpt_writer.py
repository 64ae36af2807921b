"""The numpy XPT v5 writer (pipeline.export.xpt.write_xpt) against pyreadstat.write_xport:
byte-identical on every dataset of a shipped study and on generated frames, read back equal by
pyreadstat, IBM doubles computed by hand, and the values pyreadstat would silently corrupt refused."""

from __future__ import annotations

import string
from datetime import datetime
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
text = st.text(alphabet=string.printable[:95], max_size=30)  # printable ASCII, blanks included
numbers = st.one_of(st.floats(min_value=-1e70, max_value=1e70).filter(lambda x: x == 0 or abs(x) >= 1e-70),
                    st.just(float("nan")), st.integers(-10 ** 12, 10 ** 12).map(float))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text, text, numbers, numbers), min_size=1, max_size=40))
def test_generated_frames_byte_identical_and_read_back(rows, tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    frame = pd.DataFrame({
        "STUDYID": "TEST01", "DOMAIN": "LB", "USUBJID": [r[0] for r in rows], "LBSEQ": [r[2] for r in rows],
        "LBTESTCD": [r[1] for r in rows], "LBSTRESN": [r[3] for r in rows], "LBSTRESU": "",
        "LBDTC": "2025-01-0" + pd.Series(range(len(rows))).mod(9).add(1).astype(str)})
    a, b = both(frame, spec, "LB", tmp_path)
    assert a == b
    back, meta = pyreadstat.read_xport(str(tmp_path / "numpy.xpt"))
    assert meta.table_name == "LB" and list(back.columns) == list(frame.columns)
    # pyreadstat strips trailing blanks of character values when reading
    assert back["USUBJID"].tolist() == [r[0].rstrip() for r in rows]
    assert back["LBSTRESN"].fillna(-1.5).tolist() == pd.Series([r[3] for r in rows]).fillna(-1.5).tolist()


def test_no_records_and_empty_character_columns(tmp_path):
    spec = load_spec(FIXTURE_SPECS)
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in ("STUDYID", "DOMAIN", "USUBJID")})
    assert both(empty, spec, "LB", tmp_path)[0] == both(empty, spec, "LB", tmp_path)[1]
    blank = pd.DataFrame({"STUDYID": ["TEST01"] * 3, "DOMAIN": "", "USUBJID": [None, "", np.nan]})
    a, b = both(blank, spec, "LB", tmp_path)
    assert a == b


@pytest.fixture(scope="module")
def shipped_datasets():
    """Every dataset of the smallest shipped study, as the build hands them to the writer."""
    import pipeline.build as build
    from pipeline.config import load_study
    from pipeline.context import StudyContext
    from pipeline.export import checks
    from pipeline.intake.gate import gate_detail
    from pipeline.progress import BuildLog

    raw = ROOT / "raw"
    studies = [p for p in raw.iterdir() if p.is_dir()] if raw.is_dir() else []
    if not studies:
        pytest.skip("raw/ holds no study extracts (run `make raw`)")
    sid = min(studies, key=lambda p: sum(f.stat().st_size for f in p.iterdir())).name
    spec = load_spec(ROOT / "specs")
    study = load_study(ROOT / "specs", sid)
    gated = gate_detail(raw, study, spec)
    merged = build.run_domains(StudyContext(study=study, spec=spec, forms=gated.forms), BuildLog())
    known = checks.specified_datasets(spec)
    return spec, {n: checks.order_dataset(f, spec, n) for n, f in merged.datasets.items() if n in known}


def test_every_shipped_dataset_byte_identical_to_pyreadstat(shipped_datasets, tmp_path):
    spec, datasets = shipped_datasets
    assert len(datasets) >= 15
    for name, frame in sorted(datasets.items()):
        out = xpt.xpt_frame(frame, spec, name)
        a, b = both(frame, spec, name, tmp_path)
        assert a == b, name
        back, meta = pyreadstat.read_xport(str(tmp_path / "numpy.xpt"))
        assert meta.table_name == name and list(back.columns) == list(out.columns), name
        for c in out.columns:
            if out[c].dtype == object:
                assert back[c].tolist() == out[c].str.rstrip().tolist(), f"{name}.{c}"
            else:
                assert np.array_equal(back[c].to_numpy(), out[c].to_numpy(), equal_nan=True), f"{name}.{c}"
