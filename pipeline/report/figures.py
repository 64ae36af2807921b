"""Figures of the safety/efficacy review: swimmer plot, blood count recovery, CAR-T expansion.

matplotlib (a project dependency) with the Agg canvas, used through ``matplotlib.figure.Figure``
directly: no pyplot state and no backend switching. PNG output is deterministic: fixed size
and resolution, no ``Software`` metadata, so a rebuild is byte-identical
(:func:`png_bytes`).

Data preparation (``*_data``) is separate from drawing (``*_figure``) and pure, so that tests
can check the numbers a figure shows.

Time axis: days after infusion (protocol day: infusion = day 0), from the dates (swimmer) or
from ``--DY`` (study day 1 = day 0; SDTMIG 3.4 section 4.4.4).
"""

from __future__ import annotations

import io
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import fontManager, get_font
from matplotlib.lines import Line2D
from matplotlib.mathtext import MathTextParser
from matplotlib.ticker import FixedLocator, NullLocator

try:  # matplotlib 3.10 and newer; the glyph memo is used only where FT2Font._layout is (3.11)
    from matplotlib.ft2font import RenderMode
except ImportError:  # pragma: no cover - older matplotlib draws with the stock text path
    RenderMode = None

from pipeline.adam.km import km_estimate
from pipeline.derive.dates import dtc_date
from pipeline.report.tables import column, days_after_infusion, text, with_cohort

DPI = 100
WIDTH_IN = 10.0
COHORT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]
NE_COLOR = "#bdbdbd"
PROGRESSION_COLOR = "#7b3294"


#: one mathtext parser for the figures of the process: matplotlib keeps the expressions a
#: parser has laid out (the log axes' tick labels, ``10^k``) per parser, and the renderer of
#: each new canvas makes a parser of its own, so every figure parsed them again (pyparsing,
#: about a tenth of drawing the expansion figure). A parse depends only on the text, the
#: resolution, the font properties and the glyph flags, which are its cache key.
MATHTEXT = MathTextParser("path")


#: text metrics (width, height, descent) and glyph layouts of the process's figures, by text,
#: font properties, resolution and hinting (:class:`TextMemoRenderer`)
_TEXT_METRICS: dict[tuple, tuple[float, float, float]] = {}
_TEXT_LAYOUTS: dict[tuple, tuple[tuple, ...]] = {}
#: a font's ascent, descent and line gap in pixels, by font properties and resolution
#: (:meth:`TextMemoRenderer._get_font_height_metrics`)
_FONT_HEIGHTS: dict[tuple, tuple[float | None, float | None, float | None]] = {}

#: the font tables that give a font's line metrics, in the order a text's layout reads them
#: (OpenType OS/2 typographic values first, then the hhea table): table, line gap, ascent, descent
_HEIGHT_TABLES = (("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
                  ("hhea", "lineGap", "ascent", "descent"))


def font_height_metrics(prop, dpi: float) -> tuple[float | None, float | None, float | None]:
    """(ascent, descent, line gap) in pixels of the font ``prop`` selects at ``dpi``, from the
    first of :data:`_HEIGHT_TABLES` the font has, in font units scaled by the size in points and
    ``dpi`` (1 point = 1/72 inch), as a text's layout (``Text._get_layout``) measures the
    vertical extent of its lines; (None, None, None) when the font has neither table (the
    layout then measures a sample text)."""
    font = get_font(fontManager._find_fonts_by_props(prop))
    for table_name, gap_key, ascent_key, descent_key in _HEIGHT_TABLES:
        table = font.get_sfnt_table(table_name)
        if table is None:
            continue
        scale = 1 / font.get_sfnt_table("head")["unitsPerEm"] * prop.get_size_in_points() * dpi / 72
        return table[ascent_key] * scale, -table[descent_key] * scale, table[gap_key] * scale
    return None, None, None


class TextMemoRenderer(RendererAgg):
    """matplotlib's Agg renderer, laying out each plain text once per process instead of once
    per figure.

    A figure's renderer measures and lays out every text it draws with FreeType (``set_text``,
    ``_layout``: 0.3 to 1 ms a text); matplotlib keeps the measurements per renderer only, and
    each figure has a renderer of its own, so the same tick labels, legend entries and counts
    were laid out again in every figure of every study. The glyphs and their positions depend
    only on the text, the font (its properties: family, style, weight, size, file), the
    resolution and the hinting flag, which key the two memos; the glyphs are then drawn by the
    stock renderer, at the text's own position and angle. Mathtext (log axis labels) keeps its
    own path (:data:`MATHTEXT`). Where the installed matplotlib has no glyph-list text drawing
    (before 3.11: no ``FT2Font._layout``), the stock methods run.
    tests/test_figures_data.py checks that every figure kind (swimmer, recovery, expansion on
    log axes, Kaplan-Meier), with empty and with filled memos, is the PNG the stock canvas draws.
    """

    #: the renderer methods the memo of :meth:`draw_text` relies on (matplotlib >= 3.11)
    LAYOUT_DRAWING = hasattr(RendererAgg, "_draw_text_glyphs_and_boxes") and hasattr(RendererAgg, "_prepare_font")

    def _get_font_height_metrics(self, prop):
        """The font's ascent, descent and line gap (:func:`font_height_metrics`), read from its
        tables once per font properties and resolution: a text's layout asks the renderer for
        them when it has this method (matplotlib >= 3.11), and otherwise reads the font's tables
        itself, for every text (about a third of a layout in a profile of the five studies).
        The renderer's resolution is the figure's: the canvas makes its renderer at the
        resolution it draws the figure at."""
        key = (prop.copy(), self.dpi)
        metrics = _FONT_HEIGHTS.get(key)
        if metrics is None:
            metrics = _FONT_HEIGHTS[key] = font_height_metrics(prop, self.dpi)
        return metrics

    def get_text_width_height_descent(self, s, prop, ismath):
        if ismath is not False:
            return super().get_text_width_height_descent(s, prop, ismath)
        key = (s, prop.copy(), self.dpi, get_hinting_flag())
        metrics = _TEXT_METRICS.get(key)
        if metrics is None:
            metrics = _TEXT_METRICS[key] = super().get_text_width_height_descent(s, prop, ismath)
        return metrics

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or not self.LAYOUT_DRAWING:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        features = mtext.get_fontfeatures() if mtext is not None else None
        language = mtext.get_language() if mtext is not None else None
        flags = get_hinting_flag()
        key = (s, prop.copy(), self.dpi, flags, None if features is None else tuple(features), language)
        glyphs = _TEXT_LAYOUTS.get(key)
        if glyphs is None:
            font = self._prepare_font(prop)
            if not hasattr(font, "_layout"):
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            glyphs = _TEXT_LAYOUTS[key] = tuple((item.ft_object, item.glyph_index, item.x, item.y)
                                                for item in font._layout(s, flags=flags, features=features,
                                                                         language=language))
        size = prop.get_size_in_points()
        self._draw_text_glyphs_and_boxes(gc, x, y, angle, ((_glyph_memo_font(font), size, index, 0, 1, gx, gy)
                                                          for font, index, gx, gy in glyphs), [])


#: rendered glyphs of the process's texts, by font, size, resolution, transform, flags, mode and
#: the pen position's fraction of a pixel (:class:`GlyphMemoFont`)
_GLYPH_BITMAPS: dict[tuple, "GlyphBitmap"] = {}


class GlyphBitmap(NamedTuple):
    """A rendered glyph as the stock text drawing reads it: 8-bit coverage rows (``buffer``)
    and the bitmap's left and top pixel."""

    buffer: np.ndarray
    left: int
    top: int


class GlyphMemoFont:
    """A FreeType font (``FT2Font``) that renders each glyph once per process and pen position
    within a pixel.

    The stock text drawing (``RendererAgg._draw_text_glyphs_and_boxes``) sets the size and the
    transform (rotation, and the pen position in 1/64 pixel) on the font for each glyph and
    renders it, which is most of drawing a text. A glyph moved by whole pixels is the same
    bitmap, moved by those pixels (FreeType rasterises in 1/64 pixel, snapping to the pixel
    grid), so the bitmap is kept by font, size, resolution, glyph, transform matrix, load flags,
    render mode and the position's fraction of a pixel, and placed at the position's whole
    pixels. An empty bitmap (a space) is kept as FreeType gives it (at pixel 0, 0). Size and
    transform still go to the font, so it is left in the state the stock drawing leaves it in;
    monochrome rendering (which the stock drawing scales in place) is not kept.
    tests/test_figures_data.py checks the whole-pixel rule on glyphs, sizes, rotations and
    positions, and every figure kind against the stock canvas.
    """

    __slots__ = ("font", "_size", "_matrix", "_delta")

    def __init__(self, font):
        self.font = font

    def set_size(self, ptsize: float, dpi: float) -> None:
        self.font.set_size(ptsize, dpi)
        self._size = (ptsize, dpi)

    def _set_transform(self, matrix, delta) -> None:
        self.font._set_transform(matrix, delta)
        self._matrix, self._delta = matrix, delta

    def _render_glyph(self, glyph_index, flags, mode):
        if mode != RenderMode.NORMAL:
            return self.font._render_glyph(glyph_index, flags, mode)
        (dx, dy), matrix = self._delta, self._matrix
        key = (self.font, self._size, glyph_index, matrix.tobytes(), flags, dx & 63, dy & 63)
        bitmap = _GLYPH_BITMAPS.get(key)
        if bitmap is None:
            drawn = self.font._render_glyph(glyph_index, flags, mode)
            buffer = drawn.buffer  # an array of its own (FreeType's next glyph does not overwrite it)
            if buffer.size:  # at its position's fraction of a pixel (dx >> 6 whole pixels right)
                bitmap = GlyphBitmap(buffer, drawn.left - (dx >> 6), drawn.top - (dy >> 6))
            else:
                bitmap = GlyphBitmap(buffer, drawn.left, drawn.top)
            _GLYPH_BITMAPS[key] = bitmap
        if not bitmap.buffer.size:
            return bitmap
        return GlyphBitmap(bitmap.buffer, bitmap.left + (dx >> 6), bitmap.top + (dy >> 6))


_MEMO_FONTS: dict = {}


def _glyph_memo_font(font) -> GlyphMemoFont:
    """The :class:`GlyphMemoFont` of an ``FT2Font`` (one per font of the process)."""
    memo = _MEMO_FONTS.get(font)
    if memo is None:
        memo = _MEMO_FONTS[font] = GlyphMemoFont(font)
    return memo


class MemoCanvas(FigureCanvasAgg):
    """The Agg canvas of :func:`png_bytes`: its renderer is a :class:`TextMemoRenderer` with
    the shared :data:`MATHTEXT` parser."""

    def get_renderer(self):
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = TextMemoRenderer(w, h, self.figure.dpi)
            self.renderer.mathtext_parser = MATHTEXT
            self._lastKey = key
        return self.renderer


def ticks_in_view(fig: Figure) -> None:
    """Each axis of a finished figure ticked only where its ticks are drawn.

    matplotlib makes a tick (five artists: about 0.7 ms) for every location its locator gives,
    and the automatic locators give one or more beyond the view limits on each side, which the
    axis never draws (it draws the ticks inside its view). Here the view limits are settled
    (autoscaled, as drawing would), and each automatic locator is replaced by the locations it
    gives inside the view (with a margin far wider than matplotlib's tolerance at the edges).
    An axis whose minor locator gives nothing also drops the one minor tick its Axes made when
    it was created (it is never drawn); that saves only its update at drawing, because the tick
    was already made. The tick labels stay: the log formatter reads the
    view limits, not the locations; the linear one takes offset and magnitude from the
    locations inside the view and the decimals from the step between them, both kept.
    tests/test_figures_data.py checks every figure kind against the untouched figure's PNG.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_transform().transform(axis.get_view_interval()))
            margin = 1e-6 * (hi - lo)
            kept = {}
            for which, locator, locs in (("major", axis.get_major_locator(), axis.get_majorticklocs),
                                         ("minor", axis.get_minor_locator(), axis.get_minorticklocs)):
                if isinstance(locator, (FixedLocator, NullLocator)):
                    continue
                locs = np.asarray(locs())
                at = axis.get_transform().transform(locs)
                kept[which] = FixedLocator(locs[(at >= lo - margin) & (at <= hi + margin)])
            if "major" in kept:
                axis.set_major_locator(kept["major"])
            if "minor" in kept:
                axis.set_minor_locator(kept["minor"])
            elif isinstance(axis.get_minor_locator(), NullLocator):
                axis.minorTicks = []  # no minor tick is drawn: none is updated


def png_bytes(fig: Figure) -> bytes:
    """PNG of a figure, byte-identical on rerun (no software/time metadata), drawn on a
    :class:`MemoCanvas`, its axes ticked where they are drawn (:func:`ticks_in_view`)."""
    ticks_in_view(fig)
    # savefig draws with this canvas's renderer: the figure keeps its size and resolution (DPI)
    MemoCanvas(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def png_and_pixels(fig: Figure) -> tuple[bytes, Image.Image]:
    """:func:`png_bytes` and the pixels the PNG holds (RGBA, the canvas's buffer as savefig
    drew it and PIL encoded it): the PDF embeds these pixels, which is what reportlab would
    otherwise decode from the PNG again (about 13 ms a figure)."""
    png = png_bytes(fig)
    rgba = fig.canvas.buffer_rgba()  # (height, width, 4) bytes of the last draw
    return png, Image.frombytes("RGBA", (rgba.shape[1], rgba.shape[0]), bytes(rgba))


def response_colors(order: pd.DataFrame) -> dict[str, tuple]:
    """Colour of each response category by its rank in response_order.csv: best green through
    yellow to red (matplotlib RdYlGn); unranked (not evaluable) grey."""
    rank = pd.to_numeric(order["rank"], errors="coerce")
    lo, hi = rank.min(), rank.max()
    cmap = matplotlib.colormaps["RdYlGn"]
    out = {}
    for cat, r in zip(order["category"], rank):
        if pd.isna(r):
            out[cat] = NE_COLOR
        else:
            frac = 0.0 if hi == lo else (r - lo) / (hi - lo)
            out[cat] = cmap(0.95 - 0.85 * frac)
    return out


#: points between the rows of "n per time point" under an axis
N_ROW_PT = 9.0


def _panel_margins(fig: Figure, n_rows: int = 0, panels: int = 1) -> None:
    """Fixed margins in inches (cheaper than tight_layout, and the same on every run), with
    room under each panel for ``n_rows`` rows of counts."""
    w, h = fig.get_size_inches()
    under = (24 + N_ROW_PT * n_rows) / 72.0 if n_rows else 0.0
    bottom = 0.6 + under
    top = 0.4
    axes_h = (h - bottom - top - (panels - 1) * (0.5 + under)) / panels
    fig.subplots_adjust(left=0.8 / w, right=1 - 0.2 / w, bottom=bottom / h, top=1 - top / h,
                        hspace=(0.5 + under) / max(axes_h, 0.5))


def cohort_colors(cohorts: list[str]) -> dict[str, str]:
    return {c: COHORT_COLORS[i % len(COHORT_COLORS)] for i, c in enumerate(cohorts)}


def _days_between(later: pd.Series, ref: pd.Series) -> pd.Series:
    return (dtc_date(later) - dtc_date(ref)).dt.days.astype("float64")


# ---------------------------------------------------------------------------------------
# swimmer plot
# ---------------------------------------------------------------------------------------
def hsct_dates(datasets: dict[str, pd.DataFrame], dataset: str, variable: str, pattern: str,
               date_variable: str) -> pd.DataFrame | None:
    """HSCT after CAR-T by subject (USUBJID, HSCTDTC): records of ``dataset`` whose
    ``variable`` matches ``pattern`` (a regular expression, case-insensitive), dated by
    ``date_variable``. ``None`` when the build has no such dataset (HSCT not collected)."""
    d = datasets.get(dataset)
    if d is None or variable not in d.columns or date_variable not in d.columns:
        return None
    hit = d[column(d, variable).str.contains(pattern, case=False, regex=True)]
    return pd.DataFrame({"USUBJID": text(hit["USUBJID"]).to_numpy(), "HSCTDTC": column(hit, date_variable).to_numpy()})


def swimmer_data(subj: pd.DataFrame, rs: pd.DataFrame | None, order: pd.DataFrame, testcd: str,
                 evaluators: list[str], cutoff: str, hsct: pd.DataFrame | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Lanes and markers of the swimmer plot, and the evaluator shown.

    Lanes: treated subjects, from day 0 (infusion, RFSTDTC) to the end of participation
    (the later of RFPENDTC and DTHDTC; the data cut-off when neither is a complete date).
    Markers: the evaluator's ``testcd`` responses (RSSTRESC) at their day; ``kind`` =
    ``response``, or ``progression`` for categories flagged ``progression`` in
    ``response_order``; ``hsct`` at the HSCT dates (:func:`hsct_dates`) and ``death`` at
    DTHDTC.
    """
    t = subj[subj["treated"]].copy()
    lanes_cols = ["USUBJID", "COHORT", "end_day", "death_day"]
    if t.empty:
        return pd.DataFrame(columns=lanes_cols), pd.DataFrame(columns=["USUBJID", "day", "kind", "category"]), ""
    end = pd.concat([_days_between(t["RFPENDTC"], t["RFSTDTC"]), _days_between(t["DTHDTC"], t["RFSTDTC"])],
                    axis=1).max(axis=1)
    cut = _days_between(pd.Series(cutoff, index=t.index), t["RFSTDTC"])
    t["end_day"] = end.fillna(cut).clip(lower=0)
    t["death_day"] = _days_between(t["DTHDTC"], t["RFSTDTC"])
    lanes = t[lanes_cols].reset_index(drop=True)
    markers = [pd.DataFrame({"USUBJID": lanes["USUBJID"], "day": lanes["death_day"], "kind": "death",
                             "category": ""}).dropna(subset=["day"])]
    if hsct is not None and len(hsct):
        h = hsct[hsct["USUBJID"].isin(set(lanes["USUBJID"]))]
        markers.append(pd.DataFrame({"USUBJID": h["USUBJID"].to_numpy(), "kind": "hsct", "category": "HSCT",
                                     "day": _days_between(h["HSCTDTC"], h["USUBJID"].map(
                                         t.set_index("USUBJID")["RFSTDTC"])).to_numpy()}).dropna(subset=["day"]))
    shown = ""
    if rs is not None and len(rs):
        r = rs[column(rs, "RSTESTCD") == testcd]
        present = set(column(r, "RSEVAL"))
        shown = next((e for e in evaluators if e in present), "")
        r = r[column(r, "RSEVAL") == shown]
        r = r[text(r["USUBJID"]).isin(set(lanes["USUBJID"]))]
        rf = text(r["USUBJID"]).map(t.set_index("USUBJID")["RFSTDTC"])
        day = _days_between(column(r, "RSDTC"), rf)
        cat = column(r, "RSSTRESC")
        prog = set(order.loc[order["progression"].astype(str).str.upper().isin(["Y", "TRUE"]), "category"])
        markers.append(pd.DataFrame({"USUBJID": text(r["USUBJID"]).to_numpy(), "day": day.to_numpy(),
                                     "kind": np.where(cat.isin(prog), "progression", "response"),
                                     "category": cat.to_numpy()}).dropna(subset=["day"]))
    mk = pd.concat(markers, ignore_index=True)
    mk = mk[mk["category"].ne("") | mk["kind"].eq("death")]
    return lanes, mk.sort_values(["USUBJID", "day", "kind"], kind="mergesort").reset_index(drop=True), shown


def swimmer_figure(lanes: pd.DataFrame, markers: pd.DataFrame, order: pd.DataFrame, title: str,
                   evaluator: str) -> Figure | None:
    """Horizontal bars per subject (colour = cohort), response markers coloured by category
    (in response_order rank), progression/relapse (red triangle) and death (black cross)."""
    if lanes.empty:
        return None
    cohorts = sorted(set(lanes["COHORT"]))
    colors = cohort_colors(cohorts)
    lanes = lanes.assign(_c=lanes["COHORT"].map({c: i for i, c in enumerate(cohorts)}))
    lanes = lanes.sort_values(["_c", "end_day", "USUBJID"], ascending=[True, True, False], kind="mergesort")
    lanes = lanes.reset_index(drop=True)
    y = pd.Series(np.arange(len(lanes), dtype=float), index=lanes["USUBJID"])
    height = min(60.0, 1.4 + 0.28 * len(lanes))
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    bottom, top = 0.75 / height, 0.45 / height
    ax = fig.add_axes((0.19, bottom, 0.57, 1 - bottom - top))
    ax.barh(y.to_numpy(), lanes["end_day"].to_numpy(), height=0.6, left=0,
            color=[colors[c] for c in lanes["COHORT"]], alpha=0.55, edgecolor="none")
    ranked = order.assign(_r=pd.to_numeric(order["rank"], errors="coerce")).sort_values("_r", kind="mergesort")
    cats = [c for c in ranked["category"] if c in set(markers["category"])]
    cat_color = response_colors(ranked)
    handles = [Line2D([], [], color=colors[c], lw=6, alpha=0.55, label=c) for c in cohorts]
    handles.insert(0, Line2D([], [], ls="", label="Cohort (dose level):"))
    resp = markers[markers["kind"] == "response"]
    for c in cats + sorted(set(resp["category"]) - set(cats)):
        m = resp[resp["category"] == c]
        if m.empty:
            continue
        col = cat_color.get(c, NE_COLOR)
        ax.scatter(m["day"], y.reindex(m["USUBJID"]).to_numpy(), s=36, color=col, edgecolor="black",
                   linewidth=0.4, zorder=3)
        handles.append(Line2D([], [], marker="o", ls="", color=col, markeredgecolor="black", label=c))
    prog = markers[markers["kind"] == "progression"]
    if len(prog):
        ax.scatter(prog["day"], y.reindex(prog["USUBJID"]).to_numpy(), s=70, marker=">", color=PROGRESSION_COLOR,
                   edgecolor="black", linewidth=0.4, zorder=4)
        handles.append(Line2D([], [], marker=">", ls="", color=PROGRESSION_COLOR, markeredgecolor="black",
                              label="Relapse / progression: " + ", ".join(sorted(set(prog["category"])))))
    hsct = markers[markers["kind"] == "hsct"]
    if len(hsct):
        ax.scatter(hsct["day"], y.reindex(hsct["USUBJID"]).to_numpy(), s=80, marker="*", color="#1a9641",
                   edgecolor="black", linewidth=0.4, zorder=4)
        handles.append(Line2D([], [], marker="*", ls="", color="#1a9641", markeredgecolor="black", ms=9,
                              label="Allogeneic HSCT"))
    death = markers[markers["kind"] == "death"]
    if len(death):
        ax.scatter(death["day"], y.reindex(death["USUBJID"]).to_numpy(), s=60, marker="X", color="black", zorder=5)
        handles.append(Line2D([], [], marker="X", ls="", color="black", label="Death"))
    ax.set_yticks(y.to_numpy())
    ax.set_yticklabels(lanes["USUBJID"].tolist(), fontsize=7)
    ax.set_ylim(-0.8, len(lanes) - 0.2)
    ax.set_xlim(left=0)
    ax.set_xlabel("Days after CAR-T infusion (day 0 = infusion)")
    # Placed where matplotlib's automatic placement puts them, without it measuring every
    # lane's label (thousands at a large study) two more times to find out: the title at y =
    # 1 (the lanes' labels are fixed texts, so the y axis has no offset text that could push
    # it up, and the x axis is at the bottom); the y axis has no label, so where it would go
    # does not matter. tests/test_figures_data.py checks the PNG against automatic placement
    ax.set_title(title + (f" (responses: {evaluator})" if evaluator else ""), fontsize=10, y=1.0)
    ax.yaxis.set_label_coords(-0.1, 0.5)
    ax.grid(axis="x", color="#dddddd", lw=0.5)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------
# blood count recovery
# ---------------------------------------------------------------------------------------
def recovery_data(lb: pd.DataFrame, subj: pd.DataFrame, tests: list[str], planned_days: dict[str, float]
                  ) -> pd.DataFrame:
    """Median, minimum and maximum of LBSTRESN per test, cohort and visit (treated subjects).

    x = the visit's planned protocol day (study ``[[visits]]``), or the record's own day after
    infusion (LBDY) when the visit is not in the schedule. Columns LBTESTCD, LBTEST,
    LBSTRESU, COHORT, day, median, min, max, n.
    """
    cols = ["LBTESTCD", "LBTEST", "LBSTRESU", "COHORT", "day", "median", "min", "max", "n"]
    r = lb[column(lb, "LBTESTCD").isin(set(tests))]
    r = r[text(r["USUBJID"]).isin(set(subj.loc[subj["treated"], "USUBJID"]))]
    if r.empty or "LBSTRESN" not in r:
        return pd.DataFrame(columns=cols)
    r = with_cohort(r, subj)
    val = pd.to_numeric(r["LBSTRESN"], errors="coerce")
    own = days_after_infusion(r["LBDY"]) if "LBDY" in r else pd.Series(np.nan, index=r.index)
    day = column(r, "VISIT").map(planned_days).astype("float64").fillna(own)
    d = pd.DataFrame({"LBTESTCD": column(r, "LBTESTCD"), "LBTEST": column(r, "LBTEST"),
                      "LBSTRESU": column(r, "LBSTRESU"), "COHORT": r["COHORT"], "day": day, "v": val}).dropna()
    if d.empty:
        return pd.DataFrame(columns=cols)
    g = d.groupby(["LBTESTCD", "COHORT", "day"])["v"]
    out = pd.concat([g.median().rename("median"), g.min().rename("min"), g.max().rename("max"),
                     g.size().rename("n")], axis=1).reset_index()
    names = d.groupby("LBTESTCD")[["LBTEST", "LBSTRESU"]].first()
    out = out.join(names, on="LBTESTCD")
    out["_t"] = out["LBTESTCD"].map({t: i for i, t in enumerate(tests)})
    return out.sort_values(["_t", "COHORT", "day"], kind="mergesort")[cols].reset_index(drop=True)


def recovery_figure(data: pd.DataFrame, tests: list[str], title: str) -> Figure | None:
    """One panel per test: cohort median (line) and range (band) over days after infusion, with
    the number of subjects behind each point under the axis."""
    present = [t for t in tests if t in set(data["LBTESTCD"])]
    if not present:
        return None
    cohorts = sorted(set(data["COHORT"]))
    colors = cohort_colors(cohorts)
    under = (24 + N_ROW_PT * len(cohorts)) / 72.0
    fig = Figure(figsize=(WIDTH_IN, (3.4 + under) * len(present) + 0.8), dpi=DPI)
    axes = fig.subplots(len(present), 1, squeeze=False)[:, 0]
    for ax, test in zip(axes, present):
        d = data[data["LBTESTCD"] == test]
        for c in cohorts:
            dc = d[d["COHORT"] == c]
            if dc.empty:
                continue
            ax.fill_between(dc["day"], dc["min"], dc["max"], color=colors[c], alpha=0.15, lw=0)
            ax.plot(dc["day"], dc["median"], marker="o", ms=3, lw=1.4, color=colors[c], label=f"{c} (median, range)")
        _n_rows(ax, d, cohorts, colors, "day")
        name, unit = d["LBTEST"].iloc[0], d["LBSTRESU"].iloc[0]
        ax.set_ylabel(f"{name} ({unit})" if unit else name, fontsize=9)
        ax.axvline(0, color="#888888", lw=0.8, ls="--")
        ax.grid(color="#eeeeee", lw=0.5)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    axes[-1].set_xlabel("Days after CAR-T infusion (day 0 = infusion; planned visit day)")
    axes[0].set_title(title, fontsize=10)
    _panel_margins(fig, len(cohorts), len(present))
    return fig


# ---------------------------------------------------------------------------------------
# CAR-T expansion
# ---------------------------------------------------------------------------------------
def lloq(frame: pd.DataFrame, prefix: str = "PC") -> pd.Series:
    """The lower limit of quantification of each result: ``--LLOQ`` when given, else the
    number of a ``<x`` standard result (``--STRESC``)."""
    given = pd.to_numeric(frame[f"{prefix}LLOQ"], errors="coerce") if f"{prefix}LLOQ" in frame else \
        pd.Series(np.nan, index=frame.index)
    stated = pd.to_numeric(column(frame, f"{prefix}STRESC").str.extract(r"^\s*<\s*([0-9.eE+-]+)")[0], errors="coerce")
    return given.fillna(stated)


def expansion_data(pc: pd.DataFrame, subj: pd.DataFrame, tests: list[str],
                   planned_days: dict[str, float] | None = None, blq_factor: float = 0.5) -> pd.DataFrame:
    """All CAR-T results of treated subjects from the infusion on: USUBJID, COHORT, PCTESTCD,
    PCTEST, PCSTRESU, day (days after infusion from PCDY), nominal_day (the visit's planned
    protocol day, else ``day``), value, blq.

    Below-limit rule: a result below the LLOQ (``<x``, no PCSTRESN) is ``blq_factor`` x LLOQ
    (:func:`lloq`), so that medians are of all results, not only the quantified ones. Results
    with neither a value nor an LLOQ (not done) are left out."""
    cols = ["USUBJID", "COHORT", "PCTESTCD", "PCTEST", "PCSTRESU", "day", "nominal_day", "value", "blq"]
    r = pc[column(pc, "PCTESTCD").isin(set(tests))]
    r = r[text(r["USUBJID"]).isin(set(subj.loc[subj["treated"], "USUBJID"]))]
    if r.empty or "PCSTRESN" not in r or "PCDY" not in r:
        return pd.DataFrame(columns=cols)
    r = with_cohort(r, subj)
    measured = pd.to_numeric(r["PCSTRESN"], errors="coerce")
    blq = measured.isna() & column(r, "PCSTRESC").str.strip().str.startswith("<")
    value = measured.where(~blq, blq_factor * lloq(r))
    d = pd.DataFrame({"USUBJID": text(r["USUBJID"]), "COHORT": r["COHORT"], "PCTESTCD": column(r, "PCTESTCD"),
                      "PCTEST": column(r, "PCTEST"), "PCSTRESU": column(r, "PCSTRESU"),
                      "day": days_after_infusion(r["PCDY"]), "value": value, "blq": blq})
    d["nominal_day"] = column(r, "VISIT").map(planned_days or {}).astype("float64").fillna(d["day"])
    d = d[(d["value"] > 0) & (d["day"] >= 0)].dropna(subset=["day", "value"])
    return d.sort_values(["PCTESTCD", "USUBJID", "day"], kind="mergesort")[cols].reset_index(drop=True)


def expansion_medians(data: pd.DataFrame) -> pd.DataFrame:
    """Median of all results (below-limit ones at the rule's value) and n (subjects with a
    result) per test, cohort and planned day."""
    g = data.groupby(["PCTESTCD", "COHORT", "nominal_day"])
    return pd.concat([g["value"].median().rename("median"), g["USUBJID"].nunique().rename("n"),
                      g["blq"].sum().rename("n_blq")], axis=1).reset_index()


def _n_rows(ax, counts: pd.DataFrame, cohorts: list[str], colors: dict, xcol: str, label: str = "n") -> None:
    """Number of subjects per time point under the axis, one row per cohort (the count
    behind each point of the curve)."""
    # a loop over cohorts (a few) and their time points (a few dozen): text annotations;
    # counts closer than 2.5% of the axis to the one before are left out (daily visits of
    # the first weeks would overprint), the data behind them is in the figure data
    span = float(counts[xcol].max() - counts[xcol].min()) if len(counts) else 0.0
    min_gap = 0.025 * span
    for k, c in enumerate(cohorts):
        dc = counts[counts["COHORT"] == c]
        dy = -(24 + N_ROW_PT * k)
        ax.annotate(label, xy=(0, 0), xycoords="axes fraction", xytext=(-12, dy), textcoords="offset points",
                    ha="right", va="center", fontsize=6, color=colors[c])
        last = None
        for x, n in zip(dc[xcol], dc["n"]):
            if last is not None and x - last < min_gap:
                continue  # too close to the previous count to be readable: the next one is shown
            last = x
            ax.annotate(str(int(n)), xy=(x, 0), xycoords=("data", "axes fraction"), xytext=(0, dy),
                        textcoords="offset points", ha="center", va="center", fontsize=6, color=colors[c],
                        annotation_clip=False)
    ax.xaxis.labelpad = 4 + N_ROW_PT * len(cohorts) + 8


def subject_lines(ax, d: pd.DataFrame, colors: dict, lw: float = 0.6, alpha: float = 0.35) -> None:
    """Each subject's results (``day``, ``value``) as a thin line in the cohort's colour, in
    (cohort, subject) order: one ``LineCollection``, which draws them exactly as one
    ``ax.plot`` per subject would (the same pixels: width, alpha, antialiasing, and the caps
    and joins of matplotlib's solid lines), without thousands of Line2D artists at a large
    study. Each subject's rows stay in their order (by day)."""
    group = d.groupby(["COHORT", "USUBJID"], sort=True).ngroup().to_numpy()
    order = np.argsort(group, kind="stable")
    order = order[group[order] >= 0]  # rows without a cohort or subject are in no group, as in groupby
    if not len(order):
        return
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))  # the first row of each subject
    xy = d[["day", "value"]].to_numpy(dtype="float64")[order]
    cohorts = d["COHORT"].to_numpy()[order][starts]
    ax.add_collection(LineCollection(np.split(xy, starts[1:]), colors=[colors[c] for c in cohorts], linewidths=lw,
                                     alpha=alpha, capstyle=matplotlib.rcParams["lines.solid_capstyle"],
                                     joinstyle=matplotlib.rcParams["lines.solid_joinstyle"]))


def expansion_figure(data: pd.DataFrame, tests: list[str], title: str) -> Figure | None:
    """One panel per test, log scale: each subject (thin line, cohort colour, actual days) and
    the cohort median of all results per planned visit day (bold), n per time point under the
    axis (:func:`expansion_medians`)."""
    present = [t for t in tests if t in set(data["PCTESTCD"])]
    if not present:
        return None
    cohorts = sorted(set(data["COHORT"]))
    colors = cohort_colors(cohorts)
    under = (24 + N_ROW_PT * len(cohorts)) / 72.0
    fig = Figure(figsize=(WIDTH_IN, (3.6 + under) * len(present) + 0.8), dpi=DPI)
    axes = fig.subplots(len(present), 1, squeeze=False)[:, 0]
    for ax, test in zip(axes, present):
        d = data[data["PCTESTCD"] == test]
        subject_lines(ax, d, colors)
        meds = expansion_medians(d)
        for c in cohorts:
            mc = meds[meds["COHORT"] == c]
            if mc.empty:
                continue
            ax.plot(mc["nominal_day"], mc["median"], lw=2.0, marker="o", ms=3, color=colors[c],
                    label=f"{c} (median of all results)")
        _n_rows(ax, meds, cohorts, colors, "nominal_day")
        ax.set_yscale("log")
        name, unit = d["PCTEST"].iloc[0], d["PCSTRESU"].iloc[0]
        ax.set_ylabel(f"{name} ({unit})" if unit else name, fontsize=9)
        ax.grid(color="#eeeeee", lw=0.5, which="both")
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    axes[-1].set_xlabel("Days after CAR-T infusion (day 0 = infusion)")
    # at y = 1, where automatic placement puts it: a log axis has no offset text (see swimmer_figure)
    axes[0].set_title(title, fontsize=10, y=1.0)
    _panel_margins(fig, len(cohorts), len(present))
    return fig


# ---------------------------------------------------------------------------------------
# Kaplan-Meier (ADTTE)
# ---------------------------------------------------------------------------------------
def kaplan_meier(time: pd.Series, censored: pd.Series) -> pd.DataFrame:
    """Product-limit estimate (Kaplan and Meier 1958): at each distinct time t,
    S(t) = S(t-) x (1 - d_t / n_t), n_t = subjects with time >= t, d_t = events at t
    (CNSR = 0; a missing CNSR counts as censored); censored at t count as at risk at t.
    Columns time, n_risk, events, censored, survival (a step function, starting at time 0
    with S = 1). Counted with numpy on the few records of one curve (a groupby per cohort
    cost more than the figure's curve)."""
    t = pd.to_numeric(time, errors="coerce").to_numpy(dtype="float64")
    cnsr = pd.to_numeric(censored, errors="coerce").to_numpy(dtype="float64")
    present = ~np.isnan(t)
    t, event = t[present], np.nan_to_num(cnsr[present], nan=1.0).astype(np.int64) == 0
    times, at = np.unique(t, return_inverse=True)  # ascending distinct times
    events = np.bincount(at.reshape(-1), weights=event, minlength=len(times)).astype(np.int64)
    cens = np.bincount(at.reshape(-1), weights=~event, minlength=len(times)).astype(np.int64)
    total = len(t)
    n_risk = total - (np.cumsum(events + cens) - (events + cens))  # less those who left before t
    survival = np.cumprod(1.0 - events / n_risk)
    return pd.DataFrame({"time": np.concatenate([[0.0], times]),
                         "n_risk": np.concatenate([[total], n_risk]).astype(np.int64),
                         "events": np.concatenate([[0], events]).astype(np.int64),
                         "censored": np.concatenate([[0], cens]).astype(np.int64),
                         "survival": np.concatenate([[1.0], survival])})


def at_risk(time: pd.Series, ticks: list[float]) -> list[int]:
    """Number at risk at each tick: subjects whose time is >= the tick."""
    t = pd.to_numeric(time, errors="coerce").dropna().to_numpy()
    return [int((t >= x).sum()) for x in ticks]  # a loop over a few axis ticks


def km_data(adtte: pd.DataFrame, paramcd: str, subj: pd.DataFrame, group: str = "TRT01A") -> dict[str, pd.DataFrame]:
    """Per cohort (``group``, else the subject's COHORT): the ADTTE records of ``paramcd``
    (AVAL, CNSR), in cohort order."""
    r = adtte[column(adtte, "PARAMCD") == paramcd]
    if r.empty:
        return {}
    coh = column(r, group) if group in r.columns else with_cohort(r, subj)["COHORT"]
    coh = coh.where(coh != "", "All subjects")
    return {c: r[coh == c] for c in sorted(set(coh))}


def km_figure(groups: dict[str, pd.DataFrame], title: str, unit: str) -> Figure | None:
    """KM curves by cohort with censor marks (+) and the number at risk under the axis."""
    if not groups:
        return None
    cohorts = list(groups)
    colors = cohort_colors(cohorts)
    under = (24 + N_ROW_PT * len(cohorts)) / 72.0
    fig = Figure(figsize=(WIDTH_IN, 4.6 + under), dpi=DPI)
    ax = fig.subplots(1, 1)
    tmax = max(float(pd.to_numeric(g["AVAL"], errors="coerce").max()) for g in groups.values())
    step = max(1.0, float(np.ceil(tmax / 8.0 / 30.0) * 30.0)) if tmax > 60 else max(1.0, float(np.ceil(tmax / 8.0)))
    ticks = list(np.arange(0.0, tmax + step, step))
    rows = []
    for c in cohorts:  # a few cohorts
        g = groups[c]
        curve = kaplan_meier(g["AVAL"], g["CNSR"])
        med = km_estimate(g["AVAL"], g["CNSR"])["median"]   # the same median as table 14.2.5.3
        label = f"{c} (n = {len(g)}; median {'not reached' if np.isnan(med) else f'{med:g}'})"
        ax.step(curve["time"], curve["survival"], where="post", color=colors[c], lw=1.6, label=label)
        cens = curve[curve["censored"] > 0]
        ax.plot(cens["time"], cens["survival"], ls="", marker="+", ms=8, mew=1.2, color=colors[c])
        rows.append(pd.DataFrame({"COHORT": c, "x": ticks, "n": at_risk(g["AVAL"], ticks)}))
    _n_rows(ax, pd.concat(rows, ignore_index=True), cohorts, colors, "x", "At risk")
    ax.set_xticks(ticks)
    ax.set_xlim(0, ticks[-1])
    ax.set_ylim(0, 1.04)
    ax.set_ylabel("Probability")
    ax.set_xlabel(f"Time from CAR-T infusion ({unit.lower() or 'days'}); + censored")
    # at y = 1, where automatic placement puts it: the probability axis (0 to 1.04) has no
    # offset text (see swimmer_figure)
    ax.set_title(title, fontsize=10, y=1.0)
    ax.grid(color="#eeeeee", lw=0.5)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    _panel_margins(fig, len(cohorts), 1)
    return fig
