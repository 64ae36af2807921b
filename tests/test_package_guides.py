"""The reviewer's guides (cSDRG, ADRG) of a real build: every CORE finding listed (explained or
marked Unexplained), an absent CORE report said plainly, PHUSE sections present, dataset counts
equal the built XPT files, populations equal the built ADSL, DOCX/PDF/HTML read back, relative
links resolve in the eCTD layout, byte-identical reruns with SOURCE_DATE_EPOCH."""

from __future__ import annotations

import html as htmlmod
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyreadstat
import pytest
from docx import Document as Docx
from pypdf import PdfReader

from pipeline.export import checks
from pipeline.package import adrg, csdrg
from pipeline.package.document import Document, Link, Strong, fit_widths, to_docx, to_html, to_pdf

EPOCH = 1767225600  # 2026-01-01 00:00:00 UTC
EPOCH_DATE = "2026-01-01"

CSDRG_SECTIONS = ["1 Introduction", "1.3 Study Data Standards and Dictionary Inventory", "2 Protocol Description",
                  "2.3 Trial Design Datasets", "3 Subject Data Description", "3.2 Annotated CRF",
                  "3.3 SDTM Subject Domains", "4 Data Conformance Summary", "4.1 Conformance Inputs",
                  "4.2 Issues Summary", "4.3 Checks Run by the Pipeline", "5 Data Conformance Issue Explanations",
                  "Appendix I: Inclusion/Exclusion Criteria (TI)", "Appendix II: Trial Summary Parameters (TS)"]
ADRG_SECTIONS = ["1 Introduction", "2 Protocol Description",
                 "3 Analysis Considerations Related to Multiple Analysis Datasets", "3.4 Analysis Populations",
                 "4 Analysis Data Creation and Processing Issues", "4.1 Data Dependencies and Traceability",
                 "4.2 Derivation Rules", "5 Analysis Dataset Descriptions", "6 Data Conformance Summary",
                 "7 Submission of Programs"]

#: a hand-made CORE findings file: one explained, one unexplained finding
CORE_CSV = (
    "rule_id,cdisc_rule_id,dataset,variables,message,issues,explained,explanation,justification\n"
    "CORE-000111,CG0001,DM,AGE,Age is not plausible,3,Y,The three ages were verified against source documents,"
    "Protocol section 5.1 allows ages up to 75\n"
    "CORE-000222,CG0002,LB,LBORRES|LBSTRESC,Result and standard result disagree,7,N,,\n")


@pytest.fixture(scope="module")
def with_core(built_study, tmp_path_factory) -> Path:
    """A copy of the built study with the hand-made CORE report in reports/."""
    folder = tmp_path_factory.mktemp("core") / built_study.name
    shutil.copytree(built_study, folder, ignore=shutil.ignore_patterns("listings"))
    (folder / "reports" / "core_findings.csv").write_text(CORE_CSV, encoding="utf-8")
    (folder / "reports" / "core_report.json").write_text(
        '{"Run": {"engine_version": "0.17.1", "rules_selected": 5}, "Conformance_Details": {"Standard": "SDTMIG", '
        '"Version": "V3.4"}, "Rules_Report": [{"core_id": "CORE-000111", "status": "ISSUE REPORTED"}, '
        '{"core_id": "CORE-000222", "status": "ISSUE REPORTED"}, {"core_id": "CORE-000333", "status": "SUCCESS"}, '
        '{"core_id": "CORE-000444", "status": "SUCCESS"}, {"core_id": "CORE-000555", "status": "SKIPPED"}, {"core_id": "CORE-000666", "status": "EXECUTION ERROR"}]}\n',
        encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def guides(with_core, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("guides")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    try:
        csdrg.write_csdrg(with_core, out)
        adrg.write_adrg(with_core, out)
    finally:
        mp.undo()
    return out


def _pdf_text(path: Path) -> str:
    return "\n".join(p.extract_text() or "" for p in PdfReader(str(path)).pages)


def _html_text(path: Path) -> str:
    return htmlmod.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def _rows(path: Path, caption: str) -> list[list[str]]:
    """Cells of the HTML table with this caption."""
    doc = path.read_text(encoding="utf-8")
    m = re.search(rf"<table><caption>{re.escape(htmlmod.escape(caption))}</caption>.*?<tbody>(.*?)</tbody>", doc, re.S)
    assert m, caption
    return [[htmlmod.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S)]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# ---- cSDRG ----------------------------------------------------------------------------------
def test_csdrg_lists_every_core_finding_explained_or_unexplained(guides):
    page = (guides / "csdrg.html").read_text(encoding="utf-8")
    rows = _rows(guides / "csdrg.html", "CDISC CORE findings of this build (unexplained rows shaded)")
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [
        ("CORE-000111 (CG0001)", "DM", "AGE", "3", "Explained"),
        ("CORE-000222 (CG0002)", "LB", "LBORRES, LBSTRESC", "7", "Unexplained")]
    # the unexplained row is the shaded one, with the bold mark
    marked = re.findall(r'<tr class="marked">(.*?)</tr>', page, re.S)
    assert len(marked) == 1 and "CORE-000222" in marked[0] and "<strong>Unexplained</strong>" in marked[0]
    for path in (guides / "csdrg.html", guides / "csdrg.pdf"):
        text = _norm(_html_text(path) if path.suffix == ".html" else _pdf_text(path))
        assert "2 finding(s) (rule x dataset x variables) with 10 issue(s)" in text
        assert "1 finding(s) with 7 issue(s) are unexplained" in text
        assert "The three ages were verified against source documents" in text
        assert "Protocol section 5.1 allows ages up to 75" in text
        assert "No row of specs/studies/" in text and "covers this finding" in text
        assert "success 2" in text and "issue reported 2" in text and "skipped 1" in text
        assert "1 rule(s) ended in an execution error" in text and "CORE-000666" in text


def test_csdrg_without_core_report_says_so(built_study, tmp_path):
    assert not (built_study / "reports" / "core_findings.csv").exists()
    csdrg.write_csdrg(built_study, tmp_path, formats=("html", "pdf"))
    for text in (_html_text(tmp_path / "csdrg.html"), _pdf_text(tmp_path / "csdrg.pdf")):
        text = _norm(text)
        assert "No CDISC CORE report exists for this build" in text
        assert "Run `make conformance`" in text
    junit = (built_study.parent / "gate" / "junit.xml").read_text(encoding="utf-8")
    suite = re.search(rf'<testsuite name="{re.escape(built_study.name)}" tests="(\d+)"', junit)
    assert f"The raw-extract gate ran before the build (gate/junit.xml): {suite.group(1)} checks" in _norm(
        _html_text(tmp_path / "csdrg.html"))


def test_csdrg_sections_in_every_format(guides):
    html_text = _norm(_html_text(guides / "csdrg.html"))
    pdf_text = _norm(_pdf_text(guides / "csdrg.pdf"))
    headings = [p.text for p in Docx(str(guides / "csdrg.docx")).paragraphs if p.style.name.startswith("Heading")]
    for s in CSDRG_SECTIONS:
        assert s in html_text, s
        assert s in pdf_text, s
        assert s in headings, s


def test_csdrg_dataset_counts_equal_the_built_datasets(guides, with_core):
    rows = _rows(guides / "csdrg.html", "SDTM datasets in this delivery")
    shown = {r[0]: int(r[5]) for r in rows}
    built = {}
    for path in sorted(with_core.glob("*.xpt")):
        frame, _ = pyreadstat.read_xport(str(path))
        built[path.stem.upper()] = len(frame)
    assert shown == built
    # SUPP and RELREC columns from the data: SUPPDM exists, so DM says Y
    dm = next(r for r in rows if r[0] == "DM")
    assert dm[6] == ("Y" if "SUPPDM" in built else "")


def test_csdrg_lists_every_output_check_of_the_pipeline():
    listed = {c for c, _, _ in csdrg.pipeline_checks()}
    assert set(checks.MESSAGES) <= listed
    sev = {c: s for c, s, _ in csdrg.pipeline_checks()}
    assert sev["required_value"] == "error / warning" and sev["valuelevel_ct"] == "error / warning"
    assert sev["duplicate_keys"] == "warning" and sev["iso8601"] == "error"


# ---- ADRG -----------------------------------------------------------------------------------
def test_adrg_sections_populations_and_traceability(guides, with_core):
    html_text = _norm(_html_text(guides / "adrg.html"))
    pdf_text = _norm(_pdf_text(guides / "adrg.pdf"))
    headings = [p.text for p in Docx(str(guides / "adrg.docx")).paragraphs if p.style.name.startswith("Heading")]
    for s in ADRG_SECTIONS:
        assert s in html_text and s in pdf_text and s in headings, s
    adsl, _ = pyreadstat.read_xport(str(with_core / "adam" / "adsl.xpt"))
    page = (guides / "adrg.html").read_text(encoding="utf-8")
    for flag in ("ENRLFL", "SAFFL", "EFFFL", "DLTEVLFL"):
        n = int((adsl[flag] == "Y").sum())
        assert re.search(rf"<td>{flag}</td>.*?<td>{n} of {len(adsl)}</td>", page, re.S), flag
    trace = _rows(guides / "adrg.html",
                  "Traceability found in the built datasets (SRCDOM/SRCVAR; SRCSEQ gives the source record)")
    expected = []
    for path in sorted((with_core / "adam").glob("*.xpt")):
        f, _ = pyreadstat.read_xport(str(path))
        if "SRCDOM" not in f:  # ADSL: one record per subject, its variables trace by their own origins
            continue
        g = f.groupby(["SRCDOM", "SRCVAR"]).size()
        expected += [[path.stem.upper(), d, v, str(n)] for (d, v), n in g.items()]
    assert trace == expected
    # the rule tables behind the derivations are named with their file
    for stem in ("astct_crs", "astct_icans", "ctcae_lab", "icaht", "adtte_censoring", "dlt_definition"):
        assert f"specs/rules/{stem}.csv" in html_text, stem
    assert "ADaMIG rules have not been run by CORE" in html_text


# ---- links, formats, determinism ------------------------------------------------------------
def test_links_resolve_in_the_ectd_layout(guides, with_core, tmp_path):
    study = tmp_path / "m5" / "datasets" / with_core.name
    sdtm, adam_dir = study / "tabulations" / "sdtm", study / "analysis" / "adam" / "datasets"
    sdtm.mkdir(parents=True)
    adam_dir.mkdir(parents=True)
    for f in with_core.glob("*.xpt"):
        shutil.copy(f, sdtm / f.name)
    shutil.copy(with_core / "define.xml", sdtm / "define.xml")
    (sdtm / "acrf.pdf").write_bytes(b"%PDF-1.4\n")  # written by the aCRF step of the package
    for f in (with_core / "adam").glob("*.xpt"):
        shutil.copy(f, adam_dir / f.name)
    shutil.copy(with_core / "adam" / "define.xml", adam_dir / "define.xml")
    for guide, folder in (("csdrg", sdtm), ("adrg", adam_dir)):
        page = (guides / f"{guide}.html").read_text(encoding="utf-8")
        anchors = set(re.findall(r' id="([^"]+)"', page))
        hrefs = set(re.findall(r'href="([^"]+)"', page))
        assert any(h.endswith(".xpt") for h in hrefs)
        for h in hrefs:
            if h.startswith("#"):
                assert h[1:] in anchors, (guide, h)
            else:
                assert (folder / h).resolve().is_file(), (guide, h)
        # the PDF carries the same file links as URI (or GoToR for a PDF) actions
        pdf_links = set()
        for p in PdfReader(str(guides / f"{guide}.pdf")).pages:
            for a in p.get("/Annots") or []:
                act = a.get_object().get("/A") or {}
                if act.get("/S") == "/URI":
                    pdf_links.add(str(act["/URI"]))
                elif act.get("/S") == "/GoToR":
                    pdf_links.add(str(act["/F"]))
        assert pdf_links == {h for h in hrefs if not h.startswith("#")}, guide


def test_drafts_in_the_build_link_to_the_build(with_core):
    from pipeline.package.guides import write_drafts

    written = write_drafts(with_core)
    assert sorted(p.name for p in written) == ["adrg.docx", "adrg.html", "csdrg.docx", "csdrg.html"]
    assert {p.parent for p in written} == {with_core / "guides"}
    for name in ("csdrg.html", "adrg.html"):
        page = (with_core / "guides" / name).read_text(encoding="utf-8")
        files = [h for h in re.findall(r'href="([^"]+)"', page) if not h.startswith("#")]
        assert files and all((with_core / "guides" / h).resolve().is_file() for h in files
                             if not h.endswith("acrf.pdf") or (with_core / "acrf.pdf").is_file()), name
    docx_links = [r.target_ref for r in Docx(str(with_core / "guides" / "adrg.docx")).part.rels.values() if r.is_external]
    assert "../adam/adsl.xpt" in docx_links and "../dm.xpt" in docx_links


def test_reruns_byte_identical_and_dated_by_source_date_epoch(guides, with_core, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    written = csdrg.write_csdrg(with_core, tmp_path) + adrg.write_adrg(with_core, tmp_path)
    assert len(written) == 6
    for path in written:
        assert path.read_bytes() == (guides / path.name).read_bytes(), path.name
    when = datetime.fromtimestamp(EPOCH, tz=timezone.utc).replace(tzinfo=None)
    for stem in ("csdrg", "adrg"):
        cp = Docx(str(tmp_path / f"{stem}.docx")).core_properties
        assert cp.created.replace(tzinfo=None) == when and cp.modified.replace(tzinfo=None) == when
        meta = PdfReader(str(tmp_path / f"{stem}.pdf")).metadata
        assert str(meta["/CreationDate"]).startswith("D:20260101000000")
        assert f"Document date {EPOCH_DATE}" in _norm(_html_text(tmp_path / f"{stem}.html"))


# ---- the renderers on a hand-made document --------------------------------------------------
def test_renderers_round_trip_a_small_document():
    d = Document("Guide", "S1", "Study S1", datetime(2025, 3, 4, 5, 6, 7), [("Study", "S1")], author="Sponsor")
    d.h(1, "Intro")
    d.p(["See ", Link("dm.xpt", "dm.xpt"), " and ", Strong("this"), "; x \u2265 2"])
    d.table(["A", "B"], [["1", Link("go", "#intro")], ["2", "two"]], marked={1})
    d.bullets(["one", "two"])
    html = to_html(d).decode()
    assert '<a href="dm.xpt">dm.xpt</a>' in html and '<tr class="marked"><td>2</td>' in html
    pdf_text = _norm("".join(p.extract_text() for p in PdfReader(__import__("io").BytesIO(to_pdf(d))).pages))
    assert "1 Intro" in pdf_text and "x >= 2" in pdf_text and "Page 1 of 1" in pdf_text
    docx = Docx(__import__("io").BytesIO(to_docx(d)))
    assert [c.text for c in docx.tables[1].rows[2].cells] == ["2", "two"]
    assert docx.core_properties.author == "Sponsor"
    assert to_docx(d) == to_docx(d) and to_pdf(d) == to_pdf(d)


def test_fit_widths_gives_short_codes_their_room():
    w = fit_widths(["code", "text"], [["AB", "x" * 200], ["CD", "y" * 150]])
    assert w[0] >= len("code") and w[1] > 5 * w[0]
    assert fit_widths(["a"], []) == fit_widths(["a"], [[""]])
