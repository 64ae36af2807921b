"""The layout helpers of pipeline.report.tlf against the computations they stand in for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from pipeline.report import tlf

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _both_zeros(values: list[float]) -> bool:
    """The list holds 0.0 and -0.0: they are equal, so which of them sorting or numpy's
    selection (a partition, not a stable sort) puts at a place is not defined."""
    return {math.copysign(1.0, v) for v in values if v == 0} == {1.0, -1.0}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_finite, st.floats(0, 500)), min_size=1, max_size=40),
       st.one_of(st.integers(0, 100), st.floats(0, 100), st.sampled_from([90, 50, 99.9, 0.1])))
@example([0.0, 1.0, 0.0, 0.0, 0.0, -0.0, 0.0, 0.0, 0.0, 1.0, 1.0, -0.0], 50)  # a fresh-clone CI's draw
def test_percentile_is_numpys(values, q):
    """tlf.percentile: numpy's default percentile, to the last bit, on drawn lists and percents;
    a zero result's sign only where it is defined (the list does not hold both zeros)."""
    got, expected = tlf.percentile(values, q), float(np.percentile(values, q))
    if got == 0 and _both_zeros(values):
        assert expected == 0
    else:
        assert _same(got, expected)


def test_percentile_by_hand():
    assert tlf.percentile([5.0], 90) == 5.0
    assert tlf.percentile([3.0, 1.0], 90) == pytest.approx(2.8, abs=1e-12)  # index 0.9: 3 - 2 * 0.1
    assert tlf.percentile([1.0, 2.0, 3.0, 4.0, 10.0], 90) == pytest.approx(7.6, abs=1e-12)  # 3.6: 10 - 6 * 0.4
    assert tlf.percentile([1.0, 2.0, 3.0, 4.0, 10.0], 10) == pytest.approx(1.4, abs=1e-12)  # 0.4: 1 + 1 * 0.4
    assert tlf.percentile([2.0, 4.0], 100) == 4.0 and tlf.percentile([2.0, 4.0], 0) == 2.0
    assert tlf.percentile([-0.0], 90) == 0.0 and math.copysign(1.0, tlf.percentile([-0.0], 90)) == -1.0


def _wrapped_by_atoms(wrap: tlf._Wrapper, text: str, width: float) -> list[str]:
    """What _Wrapper gave for every text before its one-line shortcut: greedy filling of the
    atoms (_lines), then each line broken between characters where too wide (_fit)."""
    lines = wrap._lines(tlf.pdf_text(text), width) if text else [""]
    return [piece for ln in lines for piece in wrap._fit(ln, width)] or [""]


_words = st.text(alphabet=st.sampled_from(list("aZ09 -/.,()\t\n") + ["\u00b5", "\u2265", "\u4e2d", "W", "i"]), max_size=40)


@settings(max_examples=500, deadline=None)
@given(_words, st.floats(0.5, 200), st.sampled_from([6.0, 7.0, 10.0]), st.booleans())
def test_wrapper_is_the_greedy_filling_of_the_atoms(text, width, size, bold):
    """tlf._Wrapper (with its one-line shortcut) wraps every drawn text as the atom-by-atom
    greedy filling does, in both fonts: texts that fit, that wrap, hyphens and slashes, runs of
    spaces, tabs and newlines, characters beyond Latin-1 and beyond the font, empty text."""
    font = tlf.pdf_fonts()[1 if bold else 0]
    assert tlf._Wrapper(font, size)(text, width) == _wrapped_by_atoms(tlf._Wrapper(font, size), text, width)


def test_wrapper_by_hand():
    font = tlf.pdf_fonts()[0]
    wrap = tlf._Wrapper(font, 10.0)
    assert wrap("a  b\tc", 500) == ["a b c"]  # spaces put together, as the atoms are joined
    assert wrap("   ", 500) == [""] and wrap("", 500) == [""]
    wide = wrap("Donor-derived CAR-T cells", 60)
    assert wide == _wrapped_by_atoms(tlf._Wrapper(font, 10.0), "Donor-derived CAR-T cells", 60) and len(wide) > 1
    assert "".join(wrap("NCT06316427-01-002", 20)) == "NCT06316427-01-002"  # one word broken between characters
