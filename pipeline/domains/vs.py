"""VS (Vital Signs, SDTMIG 3.4 section 6.3.13): height and weight at screening.

VSTEST is the CT decode of VSTESTCD; the standard unit of each test is the ``unit`` of its
value-level row (VS.VSSTRESN) in specs/sdtm/valuelevel/VS.csv. A result collected in another
unit has no conversion rule and is rejected with a finding. VSLOBXFL flags the last result per
test before the first exposure to protocol treatment (DM.RFXSTDTC, the first lymphodepletion
dose; same-day rules in :mod:`pipeline.derive.baseline`).
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import FINDING_COLUMNS, REJECTED_COLUMNS, DomainResult, StudyContext
from pipeline.derive.baseline import last_obs_before_exposure
from pipeline.derive.epoch import derive_epoch
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject
from pipeline.derive.visits import visit_numbers
from pipeline.derive.identifiers import by_subject
from pipeline.domains.dm import C_YES, concat, ct_term, dated_form, make_findings, make_rejected, text
from pipeline.errors import ConfigError
from pipeline.spec import Spec


def standard_units(spec: Spec) -> dict[str, str]:
    """VSTESTCD -> standard unit, from the value-level metadata of VS.VSSTRESN."""
    vl = spec.valuelevel
    rows = vl[(vl["dataset"] == "VS") & (vl["variable"] == "VSSTRESN") & (vl["where_variable"] == "VSTESTCD")]
    if rows.empty:
        raise ConfigError("VS: no value-level rows for VSSTRESN in specs/sdtm/valuelevel/VS.csv")
    return dict(zip(rows["where_value"], rows["unit"]))


def standard_text(result: pd.Series) -> pd.Series:
    """VSSTRESC: the numeric result as text without trailing zeros (``72.50`` -> ``72.5``)."""
    s = result.astype(str).str.strip()
    s = s.str.replace(r"^(-?\d+\.\d*?)0+$", r"\1", regex=True).str.replace(r"\.$", "", regex=True)
    return s


def build(ctx: StudyContext) -> DomainResult:
    spec, study = ctx.spec, ctx.study
    sid = study.studyid
    res = DomainResult()
    raw, ids, known, iso, bad, rejected, findings = dated_form(ctx, "vs", "VSDAT", "measurement")
    testcd = text(raw["VSTESTCD"]).str.upper()
    units = standard_units(spec)
    unknown = known & ~bad & ~testcd.isin(list(units))
    rejected.append(make_rejected("vs", raw[unknown], "VSTESTCD", "VSTESTCD is not a test of the VS value-level metadata"))
    orresu = text(raw["VSORRESU"])
    wrong_unit = known & ~bad & ~unknown & orresu.ne(testcd.map(units).fillna(""))
    rejected.append(make_rejected("vs", raw[wrong_unit], "VSORRESU", "unit is not the test's standard unit (no conversion rule)"))
    findings.append(make_findings(sid, raw[wrong_unit], "VSORRESU", "vs_unit", "error",
                                  testcd + " in " + orresu + " instead of " + testcd.map(units).fillna("")))
    keep = known & ~bad & ~unknown & ~wrong_unit
    raw = raw[keep]

    orres = text(raw["VSORRES"])
    num = pd.to_numeric(orres, errors="coerce").astype("float64")
    tc = testcd[keep]
    vs = pd.DataFrame({"STUDYID": sid, "DOMAIN": "VS", "USUBJID": ids[keep], "VSTESTCD": tc,
                       "VSTEST": tc.map(spec.decode_map("VSTESTCD")).fillna(""),
                       "VSORRES": orres, "VSORRESU": orresu[keep],
                       "VSSTRESC": standard_text(orres).where(num.notna(), orres), "VSSTRESN": num,
                       "VSSTRESU": tc.map(units).where(orres.ne(""), ""), "VSDTC": iso[keep]})
    dm = ctx.datasets["DM"]
    vs["VSDY"] = study_day_by_subject(vs["VSDTC"], vs["USUBJID"], dm)
    vis = visit_numbers(raw["VISIT"], study, vs["VSDY"], vs["USUBJID"], vs["VSDTC"])
    vs["VISITNUM"], vs["VISIT"] = vis["VISITNUM"], vis["VISIT"]
    se = ctx.datasets.get("SE")
    vs["EPOCH"] = derive_epoch(vs["USUBJID"], vs["VSDTC"], se) if se is not None else ""
    rfx = vs["USUBJID"].map(by_subject(dm, "RFXSTDTC")).fillna("")
    flag = last_obs_before_exposure(vs, ["USUBJID", "VSTESTCD"], "VSDTC", vs["VSSTRESN"].notna(), rfx)
    vs["VSLOBXFL"] = flag.where(flag.eq(""), ct_term(spec, "NY", C_YES))
    vs["VSSEQ"] = assign_seq(vs, ["VISITNUM", "VSTESTCD", "VSDTC"])
    res.datasets["VS"] = vs[spec.var_names("VS")].reset_index(drop=True)
    res.consumed = ctx.consumed_rows("vs", raw["_ROW"], "VS")
    res.rejected = concat(rejected, REJECTED_COLUMNS)
    res.findings = concat(findings, FINDING_COLUMNS)
    return res
