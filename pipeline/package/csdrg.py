"""The Clinical Study Data Reviewer's Guide (cSDRG) of one built study, drafted from metadata.

Sections follow the PHUSE cSDRG template:

1. Introduction: purpose, acronyms, study data standards and dictionary inventory
   (``specs/sdtm/standards.toml`` and what the build used), source data (the raw forms with
   their checksums from build.log, and the record reconciliation);
2. Protocol Description: number and title, design, trial design datasets (study TOML, TA, TE);
3. Subject Data Description: overview, annotated CRF, the SDTM datasets (spec label, class,
   structure, keys; records from the build manifest; SUPP-- and RELREC use) and one set of notes
   per dataset (the spec's comment, where the data come from, the derived variables with their
   methods, the supplemental qualifiers and the RELREC relationships found in the data);
4. Data Conformance Summary: the CDISC CORE run of ``make conformance``
   (``reports/core_report.json`` and ``reports/core_findings.csv`` written by
   :mod:`pipeline.export.conformance`), one row per remaining finding with its explanation from
   ``specs/studies/<STUDYID>.explanations.csv`` (as matched by the run) or marked **Unexplained**
   (never dropped); without a CORE report the section says so. The pipeline's own output checks
   (:mod:`pipeline.export.checks`) are summarised with this build's counts;
5. Explanations of the conformance findings, one subsection each;

and appendices: inclusion/exclusion criteria (TI), trial summary parameters (TS), provenance.

:func:`write_csdrg` writes ``csdrg.pdf``, ``csdrg.html`` and ``csdrg.docx``. Links to the
datasets, define.xml and the aCRF are relative to the guide's folder; by default the guide sits
beside them, as in eCTD ``m5/datasets/<study>/tabulations/sdtm/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from pipeline.export import checks, xpt
from pipeline.package.document import FORMATS, Document, Link, Strong, write_document
from pipeline.package.guide_common import (Built, cells, derived_rows, draft_guide, fmt, load_built,
                                           protocol_sections)
from pipeline.spec import read_table

STEM = "csdrg"
TITLE = "Clinical Study Data Reviewer's Guide"
CORE_FINDINGS = "core_findings.csv"
CORE_REPORT = "core_report.json"
UNEXPLAINED = "Unexplained"
ACRONYMS = [("aCRF", "Annotated case report form"), ("ADaM", "Analysis Data Model"),
            ("ASTCT", "American Society for Transplantation and Cellular Therapy"),
            ("CAR-T", "Chimeric antigen receptor T cell"), ("CORE", "CDISC Open Rules Engine"),
            ("CRS", "Cytokine release syndrome"), ("CT", "CDISC Controlled Terminology"),
            ("CTCAE", "Common Terminology Criteria for Adverse Events"), ("DLT", "Dose-limiting toxicity"),
            ("ICANS", "Immune effector cell-associated neurotoxicity syndrome"),
            ("MedDRA", "Medical Dictionary for Regulatory Activities"),
            ("SDTM", "Study Data Tabulation Model"), ("SDTMIG", "SDTM Implementation Guide")]


# ---- CORE results ----------------------------------------------------------------------------
def core_results(folder: Path) -> tuple[pd.DataFrame | None, dict]:
    """The CORE findings table of the build (None when ``make conformance`` has not run on it)
    and the run's metadata from core_report.json (empty dict when absent)."""
    reports = Path(folder) / "reports"
    findings = read_table(reports / CORE_FINDINGS) if (reports / CORE_FINDINGS).is_file() else None
    meta = {}
    if (reports / CORE_REPORT).is_file():
        meta = json.loads((reports / CORE_REPORT).read_text(encoding="utf-8"))
    if findings is not None:
        for col in ("rule_id", "cdisc_rule_id", "dataset", "variables", "message", "issues", "explained",
                    "explanation", "justification"):
            if col not in findings.columns:
                findings[col] = ""
    return findings, meta


def finding_status(findings: pd.DataFrame) -> pd.Series:
    """'Explained' or 'Unexplained' per finding row (explained = Y with an explanation text)."""
    ok = (findings["explained"].str.upper() == "Y") & (findings["explanation"].str.strip() != "")
    return ok.map({True: "Explained", False: UNEXPLAINED})


def rule_statuses(meta: dict) -> dict[str, int]:
    """Rules per status in the CORE run (Rules_Report), e.g. {'SUCCESS': 120, 'ISSUE REPORTED': 9}."""
    out: dict[str, int] = {}
    for r in meta.get("Rules_Report") or []:  # CORE's rule list (hundreds of rules)
        if isinstance(r, dict):
            s = str(r.get("status", "")).upper() or "UNKNOWN"
            out[s] = out.get(s, 0) + 1
    return dict(sorted(out.items()))


# ---- pipeline checks -------------------------------------------------------------------------
def pipeline_checks() -> list[tuple[str, str, str]]:
    """(check, severity, rule) of the output checks, read from :mod:`pipeline.export.checks`'
    own table (an RST simple table in its docstring), so the guide lists exactly the checks the
    code documents. Columns are cut at the offsets of the table's ``====`` border."""
    lines = (checks.__doc__ or "").splitlines()
    borders = [i for i, ln in enumerate(lines) if re.match(r"^=+\s+=+\s+=+\s*$", ln)]
    if len(borders) < 3:
        return []
    spans = [m.span() for m in re.finditer(r"=+", lines[borders[0]])]
    cut = [spans[1][0], spans[2][0]]
    rows: list[list[str]] = []
    for ln in lines[borders[1] + 1:borders[2]]:  # the check table (about twenty rows)
        parts = [ln[:cut[0]].strip(), ln[cut[0]:cut[1]].strip(), ln[cut[1]:].strip()]
        if parts[0]:
            rows.append(parts)
        elif rows:
            rows[-1] = [rows[-1][0], f"{rows[-1][1]} {parts[1]}".strip(), f"{rows[-1][2]} {parts[2]}".strip()]
    for i in range(1, len(rows)):  # "idem": the severity of the row above
        if rows[i][1] == "idem":
            rows[i][1] = rows[i - 1][1]
    clean = [(c, s.replace(" /", "/").replace("/", " / ").replace("  ", " "), _unrst(r)) for c, s, r in rows]
    return [(c, s.strip(), r) for c, s, r in clean]


def _unrst(text: str) -> str:
    """RST inline markup of a docstring as plain text (``x`` and :func:`x` -> x)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _check_counts(b: Built) -> pd.DataFrame:
    f = b.report("findings.csv")
    if f is None or f.empty:
        return pd.DataFrame(columns=["check", "severity", "n"])
    return f.groupby(["check", "severity"], sort=True).size().rename("n").reset_index()


# ---- the document ----------------------------------------------------------------------------
def _standards(doc: Document, b: Built) -> None:
    st = b.spec.standards
    meddra_line = next((ln for ln in b.log_section("specification") if ln.startswith("MedDRA")), "")
    rows = [["SDTM", f"Model {st.get('sdtm_version', '')}, SDTMIG {st.get('sdtmig_version', '')}"],
            ["Controlled Terminology", str(st.get("ct_package", ""))],
            ["Data definitions", f"Define-XML {st.get('define_version', '')}"],
            ["Dataset formats", f"SAS XPORT v5 (.xpt); Dataset-JSON {st.get('dataset_json_version', '')} (.json)"],
            ["Adverse event dictionary", f"MedDRA {st.get('meddra_version', '')}"
             + (f" ({meddra_line.split(':', 1)[1].strip()})" if ":" in meddra_line else "")],
            ["Toxicity grading", f"NCI CTCAE v{st.get('ctcae_version', '')}; CRS and ICANS: "
             f"{b.study.get('safety', {}).get('crs_grading', '')}"]]
    doc.table(["Standard or dictionary", "Version used"], rows, widths=[1, 3])


def _source_data(doc: Document, b: Built, raw_href: str | None) -> None:
    inputs = [ln for ln in b.log_section("inputs")]
    rows = []
    for ln in inputs:  # one line per raw file
        m = re.match(r"^(\S+) sha256 ([0-9a-f]{64}) (\d+) rows$", ln)
        if m:
            rows.append([m.group(1), m.group(3), m.group(2)[:16] + "..."])
    forms = b.spec.raw_forms
    delivered = {Path(r[0]).name.split(".")[0] for r in rows}
    if delivered:  # the forms of this study's delivery, in the contract's order
        forms = forms[forms["form"].isin(delivered)]
    doc.p("The SDTM datasets were created by the open-source pipeline from the raw CRF extracts (one file per "
          "CRF form, CDASH-named columns), after a schema gate generated from the raw contract "
          "(specs/raw/forms.csv, specs/raw/columns.csv). The extracts of this delivery:")
    if rows:
        doc.table(["Raw file", "Records", "SHA-256 (first 16)"], rows, widths=[2, 1, 2])
    rec = b.report("reconciliation.csv")
    if rec is not None and not rec.empty:
        top = rec[rec["dataset"] == ""]
        num = top[["raw_records", "consumed_rows", "rejected_rows", "unaccounted_rows"]].apply(
            pd.to_numeric, errors="coerce").fillna(0).astype(int)
        doc.p(f"Record reconciliation (reports/reconciliation.csv): {num['raw_records'].sum()} raw records, "
              f"{num['consumed_rows'].sum()} mapped into SDTM, {num['rejected_rows'].sum()} rejected with a reason "
              f"(reports/rejections.csv), {num['unaccounted_rows'].sum()} unaccounted.")
    if not forms.empty:
        doc.table(["Form", "Label", "SDTM targets"],
                  cells(forms.assign(sdtm_targets=forms["sdtm_targets"].str.replace("|", ", ", regex=False)),
                        ["form", "label", "sdtm_targets"]), widths=[1, 2, 2],
                  caption="CRF forms of this delivery (raw contract specs/raw/forms.csv)")


def _dataset_overview(doc: Document, b: Built, href: str) -> list[str]:
    ds = b.spec.datasets.set_index("dataset")
    built = b.datasets()
    relrec = b.read("RELREC") if "RELREC" in built else pd.DataFrame()
    related = set(relrec["RDOMAIN"].astype(str)) if "RDOMAIN" in relrec else set()
    rows = []
    for name in built:  # built datasets (a few dozen)
        meta = ds.loc[name] if name in ds.index else None
        supp = f"SUPP{name}" in built
        domain = name[:2] if name.startswith("LB") else name
        rows.append([Link(name, href + xpt.xpt_name(name)), "" if meta is None else meta["label"],
                     "" if meta is None else meta["class"].title(), "" if meta is None else meta["structure"],
                     "" if meta is None else meta["keys"].replace("|", ", "), fmt(b.rows(xpt.xpt_name(name))),
                     "Y" if supp else "", "Y" if (name in related or domain in related) and name != "RELREC" else ""])
    doc.table(["Dataset", "Label", "Class", "Structure", "Key variables", "Records", "SUPP", "RELREC"], rows,
              widths=[1.0, 2, 1.2, 2.8, 2.4, 1.05, 0.75, 1.0], caption="SDTM datasets in this delivery")
    missing = [n for n in b.spec.datasets["dataset"] if n not in built and not n.startswith("SUPP--")]
    if missing:
        doc.p("Datasets of the specification not in this delivery (no records for this study; the FDA Technical "
              "Conformance Guide asks for no empty datasets): " + ", ".join(missing) + ".", style="note")
    return built


def _sources(b: Built) -> dict[str, list[str]]:
    rec = b.report("reconciliation.csv")
    out: dict[str, list[str]] = {}
    if rec is None or rec.empty:
        return out
    rows = rec[rec["dataset"] != ""]
    for form, dataset, n in rows[["form", "dataset", "consumed_rows"]].to_numpy(dtype=object).tolist():
        out.setdefault(dataset, []).append(f"{form} ({n} rows)")  # reconciliation rows (dozens)
    return out


def standard_derivation(variable: str) -> bool:
    """USUBJID, --SEQ, EPOCH, --DY/--STDY/--ENDY: derived the same way in every dataset (SDTMIG
    3.4 sections 4.1.9, 4.1.3.1, 4.4.4); the guide names them instead of repeating their methods."""
    return bool(re.fullmatch(r"USUBJID|EPOCH|[A-Z]{2,4}(SEQ|DY|STDY|ENDY)", str(variable)))


def _domain_notes(doc: Document, b: Built, built: list[str]) -> None:
    spec = b.spec
    sources = _sources(b)
    relrec = b.read("RELREC") if "RELREC" in built else pd.DataFrame()
    subject_ds = [n for n in built if n not in set(spec.datasets.loc[
        spec.datasets["class"].str.upper().isin(["TRIAL DESIGN"]), "dataset"]) and not n.startswith("SUPP")
        and n != "RELREC"]
    for name in subject_ds:  # one subsection per dataset (a few dozen)
        meta = spec.datasets.set_index("dataset").loc[name] if name in set(spec.datasets["dataset"]) else None
        label = "" if meta is None else meta["label"]
        doc.h(3, f"{name} - {label}", anchor=f"ds-{name.lower()}")
        if meta is not None and meta["comment"].strip():
            doc.p(meta["comment"].strip())
        if name == "DM":
            dm = b.read("DM")
            if len(dm):
                nrs = dm["ARMNRS"].astype(str).str.strip() if "ARMNRS" in dm else pd.Series([], dtype=str)
                counts = nrs[nrs != ""].value_counts().sort_index()
                doc.p(f"{len(dm)} subjects in DM" + ("; " + "; ".join(f"{k}: {v}" for k, v in counts.items())
                                                   if len(counts) else "") + ".")
        src = sources.get(name)
        doc.p("Source: " + ("raw form " + ", ".join(src) if src else
                            "derived by the pipeline from other SDTM records or the study parameters (no raw form "
                            "maps into it directly)") + ".")
        try:
            v = spec.vars(name)
        except Exception:  # a dataset the spec does not describe: nothing more to say
            continue
        origins = v["origin"].str.strip().replace("", "(none)").value_counts().sort_index()
        doc.p("Variables by origin: " + ", ".join(f"{k} {n}" for k, n in origins.items())
              + ". Collected variables are annotated on the aCRF; their define.xml origins point to its pages.")
        derived = v[v["origin"].str.strip().str.lower() == "derived"]
        standard = derived["variable"].map(standard_derivation)
        if standard.any():
            doc.p("Standard derivations (methods in define.xml): " + ", ".join(derived.loc[standard, "variable"]) + ".")
        derived = derived[~standard]
        if len(derived):
            rows = derived_rows(derived, spec.methods)
            doc.table(["Derived variable(s)", "Label(s)", "Method (specs/sdtm/methods)"], rows, widths=[1, 1.6, 5])
        comments = v[(v["comment"].str.strip() != "") & (v["origin"].str.strip().str.lower() != "derived")]
        if len(comments):
            doc.bullets([f"{var}: {c}" for var, c in comments[["variable", "comment"]].to_numpy(dtype=object).tolist()])
        supp = b.read(f"SUPP{name}") if f"SUPP{name}" in built else pd.DataFrame()
        if len(supp) and "QNAM" in supp:
            g = supp.groupby(["QNAM", "QLABEL", "QORIG"], sort=True).size().rename("n").reset_index()
            doc.table(["QNAM", "QLABEL", "QORIG", "Records"], cells(g, ["QNAM", "QLABEL", "QORIG", "n"]),
                      widths=[1, 3, 1, 1], caption=f"Supplemental qualifiers (SUPP{name})")
        if len(relrec) and "RDOMAIN" in relrec:
            dom = "LB" if name.startswith("LB") else name
            r = relrec[relrec["RDOMAIN"].astype(str) == dom]
            if len(r):
                g = r.groupby(["IDVAR", "RELTYPE"], sort=True, dropna=False).agg(
                    records=("RELID", "size"), relids=("RELID", "nunique")).reset_index()
                doc.table(["IDVAR", "RELTYPE", "RELREC records", "Relationships (RELID)"],
                          cells(g, ["IDVAR", "RELTYPE", "records", "relids"]),
                          caption=f"RELREC rows with RDOMAIN {dom}")


def _conformance(doc: Document, b: Built) -> pd.DataFrame | None:
    findings, meta = core_results(b.folder)
    doc.h(1, "Data Conformance Summary")
    doc.h(2, "Conformance Inputs")
    expl = f"specs/studies/{b.studyid}.explanations.csv"
    if findings is None:
        doc.p([Strong("No CDISC CORE report exists for this build. "),
               f"reports/{CORE_FINDINGS} is absent from the study folder, so the CORE conformance status of these "
               "datasets is not known to this guide. Run `make conformance` (python -m pipeline conformance "
               f"--study {b.studyid}) on this build and regenerate the guide before submission."])
    else:
        run = meta.get("Run") or {}
        details = meta.get("Conformance_Details") or {}
        statuses = rule_statuses(meta)
        rows = [["Engine", f"CDISC CORE (cdisc-rules-engine) {run.get('engine_version') or details.get('CORE_Engine_Version', '')}"],
                ["Standard", f"{details.get('Standard', str(run.get('standard', '')).upper())} "
                             f"{details.get('Version', run.get('version', ''))}"],
                ["Controlled Terminology", str(details.get("CT_Version") or ", ".join(run.get("ct_packages") or []))],
                ["Define-XML", str(details.get("Define_XML_Version", ""))],
                ["Rules cache", ", ".join(f"{k} sha256 {str(v)[:12]}" for k, v in sorted(
                    (run.get("cache_files") or {}).items())) or "not recorded"],
                ["Rules selected", fmt(run.get("rules_selected", ""))],
                ["Rule outcomes", ", ".join(f"{k.lower()} {v}" for k, v in statuses.items()) or "not recorded"],
                ["Explanations", f"{expl} (matched by the conformance run: rule, dataset, variable and value "
                                 "pattern)"]]
        doc.table(["Item", "Value"], rows, widths=[1, 3])
        errored = sorted(str(r.get("core_id", "")) for r in meta.get("Rules_Report") or []
                         if isinstance(r, dict) and str(r.get("status", "")).upper() == "EXECUTION ERROR")
        if errored:
            doc.p(f"{len(errored)} rule(s) ended in an execution error, so CORE could not evaluate them on these "
                  "datasets (the reasons are in reports/core_summary.html; most need CDISC Library metadata the "
                  "public rules cache lacks): " + ", ".join(errored) + ".")
        if not meta:
            doc.p(f"reports/{CORE_REPORT} is absent: the run's engine and rule outcomes are not known; the "
                  f"findings below are those of reports/{CORE_FINDINGS}.", style="note")
    doc.h(2, "Issues Summary")
    if findings is not None:
        status = finding_status(findings)
        n_issues = pd.to_numeric(findings["issues"], errors="coerce").fillna(0).astype(int)
        un = status == UNEXPLAINED
        doc.p(f"{len(findings)} finding(s) (rule x dataset x variables) with {int(n_issues.sum())} issue(s) remain "
              f"after the build; {int(un.sum())} finding(s) with {int(n_issues[un].sum())} issue(s) are "
              f"unexplained. Every finding of reports/{CORE_FINDINGS} is listed; none is dropped. Explanations "
              "are in section 5.")
        if len(findings):
            rows, marked = [], set()
            for i, (rid, cid, ds, var, msg, n, st) in enumerate(findings.assign(_s=status)[
                    ["rule_id", "cdisc_rule_id", "dataset", "variables", "message", "issues", "_s"]].to_numpy(
                    dtype=object).tolist()):  # findings (dozens)
                mark = Strong(UNEXPLAINED) if st == UNEXPLAINED else Link("Explained", f"#{finding_anchor(rid, ds, i)}")
                if st == UNEXPLAINED:
                    marked.add(i)
                rows.append([rid + (f" ({cid})" if cid else ""), ds, var.replace("|", ", "), msg, fmt(n), mark])
            doc.table(["Rule", "Dataset", "Variables", "Message", "Issues", "Status"], rows,
                      widths=[1.5, 0.8, 1.6, 4, 0.7, 1.1], marked=marked,
                      caption="CDISC CORE findings of this build (unexplained rows shaded)")
        else:
            doc.p("CORE reported no issues for this build.")
    else:
        doc.p([Strong("Not available: "), "no CORE report exists for this build (see 4.1)."])
    doc.h(2, "Checks Run by the Pipeline")
    counts = _check_counts(b)
    summary = next((ln for ln in b.log_section("checks")), "")
    doc.p("Before export every dataset is validated against checks generated from the specification "
          "(pipeline.export.checks); an error blocks the study's export, so a delivered build has none. "
          + (f"This build: {summary}." if summary else "")
          + " Warnings are listed in reports/findings.csv. " + _gate_line(b))
    by = {c: int(n) for c, n in counts.groupby("check")["n"].sum().items()} if len(counts) else {}
    rows = [[c, s, r, fmt(by.pop(c, 0))] for c, s, r in pipeline_checks()]
    found = b.report("findings.csv")
    once = found.drop_duplicates("check") if found is not None and "message" in found else None
    first = dict(zip(once["check"], once["message"])) if once is not None else {}
    rows += [[c, ", ".join(sorted(counts.loc[counts["check"] == c, "severity"])),
              "domain or reconciliation finding, e.g. " + first.get(c, ""), fmt(n)] for c, n in sorted(by.items())]
    doc.table(["Check", "Severity", "Rule", "Findings"], rows, widths=[1.75, 0.9, 5, 0.8])
    return findings


def _gate_line(b: Built) -> str:
    """The raw-extract gate's result for this study, from its JUnit report (``OUT/gate/junit.xml``:
    one test suite per study gated in the latest run, with its error and warning counts)."""
    from lxml import etree

    path = b.folder.parent / "gate" / "junit.xml"
    suite = None
    if path.is_file():
        found = etree.parse(str(path)).xpath("//testsuite[@name=$sid]", sid=b.studyid)
        suite = found[0] if found else None
    if suite is None:
        return ("The raw-extract gate ran before the build; its latest report beside this build folder "
                "(gate/junit.xml) does not cover this study.")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    return (f"The raw-extract gate ran before the build (gate/junit.xml): {suite.get('tests', '')} checks on "
            f"{props.get('forms', '')} forms and {props.get('records', '')} records, {props.get('errors', '')} "
            f"error(s), {props.get('warnings', '')} warning(s).")


def finding_anchor(rule_id: str, dataset: str, i: int) -> str:
    return f"finding-{i + 1}-{rule_id.lower()}-{dataset.lower()}"


def _explanations(doc: Document, b: Built, findings: pd.DataFrame | None) -> None:
    doc.h(1, "Data Conformance Issue Explanations")
    if findings is None:
        doc.p("No CORE report exists for this build: there is nothing to explain yet (see 4.1).")
        return
    if not len(findings):
        doc.p("CORE reported no issues: nothing to explain.")
        return
    status = finding_status(findings)
    for i, (rid, ds, var, msg, n, ex, just, st) in enumerate(findings.assign(_s=status)[
            ["rule_id", "dataset", "variables", "message", "issues", "explanation", "justification", "_s"]].to_numpy(
            dtype=object).tolist()):  # findings (dozens)
        doc.h(2, f"{rid} {ds}" + (f" ({var.replace('|', ', ')})" if var else ""), anchor=finding_anchor(rid, ds, i))
        doc.p(f"Message: {str(msg).strip().rstrip('.')}. Issues: {fmt(n)}.")
        if st == UNEXPLAINED:
            doc.p([Strong(f"{UNEXPLAINED}. "), f"No row of specs/studies/{b.studyid}.explanations.csv covers this "
                   "finding. It must be fixed in the data or explained (with its justification) before submission."])
        else:
            doc.p([Strong("Explanation: "), ex])
            if just:
                doc.p([Strong("Justification: "), just])


def _appendices(doc: Document, b: Built) -> None:
    ti = b.read("TI")
    doc.h(1, "Appendix I: Inclusion/Exclusion Criteria (TI)")
    if len(ti):
        cols = [c for c in ("IETESTCD", "IECAT", "IETEST") if c in ti.columns]
        doc.table(cols, cells(ti, cols), widths=[1, 1.2, 6][:len(cols)])
        doc.p("IETEST is limited to 200 characters; the full criterion text is in TIRL where longer "
              "(reports/ti_criterion_text.csv).", style="note")
    else:
        doc.p("TI is not in this delivery.")
    ts = b.read("TS")
    doc.h(1, "Appendix II: Trial Summary Parameters (TS)")
    if len(ts):
        ts = ts.assign(VALUE=ts["TSVAL"].astype(str).where(ts["TSVAL"].astype(str) != "",
                                                           "(null flavor " + ts.get("TSVALNF", "").astype(str) + ")"))
        doc.table(["TSPARMCD", "TSPARM", "TSVAL"], cells(ts, ["TSPARMCD", "TSPARM", "VALUE"]), widths=[1, 2.2, 4])
    else:
        doc.p("TS is not in this delivery.")
    doc.h(1, "Appendix III: Build Provenance")
    soft = b.log_section("software")
    doc.p("Software of the build (build.log): " + "; ".join(soft) + "." if soft else "build.log lists no software.")
    digest = next((ln for ln in b.log_section("specification") if ln.startswith("specification digest")), "")
    if digest:
        doc.p(digest + " (SHA-256 over specs/ as read by the build).")
    doc.p("Every file of the build with its SHA-256 is listed in manifest.csv of the build folder; the package "
          "has its own checksum manifest.", style="note")


def csdrg_document(b: Built, href: str = "", acrf: str = "acrf.pdf", define: str = "define.xml") -> Document:
    """The cSDRG of one built study as a :class:`Document` (links relative to the guide)."""
    doc = draft_guide(b, TITLE, "the study metadata and the built datasets")
    doc.h(1, "Introduction")
    doc.h(2, "Purpose")
    doc.p(["This guide gives the context of the SDTM datasets of study ", b.studyid,
           " beyond the data definitions (", Link("define.xml", href + define), "): the study design, the "
           "datasets and how they were created, and the conformance findings that remain with their explanations."])
    doc.h(2, "Acronyms")
    doc.table(["Acronym", "Meaning"], [list(a) for a in ACRONYMS], widths=[1, 4])
    doc.h(2, "Study Data Standards and Dictionary Inventory")
    _standards(doc, b)
    doc.h(2, "Source Data Used for Dataset Creation")
    _source_data(doc, b, None)
    protocol_sections(doc, b, href)
    doc.h(1, "Subject Data Description")
    doc.h(2, "Overview")
    doc.p("SDTM holds what was collected on the CRF or received from a vendor, mapped to SDTMIG "
          f"{b.spec.standards.get('sdtmig_version', '')} with CDISC CT; variables derived in SDTM are the ones the "
          "SDTMIG defines as such (study days, sequence numbers, EPOCH, standardized results and their CTCAE grades, "
          "the ASTCT daily grades of CRS and ICANS in FA). Responses derived by the study's criteria, best overall "
          "response, populations and time-to-event endpoints are in ADaM (see the ADRG).")
    doc.h(2, "Annotated CRF")
    doc.p(["The annotated CRF (", Link(acrf, href + acrf), ") shows each CRF form with the SDTM dataset and "
           "variable of every field; fields not submitted are marked NOT SUBMITTED. The Collected origins in "
           "define.xml point to its pages."])
    doc.h(2, "SDTM Subject Domains")
    built = _dataset_overview(doc, b, href)
    _domain_notes(doc, b, built)
    findings = _conformance(doc, b)
    _explanations(doc, b, findings)
    _appendices(doc, b)
    return doc


def write_csdrg(study_out_dir: Path, target_dir: Path, specs: Path | None = None, href: str = "",
                formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write the cSDRG of the built study ``study_out_dir`` (``OUT/<STUDYID>``) into
    ``target_dir`` as csdrg.pdf / .html / .docx; returns the paths. ``href`` is the relative
    path from ``target_dir`` to the SDTM datasets, define.xml and acrf.pdf ('' = same folder,
    as in eCTD ``m5/datasets/<study>/tabulations/sdtm/``)."""
    b = load_built(study_out_dir, specs)
    return write_document(csdrg_document(b, href), target_dir, STEM, formats)
