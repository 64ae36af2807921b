"""Write a study's simulated forms to ``raw/<STUDYID>/`` byte-identically.

- CSV: the study's ``[raw].encoding`` (utf-8; utf-8-sig = with BOM; gb18030), ``\\n`` line
  endings, minimal quoting, missing values as empty fields.
- XLSX (``[raw].formats``): openpyxl, every cell text; the workbook's created/modified
  properties are fixed and the zip is rewritten with sorted entries and a fixed timestamp,
  so the bytes do not depend on the clock.
- SAS7BDAT: :func:`pipeline.simulate.sas7bdat.write_sas7bdat` (char columns, fixed header
  timestamps); when that writer cannot be imported the form is written as CSV with a warning.

Files are written to a temporary folder next to the target and swapped into place only
when every file was written, so a failed run leaves the previous files.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.config import Study
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

FIXED_TIME = datetime(2000, 1, 1, 0, 0, 0)
ZIP_TIME = (2000, 1, 1, 0, 0, 0)


def _csv_bytes(df: pd.DataFrame, encoding: str) -> bytes:
    text = df.to_csv(index=False, lineterminator="\n", na_rep="")
    return text.encode(encoding)


def _xlsx_bytes(df: pd.DataFrame, sheet: str) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    wb.properties.creator = "pipeline.simulate"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    ws = wb.create_sheet(sheet[:31])
    ws.append(list(df.columns))
    for row in df.itertuples(index=False, name=None):  # openpyxl write-only mode takes rows one at a time
        ws.append([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return normalise_zip(buf.getvalue())


def normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip (xlsx) with sorted entries, a fixed timestamp and fixed document dates."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(src.namelist()):
            content = src.read(name)
            if name == "docProps/core.xml":
                text = content.decode("utf-8")
                text = re.sub(r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)", rf"\g<1>{stamp}\g<3>", text)
                content = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            info.create_system = 3
            dst.writestr(info, content, compresslevel=6)
    return out.getvalue()


def _sas_writer():
    try:
        from pipeline.simulate.sas7bdat import write_sas7bdat
    except ImportError as exc:   # the teammate's writer is not there yet
        log.warning("SAS7BDAT writer not importable (%s); writing CSV instead", exc)
        return None
    return write_sas7bdat


def form_path(study: Study, raw_dir: Path, form: str) -> Path:
    ext = study.raw_formats.get(form, "csv")
    return Path(raw_dir) / study.studyid / f"{form}.{ext}"


def write_study(forms: dict[str, pd.DataFrame], study: Study, raw_dir: Path, labels: dict | None = None) -> list[Path]:
    """Write every form to ``raw_dir/<STUDYID>/<form>.<ext>``; returns the final paths."""
    raw_dir = Path(raw_dir)
    target = raw_dir / study.studyid
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{study.studyid}.", dir=raw_dir))
    os.chmod(tmp, 0o755)
    written: list[Path] = []
    try:
        for form, df in forms.items():
            ext = study.raw_formats.get(form, "csv")
            path = tmp / f"{form}.{ext}"
            if ext == "xlsx":
                path.write_bytes(_xlsx_bytes(df, form))
            elif ext == "sas7bdat":
                writer = _sas_writer()
                if writer is None:
                    ext = "csv"
                    path = tmp / f"{form}.csv"
                    path.write_bytes(_csv_bytes(df, study.encoding))
                else:
                    sdf = df.astype(object).where(df.notna(), "").astype(str)
                    if labels and form in labels:
                        sdf.attrs["column_labels"] = labels[form]
                    writer(sdf, path, table_name=form.upper(), created=FIXED_TIME)
            elif ext == "csv":
                path.write_bytes(_csv_bytes(df, study.encoding))
            else:
                raise PipelineError(f"study {study.studyid}: unknown raw format {ext!r} for form {form}")
            written.append(target / path.name)
        # swap into place: old folder aside, new folder in, old folder removed
        old = None
        if target.exists():
            old = raw_dir / f".{study.studyid}.old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except UnicodeEncodeError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PipelineError(f"study {study.studyid}: text cannot be encoded as {study.encoding}: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
