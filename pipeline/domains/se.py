"""SE (Subject Elements, SDTMIG 3.4 section 5.3) from DM and EX.

The elements a subject actually entered and their start/end come from the shared
:func:`pipeline.derive.epoch.subject_elements` (the same call EX uses for its EPOCH), so SE and
every domain's EPOCH agree. Built right after EX, from the subject elements EX derived for its
EPOCH (``ctx.derived``; derived here from DM and EX when absent); no raw rows are read.
"""

from __future__ import annotations

from pipeline.context import DomainResult, StudyContext
from pipeline.derive.epoch import subject_elements
from pipeline.derive.seq import assign_seq
from pipeline.derive.studyday import study_day_by_subject


def build(ctx: StudyContext) -> DomainResult:
    dm, ex = ctx.datasets["DM"], ctx.datasets["EX"]
    shared = ctx.derived.get("subject_elements")
    se = shared.copy() if shared is not None else subject_elements(dm, ex, ctx.study)
    se["DOMAIN"] = "SE"
    se["SESEQ"] = assign_seq(se, ["TAETORD", "SESTDTC"])
    se["SESTDY"] = study_day_by_subject(se["SESTDTC"], se["USUBJID"], dm)
    se["SEENDY"] = study_day_by_subject(se["SEENDTC"], se["USUBJID"], dm)
    return DomainResult(datasets={"SE": se[ctx.spec.var_names("SE")].reset_index(drop=True)})
