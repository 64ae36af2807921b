"""The eCTD module 5 folder layout of the built studies, with a SHA-256 manifest, and a check that
every cross-reference inside it resolves. ``python -m pipeline package`` / ``make package``.

Layout (FDA Study Data Technical Conformance Guide, the eCTD module 5 ``datasets`` folders)::

    PACKAGE/
      m5/datasets/<STUDYID>/tabulations/sdtm/        SDTM *.xpt, define.xml, define2-1.xsl,
                                                      acrf.pdf, csdrg.pdf
      m5/datasets/<STUDYID>/analysis/adam/datasets/  ADaM *.xpt, define.xml, define2-1.xsl, adrg.pdf
      dataset-json/<STUDYID>/tabulations/sdtm/       the same SDTM datasets as Dataset-JSON v1.1
      dataset-json/<STUDYID>/analysis/adam/datasets/ the same ADaM datasets as Dataset-JSON v1.1
      sha256sums.txt                                  SHA-256 of every other file (``sha256sum -c``)

The m5 tree holds exactly the file types the guide lists for these folders (XPT v5, define.xml
with its stylesheet, PDF). Dataset-JSON is kept beside it, not in it: define.xml's dataset leaves
name the XPT files, XPT is the format the guide requires today, and two copies of a dataset in
one eCTD folder would leave a reviewer guessing which is the submitted one. Its tree mirrors m5,
so a sponsor submitting Dataset-JSON instead (FDA's Dataset-JSON pilots) swaps the folders.

Each study is assembled in a staging folder from its build outputs (``OUT/<STUDYID>``: ``make
sdtm`` first, or ``--build-missing``), checked (:func:`reference_problems`), then swapped in;
files are copied byte for byte and the guides are rendered with ``SOURCE_DATE_EPOCH``, so a
rerun on the same build is byte-identical. Nothing is read from ``../shared``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote

from lxml import etree

from pipeline.errors import ConfigError, DataError

MANIFEST = "sha256sums.txt"
STYLESHEET = "define2-1.xsl"
DEFINE = "define.xml"
ACRF = "acrf.pdf"
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1",
      "xlink": "http://www.w3.org/1999/xlink"}
#: the reviewer's guides (helper modules; a guide whose module is not in the tree is skipped and said)
GUIDES = {"sdtm": ("pipeline.package.csdrg", "write_csdrg", "csdrg.pdf"),
          "adam": ("pipeline.package.adrg", "write_adrg", "adrg.pdf")}


def sdtm_folder(root: Path, studyid: str) -> Path:
    return Path(root, "m5", "datasets", studyid, "tabulations", "sdtm")


def adam_folder(root: Path, studyid: str) -> Path:
    return Path(root, "m5", "datasets", studyid, "analysis", "adam", "datasets")


def json_folders(root: Path, studyid: str) -> tuple[Path, Path]:
    base = Path(root, "dataset-json", studyid)
    return base / "tabulations" / "sdtm", base / "analysis" / "adam" / "datasets"


def _copy(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    return dst


def _guide(standard: str, study_dir: Path, target: Path, specs: Path | None, notes: list[str]) -> None:
    module, function, name = GUIDES[standard]
    try:
        write = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError:
        notes.append(f"{study_dir.name}: {name} not written ({module} is not in the tree yet)")
        return
    write(study_dir, target, specs, formats=("pdf",))


def assemble_study(study_dir: Path, root: Path, specs: Path | None = None) -> list[str]:
    """Copy one built study (``OUT/<STUDYID>``) into the package layout under ``root``; returns
    notes (guides skipped). A folder that is not a complete build is one ConfigError line."""
    study_dir = Path(study_dir)
    sid = study_dir.name
    needed = [study_dir / DEFINE, study_dir / ACRF, study_dir / STYLESHEET, study_dir / "adam" / DEFINE]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ConfigError(f"{sid}: no complete build in {study_dir} (missing {', '.join(missing)}); "
                          "run `make sdtm` (or `python -m pipeline package --build-missing`)")
    notes: list[str] = []
    sdtm, adam = sdtm_folder(root, sid), adam_folder(root, sid)
    json_sdtm, json_adam = json_folders(root, sid)
    # a study's few dozen files: datasets, define, stylesheet, aCRF
    for f in sorted(study_dir.glob("*.xpt")):
        _copy(f, sdtm)
    for name in (DEFINE, STYLESHEET, ACRF):
        _copy(study_dir / name, sdtm)
    for f in sorted((study_dir / "adam").glob("*.xpt")):
        _copy(f, adam)
    _copy(study_dir / "adam" / DEFINE, adam)
    _copy(study_dir / STYLESHEET, adam)   # the ADaM define.xml names the same stylesheet
    for f in sorted(study_dir.glob("*.json")):
        _copy(f, json_sdtm)
    for f in sorted((study_dir / "adam").glob("*.json")):
        _copy(f, json_adam)
    _guide("sdtm", study_dir, sdtm, specs, notes)
    _guide("adam", study_dir, adam, specs, notes)
    if not notes:  # the editable drafts (HTML, DOCX) of the same guides stay in the build: OUT/<STUDYID>/guides/
        from pipeline.package.guides import write_drafts

        write_drafts(study_dir, specs)
    return notes


# ---- the manifest ------------------------------------------------------------------------------
def _files(root: Path) -> list[Path]:
    return sorted((p for p in Path(root).rglob("*") if p.is_file() and p.name != MANIFEST),
                  key=lambda p: p.relative_to(root).as_posix())


def manifest_text(root: Path) -> str:
    """``<sha256>  <path>`` per file of the package (paths relative to ``root``, sorted), the
    format ``sha256sum -c`` reads."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}" for p in _files(root)]
    return "\n".join(lines) + ("\n" if lines else "")


def write_manifest(root: Path) -> Path:
    path = Path(root, MANIFEST)
    path.write_text(manifest_text(root), encoding="utf-8", newline="\n")
    return path


def manifest_problems(root: Path) -> list[str]:
    """Files whose checksum differs from the manifest, and files missing from it or from disk."""
    path = Path(root, MANIFEST)
    if not path.is_file():
        return [f"{path} is missing"]
    listed = dict(reversed(ln.split("  ", 1)) for ln in path.read_text(encoding="utf-8").splitlines() if ln)
    actual = dict(reversed(ln.split("  ", 1)) for ln in manifest_text(root).splitlines() if ln)
    problems = [f"{p}: checksum differs from {MANIFEST}" for p in sorted(set(listed) & set(actual))
                if listed[p] != actual[p]]
    problems += [f"{p}: listed in {MANIFEST} but not in the package" for p in sorted(set(listed) - set(actual))]
    problems += [f"{p}: in the package but not in {MANIFEST}" for p in sorted(set(actual) - set(listed))]
    return problems


# ---- cross-references -------------------------------------------------------------------------
PDF_LINK = re.compile(rb"/(?:URI|F)\s*\(((?:[^()\\]|\\.)*)\)")
PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
#: a PDF stream's data (compressed or ASCII85 bytes): never searched for links or pages, its
#: bytes can spell "/F(" by chance
PDF_STREAM = re.compile(rb"stream\r?\n.*?endstream", re.S)


def _pdf_objects(path: Path) -> bytes:
    """A PDF's bytes without its streams' data: the object dictionaries only."""
    return PDF_STREAM.sub(b"stream endstream", Path(path).read_bytes())


def pdf_page_count(path: Path) -> int:
    """Pages of a PDF written by reportlab (page objects are never in object streams there)."""
    return len(PDF_PAGE.findall(_pdf_objects(path)))


def pdf_links(path: Path) -> list[str]:
    """Relative file targets of the link annotations of a PDF (URI and GoToR/Launch /F)."""
    out = []
    for raw in PDF_LINK.findall(_pdf_objects(path)):
        text = re.sub(rb"\\(.)", rb"\1", raw).decode("latin-1")
        out.append(text)
    return out


def _local(href: str) -> str | None:
    """The file part of a relative link; None for an internal anchor or an absolute URL."""
    if not href or href.startswith("#") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", href):
        return None
    return unquote(href.split("#", 1)[0])


def define_problems(define_xml: Path) -> list[str]:
    """The stylesheet and every def:leaf of a define.xml exist beside it; every def:PDFPageRef
    page is a page of its document."""
    folder = define_xml.parent
    rel = define_xml.as_posix()
    data = define_xml.read_bytes()
    problems = []
    m = re.search(rb'<\?xml-stylesheet[^>]*href="([^"]+)"', data)
    if m and not (folder / m.group(1).decode()).is_file():
        problems.append(f"{rel}: stylesheet {m.group(1).decode()} is not in the package")
    root = etree.fromstring(data)
    leaves = {}
    for leaf in root.iterfind(".//def:leaf", NS):
        href = leaf.get(f"{{{NS['xlink']}}}href")
        leaves[leaf.get("ID")] = folder / href
        if not (folder / href).is_file():
            problems.append(f"{rel}: leaf {leaf.get('ID')} -> {href} is not in the package")
    pages: dict[str, int] = {}
    for ref in root.iterfind(".//def:DocumentRef", NS):
        target = leaves.get(ref.get("leafID"))
        if target is None:
            problems.append(f"{rel}: DocumentRef to undefined leaf {ref.get('leafID')}")
            continue
        for pr in ref.iterfind("def:PDFPageRef", NS):
            if not target.is_file():
                continue
            if target not in pages:
                pages[target] = pdf_page_count(target)
            bad = [n for n in (pr.get("PageRefs") or "").split() if not (n.isdigit() and 1 <= int(n) <= pages[target])]
            if bad:
                item = ref.getparent().getparent().get("OID")
                problems.append(f"{rel}: {item} refers to page(s) {' '.join(bad)} of {target.name} "
                                f"({pages[target]} pages)")
    return problems


def reference_problems(root: Path) -> list[str]:
    """Every cross-reference of the package: define.xml leaves, stylesheets and PDF page
    references; the file links of every PDF (the reviewer's guides' dataset links)."""
    root = Path(root)
    problems = []
    for d in sorted(root.rglob(DEFINE)):
        problems += define_problems(d)
    for pdf in sorted(root.rglob("*.pdf")):
        for href in pdf_links(pdf):
            target = _local(href)
            if target is not None and not (pdf.parent / target).resolve().is_file():
                problems.append(f"{pdf.relative_to(root).as_posix()}: link {href} is not in the package")
            elif target is not None and root.resolve() not in (pdf.parent / target).resolve().parents:
                problems.append(f"{pdf.relative_to(root).as_posix()}: link {href} points outside the package")
    return problems


# ---- the command ---------------------------------------------------------------------------------
def build_package(study_dirs: list[Path], root: Path, specs: Path | None = None) -> list[str]:
    """Assemble the studies into ``root`` (each study's folders replaced whole), check the
    cross-references, write the manifest. Raises DataError on a broken reference (the previous
    package of that study is left as it was). Returns notes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    notes = []
    for study_dir in study_dirs:  # the few studies
        sid = Path(study_dir).name
        stage = root / f".staging-{sid}"
        if stage.exists():
            shutil.rmtree(stage)
        try:
            notes += assemble_study(study_dir, stage, specs)
            problems = reference_problems(stage)
            if problems:
                raise DataError(f"{sid}: package cross-references do not resolve:\n  " + "\n  ".join(problems[:20]))
            for part in (Path("m5", "datasets", sid), Path("dataset-json", sid)):
                src, dst = stage / part, root / part
                if dst.exists():
                    shutil.rmtree(dst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
        finally:
            if stage.exists():
                shutil.rmtree(stage)
    write_manifest(root)
    return notes


def run_package(args: argparse.Namespace) -> int:
    """``python -m pipeline package``: exit 0 written, 1 a broken cross-reference, 2 a study
    not built (or configuration problems)."""
    from pipeline.config import selected_studies

    studies = selected_studies(args.specs, args.study)
    missing = [s.studyid for s in studies if not (Path(args.out) / s.studyid / DEFINE).is_file()]
    if missing and getattr(args, "build_missing", False):
        from pipeline.build import run_build

        build_args = argparse.Namespace(study=missing, raw=args.raw, specs=args.specs, out=args.out,
                                        debug=args.debug, no_progress=True, jobs=None, mode="final")
        code = run_build(build_args)
        if code != 0:
            return code
    dirs = [Path(args.out) / s.studyid for s in studies]
    notes = build_package(dirs, args.package_dir, args.specs)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"package: {len(dirs)} stud{'y' if len(dirs) == 1 else 'ies'} in {args.package_dir} "
          f"({args.package_dir / MANIFEST})")
    return 0
