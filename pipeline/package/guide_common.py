"""What the cSDRG and the ADRG share: reading a built study folder and the study's design.

A built study folder is ``OUT/<STUDYID>/`` as :mod:`pipeline.build` leaves it (datasets,
``manifest.csv``, ``build.log``, ``reports/``, ``adam/``). Everything here reads files only;
the guides never rebuild anything. Record counts come from the build's manifest, which lists
the rows of every file it wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.config import Study, load_study
from pipeline.errors import ConfigError
from pipeline.export import xpt
from pipeline.package.document import Document, Link
from pipeline.spec import Spec, load_spec, read_table

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PROGRAM = "cart-sdtm-pipeline"


@dataclass
class Built:
    """One built study folder and the metadata it was built from."""

    folder: Path
    study: Study
    spec: Spec
    manifest: pd.DataFrame
    log: str

    @property
    def studyid(self) -> str:
        return self.study.studyid

    @property
    def stamp(self) -> datetime:
        """The documents' date: SOURCE_DATE_EPOCH, else the data cut-off (reruns identical)."""
        return xpt.build_timestamp(self.study.data_cutoff)

    def rows(self, relpath: str) -> int | None:
        """Rows the manifest records for one file (``dm.xpt``, ``adam/adsl.xpt``), None if absent."""
        hit = self.manifest[self.manifest["file"] == relpath]
        if hit.empty or str(hit["rows"].iloc[0]).strip() == "":
            return None
        return int(float(hit["rows"].iloc[0]))

    def columns(self, relpath: str) -> int | None:
        hit = self.manifest[self.manifest["file"] == relpath]
        if hit.empty or str(hit["columns"].iloc[0]).strip() == "":
            return None
        return int(float(hit["columns"].iloc[0]))

    def datasets(self, sub: str = "") -> list[str]:
        """Dataset names (upper case) of the XPT files the manifest lists in ``sub`` ('' or 'adam')."""
        prefix = f"{sub}/" if sub else ""
        files = self.manifest["file"]
        pat = re.compile(rf"^{re.escape(prefix)}[a-z0-9]+\.xpt$")
        return sorted(f[len(prefix):-4].upper() for f in files if pat.match(f))

    def read(self, name: str, sub: str = "") -> pd.DataFrame:
        """A built dataset (XPT) as a DataFrame; empty when the file is absent."""
        import pyreadstat

        path = self.folder / sub / xpt.xpt_name(name) if sub else self.folder / xpt.xpt_name(name)
        if not path.is_file():
            return pd.DataFrame()
        frame, _ = pyreadstat.read_xport(str(path))
        return frame

    def log_section(self, name: str) -> list[str]:
        """The lines of one ``[section]`` of build.log."""
        out, inside = [], False
        for line in self.log.splitlines():  # build.log (a hundred lines)
            if line.startswith("[") and line.endswith("]"):
                inside = line == f"[{name}]"
                continue
            if inside and line.strip():
                out.append(line)
        return out

    def report(self, name: str) -> pd.DataFrame | None:
        path = self.folder / "reports" / name
        return read_table(path) if path.is_file() else None


def load_built(study_dir: Path, specs: Path | None = None, standard: str = "sdtm") -> Built:
    """Open a built study folder; a folder that is not a build is one ConfigError line."""
    folder = Path(study_dir)
    specs = Path(specs) if specs is not None else SPECS
    if not (folder / "manifest.csv").is_file() or not (folder / "define.xml").is_file():
        raise ConfigError(f"{folder}: not a built study folder (no manifest.csv and define.xml): build it first "
                          "(make sdtm)")
    log_path = folder / "build.log"
    log = log_path.read_text(encoding="utf-8") if log_path.is_file() else ""
    named = re.match(r"^study (\S+):", log)  # build.log's first line names the study
    study = load_study(specs, named.group(1) if named else folder.name)
    spec = load_spec(specs, standard)
    manifest = read_table(folder / "manifest.csv")
    return Built(folder, study, spec, manifest, log)


def fmt(value) -> str:
    """A value for a table cell: floats without a spurious .0, lists joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return format(value, ".10g") if value != int(value) or abs(value) >= 1e15 else str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def cells(frame: pd.DataFrame, cols: list[str]) -> list[list[str]]:
    """Table cells of a (small: metadata, trial design, report) frame, formatted."""
    return [[fmt(v) for v in row] for row in frame[cols].to_numpy(dtype=object).tolist()]


def derived_rows(derived: pd.DataFrame, methods: pd.DataFrame) -> list[list[str]]:
    """Rows (variables, labels, method description) of a dataset's derived variables, one row per
    method: variables sharing a method (BASE and BTOXGR from one baseline rule) are listed together,
    in spec order; a variable without a method shows its comment."""
    desc = dict(zip(methods["method"], methods["description"])) if "method" in methods.columns else {}
    frame = derived.assign(_desc=derived["method"].map(lambda m: desc.get(m, "") if m else ""))
    frame["_desc"] = frame["_desc"].where(frame["_desc"] != "", frame["comment"])
    frame["_key"] = frame["method"].where(frame["method"] != "", "var:" + frame["variable"])
    grouped = frame.groupby("_key", sort=False).agg(variables=("variable", ", ".join), labels=("label", "; ".join),
                                                    text=("_desc", "first"))
    return cells(grouped.reset_index(), ["variables", "labels", "text"])


def title_meta(b: Built, version_note: str) -> list[tuple[str, str]]:
    s = b.study
    return [("Study", b.studyid), ("Title", str(s.get("title", ""))), ("Sponsor", str(s.get("sponsor", ""))),
            ("Registry", str(s.get("registry_id", "")) or "not registered in the study parameters"),
            ("Data cut-off", s.data_cutoff), ("Document date", b.stamp.strftime("%Y-%m-%d")),
            ("Status", version_note)]


def draft_guide(b: Built, title: str, made_from: str) -> Document:
    """A reviewer's guide of one built study, opened with its title page: ``title`` (PHUSE
    template name), the study and its title, the document date and the draft status naming what
    the guide is generated from (``made_from``); the sponsor is the author."""
    return Document(title, b.studyid, f"Study {b.studyid}: {b.study.get('title', '')}", b.stamp,
                    title_meta(b, f"Draft generated from {made_from} by {PROGRAM}; the sponsor reviews and "
                                  "completes it before submission"),
                    author=str(b.study.get("sponsor", "")))


def protocol_sections(doc: Document, b: Built, trial_design_href: str | None) -> None:
    """Section 2 of both guides: protocol number and title, design, arms, treatments, schedule.

    ``trial_design_href``: relative path prefix of the SDTM trial design datasets (None: no links)."""
    s = b.study
    doc.h(1, "Protocol Description")
    doc.h(2, "Protocol Number and Title")
    doc.table(["Item", "Value"], [
        ["Protocol number (STUDYID)", b.studyid],
        ["Registry identifier", str(s.get("registry_id", "")) or "none given in specs/studies/" + b.studyid + ".toml"],
        ["Protocol title", str(s.get("title", ""))],
        ["Short title", str(s.get("short_title", ""))],
        ["Phase", str(s.get("phase", ""))],
        ["Indication", str(s.get("indication", ""))],
        ["Sponsor", str(s.get("sponsor", ""))],
        ["Study start", str(s.get("study_start", ""))],
        ["Data cut-off of this delivery", s.data_cutoff]], widths=[1, 3])
    doc.h(2, "Protocol Design")
    planned = s.get("planned_subjects", "")
    ages = f"{s.get('age_min', '')} to {s.get('age_max', '')} years" if s.get("age_min") is not None else ""
    doc.p(f"{s.get('design', '')} study of {s.get('product', 'the investigational product')} in "
          f"{str(s.get('indication', '')).lower() or 'the study population'}"
          + (f"; {planned} subjects planned" if planned != "" else "")
          + (f"; ages {ages}" if ages else "") + (f"; sexes {s.get('sexes')}" if s.get("sexes") else "") + ".")
    safety = s.get("safety", {})
    response = s.get("response", {})
    orr = s.get("orr", {})
    facts = [f"DLT observation window: {safety.get('dlt_window_days', '')} days after the CAR-T infusion."
             if safety.get("dlt_window_days") is not None else "",
             f"CRS graded by {safety.get('crs_grading', '')}; ICANS graded by {safety.get('icans_grading', '')}; "
             f"other adverse events graded by {safety.get('ae_grading', '')}." if safety else "",
             f"Response criteria: {response.get('criteria', '')} (categories {', '.join(response.get('categories', []))}); "
             f"assessments at {', '.join(response.get('assessment_visits', []))}." if response else "",
             f"Primary response endpoint: {orr.get('label', '')}." if orr.get("label") else ""]
    doc.bullets([f for f in facts if f])
    arms = s.arms
    if not arms.empty:
        cols = [c for c in ("armcd", "arm", "description", "dose_cells_per_kg") if c in arms.columns]
        doc.table([{"armcd": "ARMCD", "arm": "Arm", "description": "Description",
                    "dose_cells_per_kg": "CAR-T dose (cells/kg)"}[c] for c in cols],
                  cells(arms, cols),
                  caption="Arms (specs/studies, [[arms]])")
    tr = s.treatments
    if not tr.empty:
        cols = [c for c in ("extrt", "excat", "dose", "dosu", "dosfrm", "days") if c in tr.columns]
        doc.table([{"extrt": "Treatment", "excat": "Category", "dose": "Dose", "dosu": "Unit", "dosfrm": "Form",
                    "days": "Protocol days (0 = CAR-T infusion)"}[c] for c in cols],
                  cells(tr, cols),
                  caption="Protocol treatments ([[treatments]])")
    visits = s.visits
    if not visits.empty:
        doc.p(f"Visit schedule: {len(visits)} planned visits from {visits['VISIT'].iloc[0]} "
              f"(protocol day {fmt(visits['day'].iloc[0])}) to {visits['VISIT'].iloc[-1]} "
              f"(day {fmt(visits['day'].iloc[-1])}); protocol day 0 is the CAR-T infusion and study day 1 "
              "(SDTM has no day 0). The planned visits with their windows are in TV.")
    if trial_design_href is not None:
        _trial_design(doc, b, trial_design_href)


def _trial_design(doc: Document, b: Built, href: str) -> None:
    doc.h(2, "Trial Design Datasets")
    names = [n for n in b.datasets() if n in set(b.spec.datasets.loc[
        b.spec.datasets["class"].str.upper() == "TRIAL DESIGN", "dataset"])]
    doc.table(["Dataset", "Label", "Records"],
              [[Link(n, href + xpt.xpt_name(n)), str(b.spec.dataset(n)["label"]), fmt(b.rows(xpt.xpt_name(n)))]
               for n in names], widths=[1, 3, 1])
    ta = b.read("TA")
    if len(ta):
        cols = [c for c in ("ARMCD", "ARM", "TAETORD", "ETCD", "ELEMENT", "EPOCH") if c in ta.columns]
        doc.table(cols, cells(ta, cols),
                  caption="TA - Trial Arms")
    te = b.read("TE")
    if len(te):
        cols = [c for c in ("ETCD", "ELEMENT", "TESTRL", "TEENRL", "TEDUR") if c in te.columns]
        doc.table(cols, cells(te, cols),
                  widths=[1, 2, 3, 3, 1][:len(cols)], caption="TE - Trial Elements")
    doc.p("TV (planned visits), TI (inclusion/exclusion criteria, Appendix I) and TS (trial summary parameters, "
          "Appendix II) are generated from the study parameters file specs/studies/" + b.studyid + ".toml.")
