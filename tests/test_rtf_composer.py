"""The RTF composer (pipeline.report.rtf, used by tlf.rtf_text) against rtflite, which wrote
these documents before it (tests/rtflite_oracle.py, the former path word for word): the same
bytes for every RTF document of a real built study and for hand-made documents that reach
the corners (no records, no footnotes, several footnotes, text beyond Latin-1, a figure); the
escapes by hand; cell texts of any characters by hypothesis. The oracle tests skip visibly
without rtflite (test extra)."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given, settings, strategies as st

from conftest import RAW, SPECS
from pipeline.report import rtf, tlf


def _rtflite():
    pytest.importorskip("rtflite", reason="rtflite (test extra) is the oracle of the RTF composer")
    import rtflite_oracle
    return rtflite_oracle


# ---------------------------------------------------------------------------------------
# by hand
# ---------------------------------------------------------------------------------------
def test_unicode_escapes_by_hand():
    assert rtf.unicode_escape("plain ASCII {x}") == "plain ASCII {x}"
    assert rtf.unicode_escape("5 µg/kg, café") == "5 µg/kg, café"          # Latin-1 stays (cp1252 bytes)
    assert rtf.unicode_escape("±") == "\\uc1\\u177*"                         # the one Latin-1 exception
    assert rtf.unicode_escape("≥ 3") == "\\uc1\\u8805* 3"                    # U+2265
    assert rtf.unicode_escape("细胞") == "\\uc1\\u32454*\\uc1\\u-32546*"     # U+7EC6; U+80DE = 32990 - 65536
    assert rtf.unicode_escape("￥") == "\\uc1\\u-27*"                        # 65509 - 65536
    assert rtf.unicode_escape("€") == "\\uc1\\u8364*"                        # cp1252 has it, RTF escapes it anyway


def test_rtf_escapes_of_data_text_by_hand():
    assert tlf.rtf_escape("a\\b {c} x_1 y^2 >= 3") == "a\\\\b \\{c\\} x_1 y^2 >= 3"
    assert tlf.rtf_cell("CD7 CAR-T, IL-6") == "CD7 CAR\\_T, IL\\_6"          # short compounds: non-breaking hyphens
    assert tlf.rtf_cell("2024-05-10 NCT06316427-01-002 Donor-derived") == "2024-05-10 NCT06316427-01-002 Donor-derived"
    assert rtf.run(tlf.rtf_cell("{≥}"), 7) == "\\fs14{\\f3 \\{\\uc1\\u8805*\\}}"
    assert rtf.run("Table 1", 10, bold=True) == "\\fs20{\\f3\\b Table 1}"


def test_table_pieces_by_hand():
    assert rtf.twips(0.6) == 864 and rtf.twips(0.95) == 1368 and rtf.gap_twips(4 / 72) == 40
    # right edges: the running sum of 1, 1, 2 parts of 4 inches; 1 and 2 parts of 1 inch (480.0, 1440)
    assert rtf.cell_edges([1, 1, 2], 4.0) == [1440, 2880, 5760]
    assert rtf.cell_edges([1.0, 2.0], 1.0) == [480, 1440]
    assert rtf.row_definition([480, 1440], "single", "double", "top", 40) == (
        "\\trowd\\trgaph40\\trleft0\\trqc\n"
        "\\clbrdrl\\brdrs\\brdrw15\\clbrdrt\\brdrs\\brdrw15\\clbrdrb\\brdrdb\\brdrw15\\clvertalt\\cellx480\n"
        "\\clbrdrl\\brdrs\\brdrw15\\clbrdrt\\brdrs\\brdrw15\\clbrdrr\\brdrs\\brdrw15\\clbrdrb\\brdrdb\\brdrw15\\clvertalt\\cellx1440")
    assert rtf.cell(rtf.run("x", 7), rtf.paragraph_format("r", hyphenate=False)) == \
        "\\pard\\hyphpar0\\sb15\\sa15\\fi0\\li0\\ri0\\qr\\fs14{\\f3 x}\\cell"
    assert rtf.margins([0.6, 0.6, 0.95, 0.95, 0.36, 0.36]) == \
        "\\margl864\\margr864\\margt1368\\margb1368\\headery518\\footery518"


def test_document_bytes_by_hand():
    """A one-row table: the bytes a reader gets, µ as its cp1252 byte, ≥ as a \\u escape."""
    doc = tlf.Doc(studyid="S", type="Table", number="1", title="T", headers=["A"], rows=[["5 µg ≥"]], align=["l"],
                  source="DM", cutoff="2025-01-01", program="p", run="r")
    raw = tlf.rtf_bytes(doc)
    assert b"{\\f3 5 \xb5g \\uc1\\u8805*}\\cell\n\\intbl\\row\\pard\n\n\n\n}" in raw
    assert raw.startswith(b"{\\rtf1\\ansi\n\\deff0\\deflang1033\n{\\fonttbl{\\f0\\froman\\fcharset1\\fprq2 Times New Roman;}\n")
    assert b"\n\\paperw12240\\paperh15840\n\\margl864\\margr864\\margt1368\\margb1368\\headery518\\footery518\n" in raw
    # one page, no footnotes: the row's bottom rule is the document's last, double
    assert raw.count(b"\\clbrdrb\\brdrdb") == 1 and b"\\page" not in raw


# ---------------------------------------------------------------------------------------
# against rtflite
# ---------------------------------------------------------------------------------------
#: any text a cell may hold: every plane, controls included (not lone surrogates, which no
#: Python text read from a file holds)
CELL_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=CELL_TEXT, justify=st.sampled_from(["l", "r", "c"]), size=st.integers(4, 12), bold=st.booleans())
def test_cell_text_escaping_is_rtflites(text, justify, size, bold):
    """A table cell as rtflite's TextContent writes it (conversions off, as tlf used it)."""
    _rtflite()
    from rtflite.row import TextContent
    escaped = tlf.rtf_cell(text)
    theirs = TextContent(text=escaped, font=4, size=size, format="b" if bold else "", justification=justify,
                         hyphenation=False, convert=False)._as_rtf(method="cell")
    assert rtf.cell(rtf.run(escaped, size, bold=bold), rtf.paragraph_format(justify, hyphenate=False)) == theirs


def _docs() -> list[tlf.Doc]:
    """Hand-made documents reaching the corners of the composer."""
    base = dict(studyid="X_1 {s}", source="AE, DM", cutoff="2025-01-01", program="p \\ q", run="r")
    long_rows = [[f"S-{i:03d}", "RECOVERED/RESOLVED", "word " * (i % 9 + 1), str(i)] for i in range(120)]
    wide = dict(headers=["Subject", "Outcome", "Text", "N"], align=["l", "l", "l", "r"], orientation="landscape")
    return [
        tlf.Doc(type="Listing", number="1", title="Empty", headers=["A", "B"], rows=[], align=["l", "l"], **base),
        tlf.Doc(type="Listing", number="2", title="Long, no footnotes", rows=long_rows, **wide, **base),
        tlf.Doc(type="Listing", number="3", title="Long, footnotes", rows=long_rows, **wide,
                footnotes=["first {1}", "second ≥ 2 ± 1", "x_1 \\ y^2"], **base),
        tlf.Doc(type="Table", number="4", title="t_i ≥ {t}", subtitle="µg, 细胞 ✓", population="Safety",
                headers=["A_B", "CAR-T ≥", "N"], align=["l"], footnotes=["n_1 >= 2"],
                rows=[["AE_1 x^2", ">= 3 {b} \\par \\", "1"], ["CAR-T \u2265 1e6 \u7ec6\u80de", "", "22"]], **base),
    ]


def _figure_docs(tmp_path) -> list[tlf.Doc]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 2), dpi=50)
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "f.png"
    fig.savefig(path)
    plt.close(fig)
    base = dict(studyid="X", type="Figure", number="14.1", title="Survival", source="ADTTE", cutoff="2025-01-01",
                program="p", run="r", png=path.read_bytes(), png_path=path, orientation="landscape")
    return [tlf.Doc(**base), tlf.Doc(**base, subtitle="by cohort", footnotes=["one", "two ≥ 2"])]


def test_hand_made_documents_are_rtflites(tmp_path):
    oracle = _rtflite()
    for doc in _docs() + _figure_docs(tmp_path):
        lay = tlf.layout(doc, 7, 0.6, 6, "(continued)")
        assert tlf.rtf_bytes(doc, 7, 0.6, lay) == oracle.rtf_bytes(doc, 7, 0.6, lay), doc.heading


@pytest.mark.slow
def test_every_rtf_of_a_built_study_is_rtflites(tmp_path, monkeypatch):
    """Every RTF document of the smallest shipped study, built here (in this process), as
    rtflite writes it: each document's composer bytes (what the build writes) against the
    oracle's, taken while the build runs (a figure's PNG is read from its staging folder)."""
    oracle = _rtflite()
    import pipeline.build as build

    studies = [p for p in RAW.iterdir() if p.is_dir() and (SPECS / "studies" / f"{p.name}.toml").is_file()] \
        if RAW.is_dir() else []
    if not studies:
        pytest.skip("raw/ holds no study extracts yet (run `make raw`)")
    sid = min(studies, key=lambda p: sum(f.stat().st_size for f in p.iterdir())).name
    compared: list[tuple[str, bool]] = []
    composer = tlf.rtf_bytes

    def both(doc, font_size=7.0, margin_in=0.6, lay=None):
        ours = composer(doc, font_size, margin_in, lay)
        compared.append((doc.heading, ours == oracle.rtf_bytes(doc, font_size, margin_in, lay)))
        return ours

    monkeypatch.setattr(tlf, "rtf_bytes", both)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
    out = tmp_path / "sdtm"
    args = argparse.Namespace(study=[sid], raw=RAW, specs=SPECS, out=out, debug=False, no_progress=True, jobs=1,
                              no_cache=True)
    assert build.run_build(args) == 0
    written = sorted((out / sid / "listings" / "tlf").glob("*.rtf"))
    assert len(compared) == len(written) > 20
    assert [h for h, same in compared if not same] == []
    assert any(h.startswith("Figure") for h, _ in compared) and any(h.startswith("Listing") for h, _ in compared)


def test_rtflite_oracle_fast_path_is_rtflite_as_shipped(monkeypatch):
    """The oracle's memoised rtflite path (rtflite_oracle._rtflite_fast) changes speed, not
    output: a wrapped, paginated listing encodes identically with rtflite as shipped."""
    oracle = _rtflite()
    doc = _docs()[2]
    import rtflite.pagination.processor
    import rtflite.row
    built, borders = [], []
    real_row = rtflite.row.Row._as_rtf
    real_borders = rtflite.pagination.processor.PageFeatureProcessor._apply_pagination_borders
    with monkeypatch.context() as m:
        m.setattr(rtflite.row.Row, "_as_rtf", lambda self: built.append(1) or real_row(self))
        m.setattr(rtflite.pagination.processor.PageFeatureProcessor, "_apply_pagination_borders",
                  lambda self, d, page: borders.append(page.page_number) or real_borders(self, d, page))
        fast = oracle.rtf_text(doc)
    lay = tlf.layout(doc)
    shapes = {(b - a, k == 0, k == lay.total - 1) for k, (a, b) in enumerate(lay.pages)}
    # rows encoded once per distinct attributes (page's first, middle, last row), not per row;
    # the page borders once per page shape (rows, first, last), not per page
    assert 0 < len(built) < 40
    assert lay.total > len(shapes) and len(borders) == len(shapes)
    monkeypatch.setattr(oracle, "RTFLITE_FAST", False)
    assert oracle.rtf_text(doc) == fast == tlf.rtf_text(doc)
    import rtflite.attributes
    assert rtflite.attributes.BroadcastValue.__module__ == "rtflite.attributes"  # restored
