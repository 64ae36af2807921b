"""The autoimmune disease-activity totals are whole numbers, and the gate holds them to it.

SLEDAI-2K (item weights 1, 2, 4, 8), BVAS v3 (whole points per item) and mRSS (17 areas scored
0-3) can only total a whole number. The response rules of ``specs/rules/response_autoimmune.csv``
compare them with whole-number cut-offs (SLEDAI-2K <= 4 and +4, BVAS > 0, mRSS +5), so a
fractional total is a transcription error: ``specs/raw/columns.csv`` types the four columns
``int`` and the gate rejects "7.5" with the type.int error. PGA, TIS and CRISS stay decimal.
"""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.config import load_study
from pipeline.intake.gate import gate_detail
from pipeline.spec import load_spec

from conftest import SPECS, copied_raw, plant_cell

SID = "ZJU-CD7-AID"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    raw = copied_raw(tmp_path_factory, SID)
    path = raw / SID / "rs.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    planted_rows = {}
    for col, value in (("DASCORE", "7.5"), ("CSLEDAI", "3.5"), ("BVAS", "2.5"), ("MRSS", "19.5"),
                       ("PGA", "0.45"), ("TIS", "27.5"), ("CRISS", "0.39")):
        i = rows[0].index(col)   # a row holding a score of this column, one row per column
        planted_rows[col] = next(k for k, r in enumerate(rows[1:], start=2) if r[i] and k not in planted_rows.values())
        plant_cell(path, planted_rows[col], col, value)
    spec = load_spec(SPECS)
    result = gate_detail(raw, load_study(SPECS, SID), spec)
    return result.findings, planted_rows


def test_fractional_disease_activity_totals_are_type_errors(planted):
    findings, rows = planted
    rs = findings[findings["file"] == "rs.csv"]
    got = {(r.column, int(r.row)) for r in rs.itertuples() if r.check == "type.int" and r.severity == "error"}
    assert got == {(c, rows[c]) for c in ("DASCORE", "CSLEDAI", "BVAS", "MRSS")}
    msg = rs.loc[(rs["column"] == "BVAS") & (rs["check"] == "type.int"), "message"].iloc[0]
    assert "whole number" in msg


def test_decimal_scores_stay_decimal(planted):
    findings, _ = planted
    rs = findings[(findings["file"] == "rs.csv") & findings["column"].isin(["PGA", "TIS", "CRISS"])]
    assert rs.empty
