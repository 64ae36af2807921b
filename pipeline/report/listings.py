"""Listings, summary tables and figures of one study: ``sdtm/<STUDYID>/listings/``.

Post-export hook :func:`write_listings` (registered in :data:`pipeline.build.POST_EXPORT_HOOKS`)
writes, from the exported SDTM datasets and the build's reports:

- ``listings.xlsx``: one sheet per listing or table (title row with the study, the data
  cut-off and the generation stamp; frozen header; filters; widths from the content);
- ``<id>.html``: each listing as HTML (subject-by-subject where the listing is per subject);
- ``index.html``: links to every listing with its record count, the notes of listings whose
  inputs are absent (skipped, never a crash), and the figures embedded;
- ``figures/*.png``: swimmer plot, blood count recovery, CAR-T expansion.

What is produced is the TLF specification ``specs/tlf`` (:func:`load_config`): the outputs in
order with their number, titles, population, source datasets, footnotes, orientation and
formats, the columns of each listing, and the headers of derived columns (``settings.toml``).
Outputs whose formats include ``rtf``/``pdf`` are also written as ``tlf/<number>-<id>.rtf``
and ``.pdf`` (:mod:`pipeline.report.tlf`). SDTM columns are headed by their spec
label (SUPP-- qualifiers by their QLABEL). Content comes from :mod:`pipeline.report.tables`
and :mod:`pipeline.report.figures` (pure functions); this module only assembles and writes.

Safety: every text from the data is escaped in HTML (jinja2 autoescaping) and can never
become a formula in Excel (:mod:`pipeline.report.excel`).

Determinism: the generation stamp is :func:`pipeline.export.xpt.build_timestamp`
(``SOURCE_DATE_EPOCH`` or the data cut-off); rows are sorted; XLSX and PNG are written
byte-identically.
"""

from __future__ import annotations

import base64
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import Markup, escape
import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.export import xpt
from pipeline.report import excel, figures, tables, tlf
from pipeline.spec import NUMERIC_TYPES, Spec

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
LISTINGS_DIR = "listings"
WORKBOOK = "listings.xlsx"
#: reports the build writes itself as CSV before the hooks run (not in ``reports``)
BUILD_REPORTS = ("reconciliation", "rejections", "findings")
#: per-subject listings are shown subject by subject in HTML
PER_SUBJECT = {"ae_listing", "crs_icans", "dlt", "eligibility_failed", "response", "adam_parameters",
               "cm_listing"}


@dataclass
class Listing:
    """One listing or table, ready to render."""

    id: str
    title: str
    sheet: str
    frame: pd.DataFrame
    headers: list[str]
    note: str = ""
    numeric: set[str] = field(default_factory=set)
    per_subject: bool = False
    #: the output's row of the TLF specification (number, type, source, footnotes, ...)
    entry: dict = field(default_factory=dict)


@dataclass
class Skipped:
    id: str
    title: str
    reason: str


@dataclass
class FigureOut:
    id: str
    title: str
    png: bytes
    file: str
    entry: dict = field(default_factory=dict)
    #: the PNG's pixels (a PIL RGBA image, :func:`pipeline.report.figures.png_and_pixels`), for the PDF
    pixels: object = None


class Skip(Exception):
    """A listing's inputs are absent: it is skipped with this reason."""


#: the TLF specification folder shipped with the pipeline (used when a study's specs lack one)
DEFAULT_TLF_SPEC = Path(__file__).resolve().parents[2] / "specs" / "tlf"
OUTPUT_COLUMNS = ("id", "number", "type", "kind", "title", "subtitle", "population", "source", "orientation",
                  "sort", "sheet", "formats", "report", "params")


def _params(text: str) -> dict[str, list[str]]:
    """``key=v1 v2; key2=v`` -> ``{"key": ["v1", "v2"], "key2": ["v"]}`` (outputs.csv params)."""
    out = {}
    for part in str(text or "").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.split()
    return out


def _csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, pd.errors.ParserError) as exc:
        raise ConfigError(f"TLF specification {path}: {exc}") from None


def tlf_spec_dir(spec: Spec | None = None) -> Path:
    """``<specs>/tlf`` of the study's specification, else the one shipped with the pipeline."""
    if spec is not None and (Path(spec.root) / "tlf" / "outputs.csv").is_file():
        return Path(spec.root) / "tlf"
    return DEFAULT_TLF_SPEC


@lru_cache(maxsize=4)
def load_config(folder: Path = DEFAULT_TLF_SPEC) -> dict:
    """The TLF specification (``specs/tlf``): ``outputs.csv`` (one row per output),
    ``columns.csv`` (the columns of a listing, in order; ``tlf`` = N: workbook and HTML only),
    ``footnotes.csv`` (footnotes in order) and ``settings.toml`` (population, page, the
    display texts of derived cells). Returned as ``{"population", "page", "labels",
    "listing": [entries], "figures": {id: entry}}``; an entry is its outputs.csv row plus
    ``columns``, ``tlf_columns``, ``footnotes``, ``note`` (footnotes joined, for the workbook and
    HTML) and its ``params``."""
    folder = Path(folder)
    try:
        settings = tomllib.loads((folder / "settings.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"TLF specification {folder / 'settings.toml'}: {exc}") from None
    outputs = _csv(folder / "outputs.csv")
    missing = [c for c in OUTPUT_COLUMNS if c not in outputs.columns]
    if missing:
        raise ConfigError(f"TLF specification {folder / 'outputs.csv'}: missing columns {', '.join(missing)}")
    dup = outputs["id"][outputs["id"].duplicated()].tolist()
    if dup:
        raise ConfigError(f"TLF specification {folder / 'outputs.csv'}: repeated output id(s) {', '.join(dup)}")
    cols = _csv(folder / "columns.csv")
    notes = _csv(folder / "footnotes.csv")
    known = set(outputs["id"])
    for name, frame in (("columns.csv", cols), ("footnotes.csv", notes)):
        stray = sorted(set(frame["output"]) - known)
        if stray:
            raise ConfigError(f"TLF specification {folder / name}: unknown output(s) {', '.join(stray)}")
    cfg = {"population": settings.get("population", {}), "page": settings.get("page", {}),
           "swimmer": settings.get("swimmer", {}),
           "labels": settings.get("labels", {}), "listing": [], "figures": {}}
    # a loop over the spec's outputs (a few dozen rows of metadata)
    for row in outputs.to_dict("records"):
        entry = {k: v for k, v in row.items() if v != "" and k != "params"}
        entry.update(_params(row["params"]))
        c = cols[cols["output"] == row["id"]]
        if len(c):
            entry["columns"] = c["variable"].tolist()
            entry["tlf_columns"] = c.loc[c["tlf"] != "N", "variable"].tolist()
            entry["column_datasets"] = dict(zip(c["variable"], c["dataset"]))
        params = _params(row["params"])
        texts = notes.loc[notes["output"] == row["id"], "text"].tolist()
        for k, v in params.items():  # a footnote may state a parameter: {name} -> its value
            texts = [t.replace("{" + k + "}", " ".join(v)) for t in texts]
        entry["footnotes"] = texts
        entry["note"] = " ".join(entry["footnotes"])
        entry["formats"] = row["formats"].split()
        if row["type"] == "Figure":
            cfg["figures"][row["id"]] = entry
        else:
            cfg["listing"].append(entry)
    return cfg


# ---------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------
def adam_variables(spec: Spec) -> pd.DataFrame | None:
    """dataset, variable, label, type of ``specs/adam/variables`` beside the SDTM spec (else
    the pipeline's own; ADaM datasets' headers come from the ADaM spec), or None."""
    folder = Path(spec.root) / "adam" / "variables"
    if not folder.is_dir():
        folder = DEFAULT_TLF_SPEC.parent / "adam" / "variables"  # the pipeline's own ADaM spec
    if not folder.is_dir():
        return None
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8") for p in sorted(folder.glob("*.csv"))]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)[["dataset", "variable", "label", "type"]]


class Labels:
    """Column headers: spec labels of SDTM variables (dataset of the listing first, then the
    domain of the variable's prefix, then any dataset), QLABELs of SUPP-- qualifiers, then
    ``[labels]`` of specs/tlf/settings.toml, then the column name."""

    def __init__(self, spec: Spec, config: dict):
        v = spec.variables
        adam = adam_variables(spec)
        if adam is not None:
            v = pd.concat([v[["dataset", "variable", "label", "type"]], adam], ignore_index=True)
        self.by_ds = {(d, n): lab for d, n, lab in zip(v["dataset"], v["variable"], v["label"])}
        self.types = {(d, n): t for d, n, t in zip(v["dataset"], v["variable"], v["type"])}
        self.first = {}
        for d, n, lab in zip(v["dataset"], v["variable"], v["label"]):
            self.first.setdefault(n, (d, lab))
        vl = spec.valuelevel
        self.qlabels = {}
        if len(vl) and {"variable", "where_variable", "where_value", "label"} <= set(vl.columns):
            q = vl[(vl["variable"] == "QVAL") & (vl["where_variable"] == "QNAM")]
            self.qlabels = dict(zip(q["where_value"], q["label"]))
        self.config = dict(config.get("labels", {}))

    def _dataset(self, col: str, dataset: str | None) -> str | None:
        if dataset and (dataset, col) in self.by_ds:
            return dataset
        if (col[:2], col) in self.by_ds:
            return col[:2]
        return self.first[col][0] if col in self.first else None

    def header(self, col: str, dataset: str | None = None) -> str:
        if col in self.config:
            return self.config[col]
        ds = self._dataset(col, dataset)
        if ds:
            return self.by_ds[(ds, col)]
        if col in self.qlabels:
            return self.qlabels[col]
        return col.replace("_", " ").strip().capitalize() if col.islower() else col

    def is_numeric(self, col: str, frame: pd.DataFrame, dataset: str | None = None) -> bool:
        ds = self._dataset(col, dataset)
        if ds:
            return self.types.get((ds, col)) in NUMERIC_TYPES
        return col in frame.columns and pd.api.types.is_numeric_dtype(frame[col].dtype) \
            and not pd.api.types.is_bool_dtype(frame[col].dtype)


def make_listing(entry: dict, frame: pd.DataFrame, labels: Labels, dataset: str | None = None,
                 columns: list[str] | None = None, note: str | None = None) -> Listing:
    """A Listing from a frame: ``columns`` (those present, in order; default all), headers
    from the labels."""
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    out = frame[cols].reset_index(drop=True)
    ds = entry.get("column_datasets", {})
    return Listing(
        id=entry["id"], title=entry["title"], sheet=entry.get("sheet", entry["id"]), frame=out,
        headers=[labels.header(c, ds.get(c) or dataset) for c in cols],
        note=entry.get("note", "") if note is None else note,
        numeric={c for c in cols if labels.is_numeric(c, out, ds.get(c) or dataset)},
        per_subject=entry.get("kind") in PER_SUBJECT and "USUBJID" in cols, entry=entry)


# ---------------------------------------------------------------------------------------
# listing builders (one per kind)
# ---------------------------------------------------------------------------------------
@dataclass
class Inputs:
    datasets: dict[str, pd.DataFrame]
    reports: dict[str, pd.DataFrame]
    spec: Spec
    study: object
    config: dict
    labels: Labels
    subjects: pd.DataFrame

    def dataset(self, name: str) -> pd.DataFrame:
        d = self.datasets.get(name)
        if d is None:
            raise Skip(f"dataset {name} is not in this build")
        return d

    def report(self, name: str) -> pd.DataFrame:
        r = self.reports.get(name)
        if r is None:
            raise Skip(f"report {name} is not in this build")
        return r

    def treated(self) -> pd.Series:
        return self.subjects.loc[self.subjects["treated"], "USUBJID"]


def _ae_with_supp(inp: Inputs) -> pd.DataFrame:
    return tables.with_supp(inp.dataset("AE"), inp.datasets.get("SUPPAE"), "AESEQ")


def build_ae_listing(entry: dict, inp: Inputs) -> Listing:
    frame = tables.ae_listing(inp.dataset("AE"), inp.datasets.get("SUPPAE"), inp.subjects)
    return make_listing(entry, frame, inp.labels, "AE", entry.get("columns"))


def ae_grades(spec: Spec) -> list[str]:
    """AE grade columns: the grades of CTCAE v5.0 as in the header of
    ``specs/rules/ctcae_terms.csv`` (grade1..grade5)."""
    try:
        cols = spec.rule("ctcae_terms").columns
    except ConfigError:
        return ["1", "2", "3", "4", "5"]
    return [c[len("grade"):] for c in cols if c.startswith("grade") and c[len("grade"):].isdigit()]


def adam_safety_ae(inp: Inputs) -> tuple[pd.DataFrame, pd.Series] | None:
    """Treatment-emergent ADAE records (TRTEMFL = Y) graded by ATOXGR, and the safety
    population (ADSL.SAFFL = Y); None when the build has no ADaM AE data."""
    adae, adsl = inp.datasets.get("ADAE"), inp.datasets.get("ADSL")
    if adae is None or adsl is None or not {"TRTEMFL", "ATOXGR"} <= set(adae.columns) or "SAFFL" not in adsl:
        return None
    pop = tables.text(adsl.loc[tables.column(adsl, "SAFFL") == "Y", "USUBJID"])
    teae = adae[tables.column(adae, "TRTEMFL") == "Y"]
    return teae.assign(AETOXGR=tables.column(teae, "ATOXGR")), pop


def build_ae_summary(entry: dict, inp: Inputs) -> Listing:
    """Table 14.3.1.1 from ADaM (ADAE.TRTEMFL, ATOXGR; N = ADSL.SAFFL = Y); from SDTM AE and
    the treated subjects of DM when the build has no ADaM, saying so in the source line."""
    adam = adam_safety_ae(inp)
    overrides = {}
    if adam is not None:
        ae, pop = adam
    else:
        ae, pop = tables.countable_teae(_ae_with_supp(inp)), inp.treated()
        overrides = {"source": "AE DM", "source_note": "ADaM ADAE/ADSL not in this build",
                     "population": "Treated subjects (DM.RFSTDTC not empty)"}
    labels = inp.labels.config
    counts = tables.ae_summary_counts(ae, pop, labels.get("not_coded", "Not coded"))
    table = tables.ae_summary_table(counts, len(pop), ae_grades(inp.spec), labels)
    table = table.rename(columns={"soc": "AEBODSYS", "term": "AEDECOD"})
    n_line = f"N = {len(pop)} subjects."
    e = {**entry, **overrides, "footnotes": list(entry.get("footnotes", [])) + [n_line]}
    lst = make_listing(e, table, inp.labels, "ADAE" if adam is not None else "AE",
                       note=f"{entry.get('note', '')} {n_line}".strip())
    lst.numeric = set()
    return lst


def event_terms(spec: Spec) -> list[str]:
    """AEDECOD terms of CRS and ICANS (``specs/rules/astct_events.csv``)."""
    try:
        ev = spec.rule("astct_events")
    except ConfigError:
        raise Skip("specs/rules/astct_events.csv is missing") from None
    return [t for t in ev["term"] if t]


def build_crs_icans(entry: dict, inp: Inputs) -> Listing:
    frame = tables.crs_icans_listing(_ae_with_supp(inp), inp.subjects, event_terms(inp.spec))
    lst = make_listing(entry, frame, inp.labels, "AE", entry.get("columns"))
    lst.numeric |= {"ONSETDAY", "DURATION"} & set(lst.frame.columns)
    return lst


def build_dlt(entry: dict, inp: Inputs) -> Listing:
    window = inp.study.dlt_window_days
    min_grade = inp.study.get("safety", {}).get("dlt_min_grade")
    frame = tables.dlt_listing(_ae_with_supp(inp), inp.subjects, window,
                               int(min_grade) if min_grade is not None else None)
    title = f"{entry['title']} (day 0 to day {window} after infusion)"
    lst = make_listing({**entry, "title": title}, frame, inp.labels, "AE", entry.get("columns"))
    lst.numeric |= {"ONSETDAY"} & set(lst.frame.columns)
    return lst


def build_dlt_flag(entry: dict, inp: Inputs) -> Listing:
    """Dose-limiting toxicities: ADAE records with DLTFL = Y (the protocol's DLT definition,
    ``specs/rules/dlt_definition.csv``, applied by the ADaM layer) of DLT-evaluable subjects
    (ADSL.DLTEVLFL = Y when ADSL has it); DLTRULE says which criterion the event met."""
    adae = inp.dataset("ADAE")
    if "DLTFL" not in adae.columns:
        raise Skip("ADAE has no DLT flag (DLTFL)")
    adsl = inp.datasets.get("ADSL")
    evaluable = None
    if adsl is not None and "DLTEVLFL" in adsl.columns:
        evaluable = tables.text(adsl.loc[tables.column(adsl, "DLTEVLFL") == "Y", "USUBJID"])
    frame = tables.adam_dates_as_text(tables.dlt_flagged(adae, inp.subjects, evaluable))
    lst = make_listing(entry, frame, inp.labels, "ADAE", entry.get("columns"))
    lst.numeric -= {c for c in lst.frame.columns if c.endswith("DT")}
    return lst


def lab_grades(spec: Spec) -> list[str]:
    """Lab grade rows/columns: the terms of codelist LBTOXGR (0-4) when the spec has it."""
    if "LBTOXGR" in set(spec.codelists["codelist"]):
        terms = spec.terms("LBTOXGR")
        return sorted(terms, key=lambda t: float(t) if t.replace(".", "", 1).isdigit() else float("inf"))
    return ["0", "1", "2", "3", "4"]


def build_lab_shift(entry: dict, inp: Inputs) -> Listing:
    """Table 14.3.4.1 from ADLB (worst post-baseline grade records ANL01FL/ANL02FL, baseline
    BTOXGRL/BTOXGRH; N = ADSL.SAFFL = Y); from SDTM LB only for a build without ADaM."""
    adlb, adsl = inp.datasets.get("ADLB"), inp.datasets.get("ADSL")
    if adlb is not None and adsl is not None and "ANL01FL" in adlb.columns and "SAFFL" in adsl.columns:
        pop = tables.text(adsl.loc[tables.column(adsl, "SAFFL") == "Y", "USUBJID"])
        worst = tables.adlb_worst_grades(adlb, pop)
        keys, dataset = ("PARAMCD", "PARAM", "ATOXDSC"), "ADLB"
    else:
        worst = tables.lab_worst_grades(inp.dataset("LB"), inp.subjects)
        keys, dataset = ("LBTESTCD", "LBTEST", "LBTOX"), "LB"
    table = tables.lab_shift_table(worst, lab_grades(inp.spec), inp.labels.config, keys)
    lst = make_listing(entry, table, inp.labels, dataset)
    lst.numeric = {c for c in table.columns if c not in keys + ("baseline_grade",)}
    return lst


def build_eligibility_failed(entry: dict, inp: Inputs) -> Listing:
    report = inp.report(entry.get("report", "eligibility_labs"))
    frame = tables.failed_eligibility(report, inp.subjects)
    cols = ["USUBJID", "COHORT"] + [c for c in report.columns if c not in ("USUBJID", "STUDYID")]
    return make_listing(entry, frame, inp.labels, "LB", cols)


def build_response(entry: dict, inp: Inputs) -> Listing:
    frame = tables.response_listing(inp.dataset("RS"), inp.subjects, entry.get("testcodes", ["OVRLRESP"]))
    return make_listing(entry, frame, inp.labels, "RS", entry.get("columns"))


def build_adam_parameters(entry: dict, inp: Inputs) -> Listing:
    """A listing of BDS parameters (params ``dataset=ADRS; paramcds=INVRESP OVRLRESP``)."""
    name = entry.get("dataset", ["ADRS"])[0]
    frame = tables.adam_parameter_listing(inp.dataset(name), inp.subjects, entry.get("paramcds", []))
    lst = make_listing(entry, frame, inp.labels, name, entry.get("columns"))
    lst.numeric -= {c for c in lst.frame.columns if c.endswith("DT")}  # shown as ISO dates
    return lst


def build_cm_listing(entry: dict, inp: Inputs) -> Listing:
    """Concomitant medications (SDTM CM), optionally of the categories in ``params`` ``categories``
    (CMCAT terms, ``_`` for a space)."""
    cats = [c.replace("_", " ") for c in entry.get("categories", [])]
    frame = tables.cm_listing(inp.dataset("CM"), inp.subjects, cats)
    return make_listing(entry, frame, inp.labels, "CM", entry.get("columns"))


def build_report(entry: dict, inp: Inputs) -> Listing:
    report = inp.report(entry["report"])
    return make_listing(entry, report, inp.labels, columns=entry.get("columns"))


BUILDERS = {
    "ae_listing": build_ae_listing, "ae_summary": build_ae_summary, "crs_icans": build_crs_icans,
    "dlt": build_dlt, "dlt_flag": build_dlt_flag, "lab_shift": build_lab_shift, "eligibility_failed": build_eligibility_failed,
    "response": build_response, "adam_parameters": build_adam_parameters, "report": build_report,
    "cm_listing": build_cm_listing,
}


def build_listings(inp: Inputs) -> tuple[list[Listing], list[Skipped]]:
    """Every listing of the configuration, then one per other report; a listing whose inputs
    are absent is skipped with the reason."""
    done, skipped, used = [], [], set()
    for entry in inp.config.get("listing", []):
        kind = entry.get("kind", "")
        if kind not in BUILDERS:
            raise ConfigError(f"specs/tlf/outputs.csv: output {entry.get('id')!r} has unknown kind {kind!r}")
        if entry.get("report"):
            used.add(entry["report"])
        try:
            done.append(BUILDERS[kind](entry, inp))
        except Skip as why:
            skipped.append(Skipped(entry["id"], entry["title"], str(why)))
    for name in sorted(set(inp.reports) - used):
        entry = {"id": f"report_{name}", "title": f"Report: {name.replace('_', ' ')}", "kind": "report",
                 "sheet": name.replace("_", " ").capitalize(), "report": name,
                 "note": f"Report {name} of the build (reports/{name}.csv)."}
        done.append(build_report(entry, inp))
    return done, skipped


# ---------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------
def build_figures(inp: Inputs) -> tuple[list[FigureOut], list[Skipped]]:
    cfg = inp.config.get("figures", {})
    out, skipped = [], []
    sw = cfg.get("swimmer", {})
    if sw:
        order = _response_order(inp.spec)
        h = inp.config.get("swimmer", {}).get("hsct", {})
        hsct = figures.hsct_dates(inp.datasets, h.get("dataset", "PR"), h.get("variable", "PRDECOD"),
                                  h.get("pattern", "stem cell transplant"), h.get("date_variable", "PRSTDTC"))
        lanes, markers, shown = figures.swimmer_data(
            inp.subjects, inp.datasets.get("RS"), order, _one(sw.get("response_testcd"), "OVRLRESP"),
            sw.get("evaluators", []), inp.study.data_cutoff, hsct)
        if hsct is None and h.get("absent_note"):
            sw = {**sw, "footnotes": list(sw.get("footnotes", [])) + [h["absent_note"]]}
        fig = figures.swimmer_figure(lanes, markers, order, sw["title"], shown)
        _add(out, skipped, "swimmer", sw["title"], fig, "no treated subject", sw)
    cr = cfg.get("count_recovery", {})
    if cr:
        if "LB" in inp.datasets:
            data = figures.recovery_data(inp.datasets["LB"], inp.subjects, cr["tests"], planned_days(inp.study))
            fig = figures.recovery_figure(data, cr["tests"], cr["title"])
            _add(out, skipped, "count_recovery", cr["title"], fig, f"no {', '.join(cr['tests'])} result in LB", cr)
        else:
            skipped.append(Skipped("count_recovery", cr["title"], "dataset LB is not in this build"))
    ex = cfg.get("expansion", {})
    if ex:
        if "PC" in inp.datasets:
            data = figures.expansion_data(inp.datasets["PC"], inp.subjects, ex["tests"], planned_days(inp.study),
                                          float(_one(ex.get("blq_factor"), "0.5")))
            fig = figures.expansion_figure(data, ex["tests"], ex["title"])
            _add(out, skipped, "expansion", ex["title"], fig, f"no {', '.join(ex['tests'])} result in PC", ex)
        else:
            skipped.append(Skipped("expansion", ex["title"], "dataset PC is not in this build"))
    for fid, km in cfg.items():  # the spec's Kaplan-Meier figures (a few)
        if km.get("kind") != "km":
            continue
        if "ADTTE" not in inp.datasets:
            skipped.append(Skipped(fid, km["title"], "dataset ADTTE is not in this build"))
            continue
        paramcd = _one(km.get("paramcd"), "OS")
        adtte = inp.datasets["ADTTE"]
        groups = figures.km_data(adtte, paramcd, inp.subjects)
        unit = next(iter(tables.column(adtte[tables.column(adtte, "PARAMCD") == paramcd], "AVALU")), "DAYS")
        fig = figures.km_figure(groups, km["title"], unit)
        _add(out, skipped, fid, km["title"], fig, f"no ADTTE record of PARAMCD {paramcd}", km)
    return out, skipped


def _one(value, default: str) -> str:
    """A single-valued parameter of outputs.csv (params are lists)."""
    if isinstance(value, list):
        return value[0] if value else default
    return value or default


def planned_days(study) -> dict[str, float]:
    """Visit name -> planned protocol day (study ``[[visits]]``; infusion = day 0)."""
    visits = study.visits
    return dict(zip(visits["VISIT"], visits["day"].astype(float))) if len(visits) else {}


def _add(out: list, skipped: list, fid: str, title: str, fig, why: str, entry: dict | None = None) -> None:
    if fig is None:
        skipped.append(Skipped(fid, title, why))
    else:
        png, pixels = figures.png_and_pixels(fig)
        out.append(FigureOut(fid, title, png, f"figures/{fid}.png", entry or {}, pixels))


def _response_order(spec: Spec) -> pd.DataFrame:
    try:
        return spec.rule("response_order")
    except ConfigError:
        return pd.DataFrame(columns=["category", "rank", "progression"])


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def number_texts(num: pd.Series) -> np.ndarray:
    """Numbers as text: whole numbers without a ``.0``, others positional without trailing
    zeros, missing as ``""`` (an object array). Formatted once per distinct value (a listing
    repeats them)."""
    values = num.to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(values)
    distinct, at = np.unique(values[present], return_inverse=True)
    texts = [str(int(v)) if v == np.round(v) else np.format_float_positional(v, trim="-")
             for v in distinct.tolist()]  # distinct values of one column
    out = np.full(len(values), "", dtype=object)
    out[present] = np.array(texts, dtype=object)[at.reshape(-1)] if texts else []
    return out


def display_values(frame: pd.DataFrame, numeric: set[str]) -> dict[str, np.ndarray]:
    """Cell texts for HTML, RTF and PDF, per column an object array of ``str``: numbers
    without a spurious ``.0``, missing as ``""``."""
    return {c: number_texts(frame[c] if frame[c].dtype.kind in "fiu" else pd.to_numeric(frame[c], errors="coerce"))
            if c in numeric else tables.text_values(frame[c]) for c in frame.columns}


def render_listing(lst: Listing, head: dict, cells: dict[str, np.ndarray] | None = None) -> str:
    """One listing as HTML; per-subject listings are grouped with a subject header row.
    ``cells``: :func:`display_values` of the listing, when the caller has them already."""
    cells = display_values(lst.frame, lst.numeric) if cells is None else cells
    names, headers = list(lst.frame.columns), list(lst.headers)
    if lst.per_subject:
        # subject and cohort head each subject's group instead of repeating on every row
        keep = [i for i, c in enumerate(names) if c not in ("USUBJID", "COHORT")]
        names, headers = [names[i] for i in keep], [headers[i] for i in keep]
    numeric_idx = [i for i, c in enumerate(names) if c in lst.numeric]
    rows = row_html(cells, names, numeric_idx, len(lst.frame))
    groups = []
    if lst.per_subject and len(rows):
        subj = list(cells["USUBJID"])
        cohort = list(cells["COHORT"]) if "COHORT" in cells else [""] * len(rows)
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or subj[i] != subj[start]:
                groups.append({"subject": subj[start], "cohort": cohort[start], "rows": rows[start:i]})
                start = i
    else:
        groups.append({"subject": "", "cohort": "", "rows": rows})
    return _env().get_template("listing.html.j2").render(
        listing=lst, headers=headers, names=names, groups=groups, n=len(rows), **head)


def row_html(cells: dict[str, np.ndarray], names: list[str], numeric_idx: list[int], n: int) -> list[Markup]:
    """The ``<tr>`` of every row, built column by column (each distinct text escaped once,
    as jinja2's autoescaping escapes it) rather than cell by cell in the template."""
    out = np.full(n, "<tr>", dtype=object)
    for j, c in enumerate(names):  # columns of the listing
        # hashed (pandas.factorize), not sorted as numpy.unique does with the texts
        at, distinct = pd.factorize(np.asarray(cells[c], dtype=object), use_na_sentinel=False)
        escaped = np.array([str(escape(v)) for v in distinct.tolist()] or [""], dtype=object)  # distinct texts
        out = out + ('<td class="num">' if j in numeric_idx else "<td>") + escaped[at] + "</td>"
    return [Markup(x) for x in (out + "</tr>").tolist()]


def render_index(listings: list[Listing], skipped: list[Skipped], figs: list[FigureOut], head: dict,
                 tlf_files: dict[str, list[str]] | None = None) -> str:
    tlf_files = tlf_files or {}
    embedded = [{"id": f.id, "title": f.title, "file": f.file, "tlf": tlf_files.get(f.id, []),
                 "number": f.entry.get("number", ""),
                 "data": "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")} for f in figs]
    return _env().get_template("index.html.j2").render(listings=listings, skipped=skipped, figures=embedded,
                                                       workbook=WORKBOOK, tlf=tlf_files, **head)


def _build_report_frames(study_dir: Path) -> dict[str, pd.DataFrame]:
    """The reports the build wrote itself (reconciliation, rejections, findings)."""
    out = {}
    for name in BUILD_REPORTS:
        path = Path(study_dir) / "reports" / f"{name}.csv"
        if path.is_file():
            out[name] = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return out


def prepare(datasets: dict[str, pd.DataFrame], reports: dict[str, pd.DataFrame], ctx,
            config: dict | None = None) -> Inputs:
    config = config or load_config(tlf_spec_dir(ctx.spec))
    spec = ctx.spec
    pop = config.get("population", {})
    dm = datasets.get("DM")
    if dm is None:
        dm = pd.DataFrame(columns=["USUBJID"])
    subj = tables.subjects(dm, pop.get("treated_variable", "RFSTDTC"), pop.get("cohort_variables", ["ARM"]))
    return Inputs(datasets=datasets, reports=reports, spec=spec, study=ctx.study, config=config,
                  labels=Labels(spec, config), subjects=subj)


def head_values(study) -> dict:
    stamp = xpt.build_timestamp(study.data_cutoff)
    return {"studyid": study.studyid, "study_title": str(study.get("title", "")),
            "data_cutoff": study.data_cutoff, "generated": stamp.strftime("%Y-%m-%dT%H:%M:%S")}


def write_listings(study_dir: Path, datasets: dict[str, pd.DataFrame], reports: dict[str, pd.DataFrame], ctx) -> None:
    """Post-export hook: listings, tables and figures into ``<study_dir>/listings/``."""
    study_dir = Path(study_dir)
    out = study_dir / LISTINGS_DIR
    out.mkdir(parents=True, exist_ok=True)
    all_reports = {**_build_report_frames(study_dir), **reports}
    # the ADaM stage (an earlier hook) leaves its datasets on ctx.adam
    datasets = {**datasets, **(getattr(ctx, "adam", None) or {})}
    inp = prepare(datasets, all_reports, ctx)
    listings, skipped = build_listings(inp)
    figs, fig_skipped = build_figures(inp)
    head = head_values(ctx.study)
    stamp = xpt.build_timestamp(ctx.study.data_cutoff)
    texts = {lst.id: display_values(lst.frame, lst.numeric) for lst in listings}  # once, for XLSX, HTML, RTF, PDF
    sheets = [excel.Sheet(lst.sheet, lst.title, lst.frame, lst.headers, lst.note, lst.numeric, texts[lst.id])
              for lst in listings]
    excel.write_workbook(out / WORKBOOK, sheets, f"Study {head['studyid']}",
                         f"Data cut-off {head['data_cutoff']}; generated {head['generated']}", stamp)
    for lst in listings:
        (out / f"{lst.id}.html").write_bytes(render_listing(lst, head, texts[lst.id]).encode("utf-8"))
    for f in figs:
        path = out / f.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.png)
    tlf_files = write_tlf(out, listings, figs, head, stamp, inp.config.get("page", {}), texts)
    (out / "index.html").write_bytes(
        render_index(listings, skipped + fig_skipped, figs, head, tlf_files).encode("utf-8"))


# ---------------------------------------------------------------------------------------
# RTF and PDF
# ---------------------------------------------------------------------------------------
TLF_DIR = "tlf"
#: figure kind -> the drawing function of pipeline.report.figures (else <kind>_figure)
FIGURE_FUNCTIONS = {"count_recovery": "recovery_figure"}


def _version() -> str:
    try:
        from importlib.metadata import version
        return version(tlf.PROGRAM_PACKAGE)
    except Exception:  # noqa: BLE001 - not installed as a distribution: the version is unknown
        return "unknown version"


def tlf_file_stem(entry: dict) -> str:
    """``t14_3_1_1_ae_summary``: type initial, number, output id."""
    kind = str(entry.get("type", "Table"))[:1].lower()
    return f"{kind}{str(entry.get('number', '')).replace('.', '_')}_{entry['id']}"


def _source_text(entry: dict) -> str:
    """``AE, DM``: the spec's source datasets (or those a builder fell back to, with its note)."""
    text = ", ".join(str(entry.get("source", "")).split()) or "-"
    return f"{text} ({entry['source_note']})" if entry.get("source_note") else text


def listing_doc(lst: Listing, head: dict, program: str, texts: dict[str, np.ndarray] | None = None) -> tlf.Doc:
    """A listing or table as a :class:`pipeline.report.tlf.Doc`; ``texts``: the listing's
    :func:`display_values`, when the caller has them already."""
    e = lst.entry
    keep = set(e.get("tlf_columns") or lst.frame.columns)
    idx = [j for j, c in enumerate(lst.frame.columns) if c in keep]
    frame = lst.frame.iloc[:, idx]
    texts = display_values(frame, lst.numeric) if texts is None else texts
    cells = [texts[c] for c in frame.columns]
    return tlf.Doc(
        studyid=head["studyid"], type=e.get("type", "Table"), number=e.get("number", ""), title=lst.title,
        subtitle=e.get("subtitle", ""), population=e.get("population", ""), headers=[lst.headers[j] for j in idx],
        rows=np.column_stack(cells).tolist() if cells else [[] for _ in range(len(frame))], align=["r" if c in lst.numeric else "l" for c in frame.columns],
        orientation=e.get("orientation", "portrait"),
        footnotes=list(e.get("footnotes", [])), source=_source_text(e), cutoff=head["data_cutoff"],
        program=program, run=head["generated"])


def write_tlf(out: Path, listings: list[Listing], figs: list[FigureOut], head: dict, stamp,
              page: dict, texts: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, list[str]]:
    """RTF and PDF of every output whose spec formats include them, into ``out/tlf/``;
    returns output id -> the files written (relative to ``out``)."""
    folder = out / TLF_DIR
    folder.mkdir(parents=True, exist_ok=True)
    version = _version()
    written: dict[str, list[str]] = {}
    docs = []
    for lst in listings:
        formats = set(lst.entry.get("formats", []))
        if formats & {"rtf", "pdf"}:
            fn = BUILDERS.get(lst.entry.get("kind", ""), build_report).__name__
            docs.append((lst.entry, formats, listing_doc(lst, head, f"pipeline.report.listings.{fn} ({tlf.PROGRAM_PACKAGE} {version})",
                                                       (texts or {}).get(lst.id))))
    for f in figs:
        e = f.entry
        formats = set(e.get("formats", []))
        if formats & {"rtf", "pdf"}:
            doc = tlf.Doc(studyid=head["studyid"], type=e.get("type", "Figure"), number=e.get("number", ""),
                          title=f.title, subtitle=e.get("subtitle", ""), population=e.get("population", ""),
                          orientation=e.get("orientation", "landscape"), footnotes=list(e.get("footnotes", [])),
                          source=_source_text(e), cutoff=head["data_cutoff"],
                          program=f"pipeline.report.figures.{FIGURE_FUNCTIONS.get(e.get('kind', f.id), e.get('kind', f.id) + '_figure')} "
                                  f"({tlf.PROGRAM_PACKAGE} {version})",
                          run=head["generated"], png=f.png, png_path=out / f.file, image=f.pixels)
            docs.append((e, formats, doc))
    size = float(page.get("font_size", 7))
    margin = float(page.get("margin", 0.6))
    min_size = float(page.get("min_font_size", size))
    for e, formats, doc in docs:
        stem = tlf_file_stem(e)
        files = []
        # one layout (font size, widths, wrapping, pages) for both files: same pages, same "of y"
        lay = tlf.layout(doc, size, margin, min_size, page.get("continued"))
        if "rtf" in formats:
            (folder / f"{stem}.rtf").write_bytes(tlf.rtf_bytes(doc, size, margin, lay))
            files.append(f"{TLF_DIR}/{stem}.rtf")
        if "pdf" in formats:
            (folder / f"{stem}.pdf").write_bytes(tlf.pdf_bytes(doc, stamp, size, margin, lay))
            files.append(f"{TLF_DIR}/{stem}.pdf")
        written[e["id"]] = files
    return written
