"""Raw-extract intake: readers, pandera schemas generated from ``specs/raw``, cross-form
checks and the gate reports.

Public entry points::

    read_study(raw_dir, study, spec) -> (forms, findings)          # pipeline.intake.readers
    validate_forms(forms, study, spec) -> findings                 # pipeline.intake.gate
    gate_study(raw_dir, study, spec) -> (forms, findings)          # read + validate (the build)
    run_validate(args) -> int                                      # python -m pipeline validate
"""

from pipeline.intake.readers import read_study
from pipeline.intake.gate import gate_study, run_validate, validate_forms

__all__ = ["read_study", "validate_forms", "gate_study", "run_validate"]
