"""Mutation check of the clinical rule tables (issue 16): does a wrong threshold fail a test?

For each numeric threshold cell of ``specs/rules/*.csv`` (the columns in ``THRESHOLDS``), in turn:
write a scratch copy of ``specs/`` with that one cell changed (x1.1 and x0.9; integer day /
grade / count cells +1 and -1; a zero +0.1 and -0.1), run the rule tests of that table
(``TESTS``) with ``pytest -x -q`` against the scratch copy (``PIPELINE_TEST_SPECS``, read by
``tests/conftest.py``), and record whether some test failed (killed) or all passed (survived).
The survivors go to ``bench/mutation_results.md``.

Not part of ``make test`` (one pytest run per mutant): ``make mutate``, or

    .venv/bin/python bench/mutate_rules.py [--tables ctcae_lab lab_units] [--tests ALT AST]
                                           [--limit N] [--out bench/mutation_results.md]

``--tests`` keeps only rows whose test code (``lbtestcd``) or feature is listed. Each mutant runs
in a forked child of a parent that has already imported pandas, numpy, hypothesis and pytest,
so a mutant costs the tests, not the imports. The pipeline itself is imported in the child, so
no cached rule table crosses mutants.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

# table -> the columns that hold clinical thresholds (not ranks, grades, groups or priorities)
THRESHOLDS: dict[str, list[str]] = {
    "ctcae_lab": ["lower", "upper", "lower_offset", "upper_offset"],
    "lab_units": ["to_si_factor"],
    "response_leukemia": ["value"],
    "response_aplastic_anemia": ["value"],
    "response_autoimmune": ["value"],
    "mrd_negativity": ["threshold", "max_lloq"],
    "cns_status": ["value"],
    "cns_response": ["value"],
    "emd_response": ["value"],
    "response_combined": ["value"],
    "astct_crs": ["value"],
    "astct_icans": ["value"],
    "icaht": ["threshold", "min_days", "max_days", "min_occasions"],
    "icaht_counting": ["value"],
    "cytopenia_recovery": ["threshold", "sustain_days"],
    "crcl_cockcroft_gault": ["value"],
    "dlt_definition": ["min_grade"],
}
# columns whose values are whole numbers of days, grades or counts: +-1 instead of x1.1 / x0.9
INTEGER_COLUMNS = {"min_days", "max_days", "min_occasions", "sustain_days", "min_grade"}

# table -> the test files that exercise it
TESTS: dict[str, list[str]] = {
    "ctcae_lab": ["tests/test_ctcae_lab_new_terms.py", "tests/test_ctcae_lab_grading.py"],
    "lab_units": ["tests/test_units_conversion.py", "tests/test_ctcae_lab_new_terms.py", "tests/test_ctcae_lab_grading.py"],
    "response_leukemia": ["tests/test_response_rules.py"],
    "response_aplastic_anemia": ["tests/test_response_rules.py"],
    "response_autoimmune": ["tests/test_response_rules.py"],
    "mrd_negativity": ["tests/test_leukemia_depth.py", "tests/test_adam_adrs.py"],
    "cns_status": ["tests/test_leukemia_depth.py"],
    "cns_response": ["tests/test_leukemia_depth.py"],
    "emd_response": ["tests/test_leukemia_depth.py"],
    "response_combined": ["tests/test_leukemia_depth.py"],
    "astct_crs": ["tests/test_astct_grading.py"],
    "astct_icans": ["tests/test_astct_grading.py"],
    "icaht": ["tests/test_adam_adtte_adlb.py"],
    "icaht_counting": ["tests/test_adam_adtte_adlb.py"],
    "cytopenia_recovery": ["tests/test_adam_adtte_adlb.py"],
    "crcl_cockcroft_gault": ["tests/test_lb_domain.py", "tests/test_eligibility_labs.py"],
    "dlt_definition": ["tests/test_adam_adsl_adae.py"],
}
# row columns that name what a row is about (for the report and --tests)
LABEL_COLUMNS = ["lbtestcd", "criteria", "term", "category", "feature", "parameter", "grade", "baseline",
                 "direction", "raw_unit", "operator", "group"]


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v


def _fmt(v: float) -> str:
    out = f"{v:.6g}"
    return out


def mutants_of(value: float, column: str) -> list[tuple[str, str]]:
    """(how, new text) of one cell."""
    if column in INTEGER_COLUMNS:
        return [("+1", _fmt(value + 1)), ("-1", _fmt(value - 1))]
    if value == 0:
        return [("+0.1", "0.1"), ("-0.1", "-0.1")]
    return [("x1.1", _fmt(value * 1.1)), ("x0.9", _fmt(value * 0.9))]


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def plan(tables: list[str], only: set[str] | None, limit: int | None) -> list[dict]:
    """Every mutant: table, row number (1 = first data row), column, old, new, how, label."""
    out = []
    for table in tables:  # a dozen tables (metadata)
        header, rows = read_rows(SPECS / "rules" / f"{table}.csv")
        idx = {c: i for i, c in enumerate(header)}
        for n, row in enumerate(rows, 1):  # rule rows (metadata, a few hundred)
            label = " ".join(row[idx[c]] for c in LABEL_COLUMNS if c in idx and row[idx[c]])
            if only and not ({row[idx[c]] for c in ("lbtestcd", "feature") if c in idx} & only):
                continue
            for col in THRESHOLDS[table]:
                if col not in idx:
                    continue
                v = _number(row[idx[col]])
                if v is None:
                    continue
                for how, new in mutants_of(v, col):
                    out.append({"table": table, "row": n, "column": col, "old": row[idx[col]], "new": new,
                                "how": how, "label": label})
    return out[:limit] if limit else out


def run_one(m: dict, scratch: Path) -> bool:
    """True when some rule test failed (the mutant is killed)."""
    path = scratch / "rules" / f"{m['table']}.csv"
    original = path.read_text(encoding="utf-8")
    header, rows = read_rows(path)
    rows[m["row"] - 1][header.index(m["column"])] = m["new"]
    write_rows(path, header, rows)
    try:
        return run_tests(TESTS[m["table"]], scratch) != 0
    finally:
        path.write_text(original, encoding="utf-8")


def run_tests(files: list[str], scratch: Path) -> int:
    """pytest exit code of ``files`` against the scratch specs, in a forked child (quiet)."""
    pid = os.fork()
    if pid == 0:  # child
        import pytest
        os.environ["PIPELINE_TEST_SPECS"] = str(scratch)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = pytest.main(["-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *[str(ROOT / t) for t in files]])
        os._exit(int(code))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def report(results: list[dict], tables: list[str], args, seconds: float) -> str:
    killed = sum(r["killed"] for r in results)
    lines = ["# Mutation check of the rule tables (bench/mutate_rules.py)", "",
             f"Command: `bench/mutate_rules.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             f"Tables: {', '.join(tables)}" + (f"; rows of {', '.join(sorted(args.tests))} only" if args.tests else ""),
             "", f"Mutants: {len(results)}, killed {killed}, survived {len(results) - killed} "
             f"({seconds / 60:.1f} min).", "",
             "A mutant is one threshold cell changed (x1.1 / x0.9, integers +-1, zero +-0.1) in a scratch",
             "copy of specs/; killed = some test of that table failed. Survivors:", ""]
    surv = [r for r in results if not r["killed"]]
    if not surv:
        lines.append("(none)")
    else:
        lines += ["| table | row | column | value | mutant | row is about |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['table']} | {r['row']} | {r['column']} | {r['old']} | {r['how']} -> {r['new']} | {r['label']} |"
                  for r in surv]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", nargs="*", default=list(THRESHOLDS), choices=list(THRESHOLDS))
    ap.add_argument("--tests", nargs="*", default=None, help="only rows of these test codes / features")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "mutation_results.md"))
    args = ap.parse_args(argv)
    # imported once in the parent, inherited by every forked child
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    mutants = plan(args.tables, set(args.tests) if args.tests else None, args.limit)
    start = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="mutate_rules_") as tmp:
        scratch = Path(tmp) / "specs"
        shutil.copytree(SPECS, scratch)
        # control: the unmutated copy must pass every test file used, or no kill means anything
        for table in sorted(set(args.tables) & {m["table"] for m in mutants}):  # a dozen tables
            if run_tests(TESTS[table], scratch) != 0:
                print(f"control failed: the unmutated specs fail {', '.join(TESTS[table])}", file=sys.stderr)
                return 1
        for i, m in enumerate(mutants, 1):  # one pytest run per mutant (the point of the tool)
            m["killed"] = run_one(m, scratch)
            results.append(m)
            if i % 10 == 0 or i == len(mutants):  # the report so far, so that a stopped run still reports
                Path(args.out).write_text(report(results, args.tables, args, time.monotonic() - start) +
                                          ("" if i == len(mutants) else f"\n(partial: {i} of {len(mutants)} run)\n"),
                                          encoding="utf-8")
            print(f"[{i}/{len(mutants)}] {'killed  ' if m['killed'] else 'SURVIVED'} {m['table']} row {m['row']} "
                  f"{m['column']} {m['old']} {m['how']} ({m['label'][:60]})", flush=True)
    print(f"{sum(not r['killed'] for r in results)} survivor(s) of {len(results)}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
