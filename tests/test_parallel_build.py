"""``build --jobs N``: the same files and the same messages, in the same order, for any N; a
study whose worker process dies is the only one not built. Fixture spec, fake domain modules."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit as kit  # noqa: E402

import pipeline.build as build  # noqa: E402
from pipeline import parallel  # noqa: E402
from pipeline.cli import build_parser, main  # noqa: E402

pytestmark = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="the fake domain modules reach the workers only by fork")


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".build.lock"}


@pytest.fixture
def two_studies(monkeypatch, tmp_path):
    """TEST01 with a gate error (SEX) and TEST02 clean; fake domains, a fixed SOURCE_DATE_EPOCH."""
    kit.use_fake_domains(monkeypatch)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    raw = kit.write_raw(tmp_path / "raw", dm=[kit.DM_ROWS[0], ("TEST01", "01", "002", "60", "GATE-ERROR", "")])
    kit.write_raw(raw, study="TEST02")
    return raw


def run(raw: Path, out: Path, jobs: int, capsys) -> tuple[int, str, str]:
    code = main(["build", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--no-progress",
                 "--jobs", str(jobs)])
    cap = capsys.readouterr()
    return code, cap.out.replace(str(out), "OUT"), cap.err.replace(str(out), "OUT")


def test_jobs_change_neither_files_nor_messages(two_studies, tmp_path, capsys):
    one = run(two_studies, tmp_path / "j1", 1, capsys)
    two = run(two_studies, tmp_path / "j2", 2, capsys)
    assert one == two
    code, out, err = one
    assert code == 1
    assert out == "TEST02: built 3 dataset(s) into OUT/TEST02\n"
    assert err.startswith("TEST01: not built: 1 gate error(s), see OUT/gate/gate_report.csv")
    assert tree(tmp_path / "j1") == tree(tmp_path / "j2")
    assert "TEST02/dm.xpt" in tree(tmp_path / "j2") and not (tmp_path / "j2" / "TEST01").exists()


def test_messages_come_in_study_order_whoever_finishes_first(two_studies, tmp_path, capsys, monkeypatch):
    """TEST01 is made slow (its worker sleeps); its line still comes before TEST02's."""
    kit.write_raw(two_studies)  # TEST01 clean again
    real = build.build_study

    def slow_first(study, *a, **k):
        if study.studyid == "TEST01":
            import time
            time.sleep(1.0)
        print(f"{study.studyid} worker says hello", file=sys.stderr)
        return real(study, *a, **k)

    monkeypatch.setattr(build, "build_study", slow_first)
    code, out, err = run(two_studies, tmp_path / "out", 2, capsys)
    assert code == 0
    assert out.splitlines() == ["TEST01: built 3 dataset(s) into OUT/TEST01", "TEST02: built 3 dataset(s) into OUT/TEST02"]
    assert err.splitlines() == ["TEST01 worker says hello", "TEST02 worker says hello"]


def test_a_dead_worker_fails_only_its_study(two_studies, tmp_path, capsys, monkeypatch):
    kit.write_raw(two_studies)
    real = build.build_study

    def dies_on_test01(study, *a, **k):
        if study.studyid == "TEST01":
            os._exit(9)  # the process vanishes: no exception, no cleanup (as when killed)
        return real(study, *a, **k)

    monkeypatch.setattr(build, "build_study", dies_on_test01)
    out = tmp_path / "out"
    code, stdout, err = run(two_studies, out, 2, capsys)
    assert code == build.UNEXPECTED_EXIT
    assert "TEST02: built 3 dataset(s)" in stdout
    assert "TEST01: NOT built: the build stopped on an unexpected problem (WorkerDied: " in err
    assert (out / "TEST02" / "dm.xpt").is_file() and not (out / "TEST01").exists()
    f = pd.read_csv(out / "gate" / "TEST01_build_findings.csv", dtype=str, keep_default_na=False)
    assert f["check"].tolist() == ["build_failure"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".staging")] == []


def test_jobs_option_and_default():
    args = build_parser().parse_args(["build", "-j", "3"])
    assert args.jobs == 3
    assert build_parser().parse_args(["build"]).jobs is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "--jobs", "0"])
    assert parallel.default_jobs(1) == 1
    assert 1 <= parallel.default_jobs(50) == min(parallel.available_cores(), 50)


def _worker_state(_):
    """What a worker sees of the collector: its thresholds and how many objects it inherited frozen."""
    import gc
    return gc.get_threshold(), gc.get_freeze_count(), os.getpid()


def test_workers_start_with_the_parents_heap_frozen_and_their_own_thresholds():
    before = gc_state()
    results = []
    parallel.run_ordered(_worker_state, [(1,), (2,)], 2, lambda i, r: results.append(r.value))
    (threshold, frozen, pid), _ = results
    assert threshold == parallel.WORKER_GC_THRESHOLD == (10_000, 10, 10)
    assert frozen > 1000 and pid != os.getpid()          # the imported modules, out of the collector's reach
    assert gc_state() == before                           # the parent: default thresholds, nothing left frozen


def gc_state():
    import gc
    return gc.get_threshold(), gc.get_freeze_count()


def test_heap_frozen_only_inside():
    import gc
    with parallel.heap_frozen():
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0


def test_meanwhile_runs_in_the_parent_while_the_workers_work():
    """The parent's own work is done once, after the tasks were handed out and before any result
    is taken; without workers it comes first."""
    events = []
    parallel.run_ordered(_worker_state, [(1,), (2,)], 2, lambda i, r: events.append(("result", i)),
                         meanwhile=lambda: events.append(("meanwhile", os.getpid())))
    assert events == [("meanwhile", os.getpid()), ("result", 0), ("result", 1)]
    events.clear()
    parallel.run_ordered(_worker_state, [(1,), (2,)], 1, lambda i, r: events.append(("result", r.value[2])),
                         meanwhile=lambda: events.append(("meanwhile", os.getpid())))
    assert events == [("meanwhile", os.getpid()), ("result", os.getpid()), ("result", os.getpid())]


class Unpicklable:
    """Refuses to be pickled: it can reach a worker only by inheritance."""

    def __reduce__(self):
        raise TypeError("Unpicklable cannot be pickled")


def _identity(obj, other):
    return id(obj), type(obj).__name__, id(other)


def test_shared_arguments_reach_forked_workers_by_inheritance_not_by_pickle():
    """The spec is such an argument: its per-object memos then live on in the worker from one
    study to the next (a pickled copy would be a new object for every task)."""
    spec_like, plain = Unpicklable(), {"a": 1}
    results = []
    parallel.run_ordered(_identity, [(spec_like, plain), (spec_like, plain)], 2, lambda i, r: results.append(r.value),
                         shared=(spec_like,))
    assert [(i == id(spec_like), name, o != id(plain)) for i, name, o in results] == [(True, "Unpicklable", True)] * 2
    assert parallel._INHERITED == {}                     # nothing left registered after the pool
    with pytest.raises(TypeError, match="cannot be pickled"):   # without shared= it would be pickled
        parallel.run_ordered(_identity, [(spec_like, plain), (spec_like, plain)], 2, lambda i, r: None)


class UnpicklableForms(dict):
    """A study's gated forms that refuse to be pickled: they can reach a worker only by inheritance."""

    def __reduce__(self):
        raise TypeError("the gated forms were pickled")


def test_gated_forms_reach_the_build_workers_by_inheritance(two_studies, tmp_path, capsys, monkeypatch):
    """The parent passes each study's gated forms and findings to its build task by name, as it
    passes the spec: were they pickled, the unpicklable forms would stop both builds."""
    kit.write_raw(two_studies)  # TEST01 clean again: both studies are built
    real = build._gate

    def unpicklable(*a, **k):
        return {sid: (UnpicklableForms(forms), findings) for sid, (forms, findings) in real(*a, **k).items()}

    monkeypatch.setattr(build, "_gate", unpicklable)
    code, out, err = run(two_studies, tmp_path / "j2", 2, capsys)
    assert (code, out.splitlines()) == (0, ["TEST01: built 3 dataset(s) into OUT/TEST01",
                                           "TEST02: built 3 dataset(s) into OUT/TEST02"]), err
    assert "pickled" not in err
    monkeypatch.setattr(build, "_gate", real)
    assert run(two_studies, tmp_path / "j1", 1, capsys)[:2] == (code, out)  # OUT stands for either folder
    assert tree(tmp_path / "j1") == tree(tmp_path / "j2")
    with pytest.raises(TypeError, match="pickled"):  # the probe: pickling them does fail
        pickle.dumps(UnpicklableForms(a=1))


_COLLECTOR_PROBE = """
import gc, runpy, sys
sys.argv = ["pipeline", "--help"]
try:
    runpy.run_module("pipeline", run_name="__main__")
except SystemExit:
    pass
print(gc.get_threshold())
"""


def test_the_command_line_process_collects_as_a_worker_and_a_library_caller_keeps_its_own():
    """``python -m pipeline`` lives for one run: it sets the workers' thresholds (10,000, not
    CPython's 700) before its imports, so a build in the calling process (one study, ``--jobs 1``)
    collects as a worker does; importing the command line as a library changes nothing."""
    import subprocess

    run = subprocess.run([sys.executable, "-c", _COLLECTOR_PROBE], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "(10000, 10, 10)"
    library, default = (subprocess.run([sys.executable, "-c", f"import gc{imports}; print(gc.get_threshold())"],
                                       capture_output=True, text=True, check=True).stdout.strip()
                        for imports in (", pipeline.cli", ""))
    assert library == default != "(10000, 10, 10)"  # (700, 10, 10) on CPython 3.11
