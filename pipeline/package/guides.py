"""The editable drafts of the reviewer's guides, kept in the build folder.

The package (:mod:`pipeline.package.ectd`) puts the PDF of each guide into eCTD module 5; the
same guides as HTML and DOCX, which the study team edits before submission, are written into the
build folder ``OUT/<STUDYID>/guides/`` (csdrg.html, csdrg.docx, adrg.html, adrg.docx) with links
relative to that folder, so they open on the build's own datasets, define.xml and aCRF. Like the
CORE reports they are written after the build, so the build's manifest.csv does not list them.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.package import adrg, csdrg

FOLDER = "guides"
DRAFT_FORMATS = ("html", "docx")


def write_drafts(study_out_dir: Path, specs: Path | None = None,
                 formats: tuple[str, ...] = DRAFT_FORMATS) -> list[Path]:
    """Write the cSDRG and the ADRG of one built study into ``study_out_dir/guides``; the paths."""
    folder = Path(study_out_dir) / FOLDER
    return (csdrg.write_csdrg(study_out_dir, folder, specs, href="../", formats=formats)
            + adrg.write_adrg(study_out_dir, folder, specs, sdtm_href="../", adam_href="../adam/", formats=formats))
