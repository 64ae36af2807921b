"""Subject elements and EPOCH (SDTMIG 3.4 sections 5.3 SE and 4.1.3.1 EPOCH).

The study's ``[[elements]]`` say where each element starts (``start_ref``):

- ``RFICDTC``  informed consent (screening)
- ``LDSTDTC``  first lymphodepletion dose (first EX record with EXCAT LYMPHODEPLETION)
- ``RFSTDTC``  first CAR-T infusion
- ``CARTEND``  the day after the CAR-T element ends: RFSTDTC + ``duration_days`` + 1 day
  of that element (the post-infusion observation window; protocol days 0..duration)

Each element ends where the next one starts; the last ends at RFPENDTC. A record's EPOCH
is the epoch of the last element that started on or before it. Same-day comparisons use
times when both sides have one; a record without time on an element's start date belongs
to the new element. EPOCH is empty when the record's date is partial or missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Study
from pipeline.derive.dates import dtc_date, dtc_datetime, dtc_timing, iso_from_timestamp, min_dtc
from pipeline.export.memo import per_object


def reference_starts(dm: pd.DataFrame, ex: pd.DataFrame) -> pd.DataFrame:
    """Per USUBJID: RFICDTC, LDSTDTC, RFSTDTC, RFPENDTC (ISO text, ``""`` if unknown)."""
    ref = dm.set_index("USUBJID")[["RFICDTC", "RFSTDTC", "RFPENDTC"]].copy()
    if len(ex) and "EXCAT" in ex:
        ld = ex[ex["EXCAT"] == "LYMPHODEPLETION"]
        ref["LDSTDTC"] = min_dtc(ld["EXSTDTC"], ld["USUBJID"]).reindex(ref.index)
    else:
        ref["LDSTDTC"] = ""
    return ref.fillna("")


def subject_elements(dm: pd.DataFrame, ex: pd.DataFrame, study: Study) -> pd.DataFrame:
    """SE-shaped frame: STUDYID, USUBJID, ETCD, ELEMENT, EPOCH, SESTDTC, SEENDTC, TAETORD.

    One row per element a subject actually entered (an element whose start is unknown, such
    as lymphodepletion for a subject never treated, is absent). SEENDTC = next element's start.
    """
    ref = reference_starts(dm, ex)
    elements = study.elements.reset_index(drop=True)
    rows = []
    for order, el in elements.iterrows():  # a handful of planned elements, not records
        if el["start_ref"] == "CARTEND":
            start_dt = dtc_date(ref["RFSTDTC"]) + pd.to_timedelta(int(elements.loc[order - 1, "duration_days"]) + 1, unit="D")
            start = iso_from_timestamp(start_dt)
        else:
            start = ref[el["start_ref"]]
        rows.append(pd.DataFrame({
            "USUBJID": ref.index, "ETCD": el["etcd"], "ELEMENT": el["element"], "EPOCH": el["epoch"],
            "SESTDTC": start.to_numpy(), "TAETORD": float(order + 1)}))
    se = pd.concat(rows, ignore_index=True)
    se = se[se["SESTDTC"].ne("")].copy()
    # a follow-up start beyond the subject's end of participation never happened
    end = se["USUBJID"].map(ref["RFPENDTC"])
    started_after_end = dtc_date(se["SESTDTC"]) > dtc_date(end)
    se = se[~started_after_end.fillna(False)]
    se = se.sort_values(["USUBJID", "TAETORD"], kind="mergesort")
    nxt = se.groupby("USUBJID")["SESTDTC"].shift(-1)
    se["SEENDTC"] = nxt.where(nxt.notna(), se["USUBJID"].map(ref["RFPENDTC"])).fillna("")
    se.insert(0, "STUDYID", study.studyid)
    return se.reset_index(drop=True)


def derive_epoch(usubjid: pd.Series, dtc: pd.Series, se: pd.DataFrame) -> pd.Series:
    """EPOCH of each record from the subject's elements (see module docstring).

    The element starts are parsed once on SE (a few rows per subject) and looked up per record
    by the subject's position in each element's rows.
    """
    rec_date, rec_dt, rec_has_time = dtc_timing(dtc)
    ids = usubjid.to_numpy(dtype=object)
    se_date, se_dt, se_has_time, se_epoch, elements = per_object(se, "epoch_elements", _element_starts)
    epoch = np.full(len(dtc), "", dtype=object)
    for rows, subjects in elements:  # few elements; vectorised over records
        at = subjects.get_indexer(ids)
        has = at >= 0  # the subject entered this element
        pick = rows[np.where(has, at, 0)]
        s_date = np.where(has, se_date[pick], np.datetime64("NaT"))
        s_dt = np.where(has, se_dt[pick], np.datetime64("NaT"))
        same_day = rec_date == s_date
        use_time = same_day & rec_has_time & has & se_has_time[pick]
        entered = (rec_date > s_date) | (same_day & ~use_time) | (use_time & (rec_dt >= s_dt))
        epoch = np.where(entered, se_epoch[pick], epoch)
    return pd.Series(np.where(np.isnat(rec_date), "", epoch), index=dtc.index, dtype=object)


def _element_starts(se: pd.DataFrame) -> tuple:
    """What :func:`derive_epoch` needs of an SE frame, made once per frame (a dataset is not
    changed once built, and every domain dates its records against the same SE): the element
    starts (date, date and time, whether a time is given), EPOCH, and per element in TAETORD
    order its rows and the subjects of those rows."""
    start = se["SESTDTC"].fillna("")
    subjects = se["USUBJID"].to_numpy(dtype=object)
    elements = [(rows, pd.Index(subjects[rows]))
                for _, rows in sorted(se.groupby("TAETORD").indices.items())]  # few elements
    return (dtc_date(start).to_numpy(), dtc_datetime(start).to_numpy(),
            start.astype(str).str.contains("T", regex=False).to_numpy(dtype=bool),
            se["EPOCH"].to_numpy(dtype=object), elements)
