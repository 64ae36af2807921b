"""Benchmark (``make bench``): a large simulated study through every stage of the build.

Simulates one study with :func:`pipeline.simulate.simulate_study` (default 2,000 subjects,
about a million laboratory rows), writes it to a temporary raw folder and measures each stage:
read, gate, every domain module, output checks, reconciliation, XPT export, Dataset-JSON export.
Then it measures the I/O floor (reading the raw CSVs with pandas alone; writing XPT files of the
same rows and columns with pyreadstat alone) and the object-vs-``str`` dtype XPT write.

Memory is reported two ways, because neither alone is the truth:

- ``ru_maxrss``: the process's resident-set high-water mark after the stage (monotonic: it only
  shows when a stage raised the peak; includes the interpreter and every earlier stage's data);
- ``tracemalloc`` peak: the peak of Python-tracked allocations during the stage (numpy/pandas
  buffers are tracked; some C-library allocations are not). tracemalloc slows code down, so it is
  measured in a second pass over the same stages and the times come from the first pass.

Writes ``bench/results.md`` (machine, versions, table). Not part of ``make test``.

Usage: ``python bench/run.py [--subjects N] [--study ID] [--out bench/results.md] [--no-tracemalloc]``
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import pyreadstat  # noqa: E402

from pipeline.build import DOMAIN_PACKAGE, add_dataset, module_available  # noqa: E402
from pipeline.config import load_study  # noqa: E402
from pipeline.context import CONSUMED_COLUMNS, REJECTED_COLUMNS, StudyContext, empty  # noqa: E402
from pipeline.domains import REGISTRY  # noqa: E402
from pipeline.export import checks, datasetjson, reconcile, xpt  # noqa: E402
from pipeline.spec import load_spec  # noqa: E402


def rss_mib() -> float:
    """ru_maxrss in MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


class Bench:
    def __init__(self, trace: bool):
        self.trace = trace
        self.rows: list[dict] = []

    def measure(self, stage: str, fn: Callable, note: str = ""):
        gc.collect()
        if self.trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        result = fn()
        secs = time.perf_counter() - t0
        peak = None
        if self.trace:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        self.rows.append({"stage": stage, "seconds": secs, "rss": rss_mib(),
                          "peak": peak / (1024 * 1024) if peak is not None else None, "note": note})
        print(f"  {stage:<34} {secs:8.2f}s  rss {rss_mib():8.0f} MiB", file=sys.stderr, flush=True)
        return result


def run_stages(b: Bench, raw: Path, study, spec, out: Path) -> dict:
    """The build's stages, one measurement each; returns facts for the report."""
    from pipeline.intake.gate import validate_forms
    from pipeline.intake.readers import read_study

    facts: dict = {}
    forms, read_findings = b.measure("read (pipeline.intake readers)", lambda: read_study(raw, study, spec))
    facts["raw_rows"] = {f: len(df) for f, df in forms.items()}
    gate_findings = b.measure("gate (schemas + cross checks)", lambda: validate_forms(forms, study, spec))
    facts["gate_errors"] = int((gate_findings["severity"] == "error").sum()) if len(gate_findings) else 0
    ctx = StudyContext(study=study, spec=spec, forms=forms)
    consumed, rejected, dom_findings = [], [], []
    for name in REGISTRY:
        modname = f"{DOMAIN_PACKAGE}.{name}"
        if not module_available(modname):
            b.rows.append({"stage": f"derive {name}", "seconds": None, "rss": None, "peak": None,
                           "note": "module not in the tree"})
            continue
        module = importlib.import_module(modname)
        try:
            res = b.measure(f"derive {name}", lambda m=module: m.build(ctx))
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            b.rows[-1:] = []
            b.rows.append({"stage": f"derive {name}", "seconds": None, "rss": rss_mib(), "peak": None,
                           "note": f"failed: {type(exc).__name__}: {str(exc)[:80]}"})
            if tracemalloc.is_tracing():
                tracemalloc.stop()
            continue
        for ds, frame in res.datasets.items():
            add_dataset(ctx.datasets, ds, frame)
        ctx.reports.update(res.reports)
        consumed.append(res.consumed)
        rejected.append(res.rejected)
        dom_findings.append(res.findings)
        b.rows[-1]["note"] = ", ".join(f"{k} {len(v):,}" for k, v in res.datasets.items())
    known = set(spec.datasets["dataset"])
    datasets = {n: f for n, f in ctx.datasets.items() if n in known and _has_vars(spec, n)}
    ordered = b.measure("output checks: sort by keys", lambda: {n: checks.order_dataset(f, spec, n)
                                                                 for n, f in datasets.items()})
    found = b.measure("output checks: pandera schemas", lambda: checks.check_datasets(ordered, spec, study.studyid))
    facts["check_errors"] = int((found["severity"] == "error").sum()) if len(found) else 0
    cons = pd.concat(consumed, ignore_index=True) if consumed else empty(CONSUMED_COLUMNS)
    rej = pd.concat(rejected, ignore_index=True) if rejected else empty(REJECTED_COLUMNS)
    b.measure("reconciliation", lambda: reconcile.reconcile(forms, cons, rej, datasets, study.studyid))
    stamp = xpt.build_timestamp(study.data_cutoff)
    out.mkdir(parents=True, exist_ok=True)

    def write_all_xpt():
        written = {}
        for n, f in ordered.items():
            try:
                written[n] = xpt.write_xpt(f, spec, n, out / xpt.xpt_name(n), stamp)
            except Exception as exc:  # noqa: BLE001
                print(f"  XPT {n} not written: {exc}", file=sys.stderr)
        return written

    exported = b.measure("export XPT v5 (pipeline.export.xpt)", write_all_xpt)

    def write_all_json():
        for n, f in exported.items():
            datasetjson.write_dataset_json(f, spec, n, out / datasetjson.json_name(n), study.studyid, "bench", stamp)

    b.measure("export Dataset-JSON v1.1", write_all_json)
    facts["datasets"] = {n: f.shape for n, f in exported.items()}
    facts["exported"] = exported
    facts["xpt_bytes"] = sum((out / xpt.xpt_name(n)).stat().st_size for n in exported)
    facts["json_bytes"] = sum((out / datasetjson.json_name(n)).stat().st_size for n in exported)
    return facts


def _has_vars(spec, name) -> bool:
    return bool((spec.variables["dataset"] == name).any())


def io_floor(b: Bench, raw: Path, study, exported: dict[str, pd.DataFrame], out: Path) -> None:
    """Reading the raw CSVs with pandas alone; writing the same frames with pyreadstat alone."""
    folder = raw / study.studyid
    files = sorted(p for p in folder.iterdir() if p.suffix == ".csv")
    b.measure("floor: pandas.read_csv raw CSVs", lambda: [pd.read_csv(p, dtype=str, encoding=study.encoding)
                                                           for p in files], note=f"{len(files)} files")
    floor = out / "floor"
    floor.mkdir(exist_ok=True)
    b.measure("floor: pyreadstat.write_xport only",
              lambda: [pyreadstat.write_xport(f, str(floor / f"{n.lower()}.xpt"), file_format_version=5)
                       for n, f in exported.items()], note="same frames, no labels/checks/stamps")
    if not exported:
        return
    name = max(exported, key=lambda n: len(exported[n]))
    frame = exported[name]
    as_str = frame.copy()
    for c in as_str.columns:
        if as_str[c].dtype == object:
            as_str[c] = as_str[c].astype("str")
    b.measure(f"dtype: write {name} object columns", lambda: pyreadstat.write_xport(
        frame, str(floor / "obj.xpt"), file_format_version=5), note=f"{len(frame):,} x {len(frame.columns)}")
    b.measure(f"dtype: write {name} str columns", lambda: pyreadstat.write_xport(
        as_str, str(floor / "str.xpt"), file_format_version=5), note=f"{len(frame):,} x {len(frame.columns)}")


def machine() -> list[str]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    import numpy
    import pandera

    import pipeline
    return [f"- machine: {platform.system()} {platform.release()} {platform.machine()}, CPU {cpu or 'unknown'}, "
            f"{os.cpu_count()} logical CPUs, RAM {mem or 'unknown'}",
            f"- python {platform.python_version()}, pandas {pd.__version__}, numpy {numpy.__version__}, "
            f"pandera {pandera.__version__}, pyreadstat {pyreadstat.__version__}, pipeline {pipeline.__version__}"]


def fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def report(args, study, n_subjects, facts, sim_secs, first: Bench, second: Bench | None) -> str:
    peaks = {r["stage"]: r["peak"] for r in second.rows} if second else {}
    lines = ["# Benchmark: one large simulated study through the build", "",
             f"Generated by `python bench/run.py --subjects {n_subjects} --study {study.studyid}` (`make bench`).", "",
             *machine(), "",
             f"- study {study.studyid}, {n_subjects:,} subjects simulated in {sim_secs:.1f}s; raw rows: "
             + ", ".join(f"{f} {n:,}" for f, n in sorted(facts['raw_rows'].items())),
             f"- gate errors {facts['gate_errors']:,}; output-check errors {facts['check_errors']:,} "
             "(the benchmark measures every stage even when the data would block the build)",
             "- datasets exported: " + ", ".join(f"{n} {r:,}x{c}" for n, (r, c) in sorted(facts["datasets"].items())),
             f"- XPT total {facts['xpt_bytes'] / 1e6:.1f} MB, Dataset-JSON total {facts['json_bytes'] / 1e6:.1f} MB",
             f"- load average (1/5/15 min) at the start {facts.get('load_start', 'unknown')}, at the end {load_average()} "
             "(other processes on the machine inflate wall-clock times)",
             "",
             "| stage | seconds | ru_maxrss after (MiB) | tracemalloc peak (MiB) | note |",
             "|---|---:|---:|---:|---|"]
    for r in first.rows:
        lines.append(f"| {r['stage']} | {fmt(r['seconds'], '.2f')} | {fmt(r['rss'], '.0f')} | "
                     f"{fmt(peaks.get(r['stage']), '.0f')} | {r['note']} |")
    total = sum(r["seconds"] or 0 for r in first.rows if not r["stage"].startswith(("floor", "dtype")))
    lines += ["", f"Pipeline stages total: {total:.1f}s (read to Dataset-JSON, first pass, no tracemalloc).", "",
              "Reading the table:", "",
              "- seconds come from the first pass (tracemalloc off); tracemalloc peaks from a second pass "
              "over the same stages" + ("" if second else " (skipped: --no-tracemalloc)") + ".",
              "- ru_maxrss is the process high-water mark after each stage: it never decreases, so a stage "
              "shows its own cost only when it raised the peak.",
              "- the floor rows show what pandas and pyreadstat alone cost for the same input and output: "
              "the difference to the read and XPT rows is the pipeline's own work (text normalisation, "
              "labels, header stamps, checks).",
              "- the dtype rows write the largest dataset once with object character columns and once with "
              "pandas 3 `str` columns; the writer converts to object before writing."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=2000)
    p.add_argument("--study", default="NCT06316427")
    p.add_argument("--specs", type=Path, default=ROOT / "specs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    p.add_argument("--no-tracemalloc", action="store_true")
    args = p.parse_args(argv)
    spec = load_spec(args.specs)
    study = load_study(args.specs, args.study)
    try:
        from pipeline.simulate import simulate_study, write_study
    except ImportError as exc:
        print(f"error: the simulator is not available ({exc})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cart-bench-") as tmp:
        tmp = Path(tmp)
        print(f"simulating {args.subjects} subjects of {args.study} ...", file=sys.stderr)
        t0 = time.perf_counter()
        forms = simulate_study(study, spec, n_subjects=args.subjects)
        sim_secs = time.perf_counter() - t0
        write_study(forms, study, tmp / "raw")
        del forms
        gc.collect()
        print("pass 1 (times, ru_maxrss):", file=sys.stderr)
        first = Bench(trace=False)
        load_start = load_average()
        facts = run_stages(first, tmp / "raw", study, spec, tmp / "out1")
        facts["load_start"] = load_start
        io_floor(first, tmp / "raw", study, facts["exported"], tmp / "out1")
        second = None
        if not args.no_tracemalloc:
            facts_exported = facts.pop("exported")
            del facts_exported
            gc.collect()
            print("pass 2 (tracemalloc peaks):", file=sys.stderr)
            second = Bench(trace=True)
            f2 = run_stages(second, tmp / "raw", study, spec, tmp / "out2")
            io_floor(second, tmp / "raw", study, f2["exported"], tmp / "out2")
        args.out.write_text(report(args, study, args.subjects, facts, sim_secs, first, second), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
