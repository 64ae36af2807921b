"""Atomic, deterministic file output for the build.

A study is built into a staging folder ``<out>/.staging-<STUDYID>-<pid>/`` beside its final
folder ``<out>/<STUDYID>/``. Only when every step succeeded is the staging folder swapped in:

1. the previous folder (if any) is renamed to ``<out>/.trash-<STUDYID>-<pid>``,
2. the staging folder is renamed to ``<out>/<STUDYID>``,
3. the trash folder is deleted, in a background thread of the process (:func:`remove_later`).

Both renames are within one directory, so each is atomic on POSIX file systems; if step 2
fails the previous folder is renamed back. Step 3 runs in the background because deleting a
study's couple of hundred files takes about 0.4 s of wall time (little CPU) on a disk mounted with
``discard``: meanwhile the process builds its next study. A build's parent waits for its own
deletions at the end (:func:`wait_removals`, :func:`pipeline.build.run_build`); a worker
process's deletions end before the process does, since multiprocessing joins a child's
non-daemon threads before the child exits, and the pool waits for its workers. A failed build only removes its own staging
folder, so the previous outputs stay byte-identical.

Single report files outside a study folder (the gate reports, the output-check reports)
are written with :func:`write_bytes_atomic`: a temporary file in the same folder, then
``os.replace``.

Stale staging: a killed build leaves ``.staging-<STUDYID>-<pid>`` (or ``.trash-...``) behind.
:func:`remove_stale_staging` deletes those whose ``<pid>`` is no longer a running process; a
live build's folders are never touched.

Concurrency: :func:`out_lock` takes an exclusive, non-blocking ``flock`` on ``<out>/.build.lock``
for the whole build; a second build into the same ``--out`` stops at once with one clear line
(exit 2) instead of interleaving. The lock file is removed when the build ends.

Usage checks: :func:`prepare_out` refuses an ``--out`` that is a file or not writable before
any work starts (:class:`~pipeline.errors.OutputError`, exit 2).

Determinism: CSV is written with ``\\n`` line ends, UTF-8 without BOM, no index; text files
with ``\\n`` line ends; callers sort rows before writing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pipeline.errors import OutputError, output_error

LOCK_NAME = ".build.lock"
_LEFTOVER = re.compile(r"^\.(?:staging|trash|swapped)-.+-(\d+)$")


def prepare_out(out: Path) -> Path:
    """Create ``out`` if needed and check that it is a writable folder (else OutputError, exit 2)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; remove it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, "create the output folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out} is not writable; make it writable or choose another --out")
    return out


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (owned by anyone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out: Path) -> list[str]:
    """Delete ``.staging-*-<pid>``/``.trash-*-<pid>``/``.swapped-*-<pid>`` folders of processes that are gone.

    Returns the names removed. Folders of this process and of any live process stay.
    """
    out = Path(out)
    removed = []
    if not out.is_dir():
        return removed
    for p in sorted(out.iterdir()):  # loop over a few folder entries, not records
        m = _LEFTOVER.match(p.name)
        if not m or not p.is_dir() or p.is_symlink():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[Path]:
    """Hold ``<out>/.build.lock`` exclusively for the duration (see module docstring)."""
    path = Path(out) / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(exc, "create the build lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder else ""
                raise OutputError(f"another build{who} is writing into {out} (lock {path}); "
                                  "wait for it to finish or choose another --out") from None
            raise output_error(exc, "lock") from None
        # the file may have been removed by the previous holder between open and flock: retry
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def staging_dir(out: Path, studyid: str) -> Path:
    """A fresh, empty staging folder for one study's build (removed first if left over)."""
    path = Path(out) / f".staging-{studyid}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def swapped_mark(staging: Path) -> Path:
    """``<out>/.swapped-<STUDYID>-<pid>``: the empty folder a study's last part makes just before
    it swaps ``staging`` (``<out>/.staging-<STUDYID>-<pid>``) in. When a worker process dies,
    the pool it belongs to fails every part it has not answered yet, including one that had
    already swapped its folder in; run again, that part finds its staging folder gone and this
    mark, and knows it is done (:func:`pipeline.build.finish_study`). Removed with the stale
    staging folders once its process is gone (:func:`remove_stale_staging`)."""
    staging = Path(staging)
    return staging.parent / (".swapped-" + staging.name.removeprefix(".staging-"))


def discard(path: Path) -> None:
    """Remove a staging folder (a failed build); missing is fine."""
    shutil.rmtree(path, ignore_errors=True)


#: the folders this process is deleting in the background (:func:`remove_later`) -> the thread
_REMOVING: dict[Path, threading.Thread] = {}


def _remove_tree(path: Path) -> None:
    """Delete a folder and everything in it; what cannot be deleted stays."""
    shutil.rmtree(path, ignore_errors=True)


def remove_later(path: Path) -> None:
    """Delete the folder ``path`` in a background (non-daemon) thread; a failure leaves it for
    :func:`remove_stale_staging` of a later build. See :func:`wait_removals`."""
    path = Path(path)
    thread = threading.Thread(target=_remove_tree, args=(path,), name=f"remove {path.name}")
    _REMOVING[path] = thread
    thread.start()


def wait_removals(path: Path | None = None) -> None:
    """Wait until the background deletion of ``path`` (default: of every folder) has ended."""
    for p in [Path(path)] if path is not None else list(_REMOVING):  # a few folders
        thread = _REMOVING.pop(p, None)
        if thread is not None:
            thread.join()


def swap_in(staging: Path, target: Path) -> None:
    """Atomically replace ``target`` by ``staging``; the previous folder is deleted in the
    background (see module docstring)."""
    staging, target = Path(staging), Path(target)
    trash = target.parent / f".trash-{target.name}-{os.getpid()}"
    wait_removals(trash)  # the same study swapped in again by this process
    if trash.exists():
        shutil.rmtree(trash)
    had_previous = target.exists()
    if had_previous:
        os.rename(target, trash)
    try:
        os.rename(staging, target)
    except OSError:
        if had_previous:
            os.rename(trash, target)
        raise
    if had_previous:
        remove_later(trash)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """Deterministic CSV bytes of a frame (no index, ``\\n`` line ends, UTF-8)."""
    text = frame.to_csv(index=False, lineterminator="\n")
    return text.encode("utf-8")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as deterministic CSV, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(frame))


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with ``\\n`` line ends, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """:func:`write_csv`, atomically."""
    write_bytes_atomic(path, csv_bytes(frame))
