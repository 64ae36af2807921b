"""ADPP, cellular kinetics parameters (ADaMIG 1.3 BDS), from SDTM PP and PC and ADSL.

- CMAX, TMAX, AUCINT (AUC days 0-28) per analyte (PARCAT1 = PPCAT: CARTCOPY qPCR copies/ug,
  CARTCELL flow cells/uL), as computed in SDTM PP (:mod:`pipeline.rules.kinetics`), traced to PPSEQ.
- TLAST: time (days after the first CAR-T infusion, PCRFTDTC) of the last quantifiable PC result
  (PCSTRESN not null) per analyte, traced to that PCSEQ (persistence).
- DETM3/DETM6/DETM12: transgene detectable (Y/N) in the sample nearest the visit's protocol day
  within the study's visit window (``specs/rules/ck_persistence.csv``; no sample in the window:
  no record), traced to that PCSEQ.
Dose level (TRT01A/TRT01AN, DOSE01A) comes from ADSL for the by-dose-level summary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.adam.common import merge_adsl, num, text
from pipeline.config import Study
from pipeline.derive.dates import dtc_datetime
from pipeline.spec import Spec

ADSL_VARS = ["STUDYID", "SITEID", "TRT01P", "TRT01PN", "TRT01A", "TRT01AN", "DOSE01A", "DOSE01U", "SAFFL"]


def pp_parameters(pp: pd.DataFrame) -> pd.DataFrame:
    """The SDTM PP parameters as ADPP records."""
    return pd.DataFrame({"USUBJID": text(pp["USUBJID"]).to_numpy(), "PARCAT1": text(pp["PPCAT"]).to_numpy(),
                         "PARAMCD": text(pp["PPTESTCD"]).to_numpy(), "AVAL": num(pp["PPSTRESN"]).to_numpy(),
                         "AVALU": text(pp["PPSTRESU"]).to_numpy(), "SRCDOM": "PP", "SRCVAR": "PPSTRESN",
                         "SRCSEQ": num(pp["PPSEQ"]).to_numpy()})


def _pc(pc: pd.DataFrame) -> pd.DataFrame:
    t = (dtc_datetime(text(pc["PCDTC"])) - dtc_datetime(text(pc["PCRFTDTC"]))).dt.total_seconds() / 86400.0
    return pd.DataFrame({"USUBJID": text(pc["USUBJID"]).to_numpy(), "PARCAT1": text(pc["PCTESTCD"]).to_numpy(),
                         "t": t.to_numpy(), "value": num(pc["PCSTRESN"]).to_numpy(),
                         "SEQ": num(pc["PCSEQ"]).to_numpy()})


def time_of_last_quantifiable(pc: pd.DataFrame) -> pd.DataFrame:
    """TLAST per subject and analyte: the latest post-infusion sample time (days) with a
    quantifiable result."""
    p = _pc(pc)
    q = p[p["value"].notna() & (p["t"] >= 0)].sort_values(["USUBJID", "PARCAT1", "t"], kind="mergesort")
    last = q.drop_duplicates(["USUBJID", "PARCAT1"], keep="last")
    return pd.DataFrame({"USUBJID": last["USUBJID"], "PARCAT1": last["PARCAT1"], "PARAMCD": "TLAST",
                         "AVAL": last["t"].round(6), "AVALU": "DAYS", "SRCDOM": "PC", "SRCVAR": "PCDTC",
                         "SRCSEQ": last["SEQ"]})


def detectable_at_visits(pc: pd.DataFrame, spec: Spec, study: Study) -> pd.DataFrame:
    """DETMn records by ``specs/rules/ck_persistence.csv``: the sample nearest the visit's
    protocol day within its [[visits]] window (ties: the earlier), Y when quantifiable."""
    rules = spec.rule("ck_persistence")
    visits = study.visits.set_index("VISIT")
    p = _pc(pc)
    p["day"] = np.floor(p["t"])
    parts = []
    for r in rules.to_dict("records"):  # three visits (metadata)
        if r["visit"] not in visits.index:
            continue
        v = visits.loc[r["visit"]]
        sub = p[(p["PARCAT1"] == r["pctestcd"]) & p["day"].between(v["window_lo"], v["window_hi"])].copy()
        sub["dist"] = (sub["day"] - v["day"]).abs()
        near = sub.sort_values(["USUBJID", "dist", "t"], kind="mergesort").drop_duplicates("USUBJID")
        parts.append(pd.DataFrame({"USUBJID": near["USUBJID"], "PARCAT1": r["pctestcd"], "PARAMCD": r["paramcd"],
                                   "AVALC": np.where(near["value"].notna(), "Y", "N"), "AVAL": np.nan, "AVALU": "",
                                   "SRCDOM": "PC", "SRCVAR": "PCSTRESN", "SRCSEQ": near["SEQ"]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def build(sdtm: dict[str, pd.DataFrame], adam: dict[str, pd.DataFrame], spec: Spec, study: Study) -> dict:
    parts = []
    if "PP" in sdtm and len(sdtm["PP"]):
        parts.append(pp_parameters(sdtm["PP"]))
    if "PC" in sdtm and len(sdtm["PC"]):
        parts += [time_of_last_quantifiable(sdtm["PC"]), detectable_at_visits(sdtm["PC"], spec, study)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return {}
    adpp = pd.concat(parts, ignore_index=True)
    decode = spec.decode_map("ADPP.PARAMCD")
    adpp["PARAM"] = adpp["PARAMCD"].map(decode).fillna(adpp["PARAMCD"]) + " (" + adpp["PARCAT1"] + ")"
    adpp = merge_adsl(adpp, adam["ADSL"], ADSL_VARS)
    adpp = adpp.sort_values(["USUBJID", "PARCAT1", "PARAMCD"], kind="mergesort")
    adpp["ASEQ"] = adpp.groupby("USUBJID").cumcount().astype("float64") + 1
    return {"ADPP": adpp}


def by_dose_level(adpp: pd.DataFrame) -> pd.DataFrame:
    """Summary by actual dose level, analyte and parameter: n, median, min, max of AVAL; for
    the DETMn parameters n detectable of n sampled."""
    num_p = adpp[adpp["AVAL"].notna()]
    s = num_p.groupby(["TRT01AN", "TRT01A", "PARCAT1", "PARAMCD"], dropna=False)["AVAL"].agg(
        n="count", median="median", min="min", max="max").reset_index()
    det = adpp[adpp["PARAMCD"].str.startswith("DET")]
    by = det.assign(_detected=det["AVALC"] == "Y").groupby(["TRT01AN", "TRT01A", "PARCAT1", "PARAMCD"], dropna=False)
    d = pd.DataFrame({"n": by.size(), "n_detectable": by["_detected"].sum()}).reset_index()
    return pd.concat([s, d], ignore_index=True).sort_values(["TRT01AN", "PARCAT1", "PARAMCD"], kind="mergesort")
