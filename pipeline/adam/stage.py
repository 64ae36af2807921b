"""The ADaM stage of the build: after the SDTM export, before define.xml and the listings.

:func:`build_adam` is a post-export hook (:data:`pipeline.build.POST_EXPORT_HOOKS`). It reads
only the SDTM frames *as exported* and the study parameters, derives the ADaM datasets
(:data:`pipeline.adam.REGISTRY`, one module each), orders and checks them against the ADaM spec
``specs/adam/`` with the same output checks as SDTM (:mod:`pipeline.export.checks`), and writes
into ``<study>/adam/``:

- ``<ds>.xpt`` (XPT v5) and ``<ds>.json`` (Dataset-JSON v1.1), same writers as SDTM;
- ``define.xml`` / ``define.html`` (Define-XML 2.1 for ADaMIG 1.3, same writer as SDTM);
- ``findings.csv``: warnings of the ADaM output checks.

An error finding of the ADaM checks fails the study's build (:class:`~pipeline.errors.DataError`,
the staging folder is discarded). The frames are left on ``ctx.adam`` for the listings.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.adam import REGISTRY
from pipeline.adam.common import finish, sdtm_spec_of, text
from pipeline.config import Study
from pipeline.errors import DataError
from pipeline.export import checks, datasetjson, writer, xpt
from pipeline.spec import Spec, load_spec

FOLDER = "adam"
#: modules this hook imports only when it runs (the dataset modules of :data:`REGISTRY` and the
#: helpers of :func:`build_adam`): a parallel build imports them in its parent before it forks
#: the workers (:func:`pipeline.build.imports_on_use`), so that no worker imports them again
IMPORTS_ON_USE = (*(f"pipeline.adam.{name}" for name in REGISTRY), "pipeline.adam.reports",
                  "pipeline.export.numeric_guard", "pipeline.export.define")


#: the ADaM specs loaded by :func:`adam_spec`: (specs folder, CTCAE version, digest of the
#: folder's files) -> the spec; a build worker builds several studies of the same spec folder
_LOADED: dict[tuple, Spec] = {}


def _folder_digest(root: Path) -> str:
    """SHA-256 over the names and bytes of every file under the specs folder (~1.4 MB, ~2 ms):
    an ADaM spec loaded from the same bytes is the same spec."""
    h = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):  # the spec files (metadata)
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def adam_spec(sdtm_spec: Spec) -> Spec:
    """The ADaM spec beside the SDTM spec (``specs/adam``), with the study's CTCAE version when
    the SDTM spec carries one (:func:`pipeline.rules.ctcae_lab.with_study_version`).

    Loaded once per content of the specs folder and CTCAE version (:data:`_LOADED`), so that
    the next study of a build worker keeps its tables and what was computed from them (its rule
    tables, the output checks' schemas). The ADaM spec also hands out the SDTM spec it was made
    beside (:func:`pipeline.adam.common.sdtm_spec_of`, its value-level table): a cached spec
    whose SDTM value-level table differs from ``sdtm_spec``'s is not reused."""
    key = (str(sdtm_spec.root), sdtm_spec.standards.get("ctcae_version"), _folder_digest(sdtm_spec.root))
    cached = _LOADED.get(key)
    if cached is not None:
        seen = sdtm_spec_of(cached)
        if seen is sdtm_spec or seen.valuelevel.equals(sdtm_spec.valuelevel):
            return cached
    spec = _load_adam_spec(sdtm_spec)
    _LOADED.clear()  # one spec folder a build: the last one only
    _LOADED[key] = spec
    return spec


def _load_adam_spec(sdtm_spec: Spec) -> Spec:
    """:func:`adam_spec`, read from the files."""
    spec = load_spec(sdtm_spec.root, "adam")  # its rule tables read once, handed out as copies (Spec.rule)
    if "ctcae_version" in sdtm_spec.standards:
        spec = replace(spec, standards={**spec.standards, "ctcae_version": sdtm_spec.standards["ctcae_version"]})
    spec._memo("sdtm spec", "", lambda _name: sdtm_spec)  # for the modules that read SDTM metadata (ADRS)
    return spec


def derive_all(sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study
               ) -> tuple[dict[str, pd.DataFrame], dict]:
    """Every ADaM dataset of :data:`REGISTRY` whose module is in the tree, shaped by the spec,
    and the module extras (keys starting with ``_``: inputs of the response reports).

    Order matters: ADSL first; ADAE next, whose DLT flags give ADSL its DLT-evaluable
    population; the BDS datasets then read ADSL (and ADRS for ADTTE)."""
    from pipeline.adam import adae, adsl

    base = adsl.build(sdtm, spec, study)
    ae = adae.build(sdtm, base, spec, study)
    base = adsl.dlt_population(base, ae, study.dlt_window_days)
    ae = ae.drop(columns=[c for c in ("DLTEVLFL",) if c in ae]).merge(
        base[["USUBJID", "DLTEVLFL"]], on="USUBJID", how="left")
    known = set(spec.datasets["dataset"])
    out = {"ADSL": finish(base, spec, "ADSL"), "ADAE": finish(ae, spec, "ADAE")}
    extras: dict = {}
    for name in REGISTRY:  # the remaining dataset modules, in order (metadata loop)
        if name in ("adsl", "adae"):
            continue
        try:
            mod = importlib.import_module(f"pipeline.adam.{name}")
        except ModuleNotFoundError:
            continue
        for key, frame in mod.build(sdtm, {**out, **extras}, spec, study).items():
            if key.startswith("_"):
                extras[key] = frame
            elif key in known:
                out[key] = finish(frame, spec, key)
    return out, extras


def derive(sdtm: dict[str, pd.DataFrame], spec: Spec, study: Study) -> dict[str, pd.DataFrame]:
    """The ADaM datasets only (see :func:`derive_all`)."""
    return derive_all(sdtm, spec, study)[0]


def check(adam: dict[str, pd.DataFrame], spec: Spec, studyid: str, dm: pd.DataFrame) -> pd.DataFrame:
    """Output-check findings of every ADaM dataset (the SDTM checks, driven by the ADaM spec;
    USUBJID must be a DM subject)."""
    from pipeline.export import numeric_guard

    found = [checks.check_dataset(frame, spec, name, studyid, dm) for name, frame in sorted(adam.items())]
    found.append(numeric_guard.numeric_findings(adam, spec, studyid))  # no inf / out-of-IBM-range reaches a writer
    return checks.sort_findings(checks.concat_findings(found))


def write(folder: Path, adam: dict[str, pd.DataFrame], spec: Spec, study: Study) -> None:
    """XPT v5 + Dataset-JSON of each dataset, and the ADaM define.xml/define.html."""
    from pipeline.export import define

    folder.mkdir(parents=True, exist_ok=True)
    stamp = xpt.build_timestamp(study.data_cutoff)
    originator = str(study.get("sponsor", "")) or study.studyid
    exported = {}
    for name in sorted(adam):
        codes: dict = {}  # the character columns factorised once for both files
        out = xpt.write_xpt(adam[name], spec, name, folder / xpt.xpt_name(name), stamp, factorized=codes)
        datasetjson.write_dataset_json(out, spec, name, folder / datasetjson.json_name(name), study.studyid,
                                       originator, stamp, exported=True, factorized=codes)
        exported[name] = out
    data, root = define.checked_define(exported, spec, study, stamp)
    (folder / define.DEFINE_XML).write_bytes(data)
    (folder / define.DEFINE_HTML).write_bytes(define.define_html(root))


def build_adam(study_dir: Path, datasets: dict[str, pd.DataFrame], reports: dict[str, pd.DataFrame], ctx) -> None:
    """Post-export hook: derive, check and write the ADaM datasets into ``study_dir/adam``, and
    the response reports built from ADRS into ``study_dir/reports`` (added to ``reports`` for
    the listings)."""
    from pipeline.adam.reports import response_reports

    study = ctx.study
    spec = adam_spec(ctx.spec)
    sdtm = dict(datasets)
    derived, extras = derive_all(sdtm, spec, study)
    adam = {n: checks.order_dataset(f, spec, n) for n, f in derived.items()}
    findings = check(adam, spec, study.studyid, sdtm["DM"])
    errors = findings[findings["severity"] == "error"]
    if len(errors):
        first = "; ".join((errors["file"] + "." + errors["column"] + ": " + errors["message"]).head(5))
        raise DataError(f"ADaM output checks: {len(errors)} error(s): {first}")
    folder = Path(study_dir) / FOLDER
    write(folder, adam, spec, study)
    writer.write_csv(findings.reset_index(drop=True), folder / "findings.csv")
    reports_out = response_reports(adam, extras, spec, study)
    # derived (ADaM) against collected (SDTM FAPR) engraftment dates: a data-manager report
    from pipeline.adam.engraftment import COLUMNS as ENG_COLUMNS, discrepancies, transplant_listing
    eng = extras.get("_engraftment", pd.DataFrame(columns=ENG_COLUMNS))
    if (text(derived["ADSL"].get("HSCTFL", pd.Series(dtype=object))) == "Y").any():
        reports_out["engraftment_discrepancies"] = discrepancies(eng, sdtm.get("FAPR"), spec)
        reports_out["hsct_engraftment"] = transplant_listing(derived["ADSL"], eng, sdtm, spec)
    for name, frame in sorted(reports_out.items()):
        frame = sorted_report(frame)
        writer.write_csv(frame, Path(study_dir) / "reports" / f"{name}.csv")
        reports[name] = frame
    ctx.adam = adam


def sorted_report(frame: pd.DataFrame) -> pd.DataFrame:
    """A report's rows in a stable order (all columns, left to right), as the build sorts them."""
    if frame.empty or not len(frame.columns):
        return frame.reset_index(drop=True)
    if not frame.index.is_unique:  # (not a report of ours) as the build sorts it, by index label
        keys = frame.astype(str)
        return frame.loc[keys.sort_values(list(keys.columns), kind="mergesort").index].reset_index(drop=True)
    return frame.iloc[text_order(frame)].reset_index(drop=True)


def text_order(frame: pd.DataFrame) -> np.ndarray:
    """The positions of a stable sort of ``frame.astype(str)`` by all its columns, left to right,
    missing last (:func:`pipeline.derive.seq.key_order` of the texts).

    The columns are made text and ranked one at a time, and only until the columns so far tell
    every row apart: a stable sort by more columns keeps that order (each later column only
    breaks ties, and there are none). A report is ~10-25 columns whose first two or three
    (subject, parameter, date) are a key, so most columns are not converted at all."""
    n = len(frame)
    ranks: list[np.ndarray] = []
    combined = np.zeros(n, dtype=np.int64)  # one code per distinct combination of the ranks so far
    for c in range(len(frame.columns)):  # the report's columns, left to right, until the rows are told apart
        texts = frame.iloc[:, c].astype(str)
        codes, uniques = pd.factorize(texts, sort=True, use_na_sentinel=True)
        rank = np.where(codes < 0, len(uniques), codes)
        ranks.append(rank)
        combined, distinct = pd.factorize(combined * (len(uniques) + 1) + rank)
        if len(distinct) == n:
            break
    return np.lexsort(ranks[::-1])


__all__ = ["build_adam", "derive", "check", "text"]
