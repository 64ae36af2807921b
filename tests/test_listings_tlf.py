"""RTF and PDF outputs of the hand-built study TESTR, read back as a reviewer's tools read them
(pypdf text extraction; the RTF's text parsed out with striprtf, its page header and footer
groups parsed separately): titles and footnotes from specs/tlf, ``Page 1 of N`` against the
pages actually in the file, source/cut-off/program/run lines, the first rows against the
fixture data, and byte-identical reruns."""

from __future__ import annotations

import io
from datetime import datetime
import re

import pandas as pd
import pytest

from fixtures.report import reportkit as kit
from pipeline.report import listings, tlf

pypdf = pytest.importorskip("pypdf", reason="pypdf (test extra) is needed to read the PDFs back")
striprtf = pytest.importorskip("striprtf.striprtf", reason="striprtf (test extra) is needed to read the RTFs back")

SPEC = listings.load_config(listings.DEFAULT_TLF_SPEC)


def _entry(oid):
    return next(e for e in SPEC["listing"] + list(SPEC["figures"].values()) if e["id"] == oid)


@pytest.fixture(scope="module")
def data():
    return kit.exported()


@pytest.fixture(scope="module")
def out(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("tlf")
    listings.write_listings(d, data, kit.reports(), kit.context(data))
    return d / "listings" / "tlf"


def _group(rtf: str, word: str) -> str:
    """The text of the RTF group opened by ``{\\<word>`` (brace matched)."""
    start = rtf.index("{\\" + word)
    depth = 0
    for i in range(start, len(rtf)):
        depth += {"{": 1, "}": -1}.get(rtf[i], 0) if rtf[i - 1] != "\\" else 0
        if depth == 0:
            return striprtf.rtf_to_text("{\\rtf1 " + rtf[start + len(word) + 2:i] + "}")
    raise AssertionError(f"unbalanced group {word}")


#: RTF's non-breaking hyphen (``\\_``, tlf.rtf_cell) as striprtf reads it: a hyphen to a reader
NB_HYPHEN = "\u2011"


def _rtf(path):
    raw = path.read_bytes().decode("cp1252")
    return raw, striprtf.rtf_to_text(raw).replace(NB_HYPHEN, "-"), _group(raw, "header"), _group(raw, "footer")


def _pdf(path):
    reader = pypdf.PdfReader(io.BytesIO(path.read_bytes()))
    return reader, [p.extract_text() for p in reader.pages]


def test_every_spec_output_with_rtf_pdf_is_written(out):
    names = {p.name for p in out.iterdir()}
    # TESTR is an SDTM-only fixture: outputs from ADaM datasets (ADRS, ADAE, ADTTE, ADLB, ...) or
    # from reports or datasets it does not have (bor, protocol_deviations, CM: the cm listing is checked
    # on the real build, tests/test_build_real_tree.py) are skipped with a reason
    reports = set(kit.reports())
    for e in SPEC["listing"] + list(SPEC["figures"].values()):
        adam_source = any(str(x).startswith("AD") for x in str(e.get("source", "")).split())
        if adam_source or (e.get("report") and e["report"] not in reports) or e["id"] in ("protocol_deviations", "cm") \
                or not {"rtf", "pdf"} & set(e["formats"]):
            continue
        stem = listings.tlf_file_stem(e)
        assert {f"{stem}.rtf", f"{stem}.pdf"} <= names, e["id"]
    assert "t14_3_1_1_ae_summary.rtf" in names and "l16_2_7_1_ae_by_subject.pdf" in names


def test_pdf_ae_listing_reads_back(out, data):
    reader, pages = _pdf(out / "l16_2_7_1_ae_by_subject.pdf")
    first = pages[0]
    n = len(reader.pages)
    assert f"Page 1 of {n}" in first and f"Page {n} of {n}" in pages[-1]
    assert "Listing 16.2.7.1" in first and "Adverse events by subject" in first
    assert "Population: All subjects" in first
    assert _entry("ae_by_subject")["footnotes"][0] in " ".join(first.split("\n"))
    assert "Source: AE, SUPPAE, DM. Data cut-off: 2025-06-30." in first
    assert "Program: pipeline.report.listings.build_ae_listing" in first and "Run: 2025-06-30T00:00:00" in first
    # column headers come from the SDTM spec labels and repeat on every page
    for p in pages:
        assert "Reported Term for the Adverse Event" in " ".join(p.split("\n"))
    # the first rows: the fixture's AE records by subject, start date and sequence
    ae = data["AE"].sort_values(["USUBJID", "AESTDTC", "AESEQ"], kind="mergesort")
    lines = first.split("\n")
    flat = " ".join(lines)  # a long term may wrap inside its cell
    at = [flat.index(" " + t + " ") for t in ae["AETERM"].head(3)]
    assert at == sorted(at) and len(set(at)) == 3
    assert ae["AETERM"].head(3).tolist() == ["Fever", "CRS", "Cytokine release syndrome"]
    assert flat.index("TESTR-01-001 Dose level 1 1 ") < at[0]


def test_pdf_metadata_are_the_run_stamp(out):
    reader, _ = _pdf(out / "t14_3_1_1_ae_summary.pdf")
    meta = reader.metadata
    assert meta["/CreationDate"] == "D:20250630000000+00'00'" == meta["/ModDate"]
    assert meta["/Title"] == "Table 14.3.1.1 " + _entry("ae_summary")["title"]


def test_rtf_ae_summary_reads_back(out, data):
    raw, text, header, footer = _rtf(out / "t14_3_1_1_ae_summary.rtf")
    pages = len(re.findall(r"(?<!\\)\\page(?![A-Za-z])", raw)) + 1
    assert f"Page 1 of {pages}" in header and "Study TESTR" in header
    assert "Table 14.3.1.1" in text and _entry("ae_summary")["title"] in text
    assert "Number (%) of subjects" in text
    assert _entry("ae_summary")["footnotes"][1] in text
    # TESTR has no ADaM: the table says it was made from SDTM
    assert "Source: AE, DM, (ADaM, ADAE/ADSL, not, in, this, build). Data cut-off: 2025-06-30." not in footer
    assert "Source: AE, DM (ADaM ADAE/ADSL not in this build). Data cut-off: 2025-06-30." in footer
    assert "Population: Treated subjects (DM.RFSTDTC not empty)" in text and "N = 3 subjects." in text
    assert "Program: pipeline.report.listings.build_ae_summary" in footer
    rows = [r.split("|") for r in text.splitlines() if "|" in r]
    assert rows[0][:3] == ["Body System or Organ Class", "Dictionary-Derived Term", "Grade 1"]
    # Any adverse event: 3 treated subjects, all with a countable TEAE (test_listings_tables)
    assert rows[1][0] == "Any adverse event" and rows[1][-2] == "3 (100.0%)"


def test_rtf_listing_first_rows_and_planted_text(out, data):
    raw, text, header, footer = _rtf(out / "l16_2_7_1_ae_by_subject.rtf")
    assert "\\landscape" in raw
    rows = [r.split("|") for r in text.splitlines() if r.count("|") > 5]
    assert rows[0][0] == "Unique Subject Identifier"
    ae = data["AE"].sort_values(["USUBJID", "AESTDTC", "AESEQ"], kind="mergesort")
    firsts = [(r[0], r[3]) for r in rows[1:4]]
    assert firsts == list(zip(ae["USUBJID"].head(3), ae["AETERM"].head(3)))
    # data texts stay text: RTF control characters are escaped (tlf.rtf_escape)
    assert kit.INJECTION_HYPERLINK in text and kit.INJECTION_SCRIPT in text


def test_figure_outputs_embed_the_png(out):
    raw, text, header, footer = _rtf(out / "f14_2_2_1_swimmer.rtf")
    assert "\\pngblip" in raw and "Figure 14.2.2.1" in text
    reader, pages = _pdf(out / "f14_2_2_1_swimmer.pdf")
    assert "Figure 14.2.2.1" in pages[0] and "Page 1 of 1" in pages[0]
    assert reader.pages[0].images  # the figure is drawn as an image


def test_figure_pdf_from_the_canvas_pixels_is_the_pdf_of_the_png(data):
    """The PDF of a figure embeds the pixels matplotlib drew (figures.png_and_pixels) and is the
    PDF reportlab makes from the PNG itself, byte for byte; the pixels are the PNG's."""
    from PIL import Image

    from pipeline.report import figures

    inp = listings.prepare(data, {}, kit.context(data))
    order = listings._response_order(inp.spec)
    lanes, markers, shown = figures.swimmer_data(inp.subjects, data["RS"], order, "OVRLRESP",
                                                 ["INVESTIGATOR", "SPONSOR"], "2025-06-30")
    png, pixels = figures.png_and_pixels(figures.swimmer_figure(lanes, markers, order, "Swimmer", shown))
    decoded = Image.open(io.BytesIO(png))
    assert (pixels.mode, pixels.size) == (decoded.mode, decoded.size) == ("RGBA", decoded.size)
    assert pixels.tobytes() == decoded.tobytes()
    stamp = datetime(2025, 6, 30)
    doc = tlf.Doc(studyid=kit.STUDY, type="Figure", number="14.2.2.1", title="Swimmer", png=png,
                  orientation="landscape")
    with_pixels = tlf.Doc(**{**doc.__dict__, "image": pixels})
    assert tlf.pdf_bytes(with_pixels, stamp, lay=tlf.layout(with_pixels)) == tlf.pdf_bytes(doc, stamp, lay=tlf.layout(doc))


def test_no_records_output_says_so():
    doc = tlf.Doc(studyid="X", type="Listing", number="1", title="Empty", headers=["A", "B"], rows=[],
                  align=["l", "l"], source="AE", cutoff="2025-01-01", program="p", run="r")
    from datetime import datetime
    assert tlf.NO_RECORDS in pypdf.PdfReader(io.BytesIO(tlf.pdf_bytes(doc, datetime(2025, 1, 1)))).pages[0].extract_text()
    assert tlf.NO_RECORDS in striprtf.rtf_to_text(tlf.rtf_text(doc))


def test_long_listing_paginates_with_repeated_headers():
    rows = [[f"S-{i:03d}", "word " * (i % 7 + 1)] for i in range(150)]
    doc = tlf.Doc(studyid="X", type="Listing", number="9", title="Long", headers=["Subject", "Text"], rows=rows,
                  align=["l", "l"], orientation="portrait", source="AE", cutoff="2025-01-01", program="p", run="r")
    from datetime import datetime
    reader = pypdf.PdfReader(io.BytesIO(tlf.pdf_bytes(doc, datetime(2025, 1, 1))))
    n = len(reader.pages)
    assert n >= 2
    seen = []
    for i, page in enumerate(reader.pages, start=1):
        t = page.extract_text().split("\n")
        assert f"Page {i} of {n}" in t and any(x.split()[:2] == ["Subject", "Text"] for x in t)  # header line
        seen += [x.split()[0] for x in t if x.startswith("S-")]  # a row reads as one line: subject, text
    assert seen == [r[0] for r in rows]  # every row once, in order, none lost at a page break
    raw = tlf.rtf_text(doc)
    breaks = len(re.findall(r"(?<!\\)\\page(?![A-Za-z])", raw))
    assert breaks >= 1
    assert "\\fldinst NUMPAGES }{\\fldrslt " + str(breaks + 1) + "}" in raw


def test_rtf_keeps_data_text_verbatim():
    """No text conversions, RTF specials escaped: underscores, carets, >=, braces and
    backslashes come back as written; a non-Latin character as itself."""
    planted = ["AE_1 x^2", ">= 3 {b} \\par \\", "CAR-T \u2265 1e6 \u7ec6\u80de"]
    doc = tlf.Doc(studyid="X_1", type="Listing", number="2", title="t_i {t}", headers=["A_B", "C"],
                  rows=[[planted[0], planted[1]], [planted[2], "x"]], align=["l", "l"], footnotes=["n_1 >= 2"],
                  source="AE", cutoff="2025-01-01", program="p", run="r")
    text = striprtf.rtf_to_text(tlf.rtf_text(doc)).replace(NB_HYPHEN, "-")
    for p in planted + ["t_i {t}", "A_B", "n_1 >= 2"]:
        assert p in text, p


def test_memoised_pdf_text_writes_the_same_bytes(monkeypatch):
    """The PDF's table text drawn through the memoised text object (tlf.PDF_MEMO) is the PDF
    reportlab's own text object writes: repeated values and positions over several pages,
    right-aligned numbers, and more than 256 distinct characters, so that the embedded font
    needs several subsets and the text switches between them (the state the memo keeps)."""
    letters = [chr(c) for c in range(0x100, 0x17F)] + [chr(c) for c in range(0x391, 0x3C9)] + \
        [chr(c) for c in range(0x410, 0x44F)]
    rows = [[f"S-{i % 7:03d}", "".join(letters[(i * 5) % len(letters):(i * 5) % len(letters) + 6]) + " x",
             "word " * (i % 4 + 1), str(i % 11)] for i in range(400)]
    doc = tlf.Doc(studyid="X", type="Listing", number="9", title="Long", headers=["Subject", "Text", "Words", "N"],
                  rows=rows, align=["l", "l", "l", "r"], orientation="landscape", footnotes=["f"], source="AE",
                  cutoff="2025-01-01", program="p", run="r")
    stamp = datetime(2025, 1, 1)
    lay = tlf.layout(doc)
    assert lay.total > 3
    memo = tlf.pdf_bytes(doc, stamp, lay=lay)
    monkeypatch.setattr(tlf, "PDF_MEMO", False)
    assert tlf.pdf_bytes(doc, stamp, lay=lay) == memo


def test_wrapper_breaks_words_wider_than_the_column():
    w = tlf._Wrapper(tlf.FONT, 7)
    lines = w("X" * 60, 30.0)
    assert len(lines) > 1 and "".join(lines) == "X" * 60


def test_source_date_epoch_sets_the_run_stamp(tmp_path, data, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1750000000")
    listings.write_listings(tmp_path, data, {}, kit.context(data))
    reader, pages = _pdf(tmp_path / "listings" / "tlf" / "t14_3_1_1_ae_summary.pdf")
    assert reader.metadata["/CreationDate"] == "D:20250615150640+00'00'"
    assert "Run: 2025-06-15T15:06:40" in pages[0]
    _, _, _, footer = _rtf(tmp_path / "listings" / "tlf" / "t14_3_1_1_ae_summary.rtf")
    assert "Run: 2025-06-15T15:06:40" in footer


def test_spec_columns_are_not_relabelled(data):
    """Headers of dataset variables come from the dataset spec: settings.toml [labels] may
    only name derived columns, never a variable of the spec."""
    spec = kit.context(data).spec
    variables = set(spec.variables["variable"])
    assert not (set(SPEC["labels"]) & variables)
    cols = pd.read_csv(listings.DEFAULT_TLF_SPEC / "columns.csv", dtype=str, keep_default_na=False)
    assert set(cols["output"]) <= {e["id"] for e in SPEC["listing"]}


# ---------------------------------------------------------------------------------------
# the DLT listing from ADAE's DLT flag
# ---------------------------------------------------------------------------------------
def _adam(data):
    """ADAE/ADSL in export form for TESTR: 001 has a DLT (grade 3 CRS, rule CRS) and a
    non-DLT AE; 002 has a DLT but is not DLT-evaluable; 003 has none."""
    u = [f"{kit.STUDY}-01-{s}" for s in ("001", "001", "002", "003")]
    astdt = (pd.to_datetime(["2025-01-12", "2025-01-11", "2025-01-22", "2025-02-10"]) - pd.Timestamp("1960-01-01")).days
    adae = pd.DataFrame({"STUDYID": kit.STUDY, "USUBJID": u, "AESEQ": [4.0, 1.0, 1.0, 1.0],
                         "AETERM": ["Cytokine release syndrome", "Fever", "High fever", "Anemia"],
                         "AEDECOD": ["Cytokine release syndrome", "Fever", "Fever", "Anemia"],
                         "ATOXGR": ["3", "1", "3", "2"], "AESER": ["Y", "N", "Y", "N"],
                         "AEREL": ["RELATED", "RELATED", "RELATED", "NOT RELATED"], "ASTDT": astdt.astype(float),
                         "ASTPDY": [2.0, 1.0, 2.0, 9.0], "DLTFL": ["Y", "N", "Y", "N"],
                         "DLTRULE": ["CRS", "", "NONHEM", ""], "AEOUT": ["RECOVERED/RESOLVED"] * 4})
    adae["TRTEMFL"] = ["Y", "Y", "Y", "N"]
    adae["AEBODSYS"] = ["Immune system disorders", "General disorders and administration site conditions",
                        "General disorders and administration site conditions", "Blood and lymphatic system disorders"]
    adsl = pd.DataFrame({"STUDYID": kit.STUDY, "USUBJID": [f"{kit.STUDY}-01-{s}" for s in ("001", "002", "003")],
                         "DLTEVLFL": ["Y", "N", "Y"], "SAFFL": ["Y", "Y", "Y"]})
    return {**data, "ADAE": adae, "ADSL": adsl}


def test_dlt_listing_is_the_flagged_events_of_evaluable_subjects(data):
    full = _adam(data)
    inp = listings.prepare(full, {}, kit.context(full))
    done, skipped = listings.build_listings(inp)
    dlt = {d.id: d for d in done}["dlt"]
    f = dlt.frame
    # 001's CRS only: 001's fever is not a DLT, 002 is not DLT-evaluable
    assert f[["USUBJID", "AEDECOD", "ATOXGR", "DLTRULE", "ASTDT"]].values.tolist() == [
        [f"{kit.STUDY}-01-001", "Cytokine release syndrome", "3", "CRS", "2025-01-12"]]
    h = dict(zip(f.columns, dlt.headers))
    assert h["ATOXGR"] == "Analysis Toxicity Grade" and h["DLTRULE"] == "DLT Criterion Met"  # specs/adam labels
    assert "ASTDT" not in dlt.numeric and "ASTPDY" in dlt.numeric
    # the window listing keeps its honest title beside it
    assert {d.id: d for d in done}["ae_dlt_window"].title.startswith(
        "Treatment-emergent adverse events with onset in the DLT observation window")


def test_dlt_rtf_and_pdf_read_back_against_adae(tmp_path, data):
    full = _adam(data)
    ctx = kit.context(full)
    listings.write_listings(tmp_path, {k: v for k, v in full.items() if not k.startswith("AD")}, {},
                            type("Ctx", (), {"study": ctx.study, "spec": ctx.spec, "adam": {k: full[k] for k in ("ADAE", "ADSL")}})())
    folder = tmp_path / "listings" / "tlf"
    reader, pages = _pdf(folder / "l16_2_7_2_dlt.pdf")
    first = pages[0]
    assert "Listing 16.2.7.2" in first and "Dose-limiting toxicities by subject" in first
    assert "Page 1 of 1" in first and "Source: ADAE, ADSL." in first
    assert "Population: DLT-evaluable subjects (ADSL.DLTEVLFL = Y)" in first
    lines = first.split("\n")
    # a row reads as a line (its wrapped cells continue on the next lines)
    i = next(k for k, x in enumerate(lines) if x.startswith(f"{kit.STUDY}-01-001 "))
    row = " ".join(lines[i:i + 4]).split()
    assert "2025-01-12" in row and "CRS" in row
    assert f"{kit.STUDY}-01-002" not in first
    _, text, header, _ = _rtf(folder / "l16_2_7_2_dlt.rtf")
    rows = [r.split("|") for r in text.splitlines() if r.count("|") > 5]
    assert rows[1][:3] == [f"{kit.STUDY}-01-001", "Dose level 1", "4"] and "CRS" in rows[1]
    assert len(rows) == 2 and "Page 1 of 1" in header
    assert _entry("dlt")["footnotes"][0] in text


def test_ae_summary_reads_adam_when_present(data):
    """With ADAE/ADSL: TEAEs by TRTEMFL, grades by ATOXGR, N = SAFFL = Y (3). 003's anemia is
    not treatment emergent; 001's worst is grade 3 (CRS), 002's grade 3 (fever)."""
    full = _adam(data)
    inp = listings.prepare(full, {}, kit.context(full))
    done, _ = listings.build_listings(inp)
    t = {d.id: d for d in done}["ae_summary"]
    rows = t.frame.set_index(["AEBODSYS", "AEDECOD"])
    anyrow = rows.loc[("Any adverse event", "")]
    assert anyrow["Grade 3"] == "2 (66.7%)" and anyrow["Any Grade"] == "2 (66.7%)" and anyrow["Grade 1"] == "0"
    assert rows.loc[("", "Fever"), "Grade 3"] == "1 (33.3%)" and rows.loc[("", "Fever"), "Grade 1"] == "1 (33.3%)"
    assert "Anemia" not in set(t.frame["AEDECOD"])
    assert t.entry["source"] == "ADAE ADSL" and t.entry["footnotes"][-1] == "N = 3 subjects."


def test_pdf_prints_text_beyond_latin1_and_reruns_identically():
    """The PDF embeds DejaVu Sans (shipped with matplotlib): µ, ≥, × and Greek come back as
    written instead of "?"; a character the font lacks (here CJK) prints as "?", never silently
    dropped; the same document renders to the same bytes."""
    from datetime import datetime
    assert tlf.pdf_fonts()[2] is not None, "DejaVu Sans (matplotlib) should be available"
    planted = ["IL-6 50 pg/mL \u2265 ULN", "10\u2079 cells \u00d7 \u03bcL", "\u03b2-2 microglobulin", "\u7ec6\u80de"]
    doc = tlf.Doc(studyid="X", type="Listing", number="3", title="Unicode \u2265", headers=["Value"],
                  rows=[[p] for p in planted], align=["l"], source="LB", cutoff="2025-01-01", program="p", run="r")
    a = tlf.pdf_bytes(doc, datetime(2025, 1, 1))
    assert a == tlf.pdf_bytes(doc, datetime(2025, 1, 1))
    text = pypdf.PdfReader(io.BytesIO(a)).pages[0].extract_text()
    for p in planted[:3]:
        assert p in text, p
    assert "??" in text and "\u7ec6" not in text
    assert "Unicode \u2265" in text


def test_line_breaks_keep_short_compounds_and_identifiers_whole():
    pieces = [a for a, _ in tlf.atoms("Donor-derived CD7 CAR-T IL-6 NCT06316427-01-002 2024-05-10 mg/dL")]
    assert pieces == ["Donor-", "derived", "CD7", "CAR-T", "IL-6", "NCT06316427-01-002", "2024-05-10", "mg/", "dL"]


# ---------------------------------------------------------------------------------------
# one pagination for both writers (tlf.layout): same pages, same "Page x of y"
# ---------------------------------------------------------------------------------------
_BREAK = re.compile(r"(?<!\\)\\page(?![A-Za-z])")


def _page_numbers(raw: str) -> tuple[int, int]:
    """(pages in the RTF: page breaks + 1, the N of its ``Page x of N`` field)."""
    n = re.search(r"\\fldinst NUMPAGES }{\\fldrslt (\d+)}", raw)
    return len(_BREAK.findall(raw)) + 1, int(n.group(1))


def _rtf_page_first_cells(raw: str) -> list[str]:
    """The first body cell of every RTF page (page text split at the page breaks)."""
    body = raw[raw.index("\\trowd"):]
    out = []
    for chunk in _BREAK.split(body):
        rows = [r.split("|") for r in striprtf.rtf_to_text("{\\rtf1 " + chunk + "}").splitlines() if "|" in r]
        out.append(rows[1][0].replace(NB_HYPHEN, "-"))  # rows[0]: the repeated column headers
    return out


def _check_same_pages(rtf_raw: str, pdf: bytes) -> int:
    """PDF pages = RTF pages (breaks + 1) = the N of the RTF's field = the N of every PDF page."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    n_pdf = len(reader.pages)
    n_rtf, n_field = _page_numbers(rtf_raw)
    assert n_pdf == n_rtf == n_field
    for i, page in enumerate(reader.pages, start=1):
        assert f"Page {i} of {n_pdf}" in page.extract_text()
    return n_pdf


def _simple_doc(n_rows: int, orientation: str = "portrait") -> tlf.Doc:
    rows = [[f"S-{i:03d}", "x"] for i in range(n_rows)]
    return tlf.Doc(studyid="X", type="Listing", number="9", title="Short rows", headers=["Subject", "Value"],
                   rows=rows, align=["l", "l"], orientation=orientation, source="AE", cutoff="2025-01-01",
                   program="p", run="r")


def test_rows_per_page_of_single_line_rows_by_hand():
    """Portrait US letter, margins 0.6 in, 7 pt body, heading and title, no footnote. A row of
    one line is 7 * 1.25 + 2 * 2 = 12.75 pt. RTF page body: 792 - 2 * (43.2 + 25.2) = 655.2,
    less the titles 18 + 2 * 11.5 = 41 and the slack 12: 602.2; less the header row 12.75:
    589.45, room for 46 rows (46 * 12.75 = 586.5). The PDF body (792 - 86.4 - 46 - 27 - 12.75
    = 619.85, 48 rows) is larger: 46 rows a page in both. 100 rows: 46 + 46 + 8, 3 pages."""
    doc = _simple_doc(100)
    lay = tlf.layout(doc, 7, 0.6)
    assert lay.pages == [(0, 46), (46, 92), (92, 100)]
    from datetime import datetime
    raw = tlf.rtf_text(doc, 7, 0.6, lay)
    assert _check_same_pages(raw, tlf.pdf_bytes(doc, datetime(2025, 1, 1), 7, 0.6, lay)) == 3
    assert _rtf_page_first_cells(raw) == ["S-000", "S-046", "S-092"]
    reader = pypdf.PdfReader(io.BytesIO(tlf.pdf_bytes(doc, datetime(2025, 1, 1), 7, 0.6, lay)))
    firsts = [[x for x in p.extract_text().split("\n") if x.startswith("S-")][0].split()[0] for p in reader.pages]
    assert firsts == ["S-000", "S-046", "S-092"]
    # without a layout passed, each writer computes the same one
    assert tlf.rtf_text(doc, 7, 0.6) == raw


def test_wrapped_wide_listing_has_the_same_pages_in_rtf_and_pdf():
    """Landscape, 9 columns, texts that wrap to 1-4 lines, two footnotes: the RTF's page
    breaks, its NUMPAGES and the PDF's pages agree, and each page starts at the same row."""
    words = ["Cytokine release syndrome", "Immune effector cell-associated neurotoxicity syndrome",
             "RECOVERED/RESOLVED WITH SEQUELAE", "Fever", "New Donor-derived CD7 CAR-T"]
    rows = [[f"NCT0-01-{i:03d}", words[i % 5], words[(i * 3) % 5], str(i), "2024-05-10T08:15", words[(i + 2) % 5],
             "Y", "PROBABLY RELATED", words[(i * 7) % 5] * (1 + i % 2)] for i in range(160)]
    doc = tlf.Doc(studyid="X", type="Listing", number="16.2.7.1", title="Wide", subtitle="All records",
                  population="All subjects", headers=["Unique Subject Identifier", "Reported Term", "Preferred Term",
                                                      "Sequence Number", "Start Date/Time", "System Organ Class",
                                                      "Serious", "Causality", "Comment"],
                  rows=rows, align=["l", "l", "l", "r", "l", "l", "l", "l", "l"], orientation="landscape",
                  footnotes=["First footnote, long enough to wrap " * 6, "Second footnote."],
                  source="AE", cutoff="2025-01-01", program="p", run="r")
    from datetime import datetime
    lay = tlf.layout(doc, 7, 0.6, 6)
    raw = tlf.rtf_text(doc, 7, 0.6, lay)
    pdf = tlf.pdf_bytes(doc, datetime(2025, 1, 1), 7, 0.6, lay)
    n = _check_same_pages(raw, pdf)
    assert n == lay.total > 3
    assert _rtf_page_first_cells(raw) == [rows[a][0] for a, _ in lay.pages]
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    firsts = [[x for x in p.extract_text().split("\n") if x.startswith("NCT0-")][0].split()[0] for p in reader.pages]
    assert firsts == [rows[a][0] for a, _ in lay.pages]


def test_study_outputs_have_the_same_pages_in_rtf_and_pdf(out):
    """Every RTF/PDF pair written for TESTR: PDF pages = RTF pages = the N of both."""
    pairs = sorted(p.stem for p in out.glob("*.rtf"))
    assert len(pairs) >= 8
    for stem in pairs:
        raw = (out / f"{stem}.rtf").read_bytes().decode("cp1252")
        _check_same_pages(raw, (out / f"{stem}.pdf").read_bytes())


def test_too_wide_listing_gets_a_smaller_font_not_broken_words():
    """12 landscape columns (705.6 pt between the margins). Longest words at 1 pt of DejaVu
    Sans: "NCT06316427-01-002" 11.05, "2024-05-11T00:45" 9.30, "Investigations" 7.01,
    "RECOVERED/" 6.56 pt, each in 3 columns: 101.76 pt, plus 2 * 2 pt padding per column. At
    7 pt: 712.3 + 48 > 705.6, words would break; at 6 pt: 610.6 + 48 = 658.6 fits. The layout
    takes 6 pt (the spec's min_font_size) for both files; no word is broken."""
    head = ["Unique Subject Identifier", "Start Date/Time", "Outcome", "Body System"] * 3
    row = ["NCT06316427-01-002", "2024-05-11T00:45", "RECOVERED/RESOLVED", "Investigations"] * 3
    doc = tlf.Doc(studyid="X", type="Listing", number="1", title="Wide", headers=head, rows=[row] * 3,
                  align=["l"] * 12, orientation="landscape", source="AE", cutoff="2025-01-01", program="p", run="r")
    assert tlf.layout(doc, 7, 0.6).font_size == 7  # no min_font_size: the spec's size
    lay = tlf.layout(doc, 7, 0.6, 6)
    assert lay.font_size == 6
    for cells in lay.cells:
        for value, lines in zip(row, cells):
            whole = {a for a, _ in tlf.atoms(value)}
            assert all(a in whole for ln in lines for a, _ in tlf.atoms(ln)), (value, lines)
    raw = tlf.rtf_text(doc, 7, 0.6, lay)
    assert "\\fs12" in raw and "\\fs14" not in raw.split("\\trowd", 1)[1].split("\\pard", 1)[0]


def test_figure_rtf_keeps_the_png_aspect_ratio(out):
    """The swimmer PNG is about square: the RTF's picture size keeps its aspect (\\picwgoal /
    \\pichgoal in twips), within rounding."""
    png = (out.parent / "figures" / "swimmer.png").read_bytes()
    w, h = tlf.png_size(png)
    raw = (out / "f14_2_2_1_swimmer.rtf").read_bytes().decode("cp1252")
    gw = int(re.search(r"\\picwgoal(\d+)", raw).group(1))
    gh = int(re.search(r"\\pichgoal(\d+)", raw).group(1))
    assert abs(gw / gh - w / h) < 0.01


def test_libreoffice_renders_the_rtf_on_the_laid_out_pages(tmp_path):
    """A word processor (LibreOffice headless, when installed) lays the RTF out on exactly
    the pages the layout decided: nothing overflows onto an extra page."""
    import shutil
    import subprocess
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed: the RTF is not rendered by a word processor here")
    doc = _simple_doc(100)
    (tmp_path / "short.rtf").write_bytes(tlf.rtf_bytes(doc, 7, 0.6))
    rows = [[f"S-{i:03d}", "Immune effector cell-associated neurotoxicity syndrome " * (1 + i % 3)]
            for i in range(120)]
    wide = tlf.Doc(studyid="X", type="Listing", number="2", title="Wrapped", headers=["Subject", "Term"], rows=rows,
                   align=["l", "l"], orientation="landscape", footnotes=["A footnote."], source="AE",
                   cutoff="2025-01-01", program="p", run="r")
    (tmp_path / "wrapped.rtf").write_bytes(tlf.rtf_bytes(wide, 7, 0.6))
    subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/profile", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(tmp_path / "short.rtf"), str(tmp_path / "wrapped.rtf")],
                   check=True, capture_output=True, timeout=300)
    assert len(pypdf.PdfReader(tmp_path / "short.pdf").pages) == 3
    assert len(pypdf.PdfReader(tmp_path / "wrapped.pdf").pages) == tlf.layout(wide, 7, 0.6).total


def test_table_group_continued_on_the_next_page():
    """A table of groups (first column filled on the group's first row only, as the AE summary's
    system organ classes): rows 0-45 fit the first portrait page (46 single-line rows, see
    test_rows_per_page_of_single_line_rows_by_hand), row 46 is inside group "B" (started at row
    40), so page 2 starts with "B (continued)", in the RTF and the PDF alike; a page starting at
    a group's own first row gets nothing added. Listings (type Listing) are left as they are."""
    rows = [["A" if i == 0 else "B" if i == 40 else "", f"t{i}", "1"] for i in range(60)]
    doc = tlf.Doc(studyid="X", type="Table", number="14.3.1.1", title="Groups", headers=["Group", "Term", "n"],
                  rows=rows, align=["l", "l", "r"], source="AE", cutoff="2025-01-01", program="p", run="r")
    lay = tlf.layout(doc, 7, 0.6, None, "(continued)")
    assert lay.pages == [(0, 46), (46, 60)]
    assert lay.rows[46][:2] == ["B (continued)", "t46"] and lay.rows[45][0] == "" and doc.rows[46][0] == ""
    raw = tlf.rtf_text(doc, 7, 0.6, lay)
    assert _rtf_page_first_cells(raw) == ["A", "B (continued)"]
    from datetime import datetime
    page2 = pypdf.PdfReader(io.BytesIO(tlf.pdf_bytes(doc, datetime(2025, 1, 1), 7, 0.6, lay))).pages[1]
    assert "B (continued) t46 1" in page2.extract_text().split("\n")
    assert tlf.layout(doc, 7, 0.6).rows[46][0] == ""  # no text given: nothing added
    listing = tlf.Doc(**{**doc.__dict__, "type": "Listing"})
    assert tlf.layout(listing, 7, 0.6, None, "(continued)").rows[46][0] == ""


def test_font_subsets_made_once_write_the_same_bytes(monkeypatch):
    """The embedded font subsets made and compressed once per process (tlf.PDF_SUBSETS_ONCE)
    are the PDF reportlab writes making them for every document: an ASCII document (one subset
    per font), documents with characters beyond ASCII (a second subset, different per
    document), each rendered after another that filled the memo. A repeated document
    compresses two streams fewer (the two fonts' files) than reportlab alone."""
    from reportlab.pdfbase import pdfdoc

    def doc(extra: str) -> tlf.Doc:
        rows = [[f"S-{i:03d}", f"value {i} {extra}", str(i)] for i in range(30)]
        return tlf.Doc(studyid="X", type="Listing", number="9", title="Subsets", headers=["Subject", "Text", "N"],
                       rows=rows, align=["l", "l", "r"], orientation="landscape", footnotes=["f"], source="AE",
                       cutoff="2025-01-01", program="p", run="r")

    stamp = datetime(2025, 1, 1)
    docs = [doc(""), doc("\u2265 \u00d7"), doc("\u03b2 \u03bc \u0416"), doc("")]
    once = [tlf.pdf_bytes(d, stamp) for d in docs]
    assert once[0] == once[3] and len({*once}) == 3
    compressed = []
    real = pdfdoc.PDFStreamFilterZCompress.encode

    def counted(self, text):
        compressed.append(len(text))
        return real(self, text)

    monkeypatch.setattr(pdfdoc.PDFStreamFilterZCompress, "encode", counted)
    assert tlf.pdf_bytes(docs[0], stamp) == once[0]
    n_once = len(compressed)
    monkeypatch.setattr(tlf, "PDF_SUBSETS_ONCE", False)
    compressed.clear()
    assert [tlf.pdf_bytes(d, stamp) for d in docs] == once
    compressed.clear()
    tlf.pdf_bytes(docs[0], stamp)
    assert len(compressed) == n_once + 2


def test_font_objects_made_once_write_the_same_bytes(monkeypatch):
    """The font subsets' widths arrays formatted and ToUnicode maps compressed once per process
    (tlf.PDF_FONT_OBJECTS_ONCE) are the PDF reportlab writes making them for every document:
    an ASCII document, documents with characters beyond ASCII (a second subset per font), one
    with the bold font only in its header, each after another that filled the memos. A repeated
    document compresses two streams fewer (the two fonts' maps) and formats no widths array."""
    from reportlab.pdfbase import pdfdoc

    def doc(extra: str, rows: int = 30) -> tlf.Doc:
        body = [[f"S-{i:03d}", f"value {i} {extra}", str(i)] for i in range(rows)]
        return tlf.Doc(studyid="X", type="Listing", number="9", title="Widths", headers=["Subject", "Text", "N"],
                       rows=body, align=["l", "l", "r"], orientation="portrait", footnotes=["f \u00b5"],
                       source="AE", cutoff="2025-01-01", program="p", run="r")

    stamp = datetime(2025, 1, 1)
    docs = [doc(""), doc("\u2265 \u00d7"), doc("\u03b2 \u0416", 3), doc("", 0), doc("")]
    monkeypatch.setattr(tlf, "PDF_FONT_OBJECTS_ONCE", False)
    plain = [tlf.pdf_bytes(d, stamp) for d in docs]
    monkeypatch.setattr(tlf, "PDF_FONT_OBJECTS_ONCE", True)
    assert [tlf.pdf_bytes(d, stamp) for d in docs] == plain
    assert [tlf.pdf_bytes(d, stamp) for d in reversed(docs)] == plain[::-1]
    assert plain[0] == plain[4] and len(set(plain)) == 4
    compressed, arrays = [], []
    real_encode, real_format = pdfdoc.PDFStreamFilterZCompress.encode, pdfdoc.PDFArray.format

    def encode(self, text):
        compressed.append(len(text))
        return real_encode(self, text)

    def array(self, document, IND=b"\n "):
        arrays.append(len(self.sequence))
        return real_format(self, document, IND)

    monkeypatch.setattr(pdfdoc.PDFStreamFilterZCompress, "encode", encode)
    monkeypatch.setattr(pdfdoc.PDFArray, "format", array)
    assert tlf.pdf_bytes(docs[0], stamp) == plain[0]
    n_once, widths_once = len(compressed), arrays.count(128)
    monkeypatch.setattr(tlf, "PDF_FONT_OBJECTS_ONCE", False)
    compressed.clear()
    arrays.clear()
    assert tlf.pdf_bytes(docs[0], stamp) == plain[0]
    assert len(compressed) == n_once + 2 and arrays.count(128) == widths_once + 2
