"""SDTM domain modules, one per domain, each exposing ``build(ctx) -> DomainResult``.

``REGISTRY`` is the build order: a module may read datasets built before it from
``ctx.datasets`` (DM first, because every other domain needs RFSTDTC and USUBJID).
A module listed here that does not exist yet is skipped by the builder with a log line.
"""

REGISTRY: list[str] = [
    "dm",        # DM, SUPPDM
    "ex",        # EX
    "se",        # SE (subject elements, from DM and EX)
    "ds",        # DS
    "vs",        # VS
    "trial_design",  # TS, TA, TE, TV, TI
    "lb",        # LB (+ cellular kinetics, derived CrCl)
    "ie",        # IE (after LB: enrolled subjects failing the eligibility labs get a derived IE record)
    "pc",        # PC, PP (CAR-T cellular kinetics from the lb form's CAR-T EXPANSION rows)
    "ae",        # AE, SUPPAE, FA, RELREC (CRS/ICANS by ASTCT)
    "dd",        # DD (primary cause of death); death/AE and AE/disposition cross-checks (needs DS and AE)
    "rs",        # RS and supporting findings
    "cm",        # CM, SUPPCM (prior therapy lines; concomitant medications)
    "pr",        # PR, SUPPPR, FAPR (split FA: FASEQ after FA's, so after AE), RELREC rows: prior HSCT, leukapheresis, HSCT after CAR-T
    "mh",        # MH, SUPPMH (primary diagnosis, relevant history); after CM and PR for its summary report
    "tu",        # TU, TR (extramedullary disease imaging, form emd)
]

#: modules run after :func:`pipeline.derive.visits.renumber_unscheduled` has given every
#: unscheduled visit its one VISITNUM across all datasets (:func:`pipeline.build.build_study`):
#: they read every dataset the REGISTRY built, whatever domains are added to it later
AFTER_VISITS: list[str] = [
    "sv",        # SV (subject visits, from the visits of every domain)
    "dv",        # DV (protocol deviations by the study's [[deviations]] rules; reads IE, RS, SV)
]
