"""The bench's summary of the five-study cold builds (bench/run.py): median, spread, idle core-seconds,
the count within the target and the verdict, on values worked out by hand."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(wall, cpu, exit=0, start="0.50", end="0.60"):
    return {"exit": exit, "wall": wall, "cpu": cpu, "lines": [f"line of {wall}"], "load_start": start, "load_end": end}


def test_median_of_odd_and_even_counts(bench):
    assert bench.median([10.4, 9.6, 9.9]) == 9.9
    assert bench.median([10.4, 9.6, 9.9, 10.0]) == pytest.approx(9.95)
    assert bench.median([7.0]) == 7.0


def test_summary_of_five_runs(bench):
    runs = [run(10.40, 19.60, start="1.10"), run(9.70, 18.70), run(10.00, 19.10), run(9.90, 18.80),
            run(11.20, 20.90, end="1.40")]
    s = bench.five_summary(runs, 2)
    assert s["wall"] == 10.00                              # sorted: 9.70 9.90 10.00 10.40 11.20
    assert s["cpu"] == 19.10                               # sorted: 18.70 18.80 19.10 19.60 20.90
    assert (s["wall_min"], s["wall_max"]) == (9.70, 11.20)
    assert s["met"] == 3                                   # 9.70, 9.90 and 10.00 (<= 10 s holds at 10.00)
    # idle core-seconds = 2 cores x wall - CPU: 1.20, 0.70, 0.90, 1.00, 1.50
    assert [round(r["idle"], 2) for r in s["runs"]] == [1.20, 0.70, 0.90, 1.00, 1.50]
    assert s["idle"] == pytest.approx(1.00)
    assert (s["exit"], s["lines"], s["load_start"], s["load_end"]) == (0, ["line of 10.4"], "1.10", "1.40")


def test_row_judges_the_median_and_a_failed_run(bench):
    good = bench.five_summary([run(10.2, 19.0), run(9.8, 18.6), run(9.9, 18.9)], 2)
    row = bench.five_row(good)
    assert row.startswith("| `make sdtm`, five studies, <= 10 s wall (median of 3 cold builds) | 9.90 s wall")
    assert "(9.80-10.20 s, 2 of 3 within 10 s;" in row and row.endswith("| **holds** |")
    slow = bench.five_summary([run(10.2, 19.0), run(10.1, 18.6), run(9.9, 18.9)], 2)
    assert bench.five_row(slow).endswith("| **does not hold** |")          # median 10.1 s
    failed = bench.five_summary([run(9.2, 17.0), run(9.1, 17.0, exit=1), run(9.3, 17.0)], 2)
    assert failed["exit"] == 1 and bench.five_row(failed).endswith("| **does not hold** |")


def test_section_lists_every_run(bench):
    five = {**bench.five_summary([run(10.2, 19.0), run(9.8, 18.6)], 2),
            "warm": run(0.8, 0.7), "one_changed": {**run(4.7, 5.1), "edit": "ZJU-CD7-SAA/vs.csv: a -> b"}}
    text = "\n".join(bench.five_section(five))
    assert "median 10.00 s wall (9.80-10.20 s; 1 of 2 within 10 s)" in text
    assert "median 1.20 idle core-seconds" in text      # (2 x 10.20 - 19.00 + 2 x 9.80 - 18.60) / 2
    assert "| 1 | 0 | 10.20 | 19.00 | 1.40 | 0.50 |" in text
    assert "| 2 | 0 | 9.80 | 18.60 | 1.00 | 0.50 |" in text
    # the targets row is found again by a later --skip-five or --only-five run
    row, section = bench.previous_five_parts(bench.five_row(five) + "\n\n" + text + "\n" + bench.NOTES_MARKER)
    assert row == bench.five_row(five) and section.startswith("## The five shipped studies")
