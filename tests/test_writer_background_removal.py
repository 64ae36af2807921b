"""The previous study folder a swap replaces is deleted in the background (writer.remove_later):
the swap returns at once, the process waits for its deletions where it must (the build's end,
the same study swapped again), and a worker process's deletions end before the process does."""
from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "export"))
import exportkit as kit  # noqa: E402

import pipeline.build as build  # noqa: E402
from pipeline.export import writer  # noqa: E402


def _folder(path: Path, text: str, n: int = 5) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"f{i}.txt").write_text(text)
    return path


def _recorded_removals(monkeypatch, before) -> list[str]:
    """writer's deletions patched to call ``before()`` first, then delete; the names deleted."""
    done: list[str] = []
    real = writer._remove_tree

    def removal(path: Path) -> None:
        before()
        real(path)
        done.append(Path(path).name)
    monkeypatch.setattr(writer, "_remove_tree", removal)
    return done


@pytest.fixture
def slow_removal(monkeypatch):
    """Deletions that take 0.3 s and record that they ran (the disk's ``discard`` made slow)."""
    yield _recorded_removals(monkeypatch, lambda: time.sleep(0.3))
    writer.wait_removals()


def _trash(out: Path, name: str, pid: int | None = None) -> Path:
    import os
    return out / f".trash-{name}-{pid or os.getpid()}"


@pytest.fixture
def held_removal(monkeypatch):
    """Deletions that wait until the test releases them (an Event), then delete."""
    release = threading.Event()
    yield release, _recorded_removals(monkeypatch, lambda: release.wait(30))
    release.set()
    writer.wait_removals()


def test_the_swap_returns_before_the_previous_folder_is_deleted(tmp_path, held_removal):
    release, done = held_removal
    out = tmp_path / "out"
    target = _folder(out / "S1", "old")
    staging = _folder(out / ".staging-S1-1", "new")
    writer.swap_in(staging, target)  # returns while the deletion is held
    assert (target / "f0.txt").read_text() == "new" and not staging.exists()
    assert _trash(out, "S1").exists() and done == []
    release.set()
    writer.wait_removals()
    assert not _trash(out, "S1").exists() and done == [_trash(out, "S1").name]
    assert sorted(p.name for p in out.iterdir()) == ["S1"]


def test_the_same_study_swapped_again_waits_for_its_pending_deletion(tmp_path, slow_removal):
    out = tmp_path / "out"
    target = _folder(out / "S1", "first")
    writer.swap_in(_folder(out / ".staging-S1-1", "second"), target)
    writer.swap_in(_folder(out / ".staging-S1-2", "third"), target)  # same trash name
    writer.wait_removals()
    assert (target / "f0.txt").read_text() == "third"
    assert sorted(p.name for p in out.iterdir()) == ["S1"]
    assert slow_removal == [_trash(out, "S1").name] * 2


def test_a_swap_without_a_previous_folder_deletes_nothing(tmp_path, slow_removal):
    out = tmp_path / "out"
    out.mkdir()
    writer.swap_in(_folder(out / ".staging-S1-1", "new"), out / "S1")
    writer.wait_removals()
    assert slow_removal == [] and sorted(p.name for p in out.iterdir()) == ["S1"]


def _swap_in_child(out: str) -> None:
    def slow(path: Path) -> None:
        time.sleep(0.5)
        writer.shutil.rmtree(path, ignore_errors=True)
    writer._remove_tree = slow
    writer.swap_in(Path(out) / ".staging-S1-1", Path(out) / "S1")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (the build's workers)")
def test_a_worker_process_ends_only_after_its_deletions(tmp_path):
    out = tmp_path / "out"
    _folder(out / "S1", "old")
    _folder(out / ".staging-S1-1", "new")
    child = multiprocessing.get_context("fork").Process(target=_swap_in_child, args=(str(out),))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert sorted(p.name for p in out.iterdir()) == ["S1"]  # its trash deleted before it exited
    assert (out / "S1" / "f0.txt").read_text() == "new"


def test_a_build_returns_after_the_deletions_it_started(tmp_path, monkeypatch, slow_removal):
    kit.use_fake_domains(monkeypatch)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    raw = kit.write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    args = kit.args(raw, out)
    args.no_cache = True
    assert build.run_build(args) == 0
    assert slow_removal == []  # nothing to replace the first time
    assert build.run_build(args) == 0
    assert slow_removal == [_trash(out, kit.STUDY).name]
    assert not [p for p in out.iterdir() if p.name.startswith(".trash")]
    assert not [t for t in threading.enumerate() if t.name.startswith("remove ")]
