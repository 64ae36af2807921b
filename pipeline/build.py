"""``python -m pipeline build``: gate, SDTM domains, output checks, export, define.xml, listings.

For each requested study (default: every ``specs/studies/*.toml``):

1. **Gate** (:func:`pipeline.intake.gate.gate_study`). The gate reports of all studies go to
   ``<out>/gate/`` (``gate_report.csv``, ``gate_report.html``, ``junit.xml``), written by the same
   writer as ``python -m pipeline validate``. A study with gate errors gets no output: its previous
   ``<out>/<STUDYID>/`` stays untouched, and the run exits 1 after the other studies.
2. **Domains**: every module of :data:`pipeline.domains.REGISTRY`, in order, with one
   :class:`~pipeline.context.StudyContext`; a module not in the tree yet is skipped with a log
   line. Datasets, reports, provenance, rejections and findings are merged. A module raising
   :class:`~pipeline.errors.DataError` fails the study with that message as a finding.
3. **Output checks** (:mod:`pipeline.export.checks`, pandera schemas generated from the spec)
   and **reconciliation** (:mod:`pipeline.export.reconcile`: every raw row consumed or rejected).
4. **Export** into ``<out>/.staging-<STUDYID>-<pid>/``: ``<ds>.xpt`` (v5) and ``<ds>.json``
   (Dataset-JSON v1.1) per dataset, ``reports/*.csv``, then the post-export hooks
   (:data:`POST_EXPORT_HOOKS`: define.xml, listings), ``build.log`` and ``manifest.csv``.
   The staging folder is then swapped in atomically (:func:`pipeline.export.writer.swap_in`).
   A failed build removes its staging folder and leaves the previous outputs byte-identical.

Findings of the build (domain findings, output checks, reconciliation) of every study that
reached step 2 are written to ``<out>/gate/<STUDYID>_build_findings.csv`` (gate columns,
errors first), whether the study failed or not; a successful build also keeps its warnings in
``<out>/<STUDYID>/reports/findings.csv``. Errors block the study (exit 1).

Reports in ``<out>/<STUDYID>/reports/``: one CSV per domain report (rows sorted),
``reconciliation.csv``, ``rejections.csv`` and ``findings.csv``.

Determinism: every file of ``<out>/<STUDYID>/`` is byte-identical on rerun with the same inputs,
software and ``SOURCE_DATE_EPOCH``; the XPT stamps are ``SOURCE_DATE_EPOCH`` or the study's
data cut-off; Dataset-JSON's creation time is ``SOURCE_DATE_EPOCH`` or the current time, its
``dbLastModifiedDateTime`` the data cut-off (:mod:`pipeline.export.datasetjson`). Wall-clock timings are shown only on stderr (progress), never written to a file.

Reuse (:mod:`pipeline.buildcache`): a study whose inputs did not change since its last
successful build keeps its outputs. Its key is a SHA-256 over its raw folder (and MedDRA folder),
every file under ``--specs``, the pipeline package's files, the installed versions of the
distributions it requires, the Python version, ``SOURCE_DATE_EPOCH`` and ``--mode``; the entry
``<out>/.cache/<STUDYID>.json`` records it with the study's gate result, its
``<STUDYID>_build_findings.csv`` and its outcome counts. When the key matches and the study folder
still matches its ``manifest.csv`` byte for byte, the study is neither gated nor built (no worker
process either): its recorded gate result goes into the combined gate reports, its build findings
file is restored, stderr says ``<STUDYID>: unchanged since the last build (inputs sha256 ...),
outputs kept in ...`` and stdout repeats the outcome line of the build that made it. Every file
under ``<out>`` is then byte-identical to what a full build writes (build.log included: the reuse
is said on stderr only). Files other commands add to a built folder later (CORE reports, the
guides' drafts) are kept; any other change of the folder means a full build. Only a study built
with exit 0 gets an entry, removed before the study is gated again and written after its folder
was swapped in. ``--no-cache`` (``--rebuild``) builds every study (and records fresh entries).

Exit codes: 0 clean, 1 data errors (gate, domains, output checks, reconciliation, a number
:mod:`pipeline.export.numeric_guard` refuses), 2 usage, configuration or output-folder errors
(:class:`~pipeline.errors.ConfigError`, :class:`~pipeline.errors.OutputError`: ``--out`` is a
file, not writable, full, or locked by another build), 3 an unexpected exception in one study
(:func:`isolated_build`: reported on that study's line, the other studies are built).

Domain-incomplete trees (a development aid, off by default): :data:`LENIENT_MISSING_MODULES`
(study-independent) makes a form whose rows no module accounted for a *warning*
``not mapped (module missing: ...)`` instead of errors, when the module that maps it is absent.
A form's mapping module is the registry module of the same name (``ae`` form -> ``ae`` module);
a form without a same-named module (e.g. ``crs``) is lenient while any registry module is absent.
Once the module exists, unaccounted rows are errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import pipeline
from pipeline import buildcache, parallel
from pipeline.config import Study, raw_folder, selected_studies
from pipeline.context import (CONSUMED_COLUMNS, FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, FindingCounts,
                              StudyContext, empty)
from pipeline.derive import visits
from pipeline.domains import AFTER_VISITS, REGISTRY
from pipeline.errors import ConfigError, DataError, PipelineError, output_error
from pipeline.rules import ctcae_lab
from pipeline.export import checks, datasetjson, manifest, numeric_guard, reconcile, writer, xpt
from pipeline.progress import BuildLog, Progress
from pipeline.spec import Spec, load_spec

#: forms whose mapping module is absent give a warning, not errors (see module docstring)
LENIENT_MISSING_MODULES = False  # every form has its module now: an unmapped row is an error
DOMAIN_PACKAGE = "pipeline.domains"
#: the raw-extract gate: ``gate_study(raw_dir, study, spec) -> (forms, findings)``
GATE_MODULE = "pipeline.intake.gate"
#: report names the build writes itself (a domain report may not use them)
RESERVED_REPORTS = {"reconciliation", "rejections", "findings"}
#: relationship datasets that several domain modules may each contribute records to (SDTMIG 3.4 8.2)
SHARED_DATASETS = frozenset({"RELREC"})
_REPORT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Hook:
    """A post-export step from a teammate's module, called if the module is in the tree.

    ``args`` names what the function receives, in order, from: ``study_dir`` (the staging
    folder; write only inside it), ``datasets`` (name -> frame as exported: spec variables in
    spec order, rows in key order), ``reports`` (name -> frame) and ``ctx`` (the study's
    :class:`StudyContext`, ``ctx.datasets`` = the exported frames).

    ``separate``: the hook and those after it may run as the study's second part, in another
    worker process (:class:`Unfinished`). Such a hook reads only its arguments, the staging
    folder and, of ``ctx``, the study, the spec, ``datasets``, ``reports`` and ``adam``: never
    the raw forms, nor anything an earlier hook left elsewhere.
    """

    name: str
    module: str
    function: str
    args: tuple[str, ...]
    separate: bool = False


#: post-export hooks, in order. To add one, add a line here and put the module in the tree.
POST_EXPORT_HOOKS: list[Hook] = [
    # ADaM stage: reads the exported SDTM frames, writes <study>/adam/ (pipeline.adam.stage)
    Hook("adam", "pipeline.adam.stage", "build_adam", ("study_dir", "datasets", "reports", "ctx")),
    # annotated CRF (acrf.pdf, acrf.html); define.xml points into it from the same layout
    Hook("acrf", "pipeline.package.acrf", "write_acrf", ("study_dir", "ctx")),
    Hook("define", "pipeline.export.define", "write_define", ("study_dir", "datasets", "ctx")),
    # tables, listings and figures: the longest hook; in a parallel build the last studies run it as
    # their second part, in whichever worker is free (split_tasks), so that no core waits at the end
    Hook("listings", "pipeline.report.listings", "write_listings", ("study_dir", "datasets", "reports", "ctx"),
         separate=True),
]


def module_available(name: str) -> bool:
    """True when a module exists in the tree (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@dataclass
class Merged:
    """Everything the domain modules of one study returned, merged."""

    datasets: dict[str, pd.DataFrame] = field(default_factory=dict)
    reports: dict[str, pd.DataFrame] = field(default_factory=dict)
    consumed: list[pd.DataFrame] = field(default_factory=list)
    rejected: list[pd.DataFrame] = field(default_factory=list)
    findings: list[pd.DataFrame] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # dataset -> module
    failed: str = ""  # the module that raised DataError, if any


def _finding(studyid: str, file: str, check: str, message: str, severity: str = "error", column: str = "") -> pd.DataFrame:
    return pd.DataFrame([{"study": studyid, "file": file, "row": "", "column": column, "value": "", "check": check,
                          "severity": severity, "message": message}], columns=FINDING_COLUMNS)


def _frame(df, columns: list[str]) -> pd.DataFrame:
    if df is None or len(df) == 0:
        return empty(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"a domain result lacks columns {', '.join(missing)}")
    return df[columns]


def add_dataset(datasets: dict[str, pd.DataFrame], name: str, frame: pd.DataFrame) -> bool:
    """Put one module's dataset into ``datasets``; False when another module already built it.

    A dataset of :data:`SHARED_DATASETS` (RELREC: one per study, SDTMIG 3.4 8.2) is appended
    to instead, because several domains contribute relationship records to it.
    """
    if name in datasets:
        if name not in SHARED_DATASETS:
            return False
        datasets[name] = pd.concat([datasets[name], frame], ignore_index=True)
    else:
        datasets[name] = frame
    return True


def run_domains(ctx: StudyContext, log: BuildLog, progress: Progress | None = None,
                registry: list[str] | None = None, package: str | None = None,
                into: Merged | None = None) -> Merged:
    """Run every registry module in order on ``ctx`` and merge what they return.

    ``ctx.datasets``/``ctx.reports`` grow as modules finish (a module sees those before it).
    ``into``: continue merging into an earlier result (the :data:`AFTER_VISITS` modules); when a
    module of that earlier run failed, the new modules are not run.
    """
    sid = ctx.study.studyid
    merged = into if into is not None else Merged()
    package = package or DOMAIN_PACKAGE
    if into is None:
        log.section("domains")
    failed = merged.failed
    for name in (registry if registry is not None else REGISTRY):
        if failed:
            log.add(f"{name}: not run ({failed} failed)")
            if progress:
                progress.step(name, "not run")
            continue
        modname = f"{package}.{name}"
        if not module_available(modname):
            log.add(f"{name}: skipped (module {modname} not in the tree yet)")
            if progress:
                progress.step(name, "skipped")
            continue
        module = importlib.import_module(modname)
        try:
            result = module.build(ctx)
        except DataError as exc:
            merged.findings.append(_finding(sid, name, "domain_error", f"{name}: {exc}"))
            log.add(f"{name}: FAILED: {exc}")
            failed = merged.failed = name
            if progress:
                progress.step(name, "FAILED")
            continue
        if not isinstance(result, DomainResult):
            raise DataError(f"domain module {modname}.build returned {type(result).__name__}, not DomainResult")
        made = []
        for ds, frame in result.datasets.items():
            appended = ds in merged.datasets
            if not add_dataset(merged.datasets, ds, frame):
                merged.findings.append(_finding(sid, ds, "dataset_twice",
                                                f"{ds} is built by both {merged.origin[ds]} and {name}"))
                continue
            merged.origin[ds] = f"{merged.origin[ds]}+{name}" if appended else name
            ctx.datasets[ds] = merged.datasets[ds]
            made.append(f"{ds}(+{len(frame)})" if appended else f"{ds}({len(frame)})")
        ctx.derived.update(result.derived)
        for rep, frame in result.reports.items():
            if rep in merged.reports or rep in RESERVED_REPORTS or not _REPORT_NAME.match(rep):
                merged.findings.append(_finding(sid, name, "report_name",
                                                f"{name}: report name {rep!r} is reserved, repeated or not snake_case"))
                continue
            merged.reports[rep] = frame
            ctx.reports[rep] = frame
        try:
            merged.consumed.append(_frame(result.consumed, CONSUMED_COLUMNS))
            merged.rejected.append(_frame(result.rejected, REJECTED_COLUMNS))
            merged.findings.append(_frame(result.findings, FINDING_COLUMNS))
        except DataError as exc:
            merged.findings.append(_finding(sid, name, "domain_result", f"{name}: {exc}"))
        log.add(f"{name}: datasets {' '.join(made) or '-'}; reports {' '.join(sorted(result.reports)) or '-'}; "
                f"consumed {len(result.consumed)}; rejected {len(result.rejected)}; findings {len(result.findings)}")
        if progress:
            progress.step(name)
    return merged


def unmapped_forms(forms: list[str], registry: list[str] | None = None, package: str | None = None) -> dict[str, str]:
    """Forms whose unaccounted rows are warnings for now (see :data:`LENIENT_MISSING_MODULES`)."""
    if not LENIENT_MISSING_MODULES:
        return {}
    package = package or DOMAIN_PACKAGE
    registry = registry if registry is not None else REGISTRY
    missing = [m for m in registry if not module_available(f"{package}.{m}")]
    if not missing:
        return {}
    out = {}
    for form in forms:
        if form in registry:
            if form in missing:
                out[form] = f"module missing: {form}"
        else:
            out[form] = f"module missing: one of {', '.join(missing)}"
    return out


def _sorted_report(frame: pd.DataFrame) -> pd.DataFrame:
    """A report's rows in a stable order (all columns, left to right)."""
    if frame.empty or not len(frame.columns):
        return frame.reset_index(drop=True)
    try:
        return frame.sort_values(list(frame.columns), kind="mergesort", na_position="last").reset_index(drop=True)
    except TypeError:
        keys = frame.astype(str)
        return frame.loc[keys.sort_values(list(keys.columns), kind="mergesort").index].reset_index(drop=True)


def _versions() -> list[str]:
    def v(mod: str) -> str:
        try:
            return importlib.import_module(mod).__version__
        except (ImportError, AttributeError):
            return "not installed"
    return [f"python {platform.python_version()}", f"{datasetjson.SOURCE_SYSTEM} {pipeline.__version__}",
            *[f"{m} {v(m)}" for m in ("pandas", "numpy", "pandera", "pyreadstat", "openpyxl", "lxml")]]


def _spec_digest(spec: Spec, study: Study) -> str:
    """SHA-256 over the spec files (paths and contents) and the study parameter file."""
    import hashlib

    h = hashlib.sha256()
    root = Path(spec.root)
    files = sorted(p for sub in ("sdtm", "adam", "raw", "rules") for p in (root / sub).rglob("*") if p.is_file())
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + manifest.sha256_file(p).encode() + b"\n")
    h.update(b"studies/" + study.path.name.encode() + b"\0" + manifest.sha256_file(study.path).encode())
    return h.hexdigest()


def log_inputs(log: BuildLog, raw_dir: Path, study: Study, spec: Spec, forms: dict[str, pd.DataFrame],
               mode: str = "final") -> None:
    """Inputs, software and spec versions (no paths outside the study, no times)."""
    sid = study.studyid
    log.add(f"study {sid}: {study.get('title', '')}")
    log.add(f"data cut-off {study.data_cutoff}")
    log.add(f"build mode {mode}" + (" (open coding queries are warnings; not for submission)" if mode != "final"
                                     else " (an uncoded verbatim AE term is an error)"))
    log.section("software")
    for line in _versions():
        log.add(line)
    log.section("specification")
    for k, val in spec.standards.items():
        log.add(f"{k} = {val}")
    log.add(f"study parameters studies/{study.path.name} sha256 {manifest.sha256_file(study.path)}")
    meddra_dir = (study.get("coding", {}) or {}).get("meddra_dir")
    log.add(f"MedDRA {spec.standards.get('meddra_version', '')}: "
            + (f"distribution {Path(str(meddra_dir)).name} ([coding] meddra_dir)" if meddra_dir
               else "no distribution configured; CTCAE v5.0 fallback coding (AEHLT/AEHLGT empty)"))
    coding = Path(study.path).with_name(f"{sid}.coding.csv")
    log.add(f"coding decisions studies/{coding.name} sha256 {manifest.sha256_file(coding)}" if coding.is_file()
            else f"coding decisions: none (studies/{coding.name} absent)")
    log.add(f"specification digest {_spec_digest(spec, study)}")
    log.section("inputs")
    rows_by_file: dict[str, int] = {}
    for df in forms.values():
        if "_FILE" in df and len(df):
            for f, n in df["_FILE"].astype(str).value_counts().items():
                rows_by_file[f] = rows_by_file.get(f, 0) + int(n)
    folder = Path(raw_dir) / sid
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
    for p in files:
        rows = rows_by_file.get(p.name)
        what = f"{rows} rows" if rows is not None else "not read"
        log.add(f"{sid}/{p.name} sha256 {manifest.sha256_file(p)} {what}")


def _call_hook(hook: Hook, values: dict) -> None:
    func: Callable = getattr(importlib.import_module(hook.module), hook.function)
    func(*[values[a] for a in hook.args])


@dataclass
class Unfinished:
    """A study written into its staging folder but for its last hooks (from the first
    :attr:`Hook.separate` one on), which :func:`finish_study` runs, maybe in another worker
    process: what those hooks read (see :class:`Hook`) and what the end of the build needs (its
    log so far, the dataset shapes for the manifest, the findings and the progress steps done)."""

    study: Study
    mode: str
    staging: Path
    hooks: list[Hook]
    datasets: dict[str, pd.DataFrame]
    reports: dict[str, pd.DataFrame]
    ctx_reports: dict[str, pd.DataFrame]
    adam: dict[str, pd.DataFrame]
    log: BuildLog
    shapes: dict[str, tuple[int, int]]
    steps_done: int = 0
    #: the build's findings so far, set by :func:`_staged` (export does not know them)
    findings: pd.DataFrame | None = None

    def values(self, spec: Spec) -> dict:
        """The hooks' arguments (:class:`Hook`), with the worker's own ``spec`` on ``ctx``."""
        ctx = StudyContext(study=self.study, spec=spec, forms={}, datasets=dict(self.datasets),
                           reports=self.ctx_reports, adam=self.adam, mode=self.mode)
        return {"study_dir": self.staging, "datasets": self.datasets, "reports": self.reports, "ctx": ctx}


def run_hooks(hooks: list[Hook], values: dict, log: BuildLog, progress: Progress | None = None) -> None:
    """Call each post-export hook whose module is in the tree, in order, and log it."""
    for hook in hooks:
        if not module_available(hook.module):
            log.add(f"{hook.name}: skipped ({hook.module} not in the tree yet)")
            if progress:
                progress.step(hook.name, "skipped")
            continue
        _call_hook(hook, values)
        log.add(f"{hook.name}: {hook.module}.{hook.function} done")
        if progress:
            progress.step(hook.name)


def finish_export(staging: Path, values: dict, hooks: list[Hook], log: BuildLog, shapes: dict[str, tuple[int, int]],
                  progress: Progress | None = None) -> None:
    """The last ``hooks``, then ``build.log`` and ``manifest.csv``: the end of a study's outputs."""
    run_hooks(hooks, values, log, progress)
    writer.write_text(staging / "build.log", log.text())
    manifest.write_manifest(staging, shapes)
    if progress:
        progress.step("manifest")


def export_study(staging: Path, ctx: StudyContext, ordered: dict[str, pd.DataFrame], merged: Merged,
                 recon: pd.DataFrame, rejections: pd.DataFrame, warnings: pd.DataFrame, log: BuildLog,
                 progress: Progress | None = None, hooks: list[Hook] | None = None,
                 split: bool = False) -> Unfinished | None:
    """Write every output of one study into ``staging`` (which becomes ``<out>/<STUDYID>/``).

    ``split``: stop before the first :attr:`Hook.separate` hook and return the rest as an
    :class:`Unfinished` (its ``findings`` are the caller's to set); otherwise finish and return None."""
    study, spec = ctx.study, ctx.spec
    sid = study.studyid
    stamp = xpt.build_timestamp(study.data_cutoff)
    # Dataset-JSON: created now (or at SOURCE_DATE_EPOCH); source data as of the cut-off
    created, db_modified = xpt.creation_time(), xpt.cutoff_time(study.data_cutoff)
    originator = str(study.get("sponsor", "")) or sid
    shapes: dict[str, tuple[int, int]] = {}
    exported: dict[str, pd.DataFrame] = {}
    log.section("datasets")
    for name in sorted(ordered):
        codes: dict = {}  # the character columns factorised once for both files
        out = xpt.write_xpt(ordered[name], spec, name, staging / xpt.xpt_name(name), stamp, factorized=codes)
        datasetjson.write_dataset_json(out, spec, name, staging / datasetjson.json_name(name), sid, originator,
                                       created, db_modified, exported=True, factorized=codes)
        exported[name] = out
        shapes[xpt.xpt_name(name)] = shapes[datasetjson.json_name(name)] = out.shape
        log.add(f"{name}: {len(out)} records, {len(out.columns)} variables (module {merged.origin.get(name, '?')})")
    if progress:
        progress.step("export")
    reports_dir = staging / "reports"
    log.section("reports")
    for rep in sorted(merged.reports):
        frame = _sorted_report(merged.reports[rep])
        writer.write_csv(frame, reports_dir / f"{rep}.csv")
        log.add(f"reports/{rep}.csv: {len(frame)} rows")
    writer.write_csv(recon, reports_dir / "reconciliation.csv")
    writer.write_csv(rejections, reports_dir / "rejections.csv")
    writer.write_csv(warnings, reports_dir / "findings.csv")
    log.add(f"reports/reconciliation.csv: {len(recon)} rows; reports/rejections.csv: {len(rejections)} rows; "
            f"reports/findings.csv: {len(warnings)} warnings")
    ctx.datasets = dict(exported)
    values = {"study_dir": staging, "datasets": exported, "reports": dict(merged.reports), "ctx": ctx}
    log.section("post-export hooks")
    hooks = list(hooks if hooks is not None else POST_EXPORT_HOOKS)
    cut = next((k for k, h in enumerate(hooks) if h.separate), len(hooks)) if split else len(hooks)
    run_hooks(hooks[:cut], values, log, progress)
    if cut < len(hooks):
        return Unfinished(study=ctx.study, mode=ctx.mode, staging=staging, hooks=hooks[cut:], datasets=exported,
                          reports=values["reports"], ctx_reports=ctx.reports, adam=ctx.adam, log=log, shapes=shapes,
                          steps_done=progress.done if progress else 0)
    finish_export(staging, values, [], log, shapes, progress)
    return None


@dataclass
class StudyBuild:
    """Outcome of one study's build."""

    studyid: str
    ok: bool
    findings: pd.DataFrame
    message: str = ""
    #: the study's last part, still to run (:func:`finish_study`), when it was built with ``split``
    unfinished: Unfinished | None = None


def build_study(study: Study, spec: Spec, forms: dict[str, pd.DataFrame], raw_dir: Path, out: Path,
                progress: Progress | None = None, registry: list[str] | None = None,
                package: str | None = None, hooks: list[Hook] | None = None, mode: str = "final",
                split: bool = False) -> StudyBuild:
    """Domains, checks, reconciliation and export of one gated study, into ``out/<STUDYID>``.
    ``mode``: ``final`` or ``draft`` (:data:`pipeline.context.BUILD_MODES`). ``split``: the
    :attr:`Hook.separate` hooks are left to :func:`finish_study` (``StudyBuild.unfinished``), and
    the study stays in its staging folder until then.

    Never leaves a half-written study folder: on any failure the staging folder is removed.
    """
    sid = study.studyid
    spec = ctcae_lab.with_study_version(spec, study)  # the study's CTCAE version in every text that states it
    log = BuildLog()
    log_inputs(log, raw_dir, study, spec, forms, mode)
    ctx = StudyContext(study=study, spec=spec, forms=forms, mode=mode)
    merged = run_domains(ctx, log, progress, registry, package)
    # one VISITNUM per unscheduled visit (subject and date) across every domain
    merged.datasets = visits.renumber_unscheduled(merged.datasets, study)
    ctx.datasets.update(merged.datasets)
    if registry is None:  # SV and the like read the final VISITNUMs of every domain
        run_domains(ctx, log, progress, AFTER_VISITS, package, into=merged)
    ordered = {}
    found = list(merged.findings)
    specified = checks.specified_datasets(spec)
    for name, frame in merged.datasets.items():
        if name in specified:
            ordered[name] = checks.order_dataset(frame, spec, name)
        else:
            ordered[name] = frame.reset_index(drop=True)
    found.append(checks.check_datasets(ordered, spec, sid))
    # no writer may see a non-finite or out-of-IBM-range number (issue 11)
    found.append(numeric_guard.numeric_findings(ordered, spec, sid))
    if progress:
        progress.step("checks")
    consumed = pd.concat(merged.consumed, ignore_index=True) if merged.consumed else empty(CONSUMED_COLUMNS)
    rejected = pd.concat(merged.rejected, ignore_index=True) if merged.rejected else empty(REJECTED_COLUMNS)
    recon, rejections, recon_findings = reconcile.reconcile(
        forms, consumed, rejected, merged.datasets, sid, unmapped_forms(list(forms), registry, package))
    found.append(recon_findings)
    findings = checks.sort_findings(checks.concat_findings(found))
    errors = findings[findings["severity"] == "error"]
    log.section("checks")
    log.add(f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)")
    if progress:
        progress.step("reconciliation")
    if len(errors):
        return StudyBuild(sid, False, findings, f"{len(errors)} error(s) in domains, output checks or reconciliation")
    staging = writer.staging_dir(out, sid)

    def export() -> Unfinished | None:
        return export_study(staging, ctx, ordered, merged, recon, rejections,
                            findings[findings["severity"] != "error"].reset_index(drop=True), log, progress, hooks,
                            split)
    return _staged(staging, out / sid, findings, export)


def finish_study(unfinished: Unfinished, spec: Spec, out: Path, progress: Progress | None = None) -> StudyBuild:
    """The last part of a study built with ``split`` (:func:`build_study`): its remaining hooks,
    ``build.log`` and the manifest, then the staging folder swapped in; on any failure it is
    removed, as in :func:`build_study`. ``spec``: the run's specification (the study's CTCAE
    version is applied here again, from the same memo)."""
    u = unfinished
    if not Path(u.staging).is_dir() and writer.swapped_mark(u.staging).is_dir():
        # this part already ran to its end and swapped its folder in, in a worker whose answer
        # was lost when another worker died and broke the pool (pipeline.parallel runs it again)
        return StudyBuild(u.study.studyid, True, u.findings)
    spec = ctcae_lab.with_study_version(spec, u.study)
    if progress:
        progress.done = u.steps_done
    return _staged(u.staging, Path(out) / u.study.studyid, u.findings,
                   lambda: finish_export(u.staging, u.values(spec), u.hooks, u.log, u.shapes, progress), mark=True)


def _staged(staging: Path, target: Path, findings: pd.DataFrame, work: Callable[[], Unfinished | None],
            mark: bool = False) -> StudyBuild:
    """Run ``work`` (which writes into ``staging``); swap the folder in when it is finished, keep it
    for the study's next part when ``work`` returns an :class:`Unfinished` (which then carries
    ``findings``), and remove it on any failure: a :class:`PipelineError` becomes a failed
    :class:`StudyBuild`; an OS error (disk full, permission lost) exit 2 naming the path.
    ``mark``: leave :func:`pipeline.export.writer.swapped_mark` just before the swap (a study's
    last part, which a broken pool may run again after it finished)."""
    sid = target.name
    try:
        unfinished = work()
        if unfinished is not None:
            unfinished.findings = findings
            return StudyBuild(sid, True, findings, unfinished=unfinished)
        if mark:  # a study's last part: see writer.swapped_mark
            writer.swapped_mark(staging).mkdir(exist_ok=True)
        writer.swap_in(staging, target)
    except PipelineError as exc:
        writer.discard(staging)
        f = checks.concat_findings([findings, _finding(sid, "export", "export", str(exc))])
        return StudyBuild(sid, False, checks.sort_findings(f), str(exc))
    except OSError as exc:  # disk full, permission lost mid-build: exit 2 naming the path
        writer.discard(staging)
        raise output_error(exc) from None
    except BaseException:
        writer.discard(staging)
        raise
    return StudyBuild(sid, True, findings)


def _gate_failure(study: Study, exc: Exception) -> pd.DataFrame:
    """One error finding for a study whose gate raised unexpectedly (the other studies go on)."""
    return _finding(study.studyid, "gate", "gate_failure",
                    f"the gate stopped on an unexpected problem ({type(exc).__name__}: {exc}); "
                    "this is a pipeline defect, re-run with --debug for the traceback")


def _failed_gate(gate_mod, study: Study, exc: Exception):
    return gate_mod.GateResult(study, {}, _gate_failure(study, exc), pd.DataFrame(columns=["study", "file", "check"]))


def _gate_one(raw: Path, study: Study, spec: Spec, debug: bool):
    """Gate one study (in a worker process when ``--jobs`` > 1); an unexpected failure becomes a
    ``gate_failure`` finding of that study only."""
    gate_mod = importlib.import_module(GATE_MODULE)
    try:
        return gate_mod.gate_detail(raw, study, spec)
    except PipelineError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolate one study's failure
        if debug:
            raise
        return _failed_gate(gate_mod, study, exc)


@dataclass
class KeptGate(FindingCounts):
    """The gate result of a study whose outputs are kept (:mod:`pipeline.buildcache`), as its
    cache entry recorded it: what :func:`_gate` and the gate reports read of a ``GateResult``."""

    study: Study
    forms: list[str]
    findings: pd.DataFrame
    executed: pd.DataFrame
    records: int

    @classmethod
    def of(cls, study: Study, entry: buildcache.Entry) -> KeptGate:
        executed = pd.DataFrame(entry.gate_executed or [], columns=["study", "file", "check"])
        return cls(study, list(entry.gate_forms), buildcache.findings_frame(entry.gate_findings), executed,
                   int(entry.gate_records))


def _gate(raw: Path, studies: list[Study], spec: Spec, out: Path,
          progress: dict[str, Progress] | None = None,
          debug: bool = False, jobs: int = 1, kept: dict[str, KeptGate] | None = None,
          detail: dict | None = None, meanwhile: Callable[[], None] | None = None) -> dict[str, tuple[dict, pd.DataFrame]]:
    """Gate every study and write the gate reports to ``out/gate`` (same writer as ``validate``).

    A study whose gate raises anything but a :class:`PipelineError` gets one ``gate_failure``
    error finding and is not built; the other studies are gated as usual. With ``jobs`` > 1
    the studies are gated in worker processes (:mod:`pipeline.parallel`); the reports are the same.
    ``kept``: studies whose outputs are reused (not gated again; their recorded gate result goes
    into the reports in its place, so the reports are those of a full run). ``detail``: filled
    with ``STUDYID -> (findings, executed or None, form names, records)`` of the studies gated,
    for their cache entries. ``meanwhile``: the parent's own work, done while the workers gate
    (:func:`pipeline.parallel.run_ordered`). Returns ``STUDYID -> (forms, findings)`` of the studies gated.
    """
    gate_mod = importlib.import_module(GATE_MODULE)
    results = {}
    progress = progress or {}
    kept = kept or {}
    detail = detail if detail is not None else {}
    to_gate = [s for s in studies if s.studyid not in kept]

    def done(sid: str) -> None:
        if sid in progress:
            progress[sid].step("gate")

    if hasattr(gate_mod, "gate_detail"):
        details = []

        def gated(i: int, result) -> None:
            s = to_gate[i]
            if isinstance(result, parallel.WorkerDied):
                details.append(_failed_gate(gate_mod, s, result))
            else:
                result.replay()
                details.append(result.value)
            done(s.studyid)

        parallel.run_ordered(_gate_one, [(raw, s, spec, debug) for s in to_gate], jobs, gated, meanwhile, shared=(spec,))
        for d in details:
            results[d.study.studyid] = (d.forms, d.findings)
            detail[d.study.studyid] = (d.findings, d.executed, list(d.forms), d.records)
        by_id = {d.study.studyid: d for d in details}
        details = [kept[s.studyid] if s.studyid in kept else by_id[s.studyid] for s in studies]  # study order
        try:
            from pipeline.intake import report

            findings = pd.concat([d.findings for d in details], ignore_index=True)
            executed = pd.concat([d.executed for d in details], ignore_index=True)
            report.write_reports(out / "gate", findings, gate_mod.summary_frame(details), executed)
        except (ImportError, AttributeError):
            writer.write_csv_atomic(checks.sort_findings(findings), out / "gate" / "gate_report.csv")
    else:
        if meanwhile:
            meanwhile()
        for s in to_gate:
            try:
                results[s.studyid] = gate_mod.gate_study(raw, s, spec)
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001 - isolate one study's failure
                if debug:
                    raise
                results[s.studyid] = ({}, _gate_failure(s, exc))
            forms, found = results[s.studyid]
            detail[s.studyid] = (found, None, list(forms), int(sum(len(df) for df in forms.values())))
            done(s.studyid)
        findings = checks.concat_findings([kept[s.studyid].findings if s.studyid in kept else results[s.studyid][1]
                                           for s in studies])
        writer.write_csv_atomic(checks.sort_findings(findings), out / "gate" / "gate_report.csv")
    return results


def findings_report_path(out: Path, studyid: str) -> Path:
    return Path(out) / "gate" / f"{studyid}_build_findings.csv"


def _dataset_count(folder: Path) -> int:
    return sum(1 for p in Path(folder).glob("*.xpt"))


def built_line(out: Path, sid: str, n_datasets: int, warnings: int) -> str:
    """The one-line outcome (stdout) of a study whose outputs are in ``out/<sid>``."""
    return (f"{sid}: built {n_datasets} dataset(s) into {out / sid}"
            + (f" ({warnings} warning(s), see {findings_report_path(out, sid)})" if warnings else ""))


def build_and_report(study: Study, spec: Spec, forms: dict, gate_findings: pd.DataFrame, raw: Path, out: Path,
                     progress: Progress | None, mode: str = "final", split: bool = False) -> int | Unfinished:
    """Build one gated study and print its one-line outcome; returns its exit code (0 or 1).
    With ``split``, a study whose last part is still to run returns its :class:`Unfinished`
    instead (:func:`finish_and_report` reports it)."""
    sid = study.studyid
    n_gate_errors = int((gate_findings["severity"] == "error").sum()) if len(gate_findings) else 0
    if n_gate_errors:
        findings_report_path(out, sid).unlink(missing_ok=True)
        print(f"{sid}: not built: {n_gate_errors} gate error(s), see {out / 'gate' / 'gate_report.csv'} "
              f"(previous {out / sid} left untouched)", file=sys.stderr)
        return 1
    result = build_study(study, spec, forms, raw, out, progress, mode=mode, split=split)
    if result.unfinished is not None:
        return result.unfinished
    return report_build(result, out)


def finish_and_report(unfinished: Unfinished, spec: Spec, out: Path, progress: Progress | None) -> int:
    """The last part of a study (:func:`finish_study`) and its one-line outcome; its exit code."""
    return report_build(finish_study(unfinished, spec, out, progress), out)


def report_build(result: StudyBuild, out: Path) -> int:
    """Write a finished build's findings report and print its one-line outcome; its exit code."""
    sid = result.studyid
    from pipeline.intake.report import truncate_findings

    writer.write_csv_atomic(truncate_findings(result.findings), findings_report_path(out, sid))
    if result.ok:
        print(built_line(out, sid, _dataset_count(out / sid), len(result.findings)))
        return 0
    errs = result.findings[result.findings["severity"] == "error"]
    print(f"{sid}: NOT built: {result.message}; see {findings_report_path(out, sid)} "
          f"(previous {out / sid} left untouched)", file=sys.stderr)
    for e in errs.head(5).to_dict("records"):
        where = f" row {e['row']}" if str(e["row"]) not in ("", "nan") else ""
        print(f"    {e['file']}{where} {e['column']}: {e['message']} [{e['check']}]", file=sys.stderr)
    if len(errs) > 5:
        print(f"    ... and {len(errs) - 5} more error(s)", file=sys.stderr)
    return 1


#: exit code of a study whose build raised an unexpected exception (a pipeline defect)
UNEXPECTED_EXIT = 3


def isolated_build(study: Study, out: Path, func: Callable[[], int | Unfinished], debug: bool = False) -> int | Unfinished:
    """Run one study's build; its failure is reported on one line and never stops the others.

    :class:`PipelineError` (data, input, output problems) -> its exit code; an OS error while
    writing -> exit 2 naming the path; anything else -> a ``build_failure`` error finding in
    ``<out>/gate/<STUDYID>_build_findings.csv`` and exit :data:`UNEXPECTED_EXIT`.
    The study's previous output folder stays untouched in every case (see :func:`build_study`).
    """
    sid = study.studyid
    try:
        return func()
    except PipelineError as exc:
        print(f"{sid}: NOT built: {exc} (previous {out / sid} left untouched)", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        err = output_error(exc)
        print(f"{sid}: NOT built: {err} (previous {out / sid} left untouched)", file=sys.stderr)
        return err.exit_code
    except Exception as exc:  # noqa: BLE001 - one study's defect must not stop the others
        if debug:
            raise
        msg = (f"the build stopped on an unexpected problem ({type(exc).__name__}: {exc}); "
               "this is a pipeline defect, re-run with --debug for the traceback")
        try:
            writer.write_csv_atomic(_finding(sid, "build", "build_failure", msg), findings_report_path(out, sid))
        except OSError:
            pass
        print(f"{sid}: NOT built: {msg} (previous {out / sid} left untouched)", file=sys.stderr)
        return UNEXPECTED_EXIT


def run_build(args) -> int:
    """``python -m pipeline build`` (see module docstring). Returns the exit code.

    ``--out`` is checked first (a folder, writable), then locked for the whole run
    (:func:`pipeline.export.writer.out_lock`), and staging folders of dead builds are removed.
    Exit code: the highest of the studies' codes (0 built, 1 data errors, 2 output problem,
    3 a pipeline defect in one study; the other studies are built anyway).
    """
    specs = Path(args.specs)
    spec = load_spec(specs)
    studies = selected_studies(specs, getattr(args, "study", None))
    raw = raw_folder(args.raw)
    out = writer.prepare_out(Path(args.out))
    for study in studies:  # a CTCAE version without criteria is one usage error, before any work (few studies)
        ctcae_lab.with_study_version(spec, study)
    with writer.out_lock(out):
        for name in writer.remove_stale_staging(out):
            print(f"removed {out / name} (left by a build that is no longer running)", file=sys.stderr)
        try:
            return build_studies(args, spec, studies, raw, out)
        finally:
            writer.wait_removals()  # the previous study folders this process deletes in the background


#: libraries that the build's modules import only where they use them, imported by the parent of
#: a parallel build with those modules, so that each worker does not import them again: pyreadstat
#: (the build log's versions; SAS extracts) and scipy.special (Kaplan-Meier and exact binomial
#: confidence limits). (Never polars, whose thread pool a forked worker must not inherit: the build
#: does not import it; rtflite, which imports it, is only the tests' oracle of the RTF composer.)
BUILD_LIBRARIES = ("pyreadstat", "scipy.special")


def imports_on_use() -> list[str]:
    """The modules that the loaded pipeline modules import only when they run, as each declares
    them in its ``IMPORTS_ON_USE`` (e.g. the ADaM dataset modules): the parent of a
    parallel build imports them too, after the build's own modules, so that its forked workers
    inherit them instead of each importing them for its first study."""
    names = set()
    for name, module in list(sys.modules.items()):  # the loaded modules, not records
        if name.startswith("pipeline.") and module is not None:
            names.update(getattr(module, "IMPORTS_ON_USE", ()))
    return sorted(names)


def build_studies(args, spec: Spec, studies: list[Study], raw: Path, out: Path) -> int:
    """Gate all studies, then build each one in isolation (see :func:`isolated_build`).

    Studies whose inputs did not change since their last successful build keep their outputs
    (:mod:`pipeline.buildcache`; ``--no-cache`` rebuilds them): they are neither gated nor built,
    and cost no worker process.
    """
    debug = bool(getattr(args, "debug", False))
    mode = getattr(args, "mode", None) or "final"
    show = not getattr(args, "no_progress", False) and sys.stderr.isatty()
    keys, kept = _cache_lookup(spec, studies, raw, out, mode, reuse=not getattr(args, "no_cache", False))
    todo = [s for s in studies if s.studyid not in kept]
    total = 1 + len(REGISTRY) + len(AFTER_VISITS) + 3 + len(POST_EXPORT_HOOKS) + 1
    progress_of = {s.studyid: Progress(s.studyid, total, enabled=show) for s in todo}
    jobs = getattr(args, "jobs", None) or parallel.default_jobs(len(todo))
    preload_build = None
    if jobs > 1 and len(todo) > 1:
        # imported once here, so that forked workers inherit the modules (pipeline.parallel): what
        # the gate needs before its workers start; what the build needs while they gate
        parallel.preload([GATE_MODULE, "pipeline.intake.report"])

        def preload_build() -> None:
            parallel.preload([*(f"{DOMAIN_PACKAGE}.{m}" for m in REGISTRY + AFTER_VISITS),
                              *(h.module for h in POST_EXPORT_HOOKS), *BUILD_LIBRARIES])
            parallel.preload(imports_on_use())
    detail: dict = {}
    try:
        gated = _gate(raw, studies, spec, out, progress_of, debug, jobs,
                      {sid: KeptGate.of(next(s for s in studies if s.studyid == sid), e) for sid, e in kept.items()},
                      detail, meanwhile=preload_build)
    except OSError as exc:
        raise output_error(exc, "write the gate reports to") from None
    position = {s.studyid: i for i, s in enumerate(studies)}
    codes = [0] * len(studies)
    shown: set[str] = set()

    def show_kept(before: int) -> None:
        """The lines of the kept studies that come before study number ``before``, in order."""
        for i, s in enumerate(studies[:before]):
            if s.studyid in kept and s.studyid not in shown:
                shown.add(s.studyid)
                codes[i] = isolated_build(s, out, lambda s=s: _report_kept(s, kept[s.studyid], out), debug)

    def built(i: int, result) -> None:
        study = todo[i]
        show_kept(position[study.studyid])
        j = position[study.studyid]
        if isinstance(result, parallel.WorkerDied):
            codes[j] = isolated_build(study, out, lambda: _raise(result), debug)
        else:
            result.replay()
            codes[j] = result.value
        if codes[j] == 0 and study.studyid in keys:
            _remember(out, study, keys[study.studyid], detail.get(study.studyid))

    split = split_tasks(len(todo), jobs)
    tasks = [(study, spec, *gated[study.studyid], raw, out, debug,
              progress_of[study.studyid] if jobs <= 1 else (total, show), mode, split[i]) for i, study in enumerate(todo)]
    # the spec, and each study's gated forms and findings, reach the forked workers by inheritance
    # (pipeline.parallel.Inherited): the forms are not pickled in the parent and unpickled again in
    # a worker (1.3-2.5 MB and 0.02-0.04 s of CPU a shipped study; the first tasks wait for it)
    inherited = (spec, *(part for study in todo for part in gated[study.studyid]))
    parallel.run_ordered(_build_one, tasks, jobs, built, shared=inherited)
    show_kept(len(studies))
    if jobs > 1:
        writer.remove_stale_staging(out)  # the staging folder of a worker that died, if any
    return max(codes, default=0)


def _cache_config() -> tuple[str, list[str]]:
    """The build configuration that changes outputs without changing a file (the domain
    registry, hooks and gate module; tests replace them), and the modules it names."""
    modules = [DOMAIN_PACKAGE, GATE_MODULE, *(h.module for h in POST_EXPORT_HOOKS)]
    text = repr((DOMAIN_PACKAGE, list(REGISTRY), list(AFTER_VISITS), GATE_MODULE, LENIENT_MISSING_MODULES,
                 [(h.name, h.module, h.function, h.args) for h in POST_EXPORT_HOOKS]))
    return text, modules


def _cache_lookup(spec: Spec, studies: list[Study], raw: Path, out: Path, mode: str,
                  reuse: bool) -> tuple[dict[str, str], dict[str, buildcache.Entry]]:
    """(key of every study, entries of the studies whose outputs are kept). The entry of every
    other study is removed before it is gated: only a build that then succeeds writes a new one."""
    config, modules = _cache_config()
    inputs = buildcache.Inputs.of(Path(spec.root), mode, config, modules)
    if inputs is None:
        print("build cache off: the installed pipeline's metadata is missing, so the versions of its "
              "dependencies are unknown (reinstall with `make install`); every study is built", file=sys.stderr)
    keys = {s.studyid: buildcache.study_key(inputs, raw, s) for s in studies} if inputs else {}
    with_detail = hasattr(importlib.import_module(GATE_MODULE), "gate_detail")
    kept = {}
    for s in studies:  # a few studies
        entry = buildcache.reusable(out, s, keys[s.studyid]) if reuse and s.studyid in keys else None
        if entry is not None and (entry.gate_executed is not None) == with_detail:
            kept[s.studyid] = entry
        else:
            buildcache.forget(out, s.studyid)
    return keys, kept


def _report_kept(study: Study, entry: buildcache.Entry, out: Path) -> int:
    """A kept study: its build findings file as the last build wrote it, its outcome lines."""
    sid = study.studyid
    path = findings_report_path(out, sid)
    data = entry.build_findings_csv.encode("utf-8")
    if not path.is_file() or path.read_bytes() != data:
        writer.write_bytes_atomic(path, data)
    print(f"{sid}: unchanged since the last build (inputs sha256 {entry.key[:12]}...), outputs kept in {out / sid}",
          file=sys.stderr)
    print(built_line(out, sid, entry.datasets, entry.warnings))
    return 0


def _remember(out: Path, study: Study, key: str, gate: tuple | None) -> None:
    """Write the cache entry of a study just built without errors (its folder is swapped in)."""
    if gate is None:
        return
    sid = study.studyid
    findings, executed, forms, records = gate
    try:
        data = findings_report_path(out, sid).read_bytes()
        warnings = len(pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False))
        entry = buildcache.Entry(
            studyid=sid, key=key, manifest_sha256=manifest.sha256_file(out / sid / manifest.MANIFEST),
            gate_findings=buildcache.findings_records(findings),
            gate_executed=None if executed is None else executed[["study", "file", "check"]].astype(str).values.tolist(),
            gate_forms=list(forms), gate_records=int(records), build_findings_csv=data.decode("utf-8"),
            datasets=_dataset_count(out / sid), warnings=warnings)
        buildcache.remember(out, entry)
    except (OSError, ValueError) as exc:  # the outputs are fine; the next run rebuilds this study
        buildcache.forget(out, sid)
        print(f"{sid}: note: the build cache entry was not written ({exc}); the next run rebuilds it", file=sys.stderr)


def _raise(exc: Exception):
    raise exc


def _worker_progress(study: Study, progress: Progress | tuple[int, bool]) -> Progress:
    """The study's :class:`Progress`, or one made in the worker from ``(total steps, shown)``: it
    writes to the real stderr, live, while the worker's one-line outcome is captured."""
    if not isinstance(progress, tuple):
        return progress
    total, show = progress
    return Progress(study.studyid, total, enabled=show, stream=sys.__stderr__)


def _build_one(study: Study, spec: Spec, forms: dict, gate_findings: pd.DataFrame, raw: Path, out: Path,
               debug: bool, progress: Progress | tuple[int, bool], mode: str = "final",
               split: bool = False) -> int | parallel.Continue:
    """One study's isolated build (in a worker process when ``--jobs`` > 1). ``progress``: see
    :func:`_worker_progress`; the gate step is counted in the parent. Its printed outcome is
    captured and printed in order.

    ``split``: the build stops before its :attr:`Hook.separate` hooks, which come back as the
    task's next part (:func:`_finish_one`, :class:`pipeline.parallel.Continue`), their inputs
    pickled once, here (the parent passes the bytes on without reading them)."""
    shown = _worker_progress(study, progress)
    if isinstance(progress, tuple):
        shown.done = 1  # the gate step, counted in the parent
    result = isolated_build(study, out, lambda: build_and_report(study, spec, forms, gate_findings, raw, out, shown,
                                                                 mode, split=split), debug)
    if isinstance(result, Unfinished):
        return parallel.Continue(_finish_one, (study, pickle.dumps(result, pickle.HIGHEST_PROTOCOL), spec, out, debug,
                                               progress))
    return result


def _finish_one(study: Study, unfinished: bytes, spec: Spec, out: Path, debug: bool,
                progress: Progress | tuple[int, bool]) -> int:
    """The last part of :func:`_build_one` (``unfinished``: its pickled :class:`Unfinished`),
    isolated the same way, in whichever worker is free."""
    return isolated_build(study, out, lambda: finish_and_report(pickle.loads(unfinished), spec, out,
                                                                _worker_progress(study, progress)), debug)


def split_tasks(n_tasks: int, jobs: int) -> list[bool]:
    """Which studies of a parallel build are built in two parts (``split`` of :func:`_build_one`):
    the last ``jobs``, those that start when no other study is left waiting (none when the
    studies run in the caller: one study, or ``jobs`` 1). Splitting lets the
    workers share their last hooks instead of one study building alone while the other cores
    wait; it costs pickling the hooks' inputs once and unpickling them once (5-7 MB, about 0.05 s
    of CPU for a 30-subject study; bench/results.md, session 21), which only the end of the run
    wins back: split earlier, a study's second part still waits behind the first parts of the
    studies after it."""
    return [jobs > 1 and n_tasks > 1 and i >= n_tasks - jobs for i in range(n_tasks)]
