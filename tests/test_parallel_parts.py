"""Tasks in parts (:class:`pipeline.parallel.Continue`) and studies built in two parts
(``split`` of :func:`pipeline.build._build_one`): the same answers, files and messages as in
one part, in task order; a failure or a dead worker in the second part fails only its study and
leaves no staging folder. Fixture spec, fake domain modules, hooks defined here."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit as kit  # noqa: E402

import pipeline.build as build  # noqa: E402
from pipeline import parallel  # noqa: E402
from pipeline.export import writer  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.errors import DataError  # noqa: E402

pytestmark = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="the fake modules and hooks reach the workers only by fork")

MODULE = __name__


# ---- parallel.Continue ---------------------------------------------------------------------

class Unpicklable:
    """Refuses to be pickled: it can reach a worker only by inheritance."""

    def __reduce__(self):
        raise TypeError("Unpicklable cannot be pickled")


def _first(n, shared, how="ok"):
    print(f"{n} first")
    return parallel.Continue(_second, (n, shared, os.getpid(), how))


def _second(n, shared, first_pid, how):
    print(f"{n} second", file=sys.stderr)
    if how == "raise":
        raise ValueError(f"task {n} fails in its second part")
    if how == "die":
        os._exit(9)
    return n * 10, id(shared), first_pid, os.getpid()


def test_parts_give_one_answer_per_task_in_order_with_all_they_printed():
    shared = Unpicklable()
    results = []
    parallel.run_ordered(_first, [(1, shared), (2, shared), (3, shared)], 2, lambda i, r: results.append((i, r)),
                         shared=(shared,))
    assert [i for i, _ in results] == [0, 1, 2]
    assert [r.value[0] for _, r in results] == [10, 20, 30]
    # the second part took the shared object by inheritance too (it cannot be pickled)
    assert {r.value[1] for _, r in results} == {id(shared)}
    assert all(r.value[2] != os.getpid() and r.value[3] != os.getpid() for _, r in results)
    assert [(r.stdout, r.stderr) for _, r in results] == [(f"{n} first\n", f"{n} second\n") for n in (1, 2, 3)]
    assert parallel._INHERITED == {}


def test_without_workers_the_parts_run_at_once_in_the_caller():
    shared = Unpicklable()
    results = []
    parallel.run_ordered(_first, [(1, shared), (2, shared)], 1, lambda i, r: results.append(r.value))
    assert results == [(10, id(shared), os.getpid(), os.getpid()), (20, id(shared), os.getpid(), os.getpid())]
    assert parallel.run_through(_first, (4, shared)) == (40, id(shared), os.getpid(), os.getpid())


def test_an_exception_in_a_second_part_comes_in_task_order():
    seen = []
    with pytest.raises(ValueError, match="task 2 fails in its second part"):
        parallel.run_ordered(_first, [(1, None), (2, None, "raise"), (3, None)], 2, lambda i, r: seen.append(i))
    assert seen == [0]


def test_a_worker_dying_in_a_second_part_fails_only_that_task():
    results = []
    parallel.run_ordered(_first, [(1, None), (2, None, "die"), (3, None)], 2, lambda i, r: results.append((i, r)))
    assert [i for i, _ in results] == [0, 1, 2]
    assert isinstance(results[1][1], parallel.WorkerDied)
    assert [results[0][1].value[0], results[2][1].value[0]] == [10, 30]


# ---- studies in two parts ------------------------------------------------------------------

def test_split_tasks_are_the_last_jobs_of_a_parallel_build():
    assert build.split_tasks(5, 2) == [False, False, False, True, True]
    assert build.split_tasks(2, 2) == [True, True]
    assert build.split_tasks(3, 5) == [True, True, True]
    assert build.split_tasks(5, 1) == [False] * 5          # no workers: nothing to share
    assert build.split_tasks(1, 2) == [False]              # one study runs in the caller
    assert build.split_tasks(0, 2) == []


def write_first(study_dir, ctx):
    Path(study_dir, "first.txt").write_text(f"{ctx.study.studyid} first\n")


def write_last(study_dir, datasets, reports, ctx):
    """The separate hook: what it received, as text; fails as ``LAST_HOOK`` says for TEST01."""
    how = os.environ.get("LAST_HOOK", "")
    if ctx.study.studyid == kit.STUDY and how == "data":
        raise DataError("the last hook refuses these data")
    if ctx.study.studyid == kit.STUDY and how == "bug":
        raise KeyError("LBORRES")
    if ctx.study.studyid == kit.STUDY and how == "die":
        os._exit(9)
    lines = [f"{ctx.study.studyid} {ctx.spec.datasets is not None} {sorted(ctx.datasets) == sorted(datasets)}",
             *(f"{name} {len(frame)}" for name, frame in sorted(datasets.items())),
             f"reports {sorted(reports)}", f"first was written: {Path(study_dir, 'first.txt').is_file()}"]
    Path(study_dir, "last.txt").write_text("\n".join(lines) + "\n")


HOOKS = [build.Hook("first", MODULE, "write_first", ("study_dir", "ctx")),
         build.Hook("last", MODULE, "write_last", ("study_dir", "datasets", "reports", "ctx"), separate=True)]


@pytest.fixture
def two_clean(monkeypatch, tmp_path):
    kit.use_fake_domains(monkeypatch, hooks=HOOKS)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.delenv("LAST_HOOK", raising=False)
    raw = kit.write_raw(tmp_path / "raw")
    kit.write_raw(raw, study="TEST02")
    return raw


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".build.lock"}


def run(raw: Path, out: Path, jobs: int, capsys) -> tuple[int, str, str]:
    code = main(["build", "--raw", str(raw), "--specs", str(kit.SPECS), "--out", str(out), "--no-progress",
                 "--no-cache", "--jobs", str(jobs)])
    cap = capsys.readouterr()
    return code, cap.out.replace(str(out), "OUT"), cap.err.replace(str(out), "OUT")


def test_a_split_study_waits_in_staging_until_its_second_part(two_clean, tmp_path, capsys):
    """The first part returns the second as a Continue; only the second swaps the study in."""
    out = tmp_path / "out"
    one = run(two_clean, tmp_path / "whole", 1, capsys)        # one part per study (no workers)
    study = build.selected_studies(kit.SPECS, [kit.STUDY])[0]
    spec = build.load_spec(kit.SPECS)
    import importlib
    forms, findings = importlib.import_module(build.GATE_MODULE).gate_study(two_clean, study, spec)
    out.mkdir()
    part = build._build_one(study, spec, forms, findings, two_clean, out, False, None, "final", True)
    assert isinstance(part, parallel.Continue) and part.func is build._finish_one
    staging = [p.name for p in out.iterdir() if p.name.startswith(".staging")]
    assert staging == [f".staging-{kit.STUDY}-{os.getpid()}"] and not (out / kit.STUDY).exists()
    assert (out / staging[0] / "first.txt").is_file() and not (out / staging[0] / "last.txt").exists()
    assert parallel.run_through(part.func, part.args) == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".staging")] == []
    assert tree(out / kit.STUDY) == tree(tmp_path / "whole" / kit.STUDY)
    assert one[0] == 0
    assert (out / kit.STUDY / "last.txt").read_text() == (
        "TEST01 True True\nAE 3\nDM 3\nLB 4\nreports ['ae_terms']\nfirst was written: True\n")  # kit's rows
    log = (out / kit.STUDY / "build.log").read_text()
    assert log.index("first: ") < log.index("last: ")


def test_a_last_part_run_again_after_it_finished_reports_the_study_built(two_clean, tmp_path, capsys):
    """A worker that dies breaks the pool, which then fails every part it has not answered yet,
    including one that already swapped its study in; the parent runs that part again alone
    (pipeline.parallel._alone). Run again, the part finds its staging folder gone and the mark
    it left before the swap, and reports the study built, its outputs those of the first run
    (before: 'cannot write .staging-.../last.txt: No such file or directory', exit 2)."""
    out = tmp_path / "out"
    study = build.selected_studies(kit.SPECS, [kit.STUDY])[0]
    spec = build.load_spec(kit.SPECS)
    import importlib
    forms, findings = importlib.import_module(build.GATE_MODULE).gate_study(two_clean, study, spec)
    out.mkdir()
    part = build._build_one(study, spec, forms, findings, two_clean, out, False, None, "final", True)
    staging = next(p for p in out.iterdir() if p.name.startswith(".staging"))
    assert parallel.run_through(part.func, part.args) == 0
    first = tree(out / kit.STUDY)
    assert not staging.exists()
    capsys.readouterr()
    assert parallel.run_through(part.func, part.args) == 0        # the lost answer, asked again
    cap = capsys.readouterr()
    assert cap.out.replace(str(out), "OUT").splitlines() == [f"{kit.STUDY}: built 3 dataset(s) into OUT/{kit.STUDY}"]
    assert "NOT built" not in cap.err
    assert tree(out / kit.STUDY) == first
    mark = out / f".swapped-{kit.STUDY}-{os.getpid()}"
    assert mark.is_dir() and writer.swapped_mark(staging) == mark
    assert writer._LEFTOVER.match(mark.name)  # removed with the stale staging folders once its process is gone


def test_two_parts_in_workers_change_neither_files_nor_messages(two_clean, tmp_path, capsys):
    whole = run(two_clean, tmp_path / "j1", 1, capsys)
    split = run(two_clean, tmp_path / "j2", 2, capsys)         # split_tasks(2, 2): both studies in two parts
    assert whole == split
    assert whole[1].splitlines() == ["TEST01: built 3 dataset(s) into OUT/TEST01",
                                     "TEST02: built 3 dataset(s) into OUT/TEST02"]
    assert tree(tmp_path / "j1") == tree(tmp_path / "j2")


@pytest.mark.parametrize("how,code,message", [
    ("data", 1, "TEST01: NOT built: the last hook refuses these data"),
    ("bug", build.UNEXPECTED_EXIT, "TEST01: NOT built: the build stopped on an unexpected problem (KeyError: 'LBORRES')"),
    ("die", build.UNEXPECTED_EXIT, "TEST01: NOT built: the build stopped on an unexpected problem (WorkerDied: "),
])
def test_a_failing_second_part_fails_only_its_study(two_clean, tmp_path, capsys, monkeypatch, how, code, message):
    out = tmp_path / "out"
    assert run(two_clean, out, 2, capsys)[0] == 0
    before = tree(out / kit.STUDY)
    monkeypatch.setenv("LAST_HOOK", how)
    got, stdout, err = run(two_clean, out, 2, capsys)
    assert got == code
    assert message in err and "internal error" not in err
    assert "TEST02: built 3 dataset(s)" in stdout
    assert tree(out / kit.STUDY) == before                    # the previous outputs, untouched
    assert [p.name for p in out.iterdir() if p.name.startswith((".staging", ".trash"))] == []
    f = pd.read_csv(out / "gate" / f"{kit.STUDY}_build_findings.csv", dtype=str, keep_default_na=False)
    assert f["check"].tolist()[-1:] == (["export"] if how == "data" else ["build_failure"])


def test_the_parent_imports_the_builds_libraries_before_forking_but_not_polars(two_clean, tmp_path, capsys,
                                                                              monkeypatch):
    """What each worker would otherwise import for itself (pyreadstat, scipy.special); never
    rtflite/polars, whose threads a forked worker must not inherit."""
    asked = []
    real = parallel.preload
    monkeypatch.setattr(parallel, "preload", lambda modules: (asked.append(list(modules)), real(asked[-1]))[1])
    assert run(two_clean, tmp_path / "out", 2, capsys)[0] == 0
    gate, later, on_use = asked
    assert gate == [build.GATE_MODULE, "pipeline.intake.report"]
    assert later[-2:] == ["pyreadstat", "scipy.special"] and {h.module for h in HOOKS} <= set(later)
    assert on_use == build.imports_on_use()
    assert not {m for m in later + on_use if m.split(".")[0] in ("rtflite", "polars")}


def test_imports_on_use_are_those_the_loaded_pipeline_modules_declare(monkeypatch):
    """Each loaded ``pipeline.*`` module's ``IMPORTS_ON_USE``, once each, sorted; other packages'
    attributes of that name are not read. The ADaM stage declares its dataset modules;
    every declared module exists; none is rtflite or polars."""
    import importlib.util
    import types

    import pipeline.adam.stage  # noqa: F401 - its IMPORTS_ON_USE is read

    fake = types.ModuleType("pipeline.fake_on_use")
    fake.IMPORTS_ON_USE = ("zz.b", "zz.a", "pipeline.adam.adsl")
    other = types.ModuleType("notpipeline")
    other.IMPORTS_ON_USE = ("zz.never",)
    monkeypatch.setitem(sys.modules, "pipeline.fake_on_use", fake)
    monkeypatch.setitem(sys.modules, "notpipeline", other)
    names = build.imports_on_use()
    assert names == sorted(set(names)) and {"zz.a", "zz.b"} <= set(names) and "zz.never" not in names
    assert {"pipeline.adam.adsl", "pipeline.adam.adrs", "pipeline.adam.reports"} <= set(names)
    assert names.count("pipeline.adam.adsl") == 1
    real = [n for n in names if not n.startswith("zz.")]
    assert all(importlib.util.find_spec(n) is not None for n in real)
    assert not {n for n in names if n.split(".")[0] in ("rtflite", "polars")}
