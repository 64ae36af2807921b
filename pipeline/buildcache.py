"""Reuse of a study's last build when none of its inputs changed (``build`` without ``--no-cache``).

A data manager reruns ``make sdtm`` after one study's data transfer; the other studies' inputs
did not change, so their outputs would come out byte-identical. This module decides, per study
and before any gating, whether the outputs already in ``<out>/<STUDYID>/`` are exactly what a
full build would write now, and keeps them if so.

**The key** of a study is a SHA-256 over, in this order (:func:`study_key`):

- the recipe version :data:`FORMAT`;
- what every study shares (:class:`Inputs`): the relative path and bytes of every file under
  ``--specs`` (all of it: any spec change may touch any study), of the project's own ``specs/``
  when it is another folder (the listings and the ADaM stage fall back to it), of every file of
  the ``pipeline`` package except ``__pycache__`` (code, templates, data tables), and of the
  domain, gate and hook modules the build is configured with when they live outside the
  package (the test doubles); the build configuration itself (domain registry, hooks, gate
  module: ``config``); the name and version of every installed distribution the pipeline
  requires, transitively (read from the installed pipeline's metadata, optional extras left
  out), the Python version and platform; ``SOURCE_DATE_EPOCH`` or its absence; ``--mode``;
- the study's own inputs: the relative path and bytes of every file under ``<raw>/<STUDYID>/``
  and, when the study TOML names one (``[coding] meddra_dir``), of its MedDRA distribution
  folder. The study TOML, its coding decisions and explanations are under ``--specs``.

Only file bytes are hashed (no pandas, no parsing): about 15 MB for the five shipped studies.

**The entry** ``<out>/.cache/<STUDYID>.json`` (:class:`Entry`) holds the key, the SHA-256 of the
study's ``manifest.csv``, and what the build writes outside the study folder or prints: the
study's gate result (findings, the checks that ran, forms and records read) for the combined
``<out>/gate/`` reports, the bytes of ``<out>/gate/<STUDYID>_build_findings.csv``, and the
dataset and warning counts of its one-line outcome. No paths, no clock: reruns write the same
entry. It lives outside the study folder, so the study's outputs and manifest never change.

**Reuse** (:func:`reusable`) needs all of: an entry of this format and study with the same key;
a ``manifest.csv`` with the recorded SHA-256; every file it lists present with its SHA-256 and
no other file, except those other commands add to a built folder from these very outputs
(:data:`pipeline.export.manifest.LATER_PREFIXES`: the CDISC CORE reports, the reviewer's guides'
drafts), which are kept. Only a study that built without errors (exit 0) gets an entry; it is
removed (:func:`forget`) before a study is gated and rebuilt and written (:func:`remember`) only
after the new folder was swapped in, so a crash in between leaves no entry, and an entry left
beside a folder it does not describe fails the manifest check. Anything else: a full build.

Without ``SOURCE_DATE_EPOCH`` a full build stamps Dataset-JSON with the current time; a reused
study keeps the creation time of the build that made it (its files were created then).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pipeline
from pipeline.export import manifest, writer

#: the folder of the entries inside ``--out``
FOLDER = ".cache"
#: version of the key recipe and of the entry layout: an entry of another version is never reused
FORMAT = 1
#: the pipeline's distribution (``[project] name`` in pyproject.toml)
DISTRIBUTION = "cart-sdtm-pipeline"
PACKAGE_ROOT = Path(pipeline.__file__).resolve().parent
#: the specification folder the package falls back to when ``--specs`` lacks a part
PROJECT_SPECS = PACKAGE_ROOT.parent / "specs"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha(path: Path) -> str:
    return manifest.sha256_file(path)


def _hash_tree(h, label: str, root: Path) -> None:
    """Feed ``label/relative path``, NUL, SHA-256 of the bytes of every file under ``root``
    (``__pycache__`` and ``*.pyc`` left out), sorted by path; or a line saying it is absent."""
    root = Path(root)
    if root.is_file():
        h.update(f"{label}\0{_sha(root)}\n".encode())
        return
    if not root.is_dir():
        h.update(f"{label} absent\n".encode())
        return
    files = []
    # a few hundred files, not records; linked folders are followed (a specs/ part may be a link)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        files += [Path(dirpath) / f for f in filenames if not f.endswith(".pyc")]
    rel = sorted((p.relative_to(root).as_posix(), p) for p in files)
    h.update(f"{label} {len(rel)} files\n".encode())
    for name, p in rel:
        h.update(f"{label}/{name}\0{_sha(p)}\n".encode())


def installed_versions(name: str = DISTRIBUTION) -> list[str] | None:
    """``name version`` of the pipeline's distribution and of every distribution it requires,
    transitively, from the installed metadata (optional extras left out; a required one that is
    not installed is listed as ``absent``). None when the pipeline's own metadata is missing."""
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        names = md.packages_distributions().get("pipeline") or []
        if not names:
            return None
        name = names[0]
    seen: dict[str, str] = {}
    todo = [name]
    while todo:  # a few dozen distributions
        n = _canonical(todo.pop())
        if n in seen:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            seen[n] = "absent"
            continue
        seen[n] = dist.version
        for req in dist.requires or []:
            marker = req.split(";", 1)[1] if ";" in req else ""
            m = _NAME.match(req)
            if m and "extra" not in marker:
                todo.append(m.group(1))
    return [f"{n} {v}" for n, v in sorted(seen.items())]


def _outside_package(modules: list[str]) -> list[Path]:
    """The folders (or files) of the top-level packages of ``modules`` that are not inside the
    pipeline package (test doubles configured into the build)."""
    found = []
    for top in sorted({m.split(".")[0] for m in modules if m}):
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        where = Path(list(spec.submodule_search_locations)[0]) if spec.submodule_search_locations else \
            Path(spec.origin) if spec.origin else None
        if where is None:
            continue
        where = where.resolve()
        if where != PACKAGE_ROOT and PACKAGE_ROOT not in where.parents:
            found.append(where)
    return found


@dataclass(frozen=True)
class Inputs:
    """The digest of what every study of one run shares (see the module docstring)."""

    digest: str

    @classmethod
    def of(cls, specs: Path, mode: str, config: str, modules: list[str]) -> Inputs | None:
        """None when the installed metadata cannot tell the versions (no reuse then)."""
        versions = installed_versions()
        if versions is None:
            return None
        h = hashlib.sha256()
        h.update(f"format {FORMAT}\n".encode())
        specs = Path(specs).resolve()
        _hash_tree(h, "specs", specs)
        if PROJECT_SPECS.resolve() != specs:
            _hash_tree(h, "project-specs", PROJECT_SPECS)
        _hash_tree(h, "pipeline", PACKAGE_ROOT)
        for i, where in enumerate(_outside_package(modules)):
            _hash_tree(h, f"module-{i}-{where.name}", where)
        h.update(f"config {config}\n".encode())
        for line in versions:
            h.update(f"dist {line}\n".encode())
        h.update(f"python {sys.version} {sys.implementation.cache_tag} {platform.machine()} {sys.byteorder}\n".encode())
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        h.update((f"SOURCE_DATE_EPOCH={epoch}" if epoch is not None else "SOURCE_DATE_EPOCH unset").encode() + b"\n")
        h.update(f"mode {mode}\n".encode())
        return cls(h.hexdigest())


def study_key(inputs: Inputs, raw: Path, study) -> str:
    """The key of one study: the shared digest, its raw folder, its MedDRA distribution folder."""
    from pipeline.rules import meddra

    h = hashlib.sha256()
    h.update(f"shared {inputs.digest}\nstudy {study.studyid}\n".encode())
    _hash_tree(h, "raw", Path(raw) / study.studyid)
    folder = meddra.distribution_folder(study)
    if folder is not None:
        _hash_tree(h, "meddra", folder)
    return h.hexdigest()


@dataclass
class Entry:
    """What a reused study needs besides its folder (see the module docstring)."""

    studyid: str
    key: str
    manifest_sha256: str
    #: gate findings as records (FINDING_COLUMNS), in the gate's order
    gate_findings: list[dict]
    #: (study, file, check) of every check that ran; None when the gate does not list them
    gate_executed: list[list[str]] | None
    #: names of the forms read and their records (the gate summary)
    gate_forms: list[str]
    gate_records: int
    build_findings_csv: str
    datasets: int
    warnings: int
    format: int = FORMAT


def entry_path(out: Path, studyid: str) -> Path:
    return Path(out) / FOLDER / f"{studyid}.json"


def forget(out: Path, studyid: str) -> None:
    """Remove a study's entry (before it is gated and built again)."""
    entry_path(out, studyid).unlink(missing_ok=True)


def _plain(value):
    """A JSON value of a finding cell: pandas' missing values become None, numpy scalars Python."""
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value


def findings_records(frame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def findings_frame(records: list[dict]):
    """The findings of :func:`findings_records` as a frame again: ``row`` as Int64 when every row
    is a whole number or missing (as the gate writes it), the other columns as stored."""
    import pandas as pd

    from pipeline.context import FINDING_COLUMNS

    frame = pd.DataFrame(records, columns=FINDING_COLUMNS)
    rows = frame["row"].tolist()
    if all(r is None or (isinstance(r, int) and not isinstance(r, bool)) for r in rows):
        frame["row"] = pd.array(rows, dtype="Int64")
    return frame


def remember(out: Path, entry: Entry) -> None:
    """Write the entry atomically (after the study folder was swapped in)."""
    data = json.dumps(asdict(entry), ensure_ascii=False, sort_keys=True, indent=1) + "\n"
    writer.write_bytes_atomic(entry_path(out, entry.studyid), data.encode("utf-8"))


def load(out: Path, studyid: str) -> Entry | None:
    """The stored entry of a study, or None (absent, unreadable, of another format or study)."""
    path = entry_path(out, studyid)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("studyid") != studyid:
            return None
        return Entry(**data)
    except (OSError, ValueError, TypeError):
        return None


def folder_matches(folder: Path, manifest_sha256: str) -> bool:
    """True when ``folder/manifest.csv`` has this SHA-256 and the folder holds exactly the files
    it lists, byte for byte (:func:`pipeline.export.manifest.verify_manifest`)."""
    folder = Path(folder)
    m = folder / manifest.MANIFEST
    try:
        if not m.is_file() or _sha(m) != manifest_sha256:
            return False
        return manifest.verify_manifest(folder) == []
    except (OSError, ValueError):
        return False


def reusable(out: Path, study, key: str) -> Entry | None:
    """The entry when the study's outputs in ``out`` can be kept as they are, else None."""
    entry = load(out, study.studyid)
    if entry is None or entry.key != key:
        return None
    if not folder_matches(Path(out) / study.studyid, entry.manifest_sha256):
        return None
    return entry
