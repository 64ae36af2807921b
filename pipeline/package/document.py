"""A small document model for the reviewer's guides and its three renderers: HTML, DOCX, PDF.

The cSDRG (:mod:`pipeline.package.csdrg`) and the ADRG (:mod:`pipeline.package.adrg`) build a
:class:`Document` (headings, paragraphs, bullet lists, tables; inline text may carry relative
links) from the metadata and the built outputs, and write it three ways:

- **PDF** (reportlab platypus, pure Python): the file submitted in eCTD module 5 (FDA Study
  Data Technical Conformance Guide: reviewer's guides are PDF), with bookmarks per heading,
  "Page x of y" footers and links to the datasets by relative path;
- **HTML**: the same content for a browser (links work inside the package folder);
- **DOCX** (python-docx): the draft sponsors edit further (the guides are drafted from what the
  pipeline knows; the narrative parts need the study team's words).

Every writer is deterministic: the one date printed and stored (document date, PDF creation
date, DOCX core properties) is the caller's ``stamp`` (``SOURCE_DATE_EPOCH`` or the data
cut-off, :func:`pipeline.export.xpt.build_timestamp`), reportlab runs in invariant mode, and
the DOCX zip members get fixed timestamps, so a rerun is byte-identical.
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Union

from pipeline.export.writer import write_bytes_atomic


# ---- the model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """Inline text linking to ``href`` (a path relative to the document, or an #anchor)."""

    text: str
    href: str


@dataclass(frozen=True)
class Strong:
    """Inline bold text (used for "Unexplained" marks)."""

    text: str


Inline = Union[str, Link, Strong, list]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    content: Inline
    style: str = ""  # "" | "note" (italic, smaller)


@dataclass(frozen=True)
class Bullets:
    items: list


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list]
    #: relative column widths (same length as columns); equal when empty
    widths: list[float] = field(default_factory=list)
    #: row indexes to highlight (unexplained findings)
    marked: frozenset = frozenset()
    caption: str = ""


@dataclass
class Document:
    title: str
    studyid: str
    subtitle: str
    stamp: datetime
    #: (label, value) rows of the title block
    meta: list[tuple[str, str]] = field(default_factory=list)
    blocks: list = field(default_factory=list)
    author: str = ""

    def h(self, level: int, text: str, anchor: str = "") -> None:
        self.blocks.append(Heading(level, text, anchor or slug(text)))

    def p(self, content: Inline, style: str = "") -> None:
        self.blocks.append(Para(content, style))

    def bullets(self, items: list) -> None:
        self.blocks.append(Bullets(list(items)))

    def table(self, columns: list[str], rows: list[list], widths: list[float] | None = None,
              marked: set[int] | frozenset = frozenset(), caption: str = "") -> None:
        self.blocks.append(Table(list(columns), [list(r) for r in rows], list(widths or []), frozenset(marked), caption))

    @property
    def date(self) -> str:
        return self.stamp.strftime("%Y-%m-%d")


def fit_widths(columns: list[str], rows: list[list], capacity: float = 92.0) -> list[float]:
    """Column widths (in characters of the table font) for a table given without widths: each
    column first gets what its header and its longest cell need, up to 8 characters (so short
    codes do not wrap mid-word), then the room left goes to the columns with longer text, in
    proportion to what more they would use (the 75th percentile of their cell lengths, up to 60)."""
    n = len(columns)
    lengths = [[len(plain(r[j])) for r in rows if j < len(r)] or [0] for j in range(n)]
    need = [min(max(len(str(c)), max(ls)), 8) * 1.15 + 1.5 for c, ls in zip(columns, lengths)]
    want = []
    for j in range(n):  # columns of one table
        ls = sorted(lengths[j])
        q = ls[min(len(ls) - 1, int(0.75 * len(ls)))]
        want.append(max(min(float(q), 60.0), need[j]))
    room = max(capacity - sum(need), 0.4 * capacity)  # wide tables: the renderer scales all columns down
    extra = [w - m for w, m in zip(want, need)]
    if sum(extra) <= 0:
        return need
    k = min(1.0, room / sum(extra))
    return [m + e * k for m, e in zip(need, extra)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def _flat(content: Inline) -> list:
    """Inline content as a flat list of str / Link / Strong."""
    if isinstance(content, list):
        out = []
        for part in content:  # a handful of runs per paragraph
            out += _flat(part)
        return out
    if content is None:
        return [""]
    if isinstance(content, (Link, Strong)):
        return [content]
    return [str(content)]


def plain(content: Inline) -> str:
    return "".join(p.text if isinstance(p, (Link, Strong)) else p for p in _flat(content))


def numbered(doc: Document) -> list[tuple[Heading, str]]:
    """Headings with their section numbers (1, 1.1, 1.1.1; level-1 'Appendix' headings unnumbered)."""
    counters = [0, 0, 0, 0]
    out = []
    for b in doc.blocks:  # document blocks (dozens)
        if not isinstance(b, Heading):
            continue
        if b.text.startswith("Appendix"):
            out.append((b, ""))
            counters = [counters[0], 0, 0, 0]
            continue
        lvl = min(max(b.level, 1), 4)
        counters[lvl - 1] += 1
        for i in range(lvl, 4):
            counters[i] = 0
        out.append((b, ".".join(str(c) for c in counters[:lvl])))
    return out


# ---- HTML ----------------------------------------------------------------------------------
def _html_inline(content: Inline) -> str:
    parts = []
    for p in _flat(content):
        if isinstance(p, Link):
            parts.append(f'<a href="{html.escape(p.href, quote=True)}">{html.escape(p.text)}</a>')
        elif isinstance(p, Strong):
            parts.append(f"<strong>{html.escape(p.text)}</strong>")
        else:
            parts.append(html.escape(p))
    return "".join(parts)


CSS = ("body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:70em;font-size:14px;line-height:1.4}"
       "h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #999;margin-top:1.6em}h3{font-size:1.1em}"
       "table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #999;padding:3px 6px;"
       "vertical-align:top;font-size:12.5px;text-align:left}th{background:#e8e8e8}"
       "tr.marked td{background:#fde2e2}p.note{font-style:italic;color:#444}.meta th{width:14em}"
       "nav li{list-style:none}caption{text-align:left;font-weight:bold;padding:2px 0}")


def to_html(doc: Document) -> bytes:
    nums = {id(h): n for h, n in numbered(doc)}
    toc = []
    for h, n in numbered(doc):  # headings (dozens)
        if h.level <= 2:
            pad = "" if h.level == 1 else ' style="margin-left:1.5em"'
            toc.append(f'<li{pad}><a href="#{h.anchor}">{html.escape((n + " " if n else "") + h.text)}</a></li>')
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}: {html.escape(doc.studyid)}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>{html.escape(doc.title)}</h1>", f"<p><strong>{html.escape(doc.subtitle)}</strong></p>",
           '<table class="meta">' + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                            for k, v in doc.meta) + "</table>",
           "<nav><h2>Contents</h2><ul>" + "".join(toc) + "</ul></nav>"]
    for b in doc.blocks:  # document blocks
        if isinstance(b, Heading):
            n = nums.get(id(b), "")
            tag = f"h{min(b.level + 1, 6)}"
            out.append(f'<{tag} id="{b.anchor}">{html.escape((n + " " if n else "") + b.text)}</{tag}>')
        elif isinstance(b, Para):
            cls = f' class="{b.style}"' if b.style else ""
            out.append(f"<p{cls}>{_html_inline(b.content)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.columns)
            rows = []
            for i, r in enumerate(b.rows):  # table rows (hundreds at most)
                cls = ' class="marked"' if i in b.marked else ""
                rows.append(f"<tr{cls}>" + "".join(f"<td>{_html_inline(c)}</td>" for c in r) + "</tr>")
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    out += [f'<p class="note">{html.escape(doc.studyid)}: {html.escape(doc.title)}, {doc.date}</p>',
            "</body></html>", ""]
    return "\n".join(out).encode("utf-8")


# ---- PDF (reportlab) -----------------------------------------------------------------------
_PDF_SUBST = {"\u2265": ">=", "\u2264": "<=", "\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'",
              "\u201c": '"', "\u201d": '"', "\u2022": "-", "\u00d7": "x", "\u2192": "->", "\u2026": "..."}


def _latin1(text: str) -> str:
    """The standard PDF fonts cover Latin-1: common symbols are spelled out, the rest '?'."""
    s = "".join(_PDF_SUBST.get(ch, ch) for ch in str(text))
    return s.encode("latin-1", "replace").decode("latin-1")


def _pdf_inline(content: Inline) -> str:
    parts = []
    for p in _flat(content):
        if isinstance(p, Link):
            parts.append(f'<a href="{html.escape(_latin1(p.href), quote=True)}" color="#1a4c9c">'
                         f"{html.escape(_latin1(p.text))}</a>")
        elif isinstance(p, Strong):
            parts.append(f"<b>{html.escape(_latin1(p.text))}</b>")
        else:
            parts.append(html.escape(_latin1(p)).replace("\n", "<br/>"))
    return "".join(parts)


def _links(doc: Document) -> list[Link]:
    """Every Link of the document (paragraphs, bullets, table cells)."""
    found = []
    for b in doc.blocks:  # document blocks
        if isinstance(b, Para):
            found += [p for p in _flat(b.content) if isinstance(p, Link)]
        elif isinstance(b, Bullets):
            found += [p for i in b.items for p in _flat(i) if isinstance(p, Link)]
        elif isinstance(b, Table):
            found += [p for r in b.rows for c in r for p in _flat(c) if isinstance(p, Link)]
    return found


def pdf_date(stamp: datetime) -> str:
    return stamp.strftime("D:%Y%m%d%H%M%S+00'00'")


def to_pdf(doc: Document) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import (KeepTogether, ListFlowable, ListItem, Paragraph, SimpleDocTemplate,
                                    Spacer, Table as RLTable, TableStyle)

    page_w, page_h = A4
    margin = 2 * cm
    avail = page_w - 2 * margin
    ss = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=ss["BodyText"], fontName="Helvetica", fontSize=9.5, leading=12.5,
                          alignment=TA_LEFT, spaceAfter=5)
    note = ParagraphStyle("note", parent=body, fontName="Helvetica-Oblique", fontSize=8.5, leading=11,
                          textColor=colors.HexColor("#444444"))
    cell = ParagraphStyle("cell", parent=body, fontSize=7.5, leading=9.2, spaceAfter=0)
    head_cell = ParagraphStyle("headcell", parent=cell, fontName="Helvetica-Bold")
    hstyles = {1: ParagraphStyle("h1", parent=ss["Heading1"], fontName="Helvetica-Bold", fontSize=15, leading=19,
                                 spaceBefore=10, spaceAfter=6),
               2: ParagraphStyle("h2", parent=ss["Heading2"], fontName="Helvetica-Bold", fontSize=12, leading=15,
                                 spaceBefore=8, spaceAfter=4),
               3: ParagraphStyle("h3", parent=ss["Heading3"], fontName="Helvetica-Bold", fontSize=10.5, leading=13,
                                 spaceBefore=6, spaceAfter=3)}
    title_style = ParagraphStyle("title", parent=ss["Title"], fontName="Helvetica-Bold", fontSize=20, leading=25,
                                 alignment=TA_LEFT, spaceAfter=8)

    class _Doc(SimpleDocTemplate):
        def afterFlowable(self, flowable):  # bookmarks: one outline entry per heading
            key = getattr(flowable, "_bookmark", None)
            if key:
                text, level = key
                self.canv.bookmarkPage(f"h{self._seq}")
                self.canv.addOutlineEntry(_latin1(text), f"h{self._seq}", level=level, closed=level > 0)
                self._seq += 1

    external = {_latin1(p.href) for p in _links(doc) if not p.href.startswith("#")}
    footer = _latin1(f"{doc.studyid}  |  {doc.title}  |  {doc.date}")

    class _NumberedCanvas(Canvas):
        """Two-pass page numbers: 'Page x of y' once the page count is known."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self._pages = []
            self.setDateFormatter(lambda *_: pdf_date(doc.stamp))

        def linkRect(self, contents, destinationname, Rect=None, addtopage=1, name=None, relative=1,
                     thickness=0, color=None, dashArray=None, **kw):
            """reportlab takes a scheme-less href for an internal destination; a relative file
            link becomes a URI action (GoToR for a PDF), resolved against the guide's folder."""
            if destinationname in external:
                kind = "GoToR" if destinationname.lower().endswith(".pdf") else "URI"
                return self.linkURL(destinationname, Rect, relative=relative, thickness=0, kind=kind)
            return super().linkRect(contents, destinationname, Rect, addtopage, name, relative, thickness, color,
                                    dashArray, **kw)

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for state in self._pages:  # pages of the document
                self.__dict__.update(state)
                self.setFont("Helvetica", 7.5)
                self.setFillColor(colors.HexColor("#555555"))
                self.drawString(margin, 1.1 * cm, footer)
                self.drawRightString(page_w - margin, 1.1 * cm, f"Page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    def para(content, style=body):
        return Paragraph(_pdf_inline(content), style)

    story = [para(doc.title, title_style), para(Strong(doc.subtitle)), Spacer(1, 6)]
    meta = RLTable([[para(k, head_cell), para(v, cell)] for k, v in doc.meta], colWidths=[4.5 * cm, avail - 4.5 * cm])
    meta.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                              ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eeeeee")),
                              ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story += [meta, Spacer(1, 10), para("Contents", hstyles[2])]
    for h, n in numbered(doc):  # table of contents (headings of levels 1-2)
        if h.level <= 2:
            indent = 0 if h.level == 1 else 14
            story.append(Paragraph(_pdf_inline((n + " " if n else "") + h.text),
                                   ParagraphStyle(f"toc{h.level}", parent=body, leftIndent=indent, spaceAfter=1,
                                                  fontSize=9)))
    nums = {id(h): n for h, n in numbered(doc)}
    pending_heading = None
    for b in doc.blocks:  # document blocks
        if isinstance(b, Heading):
            n = nums.get(id(b), "")
            text = (n + " " if n else "") + b.text
            flow = Paragraph(f'<a name="{b.anchor}"/>' + _pdf_inline(text), hstyles[min(b.level, 3)])
            flow._bookmark = (text, min(b.level, 3) - 1)
            if pending_heading is not None:
                story.append(pending_heading)
            pending_heading = flow
            continue
        if isinstance(b, Para):
            flow = para(b.content, note if b.style == "note" else body)
        elif isinstance(b, Bullets):
            flow = ListFlowable([ListItem(para(i), leftIndent=12) for i in b.items], bulletType="bullet",
                                start="-", leftIndent=12, bulletFontName="Helvetica")
        elif isinstance(b, Table):
            ncol = len(b.columns)
            w = b.widths if len(b.widths) == ncol else fit_widths(b.columns, b.rows)
            tot = float(sum(w))
            widths = [avail * x / tot for x in w]
            data = [[para(c, head_cell) for c in b.columns]] + [[para(c, cell) for c in r] for r in b.rows]
            flow = RLTable(data, colWidths=widths, repeatRows=1)
            style = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                     ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e4e4")),
                     ("VALIGN", (0, 0), (-1, -1), "TOP"),
                     ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
                     ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
            style += [("BACKGROUND", (0, i + 1), (-1, i + 1), colors.HexColor("#fde2e2")) for i in sorted(b.marked)]
            flow.setStyle(TableStyle(style))
            if b.caption:
                flow = [para(Strong(b.caption), body), flow]
        else:  # pragma: no cover - the model has no other block
            continue
        flows = flow if isinstance(flow, list) else [flow]
        if pending_heading is not None:  # keep a heading with the start of what follows it
            story.append(KeepTogether([pending_heading, flows[0]]) if not isinstance(flows[0], RLTable)
                         else pending_heading)
            story += flows[1:] if not isinstance(flows[0], RLTable) else flows
            pending_heading = None
        else:
            story += flows
        story.append(Spacer(1, 3))
    if pending_heading is not None:
        story.append(pending_heading)

    buf = io.BytesIO()
    pdf = _Doc(buf, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=margin, bottomMargin=2 * cm,
               title=_latin1(f"{doc.title}: {doc.studyid}"), author=_latin1(doc.author), subject=_latin1(doc.subtitle),
               creator="cart-sdtm-pipeline", invariant=1, pageCompression=1)
    pdf._seq = 0
    pdf.build(story, canvasmaker=_NumberedCanvas)
    return buf.getvalue()


# ---- DOCX (python-docx) --------------------------------------------------------------------
def _docx_hyperlink(paragraph, text: str, href: str) -> None:
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    link = OxmlElement("w:hyperlink")
    if href.startswith("#"):
        link.set(qn("w:anchor"), href[1:])
    else:
        link.set(qn("r:id"), paragraph.part.relate_to(href, RT.HYPERLINK, is_external=True))
    run = OxmlElement("w:r")
    props = OxmlElement("w:rPr")
    color = OxmlElement("w:color")
    color.set(qn("w:val"), "1A4C9C")
    underline = OxmlElement("w:u")
    underline.set(qn("w:val"), "single")
    props.append(color)
    props.append(underline)
    run.append(props)
    t = OxmlElement("w:t")
    t.text = text
    t.set(qn("xml:space"), "preserve")
    run.append(t)
    link.append(run)
    paragraph._p.append(link)


def _docx_inline(paragraph, content: Inline, bold: bool = False, italic: bool = False, size=None) -> None:
    for p in _flat(content):
        if isinstance(p, Link):
            _docx_hyperlink(paragraph, p.text, p.href)
            continue
        run = paragraph.add_run(p.text if isinstance(p, Strong) else p)
        run.bold = bold or isinstance(p, Strong) or None
        run.italic = italic or None
        if size is not None:
            run.font.size = size


def _shade(cell, fill: str) -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    cell._tc.get_or_add_tcPr().append(shd)


def _fixed_zip(data: bytes, stamp: datetime) -> bytes:
    """Rewrite the DOCX zip with every member stamped ``stamp`` (python-docx uses the clock)."""
    when = (max(stamp.year, 1980), stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():  # the package parts (a dozen)
            zi = zipfile.ZipInfo(info.filename, date_time=when)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            dst.writestr(zi, src.read(info.filename))
    return out.getvalue()


def to_docx(doc: Document) -> bytes:
    from docx import Document as Docx
    from docx.shared import Cm, Pt

    d = Docx()
    sec = d.sections[0]
    sec.page_width, sec.page_height = Cm(21.0), Cm(29.7)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(sec, side, Cm(2.0))
    d.styles["Normal"].font.name = "Arial"
    d.styles["Normal"].font.size = Pt(10)
    avail = Cm(17.0)

    cp = d.core_properties
    cp.title = f"{doc.title}: {doc.studyid}"
    cp.subject = doc.subtitle
    cp.author = doc.author
    cp.last_modified_by = "cart-sdtm-pipeline"
    cp.comments = "Draft generated from the study metadata and the built datasets; edit before submission."
    cp.keywords = f"{doc.studyid}; reviewer's guide"
    cp.category = ""
    cp.revision = 1
    cp.created = doc.stamp
    cp.modified = doc.stamp
    cp.last_printed = doc.stamp

    d.add_heading(doc.title, level=0)
    _docx_inline(d.add_paragraph(), Strong(doc.subtitle))
    meta = d.add_table(rows=0, cols=2)
    meta.style = "Table Grid"
    for k, v in doc.meta:  # title block rows
        cells = meta.add_row().cells
        _docx_inline(cells[0].paragraphs[0], k, bold=True, size=Pt(9))
        _docx_inline(cells[1].paragraphs[0], v, size=Pt(9))
        _shade(cells[0], "EEEEEE")
    nums = {id(h): n for h, n in numbered(doc)}
    for b in doc.blocks:  # document blocks
        if isinstance(b, Heading):
            n = nums.get(id(b), "")
            d.add_heading((n + " " if n else "") + b.text, level=min(b.level, 3))
        elif isinstance(b, Para):
            _docx_inline(d.add_paragraph(), b.content, italic=b.style == "note")
        elif isinstance(b, Bullets):
            for item in b.items:
                _docx_inline(d.add_paragraph(style="List Bullet"), item)
        elif isinstance(b, Table):
            if b.caption:
                _docx_inline(d.add_paragraph(), Strong(b.caption))
            t = d.add_table(rows=1, cols=len(b.columns))
            t.style = "Table Grid"
            ncol = len(b.columns)
            w = b.widths if len(b.widths) == ncol else fit_widths(b.columns, b.rows)
            tot = float(sum(w))
            for j, c in enumerate(b.columns):
                cellx = t.rows[0].cells[j]
                _docx_inline(cellx.paragraphs[0], c, bold=True, size=Pt(8))
                _shade(cellx, "E4E4E4")
            for i, r in enumerate(b.rows):  # table rows
                cells = t.add_row().cells
                for j, c in enumerate(r):
                    _docx_inline(cells[j].paragraphs[0], c, size=Pt(8))
                    if i in b.marked:
                        _shade(cells[j], "FDE2E2")
            for j in range(ncol):
                for row in t.rows:
                    row.cells[j].width = int(avail * w[j] / tot)
    buf = io.BytesIO()
    d.save(buf)
    return _fixed_zip(buf.getvalue(), doc.stamp)


# ---- writing -------------------------------------------------------------------------------
FORMATS = ("pdf", "html", "docx")
_RENDER = {"pdf": to_pdf, "html": to_html, "docx": to_docx}


def write_document(doc: Document, target_dir: Path, stem: str, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Render ``doc`` as ``<stem>.<fmt>`` for each format into ``target_dir``; the paths written."""
    unknown = [f for f in formats if f not in _RENDER]
    if unknown:
        raise ValueError(f"unknown document format(s) {', '.join(unknown)} (known: {', '.join(FORMATS)})")
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:  # three formats at most
        path = target / f"{stem}.{fmt}"
        write_bytes_atomic(path, _RENDER[fmt](doc))
        written.append(path)
    return written
