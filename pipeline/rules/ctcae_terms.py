"""CTCAE v5.0 term coding and grade validity.

Rule tables (``specs/rules``), each row with its ``source``:

- ``ctcae_terms.csv``  the 837 NCI CTCAE v5.0 terms: MedDRA code (each CTCAE term is a MedDRA
  LLT), MedDRA SOC and SOC code, and which grades exist (CTCAE prints ``-`` for a grade that
  cannot be given, e.g. Alopecia stops at grade 2, Neutrophil count decreased has no grade 5).
- ``astct_events.csv`` the terms of the events graded by ASTCT (CRS, ICANS). A term that is not
  a CTCAE term (the ICANS sponsor term) joins the coding dictionary from here.
- ``ae_synonyms.csv``  normalised verbatim terms -> dictionary term (spelling variants, lay
  terms, abbreviations seen in the raw data).

Coding (SDTMIG 3.4 AE assumption 2): AETERM stays as collected; the verbatim is normalised
(:func:`normalise_term`), looked up in the synonym table first, then matched exactly against
the normalised dictionary terms. AEDECOD/AELLT = the dictionary term, AELLTCD = its MedDRA
code, AEBODSYS/AESOC = its SOC, AEBDSYCD/AESOCCD = the SOC code. A verbatim that matches
nothing stays uncoded (empty AEDECOD) and goes to the coding-query report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.spec import Spec

GRADES = (1, 2, 3, 4, 5)
GRADE_COLUMNS = [f"grade{g}" for g in GRADES]


def normalise_term(verbatim: pd.Series) -> pd.Series:
    """Upper case ASCII letters and digits separated by single spaces.

    Accents are folded (NFKD), every character that is not a letter or digit becomes a space
    (so ``Rash maculo-papular`` and ``RASH MACULO PAPULAR`` agree), runs of spaces collapse.
    Missing -> ``""``.
    """
    s = verbatim.astype("object").where(verbatim.notna(), "").astype(str)
    s = s.str.normalize("NFKD").str.encode("ascii", errors="ignore").str.decode("ascii")
    s = s.str.upper().str.replace(r"[^A-Z0-9]+", " ", regex=True).str.strip()
    return s.astype("object")


def _grades_to_flags(grades: pd.Series) -> pd.DataFrame:
    """``1|2|3`` -> grade1..grade5 Y/N columns."""
    parts = grades.astype(str).str.split("|")
    return pd.DataFrame({f"grade{g}": parts.map(lambda p, g=g: "Y" if str(g) in p else "N") for g in GRADES},
                        index=grades.index)


def coding_dictionary(spec: Spec) -> pd.DataFrame:
    """The coding dictionary: CTCAE v5.0 terms plus the ASTCT event terms that CTCAE lacks.

    Columns ``term, meddra_code, soc, soc_code, grade1..grade5, source, key`` (``key`` = the
    normalised term). Raises :class:`ConfigError` if two terms normalise to the same key.
    """
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


def code_terms(verbatim: pd.Series, dictionary: pd.DataFrame, synonym_table: pd.DataFrame) -> pd.DataFrame:
    """Dictionary coding of verbatim terms (SDTMIG 3.4 AE assumption 2c/2d).

    Returns, aligned to ``verbatim``: AEDECOD, AELLT, AELLTCD, AEBODSYS, AEBDSYCD, AESOC,
    AESOCCD (codes float, NaN when absent), ``coded`` (bool), ``match`` (``SYNONYM``,
    ``EXACT`` or ``""``) and ``normalised`` (the normalised verbatim).
    """
    key = normalise_term(verbatim)
    by_syn = key.map(dict(zip(synonym_table["key"], synonym_table["term"])))
    by_exact = key.map(dict(zip(dictionary["key"], dictionary["term"])))
    term = by_syn.where(by_syn.notna(), by_exact)
    coded = term.notna() & key.ne("")
    d = dictionary.set_index("term")
    code = pd.to_numeric(term.map(d["meddra_code"]), errors="coerce")
    soc_code = pd.to_numeric(term.map(d["soc_code"]), errors="coerce")
    soc = term.map(d["soc"]).fillna("")
    decod = term.fillna("")
    return pd.DataFrame({
        "AEDECOD": decod.astype("object"), "AELLT": decod.astype("object"), "AELLTCD": code.astype("float64"),
        "AEBODSYS": soc.astype("object"), "AEBDSYCD": soc_code.astype("float64"),
        "AESOC": soc.astype("object"), "AESOCCD": soc_code.astype("float64"),
        "coded": coded,
        "match": pd.Series(np.select([by_syn.notna(), by_exact.notna()], ["SYNONYM", "EXACT"], ""),
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
    return term.map(text.str.rstrip("|")).fillna("")
