"""The layout helpers of pipeline.report.tlf against the computations they stand in for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.report import tlf

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_finite, st.floats(0, 500)), min_size=1, max_size=40),
       st.one_of(st.integers(0, 100), st.floats(0, 100), st.sampled_from([90, 50, 99.9, 0.1])))
def test_percentile_is_numpys(values, q):
    """tlf.percentile: numpy's default percentile, to the last bit, on drawn lists and percents."""
    assert _same(tlf.percentile(values, q), float(np.percentile(values, q)))


def test_percentile_by_hand():
    assert tlf.percentile([5.0], 90) == 5.0
    assert tlf.percentile([3.0, 1.0], 90) == pytest.approx(2.8, abs=1e-12)  # index 0.9: 3 - 2 * 0.1
    assert tlf.percentile([1.0, 2.0, 3.0, 4.0, 10.0], 90) == pytest.approx(7.6, abs=1e-12)  # 3.6: 10 - 6 * 0.4
    assert tlf.percentile([1.0, 2.0, 3.0, 4.0, 10.0], 10) == pytest.approx(1.4, abs=1e-12)  # 0.4: 1 + 1 * 0.4
    assert tlf.percentile([2.0, 4.0], 100) == 4.0 and tlf.percentile([2.0, 4.0], 0) == 2.0
    assert tlf.percentile([-0.0], 90) == 0.0 and math.copysign(1.0, tlf.percentile([-0.0], 90)) == -1.0
