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
- **Parts.** A task may answer :class:`Continue`: its next part, which the parent hands to the
  next free worker, behind the tasks already waiting. The long first parts of all tasks then
  keep every worker busy, and their short last parts fill the end of the run instead of one
  study building alone while the other cores wait. What each part prints is kept, in order.
- **Start-up.** On Linux the workers are forked from the parent after the caller has imported
  what the tasks need (:func:`preload`), so no worker pays the import time again (about 1 s of
  CPU per process for pandas, pandera, matplotlib and friends), and with the parent's objects
  frozen (:func:`heap_frozen`). Elsewhere the platform's default start method is used.

``jobs`` = 1 (or a single task) runs everything in the calling process, without capture.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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


@dataclass
class Continue:
    """A task's answer that is not its end: ``func(*args)`` is the task's next part (whose answer
    may be another :class:`Continue`). In a pool it runs in whichever worker is free next, so its
    arguments travel by pickle, except the ``shared`` objects of :func:`run_ordered`, which each
    worker takes from what it inherited (:class:`Inherited`); without workers it runs at once."""

    func: Callable
    args: tuple


class WorkerDied(Exception):
    """The worker process running a task stopped without returning (killed, out of memory)."""


#: the parent's objects that the forked workers of the running pool already have (id -> object)
_INHERITED: dict[int, object] = {}


@dataclass(frozen=True)
class Inherited:
    """A task argument sent by name: the worker uses its own copy of the parent's object, which
    it inherited when it was forked, instead of an unpickled copy made for each task.

    This matters for objects that memos are keyed on (:func:`pipeline.export.memo.per_object`):
    a specification unpickled per task would be a new object every time, so each study in a
    worker would compute again what the one before it had already computed for that spec.
    """

    key: int


def _by_inheritance(tasks: Sequence[tuple], shared: Sequence[object]) -> list[tuple]:
    """``tasks`` with every argument that is one of ``shared`` replaced by its :class:`Inherited`."""
    keys = {id(o) for o in shared}
    return [tuple(Inherited(id(a)) if id(a) in keys else a for a in task) for task in tasks]


def _inherited_args(args: tuple) -> tuple:
    """``args`` with every object the workers inherited (:data:`_INHERITED`) sent by name."""
    return tuple(Inherited(id(a)) if id(a) in _INHERITED and _INHERITED[id(a)] is a else a for a in args)


def _captured_call(func: Callable, args: tuple, through: bool = False) -> Captured:
    """Run ``func(*args)`` in a worker, capturing what it prints. A :class:`Continue` answer goes
    back to the parent (its inherited arguments by name), or with ``through`` is run here too."""
    args = tuple(_INHERITED[a.key] if isinstance(a, Inherited) else a for a in args)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        value = run_through(func, args) if through else func(*args)
    if isinstance(value, Continue):
        value = Continue(value.func, _inherited_args(value.args))
    return Captured(value, out.getvalue(), err.getvalue())


def run_through(func: Callable, args: tuple):
    """``func(*args)``, then every :class:`Continue` part it answers, here and in order: the final answer."""
    value = func(*args)
    while isinstance(value, Continue):
        value = value.func(*value.args)
    return value


def _joined(first: Captured, then: Captured) -> Captured:
    """The answer of a task's later part, with what its earlier parts printed before its own."""
    return Captured(then.value, first.stdout + then.stdout, first.stderr + then.stderr)


@dataclass
class _Raised:
    """An exception of a task in a worker, kept to be raised in task order."""

    exc: BaseException


@contextlib.contextmanager
def heap_frozen():
    """The parent's objects moved out of the garbage collector's reach while workers are forked
    (:func:`gc.freeze`), and back afterwards (in the parent only).

    A forked worker then never walks the tens of thousands of objects it inherited (the imported
    modules) in its full collections, which cost about 0.05 s each and come several times per
    study, nor copies their memory pages by touching their GC headers. Leaving them frozen in the
    parent would keep its unreachable cycles alive, so they are unfrozen once the forks are done.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


#: a worker's youngest-generation collection threshold (CPython's default is 700 allocations). A
#: study's build allocates millions of short-lived containers on tiny pandas frames; at 700 the
#: collector runs about 600 times per study and its older generations follow. 10,000 keeps the
#: same collector (cycles are still freed, a little later) at a few dozen runs. Set only in
#: processes that live for one run (:func:`one_run_collector`): every worker, and the command
#: line's own process; a caller of the library (the tests, ``bench/run.py``) keeps its own.
WORKER_GC_THRESHOLD = (10_000, 10, 10)


def one_run_collector() -> None:
    """The collector thresholds of :data:`WORKER_GC_THRESHOLD` for this process, which lives for one
    run. ``python -m pipeline`` sets them before its imports: a parallel build's parent then
    imports and gates with them, and a build in the calling process (one study to build, as
    after a data transfer to one study, or ``--jobs 1``) runs as a worker does. There, with
    CPython's default of 700, the collector ran about 1,000 times for one 30-subject study
    (issue 14: NCT06316427 alone, 7.5 -> 6.2 s wall, same bytes; bench/results.md)."""
    gc.set_threshold(*WORKER_GC_THRESHOLD)


def worker_start() -> None:
    """Initialiser of every worker process: :func:`one_run_collector`."""
    one_run_collector()


def _context():
    """Fork where it exists (inherits the parent's imports); the platform default elsewhere."""
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def run_ordered(func: Callable, tasks: Sequence[tuple], jobs: int,
                on_result: Callable[[int, Captured | WorkerDied], None],
                meanwhile: Callable[[], None] | None = None, shared: Sequence[object] = ()) -> None:
    """Call ``func(*task)`` for every task with up to ``jobs`` processes.

    ``on_result(i, result)`` is called in the parent, in task order, as soon as task ``i`` and
    every task before it are done; ``result`` is a :class:`Captured` (whose output the callback
    replays) or a :class:`WorkerDied`. An exception raised by ``func`` in a worker is re-raised
    here, in task order (callers isolate ordinary failures inside ``func``). A task that answers
    :class:`Continue` is done when its last part is; ``on_result`` sees only that last answer,
    with what all its parts printed.

    ``meanwhile``: work of the parent's own (e.g. :func:`preload` for a later pool), done while
    the workers run instead of before them; without workers it is done first.

    ``shared``: task arguments (by identity) that forked workers take from what they inherited
    (:class:`Inherited`) rather than from a pickled copy; the parent must not change them while
    the pool runs. With another start method they are pickled as usual.
    """
    if jobs <= 1 or len(tasks) <= 1:
        if meanwhile:
            meanwhile()
        for i, task in enumerate(tasks):
            on_result(i, Captured(run_through(func, task)))
        return
    context = _context()
    if shared and context.get_start_method() == "fork":
        tasks = _by_inheritance(tasks, shared)
        _INHERITED.update({id(o): o for o in shared})
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context, initializer=worker_start) as pool:
            with heap_frozen():  # the first submit forks every worker
                running = {pool.submit(_captured_call, func, task): (i, func, task, None)
                           for i, task in enumerate(tasks)}
            if meanwhile:
                meanwhile()
            _collect(pool, running, on_result)
    finally:
        _INHERITED.clear()


def _collect(pool: ProcessPoolExecutor, running: dict[Future, tuple], on_result: Callable) -> None:
    """Wait for the ``running`` parts (future -> (task number, func, args, what earlier parts
    printed)); hand each :class:`Continue` to the pool as its next part; give the final answers
    to ``on_result`` in task order, as soon as every task before is done (see :func:`run_ordered`)."""
    final: dict[int, Captured | WorkerDied | _Raised] = {}
    reported = 0
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in sorted(finished, key=lambda f: running[f][0]):
            i, func, args, before = running.pop(fut)
            try:
                result = fut.result()
            except BrokenProcessPool:
                # a dead worker breaks the whole pool, so the parts it took down are run again,
                # each alone in a fresh process (with its later parts): only the task that kills
                # its process fails
                result = _alone(func, args)
            except BaseException as exc:  # noqa: BLE001 - raised in task order below
                result = _Raised(exc)
            if before is not None and isinstance(result, Captured):
                result = _joined(before, result)
            if isinstance(result, Captured) and isinstance(result.value, Continue):
                part = result.value
                try:
                    running[pool.submit(_captured_call, part.func, part.args)] = (i, part.func, part.args, result)
                    continue
                except (BrokenProcessPool, RuntimeError):  # the pool broke meanwhile: alone, as above
                    result = _joined(result, _alone(part.func, part.args))
            final[i] = result
        while reported in final:
            result = final.pop(reported)
            if isinstance(result, _Raised):
                raise result.exc
            on_result(reported, result)
            reported += 1


def _alone(func: Callable, task: tuple) -> Captured | WorkerDied:
    """Run one task (with all its later parts) in a process of its own; :class:`WorkerDied` if
    that process dies."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_context(), initializer=worker_start) as pool:
        try:
            with heap_frozen():
                future = pool.submit(_captured_call, func, task, True)
            return future.result()
        except BrokenProcessPool as exc:
            return WorkerDied(f"its worker process stopped unexpectedly ({exc or 'no detail'})")
