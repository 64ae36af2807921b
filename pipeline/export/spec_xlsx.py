"""``python -m pipeline spec-xlsx``: the SDTM specification as one Excel workbook.

A read-only view for reviewers, in the layout of the spreadsheets define.xml generators take
(one sheet per metadata table): ``Datasets``, ``Variables``, ``ValueLevel``, ``Codelists``,
``Methods``, ``Comments``, plus ``Standards``. Each sheet has a bold frozen header row, an
auto-filter and column widths fitted to the content (capped). The CSV files in ``specs/sdtm``
stay the source of truth; this workbook is generated from them.

Deterministic: the workbook's created/modified properties are ``SOURCE_DATE_EPOCH`` (or
2000-01-01T00:00:00 when unset) and every zip entry carries the fixed DOS time 1980-01-01, so
the same spec always gives the same bytes.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from pipeline.spec import Spec, load_spec

MAX_WIDTH = 60
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
DEFAULT_STAMP = datetime(2000, 1, 1)


def _stamp() -> datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC).replace(tzinfo=None)
    return DEFAULT_STAMP


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series([""] * len(frame), index=frame.index, dtype=object)


def sheet_tables(spec: Spec) -> dict[str, pd.DataFrame]:
    """The sheets (name -> table with the workbook's column headings), in workbook order."""
    ds = spec.datasets
    order = {d: i for i, d in enumerate(ds["dataset"])}
    datasets = pd.DataFrame({
        "Dataset": ds["dataset"], "Description": ds["label"], "Class": ds["class"], "Structure": ds["structure"],
        "Purpose": "Tabulation", "Key Variables": ds["keys"].str.replace("|", ", ", regex=False),
        "Repeating": _col(ds, "repeating"), "Reference Data": _col(ds, "reference_data"), "Comment": _col(ds, "comment"),
    })
    v = spec.variables.copy()
    v["_ds"] = v["dataset"].map(order).fillna(len(order))
    v["_ord"] = pd.to_numeric(v["order"], errors="coerce")
    v = v.sort_values(["_ds", "dataset", "_ord"], kind="mergesort")
    variables = pd.DataFrame({
        "Dataset": v["dataset"], "Order": v["_ord"].astype("Int64"), "Variable": v["variable"], "Label": v["label"],
        "Data Type": v["type"], "Length": v["length"], "Core": v["core"], "Role": v["role"], "Codelist": v["codelist"],
        "Origin": v["origin"], "Source/Derivation": v["source"], "Method": v["method"], "Comment": v["comment"],
    })
    vl = spec.valuelevel
    if len(vl):
        vl = vl.assign(_ds=vl["dataset"].map(order).fillna(len(order)), _i=range(len(vl)))
        vl = vl.sort_values(["_ds", "dataset", "variable", "_i"], kind="mergesort")
        where = _col(vl, "where_variable") + " EQ " + _col(vl, "where_value")
    valuelevel = pd.DataFrame({
        "Dataset": _col(vl, "dataset"), "Variable": _col(vl, "variable"),
        "Where Clause": where if len(vl) else pd.Series(dtype=object),
        "Label": _col(vl, "label"), "Data Type": _col(vl, "type"), "Length": _col(vl, "length"),
        "Significant Digits": _col(vl, "significant_digits"), "Codelist": _col(vl, "codelist"),
        "Origin": _col(vl, "origin"), "Source/Derivation": _col(vl, "source"), "Method": _col(vl, "method"),
        "Unit": _col(vl, "unit"), "Comment": _col(vl, "comment"),
    })
    c = spec.codelists.assign(_i=range(len(spec.codelists)))
    c = c.sort_values(["codelist", "_i"], kind="mergesort")
    c["_order"] = c.groupby("codelist").cumcount() + 1
    codelists = pd.DataFrame({
        "ID": c["codelist"], "Name": c["name"], "NCI Codelist Code": c["ncit_code"], "Extensible": c["extensible"],
        "Order": c["_order"], "Term": c["term"], "NCI Term Code": c["term_ncit_code"], "Decoded Value": c["decode"],
        "Dictionary": c["dictionary"], "Version": c["version"], "Source": _col(c, "source"),
    })
    m = spec.methods
    methods = pd.DataFrame({"ID": _col(m, "method"), "Name": _col(m, "name"), "Type": _col(m, "type"),
                            "Description": _col(m, "description"), "Source": _col(m, "source")})
    methods = methods.sort_values("ID", kind="mergesort") if len(methods) else methods
    cm = spec.comments
    comments = pd.DataFrame({"ID": _col(cm, "comment"), "Description": _col(cm, "description")})
    standards = pd.DataFrame({"Parameter": list(spec.standards), "Value": [str(x) for x in spec.standards.values()]})
    return {"Datasets": datasets, "Variables": variables, "ValueLevel": valuelevel, "Codelists": codelists,
            "Methods": methods, "Comments": comments, "Standards": standards}


def workbook_bytes(spec: Spec) -> bytes:
    """The workbook as deterministic bytes."""
    wb = Workbook()
    wb.remove(wb.active)
    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E78")
    for name, table in sheet_tables(spec).items():
        ws = wb.create_sheet(title=name)
        ws.append(list(table.columns))
        for row in table.astype(object).where(table.notna(), "").itertuples(index=False):  # spec rows, not records
            ws.append([x if isinstance(x, int | float) and not isinstance(x, bool) else str(x) for x in row])
        for cell in ws[1]:
            cell.font = header_font
            cell.fill = header_fill
            cell.alignment = Alignment(vertical="top", wrap_text=True)
        ws.freeze_panes = "A2"
        last = get_column_letter(max(1, len(table.columns)))
        ws.auto_filter.ref = f"A1:{last}{max(1, len(table) + 1)}"
        for i, col in enumerate(table.columns, start=1):
            longest = max([len(str(col))] + [len(str(x)) for x in table[col].tolist()])
            ws.column_dimensions[get_column_letter(i)].width = min(MAX_WIDTH, longest + 2)
    stamp = _stamp()
    wb.properties.creator = "cart-sdtm-pipeline"
    wb.properties.title = "SDTM specification"
    wb.properties.created = stamp
    buf = io.BytesIO()
    wb.save(buf)
    return _normalise_zip(buf.getvalue(), stamp)


def _normalise_zip(data: bytes, stamp: datetime) -> bytes:
    """Rewrite the xlsx zip with fixed entry times and a fixed modified property."""
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = content.decode("utf-8")
                text = re.sub(r"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rf"\g<1>{iso}\g<2>", text)
                text = re.sub(r"(<dcterms:created[^>]*>)[^<]*(</dcterms:created>)", rf"\g<1>{iso}\g<2>", text)
                content = text.encode("utf-8")
            zi = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            dst.writestr(zi, content)
    return out.getvalue()


def run_spec_xlsx(args) -> int:
    """Write the workbook to ``--xlsx`` or ``OUT/spec/sdtm_spec.xlsx``."""
    spec = load_spec(Path(args.specs))
    path = Path(args.xlsx) if getattr(args, "xlsx", None) else Path(args.out) / "spec" / "sdtm_spec.xlsx"
    from pipeline.export.writer import write_bytes_atomic

    write_bytes_atomic(path, workbook_bytes(spec))
    print(f"specification workbook: {path}")
    return 0
