"""Reconciliation counts on hand-built provenance."""

from __future__ import annotations

import pandas as pd

from pipeline.export.reconcile import reconcile


def forms():
    return {"ae": pd.DataFrame({"AETERM": list("abcdef"), "_FILE": "ae.csv", "_ROW": range(2, 8)}),
            "dm": pd.DataFrame({"SUBJID": ["1", "2"], "_FILE": "dm.csv", "_ROW": [2, 3]})}


def test_counts_add_up_and_overlaps_count_once():
    consumed = pd.DataFrame({"form": ["ae", "ae", "ae", "ae", "dm", "dm", "dm"],
                             "row": [2, 3, 3, 4, 2, 3, 3], "dataset": ["AE", "AE", "SUPPAE", "AE", "DM", "DM", "DS"]})
    # row 4 is consumed and also has a rejected column; rows 5, 6 are rejected; row 7 is lost
    rejected = pd.DataFrame({"form": ["ae", "ae", "ae"], "file": "ae.csv", "row": [4, 5, 6], "column": "AESEV",
                             "value": ["X", "Y", "Z"], "reason": "not a CTCAE grade"})
    datasets = {"AE": pd.DataFrame({"A": range(3)}), "SUPPAE": pd.DataFrame({"A": range(1)}),
                "DM": pd.DataFrame({"A": range(2)})}
    table, rej, findings = reconcile(forms(), consumed, rejected, datasets, "S1")
    total = table[table["dataset"] == ""].set_index("form")
    assert total.loc["ae", ["raw_records", "consumed_rows", "rejected_rows", "unaccounted_rows", "status"]].tolist() \
        == [6, 3, 2, 1, "unaccounted"]
    assert total.loc["dm", ["raw_records", "consumed_rows", "rejected_rows", "unaccounted_rows", "status"]].tolist() \
        == [2, 2, 0, 0, "ok"]
    per = table[table["dataset"] != ""].set_index(["form", "dataset"])
    assert per.loc[("ae", "AE"), ["consumed_rows", "dataset_records"]].tolist() == [3, 3]
    assert per.loc[("ae", "SUPPAE"), ["consumed_rows", "dataset_records"]].tolist() == [1, 1]
    assert per.loc[("dm", "DS"), ["consumed_rows", "dataset_records"]].tolist() == [1, ""]
    assert findings[["file", "row", "check", "severity"]].values.tolist() == [["ae.csv", 7, "unaccounted_row", "error"]]
    assert rej["row"].tolist() == ["4", "5", "6"]


def test_unmapped_form_is_a_warning_only_when_nothing_of_it_is_accounted():
    consumed = pd.DataFrame({"form": ["dm", "dm"], "row": [2, 3], "dataset": "DM"})
    table, _, findings = reconcile(forms(), consumed, pd.DataFrame(), {}, "S1", {"ae": "module missing: ae"})
    assert findings[["check", "severity"]].values.tolist() == [["form_not_mapped", "warning"]]
    assert table.loc[table["form"].eq("ae") & table["dataset"].eq(""), "status"].iloc[0] == \
        "not mapped (module missing: ae)"
    # once some of its rows are mapped, the rest are errors even if flagged as unmapped
    consumed = pd.concat([consumed, pd.DataFrame({"form": ["ae"], "row": [2], "dataset": ["AE"]})])
    _, _, findings = reconcile(forms(), consumed, pd.DataFrame(), {}, "S1", {"ae": "module missing: ae"})
    assert (findings["check"] == "unaccounted_row").sum() == 5


def test_provenance_errors():
    consumed = pd.DataFrame({"form": ["dm", "dm", "dm", "lb"], "row": [2, 3, 99, 2], "dataset": "DM"})
    ae_all = pd.DataFrame({"form": "ae", "row": range(2, 8), "dataset": "AE"})
    _, _, findings = reconcile(forms(), pd.concat([consumed, ae_all]), pd.DataFrame(), {}, "S1")
    assert sorted(findings["check"]) == ["provenance_unknown_form", "provenance_unknown_row"]


def test_rows_per_dataset_count_each_raw_row_once():
    """A dataset's consumed rows of a form: each raw row once however often it is reported,
    rows the form does not have left out (they are provenance errors)."""
    consumed = pd.DataFrame({"form": ["ae"] * 6 + ["dm"], "row": [2, 2, 3, 99, 3, 3, 2],
                             "dataset": ["AE", "AE", "AE", "AE", "FA", "FA", "DM"]})
    table, _, findings = reconcile(forms(), consumed, pd.DataFrame(), {"AE": pd.DataFrame({"A": range(2)})}, "S1")
    per = table[table["dataset"] != ""].set_index(["form", "dataset"])["consumed_rows"]
    assert per.to_dict() == {("ae", "AE"): 2, ("ae", "FA"): 1, ("dm", "DM"): 1}
    assert findings.loc[findings["check"] == "provenance_unknown_row", "row"].tolist() == [99]
