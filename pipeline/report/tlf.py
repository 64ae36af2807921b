"""Tables, listings and figures as delivered to a clinical study report: RTF and PDF.

One :class:`Doc` per output of ``specs/tlf/outputs.csv`` whose ``formats`` include ``rtf`` or
``pdf``. Both renderings carry the same furniture on every page:

- header: the study and ``Page x of y``;
- titles: ``Table 14.3.1.1`` (type and number from the spec), the title, the subtitle and
  the analysis population;
- the column headers (repeated on every page), then the rows; long texts wrap inside their
  column (widths from the content: :func:`column_widths`), wide outputs are
  landscape (``orientation`` of the spec);
- footnotes (``specs/tlf/footnotes.csv``) on every page;
- footer: the source datasets and the data cut-off; the program that made the output and
  the run date/time (:func:`pipeline.export.xpt.build_timestamp`: ``SOURCE_DATE_EPOCH``, else
  the data cut-off), so that reruns are byte-identical.

Both are laid out by one decision, :func:`layout`: the body font size (the spec's, smaller
in whole points down to ``min_font_size`` when the columns cannot hold their longest words),
the column widths, every cell's wrapped lines and the rows of every page. The RTF and the PDF
therefore have the same pages and the same ``y`` in ``Page x of y``
(``tests/test_listings_tlf.py`` checks both against each other, and against LibreOffice's
rendering of the RTF when it is installed).

RTF is composed by :mod:`pipeline.report.rtf` (:func:`rtf_text`): page layout, title, column
header and body tables, footnotes, page header/footer fields, on the layout's pages. Its bytes
are those rtflite wrote for these documents until it was replaced (rtflite is the composer's
oracle in the tests, ``tests/test_rtf_composer.py``). ``Page x of y`` is the PAGE/NUMPAGES
field pair; the stored field results (the text a reader sees before the fields update) are 1
and the layout's page count.

PDF goes through reportlab's canvas (pure Python, no system packages): each page of the
layout is drawn as text and rules. The PDF's creation and modification dates are the run
stamp and reportlab's invariant mode fixes the document ID, so the bytes do not change on
rerun. The text font is DejaVu Sans (shipped with matplotlib), embedded as a subset
(:func:`pdf_fonts`).
"""

from __future__ import annotations

import io
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline.report import rtf

PROGRAM_PACKAGE = "cart-sdtm-pipeline"
NO_RECORDS = "No records meet the criteria of this output."
#: points per inch
PT = 72.0
FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"


@dataclass
class Doc:
    """One output, ready to render: texts only (cells already formatted)."""

    studyid: str
    type: str                      # Table, Listing, Figure
    number: str
    title: str
    subtitle: str = ""
    population: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    align: list[str] = field(default_factory=list)      # "l" / "r" per column
    orientation: str = "portrait"
    footnotes: list[str] = field(default_factory=list)
    source: str = ""
    cutoff: str = ""
    program: str = ""
    run: str = ""
    png: bytes | None = None
    png_path: Path | None = None
    #: the PNG's pixels as a PIL image, when the caller has them: the PDF embeds them instead
    #: of decoding ``png`` (the same image, :func:`pipeline.report.figures.png_and_pixels`)
    image: object | None = None

    @property
    def heading(self) -> str:
        return f"{self.type} {self.number}".strip()

    def title_lines(self) -> list[str]:
        lines = [self.heading, self.title]
        if self.subtitle:
            lines.append(self.subtitle)
        if self.population:
            lines.append(f"Population: {self.population}")
        return [t for t in lines if t]

    def footer_lines(self) -> list[str]:
        return [f"Source: {self.source}. Data cut-off: {self.cutoff}.",
                f"Program: {self.program}. Run: {self.run}."]


def page_size(orientation: str) -> tuple[float, float]:
    """US letter in points, landscape or portrait."""
    from reportlab.lib.pagesizes import landscape, letter
    return landscape(letter) if orientation == "landscape" else letter


def _word_widths(headers: list[str], columns: list[list[str]], fonts: tuple[str, str]) -> list[float]:
    """Per column, the width at font size 1 of its longest unbreakable piece (:func:`atoms`
    of the header in bold, of the distinct values in the body font)."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    out = []
    for h, values in zip(headers, columns):
        words = {a for v in set(values) for a, _ in atoms(v)}
        body = max((stringWidth(pdf_text(w), fonts[0], 1.0) for w in words), default=0.0)
        head = max((stringWidth(pdf_text(a), fonts[1], 1.0) for a, _ in atoms(h)), default=0.0)
        out.append(max(body, head))
    return out


def fit_font_size(headers: list[str], columns: list[list[str]], avail: float, size: float, min_size: float,
                  pad: float = 2.0, fonts: tuple[str, str] | None = None, words: list[float] | None = None) -> float:
    """The largest body font size, from ``size`` down to ``min_size`` in whole points, at which
    every column is at least as wide as its longest word (so that no word, date or identifier
    is broken between characters); ``min_size`` when even that does not fit (the words then
    break, :func:`column_widths`)."""
    fonts = fonts or pdf_fonts()[:2]
    words = _word_widths(headers, columns, fonts) if words is None else words
    s = float(size)
    while s > min_size:
        if sum(min(w * s, 0.25 * avail) + 2 * pad for w in words) <= avail:
            return s
        s -= 1.0
    return float(min_size)


def percentile(values: list[float], q: float) -> float:
    """``float(np.percentile(values, q))`` of a short list of finite numbers, computed in Python
    (numpy's call costs ~0.1 ms, for a column's few distinct widths): numpy's default method
    ("linear", Hyndman & Fan type 7) step by step, with the same float operations. The sorted
    values at the virtual index ``(n - 1) * q / 100`` and the next one, interpolated by its
    fractional part ``g`` from the nearer end (``b - (b - a) * (1 - g)`` when ``g >= 0.5``, else
    ``a + (b - a) * g``); the last value when the index is at or beyond the last place."""
    ordered = sorted(values)
    n = len(ordered)
    virtual = (n - 1) * (q / 100)
    below = math.floor(virtual)
    if virtual >= n - 1:
        a = b = ordered[-1]
        below = -1
    else:
        a, b = ordered[below], ordered[below + 1]
    gamma = virtual - below
    diff = b - a
    return float(b - diff * (1 - gamma)) if gamma >= 0.5 else float(a + diff * gamma)


def column_widths(headers: list[str], columns: list[list[str]], avail: float, size: float,
                  pad: float = 2.0, fonts: tuple[str, str] = (FONT, FONT_BOLD),
                  words: list[float] | None = None) -> list[float]:
    """Column widths in points that fill ``avail``: at least the longest word of the column
    (header or value; a word longer than a quarter of the page wraps inside), then the rest
    shared by the 90th percentile of the value widths. Measured on the distinct values.
    ``words``: :func:`_word_widths` of the same texts, when the caller has them."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    mins, wants = [], []
    for word, values in zip(_word_widths(headers, columns, fonts) if words is None else words, columns):
        distinct = sorted(set(values))
        widths = [stringWidth(pdf_text(v), fonts[0], size) for v in distinct] or [0.0]
        lo = min(word * size, 0.25 * avail) + 2 * pad
        mins.append(lo)
        wants.append(max(lo, min(percentile(widths, 90) + 2 * pad, 0.35 * avail)))
    mins_a, wants_a = np.asarray(mins), np.asarray(wants)
    if wants_a.sum() <= avail:
        out = wants_a * (avail / wants_a.sum())
    elif mins_a.sum() <= avail:
        extra = wants_a - mins_a
        out = mins_a + extra * ((avail - mins_a.sum()) / extra.sum() if extra.sum() else 0.0)
    else:
        out = mins_a * (avail / mins_a.sum())
    return [float(x) for x in out]


# ---------------------------------------------------------------------------------------
# Page layout: one decision for both writers
# ---------------------------------------------------------------------------------------
#: cell padding left and right, points (the RTF's \trgaph is set to the same)
PAD = 2.0
#: title lines: font size and line height, points
TITLE_SIZE, TITLE_LEAD = 10.0, 12.0
#: the RTF's page header and footer sit in the top and bottom margins, this much taller
#: than the PDF's (inches)
RTF_HEADER_IN = 0.35
#: line height of Arial/Liberation Sans in a word processor, per point of font size
RTF_LINE = 1.15
#: points kept free at the foot of every RTF page, for rounding in the word processor
RTF_SLACK = 12.0


@dataclass
class Layout:
    """Everything that decides what goes on which page, computed once (:func:`layout`) and
    used by both :func:`rtf_text` and :func:`pdf_bytes`, so that the RTF and the PDF have
    the same pages and the same ``Page x of y``.

    Heights are those of the PDF's rows (``lines * 1.25 * size + 2 * PAD``), which are at
    least the RTF's (a word processor sets Arial at about 1.15 * size per line with 1.5 pt
    of paragraph spacing, and Arial is narrower than DejaVu Sans, so it never needs more
    lines); the rows a page takes are bounded by the smaller of the two page bodies (the
    RTF's page header and footer take part of the page inside its margins)."""

    orientation: str
    width: float                       # page, points
    height: float
    margin: float                      # points
    font_size: float                   # body (may be smaller than the spec's, fit_font_size)
    note_size: float
    titles: list[list[str]]            # per title line, its wrapped lines
    notes: list[str]                   # footnote lines, wrapped
    col_widths: list[float] = field(default_factory=list)
    head: list[list[str]] = field(default_factory=list)          # per column, wrapped lines
    cells: list[list[list[str]]] = field(default_factory=list)   # per row, per column, lines
    rows: list[list[str]] = field(default_factory=list)          # the row texts both files print
    pages: list[tuple[int, int]] = field(default_factory=list)   # [start, stop) row ranges
    rtf_body_height: float = 0.0       # points the RTF page has for figure or table

    @property
    def lead(self) -> float:
        return self.font_size * 1.25

    @property
    def avail(self) -> float:
        return self.width - 2 * self.margin

    def row_height(self, lines: list[list[str]]) -> float:
        return max(len(x) for x in lines) * self.lead + 2 * PAD

    @property
    def head_height(self) -> float:
        return self.row_height(self.head) if self.head else 0.0

    @property
    def title_height(self) -> float:
        """PDF: the page header line, the title lines, the gap before the table."""
        return 14 + TITLE_LEAD * sum(len(t) for t in self.titles) + 8

    def bottom_height(self, foot_lines: int = 2) -> float:
        """PDF: footnote and footer lines at the foot of the page."""
        return (len(self.notes) + foot_lines) * (self.font_size + 1.5) + 10

    @property
    def total(self) -> int:
        return len(self.pages)


def layout(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6, min_font_size: float | None = None,
           continued: str | None = None) -> Layout:
    """The pages of ``doc``: font size, column widths, wrapped texts and the rows of every
    page (a row is never split across pages). ``continued``: in a table whose first column
    names a group only on the group's first row (``ae_summary``: the system organ class), a
    page that starts inside a group gets the group's name followed by this text in that
    column (settings.toml ``page.continued``)."""
    W, H = page_size(doc.orientation)
    m = margin_in * PT
    avail = W - 2 * m
    font, bold, _ = pdf_fonts()
    ncol = len(doc.headers)
    rows = doc.rows or ([[NO_RECORDS] + [""] * (ncol - 1)] if ncol else [])
    size = float(font_size)
    # the texts of each column and their longest words, measured once for the font size and the widths
    columns = [[r[j] for r in doc.rows] for j in range(ncol)] if doc.png is None else []
    words = _word_widths(doc.headers, columns, (font, bold)) if doc.png is None and doc.rows else None
    if doc.png is None and ncol and min_font_size is not None and min_font_size < size:
        size = fit_font_size(doc.headers, columns, avail, size, float(min_font_size), PAD, (font, bold), words)
    note_size = size
    wrap_t = _Wrapper(bold, TITLE_SIZE)
    wrap_note = _Wrapper(font, note_size)
    lay = Layout(orientation=doc.orientation, width=W, height=H, margin=m, font_size=size, note_size=note_size,
                 titles=[wrap_t(t, avail) for t in doc.title_lines()],
                 notes=[ln for t in doc.footnotes for ln in wrap_note(t, avail - 2 * PAD)])
    # the RTF page: inside its margins (page header and footer beyond them), the title
    # paragraph (9 pt before and after), the figure or the table, the footnote rows
    rtf_h = H - 2 * (m + RTF_HEADER_IN * PT)
    rtf_titles = 18 + TITLE_SIZE * RTF_LINE * sum(len(t) for t in lay.titles)
    rtf_notes = len(lay.notes) * note_size * 1.25 + 2 * PAD if lay.notes else 0.0
    lay.rtf_body_height = rtf_h - rtf_titles - rtf_notes - RTF_SLACK
    if doc.png is not None or not ncol:
        lay.pages = [(0, 0)]
        return lay
    if doc.rows:
        lay.col_widths = column_widths(doc.headers, columns, avail, size, PAD, (font, bold), words)
    else:
        lay.col_widths = [avail / ncol] * ncol
    wrap, wrap_b = _Wrapper(font, size), _Wrapper(bold, size)
    lay.head = [wrap_b(h, w - 2 * PAD) for h, w in zip(doc.headers, lay.col_widths)]
    if doc.rows:
        # each column's distinct texts wrapped once (listings repeat them), then looked up row by row
        wrapped = [{v: wrap(v, w - 2 * PAD) for v in set(col)} for col, w in zip(columns, lay.col_widths)]
        lay.cells = [[lines[v] for lines, v in zip(wrapped, r)] for r in rows]
    else:
        lay.cells = [[[NO_RECORDS]] + [[""]] * (ncol - 1)]
    pdf_body = H - 2 * m - lay.title_height - lay.bottom_height() - lay.head_height
    body = min(pdf_body, lay.rtf_body_height - lay.head_height)
    lay.rows = [list(r) for r in rows]
    start, used, group = 0, 0.0, ""
    for i, cells in enumerate(lay.cells):  # rows, to paginate
        h = lay.row_height(cells)
        if i > start and used + h > body:
            lay.pages.append((start, i))
            start, used = i, 0.0
            if continued and doc.type == "Table" and doc.rows and group and not lay.rows[i][0].strip():
                # a table's group (system organ class, parameter) goes on over the page break:
                # the page's first row names it, as the RTF and the PDF both print it
                lay.rows[i][0] = f"{group} {continued}"
                cells[0] = wrap(lay.rows[i][0], lay.col_widths[0] - 2 * PAD)
                h = lay.row_height(cells)
        if doc.rows and rows[i][0].strip():
            group = rows[i][0]
        used += h
    lay.pages.append((start, len(lay.cells)))
    return lay


# ---------------------------------------------------------------------------------------
# RTF (pipeline.report.rtf)
# ---------------------------------------------------------------------------------------
def _rtf_page_fields(total: int | str) -> str:
    return ("Page {\\field{\\*\\fldinst PAGE }{\\fldrslt 1}} of "
            "{\\field{\\*\\fldinst NUMPAGES }{\\fldrslt " + str(total) + "}}")


def rtf_escape(text: str) -> str:
    """Data text as RTF text: RTF's own specials ``\\ { }`` escaped, nothing else converted
    (``_``, ``^`` and ``>=`` stay as typed); characters beyond Latin-1 become ``\\u`` escapes
    when the text is written (:func:`pipeline.report.rtf.unicode_escape`)."""
    return text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")


def _esc(texts: list[str]) -> list[str]:
    return [rtf_escape(t) for t in texts]


#: a short compound of two parts with a letter ("CAR-T", "IL-6", "X-ray", "T-cell"): the PDF
#: keeps it whole (:data:`_SOFT_BREAK`) but a word processor would break after its hyphen,
#: so the RTF cell writes that hyphen as RTF's non-breaking hyphen. Identifiers and dates
#: (two or more hyphens) keep the hyphens as typed, searchable: their columns are as wide as
#: their longest value (:func:`column_widths`)
_SHORT_COMPOUND = re.compile(r"(?<![^\s(/])([A-Za-z0-9]{1,5})-([A-Za-z0-9]{1,5})(?=$|[\s,;:.)/])")


def _nb_hyphen(m: re.Match) -> str:
    left, right = m.group(1), m.group(2)
    soft = len(left) >= 2 and len(right) >= 2 and left[-2:].isalpha() and right[:2].isalpha()
    if soft or not (left + right).strip("0123456789"):
        return m.group(0)
    return f"{left}\\_{right}"


def rtf_cell(text: str) -> str:
    """A table cell's text as RTF: :func:`rtf_escape`, and the hyphen of a short
    compound non-breaking (:data:`_SHORT_COMPOUND`), so that the RTF breaks a cell's lines
    where the PDF does."""
    return _SHORT_COMPOUND.sub(_nb_hyphen, rtf_escape(text))


#: a table cell's height in inches; the RTF's text gap left and right of a cell's text
#: (\trgaph) is half of it: :data:`PAD`, the padding the widths were computed with
_CELL_HEIGHT = 2 * PAD / PT
#: the borders of a table's first and last lines: double at the top of the first page's
#: column header and under the last page's footnote (or last row), single elsewhere
_FIRST, _LAST = "double", "double"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's header."""
    return rtf.png_size(png)


def rtf_text(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6, lay: Layout | None = None) -> str:
    """The output as an RTF document, on the pages of ``lay`` (:func:`layout`), composed with
    :mod:`pipeline.report.rtf` (the bytes rtflite wrote for it: ``tests/test_rtf_composer.py``).

    Every page: the page header (the study, ``Page x of y``) and footer (source, cut-off,
    program, run) of the document, the title paragraph, then for a table its column header
    row, the page's rows and one footnote row (all footnotes, a line each), for a figure the
    picture (its own aspect ratio, as large as the page body allows) and the footnotes as a
    paragraph. ``Page x of y`` is the PAGE/NUMPAGES field pair; the stored field results (the
    text a reader sees before the fields update) are 1 and the layout's page count. Arial
    throughout (its metrics are Helvetica's, which the layout measured)."""
    lay = lay or layout(doc, font_size, margin_in)
    landscape = doc.orientation == "landscape"
    width, height = (11.0, 8.5) if landscape else (8.5, 11.0)
    top = margin_in + RTF_HEADER_IN
    page_margins = [margin_in, margin_in, top, top, margin_in * 0.6, margin_in * 0.6]
    header = rtf.page_header(rtf.paragraph([rtf.run(rtf_escape(f"Study {doc.studyid}"), 8),
                                            rtf.run(_rtf_page_fields(lay.total), 8)], rtf.paragraph_format("r")))
    footer = rtf.page_footer(rtf.paragraph([rtf.run(t, 7) for t in _esc(doc.footer_lines())],
                                           rtf.paragraph_format("l")))
    setup = rtf.page_setup(width, height, page_margins, landscape)
    title = rtf.paragraph([rtf.run(t, TITLE_SIZE, bold=k < 2) for k, t in enumerate(_esc(doc.title_lines()))],
                          rtf.paragraph_format("c", 180, 180))
    notes = "\\line ".join(_esc(doc.footnotes))  # one paragraph or cell, a line per footnote
    if doc.png is not None:
        pw, ph = png_size(doc.png)
        scale = min(lay.avail / PT / pw, lay.rtf_body_height / PT / ph)
        pict = rtf.picture(doc.png, round(pw * scale, 3), round(ph * scale, 3))
        note_par = rtf.paragraph([rtf.run(notes, lay.note_size)], rtf.paragraph_format("l")) if notes else ""
        return rtf.figure_document(header, footer, setup, title, pict, note_par)
    if not doc.headers:
        raise ValueError(f"RTF of {doc.heading}: a table without columns")
    pages = _rtf_table_pages(doc, lay, title, notes, rtf.page_break(width, height, page_margins))
    return rtf.document(header, footer, setup, "\n".join(pages))


def _rtf_table_pages(doc: Doc, lay: Layout, title: str, notes: str, page_break: str) -> list[str]:
    """The lines of a table's pages: page break (from the second page on), title, an empty
    line, the column header row, the page's rows, the footnote row.

    Borders: a single rule left of every cell and right of the last; double above the first
    page's column header (single above the others); single above each page's first row;
    under the footnote row single, double on the last page (without footnotes, under the
    page's last row). A row's definition depends only on those borders, so a document has a
    few; a cell's paragraph only on its column and text, so each distinct text of a column
    is written once (listings repeat subjects, cohorts, terms)."""
    ncol = len(doc.headers)
    size = lay.font_size
    gap = rtf.gap_twips(_CELL_HEIGHT)
    edges = rtf.cell_edges(lay.col_widths, lay.avail / PT)
    given = [a if a in ("l", "r", "c") else "l" for a in (doc.align or ["l"] * ncol)]
    cell_fmt = [rtf.paragraph_format(given[j % len(given)], hyphenate=False) for j in range(ncol)]
    head_cells = [rtf.cell(rtf.run(t, size, bold=True), fmt) for t, fmt in zip(_esc(doc.headers), cell_fmt)]
    head_row = {first: rtf.row(rtf.row_definition(edges, _FIRST if first else "single", "", "bottom", gap), head_cells)
                for first in (True, False)}
    note_cell = [rtf.cell(rtf.run(notes, lay.note_size), rtf.paragraph_format("l"))]
    note_row = {bottom: rtf.row(rtf.row_definition([rtf.twips(lay.avail / PT)], "single", bottom, "top", gap), note_cell)
                for bottom in ("single", _LAST)}
    definitions: dict[tuple[str, str], str] = {}  # (top, bottom) -> a body row's definition
    rows = (lay.rows or doc.rows) if doc.rows else [[NO_RECORDS] + [""] * (ncol - 1)]
    # each column's cell paragraphs, each distinct text written once, then the rows' cells
    columns = []
    for j, fmt in enumerate(cell_fmt):  # columns
        texts = [r[j] for r in rows]
        written = {v: rtf.cell(rtf.run(rtf_cell("" if v is None else str(v)), size), fmt) for v in set(texts)}
        columns.append([written[v] for v in texts])
    row_cells = list(zip(*columns))

    lines: list[str] = []
    for k, (a, b) in enumerate(lay.pages, start=1):  # pages
        last_rule = _LAST if k == lay.total else "single"
        if k > 1:
            lines.append(page_break)
        lines += [title, "\n", head_row[k == 1]]
        for i in range(a, b):  # the rows of one page
            bottom = last_rule if i == b - 1 and not notes else ""
            rules = ("single" if i == a else "", bottom)
            if rules not in definitions:
                definitions[rules] = rtf.row_definition(edges, *rules, "top", gap)
            lines.append(rtf.row(definitions[rules], row_cells[i]))
        if notes:
            lines.append(note_row[last_rule])
    return lines


def rtf_bytes(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6, lay: Layout | None = None) -> bytes:
    """:func:`rtf_text` in the code page the document declares (``\\ansi``: Windows-1252; a
    character it lacks becomes ``?``). Almost every document is ASCII (beyond Latin-1 is
    written as ``\\u`` escapes), whose cp1252 bytes are its ASCII bytes: those are encoded by
    the faster ASCII codec."""
    text = rtf_text(doc, font_size, margin_in, lay)
    return text.encode("ascii") if text.isascii() else text.encode("cp1252", errors="replace")


# ---------------------------------------------------------------------------------------
# PDF (reportlab canvas)
# ---------------------------------------------------------------------------------------
def _latin1(s: str) -> str:
    return s.encode("latin-1", errors="replace").decode("latin-1")


@lru_cache(maxsize=1)
def pdf_fonts() -> tuple[str, str, frozenset | None]:
    """The PDF body and bold fonts and the code points they can draw: DejaVu Sans, which ships
    with matplotlib (a declared dependency), embedded as a subset, so that texts beyond
    Latin-1 (µ, ≥, ×, Greek, Cyrillic) print as written; Helvetica with Latin-1 (None) only
    when the font files are missing. Characters outside the font print as ``?``."""
    try:
        import matplotlib
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont
        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        for name in ("DejaVuSans", "DejaVuSans-Bold"):
            font = TTFont(name, str(folder / f"{name}.ttf"))
            _subsets_once(font.face)
            _font_objects_once(font)
            pdfmetrics.registerFont(font)
        return "DejaVuSans", "DejaVuSans-Bold", frozenset(pdfmetrics.getFont("DejaVuSans").face.charToGlyph)
    except (ImportError, OSError):
        return FONT, FONT_BOLD, None


#: set False to make and compress every document's font subsets anew (slower; same bytes)
PDF_SUBSETS_ONCE = True


class _FlateOnce:
    """reportlab's Flate filter (``pdfdoc.PDFZCompress``, ``zlib.compress`` at its default
    level) for the embedded font files, remembering its output per content: the same bytes in,
    the same bytes out, compressed once per process instead of once per document."""

    pdfname = "FlateDecode"

    def __init__(self):
        self.done: dict[bytes, bytes] = {}

    def encode(self, content: bytes) -> bytes:
        got = self.done.get(content)
        if got is None:
            from reportlab.pdfbase.pdfdoc import PDFZCompress
            got = self.done[content] = PDFZCompress.encode(content)
        return got


_FLATE_ONCE = _FlateOnce()


def _subsets_once(face) -> None:
    """The font subsets of ``face`` (a reportlab ``TTFontFace``, one of :func:`pdf_fonts`) made
    and compressed once per process, not once per document.

    Every PDF embeds its subsets of both fonts, and nearly every one embeds the same two: with
    reportlab's readable-ASCII layout a document of ASCII text has one subset, codes 32-126 in
    place. reportlab cuts a subset out of the font file (``makeSubset``, a pure function of the
    face and the subset's code points) and Flate-compresses it (``zlib.compress``, a pure
    function of the bytes) anew in every document: a fifth of a listing's PDF time, the same
    bytes each time. reportlab has no hook for either, so the two methods of these two face
    objects (ours: :func:`pdf_fonts` makes them) are wrapped on the instances: ``makeSubset``
    answers from a memo, and ``addSubsetObjects`` (which calls it and registers the font file
    stream) then gives the stream :data:`_FLATE_ONCE` in place of ``PDFZCompress``. The objects
    and bytes written are the same (``PDF_SUBSETS_ONCE`` off: reportlab's own calls)."""
    from reportlab.pdfbase.pdfdoc import PDFZCompress

    make, add = face.makeSubset, face.addSubsetObjects
    made: dict[tuple[int, ...], bytes] = {}

    def make_subset(subset):
        if not PDF_SUBSETS_ONCE:
            return make(subset)
        key = tuple(subset)
        got = made.get(key)
        if got is None:
            got = made[key] = make(subset)
        return got

    def add_subset_objects(doc, fontname, subset):
        ref = add(doc, fontname, subset)
        if PDF_SUBSETS_ONCE:
            stream = doc.idToObject[doc.idToObject[ref.name].dict["FontFile2"].name]
            if stream.filters:
                stream.filters = [_FLATE_ONCE if f is PDFZCompress else f for f in stream.filters]
        return ref

    face.makeSubset, face.addSubsetObjects = make_subset, add_subset_objects


#: set False to format every document's font widths and compress its ToUnicode maps anew
#: (slower; same bytes)
PDF_FONT_OBJECTS_ONCE = True


def _font_objects_once(font) -> None:
    """The ``/Widths`` array and the ToUnicode CMap stream of each font subset a document
    embeds, formatted and compressed once per process instead of once per document.

    reportlab's ``TTFont.addObjects`` makes, for every subset of the font a document used, a
    font dictionary whose ``/Widths`` is an array of the subset's glyph widths (128 numbers for
    the readable-ASCII subset, formatted one by one in pure Python: most of the time of a short
    document's PDF) and whose ``/ToUnicode`` is a Flate-compressed CMap stream; both are pure
    functions of the font and the subset's code points, and nearly every document has the same
    subsets. ``addObjects`` of this font object (ours: :func:`pdf_fonts` makes it) is wrapped on
    the instance: after reportlab's own call, each new subset's widths array becomes one that
    answers its formatted bytes from a memo (keyed by its numbers and reportlab's line-break
    setting), and its CMap stream is compressed by :data:`_FLATE_ONCE`. The objects and bytes
    written are the same (``PDF_FONT_OBJECTS_ONCE`` off: reportlab's own objects)."""
    from reportlab import rl_config
    from reportlab.pdfbase import pdfdoc

    formatted: dict[tuple, bytes] = {}

    class WidthsOnce(pdfdoc.PDFArray):
        """A PDF array of numbers, formatted once per content (numbers format without the document)."""

        def format(self, document, IND=b"\n "):
            key = (tuple(self.sequence), rl_config.pdfMultiLine, IND)
            got = formatted.get(key)
            if got is None:
                got = formatted[key] = super().format(document, IND)
            return got

    add = font.addObjects

    def add_objects(doc):
        fonts = doc.idToObject["BasicFonts"].dict
        before = set(fonts)
        add(doc)
        if not PDF_FONT_OBJECTS_ONCE:
            return
        for name in set(fonts) - before:  # the subsets of this font the document embeds
            subset = fonts[name]
            widths = getattr(subset, "Widths", None)
            if type(widths) is pdfdoc.PDFArray and all(type(w) in (int, float) for w in widths.sequence):
                subset.Widths = WidthsOnce(widths.sequence)
            cmap = doc.idToObject.get(getattr(getattr(subset, "ToUnicode", None), "name", None))
            if isinstance(cmap, pdfdoc.PDFStream) and cmap.filters:
                cmap.filters = [_FLATE_ONCE if f is pdfdoc.PDFZCompress else f for f in cmap.filters]

    font.addObjects = add_objects


def pdf_text(s: str) -> str:
    """``s`` as the PDF font can draw it (:func:`pdf_fonts`)."""
    chars = pdf_fonts()[2]
    if chars is None:
        return _latin1(s)
    if s.isascii():
        return s
    return "".join(ch if ord(ch) in chars else "?" for ch in s)  # characters of one text


class _Wrapper:
    """Text wrapping for one font and size, cached per (text, width): listings repeat the
    same values (subject, cohort, Y/N, terms) many times."""

    def __init__(self, font: str, size: float):
        from reportlab.pdfbase.pdfmetrics import stringWidth
        self.width, self.font, self.size, self.cache = stringWidth, font, size, {}

    def _fit(self, line: str, width: float) -> list[str]:
        """A line wider than the column (one long word) broken between characters."""
        if self.width(line, self.font, self.size) <= width:
            return [line]
        out, cur = [], ""
        for ch in line:  # characters of one over-long word
            if cur and self.width(cur + ch, self.font, self.size) > width:
                out.append(cur)
                cur = ""
            cur += ch
        return out + [cur]

    def _lines(self, text: str, width: float) -> list[str]:
        """Greedy filling with the break points of :func:`atoms`."""
        lines, line = [], ""
        for atom, space in atoms(text):  # the atoms of one distinct value
            cand = line + (" " if space and line else "") + atom
            if not line or self.width(cand, self.font, self.size) <= width:
                line = cand
            else:
                lines.append(line)
                line = atom
        return lines + [line]

    def __call__(self, text: str, width: float) -> list[str]:
        """The lines of ``text`` in a column ``width`` wide: :meth:`_lines`, each line :meth:`_fit`.
        A text whose words, one space apart, fit on one line (most cells) is that one line,
        measured once: every line :meth:`_lines` tries is a prefix of it, so no narrower than
        it (a string's width is the sum of its characters' non-negative widths)."""
        key = (text, width)
        got = self.cache.get(key)
        if got is None:
            drawn = pdf_text(text) if text else ""
            one = " ".join(drawn.split())  # the atoms of the text put together on one line
            if text and self.width(one, self.font, self.size) <= width:
                got = [one]
            else:
                lines = self._lines(drawn, width) if text else [""]
                got = [piece for ln in lines for piece in self._fit(ln, width)] or [""]
            self.cache[key] = got
        return got


#: a line may break after "/" and inside a hyphenated word ("Donor-derived"), never inside
#: identifiers, dates or short compounds ("NCT06316427-01-002", "2024-05-10", "CAR-T", "IL-6")
_SOFT_BREAK = re.compile(r"(?<=/)(?=\S)|(?<=[A-Za-z]{2}-)(?=[A-Za-z]{2})")


def atoms(text: str) -> list[tuple[str, bool]]:
    """The unbreakable pieces of a text, each with whether a space precedes it."""
    out = []
    for k, word in enumerate(text.split()):
        for i, piece in enumerate(_SOFT_BREAK.split(word)):
            if piece:
                out.append((piece, k > 0 and i == 0))
    return out


def pdf_date(stamp: datetime) -> str:
    return stamp.strftime("D:%Y%m%d%H%M%S+00'00'")


class _WidthCache(dict):
    """String widths in one font and size, per distinct text."""

    def __init__(self, font: str, size: float):
        super().__init__()
        from reportlab.pdfbase.pdfmetrics import stringWidth
        self.font, self.size, self.measure = font, size, stringWidth

    def __call__(self, text: str) -> float:
        got = self.get(text)
        if got is None:
            got = self[text] = self.measure(text, self.font, self.size)
        return got


def _memo_text_object(canvas, memo: dict):
    """A reportlab text object for ``canvas`` (what ``canvas.beginText()`` returns) whose
    ``textOut`` and ``setTextOrigin`` reuse what they wrote before for the same text and
    position: a listing prints the same values and line positions on page after page, and
    reportlab formats each (font subsets, string width, pure-Python number formatting) anew.
    The operators are a pure function of the text, font, size, leading, rise and current font
    subset (:meth:`_formatText` assigns a character its subset when it first sees it, so a
    text seen before only switches subsets as it did then); ``memo`` is one document's.
    ``lines_at`` does both calls for a whole page of lines (:func:`_show_lines`)."""
    from reportlab.lib.rl_accel import fp_str
    from reportlab.pdfgen.textobject import PDFTextObject

    formats, origins, widths = memo.setdefault("formats", {}), memo.setdefault("origins", {}), memo.setdefault("widths", {})
    placed = memo.setdefault("placed", {})  # (x, y) -> the text matrix operator

    class MemoText(PDFTextObject):
        def setTextOrigin(self, x, y):
            xy = origins.get((x, y))
            if xy is None:
                xy = origins[(x, y)] = fp_str(x, y)
            self._code.append(("1 0 0 1 %s Tm" if self._canvas.bottomup else "1 0 0 -1 %s Tm") % xy)
            self._x0 = self._x = x
            self._y0 = self._y = y

        def textOut(self, text):
            if type(text) is not str:
                return super().textOut(text)
            wkey = (text, self._fontname, self._fontsize)
            w = widths.get(wkey)
            if w is None:
                w = widths[wkey] = self._canvas.stringWidth(text, self._fontname, self._fontsize)
            self._x = self._x + w
            key = (self._fontname, self._fontsize, self._leading, self._rise, self._curSubset, text)
            got = formats.get(key)
            if got is None:
                got = formats[key] = (self._formatText(text), self._curSubset)
            self._curSubset = got[1]
            self._code.append(got[0])

        def lines_at(self, items):
            """``setTextOrigin(x, y)`` then ``textOut(text)`` for each ``(x, y, text)`` of
            ``items`` (the lines of a page's cells): the same operators and the same state
            afterwards, without two method calls and their look-ups per line."""
            code, tm = self._code, ("1 0 0 1 %s Tm" if self._canvas.bottomup else "1 0 0 -1 %s Tm")
            state = (self._fontname, self._fontsize, self._leading, self._rise)
            sub = self._curSubset
            for x, y, text in items:  # the lines of one page
                op = placed.get((x, y))
                if op is None:
                    op = placed[(x, y)] = tm % fp_str(x, y)
                code.append(op)
                key = (*state, sub, text)
                got = formats.get(key)
                if got is None:
                    self._curSubset = sub
                    got = formats[key] = (self._formatText(text), self._curSubset)
                sub = got[1]
                code.append(got[0])
            self._curSubset = sub
            if items:
                x, y, text = items[-1]
                self._x0, self._y0, self._y = x, y, y
                self._x = x + self._canvas.stringWidth(text, self._fontname, self._fontsize)

    return MemoText(canvas)


def _show_lines(text, items: list[tuple[float, float, str]]) -> None:
    """Each ``(x, y, line)`` of ``items`` drawn on the text object ``text``: ``setTextOrigin``
    then ``textOut``, all at once through :func:`_memo_text_object`'s ``lines_at`` when
    ``text`` is one (reportlab's own text object otherwise, ``PDF_MEMO`` off)."""
    if hasattr(text, "lines_at"):
        text.lines_at(items)
        return
    for x, y, line in items:  # the lines of one page
        text.setTextOrigin(x, y)
        text.textOut(line)


def _replay(canvas, memo: dict, method: str, *args) -> None:
    """``canvas.<method>(*args)`` for ``drawString``, ``drawRightString``, ``drawCentredString``
    and ``line``, writing the operators the same call wrote before in this document: every
    page repeats its header, titles, footnotes, footer and rules, and reportlab measures and
    formats each anew (string widths, font subsets, pure-Python number formatting).

    What these methods write is a pure function of their arguments and the canvas's font,
    size and leading (a string starts a text object of its own, in the subset of its first
    character); their only other effect is on the document's font subsets, which the first
    call made (a character keeps its subset once it has one), so a repeated call only appends
    the same operators. ``memo`` is one document's."""
    key = (method, canvas._fontname, canvas._fontsize, canvas._leading, *args)
    got = memo.get(key)
    if got is None:
        before = len(canvas._code)
        getattr(canvas, method)(*args)
        memo[key] = canvas._code[before:]
    else:
        canvas._code.extend(got)


@contextmanager
def _binary_streams():
    """reportlab writes its compressed streams (pages, fonts, images) without the ASCII85
    wrapping it adds by default (``rl_config.useA85``): a fifth smaller, and its pure-Python
    encoder was a large part of the time of a PDF. The setting is restored afterwards."""
    from reportlab import rl_config
    saved = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = saved


#: set False to draw the table text with reportlab's own text object (slower; same bytes)
PDF_MEMO = True


def pdf_bytes(doc: Doc, stamp: datetime, font_size: float = 7.0, margin_in: float = 0.6,
              lay: Layout | None = None) -> bytes:
    """The output as PDF, on the pages of ``lay`` (:func:`layout`), drawn with reportlab's canvas."""
    with _binary_streams():
        return _pdf_bytes(doc, stamp, font_size, margin_in, lay)


def _pdf_bytes(doc: Doc, stamp: datetime, font_size: float, margin_in: float, lay: Layout | None) -> bytes:
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    lay = lay or layout(doc, font_size, margin_in)
    W, H, m = lay.width, lay.height, lay.margin
    size, lead, pad = lay.font_size, lay.lead, PAD
    font, bold, _ = pdf_fonts()
    notes, foot = lay.notes, doc.footer_lines()
    bottom_h = lay.bottom_height(len(foot))
    cw = lay.col_widths
    right_cols = [j < len(doc.align) and doc.align[j] == "r" for j in range(len(cw))]
    width = _WidthCache(font, size)

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=(W, H), invariant=1, pageCompression=1)
    memo: dict = {}
    # the furniture every page repeats through _replay (reportlab's own calls when PDF_MEMO is off)
    page_memo: dict = {}
    draw = _replay if PDF_MEMO else (lambda canvas, _memo, method, *args: getattr(canvas, method)(*args))
    date = pdf_date(stamp)
    c.setDateFormatter(lambda *_: date)
    c.setTitle(pdf_text(f"{doc.heading} {doc.title}"))
    c.setAuthor(PROGRAM_PACKAGE)
    c.setCreator(pdf_text(doc.program))
    c.setSubject(pdf_text(f"Study {doc.studyid}; data cut-off {doc.cutoff}"))
    total = lay.total
    for i, (first, stop) in enumerate(lay.pages, start=1):
        top = H - m
        c.setFont(font, 7)
        draw(c, page_memo, "drawString", m, top - 7, pdf_text(f"Study {doc.studyid}"))
        c.drawRightString(W - m, top - 7, f"Page {i} of {total}")
        y = top - 14
        for k, lines in enumerate(lay.titles):
            c.setFont(bold if k < 2 else font, TITLE_SIZE if k < 2 else TITLE_SIZE - 1)
            for t in lines:
                y -= TITLE_LEAD
                draw(c, page_memo, "drawCentredString", W / 2, y, t)
        y -= 8
        if doc.png is not None:
            img = ImageReader(doc.image if doc.image is not None else io.BytesIO(doc.png))
            iw, ih = img.getSize()
            box_h = y - (m + bottom_h)
            scale = min(lay.avail / iw, box_h / ih)
            c.drawImage(img, (W - iw * scale) / 2, y - ih * scale, iw * scale, ih * scale)
        else:
            c.setLineWidth(0.8)
            draw(c, page_memo, "line", m, y, W - m, y)
            # the header and the rows as one text object (one per page, not one per line)
            text = _memo_text_object(c, memo) if PDF_MEMO else c.beginText()
            text.setFont(bold, size)
            x, items = m, []
            for lines, w in zip(lay.head, cw):
                for n, ln in enumerate(lines):
                    items.append((x + pad, y - pad - (n + 1) * lead + 2, ln))
                x += w
            _show_lines(text, items)
            y -= lay.head_height
            line_y = y
            text.setFont(font, size)
            items = []  # (x, y, text) of every line of every cell of the page, in drawing order
            for cells in lay.cells[first:stop]:  # the rows of one page
                x = m
                for j, (lines, w) in enumerate(zip(cells, cw)):
                    right = right_cols[j]
                    for n, ln in enumerate(lines):
                        items.append((x + w - pad - width(ln) if right else x + pad, y - pad - (n + 1) * lead + 2, ln))
                    x += w
                y -= lay.row_height(cells)
            _show_lines(text, items)
            c.drawText(text)
            draw(c, page_memo, "line", m, line_y, W - m, line_y)
            c.setLineWidth(0.8)
            draw(c, page_memo, "line", m, y, W - m, y)
        yb = m + bottom_h - 6
        c.setFont(font, lay.note_size)
        for ln in notes:
            yb -= size + 1.5
            draw(c, page_memo, "drawString", m + pad, yb, ln)
        c.setFont(font, 6.5)
        c.setLineWidth(0.4)
        draw(c, page_memo, "line", m, m + len(foot) * (size + 1.5) + 2, W - m, m + len(foot) * (size + 1.5) + 2)
        for k, ln in enumerate(foot):
            draw(c, page_memo, "drawString", m, m + (len(foot) - 1 - k) * (size + 1.5), pdf_text(ln))
        c.showPage()
    c.save()
    return buf.getvalue()


def _prepare() -> None:
    """Parse and register the PDF fonts (:func:`pdf_fonts`: reading the two DejaVu files is
    most of it) and import reportlab's canvas now, at import (~0.05 s of CPU). The build
    imports this module (through :mod:`pipeline.report.listings`, a post-export hook) in its
    parent process before it forks the study workers (:func:`pipeline.parallel.preload`),
    which then inherit the registered fonts and the modules instead of each paying again;
    the aCRF (:mod:`pipeline.package.acrf`) draws on the same canvas module. Without
    reportlab the first PDF reports it, as before."""
    pdf_fonts()
    try:
        import reportlab.pdfgen.canvas  # noqa: F401 - imported for the forked workers
    except ImportError:
        pass


_prepare()
