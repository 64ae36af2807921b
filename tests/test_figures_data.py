"""Figures of the hand-built study TESTR: the numbers each figure shows (swimmer lanes and
markers, recovery median/range by cohort, expansion points), deterministic PNGs, absent inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.report import reportkit as kit
from pipeline.report import figures, listings


@pytest.fixture(scope="module")
def data():
    return kit.exported()


@pytest.fixture(scope="module")
def inp(data):
    return listings.prepare(data, {}, kit.context(data))


@pytest.fixture(scope="module")
def order(inp):
    return listings._response_order(inp.spec)


def _u(s):
    return f"{kit.STUDY}-01-{s}"


def test_swimmer_lanes_and_markers(inp, data, order):
    lanes, markers, shown = figures.swimmer_data(inp.subjects, data["RS"], order, "OVRLRESP",
                                                 ["INVESTIGATOR", "SPONSOR"], "2025-06-30")
    assert shown == "INVESTIGATOR"
    ends = dict(zip(lanes["USUBJID"], lanes["end_day"]))
    # infusion to end of participation (or death): 2025-01-10 -> 04-10, 01-20 -> 03-01, 02-01 -> 05-01
    assert ends == {_u("001"): 90, _u("002"): 40, _u("003"): 89}  # 004 never infused: no lane
    got = [(m.USUBJID, m.day, m.kind, m.category) for m in markers.itertuples()]
    assert got == [(_u("001"), 28, "response", "CR"), (_u("002"), 28, "progression", "PD"),
                   (_u("002"), 40, "death", ""), (_u("003"), 28, "response", "NR")]


def test_swimmer_uses_the_cutoff_when_no_end_date(inp, order):
    subj = inp.subjects.copy()
    subj.loc[subj["USUBJID"] == _u("001"), "RFPENDTC"] = "2025-04"
    lanes, _, shown = figures.swimmer_data(subj, None, order, "OVRLRESP", ["INVESTIGATOR"], "2025-06-30")
    assert dict(zip(lanes["USUBJID"], lanes["end_day"]))[_u("001")] == 171  # 2025-01-10 -> 2025-06-30
    assert shown == ""


def test_recovery_median_and_range_by_cohort(inp, data):
    d = figures.recovery_data(data["LB"], inp.subjects, ["NEUT", "PLAT"], listings.planned_days(inp.study))
    got = {(r.COHORT, r.day): (r.median, r.min, r.max, r.n) for r in d.itertuples()}
    assert got == {("Dose level 1", 7.0): (1.0, 0.5, 1.5, 2), ("Dose level 2", 7.0): (3.0, 3.0, 3.0, 1),
                   # an unscheduled visit is placed at its own day after infusion (LBDY 13 -> day 12)
                   ("Dose level 2", 12.0): (0.25, 0.25, 0.25, 1)}
    assert set(d["LBTESTCD"]) == {"NEUT"} and d["LBSTRESU"].iloc[0] == "10^9/L"


def test_expansion_points(inp, data):
    d = figures.expansion_data(data["PC"], inp.subjects, ["CARTCOPY"], listings.planned_days(inp.study))
    got = [(r.USUBJID, r.day, r.nominal_day, r.value, r.blq) for r in d.itertuples()]
    # the <10 sample of day 0 counts at half the limit (0.5 x 10 = 5); actual day 8 of subject 003
    # sits at its planned day 7 for the median
    assert got == [(_u("001"), 0, 0, 5.0, True), (_u("001"), 7, 7, 5000.0, False), (_u("001"), 28, 28, 250.5, False),
                   (_u("002"), 7, 7, 12000.0, False), (_u("003"), 8, 7, 800.0, False)]


def test_expansion_medians_are_of_all_results_with_the_stated_rule(inp):
    subj = inp.subjects
    u1, u2, u3 = _u("001"), _u("002"), _u("003")  # 001 and 002: dose level 1
    pc = pd.DataFrame({
        "USUBJID": [u1, u2, u1, u2], "PCTESTCD": "CARTCOPY", "PCTEST": "t", "PCSTRESU": "u",
        "VISIT": ["DAY 7", "DAY 7", "DAY 28", "DAY 28"], "PCDY": [8.0, 8.0, 29.0, 29.0],
        "PCSTRESN": [100.0, np.nan, np.nan, np.nan], "PCSTRESC": ["100", "<20", "<20", ""],
        "PCLLOQ": [20.0, 20.0, np.nan, np.nan]})
    for factor, day7, day28 in ((0.5, (100 + 10) / 2, 10.0), (1.0, (100 + 20) / 2, 20.0)):
        d = figures.expansion_data(pc, subj, ["CARTCOPY"], listings.planned_days(inp.study), factor)
        m = figures.expansion_medians(d).set_index("nominal_day")
        # day 7: 100 and one <LLOQ (20 from PCLLOQ); day 28: one <20 (limit read from "<20"), one not done
        assert m.loc[7.0, "median"] == day7 and m.loc[7.0, "n"] == 2 and m.loc[7.0, "n_blq"] == 1
        assert m.loc[28.0, "median"] == day28 and m.loc[28.0, "n"] == 1
    # the quantified-only median of day 7 would be 100: the rule changes the curve
    assert figures.lloq(pc).tolist() == [20.0, 20.0, 20.0, pytest.approx(np.nan, nan_ok=True)]


def test_expansion_footnote_states_the_rule():
    spec = listings.load_config(listings.DEFAULT_TLF_SPEC)["figures"]["expansion"]
    assert spec["blq_factor"] == ["0.5"]
    assert any("counts as 0.5 x LLOQ" in f for f in spec["footnotes"])


def test_swimmer_hsct_marks_and_absence(inp, data, order):
    pr = pd.DataFrame({"USUBJID": [_u("001"), _u("003")], "PRDECOD": ["Allogeneic stem cell transplantation",
                                                                    "Leukapheresis"],
                       "PRSTDTC": ["2025-03-01", "2025-02-20"]})
    h = figures.hsct_dates({"PR": pr}, "PR", "PRDECOD", "stem cell transplant|HSCT", "PRSTDTC")
    _, markers, _ = figures.swimmer_data(inp.subjects, data["RS"], order, "OVRLRESP", ["INVESTIGATOR"],
                                         "2025-06-30", h)
    got = markers[markers["kind"] == "hsct"][["USUBJID", "day"]].values.tolist()
    assert got == [[_u("001"), 50.0]]  # 2025-01-10 -> 2025-03-01; leukapheresis is not HSCT
    assert figures.hsct_dates({}, "PR", "PRDECOD", "x", "PRSTDTC") is None
    # absent: the swimmer's footnotes say so in the PDF/RTF
    figs, _ = listings.build_figures(inp)
    sw = next(f for f in figs if f.id == "swimmer")
    assert any("HSCT after CAR-T is not shown" in n for n in sw.entry["footnotes"])


def test_recovery_and_expansion_show_n_per_time_point(inp):
    figs, _ = listings.build_figures(inp)
    for f in figs:
        if f.id in ("count_recovery", "expansion"):
            assert f.entry["subtitle"] == "n = subjects with a result at the visit"


def test_pngs_are_deterministic_and_real(inp, data):
    figs, skipped = listings.build_figures(inp)
    assert [f.id for f in figs] == ["swimmer", "count_recovery", "expansion"]
    assert {s.id for s in skipped} == {"km_os", "km_pfs"}  # TESTR has no ADTTE
    again, _ = listings.build_figures(inp)
    for a, b in zip(figs, again):
        assert a.png == b.png, a.id
        assert a.png.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in a.png and b"matplotlib" not in a.png.lower()


def _png(fig) -> bytes:
    return figures.png_bytes(fig)


def test_subject_lines_draw_what_one_line_per_subject_draws():
    """figures.subject_lines (one LineCollection) gives the PNG of one ax.plot per subject,
    in (cohort, subject) order, on a log axis, with a one-point subject (drawn as nothing by
    both) and rows of a subject out of cohort order in the frame."""
    from matplotlib.figure import Figure

    d = pd.DataFrame({"COHORT": ["B", "A", "A", "B", "A", "A", "C"],
                      "USUBJID": ["S3", "S1", "S1", "S3", "S2", "S2", "S4"],
                      "day": [0.0, 0.0, 7.0, 14.0, 1.0, 28.0, 3.0],
                      "value": [5.0, 10.0, 900.0, 40.0, 3.0, 70000.0, 8.0]})
    colors = figures.cohort_colors(["A", "B", "C"])

    def draw(lines_of):
        fig = Figure(figsize=(4, 3), dpi=figures.DPI)
        ax = fig.add_subplot()
        lines_of(ax)
        ax.set_yscale("log")
        return _png(fig)

    def per_subject(ax):
        for (c, _s), ds in d.groupby(["COHORT", "USUBJID"], sort=True):
            ax.plot(ds["day"], ds["value"], lw=0.6, alpha=0.35, color=colors[c])

    assert draw(lambda ax: figures.subject_lines(ax, d, colors)) == draw(per_subject)
    assert draw(lambda ax: figures.subject_lines(ax, d.iloc[0:0], colors)) == draw(lambda ax: None)


def test_shared_mathtext_parser_draws_what_a_renderer_of_its_own_draws(inp):
    """png_bytes lays out the log axes' tick labels (mathtext, 10^k) with one parser for all
    figures: the expansion figure's PNG is the one matplotlib's own savefig gives (a new
    renderer with a parser of its own), the first time and when the parser already holds
    the expressions."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def own(fig) -> bytes:
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=figures.DPI, metadata={"Software": None})
        return buf.getvalue()

    data = figures.expansion_data(inp.datasets["PC"], inp.subjects, ["CARTCOPY", "CARTCELL"], {})
    figures.MATHTEXT._parse_cached.cache_clear()
    fig = figures.expansion_figure(data, ["CARTCOPY", "CARTCELL"], "Expansion")
    first = _png(fig)
    assert figures.MATHTEXT._parse_cached.cache_info().currsize > 0  # the log axis' labels
    assert first == own(fig)
    assert _png(figures.expansion_figure(data, ["CARTCOPY", "CARTCELL"], "Expansion")) == first
    assert figures.MATHTEXT._parse_cached.cache_info().hits > 0


def test_swimmer_title_and_axis_label_where_automatic_placement_puts_them(inp, data, order):
    """The swimmer's title at y = 1 and its (empty) lanes' axis label at a fixed position give
    the PNG matplotlib's automatic placement gives."""
    lanes, markers, shown = figures.swimmer_data(inp.subjects, data["RS"], order, "OVRLRESP",
                                                 ["INVESTIGATOR", "SPONSOR"], "2025-06-30")
    fig = figures.swimmer_figure(lanes, markers, order, "Swimmer", shown)
    fixed = _png(fig)
    ax = fig.axes[0]
    assert ax.yaxis.get_label_text() == ""
    ax._autotitlepos, ax.yaxis._autolabelpos = True, True  # matplotlib's own placement
    assert _png(fig) == fixed


def test_expansion_and_km_titles_where_automatic_placement_puts_them(inp):
    """The expansion and Kaplan-Meier titles at y = 1 give the PNG matplotlib's automatic
    placement gives (their y axes, log and 0 to 1.04, have no offset text)."""
    data = figures.expansion_data(inp.datasets["PC"], inp.subjects, ["CARTCOPY", "CARTCELL"], {})
    adtte = pd.DataFrame({"USUBJID": [_u("001"), _u("002"), _u("003")], "PARAMCD": "OS",
                          "AVAL": [90.0, 40.0, 89.0], "AVALU": "DAYS", "CNSR": [1, 0, 1],
                          "TRT01A": ["Dose level 1", "Dose level 1", "Dose level 2"]})
    for fig in (figures.expansion_figure(data, ["CARTCOPY", "CARTCELL"], "Expansion"),
                figures.km_figure(figures.km_data(adtte, "OS", inp.subjects), "Overall survival", "DAYS")):
        fixed = _png(fig)
        ax = fig.axes[0]
        assert ax.get_title() and not ax._autotitlepos
        ax._autotitlepos = True  # matplotlib's own placement
        assert _png(fig) == fixed


def test_figures_without_inputs_are_skipped(inp, data):
    empty_lb = data["LB"].iloc[0:0]
    assert figures.recovery_figure(figures.recovery_data(empty_lb, inp.subjects, ["NEUT"], {}), ["NEUT"], "t") is None
    nobody = inp.subjects.assign(treated=False)
    lanes, markers, _ = figures.swimmer_data(nobody, data["RS"], listings._response_order(inp.spec), "OVRLRESP",
                                             ["INVESTIGATOR"], "2025-06-30")
    assert lanes.empty and figures.swimmer_figure(lanes, markers, pd.DataFrame(), "t", "") is None


def test_response_colours_follow_the_rank(order):
    c = figures.response_colors(order)
    assert c["NE"] == figures.NE_COLOR
    assert c["PD"] == c["RELAPSE"]  # same rank
    green = np.array(c["CR"][:3])
    assert green[1] > green[0]  # the best response is green


# ---------------------------------------------------------------------------------------
# Kaplan-Meier from ADTTE
# ---------------------------------------------------------------------------------------
def test_kaplan_meier_by_hand():
    # times 1, 2, 2(censored), 3, 5(censored): S(1) = 4/5, S(2) = 4/5 x 3/4 = 0.6 (the censored
    # subject at 2 is still at risk at 2), S(3) = 0.6 x 1/2 = 0.3, S(5) = 0.3 (censored only)
    km = figures.kaplan_meier(pd.Series([1, 2, 2, 3, 5.0]), pd.Series([0, 0, 1, 0, 1]))
    assert km["time"].tolist() == [0, 1, 2, 3, 5]
    assert km["n_risk"].tolist() == [5, 5, 4, 2, 1]
    assert km["survival"].tolist() == pytest.approx([1.0, 0.8, 0.6, 0.3, 0.3])
    assert km["censored"].tolist() == [0, 0, 1, 0, 1]
    assert figures.at_risk(pd.Series([4.0]), [0, 4, 5]) == [1, 1, 0]
    assert figures.at_risk(pd.Series([1, 2, 2, 3, 5.0]), [0, 2, 4, 6]) == [5, 4, 1, 0]


def test_km_figures_from_adtte_and_skipped_without(inp, data):
    figs, skipped = listings.build_figures(inp)
    assert {s.id: s.reason for s in skipped}["km_os"] == "dataset ADTTE is not in this build"
    adtte = pd.DataFrame({"USUBJID": [_u("001"), _u("002"), _u("003")], "PARAMCD": "OS",
                          "AVAL": [90.0, 40.0, 89.0], "AVALU": "DAYS", "CNSR": [1, 0, 1],
                          "TRT01A": ["Dose level 1", "Dose level 1", "Dose level 2"]})
    full = {**data, "ADTTE": adtte}
    inp2 = listings.prepare(full, {}, kit.context(full))
    figs, skipped = listings.build_figures(inp2)
    ids = {f.id for f in figs}
    assert "km_os" in ids and {s.id: s.reason for s in skipped}["km_pfs"] == "no ADTTE record of PARAMCD PFS"
    groups = figures.km_data(adtte, "OS", inp2.subjects)
    assert list(groups) == ["Dose level 1", "Dose level 2"]
    fig = figures.km_figure(groups, "t", "DAYS")
    texts = [t.get_text() for t in fig.axes[0].texts]
    # the at-risk rows: ticks every 30 days (max 90); dose level 1 (times 90 censored, 40 death)
    # at 0, 30, 60, 90: 2, 2, 1, 1 (at risk at t: time >= t)
    assert texts[:5] == ["At risk", "2", "2", "1", "1"]
    assert "Dose level 1 (n = 2; median 40)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def _stock_png(fig) -> bytes:
    """The PNG matplotlib's own Agg canvas draws (a new renderer measuring and laying out every
    text itself), with the shared mathtext parser of png_bytes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).get_renderer().mathtext_parser = figures.MATHTEXT
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=figures.DPI, metadata={"Software": None})
    return buf.getvalue()


def _all_figures(inp) -> list:
    """Every figure kind of TESTR as matplotlib figures: swimmer, recovery, expansion (log axes,
    mathtext) and Kaplan-Meier (at-risk rows)."""
    order = listings._response_order(inp.spec)
    lanes, markers, shown = figures.swimmer_data(inp.subjects, inp.datasets["RS"], order, "OVRLRESP",
                                                 ["INVESTIGATOR", "SPONSOR"], "2025-06-30")
    lb_tests = ["NEUT", "PLAT", "HGB"]
    pc_tests = ["CARTCOPY", "CARTCELL"]
    adtte = pd.DataFrame({"USUBJID": [_u("001"), _u("002"), _u("003")], "PARAMCD": "OS",
                          "AVAL": [90.0, 40.0, 89.0], "AVALU": "DAYS", "CNSR": [1, 0, 1],
                          "TRT01A": ["Dose level 1", "Dose level 1", "Dose level 2"]})
    return [figures.swimmer_figure(lanes, markers, order, "Swimmer", shown),
            figures.recovery_figure(figures.recovery_data(inp.datasets["LB"], inp.subjects, lb_tests, {}),
                                    lb_tests, "Recovery"),
            figures.expansion_figure(figures.expansion_data(inp.datasets["PC"], inp.subjects, pc_tests, {}),
                                     pc_tests, "Expansion"),
            figures.km_figure(figures.km_data(adtte, "OS", inp.subjects), "Overall survival", "DAYS")]


def test_text_memo_draws_what_the_stock_canvas_draws(inp):
    """png_bytes lays out each text once per process (figures.TextMemoRenderer): every figure
    kind is the PNG matplotlib's own canvas draws, with empty memos and again with the memos
    filled by the figures before it (the same tick labels, legend entries and counts), and the
    memos are used (fewer layouts than texts drawn)."""
    figures._TEXT_METRICS.clear()
    figures._TEXT_LAYOUTS.clear()
    figures._GLYPH_BITMAPS.clear()
    figures._FONT_HEIGHTS.clear()
    for fig in _all_figures(inp):
        assert fig is not None
        assert figures.png_bytes(fig) == _stock_png(fig)
    layouts, bitmaps = len(figures._TEXT_LAYOUTS), len(figures._GLYPH_BITMAPS)
    assert layouts > 0 and len(figures._TEXT_METRICS) > 0 and bitmaps > 0
    for fig in _all_figures(inp):  # every text of these figures is in the memos now
        assert figures.png_bytes(fig) == _stock_png(fig)
    assert len(figures._TEXT_LAYOUTS) == layouts and len(figures._GLYPH_BITMAPS) == bitmaps


def test_font_height_metrics_by_hand():
    """DejaVu Sans (matplotlib's default font): 2,048 units per em, OS/2 typographic ascender
    1,556, descender -492, line gap 410. At 10 pt and 72 dpi (1 pt = 1 px): 1556 / 2048 * 10 =
    7.59765625, 492 / 2048 * 10 = 2.40234375, 410 / 2048 * 10 = 2.001953125; at 9 pt and
    100 dpi each is 9 * 100 / 72 = 12.5 times its value per point: 9.4970703125,
    3.0029296875, 2.50244140625."""
    from matplotlib.font_manager import FontProperties

    assert figures.font_height_metrics(FontProperties(family="DejaVu Sans", size=10), 72) == (
        7.59765625, 2.40234375, 2.001953125)
    assert figures.font_height_metrics(FontProperties(family="DejaVu Sans", size=9), 100) == (
        9.4970703125, 3.0029296875, 2.50244140625)


@pytest.mark.parametrize("size, weight, dpi", [(7, "normal", 100), (9.5, "bold", 100), (14, "normal", 72),
                                               (10, "bold", 150)])
def test_font_height_memo_lays_text_out_as_the_stock_renderer(size, weight, dpi):
    """A text of one and of three lines (the line gap counts only between lines) has the same
    layout (its box, each line's width, ascent, descent and position) with the memo renderer as
    with matplotlib's own, which reads the font's tables itself; the memo keeps one entry per
    font properties and resolution."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.figure import Figure

    figures._FONT_HEIGHTS.clear()
    fig = Figure(figsize=(4, 3), dpi=dpi)
    for s in ("Days after infusion", "Dose level 1\nn = 12\n(g) [y]"):
        text = fig.text(0.5, 0.5, s, size=size, weight=weight)
        stock = text._get_layout(RendererAgg(400, 300, dpi))
        memo = text._get_layout(figures.TextMemoRenderer(400, 300, dpi))
        assert str(memo[0]) == str(stock[0]) and memo[1:] == stock[1:]
    assert len(figures._FONT_HEIGHTS) == 1


def test_glyph_memo_renders_what_freetype_renders_at_every_position():
    """figures.GlyphMemoFont gives the bitmap (coverage, left and top pixel) FreeType renders
    for every glyph of a text, at random pen positions (whole pixels and their fractions, the
    same fraction at other whole pixels: memo hits), sizes, weights and rotations; spaces
    (empty bitmaps) too; monochrome rendering passes through."""
    import random

    from matplotlib.backends.backend_agg import get_hinting_flag
    from matplotlib.font_manager import findfont, get_font
    from matplotlib.ft2font import RenderMode

    rng = random.Random(14)
    flags = get_hinting_flag()
    figures._GLYPH_BITMAPS.clear()
    hits = 0
    # fractions of a pixel shared by every font, size and rotation, and ones a bit apart
    fractions = [(rng.randrange(64), rng.randrange(64)) for _ in range(3)]
    fractions += [(fx ^ bit, fy) for fx, fy in fractions[:1] for bit in (1, 32)]
    fractions += [(fx, fy ^ bit) for fx, fy in fractions[:1] for bit in (1, 32)]
    for family in ("DejaVu Sans", "DejaVu Sans:bold"):
        font = get_font(findfont(family))
        memo = figures._glyph_memo_font(font)
        assert figures._glyph_memo_font(font) is memo
        glyphs = [font.get_char_index(ord(c)) for c in "Dose 1 (n = 12)"]
        for size, angle in ((6, 0), (7, 0), (7, 90), (7, 30), (9, 0), (13.5, 30)):
            cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
            matrix = (0x10000 * np.array([[cos, -sin], [sin, cos]])).round().astype(int)
            for _ in range(60):
                fx, fy = rng.choice(fractions)
                delta = [fx + 64 * rng.randrange(-3, 1500), fy + 64 * rng.randrange(-3, 1500)]
                index = rng.choice(glyphs)
                known = len(figures._GLYPH_BITMAPS)
                memo.set_size(size, figures.DPI)
                memo._set_transform(matrix, delta)
                got = memo._render_glyph(index, flags, RenderMode.NORMAL)
                hits += len(figures._GLYPH_BITMAPS) == known
                font.set_size(size, figures.DPI)
                font._set_transform(matrix, delta)
                want = font._render_glyph(index, flags, RenderMode.NORMAL)
                assert (got.left, got.top) == (want.left, want.top)
                assert got.buffer.shape == want.buffer.shape and (got.buffer == want.buffer).all()
        mono = memo._render_glyph(glyphs[0], flags, RenderMode.MONO)
        assert not isinstance(mono, figures.GlyphBitmap)
    assert hits > 100  # positions at a known fraction of a pixel were drawn from the memo


def test_text_memo_keys_on_font_size_weight_and_angle():
    """The same string in other font sizes, weights and angles in one figure is laid out for
    each font (and drawn at each angle), as the stock canvas draws it: a memo keyed on the text
    alone would draw the 7-point layout at 14 points."""
    from matplotlib.figure import Figure

    def fig_of():
        fig = Figure(figsize=(4, 3), dpi=figures.DPI)
        ax = fig.add_subplot()
        for k, (size, weight, rot) in enumerate([(7, "normal", 0), (14, "normal", 0), (7, "bold", 0),
                                                  (7, "normal", 90), (14, "bold", 30)]):
            ax.text(0.1 + 0.15 * k, 0.5, "Dose level 1", fontsize=size, fontweight=weight, rotation=rot)
        return fig

    figures._TEXT_METRICS.clear()
    figures._TEXT_LAYOUTS.clear()
    assert figures.png_bytes(fig_of()) == _stock_png(fig_of())
    fonts = {key[1].get_size_in_points() for key in figures._TEXT_LAYOUTS if key[0] == "Dose level 1"}
    assert fonts == {7.0, 14.0}
    assert sum(key[0] == "Dose level 1" for key in figures._TEXT_LAYOUTS) == 4  # (7|14) x (normal|bold)


def test_text_memo_falls_back_to_the_stock_drawing(inp, monkeypatch):
    """Where matplotlib has no glyph-list text drawing (before 3.11), the renderer draws with
    the stock methods: the same PNG, nothing laid out in the memo."""
    monkeypatch.setattr(figures.TextMemoRenderer, "LAYOUT_DRAWING", False)
    figures._TEXT_LAYOUTS.clear()
    fig = _all_figures(inp)[3]
    assert figures.png_bytes(fig) == _stock_png(fig)
    assert not figures._TEXT_LAYOUTS


def _ticks_made(fig) -> int:
    return sum(len(axis.majorTicks) + len(axis.minorTicks) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis))


def test_ticks_in_view_draw_what_the_untouched_figure_draws(inp):
    """png_bytes ticks each axis only inside its view (figures.ticks_in_view): every figure kind
    is the PNG the stock canvas draws of the same figure untouched, with fewer ticks made."""
    for fig, untouched in zip(_all_figures(inp), _all_figures(inp)):
        assert figures.png_bytes(fig) == _stock_png(untouched)
        assert _ticks_made(fig) < _ticks_made(untouched)


@settings(max_examples=40, deadline=None)
@given(x0=st.floats(-1e6, 1e6), xspan=st.floats(1e-3, 1e6), y0=st.floats(1e-3, 1e5),
       ydecades=st.floats(0.05, 9.0), log=st.booleans(), grid=st.sampled_from(["major", "both"]))
def test_ticks_in_view_keep_the_labels_of_any_view(x0, xspan, y0, ydecades, log, grid):
    """Linear axes of any range and offset (decimals, offset text, scientific notation) and log
    axes of a twentieth of a decade (minor tick labels) to nine decades: the figure ticked in
    view is the PNG of the untouched one."""
    from matplotlib.figure import Figure

    def fig_of():
        fig = Figure(figsize=(3, 2), dpi=figures.DPI)
        ax = fig.add_subplot()
        ax.plot([x0, x0 + xspan], [y0, y0 * 10 ** ydecades])
        if log:
            ax.set_yscale("log")
        ax.grid(which=grid)
        return fig

    fig = fig_of()
    assert figures.png_bytes(fig) == _stock_png(fig_of())
