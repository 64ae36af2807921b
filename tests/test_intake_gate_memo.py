"""What the raw gate derives once and reuses (issue 14): spec-derived structures once per loaded
spec, parsed column values once per validate call, and only on the frames that call owns."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "intake"))
import intake_synth as synth  # noqa: E402

from pipeline.config import load_study  # noqa: E402
from pipeline.intake import checks as ck  # noqa: E402
from pipeline.intake import gate  # noqa: E402
from pipeline.intake import schemas  # noqa: E402
from pipeline.spec import Spec, load_spec  # noqa: E402


@pytest.fixture()
def env(tmp_path):
    specs = synth.make_specs(tmp_path / "specs")
    return load_spec(specs), load_study(specs, synth.STUDY)


def test_a_later_study_with_the_same_spec_derives_nothing_from_the_spec_again(tmp_path, env, monkeypatch):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    first = gate.gate_detail(raw, study, spec)
    assert first.findings.empty and len(first.forms) == len(synth.RECORDS)
    asked = []
    real = Spec.form_columns
    monkeypatch.setattr(Spec, "form_columns", lambda self, form: asked.append(form) or real(self, form))
    monkeypatch.setattr(schemas, "_spec_problems", lambda s: asked.append("problems") or [])
    again = gate.gate_detail(raw, study, spec)
    assert asked == []  # read, prepared, padded and checked without asking the spec again
    assert again.findings.empty and again.executed.equals(first.executed)
    assert {f: df.shape for f, df in again.forms.items()} == {f: df.shape for f, df in first.forms.items()}


def test_spec_problems_are_found_once_per_spec_and_still_block(env):
    spec, study = env
    spec.raw_columns.loc[spec.raw_columns["column"] == "AGE", "type"] = "integer"  # a fresh spec's table
    problems = schemas.spec_problems(spec)
    assert problems == ["specs/raw/columns.csv dm.AGE: unknown type 'integer' (known: char, int, float, date, "
                        "pdate, time)"]
    assert schemas.spec_problems(spec) is problems
    with pytest.raises(Exception, match="dm.AGE: unknown type 'integer'"):
        gate.validate_forms(synth.valid_forms(spec), study, spec)


# ---- parsed values: once per validate call, only on the call's own frames ------------------
def _cutoff_rows(forms, env):
    spec, study = env
    f = ck.check_dates_before_cutoff(forms, study, spec)
    return sorted(zip(f["file"], f["row"], f["column"]))


def test_a_form_changed_in_place_between_two_cross_check_calls_is_judged_on_its_new_values(env):
    forms = synth.valid_forms(env[0])  # a caller's own frames (not the gate's working copies)
    assert _cutoff_rows(forms, env) == []
    ae = forms["ae"]
    ae.loc[ae["_ROW"] == 3, "AEENDAT"] = "15-JAN-2025"  # after the 2024-12-31 cutoff, same frame object
    assert _cutoff_rows(forms, env) == [("ae.csv", 3, "AEENDAT")]
    ae.loc[ae["_ROW"] == 3, "AEENDAT"] = "15-JAN-2024"
    assert _cutoff_rows(forms, env) == []


def test_each_number_and_date_column_is_parsed_once_per_validate_call(env, monkeypatch):
    spec, study = env
    parsed = []
    real_number, real_dates = ck.number_value, ck.cdash_date_parts
    monkeypatch.setattr(ck, "number_value", lambda s, integer=False: parsed.append(s.name) or real_number(s, integer))
    monkeypatch.setattr(ck, "cdash_date_parts", lambda s, partial_ok=True, max_year=None:
                        parsed.append(s.name) or real_dates(s, partial_ok, max_year))
    forms = synth.valid_forms(spec)
    assert gate.validate_forms(forms, study, spec).empty
    # dm.AGE: type, range, plausibility (twice) and the age check read one parse (was 4 parses);
    # dm.BRTHDAT: its type check, the age check and the date cross checks (was 3)
    assert parsed.count("AGE") == 1 and parsed.count("BRTHDAT") == 1
    # ex.EXCARTOT: type, range, plausibility and the cell product check (was 3 + 1)
    assert parsed.count("EXCARTOT") == 1
    parsed.clear()
    assert gate.validate_forms(forms, study, spec).empty  # a new call parses afresh
    assert parsed.count("AGE") == 1


# ---- the all-pass test of a form against pandera ----------------------------------------------
REAL = Path(__file__).resolve().parents[1] / "specs"


@pytest.fixture(scope="module")
def real_spec():
    return load_spec(REAL)


@pytest.mark.parametrize("form, column, values, expected", [
    # type.int, range 0-100, plausibility 1-75 (dm.AGE)
    ("dm", "AGE", ["43", "4x", "101", "80", "0", "1e999", "-0", " 7", "1.0"],
     {"type.int": [1, 0, 1, 1, 1, 0, 1, 0, 0], "range": [1, 1, 0, 1, 1, 1, 1, 1, 1],
      "plausibility": [1, 1, 1, 0, 0, 1, 0, 1, 1]}),
    # type.float, range 0.5-250, plausibility 2-220 (vs.VSORRES)
    ("vs", "VSORRES", ["36.6", "1,5", "0.4", "221", "1e999", ".5", "250"],
     {"type.float": [1, 0, 1, 1, 0, 1, 1], "range": [1, 1, 0, 1, 1, 1, 1],
      "plausibility": [1, 1, 1, 0, 1, 0, 0]}),
    ("dm", "ICDAT", ["29-FEB-2024", "29-FEB-2023", "05-mar-2024", "UN-MAR-2024", "01-JAN-1899"],
     {"type.date": [1, 0, 0, 0, 0]}),
    ("dm", "BRTHDAT", ["UN-MAR-1980", "UN-UNK-1980", "05-UNK-1980", "31-APR-1980"], {"type.pdate": [1, 1, 0, 0]}),
    ("ex", "EXSTTIM", ["23:59", "24:00", "9:30", "09:60"], {"type.time": [1, 0, 0, 0]}),
    ("dm", "SEX", ["M", "F", "m", "X"], {"allowed": [1, 1, 0, 0]}),
])
def test_each_generated_check_gives_the_rule_s_verdict_on_real_values(real_spec, form, column, values, expected):
    fs = schemas.form_schema(real_spec, form, 2026)
    s = pd.Series(values, dtype="str")
    by_pandera = {c.name: c._check_fn(s).astype(int).tolist() for c in fs.schema.columns[column].checks}
    df = pd.DataFrame({column: s})
    values_ = schemas.ColumnValues(ck.ParsedForms({form: df}), form, column)
    by_test = {name: test(values_).astype(int).tolist() for name, test in fs.tests[column]}
    assert by_pandera == expected and by_test == expected


def _findings(df, form, spec, study):
    f = schemas.schema_findings(df, form, study, spec)
    return sorted(zip(f["row"], f["column"], f["value"], f["check"], f["severity"]))


def test_a_form_with_bad_cells_gets_pandera_s_findings_and_a_clean_one_passes(real_spec):
    study = load_study(REAL, "CD7-RRAL-DE")
    spec = real_spec
    fs = schemas.form_schema(spec, "dm", 2026)
    forms = ck.ParsedForms()
    cols = [c for c in fs.schema.columns]
    good = {c: None for c in cols}
    good.update(STUDYID="CD7-RRAL-DE", SITEID="01", SUBJID="001", ICDAT="02-JAN-2024", DMDAT="02-JAN-2024",
                BRTHDAT="15-MAR-1980", AGE="43", AGEU="YEARS", SEX="M", ENRYN="Y")
    dm = pd.DataFrame([good, dict(good, SUBJID="002")]).astype("str")
    dm = dm.assign(_FILE="dm.csv", _ROW=[2, 3])
    missing = [c for c in cols if fs.schema.columns[c].required and dm[c].isna().any()]
    for c in missing:  # the spec's other required columns: any valid value
        allowed = spec.form_columns("dm").set_index("column").loc[c, "allowed"]
        dm[c] = pd.Series([allowed.split("|")[0] if allowed else "X"] * 2, dtype="str")
    forms["dm"] = dm
    assert schemas.passes(fs, dm, forms)
    assert _findings(dm, "dm", spec, study) == []
    bad = dm.copy()
    bad.loc[0, "AGE"] = "4x"
    bad.loc[1, "AGE"] = "101"
    bad.loc[1, "SEX"] = "m"
    bad.loc[0, "BRTHDAT"] = "05-UNK-1980"
    bad.loc[1, "ICDAT"] = None
    assert not schemas.passes(fs, bad, ck.ParsedForms({"dm": bad}))
    assert _findings(bad, "dm", spec, study) == [
        (2, "AGE", "4x", "type.int", "error"), (2, "BRTHDAT", "05-UNK-1980", "type.pdate", "error"),
        (3, "AGE", "101", "range", "error"), (3, "ICDAT", "", "required", "error"),
        (3, "SEX", "m", "allowed", "error")]
    plausible = dm.copy()
    plausible.loc[1, "AGE"] = "80"  # a warning only: still not a pass
    assert not schemas.passes(fs, plausible, ck.ParsedForms({"dm": plausible}))
    assert _findings(plausible, "dm", spec, study) == [(3, "AGE", "80", "plausibility", "warning")]


# ---- per-row message text only for the rows that fail ----------------------------------------
def _planted(spec):
    forms = synth.valid_forms(spec)

    def setv(form, row, column, value):
        df = forms[form]
        df.loc[df["_ROW"] == row, column] = value
    setv("ae", 2, "AEENDAT", "20-JAN-2024")          # before AESTDAT 21-JAN-2024
    setv("cm", 3, "CMDOSU", None)                    # CMDOSE 10 without unit
    setv("dm", 2, "AGE", "45")                       # 43 by BRTHDAT 15-MAR-1980 / ICDAT 02-JAN-2024
    setv("ie", 4, "IECAT", "EXCLUSION")              # IN02 is an inclusion criterion
    setv("vs", 3, "VSORRES", "300")                  # 001's WEIGHT 300 kg
    setv("vs", 2, "VSORRESU", "in")                  # 001's HEIGHT in inches
    setv("ex", 3, "EXDOSU", "mg")                    # CD7 CAR-T CELLS are dosed in cells/kg
    setv("ex", 2, "EXLOT", "LOT-X")                  # a lot on a lymphodepletion row
    return forms


def test_failing_rows_get_their_own_text_in_the_message(env):
    spec, study = env
    f = gate.validate_forms(_planted(spec), study, spec)
    got = {(r.file, r.row, r.check): r.message for r in f.itertuples()}
    expected = {
        ("ae.csv", 2, "ae.end_before_start"):
            "AEENDAT is before AESTDAT (21-JAN-2024): the end must be on or after the start",
        ("cm.csv", 3, "cm.dose_unit_missing"): "CMDOSE 10 has no unit (CMDOSU): a dose without its unit cannot be read",
        ("dm.csv", 2, "dm.age_mismatch"):
            "AGE disagrees with BRTHDAT 15-MAR-1980 and ICDAT 02-JAN-2024: completed years at consent = 43",
        ("ie.csv", 4, "ie.category_mismatch"): "IECAT does not match the TI category of IN02 (INCLUSION)",
        ("vs.csv", 2, "vs.unit_invalid"): "unit is not valid for VSTESTCD HEIGHT; allowed: cm",
        ("vs.csv", 3, "vs.range"): "WEIGHT 300 kg is outside the possible range 2-250 kg",
        ("ex.csv", 3, "ex.dose_unit"): "EXDOSU does not match the dose unit of CD7 CAR-T CELLS (cells/kg)",
        ("ex.csv", 2, "ex.product_unexpected"): "EXLOT describes the CAR-T product; this row is LYMPHODEPLETION",
    }
    assert {k: got.get(k) for k in expected} == expected


def test_a_clean_study_builds_no_per_row_message_text(env, monkeypatch):
    spec, study = env
    given = []
    real = ck.make_findings

    def recording(study_id, df, mask, column, check, severity, message, value=None):
        given.append((check, type(message).__name__))
        return real(study_id, df, mask, column, check, severity, message, value)
    monkeypatch.setattr(ck, "make_findings", recording)
    assert gate.validate_forms(synth.valid_forms(spec), study, spec).empty
    assert given and [g for g in given if g[1] == "Series"] == []


# ---- the working copy of a form ----------------------------------------------------------------
def test_the_working_copy_and_the_caller_s_frame_never_change_each_other(env):
    spec, study = env
    dm = synth.valid_forms(spec)["dm"]
    dm.index = [10, 11, 12]
    before = dm.copy()
    w = gate.prepare_form(dm, "dm", study, spec)
    assert w.index.tolist() == [0, 1, 2] and w["_ROW"].tolist() == [2, 3, 4] and w["_ROW"].dtype == "int64"
    w.loc[0, "AGE"] = "99"
    gate._pad(w, "dm", spec)
    pd.testing.assert_frame_equal(dm, before)
    dm.loc[10, "SEX"] = "F"
    assert w.loc[0, "SEX"] == before.loc[10, "SEX"] and w.loc[0, "AGE"] == "99"
    rows = dm.assign(_ROW=pd.array([7, 8, None], dtype="Int64"))  # a hand-made _ROW: converted as before
    assert gate.prepare_form(rows, "dm", study, spec)["_ROW"].tolist() == [7, 8, 0]


# ---- lookups once per distinct key ---------------------------------------------------------------
def test_a_pair_lookup_gives_each_record_its_pair_s_value():
    factor = pd.Series([1.0, 1000.0, 0.0555], index=pd.MultiIndex.from_arrays(
        [["HGB", "HGB", "GLUC"], ["g/L", "g/dL", "mg/dL"]]))
    code = pd.Series(["HGB", "GLUC", "HGB", "HGB", "PLAT", "GLUC"], dtype="str")
    unit = pd.Series(["g/dL", "mg/dL", "g/L", "", "10^9/L", "mmol/L"], dtype="str")
    got = ck._lookup_pairs(pd.factorize(code, use_na_sentinel=False), unit, factor)
    np.testing.assert_array_equal(got, [1000.0, 0.0555, 1.0, np.nan, np.nan, np.nan])
    table = pd.Series({"HGB": "g/L", "GLUC": "mmol/L"})
    assert ck._map_distinct(code, table, pd.factorize(code, use_na_sentinel=False)).tolist()[:2] == ["g/L", "mmol/L"]


def test_subjects_not_in_dm_and_site_mismatches_by_one_lookup(env):
    spec, study = env
    forms = synth.valid_forms(spec)
    dm, ae, vs = forms["dm"], forms["ae"], forms["vs"]
    dm.loc[dm["SUBJID"] == "003", "SITEID"] = np.nan    # no site in dm: nothing to compare with
    ae.loc[ae["_ROW"] == 2, "SUBJID"] = "999"            # not in dm
    ae.loc[ae["_ROW"] == 3, "SITEID"] = "01"             # 002 is at site 02
    vs.loc[vs["_ROW"] == 6, "SITEID"] = "02"             # 003 has no dm site
    vs.loc[vs["_ROW"] == 7, "SUBJID"] = np.nan           # no subject: the schema's business
    f = ck.check_subjects_in_dm(forms, study, spec)
    assert sorted(zip(f["file"], f["row"], f["check"], f["message"])) == [
        ("ae.csv", 2, "subject.not_in_dm", "subject is not in dm: every subject in ae must have a dm record "
                                           "(informed consent)"),
        ("ae.csv", 3, "subject.site_mismatch", "SITEID differs from the subject's site in dm (02)")]


def test_identifiers_judged_once_per_distinct_value(env):
    spec, study = env
    forms = synth.valid_forms(spec)
    ae, vs = forms["ae"], forms["vs"]
    ae.loc[ae["_ROW"] == 2, "STUDYID"] = "OTHER"
    ae.loc[ae["_ROW"] == 3, "STUDYID"] = np.nan          # missing: the schema's business
    vs.loc[vs["_ROW"] == 4, "SITEID"] = "07"
    vs.loc[vs["_ROW"] == 5, "SITEID"] = np.nan
    f = ck.check_identifiers(forms, study, spec)
    assert sorted(zip(f["file"], f["row"], f["column"], f["value"], f["check"])) == [
        ("ae.csv", 2, "STUDYID", "OTHER", "id.studyid"), ("vs.csv", 4, "SITEID", "07", "id.siteid")]
    np.testing.assert_array_equal(ck._failing(pd.Series(["A", None, "B", "A"], dtype="str"), lambda u: u == "A"),
                                  [False, False, True, False])


# ---- the reader strips a form's text in one pass ------------------------------------------------
def test_a_form_s_columns_are_stripped_together_each_keeping_its_own_text(tmp_path, env, monkeypatch):
    from pipeline.intake import readers
    a = pd.Series([" X ", "", None, "Y", "\t"], dtype=object)
    b = pd.Series(["X", " X ", "Z ", np.nan, "y"], dtype="str")
    got = [list(t) for t in readers.strip_texts([a, b])]
    assert [[None if pd.isna(v) else v for v in t] for t in got] == [["X", None, None, "Y", None],
                                                                     ["X", "X", "Z", None, "y"]]
    assert all(str(t.dtype) == "str" for t in readers.strip_texts([a, b]))
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    calls = []
    real = pd.factorize
    monkeypatch.setattr(readers.pd, "factorize", lambda *x, **k: calls.append(1) or real(*x, **k))
    df, notes = readers.read_form(raw / synth.STUDY / "dm.csv", "dm", study, spec)
    assert len(calls) == 1 and df["SUBJID"].tolist() == ["001", "002", "003"]  # one per form (was one a column)
