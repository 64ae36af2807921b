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
    rep = res.reports["crs_icans_discrepancies"]
    found = {(u, d) for u, d in zip(rep["USUBJID"], rep["discrepancy"])}
    expected = {(subj(r.subjid), {"AE-CRS-GRADE": "GRADE", "AE-ICANS-GRADE": "GRADE",
                                  "AE-CRS-DATE": "START DATE"}[r.item])
                for r in planted.itertuples() if r.item != "AE-UNMAPPABLE"}
    assert found == expected
    assert (res.findings["severity"] != "error").all(), res.findings.to_string()
    assert res.rejected.empty


@pytest.mark.parametrize("studyid", STUDIES)
def test_every_raw_row_is_mapped_and_flags_follow_the_window(studyid):
    _require_raw(studyid)
    study, ctx, res = _built(studyid)
    ae, fa = res.datasets["AE"], res.datasets["FA"]
    assert sorted(res.consumed.query("form == 'ae' and dataset == 'AE'")["row"]) == sorted(ctx.forms["ae"]["_ROW"])
    assert sorted(res.consumed.query("form == 'crs' and dataset == 'FA'")["row"]) == sorted(ctx.forms["crs"]["_ROW"])
    assert len(fa.query("FATESTCD == 'TOXGR'")) == 2 * len(ctx.forms["crs"])
    supp = res.datasets["SUPPAE"]
    dlt = supp[supp["QNAM"] == "DLTWINFL"].set_index(["USUBJID", "IDVARVAL"])["QVAL"]
    teae = supp[supp["QNAM"] == "AETRTEM"].set_index(["USUBJID", "IDVARVAL"])["QVAL"]
    full = ae[ae["AESTDY"].notna() & ae["AESTDTC"].str.len().ge(10)]
    key = list(zip(full["USUBJID"], full["AESEQ"].astype(int).astype(str)))
    # in the window: study days 1..N+1 and treatment emergent (an onset on the infusion day
    # before the infusion time is neither)
    want = (full["AESTDY"].between(1, study.dlt_window_days + 1).to_numpy() & (teae.loc[key] == "Y").to_numpy())
    assert dlt.loc[key].tolist() == ["Y" if w else "N" for w in want]
    assert (teae.loc[key].to_numpy() == "Y")[full["AESTDY"].to_numpy() > 1].all()
    # every derived episode is in RELREC with its FA group
    der = ae[ae["AECAT"] != ""]
    rel = res.datasets["RELREC"]
    assert set(zip(der["USUBJID"], der["AESPID"])) <= set(zip(rel["USUBJID"], rel["RELID"]))
    assert set(zip(der["USUBJID"], der["AESPID"])) == set(
        zip(fa.loc[fa["FAGRPID"] != "", "USUBJID"], fa.loc[fa["FAGRPID"] != "", "FAGRPID"]))
