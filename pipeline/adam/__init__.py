"""ADaM (ADaMIG 1.3) analysis datasets derived from the exported SDTM datasets.

Reads only the SDTM frames as exported and the study parameters; the ADaM spec is
``specs/adam/`` (same layout as ``specs/sdtm/``), the clinical rules ``specs/rules/``.
One module per dataset; :mod:`pipeline.adam.stage` runs them and writes ``adam/``.
"""

#: ADaM datasets in build order (a module may read the datasets before it)
REGISTRY = ["adsl", "adae", "adrs", "adlb", "engraftment", "adtte", "adpp"]   # engraftment: derived dates for ADTTE (no dataset)
