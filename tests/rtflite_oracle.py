"""rtflite's rendering of a :class:`pipeline.report.tlf.Doc`: the RTF path of the build until
pipeline.report.rtf replaced it, kept word for word as the oracle of that composer
(``tests/test_rtf_composer.py``). rtflite (with polars) is in the test extra, no longer a
dependency of the build.

What it does: rtflite's page layout, title, column header and body tables, footnotes, page
header/footer fields, on the layout's pages (rtflite's pagination strategy is given them,
:func:`_rtflite_pages`), with rtflite's per-cell pydantic work memoised (:func:`_rtflite_fast`;
``RTFLITE_FAST = False`` encodes with rtflite exactly as shipped, the same bytes)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from functools import lru_cache

from pipeline.report.tlf import (NO_RECORDS, PAD, PT, RTF_HEADER_IN, TITLE_SIZE, Doc, Layout, _esc, _rtf_page_fields,
                                 layout, png_size, rtf_cell, rtf_escape)

#: rtflite's font number of Arial (its font table: 1 Times New Roman, ..., 4 Arial), metrics as Helvetica
ARIAL = 4

#: RTF's page-break control word \page (not \pagebb, not an escaped backslash followed by
#: the text "page"); the look-behind comes after the literal, so that the search is a fast
#: scan for the literal (the same matches as (?<!\\)\\page(?![A-Za-z]))
_PAGE_BREAK = re.compile(r"\\page(?![A-Za-z])(?<!\\\\page)")


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


#: the attributes of rtflite's ``TableAttributes`` that its ``_encode`` reads per table cell
#: (broadcast at the cell's row + the segment's row offset), in the order it passes them on
_TEXT_ATTRS = {"font": "text_font", "size": "text_font_size", "format": "text_format", "color": "text_color",
               "background_color": "text_background_color", "justification": "text_justification",
               "indent_first": "text_indent_first", "indent_left": "text_indent_left",
               "indent_right": "text_indent_right", "space": "text_space", "space_before": "text_space_before",
               "space_after": "text_space_after", "convert": "text_convert", "hyphenation": "text_hyphenation"}
_CELL_ATTRS = {"border_left": "border_left", "border_top": "border_top", "border_bottom": "border_bottom",
               "vertical_justification": "cell_vertical_justification"}
_ROW_ATTRS = {"justification": "cell_justification", "height": "cell_height"}


def _grid(value) -> list:
    """An attribute as rtflite's ``BroadcastValue`` holds it (a list of rows; ``[[None]]`` for
    None, whose every cell rtflite reads as None)."""
    got = _Broadcast(value).value
    return [[None]] if got is None else got


def _row_ids(grid: list) -> list[int]:
    """Per row of an attribute grid, the index of its first equal row: rows with the same
    attribute values encode alike."""
    seen: dict[tuple, int] = {}
    return [seen.setdefault(tuple(r), len(seen)) for r in grid]


def _memoised_encode(original):
    """rtflite's ``TableAttributes._encode`` (a table segment as RTF rows) with each row's
    cell definitions and each cell's text encoded once per distinct attributes and text.

    rtflite builds a pydantic ``Cell``/``TextContent``/``Border`` and about twenty broadcast
    look-ups for every cell of every row; its output for a cell is a pure function of the
    text and the attribute values at that cell (colours, which go through rtflite's colour
    table, are not memoised: such a table is encoded by ``original``). The rows, their cell
    definitions and cell texts come out as ``Row._as_rtf`` returns them: the same strings in
    the same order. Anything unexpected (no line counts yet, an attribute rtflite would
    refuse) is left to ``original``, which then does what it always did.

    Which attributes each row of a segment has is worked out once per attributes object,
    widths, row offset and row count: the pages of one shape share their attributes object
    (:func:`_page_parts_once`), so a listing of thousands of pages does it a few dozen times."""
    from rtflite.row import Border, Cell, Row, TextContent

    #: the rows' encodings by attribute values (shared by the pages of one document)
    memo: dict[tuple, tuple] = {}
    #: (id of the attributes object, widths, row offset, rows) -> (the object, per row its encoding)
    segments: dict[tuple, tuple] = {}

    def encode(self, df, col_widths, row_offset=0):
        colours = [v for a in ("text_color", "text_background_color") for r in _grid(getattr(self, a)) for v in r]
        if self.cell_nrow is None or any(v is not None for v in colours):
            return original(self, df, col_widths, row_offset)
        try:
            return _encode_rows(self, df, col_widths, row_offset)
        except Exception:  # noqa: BLE001 - rtflite's own encoder raises (or not) as it always did
            return original(self, df, col_widths, row_offset)

    def _row_encodings(self, ncol: int, widths: tuple, nrow: int, row_offset: int) -> list[tuple]:
        """Per row of a segment: its cell definitions (``Row._as_rtf`` up to the texts), its
        cells' text attributes and the encodings of the cell texts seen so far (by column)."""
        text_g = {k: _grid(getattr(self, a)) for k, a in _TEXT_ATTRS.items()}
        cell_g = {k: _grid(getattr(self, a)) for k, a in _CELL_ATTRS.items()}
        row_g = {k: _grid(getattr(self, a)) for k, a in _ROW_ATTRS.items()}
        right_g = _grid(self.border_right)
        offset_ids = [_row_ids(g) for g in (*text_g.values(), *cell_g.values(), *row_g.values())]
        right_ids = _row_ids(right_g)

        def at(grid, r, j):  # BroadcastValue.iloc
            return grid[r % len(grid)][j % len(grid[0])]

        def attributes(r: int, i: int) -> tuple:
            """Every attribute value rtflite reads for the cells of row ``i`` (``r`` with the
            segment's offset): what the row's encoding is a function of."""
            text_kw = tuple(tuple((k, at(g, r, j)) for k, g in text_g.items()) for j in range(ncol))
            cell_kw = tuple(tuple((k, at(g, r, j)) for k, g in cell_g.items()) for j in range(ncol))
            row_kw = tuple((k, at(g, r, 0)) for k, g in row_g.items())
            return widths, text_kw, cell_kw, row_kw, at(right_g, i, ncol - 1)

        out: list[tuple] = []
        by_ids: dict[tuple, tuple] = {}
        for i in range(nrow):  # the rows of one segment shape (once per shape, not per page)
            r = i + row_offset
            ids = tuple(x[r % len(x)] for x in offset_ids) + (right_ids[i % len(right_ids)],)
            got = by_ids.get(ids)
            if got is None:
                key = attributes(r, i)
                got = memo.get(key)
                if got is None:
                    _, text_kw, cell_kw, row_kw, right = key
                    text_kw = [dict(t) for t in text_kw]
                    cells = [Cell(text=TextContent(text="", **text_kw[j]), width=widths[j],
                                  border_left=Border(style=dict(cell_kw[j])["border_left"]),
                                  border_right=Border(style=right) if j == ncol - 1 else None,
                                  border_top=Border(style=dict(cell_kw[j])["border_top"]),
                                  border_bottom=Border(style=dict(cell_kw[j])["border_bottom"]),
                                  vertical_justification=dict(cell_kw[j])["vertical_justification"])
                             for j in range(ncol)]
                    parts = Row(row_cells=cells, **dict(row_kw))._as_rtf()
                    # Row._as_rtf: the row definition, one definition per cell, then each cell's
                    # text as TextContent._as_rtf(method="cell") writes it, then the row's end
                    got = memo[key] = (parts[:1 + ncol], text_kw, [{"": parts[1 + ncol + j]} for j in range(ncol)])
                by_ids[ids] = got
            out.append(got)
        return out

    def _encode_rows(self, df, col_widths, row_offset):
        nrow, ncol = df.shape
        widths = tuple(col_widths[j] for j in range(ncol))
        key = (id(self), widths, row_offset, nrow)
        seg = segments.get(key)
        if seg is None:  # the object is kept in the value, so its id is not reused meanwhile
            seg = segments[key] = (self, _row_encodings(self, ncol, widths, nrow, row_offset))
        rows: list[str] = []
        for (head, text_kw, known), values in zip(seg[1], df.rows()):  # the rows of one page segment
            rows.extend(head)
            for j, v in enumerate(values):
                t = "" if v is None else str(v)
                cell = known[j].get(t)
                if cell is None:
                    cell = known[j][t] = TextContent(text=t, **text_kw[j])._as_rtf(method="cell")
                rows.append(cell)
            rows.append("\\intbl\\row\\pard")
        return rows

    return encode


def _page_parts_once(service, page_renderer, page_processor) -> None:
    """rtflite's title, footnote and column-header encoders and its page processor (called
    for every page) memoised for the time of one document: each is a pure function of the
    document's title, footnote, column-header and body attribute objects (which do not change
    while it is encoded) and of what the page passes: the footnote's border override and
    width (not its page number), whether the page is the first (the column header's top
    border); for the processor (the body's borders on the page), the page's number of rows
    and columns and whether it is the first or the last page, not its rows' texts. Column
    headers without a text of their own (rtflite then takes the page's column names) are left
    to rtflite.

    The processor deep-copies the body's attributes and sets the page's borders cell by cell,
    on every page; memoised, the pages of one shape share one such object (nothing after the
    processor changes it), which also lets :func:`_memoised_encode` work out its rows once."""
    title, footnote, headers = service.encode_title, service.encode_footnote, page_renderer._render_column_headers
    process = page_processor.process
    memo: dict[tuple, object] = {}

    def encode_title(self, title_config, method: str = "line"):
        key = ("title", id(title_config), method)
        if key not in memo:
            memo[key] = (title_config, title(self, title_config, method=method))
        return memo[key][1]

    def encode_footnote(self, footnote_config, page_number=None, page_col_width=None, border_style=None):
        key = ("footnote", id(footnote_config), page_col_width, border_style)
        if key not in memo:
            memo[key] = (footnote_config, footnote(self, footnote_config, page_number, page_col_width, border_style))
        return list(memo[key][1])

    def render_column_headers(self, document, page):
        heads = document.rtf_column_header
        heads = [h for part in heads for h in (part if isinstance(part, list) else [part])] \
            if isinstance(heads, list) else [heads]
        if any(h is not None and h.text is None for h in heads):
            return headers(self, document, page)
        key = ("headers", id(document), bool(page.is_first_page))
        if key not in memo:
            memo[key] = (document, headers(self, document, page))
        return list(memo[key][1])

    def process_page(self, document, page):
        key = ("page", id(document), id(page.table_attrs), page.data.height, page.data.width,
               bool(page.is_first_page), bool(page.is_last_page))
        if key not in memo:
            done = process(self, document, page)
            memo[key] = ((document, page.table_attrs), done.final_body_attrs, dict(done.component_borders))
            return done
        _, attrs, borders = memo[key]
        page.final_body_attrs = attrs
        page.component_borders.update(borders)
        return page

    service.encode_title, service.encode_footnote = encode_title, encode_footnote
    page_renderer._render_column_headers = render_column_headers
    page_processor.process = process_page


@contextmanager
def _rtflite_fast():
    """rtflite with :class:`_Broadcast`, the parts every page repeats encoded once
    (:func:`_page_parts_once`), string widths memoised (a pure function of text,
    font and size), a cell text's character conversion memoised (a pure function of the
    text and its ``convert`` flag: rtflite walks every character of every cell, and listings
    repeat their values) and table rows encoded once per distinct attributes and text
    (:func:`_memoised_encode`), restored afterwards. ``tests/test_listings_tlf.py`` checks
    that the RTF is byte-identical with and without it."""
    from rtflite import attributes, row, strwidth
    from rtflite.encoding import renderer
    from rtflite.pagination import core, processor
    from rtflite.services import encoding_service
    original = attributes.BroadcastValue
    for name in ("iloc", "to_list", "update_row", "update_column", "update_cell"):
        setattr(_Broadcast, name, getattr(original, name))
    _Broadcast._normalise = staticmethod(attributes._to_nested_list)
    width = lru_cache(maxsize=65536)(strwidth.get_string_width)
    convert_chars = row.TextContent._convert_special_chars
    converted: dict[tuple[str, object], str] = {}

    def convert_once(self) -> str:
        key = (self.text, self.convert)
        got = converted.get(key)
        if got is None:
            got = converted[key] = convert_chars(self)
        return got

    saved = [(encoding_service.RTFEncodingService, "encode_title", encoding_service.RTFEncodingService.encode_title),
             (encoding_service.RTFEncodingService, "encode_footnote",
              encoding_service.RTFEncodingService.encode_footnote),
             (renderer.PageRenderer, "_render_column_headers", renderer.PageRenderer._render_column_headers),
             (processor.PageFeatureProcessor, "process", processor.PageFeatureProcessor.process),
             (attributes, "BroadcastValue", original), (processor, "BroadcastValue", processor.BroadcastValue),
             (attributes, "get_string_width", attributes.get_string_width),
             (core, "get_string_width", core.get_string_width),
             (row.TextContent, "_convert_special_chars", convert_chars),
             (attributes.TableAttributes, "_encode", attributes.TableAttributes._encode)]
    _page_parts_once(encoding_service.RTFEncodingService, renderer.PageRenderer, processor.PageFeatureProcessor)
    attributes.BroadcastValue = processor.BroadcastValue = _Broadcast
    attributes.TableAttributes._encode = _memoised_encode(attributes.TableAttributes._encode)
    attributes.get_string_width = core.get_string_width = width
    row.TextContent._convert_special_chars = convert_once
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        _Broadcast._rows_ok.clear()


@contextmanager
def _rtflite_pages(pages: list[tuple[int, int]]):
    """rtflite with the pages of :func:`layout`: for the time of one encode, its default
    pagination strategy (a :class:`rtflite.pagination.strategies.PaginationStrategy`, the
    interface rtflite paginates through) is one that returns those row ranges as they are,
    instead of rtflite's own estimate (characters per column width, which does not see the
    word processor's wrapping). rtflite's encoder registers its strategy classes by name
    each time it is built, so the class is swapped where the encoder takes it from."""
    from rtflite.encoding import unified_encoder
    from rtflite.pagination.strategies import base

    class FixedPages(base.PaginationStrategy):
        def paginate(self, context):
            total = len(pages)
            return [base.PageContext(page_number=k, total_pages=total, data=context.df.slice(a, b - a),
                                     is_first_page=k == 1, is_last_page=k == total,
                                     col_widths=context.col_widths,
                                     needs_header=context.rtf_body.pageby_header or k == 1,
                                     table_attrs=context.table_attrs)
                    for k, (a, b) in enumerate(pages, start=1)]

    saved = unified_encoder.DefaultPaginationStrategy
    unified_encoder.DefaultPaginationStrategy = FixedPages
    try:
        yield
    finally:
        unified_encoder.DefaultPaginationStrategy = saved
        unified_encoder.StrategyRegistry.register("default", saved)


#: set False to encode with rtflite exactly as shipped (slower; same bytes)
RTFLITE_FAST = True
#: rtflite writes a cell's left and right text gap (\trgaph) as half its cell height:
#: this height makes the gap :data:`PAD`, the padding the widths were computed with
_CELL_HEIGHT = 2 * PAD / PT


def rtf_text(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6, lay: Layout | None = None) -> str:
    """The output as an RTF document (rtflite), on the pages of ``lay`` (:func:`layout`)."""
    lay = lay or layout(doc, font_size, margin_in)
    with _rtflite_pages(lay.pages):
        if RTFLITE_FAST:
            with _rtflite_fast():
                return _rtf_text(doc, lay, margin_in)
        return _rtf_text(doc, lay, margin_in)


def rtf_bytes(doc: Doc, font_size: float = 7.0, margin_in: float = 0.6, lay: Layout | None = None) -> bytes:
    return rtf_text(doc, font_size, margin_in, lay).encode("cp1252", errors="replace")


def _rtf_text(doc: Doc, lay: Layout, margin_in: float) -> str:
    import polars as pl
    import rtflite as rl

    landscape = doc.orientation == "landscape"
    avail_in = lay.avail / PT
    size, note = lay.font_size, lay.note_size
    top = margin_in + RTF_HEADER_IN
    page = rl.RTFPage(orientation="landscape" if landscape else "portrait",
                      margin=[margin_in, margin_in, top, top, margin_in * 0.6, margin_in * 0.6],
                      nrow=10 ** 6, col_width=avail_in,
                      page_title="all", page_footnote="all", page_source="all")
    header = rl.RTFPageHeader(text=[rtf_escape(f"Study {doc.studyid}"), _rtf_page_fields(lay.total)],
                              text_font=[ARIAL] * 2, text_font_size=[8, 8], text_justification=["r", "r"],
                              text_convert=[False])
    footer = rl.RTFPageFooter(text=_esc(doc.footer_lines()), text_font=[ARIAL] * 2, text_font_size=[7, 7],
                              text_justification=["l", "l"], text_convert=[False])
    titles = doc.title_lines()
    title = rl.RTFTitle(text=_esc(titles), text_font=[ARIAL] * len(titles),
                        text_font_size=[TITLE_SIZE] * len(titles),
                        text_format=["b"] * min(2, len(titles)) + [""] * (len(titles) - 2), text_convert=[False])
    kw = dict(rtf_page=page, rtf_page_header=header, rtf_page_footer=footer, rtf_title=title)
    nf = len(doc.footnotes)
    if doc.png is not None:
        # the figure at its own aspect ratio, as large as the page body allows
        pw, ph = png_size(doc.png)
        box_h = lay.rtf_body_height / PT
        scale = min(avail_in / pw, box_h / ph)
        kw["rtf_figure"] = rl.RTFFigure(figures=[str(doc.png_path)], fig_width=round(pw * scale, 3),
                                        fig_height=round(ph * scale, 3))
        if doc.footnotes:
            kw["rtf_footnote"] = rl.RTFFootnote(text=_esc(doc.footnotes), text_font=[ARIAL] * nf,
                                                text_font_size=[note] * nf, as_table=False, text_convert=[False])
        return rl.RTFDocument(**kw).rtf_encode()
    if doc.footnotes:
        kw["rtf_footnote"] = rl.RTFFootnote(text=_esc(doc.footnotes), text_font=[ARIAL] * nf,
                                            text_font_size=[note] * nf, text_convert=[False],
                                            cell_height=[[_CELL_HEIGHT]])
    ncol = len(doc.headers)
    rows = (lay.rows or doc.rows) if doc.rows else [[NO_RECORDS] + [""] * (ncol - 1)]
    names = [f"c{j}" for j in range(ncol)]
    cell = {v: rtf_cell(v) for v in {v for r in rows for v in r}}  # once per distinct text: listings repeat them
    df = pl.DataFrame({n: [cell[r[j]] for r in rows] for j, n in enumerate(names)},
                      schema={n: pl.Utf8 for n in names})
    just = [a if a in ("l", "r", "c") else "l" for a in (doc.align or ["l"] * ncol)]
    kw["rtf_column_header"] = [rl.RTFColumnHeader(text=_esc(doc.headers), col_rel_width=lay.col_widths,
                                                  text_convert=[False], text_font=[ARIAL] * ncol,
                                                  text_font_size=[size] * ncol, text_format=["b"] * ncol,
                                                  text_justification=just, cell_height=[_CELL_HEIGHT] * ncol)]
    kw["rtf_body"] = rl.RTFBody(col_rel_width=lay.col_widths, text_font=[[ARIAL] * ncol],
                                text_font_size=[[size] * ncol], text_convert=[[False]],
                                text_justification=[just], cell_height=[[_CELL_HEIGHT]])
    text = rl.RTFDocument(df=df, **kw).rtf_encode()
    breaks = len(_PAGE_BREAK.findall(text)) + 1
    if breaks != lay.total:  # the layout's pages are the document's pages, or a defect
        raise AssertionError(f"RTF of {doc.heading}: {breaks} pages written, {lay.total} laid out")
    return text

