"""End to end over the embedded extracts raw/<STUDYID>/: AE, SUPPAE, FA, RELREC find exactly the
problems the simulator planted (raw/planted.csv). Skipped, visibly, when raw/ is not there."""

from __future__ import annotations

import functools

import pandas as pd
import pytest

from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.spec import load_spec

from conftest import RAW, SPECS

#: the 21-day DLT study and the autoimmune 28-day one
STUDIES = ["NCT06316427", "ZJU-CD7-AID"]


def _require_raw(studyid: str) -> None:
    if not (RAW / studyid).is_dir() or not (RAW / "planted.csv").is_file():
        pytest.skip(f"raw/{studyid} or raw/planted.csv not present (run `make raw`)")


@functools.lru_cache(maxsize=None)
def _built(studyid: str):
    from pipeline.domains import ae, dm, ds, ex, se
    from pipeline.intake.gate import gate_study

    spec = load_spec(SPECS)
    study = load_study(SPECS, studyid)
    forms, _ = gate_study(RAW, study, spec)
    ctx = StudyContext(study=study, spec=spec, forms=forms)
    for module in (dm, ex, se, ds):  # the datasets AE reads
        ctx.datasets.update(module.build(ctx).datasets)
    return study, ctx, ae.build(ctx)


def _planted(studyid: str) -> pd.DataFrame:
    p = pd.read_csv(RAW / "planted.csv", dtype=str, keep_default_na=False)
    return p[(p["study"] == studyid) & (p["form"] == "ae")]


@pytest.mark.parametrize("studyid", STUDIES)
def test_planted_ae_problems_are_found(studyid):
    _require_raw(studyid)
    study, ctx, res = _built(studyid)
    planted = _planted(studyid)
    subj = lambda s: ctx.datasets["DM"].set_index("SUBJID").loc[s, "USUBJID"]  # noqa: E731
    queries = res.reports["coding_queries"]
    unmappable = planted[planted["item"] == "AE-UNMAPPABLE"]
    assert sorted(queries["USUBJID"]) == sorted(subj(s) for s in unmappable["subjid"])
    # the shipped coding decisions resolve every planted query: no AEDECOD is empty
    assert set(queries["status"]) == {"RESOLVED"}
    assert res.datasets["AE"]["AEDECOD"].ne("").all()
    rep = res.reports["crs_icans_discrepancies"]
    # ICANS reported under the CTCAE term Encephalopathy is a term query on top of the planted ones
    term_query = rep["discrepancy"].str.startswith("AE TERM")
    assert set(rep.loc[term_query, "AEDECOD"]) <= {"Encephalopathy"}
    what = rep["discrepancy"].str.replace(r"^AE TERM(; )?", "", regex=True)
    found = {(u, d) for u, d in zip(rep["USUBJID"], what) if d}
    expected = {(subj(r.subjid), {"AE-CRS-GRADE": "GRADE", "AE-ICANS-GRADE": "GRADE",
                                  "AE-CRS-DATE": "START DATE"}[r.item])
                for r in planted.itertuples() if r.item != "AE-UNMAPPABLE"}
    assert found == expected
    assert (res.findings["severity"] != "error").all(), res.findings.to_string()
    assert res.rejected.empty


@pytest.mark.parametrize("studyid", STUDIES)
def test_every_raw_row_is_mapped_and_no_ae_is_derived(studyid):
    _require_raw(studyid)
    study, ctx, res = _built(studyid)
    ae, fa, rel = res.datasets["AE"], res.datasets["FA"], res.datasets["RELREC"]
    assert sorted(res.consumed.query("form == 'ae' and dataset == 'AE'")["row"]) == sorted(ctx.forms["ae"]["_ROW"])
    assert sorted(res.consumed.query("form == 'crs' and dataset == 'FA'")["row"]) == sorted(ctx.forms["crs"]["_ROW"])
    # one AE record per row of the AE CRF, none from the daily assessments
    assert len(ae) == len(ctx.forms["ae"]) and sorted(ae["AESPID"]) == sorted(ctx.forms["ae"]["AESPID"])
    assert set(res.datasets["SUPPAE"]["QNAM"]) == {"TOXGRSCL"}
    assert len(fa.query("FATESTCD == 'TOXGR'")) == 2 * len(ctx.forms["crs"])
    # RELREC: every relationship has one AE side and the FA group of the same id; FAOBJ = AEDECOD
    ae_side = rel[rel["RDOMAIN"] == "AE"].merge(ae[["USUBJID", "AESEQ", "AEDECOD"]].astype({"AESEQ": int}).astype(
        {"AESEQ": str}), left_on=["USUBJID", "IDVARVAL"], right_on=["USUBJID", "AESEQ"])
    assert len(ae_side) == (rel["RDOMAIN"] == "AE").sum() > 0
    fa_side = rel[rel["RDOMAIN"] == "FA"]
    assert set(zip(fa_side["USUBJID"], fa_side["RELID"])) == set(zip(ae_side["USUBJID"], ae_side["RELID"]))
    assert (fa_side["IDVARVAL"] == fa_side["RELID"]).all()
    obj = fa[fa["FAGRPID"] != ""].drop_duplicates(["USUBJID", "FAGRPID"]).set_index(["USUBJID", "FAGRPID"])["FAOBJ"]
    assert (obj.loc[list(zip(ae_side["USUBJID"], ae_side["RELID"]))].to_numpy() == ae_side["AEDECOD"].to_numpy()).all()
