"""Mutation check of the clinical rule tables (issue 16): does a wrong threshold fail a test?

For each numeric threshold cell of ``specs/rules/*.csv`` (the columns in ``THRESHOLDS``), in turn:
write a scratch copy of ``specs/`` with that one cell changed (x1.1 and x0.9; integer day /
grade / count cells +1 and -1; a zero +0.1 and -0.1), run the rule tests of that table
(``TESTS``) with ``pytest -x -q`` against the scratch copy (``PIPELINE_TEST_SPECS``, read by
``tests/conftest.py``), and record whether some test failed (killed) or all passed (survived).
The survivors go to ``bench/mutation_results.md``.

Two controls run first: the tests must pass on the unmutated copy, and, for each table, fail
with the table's rows removed from the copy. The second catches test files that read the
repository's ``specs/`` instead of the scratch copy, whose mutants would all survive unseen.

Not part of ``make test`` (one pytest run per mutant): ``make mutate``, or

    .venv/bin/python bench/mutate_rules.py [--only ctcae_lab NEUT PLAT] [--limit N]
                                           [--runs bench/mutation_runs.jsonl]
    .venv/bin/python bench/mutate_rules.py --survivors  # again, only the survivors so far
    .venv/bin/python bench/mutate_rules.py --report     # bench/mutation_results.md from the runs

``--only`` keeps the tables named (``ctcae_lab`` or ``ctcae_lab.csv``) and, when test codes or
features are also named, only the rows whose ``lbtestcd`` / ``feature`` is one of them.

Speed (2 shared cores): a mutant first runs only the test functions of its table's files whose
source names the row's test code or feature as a quoted string (``"NEUT"``), and, when those all
pass, every test of the files (the confirm stage), so a survivor is a survivor of the whole
files. Each result is appended to ``--runs`` (JSON lines) as it comes; ``--report`` merges every
run (the newest result per mutant whose cell still holds the mutated value), adds the reason of
each survivor from ``bench/mutation_equivalent.csv`` and writes ``bench/mutation_results.md``.
Each mutant runs
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
    "engraftment": ["threshold", "consecutive_days", "max_gap_days"],
    "dose_escalation": ["n_min", "n_max", "dlt_min", "dlt_max"],
    "cm_drug_classes": ["prednisone_equivalent_per_mg"],
    "cm_frequency": ["per_day"],
    "vs_ranges": ["min", "max"],
    "lab_plausibility": ["error_min", "error_max", "warn_min", "warn_max"],
}
# columns whose values are whole numbers of days, grades or counts: +-1 instead of x1.1 / x0.9
INTEGER_COLUMNS = {"min_days", "max_days", "min_occasions", "sustain_days", "min_grade", "consecutive_days",
                   "max_gap_days", "n_min", "n_max", "dlt_min", "dlt_max", "per_day"}

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
    # the DLT tests only: the file's other tests build a whole study (minutes per mutant)
    "dlt_definition": [f"tests/test_adam_adsl_adae.py::{t}" for t in (
        "test_dlt_window_edges_28_and_21_days", "test_dlt_rules_grade_relatedness_soc_and_astct",
        "test_dlt_evaluable_population")],
    "engraftment": ["tests/test_pr_engraftment.py"],
    "dose_escalation": ["tests/test_dose_escalation_rules.py"],
    "cm_drug_classes": ["tests/test_response_rules.py", "tests/test_adam_adrs.py"],
    "cm_frequency": ["tests/test_response_rules.py", "tests/test_adam_adrs.py"],
    # the fast edge tests first: pytest -x stops at their failure before the slower gate battery
    "vs_ranges": ["tests/test_gate_limit_edges.py", "tests/test_intake_checks.py"],
    "lab_plausibility": ["tests/test_gate_limit_edges.py", "tests/test_intake_checks.py"],
}
# row columns whose value, quoted in a test's source, marks the tests of that row (and --only)
NAME_COLUMNS = ["lbtestcd", "feature", "paramcd", "cmdecod", "cmdosfrq", "vstestcd"]
# row columns that name what a row is about (for the report and --tests)
LABEL_COLUMNS = ["rule", "paramcd", "cmdecod", "cmdosfrq", "vstestcd", "lbtestcd", "criteria", "term", "category", "feature", "parameter", "grade", "baseline",
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
        # the names restrict a table only where they occur in it (--only ctcae_lab FIBRINO cns_status)
        here = {row[idx[c]] for row in rows for c in NAME_COLUMNS if c in idx} & (only or set())
        for n, row in enumerate(rows, 1):  # rule rows (metadata, a few hundred)
            label = " ".join(row[idx[c]] for c in LABEL_COLUMNS if c in idx and row[idx[c]])
            if here and not ({row[idx[c]] for c in NAME_COLUMNS if c in idx} & here):
                continue
            for col in THRESHOLDS[table]:
                if col not in idx:
                    continue
                v = _number(row[idx[col]])
                if v is None:
                    continue
                names = sorted({row[idx[c]] for c in NAME_COLUMNS if c in idx and row[idx[c]]})
                for how, new in mutants_of(v, col):
                    out.append({"table": table, "row": n, "column": col, "old": row[idx[col]], "new": new,
                                "how": how, "label": label, "names": names})
    return out[:limit] if limit else out


def tests_naming(files: list[str], names: set[str]) -> list[str]:
    """Node ids of the test functions of ``files`` whose source (decorators included) holds one of
    ``names`` as a quoted string: the tests that exercise a row of that test code / feature."""
    import ast
    out = []
    quoted = [q + n + q for n in names for q in ('"', "'")]
    for f in files:  # a few test files (metadata)
        text = (ROOT / f).read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.parse(text).body:  # top-level test functions
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                src = "\n".join(lines[first - 1:node.end_lineno])
                if any(q in src for q in quoted):
                    out.append(f"{f}::{node.name}")
    return out


def run_one(m: dict, scratch: Path) -> tuple[bool, str]:
    """(killed, stage): killed when some rule test failed; stage 'named' (the tests naming the
    row's code / feature failed) or 'all' (every test of the table's files was run)."""
    path = scratch / "rules" / f"{m['table']}.csv"
    original = path.read_text(encoding="utf-8")
    header, rows = read_rows(path)
    rows[m["row"] - 1][header.index(m["column"])] = m["new"]
    write_rows(path, header, rows)
    try:
        named = tests_naming(TESTS[m["table"]], set(m["names"])) if m["names"] else []
        if named and run_tests(named, scratch) != 0:
            return True, "named"
        return run_tests(TESTS[m["table"]], scratch, deselect=named) != 0, "all"
    finally:
        path.write_text(original, encoding="utf-8")


def sees_table(table: str, scratch: Path) -> bool:
    """The second control: with the table's rows removed in the scratch copy (header kept), some
    test of its files must fail. When all pass, those tests are blind to the scratch specs (they
    read the repository's ``specs/`` directly) and every mutant of the table would survive."""
    path = scratch / "rules" / f"{table}.csv"
    original = path.read_text(encoding="utf-8")
    header, _ = read_rows(path)
    write_rows(path, header, [])
    try:
        return run_tests(TESTS[table], scratch) != 0
    finally:
        path.write_text(original, encoding="utf-8")


def run_tests(files: list[str], scratch: Path, deselect: list[str] = ()) -> int:
    """pytest exit code of ``files`` (paths or node ids) against the scratch specs, in a forked
    child (quiet); 0 when nothing is left to run after ``deselect``."""
    pid = os.fork()
    if pid == 0:  # child
        import pytest
        os.environ["PIPELINE_TEST_SPECS"] = str(scratch)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = pytest.main(["-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                            *[str(ROOT / t) for t in files], *[a for d in deselect for a in ("--deselect", d)]])
        os._exit(0 if int(code) == 5 else int(code))  # 5: no test left to run
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _key(r: dict) -> tuple:
    return (r["table"], r["row"], r["column"], r["how"])


def load_runs(path: Path) -> list[dict]:
    """Results of every run in ``path`` (JSON lines), the newest per mutant, dropping those whose
    cell no longer holds the mutated value (the table changed since: stale, to be re-run)."""
    import json
    if not path.exists():
        return []
    newest: dict[tuple, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():  # one line per mutant run (a few thousand)
        if line.strip():
            r = json.loads(line)
            newest[_key(r)] = r
    current = {m_key: m for m in plan(list(THRESHOLDS), None, None) for m_key in [_key(m)]}
    return [r for k, r in sorted(newest.items()) if k in current and current[k]["old"] == r["old"]
            and current[k]["label"] == r["label"]]


def load_reasons(path: Path) -> dict[tuple, str]:
    """Why each knowingly left survivor is not a different rule: table,row,column,mutant,reason."""
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as fh:
        return {(r["table"], int(r["row"]), r["column"], r["mutant"]): r["reason"] for r in csv.DictReader(fh)}


def report(results: list[dict], reasons: dict[tuple, str]) -> str:
    """The markdown report of the merged runs: totals per table, every survivor with its reason."""
    planned = plan(list(THRESHOLDS), None, None)
    done = {_key(r) for r in results}
    killed = sum(r["killed"] for r in results)
    surv = [r for r in results if not r["killed"]]
    unexplained = [r for r in surv if _key(r) not in reasons]
    lines = ["# Mutation check of the rule tables (`bench/mutate_rules.py`)", "",
             "Generated by `bench/mutate_rules.py --report` from the runs in `bench/mutation_runs.jsonl`;",
             "the reasons of the survivors come from `bench/mutation_equivalent.csv`.", "",
             "A mutant is one threshold cell of `specs/rules/*.csv` changed in a scratch copy of `specs/`",
             "(x1.1 / x0.9; whole days, grades and counts +-1; a zero +-0.1). It is killed when a test of",
             "its table fails: first the tests naming the row's test code or feature, then, if those pass,",
             "every test of the table's test files. A survivor passed every test of those files.", "",
             f"**Mutants: {len(planned)} planned, {len(results)} run, {killed} killed, {len(surv)} survived "
             f"({len(surv) - len(unexplained)} with a reason below, {len(unexplained)} without); "
             f"{len(planned) - len(done)} not run.**", "",
             "| table | planned | run | killed | survived |", "|---|---|---|---|---|"]
    for table in THRESHOLDS:  # a dozen tables (metadata)
        p = sum(m["table"] == table for m in planned)
        rr = [r for r in results if r["table"] == table]
        if p:
            lines.append(f"| {table} | {p} | {len(rr)} | {sum(r['killed'] for r in rr)} | "
                         f"{sum(not r['killed'] for r in rr)} |")
    lines += ["", "## Survivors", ""]
    if not surv:
        lines.append("(none)")
    else:
        lines += ["| table | row | column | value | mutant | row is about | why it is not a different rule |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['table']} | {r['row']} | {r['column']} | {r['old']} | {r['how']} -> {r['new']} | "
                  f"{r['label']} | {reasons.get(_key(r), '**NO REASON: a test gap**')} |" for r in surv]
    missing = [m for m in planned if _key(m) not in done]
    lines += ["", "## Not run", ""]
    if not missing:
        lines.append("(none: every planned mutant has a current result)")
    else:
        by_table: dict[str, int] = {}
        for m in missing:  # the planned mutants (metadata)
            by_table[m["table"]] = by_table.get(m["table"], 0) + 1
        lines.append(", ".join(f"{t}: {n}" for t, n in by_table.items()))
    notes = ROOT / "bench" / "mutation_notes.md"
    if notes.exists():  # hand-written context: what the runs covered, how equivalence was judged
        lines += ["", notes.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import json
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None,
                    help="tables (ctcae_lab or ctcae_lab.csv) and/or test codes / features to mutate")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--runs", default=str(ROOT / "bench" / "mutation_runs.jsonl"))
    ap.add_argument("--report", action="store_true", help="only write --out from the runs so far")
    ap.add_argument("--survivors", action="store_true",
                    help="run again only the mutants that survived in --runs (after tests were added)")
    ap.add_argument("--resume", action="store_true", help="skip the mutants already killed in --runs")
    ap.add_argument("--skip-control", action="store_true",
                    help="do not first run the controls (the tests pass on the unmutated copy; they fail on each "
                         "table emptied); only when they were just seen to hold")
    ap.add_argument("--reasons", default=str(ROOT / "bench" / "mutation_equivalent.csv"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "mutation_results.md"))
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    if args.report:
        Path(args.out).write_text(report(load_runs(runs), load_reasons(Path(args.reasons))), encoding="utf-8")
        print(f"written {args.out}")
        return 0
    only = [o.removesuffix(".csv") for o in (args.only or [])]
    tables = [t for t in THRESHOLDS if t in only] or list(THRESHOLDS)
    names = {o for o in only if o not in THRESHOLDS}
    unknown = names - {n for m in plan(tables, None, None) for n in m["names"]}
    if unknown:
        print(f"--only: no table, test code or feature named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    # imported once in the parent, inherited by every forked child
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    mutants = plan(tables, names or None, args.limit)
    if args.resume:  # skip the mutants some run already killed (a kill stays a kill: tests are only added)
        done = {_key(r) for r in load_runs(runs) if r["killed"]}
        mutants = [m for m in mutants if _key(m) not in done]
    if args.survivors:  # the current survivors of the runs so far, of the tables / names asked
        surv = {_key(r) for r in load_runs(runs) if not r["killed"]}
        mutants = [m for m in mutants if _key(m) in surv]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutate_rules_") as tmp:
        scratch = Path(tmp) / "specs"
        shutil.copytree(SPECS, scratch)
        # control: the unmutated copy must pass every test file used, or no kill means anything
        files = sorted({f for table in {m["table"] for m in mutants} for f in TESTS[table]})  # a few files, once
        if files and not args.skip_control and run_tests(files, scratch) != 0:
            print(f"control failed: the unmutated specs fail some of {', '.join(files)}", file=sys.stderr)
            return 1
        if not args.skip_control:
            blind = [table for table in sorted({m["table"] for m in mutants}) if not sees_table(table, scratch)]
            if blind:
                print(f"control failed: with specs/rules/{blind[0]}.csv emptied in the scratch copy every test of "
                      f"{', '.join(TESTS[blind[0]])} still passes: they do not read the scratch specs "
                      f"(PIPELINE_TEST_SPECS, conftest.SPECS) or do not test the table; no kill would mean anything",
                      file=sys.stderr)
                return 1
        n_surv = 0
        for i, m in enumerate(mutants, 1):  # one pytest run per mutant (the point of the tool)
            m["killed"], m["stage"] = run_one(m, scratch)
            n_surv += not m["killed"]
            with runs.open("a", encoding="utf-8") as fh:  # each result as it comes: a stopped run still counts
                fh.write(json.dumps(m, sort_keys=True) + "\n")
            print(f"[{i}/{len(mutants)} {(time.monotonic() - start) / 60:.1f} min] "
                  f"{'killed  ' if m['killed'] else 'SURVIVED'} {m['table']} row {m['row']} "
                  f"{m['column']} {m['old']} {m['how']} ({m['label'][:60]})", flush=True)
    print(f"{n_surv} survivor(s) of {len(mutants)}; appended to {runs} (--report writes {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
