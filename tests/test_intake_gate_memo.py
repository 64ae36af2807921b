"""What the raw gate derives once and reuses (issue 14): spec-derived structures once per loaded
spec, parsed column values once per validate call, and only on the frames that call owns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "intake"))
import intake_synth as synth  # noqa: E402

from pipeline.config import load_study  # noqa: E402
from pipeline.intake import gate  # noqa: E402
from pipeline.intake import schemas  # noqa: E402
from pipeline.spec import Spec, load_spec  # noqa: E402


@pytest.fixture()
def env(tmp_path):
    specs = synth.make_specs(tmp_path / "specs")
    return load_spec(specs), load_study(specs, synth.STUDY)


def test_a_later_study_with_the_same_spec_derives_nothing_from_the_spec_again(tmp_path, env, monkeypatch):
    spec, study = env
    raw = tmp_path / "raw"
    synth.write_study(raw, spec)
    first = gate.gate_detail(raw, study, spec)
    assert first.findings.empty and len(first.forms) == len(synth.RECORDS)
    asked = []
    real = Spec.form_columns
    monkeypatch.setattr(Spec, "form_columns", lambda self, form: asked.append(form) or real(self, form))
    monkeypatch.setattr(schemas, "_spec_problems", lambda s: asked.append("problems") or [])
    again = gate.gate_detail(raw, study, spec)
    assert asked == []  # read, prepared, padded and checked without asking the spec again
    assert again.findings.empty and again.executed.equals(first.executed)
    assert {f: df.shape for f, df in again.forms.items()} == {f: df.shape for f, df in first.forms.items()}


def test_spec_problems_are_found_once_per_spec_and_still_block(env):
    spec, study = env
    spec.raw_columns.loc[spec.raw_columns["column"] == "AGE", "type"] = "integer"  # a fresh spec's table
    problems = schemas.spec_problems(spec)
    assert problems == ["specs/raw/columns.csv dm.AGE: unknown type 'integer' (known: char, int, float, date, "
                        "pdate, time)"]
    assert schemas.spec_problems(spec) is problems
    with pytest.raises(Exception, match="dm.AGE: unknown type 'integer'"):
        gate.validate_forms(synth.valid_forms(spec), study, spec)
