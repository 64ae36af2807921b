"""The gate on a deliberately corrupted copy of a shipped study: `python -m pipeline validate`
exits 1 and its machine report names exactly the planted rows (issue 2, Done when)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, SPECS, copied_raw, plant_cell

STUDY = "NCT05164042"

# (file, spreadsheet row, column, planted value): each breaks one rule of specs/raw or specs/rules
PLANTS = [
    ("lb.csv", 3, "LBORRESU", "furlongs"),        # unit not listed for NEUT in lab_units.csv
    ("vs.csv", 3, "VSORRES", "999"),              # weight above the hard range
    ("ex.csv", 2, "EXSTDAT", "45-APR-2021"),      # impossible date
    ("crs.csv", 2, "TEMP", "abc"),                # not a number
    ("crs.csv", 5, "LOC", "DROWSY"),              # not an allowed value
]


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    raw = copied_raw(tmp_path_factory, STUDY)
    for file, row, column, value in PLANTS:
        plant_cell(raw / STUDY / file, row, column, value)
    out = tmp_path_factory.mktemp("out")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", "--study", STUDY, "--raw", str(raw),
                           "--specs", str(SPECS), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    report = pd.read_csv(out / "gate" / "gate_report.csv", dtype=str, keep_default_na=False)
    return proc, report


def test_exit_code_is_1_without_traceback(corrupted):
    proc, _ = corrupted
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout


def test_report_names_exactly_the_planted_rows(corrupted):
    _, report = corrupted
    errors = report[report["severity"] == "error"]
    assert set(zip(errors["file"], errors["row"].astype(int))) == {(f, r) for f, r, _, _ in PLANTS}
    for file, row, column, value in PLANTS:
        hit = errors[(errors["file"] == file) & (errors["row"].astype(int) == row) & (errors["column"] == column)]
        assert len(hit) >= 1 and (hit["value"] == value).all(), (file, row, column)
