"""3+3 dose-escalation decisions of ``specs/rules/dose_escalation.csv`` (Storer 1989), as the
DLT-by-dose-level summary (``pipeline.adam.reports.dlt_by_dose_level``) applies them.

Each dose level below is a hand-built set of DLT-evaluable subjects (n) of whom d had a DLT; the
expected decision is the 3+3 rule read by hand:
- fewer than 3 evaluable and at most 1 DLT: still enrolling;
- 2 or more DLTs whatever n: the dose exceeds the MTD;
- 0/3: escalate; 1/3, 1/4, 1/5: expand the level to 6; 0/4 and 0/5: escalate;
- at most 1/6 (or of more than 6): the level is cleared.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from pipeline.adam.reports import dlt_by_dose_level
from pipeline.spec import load_spec

from conftest import SPECS

# (evaluable n, subjects with a DLT d, the 3+3 decision by hand, the rule row that says it)
CASES = [
    (0, 0, "ENROLLING", "1"), (1, 0, "ENROLLING", "1"), (1, 1, "ENROLLING", "1"), (2, 1, "ENROLLING", "1"),
    (2, 2, "STOP", "2"), (3, 2, "STOP", "2"), (6, 2, "STOP", "2"), (3, 3, "STOP", "2"),
    (3, 0, "ESCALATE", "3"), (3, 1, "EXPAND", "4"), (4, 1, "EXPAND", "4"), (5, 1, "EXPAND", "4"),
    (4, 0, "ESCALATE", "6"), (5, 0, "ESCALATE", "6"),
    (6, 0, "ESCALATE (LEVEL CLEARED)", "5"), (6, 1, "ESCALATE (LEVEL CLEARED)", "5"),
    (7, 1, "ESCALATE (LEVEL CLEARED)", "5"), (9, 0, "ESCALATE (LEVEL CLEARED)", "5"),
]


def _adsl() -> pd.DataFrame:
    """One dose level per case (TRT01AN = case index), each with its n evaluable subjects (d of
    them with a DLT) and one safety subject who is not DLT-evaluable (not counted)."""
    rows = []
    for k, (n, d, _, _) in enumerate(CASES, 1):  # a few hand-built levels
        for i in range(n + 1):
            rows.append({"USUBJID": f"L{k}-{i}", "TRT01AN": float(k), "TRT01A": f"LEVEL {k}", "SAFFL": "Y",
                         "DLTEVLFL": "Y" if i < n else "N", "DLTFL": "Y" if i < d else "N"})
    return pd.DataFrame(rows)


def test_each_3_plus_3_decision_at_its_counts():
    study = SimpleNamespace(studyid="TEST", dlt_window_days=28)
    out = dlt_by_dose_level(_adsl(), load_spec(SPECS), study)
    assert out["n_dlt_evaluable"].astype(int).tolist() == [n for n, _, _, _ in CASES]
    assert out["n_with_dlt"].astype(int).tolist() == [d for _, d, _, _ in CASES]
    got = list(zip(out["decision"], out["rule"].astype(str)))
    for (n, d, want, rule), (decision, r) in zip(CASES, got):
        assert decision.startswith(want) and r == rule, f"{d}/{n}: got {decision!r} (rule {r}), want {want} (rule {rule})"
