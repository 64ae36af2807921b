"""MH/SUPPMH, prior therapy in CM/SUPPCM, prior HSCT in PR, the ADSL history variables and the
gate checks of the mh/prtx/phsct forms, on hand-built forms (dm_ex_ds_fixture: subject 101 is
infused on 15-JAN-2025 and consented on 02-JAN-2025; 102 screen failure consented 05-JAN-2025;
103 enrolled, never infused, consented 10-JAN-2025). Expected values are computed by hand in
the comments."""

import numpy as np
import pandas as pd
import pytest

from dm_ex_ds_fixture import base, context, form, raw_forms, run
from pipeline.adam.adsl import history_variables
from pipeline.domains import mh as mh_mod
from pipeline.intake import checks

MH_COLS = ["VISIT", "MHDAT", "MHSPID", "MHCAT", "MHTERM", "MHPRESP", "MHOCCUR", "MHSTDAT", "MHENDAT", "MHONGO", "DISSUBTP"]


def mh_row(subj, spid, cat, term, st="", en="", ongo="", presp="", occur="", sub="", dat="03-JAN-2025"):
    return {**base(subj), "VISIT": "SCREENING", "MHDAT": dat, "MHSPID": spid, "MHCAT": cat, "MHTERM": term,
            "MHPRESP": presp, "MHOCCUR": occur, "MHSTDAT": st, "MHENDAT": en, "MHONGO": ongo, "DISSUBTP": sub}


def history_forms() -> dict:
    forms = raw_forms()
    forms["mh"] = form([
        mh_row("101", "PD", "PRIMARY DIAGNOSIS", "T-cell acute lymphoblastic leukemia", st="UN-MAR-2023", ongo="Y", sub="T-ALL"),
        mh_row("101", "MH-CNS", "CNS DISEASE HISTORY", "CENTRAL NERVOUS SYSTEM LEUKEMIA", st="10-MAY-2023",
               en="20-JUN-2023", ongo="N", presp="Y", occur="Y"),
        mh_row("102", "PD", "PRIMARY DIAGNOSIS", "T-CELL LYMPHOBLASTIC LYMPHOMA", st="UN-UNK-2022", ongo="Y", sub="T-LBL",
               dat="06-JAN-2025"),
        mh_row("103", "PD", "PRIMARY DIAGNOSIS", "UNHEARD-OF DISEASE", st="01-JUN-2024", ongo="Y", dat="11-JAN-2025"),
        mh_row("999", "PD", "PRIMARY DIAGNOSIS", "T-ALL", st="01-JUN-2024", ongo="Y"),
    ], "mh")
    forms["prtx"] = form([
        {**base("101"), "LINENUM": "1", "CMTRT": "HYPER-CVAD", "CMSTDAT": "01-APR-2023", "CMENDAT": "30-JUN-2023", "BESTRESP": "CR"},
        {**base("101"), "LINENUM": "2", "CMTRT": "NELARABINE", "CMSTDAT": "UN-SEP-2023", "CMENDAT": "15-NOV-2023", "BESTRESP": "NR"},
        {**base("102"), "LINENUM": "1", "CMTRT": "VDLP", "CMSTDAT": "01-FEB-2022", "CMENDAT": "01-JUN-2022", "BESTRESP": "PR"},
    ], "prtx")
    forms["phsct"] = form([
        {**base("101"), "PRSPID": "HSCT-1", "PROCCUR": "Y", "PRTRT": "ALLOGENEIC HEMATOPOIETIC STEM CELL TRANSPLANT",
         "PRSTDAT": "10-AUG-2023"},
        {**base("102"), "PRSPID": "HSCT-0", "PROCCUR": "N", "PRTRT": "HEMATOPOIETIC STEM CELL TRANSPLANT", "PRSTDAT": ""},
    ], "phsct")
    return forms


@pytest.fixture(scope="module")
def built():
    ctx = context(history_forms())
    res = run(ctx, ("dm", "ex", "se", "cm", "pr", "mh"))
    return ctx, res


def test_mh_records(built):
    ctx, res = built
    mh = ctx.datasets["MH"].sort_values(["USUBJID", "MHSEQ"]).reset_index(drop=True)
    cols = ["USUBJID", "MHSEQ", "MHSPID", "MHCAT", "MHDECOD", "MHPRESP", "MHOCCUR", "MHSTDTC", "MHENDTC",
            "MHENRTPT", "MHENTPT", "EPOCH"]
    assert mh[cols].values.tolist() == [
        ["NCT06316427-01-101", 1, "PD", "PRIMARY DIAGNOSIS", "T-cell type acute leukaemia", "", "", "2023-03", "",
         "ONGOING", "2025-01-03", "SCREENING"],
        ["NCT06316427-01-101", 2, "MH-CNS", "CNS DISEASE HISTORY", "Central nervous system leukaemia", "Y", "Y",
         "2023-05-10", "2023-06-20", "", "", "SCREENING"],
        ["NCT06316427-01-102", 1, "PD", "PRIMARY DIAGNOSIS", "Precursor T-lymphoblastic lymphoma/leukaemia", "", "",
         "2022", "", "ONGOING", "2025-01-06", "SCREENING"],
        ["NCT06316427-01-103", 1, "PD", "PRIMARY DIAGNOSIS", "", "", "", "2024-06-01", "", "ONGOING", "2025-01-11",
         "SCREENING"]]
    # MHDY: 03-JAN-2025 is 12 days before RFSTDTC 15-JAN-2025 (no day 0); 102/103 were never infused
    assert mh["MHDY"].iloc[0] == -12 and mh["MHDY"].iloc[2:].isna().all()
    assert mh["MHBODSYS"].iloc[0] == "Neoplasms benign, malignant and unspecified (incl cysts and polyps)"
    assert mh["VISITNUM"].iloc[0] == 1.0


def test_suppmh_subtype_and_reconciliation(built):
    ctx, res = built
    supp = ctx.datasets["SUPPMH"]
    assert supp[["USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QVAL"]].values.tolist() == [
        ["NCT06316427-01-101", "MHSEQ", "1", "DISSUBTP", "T-ALL"],
        ["NCT06316427-01-102", "MHSEQ", "1", "DISSUBTP", "T-LBL"]]
    r = res["mh"]
    # rows 2-5 consumed; row 6 (subject 999, not in DM) rejected; nothing lost
    assert sorted(r.consumed["row"]) == [2, 3, 4, 5]
    assert r.rejected["row"].tolist() == [6]
    # the uncoded verbatim of 103 is an error in a final build
    unc = r.findings[r.findings["check"] == "mh_uncoded"]
    assert unc[["row", "severity"]].values.tolist() == [[5, "error"]]


def test_uncoded_is_a_warning_in_draft():
    ctx = context(history_forms())
    ctx.mode = "draft"
    run(ctx, ("dm", "ex", "se"))
    res = mh_mod.build(ctx)
    assert res.findings.loc[res.findings["check"] == "mh_uncoded", "severity"].tolist() == ["warning"]


def test_coding_decision_overrides_table():
    table = pd.DataFrame({"verbatim": ["T-ALL"], "llt_name": ["T-cell type acute leukaemia"],
                          "pt_name": ["T-cell type acute leukaemia"], "soc_name": ["Neoplasms"]})
    dec = pd.DataFrame({"verbatim": ["weird t all"], "llt_name": ["T-cell type acute leukaemia"]})
    out = mh_mod.code_history(pd.Series(["t all", "Weird T-ALL", "nothing"]), table, dec)
    assert out["MHDECOD"].tolist() == ["T-cell type acute leukaemia", "T-cell type acute leukaemia", ""]
    assert out["coded"].tolist() == [True, True, False]


def test_prior_therapy_in_cm(built):
    ctx, _ = built
    cm = ctx.datasets["CM"].sort_values(["USUBJID", "CMSEQ"]).reset_index(drop=True)
    assert cm[["USUBJID", "CMSEQ", "CMGRPID", "CMSPID", "CMTRT", "CMCAT", "CMSTDTC", "CMENDTC"]].values.tolist() == [
        ["NCT06316427-01-101", 1, "LINE 1", "PT-1", "HYPER-CVAD", "PRIOR CANCER THERAPY", "2023-04-01", "2023-06-30"],
        ["NCT06316427-01-101", 2, "LINE 2", "PT-2", "NELARABINE", "PRIOR CANCER THERAPY", "2023-09", "2023-11-15"],
        ["NCT06316427-01-102", 1, "LINE 1", "PT-1", "VDLP", "PRIOR CANCER THERAPY", "2022-02-01", "2022-06-01"]]
    # 2023-04-01 -> 2025-01-15: 366 (to 2024-04-01, leap day) + 275 (to 2025-01-01) + 14 = 655 days before
    # 2023-06-30 -> 2025-01-15: 366 + 184 (to 2024-12-31) + 15 = 565 days before; partial start: no day
    assert cm["CMSTDY"].iloc[0] == -655 and cm["CMENDY"].iloc[0] == -565 and np.isnan(cm["CMSTDY"].iloc[1])
    supp = ctx.datasets["SUPPCM"]
    got = supp[supp["USUBJID"] == "NCT06316427-01-101"].sort_values(["IDVARVAL", "QNAM"])
    assert got[["IDVARVAL", "QNAM", "QVAL"]].values.tolist() == [
        ["1", "BESTRESP", "CR"], ["1", "LINENUM", "1"], ["2", "BESTRESP", "NR"], ["2", "LINENUM", "2"]]


def test_prior_hsct_in_pr(built):
    ctx, _ = built
    pr = ctx.datasets["PR"].sort_values("USUBJID")
    assert pr[["USUBJID", "PRSPID", "PRCAT", "PRPRESP", "PROCCUR", "PRSTDTC"]].values.tolist() == [
        ["NCT06316427-01-101", "HSCT-1", "PRIOR HSCT", "Y", "Y", "2023-08-10"],
        ["NCT06316427-01-102", "HSCT-0", "PRIOR HSCT", "Y", "N", ""]]


def test_medical_history_report(built):
    ctx, res = built
    rep = res["mh"].reports["medical_history"]
    assert rep[["USUBJID", "DISSUBTP", "CNS_HISTORY", "PRIOR_LINES", "PRIOR_HSCT", "PRIOR_HSCT_DATE"]].values.tolist() == [
        ["NCT06316427-01-101", "T-ALL", "Y", 2, "Y", "2023-08-10"],
        ["NCT06316427-01-102", "T-LBL", "", 1, "N", ""],
        ["NCT06316427-01-103", "", "", 0, "", ""]]


def test_adsl_history_variables(built):
    ctx, _ = built
    sdtm = ctx.datasets
    u = pd.Series(["NCT06316427-01-101", "NCT06316427-01-102", "NCT06316427-01-103", "NCT06316427-01-104"])
    # SAS dates: 01-JAN-2020 = 21915; 01-JAN-2023 = 21915 + 366 + 365 + 365 = 23011;
    # 01-JAN-2024 = 23376; 01-JAN-2025 = 23742. RFICDT 02/05/10-JAN-2025 = 23743, 23746, 23751
    rficdt = pd.Series([23743.0, 23746.0, 23751.0, np.nan])
    out = history_variables(sdtm, ctx.spec, ctx.study, u, rficdt)
    # 101: UN-MAR-2023 -> 01-MAR-2023 (flag D) = 23011 + 31 + 28 = 23070
    # 102: UN-UNK-2022 -> 01-JAN-2022 (flag M) = 21915 + 366 + 365 = 22646; 103: complete 01-JUN-2024
    #      = 23376 + 31 + 29 + 31 + 30 + 31 = 23528
    assert out["DIAGDT"].tolist()[:3] == [23070.0, 22646.0, 23528.0] and np.isnan(out["DIAGDT"].iloc[3])
    assert out["DIAGDTF"].tolist() == ["D", "M", "", ""]
    # DURDIS months: (23743 - 23070) / 30.4375 = 673 / 30.4375 = 22.11 -> 22.1;
    # (23746 - 22646) / 30.4375 = 1100 / 30.4375 = 36.14 -> 36.1; (23751 - 23528) = 223 -> 7.33 -> 7.3
    assert out["DURDIS"].tolist()[:3] == [22.1, 36.1, 7.3]
    assert out["DISSUBTP"].tolist() == ["T-ALL", "T-LBL", "", ""]
    # lines: 101 has 2, 102 has 1, 103 has history but no line -> 0, 104 has no history -> null
    assert out["PRIORLN"].tolist()[:3] == [2.0, 1.0, 0.0] and np.isnan(out["PRIORLN"].iloc[3])
    # prior HSCT: 101 Y on 10-AUG-2023 = 23011 + 212 (Jan-Jul) + 9 = 23232; 102 answered N; 103 not asked
    assert out["PHSCTFL"].tolist() == ["Y", "N", "", ""]
    assert out["PHSCTDT"].iloc[0] == 23232.0 and out["PHSCTDT"].iloc[1:].isna().all()


# ---------------------------------------------------------------------------------------
# gate checks
# ---------------------------------------------------------------------------------------
def _prepared(forms: dict) -> dict:
    spec = context().spec
    out = {}
    for name, f in forms.items():
        f = f.copy()
        for c in spec.form_columns(name)["column"]:
            if c not in f:
                f[c] = np.nan
        out[name] = f.reset_index(drop=True)
    return out


def test_gate_history_after_consent_and_lines():
    forms = history_forms()
    # a diagnosis on the day of consent is fine; the day after is not (101 consented 02-JAN-2025)
    forms["mh"].loc[0, "MHSTDAT"] = "02-JAN-2025"
    forms["mh"].loc[1, "MHENDAT"] = "03-JAN-2025"
    # the month of consent cannot decide a day-unknown date: no finding
    forms["prtx"].loc[1, "CMSTDAT"] = "UN-JAN-2025"
    forms["prtx"].loc[2, "CMENDAT"] = "01-JAN-2022"          # before its start (01-FEB-2022)
    forms["phsct"].loc[1, "PRSTDAT"] = "01-JAN-2020"         # a date although PROCCUR=N
    forms = _prepared(forms)
    ctx = context()
    f = checks.check_history_before_consent(forms, ctx.study, ctx.spec)
    assert f[["file", "row", "column"]].values.tolist() == [["mh.csv", 3, "MHENDAT"]]
    f = checks.check_prior_lines(forms, ctx.study, ctx.spec)
    # row 3 now starts in JAN-2025 but ended 15-NOV-2023: also before its start
    assert f[["row", "check"]].values.tolist() == [[3, "prtx.end_before_start"], [4, "prtx.end_before_start"]]
    f = checks.check_prior_hsct(forms, ctx.study, ctx.spec)
    assert sorted(f["check"]) == ["phsct.date_without_transplant", "phsct.question_missing"]
    f = checks.check_medical_history(forms, ctx.study, ctx.spec)
    assert f.empty


def test_gate_medical_history_rules():
    forms = history_forms()
    forms["mh"] = forms["mh"][forms["mh"]["SUBJID"] != "102"].reset_index(drop=True)   # no diagnosis for 102
    forms["mh"].loc[1, "MHOCCUR"] = np.nan                                           # unanswered question
    forms["mh"].loc[0, "MHENDAT"] = "01-DEC-2024"                                    # ongoing with an end
    forms["prtx"].loc[1, "LINENUM"] = "3"                                            # 1, 3: a gap
    forms = _prepared(forms)
    ctx = context()
    f = checks.check_medical_history(forms, ctx.study, ctx.spec)
    assert sorted(f["check"]) == ["mh.occurrence_missing", "mh.ongoing_with_end", "mh.primary_diagnosis_missing"]
    f = checks.check_prior_lines(forms, ctx.study, ctx.spec)
    assert f["check"].tolist() == ["prtx.line_gap"]


def test_gate_remaining_history_checks():
    forms = history_forms()
    forms["mh"].loc[2, "MHSTDAT"] = np.nan                                       # 102: no diagnosis date
    forms["mh"] = pd.concat([forms["mh"], forms["mh"].iloc[[0]]], ignore_index=True)   # 101: diagnosis twice
    forms["mh"]["_ROW"] = np.arange(2, len(forms["mh"]) + 2)
    forms["prtx"].loc[2, "CMSTDAT"] = "01-JAN-2022"
    forms["prtx"].loc[2, "CMENDAT"] = "01-MAR-2022"
    forms["prtx"].loc[2, "LINENUM"] = "1"
    forms["prtx"] = pd.concat([forms["prtx"], forms["prtx"].iloc[[2]].assign(LINENUM="2", CMSTDAT="01-DEC-2021")],
                              ignore_index=True)                                 # 102 line 2 starts before line 1
    forms["prtx"]["_ROW"] = np.arange(2, len(forms["prtx"]) + 2)
    forms["phsct"].loc[0, "PRSTDAT"] = np.nan                                    # 101: Y without a date
    forms = _prepared(forms)
    ctx = context()
    f = checks.check_medical_history(forms, ctx.study, ctx.spec)
    assert sorted(set(f["check"])) == ["mh.diagnosis_date_missing", "mh.primary_diagnosis_repeated"]
    assert sorted(f.loc[f["check"] == "mh.primary_diagnosis_repeated", "row"]) == [2, 7]
    f = checks.check_prior_lines(forms, ctx.study, ctx.spec)
    assert f[["row", "check"]].values.tolist() == [[5, "prtx.line_overlap"]]
    f = checks.check_prior_hsct(forms, ctx.study, ctx.spec)
    assert f[["row", "check"]].values.tolist() == [[2, "phsct.date_missing"], [4, "phsct.question_missing"]]


def test_subject_summary_without_a_completed_hsct():
    """No disease subtype and a prior HSCT recorded as not done (PROCCUR N) for the only
    subject: DISSUBTP empty, PRIOR_HSCT N, its type and date empty text (str), and no pandas
    warning about filling float64 with text (the mapped values are all missing then; pandas
    says a later version will raise)."""
    import warnings

    mh = pd.DataFrame({"USUBJID": ["S-1"], "MHCAT": [mh_mod.PRIMARY], "MHTERM": ["T-ALL"],
                       "MHDECOD": ["T-cell type acute leukaemia"], "MHSTDTC": ["2023-01-05"], "MHOCCUR": [""]})
    supp = pd.DataFrame(columns=["USUBJID", "QNAM", "QVAL"])
    pr = pd.DataFrame({"USUBJID": ["S-1"], "PROCCUR": ["N"], "PRTRT": ["ALLOGENEIC HSCT"], "PRSTDTC": [""]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = mh_mod.subject_summary(mh, supp, None, None, pr)
    assert out[["DISSUBTP", "PRIOR_HSCT", "PRIOR_HSCT_TYPE", "PRIOR_HSCT_DATE"]].to_dict("records") == [
        {"DISSUBTP": "", "PRIOR_HSCT": "N", "PRIOR_HSCT_TYPE": "", "PRIOR_HSCT_DATE": ""}]
    assert out["PRIOR_HSCT_TYPE"].dtype == "str"
