"""Deterministic, seeded simulator of the raw CRF extracts (the embedded ``raw/`` data).

- :func:`simulate_study` -> one DataFrame per raw form (all text, the raw contract's columns)
- :func:`write_study` -> ``raw/<STUDYID>/<form>.<ext>`` in the study's encoding and formats,
  byte-identical on every run
- :func:`run_simulate` -> ``python -m pipeline simulate`` (``make raw``)

One ``numpy.random.Generator(PCG64(seed))`` per study; draws happen in a fixed order and
every subject-level or record-level quantity is drawn as a whole array (no per-record loops
over laboratory data), so 2,000 subjects (about a million laboratory rows) take seconds.
"""

from __future__ import annotations

import pandas as pd

from pipeline.config import Study
from pipeline.spec import Spec


def simulate_study(study: Study, spec: Spec, n_subjects: int | None = None,
                   seed: int | None = None) -> dict[str, pd.DataFrame]:
    """One DataFrame per raw form of ``specs/raw/forms.csv`` (columns in contract order, all
    values text or None). Defaults (subjects, seed) come from the study's ``[simulation]``."""
    from pipeline.simulate.core import simulate_with_plants
    forms, _ = simulate_with_plants(study, spec, n_subjects, seed)
    return forms


def write_study(forms: dict[str, pd.DataFrame], study: Study, raw_dir):
    """Write ``raw_dir/<STUDYID>/<form>.<ext>``; see :func:`pipeline.simulate.writer.write_study`."""
    from pipeline.simulate.writer import write_study as _write
    return _write(forms, study, raw_dir)


def run_simulate(args) -> int:
    """``python -m pipeline simulate``: regenerate ``raw/`` for the selected studies."""
    from pipeline.simulate.run import run_simulate as _run
    return _run(args)


__all__ = ["simulate_study", "write_study", "run_simulate"]
