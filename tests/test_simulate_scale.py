"""The simulator at benchmark scale: vectorised generation, about 500 laboratory rows per
subject (bench/ asks for 2,000 subjects and about a million lab rows)."""

from __future__ import annotations

import time

import pytest

from pipeline.config import load_study
from pipeline.simulate import simulate_study

from test_simulate import SPECS, load_sim_spec


def test_lab_rows_scale_with_subjects():
    spec = load_sim_spec()
    study = load_study(SPECS, "NCT06316427")
    t = time.perf_counter()
    forms = simulate_study(study, spec, n_subjects=250)
    elapsed = time.perf_counter() - t
    assert len(forms["dm"]) == 250
    assert len(forms["lb"]) >= 400 * 250          # proportional to >= 800,000 rows at 2,000 subjects
    assert elapsed < 15


@pytest.mark.slow
def test_two_thousand_subjects_give_a_million_lab_rows():
    spec = load_sim_spec()
    study = load_study(SPECS, "CD7-RRAL-DE")
    t = time.perf_counter()
    forms = simulate_study(study, spec, n_subjects=2000)
    elapsed = time.perf_counter() - t
    assert len(forms["lb"]) >= 800_000
    assert elapsed < 60
