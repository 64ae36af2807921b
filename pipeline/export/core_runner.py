"""Run CDISC CORE (``cdisc-rules-engine``) on one built study. Runs inside ``.venv-core``.

The engine needs Python 3.12 while the pipeline runs on 3.11, so
:mod:`pipeline.export.conformance` launches this file as a script with the
``.venv-core`` interpreter::

    .venv-core/bin/python pipeline/export/core_runner.py JOB.json RESULT.json
    .venv-core/bin/python pipeline/export/core_runner.py --check

It imports nothing from :mod:`pipeline` and only the standard library at module level, so the
pure helpers below can be unit-tested from the 3.11 environment; the engine is imported
inside :func:`run_job`.

The job file (written by the conformance command) names the datasets with their SDTM class
from ``specs/sdtm/datasets.csv``, the study's define.xml, the rules cache folder and the
standard. The engine cannot tell a dataset's class without CDISC Library metadata, which the
public rules cache does not carry; it then skips every class-scoped rule (for example the DM,
trial-design and relationship rules) without saying so. :func:`library_classes` turns our
spec's classes into the library structure the engine reads, so those rules run.

Exit codes: 0 done, 2 the engine or the cache is unusable (one line on stderr).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import sys
import time
import warnings
from pathlib import Path

#: the engine release this runner was written and tested against (``make conformance`` pins it)
ENGINE_VERSION = "0.17.1"

#: files that every rules cache must have, and optional ones the engine uses when present
REQUIRED_CACHE_FILES = ("rules.pkl", "rules_dictionary.pkl")
OPTIONAL_CACHE_FILES = ("variable_codelist_maps.pkl", "standards_details.pkl",
                        "standards_models.pkl", "variables_metadata.pkl")

#: our spec's class (CDISC CT "SDTM class" spelling) -> the CDISC Library class name the
#: engine converts back with ``convert_library_class_name_to_ct_class``
LIBRARY_CLASS_NAMES = {
    "SPECIAL PURPOSE": "Special-Purpose",
    "INTERVENTIONS": "Interventions",
    "EVENTS": "Events",
    "FINDINGS": "Findings",
    "FINDINGS ABOUT": "Findings About",
    "TRIAL DESIGN": "Trial Design",
    "RELATIONSHIP": "Relationship",
    "STUDY REFERENCE": "Study Reference",
    "ASSOCIATED PERSONS": "Associated Persons",
}


class RunnerError(Exception):
    """A problem the user must fix (engine, cache or job file); one line, exit 2."""


def library_classes(class_map: dict[str, str], standard_metadata: dict | None = None) -> dict:
    """Standard metadata in CDISC Library shape carrying each dataset's class.

    ``class_map`` maps a dataset name as the engine sees it (the unsplit name: the domain for
    split datasets, ``SUPPAE``, ``RELREC``) to its class from our spec. Datasets already found in
    ``standard_metadata`` (a full cache's library metadata) keep the library's class; only the
    missing ones are added, so a complete cache always wins over our spec. Only names and classes
    are supplied: no labels, variables or dataset lists, which would make the engine compare our
    datasets against our own spec instead of the standard.
    """
    out = copy.deepcopy(standard_metadata) if standard_metadata else {}
    classes = out.setdefault("classes", [])
    known = {d.get("name") for c in classes for d in c.get("datasets", [])}
    by_name = {c.get("name"): c for c in classes}
    # loop over datasets of one study (a few dozen), in name order for a stable structure
    for name in sorted(class_map):
        cls = str(class_map[name]).strip().upper()
        if name in known or not cls:
            continue
        lib_name = LIBRARY_CLASS_NAMES.get(cls)
        if lib_name is None:
            raise RunnerError(f"dataset {name}: class {class_map[name]!r} is not an SDTM class")
        entry = by_name.get(lib_name)
        if entry is None:
            entry = {"name": lib_name, "datasets": []}
            classes.append(entry)
            by_name[lib_name] = entry
        entry.setdefault("datasets", []).append({"name": name})
        known.add(name)
    if not classes and not standard_metadata:
        return {}  # nothing to supply: the engine sees no library metadata, as without us
    return out


def rules_for_standard(rules: dict, dictionary: dict, standard: str, version: str,
                       wanted: list[str] | None = None) -> list[dict]:
    """The rules the cache lists for ``standard``/``version`` (e.g. ``sdtmig``/``3-4``), sorted
    by CORE id; ``wanted`` restricts them to some ids (unknown ids are an error)."""
    key = f"{standard.lower()}/{version.replace('.', '-')}"
    ids = dictionary.get(key)
    if not ids:
        raise RunnerError(f"the rules cache lists no rules for {key}")
    ids = sorted(set(ids))
    if wanted:
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise RunnerError(f"rule(s) not in the cache for {key}: {', '.join(unknown)}")
        ids = [i for i in ids if i in set(wanted)]
    missing = [i for i in ids if i not in rules]
    if missing:
        raise RunnerError(f"rules cache is inconsistent: {len(missing)} rule(s) of {key} missing from rules.pkl")
    return [rules[i] for i in ids]


def check_cache(cache_dir: Path) -> dict[str, str]:
    """The cache's files with their SHA-256 (recorded in the report); error if unusable."""
    if not cache_dir.is_dir():
        raise RunnerError(f"rules cache folder {cache_dir} does not exist")
    missing = [f for f in REQUIRED_CACHE_FILES if not (cache_dir / f).is_file()]
    if missing:
        raise RunnerError(f"rules cache {cache_dir} lacks {', '.join(missing)}")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(cache_dir.glob("*.pkl"))}


def _load(path: Path):
    with path.open("rb") as fh:
        return pickle.load(fh)  # noqa: S301 - the engine's own cache format; the user chose the folder


def _library_metadata(cache_dir: Path, standard: str, version: str, class_map: dict[str, str],
                      define_xml: str | None):
    """LibraryMetadataContainer from whatever the cache holds, plus our classes and the
    define.xml's CT packages and extensible-codelist terms (as the engine's own CLI does)."""
    from cdisc_rules_engine.models.library_metadata_container import LibraryMetadataContainer
    from cdisc_rules_engine.utilities import utils as u

    dash = version.replace(".", "-")
    standard_metadata: dict = {}
    model_metadata: dict = {}
    if (cache_dir / "standards_details.pkl").is_file():
        standard_metadata = _load(cache_dir / "standards_details.pkl").get(
            u.get_standard_details_cache_key(standard, dash), {}) or {}
    if standard_metadata and (cache_dir / "standards_models.pkl").is_file():
        model_metadata = _load(cache_dir / "standards_models.pkl").get(
            u.get_model_details_cache_key_from_ig(standard_metadata), {}) or {}
    codelist_map = {}
    if (cache_dir / "variable_codelist_maps.pkl").is_file():
        codelist_map = _load(cache_dir / "variable_codelist_maps.pkl").get(
            u.get_standard_codelist_cache_key(standard, dash)) or {}
    variables_metadata = {}
    if (cache_dir / "variables_metadata.pkl").is_file():
        variables_metadata = _load(cache_dir / "variables_metadata.pkl").get(
            u.get_library_variables_metadata_cache_key(standard, dash, None)) or {}
    ct_files = sorted(p.name for p in cache_dir.glob("*ct-*.pkl"))
    ct_package_metadata: dict = {}
    ct_packages: list[str] = []
    if define_xml:
        from cdisc_rules_engine.services.define_xml.define_xml_reader_factory import DefineXMLReaderFactory

        reader = DefineXMLReaderFactory.from_filename(define_xml)
        if reader.class_define_xml_version().model_package == "define_2_1":
            standards, merged, extensible, merged_flag = reader.get_ct_standards_metadata()
            for std in standards:
                package = f"{std.publishing_set.lower()}ct-{std.version}"
                ct_packages.append(package)
                if f"{package}.pkl" in ct_files:
                    ct_package_metadata[package] = _load(cache_dir / f"{package}.pkl")
            if merged_flag:
                ct_package_metadata["define_XML_merged_CT"] = merged
        ct_package_metadata["extensible"] = reader.get_extensible_codelist_mappings()
    container = LibraryMetadataContainer(
        standard_metadata=library_classes(class_map, standard_metadata),
        model_metadata=model_metadata,
        variable_codelist_map=codelist_map,
        variables_metadata=variables_metadata,
        ct_package_metadata=ct_package_metadata,
        published_ct_packages={f.split(".")[0] for f in ct_files},
        cache_path=str(cache_dir),
    )
    return container, sorted(set(ct_packages)), bool(standard_metadata)


def _deterministic_report(export: dict, folder: Path) -> dict:
    """CORE's own JSON report with the run-dependent fields fixed: the generation time comes
    from SOURCE_DATE_EPOCH (as reproducible builds do) or is left out, the runtime is not
    recorded and dataset paths are relative to the study folder."""
    details = export.get("Conformance_Details", {})
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        details["Report_Generation"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(epoch)))
    else:
        details.pop("Report_Generation", None)
    details.pop("Total_Runtime", None)
    for row in export.get("Dataset_Details", []) or []:
        row["path"] = "."
    return export


def run_job(job: dict) -> dict:
    """Run every selected rule on the job's datasets; return the result document."""
    warnings.simplefilter("ignore")
    try:
        import cdisc_rules_engine  # noqa: F401
        from cdisc_rules_engine.models.rule_validation_result import RuleValidationResult
        from cdisc_rules_engine.rules_engine import RulesEngine
        from cdisc_rules_engine.services import logger as engine_logger
        from cdisc_rules_engine.services.cache import InMemoryCacheService
        from version import __version__ as engine_version
    except ImportError as exc:
        raise RunnerError(f"cdisc-rules-engine is not importable here ({exc})") from None
    engine_logger.disabled = True

    cache_dir = Path(job["cache"])
    cache_files = check_cache(cache_dir)
    standard, version = job.get("standard", "sdtmig"), job.get("version", "3.4")
    rules = rules_for_standard(_load(cache_dir / "rules.pkl"), _load(cache_dir / "rules_dictionary.pkl"),
                               standard, version, job.get("rules") or None)
    datasets = sorted(job["datasets"], key=lambda d: d["name"])
    paths = [d["path"] for d in datasets]
    class_map = {d["name"]: d.get("class", "") for d in datasets}
    # split datasets (LBDA holds DOMAIN LB) are looked up by their domain: give the domain the
    # class of the dataset that carries it when the domain's own dataset is not in the study
    for d in datasets:
        if d.get("domain") and d["domain"] not in class_map:
            class_map[d["domain"]] = d.get("class", "")
    define_xml = job.get("define_xml") or None
    library, ct_packages, full_library = _library_metadata(cache_dir, standard, version, class_map, define_xml)
    cache = InMemoryCacheService.get_instance()
    engine = RulesEngine(
        cache=cache,
        standard=standard,
        standard_version=version.replace(".", "-"),
        ct_packages=ct_packages,
        define_xml_path=define_xml,
        library_metadata=library,
        max_dataset_size=max(os.path.getsize(p) for p in paths),
        dataset_paths=paths,
    )
    results = []
    # one engine call per rule (the engine's unit of work); a few hundred rules
    for rule in rules:
        by_dataset = engine.validate_single_rule(copy.deepcopy(rule))
        flat = [r for name in sorted(by_dataset) for r in by_dataset[name]]
        results.append(RuleValidationResult(rule, flat))

    export = {}
    try:
        from cdisc_rules_engine.models.validation_args import Validation_args
        from cdisc_rules_engine.services.reporting.json_report import JsonReport
        from cdisc_rules_engine.services.reporting.sdtm_report_data import SDTMReportData

        fields = {f: None for f in Validation_args._fields}
        fields.update(cache=str(cache_dir), dataset_paths=paths, standard=standard, version=version,
                      controlled_terminology_package=[], define_xml_path=define_xml,
                      max_errors_per_rule=(0, False), raw_report=False, output_format=["JSON"],
                      output="core_report.json")
        args = Validation_args(**fields)
        report_data = SDTMReportData(engine.data_service.get_datasets(), paths, results, 0.0, args)
        export = _deterministic_report(JsonReport(report_data, args).get_export(), Path(paths[0]).parent)
    except Exception as exc:  # noqa: BLE001 - the raw results below are still complete
        export = {"report_error": f"{type(exc).__name__}: {exc}"}
    return {
        "engine_version": engine_version,
        "standard": standard,
        "version": version,
        "ct_packages": ct_packages,
        "library_metadata": "cache" if full_library else "classes from specs/sdtm/datasets.csv",
        "class_map": dict(sorted(class_map.items())),
        "cache_files": cache_files,
        "rules_selected": len(rules),
        "results": [r.to_representation() for r in results],
        "core_report": export,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        try:
            from version import __version__
            import cdisc_rules_engine  # noqa: F401
        except ImportError as exc:
            print(f"cdisc-rules-engine not installed: {exc}", file=sys.stderr)
            return 2
        print(__version__)
        return 0
    if len(argv) != 2:
        print("usage: core_runner.py JOB.json RESULT.json | --check", file=sys.stderr)
        return 2
    try:
        job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        doc = run_job(job)
    except RunnerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=str, ensure_ascii=False), encoding="utf-8")
    tmp.replace(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
