"""The shipped raw mh/prtx/phsct forms are consistent with consent, with each other and with the
eligibility criteria (pipeline.simulate.history), for all five studies."""

from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_study, study_ids

ROOT = Path(__file__).resolve().parents[1]
STUDIES = study_ids(ROOT / "specs")


def _read(sid: str, form: str) -> pd.DataFrame:
    enc = load_study(ROOT / "specs", sid).encoding
    enc = "utf-8-sig" if enc.lower().replace("-", "") == "utf8" else enc
    return pd.read_csv(ROOT / "raw" / sid / f"{form}.csv", dtype=str, keep_default_na=False, encoding=enc)


def _day(s: pd.Series) -> pd.Series:
    """Complete CDASH dates as Timestamps (partial/empty -> NaT)."""
    return pd.to_datetime(s.where(~s.str.startswith("UN")), format="%d-%b-%Y", errors="coerce")


@pytest.mark.parametrize("sid", STUDIES)
def test_history_before_consent_and_ordered(sid):
    dm, mh, pt, h = (_read(sid, f) for f in ("dm", "mh", "prtx", "phsct"))
    ic = _day(dm.set_index("SUBJID")["ICDAT"])
    pdx = mh[mh["MHCAT"] == "PRIMARY DIAGNOSIS"].set_index("SUBJID")
    assert sorted(pdx.index) == sorted(dm["SUBJID"])                 # one diagnosis per subject
    year = pdx["MHSTDAT"].str[-4:].astype(int)
    assert (year <= ic.reindex(pdx.index).dt.year).all()
    full = _day(pdx["MHSTDAT"])
    assert (full.dropna() < ic.reindex(full.dropna().index)).all()
    # every line ends >= 21 days before consent and after it starts; lines follow each other
    end = _day(pt["CMENDAT"])
    assert end.notna().all()
    assert ((ic.reindex(pt["SUBJID"]).to_numpy() - end.to_numpy()) >= pd.Timedelta(days=21)).all()
    start = _day(pt["CMSTDAT"])
    ok = start.notna()
    assert (start[ok] <= end[ok]).all()
    prev_end = end.groupby(pt["SUBJID"]).shift(1)
    both = ok & prev_end.notna()
    assert (start[both] > prev_end[both]).all()
    # a prior HSCT lies between the last two lines, and the line before it reached CR
    yes = h[h["PROCCUR"] == "Y"]
    for s, d in zip(yes["SUBJID"], _day(yes["PRSTDAT"])):  # the few transplanted subjects of a study
        lines = pt[pt["SUBJID"] == s].assign(end=_day(pt["CMENDAT"]), start=_day(pt["CMSTDAT"]))
        n = len(lines)
        assert n >= 2
        before = lines.iloc[n - 2]
        assert before["BESTRESP"] == "CR" and before["end"] < d
        assert pd.isna(lines.iloc[n - 1]["start"]) or lines.iloc[n - 1]["start"] > d
    # GvHD history only after an allogeneic HSCT, starting after it and over >= 5 weeks before consent
    g = mh[(mh["MHCAT"] == "GVHD HISTORY") & (mh["MHOCCUR"] == "Y")]
    assert set(g["SUBJID"]) <= set(yes["SUBJID"])
    hd = _day(yes.set_index("SUBJID")["PRSTDAT"])
    assert (_day(g.set_index("SUBJID")["MHSTDAT"]) > hd.reindex(g["SUBJID"])).all()
    assert ((ic.reindex(g["SUBJID"]) - _day(g.set_index("SUBJID")["MHENDAT"])) >= pd.Timedelta(days=35)).all()


def test_study_specific_history():
    saa = _read("ZJU-CD7-SAA", "mh")
    # exclusion: history of epilepsy or other CNS disorders; no prior HSCT in the bridging study
    assert (saa.loc[saa["MHCAT"] == "CNS DISEASE HISTORY", "MHOCCUR"] == "N").all()
    assert set(saa.loc[saa["MHCAT"] == "PRIMARY DIAGNOSIS", "DISSUBTP"]) <= {"SAA", "VSAA"}
    assert (_read("ZJU-CD7-SAA", "phsct")["PROCCUR"] == "N").all()
    aid = _read("ZJU-CD7-AID", "mh")
    dm = _read("ZJU-CD7-AID", "dm").set_index("SUBJID")["PRIMDIAG"]
    p = aid[aid["MHCAT"] == "PRIMARY DIAGNOSIS"].set_index("SUBJID")
    group = {"SYSTEMIC LUPUS ERYTHEMATOSUS": "SLE", "DERMATOMYOSITIS": "IIM", "SYSTEMIC SCLEROSIS": "SSC",
             "ANCA-ASSOCIATED VASCULITIS": "AAV"}
    assert (p["DISSUBTP"] == dm.reindex(p.index).map(group)).all()
    # >= 2 prior lines where the protocol says "after all standard treatments" (NCT06316427)
    pt = _read("NCT06316427", "prtx")
    assert pt.groupby("SUBJID").size().min() >= 2
