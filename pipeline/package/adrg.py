"""The Analysis Data Reviewer's Guide (ADRG) of one built study, drafted from the ADaM metadata.

Sections follow the PHUSE ADRG template:

1. Introduction: purpose, acronyms, standards (``specs/adam/standards.toml`` with the SDTM ones),
   source data (the SDTM datasets, linked);
2. Protocol Description (the study TOML, shared with the cSDRG);
3. Analysis Considerations Related to Multiple Analysis Datasets: SDTM and ADaM content, core
   (ADSL) variables, treatment variables, analysis populations (``specs/rules/adam_populations.csv``
   with the counts in the built ADSL), date imputation (``adam_date_imputation.csv``);
4. Analysis Data Creation and Processing Issues: data dependencies and traceability (the
   SRCDOM/SRCVAR/SRCSEQ values found in the built datasets), and the derivation rules: every rule
   table of ``specs/rules/`` that drives an analysis derivation (ASTCT, CTCAE, ICAHT, response
   criteria of the study's family, censoring, DLT, ...), each with its rows' sources;
5. Analysis Dataset Descriptions: overview (spec and manifest) and per dataset its parameters
   and derived variables with their methods (``specs/adam/methods``);
6. Data Conformance Summary: the ADaM output checks of the build (``adam/findings.csv``) and
   CDISC CORE, which the conformance command runs with SDTMIG rules only (said so plainly);
7. Submission of Programs.

:func:`write_adrg` writes ``adrg.pdf``, ``adrg.html`` and ``adrg.docx``. Links are relative to
the guide's folder: by default the ADaM datasets sit beside it and the SDTM datasets at
``../../../tabulations/sdtm/``, as in eCTD ``m5/datasets/<study>/analysis/adam/datasets/``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pandas as pd

from pipeline.export import xpt
from pipeline.package import csdrg
from pipeline.package.document import FORMATS, Document, Link, Strong, write_document
from pipeline.package.guide_common import (ROOT, Built, cells, derived_rows, draft_guide, fmt, load_built,
                                           protocol_sections)
from pipeline.spec import load_spec, read_table

STEM = "adrg"
TITLE = "Analysis Data Reviewer's Guide"
ADAM = "adam"
#: default relative path from the ADRG (analysis/adam/datasets) to the SDTM datasets (tabulations/sdtm)
SDTM_HREF = "../../../tabulations/sdtm/"
#: the derivation topics of section 4 and the rule tables each is evaluated from (table stems;
#: ``response_{family}`` is the study's response criteria family)
TOPICS = [
    ("Analysis populations", ["adam_populations"]),
    ("Date imputation", ["adam_date_imputation"]),
    ("Baseline characteristics in ADSL", ["adsl_baseline"]),
    ("CRS and ICANS grading (ASTCT 2019)", ["astct_events", "astct_crs", "astct_icans"]),
    ("Toxicity grades (NCI CTCAE v5.0)", ["ctcae_terms", "ctcae_lab"]),
    ("Dose-limiting toxicity and dose escalation", ["dlt_definition", "dlt_relatedness", "dose_escalation"]),
    ("Hematotoxicity (ICAHT) and cytopenia recovery", ["icaht", "icaht_counting", "cytopenia_recovery"]),
    ("Response criteria", ["response_{family}", "response_order", "mrd_negativity"]),
    ("Time-to-event endpoints and censoring", ["adtte_censoring"]),
    ("Cellular kinetics persistence", ["ck_persistence"]),
]
#: a rule table is printed in full up to this many rows (the study's response criteria always)
FULL_ROWS = 40
ACRONYMS = csdrg.ACRONYMS + [("ADRG", "Analysis Data Reviewer's Guide"), ("BDS", "Basic Data Structure"),
                             ("BOR", "Best overall response"),
                             ("ICAHT", "Immune effector cell-associated hematotoxicity"),
                             ("OCCDS", "Occurrence Data Structure"), ("ORR", "Overall response rate")]


@functools.lru_cache(maxsize=1)
def _sources_text() -> tuple[tuple[str, str], ...]:
    """(module, source text) of the pipeline's modules, read once (the guides and the simulator excluded)."""
    out = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):  # the package's modules (about a hundred)
        if "package" in path.parts or "simulate" in path.parts:
            continue
        out.append((".".join(path.relative_to(ROOT).with_suffix("").parts), path.read_text(encoding="utf-8")))
    return tuple(out)


def _used_by(stem: str) -> list[str]:
    """Modules of the pipeline that name the rule table (its stem in quotes or as a .csv file)."""
    pat = re.compile(rf"""["']{re.escape(stem)}(\.csv)?["']|{re.escape(stem)}\.csv""")
    return [mod for mod, text in _sources_text() if pat.search(text)]


def _rule_table(doc: Document, b: Built, stem: str, full: bool, level: int = 4) -> None:
    path = b.spec.root / "rules" / f"{stem}.csv"
    if not path.is_file():
        doc.p(f"specs/rules/{stem}.csv: not present in this specification.", style="note")
        return
    t = read_table(path)
    users = _used_by(stem)
    sources = t["source"].str.strip().replace("", "(none)").value_counts().sort_index() if "source" in t else None
    doc.h(level, f"specs/rules/{stem}.csv", anchor=f"rule-{stem}")
    doc.p(f"{len(t)} rows; evaluated by " + (", ".join(users) if users else "no module found by name") + ".")
    if full or (len(t) <= FULL_ROWS and len(t.columns) <= 10):
        doc.table(list(t.columns), cells(t, list(t.columns)))
    elif sources is not None:
        doc.table(["Source", "Rows"], [[s, fmt(n)] for s, n in sources.items()], widths=[6, 1],
                  caption=f"Sources of the {len(t)} rows (the table has {len(t.columns)} columns: "
                          + ", ".join(t.columns) + ")")


def _populations(doc: Document, b: Built, adsl: pd.DataFrame) -> None:
    pops = read_table(b.spec.root / "rules" / "adam_populations.csv")
    pops = pops[pops["study"].isin(["*", b.studyid])]
    rows = []
    for flag, desc, src in pops[["flag", "description", "source"]].to_numpy(dtype=object).tolist():  # a few flags
        n = int((adsl[flag].astype(str) == "Y").sum()) if flag in adsl else None
        rows.append([flag, desc, src, "not in ADSL" if n is None else f"{n} of {len(adsl)}"])
    doc.table(["Flag", "Definition", "Source", "Subjects (Y)"], rows, widths=[0.9, 4.5, 2.5, 1.1])


def _dataset_overview(doc: Document, b: Built, adam: list[str], adam_href: str = "") -> None:
    ds = b.spec.datasets.set_index("dataset")
    rows = []
    for name in adam:  # ADaM datasets (a handful)
        m = ds.loc[name] if name in ds.index else None
        rows.append([Link(name, adam_href + xpt.xpt_name(name)), "" if m is None else m["label"],
                     "" if m is None else m["class"].title(), "" if m is None else m["structure"],
                     "" if m is None else m["keys"].replace("|", ", "), fmt(b.rows(f"{ADAM}/{xpt.xpt_name(name)}"))])
    doc.table(["Dataset", "Label", "Class", "Structure", "Key variables", "Records"], rows,
              widths=[1, 2, 2, 2.6, 2.6, 1], caption="Analysis datasets in this delivery")


def _dataset_notes(doc: Document, b: Built, adam: list[str], frames: dict[str, pd.DataFrame]) -> None:
    spec = b.spec
    for name in adam:  # one subsection per ADaM dataset
        m = spec.datasets.set_index("dataset").loc[name] if name in set(spec.datasets["dataset"]) else None
        doc.h(2, f"{name} - {'' if m is None else m['label']}", anchor=f"ds-{name.lower()}")
        if m is not None and m["comment"].strip():
            doc.p(m["comment"].strip())
        f = frames.get(name, pd.DataFrame())
        if "PARAMCD" in f and len(f):
            keys = [c for c in ("PARCAT1", "PARAMCD", "PARAM") if c in f]
            g = f.groupby(keys, sort=True).size().rename("n").reset_index()
            doc.table(keys + ["Records"], cells(g, keys + ["n"]), widths=[1] * (len(keys) - 1) + [3, 0.8],
                      caption=f"{name} parameters")
        try:
            v = spec.vars(name)
        except Exception:  # a dataset the spec does not describe
            continue
        origins = v["origin"].str.strip().replace("", "(none)").value_counts().sort_index()
        doc.p("Variables by origin: " + ", ".join(f"{k} {n}" for k, n in origins.items()) + ".")
        derived = v[v["origin"].str.strip().str.lower() == "derived"]
        if len(derived):
            rows = derived_rows(derived, spec.methods)
            doc.table(["Derived variable(s)", "Label(s)", "Method (specs/adam/methods)"], rows, widths=[1, 1.6, 5])


def _traceability(doc: Document, frames: dict[str, pd.DataFrame], sdtm: set[str], sdtm_href: str,
                  adam_href: str = "") -> None:
    rows = []
    for name, f in frames.items():  # ADaM datasets
        if "SRCDOM" not in f or not len(f):
            continue
        g = f.assign(SRCDOM=f["SRCDOM"].astype(str), SRCVAR=f["SRCVAR"].astype(str)).groupby(
            ["SRCDOM", "SRCVAR"], sort=True).size().rename("n").reset_index()
        for dom, var, n in g.to_numpy(dtype=object).tolist():  # source pairs (a few per dataset)
            target = Link(dom, sdtm_href + xpt.xpt_name(dom)) if dom in sdtm else (
                Link(dom, adam_href + xpt.xpt_name(dom)) if dom.startswith("AD") else dom or "(none)")
            rows.append([name, target, var, fmt(n)])
    doc.table(["Dataset", "SRCDOM", "SRCVAR", "Records"], rows, widths=[1, 1, 1.5, 1],
              caption="Traceability found in the built datasets (SRCDOM/SRCVAR; SRCSEQ gives the source record)")


def _conformance(doc: Document, b: Built) -> None:
    doc.h(1, "Data Conformance Summary")
    doc.h(2, "Conformance Inputs")
    doc.p("Every ADaM dataset is checked before it is written with the output checks of the SDTM datasets "
          "(pipeline.export.checks), driven by the ADaM specification (specs/adam): variables, types, lengths, "
          "labels, codelists and value-level codelists, ISO 8601 dates, ASCII, keys and the subjects of DM. An "
          "error fails the study's build, so a delivered build has none; warnings are in adam/findings.csv.")
    core, meta = csdrg.core_results(b.folder / ADAM)
    if core is None:
        doc.p([Strong("CDISC CORE: no ADaM conformance report exists for this build. "),
               "The conformance command (make conformance) runs the CORE SDTMIG 3.4 rules on the tabulation "
               "datasets only (see the cSDRG); ADaMIG rules have not been run by CORE on these datasets."])
    doc.h(2, "Issues Summary")
    found = b.folder / ADAM / "findings.csv"
    f = read_table(found) if found.is_file() else None
    if f is None:
        doc.p([Strong("Not available: "), "adam/findings.csv is absent from the build."])
    elif not len(f):
        doc.p("The ADaM output checks reported no warnings and no errors for this build.")
    else:
        g = f.groupby(["check", "severity", "message"], sort=True).size().rename("n").reset_index()
        doc.table(["Check", "Severity", "Message", "Records"], cells(g, ["check", "severity", "message", "n"]),
                  widths=[1.2, 0.8, 5, 0.8])
    if core is not None:
        status = csdrg.finding_status(core)
        rows = [[r, d, v.replace("|", ", "), msg, fmt(n), Strong(s) if s == csdrg.UNEXPLAINED else s]
                for r, d, v, msg, n, s in core.assign(_s=status)[
                    ["rule_id", "dataset", "variables", "message", "issues", "_s"]].to_numpy(dtype=object).tolist()]
        doc.table(["Rule", "Dataset", "Variables", "Message", "Issues", "Status"], rows,
                  marked={i for i, s in enumerate(status) if s == csdrg.UNEXPLAINED},
                  caption="CDISC CORE findings on the ADaM datasets")


def adrg_document(b: Built, sdtm_href: str = SDTM_HREF, adam_href: str = "") -> Document:
    """The ADRG of one built study (ADaM spec in ``b.spec``); links to SDTM at ``sdtm_href``, to
    the ADaM datasets and define.xml at ``adam_href`` (relative to the guide)."""
    adam = b.datasets(ADAM)
    sdtm = set(b.datasets())
    frames = {n: b.read(n, ADAM) for n in adam}
    adsl = frames.get("ADSL", pd.DataFrame())
    st, sd = b.spec.standards, load_spec(b.spec.root, "sdtm").standards
    doc = draft_guide(b, TITLE, "the ADaM metadata and the built analysis datasets")
    doc.h(1, "Introduction")
    doc.h(2, "Purpose")
    doc.p(["This guide gives the context of the ADaM datasets of study ", b.studyid, " beyond their data "
           "definitions (", Link("define.xml", adam_href + "define.xml"), "): analysis populations, the derivations and the "
           "clinical rule tables they evaluate, traceability to SDTM, and the conformance checks run."])
    doc.h(2, "Acronyms")
    doc.table(["Acronym", "Meaning"], [list(a) for a in sorted(ACRONYMS)], widths=[1, 4])
    doc.h(2, "Study Data Standards and Dictionary Inventory")
    doc.table(["Standard or dictionary", "Version used"], [
        ["ADaM", f"Model {st.get('adam_model_version', '')}, ADaMIG {st.get('adamig_version', st.get('ig_version', ''))}"],
        ["SDTM (source)", f"Model {sd.get('sdtm_version', '')}, SDTMIG {sd.get('sdtmig_version', '')}"],
        ["Controlled Terminology", f"{st.get('ct_package', '')}; {sd.get('ct_package', '')}"],
        ["Data definitions", f"Define-XML {st.get('define_version', '')}"],
        ["Dataset formats", f"SAS XPORT v5 (.xpt); Dataset-JSON {st.get('dataset_json_version', '')} (.json)"],
        ["Adverse event dictionary", f"MedDRA {sd.get('meddra_version', '')}"],
        ["Toxicity grading", f"NCI CTCAE v{st.get('ctcae_version', '')}; CRS/ICANS ASTCT 2019 consensus"]],
        widths=[1, 3])
    doc.h(2, "Source Data Used for Analysis Dataset Creation")
    doc.p("The analysis datasets are derived only from the SDTM datasets as exported (the same XPT files as the "
          "tabulation package) and the study parameters; no raw CRF data is read by the ADaM stage "
          "(pipeline.adam.stage). SDTM datasets: "
          "(links relative to this guide)")
    doc.p([part for n in sorted(sdtm) for part in (Link(n, sdtm_href + xpt.xpt_name(n)), " ")])
    protocol_sections(doc, b, None)

    doc.h(1, "Analysis Considerations Related to Multiple Analysis Datasets")
    doc.h(2, "Comparison of SDTM and ADaM Content")
    doc.p("SDTM holds what was collected; ADaM holds what is derived for analysis, each record traceable to SDTM. "
          "Investigator responses are SDTM RS records; the responses derived by the study's criteria, best overall "
          "response, responders at the protocol timepoints, DLT flags, ICAHT grades, cytopenia recovery and the "
          "time-to-event endpoints exist only in ADaM.")
    doc.h(2, "Core Variables")
    shared = sorted({c for n, f in frames.items() if n != "ADSL" for c in f.columns} & set(adsl.columns)
                    - {"STUDYID", "USUBJID"})
    doc.p("ADSL variables carried into the other analysis datasets (joined by USUBJID): "
          + (", ".join(shared) if shared else "none") + ".")
    doc.h(2, "Treatment Variables")
    try:
        v = b.spec.vars("ADSL")
        tv = v[v["variable"].str.match(r"^(TRT|DOSE|ARM|ACTARM|LDST)")]
        desc = dict(zip(b.spec.methods["method"], b.spec.methods["description"])) if len(b.spec.methods) else {}
        doc.table(["Variable", "Label", "Origin", "Source or method"],
                  [[a, lab, o, src or (f"{mid}: {desc[mid]}" if mid in desc else mid or "")] for a, lab, o, src, mid in
                   tv[["variable", "label", "origin", "source", "method"]].to_numpy(dtype=object).tolist()],
                  widths=[1, 1.6, 0.9, 4])
    except Exception:  # ADSL not in the spec: nothing to list
        doc.p("ADSL is not in the ADaM specification.")
    doc.h(2, "Analysis Populations")
    _populations(doc, b, adsl)
    doc.h(2, "Imputation and Derivation Methods")
    doc.p("Partial dates are imputed for analysis only (ADaM --DTF flags say which part was imputed); SDTM keeps "
          "the dates as collected. The rule table:")
    _rule_table(doc, b, "adam_date_imputation", True, level=3)

    doc.h(1, "Analysis Data Creation and Processing Issues")
    doc.h(2, "Data Dependencies and Traceability")
    doc.p("ADSL is derived first (DM, SUPPDM, EX, DS, DD/SUPPDS, RS, LBDA), then ADAE, whose DLT flags give ADSL "
          "its DLT-evaluable population, then the BDS datasets, which read ADSL (ADTTE also ADRS and the ADLB "
          "recovery records). ADSL variables trace by their define.xml origins (Predecessor DM.AGE, ...); every "
          "record of the other datasets carries SRCDOM/SRCVAR/SRCSEQ (ADaMIG 1.3 section 3.3.9) to an SDTM record, "
          "an ADSL variable or an ADaM record that traces to SDTM:")
    _traceability(doc, frames, sdtm, sdtm_href, adam_href)
    doc.h(2, "Derivation Rules")
    doc.p("The clinical rules are tables in specs/rules/, each row with its source (guideline, protocol or the "
          "stated assumption); the code evaluates the tables. The tables behind the analysis derivations:")
    family = str(b.study.get("response", {}).get("family", ""))
    for topic, stems in TOPICS:  # derivation topics (ten)
        if topic in ("Date imputation", "Analysis populations"):
            continue
        doc.h(3, topic, anchor=f"topic-{re.sub('[^a-z]+', '-', topic.lower())}")
        for stem in stems:
            name = stem.format(family=family)
            _rule_table(doc, b, name, full=stem == "response_{family}")
    orr = b.study.get("orr", {})
    if orr:
        doc.p(f"Responder definition of this study (specs/studies/{b.studyid}.toml [orr]): {orr.get('label', '')}; "
              f"categories {', '.join(orr.get('categories', []))} at day {orr.get('timepoint_day', '')} "
              f"(window +/- {orr.get('window_days', '')} days).")

    doc.h(1, "Analysis Dataset Descriptions")
    doc.h(2, "Overview")
    _dataset_overview(doc, b, adam, adam_href)
    _dataset_notes(doc, b, adam, frames)
    _conformance(doc, b)
    doc.h(1, "Submission of Programs")
    soft = b.log_section("software")
    doc.p("The analysis datasets were created by the open-source pipeline (one module per dataset, "
          + ", ".join(f"pipeline.adam.{n.lower()}" for n in adam) + "); the software and versions of this build "
          "(build.log): " + ("; ".join(soft) if soft else "not recorded") + ".")
    return doc


def write_adrg(study_out_dir: Path, target_dir: Path, specs: Path | None = None, sdtm_href: str = SDTM_HREF,
               adam_href: str = "", formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write the ADRG of the built study ``study_out_dir`` (``OUT/<STUDYID>``, with its
    ``adam/`` folder) into ``target_dir`` as adrg.pdf / .html / .docx; returns the paths.
    ADaM datasets are linked at ``adam_href`` ('' = beside the guide), SDTM datasets at ``sdtm_href``."""
    b = load_built(study_out_dir, specs, standard="adam")
    return write_document(adrg_document(b, sdtm_href, adam_href), target_dir, STEM, formats)
