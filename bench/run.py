"""Benchmark (``make bench``): the real build on a large simulated study, its I/O floor, ratios.

What it measures, each in a fresh process (so that peak memory is per run):

- **one study at two sizes** (default 200 and 2,000 subjects of NCT06316427, simulated by
  :func:`pipeline.simulate.simulate_study`): the real :func:`pipeline.build.build_study` with a
  recording progress, so every stage the build has is timed as the build runs it (read, gate,
  each domain module, output checks, reconciliation, XPT, Dataset-JSON, each post-export hook:
  define.xml, listings with figures timed apart, ADaM when present, manifest);
- **the I/O floor** in the same process: read the raw files with ``pandas.read_csv``, write the
  same datasets with ``pyreadstat.write_xport`` and dump the same rows with the standard
  ``json`` module. The pipeline has to do at least that much;
- **ratios**: pipeline read -> Dataset-JSON over the floor, the whole build over the floor, and
  the time per raw row at the large size over the small size (scaling); peak RSS
  (``ru_maxrss``) over the raw frames' in-memory size (``DataFrame.memory_usage(deep=True)``);
- **the five shipped studies**: ``python -m pipeline build --no-cache`` into a fresh temporary
  folder, :data:`FIVE_RUNS` times one after another (``--five-runs``), wall and CPU time
  (children included) of each, the verdict on their median: the VM's speed moves by 5-10 %
  within minutes, more than one run can tell apart; then two reruns into the last folder with
  the build cache: nothing changed, and one study's raw file changed;
- **our output checks vs CDISC CORE** on the smallest shipped study when the CORE engine is
  installed (``.venv-core``, ``make conformance``); skipped with a note otherwise.

Times are CPU seconds (``time.process_time``: this process) unless labelled wall: the machine is
shared, and CPU time is what a change saves. Load averages are printed with the numbers.
Writes ``bench/results.md`` (the tables; the prose of what each change bought is kept below the
marker line ``<!-- notes -->`` of the existing file). Not part of ``make test``.

Usage: ``python bench/run.py [--sizes 200,2000] [--study ID] [--out bench/results.md] [--skip-five] [--five-runs N] [--skip-core]``;
``--only-five`` times only the five shipped studies and updates their part of an existing results file.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOTES_MARKER = "<!-- notes -->"
#: targets of issue 14
TARGET_FIVE_WALL = 10.0
TARGET_READ_TO_JSON = 1.5
TARGET_WHOLE = 2.5
TARGET_SCALING = 1.3
TARGET_RSS = 3.0
TARGET_CORE = 10.0
#: cold builds of the five shipped studies per bench run (their median is judged)
FIVE_RUNS = 5


def rss_mib() -> float:
    """ru_maxrss in MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def rss_now_mib() -> tuple[float, float]:
    """(current RSS, high-water mark so far) in MiB from /proc/self/status (Linux); (nan, nan)
    elsewhere. Sampled at every step of the build, so the report says which stage set the peak."""
    now = hwm = float("nan")
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return now, hwm


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


class Timers:
    """CPU and wall seconds accumulated by wrapped functions (sub-stages of a build step)."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.active = 0

    def wrap(self, module, attr: str, label: str, keep=None):
        real = getattr(module, attr)

        def timed(*a, **k):
            outer = self.active == 0  # a nested call is counted once, by the outermost
            self.active += 1
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                result = real(*a, **k)
            finally:
                self.active -= 1
            if outer:
                self.cpu[label] = self.cpu.get(label, 0.0) + time.process_time() - c0
                self.wall[label] = self.wall.get(label, 0.0) + time.perf_counter() - w0
            if keep is not None:
                keep(a, result)
            return result

        setattr(module, attr, timed)


def measure_size(study_id: str, n_subjects: int) -> dict:
    """One size in this process: simulate, build for real, then the floor. Returns facts."""
    import pandas as pd
    import pyreadstat

    import pipeline.build as build
    from pipeline.config import load_study
    from pipeline.export import checks, datasetjson, xpt
    from pipeline.intake import gate as gate_mod
    from pipeline.progress import Progress
    from pipeline.simulate import simulate_study, write_study
    from pipeline.spec import load_spec

    spec = load_spec(ROOT / "specs")
    study = load_study(ROOT / "specs", study_id)
    facts: dict = {"subjects": n_subjects, "load_start": load_average()}
    with tempfile.TemporaryDirectory(prefix="cart-bench-") as tmp:
        tmp = Path(tmp)
        forms = simulate_study(study, spec, n_subjects=n_subjects)
        write_study(forms, study, tmp / "raw")
        del forms
        gc.collect()
        rss_before = rss_mib()

        timers = Timers()
        exported: dict = {}
        timers.wrap(gate_mod, "read_study", "read")
        sdtm_names = set(spec.datasets["dataset"])  # the floor writes the SDTM datasets (ADaM has its own hook)
        timers.wrap(xpt, "write_xpt", "export XPT v5",
                    keep=lambda a, out: exported.__setitem__(a[2], out) if a[2] in sdtm_names else None)
        timers.wrap(datasetjson, "write_dataset_json", "export Dataset-JSON v1.1")
        try:
            from pipeline.report import listings
            timers.wrap(listings, "build_figures", "figures (in listings)")
        except (ImportError, AttributeError):
            pass

        steps: list[tuple[str, float, float]] = []
        memory: list[tuple[str, float, float]] = [("simulated, before the build", *rss_now_mib())]

        class Recording(Progress):
            """A progress that records the CPU seconds of every step of the real build."""

            def __init__(self):
                super().__init__(study.studyid, 0, enabled=False)
                self._cpu = time.process_time()
                self._timers: dict[str, float] = {}

            def step(self, name, status="ok"):
                super().step(name, status)
                now = time.process_time()
                # the wrapped sub-stages' seconds within this step only (the ADaM hook, for
                # one, writes XPT and Dataset-JSON files too: those stay in its own step)
                within = {k: v - self._timers.get(k, 0.0) for k, v in timers.cpu.items()}
                steps.append((name, now - self._cpu, self.timings[-1][1], within))
                memory.append((name, *rss_now_mib()))
                self._cpu, self._timers = now, dict(timers.cpu)

        c0, w0 = time.process_time(), time.perf_counter()
        gated = gate_mod.gate_detail(tmp / "raw", study, spec)
        gate_cpu, gate_wall = time.process_time() - c0, time.perf_counter() - w0
        memory.append(("gate", *rss_now_mib()))
        facts["raw_rows"] = {f: len(df) for f, df in gated.forms.items()}
        facts["raw_frames_mib"] = sum(int(df.memory_usage(deep=True).sum()) for df in gated.forms.values()) / 2 ** 20
        facts["gate_errors"] = int((gated.findings["severity"] == "error").sum()) if len(gated.findings) else 0
        # Every stage is timed even where the simulated data would block the export: the build
        # runs in draft mode (open coding queries are warnings), and any error finding left is
        # counted here and then turned into a warning, so that the export and the hooks run.
        blocking: dict[str, int] = {}
        real_sort = checks.sort_findings

        def not_blocking(findings):
            out = real_sort(findings)
            if len(out):
                errors = out["severity"] == "error"
                for check, n in out.loc[errors, "check"].value_counts().items():
                    blocking[str(check)] = blocking.get(str(check), 0) + int(n)
                out = out.assign(severity=out["severity"].where(~errors, "warning"))
            return out

        checks.sort_findings = not_blocking
        # made just before the build, so that its first step (dm) counts neither the gate (timed
        # above) nor this function's own work since (the deep memory size of the raw frames)
        progress = Recording()
        try:
            result = build.build_study(study, spec, gated.forms, tmp / "raw", tmp / "out", progress, mode="draft")
        finally:
            checks.sort_findings = real_sort
        facts["build_ok"] = result.ok
        facts["build_errors"] = blocking
        facts["peak_rss_mib"] = rss_mib()
        facts["rss_before_mib"] = rss_before
        read_cpu = timers.cpu.get("read", 0.0)
        rows = [("read (pipeline.intake readers)", read_cpu, timers.wall.get("read", 0.0)),
                ("gate (schemas + cross checks)", gate_cpu - read_cpu, gate_wall - timers.wall.get("read", 0.0))]
        for name, cpu, wall, within in steps:
            if name == "export":
                parts = ("export XPT v5", "export Dataset-JSON v1.1")
                for label in parts:
                    rows.append((label, within.get(label, 0.0), None))
                rows.append(("export: the rest of the step", cpu - sum(within.get(k, 0.0) for k in parts), None))
            elif name == "listings" and within.get("figures (in listings)"):
                fig = within["figures (in listings)"]
                rows.append(("listings (tables, Excel, HTML, RTF, PDF)", cpu - fig, None))
                rows.append(("figures (matplotlib)", fig, None))
            else:
                rows.append((_label(name, build), cpu, wall))
        facts["stages"] = rows
        facts["memory"] = memory
        facts["datasets"] = {n: list(f.shape) for n, f in exported.items()}
        out_dir = tmp / "out" / study.studyid
        facts["xpt_mb"] = sum(p.stat().st_size for p in out_dir.glob("*.xpt")) / 1e6 if out_dir.is_dir() else 0
        facts["json_mb"] = sum(p.stat().st_size for p in out_dir.glob("*.json")) / 1e6 if out_dir.is_dir() else 0

        # ---- the floor: pandas reads, pyreadstat writes, json dumps ------------------------------
        del result, gated
        gc.collect()
        floor_dir = tmp / "floor"
        floor_dir.mkdir()
        files = sorted((tmp / "raw" / study.studyid).glob("*.csv"))
        c0 = time.process_time()
        for p in files:
            pd.read_csv(p, dtype=str, encoding=study.encoding)
        f_read = time.process_time() - c0
        c0 = time.process_time()
        for n, f in exported.items():
            pyreadstat.write_xport(f, str(floor_dir / f"{n.lower()}.xpt"), file_format_version=5)
        f_xpt = time.process_time() - c0
        c0 = time.process_time()
        for n, f in exported.items():
            with open(floor_dir / f"{n.lower()}.json", "w", encoding="ascii") as fh:
                json.dump({"rows": f.to_numpy(dtype=object).tolist()}, fh)
        f_json = time.process_time() - c0
        facts["floor"] = {"pandas.read_csv raw files": f_read, "pyreadstat.write_xport same datasets": f_xpt,
                          "json.dump same rows": f_json}
    facts["load_end"] = load_average()
    return facts


def _label(step: str, build) -> str:
    if step in build.REGISTRY:
        return f"derive {step}"
    if step == "checks":
        return "output checks (sort by keys + pandera schemas)"
    if any(h.name == step for h in build.POST_EXPORT_HOOKS):
        return f"hook: {step}"
    return step


def stage_sums(facts: dict) -> tuple[float, float]:
    """(pipeline read -> Dataset-JSON, whole build) CPU seconds."""
    until_json, whole = 0.0, 0.0
    passed_json = False
    for name, cpu, _ in facts["stages"]:
        whole += cpu
        if not passed_json:
            until_json += cpu
        if name == "export Dataset-JSON v1.1":
            passed_json = True
    return until_json, whole


#: the study whose raw file the "one study changed" rerun edits, and the edit (one screening height)
CHANGED_STUDY = "ZJU-CD7-SAA"
CHANGED_FILE, CHANGED_FROM, CHANGED_TO = "vs.csv", b",HEIGHT,169.4,cm", b",HEIGHT,169.5,cm"


def _timed_build(out: str, *extra: str, raw: Path | None = None) -> dict:
    """One ``python -m pipeline build`` into ``out``: exit, wall and CPU seconds (children), its lines."""
    env = dict(os.environ)
    if not env.get("SOURCE_DATE_EPOCH"):  # as `make sdtm` does: the commit time of the checkout
        stamp = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True).stdout
        if stamp.strip():
            env["SOURCE_DATE_EPOCH"] = stamp.strip()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "build", "--no-progress", "--out", out,
                           *(["--raw", str(raw)] if raw else []), *extra],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"exit": proc.returncode, "wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load_start": load, "load_end": load_average(),
            "lines": proc.stdout.strip().splitlines() + proc.stderr.strip().splitlines()}


def five_studies(runs: int = FIVE_RUNS) -> dict:
    """``python -m pipeline build`` of the five shipped studies, ``runs`` times, each into a fresh
    temporary folder (``--no-cache``: a cold build), then two reruns into the last folder with the
    build cache (:mod:`pipeline.buildcache`): nothing changed, and one study's raw file changed
    (raw/ copied to a temporary folder, one value of :data:`CHANGED_STUDY` edited)."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="cart-five-") as tmp:
        cold = [_timed_build(str(Path(tmp) / f"sdtm{k}"), "--no-cache") for k in range(max(1, runs))]
        out = str(Path(tmp) / f"sdtm{len(cold) - 1}")
        warm = _timed_build(out)
        raw = Path(tmp) / "raw"
        shutil.copytree(ROOT / "raw", raw)
        path = raw / CHANGED_STUDY / CHANGED_FILE
        data = path.read_bytes()
        edited = CHANGED_FROM in data
        path.write_bytes(data.replace(CHANGED_FROM, CHANGED_TO, 1))
        one = _timed_build(out, raw=raw)
        one["edit"] = (f"{CHANGED_STUDY}/{CHANGED_FILE}: {CHANGED_FROM.decode()[1:]} -> {CHANGED_TO.decode()[1:]}"
                       if edited else f"{CHANGED_STUDY}/{CHANGED_FILE}: value not found, file unchanged")
    return {**five_summary(cold, _cores()), "warm": warm, "one_changed": one}


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def five_summary(cold: list[dict], jobs: int) -> dict:
    """The cold builds (:func:`_timed_build` results, in the order they ran) summed up: every
    run with its idle core-seconds (``jobs`` x wall - CPU: what the cores spent waiting), the
    median wall and CPU, the fastest and slowest wall, how many runs met the target, the worst
    exit status, the first run's lines and the load at the first start and the last end."""
    runs = [{**r, "idle": jobs * r["wall"] - r["cpu"]} for r in cold]
    walls = [r["wall"] for r in runs]
    return {"runs": runs, "jobs": jobs, "exit": max(r["exit"] for r in runs),
            "wall": median(walls), "cpu": median([r["cpu"] for r in runs]), "idle": median([r["idle"] for r in runs]),
            "wall_min": min(walls), "wall_max": max(walls), "met": sum(w <= TARGET_FIVE_WALL for w in walls),
            "lines": runs[0]["lines"], "load_start": runs[0]["load_start"], "load_end": runs[-1]["load_end"]}


def five_section(five: dict) -> list[str]:
    """The section of the five shipped studies: the cold builds, then the two reruns."""
    warm, one = five["warm"], five["one_changed"]
    n = len(five["runs"])
    lines = ["## The five shipped studies", "",
             f"`python -m pipeline build --no-cache` into a fresh folder, {n} time(s) one after another (default "
             f"`--jobs` = {five['jobs']} cores): median {five['wall']:.2f} s wall ({five['wall_min']:.2f}-"
             f"{five['wall_max']:.2f} s; {five['met']} of {n} within {TARGET_FIVE_WALL:.0f} s), median "
             f"{five['cpu']:.1f} s CPU in all processes, median {five['idle']:.2f} idle core-seconds (cores x wall - "
             "CPU: the time the cores spent waiting, at the start before the workers fork and at the end of the "
             "last study).", "",
             "| run | exit | wall s | CPU s | idle core-s | load at the start |", "|---:|---:|---:|---:|---:|---|",
             *[f"| {k + 1} | {r['exit']} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['idle']:.2f} | {r['load_start']} |"
               for k, r in enumerate(five["runs"])], "",
             "The first run's lines (stdout, then stderr):", "",
             *[f"    {ln}" for ln in five["lines"]], "",
             "Reruns into the last folder with the build cache (`pipeline.buildcache`, the default):", "",
             "| rerun | exit | wall s | CPU s | load at the start |", "|---|---:|---:|---:|---|",
             f"| nothing changed | {warm['exit']} | {warm['wall']:.1f} | {warm['cpu']:.1f} | {warm['load_start']} |",
             f"| one study's raw file changed ({one['edit']}) | {one['exit']} | {one['wall']:.1f} | {one['cpu']:.1f} | "
             f"{one['load_start']} |", "",
             "Nothing changed (stdout, then stderr):", "", *[f"    {ln}" for ln in warm["lines"]], "",
             "One study changed (stdout, then stderr):", "", *[f"    {ln}" for ln in one["lines"]]]
    return lines


def five_row(five: dict) -> str:
    n = len(five["runs"])
    ok = five["exit"] == 0 and five["wall"] <= TARGET_FIVE_WALL
    return (f"| `make sdtm`, five studies, <= {TARGET_FIVE_WALL:.0f} s wall (median of {n} cold builds) | "
            f"{five['wall']:.2f} s wall ({five['wall_min']:.2f}-{five['wall_max']:.2f} s, {five['met']} of {n} within "
            f"{TARGET_FIVE_WALL:.0f} s; {five['cpu']:.1f} s CPU; load {five['load_start']} -> {five['load_end']}; "
            f"cold: `--no-cache`) | {verdict(ok)} |")


def splice_five(text: str, five: dict) -> str:
    """``text`` (an earlier results file) with its five-study targets row and section replaced
    (``--only-five``: the other sections are kept as they are)."""
    head, sep, notes = text.partition(NOTES_MARKER)
    lines = [five_row(five) if ln.startswith("| `make sdtm`") else ln for ln in head.splitlines()]
    head = "\n".join(lines) + "\n"
    if "\n## The five shipped studies" in head:
        head = head.split("\n## The five shipped studies", 1)[0].rstrip("\n") + "\n"
    return head + "\n" + "\n".join(five_section(five)) + "\n\n" + sep + notes


def _cores() -> int:
    from pipeline import parallel
    return parallel.available_cores()


def core_vs_checks(skip: bool) -> dict:
    """Our output checks vs CDISC CORE on the smallest shipped study (when CORE is installed)."""
    if skip:
        return {"note": "skipped (--skip-core)"}
    core_py = core_python()
    if core_py is None:
        return {"note": "CDISC CORE is not installed here (no CDISC_CORE_PYTHON, /work/core-venv or .venv-core: "
                        "`make conformance` installs it)"}
    env = {**os.environ, "CDISC_CORE_PYTHON": str(core_py)}
    cache = Path(os.environ.get("CDISC_CORE_CACHE", "/work/shared/reference/cdisc-core-cache"))
    if cache.is_dir():
        env["CDISC_CORE_CACHE"] = str(cache)
    raw = ROOT / "raw"
    sid = min((p for p in raw.iterdir() if p.is_dir()), key=lambda p: sum(f.stat().st_size for f in p.iterdir())).name
    with tempfile.TemporaryDirectory(prefix="cart-core-") as tmp:
        built = subprocess.run([sys.executable, "-m", "pipeline", "build", "--no-progress", "--study", sid, "--out", tmp],
                               cwd=ROOT, capture_output=True, text=True)
        if built.returncode != 0:
            return {"note": f"{sid} did not build (exit {built.returncode})"}
        ours = subprocess.run([sys.executable, str(Path(__file__)), "--checks-only", sid], cwd=ROOT,
                              capture_output=True, text=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        core = subprocess.run([sys.executable, "-m", "pipeline", "conformance", "--study", sid, "--out", tmp],
                              cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if core.returncode not in (0, 1):
        return {"note": f"CORE did not run (exit {core.returncode}): {(core.stderr or core.stdout).strip()[:200]}"}
    try:
        ours_s = json.loads(ours.stdout)["cpu"]
    except (ValueError, KeyError):
        return {"note": f"our checks could not be timed: {ours.stderr.strip()[:200]}"}
    core_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"study": sid, "ours_cpu": ours_s, "core_cpu": core_cpu, "core_wall": wall}


def core_python() -> Path | None:
    """The CDISC CORE engine's interpreter: ``CDISC_CORE_PYTHON``, else the machine's shared
    ``/work/core-venv``, else the worktree's ``.venv-core`` (``make conformance``); None if none."""
    for candidate in (os.environ.get("CDISC_CORE_PYTHON", ""), "/work/core-venv/bin/python",
                      str(ROOT / ".venv-core" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def checks_only(sid: str) -> dict:
    """CPU seconds of our output checks alone on one shipped study (domains run first, untimed)."""
    import pipeline.build as build
    from pipeline.config import load_study
    from pipeline.context import StudyContext
    from pipeline.export import checks
    from pipeline.intake.gate import gate_detail
    from pipeline.progress import BuildLog
    from pipeline.spec import load_spec

    spec = load_spec(ROOT / "specs")
    study = load_study(ROOT / "specs", sid)
    gated = gate_detail(ROOT / "raw", study, spec)
    merged = build.run_domains(StudyContext(study=study, spec=spec, forms=gated.forms), BuildLog())
    known = checks.specified_datasets(spec)
    c0 = time.process_time()
    ordered = {n: checks.order_dataset(f, spec, n) for n, f in merged.datasets.items() if n in known}
    checks.check_datasets(ordered, spec, sid)
    return {"cpu": time.process_time() - c0}


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def machine() -> list[str]:
    import numpy
    import pandas
    import pyreadstat

    import pipeline
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [f"- machine: {platform.system()} {platform.machine()}, CPU {cpu or 'unknown'}, {os.cpu_count()} logical CPUs",
            f"- python {platform.python_version()}, pandas {pandas.__version__}, numpy {numpy.__version__}, "
            f"pyreadstat {pyreadstat.__version__}, pipeline {pipeline.__version__}"]


def verdict(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


def previous_five_parts(text: str) -> tuple[str, str]:
    """(targets row, section) of the five shipped studies in an earlier results file, kept as
    they are when this run skips them (--skip-five): that section is timed by its own run."""
    head = text.split(NOTES_MARKER, 1)[0]
    row = next((ln for ln in head.splitlines() if ln.startswith("| `make sdtm`")), "")
    if " (an earlier run of this file" in row:
        row = row.split(" (an earlier run of this file")[0] + " |"
    section = ""
    if "\n## The five shipped studies" in head:
        section = "## The five shipped studies" + head.split("\n## The five shipped studies", 1)[1]
    return row, section


def report(args, sizes: dict[int, dict], five: dict | None, core: dict, notes: str,
           previous_five_row: str = "", previous_five: str = "") -> str:
    small, large = min(sizes), max(sizes)
    lines = ["# Benchmark: the real build on a large simulated study, its I/O floor, and the five studies", "",
             f"Generated by `python bench/run.py --sizes {','.join(map(str, sorted(sizes)))} --study {args.study}` "
             "(`make bench`). Times are CPU seconds of the measuring process unless marked wall; the machine is "
             "shared, so the load average is given with every run.", "", *machine(), ""]
    # ---- targets
    ratios = {}
    for n, f in sizes.items():
        until_json, whole = stage_sums(f)
        floor = sum(f["floor"].values())
        rows = sum(f["raw_rows"].values())
        ratios[n] = {"until_json": until_json, "whole": whole, "floor": floor, "rows": rows,
                     "r_json": until_json / floor if floor else float("nan"),
                     "r_whole": whole / floor if floor else float("nan"),
                     "per_row_us": 1e6 * whole / rows if rows else float("nan"),
                     "r_rss": f["peak_rss_mib"] / f["raw_frames_mib"] if f["raw_frames_mib"] else float("nan")}
    big = ratios[large]
    scaling = big["per_row_us"] / ratios[small]["per_row_us"] if len(sizes) > 1 else float("nan")
    lines += ["## Targets (issue 14)", "", "| target | measured | verdict |", "|---|---:|---|"]
    if not five and previous_five_row:
        lines.append(previous_five_row.rstrip(" |").rstrip() + " (an earlier run of this file, not rerun: --skip-five) |")
    if five:
        lines.append(five_row(five))
    lines += [f"| read -> Dataset-JSON <= {TARGET_READ_TO_JSON}x floor ({large:,} subjects) | "
              f"{big['until_json']:.1f} s / {big['floor']:.1f} s = {big['r_json']:.2f}x | {verdict(big['r_json'] <= TARGET_READ_TO_JSON)} |",
              f"| whole build <= {TARGET_WHOLE}x floor ({large:,} subjects) | {big['whole']:.1f} s / {big['floor']:.1f} s = "
              f"{big['r_whole']:.2f}x | {verdict(big['r_whole'] <= TARGET_WHOLE)} |"]
    if len(sizes) > 1:
        lines.append(f"| per raw row at {large:,} within {TARGET_SCALING}x of {small:,} subjects | "
                     f"{big['per_row_us']:.1f} us vs {ratios[small]['per_row_us']:.1f} us = {scaling:.2f}x | "
                     f"{verdict(scaling <= TARGET_SCALING)} |")
    lines.append(f"| peak RSS <= {TARGET_RSS:.0f}x raw frames ({large:,} subjects) | {sizes[large]['peak_rss_mib']:,.0f} MiB / "
                 f"{sizes[large]['raw_frames_mib']:,.0f} MiB = {big['r_rss']:.2f}x | {verdict(big['r_rss'] <= TARGET_RSS)} |")
    if "core_cpu" in core:
        speed = core["core_cpu"] / core["ours_cpu"] if core["ours_cpu"] else float("nan")
        lines.append(f"| our output checks >= {TARGET_CORE:.0f}x faster than CDISC CORE ({core['study']}) | "
                     f"{core['ours_cpu']:.2f} s vs {core['core_cpu']:.1f} s CPU ({core['core_wall']:.1f} s wall) = "
                     f"{speed:.0f}x | {verdict(speed >= TARGET_CORE)} |")
    else:
        lines.append(f"| our output checks >= {TARGET_CORE:.0f}x faster than CDISC CORE | not measured: {core['note']} | - |")
    # ---- per size
    for n in sorted(sizes):
        f = sizes[n]
        r = ratios[n]
        lines += ["", f"## {n:,} subjects", "",
                  f"- raw rows {r['rows']:,} (" + ", ".join(f"{k} {v:,}" for k, v in sorted(f["raw_rows"].items())) + ")"
                  f"; raw frames in memory {f['raw_frames_mib']:,.0f} MiB; peak RSS {f['peak_rss_mib']:,.0f} MiB "
                  f"(after simulating, before the build: {f['rss_before_mib']:,.0f} MiB)",
                  f"- build in draft mode, {'exported' if f['build_ok'] else 'NOT exported'}; error findings turned into "
                  "warnings so that every stage runs: " + (", ".join(f"{k} {v:,}" for k, v in sorted(f["build_errors"].items()))
                                                            or "none") +
                  f"; XPT {f['xpt_mb']:.0f} MB, Dataset-JSON {f['json_mb']:.0f} MB",
                  f"- load average {f['load_start']} at the start, {f['load_end']} at the end", "",
                  "| stage | CPU s | wall s |", "|---|---:|---:|"]
        for name, cpu, wall in f["stages"]:
            lines.append(f"| {name} | {cpu:.2f} | {'' if wall is None else f'{wall:.2f}'} |")
        lines += [f"| **pipeline read -> Dataset-JSON** | **{r['until_json']:.2f}** | |",
                  f"| **whole build** | **{r['whole']:.2f}** | |", "",
                  "| I/O floor | CPU s |", "|---|---:|"]
        for k, v in f["floor"].items():
            lines.append(f"| {k} | {v:.2f} |")
        lines.append(f"| **floor** | **{r['floor']:.2f}** |")
        if f.get("memory"):
            lines += ["", "| memory after the step (`/proc/self/status`) | RSS MiB | peak so far MiB |", "|---|---:|---:|"]
            for step, now, hwm in f["memory"]:
                lines.append(f"| {step} | {now:,.0f} | {hwm:,.0f} |")
    if not five and previous_five:
        lines += ["", previous_five.rstrip()]
    if five:
        lines += ["", *five_section(five)]
    lines += ["", NOTES_MARKER, notes.rstrip() if notes else ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="200,2000", help="subjects per run, comma-separated")
    p.add_argument("--study", default="NCT06316427")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    p.add_argument("--skip-five", action="store_true", help="do not time the five shipped studies")
    p.add_argument("--five-runs", type=int, default=FIVE_RUNS,
                   help=f"cold builds of the five shipped studies, whose median is judged (default {FIVE_RUNS})")
    p.add_argument("--skip-core", action="store_true", help="do not time CDISC CORE")
    p.add_argument("--only-five", action="store_true",
                   help="time only the five shipped studies (cold, then the cached reruns) and replace their "
                        "row and section in the existing --out file")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)          # internal: one size, JSON on stdout
    p.add_argument("--checks-only", help=argparse.SUPPRESS)            # internal: our checks on one study
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure_size(args.study, args.one)))
        return 0
    if args.checks_only:
        print(json.dumps(checks_only(args.checks_only)))
        return 0
    if args.only_five:
        if not (args.out.is_file() and NOTES_MARKER in args.out.read_text(encoding="utf-8")):
            print(f"--only-five needs an earlier {args.out} to update", file=sys.stderr)
            return 2
        print(f"bench: the five shipped studies only (load {load_average()}) ...", file=sys.stderr, flush=True)
        text = splice_five(args.out.read_text(encoding="utf-8"), five_studies(args.five_runs))
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
        return 0
    sizes = {}
    for n in sorted(int(x) for x in args.sizes.split(",") if x.strip()):
        print(f"bench: {n:,} subjects of {args.study} (load {load_average()}) ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(Path(__file__)), "--one", str(n), "--study", args.study],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        sizes[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    five = None
    if not args.skip_five:
        print(f"bench: the five shipped studies (load {load_average()}) ...", file=sys.stderr, flush=True)
        five = five_studies(args.five_runs)
    core = core_vs_checks(args.skip_core)
    notes, row, section = "", "", ""
    if args.out.is_file() and NOTES_MARKER in args.out.read_text(encoding="utf-8"):
        previous = args.out.read_text(encoding="utf-8")
        notes = previous.split(NOTES_MARKER, 1)[1].strip("\n")
        row, section = previous_five_parts(previous)
    args.out.write_text(report(args, sizes, five, core, notes, row, section), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
