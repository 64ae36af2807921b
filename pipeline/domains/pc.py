"""PC (Pharmacokinetics Concentrations) and PP (Pharmacokinetics Parameters) for CAR-T cellular
kinetics (SDTMIG 3.4 sections 6.3.5.9 and 6.3.5.10).

Why PC and not CP or GF: the CAR transgene (copies/ug genomic DNA by qPCR) and the CAR-positive
T cells (cells/uL by flow cytometry) both measure the concentration of the administered product
in blood over time after the infusion, which is what PC holds; PP holds the non-compartmental
parameters biostatistics derive from it (Cmax, Tmax, AUC0-28). CP characterises phenotypes of
cells (lineage, state, function) and GF the subject's genomic material; neither is meant for
exposure to the product over time nor has a parameter companion. The justification is also in
``specs/sdtm/datasets.csv``.

Records come from the ``lb`` form rows of category CAR-T EXPANSION (the LB module leaves them
out). They are standardised by the same code as LB (:func:`pipeline.domains.lb.map_lab_records`).
PP and the ``cellular_kinetics`` report come from :func:`pipeline.rules.kinetics.nca_parameters`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.seq import assign_seq
from pipeline.domains.dm import concat
from pipeline.domains.lb import NOT_DONE, is_expansion, map_lab_records
from pipeline.errors import DataError
from pipeline.rules.kinetics import WINDOW_END_DAYS, elapsed_days, nca_parameters
from pipeline.rules.units import format_number, load_unit_table
from pipeline.derive.identifiers import by_subject

TIME_POINT_REFERENCE = "FIRST CAR-T INFUSION"
#: PP parameters: PPTESTCD (CDISC CT PKPARMCD) -> column of nca_parameters; PPTEST is the CT
#: PKPARM term of the same concept, read from the spec codelist PKPARMCD
PARAMETERS = {"CMAX": "CMAX", "TMAX": "TMAX", "AUCINT": "AUC"}
TMAX_UNIT = "DAYS"


def concentration_for_nca(pc: pd.DataFrame) -> pd.Series:
    """Concentration used by the NCA: the standard result; below the limit of quantification
    (``<x``) counts as 0; above a limit (``>x``) as its limit x."""
    value = pc["value"]
    return value.where(pc["censor"].ge(0), 0.0).where(pc["value"].notna())


def nominal_time_points(visitnum: pd.Series, has_reference: pd.Series, visits: pd.DataFrame) -> pd.DataFrame:
    """PCTPT, PCTPTNUM and PCELTM of each sample (SDTMIG 3.4 section 4.4.7): the planned protocol
    day n of its scheduled visit in the study schedule, relative to PCTPTREF (the first CAR-T
    infusion = protocol day 0): PCTPT ``DAY n``, PCTPTNUM n, PCELTM ``PnD`` (``-PnD`` before the
    infusion). Unscheduled samples (VISITNUM not in the schedule) and subjects without an
    infusion have none."""
    days = dict(zip(visits["VISITNUM"].astype(float), visits["day"].astype(float))) if len(visits) else {}
    day = pd.to_numeric(visitnum, errors="coerce").map(days).where(has_reference.to_numpy())
    ok = day.notna()
    n = day.fillna(0).astype(int)
    eltm = np.where(n < 0, "-P" + n.abs().astype(str) + "D", "P" + n.astype(str) + "D")
    return pd.DataFrame({"PCTPT": np.where(ok, "DAY " + n.astype(str), ""),
                         "PCTPTNUM": day.astype("float64"),
                         "PCELTM": np.where(ok, eltm, "")}, index=visitnum.index)


def parameter_decimals(spec, codes) -> dict[str, int | None]:
    """Decimals each PP parameter is reported with: ``significant_digits`` of its PP.PPSTRESN
    value-level row in the spec (None when the spec declares none: shortest exact text)."""
    vl = spec.valuelevel
    given = {}
    if len(vl) and {"dataset", "variable", "where_value", "significant_digits"} <= set(vl.columns):
        rows = vl[(vl["dataset"] == "PP") & (vl["variable"] == "PPSTRESN")]
        given = dict(zip(rows["where_value"], rows["significant_digits"]))
    return {c: int(given[c]) if str(given.get(c, "")).strip() else None for c in codes}


def reported(val: pd.Series, decimals: int | None) -> tuple[pd.Series, pd.Series]:
    """(PPSTRESN, PPSTRESC) of computed values at the declared precision: the number rounded to
    ``decimals`` and the same number as text with exactly that many decimals, so that the two
    agree (PPSTRESC = PPSTRESN as text)."""
    if decimals is None:
        return val, format_number(val)
    num = val.round(decimals)
    txt = num.map(("{:.%df}" % decimals).format).astype(object).where(num.notna(), "")
    return num, txt


def build_pp(pc: pd.DataFrame, rfstdtc: pd.Series, studyid: str, names: dict[str, str],
             decimals: dict[str, int | None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PP records and the ``cellular_kinetics`` report from PC records (with ``value``/``censor``).

    Only subjects with a first infusion (RFSTDTC) are analysed. ``names``: PPTESTCD -> PPTEST
    (the spec's PKPARMCD decodes); ``decimals``: PPTESTCD -> reported decimals
    (:func:`parameter_decimals`). Returns (pp, report).
    """
    done = pc[pc["PCSTAT"].ne(NOT_DONE) & pc["value"].notna()].copy()
    done["RFSTDTC"] = done["USUBJID"].map(rfstdtc).fillna("")
    done = done[done["RFSTDTC"].ne("")]
    report_cols = ["STUDYID", "USUBJID", "PCTESTCD", "PCSTRESU", "n_obs", "CMAX", "TMAX", "AUC0_28", "auc_status",
                   "above_limit_results"]
    if done.empty:
        return pd.DataFrame(), pd.DataFrame({c: pd.Series(dtype=object) for c in report_cols})
    done["t"] = elapsed_days(done["PCDTC"], done["RFSTDTC"])
    done["conc"] = concentration_for_nca(done)
    par = nca_parameters(done[["USUBJID", "PCTESTCD", "t", "conc"]], ["USUBJID", "PCTESTCD"], WINDOW_END_DAYS)
    meta = done.drop_duplicates(["USUBJID", "PCTESTCD"])[["USUBJID", "PCTESTCD", "PCSTRESU", "PCSPEC", "RFSTDTC"]]
    above = (done[done["censor"].gt(0) & done["t"].between(0, WINDOW_END_DAYS)]
             .groupby(["USUBJID", "PCTESTCD"]).size().rename("above_limit_results").reset_index())
    par = par.merge(meta, on=["USUBJID", "PCTESTCD"], how="left").merge(above, on=["USUBJID", "PCTESTCD"], how="left")
    par["above_limit_results"] = par["above_limit_results"].fillna(0).astype(int)

    report = par.rename(columns={"AUC": "AUC0_28"}).assign(STUDYID=studyid)[report_cols]

    parts = []
    for code, col in PARAMETERS.items():  # three parameters, vectorised over subjects
        name = names[code]
        val, txt = reported(par[col].astype("float64"), (decimals or {}).get(code))
        unit = {"CMAX": par["PCSTRESU"], "TMAX": pd.Series(TMAX_UNIT, index=par.index),
                "AUCINT": "day*" + par["PCSTRESU"]}[code]
        reason = par["auc_status"] if code == "AUCINT" else pd.Series(
            np.where(par["n_obs"].eq(0), f"no sample in days 0-{WINDOW_END_DAYS:g}", ""), index=par.index)
        parts.append(pd.DataFrame({
            "STUDYID": studyid, "DOMAIN": "PP", "USUBJID": par["USUBJID"], "PPTESTCD": code, "PPTEST": name,
            "PPCAT": par["PCTESTCD"], "PPORRES": txt, "PPORRESU": unit.where(val.notna(), ""),
            "PPSTRESC": txt, "PPSTRESN": val, "PPSTRESU": unit.where(val.notna(), ""),
            "PPSTAT": np.where(val.isna(), NOT_DONE, ""), "PPREASND": reason.where(val.isna(), ""),
            "PPSPEC": par["PCSPEC"], "PPTPTREF": TIME_POINT_REFERENCE, "PPRFTDTC": par["RFSTDTC"],
            "PPSTINT": "P0D" if code == "AUCINT" else "", "PPENINT": f"P{WINDOW_END_DAYS:g}D" if code == "AUCINT" else "",
        }))
    pp = pd.concat(parts, ignore_index=True)
    order = {c: i for i, c in enumerate(PARAMETERS)}
    pp["_o"] = pp["PPTESTCD"].map(order)
    pp["PPSEQ"] = assign_seq(pp, ["PPCAT", "_o"])
    return pp.drop(columns="_o"), report


def build(ctx: StudyContext) -> DomainResult:
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    if "DM" not in ctx.datasets:
        raise DataError(f"{sid}: PC needs DM, which was not built")
    dm = ctx.datasets["DM"]
    table = load_unit_table(spec)
    raw_all = ctx.form("lb")
    raw = raw_all[is_expansion(raw_all, table)]
    rec, findings, rejected = map_lab_records(ctx, raw, table)
    rfstdtc = by_subject(dm, "RFSTDTC")
    pc = pd.DataFrame({
        "STUDYID": sid, "DOMAIN": "PC", "USUBJID": rec["USUBJID"], "PCTESTCD": rec["LBTESTCD"], "PCTEST": rec["LBTEST"],
        "PCCAT": rec["LBCAT"], "PCORRES": rec["LBORRES"], "PCORRESU": rec["LBORRESU"], "PCSTRESC": rec["LBSTRESC"],
        "PCSTRESN": rec["LBSTRESN"], "PCSTRESU": rec["LBSTRESU"], "PCSTAT": rec["LBSTAT"], "PCREASND": rec["LBREASND"],
        "PCSPEC": rec["LBSPEC"], "PCMETHOD": rec["LBMETHOD"],
        "PCLLOQ": rec["value"].where(rec["censor"].lt(0)),
        "VISITNUM": rec["VISITNUM"], "VISIT": rec["VISIT"], "EPOCH": rec["EPOCH"], "PCDTC": rec["LBDTC"],
        "PCDY": rec["LBDY"], "value": rec["value"], "censor": rec["censor"], "_ROW": rec["_ROW"],
    })
    pc["PCRFTDTC"] = pc["USUBJID"].map(rfstdtc).fillna("")
    pc["PCTPTREF"] = np.where(pc["PCRFTDTC"].ne(""), TIME_POINT_REFERENCE, "")
    pc = pc.join(nominal_time_points(pc["VISITNUM"], pc["PCRFTDTC"].ne(""), study.visits))
    pc["_dt"] = rec["_dt"]
    pc["PCSEQ"] = assign_seq(pc, ["PCTESTCD", "_dt", "PCDTC", "VISITNUM", "_ROW"])

    res = DomainResult()
    res.datasets["PC"] = pc[spec.var_names("PC")].reset_index(drop=True)
    pp, report = build_pp(pc, rfstdtc, sid, spec.decode_map("PKPARMCD"), parameter_decimals(spec, PARAMETERS))
    if not pp.empty:
        res.datasets["PP"] = pp[spec.var_names("PP")].reset_index(drop=True)
    res.reports["cellular_kinetics"] = report
    res.consumed = ctx.consumed_rows("lb", pc["_ROW"], "PC")
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
