"""Small hand-built raw forms and a study for the DM/EX/SE/DS/IE/VS/trial-design tests.

Study NCT06316427 parameters (specs/studies) with three subjects at site 01:

- 101: enrolled (AUTO), lymphodepletion FLU/CY on 10..12-JAN-2025, split CAR-T infusion
  CART-1 15-JAN-2025 10:00-10:30 and CART-2 16-JAN-2025 09:00-09:20; died 20-MAR-2025.
- 102: screen failure (ENRYN=N), eligibility: IN03 not met and EX06 met.
- 103: enrolled (PRDONOR) but never infused (TRTYN=N); AGE inconsistent with birth date;
  lost to follow-up 01-MAR-2025 with last known alive 15-FEB-2025.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
STUDY = "NCT06316427"


def form(rows: list[dict], name: str) -> pd.DataFrame:
    f = pd.DataFrame(rows).astype("object")
    f = f.where(f.notna(), np.nan)
    for c in f.columns:
        f[c] = f[c].map(lambda v: np.nan if v is None or v == "" else str(v))
    f["_FILE"] = f"{name}.csv"
    f["_ROW"] = np.arange(2, len(f) + 2)
    return f


def base(subj: str) -> dict:
    return {"STUDYID": STUDY, "SITEID": "01", "SUBJID": subj}


def raw_forms() -> dict[str, pd.DataFrame]:
    dm = form([
        {**base("101"), "SUBJINIT": "ZQX", "HOSPNUM": "H998877", "PHONE": "13800001111", "ICDAT": "02-JAN-2025",
         "DMDAT": "02-JAN-2025", "BRTHDAT": "15-JUN-1980", "AGE": "44", "AGEU": "YEARS", "SEX": "M", "RACE": "ASIAN",
         "ETHNIC": "NOT HISPANIC OR LATINO", "COUNTRY": "CHN", "PRIMDIAG": "T-ALL", "ENRYN": "Y", "ARMCD": "AUTO",
         "TRTYN": "Y"},
        {**base("102"), "SUBJINIT": "QWE", "HOSPNUM": "H112233", "PHONE": "13900002222", "ICDAT": "05-JAN-2025",
         "DMDAT": "05-JAN-2025", "BRTHDAT": "UN-MAR-1990", "AGE": "34", "AGEU": "YEARS", "SEX": "F", "RACE": "ASIAN",
         "ETHNIC": "NOT HISPANIC OR LATINO", "COUNTRY": "CHN", "PRIMDIAG": "T-LBL", "ENRYN": "N", "ARMCD": "",
         "TRTYN": "N"},
        {**base("103"), "SUBJINIT": "RTY", "HOSPNUM": "H445566", "PHONE": "13700003333", "ICDAT": "10-JAN-2025",
         "DMDAT": "10-JAN-2025", "BRTHDAT": "20-FEB-2000", "AGE": "30", "AGEU": "YEARS", "SEX": "M", "RACE": "ASIAN",
         "ETHNIC": "NOT HISPANIC OR LATINO", "COUNTRY": "CHN", "PRIMDIAG": "", "ENRYN": "Y", "ARMCD": "PRDONOR",
         "TRTYN": "N"},
    ], "dm")
    ex_common = {"EXROUTE": "INTRAVENOUS"}
    ex = form([
        {**base("101"), **ex_common, "EXSPID": f"LD-FLU-{i}", "EXCAT": "LYMPHODEPLETION", "EXTRT": "FLUDARABINE",
         "EXDOSE": "30", "EXDOSU": "mg/m2", "EXDOSFRM": "INJECTION", "EXSTDAT": d, "EXSTTIM": "08:00",
         "EXENDAT": d, "EXENTIM": "08:30"} for i, d in enumerate(["10-JAN-2025", "11-JAN-2025", "12-JAN-2025"], 1)
    ] + [
        {**base("101"), **ex_common, "EXSPID": f"LD-CY-{i}", "EXCAT": "LYMPHODEPLETION", "EXTRT": "CYCLOPHOSPHAMIDE",
         "EXDOSE": "300", "EXDOSU": "mg/m2", "EXDOSFRM": "INJECTION, POWDER, LYOPHILIZED, FOR SOLUTION",
         "EXSTDAT": d, "EXSTTIM": "09:00", "EXENDAT": d, "EXENTIM": "10:00"}
        for i, d in enumerate(["10-JAN-2025", "11-JAN-2025", "12-JAN-2025"], 1)
    ] + [
        {**base("101"), **ex_common, "EXSPID": "CART-1", "EXCAT": "CAR-T INFUSION", "EXTRT": "CD7 CAR-T CELLS",
         "EXDOSE": "600000", "EXDOSU": "cells/kg", "EXDOSFRM": "SUSPENSION", "EXSTDAT": "15-JAN-2025",
         "EXSTTIM": "10:00", "EXENDAT": "15-JAN-2025", "EXENTIM": "10:30"},
        {**base("101"), **ex_common, "EXSPID": "CART-2", "EXCAT": "CAR-T INFUSION", "EXTRT": "CD7 CAR-T CELLS",
         "EXDOSE": "400000", "EXDOSU": "cells/kg", "EXDOSFRM": "SUSPENSION", "EXSTDAT": "16-JAN-2025",
         "EXSTTIM": "09:00", "EXENDAT": "16-JAN-2025", "EXENTIM": "09:20"},
    ], "ex")
    ds = form([
        {**base("101"), "DSDECOD": "DEATH", "DSTERM": "", "DSSTDAT": "21-MAR-2025", "DTHDAT": "20-MAR-2025",
         "DTHCAUS": "DISEASE PROGRESSION", "LKADAT": ""},
        {**base("102"), "DSDECOD": "SCREEN FAILURE", "DSTERM": "DID NOT MEET ELIGIBILITY", "DSSTDAT": "08-JAN-2025",
         "DTHDAT": "", "DTHCAUS": "", "LKADAT": ""},
        {**base("103"), "DSDECOD": "LOST TO FOLLOW-UP", "DSTERM": "", "DSSTDAT": "01-MAR-2025", "DTHDAT": "",
         "DTHCAUS": "", "LKADAT": "15-FEB-2025"},
    ], "ds")
    ie = form([
        {**base("101"), "IEDAT": "03-JAN-2025", "IEYN": "Y", "IETESTCD": "", "IECAT": ""},
        {**base("102"), "IEDAT": "06-JAN-2025", "IEYN": "N", "IETESTCD": "IN03", "IECAT": "INCLUSION"},
        {**base("102"), "IEDAT": "06-JAN-2025", "IEYN": "N", "IETESTCD": "EX06", "IECAT": "EXCLUSION"},
        {**base("103"), "IEDAT": "11-JAN-2025", "IEYN": "Y", "IETESTCD": "", "IECAT": ""},
    ], "ie")
    vs = form([
        {**base("101"), "VISIT": "SCREENING", "VSDAT": "03-JAN-2025", "VSTESTCD": "HEIGHT", "VSORRES": "172.50",
         "VSORRESU": "cm"},
        {**base("101"), "VISIT": "SCREENING", "VSDAT": "03-JAN-2025", "VSTESTCD": "WEIGHT", "VSORRES": "65.0",
         "VSORRESU": "kg"},
        {**base("101"), "VISIT": "DAY 28", "VSDAT": "12-FEB-2025", "VSTESTCD": "WEIGHT", "VSORRES": "63",
         "VSORRESU": "kg"},
        {**base("103"), "VISIT": "SCREENING", "VSDAT": "11-JAN-2025", "VSTESTCD": "WEIGHT", "VSORRES": "70",
         "VSORRESU": "kg"},
    ], "vs")
    return {"dm": dm, "ex": ex, "ds": ds, "ie": ie, "vs": vs}


@lru_cache(maxsize=1)
def _spec():
    return load_spec(ROOT / "specs")


def context(forms: dict[str, pd.DataFrame] | None = None) -> StudyContext:
    spec = _spec()
    study = load_study(ROOT / "specs", STUDY)
    return StudyContext(study=study, spec=spec, forms=forms if forms is not None else raw_forms())


def run(ctx: StudyContext, modules=("dm", "ex", "se", "ds", "ie", "vs", "trial_design")) -> dict:
    """Run the modules in registry order, feeding datasets forward; returns module -> result."""
    import importlib
    out = {}
    for name in modules:
        res = importlib.import_module(f"pipeline.domains.{name}").build(ctx)
        ctx.datasets.update(res.datasets)
        ctx.derived.update(res.derived)
        out[name] = res
    return out
