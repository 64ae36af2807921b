"""The Excel view of the spec: sheets, layout, content from the spec, deterministic bytes."""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import openpyxl

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit  # noqa: E402

from pipeline.export.spec_xlsx import run_spec_xlsx, workbook_bytes  # noqa: E402
from pipeline.spec import load_spec  # noqa: E402


def test_workbook_layout_and_content(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    data = workbook_bytes(load_spec(exportkit.SPECS))
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Datasets", "Variables", "ValueLevel", "Codelists", "Methods", "Comments", "Standards"]
    ds = wb["Datasets"]
    assert [c.value for c in ds[1]][:6] == ["Dataset", "Description", "Class", "Structure", "Purpose", "Key Variables"]
    assert [c.value for c in ds[3]][:2] == ["AE", "Adverse Events"]
    assert ds[3][5].value == "STUDYID, USUBJID, AETERM, AESTDTC"
    var = wb["Variables"]
    assert var.freeze_panes == "A2" and var.auto_filter.ref == "A1:M27"
    rows = [[c.value for c in r] for r in var.iter_rows(min_row=2)]
    assert rows[0][:7] == ["DM", 1, "STUDYID", "Study Identifier", "text", None, "Req"]
    aeser = next(r for r in rows if r[2] == "AESER")
    assert aeser[5] == "1" and aeser[8] == "NY" and aeser[10] == "ae.AESER"
    assert wb["ValueLevel"]["C2"].value == "LBTESTCD EQ ALT"
    cl = [[c.value for c in r] for r in wb["Codelists"].iter_rows(min_row=2)]
    assert ["SEX", "Sex", "C66731", "No", 2, "M", "C20197", "Male"] in [r[:8] for r in cl]
    assert wb.properties.created.year == 2000 and wb.properties.modified.year == 2000


def test_workbook_is_byte_identical_and_zip_times_fixed(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    args = argparse.Namespace(specs=exportkit.SPECS, out=tmp_path, xlsx=None)
    assert run_spec_xlsx(args) == 0
    first = (tmp_path / "spec" / "sdtm_spec.xlsx").read_bytes()
    assert run_spec_xlsx(argparse.Namespace(specs=exportkit.SPECS, out=tmp_path, xlsx=tmp_path / "b.xlsx")) == 0
    assert (tmp_path / "b.xlsx").read_bytes() == first
    z = zipfile.ZipFile(io.BytesIO(first))
    assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert b"2023-11-14T22:13:20Z" in z.read("docProps/core.xml")
