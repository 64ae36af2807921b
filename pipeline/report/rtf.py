"""A small RTF composer: the pieces of RTF the tables, listings and figures are made of.

:func:`pipeline.report.tlf.rtf_text` builds its documents from these pieces: page setup and
margins, the font table, the page header and footer paragraphs, the title paragraph, table
rows (cell definitions with borders and right edges, then the cells' paragraphs), page breaks,
a PNG picture. They write exactly what rtflite 2.6 (which made these documents before) wrote
for the same documents, byte for byte: ``tests/test_rtf_composer.py`` checks every RTF of a
built study against rtflite when it is installed (test extra), and the pieces by hand.

Conventions of the output (rtflite's):

- lengths in twips, ``round(inches * 1440)``; a column's right edge is the running sum of
  the relative widths scaled to the table width (:func:`cell_edges`);
- font sizes in half points; the font is a number in :data:`FONTS` (Arial: ``\\f3``);
- text is written as given (the caller escapes RTF's ``\\ { }``, :func:`pipeline.report.tlf.rtf_escape`),
  except characters beyond Latin-1 and ``±``, which become ``\\u`` escapes (:func:`unicode_escape`);
  the document is then encoded as cp1252 (:func:`pipeline.report.tlf.rtf_bytes`);
- every paragraph states its own spacing, indents, justification and hyphenation;
- borders are 15 twips wide, single or double (or none: the border word without a style).
"""

from __future__ import annotations

import re
import struct

TWIPS_PER_INCH = 1440
#: the document's font table: (family, character set, name) of ``\f0`` ... ``\f9``
FONTS = (("\\froman", "\\fcharset1", "Times New Roman"), ("\\froman", "\\fcharset161", "Times New Roman Greek"),
         ("\\fswiss", "\\fcharset161", "Arial Greek"), ("\\fswiss", "\\fcharset0", "Arial"),
         ("\\fswiss", "\\fcharset1", "Helvetica"), ("\\fswiss", "\\fcharset1", "Calibri"),
         ("\\froman", "\\fcharset1", "Georgia"), ("\\ffroman", "\\fcharset1", "Cambria"),
         ("\\fmodern", "\\fcharset0", "Courier New"), ("\\ftech", "\\fcharset2", "Symbol"))
#: Arial's number in :data:`FONTS`
ARIAL = 3
DOCUMENT_START = "{\\rtf1\\ansi\n\\deff0\\deflang1033"
FONT_TABLE = "{\\fonttbl" + "".join(f"{{\\f{i}{family}{charset}\\fprq2 {name};}}\n"
                                     for i, (family, charset, name) in enumerate(FONTS)) + "}"
JUSTIFY = {"l": "\\ql", "c": "\\qc", "r": "\\qr"}
BORDER = {"single": "\\brdrs", "double": "\\brdrdb", "": ""}
VERTICAL = {"top": "\\clvertalt", "bottom": "\\clvertalb"}
BORDER_WIDTH = 15
ROW_END = "\\intbl\\row\\pard"
_BOLD, _LANDSCAPE = "\\b", "\\landscape "
#: the paragraph spacing before and after, twips, of every paragraph but the title
SPACE = 15

#: the characters written as ``\u`` escapes: beyond Latin-1, and ``±`` (177)
_BEYOND_LATIN1 = re.compile("[^\x00-\xb0\xb2-\xff]")


def twips(inches: float) -> int:
    return round(inches * TWIPS_PER_INCH)


def _u_escape(m: re.Match) -> str:
    code = ord(m.group())
    # RTF's \uN takes a signed 16-bit number: code points from 32768 on are written minus 65536
    return f"\\uc1\\u{code - (0 if code < 32768 else 65536)}*"


def unicode_escape(text: str) -> str:
    """``text`` with every character beyond Latin-1, and ``±``, as ``\\uc1\\uN*`` (one
    replacement character, ``*``, for readers without Unicode): ``µ`` stays, ``≥`` is
    ``\\uc1\\u8805*``, ``✓`` (10003) ``\\uc1\\u10003*``, ``￥`` (65509) ``\\uc1\\u-27*``."""
    if text.isascii():
        return text
    return _BEYOND_LATIN1.sub(_u_escape, text)


def paragraph_format(justify: str, space_before: int = SPACE, space_after: int = SPACE,
                     hyphenate: bool = True) -> str:
    """``\\pard`` and the paragraph's hyphenation, spacing (twips), no indents, justification
    (``l``/``c``/``r``)."""
    return (f"\\pard\\hyphpar{'' if hyphenate else '0'}\\sb{space_before}\\sa{space_after}"
            f"\\fi0\\li0\\ri0{JUSTIFY[justify]}")


def run(text: str, size: float, bold: bool = False, font: int = ARIAL) -> str:
    """A run of text in the font ``font`` at ``size`` points (a whole or half point), bold or
    not: ``\\fs14{\\f3 text}``."""
    return f"\\fs{round(size * 2)}{{\\f{font}{_BOLD if bold else ''} {unicode_escape(text)}}}"


def paragraph(runs: list[str], fmt: str) -> str:
    """A paragraph of :func:`run`'s, one line each (``\\line`` between them), with the
    :func:`paragraph_format` ``fmt``."""
    return "{" + fmt + "\\line".join(runs) + "\\par}"


def cell(text_run: str, fmt: str) -> str:
    """A table cell's paragraph: :func:`paragraph_format`, the :func:`run`, ``\\cell``."""
    return fmt + text_run + "\\cell"


def cell_edges(rel_widths: list[float], total_inches: float) -> list[int]:
    """The right edge of each column (twips from the table's left), the columns sharing
    ``total_inches`` in proportion to ``rel_widths``: the running sum in inches, rounded."""
    total = sum(rel_widths)
    edges, right = [], 0.0
    for w in rel_widths:  # columns
        right = right + (w * total_inches / total)
        edges.append(twips(right))
    return edges


def _border(side: str, style: str) -> str:
    return f"\\clbrdr{side}{BORDER[style]}\\brdrw{BORDER_WIDTH}"


def row_definition(edges: list[int], top: str, bottom: str, vertical: str, gap: int) -> str:
    """A table row's definition, one line per cell: the row (centred, ``gap`` twips of text
    gap left and right of each cell's text) and each cell's borders (single on the left, a
    single right border after the last cell; ``top`` and ``bottom`` styles from
    :data:`BORDER`), vertical alignment and right edge (:func:`cell_edges`)."""
    last = len(edges) - 1
    lines = [f"\\trowd\\trgaph{gap}\\trleft0\\trqc"]
    for j, edge in enumerate(edges):  # cells of one row shape
        lines.append(_border("l", "single") + _border("t", top) + (_border("r", "single") if j == last else "")
                     + _border("b", bottom) + VERTICAL[vertical] + f"\\cellx{edge}")
    return "\n".join(lines)


def row(definition: str, cells: list[str]) -> str:
    """A table row: its :func:`row_definition`, its cells' paragraphs (:func:`cell`), the row's end."""
    return definition + "\n" + "\n".join(cells) + "\n" + ROW_END


def gap_twips(cell_height_inches: float) -> int:
    """The text gap left and right of a cell's text: half the cell height (in whole twips)."""
    return int(twips(cell_height_inches) / 2)


def margins(margins_inches: list[float]) -> str:
    """Left, right, top, bottom margins and the page header and footer positions (inches)."""
    words = ("\\margl", "\\margr", "\\margt", "\\margb", "\\headery", "\\footery")
    return "".join(f"{w}{twips(m)}" for w, m in zip(words, margins_inches, strict=True))


def page_setup(width: float, height: float, margins_inches: list[float], landscape: bool) -> str:
    """The first page's paper size (inches), orientation and margins."""
    return (f"\\paperw{twips(width)}\\paperh{twips(height)}{_LANDSCAPE if landscape else ''}\n"
            + margins(margins_inches))


def page_break(width: float, height: float, margins_inches: list[float]) -> str:
    """A page break between two tiny paragraphs, then the next page's paper size and margins."""
    return (f"{{\\pard\\fs2\\par}}\\page{{\\pard\\fs2\\par}}\n"
            f"\\paperw{int(width * TWIPS_PER_INCH)}\\paperh{int(height * TWIPS_PER_INCH)}\n\n"
            + margins(margins_inches) + "\n\n")


def page_header(par: str) -> str:
    return "{\\header" + par + "}"


def page_footer(par: str) -> str:
    return "{\\footer" + par + "}"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's header."""
    return struct.unpack(">II", png[16:24])


def picture(png: bytes, width: float, height: float) -> str:
    """A PNG shown centred at ``width`` x ``height`` inches (twips truncated), its bytes in
    hexadecimal, 80 digits a line."""
    pw, ph = png_size(png)
    digits = png.hex()
    lines = "\n".join(digits[i:i + 80] for i in range(0, len(digits), 80))
    return (f"\\qc {{\\pict\\pngblip\\picw{pw}\\pich{ph}\\picwgoal{int(width * TWIPS_PER_INCH)}"
            f"\\pichgoal{int(height * TWIPS_PER_INCH)} {lines}}}")


def document(header: str, footer: str, setup: str, body: str) -> str:
    """A whole document of tables: start, font table, the page header and footer, the first
    page's :func:`page_setup`, then ``body`` (the pages' paragraphs and rows, one a line)."""
    return "\n".join([DOCUMENT_START, FONT_TABLE, "", "\n", header, footer, setup, body, "\n\n", "}"])


def figure_document(header: str, footer: str, setup: str, title: str, pict: str, notes: str = "") -> str:
    """A whole document of one figure: as :func:`document`, then the title paragraph, the
    :func:`picture` and its paragraph end, the footnote paragraph (if any)."""
    return "".join([DOCUMENT_START, FONT_TABLE, "\n", header, footer, setup, title, "\n", pict, "\\par ", notes, "\n\n}"])
