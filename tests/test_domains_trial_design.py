"""Trial design TS, TA, TE, TV, TI from the study parameters (+ ACTSUB from DM)."""

import tomllib

import pandas as pd
import pytest

from dm_ex_ds_fixture import ROOT, STUDY, context, run
from pipeline.domains import trial_design as td
from pipeline.errors import ConfigError


@pytest.fixture(scope="module")
def built():
    ctx = context()
    res = run(ctx)
    return ctx, res


def test_ts_parameters(built):
    ctx, _ = built
    ts = ctx.datasets["TS"]
    by = ts.set_index(["TSPARMCD", "TSSEQ"])
    assert by.loc[("SSTDTC", 1.0), "TSVAL"] == "2024-03-18"
    assert by.loc[("SSTDTC", 1.0), "TSVCDREF"] == "ISO 8601"
    assert by.loc[("SDTIGVER", 1.0), "TSVAL"] == "3.4"
    assert by.loc[("SDTMVER", 1.0), "TSVAL"] == "2.0"
    # CDISC-coded values carry their code, reference terminology and CT version
    assert by.loc[("TPHASE", 1.0), ["TSVALCD", "TSVCDREF", "TSVCDVER"]].tolist() == ["C15693", "CDISC CT", "2025-03-28"]
    assert by.loc[("TTYPE", 2.0), "TSVAL"] == "EFFICACY"
    # ACTSUB computed from DM: only subject 101 received CAR-T
    assert by.loc[("ACTSUB", 1.0), ["TSVAL", "TSPARM"]].tolist() == ["1", "Actual Number of Subjects"]
    assert not ts.duplicated(["TSPARMCD", "TSSEQ"]).any()
    # no value is over 200 characters: no TSVAL1.. continuation variables
    assert list(ts.columns) == [v for v in ctx.spec.var_names("TS") if v not in ("TSVAL1", "TSVAL2", "TSVAL3")]


def test_tsval_split_over_200():
    text = " ".join(["word%03d" % i for i in range(60)])        # 479 characters
    parts = td.split_text(text)
    assert [len(p) for p in parts] == [199, 200, 80]
    assert "".join(parts) == text
    assert all(len(p) <= 200 for p in parts)
    assert td.split_text("x" * 201) == ["x" * 200, "x"]       # no space: hard cut
    assert td.split_text("short") == ["short"]


def test_long_tsval_goes_to_tsval1():
    ctx = context()
    run(ctx, ("dm", "ex", "se"))
    long = "A" * 150 + " " + "B" * 100
    ctx.study.raw["ts"] = [{"tsparmcd": "OBJPRIM", "tsval": long}]
    ts, _ = td.build_ts(ctx)
    row = ts[ts["TSPARMCD"] == "OBJPRIM"].iloc[0]
    assert (row["TSVAL"], row["TSVAL1"]) == ("A" * 150, " " + "B" * 100)
    assert "TSVAL2" not in ts.columns  # only the continuation variables a value needs
    assert row["TSPARM"] == "Trial Primary Objective"


def test_tv_visitdy(built):
    ctx, _ = built
    tv = ctx.datasets["TV"].set_index("VISIT")
    assert tv.loc["SCREENING", "VISITDY"] == -14          # negative days unchanged
    assert tv.loc["DAY 0", "VISITDY"] == 1                # infusion = day 0 = study day 1
    assert tv.loc["DAY 28", "VISITDY"] == 29
    assert tv.loc["MONTH 24", "VISITDY"] == 731
    assert set(tv["ARMCD"]) == {""}
    assert tv.loc["DAY 7", "TVSTRL"].endswith("Protocol day 6: 6 days after the first CAR-T infusion")
    assert tv.loc["DAY 1", "TVENRL"].endswith("1 day after the first CAR-T infusion")
    assert len(tv) == 20


def test_ti_matches_toml(built):
    ctx, res = built
    doc = tomllib.loads((ROOT / "specs" / "studies" / f"{STUDY}.toml").read_text())
    ti = ctx.datasets["TI"]
    assert len(ti) == len(doc["ti"]) == 21
    assert ti["IETESTCD"].tolist() == [t["ietestcd"] for t in doc["ti"]]
    assert (ti["IETEST"].str.len() <= 200).all()
    # long protocol texts are not truncated into TIRL: they go to the report
    rep = res["trial_design"].reports["ti_criterion_text"]
    assert set(rep["IETESTCD"]) == {"IN01", "IN02", "IN07"}
    assert set(ti.loc[ti["IETESTCD"].isin(rep["IETESTCD"]), "TIRL"]) == {""}


def test_ta_te(built):
    ctx, _ = built
    ta = ctx.datasets["TA"]
    assert len(ta) == 3 * 4
    auto = ta[ta["ARMCD"] == "AUTO"].sort_values("TAETORD")
    assert auto[["ETCD", "EPOCH"]].values.tolist() == [["SCRN", "SCREENING"], ["LD", "LYMPHODEPLETION"],
                                                      ["CART", "TREATMENT"], ["FU", "FOLLOW-UP"]]
    assert auto["TABRANCH"].iloc[0] != "" and set(auto["TABRANCH"].iloc[1:]) == {""}
    te = ctx.datasets["TE"].set_index("ETCD")
    assert te.loc["CART", "TEDUR"] == "P21D" and te.loc["SCRN", "TEDUR"] == ""
    assert te.loc["SCRN", "TESTRL"] == "Informed consent"


@pytest.mark.parametrize("studyid", ["CD7-RRAL-DE", "NCT05164042", "NCT06316427", "ZJU-CD7-AID", "ZJU-CD7-SAA"])
def test_every_study_builds_trial_design(studyid):
    from pipeline.config import load_study
    ctx = context()
    ctx.study = load_study(ROOT / "specs", studyid)
    res = td.build(ctx)
    assert len(res.datasets["TI"]) == len(ctx.study.raw.get("ti", []))
    assert (res.datasets["TS"]["TSPARMCD"] == "SDTIGVER").sum() == 1
    assert res.datasets["TV"]["VISITDY"].notna().all()


def test_dictionary_versions_come_from_the_standards():
    """TSVCDVER of CDISC CT / MedDRA coded values is the one version standards.toml declares;
    other references keep theirs; a TS table that contradicts the declared version is refused."""
    std = {"ct_version": "2025-03-28", "meddra_version": "27.1"}
    ref = pd.Series(["CDISC CT", "MedDRA", "ISO 8601", "CDISC CT"])
    given = pd.Series(["", "", "", "2025-03-28"])
    assert td.dictionary_versions(ref, given, std).tolist() == ["2025-03-28", "27.1", "", "2025-03-28"]
    with pytest.raises(ConfigError, match="MedDRA 26.0"):
        td.dictionary_versions(pd.Series(["MedDRA"]), pd.Series(["26.0"]), std)
