"""The data-management limits of ``specs/rules/lab_plausibility.csv`` and ``vs_ranges.csv``, each at its edge.

These are sponsor limits (a result outside ``error_min``/``error_max`` is impossible and blocks
the build; outside ``warn_min``/``warn_max`` it is a query to the site), not clinical criteria,
so no guideline gives an independent value: ``LIMITS`` below is the data-management review of the
table, written out by hand. A change to a limit must be made in both places, on purpose: the
test then shows that the gate moved with it (the mutation check of ``bench/mutate_rules.py``
relies on this). For every limit, a result exactly on it is on the inside and one 1 % beyond
(0.01 beyond a zero limit) is outside; the expected finding of each result follows from the
literal limits: error outside the error limits, else warning outside the warning limits.
"""

from __future__ import annotations

import pandas as pd

from pipeline.config import Study
from pipeline.intake.checks import check_lab_plausibility, check_vital_sign_ranges
from pipeline.spec import load_spec

from conftest import SPECS

# lbtestcd: (unit, error_min, error_max, warn_min, warn_max); None = no limit on that side
LIMITS = {
    "WBC": ("10^9/L", 0, 1500, None, 300),
    "NEUT": ("10^9/L", 0, 1000, None, 100),
    "LYM": ("10^9/L", 0, 1000, None, 100),
    "CD4": ("10^9/L", 0, 50, None, 5),
    "HGB": ("g/L", 0, 300, 30, 220),
    "PLAT": ("10^9/L", 0, 5000, None, 1500),
    "RETI": ("10^9/L", 0, 2000, None, 500),
    "ALT": ("U/L", 0, 100000, None, 5000),
    "AST": ("U/L", 0, 100000, None, 5000),
    "ALP": ("U/L", 0, 50000, None, 3000),
    "GGT": ("U/L", 0, 50000, None, 3000),
    "BILI": ("umol/L", 0, 2000, None, 500),
    "CREAT": ("umol/L", 0, 5000, 5, 1500),
    "BUN": ("mmol/L", 0, 300, None, 80),
    "K": ("mmol/L", 0, 20, 1.5, 9),
    "SODIUM": ("mmol/L", 0, 250, 100, 180),
    "CA": ("mmol/L", 0, 10, 1, 4.5),
    "MG": ("mmol/L", 0, 10, 0.2, 4),
    "ALB": ("g/L", 0, 100, 10, 70),
    "GLUC": ("mmol/L", 0, 200, 1, 50),
    "CK": ("U/L", 0, 1000000, None, 50000),
    "LIPASE": ("U/L", 0, 100000, None, 10000),
    "AMYLASE": ("U/L", 0, 100000, None, 10000),
    "CRP": ("mg/L", 0, 2000, None, 500),
    "FERRITIN": ("ug/L", 0, 1000000, None, 100000),
    "IL6": ("ng/L", 0, 10000000, None, 100000),
    "FIBRINO": ("g/L", 0, 30, 0.3, 10),
    "INR": ("", 0, 50, 0.5, 10),
    "APTT": ("sec", 0, 1000, 10, 200),
    "CARTCOPY": ("copies/ug", 0, 1000000000, None, 10000000),
    "CARTCELL": ("cells/uL", 0, 1000000, None, 100000),
    "CREATCLR": ("mL/min", 0, 1000, None, 300),
    "CAION": ("mmol/L", 0, 10, 0.5, 2.5),
    "LDH": ("U/L", 0, 200000, None, 10000),
    "URATE": ("umol/L", 0, 6000, None, 1500),
    "CHOL": ("mmol/L", 0, 100, 1, 20),
    "TRIG": ("mmol/L", 0, 200, None, 50),
    "HAPTOG": ("g/L", 0, 20, None, 5),
    "PH": ("", 0, 14, 6.8, 7.8),
}
SPEC = load_spec(SPECS)
STUDY = Study(studyid="S", path=SPECS / "studies" / "S.toml", raw={})


def expected(code: str, v: float) -> str:
    """'error', 'warning' or '' for result ``v`` of ``code`` by the literal limits."""
    _, emin, emax, wmin, wmax = LIMITS[code]
    if v < emin or v > emax:
        return "error"
    if (wmin is not None and v < wmin) or (wmax is not None and v > wmax):
        return "warning"
    return ""


def edge_values(code: str) -> list[float]:
    """Each limit and a value 1 % (or 0.01) beyond it."""
    _, *limits = LIMITS[code]
    out = []
    for i, lim in enumerate(limits):  # four limits (metadata)
        if lim is None:
            continue
        step = 0.01 * abs(lim) if lim else 0.01
        out += [lim, lim - step if i % 2 == 0 else lim + step]   # min limits at even positions
    return out


def test_the_table_has_exactly_the_reviewed_tests():
    table = SPEC.rule("lab_plausibility")
    assert sorted(table["lbtestcd"]) == sorted(LIMITS)
    assert dict(zip(table["lbtestcd"], table["unit"])) == {c: v[0] for c, v in LIMITS.items()}


def test_every_limit_at_its_edge():
    rows = [(code, v) for code in LIMITS for v in edge_values(code)]   # ~200 results (fixture)
    lb = pd.DataFrame({"LBTESTCD": [c for c, _ in rows], "LBORRES": [f"{v:.10g}" for _, v in rows],
                       "LBORRESU": [LIMITS[c][0] or None for c, _ in rows], "_FILE": "lb.csv",
                       "_ROW": range(2, len(rows) + 2)})
    f = check_lab_plausibility({"lb": lb}, STUDY, SPEC)
    got = dict(zip(f["row"].astype(int), f["severity"]))
    want = {row: expected(c, v) for row, (c, v) in zip(lb["_ROW"], rows) if expected(c, v)}
    wrong = {(rows[r - 2], got.get(r, ""), want.get(r, "")) for r in set(got) | set(want) if got.get(r) != want.get(r)}
    assert not wrong, sorted(wrong)[:10]
    assert len(want) >= 2 * len(LIMITS)   # every test has findings on both sides


# vstestcd, unit: (hard min, hard max) of specs/rules/vs_ranges.csv (outside: an error)
VS_LIMITS = {("HEIGHT", "cm"): (40, 230), ("WEIGHT", "kg"): (2, 250)}


def test_vital_sign_hard_limits_at_their_edges():
    rows = [(t, u, v, bad) for (t, u), (lo, hi) in VS_LIMITS.items()
            for v, bad in ((lo, False), (lo * 0.99, True), (hi, False), (hi * 1.01, True))]
    vs = pd.DataFrame({"VSTESTCD": [r[0] for r in rows], "VSORRESU": [r[1] for r in rows],
                       "VSORRES": [f"{r[2]:.10g}" for r in rows], "_FILE": "vs.csv", "_ROW": range(2, len(rows) + 2)})
    f = check_vital_sign_ranges({"vs": vs}, STUDY, SPEC)
    assert set(zip(f["row"].astype(int), f["check"])) == {(i + 2, "vs.range") for i, r in enumerate(rows) if r[3]}
    table = SPEC.rule("vs_ranges")
    assert sorted(zip(table["vstestcd"], table["vsorresu"])) == sorted(VS_LIMITS)
