"""Atomic, deterministic file output for the build.

A study is built into a staging folder ``<out>/.staging-<STUDYID>-<pid>/`` beside its final
folder ``<out>/<STUDYID>/``. Only when every step succeeded is the staging folder swapped in:

1. the previous folder (if any) is renamed to ``<out>/.trash-<STUDYID>-<pid>``,
2. the staging folder is renamed to ``<out>/<STUDYID>``,
3. the trash folder is deleted.

Both renames are within one directory, so each is atomic on POSIX file systems; if step 2
fails the previous folder is renamed back. A failed build only removes its own staging
folder, so the previous outputs stay byte-identical.

Single report files outside a study folder (the gate reports, the output-check reports)
are written with :func:`write_bytes_atomic`: a temporary file in the same folder, then
``os.replace``.

Determinism: CSV is written with ``\\n`` line ends, UTF-8 without BOM, no index; text files
with ``\\n`` line ends; callers sort rows before writing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd


def staging_dir(out: Path, studyid: str) -> Path:
    """A fresh, empty staging folder for one study's build (removed first if left over)."""
    path = Path(out) / f".staging-{studyid}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def discard(path: Path) -> None:
    """Remove a staging folder (a failed build); missing is fine."""
    shutil.rmtree(path, ignore_errors=True)


def swap_in(staging: Path, target: Path) -> None:
    """Atomically replace ``target`` by ``staging`` (see module docstring)."""
    staging, target = Path(staging), Path(target)
    trash = target.parent / f".trash-{target.name}-{os.getpid()}"
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
        shutil.rmtree(trash, ignore_errors=True)


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
