"""CTCAE v5.0 term coding and grade validity.

Rule tables (``specs/rules``), each row with its ``source``:

- ``ctcae_terms.csv``  the 837 NCI CTCAE v5.0 terms: MedDRA code (each CTCAE term is a MedDRA
  LLT), MedDRA SOC and SOC code, and which grades exist (CTCAE prints ``-`` for a grade that
  cannot be given, e.g. Alopecia stops at grade 2, Neutrophil count decreased has no grade 5).
- ``astct_events.csv`` the terms of the events graded by ASTCT (CRS, ICANS). A term that is not
  a CTCAE term (the ICANS sponsor term) joins the coding dictionary from here.
- ``ae_synonyms.csv``  normalised verbatim terms -> dictionary term (spelling variants, lay
  terms, abbreviations seen in the raw data).

Per study, ``specs/studies/<STUDYID>.coding.csv`` holds the coding decisions that resolve
coding queries: verbatim term -> LLT (name and code), who decided, when (ISO date) and why
(:func:`load_coding_decisions`, :func:`check_decisions`).

Coding (SDTMIG 3.4 AE assumption 2): AETERM stays as collected; the verbatim is normalised
(:func:`normalise_term`), looked up in the study's coding decisions first, then in the synonym
table, then matched exactly against the normalised dictionary terms. AEDECOD/AELLT = the
dictionary term, AELLTCD = its MedDRA code, AEBODSYS/AESOC = its SOC, AEBDSYCD/AESOCCD = the
SOC code. A verbatim that matches nothing stays uncoded (empty AEDECOD) and goes to the
coding-query report: an error in a final build, a warning in a draft build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.export.memo import per_object
from pipeline.spec import Spec

GRADES = (1, 2, 3, 4, 5)
GRADE_COLUMNS = [f"grade{g}" for g in GRADES]


def normalise_term(verbatim: pd.Series) -> pd.Series:
    """Upper case ASCII letters and digits separated by single spaces.

    Accents are folded (NFKD), every character that is not a letter or digit becomes a space
    (so ``Rash maculo-papular`` and ``RASH MACULO PAPULAR`` agree), runs of spaces collapse.
    Missing -> ``""``.
    """
    text = verbatim.astype("object").where(verbatim.notna(), "").astype(str)
    # normalised once per distinct text (a term repeats across records; the dictionary is
    # normalised for every study), then spread back onto the records
    codes, uniques = pd.factorize(text.to_numpy(dtype=object), use_na_sentinel=True)
    s = pd.Series(uniques, dtype=object).astype(str)
    s = s.str.normalize("NFKD").str.encode("ascii", errors="ignore").str.decode("ascii")
    s = s.str.upper().str.replace(r"[^A-Z0-9]+", " ", regex=True).str.strip()
    return pd.Series(s.to_numpy(dtype=object)[codes], index=verbatim.index, name=verbatim.name, dtype=object)


def _grades_to_flags(grades: pd.Series) -> pd.DataFrame:
    """``1|2|3`` -> grade1..grade5 Y/N columns."""
    parts = grades.astype(str).str.split("|")
    return pd.DataFrame({f"grade{g}": parts.map(lambda p, g=g: "Y" if str(g) in p else "N") for g in GRADES},
                        index=grades.index)


def coding_dictionary(spec: Spec) -> pd.DataFrame:
    """The coding dictionary: CTCAE v5.0 terms plus the ASTCT event terms that CTCAE lacks.

    Columns ``term, meddra_code, soc, soc_code, grade1..grade5, source, key`` (``key`` = the
    normalised term). Raises :class:`ConfigError` if two terms normalise to the same key.
    Made once per loaded spec (every study codes against it) and handed out as a copy.
    """
    return per_object(spec, "coding_dictionary", _coding_dictionary).copy()


def _coding_dictionary(spec: Spec) -> pd.DataFrame:
    """:func:`coding_dictionary` without the memo."""
    ctcae = spec.rule("ctcae_terms")
    missing = [c for c in ["term", "meddra_code", "soc", "soc_code", *GRADE_COLUMNS, "source"] if c not in ctcae]
    if missing:
        raise ConfigError(f"specs/rules/ctcae_terms.csv lacks column(s) {', '.join(missing)}")
    events = spec.rule("astct_events")
    extra = events[~normalise_term(events["term"]).isin(set(normalise_term(ctcae["term"])))]
    extra = pd.concat([extra[["term", "meddra_code", "soc", "soc_code", "source"]].reset_index(drop=True),
                       _grades_to_flags(extra["grades"]).reset_index(drop=True)], axis=1)
    d = pd.concat([ctcae[["term", "meddra_code", "soc", "soc_code", *GRADE_COLUMNS, "source"]], extra],
                  ignore_index=True)
    d["key"] = normalise_term(d["term"])
    dup = d[d.duplicated("key", keep=False)]
    if not dup.empty:
        raise ConfigError(f"coding dictionary: terms normalise to the same text: {', '.join(sorted(dup['term']))[:300]}")
    return d


def synonyms(spec: Spec, dictionary: pd.DataFrame) -> pd.DataFrame:
    """``ae_synonyms.csv`` as (key, term), checked: every target must be a dictionary term and
    a normalised verbatim may appear once."""
    syn = spec.rule("ae_synonyms")
    for col in ("verbatim_normalised", "ctcae_term", "source"):
        if col not in syn:
            raise ConfigError(f"specs/rules/ae_synonyms.csv lacks column {col}")
    key = normalise_term(syn["verbatim_normalised"])
    unknown = sorted(set(syn.loc[~syn["ctcae_term"].isin(set(dictionary["term"])), "ctcae_term"]))
    if unknown:
        raise ConfigError(f"specs/rules/ae_synonyms.csv: target(s) not in the coding dictionary: {', '.join(unknown)[:300]}")
    dup = sorted(set(key[key.duplicated()]))
    if dup:
        raise ConfigError(f"specs/rules/ae_synonyms.csv: verbatim listed twice: {', '.join(dup)[:300]}")
    return pd.DataFrame({"key": key, "term": syn["ctcae_term"]})


DECISION_COLUMNS = ["verbatim", "llt_name", "llt_code", "decided_by", "decided_on", "rationale"]


def decisions_path(study) -> Path:
    """``specs/studies/<STUDYID>.coding.csv``, beside the study's parameter file."""
    return Path(study.path).with_name(f"{study.studyid}.coding.csv")


def load_coding_decisions(path: Path) -> pd.DataFrame:
    """The coding decisions file as text (empty frame with :data:`DECISION_COLUMNS` when the
    study has none). Reading happens here, at the edge; :func:`check_decisions` validates."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=DECISION_COLUMNS, dtype="object")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: cannot be read as UTF-8 CSV ({exc})") from None
    frame.attrs["file"] = path.name
    return frame


def check_decisions(decisions: pd.DataFrame, dictionary: pd.DataFrame, lookup=None) -> pd.DataFrame:
    """Validated coding decisions as (``key`` = normalised verbatim, ``term``, ``llt_code``,
    ``decided_by``, ``decided_on``, ``rationale``).

    Every row needs a verbatim, an LLT name and code, who decided and an ISO 8601 date
    (YYYY-MM-DD). The LLT must be a term of the coding dictionary with the same code
    (``lookup``: an optional callable ``(names, codes) -> bad mask`` that checks them against a
    MedDRA distribution instead). A normalised verbatim may be decided once. Raises
    :class:`ConfigError` naming the file and row.
    """
    where = decisions.attrs.get("file", "coding decisions")
    missing = [c for c in DECISION_COLUMNS if c not in decisions]
    if missing:
        raise ConfigError(f"{where}: lacks column(s) {', '.join(missing)}")
    d = decisions[DECISION_COLUMNS].astype(str).apply(lambda c: c.str.strip())
    row = pd.Series(np.arange(len(d)) + 2, index=d.index)  # spreadsheet row (header = 1)
    for col in ("verbatim", "llt_name", "llt_code", "decided_by", "decided_on"):  # five columns
        bad = d[col].eq("")
        if bad.any():
            raise ConfigError(f"{where} row {row[bad].iloc[0]}: {col} is empty")
    bad_date = ~d["decided_on"].str.fullmatch(r"\d{4}-\d{2}-\d{2}") | pd.to_datetime(
        d["decided_on"], format="%Y-%m-%d", errors="coerce").isna()
    if bad_date.any():
        raise ConfigError(f"{where} row {row[bad_date].iloc[0]}: decided_on "
                          f"{d.loc[bad_date, 'decided_on'].iloc[0]!r} is not an ISO 8601 date (YYYY-MM-DD)")
    code = pd.to_numeric(d["llt_code"], errors="coerce")
    if lookup is not None:
        bad = lookup(d["llt_name"], code)
        if bad.any():
            raise ConfigError(f"{where} row {row[bad].iloc[0]}: LLT {d.loc[bad, 'llt_name'].iloc[0]!r} "
                              f"code {d.loc[bad, 'llt_code'].iloc[0]} is not a current LLT of the MedDRA distribution")
    else:
        known = dictionary.set_index("term")["meddra_code"]
        unknown = ~d["llt_name"].isin(set(known.index))
        if unknown.any():
            raise ConfigError(f"{where} row {row[unknown].iloc[0]}: {d.loc[unknown, 'llt_name'].iloc[0]!r} "
                              "is not a term of the coding dictionary")
        want = pd.to_numeric(d["llt_name"].map(known), errors="coerce")
        wrong = want.notna() & want.ne(code)
        if wrong.any():
            raise ConfigError(f"{where} row {row[wrong].iloc[0]}: llt_code {d.loc[wrong, 'llt_code'].iloc[0]} "
                              f"is not the code of {d.loc[wrong, 'llt_name'].iloc[0]!r} "
                              f"({int(want[wrong].iloc[0])})")
    key = normalise_term(d["verbatim"])
    dup = key.duplicated(keep=False)
    if dup.any():
        raise ConfigError(f"{where} row {row[dup].iloc[0]}: verbatim {d.loc[dup, 'verbatim'].iloc[0]!r} "
                          "is decided more than once")
    return pd.DataFrame({"key": key, "term": d["llt_name"], "llt_code": code, "decided_by": d["decided_by"],
                         "decided_on": d["decided_on"], "rationale": d["rationale"]}).reset_index(drop=True)


def code_terms(verbatim: pd.Series, dictionary: pd.DataFrame, synonym_table: pd.DataFrame,
               decisions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Dictionary coding of verbatim terms (SDTMIG 3.4 AE assumption 2c/2d).

    Returns, aligned to ``verbatim``: AEDECOD, AELLT, AELLTCD, AEBODSYS, AEBDSYCD, AESOC,
    AESOCCD (codes float, NaN when absent), ``coded`` (bool), ``match`` (``DECISION``,
    ``SYNONYM``, ``EXACT`` or ``""``) and ``normalised`` (the normalised verbatim).
    ``decisions`` (from :func:`check_decisions`) take precedence over synonyms and exact matches.
    """
    key = normalise_term(verbatim)
    if decisions is None or decisions.empty:
        by_dec = pd.Series(np.nan, index=key.index, dtype="object")
    else:
        by_dec = key.map(dict(zip(decisions["key"], decisions["term"])))
    by_syn = key.map(dict(zip(synonym_table["key"], synonym_table["term"])))
    by_exact = key.map(dict(zip(dictionary["key"], dictionary["term"])))
    term = by_dec.where(by_dec.notna(), by_syn.where(by_syn.notna(), by_exact))
    coded = term.notna() & key.ne("")
    d = dictionary.set_index("term")
    code = pd.to_numeric(term.map(d["meddra_code"]), errors="coerce")
    if decisions is not None and len(decisions):
        # a decision names its LLT code (a MedDRA distribution may hold LLTs that CTCAE lacks)
        dec_code = key.map(dict(zip(decisions["key"], decisions["llt_code"])))
        code = pd.to_numeric(dec_code, errors="coerce").where(by_dec.notna(), code)
    soc_code = pd.to_numeric(term.map(d["soc_code"]), errors="coerce")
    soc = term.map(d["soc"]).fillna("")
    decod = term.fillna("")
    return pd.DataFrame({
        "AEDECOD": decod.astype("object"), "AELLT": decod.astype("object"), "AELLTCD": code.astype("float64"),
        "AEBODSYS": soc.astype("object"), "AEBDSYCD": soc_code.astype("float64"),
        "AESOC": soc.astype("object"), "AESOCCD": soc_code.astype("float64"),
        "coded": coded,
        "match": pd.Series(np.select([by_dec.notna(), by_syn.notna(), by_exact.notna()],
                                     ["DECISION", "SYNONYM", "EXACT"], ""),
                           index=verbatim.index).astype("object").where(coded, ""),
        "normalised": key,
    }, index=verbatim.index)


def grade_exists(term: pd.Series, grade: pd.Series, dictionary: pd.DataFrame) -> pd.Series:
    """True where ``grade`` (1-5, text or number) is a grade the CTCAE term defines.

    CTCAE v5.0 marks impossible grades with ``-`` (e.g. Alopecia grade 3, Neutrophil count
    decreased grade 5). NaN where the term is not in the dictionary or the grade is missing
    or not 1-5, so that the caller can tell "impossible" from "not checkable".
    """
    g = pd.to_numeric(grade, errors="coerce")
    flags = dictionary.set_index("term")[GRADE_COLUMNS]
    out = pd.Series(np.nan, index=term.index, dtype="object")
    for n in GRADES:  # five grade columns, vectorised over records
        sel = g.eq(n)
        if sel.any():
            out = out.where(~sel, term.map(flags[f"grade{n}"]).eq("Y").where(term.isin(flags.index)))
    return out


def defined_grades(term: pd.Series, dictionary: pd.DataFrame) -> pd.Series:
    """Text such as ``1-2`` or ``1|3|4|5`` listing the grades a term defines (for messages)."""
    flags = dictionary.set_index("term")[GRADE_COLUMNS]
    text = pd.Series([""] * len(flags), index=flags.index, dtype="object")
    for n in GRADES:
        text = text + np.where(flags[f"grade{n}"].eq("Y"), f"{n}|", "")
    got = term.map(text.str.rstrip("|")).astype("object")
    return got.where(got.notna(), "")
