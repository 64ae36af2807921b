"""RELREC is shared: several domain modules contribute relationship records to one dataset,
while any other dataset built by two modules is an error finding."""

from __future__ import annotations

import sys
import textwrap

import pandas as pd
import pytest

from conftest import SPECS
from pipeline.build import run_domains
from pipeline.config import load_study
from pipeline.context import StudyContext
from pipeline.progress import BuildLog
from pipeline.spec import load_spec

MODULE = '''
import pandas as pd
from pipeline.context import DomainResult

def build(ctx):
    return DomainResult(datasets={{"{ds}": pd.DataFrame({{"RELID": ["{relid}"]}})}})
'''


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    pkg = tmp_path / "fakedomains"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text(textwrap.dedent(MODULE.format(ds="RELREC", relid="A")))
    (pkg / "two.py").write_text(textwrap.dedent(MODULE.format(ds="RELREC", relid="B")))
    (pkg / "dup.py").write_text(textwrap.dedent(MODULE.format(ds="DM", relid="X")))
    (pkg / "dup2.py").write_text(textwrap.dedent(MODULE.format(ds="DM", relid="Y")))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fakedomains"
    for name in [m for m in sys.modules if m.startswith("fakedomains")]:
        del sys.modules[name]


def _ctx():
    spec = load_spec(SPECS)
    return StudyContext(study=load_study(SPECS, "NCT06316427"), spec=spec, forms={})


def test_relrec_rows_from_two_modules_are_appended(fake_package):
    merged = run_domains(_ctx(), BuildLog(), registry=["one", "two"], package=fake_package)
    assert merged.datasets["RELREC"]["RELID"].tolist() == ["A", "B"]
    assert not any(f["check"].eq("dataset_twice").any() for f in merged.findings if len(f))


def test_any_other_dataset_from_two_modules_is_a_finding(fake_package):
    merged = run_domains(_ctx(), BuildLog(), registry=["dup", "dup2"], package=fake_package)
    assert merged.datasets["DM"]["RELID"].tolist() == ["X"]
    checks = pd.concat([f for f in merged.findings if len(f)])["check"].tolist()
    assert "dataset_twice" in checks
