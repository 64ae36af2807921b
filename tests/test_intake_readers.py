"""Raw readers: CSV encodings, XLSX, SAS7BDAT, and every unreadable input as ONE finding."""

from __future__ import annotations

import datetime as dt
import re
import importlib
import io
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "intake"))
import intake_synth as synth  # noqa: E402

from pipeline.config import load_study  # noqa: E402
from pipeline.context import FINDING_COLUMNS  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402
from pipeline.intake import read_study  # noqa: E402
from pipeline.intake.readers import cell_text, format_dates, format_numbers, strip_text  # noqa: E402
from pipeline.spec import load_spec  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    specs = synth.make_specs(tmp_path_factory.mktemp("intake_read") / "specs")
    return load_spec(specs), load_study(specs, synth.STUDY)


def with_raw(study, encoding="utf-8", formats=None):
    raw = dict(study.raw)
    raw["raw"] = {"encoding": encoding, "formats": formats or {}}
    return replace(study, raw=raw)


DM_HEADER = ("STUDYID,SITEID,SUBJID,SUBJINIT,HOSPNUM,PHONE,ICDAT,DMDAT,BRTHDAT,AGE,AGEU,SEX,RACE,ETHNIC,"
             "COUNTRY,PRIMDIAG,ENRYN,ARMCD,TRTYN")


def dm_line(subjid="001", init="ABC", age="43"):
    return (f"TEST-GATE,01,{subjid},{init},,,02-JAN-2024,02-JAN-2024,15-MAR-1980,{age},YEARS,M,ASIAN,"
            f"NOT HISPANIC OR LATINO,CHN,T-ALL,Y,DL1,Y")


def dm_only(tmp_path, content: bytes, name="dm.csv") -> Path:
    raw = tmp_path / "raw"
    (raw / synth.STUDY).mkdir(parents=True)
    (raw / synth.STUDY / name).write_bytes(content)
    return raw


# ---- CSV ---------------------------------------------------------------------------------
def test_utf8_csv_round_trip(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    forms, findings = read_study(raw, study, spec)
    assert list(findings.columns) == FINDING_COLUMNS and findings.empty
    assert sorted(forms) == sorted(synth.RECORDS)
    for form, expected in synth.valid_forms(spec).items():
        pd.testing.assert_frame_equal(forms[form], expected, check_dtype=False)
    dm = forms["dm"]
    assert dm["_FILE"].tolist() == ["dm.csv"] * 3
    assert dm["_ROW"].tolist() == [2, 3, 4]
    assert dm["_ROW"].dtype == np.int64
    assert all(str(dm[c].dtype) == "str" for c in dm.columns if c != "_ROW")
    assert pd.isna(dm.loc[2, "ARMCD"])  # empty cell -> NaN


def test_cells_are_stripped_and_blank_lines_keep_row_numbers(tmp_path, env):
    spec, study = env
    text = "\n".join([DM_HEADER, dm_line("001"), "", dm_line("002", init="  DEF  ").replace(",M,", ",   ,"),
                      ",,,,,,,,,,,,,,,,,,", dm_line("003", init='"G,H"')]) + "\n"
    raw = dm_only(tmp_path, text.encode("utf-8"))
    forms, findings = read_study(raw, study, spec)
    assert findings.empty
    dm = forms["dm"]
    assert dm["SUBJID"].tolist() == ["001", "002", "003"]
    assert dm["_ROW"].tolist() == [2, 4, 6]        # row 3 blank, row 5 only commas
    assert dm["SUBJINIT"].tolist() == ["ABC", "DEF", "G,H"]
    assert pd.isna(dm.loc[1, "SEX"])                # whitespace-only -> NaN


def test_utf8_bom_accepted_when_utf8_declared(tmp_path, env):
    spec, study = env
    raw = dm_only(tmp_path, b"\xef\xbb\xbf" + f"{DM_HEADER}\n{dm_line()}\n".encode("utf-8"))
    forms, findings = read_study(raw, with_raw(study, "utf-8"), spec)
    assert findings.empty
    assert forms["dm"].columns[0] == "STUDYID"
    assert forms["dm"]["STUDYID"].tolist() == ["TEST-GATE"]


def test_utf8_sig_declared(tmp_path, env):
    spec, study = env
    raw = dm_only(tmp_path, f"{DM_HEADER}\n{dm_line(init='李四')}\n".encode("utf-8-sig"))
    forms, findings = read_study(raw, with_raw(study, "utf-8-sig"), spec)
    assert findings.empty
    assert forms["dm"]["SUBJINIT"].tolist() == ["李四"]


def test_gb18030_with_chinese_initials(tmp_path, env):
    spec, study = env
    content = f"{DM_HEADER}\n{dm_line('001', init='张三')}\n{dm_line('002', init='王小明')}\n".encode("gb18030")
    raw = dm_only(tmp_path, content)
    forms, findings = read_study(raw, with_raw(study, "gb18030"), spec)
    assert findings.empty
    assert forms["dm"]["SUBJINIT"].tolist() == ["张三", "王小明"]
    # the same bytes declared as UTF-8: one finding with the byte offset and line of the first bad byte
    forms, findings = read_study(raw, with_raw(study, "utf-8"), spec)
    assert "dm" not in forms
    assert len(findings) == 1
    f = findings.iloc[0]
    offset = len(f"{DM_HEADER}\n".encode()) + len("TEST-GATE,01,001,".encode())
    assert (f["study"], f["file"], f["check"], f["severity"]) == (synth.STUDY, "dm.csv", "file.encoding", "error")
    assert f"byte offset {offset} (line 2)" in f["message"]
    assert "byte 0xd5" in f["message"] and "d5 c5" in f["message"]  # GB18030 bytes of the first character


def test_unknown_encoding_is_a_config_error(tmp_path, env):
    spec, study = env
    raw = dm_only(tmp_path, f"{DM_HEADER}\n{dm_line()}\n".encode())
    with pytest.raises(ConfigError, match="encoding"):
        read_study(raw, with_raw(study, "klingon-8"), spec)


# ---- XLSX --------------------------------------------------------------------------------
def write_dm_xlsx(path: Path, rows: list[list]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(DM_HEADER.split(","))
    for r in rows:
        ws.append(r)
    wb.save(path)


def dm_cells(subjid, icdat, age, init="ABC"):
    return ["TEST-GATE", "01", subjid, init, None, None, icdat, icdat, "15-MAR-1980", age, "YEARS", "M", "ASIAN",
            "NOT HISPANIC OR LATINO", "CHN", "T-ALL", "Y", "DL1", "Y"]


def test_xlsx_typed_cells_come_back_as_cdash_text(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    (raw / synth.STUDY).mkdir(parents=True)
    path = raw / synth.STUDY / "dm.xlsx"
    write_dm_xlsx(path, [
        dm_cells("001", dt.datetime(2024, 1, 2), 43),                  # Excel date and integer
        dm_cells("002", "10-FEB-2024", 33.0, init="  DEF "),          # float holding a whole number
        [None] * 19,                                                    # empty row 4
        dm_cells("003", dt.date(2024, 3, 5), "49", init="王"),
    ])
    forms, findings = read_study(raw, with_raw(study, formats={"dm": "xlsx"}), spec)
    assert findings.empty
    dm = forms["dm"]
    assert dm["ICDAT"].tolist() == ["02-JAN-2024", "10-FEB-2024", "05-MAR-2024"]
    assert dm["AGE"].tolist() == ["43", "33", "49"]
    assert dm["SUBJINIT"].tolist() == ["ABC", "DEF", "王"]
    assert dm["_ROW"].tolist() == [2, 3, 5]
    assert dm["_FILE"].tolist() == ["dm.xlsx"] * 3
    assert pd.isna(dm.loc[0, "HOSPNUM"])


def test_xlsx_when_csv_was_declared_is_read_with_a_warning(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    (raw / synth.STUDY).mkdir(parents=True)
    write_dm_xlsx(raw / synth.STUDY / "dm.xlsx", [dm_cells("001", "02-JAN-2024", 43)])
    forms, findings = read_study(raw, with_raw(study), spec)
    assert "dm" in forms
    assert findings[["file", "check", "severity"]].values.tolist() == [["dm.xlsx", "file.format", "warning"]]


@pytest.mark.parametrize("value,text", [
    (None, None), ("x", "x"), (43, "43"), (43.0, "43"), (65.5, "65.5"), (0.1, "0.1"), (1e10, "10000000000"),
    (-2.0, "-2"), (True, "TRUE"), (dt.datetime(2024, 2, 29), "29-FEB-2024"),
    (dt.datetime(2024, 2, 29, 14, 30), "29-FEB-2024 14:30"), (dt.date(1999, 12, 31), "31-DEC-1999"),
    (dt.time(8, 5), "08:05"),
])
def test_cell_text(value, text):
    assert cell_text(value) == text


# ---- SAS7BDAT ----------------------------------------------------------------------------
def test_sas_numbers_and_dates_as_text():
    nums = pd.Series([43.0, 65.5, np.nan, 1e10, -3.0, 0.125])
    assert format_numbers(nums).tolist() == ["43", "65.5", None, "10000000000", "-3", "0.125"]
    dates = pd.Series([pd.Timestamp("2024-02-29"), pd.NaT, pd.Timestamp("1980-03-15"), pd.Timestamp("2024-01-02 10:30")])
    assert format_dates(dates).tolist() == ["29-FEB-2024", None, "15-MAR-1980", "02-JAN-2024 10:30"]


def _sas_writer():
    try:
        return importlib.import_module("pipeline.simulate.sas7bdat").write_sas7bdat
    except (ImportError, AttributeError):
        return None


def test_sas7bdat_round_trip(tmp_path, env):
    write = _sas_writer()
    if write is None:
        pytest.skip("pipeline.simulate.sas7bdat.write_sas7bdat is not available: cannot produce a SAS7BDAT file")
    spec, study = env
    lb = synth.valid_forms(spec)["lb"].drop(columns=["_FILE", "_ROW"])
    # as a central lab's SAS dataset: numeric reference ranges, text elsewhere, blanks as ""
    sas = lb.astype(object).where(lb.notna(), "")
    sas["LBORNRLO"] = pd.to_numeric(lb["LBORNRLO"])
    sas["LBORNRHI"] = pd.to_numeric(lb["LBORNRHI"])
    sas = sas.astype({c: "str" for c in sas.columns if c not in ("LBORNRLO", "LBORNRHI")})
    raw = tmp_path / "raw"
    (raw / synth.STUDY).mkdir(parents=True)
    write(sas, raw / synth.STUDY / "lb.sas7bdat")
    forms, findings = read_study(raw, with_raw(study, formats={"lb": "sas7bdat"}), spec)
    assert findings[findings["check"] != "file.missing"].empty  # dm is absent in this folder
    got = forms["lb"]
    assert got["LBORNRLO"].tolist()[:5] == ["3.5", "7", "0", "125", "0.8"]
    assert got["LBORNRHI"].tolist()[:5] == ["9.5", "40", "10", "350", "1.2"]
    assert got["LBORRES"].tolist()[:5] == ["4.5", "35", "<0.5", "150", "1.1"]
    assert pd.isna(got["LBORRES"].iloc[5])
    assert got["_ROW"].tolist() == [2, 3, 4, 5, 6, 7]
    assert got["_FILE"].iloc[0] == "lb.sas7bdat"


# ---- unreadable input: ONE finding, no exception, form skipped -------------------------
def one_finding(raw, study, spec, form="dm"):
    forms, findings = read_study(raw, study, spec)
    assert form not in forms
    assert len(findings) == 1, findings.to_string()
    f = findings.iloc[0]
    assert f["study"] == synth.STUDY and f["severity"] == "error"
    return forms, f


def test_missing_mandatory_form(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    (raw / synth.STUDY / "dm.csv").unlink()
    forms, f = one_finding(raw, study, spec)
    assert (f["file"], f["check"]) == ("dm.csv", "file.missing")
    assert "mandatory form dm is missing" in f["message"]
    assert sorted(forms) == sorted(set(synth.RECORDS) - {"dm"})


def test_missing_optional_form_is_not_a_finding(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    (raw / synth.STUDY / "vs.csv").unlink()
    forms, findings = read_study(raw, study, spec)
    assert findings.empty and "vs" not in forms


def test_missing_study_folder(tmp_path, env):
    spec, study = env
    (tmp_path / "raw").mkdir()
    _, f = one_finding(tmp_path / "raw", study, spec)
    assert f["check"] == "file.missing" and "no raw folder" in f["message"]


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, env, content):
    spec, study = env
    _, f = one_finding(dm_only(tmp_path, content), study, spec)
    assert (f["file"], f["check"]) == ("dm.csv", "file.empty")
    assert "empty" in f["message"]


def test_missing_required_column(tmp_path, env):
    spec, study = env
    header = DM_HEADER.replace("SEX,", "").replace("AGE,", "")
    line = dm_line().replace(",M,", ",").replace(",43,", ",")
    _, f = one_finding(dm_only(tmp_path, f"{header}\n{line}\n".encode()), study, spec)
    assert f["check"] == "file.missing_column"
    assert "required columns AGE, SEX missing" in f["message"]


def test_duplicated_column(tmp_path, env):
    spec, study = env
    _, f = one_finding(dm_only(tmp_path, f"{DM_HEADER},AGE\n{dm_line()},43\n".encode()), study, spec)
    assert f["check"] == "file.duplicate_column"
    assert "column AGE appears more than once" in f["message"]


def test_semicolon_delimiter(tmp_path, env):
    spec, study = env
    content = f"{DM_HEADER.replace(',', ';')}\n{dm_line().replace(',', ';')}\n".encode()
    _, f = one_finding(dm_only(tmp_path, content), study, spec)
    assert f["check"] == "file.delimiter"
    assert "semicolons" in f["message"] and "not comma-separated" in f["message"]


def test_undecodable_bytes(tmp_path, env):
    spec, study = env
    good = f"{DM_HEADER}\n{dm_line()}\n".encode()
    content = good + dm_line("002").encode().replace(b"ABC", b"A\xffC") + b"\n"
    _, f = one_finding(dm_only(tmp_path, content), study, spec)
    assert f["check"] == "file.encoding"
    assert f"byte offset {len(good) + len('TEST-GATE,01,002,A')} (line 3)" in f["message"]


def test_ragged_record(tmp_path, env):
    spec, study = env
    _, f = one_finding(dm_only(tmp_path, f"{DM_HEADER}\n{dm_line()},EXTRA\n".encode()), study, spec)
    assert f["check"] == "file.unreadable" and "malformed CSV" in f["message"]
    assert "Expected 19 fields in line 2, saw 20" in f["message"]


def test_unnamed_column_with_data(tmp_path, env):
    spec, study = env
    _, f = one_finding(dm_only(tmp_path, f"{DM_HEADER},\n{dm_line()},oops\n".encode()), study, spec)
    assert f["check"] == "file.header" and "column 20 has no name" in f["message"]


def test_unnamed_empty_trailing_column_is_ignored(tmp_path, env):
    spec, study = env
    forms, findings = read_study(dm_only(tmp_path, f"{DM_HEADER},\n{dm_line()},\n".encode()), study, spec)
    assert findings.empty and forms["dm"]["TRTYN"].tolist() == ["Y"]


def test_truncated_xlsx(tmp_path, env):
    spec, study = env
    good = tmp_path / "good.xlsx"
    write_dm_xlsx(good, [dm_cells("001", "02-JAN-2024", 43)])
    data = good.read_bytes()
    _, f = one_finding(dm_only(tmp_path, data[: len(data) // 2], "dm.xlsx"), study, spec)
    assert (f["file"], f["check"]) == ("dm.xlsx", "file.corrupt")
    assert "not a readable Excel workbook" in f["message"] and "truncated or corrupt" in f["message"]


def test_xlsx_that_is_a_zip_without_a_workbook(tmp_path, env):
    spec, study = env
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    _, f = one_finding(dm_only(tmp_path, path.read_bytes(), "dm.xlsx"), study, spec)
    assert f["check"] == "file.corrupt"


def test_corrupt_sas7bdat(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    (raw / synth.STUDY / "lb.csv").unlink()
    (raw / synth.STUDY / "lb.sas7bdat").write_bytes(b"\x00\x01garbage" * 100)
    forms, f = one_finding(raw, with_raw(study, formats={"lb": "sas7bdat"}), spec, form="lb")
    assert (f["file"], f["check"]) == ("lb.sas7bdat", "file.corrupt")
    assert "dm" in forms


def test_two_files_for_one_form(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    write_dm_xlsx(raw / synth.STUDY / "dm.xlsx", [dm_cells("001", "02-JAN-2024", 43)])
    _, f = one_finding(raw, study, spec)
    assert f["check"] == "file.ambiguous" and "dm.csv, dm.xlsx" in f["message"]


@pytest.mark.parametrize("form,severity", [("dm", "error"), ("vs", "warning")])
def test_header_without_records(tmp_path, env, form, severity):
    spec, study = env
    raw = tmp_path / "raw"
    forms = synth.valid_forms(spec)
    forms[form] = forms[form].iloc[:0]
    synth.write_study(raw, spec, forms=forms)
    got, findings = read_study(raw, study, spec)
    assert findings[["file", "check", "severity"]].values.tolist() == [[f"{form}.csv", "file.no_records", severity]]
    assert got[form].empty and list(got[form].columns)[-2:] == ["_FILE", "_ROW"]


def test_optional_column_absent_and_extra_column(tmp_path, env):
    spec, study = env
    header = DM_HEADER.replace(",HOSPNUM,PHONE", "") + ",NOTE"
    line = dm_line().replace("ABC,,,", "ABC,") + ",hello"
    forms, findings = read_study(dm_only(tmp_path, f"{header}\n{line}\n".encode()), study, spec)
    assert findings[["check", "severity"]].values.tolist() == [["file.optional_column_absent", "warning"],
                                                               ["file.extra_column", "warning"]]
    assert "HOSPNUM, PHONE" in findings["message"].iloc[0]
    dm = forms["dm"]
    assert list(dm.columns) == spec.form_columns("dm")["column"].tolist() + ["NOTE", "_FILE", "_ROW"]
    assert pd.isna(dm.loc[0, "HOSPNUM"]) and dm.loc[0, "NOTE"] == "hello"


def test_stray_file_is_a_warning(tmp_path, env):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    (raw / synth.STUDY / "AE_old.csv").write_text("x\n")
    (raw / synth.STUDY / ".hidden").write_text("x\n")
    _, findings = read_study(raw, study, spec)
    assert findings[["file", "check", "severity"]].values.tolist() == [["AE_old.csv", "file.unexpected", "warning"]]


def test_strip_text_keeps_index_and_dtype():
    s = pd.Series([" a ", "", None, "b", " a "], index=[5, 6, 7, 8, 9], dtype=object)
    out = strip_text(s)
    assert str(out.dtype) == "str" and out.index.tolist() == [5, 6, 7, 8, 9]
    assert out.tolist()[:1] == ["a"] and out.isna().tolist() == [False, True, True, False, False]



# UTF-8 files are parsed from their bytes (issue 14); other encodings from the decoded text.
# Both must give the same table for any content: compared on generated files with quoted
# fields, embedded commas, quotes and newlines, CRLF and lone CR, non-ASCII text, with and
# without a byte-order mark.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipeline.intake import readers  # noqa: E402

_FIELD = st.text(alphabet=st.sampled_from(list('ab 1,."\r\n\u00e9\u00e8\u4e2d-')), max_size=6)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.lists(_FIELD, min_size=0, max_size=4), min_size=1, max_size=6),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), quote_all=st.booleans(), bom=st.booleans(),
       declared=st.sampled_from(["utf-8", "UTF_8", "utf8", "utf-8-sig"]))
def test_utf8_bytes_parse_as_the_decoded_text(rows, newline, quote_all, bom, declared):
    def field(v):
        return '"' + v.replace('"', '""') + '"' if quote_all or any(c in v for c in ',"\r\n') else v
    text = newline.join(",".join(field(v) for v in r) for r in [["A", "B", "C"], *rows]) + newline
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    source = readers.csv_source(data, readers._decode(data, declared, "x.csv"), declared)
    assert isinstance(source, io.BytesIO)
    try:
        expected = readers.csv_table(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:  # a ragged record: refused the same way
        with pytest.raises(type(exc)):
            readers.csv_table(source)
        return
    pd.testing.assert_frame_equal(readers.csv_table(source), expected)


def test_other_encodings_parse_the_decoded_text():
    data = "A,B\nFi\u00e8vre,1\n".encode("cp1252")
    source = readers.csv_source(data, data.decode("cp1252"), "cp1252")
    assert isinstance(source, io.StringIO)
    assert readers.csv_table(source).values.tolist() == [["A", "B"], ["Fi\u00e8vre", "1"]]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('a,"\r\n\u00e9')), max_size=30))
def test_header_lines_are_those_of_a_text_buffer(text):
    assert list(readers._lines(text)) == list(io.StringIO(text))


@pytest.mark.parametrize("xml, unsafe", [
    (b'<c r="A1" t="inlineStr"><is><t>x</t></is></c>', False),
    (b'<c r="A1" t="e"><v>#N/A</v></c>', True),          # error cell
    (b'<c r="A1" t="d"><v>2024-03-05</v></c>', True),     # ISO date cell
    (b'<c r="A1"><v>123456789012345</v></c>', False),     # 15 digits: exact as a double
    (b'<c r="A1"><v>1234567890123456</v></c>', True),     # 16 digits
    (b'<c r="A1"><v>-1234567890123456</v></c>', True),
    (b'<c r="A1"><v>-123456789012345.5</v></c>', False),
    (b'<c r="A1" t="s"><v>12</v></c>', False),
    (b'<c r="A1" t="str"><v>t="e" as text</v></c>', True),  # as the single pattern: literal text counts
])
def test_calamine_unsafe_is_the_single_pattern(xml, unsafe):
    """The split search of the reader (two literals and one prefixed regex) finds exactly what
    the one alternation pattern finds."""
    from pipeline.intake.readers import _CALAMINE_UNSAFE, _calamine_unsafe

    assert _calamine_unsafe(xml) is unsafe
    assert (_CALAMINE_UNSAFE.search(xml) is not None) is unsafe
