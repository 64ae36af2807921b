"""The SDTM and raw specification in ``specs/``: the one metadata source.

Layout (all reviewable CSV/TOML text):

- ``specs/sdtm/standards.toml``          SDTMIG, CT package, dictionary versions
- ``specs/sdtm/datasets.csv``            dataset, label, class, structure, keys (``|``-separated)
- ``specs/sdtm/variables/<DATASET>.csv`` order, variable, label, type, length, core, role, codelist, origin, source, method, comment
- ``specs/sdtm/codelists/*.csv``         codelist, name, ncit_code, extensible, term, decode, term_ncit_code, dictionary, version,
                                         source (the CT package/file the code was verified in, or why a term has no code)
- ``specs/sdtm/valuelevel/*.csv``        value-level metadata (dataset, variable, where clause, type, unit, codelist, origin, method)
- ``specs/sdtm/methods/*.csv``           method, name, type, description, source
- ``specs/sdtm/comments/*.csv``          comment, description (optional)
- ``specs/raw/forms.csv`` and ``specs/raw/columns.csv``   the raw CRF contract (drives the pandera gate)
- ``specs/rules/*.csv``                  clinical rule tables (CTCAE, ASTCT, units, response), each row with its source

Labels, lengths, codelists and origins are read from here by the output checks, the XPT and
Dataset-JSON writers, define.xml and the listings. No label or codelist is written in code.
"""

from __future__ import annotations

import tomllib
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from pipeline.errors import ConfigError

VARIABLE_COLUMNS = ["dataset", "order", "variable", "label", "type", "length", "core", "role",
                    "codelist", "origin", "source", "method", "comment"]
CODELIST_COLUMNS = ["codelist", "name", "ncit_code", "extensible", "term", "decode", "term_ncit_code",
                    "dictionary", "version", "source"]
#: define.xml DataType values and how they are stored in XPT / Dataset-JSON
NUMERIC_TYPES = {"integer", "float"}
CHAR_TYPES = {"text", "datetime", "date", "time", "partialDate", "partialTime", "partialDatetime",
              "incompleteDatetime", "durationDatetime"}


def read_table(path: Path) -> pd.DataFrame:
    """Read one spec CSV as text: every cell a str, empty cells as ''."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"spec table {path}: {exc}") from None


def _read_folder(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    frames = [read_table(f).assign(_spec_file=f.name) for f in files]
    if not frames:
        return pd.DataFrame(columns=(columns or []) + ["_spec_file"])
    out = pd.concat(frames, ignore_index=True).fillna("")
    if columns:
        for c in columns:
            if c not in out.columns:
                out[c] = ""
    return out


#: per-Spec answers of :meth:`Spec._memo`: id(spec) -> (weak reference to it, {(kind, name): value})
_MEMO: dict[int, tuple[weakref.ref, dict]] = {}


@dataclass(frozen=True)
class Spec:
    """Loaded specification. Construct with :func:`load_spec`."""

    root: Path
    standards: dict = field(repr=False)
    datasets: pd.DataFrame = field(repr=False)
    variables: pd.DataFrame = field(repr=False)
    codelists: pd.DataFrame = field(repr=False)
    valuelevel: pd.DataFrame = field(repr=False)
    methods: pd.DataFrame = field(repr=False)
    comments: pd.DataFrame = field(repr=False)
    raw_forms: pd.DataFrame = field(repr=False)
    raw_columns: pd.DataFrame = field(repr=False)
    #: which standard's folder this spec was read from: ``sdtm`` (tabulation) or ``adam`` (analysis)
    standard: str = "sdtm"

    # ---- datasets and variables -----------------------------------------------
    # A build asks for the same dataset's rows hundreds of times (checks, writers, define.xml:
    # ~700 calls a study, 3 s of CPU under the profiler). The spec's tables are not changed once
    # loaded, so each answer is computed once per dataset (:data:`_MEMO`, outside the instance,
    # so that ``Spec(**spec.__dict__)`` still works) and a copy is handed out, so that a caller
    # may still modify what it gets.
    def _memo(self, kind: str, name: str, compute):
        entry = _MEMO.get(id(self))
        if entry is None or entry[0]() is not self:
            entry = (weakref.ref(self, lambda _ref, key=id(self): _MEMO.pop(key, None)), {})
            _MEMO[id(self)] = entry
        memo = entry[1]
        key = (kind, name)
        if key not in memo:
            memo[key] = compute(name)
        return memo[key]

    def _dataset_row(self, name: str) -> pd.Series:
        rows = self.datasets[self.datasets["dataset"] == name]
        if rows.empty:
            raise ConfigError(f"dataset {name} is not in specs/sdtm/datasets.csv")
        return rows.iloc[0]

    def dataset(self, name: str) -> pd.Series:
        """The datasets.csv row of one dataset."""
        return self._memo("dataset", name, self._dataset_row).copy()

    def keys(self, name: str) -> list[str]:
        """Sort keys of a dataset, from datasets.csv."""
        return [k for k in self._memo("dataset", name, self._dataset_row)["keys"].split("|") if k]

    def _vars(self, name: str) -> pd.DataFrame:
        v = self.variables[self.variables["dataset"] == name].copy()
        if v.empty:
            raise ConfigError(f"dataset {name} has no variables in specs/sdtm/variables/")
        v["order"] = v["order"].astype(int)
        return v.sort_values("order").reset_index(drop=True)

    def vars(self, name: str) -> pd.DataFrame:
        """Variables of one dataset in spec order (``order`` as int)."""
        return self._memo("vars", name, self._vars).copy()

    def var_names(self, name: str) -> list[str]:
        return self._memo("vars", name, self._vars)["variable"].tolist()

    def labels(self, name: str) -> dict[str, str]:
        """Variable name -> label for one dataset."""
        v = self._memo("vars", name, self._vars)
        return dict(zip(v["variable"], v["label"]))

    def is_numeric(self, name: str, variable: str) -> bool:
        v = self.vars(name)
        t = v.loc[v["variable"] == variable, "type"]
        return bool(len(t)) and t.iloc[0] in NUMERIC_TYPES

    # ---- codelists ------------------------------------------------------------
    def _codelist(self, codelist_id: str) -> pd.DataFrame:
        c = self.codelists[self.codelists["codelist"] == codelist_id]
        if c.empty:
            raise ConfigError(f"codelist {codelist_id} is not in specs/sdtm/codelists/")
        return c.reset_index(drop=True)

    def codelist(self, codelist_id: str) -> pd.DataFrame:
        """Terms of one codelist (term, decode, term_ncit_code, ...)."""
        return self._memo("codelist", codelist_id, self._codelist).copy()

    def terms(self, codelist_id: str) -> list[str]:
        """The codelist's terms in file order: made once per codelist, each caller gets its own
        list (a copy of a few strings, not of the codelist frame)."""
        return list(self._memo("terms", codelist_id, self._terms))

    def _terms(self, codelist_id: str) -> list[str]:
        return self._memo("codelist", codelist_id, self._codelist)["term"].tolist()

    def decode_map(self, codelist_id: str) -> dict[str, str]:
        """Term -> decode (the term itself when the decode is empty): made once per codelist,
        each caller gets its own dict."""
        return dict(self._memo("decode_map", codelist_id, self._decode_map))

    def _decode_map(self, codelist_id: str) -> dict[str, str]:
        c = self._memo("codelist", codelist_id, self._codelist)
        return dict(zip(c["term"], c["decode"].where(c["decode"] != "", c["term"])))

    # ---- raw contract -----------------------------------------------------------
    def form_columns(self, form: str) -> pd.DataFrame:
        """Raw spec rows of one CRF form, in file order (a copy: the gate and the domains ask ~70
        times a study)."""
        return self._memo("form_columns", form, self._form_columns).copy()

    def _form_columns(self, form: str) -> pd.DataFrame:
        c = self.raw_columns[self.raw_columns["form"] == form]
        if c.empty:
            raise ConfigError(f"raw form {form} is not in specs/raw/columns.csv")
        return c.reset_index(drop=True)

    @cached_property
    def forms(self) -> list[str]:
        return self.raw_forms["form"].tolist()

    # ---- rule tables --------------------------------------------------------------
    def _read_rule(self, name: str) -> pd.DataFrame:
        path = self.root / "rules" / f"{name}.csv"
        if not path.is_file():
            raise ConfigError(f"rule table {path} is missing")
        return read_table(path)

    def rule(self, name: str) -> pd.DataFrame:
        """A clinical rule table ``specs/rules/<name>.csv`` (all cells str); read once per loaded
        spec (a study's domains ask for ~30 tables, some several times) and handed out as a copy."""
        return self._memo("rule", name, self._read_rule).copy()

    def mapping(self, name: str) -> pd.DataFrame:
        """A mapping table ``specs/<standard>/mapping/<name>.csv`` (all cells str): which raw
        forms and columns feed a dataset that several source forms share (e.g. PR)."""
        path = self.root / self.standard / "mapping" / f"{name}.csv"
        if not path.is_file():
            raise ConfigError(f"mapping table {path} is missing")
        return read_table(path)


def expand_supp_template(variables: pd.DataFrame, datasets: pd.DataFrame) -> pd.DataFrame:
    """Every SUPP-- dataset shares one structure (SDTMIG 8.4): rows of dataset ``SUPP--`` in
    ``variables/SUPPQUAL.csv`` are copied to each SUPP* dataset listed in datasets.csv."""
    template = variables[variables["dataset"] == "SUPP--"]
    rest = variables[variables["dataset"] != "SUPP--"]
    supps = [d for d in datasets["dataset"] if d.startswith("SUPP")]
    copies = [template.assign(dataset=d) for d in supps if d not in set(rest["dataset"])]
    return pd.concat([rest, *copies], ignore_index=True) if copies else rest.reset_index(drop=True)


STANDARDS = ("sdtm", "adam")


def load_spec(specs_dir: Path | str, standard: str = "sdtm") -> Spec:
    """Load every spec table under ``specs_dir/<standard>`` and check its internal consistency.

    ``standard`` is ``sdtm`` (``specs/sdtm``, the default) or ``adam`` (``specs/adam``, the same
    layout). The ADaM spec also sees the SDTM codelists (NY, SEX, RACE ... are not repeated in
    ``specs/adam/codelists``); an ADaM codelist of the same id replaces the SDTM one.
    """
    root = Path(specs_dir)
    if not root.is_dir():
        raise ConfigError(f"specs folder {root} does not exist")
    if standard not in STANDARDS:
        raise ConfigError(f"unknown standard {standard!r} (one of {', '.join(STANDARDS)})")
    folder = root / standard
    std_path = folder / "standards.toml"
    try:
        standards = tomllib.loads(std_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{std_path}: {exc}") from None
    datasets = read_table(folder / "datasets.csv")
    variables = expand_supp_template(_read_folder(folder / "variables", VARIABLE_COLUMNS), datasets)
    codelists = _read_folder(folder / "codelists", CODELIST_COLUMNS)
    if standard != "sdtm":
        shared = _read_folder(root / "sdtm" / "codelists", CODELIST_COLUMNS)
        shared = shared[~shared["codelist"].isin(set(codelists["codelist"]))]
        codelists = pd.concat([shared, codelists], ignore_index=True)
    spec = Spec(
        root=root,
        standards=standards,
        datasets=datasets,
        variables=variables,
        codelists=codelists,
        valuelevel=_read_folder(folder / "valuelevel"),
        methods=_read_folder(folder / "methods"),
        comments=_read_folder(folder / "comments"),
        raw_forms=read_table(root / "raw" / "forms.csv"),
        raw_columns=read_table(root / "raw" / "columns.csv"),
        standard=standard,
    )
    check_spec(spec)
    return spec


def check_spec(spec: Spec) -> None:
    """Fail fast on a spec that cannot drive the exports (exit 2, one line per problem)."""
    problems: list[str] = []
    v = spec.variables
    if not v.empty:
        long_labels = v[v["label"].str.len() > 40]
        problems += [f"{r.dataset}.{r.variable}: label over 40 characters" for r in long_labels.itertuples()]  # spec rows in error
        long_names = v[v["variable"].str.len() > 8]
        problems += [f"{r.dataset}.{r.variable}: name over 8 characters" for r in long_names.itertuples()]  # spec rows in error
        dup = v[v.duplicated(["dataset", "variable"], keep=False)]
        problems += [f"{r.dataset}.{r.variable}: defined twice" for r in dup.drop_duplicates(["dataset", "variable"]).itertuples()]  # spec rows in error
        bad_type = v[~v["type"].isin(NUMERIC_TYPES | CHAR_TYPES)]
        problems += [f"{r.dataset}.{r.variable}: unknown type {r.type!r}" for r in bad_type.itertuples()]  # spec rows in error
        unknown_ds = sorted(set(v["dataset"]) - set(spec.datasets["dataset"]))
        problems += [f"variables given for dataset {d} which is not in datasets.csv" for d in unknown_ds]
        cl = v[(v["codelist"] != "") & ~v["codelist"].isin(spec.codelists["codelist"])]
        problems += [f"{r.dataset}.{r.variable}: codelist {r.codelist} not defined" for r in cl.itertuples()]  # spec rows in error
    c = spec.codelists
    if not c.empty:
        dup = c[c.duplicated(["codelist", "term"], keep=False)]
        problems += [f"codelist {r.codelist}: term {r.term!r} defined twice" for r in dup.drop_duplicates(["codelist", "term"]).itertuples()]  # rule/spec rows in error
    dup_ds = spec.datasets[spec.datasets.duplicated("dataset")]
    problems += [f"dataset {d} listed twice in datasets.csv" for d in dup_ds["dataset"]]
    if problems:
        raise ConfigError("specification problems:\n  " + "\n  ".join(problems))
