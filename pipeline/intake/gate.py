"""The raw-extract schema gate: read, validate, report.

:func:`validate_forms` runs the generated pandera schema of each form (pipeline.intake.schemas)
and every registered cross check (pipeline.intake.checks) and returns findings. Severity
``error`` blocks the study's build; ``warning`` does not. :func:`gate_study` is read +
validate for the build; :func:`run_validate` is ``python -m pipeline validate``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import Study, raw_folder, selected_studies
from pipeline.context import FINDING_COLUMNS, FindingCounts, empty
from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.intake import checks as ck
from pipeline.intake import report
from pipeline.intake.readers import read_study
from pipeline.intake.schemas import form_schema, schema_findings, spec_problems
from pipeline.spec import Spec, load_spec

#: errors shown per study on the terminal (the reports have them all)
TERMINAL_ERRORS = 5
EXECUTED_COLUMNS = ["study", "file", "check"]


@dataclass
class GateResult(FindingCounts):
    """Everything the gate learned about one study."""

    study: Study
    forms: dict[str, pd.DataFrame]
    findings: pd.DataFrame
    #: study, file, check: every check that ran on a file (passing ones included)
    executed: pd.DataFrame

    @property
    def records(self) -> int:
        return int(sum(len(df) for df in self.forms.values()))


def _spec_columns(form: str, spec: Spec) -> tuple[str, ...]:
    """The form's column names in ``specs/raw/columns.csv`` order, once per loaded spec
    (:meth:`Spec.form_columns` copies its frame on every call; issue 14)."""
    return per_object(spec, ("gate_form_columns", form), lambda s: tuple(s.form_columns(form)["column"]))


def _file_name(form: str, study: Study) -> str:
    return f"{form}.{study.raw_formats.get(form, 'csv')}"


def prepare_form(df: pd.DataFrame, form: str, study: Study, spec: Spec) -> pd.DataFrame:
    """A working copy for validation: default index, ``_FILE``/``_ROW`` present, spec columns as text.

    Frames from :func:`read_study` pass through unchanged in content; hand-made frames
    (tests, other callers) get ``_FILE`` = the expected file name and ``_ROW`` = position + 2.
    The copy is the frame ``reset_index`` makes (copy-on-write: changing one never changes the
    other), and what is already right (``_ROW`` int64, text columns) is not converted again
    (issue 14).
    """
    w = df.reset_index(drop=True)
    if "_FILE" not in w.columns:
        w["_FILE"] = _file_name(form, study)
    if "_ROW" not in w.columns:
        w["_ROW"] = range(2, len(w) + 2)
    if w["_ROW"].dtype != "int64":
        w["_ROW"] = pd.to_numeric(w["_ROW"], errors="coerce").fillna(0).astype("int64")
    dtypes = w.dtypes
    for c in _spec_columns(form, spec):
        if c in dtypes.index and dtypes[c] != "str":
            w[c] = w[c].astype(object).where(w[c].notna(), None).astype("str")
    return w


def _pad(w: pd.DataFrame, form: str, spec: Spec) -> pd.DataFrame:
    """Add absent spec columns (empty) so cross checks can address every column."""
    for c in _spec_columns(form, spec):
        if c not in w.columns:
            w[c] = pd.Series(float("nan"), index=w.index, dtype="str")
    return w


def validate_detail(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Findings and the (study, file, check) pairs that ran. See :func:`validate_forms`."""
    problems = spec_problems(spec)
    if problems:
        raise ConfigError("raw specification problems:\n  " + "\n  ".join(problems))
    max_year = int(study.data_cutoff[:4]) + 1
    work = ck.ParsedForms()  # this call's working copies and their parsed values
    found: list[pd.DataFrame] = []
    executed: list[tuple[str, str, str]] = []
    files: dict[str, str] = {}
    for form in spec.forms:  # spec order; forms the spec does not know are ignored
        if form not in forms:
            continue
        w = work[form] = prepare_form(forms[form], form, study, spec)
        fs = form_schema(spec, form, max_year)
        found.append(schema_findings(w, form, study, spec, fs, work))
        files[form] = str(w["_FILE"].iloc[0]) if len(w) else _file_name(form, study)
        executed += [(study.studyid, files[form], c) for c in fs.checks]
        _pad(w, form, spec)  # adds columns in place: the values parsed so far stay those of w
    for cc in ck.CROSS_CHECKS:
        found.append(cc.func(work, study, spec))
        for form in (cc.forms or tuple(work)):
            if form in work:
                executed += [(study.studyid, files[form], c) for c in cc.checks]
    found = [f for f in found if len(f)]
    findings = pd.concat(found, ignore_index=True) if found else empty(FINDING_COLUMNS)
    return report.sort_findings(findings), pd.DataFrame(executed, columns=EXECUTED_COLUMNS)


def validate_forms(forms: dict[str, pd.DataFrame], study: Study, spec: Spec) -> pd.DataFrame:
    """Validate the raw forms of one study; findings in ``FINDING_COLUMNS``, sorted.

    Runs the pandera schema generated from ``specs/raw/columns.csv`` for each form (lazy:
    every failure is collected) and every cross-record and cross-form check of
    :mod:`pipeline.intake.checks`. Severity ``error`` blocks the build; ``warning`` does not.
    """
    return validate_detail(forms, study, spec)[0]


def gate_detail(raw_dir: Path, study: Study, spec: Spec) -> GateResult:
    """Read and validate one study, keeping the list of checks that ran."""
    forms, read_findings = read_study(Path(raw_dir), study, spec)
    findings, executed = validate_detail(forms, study, spec)
    read_exec = pd.DataFrame({"study": study.studyid, "file": [df["_FILE"].iloc[0] for df in forms.values() if len(df)],
                              "check": "file.read"}, columns=EXECUTED_COLUMNS)
    parts = [f for f in (read_findings, findings) if len(f)]
    all_findings = report.sort_findings(pd.concat(parts, ignore_index=True)) if parts else report.sort_findings(
        empty(FINDING_COLUMNS))
    all_findings = report.truncate_findings(all_findings)
    return GateResult(study, forms, all_findings, pd.concat([read_exec, executed], ignore_index=True))


def gate_study(raw_dir: Path, study: Study, spec: Spec) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Read + validate one study (used by the build): ``(forms, findings)``."""
    r = gate_detail(raw_dir, study, spec)
    return r.forms, r.findings


def summary_frame(results: list[GateResult]) -> pd.DataFrame:
    """One row per study: forms read, records, errors, warnings, data cutoff."""
    return pd.DataFrame([{
        "study": r.study.studyid, "forms": len(r.forms), "records": r.records,
        "errors": r.errors, "warnings": r.warnings, "data_cutoff": r.study.data_cutoff,
    } for r in results], columns=report.SUMMARY_COLUMNS)


def _print_summary(results: list[GateResult], paths: list[Path], out=None) -> None:
    out = out or sys.stdout
    width = max([len(r.study.studyid) for r in results] + [5])
    print(f"{'STUDY':<{width}}  FORMS    RECORDS  ERRORS  WARNINGS  GATE", file=out)
    for r in results:
        verdict = "FAIL" if r.errors else "pass"
        print(f"{r.study.studyid:<{width}}  {len(r.forms):>5}  {r.records:>9,}  {r.errors:>6,}  {r.warnings:>8,}  {verdict}",
              file=out)
        errs = r.findings[r.findings["severity"] == "error"]
        for e in errs.head(TERMINAL_ERRORS).to_dict("records"):
            where = f"row {e['row']}" if pd.notna(e["row"]) else "file"
            col = f" {e['column']}" if e["column"] else ""
            val = f"={e['value']!r}" if e["value"] else ""
            print(f"    {e['file']} {where}{col}{val}: {e['message']} [{e['check']}]", file=out)
        if len(errs) > TERMINAL_ERRORS:
            print(f"    ... and {len(errs) - TERMINAL_ERRORS:,} more errors", file=out)
    print("reports: " + ", ".join(str(p) for p in paths), file=out)


def run_validate(args) -> int:
    """``python -m pipeline validate``: gate every requested study and write the reports.

    Exit code 0 when no study has errors (warnings allowed), 1 when any has. Unknown
    studies, a missing raw or specs folder and spec problems raise :class:`ConfigError` (2).
    """
    specs = Path(args.specs)
    spec = load_spec(specs)
    problems = spec_problems(spec)
    if problems:
        raise ConfigError("raw specification problems:\n  " + "\n  ".join(problems))
    studies = selected_studies(specs, getattr(args, "study", None))
    raw = raw_folder(args.raw)
    from pipeline.export.writer import prepare_out

    prepare_out(Path(args.out))
    results = [gate_detail(raw, s, spec) for s in studies]
    findings = pd.concat([r.findings for r in results], ignore_index=True)
    executed = pd.concat([r.executed for r in results], ignore_index=True)
    paths = report.write_reports(Path(args.out) / "gate", findings, summary_frame(results), executed)
    _print_summary(results, paths)
    return 1 if any(r.errors for r in results) else 0
