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

RTF goes through rtflite (the RTF composer built for TLFs): page layout, title, column header
and body tables, footnotes, page header/footer fields. ``Page x of y`` is the PAGE/NUMPAGES
field pair; the stored field results (the text a reader sees before the fields update) are
the page number and rtflite's page count.

PDF goes through reportlab's canvas (pure Python, no system packages): the rows are wrapped
and paginated here once (text wrapping is cached per distinct value and column width), then
each page is drawn as text and rules. The PDF's creation and modification dates are the run
stamp and reportlab's invariant mode fixes the document ID, so the bytes do not change on
rerun. Core PDF fonts (Helvetica) cover Latin-1; other characters are replaced by ``?``.
"""

from __future__ import annotations

import io
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from pathlib import Path

import numpy as np

PROGRAM_PACKAGE = "cart-sdtm-pipeline"
NO_RECORDS = "No records meet the criteria of this output."
#: points per inch
PT = 72.0
FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"
#: rtflite's font number of Arial (its font table: 1 Times New Roman, ..., 4 Arial), metrics as Helvetica
ARIAL = 4


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


def column_widths(headers: list[str], columns: list[list[str]], avail: float, size: float,
                  pad: float = 2.0, fonts: tuple[str, str] = (FONT, FONT_BOLD)) -> list[float]:
    """Column widths in points that fill ``avail``: at least the longest word of the column
    (header or value; a word longer than a quarter of the page wraps inside), then the rest
    shared by the 90th percentile of the value widths. Measured on the distinct values."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    mins, wants = [], []
    for h, values in zip(headers, columns):
        distinct = sorted(set(values))
        widths = [stringWidth(pdf_text(v), fonts[0], size) for v in distinct] or [0.0]
        words = {a for v in distinct for a, _ in atoms(v)} | {a for a, _ in atoms(h)}
        word = max((stringWidth(pdf_text(w), fonts[1], size) for w in words), default=0.0)
        lo = min(word, 0.25 * avail) + 2 * pad
        mins.append(lo)
        wants.append(max(lo, min(float(np.percentile(widths, 90)) + 2 * pad, 0.35 * avail)))
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
# RTF (rtflite)
# ---------------------------------------------------------------------------------------
def _rtf_page_fields(total: int | str) -> str:
    return ("Page {\\field{\\*\\fldinst PAGE }{\\fldrslt 1}} of "
            "{\\field{\\*\\fldinst NUMPAGES }{\\fldrslt " + str(total) + "}}")


def rtf_escape(text: str) -> str:
    """Data text for rtflite with its conversions off (they would turn ``_``/``^`` into
    sub/superscripts and ``>=`` into a symbol): RTF's own specials ``\\ { }`` escaped;
    rtflite writes characters beyond Latin-1 as ``\\u`` escapes."""
    return text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")


def _esc(texts: list[str]) -> list[str]:
    return [rtf_escape(t) for t in texts]


_PAGE_BREAK = re.compile(r"(?<!\\)\\page(?![A-Za-z])")


class _Broadcast:
    """rtflite's ``BroadcastValue`` contract (value normalised by rtflite's own
    ``_to_nested_list``; its ``iloc``/``to_list``/``update_*`` methods) without a pydantic
    model per call. rtflite builds one per attribute per table cell (~20 per cell); this is
    what makes a 300-row listing take seconds. A list of rows is the common, expensive case
    (its check walks every row): it is recognised once per object and returned as it is, as
    rtflite itself returns it."""

    __slots__ = ("value", "dimension")
    _rows_ok: dict[int, object] = {}
    _normalise = None

    def __init__(self, value=None, dimension=None):
        if isinstance(value, list) and _Broadcast._rows_ok.get(id(value)) is value:
            self.value = value
        else:
            self.value = _Broadcast._normalise(value)
            if self.value is value and isinstance(value, list):
                _Broadcast._rows_ok[id(value)] = value
        self.dimension = dimension


@contextmanager
def _rtflite_fast():
    """rtflite with :class:`_Broadcast` and string widths memoised (a pure function of text,
    font and size), restored afterwards. ``tests/test_listings_tlf.py`` checks that the RTF
    is byte-identical with and without it."""
    from rtflite import attributes, strwidth
    from rtflite.pagination import core, processor
    original = attributes.BroadcastValue
    for name in ("iloc", "to_list", "update_row", "update_column", "update_cell"):
        setattr(_Broadcast, name, getattr(original, name))
    _Broadcast._normalise = staticmethod(attributes._to_nested_list)
    width = lru_cache(maxsize=65536)(strwidth.get_string_width)
    saved = [(attributes, "BroadcastValue", original), (processor, "BroadcastValue", processor.BroadcastValue),
             (attributes, "get_string_width", attributes.get_string_width),
             (core, "get_string_width", core.get_string_width)]
    attributes.BroadcastValue = processor.BroadcastValue = _Broadcast
    attributes.get_string_width = core.get_string_width = width
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        _Broadcast._rows_ok.clear()


#: set False to encode with rtflite exactly as shipped (slower; same bytes)
RTFLITE_FAST = True


def rtf_text(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6) -> str:
    """The output as an RTF document (rtflite)."""
    if RTFLITE_FAST:
        with _rtflite_fast():
            return _rtf_text(doc, font_size, margin_in)
    return _rtf_text(doc, font_size, margin_in)


def _rtf_text(doc: Doc, font_size: float, margin_in: float) -> str:
    import polars as pl
    import rtflite as rl

    landscape = doc.orientation == "landscape"
    W, H = page_size(doc.orientation)
    avail_in = W / PT - 2 * margin_in
    # rows per page: the body height in lines of the body font (rtflite counts wrapped lines)
    nrow = int((H / PT - 2 * margin_in - 1.6) * PT / (font_size * 1.45))
    page = rl.RTFPage(orientation="landscape" if landscape else "portrait",
                      margin=[margin_in, margin_in, margin_in + 0.35, margin_in + 0.35, margin_in * 0.6, margin_in * 0.6],
                      nrow=nrow, col_width=avail_in,
                      page_title="all", page_footnote="all", page_source="all")
    header = rl.RTFPageHeader(text=[rtf_escape(f"Study {doc.studyid}"), _rtf_page_fields("@NUMPAGES@")],
                              text_font=[ARIAL] * 2, text_font_size=[8, 8], text_justification=["r", "r"],
                              text_convert=[False])
    footer = rl.RTFPageFooter(text=_esc(doc.footer_lines()), text_font=[ARIAL] * 2, text_font_size=[7, 7],
                              text_justification=["l", "l"], text_convert=[False])
    titles = doc.title_lines()
    title = rl.RTFTitle(text=_esc(titles), text_font=[ARIAL] * len(titles), text_font_size=[10] * len(titles),
                        text_format=["b"] * min(2, len(titles)) + [""] * (len(titles) - 2), text_convert=[False])
    kw = dict(rtf_page=page, rtf_page_header=header, rtf_page_footer=footer, rtf_title=title)
    if doc.footnotes:
        kw["rtf_footnote"] = rl.RTFFootnote(text=_esc(doc.footnotes), text_font=[ARIAL] * len(doc.footnotes),
                                            text_font_size=[7] * len(doc.footnotes), text_convert=[False])
    if doc.png_path is not None:
        w, h = (9.0, 5.2) if landscape else (6.5, 6.0)
        kw["rtf_figure"] = rl.RTFFigure(figures=[str(doc.png_path)], fig_width=w, fig_height=h)
        kw["rtf_footnote"] = rl.RTFFootnote(text=_esc(doc.footnotes), text_font=[ARIAL] * len(doc.footnotes),
                                            text_font_size=[7] * len(doc.footnotes), as_table=False,
                                            text_convert=[False]) if doc.footnotes else None
        text = rl.RTFDocument(**{k: v for k, v in kw.items() if v is not None}).rtf_encode()
    else:
        ncol = len(doc.headers)
        rows = doc.rows or [[NO_RECORDS] + [""] * (ncol - 1)]
        names = [f"c{j}" for j in range(ncol)]
        df = pl.DataFrame({n: [rtf_escape(r[j]) for r in rows] for j, n in enumerate(names)},
                          schema={n: pl.Utf8 for n in names})
        widths = column_widths(doc.headers, [[r[j] for r in rows] for j in range(ncol)], avail_in * PT, font_size)
        just = [a if a in ("l", "r", "c") else "l" for a in (doc.align or ["l"] * ncol)]
        kw["rtf_column_header"] = [rl.RTFColumnHeader(text=_esc(doc.headers), col_rel_width=widths, text_convert=[False],
                                                      text_font=[ARIAL] * ncol, text_font_size=[font_size] * ncol,
                                                      text_format=["b"] * ncol,
                                                      text_justification=just)]
        kw["rtf_body"] = rl.RTFBody(col_rel_width=widths, text_font=[[ARIAL] * ncol], text_font_size=[[font_size] * ncol],
                                    text_convert=[[False]],
                                    text_justification=[just])
        text = rl.RTFDocument(df=df, **kw).rtf_encode()
    pages = len(_PAGE_BREAK.findall(text)) + 1
    return text.replace("@NUMPAGES@", str(pages))


def rtf_bytes(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6) -> bytes:
    return rtf_text(doc, font_size, margin_in).encode("cp1252", errors="replace")


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
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(folder / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(folder / "DejaVuSans-Bold.ttf")))
        return "DejaVuSans", "DejaVuSans-Bold", frozenset(pdfmetrics.getFont("DejaVuSans").face.charToGlyph)
    except (ImportError, OSError):
        return FONT, FONT_BOLD, None


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
        key = (text, width)
        got = self.cache.get(key)
        if got is None:
            lines = self._lines(pdf_text(text), width) if text else [""]
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


def pdf_bytes(doc: Doc, stamp: datetime, font_size: float = 7.0, margin_in: float = 0.6) -> bytes:
    """The output as PDF: pages laid out here, drawn with reportlab's canvas."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    W, H = page_size(doc.orientation)
    m = margin_in * PT
    avail = W - 2 * m
    lead = font_size * 1.25
    pad = 2.0
    font, bold, _ = pdf_fonts()
    wrap = _Wrapper(font, font_size)
    wrap_b = _Wrapper(bold, font_size)
    wrap_note = _Wrapper(font, font_size - 0.5)

    titles = doc.title_lines()
    title_h = 14 + 12.0 * len(titles) + 6
    notes = [ln for t in doc.footnotes for ln in wrap_note(t, avail)]
    foot = doc.footer_lines()
    bottom_h = (len(notes) + len(foot)) * (font_size + 1.5) + 10

    ncol = len(doc.headers)
    pages: list[list[list[list[str]]]] = []
    if doc.png is None:
        cols = [[r[j] for r in doc.rows] for j in range(ncol)]
        cw = column_widths(doc.headers, cols, avail, font_size, pad, (font, bold))
        head = [wrap_b(h, w - 2 * pad) for h, w in zip(doc.headers, cw)]
        head_h = max((len(x) for x in head), default=1) * lead + 2 * pad
        body_h = H - 2 * m - title_h - bottom_h - head_h
        rows = doc.rows or [[NO_RECORDS] + [""] * (ncol - 1)]
        current, used = [], 0.0
        # rows are few per page and already text: a loop over rows to wrap and paginate
        for r in rows:
            lines = [wrap(v, w - 2 * pad) for v, w in zip(r, cw)]
            if len(r) and r[0] == NO_RECORDS and not doc.rows:
                lines = [[NO_RECORDS]] + [[""]] * (ncol - 1)
            h = max(len(x) for x in lines) * lead + 2 * pad
            if current and used + h > body_h:
                pages.append(current)
                current, used = [], 0.0
            current.append(lines)
            used += h
        pages.append(current)
    else:
        pages.append([])

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=(W, H), invariant=1, pageCompression=1)
    date = pdf_date(stamp)
    c.setDateFormatter(lambda *_: date)
    c.setTitle(pdf_text(f"{doc.heading} {doc.title}"))
    c.setAuthor(PROGRAM_PACKAGE)
    c.setCreator(pdf_text(doc.program))
    c.setSubject(pdf_text(f"Study {doc.studyid}; data cut-off {doc.cutoff}"))
    total = len(pages)
    for i, page in enumerate(pages, start=1):
        top = H - m
        c.setFont(font, font_size)
        c.drawString(m, top - font_size, pdf_text(f"Study {doc.studyid}"))
        c.drawRightString(W - m, top - font_size, f"Page {i} of {total}")
        y = top - 14
        for k, t in enumerate(titles):
            c.setFont(bold if k < 2 else font, 10 if k < 2 else 9)
            y -= 12
            c.drawCentredString(W / 2, y, pdf_text(t))
        y -= 8
        if doc.png is not None:
            img = ImageReader(io.BytesIO(doc.png))
            iw, ih = img.getSize()
            box_h = y - (m + bottom_h)
            scale = min(avail / iw, box_h / ih)
            c.drawImage(img, (W - iw * scale) / 2, y - ih * scale, iw * scale, ih * scale)
        else:
            x0 = m
            c.setLineWidth(0.8)
            c.line(m, y, W - m, y)
            c.setFont(bold, font_size)
            x = x0
            for lines, w in zip(head, cw):
                for n, ln in enumerate(lines):
                    c.drawString(x + pad, y - pad - (n + 1) * lead + 2, ln)
                x += w
            y -= head_h
            c.line(m, y, W - m, y)
            c.setFont(font, font_size)
            for cells in page:
                x = x0
                for j, (lines, w) in enumerate(zip(cells, cw)):
                    right = doc.align[j] == "r" if j < len(doc.align) else False
                    for n, ln in enumerate(lines):
                        yy = y - pad - (n + 1) * lead + 2
                        if right:
                            c.drawRightString(x + w - pad, yy, ln)
                        else:
                            c.drawString(x + pad, yy, ln)
                    x += w
                y -= max(len(x_) for x_ in cells) * lead + 2 * pad
            c.setLineWidth(0.8)
            c.line(m, y, W - m, y)
        yb = m + bottom_h - 6
        c.setFont(font, font_size - 0.5)
        for ln in notes:
            yb -= font_size + 1.5
            c.drawString(m, yb, ln)
        c.setLineWidth(0.4)
        c.line(m, m + (len(foot)) * (font_size + 1.5) + 2, W - m, m + (len(foot)) * (font_size + 1.5) + 2)
        for k, ln in enumerate(foot):
            c.drawString(m, m + (len(foot) - 1 - k) * (font_size + 1.5), pdf_text(ln))
        c.showPage()
    c.save()
    return buf.getvalue()
