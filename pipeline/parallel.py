"""Running independent per-study tasks in worker processes (``build --jobs N``).

The studies of one run share nothing but the read-only specification, so each can be gated
and built in its own process. Three guarantees keep a parallel run indistinguishable from a
sequential one, except in wall-clock time:

- **Order.** Results come back in the order of the tasks, whatever order the processes finish
  in. What a task prints (its one-line outcome on stdout or stderr) is captured in the worker
  and printed by the parent in task order, so the messages of a run are always in study order.
  Files are written by each study into its own staging folder, so their bytes do not depend on
  the number of processes either.
- **Isolation.** A task's ordinary failures are handled inside the task (the caller wraps it,
  e.g. :func:`pipeline.build.isolated_build`). A worker process that dies (killed, out of
  memory) breaks the pool; the tasks it took down are run again one by one, each in a process
  of its own, so only the task that kills its process is reported (:class:`WorkerDied`).
- **Start-up.** On Linux the workers are forked from the parent after the caller has imported
  what the tasks need (:func:`preload`), so no worker pays the import time again (about 1 s of
  CPU per process for pandas, pandera, matplotlib and friends). Elsewhere the platform's
  default start method is used.

``jobs`` = 1 (or a single task) runs everything in the calling process, without capture.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_jobs(n_tasks: int) -> int:
    """The default ``--jobs``: one process per available core, never more than the tasks."""
    return max(1, min(available_cores(), n_tasks))


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` now, so that forked workers inherit them (missing ones are skipped)."""
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@dataclass
class Captured:
    """What one task returned and printed."""

    value: object
    stdout: str = ""
    stderr: str = ""

    def replay(self) -> None:
        """Print the task's output in the parent (stdout first, then stderr)."""
        if self.stdout:
            sys.stdout.write(self.stdout)
            sys.stdout.flush()
        if self.stderr:
            sys.stderr.write(self.stderr)
            sys.stderr.flush()


class WorkerDied(Exception):
    """The worker process running a task stopped without returning (killed, out of memory)."""


def _captured_call(func: Callable, args: tuple) -> Captured:
    """Run ``func(*args)`` in a worker, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        value = func(*args)
    return Captured(value, out.getvalue(), err.getvalue())


def _context():
    """Fork where it exists (inherits the parent's imports); the platform default elsewhere."""
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def run_ordered(func: Callable, tasks: Sequence[tuple], jobs: int,
                on_result: Callable[[int, Captured | WorkerDied], None]) -> None:
    """Call ``func(*task)`` for every task with up to ``jobs`` processes.

    ``on_result(i, result)`` is called in the parent, in task order, as soon as task ``i`` and
    every task before it are done; ``result`` is a :class:`Captured` (whose output the callback
    replays) or a :class:`WorkerDied`. An exception raised by ``func`` in a worker is re-raised
    here, in task order (callers isolate ordinary failures inside ``func``).
    """
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            on_result(i, Captured(func(*task)))
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=_context()) as pool:
        futures = [pool.submit(_captured_call, func, task) for task in tasks]
        for i, fut in enumerate(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                # a dead worker breaks the whole pool, so the tasks it took down are run again,
                # each alone in a fresh process: only the task that kills its process fails
                result = _alone(func, tasks[i])
            on_result(i, result)


def _alone(func: Callable, task: tuple) -> Captured | WorkerDied:
    """Run one task in a process of its own; :class:`WorkerDied` if that process dies."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as pool:
        try:
            return pool.submit(_captured_call, func, task).result()
        except BrokenProcessPool as exc:
            return WorkerDied(f"its worker process stopped unexpectedly ({exc or 'no detail'})")
