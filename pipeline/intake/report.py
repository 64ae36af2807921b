"""Gate reports: ``gate_report.csv`` (machine), ``gate_report.html`` (people), ``junit.xml`` (CI).

All three are written atomically (temporary file in the same folder, then ``os.replace``)
and deterministically: findings are sorted, nothing depends on the clock. A generation
date appears only when ``SOURCE_DATE_EPOCH`` is set (reproducible-builds convention).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
import pandas as pd

from pipeline.context import FINDING_COLUMNS

#: rows shown per file in the HTML report and lines per JUnit failure (the CSV has them all)
HTML_ROWS_PER_FILE = 200
JUNIT_LINES_PER_CASE = 100
#: longest value/message copied into a report; the rest is cut and marked (file, row and column
#: locate the full value in the raw extract)
MAX_REPORT_CHARS = 200
#: messages may quote allowed values or several dates: a longer limit
MAX_MESSAGE_CHARS = 1000
TRUNCATION_MARKER = "... [truncated: {n} characters in all]"
_TRUNCATED = re.compile(r"\.\.\. \[truncated: \d+ characters in all\]$")
SUMMARY_COLUMNS = ["study", "forms", "records", "errors", "warnings", "data_cutoff"]
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def truncate_text(values: pd.Series, limit: int = MAX_REPORT_CHARS) -> pd.Series:
    """Values longer than ``limit`` characters cut to ``limit`` plus :data:`TRUNCATION_MARKER`."""
    text = values.astype(object).where(values.notna(), "").astype(str)
    n = text.str.len()
    long = (n > limit) & ~text.str.contains(_TRUNCATED)
    if not long.any():
        return values
    cut = text.str.slice(0, limit) + n.map(lambda k: TRUNCATION_MARKER.format(n=k))  # map over lengths
    return values.astype(object).where(~long, cut)


def truncate_findings(findings: pd.DataFrame, limit: int = MAX_REPORT_CHARS) -> pd.DataFrame:
    """``value`` and ``column`` cut at ``limit``, ``message`` at :data:`MAX_MESSAGE_CHARS` (see
    :func:`truncate_text`); already-cut texts are left as they are."""
    out = findings.copy()
    for col, lim in (("value", limit), ("column", limit), ("message", max(limit, MAX_MESSAGE_CHARS))):
        if col in out.columns and len(out):
            out[col] = truncate_text(out[col], lim)
    return out


def sort_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Findings in a stable order: study, file, row (file-level first), column, check, value, message."""
    f = findings.reindex(columns=FINDING_COLUMNS).copy()
    f["row"] = pd.array(f["row"], dtype="Int64")
    for c in FINDING_COLUMNS:
        if c != "row":
            f[c] = f[c].astype(object).where(f[c].notna(), "").astype(str)
    f["_r"] = f["row"].fillna(-1).astype("int64")
    f = f.sort_values(["study", "file", "_r", "column", "check", "severity", "value", "message"],
                      kind="mergesort")
    return f.drop(columns="_r").reset_index(drop=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (no half-written report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _generated() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch.isdigit():
        return ""
    return dt.datetime.fromtimestamp(int(epoch), tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_bytes(findings: pd.DataFrame) -> bytes:
    """The machine report: one line per finding, sorted, UTF-8, LF line ends."""
    buf = io.StringIO()
    sort_findings(findings).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def _clean(text) -> str:
    return _XML_INVALID.sub("\ufffd", str(text))


def _lines(g: pd.DataFrame, limit: int) -> str:
    """Text lines ``severity: file row N COLUMN='value': message`` for up to ``limit`` findings."""
    h = g.head(limit)
    where = ("row " + h["row"].astype(str)).where(h["row"].notna(), "file")
    col = (" " + h["column"]).where(h["column"] != "", "")
    val = ("='" + h["value"] + "'").where(h["value"] != "", "")
    lines = (h["severity"] + ": " + h["file"] + " " + where + col + val + ": " + h["message"]).tolist()
    if len(g) > limit:
        lines.append(f"... and {len(g) - limit} more (see gate_report.csv)")
    return "\n".join(lines)


def junit_bytes(findings: pd.DataFrame, summary: pd.DataFrame, executed: pd.DataFrame) -> bytes:
    """JUnit XML: one testsuite per study, one testcase per check x file.

    A testcase fails (``<failure>``) when the check found errors in that file; warnings are
    listed in the testcase's ``<system-out>`` and do not fail it. ``executed`` (columns
    study, file, check) lists the checks that ran, so passing checks show as passed tests.
    """
    f = sort_findings(findings)
    cases = pd.concat([executed.reindex(columns=["study", "file", "check"]),
                       f[["study", "file", "check"]]], ignore_index=True).drop_duplicates()
    cases = cases.sort_values(["study", "file", "check"], kind="mergesort")
    by_case = {k: g for k, g in f.groupby(["study", "file", "check"], sort=False)}
    root = ET.Element("testsuites", name="raw-extract gate")
    totals = {"tests": 0, "failures": 0}
    for study in summary["study"]:
        sc = cases[cases["study"] == study]
        suite = ET.SubElement(root, "testsuite", name=_clean(study))
        props = ET.SubElement(suite, "properties")
        srow = summary[summary["study"] == study].iloc[0]
        for key in ("forms", "records", "errors", "warnings", "data_cutoff"):
            ET.SubElement(props, "property", name=key, value=_clean(srow[key]))
        n_fail = 0
        for case in sc.itertuples(index=False):  # one per check x file, not per record
            stem = case.file.rsplit(".", 1)[0] if case.file else "study"
            tc = ET.SubElement(suite, "testcase", classname=_clean(f"{study}.{stem}"), name=_clean(case.check),
                               file=_clean(case.file), time="0")
            g = by_case.get((study, case.file, case.check))
            if g is None:
                continue
            errors, warnings = g[g["severity"] == "error"], g[g["severity"] != "error"]
            if len(errors):
                n_fail += 1
                first = errors.iloc[0]["message"]
                fail = ET.SubElement(tc, "failure", type=_clean(case.check),
                                     message=_clean(f"{len(errors)} error{'s' if len(errors) > 1 else ''} in "
                                                    f"{case.file}: {first}"))
                fail.text = _clean(_lines(errors, JUNIT_LINES_PER_CASE))
            if len(warnings):
                ET.SubElement(tc, "system-out").text = _clean(_lines(warnings, JUNIT_LINES_PER_CASE))
        suite.set("tests", str(len(sc)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        suite.set("skipped", "0")
        suite.set("time", "0")
        stamp = _generated()
        if stamp:
            suite.set("timestamp", stamp.rstrip("Z"))
        totals["tests"] += len(sc)
        totals["failures"] += n_fail
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", "0")
    root.set("time", "0")
    ET.indent(root)
    buf = io.BytesIO()
    ET.ElementTree(root).write(buf, encoding="UTF-8", xml_declaration=True)
    return buf.getvalue() + b"\n"


def html_bytes(findings: pd.DataFrame, summary: pd.DataFrame) -> bytes:
    """The human report: a summary per study, then per file the counts per check and the findings."""
    f = sort_findings(findings)
    studies = []
    for srow in summary.to_dict("records"):
        sf = f[f["study"] == srow["study"]]
        files = []
        for file, g in sf.groupby("file", sort=True):
            counts = (g.groupby(["check", "severity"], sort=True)
                      .agg(count=("message", "size"), example=("message", "first")).reset_index())
            counts = counts.sort_values(["severity", "check"], kind="mergesort")
            rows = g.head(HTML_ROWS_PER_FILE).assign(row=lambda x: x["row"].astype(object).where(x["row"].notna(), ""))
            files.append({
                "file": file,
                "errors": int((g["severity"] == "error").sum()),
                "warnings": int((g["severity"] != "error").sum()),
                "counts": counts.to_dict("records"),
                "rows": rows.to_dict("records"),
                "hidden": max(0, len(g) - HTML_ROWS_PER_FILE),
            })
        studies.append({**srow, "files": files})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    html = env.get_template("gate_report.html.j2").render(
        studies=studies, generated=_generated(),
        total_errors=int((f["severity"] == "error").sum()),
        total_warnings=int((f["severity"] != "error").sum()),
        rows_per_file=HTML_ROWS_PER_FILE,
    )
    return html.encode("utf-8")


def write_reports(out_dir: Path, findings: pd.DataFrame, summary: pd.DataFrame,
                  executed: pd.DataFrame) -> list[Path]:
    """Write the three gate reports into ``out_dir`` and return their paths."""
    out_dir = Path(out_dir)
    summary = summary.reindex(columns=SUMMARY_COLUMNS)
    findings = truncate_findings(findings)
    outputs = {
        "gate_report.csv": csv_bytes(findings),
        "gate_report.html": html_bytes(findings, summary),
        "junit.xml": junit_bytes(findings, summary, executed),
    }
    paths = []
    for name, data in outputs.items():
        atomic_write(out_dir / name, data)
        paths.append(out_dir / name)
    return paths
