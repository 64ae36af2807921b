"""Leukemia depth (issue 16 item 3): MRD negativity with the assay's sensitivity, CNS status and
CNS remission, extramedullary disease by imaging, and the overall response that combines them.

Every expected value is worked out by hand from the rule tables' text (NCCN ALL v3.2023) and
written as a literal here, never computed by the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.adam import adrs as adrs_mod
from pipeline.errors import ConfigError
from pipeline.spec import read_table

from conftest import SPECS


class RuleSource:
    """The spec's rule tables without loading the whole spec."""

    def rule(self, name: str) -> pd.DataFrame:
        return read_table(SPECS / "rules" / f"{name}.csv")


SRC = RuleSource()
NCCN = {"response": {"mrd": {"rule_set": "NCCN ALL v3.2023"}}}
FLOW, NGS = "FLOW CYTOMETRY", "NEXT GENERATION SEQUENCING"


def mrd_frame(rows: list[tuple]) -> pd.DataFrame:
    """LBDA MRD records: (method, LBORRES, LBLLOQ); LBSTRESN is the number LBORRES holds."""
    out = []
    for k, (method, orres, lloq) in enumerate(rows):
        try:
            stresn = float(orres)
        except ValueError:
            stresn = np.nan
        out.append({"USUBJID": f"S{k:02d}", "LBTESTCD": "MRD", "LBMETHOD": method, "LBORRES": orres,
                    "LBSTRESN": stresn, "LBLLOQ": lloq, "LBDTC": "2024-01-29", "LBDY": 29.0, "LBSEQ": float(k + 1),
                    "VISIT": "DAY 28", "VISITNUM": 13.0})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------
# MRD
# ---------------------------------------------------------------------------------------
def test_mrd_status_at_10e_minus_4_and_with_the_assay_sensitivity():
    """NCCN ALL v3.2023: MRD negative < 10^-4 = 0.01% of nucleated cells (strict); a result
    not detected counts only if the assay could see 10^-4 (sensitivity LLOQ <= 0.01%)."""
    rules = adrs_mod.mrd_rules(SRC, NCCN)
    cases = [
        ((FLOW, "0.01", 0.001), "POSITIVE"),      # exactly 10^-4: not below it
        ((FLOW, "0.0099", 0.001), "NEGATIVE"),    # just below
        ((FLOW, "0.0101", 0.001), "POSITIVE"),    # just above
        ((FLOW, "<0.01", 0.01), "NEGATIVE"),      # not detected at sensitivity 10^-4 exactly: < 10^-4
        ((FLOW, "<0.011", 0.011), "NE"),          # sensitivity just worse than 10^-4
        ((FLOW, "<0.1", 0.1), "NE"),              # not detected at 10^-3: says nothing about 10^-4
        ((FLOW, "0.005", 0.1), "NE"),             # a number below the assay's LLOQ 0.1% is not quantified
        ((FLOW, "<0.001", 0.001), "NEGATIVE"),    # 10^-5 assay
        ((NGS, "<0.0001", 0.0001), "NEGATIVE"),   # NGS at 10^-6
        ((NGS, "0.012", 0.0001), "POSITIVE"),     # NGS 1.2 x 10^-4
        (("", "0.001", 0.001), "NE"),             # method not recorded: no rule row
        ((FLOW, "NOT DETECTED", np.nan), "NE"),   # not detected, sensitivity not recorded
        ((FLOW, "0.0099", np.nan), "NEGATIVE"),   # quantified below the threshold, LLOQ not recorded
    ]
    st = adrs_mod.mrd_status(mrd_frame([c for c, _ in cases]), rules)
    assert st["status"].tolist() == [e for _, e in cases]
    assert st["basis"].iloc[0] == "MRD 0.01% >= 0.01% (FLOW CYTOMETRY)"
    assert st["basis"].iloc[3] == "not detected at sensitivity 0.01% <= 0.01% (FLOW CYTOMETRY)"
    assert st["basis"].iloc[5] == "not detected at sensitivity 0.1%, worse than the 0.01% threshold (FLOW CYTOMETRY)"
    assert st["basis"].iloc[10] == "no MRD rule for method ''"


def test_the_mrd_threshold_is_the_protocols():
    """The NCCN rows hold 10^-4 for flow and NGS; a study naming another rule set gets its own
    threshold, and a study without [response.mrd] gets no MRD parameters."""
    t = SRC.rule("mrd_negativity")
    nccn = t[t["rule_set"] == "NCCN ALL v3.2023"].set_index("method")
    assert nccn.loc[FLOW, ["threshold", "max_lloq", "unit"]].tolist() == ["0.01", "0.01", "%"]
    assert nccn.loc[NGS, ["threshold", "max_lloq"]].tolist() == ["0.01", "0.01"]

    class Other:
        def rule(self, name):
            return pd.DataFrame([{"rule_set": "P", "lbtestcd": "MRD", "method": FLOW, "unit": "%", "operator": "lt",
                                  "threshold": "0.001", "max_lloq": "0.001", "categories": "CR",
                                  "description": "d", "source": "s"}])
    rules = adrs_mod.mrd_rules(Other(), {"response": {"mrd": {"rule_set": "P"}}})
    st = adrs_mod.mrd_status(mrd_frame([(FLOW, "0.005", 0.001), (FLOW, "<0.01", 0.01), (FLOW, "0.0009", 0.0001)]), rules)
    assert st["status"].tolist() == ["POSITIVE", "NE", "NEGATIVE"]   # 10^-5 protocol: 0.005% and <0.01% do not pass
    assert adrs_mod.mrd_rules(SRC, {"response": {}}).empty
    with pytest.raises(ConfigError, match="rule_set"):
        adrs_mod.mrd_rules(SRC, {"response": {"mrd": {"rule_set": "nope"}}})


def test_mrd_negative_remission_needs_remission_and_negative_mrd_the_same_day():
    """MRDNCR: CR/CRh/CRi (after the category map) with MRD NEGATIVE on the same date, within
    the BOR window (protocol days 1..365)."""
    rules = adrs_mod.mrd_rules(SRC, NCCN)
    resp = pd.DataFrame([
        # A: CRi (a CRh mapped to CRi) day 28 with MRD not detected at 10^-4 -> Y
        {"USUBJID": "A", "AVALC": "CRi", "RSDTC": "2024-01-29", "RSDY": 29.0},
        # B: CR day 28 but MRD exactly 10^-4 -> N
        {"USUBJID": "B", "AVALC": "CR", "RSDTC": "2024-01-29", "RSDY": 29.0},
        # C: MLFS with MRD negative (not a remission category) -> N
        {"USUBJID": "C", "AVALC": "MLFS", "RSDTC": "2024-01-29", "RSDY": 29.0},
        # D: CR with MRD not detected at 10^-3 (NE) -> N
        {"USUBJID": "D", "AVALC": "CR", "RSDTC": "2024-01-29", "RSDY": 29.0},
        # E: CR with negative MRD on another date -> N
        {"USUBJID": "E", "AVALC": "CR", "RSDTC": "2024-01-29", "RSDY": 29.0},
    ]).assign(RSEVAL="SPONSOR", ADT=lambda d: pd.to_datetime(d["RSDTC"]).sub(pd.Timestamp("1960-01-01")).dt.days)
    m = mrd_frame([(FLOW, "<0.01", 0.01), (FLOW, "0.01", 0.001), (FLOW, "<0.01", 0.01), (FLOW, "<0.1", 0.1),
                   (FLOW, "<0.01", 0.01)])
    m["USUBJID"] = ["A", "B", "C", "D", "E"]
    m.loc[4, "LBDTC"] = "2024-01-30"
    st = adrs_mod.mrd_status(m, rules)
    adsl = pd.DataFrame({"USUBJID": ["A", "B", "C", "D", "E", "F"], "SAFFL": ["Y"] * 5 + ["N"]})
    out = adrs_mod.mrd_negative_remission(resp, st, rules, adsl, 365).set_index("USUBJID")
    assert out["AVALC"].to_dict() == {"A": "Y", "B": "N", "C": "N", "D": "N", "E": "N"}
    assert out.loc["A", ["SRCDOM", "SRCVAR", "SRCSEQ"]].tolist() == ["LB", "LBSTRESC", 1.0]
    assert out.loc["A", "ABASIS"] == "CRi with MRD negative"


# ---------------------------------------------------------------------------------------
# CNS status and CNS response
# ---------------------------------------------------------------------------------------
def cns_of(rows: list[dict]) -> list[str]:
    from pipeline.rules import response as R
    rules = R.validate_rules(SRC.rule("cns_status"), "cns_status")
    rules = rules[rules["criteria"] == "NCCN ALL v3.2023"]
    base = {"CSFBLAST": "", "CSFWBC": np.nan, "CSFCOND": "", "PBBLAST": 0.0, "CSF_RATIO": np.nan, "CNSSIGN": "N"}
    f = pd.DataFrame([{**base, **r} for r in rows])
    return R.evaluate_criteria(f, rules, ["CNS-1", "CNS-2", "CNS-3"])["response"].tolist()


def test_cns_status_at_the_5_per_ul_boundary_with_blasts_traumatic_tap_and_signs():
    """NCCN ALL v3.2023: CNS-1 no blasts; CNS-2 blasts with WBC < 5/uL; CNS-3 blasts with WBC
    >= 5/uL or clinical signs; traumatic tap with circulating blasts and >= 5 WBC with blasts:
    CSF WBC/RBC at least 2 x the blood WBC/RBC -> CNS-3, otherwise CNS-2."""
    P, N, T = "POSITIVE", "NEGATIVE", "TRAUMATIC TAP"
    cases = [
        ({"CSFBLAST": P, "CSFWBC": 4.9}, "CNS-2"),
        ({"CSFBLAST": P, "CSFWBC": 5.0}, "CNS-3"),                      # exactly 5/uL is CNS-3
        ({"CSFBLAST": P, "CSFWBC": 4.0}, "CNS-2"),
        ({"CSFBLAST": N, "CSFWBC": 50.0}, "CNS-1"),                     # no blasts whatever the WBC
        ({"CSFBLAST": N, "CSFWBC": 0.0, "CNSSIGN": "Y"}, "CNS-3"),      # cranial nerve palsy etc.
        ({"CSFBLAST": P, "CSFWBC": 20.0, "CSFCOND": T, "PBBLAST": 10.0, "CSF_RATIO": 2.0}, "CNS-3"),   # 2-fold
        ({"CSFBLAST": P, "CSFWBC": 20.0, "CSFCOND": T, "PBBLAST": 10.0, "CSF_RATIO": 1.99}, "CNS-2"),
        ({"CSFBLAST": P, "CSFWBC": 20.0, "CSFCOND": T, "PBBLAST": 0.0}, "CNS-3"),    # no blood blasts to blame
        ({"CSFBLAST": P, "CSFWBC": 20.0, "CSFCOND": T, "PBBLAST": 10.0}, "NE"),      # ratio unknown
        ({"CSFBLAST": P, "CSFWBC": 20.0, "CSFCOND": T, "PBBLAST": 0.1, "CSF_RATIO": 2.5}, "CNS-3"),
        ({"CSFBLAST": P, "CSFWBC": 20.0, "CSFCOND": T, "PBBLAST": 0.1, "CSF_RATIO": 1.5}, "CNS-2"),
        ({"CSFBLAST": P, "CSFWBC": 4.0, "CSFCOND": T, "PBBLAST": 10.0}, "CNS-2"),    # < 5: CNS-2 anyway
        ({"CSFBLAST": N, "CSFWBC": 3.0, "CSFCOND": T, "PBBLAST": 10.0}, "CNS-1"),
        ({"CSFBLAST": P, "CSFWBC": 5.0, "CSFCOND": T, "PBBLAST": 0.0}, "CNS-3"),    # traumatic, at 5/uL
        ({"CSFBLAST": P, "CSFWBC": 4.9, "CSFCOND": T, "PBBLAST": 0.0}, "CNS-2"),
        ({"CSFBLAST": P, "CSFWBC": 5.0, "CSFCOND": T, "PBBLAST": 10.0, "CSF_RATIO": 3.0}, "CNS-3"),
        ({"CSFBLAST": P, "CSFWBC": 4.9, "CSFCOND": T, "PBBLAST": 10.0, "CSF_RATIO": 3.0}, "CNS-2"),
        # traumatic tap at exactly 5/uL, blood blasts to blame (ratio < 2): CNS-2 by the 2-fold rule
        ({"CSFBLAST": P, "CSFWBC": 5.0, "CSFCOND": T, "PBBLAST": 10.0, "CSF_RATIO": 1.5}, "CNS-2"),
        ({"CSFBLAST": P}, "NE"),                                        # WBC not counted
        ({}, "NE"),
    ]
    assert cns_of([c for c, _ in cases]) == [e for _, e in cases]


def test_csf_blood_ratio_by_hand():
    """CSF 20 WBC and 1000 RBC per uL: 0.02; blood WBC 10 x10^9/L and RBC 4 x10^12/L:
    10e9 / 4e12 = 0.0025; ratio 0.02 / 0.0025 = 8.0. Blood counts 8 days away: not used."""
    a = pd.DataFrame({"USUBJID": ["S1", "S2"], "_date": pd.to_datetime(["2024-01-29", "2024-01-29"]),
                      "CSFWBC": ["20", "20"], "CSFRBC": ["1000", "0"]})
    lb = pd.DataFrame({"USUBJID": ["S1", "S1", "S2", "S2"], "LBTESTCD": ["WBC", "RBC", "WBC", "RBC"],
                       "LBDTC": ["2024-01-29", "2024-01-30", "2024-01-29", "2024-02-06"],
                       "LBSTRESN": [10.0, 4.0, 10.0, 4.0], "LBSPEC": "BLOOD"})
    r = adrs_mod.csf_blood_ratio(a, {"LB": lb}, 7)
    assert r.iloc[0] == pytest.approx(8.0, rel=1e-12)
    assert np.isnan(r.iloc[1])                                 # CSF RBC 0 (and blood RBC 8 days away)


def test_cns_remission_and_relapse_against_the_baseline():
    """NCCN: CNS remission = CNS-1 after CNS-2/3 at diagnosis (baseline); CNS relapse = new CNS-3."""
    P, N = "POSITIVE", "NEGATIVE"
    rows = []
    def add(s, day, blast, wbc):
        rows.append({"USUBJID": s, "_date": pd.Timestamp("2024-01-01") + pd.Timedelta(days=day), "_pre": day < 0,
                     "_post": day >= 1, "CSFBLAST": blast, "CSFWBC": wbc, "CSFCOND": "", "CNSSIGN": "N",
                     "PBBLAST": "0"})
    add("A", -10, P, "12"); add("A", 28, N, "1"); add("A", 90, N, "0"); add("A", 180, P, "8")
    add("B", -10, P, "2"); add("B", 28, P, "3")
    add("C", -10, N, "0"); add("C", 28, P, "6")
    add("D", -10, N, "0"); add("D", 28, P, "2")
    add("E", -10, N, "0"); add("E", 28, N, "1")
    add("F", 28, N, "0")                                         # no baseline CSF
    add("G", -10, P, "3"); add("G", 28, P, "")                   # post-infusion WBC missing: NE
    a = pd.DataFrame(rows)
    study = {"response": {"cns": {"criteria": "NCCN ALL v3.2023"}, "count_window_days": 7}}
    out = adrs_mod.cns_statuses(a, {}, SRC, study)
    got = [(a.at[k, "USUBJID"], out.at[k, "CNS"], out.at[k, "CNSRESP"]) for k in a.index if a.at[k, "_post"]]
    assert got == [("A", "CNS-1", "CNS REMISSION"), ("A", "CNS-1", "CNS REMISSION"), ("A", "CNS-3", "CNS RELAPSE"),
                   ("B", "CNS-2", "NO CNS REMISSION"), ("C", "CNS-3", "CNS RELAPSE"),
                   ("D", "CNS-2", "NO CNS REMISSION"), ("E", "CNS-1", "NO CNS DISEASE"),
                   ("F", "CNS-1", "NO CNS DISEASE"), ("G", "NE", "NE")]
    assert out.loc[a["_pre"], "CNSRESP"].eq("").all()           # baseline: a status, no response


# ---------------------------------------------------------------------------------------
# extramedullary disease by imaging
# ---------------------------------------------------------------------------------------
def emd_sdtm(lesions: dict[str, list[tuple]]) -> dict[str, pd.DataFrame]:
    """TU/TR/DM of subjects: lesions[s] = [(TRDY, lesion id, NEW?, LDIAM, LPERP, PET)]. Infusion
    2024-01-01 (study day 1); first exposure (lymphodepletion) 2023-12-27; TRDY -5 is baseline."""
    tu, tr = [], []
    for s, rows in lesions.items():
        seen = set()
        for k, (dy, lid, new, ld, lp, pet) in enumerate(rows):
            dtc = str((pd.Timestamp("2024-01-01") + pd.Timedelta(days=dy - 1 if dy >= 1 else dy)).date())
            if lid not in seen:
                seen.add(lid)
                tu.append({"USUBJID": s, "TULNKID": lid, "TUSTRESC": "NEW" if new else "TARGET"})
            for t, v, c in (("LDIAM", ld, f"{ld:g}"), ("LPERP", lp, f"{lp:g}"), ("PETPOS", np.nan, pet)):
                tr.append({"USUBJID": s, "TRLNKID": lid, "TRTESTCD": t, "TRSTRESN": v, "TRSTRESC": c, "TRDTC": dtc,
                           "TRDY": float(dy), "TRSEQ": float(len(tr) + 1), "VISIT": "", "VISITNUM": np.nan})
    dm = pd.DataFrame({"USUBJID": list(lesions), "RFXSTDTC": "2023-12-27", "RFSTDTC": "2024-01-01"})
    return {"TU": pd.DataFrame(tu), "TR": pd.DataFrame(tr), "DM": dm}


def test_emd_response_pr_at_exactly_50_percent_pd_above_25_percent_and_new_lesions():
    """NCCN ALL v3.2023 lymphomatous EMD: PR >= 50% SPD decrease from baseline; PD > 25% SPD
    increase (from the nadir) or a new lesion; CR complete resolution or a PET-negative residual
    mass after a positive PET; relapse = regrowth after CR. SPD by hand = sum of LDIAM x LPERP."""
    B = (-5, "T01", False, 40.0, 20.0, "Y")            # baseline 40 x 20 = 800 mm2, PET positive
    sd = emd_sdtm({
        "A": [B, (29, "T01", False, 40.0, 10.0, "Y")],                                   # 400: -50% exactly
        "B": [B, (29, "T01", False, 41.0, 10.0, "Y")],                                   # 410: -48.75%
        "C": [B, (29, "T01", False, 0.0, 0.0, "N"), (91, "T01", False, 10.0, 10.0, "Y")],  # CR, then 100
        "D": [B, (29, "T01", False, 20.0, 20.0, "Y"), (91, "T01", False, 20.0, 25.0, "Y"),   # 400, 500 (+25%)
              (181, "T01", False, 21.0, 24.0, "Y")],                                     # 504: +26% on 400
        "E": [B, (29, "T01", False, 40.0, 10.0, "Y"), (29, "N01", True, 10.0, 10.0, "Y")],  # new lesion
        "F": [B, (29, "T01", False, 20.0, 15.0, "N")],                                   # 300, PET negative
        "G": [(-5, "T01", False, 40.0, 20.0, "N"), (29, "T01", False, 0.0, 0.0, "N")],   # CT-only disease resolved
        # PET negative at baseline (CT criteria only): -50% PR; +25% on the nadir NR; +26% PD
        "H": [(-5, "T01", False, 40.0, 20.0, "N"), (29, "T01", False, 40.0, 10.0, "N")],
        "I": [(-5, "T01", False, 40.0, 20.0, "N"), (29, "T01", False, 20.0, 20.0, "N"),
              (91, "T01", False, 20.0, 25.0, "N"), (181, "T01", False, 21.0, 24.0, "N")],
        "J": [(-5, "T01", False, 40.0, 20.0, "N"), (29, "T01", False, 41.0, 10.0, "N")],   # -48.75%: NR
        # after CR: still resolved (SPD 0) is CR, even with a PET-positive spot and no CT mass; any
        # regrowth (0.3 x 0.3 = 0.09 mm2 > 0) is a relapse, PET negative at baseline (K) or positive (L)
        "K": [(-5, "T01", False, 40.0, 20.0, "N"), (29, "T01", False, 0.0, 0.0, "N"),
              (91, "T01", False, 0.0, 0.0, "N"), (181, "T01", False, 0.3, 0.3, "N")],
        "L": [B, (29, "T01", False, 0.0, 0.0, "N"), (91, "T01", False, 0.0, 0.0, "Y"),
              (181, "T01", False, 0.3, 0.3, "Y")],
    })
    study = {"response": {"emd": {"criteria": "NCCN ALL v3.2023"}}}
    e = adrs_mod.emd_responses(sd, SRC, study)
    got = list(zip(e["USUBJID"], e["TRDY"], e["SPD"], e["response"]))
    assert got == [("A", 29.0, 400.0, "PR"), ("B", 29.0, 410.0, "NR"), ("C", 29.0, 0.0, "CR"),
                   ("C", 91.0, 100.0, "RELAPSE"), ("D", 29.0, 400.0, "PR"), ("D", 91.0, 500.0, "NR"),
                   ("D", 181.0, 504.0, "PD"), ("E", 29.0, 400.0, "PD"), ("F", 29.0, 300.0, "CR"),
                   ("G", 29.0, 0.0, "CR"), ("H", 29.0, 400.0, "PR"), ("I", 29.0, 400.0, "PR"),
                   ("I", 91.0, 500.0, "NR"), ("I", 181.0, 504.0, "PD"), ("J", 29.0, 410.0, "NR"),
                   ("K", 29.0, 0.0, "CR"), ("K", 91.0, 0.0, "CR"), ("K", 181.0, 0.09, "RELAPSE"),
                   ("L", 29.0, 0.0, "CR"), ("L", 91.0, 0.0, "CR"), ("L", 181.0, 0.09, "RELAPSE")]
    d = e.set_index(["USUBJID", "TRDY"])
    assert d.loc[("A", 29.0), "SPD_RCHG"] == -50.0 and d.loc[("D", 91.0), "SPD_NCHG"] == 25.0
    assert d.loc[("D", 181.0), "SPD_NCHG"] == pytest.approx(26.0)


def combined(rows: list[dict]) -> list[str]:
    from pipeline.rules import response as R
    rules = R.validate_rules(SRC.rule("response_combined"), "response_combined")
    rules = rules[rules["criteria"] == "NCCN ALL v3.2023"]
    f = pd.DataFrame([{"BM": "", "CNSR": "", "EMDR": "", **r} for r in rows])
    return R.evaluate_criteria(f, rules, sorted(set(rules["category"])))["response"].tolist()


def test_overall_response_combines_marrow_cns_and_emd():
    """NCT06316427 ORR components: marrow CR/CRh/CRi/MLFS/aplastic marrow, CNS remission, EMD CR/PR."""
    cases = [
        ({"BM": "CR", "CNSR": "NO CNS DISEASE", "EMDR": "PR"}, "PR"),          # marrow CR, EMD PR -> PR
        ({"BM": "CR", "CNSR": "CNS REMISSION", "EMDR": "CR"}, "CR"),
        ({"BM": "CRh"}, "CRh"),                                                 # no CSF, no EMD imaging
        ({"BM": "MLFS", "EMDR": "PR"}, "PR"),
        ({"BM": "CR", "CNSR": "NO CNS REMISSION", "EMDR": "CR"}, "NR"),         # CNS disease left
        ({"BM": "CR", "EMDR": "NR"}, "NR"),
        ({"BM": "CR", "EMDR": "PD"}, "PD"),
        ({"BM": "CR", "CNSR": "CNS RELAPSE"}, "RELAPSE"),
        ({"BM": "CR", "EMDR": "RELAPSE"}, "RELAPSE"),
        ({"BM": "NR", "EMDR": "CR"}, "NR"),
        ({"BM": "NE", "EMDR": "CR"}, "NE"),
    ]
    assert combined([c for c, _ in cases]) == [e for _, e in cases]


def test_crh_maps_to_cri_at_the_platelet_and_anc_cut_offs():
    """NCT05164042 (category_map CRh -> CRi). By hand from NCCN: CR ANC >= 1.0 and PLT >= 100;
    CRh ANC > 0.5 and PLT > 50; CRi exactly one lineage at the CR cut-off; else MLFS."""
    from pipeline.config import load_study
    from pipeline.rules import response as R
    study = load_study(SPECS, "NCT05164042")
    cats = list(study["response"]["categories"])
    rows = [{"NEUT": 0.6, "PLAT": 100.0},     # CRh (and CRi) -> CRi
            {"NEUT": 0.5, "PLAT": 100.0},     # ANC exactly 0.5: not CRh; platelets recovered: CRi
            {"NEUT": 0.51, "PLAT": 50.0},     # platelets exactly 50: not CRh, no lineage: MLFS
            {"NEUT": 0.51, "PLAT": 50.5},     # CRh -> CRi
            {"NEUT": 1.0, "PLAT": 99.5},      # CRh (and CRi: ANC recovered) -> CRi
            {"NEUT": 1.0, "PLAT": 100.0}]     # CR
    f = pd.DataFrame([{"BMBLAST": 1.0, "PBBLAST": 0.0, "EMD": "N", "BMCELL": 40.0, "PRIMDIAG": "B-ALL",
                       "BMBLAST_BL": np.nan, "BMBLAST_ACHG": np.nan, "BMBLAST_RCHG": np.nan, "EMD_BL": "N",
                       "USUBJID": f"S{i}", "_date": pd.Timestamp("2024-01-29"), **r} for i, r in enumerate(rows)])
    d = R.derive_response(f, R.response_rules(SRC, "leukemia", "NCCN ALL v3.2023"), cats, {"CR", "CRh", "CRi"})
    assert d["response"].tolist() == ["CRh", "CRi", "MLFS", "CRh", "CRh", "CR"]
    m = R.protocol_categories(d, dict(study["response"]["category_map"]), cats)
    assert m["response"].tolist() == ["CRi", "CRi", "MLFS", "CRi", "CRi", "CR"]


def test_tu_tr_records_from_form_emd():
    """Form emd -> TU (one record per lesion at first identification: TARGET / NEW) and TR
    (LDIAM, LPERP, PETPOS per lesion and imaging, linked by TRLNKID = TULNKID)."""
    from pipeline.context import StudyContext
    from pipeline.domains import tu as tu_mod
    from pipeline.spec import load_spec
    from test_rs_domain import dm_frame, form, se_frame
    from pipeline.config import load_study
    sid = "NCT06316427"
    study = load_study(SPECS, sid)
    spec = load_spec(SPECS)
    inf = "2024-01-01T10:00"
    dm = dm_frame(sid, {"001": {"rf": inf}})
    cols = spec.form_columns("emd")["column"].tolist()
    b = {"STUDYID": sid, "SITEID": "01", "SUBJID": "001", "TRMETHOD": "PET/CT SCAN", "TUNEW": "N"}
    emd = form([
        {**b, "VISIT": "SCREENING", "TRDAT": "20-DEC-2023", "TULNKID": "T01", "TULOC": "Mediastinum",
         "LDIAM": "40", "LPERP": "20", "PETPOS": "Y"},
        {**b, "VISIT": "DAY 28", "TRDAT": "29-JAN-2024", "TULNKID": "T01", "TULOC": "Mediastinum",
         "LDIAM": "40", "LPERP": "10", "PETPOS": "Y"},
        {**b, "VISIT": "DAY 28", "TRDAT": "29-JAN-2024", "TULNKID": "N01", "TULOC": "Pleura", "TUNEW": "Y",
         "LDIAM": "15", "LPERP": "12", "PETPOS": "Y"},
        {**b, "SUBJID": "099", "VISIT": "DAY 28", "TRDAT": "29-JAN-2024", "TULNKID": "T01", "TULOC": "X"},
    ], "emd", cols)
    ctx = StudyContext(study=study, spec=spec, forms={"emd": emd})
    ctx.datasets["DM"] = dm
    ctx.datasets["SE"] = se_frame(dm, study)
    res = tu_mod.build(ctx)
    tu, tr = res.datasets["TU"], res.datasets["TR"]
    assert tu[["TULNKID", "TUORRES", "TULOC", "TUDTC", "TUSEQ"]].values.tolist() == [
        ["T01", "TARGET", "MEDIASTINUM", "2023-12-20", 1.0], ["N01", "NEW", "PLEURA", "2024-01-29", 2.0]]
    assert set(tu["TUTESTCD"]) == {"TUMIDENT"} and set(tu["DOMAIN"]) == {"TU"}
    t01 = tr[tr["TRLNKID"] == "T01"].sort_values(["TRDTC", "TRTESTCD"])
    assert t01[["TRDTC", "TRTESTCD", "TRSTRESC", "TRSTRESU"]].values.tolist() == [
        ["2023-12-20", "LDIAM", "40", "mm"], ["2023-12-20", "LPERP", "20", "mm"], ["2023-12-20", "PETPOS", "Y", ""],
        ["2024-01-29", "LDIAM", "40", "mm"], ["2024-01-29", "LPERP", "10", "mm"], ["2024-01-29", "PETPOS", "Y", ""]]
    assert t01["TRSTRESN"].tolist()[:2] == [40.0, 20.0] and np.isnan(t01["TRSTRESN"].iloc[2])
    assert len(tr) == 9 and set(tr["TRGRPID"]) == {"TR-2023-12-20", "TR-2024-01-29"}
    assert tr.loc[(tr["TRLNKID"] == "T01") & (tr["TRDTC"] == "2023-12-20"), "TRLOBXFL"].tolist() == ["Y", "Y", "Y"]
    assert res.rejected["reason"].tolist() == ["subject not in DM"]
