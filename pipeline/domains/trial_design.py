"""Trial design datasets TS, TA, TE, TV, TI (SDTMIG 3.4 chapter 7), once per study.

All from the study parameters (``specs/studies/<STUDYID>.toml``) except ACTSUB, the actual
number of subjects, counted in DM (subjects with a CAR-T administration, ACTARMCD not null).

- TS: the ``[[ts]]`` tables in order (TSSEQ 1..n within TSPARMCD); TSPARM from the CT decode of
  TSPARMCD when the table gives none; TSVCDVER of CDISC CT and MedDRA coded values from the one
  version ``specs/sdtm/standards.toml`` declares (``ct_version``, ``meddra_version``); SDTMVER/SDTIGVER from specs/sdtm/standards.toml and
  SSTDTC/DCUTDTC from ``study_start``/``data_cutoff`` when the tables lack them; TSVAL over
  200 characters continues in TSVAL1.. (split at a word boundary, SDTMIG 3.4 TS assumption 8);
  continuation variables no value needs are left out of the dataset.
- TA: every arm passes through every element in the order of ``[[elements]]``; TABRANCH on
  the screening element when the study has several arms (assignment at enrollment).
- TE: ``[[elements]]`` with their start/end rules and TEDUR from ``duration_days``.
- TV: the visit schedule, VISITDY = protocol day + 1 for day >= 0 (no day 0), ARMCD null
  (the same schedule for every arm), TVSTRL/TVENRL from the visit window.
- TI: ``[[ti]]``; TIRL when the rule text fits in 200 characters, else the full text goes to
  the report ``ti_criterion_text`` (XPT v5 character limit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.context import FINDING_COLUMNS, DomainResult, StudyContext, empty
from pipeline.errors import ConfigError

MAX_TEXT = 200
#: number of TSVALn continuation variables declared in the spec (TSVAL1..)
TS_FIELDS = ["tsparmcd", "tsparm", "tsval", "tsvalnf", "tsvalcd", "tsvcdref", "tsvcdver"]
ISO8601 = "ISO 8601"


def split_text(value: str, width: int = MAX_TEXT) -> list[str]:
    """Split text into chunks of at most ``width`` characters, at spaces when possible."""
    chunks, rest = [], value
    while len(rest) > width:
        cut = rest.rfind(" ", 0, width + 1)
        cut = cut if cut > 0 else width
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    return chunks


def ts_rows(ctx: StudyContext) -> pd.DataFrame:
    """The TS parameter rows before TSSEQ and splitting (lower-case TOML keys)."""
    study, spec = ctx.study, ctx.spec
    given = study.table("ts")
    given = given.rename(columns=str.lower) if not given.empty else pd.DataFrame(columns=TS_FIELDS)
    for c in TS_FIELDS:
        given[c] = given[c].astype("object").where(given[c].notna(), "").astype(str) if c in given else ""
    rows = [given[TS_FIELDS]]
    have = set(given["tsparmcd"])
    std = spec.standards
    extra = []
    if "SDTMVER" not in have:
        extra.append({"tsparmcd": "SDTMVER", "tsval": str(std.get("sdtm_version", ""))})
    if "SDTIGVER" not in have:
        extra.append({"tsparmcd": "SDTIGVER", "tsval": str(std.get("sdtmig_version", ""))})
    if "SSTDTC" not in have and study.get("study_start"):
        extra.append({"tsparmcd": "SSTDTC", "tsval": str(study["study_start"]), "tsvcdref": ISO8601})
    if "DCUTDTC" not in have and study.get("data_cutoff"):
        extra.append({"tsparmcd": "DCUTDTC", "tsval": str(study["data_cutoff"]), "tsvcdref": ISO8601})
    dm = ctx.datasets.get("DM")
    if "ACTSUB" not in have and dm is not None:
        extra.append({"tsparmcd": "ACTSUB", "tsval": str(actual_subjects(dm))})
    if extra:
        rows.append(pd.DataFrame(extra).reindex(columns=TS_FIELDS).astype("object").fillna(""))
    out = pd.concat(rows, ignore_index=True)
    out["tsvcdver"] = dictionary_versions(out["tsvcdref"], out["tsvcdver"], std)
    decode = spec.decode_map("TSPARMCD")
    out["tsparm"] = out["tsparm"].where(out["tsparm"].ne(""), out["tsparmcd"].map(decode).fillna(""))
    return out


#: TSVCDREF -> the key of specs/sdtm/standards.toml that declares that dictionary's one version
DICTIONARY_VERSION_KEYS = {"CDISC CT": "ct_version", "MedDRA": "meddra_version", "CTCAE": "ctcae_version"}


def dictionary_versions(ref: pd.Series, given: pd.Series, standards: dict) -> pd.Series:
    """TSVCDVER of coded TS values: the single version the standards declare for the
    dictionary named in TSVCDREF (CDISC CT ``ct_version``, MedDRA ``meddra_version``), so that TS,
    AE and define.xml cannot disagree; a study table giving another version is a ConfigError."""
    declared = {k: str(standards.get(v, "")) for k, v in DICTIONARY_VERSION_KEYS.items() if standards.get(v)}
    want = ref.map(declared)
    clash = want.notna() & given.ne("") & given.ne(want)
    if clash.any():
        bad = ", ".join(sorted(set(ref[clash] + " " + given[clash])))
        raise ConfigError(f"TS TSVCDVER {bad} differs from the version declared in specs/sdtm/standards.toml")
    return want.where(want.notna(), given).fillna("").astype(str)


def actual_subjects(dm: pd.DataFrame) -> int:
    """ACTSUB: subjects with at least one CAR-T administration (ACTARMCD not null)."""
    return int(dm.loc[dm["ACTARMCD"].astype(str).ne(""), "USUBJID"].nunique())


def build_ts(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    spec, sid = ctx.spec, ctx.study.studyid
    rows = ts_rows(ctx)
    cont = [v for v in spec.var_names("TS") if v.startswith("TSVAL") and v[5:].isdigit()]
    pieces = [split_text(v) for v in rows["tsval"]]
    too_long = [i for i, p in enumerate(pieces) if len(p) > 1 + len(cont)]
    if too_long:
        codes = ", ".join(rows.loc[too_long, "tsparmcd"])
        raise ConfigError(f"{sid}: TS value of {codes} is longer than TSVAL plus {len(cont)} continuation variables")
    ts = pd.DataFrame({"STUDYID": sid, "DOMAIN": "TS", "TSPARMCD": rows["tsparmcd"], "TSPARM": rows["tsparm"],
                       "TSVAL": [p[0] for p in pieces], "TSVALNF": rows["tsvalnf"], "TSVALCD": rows["tsvalcd"],
                       "TSVCDREF": rows["tsvcdref"], "TSVCDVER": rows["tsvcdver"]})
    for k, var in enumerate(cont, start=1):
        ts[var] = [p[k] if len(p) > k else "" for p in pieces]
    ts["TSSEQ"] = (ts.groupby("TSPARMCD", sort=False).cumcount() + 1).astype("float64")
    null = ts["TSVAL"].eq("") & ts["TSVALNF"].eq("")
    f = pd.DataFrame({"study": sid, "file": "TS", "row": np.flatnonzero(null) + 1, "column": "TSVAL",
                      "value": ts.loc[null, "TSPARMCD"].to_numpy(), "check": "ts_value_missing", "severity": "error",
                      "message": "TS parameter " + ts.loc[null, "TSPARMCD"] + " has neither TSVAL nor TSVALNF"})
    # TSVALn only as far as a long value needs it (SDTMIG 3.4 TS assumption 8: continuation
    # variables are added for text over 200 characters; unused ones are not submitted)
    used = [k for k, v in enumerate(cont) if ts[v].ne("").any()]
    unused = cont[max(used) + 1:] if used else cont
    return ts[[v for v in spec.var_names("TS") if v not in unused]], f[FINDING_COLUMNS] if len(f) else empty(FINDING_COLUMNS)


def build_ta(ctx: StudyContext) -> pd.DataFrame:
    study, spec = ctx.study, ctx.spec
    arms = study.arms.reset_index(drop=True)
    el = study.elements.reset_index(drop=True)
    ta = arms[["armcd", "arm"]].merge(el[["etcd", "element", "epoch"]].assign(TAETORD=np.arange(1, len(el) + 1, dtype=float)),
                                      how="cross")
    ta = ta.rename(columns={"armcd": "ARMCD", "arm": "ARM", "etcd": "ETCD", "element": "ELEMENT", "epoch": "EPOCH"})
    branch = (len(arms) > 1) & ta["TAETORD"].eq(1.0)
    ta["TABRANCH"] = np.where(branch, "Assigned to " + ta["ARM"] + " at enrollment", "")
    ta["TATRANS"] = ""
    ta.insert(0, "STUDYID", study.studyid)
    ta.insert(1, "DOMAIN", "TA")
    return ta[spec.var_names("TA")].sort_values(["ARMCD", "TAETORD"], kind="mergesort").reset_index(drop=True)


def build_te(ctx: StudyContext) -> pd.DataFrame:
    study, spec = ctx.study, ctx.spec
    el = study.elements.reset_index(drop=True)
    dur = el["duration_days"] if "duration_days" in el else pd.Series(np.nan, index=el.index)
    te = pd.DataFrame({"STUDYID": study.studyid, "DOMAIN": "TE", "ETCD": el["etcd"], "ELEMENT": el["element"],
                       "TESTRL": el.get("start_rule", ""), "TEENRL": el.get("end_rule", ""),
                       "TEDUR": ("P" + pd.to_numeric(dur, errors="coerce").astype("Int64").astype(str) + "D")
                       .where(pd.to_numeric(dur, errors="coerce").notna(), "")})
    return te.fillna("")[spec.var_names("TE")]


def window_rule(day: pd.Series) -> pd.Series:
    """Rule text for a protocol day relative to the first CAR-T infusion (day 0)."""
    d = day.astype(int)
    n = d.abs().astype(str) + np.where(d.abs() == 1, " day", " days")
    return pd.Series(np.select(
        [d < 0, d == 0],
        ["Protocol day " + d.astype(str) + ": " + n + " before the first CAR-T infusion",
         "Protocol day 0: day of the first CAR-T infusion"],
        default="Protocol day " + d.astype(str) + ": " + n + " after the first CAR-T infusion"), index=day.index)


def build_tv(ctx: StudyContext) -> pd.DataFrame:
    study, spec = ctx.study, ctx.spec
    v = study.visits
    tv = pd.DataFrame({"STUDYID": study.studyid, "DOMAIN": "TV", "VISITNUM": v["VISITNUM"].astype(float),
                       "VISIT": v["VISIT"].astype(str), "VISITDY": v["VISITDY"].astype(float), "ARMCD": "",
                       "TVSTRL": "Start of window, " + window_rule(v["window_lo"]),
                       "TVENRL": "End of window, " + window_rule(v["window_hi"])})
    return tv[spec.var_names("TV")].sort_values("VISITNUM", kind="mergesort").reset_index(drop=True)


def build_ti(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    study, spec = ctx.study, ctx.spec
    ti = study.table("ti")
    if ti.empty:
        return empty(spec.var_names("TI")), empty(["IETESTCD", "IECAT", "IETEST", "criterion_text"]), empty(FINDING_COLUMNS)
    col = lambda name: (ti[name].astype("object").where(ti[name].notna(), "").astype(str)  # noqa: E731
                        if name in ti else pd.Series("", index=ti.index))
    tirl = col("tirl")
    out = pd.DataFrame({"STUDYID": study.studyid, "DOMAIN": "TI", "IETESTCD": col("ietestcd"),
                        "IETEST": col("ietest"), "IECAT": col("iecat").str.upper(),
                        "TIRL": tirl.where(tirl.str.len() <= MAX_TEXT, ""), "TIVERS": col("tivers")})
    long_text = tirl.str.len() > MAX_TEXT
    report = pd.DataFrame({"IETESTCD": out["IETESTCD"], "IECAT": out["IECAT"], "IETEST": out["IETEST"],
                           "criterion_text": tirl})[long_text].reset_index(drop=True)
    over = out["IETEST"].str.len() > MAX_TEXT
    f = pd.DataFrame({"study": study.studyid, "file": "TI", "row": np.flatnonzero(over) + 1, "column": "IETEST",
                      "value": out.loc[over, "IETESTCD"].to_numpy(), "check": "ti_ietest_length", "severity": "error",
                      "message": "IETEST of " + out.loc[over, "IETESTCD"] + " is over 200 characters"})
    return out[spec.var_names("TI")], report, f[FINDING_COLUMNS] if len(f) else empty(FINDING_COLUMNS)


def build(ctx: StudyContext) -> DomainResult:
    ts, ts_f = build_ts(ctx)
    ti, ti_report, ti_f = build_ti(ctx)
    res = DomainResult(datasets={"TS": ts.reset_index(drop=True), "TA": build_ta(ctx), "TE": build_te(ctx),
                                 "TV": build_tv(ctx), "TI": ti.reset_index(drop=True)},
                       reports={"ti_criterion_text": ti_report})
    frames = [f for f in (ts_f, ti_f) if len(f)]
    res.findings = pd.concat(frames, ignore_index=True) if frames else empty(FINDING_COLUMNS)
    return res
