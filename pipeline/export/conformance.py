"""``python -m pipeline conformance``: CDISC CORE on every built study, findings explained or listed.

CDISC CORE (the open-source ``cdisc-rules-engine``) runs the SDTMIG 3.4 conformance rules a
reviewer runs. It needs Python 3.12 and is not a dependency of this package: ``make
conformance`` creates ``.venv-core`` with the pinned engine (``requirements-core.txt``) and this
command launches :mod:`pipeline.export.core_runner` inside it, one study at a time.

For each built study folder ``OUT/<STUDYID>/`` (one with a ``define.xml`` and ``.xpt`` files):

1. a job file names every XPT dataset with its SDTM class from ``specs/sdtm/datasets.csv`` and
   its DOMAIN, the study's define.xml, the rules cache and the standard (SDTMIG 3.4). Without
   the class the engine skips class-scoped rules silently, because the public rules cache has
   no CDISC Library metadata;
2. the runner drives the engine through its Python API and returns every rule's result;
3. each finding (rule x dataset with issues) is matched against the study's explanations file
   ``specs/studies/<STUDYID>.explanations.csv`` (see :func:`read_explanations`);
4. into ``OUT/<STUDYID>/reports/``: ``core_report.json`` (CORE's own JSON report: conformance
   details, dataset details, issue summary, issue details, rules report; with the run's engine
   version, cache checksums and classes), ``core_findings.csv`` and ``core_summary.html`` (one
   row per rule and dataset with issues: rule, message, dataset, variables, issues, explained,
   explanation). Deterministic: no clock, no absolute path;
5. one line per study: rules run, rules with issues, issues, execution errors, unexplained.

Rules cache: ``--core-cache DIR``, else ``$CDISC_CORE_CACHE``, else
``../shared/reference/cdisc-core-cache`` beside the project when present; otherwise exit 2.
Engine: ``$CDISC_CORE_PYTHON`` or ``.venv-core/bin/python`` in the project root; when absent or
without the engine, exit 2 with how to install it. Exit 1 when any finding is unexplained.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import ConfigError
from pipeline.export.writer import csv_bytes, write_bytes_atomic
from pipeline.spec import read_table

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().with_name("core_runner.py")
CORE_VENV = ROOT / ".venv-core"
CACHE_ENV = "CDISC_CORE_CACHE"
PYTHON_ENV = "CDISC_CORE_PYTHON"
STANDARD, VERSION = "sdtmig", "3.4"
INSTALL_HINT = ("run `make conformance` (it creates .venv-core with Python 3.12 and the pinned "
                "cdisc-rules-engine from requirements-core.txt), or point $CDISC_CORE_PYTHON at a "
                "Python 3.12 that has it")

#: the explanations file's columns, in order (all required; ``dataset``, ``variable`` and ``value_regex`` may be empty)
EXPLANATION_COLUMNS = ["rule_id", "dataset", "variable", "value_regex", "explanation", "justification", "added_by",
                       "added_on"]
FINDING_COLUMNS = ["rule_id", "cdisc_rule_id", "dataset", "variables", "message", "issues", "explained",
                   "explanation", "justification"]
RULE_ID = re.compile(r"^CORE-\d{6}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: execution statuses in the engine's per-dataset results
RAN = {"success", "issue reported"}
ISSUE, ERROR = "issue reported", "execution error"


# ---- inputs --------------------------------------------------------------------------------
def resolve_cache(arg: Path | None, root: Path = ROOT) -> Path:
    """The rules cache folder: ``--core-cache``, ``$CDISC_CORE_CACHE``, or the shared one."""
    if arg is not None:
        chosen, how = Path(arg), "--core-cache"
    elif os.environ.get(CACHE_ENV, "").strip():
        chosen, how = Path(os.environ[CACHE_ENV].strip()), f"${CACHE_ENV}"
    else:
        chosen = root.parent / "shared" / "reference" / "cdisc-core-cache"
        if not chosen.is_dir():
            raise ConfigError("conformance: no CDISC CORE rules cache: pass --core-cache DIR or set "
                              f"${CACHE_ENV} to a folder with rules.pkl and rules_dictionary.pkl "
                              "(the engine's resources/cache, for cdisc-rules-engine 0.17)")
        how = "default"
    missing = [f for f in ("rules.pkl", "rules_dictionary.pkl") if not (chosen / f).is_file()]
    if not chosen.is_dir() or missing:
        raise ConfigError(f"conformance: rules cache {chosen} ({how}) "
                          + ("does not exist" if not chosen.is_dir() else f"lacks {', '.join(missing)}"))
    return chosen.resolve()


def core_python(root: Path = ROOT) -> Path:
    """The interpreter that has the engine; ConfigError (exit 2) with the install hint if none."""
    env = os.environ.get(PYTHON_ENV, "").strip()
    py = Path(env) if env else root / ".venv-core" / "bin" / "python"
    if not py.exists():
        raise ConfigError(f"conformance: CDISC CORE engine not installed ({py} not found): {INSTALL_HINT}")
    probe = subprocess.run([str(py), str(RUNNER), "--check"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ConfigError(f"conformance: CDISC CORE engine not usable with {py} ({why}): {INSTALL_HINT}")
    return py


def built_studies(out: Path, wanted: list[str] | None) -> list[Path]:
    """Study folders of ``out`` that hold a build (define.xml and XPT files), sorted; with
    ``--study`` exactly those, each of which must be built."""
    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"conformance: output folder {out} does not exist: build first (make sdtm)")

    def is_built(p: Path) -> bool:
        return p.is_dir() and (p / "define.xml").is_file() and any(p.glob("*.xpt"))

    if wanted:
        folders = [out / s for s in dict.fromkeys(wanted)]
        unbuilt = [f.name for f in folders if not is_built(f)]
        if unbuilt:
            raise ConfigError(f"conformance: study {', '.join(unbuilt)} not built in {out} "
                              "(no define.xml and XPT files): build it first (make sdtm)")
        return folders
    folders = sorted(p for p in out.iterdir() if not p.name.startswith(".") and is_built(p))
    if not folders:
        raise ConfigError(f"conformance: no built study in {out}: build first (make sdtm)")
    return folders


def dataset_classes(datasets: pd.DataFrame) -> dict[str, str]:
    """Dataset name -> SDTM class, from ``specs/sdtm/datasets.csv`` (upper case, stripped)."""
    return dict(zip(datasets["dataset"].str.strip().str.upper(), datasets["class"].str.strip().str.upper()))


def _first_domain(xpt: Path) -> str:
    """DOMAIN of the first record (split datasets: LBDA holds DOMAIN LB), '' if none."""
    import pyreadstat

    frame, _ = pyreadstat.read_xport(str(xpt), row_limit=1)
    if "DOMAIN" in frame.columns and len(frame):
        return str(frame["DOMAIN"].iloc[0] or "").strip()
    return ""


def study_job(folder: Path, classes: dict[str, str], cache: Path, rules: list[str] | None = None) -> dict:
    """The runner's job for one built study. A dataset whose class our spec does not give gets
    an empty class (the engine then guesses it from the variables) and is listed in ``unclassified``."""
    datasets = []
    # one entry per dataset file of the study (a few dozen)
    for xpt in sorted(folder.glob("*.xpt")):
        name = xpt.stem.upper()
        datasets.append({"name": name, "path": str(xpt.resolve()), "class": classes.get(name, ""),
                         "domain": _first_domain(xpt)})
    return {"study": folder.name, "standard": STANDARD, "version": VERSION, "cache": str(cache),
            "define_xml": str((folder / "define.xml").resolve()), "datasets": datasets,
            "rules": sorted(rules) if rules else None,
            "unclassified": [d["name"] for d in datasets if not d["class"]]}


# ---- explanations --------------------------------------------------------------------------
def explanations_path(specs: Path, studyid: str) -> Path:
    return Path(specs) / "studies" / f"{studyid}.explanations.csv"


def read_explanations(path: Path) -> pd.DataFrame:
    """Read a study's explanations file; an absent file is an empty table.

    One row explains the issues of one CORE rule (``rule_id``, e.g. ``CORE-000351``), in one
    dataset (``dataset``; empty = every dataset), optionally only where the issue involves one
    variable (``variable``; empty = any) and, with ``value_regex``, only the issues whose value of
    that variable fully matches the regular expression (so an explanation covers exactly the
    records it justifies, never a later defect of the same rule). ``explanation`` says why the
    finding is correct for this study and ``justification`` why a reviewer can accept it (the
    source: protocol, SDTMIG section, CT note). ``added_by`` and ``added_on`` (YYYY-MM-DD) say
    who decided and when. Every problem is reported at once as one ConfigError (exit 2)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=EXPLANATION_COLUMNS)
    frame = read_table(path)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in EXPLANATION_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)} "
                          f"(expected {','.join(EXPLANATION_COLUMNS)})")
    frame = frame[EXPLANATION_COLUMNS].apply(lambda col: col.str.strip())
    frame["dataset"] = frame["dataset"].str.upper()
    frame["variable"] = frame["variable"].str.upper()
    problems = []
    line = frame.index + 2  # header is line 1
    for col in ("explanation", "justification", "added_by"):
        problems += [f"line {n}: {col} is empty" for n in line[frame[col] == ""]]
    problems += [f"line {n}: rule_id {v!r} is not a CORE id (CORE-nnnnnn)"
                 for n, v in zip(line, frame["rule_id"]) if not RULE_ID.match(v)]
    problems += [f"line {n}: added_on {v!r} is not YYYY-MM-DD"
                 for n, v in zip(line, frame["added_on"]) if not DATE.match(v)]
    for n, var, rx in zip(line, frame["variable"], frame["value_regex"]):  # a few rows per study
        if rx and not var:
            problems.append(f"line {n}: value_regex needs a variable")
        elif rx:
            try:
                re.compile(rx)
            except re.error as exc:
                problems.append(f"line {n}: value_regex {rx!r} is not a regular expression ({exc})")
    dup = frame.duplicated(["rule_id", "dataset", "variable", "value_regex"], keep="first")
    problems += [f"line {n}: repeats the rule_id/dataset/variable/value_regex of an earlier line" for n in line[dup]]
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return frame.reset_index(drop=True)


# ---- results -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    rules_selected: int
    rules_run: int
    rules_with_issues: int
    issues: int
    execution_errors: int
    unexplained_issues: int
    unexplained_rules: int


ISSUE_COLUMNS = ["rule_id", "cdisc_rule_id", "dataset", "variables", "message", "values"]


def issue_table(results: list[dict], cdisc_ids: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per issue the engine reported (``issue reported``), in the engine's order;
    ``values`` is the issue's {variable: value} dict."""
    cdisc_ids = cdisc_ids or {}
    rows = []
    # loops over rules, their per-dataset results and their issues: CORE's report, not SDTM
    # records (a few thousand rows at most)
    for rule in results:
        for res in rule.get("results") or []:
            if res.get("executionStatus") != ISSUE or not res.get("errors"):
                continue
            base = {"rule_id": rule["id"], "cdisc_rule_id": cdisc_ids.get(rule["id"], ""),
                    "dataset": str(res.get("dataset") or "").upper(),
                    "variables": "|".join(str(v) for v in res.get("variables") or []),
                    "message": str(res.get("message") or rule.get("message") or "")}
            rows += [{**base, "values": {str(k).upper(): v for k, v in (err.get("value") or {}).items()}}
                     for err in res["errors"]]
    return pd.DataFrame(rows, columns=ISSUE_COLUMNS)


def execution_errors(results: list[dict]) -> pd.DataFrame:
    """Rule x dataset pairs the engine could not execute, with its reason."""
    rows = []
    for rule in results:  # metadata loop, as above
        for res in rule.get("results") or []:
            if res.get("executionStatus") != ERROR:
                continue
            err = (res.get("errors") or [{}])[0]
            rows.append({"rule_id": rule["id"], "dataset": str(res.get("dataset") or "").upper(),
                         "error": str(err.get("error") or ""), "message": str(err.get("message") or res.get("message") or "")})
    frame = pd.DataFrame(rows, columns=["rule_id", "dataset", "error", "message"])
    return frame.sort_values(["rule_id", "dataset"], kind="mergesort").reset_index(drop=True)


def _matches(issues: pd.DataFrame, row: dict) -> pd.Series:
    """Which issues one explanation row covers (see :func:`read_explanations`)."""
    hit = issues["rule_id"] == row["rule_id"]
    if row["dataset"]:
        # the engine reports a split domain's datasets as one result ("FA, FAPR"): a row for
        # one of them covers the result's issues (its value_regex tells their records apart)
        members = issues["dataset"].str.split(",").map(lambda ds: {d.strip() for d in ds})
        hit &= members.map(lambda ds: row["dataset"] in ds)
    if row["variable"]:
        var = row["variable"]
        hit &= issues["variables"].str.upper().str.split("|").map(lambda vs: var in vs)
        if row["value_regex"]:
            value = issues["values"].map(lambda d: "" if d.get(var) is None else str(d.get(var)))
            hit &= value.str.fullmatch(row["value_regex"]).fillna(False).astype(bool)
    return hit


def apply_explanations(issues: pd.DataFrame, explanations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mark each issue explained or not; return the issues and the explanation rows that cover
    no issue (stale: the finding was fixed, or the row is mistyped). When several rows cover an
    issue the most specific one explains it (value_regex, then variable, then dataset given)."""
    out = issues.copy()
    out["explained"] = "N"
    out["explanation"] = ""
    out["justification"] = ""
    if not len(explanations):
        return out, explanations.reset_index(drop=True)
    spec = ((explanations["value_regex"] != "").astype(int) * 4 + (explanations["variable"] != "").astype(int) * 2
            + (explanations["dataset"] != "").astype(int))
    order = spec.sort_values(ascending=False, kind="mergesort").index
    used = pd.Series(False, index=explanations.index)
    # loop over explanation rows (a handful per study), each vectorised over the issues
    for idx in order:
        row = explanations.loc[idx].to_dict()
        hit = _matches(out, row) if len(out) else pd.Series(dtype=bool)
        used[idx] = bool(hit.any())
        take = hit & (out["explained"] == "N")
        out.loc[take, ["explained", "explanation", "justification"]] = ["Y", row["explanation"], row["justification"]]
    return out, explanations[~used].reset_index(drop=True)


def findings_table(issues: pd.DataFrame) -> pd.DataFrame:
    """One row per rule, dataset, variables and explanation: the issues counted, sorted by rule,
    dataset, variables, then unexplained before explained. Nothing is dropped: the counts add up
    to the issues."""
    if "explained" not in issues.columns:
        issues = issues.assign(explained="N", explanation="", justification="")
    keys = ["rule_id", "cdisc_rule_id", "dataset", "variables", "message", "explained", "explanation", "justification"]
    if not len(issues):
        return pd.DataFrame(columns=FINDING_COLUMNS)
    frame = issues.groupby(keys, sort=False, dropna=False).size().rename("issues").reset_index()
    frame = frame.sort_values(["rule_id", "dataset", "variables", "explained", "explanation"], kind="mergesort")
    return frame[FINDING_COLUMNS].reset_index(drop=True)


def explain(results: list[dict], explanations: pd.DataFrame, cdisc_ids: dict[str, str] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The findings table (explained and not) and the stale explanation rows of one run."""
    issues, stale = apply_explanations(issue_table(results, cdisc_ids), explanations)
    return findings_table(issues), stale


def counts(results: list[dict], findings: pd.DataFrame) -> Counts:
    """The per-study line's numbers. A rule *ran* when at least one dataset was validated (not
    skipped, not an execution error); *execution errors* counts rules with at least one."""
    statuses = [{r.get("executionStatus") for r in rule.get("results") or []} for rule in results]
    unexplained = findings[findings["explained"] == "N"] if len(findings) else findings
    return Counts(
        rules_selected=len(results),
        rules_run=sum(1 for s in statuses if s & RAN),
        rules_with_issues=int(findings["rule_id"].nunique()) if len(findings) else 0,
        issues=int(findings["issues"].sum()) if len(findings) else 0,
        execution_errors=sum(1 for s in statuses if ERROR in s),
        unexplained_issues=int(unexplained["issues"].sum()) if len(unexplained) else 0,
        unexplained_rules=int(unexplained["rule_id"].nunique()) if len(unexplained) else 0,
    )


def summary_line(studyid: str, engine_version: str, c: Counts, where: Path) -> str:
    return (f"{studyid}: CORE {engine_version} SDTMIG {VERSION}: {c.rules_run} of {c.rules_selected} rules run, "
            f"{c.rules_with_issues} with issues, {c.issues} issue(s), {c.execution_errors} execution error(s), "
            f"{c.unexplained_issues} unexplained issue(s) in {c.unexplained_rules} rule(s) -> {where}")


# ---- reports -------------------------------------------------------------------------------
def _cell(v) -> str:
    return html.escape(str(v), quote=True)


def _table(frame: pd.DataFrame, columns: list[str], css: str = "") -> str:
    head = "".join(f"<th>{_cell(c)}</th>" for c in columns)
    body = []
    for rec in frame[columns].astype(str).to_dict("records"):  # report rows (hundreds at most)
        cls = ' class="unexplained"' if rec.get("explained") == "N" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(rec[c])}</td>" for c in columns) + "</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body) + "</tbody></table>"


def summary_html(studyid: str, doc: dict, c: Counts, findings: pd.DataFrame, errors: pd.DataFrame,
                 stale: pd.DataFrame, unclassified: list[str]) -> str:
    """The readable summary: counts, findings (unexplained first), execution errors, stale
    explanations. Deterministic for the same inputs."""
    order = findings.assign(_u=(findings["explained"] == "Y").astype(int)).sort_values(
        ["_u", "rule_id", "dataset", "variables"], kind="mergesort")
    meta = [("Study", studyid), ("Engine", f"cdisc-rules-engine {doc.get('engine_version', '')}"),
            ("Standard", f"SDTMIG {doc.get('version', VERSION)}"),
            ("CT packages (define.xml)", ", ".join(doc.get("ct_packages") or []) or "none"),
            ("Library metadata", doc.get("library_metadata", "")),
            ("Rules cache", ", ".join(f"{k} sha256 {v[:12]}" for k, v in sorted((doc.get("cache_files") or {}).items()))),
            ("Rules", f"{c.rules_selected} selected, {c.rules_run} run, {c.rules_with_issues} with issues, "
                      f"{c.execution_errors} with execution errors"),
            ("Issues", f"{c.issues} ({c.unexplained_issues} unexplained, in {c.unexplained_rules} rule(s))")]
    if unclassified:
        meta.append(("Datasets without a class in specs", ", ".join(unclassified)))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>CDISC CORE conformance: {_cell(studyid)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #999;padding:3px 6px;vertical-align:top;font-size:13px}"
        "th{background:#eee}tr.unexplained td{background:#fde2e2}</style></head><body>",
        f"<h1>CDISC CORE conformance: {_cell(studyid)}</h1>",
        "<table>" + "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in meta) + "</table>",
        "<h2>Findings (one row per rule and dataset; unexplained first)</h2>",
        "<p>Explanations come from specs/studies/" + _cell(studyid) + ".explanations.csv. "
        "Unexplained findings must be fixed or explained; none is dropped.</p>",
        _table(order, FINDING_COLUMNS) if len(order) else "<p>No findings.</p>",
        "<h2>Execution errors (rules the engine could not evaluate)</h2>",
        _table(errors, list(errors.columns)) if len(errors) else "<p>None.</p>",
        "<h2>Explanations that matched no finding</h2>",
        _table(stale, EXPLANATION_COLUMNS) if len(stale) else "<p>None.</p>",
        "</body></html>", ""]
    return "\n".join(parts)


def write_reports(folder: Path, doc: dict, findings: pd.DataFrame, errors: pd.DataFrame, stale: pd.DataFrame,
                  c: Counts, unclassified: list[str]) -> Path:
    """Write core_report.json, core_findings.csv and core_summary.html into ``folder/reports``."""
    reports = Path(folder) / "reports"
    report = dict(doc.get("core_report") or {})
    report = {"Run": {k: doc.get(k) for k in ("engine_version", "standard", "version", "ct_packages",
                                              "library_metadata", "class_map", "cache_files", "rules_selected")},
              **report}
    write_bytes_atomic(reports / "core_report.json",
                       (json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n").encode("utf-8"))
    write_bytes_atomic(reports / "core_findings.csv", csv_bytes(findings))
    summary = reports / "core_summary.html"
    write_bytes_atomic(summary, summary_html(folder.name, doc, c, findings, errors, stale, unclassified).encode("utf-8"))
    return summary


def _cdisc_ids(doc: dict) -> dict[str, str]:
    rows = (doc.get("core_report") or {}).get("Rules_Report") or []
    return {r.get("core_id"): r.get("cdisc_rule_id") or "" for r in rows if isinstance(r, dict)}


def run_study(folder: Path, py: Path, classes: dict[str, str], cache: Path, specs: Path,
              rules: list[str] | None = None) -> tuple[Counts, str]:
    """Run CORE on one built study and write its reports; returns the counts and the line."""
    job = study_job(folder, classes, cache, rules)
    explanations = read_explanations(explanations_path(specs, folder.name))
    with tempfile.TemporaryDirectory(prefix="core-") as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job, indent=1), encoding="utf-8")
        proc = subprocess.run([str(py), str(RUNNER), str(job_file), str(result_file)],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not result_file.is_file():
            why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise ConfigError(f"{folder.name}: CDISC CORE run failed: {why}")
        doc = json.loads(result_file.read_text(encoding="utf-8"))
    findings, stale = explain(doc["results"], explanations, _cdisc_ids(doc))
    errors = execution_errors(doc["results"])
    c = counts(doc["results"], findings)
    summary = write_reports(folder, doc, findings, errors, stale, c, job["unclassified"])
    return c, summary_line(folder.name, doc.get("engine_version", ""), c, summary)


def run_conformance(args) -> int:
    """``python -m pipeline conformance``. Exit 0 all findings explained, 1 some unexplained,
    2 configuration (engine, cache, unbuilt study, explanations file)."""
    from pipeline.spec import load_spec

    spec = load_spec(Path(args.specs))
    folders = built_studies(Path(args.out), getattr(args, "study", None))
    cache = resolve_cache(getattr(args, "core_cache", None))
    py = core_python()
    classes = dataset_classes(spec.datasets)
    rules = getattr(args, "rule", None) or None
    code = 0
    for folder in folders:  # one engine process per study, in turn (the machine is small)
        c, line = run_study(folder, py, classes, cache, Path(args.specs), rules)
        print(line, flush=True)
        if c.unexplained_issues:
            code = 1
    return code


if __name__ == "__main__":  # pragma: no cover - use ``python -m pipeline conformance``
    sys.exit("use: python -m pipeline conformance")
