"""The CAR-T cell product on the ex form: gate arithmetic (total CAR+ cells = dose/kg x weight),
split fractions, the tolerance at its boundary, EXLOT/SUPPEX in SDTM, and the shipped extracts.

Gate fixture (tests/fixtures/intake): subject 001 weighs 65.5 kg at screening and gets
1 x 10^6 CAR+ cells/kg -> 65.5 x 10^6 cells; subject 002 weighs 50 kg, 2 x 10^6/kg -> 100 x 10^6.
[cell_product] total_cells_rel_tolerance = 0.01.
"""

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
from pipeline.spec import load_spec  # noqa: E402

from conftest import SPECS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_CHECKS = {"ex.product_missing", "ex.product_unexpected", "ex.total_cells_mismatch", "ex.total_cells_no_weight"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    specs = synth.make_specs(tmp_path_factory.mktemp("product") / "specs")
    return load_spec(specs), load_study(specs, synth.STUDY)


def product_findings(forms, env) -> set[tuple]:
    spec, study = env
    f = ck.check_cell_product(forms, study, spec)
    return {(int(r.row), r.column, r.check) for r in f.itertuples()}


def _set(forms, row, column, value):
    forms["ex"].loc[forms["ex"]["_ROW"] == row, column] = value


def test_valid_product_rows_pass(env):
    assert product_findings(synth.valid_forms(env[0]), env) == set()


@pytest.mark.parametrize("total, ok", [
    ("66.155", True),    # 65.5 x 1.01: exactly at the 1% tolerance
    ("64.845", True),    # 65.5 x 0.99
    ("66.16", False),    # 0.0076% beyond
    ("64.84", False),
    ("65.5", True),
    ("6.55", False),     # a factor 10 off (dose recorded in 10^7 instead of 10^6)
])
def test_total_cells_tolerance_boundary(env, total, ok):
    forms = synth.valid_forms(env[0])
    _set(forms, 3, "EXCARTOT", total)      # ex row 3 = subject 001's CART-1
    got = product_findings(forms, env)
    assert got == (set() if ok else {(3, "EXCARTOT", "ex.total_cells_mismatch")})


def test_mismatch_message_names_the_arithmetic(env):
    spec, study = env
    forms = synth.valid_forms(spec)
    _set(forms, 3, "EXCARTOT", "70")
    f = ck.check_cell_product(forms, study, spec)
    assert f[["file", "row", "column", "value", "severity"]].values.tolist() == [["ex.csv", 3, "EXCARTOT", "70", "error"]]
    assert "EXDOSE 1000000 cells/kg x weight 65.5 kg = 65.5 x 10^6" in f["message"].iloc[0]


def test_split_fractions_add_up_to_dose_times_weight(env):
    # subject 002 (50 kg, 2 x 10^6/kg) split 40% / 60%: 0.8e6 x 50 = 40, 1.2e6 x 50 = 60; 40 + 60 = 100
    spec, study = env
    forms = synth.valid_forms(spec)
    ex = forms["ex"]
    second = ex[ex["_ROW"] == 5].copy()
    ex.loc[ex["_ROW"] == 5, ["EXDOSE", "EXCARTOT"]] = ["800000", "40"]
    second[["EXSPID", "EXDOSE", "EXCARTOT", "_ROW"]] = ["CART-2", "1200000", "60", 6]
    forms["ex"] = pd.concat([ex, second], ignore_index=True)
    assert product_findings(forms, env) == set()
    car = forms["ex"][forms["ex"]["EXCAT"] == "CAR-T INFUSION"]
    fractions = car[car["SUBJID"] == "002"]
    assert pd.to_numeric(fractions["EXCARTOT"]).sum() == 100.0
    assert pd.to_numeric(fractions["EXDOSE"]).sum() * 50 / 1e6 == 100.0
    # the second fraction recorded with the whole dose's total is caught on its own row
    forms["ex"].loc[forms["ex"]["_ROW"] == 6, "EXCARTOT"] = "100"
    assert product_findings(forms, env) == {(6, "EXCARTOT", "ex.total_cells_mismatch")}


def test_product_fields_required_on_car_t_and_absent_on_lymphodepletion(env):
    forms = synth.valid_forms(env[0])
    _set(forms, 3, "EXLOT", np.nan)
    _set(forms, 2, "EXVIAB", "90")          # row 2 = lymphodepletion
    assert product_findings(forms, env) == {(3, "EXLOT", "ex.product_missing"), (2, "EXVIAB", "ex.product_unexpected")}


def test_no_screening_weight(env):
    forms = synth.valid_forms(env[0])
    vs = forms["vs"]
    forms["vs"] = vs[~((vs["SUBJID"] == "002") & (vs["VSTESTCD"] == "WEIGHT"))]
    assert product_findings(forms, env) == {(5, "EXCARTOT", "ex.total_cells_no_weight")}


def test_screening_weight_wins_over_a_later_weight(env):
    spec, study = env
    vs = synth.valid_forms(spec)["vs"]
    later = vs[(vs["SUBJID"] == "001") & (vs["VSTESTCD"] == "WEIGHT")].assign(VISIT="DAY 7", VSORRES="60", _ROW=99)
    w = ck.screening_weight(pd.concat([vs, later], ignore_index=True), study)
    assert w["001"] == 65.5 and w["002"] == 50.0


def test_ex_domain_keeps_lot_and_product_in_suppex():
    from dm_ex_ds_fixture import context, raw_forms, run
    forms = raw_forms()
    ex = forms["ex"]
    car = ex["EXCAT"] == "CAR-T INFUSION"
    # subject 101, 65.0 kg: 6e5/kg -> 39 x 10^6, 4e5/kg -> 26 x 10^6
    ex.loc[car, "EXLOT"] = "LOT-7"
    ex.loc[car, "EXCARTOT"] = ["39", "26"]
    ex.loc[car, "EXVIAB"] = ["92.5", "92.5"]
    ctx = context(forms)
    run(ctx, ("dm", "ex"))
    e = ctx.datasets["EX"]
    assert e.loc[e["EXCAT"] == "CAR-T INFUSION", "EXLOT"].tolist() == ["LOT-7", "LOT-7"]
    assert (e.loc[e["EXCAT"] == "LYMPHODEPLETION", "EXLOT"] == "").all()
    supp = ctx.datasets["SUPPEX"]
    seq = e.set_index("EXSPID")["EXSEQ"]
    tot = supp[supp["QNAM"] == "CARTOT"].set_index("IDVARVAL")["QVAL"]
    assert tot.to_dict() == {str(int(seq["CART-1"])): "39", str(int(seq["CART-2"])): "26"}
    assert set(supp["QNAM"]) == {"CARTOT", "VIABIL"}          # no transduction efficiency collected
    assert (supp["IDVAR"] == "EXSEQ").all() and (supp["QORIG"] == "Collected").all()


def test_dose_levels_match_the_seed():
    # seed 001: "target dose of CD7 CAR-T from 1x10^5 to 1x10^8 /kg", four levels
    de = load_study(SPECS, "CD7-RRAL-DE")
    assert sorted(de.arms["dose_cells_per_kg"].astype(float)) == [1e5, 1e6, 1e7, 1e8]
    for sid in ("NCT05164042", "NCT06316427", "ZJU-CD7-AID", "ZJU-CD7-SAA"):
        doses = load_study(SPECS, sid).arms["dose_cells_per_kg"].astype(float)
        assert ((doses >= 1e5) & (doses <= 1e8)).all(), sid


@pytest.mark.parametrize("sid", ["CD7-RRAL-DE", "NCT05164042", "NCT06316427", "ZJU-CD7-AID", "ZJU-CD7-SAA"])
def test_shipped_extract_product_is_consistent(sid):
    """raw/: each subject's fractions add up to the arm's dose level; totals = dose x weight (1%),
    physiologically plausible (at most 1e8/kg x 140 kg = 14,000 x 10^6 cells); one lot per subject."""
    folder = ROOT / "raw" / sid
    if not all((folder / f"{f}.csv").is_file() for f in ("ex", "vs", "dm")):
        pytest.skip(f"raw/{sid}: ex, vs or dm is not a CSV file here (run make raw)")
    enc = load_study(SPECS, sid).encoding
    ex, vs, dm = (pd.read_csv(folder / f"{f}.csv", dtype=str, encoding=enc) for f in ("ex", "vs", "dm"))
    car = ex[ex["EXCAT"] == "CAR-T INFUSION"].copy()
    w = vs[vs["VSTESTCD"] == "WEIGHT"].drop_duplicates("SUBJID").set_index("SUBJID")["VSORRES"].astype(float)
    car["w"] = car["SUBJID"].map(w)
    dose, total = car["EXDOSE"].astype(float), car["EXCARTOT"].astype(float)
    assert ((total - dose * car["w"] / 1e6).abs() <= 0.01 * dose * car["w"] / 1e6).all()
    assert total.max() <= 14000 and total.min() > 0
    assert (car.groupby("SUBJID")["EXLOT"].nunique() == 1).all()
    arms = load_study(SPECS, sid).arms.set_index("armcd")["dose_cells_per_kg"].astype(float)
    per_subject = dose.groupby(car["SUBJID"]).sum()
    planned = dm.set_index("SUBJID")["ARMCD"].map(arms).reindex(per_subject.index)
    assert np.allclose(per_subject.to_numpy(), planned.to_numpy(), rtol=1e-6)
    v = car["EXVIAB"].astype(float)
    assert ((v >= 80) & (v <= 98)).all()
