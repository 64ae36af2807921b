"""Reconciliation: nothing is dropped unaccounted.

Every raw row of every delivered form must be either consumed into SDTM (a domain module's
``consumed`` provenance) or rejected with a reason (``rejected``). Per study two reports:

``reports/reconciliation.csv``
    columns ``form, file, dataset, raw_records, consumed_rows, rejected_rows, unaccounted_rows,
    dataset_records, status``. For each form one summary line (``dataset`` empty):
    raw records in, distinct raw rows consumed, distinct rows rejected and not consumed, and
    ``unaccounted = raw - consumed - rejected``; then one line per dataset the form fed, with the
    distinct raw rows mapped into it (``consumed_rows``) and the records of that dataset
    (``dataset_records``). ``status`` is ``ok``, ``unaccounted`` (an error that blocks the build)
    or ``not mapped (module missing: ...)`` (a warning: the domain module that maps the form is not
    in the tree yet, see :mod:`pipeline.build`).

``reports/rejections.csv``
    every rejected row with its reason: ``form, file, row, column, value, reason``.

A row that is both consumed and rejected (e.g. one column rejected, the rest mapped) counts as
consumed. Provenance naming a row that the form does not have is an error (a module bug).
"""

from __future__ import annotations

import pandas as pd

from pipeline.context import CONSUMED_COLUMNS, FINDING_COLUMNS, REJECTED_COLUMNS, empty

COLUMNS = ["form", "file", "dataset", "raw_records", "consumed_rows", "rejected_rows", "unaccounted_rows",
           "dataset_records", "status"]
MAX_ROWS_LISTED = 50


def _rows(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """(form, row[, extra...]) with row as int; rows that are not numbers are dropped."""
    out = frame[["form", "row", *extra]].reset_index(drop=True).astype("object")
    out["row"] = pd.to_numeric(out["row"], errors="coerce")
    out = out[out["row"].notna() & out["form"].notna()]
    return out.astype({"row": "int64"}).astype({c: str for c in ("form", *extra)})


def reconcile(forms: dict[str, pd.DataFrame], consumed: pd.DataFrame, rejected: pd.DataFrame,
              datasets: dict[str, pd.DataFrame], studyid: str,
              unmapped: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(reconciliation, rejections, findings)`` for one study.

    ``unmapped`` maps a form to the reason its rows may stay unaccounted for now (e.g.
    ``"module missing: ae"``): such a form, when none of its rows is accounted for, gives a
    warning rather than errors.
    """
    unmapped = unmapped or {}
    consumed = consumed if len(consumed) else empty(CONSUMED_COLUMNS)
    rejected = rejected if len(rejected) else empty(REJECTED_COLUMNS)
    cons = _rows(consumed, ("dataset",))
    rej = _rows(rejected)
    # each form's provenance rows, split once (a boolean mask per form costs a pass over all of
    # them per form: about 1 s at 2,000 subjects)
    cons_of = dict(tuple(cons.groupby("form", sort=False)))
    # each (form, dataset, row) once, for the counts per dataset: one pass over all of them, not one per form
    unique_cons_of = dict(tuple(cons.drop_duplicates(["form", "dataset", "row"]).groupby("form", sort=False)))
    rej_rows_of = {form: grp["row"] for form, grp in rej.groupby("form", sort=False)}
    no_cons, no_rows = cons.iloc[:0], pd.Series([], dtype="int64")
    lines, findings = [], []
    for form in sorted(forms):
        raw = forms[form]
        raw_rows = pd.Series(pd.to_numeric(raw["_ROW"], errors="coerce"), dtype="float64")
        files = sorted(str(f) for f in raw["_FILE"].astype(str).unique()) if "_FILE" in raw else []
        raw_set = pd.Index(raw_rows.dropna().astype("int64").unique())
        c_form = cons_of.get(form, no_cons)
        c_rows = pd.Index(c_form["row"].unique())
        r_rows = pd.Index(rej_rows_of.get(form, no_rows).unique())
        unknown = c_rows.difference(raw_set).union(r_rows.difference(raw_set))
        for row in unknown[:MAX_ROWS_LISTED]:
            findings.append(_finding(studyid, form, "", int(row), "provenance_unknown_row", "error",
                                     f"form {form}: a domain module reports row {int(row)}, which the form does not have"))
        consumed_n = len(c_rows.intersection(raw_set))
        rejected_only = r_rows.intersection(raw_set).difference(c_rows)
        accounted = c_rows.union(r_rows)
        missing_rows = raw_set.difference(accounted)
        n_unacc = len(missing_rows)
        status = "ok"
        if n_unacc:
            lenient = form in unmapped and consumed_n == 0 and len(rejected_only) == 0
            if lenient:
                status = f"not mapped ({unmapped[form]})"
                findings.append(_finding(studyid, form, "|".join(files), "", "form_not_mapped", "warning",
                                         f"form {form}: {n_unacc} raw row(s) not mapped to SDTM ({unmapped[form]})"))
            else:
                status = "unaccounted"
                listed = missing_rows.sort_values()
                file_of_row = _file_of_row(raw, raw_rows)
                for row in listed[:MAX_ROWS_LISTED]:
                    findings.append(_finding(studyid, form, file_of_row.get(float(row), ""), int(row), "unaccounted_row",
                                             "error", f"form {form} row {int(row)}: neither mapped to SDTM nor rejected"))
                if len(listed) > MAX_ROWS_LISTED:
                    findings.append(_finding(studyid, form, "|".join(files), "", "unaccounted_row", "error",
                                             f"form {form}: {len(listed) - MAX_ROWS_LISTED} more unaccounted row(s) "
                                             f"({len(listed)} in all)"))
        lines.append({"form": form, "file": "|".join(files), "dataset": "", "raw_records": len(raw_set),
                      "consumed_rows": consumed_n, "rejected_rows": len(rejected_only), "unaccounted_rows": n_unacc,
                      "dataset_records": "", "status": status})
        u_form = unique_cons_of.get(form, no_cons)
        per_ds = u_form[u_form["row"].isin(raw_set)].groupby("dataset").size()
        for ds, n in per_ds.sort_index().items():
            lines.append({"form": form, "file": "|".join(files), "dataset": ds, "raw_records": "", "consumed_rows": int(n),
                          "rejected_rows": "", "unaccounted_rows": "",
                          "dataset_records": len(datasets[ds]) if ds in datasets else "", "status": ""})
    # provenance for forms that were never delivered
    for form in sorted(set(cons_of).union(rej_rows_of) - set(forms)):
        findings.append(_finding(studyid, form, "", "", "provenance_unknown_form", "error",
                                 f"a domain module reports rows of form {form}, which was not delivered"))
    table = pd.DataFrame(lines, columns=COLUMNS)
    rejections = rejected[REJECTED_COLUMNS].copy() if len(rejected) else empty(REJECTED_COLUMNS)
    if len(rejections):
        rejections = rejections.astype("object").fillna("")
        rejections["_r"] = pd.to_numeric(rejections["row"], errors="coerce")
        rejections = rejections.sort_values(["form", "file", "_r", "column", "reason", "value"], kind="mergesort")
        rejections = rejections.drop(columns="_r").reset_index(drop=True)
        rejections["row"] = rejections["row"].map(_int_text)
    f = pd.DataFrame(findings, columns=FINDING_COLUMNS) if findings else empty(FINDING_COLUMNS)
    return table, rejections, f


def _file_of_row(raw: pd.DataFrame, raw_rows: pd.Series) -> dict[float, str]:
    """Raw row number -> the file it came from (the last one, if two files give the same row
    number); only made for a form with unaccounted rows, which are listed with their file."""
    if "_FILE" not in raw:
        return {}
    return dict(zip(raw_rows, raw["_FILE"].astype(str)))


def _int_text(v) -> str:
    n = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
    return str(int(n)) if pd.notna(n) and float(n).is_integer() else str(v)


def _finding(studyid, form, file, row, check, severity, message) -> dict:
    return {"study": studyid, "file": file or form, "row": row, "column": "", "value": "", "check": check,
            "severity": severity, "message": message}
