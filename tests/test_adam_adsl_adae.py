"""ADSL and ADAE derivations on small hand-built SDTM fixtures (expected values worked out by
hand from the rule tables), and the ADaM stage over one real built study."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from pipeline.adam import adae, adsl, stage
from pipeline.adam.common import from_sas_date, sas_date
from pipeline.config import load_study
from pipeline.spec import load_spec

from conftest import ROOT, SPECS  # SPECS: the repo's specs, or the mutation check's scratch copy


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS, "adam")


def d(iso: str) -> float:
    """SAS date of an ISO date."""
    return float(sas_date(pd.Series([pd.Timestamp(iso)])).iloc[0])


def iso(days) -> list[str]:
    return [("" if pd.isna(x) else x.strftime("%Y-%m-%d")) for x in from_sas_date(pd.Series(days))]


# ---------------------------------------------------------------------------------------
# partial-date imputation (specs/rules/adam_date_imputation.csv)
# ---------------------------------------------------------------------------------------
def test_sas_date_epoch():
    assert d("1960-01-01") == 0.0
    assert d("1960-01-02") == 1.0
    assert d("2024-03-01") == 23436.0  # 64 years: 23376 days to 2024-01-01, + 31 + 29


def test_start_date_imputation_at_month_and_year_boundaries(spec):
    rules = spec.rule("adam_date_imputation")
    dtc = pd.Series(["2024-03", "2024-03", "2024", "2024", "2023-12", "2024-03-07", "", "2024-02-29T10:00"])
    trt = pd.Series([d("2024-03-15"), d("2024-02-10"), d("2024-06-30"), d("2023-06-30"),
                     d("2024-01-01"), d("2024-03-10"), d("2024-03-10"), d("2024-02-01")])
    out = adae.impute_date(dtc, rules, "ASTDT", trt, pd.Series(np.nan, index=dtc.index))
    # month of infusion: TRTSDT; other month: the 1st; year of infusion: TRTSDT; other year: Jan 1;
    # December of the year before infusion: Dec 1 (no TRTSDT rule across a year boundary)
    assert iso(out["dt"]) == ["2024-03-15", "2024-03-01", "2024-06-30", "2024-01-01", "2023-12-01",
                              "2024-03-07", "", "2024-02-29"]
    assert out["flag"].tolist() == ["D", "D", "M", "M", "D", "", "", ""]


def test_end_date_imputation_last_day_leap_year_and_ceiling(spec):
    rules = spec.rule("adam_date_imputation")
    dtc = pd.Series(["2024-02", "2023-02", "2023-12", "2024", "2024-05", "2024-05"])
    ceiling = pd.Series([np.nan, np.nan, np.nan, np.nan, d("2024-05-20"), d("2024-06-20")])
    out = adae.impute_date(dtc, rules, "AENDT", pd.Series(np.nan, index=dtc.index), ceiling)
    assert iso(out["dt"]) == ["2024-02-29", "2023-02-28", "2023-12-31", "2024-12-31", "2024-05-20", "2024-05-31"]
    assert out["flag"].tolist() == ["D", "D", "D", "M", "D", "D"]


# ---------------------------------------------------------------------------------------
# treatment emergence and the DLT window
# ---------------------------------------------------------------------------------------
def test_treatment_emergent_boundaries():
    trt = pd.Series([d("2024-01-10")] * 5)
    ast = pd.Series([d("2024-01-09"), d("2024-01-10"), d("2024-01-10") + 730.5, d("2024-01-10") + 731, np.nan])
    # 24 months x 30.4375 = 730.5 days: day 730.5 in, day 731 out; no start date: emergent
    assert adae.treatment_emergent(ast, trt, 24).tolist() == ["", "Y", "Y", "", "Y"]


def _ae(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"USUBJID": ["S-1"] * n, "AEDECOD": ["Pneumonia"] * n, "AEBODSYS": ["Infections and infestations"] * n,
            "AEREL": ["POSSIBLY RELATED"] * n, "TRTEMFL": ["Y"] * n, "ASTCTGRN": [np.nan] * n,
            "TRTSDT": [d("2024-01-01")] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_dlt_window_edges_28_and_21_days(spec):
    t0 = d("2024-01-01")
    ae = _ae(ASTDT=[t0 - 1, t0, t0 + 21, t0 + 22, t0 + 28, t0 + 29], ATOXGRN=[3.0] * 6)
    f28 = adae.dlt_flags(ae, spec, 28)
    assert f28["DLTWINFL"].tolist() == ["", "Y", "Y", "Y", "Y", ""]
    assert f28["DLTFL"].tolist() == ["", "Y", "Y", "Y", "Y", ""]
    f21 = adae.dlt_flags(ae, spec, 21)
    assert f21["DLTFL"].tolist() == ["", "Y", "Y", "", "", ""]


def test_dlt_rules_grade_relatedness_soc_and_astct(spec):
    t0 = d("2024-01-01")
    ae = _ae(ASTDT=[t0 + 3] * 9,
             AEDECOD=["Pneumonia", "Pneumonia", "Neutrophil count decreased", "Cytokine release syndrome",
                      "Cytokine release syndrome", "Immune effector cell-associated neurotoxicity syndrome", "Sepsis",
                      "Immune effector cell-associated neurotoxicity syndrome", "Pneumonia"],
             AEBODSYS=["Infections and infestations", "Infections and infestations", "Investigations",
                       "Immune system disorders", "Immune system disorders", "Nervous system disorders",
                       "Infections and infestations", "Nervous system disorders", "Infections and infestations"],
             AEREL=["POSSIBLY RELATED", "UNLIKELY RELATED", "RELATED", "RELATED", "RELATED", "NOT RELATED",
                    "NOT RELATED", "RELATED", "RELATED"],
             ATOXGRN=[3.0, 3.0, 4.0, 3.0, 3.0, 2.0, 5.0, 2.0, 2.0],
             ASTCTGRN=[np.nan, np.nan, np.nan, 3.0, 4.0, 3.0, np.nan, 2.0, np.nan])
    f = adae.dlt_flags(ae, spec, 28)
    # related grade 3: DLT; unlikely related: not; expected hematologic (Investigations): not;
    # CRS grade 3 (both grades): not (CRS needs >= 4, and CRS is not a NONHEM event); CRS with
    # ASTCT grade 4: DLT; ICANS investigator 2 but ASTCT 3: DLT (worst); grade 5: DLT;
    # ICANS grade 2 by both: not (needs >= 3); a related grade 2 pneumonia: not (needs >= 3)
    assert f["DLTRULE"].tolist() == ["NONHEM", "", "", "", "CRS", "ICANS", "DEATH", "", ""]


# ---------------------------------------------------------------------------------------
# ASTCT grade through RELREC
# ---------------------------------------------------------------------------------------
def test_astct_grade_follows_relrec_links():
    ae = pd.DataFrame({"USUBJID": ["S-1", "S-1", "S-2"], "AESEQ": [1.0, 2.0, 1.0],
                       "AEDECOD": ["Cytokine release syndrome", "Headache", "Cytokine release syndrome"]})
    fa = pd.DataFrame({"USUBJID": ["S-1"] * 4 + ["S-2"], "FAGRPID": ["CRS-1", "CRS-1", "CRS-1", "CRS-2", "CRS-1"],
                       "FATESTCD": ["TOXGR", "TOXGR", "TEMP", "TOXGR", "TOXGR"],
                       "FAOBJ": ["CYTOKINE RELEASE SYNDROME"] * 5, "FASTRESN": [1.0, 3.0, 39.5, 4.0, 2.0]})
    relrec = pd.DataFrame({"USUBJID": ["S-1", "S-1"], "RDOMAIN": ["AE", "FA"], "IDVAR": ["AESEQ", "FAGRPID"],
                           "IDVARVAL": ["1", "CRS-1"], "RELID": ["CRS-1", "CRS-1"]})
    g = adae.astct_grade(ae, fa, relrec)
    # S-1 AE 1 -> episode CRS-1 (grades 1, 3; CRS-2 is not related) = 3; S-2 has no RELREC link
    assert g.iloc[0] == 3.0
    assert np.isnan(g.iloc[1]) and np.isnan(g.iloc[2])


# ---------------------------------------------------------------------------------------
# ADSL on a hand-built study
# ---------------------------------------------------------------------------------------
def _sdtm() -> dict[str, pd.DataFrame]:
    dm = pd.DataFrame({
        "STUDYID": "X", "USUBJID": ["X-1", "X-2", "X-3"], "SUBJID": ["1", "2", "3"], "SITEID": "01",
        "AGE": [40.0, 50.0, 60.0], "AGEU": "YEARS", "SEX": ["F", "M", "F"], "RACE": "ASIAN", "ETHNIC": "",
        "COUNTRY": "CHN", "ARMCD": ["DL1", "DL2", ""], "ARM": ["Dose 1", "Dose 2", ""],
        "ACTARMCD": ["DL1", "DL2", ""], "ACTARM": ["Dose 1", "Dose 2", ""], "ARMNRS": ["", "", "SCREEN FAILURE"],
        "RFICDTC": ["2024-01-01", "2024-01-02", "2024-01-03"], "DTHDTC": ["", "2024-03-01", ""],
        "DTHFL": ["", "Y", ""]})
    ex = pd.DataFrame({
        "USUBJID": ["X-1", "X-1", "X-1", "X-2"],
        "EXCAT": ["LYMPHODEPLETION", "CAR-T INFUSION", "CAR-T INFUSION", "CAR-T INFUSION"],
        "EXSTDTC": ["2024-01-10T09:00", "2024-01-15T10:00", "2024-01-16T11:00", "2024-01-20"],
        "EXENDTC": ["2024-01-10T10:00", "2024-01-15T10:30", "", "2024-01-20"],
        "EXDOSE": [30.0, 4e4, 6e4, 1e6], "EXDOSU": ["mg/m2", "cells/kg", "cells/kg", "cells/kg"]})
    ds = pd.DataFrame({"USUBJID": ["X-2", "X-3"], "DSCAT": "DISPOSITION EVENT", "DSSCAT": "STUDY PARTICIPATION",
                       "DSDECOD": ["DEATH", "SCREEN FAILURE"], "DSSTDTC": ["2024-03-01", "2024-01-05"]})
    suppds = pd.DataFrame({"USUBJID": ["X-1"], "QNAM": ["LKADTC"], "QVAL": ["2024-06-30"]})
    lb = pd.DataFrame({"USUBJID": ["X-1", "X-1"], "LBDTC": ["2024-05-01T08:00", "2024-07-01"]})
    rs = pd.DataFrame({"USUBJID": ["X-1", "X-2"], "RSTESTCD": ["OVRLRESP", "OVRLRESP"],
                       "RSDTC": ["2024-02-12", "2024-01-19"], "RSSTRESC": ["CR", "NR"], "RSSTRESN": [np.nan, np.nan]})
    return {"DM": dm, "EX": ex, "DS": ds, "SUPPDS": suppds, "LB": lb, "RS": rs}


class _Study:
    studyid = "X"
    data_cutoff = "2024-12-31"
    dlt_window_days = 28
    arms = pd.DataFrame({"armcd": ["DL1", "DL2"], "dose_cells_per_kg": [1e5, 1e6]})

    def __getitem__(self, k):
        return {"safety": {"ae_followup_months": 24}}[k]


def test_adsl_treatment_dates_populations_and_alive_dates(spec):
    a = adsl.build(_sdtm(), spec, _Study()).set_index("USUBJID")
    assert iso(a["TRTSDT"]) == ["2024-01-15", "2024-01-20", ""]
    assert iso(a["TRTEDT"]) == ["2024-01-16", "2024-01-20", ""]     # split infusion: last fraction
    assert iso(a["LDSTDT"]) == ["2024-01-10", "", ""]
    assert a.loc["X-1", "TRTSDTM"] == d("2024-01-15") * 86400 + 10 * 3600
    assert a["DOSE01A"].tolist()[:2] == [1e5, 1e6]
    assert a["TRT01PN"].tolist()[:2] == [1.0, 2.0] and np.isnan(a.loc["X-3", "TRT01PN"])
    assert a["SAFFL"].tolist() == ["Y", "Y", "N"]
    # X-2's only response assessment is before the infusion: not in the efficacy set
    assert a["EFFFL"].tolist() == ["Y", "N", "N"]
    # latest record LB 2024-07-01 (later than LKADTC); X-2: death date; X-3: DS 2024-01-05 is
    # not evidence of being alive, consent 2024-01-03 is
    assert iso(a["LSTALVDT"]) == ["2024-07-01", "2024-03-01", "2024-01-03"]
    assert a["EOSSTT"].tolist() == ["ONGOING", "DISCONTINUED", "DISCONTINUED"]
    assert a["DCSREAS"].tolist() == ["", "DEATH", "SCREEN FAILURE"]


def test_dlt_evaluable_population(spec):
    a = adsl.build(_sdtm(), spec, _Study())
    ae = pd.DataFrame({"USUBJID": ["X-2"], "DLTFL": ["Y"]})
    out = adsl.dlt_population(a, ae, 28).set_index("USUBJID")
    # X-1 followed past day 28; X-2 died on day 41 but had a DLT; X-3 never treated
    assert out["DLTEVLFL"].tolist() == ["Y", "Y", "N"]
    out = adsl.dlt_population(a, ae.iloc[0:0], 60).set_index("USUBJID")
    # window 60: X-2 (death day 41, no DLT) is not evaluable
    assert out["DLTEVLFL"].tolist() == ["Y", "N", "N"]


# ---------------------------------------------------------------------------------------
# the ADaM stage over the smallest real study (built once)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import pipeline.build as build
    from tests.test_build_real_tree import smallest_study

    sid = smallest_study()
    if sid is None:
        pytest.skip("raw/ holds no study extracts yet (run `make raw`)")
    out = tmp_path_factory.mktemp("adam") / "sdtm"
    args = argparse.Namespace(study=[sid], raw=ROOT / "raw", specs=SPECS, out=out, debug=False, no_progress=True)
    assert build.run_build(args) == 0
    return out / sid


@pytest.mark.slow
def test_adam_outputs_in_manifest_and_define_valid(built):
    from pipeline.export import manifest

    names = {p.name for p in (built / "adam").iterdir()}
    assert {"adsl.xpt", "adsl.json", "adae.xpt", "adae.json", "define.xml", "define.html"} <= names
    listed = pd.read_csv(built / "manifest.csv", dtype=str)["file"].tolist()
    assert "adam/adsl.xpt" in listed and "adam/define.xml" in listed
    assert manifest.verify_manifest(built) == []
    xml = (built / "adam" / "define.xml").read_bytes()
    from pipeline.export import define

    assert define.schema_problems(xml) == []
    assert define.integrity_problems(xml) == []
    assert b'Name="ADaMIG"' in xml and b'Purpose="Analysis"' in xml
    from lxml import etree

    root = etree.fromstring(xml)
    ns = define.NS
    vls = {v.get("OID") for v in root.iter("{%s}ValueListDef" % ns["def"])}
    # value-level metadata per PARAMCD of every BDS dataset
    assert {"VL.ADRS.AVALC", "VL.ADLB.AVAL", "VL.ADTTE.AVAL"} <= vls
    items = {i.get("OID"): i for i in root.iter("{%s}ItemDef" % ns["odm"])}
    no_method = [r.get("ItemOID") for r in root.iter("{%s}ItemRef" % ns["odm"])
                 if items[r.get("ItemOID")].find("def:Origin", ns).get("Type") == "Derived" and not r.get("MethodOID")]
    assert no_method == []                                       # a MethodDef for every derived variable
    tte = root.find(".//odm:ItemGroupDef[@Name='ADTTE']/def:Class/def:SubClass", ns)
    assert tte is not None and tte.get("Name") == "TIME-TO-EVENT"


@pytest.mark.slow
def test_adam_files_are_byte_identical_when_rewritten(built, tmp_path):
    from pipeline.export.datasetjson import read_dataset_json

    sid = built.name
    sdtm = {p.stem.upper(): read_dataset_json(p)[0] for p in built.glob("*.json")}
    spec = load_spec(SPECS, "adam")
    study = load_study(SPECS, sid)
    from pipeline.export import checks

    adam = {n: checks.order_dataset(f, spec, n) for n, f in stage.derive(sdtm, spec, study).items()}
    stage.write(tmp_path / "a", adam, spec, study)
    stage.write(tmp_path / "b", adam, spec, study)
    for p in sorted((tmp_path / "a").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name
    # and the same bytes as the build wrote (the build read the same SDTM frames)
    for name in ("adsl.xpt", "adae.json", "adrs.json", "define.xml"):
        assert (tmp_path / "a" / name).read_bytes() == (built / "adam" / name).read_bytes(), name


def _seq_keys(frames: list[pd.DataFrame], seq: str) -> set:
    return {(u, float(q)) for f in frames for u, q in zip(f["USUBJID"], pd.to_numeric(f[seq]))}


@pytest.mark.slow
def test_every_adam_record_traces_to_sdtm_and_rederives_identically(built):
    """SRCDOM/SRCVAR/SRCSEQ of every record of every ADaM dataset resolve: to an SDTM record
    (AE by AESEQ; LB and its split LBDA by LBSEQ; RS by RSSEQ), to an ADSL variable of the
    subject, or to an ADaM record (ADRS ASEQ; ADLB parameter) that itself traces to SDTM."""
    from pipeline.export.datasetjson import read_dataset_json

    sid = built.name
    sdtm = {p.stem.upper(): read_dataset_json(p)[0] for p in built.glob("*.json")}
    adam = {p.stem.upper(): read_dataset_json(p)[0] for p in (built / "adam").glob("*.json")}
    assert {"ADSL", "ADAE", "ADRS", "ADLB", "ADTTE"} <= set(adam)
    assert set(adam["ADSL"]["USUBJID"]) == set(sdtm["DM"]["USUBJID"])
    keys = {"AE": _seq_keys([sdtm["AE"]], "AESEQ"), "RS": _seq_keys([sdtm["RS"]], "RSSEQ"),
            "LB": _seq_keys([sdtm[d] for d in ("LB", "LBDA") if d in sdtm], "LBSEQ"),
            "ADRS": _seq_keys([adam["ADRS"]], "ASEQ")}
    adsl_cols = set(adam["ADSL"].columns)
    lb_params = set(zip(adam["ADLB"]["USUBJID"], adam["ADLB"]["PARAMCD"]))
    for name in ("ADAE", "ADRS", "ADLB", "ADTTE"):
        f = adam[name]
        for dom, grp in f.groupby("SRCDOM"):  # a few source datasets per ADaM dataset
            if dom in keys:
                got = set(zip(grp["USUBJID"], pd.to_numeric(grp["SRCSEQ"]).astype(float)))
                assert got <= keys[dom], (name, dom, sorted(got - keys[dom])[:3])
            elif dom == "ADSL":
                assert set(grp["SRCVAR"]) <= adsl_cols, (name, set(grp["SRCVAR"]))
            elif dom == "ADLB":
                assert all((u, "NEUT") in lb_params for u in grp["USUBJID"]), name
            else:
                raise AssertionError(f"{name}: unknown SRCDOM {dom!r}")
        assert (f["SRCDOM"] != "").all(), name
    spec = load_spec(SPECS, "adam")
    study = load_study(SPECS, sid)
    again = stage.derive(sdtm, spec, study)
    a1 = stage.derive(sdtm, spec, study)
    for name in again:
        pd.testing.assert_frame_equal(again[name], a1[name])
