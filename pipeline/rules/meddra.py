"""MedDRA coding from the MSSO ASCII distribution (the ``MedAscii`` folder a licensed sponsor
receives), and the CTCAE v5.0 fallback when a study has none.

A study points to its distribution with ``[coding] meddra_dir`` in its TOML (a relative path is
taken from the folder of the TOML file). The files are ``$``-delimited, one record per line,
every field followed by ``$``, without a header (MedDRA ASCII file format, MSSO):

==============  =====================================================================
file            fields, in order
==============  =====================================================================
llt.asc         llt_code, llt_name, pt_code, llt_whoart_code, llt_harts_code,
                llt_costart_sym, llt_icd9_code, llt_icd9cm_code, llt_icd10_code,
                llt_currency (Y/N), llt_jart_code
pt.asc          pt_code, pt_name, null_field, pt_soc_code (the primary SOC),
                pt_whoart_code, pt_harts_code, pt_costart_sym, pt_icd9_code,
                pt_icd9cm_code, pt_icd10_code, pt_jart_code
hlt.asc         hlt_code, hlt_name, hlt_whoart_code, hlt_harts_code, hlt_costart_sym,
                hlt_icd9_code, hlt_icd9cm_code, hlt_icd10_code, hlt_jart_code
hlt_pt.asc      hlt_code, pt_code
hlgt.asc        hlgt_code, hlgt_name, hlgt_whoart_code, hlgt_harts_code,
                hlgt_costart_sym, hlgt_icd9_code, hlgt_icd9cm_code, hlgt_icd10_code,
                hlgt_jart_code
hlgt_hlt.asc    hlgt_code, hlt_code
soc.asc         soc_code, soc_name, soc_abbrev, soc_whoart_code, soc_harts_code,
                soc_costart_sym, soc_icd9_code, soc_icd9cm_code, soc_icd10_code,
                soc_jart_code
soc_hlgt.asc    soc_code, hlgt_code
mdhier.asc      pt_code, hlt_code, hlgt_code, soc_code, pt_name, hlt_name, hlgt_name,
                soc_name, soc_abbrev, null_field, pt_soc_code, primary_soc_fg (Y/N)
==============  =====================================================================

The optional ``meddra_release.asc`` (first field = the version, e.g. ``27.1``) is compared
with the declared version (``specs/sdtm/standards.toml`` ``meddra_version``).

SDTM uses the primary path of each PT (SDTMIG 3.4 AE assumption 2): the PT's primary SOC
(``pt.asc`` pt_soc_code), the HLGT of that SOC above the PT's HLT, and the HLT. The path is
built from the link files and must agree with ``mdhier.asc`` (its row with primary_soc_fg = Y).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError

_OTHER = ["whoart_code", "harts_code", "costart_sym", "icd9_code", "icd9cm_code", "icd10_code"]

#: file -> field names (MSSO MedDRA ASCII distribution)
LAYOUT: dict[str, list[str]] = {
    "llt": ["llt_code", "llt_name", "pt_code", *[f"llt_{c}" for c in _OTHER], "llt_currency", "llt_jart_code"],
    "pt": ["pt_code", "pt_name", "null_field", "pt_soc_code", *[f"pt_{c}" for c in _OTHER], "pt_jart_code"],
    "hlt": ["hlt_code", "hlt_name", *[f"hlt_{c}" for c in _OTHER], "hlt_jart_code"],
    "hlt_pt": ["hlt_code", "pt_code"],
    "hlgt": ["hlgt_code", "hlgt_name", *[f"hlgt_{c}" for c in _OTHER], "hlgt_jart_code"],
    "hlgt_hlt": ["hlgt_code", "hlt_code"],
    "soc": ["soc_code", "soc_name", "soc_abbrev", *[f"soc_{c}" for c in _OTHER], "soc_jart_code"],
    "soc_hlgt": ["soc_code", "hlgt_code"],
    "mdhier": ["pt_code", "hlt_code", "hlgt_code", "soc_code", "pt_name", "hlt_name", "hlgt_name", "soc_name",
               "soc_abbrev", "null_field", "pt_soc_code", "primary_soc_fg"],
}
#: code fields (integers) of each file
_CODES = {"llt_code", "pt_code", "hlt_code", "hlgt_code", "soc_code", "pt_soc_code"}

#: the AE variables of the MedDRA hierarchy (SDTMIG 3.4 AE), in spec order
HIERARCHY_VARIABLES = ["AELLT", "AELLTCD", "AEDECOD", "AEPTCD", "AEHLT", "AEHLTCD", "AEHLGT", "AEHLGTCD",
                       "AEBODSYS", "AEBDSYCD", "AESOC", "AESOCCD"]
_NAME_VARS = ["AELLT", "AEDECOD", "AEHLT", "AEHLGT", "AEBODSYS", "AESOC"]


def read_asc(path: Path, fields: list[str]) -> pd.DataFrame:
    """One ``$``-delimited MedDRA ASCII file as text columns ``fields`` (codes checked to be
    integers). The trailing ``$`` of every record is allowed; UTF-8, else Windows-1252. Raises
    :class:`ConfigError` naming the file and line when a record has the wrong number of fields
    or a code is not a number."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"MedDRA distribution: {path.name} is missing in {path.parent}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    lines = pd.Series(text.splitlines(), dtype="object")
    lines = lines[lines.str.strip().ne("")].str.rstrip("\r")
    # every field is followed by "$": a record of k fields holds k separators (the last may be absent)
    count = lines.str.count(r"\$") + (~lines.str.endswith("$")).astype(int)
    bad = count.ne(len(fields))
    if bad.any():
        first = bad.idxmax()
        raise ConfigError(f"MedDRA distribution: {path.name} line {first + 1} has {count[first]} field(s), "
                          f"{len(fields)} expected ({', '.join(fields)})")
    if len(lines):
        frame = lines.str.split("$", n=len(fields), expand=True, regex=False).iloc[:, :len(fields)]
        frame.columns = fields
    else:
        frame = pd.DataFrame(columns=fields, dtype="object")
    frame = frame.apply(lambda c: c.str.strip())  # column-wise, a dozen columns
    for col in _CODES & set(fields):  # the code columns of the file
        code = pd.to_numeric(frame[col], errors="coerce")
        wrong = code.isna() | (code != code.round())
        if wrong.any():
            first = int(np.flatnonzero(wrong.to_numpy())[0])
            raise ConfigError(f"MedDRA distribution: {path.name} line {lines.index[first] + 1}: {col} "
                              f"{frame[col].iloc[first]!r} is not a code")
        frame[col] = code.astype("int64")
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Distribution:
    """A MedDRA distribution: its version (``meddra_release.asc``, ``""`` when absent) and,
    per LLT, the primary path (``paths``: llt_code, llt_name, llt_currency, pt_code, pt_name,
    hlt_code, hlt_name, hlgt_code, hlgt_name, soc_code, soc_name)."""

    folder: Path
    version: str
    paths: pd.DataFrame


def primary_paths(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per PT, the primary path PT -> HLT -> HLGT -> SOC (SOC = the PT's pt_soc_code), from the
    link files, checked against ``mdhier.asc``: exactly one primary path per PT, the same as
    mdhier's row with primary_soc_fg = Y. Raises :class:`ConfigError` on a disagreement."""
    pt = t["pt"][["pt_code", "pt_name", "pt_soc_code"]]
    path = (pt.merge(t["hlt_pt"], on="pt_code").merge(t["hlgt_hlt"], on="hlt_code")
            .merge(t["soc_hlgt"], on="hlgt_code"))
    path = path[path["soc_code"] == path["pt_soc_code"]]
    count = path.groupby("pt_code").size().reindex(pt["pt_code"]).fillna(0).astype(int)
    if count.ne(1).any():
        code = count.index[count.ne(1)][0]
        raise ConfigError(f"MedDRA distribution: PT {code} has {count[code]} path(s) to its primary SOC "
                          "in hlt_pt/hlgt_hlt/soc_hlgt.asc (one expected)")
    md = t["mdhier"]
    md = md[md["primary_soc_fg"].str.upper() == "Y"][["pt_code", "hlt_code", "hlgt_code", "soc_code"]]
    both = path[["pt_code", "hlt_code", "hlgt_code", "soc_code"]].merge(
        md, on="pt_code", how="outer", suffixes=("", "_md"), indicator=True)
    differ = both["_merge"].ne("both") | (both["hlt_code"] != both["hlt_code_md"]) \
        | (both["hlgt_code"] != both["hlgt_code_md"]) | (both["soc_code"] != both["soc_code_md"])
    if differ.any():
        code = int(both.loc[differ, "pt_code"].iloc[0])
        raise ConfigError(f"MedDRA distribution: the primary path of PT {code} in mdhier.asc disagrees with "
                          "pt/hlt_pt/hlgt_hlt/soc_hlgt.asc")
    path = (path.merge(t["hlt"][["hlt_code", "hlt_name"]], on="hlt_code", how="left")
            .merge(t["hlgt"][["hlgt_code", "hlgt_name"]], on="hlgt_code", how="left")
            .merge(t["soc"][["soc_code", "soc_name"]], on="soc_code", how="left"))
    unnamed = path[["hlt_name", "hlgt_name", "soc_name"]].isna().any(axis=1)
    if unnamed.any():
        raise ConfigError(f"MedDRA distribution: PT {int(path.loc[unnamed, 'pt_code'].iloc[0])} links to an "
                          "HLT, HLGT or SOC that hlt/hlgt/soc.asc do not name")
    return path.drop(columns="pt_soc_code").reset_index(drop=True)


def load_distribution(folder: Path, declared_version: str) -> Distribution:
    """Read the nine files of ``folder`` and build each LLT's primary path. Every LLT must name a
    PT of pt.asc; ``meddra_release.asc``, when present, must carry ``declared_version``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"MedDRA distribution folder {folder} does not exist ([coding] meddra_dir)")
    t = {name: read_asc(folder / f"{name}.asc", fields) for name, fields in LAYOUT.items()}
    version = ""
    release = folder / "meddra_release.asc"
    if release.is_file():
        version = release.read_text(encoding="utf-8", errors="replace").split("$", 1)[0].strip()
        if declared_version and version != str(declared_version):
            raise ConfigError(f"MedDRA distribution {folder.name} is version {version}, but the declared "
                              f"version (specs/sdtm/standards.toml meddra_version) is {declared_version}")
    llt = t["llt"][["llt_code", "llt_name", "pt_code", "llt_currency"]]
    orphan = ~llt["pt_code"].isin(set(t["pt"]["pt_code"]))
    if orphan.any():
        raise ConfigError(f"MedDRA distribution: LLT {int(llt.loc[orphan, 'llt_code'].iloc[0])} names PT "
                          f"{int(llt.loc[orphan, 'pt_code'].iloc[0])}, which pt.asc lacks")
    paths = llt.merge(primary_paths(t), on="pt_code", how="left")
    return Distribution(folder=folder, version=version or str(declared_version), paths=paths)


def distribution_folder(study) -> Path | None:
    """``[coding] meddra_dir`` of the study TOML (relative to the TOML's folder), or None."""
    d = (study.get("coding", {}) or {}).get("meddra_dir")
    if not d:
        return None
    p = Path(str(d))
    return p if p.is_absolute() else Path(study.path).parent / p


def _int(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def code_with_distribution(term: pd.Series, llt_code: pd.Series, dist: Distribution) -> pd.DataFrame:
    """The MedDRA hierarchy of the selected LLTs: by LLT code where one is given and known to
    the distribution, else by LLT name (case-insensitive). Returns, aligned to ``term``, the
    :data:`HIERARCHY_VARIABLES` (AEDECOD = the PT), ``found`` and ``current`` (llt_currency Y).
    Not found: names empty, codes NaN, ``found`` False."""
    p = dist.paths.drop_duplicates("llt_code").set_index("llt_code")
    code = _int(llt_code)
    by_code = code.where(code.isin(set(p.index)))
    names = p.reset_index()
    names = names[names["llt_currency"].str.upper().eq("Y")].drop_duplicates("llt_name") \
        .assign(key=lambda f: f["llt_name"].str.upper()).set_index("key")["llt_code"]
    by_name = term.astype("object").fillna("").astype(str).str.strip().str.upper().map(names)
    chosen = by_code.where(by_code.notna(), _int(by_name))
    found = chosen.notna() & term.astype("object").fillna("").astype(str).str.strip().ne("")
    get = lambda col: chosen.map(p[col])  # noqa: E731 - one lookup per hierarchy column
    out = pd.DataFrame({
        "AELLT": get("llt_name"), "AELLTCD": chosen, "AEDECOD": get("pt_name"), "AEPTCD": _int(get("pt_code")),
        "AEHLT": get("hlt_name"), "AEHLTCD": _int(get("hlt_code")), "AEHLGT": get("hlgt_name"),
        "AEHLGTCD": _int(get("hlgt_code")), "AEBODSYS": get("soc_name"), "AEBDSYCD": _int(get("soc_code")),
        "AESOC": get("soc_name"), "AESOCCD": _int(get("soc_code"))}, index=term.index)
    for c in _NAME_VARS:
        out[c] = out[c].astype("object").where(found & out[c].notna(), "")
    for c in set(HIERARCHY_VARIABLES) - set(_NAME_VARS):
        out[c] = out[c].where(found)
    out["found"] = found
    out["current"] = found & chosen.map(p["llt_currency"]).astype("object").fillna("").str.upper().eq("Y")
    return out


def ctcae_fallback(coded: pd.DataFrame) -> pd.DataFrame:
    """Without a distribution: the CTCAE v5.0 coding of :func:`pipeline.rules.ctcae_terms.code_terms`
    as the hierarchy. CTCAE v5.0 publishes one MedDRA code per term, so AELLT = AEDECOD = the
    term and AEPTCD = AELLTCD = its code; AEHLT/AEHLTCD/AEHLGT/AEHLGTCD are empty (CTCAE has no
    HLT/HLGT); AEBODSYS/AESOC and their codes = the CTCAE SOC."""
    out = coded.copy()
    out["AEPTCD"] = coded["AELLTCD"]
    out["AEHLT"] = ""
    out["AEHLGT"] = ""
    out["AEHLTCD"] = np.nan
    out["AEHLGTCD"] = np.nan
    return out


def llt_lookup(dist: Distribution):
    """A check for :func:`pipeline.rules.ctcae_terms.check_decisions`: True (bad) where the
    decision's (name, code) is not a current LLT of ``dist`` with that name."""
    p = dist.paths.drop_duplicates("llt_code").set_index("llt_code")

    def bad(names: pd.Series, codes: pd.Series) -> pd.Series:
        name = codes.map(p["llt_name"]).astype("object").fillna("").str.upper()
        cur = codes.map(p["llt_currency"]).astype("object").fillna("").str.upper()
        return ~(name.eq(names.astype(str).str.strip().str.upper()) & cur.eq("Y"))
    return bad


__all__ = ["LAYOUT", "HIERARCHY_VARIABLES", "Distribution", "read_asc", "primary_paths", "load_distribution",
           "distribution_folder", "code_with_distribution", "ctcae_fallback", "llt_lookup"]
