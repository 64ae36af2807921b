"""The eCTD module 5 package (pipeline.package.ectd): where each file goes, the SHA-256 manifest
(a changed byte shows; a rerun is byte-identical), every cross-reference resolves (define.xml
leaves and page references, the guides' dataset links) and planted breaks are found."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from conftest import BUILT_EPOCH, RAW, SPECS
from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.package import ectd


def _package(study: Path, root: Path) -> Path:
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = BUILT_EPOCH
    try:
        ectd.build_package([study], root, SPECS)
    finally:
        if before is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before
    return root


@pytest.fixture(scope="module")
def pkg(built_study, tmp_path_factory) -> Path:
    return _package(built_study, tmp_path_factory.mktemp("pkg") / "submission")


def _rel(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_files_go_where_the_conformance_guide_places_them(pkg, built_study):
    sid = built_study.name
    sdtm = f"m5/datasets/{sid}/tabulations/sdtm"
    adam = f"m5/datasets/{sid}/analysis/adam/datasets"
    files = _rel(pkg)
    xpt = {p.name for p in built_study.glob("*.xpt")}
    adam_xpt = {p.name for p in (built_study / "adam").glob("*.xpt")}
    assert "dm.xpt" in xpt and "adsl.xpt" in adam_xpt
    expected = ({f"{sdtm}/{n}" for n in xpt | {"define.xml", "define2-1.xsl", "acrf.pdf", "csdrg.pdf"}}
                | {f"{adam}/{n}" for n in adam_xpt | {"define.xml", "define2-1.xsl", "adrg.pdf"}}
                | {f"dataset-json/{sid}/tabulations/sdtm/{n.replace('.xpt', '.json')}" for n in xpt}
                | {f"dataset-json/{sid}/analysis/adam/datasets/{n.replace('.xpt', '.json')}" for n in adam_xpt}
                | {"sha256sums.txt"})
    assert files == expected
    # byte copies of the build (the XPT the define.xml leaves name, the aCRF it points into)
    for name in ("dm.xpt", "define.xml", "acrf.pdf"):
        assert (pkg / sdtm / name).read_bytes() == (built_study / name).read_bytes()
    assert (pkg / adam / "define.xml").read_bytes() == (built_study / "adam" / "define.xml").read_bytes()


def test_manifest_lists_every_file_with_its_sha256(pkg, built_study):
    lines = (pkg / "sha256sums.txt").read_text(encoding="utf-8").splitlines()
    listed = {ln.split("  ", 1)[1]: ln.split("  ", 1)[0] for ln in lines}
    assert set(listed) == _rel(pkg) - {"sha256sums.txt"}
    assert [ln.split("  ", 1)[1] for ln in lines] == sorted(listed)
    dm = f"m5/datasets/{built_study.name}/tabulations/sdtm/dm.xpt"
    assert listed[dm] == hashlib.sha256((built_study / "dm.xpt").read_bytes()).hexdigest()
    assert ectd.manifest_problems(pkg) == []


def test_a_changed_byte_changes_the_manifest(pkg, tmp_path, built_study):
    copy = tmp_path / "copy"
    shutil.copytree(pkg, copy)
    target = copy / "m5" / "datasets" / built_study.name / "tabulations" / "sdtm" / "acrf.pdf"
    data = bytearray(target.read_bytes())
    data[-10] ^= 1
    target.write_bytes(bytes(data))
    rel = target.relative_to(copy).as_posix()
    assert ectd.manifest_problems(copy) == [f"{rel}: checksum differs from sha256sums.txt"]
    old = (copy / "sha256sums.txt").read_text(encoding="utf-8").splitlines()
    ectd.write_manifest(copy)
    new = (copy / "sha256sums.txt").read_text(encoding="utf-8").splitlines()
    assert [a for a, b in zip(old, new) if a != b] == [ln for ln in old if ln.endswith(f"  {rel}")]
    (copy / "stray.txt").write_text("x")
    assert ectd.manifest_problems(copy) == ["stray.txt: in the package but not in sha256sums.txt"]


def test_rerun_is_byte_identical(pkg, built_study, tmp_path):
    again = _package(built_study, tmp_path / "again")
    assert (again / "sha256sums.txt").read_bytes() == (pkg / "sha256sums.txt").read_bytes()
    # and packaging into the same folder again replaces the study, leaving no staging folder
    _package(built_study, again)
    assert (again / "sha256sums.txt").read_bytes() == (pkg / "sha256sums.txt").read_bytes()
    assert not any(p.name.startswith(".staging") for p in again.iterdir())


def test_every_cross_reference_resolves(pkg, built_study):
    assert ectd.reference_problems(pkg) == []
    sdtm = pkg / "m5" / "datasets" / built_study.name / "tabulations" / "sdtm"
    adam = pkg / "m5" / "datasets" / built_study.name / "analysis" / "adam" / "datasets"
    # the checker really sees the guides' links: the cSDRG links datasets beside it, the ADRG
    # the SDTM datasets three folders up
    assert "dm.xpt" in ectd.pdf_links(sdtm / "csdrg.pdf")
    assert "../../../tabulations/sdtm/dm.xpt" in ectd.pdf_links(adam / "adrg.pdf")
    assert ectd.pdf_page_count(sdtm / "acrf.pdf") > 9


def test_planted_breaks_are_found(pkg, built_study, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(pkg, copy)
    sdtm = copy / "m5" / "datasets" / built_study.name / "tabulations" / "sdtm"
    (sdtm / "acrf.pdf").unlink()
    (sdtm / "ae.xpt").unlink()
    define = sdtm / "define.xml"
    text = define.read_text(encoding="utf-8")
    assert 'PageRefs="' in text
    define.write_text(text.replace('PageRefs="', 'PageRefs="999 ', 1), encoding="utf-8")
    problems = ectd.reference_problems(copy)
    assert any("leaf LF.acrf -> acrf.pdf is not in the package" in p for p in problems)
    assert any("leaf LF.AE -> ae.xpt is not in the package" in p for p in problems)
    assert any("csdrg.pdf: link ae.xpt is not in the package" in p for p in problems)
    assert any("adrg.pdf: link ../../../tabulations/sdtm/ae.xpt is not in the package" in p for p in problems)
    shutil.copy(pkg / "m5" / "datasets" / built_study.name / "tabulations" / "sdtm" / "acrf.pdf", sdtm / "acrf.pdf")
    problems = ectd.reference_problems(copy)
    assert any("refers to page(s) 999 of acrf.pdf" in p for p in problems)


def test_a_study_not_built_is_one_clear_error(tmp_path):
    (tmp_path / "NOPE").mkdir()
    with pytest.raises(ConfigError, match="make sdtm"):
        ectd.assemble_study(tmp_path / "NOPE", tmp_path / "pkg")


def test_cli_package_command(built_study, tmp_path, capsys):
    out = built_study.parent
    code = main(["package", "--study", built_study.name, "--out", str(out), "--specs", str(SPECS),
                 "--raw", str(RAW), "--package-dir", str(tmp_path / "sub")])
    assert code == 0
    assert (tmp_path / "sub" / "sha256sums.txt").is_file()
    assert "package: 1 study" in capsys.readouterr().out
    code = main(["package", "--study", built_study.name, "--out", str(tmp_path / "empty"), "--specs", str(SPECS),
                 "--package-dir", str(tmp_path / "sub2")])
    assert code == 2
    assert "make sdtm" in capsys.readouterr().err


def test_pdf_links_are_read_from_the_annotations_not_from_stream_data(tmp_path):
    """A compressed or ASCII85 stream can spell '/F(' by chance (seen in an ADRG): only the
    object dictionaries are searched; a real /URI annotation is still found."""
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Annot /A << /S /URI /URI (adae.xpt) >> >>\nendobj\n"
                    b"2 0 obj\n<< /Length 20 >>\nstream\nK'9/F(SPjNA#/Type /Page)\nendstream\nendobj\n%%EOF\n")
    assert ectd.pdf_links(pdf) == ["adae.xpt"]
    assert ectd.pdf_page_count(pdf) == 0
