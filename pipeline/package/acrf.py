"""Annotated CRF (``acrf.pdf`` and ``acrf.html``) of one study, from the raw CRF contract and the
SDTM spec. No field, label, option or mapping is written here: everything comes from the specs.

What is on it, and where it comes from:

===========================  ==================================================================
element                      source
===========================  ==================================================================
forms of the study           ``dm`` plus ``[raw].mandatory_forms`` and ``[raw].optional_forms``
                             of the study TOML, in the order of ``specs/raw/forms.csv``
form title, description      ``specs/raw/forms.csv`` (label, description)
fields                       ``specs/raw/columns.csv`` in file order: label, type (date, time,
                             number, text), response options (``allowed``; the decode of the
                             mapped SDTM codelist beside each term), unit
variable annotations         the SDTM spec's own origins: every variable (``specs/sdtm/
                             variables``) and value-level row (``specs/sdtm/valuelevel``) with
                             origin Collected whose ``source`` names ``CRF <form>.<COLUMN>``
                             annotates that field: ``AETERM``; a value-level row
                             ``FAORRES where FATESTCD = TEMP``; a supplemental qualifier
                             ``SUPPDM.QVAL where QNAM = PRIMDIAG``. When a form maps to more
                             than one dataset, each variable carries its dataset (``DS.DSSTDTC``)
other annotations            ``specs/raw/crf_annotations.csv`` (form, column, annotation,
                             comment; form ``*`` = every form): the header identifiers and the
                             fields deliberately not submitted. A field that only feeds a
                             Derived variable is annotated with it (``AEENRTPT (derived,
                             MT.AEENRTPT)``); a direct identifier (``identifier = Y``) is
                             ``[NOT SUBMITTED]``; a field with none of these is printed
                             ``[NO SDTM MAPPING IN SPEC]`` and listed by :func:`unmapped_fields`
domain boxes                 one per dataset a form maps to: ``AE = Adverse Events`` (dataset
                             label of ``specs/sdtm/datasets.csv``), in the colour its
                             annotations have on the page
===========================  ==================================================================

One layout, two renderings: :func:`crf_layout` places every field on a page (page 1 = cover and
contents; each form starts on a new page; a form longer than a page continues on the next).
:func:`write_acrf` draws that layout with reportlab (bookmarks by form and by domain, contents
linked to the pages) and writes the same pages as HTML; define.xml takes its
``def:PDFPageRef`` page numbers from the same layout (:func:`pages_for_source`), so the PDF and
define.xml cannot disagree.

Conventions (CDISC SDTM Metadata Submission Guidelines 2.0, aCRF section): a domain box at the
top of each page, annotations in boxes beside the field they map, one colour per dataset on a
page, ``[NOT SUBMITTED]`` for collected data not in the tabulation, findings as
``--ORRES where --TESTCD = <code>``, supplemental qualifiers as ``SUPP--.QVAL where QNAM =
<name>``; bookmarks by form and by domain. Core PDF fonts (Helvetica) only; text outside
Latin-1 is replaced by ``?``. ``reportlab`` runs with ``invariant=1``: reruns are byte-identical.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import pandas as pd

from pipeline.config import Study
from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec, read_table

ACRF_PDF = "acrf.pdf"
ACRF_HTML = "acrf.html"
#: define.xml leaf of the annotated CRF
LEAF_ID = "LF.acrf"
LEAF_TITLE = "Annotated Case Report Form"
ANNOTATIONS_FILE = Path("raw") / "crf_annotations.csv"
NOT_SUBMITTED = "[NOT SUBMITTED]"
UNMAPPED = "[NO SDTM MAPPING IN SPEC]"

#: ``form.COLUMN`` tokens of a spec ``source`` text (``CRF ae.AESTDAT ae.AESTTIM``)
FIELD_TOKEN = re.compile(r"\b([a-z][a-z0-9_]*)\.([A-Z][A-Z0-9_]*)\b")
WORD = re.compile(r"[A-Za-z0-9_.]+")

# ---- page geometry (points; US letter portrait, as the FDA PDF specifications ask) -----------
PAGE_W, PAGE_H = 612.0, 792.0
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 40.0, 40.0, 40.0
CONTENT_W = PAGE_W - 2 * MARGIN_X
COL_LABEL, COL_RESPONSE, COL_ANNOT = 150.0, 200.0, CONTENT_W - 150.0 - 200.0
FONT, FONT_BOLD, FONT_ITALIC = "Helvetica", "Helvetica-Bold", "Helvetica-Oblique"
SIZE, SIZE_SMALL, SIZE_ANNOT, SIZE_DOMAIN, SIZE_TITLE = 9.0, 7.0, 8.5, 10.0, 14.0
LEAD = 1.25            # line height / font size
PAD = 3.0              # padding inside a row and inside annotation boxes
BOX = 7.0              # check box side
#: annotation colours by the position of a dataset on its page (fill, border); then repeats
PALETTE = (("#CCE5FF", "#1F5FAD"), ("#FFF2B3", "#7A5A00"), ("#D5F5D5", "#2E7D32"),
           ("#FFD9E6", "#AD1457"), ("#E6DDF7", "#5E35B1"), ("#FFE3C7", "#C25E00"))
NEUTRAL = ("#FFFFFF", "#444444")
NOT_SUBMITTED_COLOUR = ("#EEEEEE", "#777777")


# ---------------------------------------------------------------------------------------------
# the mapping: which raw field feeds which SDTM variable (from the specs only)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Annotation:
    """One annotation of a field: ``text`` as printed; ``dataset``/``variable``/``where`` of the
    SDTM item it names (empty for a field not submitted)."""

    text: str
    dataset: str = ""
    variable: str = ""
    where: str = ""
    kind: str = "collected"   # collected | explicit | derived | not_submitted | unmapped
    comment: str = ""


def crf_forms(study: Study, spec: Spec) -> list[str]:
    """The forms this study collects: ``dm``, ``[raw].mandatory_forms`` and
    ``[raw].optional_forms`` of the study TOML, in ``specs/raw/forms.csv`` order."""
    raw = study.get("raw", {}) or {}
    wanted = {"dm", *raw.get("mandatory_forms", []), *raw.get("optional_forms", [])}
    # the raw_forms column, not the cached Spec.forms: a Spec copied from its __dict__ (tests) stays valid
    forms = spec.raw_forms["form"].tolist()
    unknown = sorted(wanted - set(forms))
    if unknown:
        raise ConfigError(f"{study.studyid}: [raw] names forms not in specs/raw/forms.csv: {', '.join(unknown)}")
    return [f for f in forms if f in wanted]


def _collected_rows(spec: Spec) -> pd.DataFrame:
    """Variable and value-level rows with origin Collected (a value-level row without an origin
    inherits its variable's), columns dataset, variable, where_variable, where_value, source."""
    v = spec.variables[["dataset", "variable", "origin", "source"]].assign(where_variable="", where_value="")
    vl = spec.valuelevel
    if not vl.empty:
        parent = v.set_index(["dataset", "variable"])["origin"]
        keys = pd.MultiIndex.from_frame(vl[["dataset", "variable"]])
        inherited = pd.Series(parent.reindex(keys).fillna("").to_numpy(), index=vl.index)
        vl = vl.assign(origin=vl["origin"].where(vl["origin"] != "", inherited))
        v = pd.concat([v, vl[["dataset", "variable", "origin", "source", "where_variable", "where_value"]]],
                      ignore_index=True)
    return v[v["origin"] == "Collected"].reset_index(drop=True)


def _annotation_text(dataset: str, variable: str, where_variable: str, where_value: str) -> str:
    if dataset.startswith("SUPP") and where_variable == "QNAM":
        return f"{dataset}.{variable} where QNAM = {where_value}"
    if where_variable:
        return f"{variable} where {where_variable} = {where_value}"
    return variable


def field_annotations(spec: Spec) -> dict[tuple[str, str], list[Annotation]]:
    """(form, column) -> its annotations, for every raw field of the spec (see the module text
    for the order of precedence)."""
    out: dict[tuple[str, str], list[Annotation]] = {}
    # spec rows: a few hundred; each source names a handful of fields
    for r in _collected_rows(spec).to_dict("records"):
        for form, col in FIELD_TOKEN.findall(str(r["source"])):
            out.setdefault((form, col), []).append(Annotation(
                _annotation_text(r["dataset"], r["variable"], r["where_variable"], r["where_value"]),
                r["dataset"], r["variable"], r["where_value"]))
    derived: dict[tuple[str, str], list[Annotation]] = {}
    for r in spec.variables[spec.variables["origin"] == "Derived"].to_dict("records"):  # spec rows
        method = str(r.get("method", "")).strip()
        for form, col in FIELD_TOKEN.findall(str(r["source"])):
            derived.setdefault((form, col), []).append(Annotation(
                f"{r['variable']} (derived" + (f", {method})" if method else ")"), r["dataset"], r["variable"],
                kind="derived"))
    explicit = _explicit(spec)
    result: dict[tuple[str, str], list[Annotation]] = {}
    for r in spec.raw_columns.to_dict("records"):  # raw contract rows: about a hundred
        key = (r["form"], r["column"])
        if key in explicit:
            result[key] = [explicit[key]]
        elif key in out:
            result[key] = _unique(out[key])
        elif ("*", r["column"]) in explicit:
            result[key] = [explicit[("*", r["column"])]]
        elif key in derived:
            result[key] = _unique(derived[key])
        elif str(r.get("identifier", "")).strip() == "Y":
            result[key] = [Annotation(NOT_SUBMITTED, kind="not_submitted",
                                      comment="Direct identifier: never leaves the raw extract")]
        else:
            result[key] = [Annotation(UNMAPPED, kind="unmapped")]
    return result


def _unique(items: list[Annotation]) -> list[Annotation]:
    """Each item once; a bare variable is left out when the same field also carries one of its
    value-level items (``RSORRES where RSTESTCD = OVRLRESP`` already says RSORRES)."""
    with_where = {(a.dataset, a.variable) for a in items if a.where}
    seen, out = set(), []
    for a in items:  # a field's few annotations
        key = (a.dataset, a.variable, a.where)
        if key in seen or (not a.where and (a.dataset, a.variable) in with_where):
            continue
        seen.add(key)
        out.append(a)
    return out


def _explicit(spec: Spec) -> dict[tuple[str, str], Annotation]:
    path = spec.root / ANNOTATIONS_FILE
    if not path.is_file():
        return {}
    t = read_table(path)
    missing = {"form", "column", "annotation"} - set(t.columns)
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    known = set(zip(spec.raw_columns["form"], spec.raw_columns["column"]))
    cols = set(spec.raw_columns["column"])
    out = {}
    for r in t.to_dict("records"):  # a few spec rows
        key = (r["form"], r["column"])
        if (r["form"] == "*" and r["column"] not in cols) or (r["form"] != "*" and key not in known):
            raise ConfigError(f"{path}: {r['form']}.{r['column']} is not a field of specs/raw/columns.csv")
        text = r["annotation"].strip()
        kind = "not_submitted" if text == NOT_SUBMITTED else "explicit"
        out[key] = Annotation(text, kind=kind, comment=str(r.get("comment", "")).strip())
    return out


def unmapped_fields(spec: Spec) -> list[str]:
    """``form.COLUMN`` of every raw field with no annotation from the specs."""
    return [f"{f}.{c}" for (f, c), anns in field_annotations(spec).items() if anns[0].kind == "unmapped"]


# ---------------------------------------------------------------------------------------------
# the layout: one list of pages, rendered as PDF and HTML and read by define.xml
# ---------------------------------------------------------------------------------------------
@dataclass
class Piece:
    """Text drawn at (x, y) relative to the top-left of its cell (y = baseline below the top)."""

    x: float
    y: float
    text: str
    font: str = FONT
    size: float = SIZE
    box: bool = False          # a check box before the text
    entry: float = 0.0         # width of an entry box drawn at x (the text is its placeholder)


@dataclass
class AnnotBox:
    y: float
    height: float
    lines: list[str]
    comment_lines: list[str]
    colours: tuple[str, str]
    annotation: Annotation


@dataclass
class Row:
    form: str
    column: str
    number: int
    top: float                  # distance from the page top
    height: float
    label: list[Piece]
    response: list[Piece]
    annotations: list[AnnotBox]


@dataclass
class Page:
    number: int
    form: str                   # "" for the cover page
    title: str
    continued: bool = False
    domains: list[tuple[str, str, tuple[str, str]]] = field(default_factory=list)  # (dataset, text, colours)
    description: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    table_top: float = 0.0
    contents: list[tuple[str, str, int]] = field(default_factory=list)  # cover: (form, title, page)


@dataclass
class Layout:
    studyid: str
    title: str
    sponsor: str
    standard: str
    pages: list[Page]
    forms: list[str]
    form_titles: dict[str, str]
    dataset_labels: dict[str, str]

    def form_pages(self, form: str) -> list[int]:
        return [p.number for p in self.pages if p.form == form]

    def field_page(self, form: str, column: str) -> int | None:
        for p in self.pages:  # a few dozen pages
            if p.form == form and any(r.column == column for r in p.rows):
                return p.number
        return None

    def domain_pages(self) -> dict[str, list[int]]:
        """dataset -> pages where one of its variables is annotated (domain bookmarks)."""
        out: dict[str, list[int]] = {}
        for p in self.pages:
            for ds, _, _ in p.domains:
                if any(a.annotation.dataset == ds for r in p.rows for a in r.annotations):
                    out.setdefault(ds, []).append(p.number)
        return dict(sorted(out.items()))


def _width(text: str, font: str, size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth
    return stringWidth(text, font, size)


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    from reportlab.lib.utils import simpleSplit
    text = str(text).strip()
    return simpleSplit(text, font, size, width) if text else []


def _response(col: dict, decodes: dict[str, str]) -> list[Piece]:
    """The response area of one field: entry boxes, check boxes with options, unit."""
    line = SIZE * LEAD
    t = str(col.get("type", "char"))
    unit = str(col.get("unit", "")).strip()
    allowed = [a for a in str(col.get("allowed", "")).split("|") if a]
    pieces: list[Piece] = []
    if allowed:
        x, y = 0.0, SIZE
        for term in allowed:  # a field's few options
            decode = decodes.get(term, "")
            text = term if not decode or decode.upper() == term.upper() else f"{term} = {decode}"
            room = COL_RESPONSE - 2 * PAD
            w = BOX + 3 + _width(text, FONT, SIZE) + 10
            if x > 0 and x + w > room:
                x, y = 0.0, y + line
            if w - 10 > room:  # an option longer than the column: its text wraps under itself
                parts = _wrap(text, FONT, SIZE, room - BOX - 3)
                pieces.append(Piece(0.0, y, parts[0], box=True))
                for part in parts[1:]:
                    y += line
                    pieces.append(Piece(BOX + 3, y, part))
                x, y = 0.0, y + line
                continue
            pieces.append(Piece(x, y, text, box=True))
            x += w
        return pieces
    if t in ("date", "pdate"):
        x = 0.0
        for part, w in (("DD", 22.0), ("MMM", 28.0), ("YYYY", 34.0)):
            pieces.append(Piece(x, SIZE, part, font=FONT_ITALIC, size=SIZE_SMALL, entry=w))
            x += w + 4
        if t == "pdate":
            pieces.append(Piece(0.0, SIZE + line, "UN / UNK for an unknown day / month", font=FONT_ITALIC,
                                size=SIZE_SMALL))
        return pieces
    if t == "time":
        pieces.append(Piece(0.0, SIZE, "HH:MM", font=FONT_ITALIC, size=SIZE_SMALL, entry=44.0))
        return pieces
    if t in ("int", "float"):
        pieces.append(Piece(0.0, SIZE, "", entry=64.0))
        if unit:
            pieces.append(Piece(70.0, SIZE, unit))
        return pieces
    pieces.append(Piece(0.0, SIZE, "", entry=COL_RESPONSE - 2 * PAD))
    return pieces


class _Codes:
    """Codelist of every SDTM item (variable and value level) and term decodes, looked up once."""

    def __init__(self, spec: Spec):
        v, vl = spec.variables, spec.valuelevel
        self.codelist = dict(zip(zip(v["dataset"], v["variable"], [""] * len(v)), v["codelist"]))
        if not vl.empty:
            self.codelist.update(zip(zip(vl["dataset"], vl["variable"], vl["where_value"]), vl["codelist"]))
        c = spec.codelists
        decode = c["decode"].where(c["decode"] != "", c["term"])
        self.decodes: dict[str, dict[str, str]] = {}
        for cl, terms, dec in zip(c["codelist"], c["term"], decode):  # codelist terms: a few thousand
            self.decodes.setdefault(cl, {})[terms] = dec

    def for_field(self, anns: list[Annotation]) -> dict[str, str]:
        """Term -> decode from the codelist of the SDTM item a field maps to (the first that has one)."""
        for a in anns:  # a field's few annotations
            cl = str(self.codelist.get((a.dataset, a.variable, a.where), "")).strip()
            if a.dataset and cl in self.decodes:
                return self.decodes[cl]
        return {}


def _row(codes: _Codes, col: dict, number: int, anns: list[Annotation], colours: dict[str, tuple[str, str]],
         prefix: bool) -> Row:
    line = SIZE * LEAD
    label = [Piece(0.0, SIZE + i * line, t, font=FONT_BOLD)
             for i, t in enumerate(_wrap(f"{number}. {col['label']}", FONT_BOLD, SIZE, COL_LABEL - 2 * PAD))]
    note = str(col.get("unit", "")).strip()
    if note and str(col.get("type")) not in ("int", "float"):
        label.append(Piece(0.0, SIZE + len(label) * line, f"Unit: {note}", font=FONT_ITALIC, size=SIZE_SMALL))
    response = _response(col, codes.for_field(anns))
    boxes, y = [], 0.0
    aline = SIZE_ANNOT * LEAD
    for a in anns:  # a field's few annotations
        text = a.text
        if prefix and a.kind in ("collected", "derived") and not text.startswith(f"{a.dataset}."):
            text = f"{a.dataset}.{text}"
        lines = _wrap(text, FONT, SIZE_ANNOT, COL_ANNOT - 4 * PAD)
        comment = _wrap(a.comment, FONT_ITALIC, SIZE_SMALL, COL_ANNOT - 2 * PAD) if a.comment else []
        if a.kind == "not_submitted":
            c = NOT_SUBMITTED_COLOUR
        elif a.dataset:
            c = colours[a.dataset]
        else:
            c = NEUTRAL
        h = len(lines) * aline + PAD
        boxes.append(AnnotBox(y, h, lines, comment, c, a))
        y += h + 2 + len(comment) * SIZE_SMALL * LEAD + 2
    heights = [max((p.y for p in label), default=SIZE), max((p.y for p in response), default=SIZE), y]
    # + a descender's depth below the last baseline
    return Row(col["form"], col["column"], number, 0.0, max(heights) + 2 * PAD + 2, label, response, boxes)


def _domains(spec: Spec, datasets: list[str]) -> list[tuple[str, str, tuple[str, str]]]:
    labels = dict(zip(spec.datasets["dataset"], spec.datasets["label"]))
    return [(ds, f"{ds} = {labels.get(ds, ds)}", PALETTE[i % len(PALETTE)]) for i, ds in enumerate(datasets)]


def _form_pages(spec: Spec, form: str, title: str, description: str, first: int,
                annotations: dict[tuple[str, str], list[Annotation]], codes: _Codes) -> list[Page]:
    cols = spec.form_columns(form).to_dict("records")
    datasets: list[str] = []
    for c in cols:  # the form's fields
        for a in annotations[(form, c["column"])]:
            if a.dataset and a.dataset not in datasets:
                datasets.append(a.dataset)
    domains = _domains(spec, datasets)
    colours = {ds: c for ds, _, c in domains}
    prefix = len(datasets) > 1
    rows = [_row(codes, c, i, annotations[(form, c["column"])], colours, prefix) for i, c in enumerate(cols, start=1)]
    pages: list[Page] = []
    bottom = PAGE_H - MARGIN_BOTTOM
    for row in rows:  # the form's fields, in order
        page = pages[-1] if pages else None
        if page is None or page.rows and page.rows[-1].top + page.rows[-1].height + row.height > bottom:
            page = _new_form_page(first + len(pages), form, title, description, domains, continued=bool(pages))
            pages.append(page)
        row.top = page.rows[-1].top + page.rows[-1].height if page.rows else page.table_top
        page.rows.append(row)
    if not pages:
        pages.append(_new_form_page(first, form, title, description, domains, continued=False))
    return pages


def _domain_box_rows(domains) -> list[list[tuple[float, float, tuple]]]:
    """Domain boxes placed in rows across the content width: [(x, width, domain)]."""
    rows, x = [[]], 0.0
    for d in domains:  # a form's few datasets
        w = _width(d[1], FONT_BOLD, SIZE_DOMAIN) + 2 * PAD + 2
        if x > 0 and x + w > CONTENT_W:
            rows.append([])
            x = 0.0
        rows[-1].append((x, w, d))
        x += w + 6
    return rows


def _new_form_page(number: int, form: str, title: str, description: str, domains, continued: bool) -> Page:
    page = Page(number, form, title, continued, domains)
    page.description = [] if continued else _wrap(description, FONT_ITALIC, SIZE, CONTENT_W)
    top = MARGIN_TOP + 14 + SIZE_TITLE * LEAD + 4
    top += len(_domain_box_rows(domains)) * (SIZE_DOMAIN * LEAD + 2 * PAD + 4) + 2
    top += len(page.description) * SIZE * LEAD + 6
    page.table_top = top + SIZE * LEAD + 4   # column headings
    return page


COVER_ENTRY_H = SIZE * LEAD + 4
COVER_FIRST_TOP = 300.0


def crf_layout(study: Study, spec: Spec) -> Layout:
    """Every page of the study's annotated CRF, with the position of every field.

    Made once per (study, spec) pair: the aCRF hook and define.xml's page references
    (:func:`pipeline.export.define.crf_page_refs`) read the same layout, which nobody changes
    once made. The entry holds the study, so its ``id`` is not reused while it is remembered."""
    made = per_object(spec, "crf_layouts", lambda _spec: {})
    hit = made.get(id(study))
    if hit is None or hit[0] is not study:
        hit = made[id(study)] = (study, _crf_layout(study, spec))
    return hit[1]


def _spec_form_pages(spec: Spec, form: str) -> list[Page]:
    """The pages of one form as :func:`_form_pages` lays them out, numbered from 0: made once
    per spec and form. What is on a form's pages (its fields' rows, annotations, options and
    decodes, domain boxes, where each page breaks) comes from the spec alone; a study only
    chooses which forms it has, and so where each form's pages start. The build lays out the
    aCRF of every study a worker builds with the same spec (the one it inherited), and laying
    out the fields was most of a layout. Nobody changes a layout once made, so the pages'
    rows are shared between the studies' layouts (:func:`_renumbered`)."""
    def lay_out(spec: Spec) -> list[Page]:
        meta = spec.raw_forms.set_index("form")
        codes = per_object(spec, "acrf_codes", _Codes)
        return _form_pages(spec, form, str(meta.loc[form, "label"]), str(meta.loc[form, "description"]), 0,
                           per_object(spec, "acrf_annotations", field_annotations), codes)
    return per_object(spec, ("acrf_form_pages", form), lay_out)


def _renumbered(pages: list[Page], first: int) -> list[Page]:
    """``pages`` (numbered from 0) as pages ``first``, ``first + 1``, ...: new page objects,
    the same rows."""
    return [replace(p, number=first + p.number) for p in pages]


def _crf_layout(study: Study, spec: Spec) -> Layout:
    forms = crf_forms(study, spec)
    meta = spec.raw_forms.set_index("form")
    titles = {f: str(meta.loc[f, "label"]) for f in forms}
    # cover: contents entries on page 1 below the legend, then on further pages if needed
    per_first = int((PAGE_H - MARGIN_BOTTOM - COVER_FIRST_TOP) // COVER_ENTRY_H)
    per_next = int((PAGE_H - MARGIN_BOTTOM - MARGIN_TOP - 60) // COVER_ENTRY_H)
    n_cover = 1 if len(forms) <= per_first else 1 + -(-(len(forms) - per_first) // per_next)
    pages = [Page(i + 1, "", "Annotated Case Report Form") for i in range(n_cover)]
    number = n_cover + 1
    for form in forms:  # the study's forms
        fp = _renumbered(_spec_form_pages(spec, form), number)
        pages += fp
        number += len(fp)
    entries = [(f, titles[f], next(p.number for p in pages if p.form == f)) for f in forms]
    pages[0].contents = entries[:per_first]
    for i in range(1, n_cover):
        pages[i].contents = entries[per_first + (i - 1) * per_next: per_first + i * per_next]
    std = spec.standards
    standard = f"{std.get('ig_name', 'SDTMIG')} {std.get('ig_version', std.get('sdtmig_version', ''))}".strip()
    return Layout(study.studyid, str(study.get("title", "")), str(study.get("sponsor", "")), standard, pages,
                  forms, titles, dict(zip(spec.datasets["dataset"], spec.datasets["label"])))


def pages_for_source(layout: Layout, source: str) -> list[int]:
    """Physical pages of the aCRF a spec ``source`` text points to: the page of each
    ``form.COLUMN`` it names, every page of each bare form name (``CRF crs``)."""
    text = str(source).strip()
    if not text.startswith("CRF"):
        return []
    pages: set[int] = set()
    for word in WORD.findall(text[3:]):  # a source's few words
        m = FIELD_TOKEN.fullmatch(word)
        if m:
            p = layout.field_page(m.group(1), m.group(2))
            if p is not None:
                pages.add(p)
        elif word in layout.forms:
            pages.update(layout.form_pages(word))
    return sorted(pages)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _colour(hex_code: str):
    from reportlab.lib.colors import HexColor
    return HexColor(hex_code)


def _latin1(text: str) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _draw_header(c, layout: Layout, page: Page, total: int) -> None:
    c.setFont(FONT, SIZE_SMALL)
    c.setFillColor(_colour("#444444"))
    y = PAGE_H - MARGIN_TOP + 10
    c.drawString(MARGIN_X, y, _latin1(f"{layout.studyid}  {layout.title}"))
    c.drawRightString(PAGE_W - MARGIN_X, y, f"Annotated CRF   page {page.number} of {total}")
    c.line(MARGIN_X, y - 4, PAGE_W - MARGIN_X, y - 4)
    c.drawString(MARGIN_X, MARGIN_BOTTOM - 20, _latin1(f"{layout.standard} annotations generated from specs/raw "
                                                      "and the SDTM specification"))
    c.setFillColor(_colour("#000000"))


def _draw_cover(c, layout: Layout, page: Page, total: int) -> None:
    _draw_header(c, layout, page, total)
    y = PAGE_H - MARGIN_TOP - 40
    if page.number == 1:
        c.setFont(FONT_BOLD, 20)
        c.drawString(MARGIN_X, y, "Annotated Case Report Form")
        c.setFont(FONT, 11)
        lines = [f"Study {layout.studyid}: {layout.title}", f"Sponsor: {layout.sponsor}",
                 f"Annotations: {layout.standard} (tabulation datasets of this submission)"]
        y -= 24
        for text in lines:
            for ln in _wrap(text, FONT, 11, CONTENT_W):
                c.drawString(MARGIN_X, y, _latin1(ln))
                y -= 14
        y -= 8
        c.setFont(FONT_BOLD, SIZE)
        c.drawString(MARGIN_X, y, "How to read the annotations")
        y -= 13
        legend = [
            "Box at the top of each page: the datasets the form maps to, e.g. 'XX = Dataset label'.",
            "Box beside a field: the SDTM variable that holds it, in the colour of its dataset on that page; "
            "prefixed with the dataset when a form maps to more than one.",
            "'--ORRES where --TESTCD = code': a result stored under that test code (findings).",
            "'SUPP--.QVAL where QNAM = name': a supplemental qualifier.",
            f"'{NOT_SUBMITTED}' (grey): collected but not in the tabulation datasets; the reason is printed below.",
            "'(derived, MT.x)': the field feeds a derived variable; the method is in define.xml.",
        ]
        c.setFont(FONT, SIZE)
        for text in legend:
            for i, ln in enumerate(_wrap(text, FONT, SIZE, CONTENT_W - 12)):
                c.drawString(MARGIN_X + (0 if i == 0 else 12), y, ("- " if i == 0 else "") + _latin1(ln))
                y -= SIZE * LEAD
        y = PAGE_H - COVER_FIRST_TOP + 6
    c.setFont(FONT_BOLD, 11)
    c.drawString(MARGIN_X, y + 12, "Contents" + ("" if page.number == 1 else " (continued)"))
    top = COVER_FIRST_TOP if page.number == 1 else MARGIN_TOP + 60
    c.setFont(FONT, SIZE + 1)
    for i, (form, title, number) in enumerate(page.contents):
        yy = PAGE_H - top - (i + 1) * COVER_ENTRY_H + 4
        text = _latin1(f"{title} ({form})")
        c.drawString(MARGIN_X + 10, yy, text)
        c.drawRightString(PAGE_W - MARGIN_X, yy, str(number))
        c.setDash(1, 2)
        c.line(MARGIN_X + 14 + _width(text, FONT, SIZE + 1), yy, PAGE_W - MARGIN_X - 16, yy)
        c.setDash()
        c.linkRect("", f"p{number}", (MARGIN_X, yy - 3, PAGE_W - MARGIN_X, yy + SIZE + 2), relative=0, thickness=0)


def _draw_form(c, layout: Layout, page: Page, total: int) -> None:
    _draw_header(c, layout, page, total)
    y = PAGE_H - MARGIN_TOP - 14 - SIZE_TITLE
    c.setFont(FONT_BOLD, SIZE_TITLE)
    c.drawString(MARGIN_X, y, _latin1(f"{page.title}" + ("  (continued)" if page.continued else "")))
    y -= 4
    for brow in _domain_box_rows(page.domains):
        h = SIZE_DOMAIN * LEAD + 2 * PAD
        y -= h + 4
        for x, w, (_, text, (fill, border)) in brow:
            c.setFillColor(_colour(fill))
            c.setStrokeColor(_colour(border))
            c.setLineWidth(1.2)
            c.rect(MARGIN_X + x, y, w, h, stroke=1, fill=1)
            c.setFillColor(_colour(border))
            c.setFont(FONT_BOLD, SIZE_DOMAIN)
            c.drawString(MARGIN_X + x + PAD + 1, y + PAD + 2, _latin1(text))
    c.setFillColor(_colour("#000000"))
    c.setStrokeColor(_colour("#000000"))
    c.setLineWidth(0.5)
    y -= 4
    c.setFont(FONT_ITALIC, SIZE)
    for ln in page.description:
        y -= SIZE * LEAD
        c.drawString(MARGIN_X, y, _latin1(ln))
    head = PAGE_H - page.table_top
    c.setFont(FONT_BOLD, SIZE_SMALL + 0.5)
    c.setFillColor(_colour("#444444"))
    for x, text in ((0, "Question"), (COL_LABEL, "Response"), (COL_LABEL + COL_RESPONSE, "SDTM annotation")):
        c.drawString(MARGIN_X + x + PAD, head + 4, text)
    c.setFillColor(_colour("#000000"))
    c.line(MARGIN_X, head, PAGE_W - MARGIN_X, head)
    for row in page.rows:
        _draw_row(c, row)


def _draw_row(c, row: Row) -> None:
    top = PAGE_H - row.top
    c.setStrokeColor(_colour("#BBBBBB"))
    c.line(MARGIN_X, top - row.height, PAGE_W - MARGIN_X, top - row.height)
    c.setStrokeColor(_colour("#000000"))
    for p in row.label:
        c.setFont(p.font, p.size)
        c.drawString(MARGIN_X + PAD + p.x, top - PAD - p.y, _latin1(p.text))
    x0 = MARGIN_X + COL_LABEL + PAD
    for p in row.response:
        base = top - PAD - p.y
        if p.entry:
            c.setStrokeColor(_colour("#666666"))
            c.rect(x0 + p.x, base - 3, p.entry, SIZE + 4, stroke=1, fill=0)
            c.setStrokeColor(_colour("#000000"))
            if p.text:
                c.setFillColor(_colour("#999999"))
                c.setFont(p.font, p.size)
                c.drawString(x0 + p.x + 2, base, _latin1(p.text))
                c.setFillColor(_colour("#000000"))
            continue
        x = x0 + p.x
        if p.box:
            c.rect(x, base - 1, BOX, BOX, stroke=1, fill=0)
            x += BOX + 3
        c.setFont(p.font, p.size)
        c.drawString(x, base, _latin1(p.text))
    xa = MARGIN_X + COL_LABEL + COL_RESPONSE + PAD
    for b in row.annotations:
        fill, border = b.colours
        width = max(_width(ln, FONT, SIZE_ANNOT) for ln in b.lines) + 2 * PAD
        ytop = top - PAD - b.y
        c.setFillColor(_colour(fill))
        c.setStrokeColor(_colour(border))
        c.setLineWidth(0.8)
        c.rect(xa, ytop - b.height, width, b.height, stroke=1, fill=1)
        c.setFillColor(_colour(border if border != NEUTRAL[1] else "#000000"))
        c.setFont(FONT, SIZE_ANNOT)
        for i, ln in enumerate(b.lines):
            c.drawString(xa + PAD, ytop - PAD / 2 - (i + 1) * SIZE_ANNOT * LEAD + 2.5, _latin1(ln))
        c.setFillColor(_colour("#555555"))
        c.setFont(FONT_ITALIC, SIZE_SMALL)
        for i, ln in enumerate(b.comment_lines):
            c.drawString(xa, ytop - b.height - 2 - (i + 1) * SIZE_SMALL * LEAD + 1.5, _latin1(ln))
        c.setFillColor(_colour("#000000"))
        c.setStrokeColor(_colour("#000000"))
        c.setLineWidth(0.5)


def render_pdf(layout: Layout) -> bytes:
    """The layout as PDF bytes: one bookmark per form and per domain, the contents linked."""
    import io

    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(PAGE_W, PAGE_H), invariant=1, pageCompression=1)
    c.setTitle(f"{layout.studyid} Annotated Case Report Form")
    c.setAuthor(layout.sponsor or layout.studyid)
    c.setSubject(f"{layout.standard} annotations")
    c.setCreator("cart-sdtm-pipeline")
    total = len(layout.pages)
    # outline entries need one destination key each (reportlab keeps one title per key):
    # (key, title, level, page)
    entries = [("cover", "Cover and contents", 0, 1), ("forms", "Forms", 0, 1)]
    entries += [(f"form-{f}", f"{layout.form_titles[f]} ({f})", 1, layout.form_pages(f)[0]) for f in layout.forms]
    entries.append(("domains", "Domains", 0, 1))
    for ds, pages in layout.domain_pages().items():
        entries.append((f"domain-{ds}", f"{ds} = {layout.dataset_labels.get(ds, ds)}", 1, pages[0]))
        entries += [(f"domain-{ds}-{n}", f"{layout.form_titles[layout.pages[n - 1].form]} (page {n})", 2, n)
                    for n in pages]
    for page in layout.pages:
        c.bookmarkPage(f"p{page.number}")
        for key, _, _, n in entries:  # the outline's few dozen entries
            if n == page.number:
                c.bookmarkPage(key)
        if page.number == 1:
            for key, title, level, _ in entries:
                c.addOutlineEntry(_latin1(title), key, level=level, closed=level >= 1)
        if page.form:
            _draw_form(c, layout, page, total)
        else:
            _draw_cover(c, layout, page, total)
        c.showPage()
    c.showOutline()
    c.save()
    return buf.getvalue()


def render_html(layout: Layout) -> str:
    """The same pages as one HTML file, with navigation by form and by domain."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(layout.studyid)} Annotated Case Report Form</title>",
           "<style>body{font-family:Helvetica,Arial,sans-serif;font-size:13px;margin:24px;max-width:1000px}"
           "nav{columns:2}section{border-top:2px solid #333;margin-top:28px}"
           "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ccc;padding:4px;"
           "vertical-align:top;text-align:left}th{font-size:11px;color:#444}.dom{display:inline-block;"
           "font-weight:bold;border:1.5px solid;padding:3px 6px;margin:2px 6px 2px 0}.ann{display:inline-block;"
           "border:1px solid;padding:1px 5px;margin:1px 0}.cmt{font-size:11px;font-style:italic;color:#555}"
           ".opt{margin-right:12px;white-space:nowrap}.page{float:right;font-size:11px;color:#666}</style>",
           "</head><body>", f"<h1>Annotated Case Report Form: {e(layout.studyid)}</h1>",
           f"<p>{e(layout.title)}<br>Sponsor: {e(layout.sponsor)}<br>Annotations: {e(layout.standard)}. "
           f"Page numbers are the pages of {ACRF_PDF} that define.xml refers to.</p>",
           "<h2>Forms</h2><nav><ul>"]
    for f in layout.forms:
        n = layout.form_pages(f)[0]
        out.append(f'<li><a href="#page-{n}">{e(layout.form_titles[f])} ({e(f)})</a>, page {n}</li>')
    out.append("</ul></nav><h2>Domains</h2><nav><ul>")
    for ds, pages in layout.domain_pages().items():
        links = ", ".join(f'<a href="#page-{n}">{n}</a>' for n in pages)
        out.append(f"<li>{e(ds)} = {e(layout.dataset_labels.get(ds, ds))}: pages {links}</li>")
    out.append("</ul></nav>")
    for page in layout.pages:
        if not page.form:
            continue
        out.append(f'<section id="page-{page.number}"><span class="page">page {page.number}</span>'
                   f"<h2>{e(page.title)}{' (continued)' if page.continued else ''}</h2><div>")
        for _, text, (fill, border) in page.domains:
            out.append(f'<span class="dom" style="background:{fill};border-color:{border};color:{border}">'
                       f"{e(text)}</span>")
        out.append("</div>")
        if page.description:
            out.append(f"<p><i>{e(' '.join(page.description))}</i></p>")
        out.append("<table><tr><th>Question</th><th>Response</th><th>SDTM annotation</th></tr>")
        for row in page.rows:
            label = " ".join(p.text for p in row.label if p.font != FONT_ITALIC)
            extra = " ".join(p.text for p in row.label if p.font == FONT_ITALIC)
            resp = []
            for p in row.response:
                if p.box:
                    resp.append(f'<span class="opt">&#9744; {e(p.text)}</span>')
                elif p.entry:
                    resp.append(f'<span class="opt">[{e(p.text) or "&nbsp;" * 12}]</span>')
                else:
                    resp.append(f'<span class="opt">{e(p.text)}</span>')
            anns = []
            for b in row.annotations:
                fill, border = b.colours
                anns.append(f'<span class="ann" style="background:{fill};border-color:{border}">'
                            f"{e(' '.join(b.lines))}</span>"
                            + (f'<div class="cmt">{e(" ".join(b.comment_lines))}</div>' if b.comment_lines else ""))
            out.append(f'<tr title="{e(row.form)}.{e(row.column)}"><td><b>{e(label)}</b>'
                       + (f'<div class="cmt">{e(extra)}</div>' if extra else "")
                       + f"</td><td>{' '.join(resp)}</td><td>{'<br>'.join(anns)}</td></tr>")
        out.append("</table></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_acrf(study_dir: Path, ctx) -> None:
    """Post-export hook: ``acrf.pdf`` and ``acrf.html`` into the study's output folder."""
    layout = crf_layout(ctx.study, ctx.spec)
    Path(study_dir, ACRF_PDF).write_bytes(render_pdf(layout))
    Path(study_dir, ACRF_HTML).write_text(render_html(layout), encoding="utf-8")
