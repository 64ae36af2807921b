"""Bad-input battery, gate side (issue 11): broken files, encodings, missing and extra forms,
absurd values, dates against the study, report truncation, injection, usage errors.

Every case plants one defect into a copy of a four-subject cut of the shipped ZJU-CD7-SAA
extract (GB18030, all CSV; subjects 001-004, 004 died 18-JAN-2025 after a CAR-T infusion on
12-DEC-2024; data cut-off 31-OCT-2025) and asserts the exit code, the finding (study, file,
row, column, check, severity, message) and what happens to the record: a gate error blocks
the study's build (nothing written for it), a warning does not. A few cases run the full
build on the cut (a few seconds) to show the record's fate in SDTM.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

import pipeline.build as build
from pipeline.cli import main
from pipeline.config import Study, selected_studies
from pipeline.intake import readers
from pipeline.intake.report import MAX_REPORT_CHARS
from pipeline.spec import load_spec

from conftest import RAW, SPECS

pytestmark = pytest.mark.badinput
SID = "ZJU-CD7-SAA"
ENC = "gb18030"
KEEP = {"001", "002", "003", "004", "005"}   # 005: the first transplanted subject (hsct form not empty)


@pytest.fixture(scope="session")
def mini_template(tmp_path_factory) -> Path:
    """raw/<SID> cut to subjects 001-005 (every form, same bytes per kept line, GB18030)."""
    if not (RAW / SID).is_dir():
        pytest.skip(f"raw/{SID} is not present (run `make raw`)")
    root = tmp_path_factory.mktemp("mini_raw")
    (root / SID).mkdir()
    for src in sorted((RAW / SID).glob("*.csv")):  # nine forms
        rows = list(csv.reader(io.StringIO(src.read_bytes().decode(ENC))))
        i = rows[0].index("SUBJID")
        keep = [rows[0]] + [r for r in rows[1:] if r and r[i] in KEEP]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(keep)
        (root / SID / src.name).write_bytes(buf.getvalue().encode(ENC))
    return root


@pytest.fixture
def raw(mini_template, tmp_path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(mini_template, dest)
    return dest


@pytest.fixture(scope="session")
def spec():
    return load_spec(SPECS)


def folder(raw: Path) -> Path:
    return raw / SID


def read_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode(ENC))))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(ENC))


def row_of(raw: Path, form: str, **match) -> int:
    """Spreadsheet row (header = 1) of the first record whose columns equal ``match``."""
    rows = read_rows(folder(raw) / f"{form}.csv")
    idx = {c: rows[0].index(c) for c in match}
    for n, r in enumerate(rows[1:], start=2):
        if all(r[idx[c]] == v for c, v in match.items()):
            return n
    raise AssertionError(f"no {form} record {match}")


def plant(raw: Path, form: str, row: int, column: str, value: str) -> None:
    path = folder(raw) / f"{form}.csv"
    rows = read_rows(path)
    rows[row - 1][rows[0].index(column)] = value
    write_rows(path, rows)


def validate(raw: Path, out: Path, capsys, *extra: str) -> tuple[int, str, pd.DataFrame]:
    code = main(["validate", "--study", SID, "--raw", str(raw), "--specs", str(SPECS), "--out", str(out), *extra])
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "internal error" not in text and "Traceback" not in text
    rep = out / "gate" / "gate_report.csv"
    report = pd.read_csv(rep, dtype=str, keep_default_na=False) if rep.is_file() else pd.DataFrame()
    return code, text, report


def only(report: pd.DataFrame, check: str) -> dict:
    rows = report[report["check"] == check]
    assert len(rows) == 1, report[["file", "row", "column", "check", "message"]].to_string()
    return rows.iloc[0].to_dict()


def where(f: dict) -> tuple:
    return f["study"], f["file"], f["row"], f["column"], f["check"], f["severity"]


# ---- the cut itself is clean (else every case below would prove nothing) -------------------------

def without_emd(findings):
    """The findings without the one expected warning: emd.csv (imaging of extramedullary disease)
    is delivered header-only by a study that does not collect it (no [response.emd])."""
    return findings[~((findings["file"] == "emd.csv") & (findings["check"] == "file.no_records"))]


def test_baseline_cut_is_clean(raw, tmp_path, capsys):
    code, text, report = validate(raw, tmp_path / "out", capsys)
    assert code == 0, report.to_string()
    # a form this study does not collect (emd without [response.emd]) is delivered header-only:
    # the gate's warning for it is the one finding allowed
    assert set(report["check"]) <= {"file.no_records"} and set(report["file"]) <= {"emd.csv"}, report.to_string()


# ---- broken files ------------------------------------------------------------------------------

def test_zero_byte_file(raw, tmp_path, capsys):
    (folder(raw) / "ae.csv").write_bytes(b"")
    code, text, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.empty")
    assert code == 1 and where(f) == (SID, "ae.csv", "", "", "file.empty", "error")
    assert "ae.csv is empty (0 bytes)" in f["message"]


def test_whitespace_only_file(raw, tmp_path, capsys):
    (folder(raw) / "rs.csv").write_bytes(b"\n  \n\n")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and only(report, "file.empty")["file"] == "rs.csv"


def test_header_only_optional_records_mean_none(raw, tmp_path, capsys):
    path = folder(raw) / "ae.csv"
    path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
    # without AEs the cm treatments' AE links (CMAENO) would dangle (gate error cm.ae_link): unlink them
    cm = read_rows(folder(raw) / "cm.csv")
    k = cm[0].index("CMAENO")
    write_rows(folder(raw) / "cm.csv", [cm[0]] + [r[:k] + [""] + r[k + 1:] for r in cm[1:]])
    code, text, report = validate(raw, tmp_path / "o", capsys)
    f = only(report[report["file"] != "emd.csv"], "file.no_records")  # emd.csv: header-only in this study
    assert code == 0 and where(f) == (SID, "ae.csv", "", "", "file.no_records", "warning")
    assert f["message"] == "ae.csv has a header but no records: read as none (no ae records)"


def test_header_only_dm_is_an_error(raw, tmp_path, capsys):
    path = folder(raw) / "dm.csv"
    path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report[report["file"] != "emd.csv"], "file.no_records")  # emd.csv: header-only in this study
    assert code == 1 and (f["file"], f["severity"]) == ("dm.csv", "error")


def test_deleted_mandatory_ae_form_is_an_error(raw, tmp_path, capsys):
    (folder(raw) / "ae.csv").unlink()
    code, text, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.missing")
    assert code == 1 and where(f) == (SID, "ae.csv", "", "", "file.missing", "error")
    assert "mandatory form ae is missing" in f["message"] and f"{SID}.toml [raw].mandatory_forms" in f["message"]


@pytest.mark.parametrize("form", ["vs", "ie", "ex", "crs", "lb", "rs", "ds"])
def test_every_declared_mandatory_form_is_required(raw, spec, form):
    (folder(raw) / f"{form}.csv").unlink()
    study = selected_studies(SPECS, [SID])[0]
    forms, findings = readers.read_study(raw, study, spec)
    assert form not in forms
    findings = without_emd(findings)
    assert findings[["file", "check", "severity"]].values.tolist() == [[f"{form}.csv", "file.missing", "error"]]


def test_form_not_declared_mandatory_may_be_absent(raw, spec):
    (folder(raw) / "crs.csv").unlink()
    study = selected_studies(SPECS, [SID])[0]
    doc = {**study.raw, "raw": {**study.raw["raw"], "mandatory_forms": ["dm", "ae"]}}
    forms, findings = readers.read_study(raw, Study(SID, study.path, doc), spec)
    assert "crs" not in forms and without_emd(findings).empty


def test_mandatory_forms_naming_an_unknown_form_is_a_config_error(raw, spec):
    study = selected_studies(SPECS, [SID])[0]
    doc = {**study.raw, "raw": {**study.raw["raw"], "mandatory_forms": ["dm", "adverse"]}}
    with pytest.raises(build.ConfigError, match="names adverse, not a form"):
        readers.read_study(raw, Study(SID, study.path, doc), spec)


def test_all_shipped_studies_declare_mandatory_forms():
    for study in selected_studies(SPECS, None):
        assert "ae" in study.get("raw", {}).get("mandatory_forms", []), study.studyid


def test_directory_where_a_form_belongs(raw, tmp_path, capsys):
    (folder(raw) / "ae.csv").unlink()
    (folder(raw) / "ae.csv").mkdir()
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.not_a_file")
    assert code == 1 and where(f) == (SID, "ae.csv", "", "", "file.not_a_file", "error")
    assert f["message"].startswith("ae.csv is a directory, not a file")
    assert "file.missing" not in set(report["check"])


def test_directory_for_an_optional_form_is_still_an_error(raw, spec):
    (folder(raw) / "crs.xlsx").mkdir()
    study = selected_studies(SPECS, [SID])[0]
    forms, findings = readers.read_study(raw, study, spec)
    findings = without_emd(findings)
    assert findings[["file", "check"]].values.tolist() == [["crs.xlsx", "file.not_a_file"]] and "crs" not in forms


def test_broken_symlink_where_a_form_belongs(raw, tmp_path, capsys):
    (folder(raw) / "rs.csv").unlink()
    (folder(raw) / "rs.csv").symlink_to(tmp_path / "nowhere.csv")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "is a broken link" in only(report, "file.not_a_file")["message"]


def test_form_delivered_twice(raw, tmp_path, capsys):
    shutil.copy(folder(raw) / "ae.csv", folder(raw) / "ae.xlsx")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "delivered twice (ae.csv, ae.xlsx)" in only(report, "file.ambiguous")["message"]


def test_semicolon_delimited_file(raw, tmp_path, capsys):
    path = folder(raw) / "vs.csv"
    path.write_bytes(path.read_bytes().replace(b",", b";"))
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "semicolons" in only(report, "file.delimiter")["message"]


def test_duplicated_column(raw, tmp_path, capsys):
    rows = read_rows(folder(raw) / "vs.csv")
    write_rows(folder(raw) / "vs.csv", [r + [r[4]] for r in rows])
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "column VSDAT appears more than once" in only(report, "file.duplicate_column")["message"]


def test_record_with_an_extra_field(raw, tmp_path, capsys):
    rows = read_rows(folder(raw) / "ds.csv")
    rows[1].append("surplus")
    write_rows(folder(raw) / "ds.csv", rows)
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.unreadable")
    assert code == 1 and f["file"] == "ds.csv" and "malformed CSV" in f["message"]


def test_required_column_missing(raw, tmp_path, capsys):
    rows = read_rows(folder(raw) / "ex.csv")
    i = rows[0].index("EXDOSE")
    write_rows(folder(raw) / "ex.csv", [r[:i] + r[i + 1:] for r in rows])
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "required column EXDOSE missing" in only(report, "file.missing_column")["message"]


def test_extra_column_is_a_warning(raw, tmp_path, capsys):
    rows = read_rows(folder(raw) / "vs.csv")
    write_rows(folder(raw) / "vs.csv", [rows[0] + ["VSNOTE"]] + [r + ["x"] for r in rows[1:]])
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.extra_column")
    assert code == 0 and f["severity"] == "warning" and "VSNOTE" in f["message"]


def test_corrupt_xlsx_in_place_of_csv(raw, tmp_path, capsys):
    (folder(raw) / "ae.csv").unlink()
    (folder(raw) / "ae.xlsx").write_bytes(b"PK\x03\x04 truncated")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "not a readable Excel workbook" in only(report, "file.corrupt")["message"]


def test_stray_file_is_a_warning(raw, tmp_path, capsys):
    (folder(raw) / "notes.txt").write_text("hello")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 0 and only(report, "file.unexpected")["file"] == "notes.txt"


# ---- encodings ---------------------------------------------------------------------------------

def test_utf8_bom_in_a_gb18030_study_is_an_encoding_finding(raw, tmp_path, capsys):
    path = folder(raw) / "dm.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().decode(ENC).encode("utf-8"))
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.encoding")
    assert code == 1 and where(f) == (SID, "dm.csv", "1", "", "file.encoding", "error")
    assert "UTF-8 byte-order mark (ef bb bf): the file is UTF-8, but the study declares gb18030" in f["message"]
    assert "required column" not in " ".join(report["message"])


def test_utf8_without_bom_in_a_gb18030_study(raw, tmp_path, capsys):
    path = folder(raw) / "dm.csv"
    path.write_bytes(path.read_bytes().decode(ENC).encode("utf-8"))
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "file.encoding")
    assert code == 1 and f["row"] == "2" and "dm.csv is UTF-8" in f["message"] and "declares gb18030" in f["message"]


def test_utf16_file(raw, tmp_path, capsys):
    path = folder(raw) / "vs.csv"
    path.write_bytes(path.read_bytes().decode(ENC).encode("utf-16"))
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "UTF-16 LE byte-order mark" in only(report, "file.encoding")["message"]


def test_nul_bytes_without_bom(raw, tmp_path, capsys):
    path = folder(raw) / "vs.csv"
    path.write_bytes(path.read_bytes().decode(ENC).encode("utf-16-le"))
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and "looks like UTF-16 or UTF-32" in only(report, "file.encoding")["message"]


def utf8_study() -> Study:
    study = selected_studies(SPECS, [SID])[0]
    return Study(SID, study.path, {**study.raw, "raw": {**study.raw["raw"], "encoding": "utf-8"}})


def test_gb18030_bytes_in_a_utf8_study_name_the_encoding_found(raw, spec):
    forms, findings = readers.read_study(raw, utf8_study(), spec)
    enc = findings[(findings["check"] == "file.encoding") & (findings["file"] == "dm.csv")]  # Chinese names
    msg = enc.iloc[0]["message"]
    assert "is not valid utf-8" in msg and "the file decodes as gb18030" in msg and enc.iloc[0]["row"] == 2


def test_cp1252_bytes_in_a_utf8_study(raw, spec):
    path = folder(raw) / "ae.csv"
    rows = read_rows(path)
    rows[1][rows[0].index("AETERM")] = "Fi\u00e8vre"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode("cp1252"))
    _, findings = readers.read_study(raw, utf8_study(), spec)
    msg = findings[(findings["file"] == "ae.csv") & (findings["check"] == "file.encoding")].iloc[0]["message"]
    assert "byte 0xe8" in msg and "(line 2)" in msg and "decodes as cp1252" in msg


def test_unknown_declared_encoding_is_a_usage_error(raw, spec):
    study = selected_studies(SPECS, [SID])[0]
    doc = {**study.raw, "raw": {**study.raw["raw"], "encoding": "klingon-8"}}
    with pytest.raises(build.ConfigError, match="unknown raw encoding 'klingon-8'"):
        readers.read_study(raw, Study(SID, study.path, doc), spec)


# ---- absurd values -------------------------------------------------------------------------------

def plant_lab(raw: Path, value: str, unit: str | None = None, test: str = "WBC") -> int:
    row = row_of(raw, "lb", SUBJID="002", LBTESTCD=test)
    plant(raw, "lb", row, "LBORRES", value)
    if unit is not None:
        plant(raw, "lb", row, "LBORRESU", unit)
    return row


@pytest.mark.parametrize("value", ["-1.5", "-0.01", "<-1"])
def test_negative_leukocyte_count_is_an_error(raw, tmp_path, capsys, value):
    row = plant_lab(raw, value, "10^9/L")
    code, text, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "lb.result_impossible")
    assert code == 1 and where(f) == (SID, "lb.csv", str(row), "LBORRES", "lb.result_impossible", "error")
    assert f["value"] == value and "WBC result" in f["message"] and "physiologically impossible" in f["message"]
    assert "between 0 and 1500 10^9/L" in f["message"]
    assert f"lb.csv row {row} LBORRES='{value}'" in text


def test_1e308_lab_value_is_refused_by_the_gate(raw, tmp_path, capsys):
    row = plant_lab(raw, "1e308")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "lb.result_impossible")
    assert code == 1 and (f["row"], f["value"]) == (str(row), "1e308")


@pytest.mark.parametrize("value", ["1e999", "inf", "NaN", "-Infinity"])
def test_non_finite_lab_value(raw, tmp_path, capsys, value):
    row = plant_lab(raw, value)
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "lb.result_invalid")
    assert code == 1 and (f["row"], f["column"], f["value"]) == (str(row), "LBORRES", value)


def test_impossible_in_another_unit_is_converted(raw, tmp_path, capsys):
    row = plant_lab(raw, "1600000", "/mm3")  # 1600 x 10^9/L
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "lb.result_impossible")
    assert code == 1 and f["row"] == str(row) and "(= 1600 10^9/L)" in f["message"]


def test_implausible_value_is_a_warning(raw, tmp_path, capsys):
    row = plant_lab(raw, "400", "10^9/L")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "lb.result_implausible")
    assert code == 0 and where(f) == (SID, "lb.csv", str(row), "LBORRES", "lb.result_implausible", "warning")
    assert "please confirm with the site" in f["message"]


def test_negative_potassium(raw, tmp_path, capsys):
    row = plant_lab(raw, "-4.1", test="K")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and only(report, "lb.result_impossible")["row"] == str(row)


@pytest.mark.parametrize("form,column,match,value,check", [
    ("vs", "VSORRES", {"SUBJID": "001", "VSTESTCD": "WEIGHT"}, "1e999", "type.float"),
    ("vs", "VSORRES", {"SUBJID": "001", "VSTESTCD": "WEIGHT"}, "nan", "type.float"),
    ("dm", "AGE", {"SUBJID": "001"}, "1" * 400, "type.int"),
    ("ex", "EXDOSE", {"SUBJID": "001", "EXSPID": "CART-1"}, "-5", "range"),
    ("lb", "LBORNRHI", {"SUBJID": "001", "LBTESTCD": "WBC"}, "-9.2", "range"),
    ("lb", "LBORNRLO", {"SUBJID": "001", "LBTESTCD": "WBC"}, "1e400", "type.float"),
    ("crs", "ICESCORE", {"SUBJID": "001"}, "11", "range"),
    ("crs", "TEMP", {"SUBJID": "001"}, "Infinity", "type.float"),
])
def test_numeric_field_out_of_range_or_not_finite(raw, tmp_path, capsys, form, column, match, value, check):
    row = row_of(raw, form, **match)
    plant(raw, form, row, column, value)
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, check)
    assert code == 1 and where(f) == (SID, f"{form}.csv", str(row), column, check, "error")


def test_every_numeric_raw_field_has_range_rules(spec):
    c = spec.raw_columns
    num = c[c["type"].isin(["int", "float"])]
    missing = num[(num["min"] == "") | (num["max"] == "")]
    assert missing.empty, missing[["form", "column"]].values.tolist()


def test_every_lab_test_has_plausibility_limits(spec):
    tests = set(spec.rule("lab_tests")["lbtestcd"])
    table = spec.rule("lab_plausibility")
    assert tests == set(table["lbtestcd"])
    assert (table["source"].str.len() > 20).all()
    assert (pd.to_numeric(table["error_min"]) == 0).all()  # nothing measured here can be negative


# ---- dates against the study ---------------------------------------------------------------------

def test_ae_after_the_data_cutoff(raw, tmp_path, capsys):
    row = row_of(raw, "ae", SUBJID="001")
    plant(raw, "ae", row, "AESTDAT", "01-NOV-2025")
    plant(raw, "ae", row, "AEENDAT", "")
    plant(raw, "ae", row, "AEONGO", "Y")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "date.after_cutoff")
    assert code == 1 and where(f) == (SID, "ae.csv", str(row), "AESTDAT", "date.after_cutoff", "error")
    assert "after the data cut-off 2025-10-31 of ZJU-CD7-SAA" in f["message"]


def test_partial_date_after_cutoff(raw, tmp_path, capsys):
    row = row_of(raw, "ae", SUBJID="002")
    plant(raw, "ae", row, "AEENDAT", "UN-UNK-2026")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1 and only(report, "date.after_cutoff")["row"] == str(row)


def test_cutoff_day_itself_is_allowed(raw, tmp_path, capsys):
    plant(raw, "lb", row_of(raw, "lb", SUBJID="001"), "LBDAT", "31-OCT-2025")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 0 and "date.after_cutoff" not in set(report.get("check", []))


def test_death_before_infusion_with_later_records(raw, tmp_path, capsys):
    ds_row = row_of(raw, "ds", SUBJID="004")
    plant(raw, "ds", ds_row, "DTHDAT", "10-DEC-2024")
    plant(raw, "ds", ds_row, "DSSTDAT", "10-DEC-2024")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "ds.death_before_infusion")
    assert code == 1 and where(f) == (SID, "ds.csv", str(ds_row), "DTHDAT", "ds.death_before_infusion", "warning")
    assert f["message"].startswith("subject 004 died on 10-DEC-2024 (ds.DTHDAT), before the first CAR-T infusion "
                                   "on 12-DEC-2024 (ex.EXSTDAT)")
    after = report[report["check"] == "date.after_death"]
    assert {"ex.csv", "ae.csv", "lb.csv"} <= set(after["file"]) and set(after["severity"]) == {"error"}
    assert after["message"].str.contains("of subject 004 is after the subject's death \\(ds.DTHDAT 10-DEC-2024\\)").all()


def test_lab_after_death(raw, tmp_path, capsys):
    row = row_of(raw, "lb", SUBJID="004")
    plant(raw, "lb", row, "LBDAT", "19-JAN-2025")
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = only(report, "date.after_death")
    assert code == 1 and where(f) == (SID, "lb.csv", str(row), "LBDAT", "date.after_death", "error")


def test_death_before_consent(raw, tmp_path, capsys):
    ds_row = row_of(raw, "ds", SUBJID="004")
    plant(raw, "ds", ds_row, "DTHDAT", "01-NOV-2024")  # consent 19-NOV-2024
    code, _, report = validate(raw, tmp_path / "o", capsys)
    f = report[(report["check"] == "date.before_consent") & (report["column"] == "DTHDAT")].iloc[0]
    assert code == 1 and (f["file"], f["row"], f["severity"]) == ("ds.csv", str(ds_row), "error")
    assert "before informed consent (dm.ICDAT 19-NOV-2024)" in f["message"]


# ---- report size, markup, control characters -------------------------------------------------------

def test_50mb_junk_value_is_truncated_in_every_report(raw, tmp_path, capsys):
    junk = "X" * 5_000_000
    row = row_of(raw, "dm", SUBJID="003")
    plant(raw, "dm", row, "SEX", junk)
    out = tmp_path / "o"
    code, text, report = validate(raw, out, capsys)
    f = only(report, "allowed")
    assert code == 1 and f["row"] == str(row) and f["column"] == "SEX"
    assert f["value"] == "X" * MAX_REPORT_CHARS + "... [truncated: 5000000 characters in all]"
    for name in ("gate_report.csv", "gate_report.html", "junit.xml"):
        assert (out / "gate" / name).stat().st_size < 100_000, name
    assert len(text) < 10_000


def test_junk_header_line_is_truncated(raw, tmp_path, capsys):
    path = folder(raw) / "rs.csv"
    path.write_bytes(b"Z" * 1_000_000 + b"\n" + path.read_bytes())
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 1
    assert report["message"].str.len().max() <= 1000 + 60 and report["column"].str.len().max() <= 260


def test_markup_in_a_value_is_escaped_in_html(raw, tmp_path, capsys):
    plant(raw, "dm", row_of(raw, "dm", SUBJID="002"), "SEX", "<script>alert(1)</script>")
    out = tmp_path / "o"
    code, _, _ = validate(raw, out, capsys)
    html = (out / "gate" / "gate_report.html").read_text()
    assert code == 1 and "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_control_characters_keep_junit_well_formed(raw, tmp_path, capsys):
    plant(raw, "dm", row_of(raw, "dm", SUBJID="002"), "ETHNIC", "bad\x07\x1bvalue")
    out = tmp_path / "o"
    code, _, _ = validate(raw, out, capsys)
    ET.parse(out / "gate" / "junit.xml")  # raises on an invalid character
    assert code == 1


def test_formula_in_a_free_text_field_is_kept_as_text(raw, tmp_path, capsys):
    plant(raw, "ae", row_of(raw, "ae", SUBJID="001"), "AETERM", '=HYPERLINK("http://x","click")')
    code, _, report = validate(raw, tmp_path / "o", capsys)
    assert code == 0 and without_emd(report).empty  # free text is data; the Excel writers neutralise it


# ---- usage errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--study", "NOPE"], "NOPE"),
    (["--study", "../../etc"], "../../etc"),
    (["--raw", "/nonexistent/raw"], "/nonexistent/raw"),
    (["--specs", "/nonexistent/specs"], "/nonexistent/specs"),
])
def test_usage_errors_exit_2_one_line(tmp_path, capsys, args, needle):
    base = {"--study": SID, "--raw": str(RAW), "--specs": str(SPECS), "--out": str(tmp_path / "o")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    code = main(["validate", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "internal error" not in err and "Traceback" not in err


# ---- what happens to the record: the build on the cut ------------------------------------------------

def run_build(raw: Path, out: Path, capsys) -> tuple[int, str]:
    args = argparse.Namespace(study=[SID], raw=raw, specs=SPECS, out=out, debug=False, no_progress=True)
    code = build.run_build(args)
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "internal error" not in text
    return code, text


@pytest.fixture(scope="module")
def built_cut(mini_template, tmp_path_factory):
    """One clean build of the cut (shared by the build cases below)."""
    out = tmp_path_factory.mktemp("cut_out")
    args = argparse.Namespace(study=[SID], raw=mini_template, specs=SPECS, out=out, debug=False, no_progress=True)
    assert build.run_build(args) == 0
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_gate_error_leaves_previous_output_untouched(built_cut, raw, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(built_cut, out)
    before = tree(out / SID)
    plant_lab(raw, "-1.5", "10^9/L")
    code, text = run_build(raw, out, capsys)
    assert code == 1 and f"{SID}: not built: 1 gate error(s)" in text
    assert tree(out / SID) == before  # the negative count never reaches SDTM


def test_warning_record_reaches_sdtm(built_cut, raw, tmp_path, capsys):
    plant_lab(raw, "400", "10^9/L")
    out = tmp_path / "out"
    code, _ = run_build(raw, out, capsys)
    assert code == 0
    import pyreadstat

    lb, _ = pyreadstat.read_xport(str(out / SID / "lb.xpt"))
    assert (lb["LBORRES"] == "400").sum() == 1


def test_header_only_ae_builds_an_empty_ae(built_cut, raw, tmp_path, capsys):
    path = folder(raw) / "ae.csv"
    path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
    cm = read_rows(folder(raw) / "cm.csv")   # without AEs the cm treatments' AE links would dangle: unlink them
    k = cm[0].index("CMAENO")
    write_rows(folder(raw) / "cm.csv", [cm[0]] + [r[:k] + [""] + r[k + 1:] for r in cm[1:]])
    out = tmp_path / "out"
    code, text = run_build(raw, out, capsys)
    assert code == 0, text
    import pyreadstat

    ae, _ = pyreadstat.read_xport(str(out / SID / "ae.xpt"))
    assert not ae["AESPID"].str.startswith("AE-").any()  # none from ae.csv (CRS/ICANS from crs remain)
    rec = pd.read_csv(out / SID / "reports" / "reconciliation.csv", dtype=str, keep_default_na=False)
    assert rec[(rec["form"] == "ae") & (rec["dataset"] == "")]["raw_records"].tolist() == ["0"]
