"""Annotated CRF (pipeline.package.acrf): the PDF text read back against define.xml's page
references, bookmarks per form and per domain, NOT SUBMITTED fields, annotations computed by
hand from the spec rows, a new form picked up from the spec alone, byte-identical reruns."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from lxml import etree
from pypdf import PdfReader

from pipeline.config import load_study
from pipeline.errors import ConfigError
from pipeline.export import define
from pipeline.package import acrf
from pipeline.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
NS = define.NS
STUDY = "ZJU-CD7-SAA"


@pytest.fixture(scope="module")
def study_dir(built_study) -> Path:
    """The session's built study (tests/conftest.py): read only."""
    if not (built_study / "acrf.pdf").is_file():
        pytest.skip(f"{built_study.name} was built without its annotated CRF")
    return built_study


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS)


def _page_texts(pdf: Path) -> list[str]:
    return [p.extract_text() or "" for p in PdfReader(str(pdf)).pages]


def _collected(define_xml: Path) -> list[tuple[str, str, list[str], list[int]]]:
    """(OID, Name, leafIDs, pages) of every ItemDef with a Collected origin."""
    root = etree.parse(str(define_xml))
    out = []
    for item in root.iterfind(".//odm:ItemDef", NS):
        origin = item.find("def:Origin", NS)
        if origin is None or origin.get("Type") != "Collected":
            continue
        leaves = [d.get("leafID") for d in origin.iterfind("def:DocumentRef", NS)]
        pages = [int(n) for r in origin.iterfind("def:DocumentRef/def:PDFPageRef", NS)
                 for n in r.get("PageRefs").split()]
        out.append((item.get("OID"), item.get("Name"), leaves, pages))
    return out


def test_every_collected_variable_is_on_the_page_define_points_to(study_dir):
    """Each Collected origin names acrf.pdf pages, and the variable is printed on each of them."""
    texts = _page_texts(study_dir / "acrf.pdf")
    items = _collected(study_dir / "define.xml")
    assert len(items) > 100
    without = {oid for oid, _, _, pages in items if not pages}
    # a Collected variable whose spec names no CRF field (neither its own source nor a value-level
    # row) cannot point into the CRF: LBDA.LBSPCCND (traumatic tap) has no raw field in specs/raw
    # yet. Listed so that the gap stays visible; any other one fails
    assert without <= {"IT.LBDA.LBSPCCND"}, f"Collected origins without a PDF page reference: {sorted(without)}"
    items = [i for i in items if i[3]]
    wrong = []
    for oid, name, leaves, pages in items:
        assert leaves == [acrf.LEAF_ID], oid
        for n in pages:
            assert 1 <= n <= len(texts), (oid, n)
            if not re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", texts[n - 1]):
                wrong.append(f"{oid} not on page {n}")
    assert wrong == []


def test_define_names_the_acrf_as_a_document_that_exists(study_dir):
    root = etree.parse(str(study_dir / "define.xml"))
    mdv = root.find(".//odm:MetaDataVersion", NS)
    ref = mdv.find("def:AnnotatedCRF/def:DocumentRef", NS)
    assert ref is not None and ref.get("leafID") == acrf.LEAF_ID
    leaf = mdv.find(f"def:leaf[@ID='{acrf.LEAF_ID}']", NS)
    href = leaf.get("{http://www.w3.org/1999/xlink}href")
    assert href == "acrf.pdf" and (study_dir / href).is_file()
    assert define.integrity_problems((study_dir / "define.xml").read_bytes()) == []
    assert define.schema_problems((study_dir / "define.xml").read_bytes()) == []


def test_hand_checked_page_references(study_dir):
    """AE.AETERM is on the first Adverse Events page; FA.FAORRES (source 'CRF crs') on every
    page of the CRS/ICANS form; DS.DSSTDTC on the disposition and the demographics pages (its
    source names ds.DSSTDAT ds.DTHDAT dm.ICDAT)."""
    texts = _page_texts(study_dir / "acrf.pdf")
    # the form title is the line after the page header and footer (see the extracted text)
    titles = [t.split("\n")[3].replace("  (continued)", "") for t in texts]
    pages_of = {}
    for i, title in enumerate(titles, start=1):
        pages_of.setdefault(title, []).append(i)
    items = {oid: pages for oid, _, _, pages in _collected(study_dir / "define.xml")}
    assert items["IT.AE.AETERM"] == pages_of["Adverse Events"][:1]
    assert items["IT.FA.FAORRES"] == pages_of["Daily CRS/ICANS Assessment"]
    assert items["IT.DS.DSSTDTC"] == sorted(pages_of["Disposition and Death"][:1]
                                            + pages_of["Demographics and Enrollment"][:1])


def test_bookmarks_by_form_and_by_domain(study_dir, spec):
    reader = PdfReader(str(study_dir / "acrf.pdf"))
    outline = reader.outline
    top = [o.title for o in outline if not isinstance(o, list)]
    assert top == ["Cover and contents", "Forms", "Domains"]
    titles_at = [None if isinstance(o, list) else o.title for o in outline]
    forms_children = outline[titles_at.index("Forms") + 1]
    study = load_study(SPECS, study_dir.name)
    layout = acrf.crf_layout(study, spec)
    assert [o.title for o in forms_children] == [f"{layout.form_titles[f]} ({f})" for f in layout.forms]
    assert set(layout.forms) == {"dm", *study["raw"]["mandatory_forms"]}
    for o, f in zip(forms_children, layout.forms):
        page = reader.get_destination_page_number(o) + 1
        assert page == layout.form_pages(f)[0]
        assert layout.form_titles[f] in reader.pages[page - 1].extract_text()
    domains = outline[titles_at.index("Domains") + 1]  # the children of an entry follow it
    titles = [o.title for o in domains if not isinstance(o, list)]
    assert "AE = Adverse Events" in titles and "DM = Demographics" in titles
    assert "SUPPDM = Supplemental Qualifiers for DM" in titles
    # every domain bookmark lands on a page that prints the domain box
    for o in domains:
        if isinstance(o, list):
            continue
        page = reader.get_destination_page_number(o) + 1
        assert o.title in reader.pages[page - 1].extract_text(), o.title


def test_not_submitted_fields_are_marked(study_dir):
    """The three direct identifiers of dm (SUBJINIT, HOSPNUM, PHONE) and dm.TRTYN are
    [NOT SUBMITTED] on the demographics page; lb.LBTEST on the laboratory page."""
    texts = _page_texts(study_dir / "acrf.pdf")
    dm = next(t for t in texts if "Demographics and Enrollment\n" in t and "Subject Initials" in t)
    assert dm.count("[NOT SUBMITTED]") == 4
    lb = next(t for t in texts if "\nLaboratory" in t and "Test Name" in t)
    assert lb.count("[NOT SUBMITTED]") == 1


def test_annotations_from_the_spec_rows(spec):
    """Hand-read from specs/sdtm: crs.TEMP is FAORRES where FATESTCD = TEMP (FA value level);
    dm.PRIMDIAG is a SUPPDM qualifier; rs.BMBLAST is LBDA.LBORRES where LBTESTCD = BLASTCE plus
    its printed unit LBORRESU; dm.ICDAT feeds DM.RFICDTC and DS.DSSTDTC; ae.AEONGO only feeds the
    derived AEENRTPT; dm.PHONE is a direct identifier; the header fields are STUDYID/USUBJID."""
    ann = acrf.field_annotations(spec)
    texts = {k: [a.text for a in v] for k, v in ann.items()}
    assert texts[("crs", "TEMP")] == ["FAORRES where FATESTCD = TEMP"]
    assert texts[("dm", "PRIMDIAG")] == ["SUPPDM.QVAL where QNAM = PRIMDIAG"]
    assert texts[("rs", "BMBLAST")] == ["LBORRESU", "LBORRES where LBTESTCD = BLASTCE"]
    assert {(a.dataset, a.variable) for a in ann[("rs", "BMBLAST")]} == {("LBDA", "LBORRES"), ("LBDA", "LBORRESU")}
    assert [(a.dataset, a.text) for a in ann[("dm", "ICDAT")]] == [("DM", "RFICDTC"), ("DS", "DSSTDTC")]
    assert texts[("ae", "AEONGO")] == ["AEENRTPT (derived, MT.AEENRTPT)"]
    assert texts[("dm", "PHONE")] == [acrf.NOT_SUBMITTED]
    assert texts[("ae", "STUDYID")] == ["STUDYID"] and texts[("ae", "SUBJID")] == ["USUBJID"]
    assert texts[("dm", "SUBJID")] == ["SUBJID"]
    assert texts[("rs", "MRDND")] == ["LBORRES where LBTESTCD = MRD"]   # crf_annotations.csv
    assert acrf.unmapped_fields(spec) == []


def test_a_new_form_is_picked_up_from_the_spec_alone(tmp_path, spec):
    """A form added to specs/raw with its SDTM rows (no code): its page, its annotations, its
    domain box and its define page references appear."""
    scratch = tmp_path / "specs"
    shutil.copytree(SPECS, scratch)
    with open(scratch / "raw" / "forms.csv", "a", encoding="utf-8") as fh:
        fh.write("su,Substance Use,STUDYID|SUBJID|SUSPID,SU,Substance use (a domain no form maps to yet)\n")
    with open(scratch / "raw" / "columns.csv", "a", encoding="utf-8") as fh:
        fh.write("su,STUDYID,Study Identifier,char,Y,,,,,,,N,\n"
                 "su,SUBJID,Subject Identifier for the Study,char,Y,,,,,,,N,\n"
                 "su,SUTRT,Medication Name,char,Y,,,,,,,N,\n"
                 "su,SUROUTE,Route,char,N,ORAL|INTRAVENOUS,,,,,,N,\n"
                 "su,SUNOTE,Site Note,char,N,,,,,,,N,\n")
    with open(scratch / "sdtm" / "datasets.csv", "a", encoding="utf-8") as fh:
        fh.write("SU,Substance Use,INTERVENTIONS,One record per medication,STUDYID|USUBJID,Yes,No,\n")
    (scratch / "sdtm" / "variables" / "SU.csv").write_text(
        "dataset,order,variable,label,type,length,core,role,codelist,origin,source,method,comment\n"
        "SU,1,SUTRT,Reported Name of Drug,text,,Req,Topic,,Collected,CRF su.SUTRT,,\n"
        "SU,2,SUROUTE,Route of Administration,text,,Perm,Variable Qualifier,ROUTE,Collected,CRF su.SUROUTE,,\n",
        encoding="utf-8")
    with open(scratch / "raw" / "crf_annotations.csv", "a", encoding="utf-8") as fh:
        fh.write("su,SUNOTE,[NOT SUBMITTED],Free-text note for the site\n")
    toml = scratch / "studies" / f"{STUDY}.toml"
    text = toml.read_text(encoding="utf-8").replace("[raw]\n", '[raw]\noptional_forms = ["su"]\n', 1)
    toml.write_text(text, encoding="utf-8")
    new_spec = load_spec(scratch)
    study = load_study(scratch, STUDY)
    layout = acrf.crf_layout(study, new_spec)
    assert layout.forms[-1] == "su"
    (su_page,) = layout.form_pages("su")
    assert su_page == len(layout.pages)
    page = layout.pages[su_page - 1]
    assert [d[1] for d in page.domains] == ["SU = Substance Use"]
    got = {r.column: [b.annotation.text for b in r.annotations] for r in page.rows}
    assert got == {"STUDYID": ["STUDYID"], "SUBJID": ["USUBJID"], "SUTRT": ["SUTRT"], "SUROUTE": ["SUROUTE"],
                   "SUNOTE": [acrf.NOT_SUBMITTED]}
    assert acrf.pages_for_source(layout, "CRF su.SUTRT") == [su_page]
    texts = [p.extract_text() for p in PdfReader(__import__("io").BytesIO(acrf.render_pdf(layout))).pages]
    assert "SUROUTE" in texts[su_page - 1] and "[NOT SUBMITTED]" in texts[su_page - 1]
    # the route options carry the decodes of the ROUTE codelist the mapped variable names
    assert "ORAL" in texts[su_page - 1]


def test_an_unknown_form_in_the_study_toml_is_one_clear_error(tmp_path):
    scratch = tmp_path / "specs"
    shutil.copytree(SPECS, scratch)
    toml = scratch / "studies" / f"{STUDY}.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[raw]\n", '[raw]\noptional_forms = ["xx"]\n', 1),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="xx"):
        acrf.crf_layout(load_study(scratch, STUDY), load_spec(scratch))


def test_rendering_is_byte_identical_and_rows_stay_on_the_page(spec):
    layout = acrf.crf_layout(load_study(SPECS, STUDY), spec)
    assert acrf.render_pdf(layout) == acrf.render_pdf(acrf.crf_layout(load_study(SPECS, STUDY), spec))
    assert acrf.render_html(layout) == acrf.render_html(layout)
    for page in layout.pages:
        for row in page.rows:
            assert page.table_top <= row.top and row.top + row.height <= acrf.PAGE_H - acrf.MARGIN_BOTTOM
            for b in row.annotations:  # annotation boxes fit their row and their column
                assert b.y + b.height <= row.height
                assert max(acrf._width(ln, acrf.FONT, acrf.SIZE_ANNOT) for ln in b.lines) <= acrf.COL_ANNOT - 2 * acrf.PAD
            for p in row.response:
                end = p.x + (p.entry or (acrf.BOX + 3 if p.box else 0) + acrf._width(p.text, p.font, p.size))
                assert end <= acrf.COL_RESPONSE - acrf.PAD, (row.form, row.column, p.text)


def test_html_view_has_every_form_page_and_annotation(spec):
    """The HTML view shows the same pages as the PDF: one section per form page, with each field's
    annotations and the page number define.xml uses."""
    import html as html_lib

    layout = acrf.crf_layout(load_study(SPECS, STUDY), spec)
    text = acrf.render_html(layout)
    form_pages = [p for p in layout.pages if p.form]
    assert text.count("<section ") == len(form_pages)
    for page in form_pages:
        section = text.split(f'<section id="page-{page.number}">', 1)[1].split("</section>", 1)[0]
        assert f"page {page.number}" in section
        for row in page.rows:
            for b in row.annotations:
                assert html_lib.escape(" ".join(b.lines)) in section, (page.number, row.column)


def test_form_pages_laid_out_once_per_spec_are_each_studys_own_layout():
    """The forms' pages made once per spec and renumbered per study (acrf._spec_form_pages) are
    the pages laying out each form for the study at its own first page gives (what
    _crf_layout did before): every shipped study, laid out one after the other with one spec,
    as a build worker does, so that later studies reuse the forms of earlier ones. The PDFs
    are the same bytes; a form's rows are shared, its pages are each layout's own."""
    from pipeline.config import selected_studies

    ids = ["ZJU-CD7-SAA", "NCT06316427", "CD7-RRAL-DE", "NCT05164042", "ZJU-CD7-AID"]
    spec = load_spec(SPECS)
    layouts = [acrf._crf_layout(s, spec) for s in selected_studies(SPECS, ids)]
    meta = spec.raw_forms.set_index("form")
    for layout in layouts:
        fresh_spec = load_spec(SPECS)
        annotations, codes = acrf.field_annotations(fresh_spec), acrf._Codes(fresh_spec)
        want = [p for p in layout.pages if not p.form]
        for form in layout.forms:
            want += acrf._form_pages(fresh_spec, form, str(meta.loc[form, "label"]), str(meta.loc[form, "description"]),
                                     len(want) + 1, annotations, codes)
        assert [p.number for p in layout.pages] == list(range(1, len(want) + 1))
        assert layout.pages == want, layout.studyid
        fresh = acrf._crf_layout(load_study(SPECS, layout.studyid), fresh_spec)
        assert acrf.render_pdf(layout) == acrf.render_pdf(fresh)
    first, last = layouts[0], layouts[-1]
    a, b = first.pages[first.form_pages("dm")[0] - 1], last.pages[last.form_pages("dm")[0] - 1]
    assert a is not b and a.rows is b.rows
