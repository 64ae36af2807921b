"""Study-level parameters, one TOML file per study in ``specs/studies/<STUDYID>.toml``.

The TOML is the single place for a study's design facts: arms, elements, visit schedule,
treatments, DLT window, response criteria set, ORR definition, eligibility lab thresholds,
trial-summary (TS) parameters, inclusion/exclusion criteria (TI) and the simulation settings.
Code reads them through :class:`Study`; nothing study-specific is written in code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Study:
    """Parsed study parameters. ``raw`` keeps the whole TOML document."""

    studyid: str
    path: Path
    raw: dict[str, Any] = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    # ---- tables, as DataFrames -------------------------------------------------
    def table(self, key: str) -> pd.DataFrame:
        """An array-of-tables section (``[[visits]]``, ``[[arms]]``, ...) as a DataFrame."""
        rows = self.raw.get(key, [])
        return pd.DataFrame(rows)

    @property
    def visits(self) -> pd.DataFrame:
        """Visit schedule with VISITNUM, VISIT, protocol day, window and planned VISITDY.

        VISITDY = day + 1 for day >= 0 (infusion = protocol day 0 = study day 1), else day,
        because SDTM has no day 0 (SDTMIG 3.4 section 4.4.4). A copy of the schedule built once
        per Study (the domains ask ~30 times a study).
        """
        return self._visit_schedule.copy()

    @cached_property
    def _visit_schedule(self) -> pd.DataFrame:
        v = self.table("visits")
        if v.empty:
            return v
        v = v.rename(columns={"visitnum": "VISITNUM", "visit": "VISIT"})
        v["window_lo"] = v["window"].str[0]
        v["window_hi"] = v["window"].str[1]
        v["VISITDY"] = v["day"].where(v["day"] < 0, v["day"] + 1)
        return v.drop(columns="window")

    @property
    def arms(self) -> pd.DataFrame:
        return self.table("arms")

    @property
    def sites(self) -> pd.DataFrame:
        return self.table("sites")

    @property
    def elements(self) -> pd.DataFrame:
        return self.table("elements")

    @property
    def treatments(self) -> pd.DataFrame:
        return self.table("treatments")

    @property
    def dlt_window_days(self) -> int:
        return int(self.raw["safety"]["dlt_window_days"])

    @property
    def data_cutoff(self) -> str:
        return str(self.raw["data_cutoff"])

    @property
    def encoding(self) -> str:
        return str(self.raw.get("raw", {}).get("encoding", "utf-8"))

    @property
    def raw_formats(self) -> dict[str, str]:
        """Form name -> file extension for forms not delivered as CSV."""
        return dict(self.raw.get("raw", {}).get("formats", {}))


REQUIRED_KEYS = ("studyid", "title", "phase", "data_cutoff", "safety", "response", "orr", "sites", "arms", "visits", "elements", "treatments")


def study_ids(specs_dir: Path) -> list[str]:
    """All studies that have a parameter file, sorted."""
    d = Path(specs_dir) / "studies"
    if not d.is_dir():
        raise ConfigError(f"no study parameters folder: {d}")
    return sorted(p.stem for p in d.glob("*.toml"))


def load_study(specs_dir: Path, studyid: str) -> Study:
    """Load and check ``specs/studies/<studyid>.toml``."""
    path = Path(specs_dir) / "studies" / f"{studyid}.toml"
    if not path.is_file():
        known = ", ".join(study_ids(specs_dir)) or "none"
        raise ConfigError(f"study {studyid}: no parameter file {path} (known studies: {known})")
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study {studyid}: {path.name} is not valid TOML: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise ConfigError(f"study {studyid}: {path.name} lacks {', '.join(missing)}")
    if doc["studyid"] != studyid:
        raise ConfigError(f"study {studyid}: {path.name} declares studyid {doc['studyid']!r}")
    return Study(studyid=studyid, path=path, raw=doc)


def selected_studies(specs_dir: Path, wanted: list[str] | None) -> list[Study]:
    """The studies a command works on: those named with ``--study`` (in order, once each),
    else every study with a parameter file. None at all is a configuration error."""
    ids = list(dict.fromkeys(wanted)) if wanted else study_ids(specs_dir)
    if not ids:
        raise ConfigError(f"no study parameter files in {Path(specs_dir) / 'studies'}")
    return [load_study(specs_dir, i) for i in ids]


def raw_folder(raw_dir: Path) -> Path:
    """The raw extracts folder, which must exist (configuration error otherwise)."""
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise ConfigError(f"raw extracts folder {raw} does not exist")
    return raw
