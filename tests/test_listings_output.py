"""What write_listings writes for the hand-built study TESTR: the workbook (titles, frozen header,
filters, planted formula strings stay text), the HTML (planted markup escaped, subject groups,
skip notes), figures embedded, and byte-identical reruns (XLSX, HTML, PNG)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import datetime

import openpyxl
import pandas as pd
import pytest

from fixtures.report import reportkit as kit
from pipeline.report import excel, listings


@pytest.fixture(scope="module")
def data():
    return kit.exported()


@pytest.fixture(scope="module")
def out(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("study")
    (d / "reports").mkdir()
    pd.DataFrame({"form": ["ae"], "file": ["=cmd.csv"], "raw_records": [13], "status": ["ok"]}).to_csv(
        d / "reports" / "reconciliation.csv", index=False)
    listings.write_listings(d, data, kit.reports(), kit.context(data))
    return d / "listings"


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_files_written(out):
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"index.html", "listings.xlsx", "ae_by_subject.html", "ae_summary.html", "crs_icans.html", "ae_dlt_window.html",
            "lab_shift.html", "eligibility_failed.html", "response.html", "orr.html", "reconciliation.html",
            "coding_queries.html", "report_extra_report.html", "figures/swimmer.png", "figures/count_recovery.png",
            "figures/expansion.png"} <= names


def test_workbook_layout(out):
    wb = openpyxl.load_workbook(out / "listings.xlsx")
    # sheet names and order from specs/tlf/outputs.csv (tables, then listings, then reports)
    assert wb.sheetnames[:6] == ["AE summary", "Lab shift", "ORR", "AE by subject", "AEs in DLT window", "CRS-ICANS"]
    ws = wb["AE by subject"]
    assert ws["A1"].value == "Study TESTR: Adverse events by subject"
    assert ws["A2"].value == "Data cut-off 2025-06-30; generated 2025-06-30T00:00:00"
    header = [c.value for c in ws[5]]
    assert header[:3] == ["Unique Subject Identifier", "Cohort", "Sequence Number"]
    assert ws.freeze_panes == "A6"
    assert ws.auto_filter.ref == f"A5:{openpyxl.utils.get_column_letter(len(header))}{5 + 13}"
    assert ws.cell(row=6, column=3).value == 1 and ws.cell(row=6, column=3).data_type == "n"
    assert 6 <= ws.column_dimensions["A"].width <= excel.MAX_WIDTH
    props = wb.properties
    assert props.created == datetime(2025, 6, 30) and props.modified == datetime(2025, 6, 30)


def test_planted_formulas_stay_text_in_excel(out):
    wb = openpyxl.load_workbook(out / "listings.xlsx")
    ws = wb["AE by subject"]
    col = [c.value for c in ws[5]].index("Reported Term for the Adverse Event") + 1
    cells = {ws.cell(row=r, column=col).value: ws.cell(row=r, column=col) for r in range(6, ws.max_row + 1)}
    for planted in (kit.INJECTION_HYPERLINK, kit.INJECTION_CMD, kit.INJECTION_AT, kit.INJECTION_MINUS):
        cell = cells[planted]
        assert cell.data_type == "s", planted
        assert cell.quotePrefix, planted
    assert not cells["Fever"].quotePrefix
    # nowhere in the package is a cell stored as a formula (<f> element)
    with zipfile.ZipFile(out / "listings.xlsx") as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name
    rec = wb["Reconciliation"]  # no note row: header on row 4, the record on row 5
    assert [c.value for c in rec[4]] == ["Form", "File", "Raw Records", "Status"]
    assert rec["B5"].value == "=cmd.csv" and rec["B5"].data_type == "s" and rec["B5"].quotePrefix


def test_set_text_on_every_formula_prefix():
    wb = openpyxl.Workbook()
    ws = wb.active
    for i, v in enumerate(["=1+1", "+1", "-1", "@A1", "\tx", "\rx", "plain", "a=b"], start=1):
        excel.set_text(ws.cell(row=i, column=1), v)
    got = [(ws.cell(row=i, column=1).data_type, bool(ws.cell(row=i, column=1).quotePrefix)) for i in range(1, 9)]
    assert got == [("s", True)] * 6 + [("s", False), ("s", False)]


def _sheet_xml(ws) -> bytes:
    from openpyxl.worksheet._writer import WorksheetWriter
    writer = WorksheetWriter(ws)
    writer.write()
    writer.xf.close()
    with open(writer.out, "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("numeric,values", [
    (True, [1, 2.5, None, 0, -3, 1e20, None]),
    (False, ["=1+1", "+1", "", "-1", "@A1", "\tx", "plain", "a=b", "#N/A", " padded ", "plain"]),
    (False, ["=1", "x" * 40_000, "y"]),  # beyond the 32,767 characters of a cell: truncated
    (False, ["ok", "bell\x07", ""]),  # a character a worksheet cannot hold: openpyxl refuses it
])
def test_put_column_makes_the_cells_openpyxl_makes(numeric, values):
    """excel.put_column writes the cells that ws.cell() + the value setter (set_text for texts)
    write, cell for cell in the sheet's XML: types, quote prefixes, truncation of a text
    beyond 32,767 characters, empty values left out; a text openpyxl refuses is refused."""
    from openpyxl.utils.exceptions import IllegalCharacterError

    ref_wb, new_wb = openpyxl.Workbook(), openpyxl.Workbook()
    ref, new = ref_wb.active, new_wb.active
    try:
        for i, v in enumerate(values, start=3):
            if v is None or v == "":
                continue
            if numeric:
                ref.cell(row=i, column=2).value = v
            else:
                excel.set_text(ref.cell(row=i, column=2), v)
    except IllegalCharacterError:
        with pytest.raises(IllegalCharacterError):
            excel.put_column(new, 2, 3, values, numeric)
        return
    excel.put_column(new, 2, 3, values, numeric)
    assert new._current_row == ref._current_row
    assert _sheet_xml(new) == _sheet_xml(ref)


def test_sheet_names_are_valid_and_unique():
    taken = set()
    assert excel.sheet_name("a/b:c*d?[e]", taken) == "a-b-c-d--e-"
    long = "x" * 40
    assert excel.sheet_name(long, taken) == "x" * 31
    assert excel.sheet_name(long, taken) == "x" * 27 + " (2)"


def test_html_escapes_planted_markup(out):
    html = (out / "ae_by_subject.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "=HYPERLINK(&#34;http://x&#34;,&#34;click&#34;)" in html
    extra = (out / "report_extra_report.html").read_text(encoding="utf-8")
    assert "<b>bold</b>" not in extra and "&lt;b&gt;bold&lt;/b&gt;" in extra
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Listing test study &lt;CAR-T&gt; &amp; friends" in index  # the study title is escaped too


def test_html_listing_is_subject_by_subject(out):
    html = (out / "ae_dlt_window.html").read_text(encoding="utf-8")
    assert html.count('<tr class="subject">') == 3
    assert f'<th colspan="10">{kit.STUDY}-01-001 &middot; Dose level 1</th>' in html
    assert "Data cut-off 2025-06-30 &middot; generated 2025-06-30T00:00:00" in html
    assert "8 rows." in html


def test_index_links_listings_embeds_figures_and_notes_skipped(tmp_path, data):
    partial = {k: v for k, v in data.items() if k in ("DM", "AE", "SUPPAE")}
    listings.write_listings(tmp_path, partial, {}, kit.context(partial))
    index = (tmp_path / "listings" / "index.html").read_text(encoding="utf-8")
    assert 'href="ae_summary.html"' in index
    assert "Laboratory toxicity shift" in index and "not produced (dataset LB is not in this build)" in index
    assert "CAR-T expansion after infusion" in index and "(dataset PC is not in this build)" in index
    assert index.count('src="data:image/png;base64,') == 1  # only the swimmer plot (DM is there)


def test_index_embeds_every_figure(out):
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count('src="data:image/png;base64,') == 3


def test_rerun_is_byte_identical(tmp_path, data, out):
    (tmp_path / "reports").mkdir()
    pd.DataFrame({"form": ["ae"], "file": ["=cmd.csv"], "raw_records": [13], "status": ["ok"]}).to_csv(
        tmp_path / "reports" / "reconciliation.csv", index=False)
    listings.write_listings(tmp_path, data, kit.reports(), kit.context(data))
    assert _digests(tmp_path / "listings") == _digests(out)


def test_source_date_epoch_sets_the_generation_stamp(tmp_path, data, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1750000000")
    listings.write_listings(tmp_path, data, {}, kit.context(data))
    wb = openpyxl.load_workbook(tmp_path / "listings" / "listings.xlsx")
    assert wb["AE summary"]["A2"].value == "Data cut-off 2025-06-30; generated 2025-06-15T15:06:40"
    with zipfile.ZipFile(tmp_path / "listings" / "listings.xlsx") as z:
        assert {i.date_time for i in z.infolist()} == {excel.ZIP_STAMP}


def test_workbook_bytes_are_deterministic():
    frame = pd.DataFrame({"A": ["x", "=y"], "N": [1, 2.5]})
    sheets = [excel.Sheet("S", "t", frame, ["A", "N"], "", {"N"})]
    stamp = datetime(2024, 1, 1)
    a = excel.workbook_bytes(sheets, "Study X", "stamp", stamp)
    b = excel.workbook_bytes(sheets, "Study X", "stamp", stamp)
    assert a == b
    core = zipfile.ZipFile(io.BytesIO(a)).read("docProps/core.xml")
    assert core.count(b"2024-01-01T00:00:00Z") == 2
