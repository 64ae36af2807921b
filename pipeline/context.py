"""What flows between the stages of one study's build.

Data flow is one way: raw -> intake -> domains (calling derive and rules) -> output checks
-> export -> define, listings. Domain modules are pure: they take a :class:`StudyContext`
and return a :class:`DomainResult`; they read and write no files.

Conventions every module relies on
----------------------------------
Raw forms (``ctx.forms[form]``)
    One DataFrame per CRF form, as read by :mod:`pipeline.intake`. Every raw column is text
    (whitespace stripped, missing as NaN). Two bookkeeping columns are added:
    ``_FILE`` (file name within ``raw/<STUDYID>/``) and ``_ROW`` (int, the spreadsheet row
    number: header = row 1, first record = row 2). Forms not delivered are absent from the dict.

SDTM datasets (``DomainResult.datasets[name]``)
    Columns exactly the spec's variables for that dataset (any order; the exporter orders
    them). Character variables hold str with ``""`` for missing; numeric variables are
    float64 (or Int64) with NaN for missing.

Provenance (``DomainResult.consumed``)
    Columns ``form``, ``row`` and ``dataset``: which raw rows (``_ROW``) a domain mapped into
    which dataset. A raw row may feed several datasets. The reconciliation report checks that
    every raw row is either consumed or rejected.

Rejections (``DomainResult.rejected``)
    Columns ``form``, ``file``, ``row``, ``column``, ``value``, ``reason``: raw rows that
    deliberately do not reach SDTM, with the reason. Nothing is dropped silently.

Reports (``DomainResult.reports[name]``)
    Tables for people (coding queries, discrepancy reports, derived summaries such as
    ORR with its CI). The build writes each as CSV in ``sdtm/<STUDYID>/reports/`` and the
    listings module renders them.

Findings (``DomainResult.findings``)
    Rule violations found while deriving (e.g. an AE grade impossible for its CTCAE term),
    in the gate report's columns: ``study, file, row, column, value, check, severity, message``.
    Severity ``error`` blocks the study's build; ``warning`` does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pipeline.config import Study
from pipeline.spec import Spec

CONSUMED_COLUMNS = ["form", "row", "dataset"]
REJECTED_COLUMNS = ["form", "file", "row", "column", "value", "reason"]
#: build modes of ``python -m pipeline build --mode`` (the first is the default)
BUILD_MODES = ("final", "draft")

FINDING_COLUMNS = ["study", "file", "row", "column", "value", "check", "severity", "message"]


#: the empty frame of each column list :func:`empty` was asked for (copied for every caller)
_EMPTY: dict[tuple, pd.DataFrame] = {}


def empty(columns: list[str]) -> pd.DataFrame:
    """A frame with ``columns`` (object dtype) and no rows. Called ~300 times a study, mostly
    with the same few column lists: the frame of a column list is built once and each caller
    gets a copy of it (a tenth of the constructor's ~0.5 ms)."""
    key = tuple(columns)
    if key not in _EMPTY:
        _EMPTY[key] = pd.DataFrame(columns=list(key), dtype="object")
    return _EMPTY[key].copy()


@dataclass
class DomainResult:
    """What one domain module returns."""

    datasets: dict[str, pd.DataFrame] = field(default_factory=dict)
    reports: dict[str, pd.DataFrame] = field(default_factory=dict)
    consumed: pd.DataFrame = field(default_factory=lambda: empty(CONSUMED_COLUMNS))
    rejected: pd.DataFrame = field(default_factory=lambda: empty(REJECTED_COLUMNS))
    findings: pd.DataFrame = field(default_factory=lambda: empty(FINDING_COLUMNS))
    #: intermediate frames a later module reads instead of deriving them again (not exported;
    #: put into :attr:`StudyContext.derived`), e.g. ``subject_elements`` from EX for SE
    derived: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class StudyContext:
    """Everything a domain module may read. Built by :mod:`pipeline.build`."""

    study: Study
    spec: Spec
    forms: dict[str, pd.DataFrame]
    #: SDTM datasets built so far, in registry order (DM is always first)
    datasets: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: report tables produced so far (name -> DataFrame)
    reports: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: ADaM datasets as exported (set by the ADaM stage, pipeline.adam.stage; read by listings)
    adam: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: build mode (:data:`BUILD_MODES`): ``final`` (submission: every Required value present,
    #: e.g. each verbatim AE term coded) or ``draft`` (open coding queries are warnings)
    mode: str = "final"
    #: intermediate frames the modules built so far returned in :attr:`DomainResult.derived`
    #: (read-only for the modules after them)
    derived: dict[str, pd.DataFrame] = field(default_factory=dict)

    def form(self, name: str) -> pd.DataFrame:
        """A raw form, or an empty frame with the spec's columns when it was not delivered."""
        if name in self.forms:
            return self.forms[name]
        cols = self.spec.form_columns(name)["column"].tolist() + ["_FILE", "_ROW"]
        return empty(cols)

    def consumed_rows(self, form: str, rows: pd.Series, dataset: str) -> pd.DataFrame:
        """Provenance frame for :attr:`DomainResult.consumed`."""
        return pd.DataFrame({"form": form, "row": rows.to_numpy(), "dataset": dataset})


class FindingCounts:
    """``errors`` and ``warnings`` of a gate result's ``findings`` frame (the gate's own result
    and the one a kept study's cache entry recorded)."""

    findings: pd.DataFrame

    @property
    def errors(self) -> int:
        return int((self.findings["severity"] == "error").sum())

    @property
    def warnings(self) -> int:
        return int((self.findings["severity"] != "error").sum())
