"""Small helpers shared by the ADaM modules: SAS numeric dates, spec-shaped frames, SUPPQUAL
look-ups and the traceability columns.

ADaM conventions used here (ADaMIG 1.3):

- ``*DT`` variables are numeric SAS dates (days since 1960-01-01), ``*DTM`` numeric SAS
  datetimes (seconds since 1960-01-01T00:00:00); the define.xml DataType is ``integer``.
- ``*DY`` analysis days count from TRTSDT = day 1 (no day 0, as SDTM --DY); the *protocol
  day* used by the CAR-T criteria counts from the infusion = day 0 (``ADT - TRTSDT``).
- Character variables are ``str`` with ``""`` for missing, numerics float64 with NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.derive.baseline import before_exposure as _before_exposure
from pipeline.derive.dates import dtc_date, dtc_datetime
from pipeline.export.memo import per_object
from pipeline.rules import response as R
from pipeline.spec import NUMERIC_TYPES, Spec, load_spec

SAS_EPOCH = pd.Timestamp("1960-01-01")


#: the dtype of ``Series.astype(str)`` (pandas 3: the default string dtype)
STR = pd.Series([], dtype="object").astype(str).dtype
FLOAT = np.dtype("float64")


def text(s: pd.Series) -> pd.Series:
    """Values as str, ``""`` for missing (SDTM frames read back from exports may hold None).

    The same values as ``s.astype(object).where(s.notna(), "").astype(str)``, made with one
    pass over a numpy array instead of three pandas operations: this is called ~600 times a
    study, mostly on columns of a few hundred values, where the pandas calls are the cost."""
    if s.dtype == STR:  # already text: only the missing values change
        return s.fillna("") if s.hasnans else s.copy(deep=False)
    values = s.to_numpy(dtype=object, copy=True)
    values[pd.isna(values)] = ""
    return pd.Series(values, index=s.index, name=s.name, dtype=STR)


def text_values(s: pd.Series) -> np.ndarray:
    """``text(s).to_numpy()`` (an object array of str, ``""`` for missing) without making the
    str Series when the values are text already (the SDTM columns)."""
    if s.dtype == STR:  # text already: every value a str or missing (a copy: the caller owns it)
        return np.array(s.to_numpy(dtype=object, na_value=""), dtype=object)
    values = s.to_numpy(dtype=object)
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return np.array(values, dtype=object)  # every value a str (the exported SDTM columns): a copy
    values = np.array(values, dtype=object)
    values[pd.isna(values)] = ""
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) != "string":
        return text(s).to_numpy()
    return values


def num(s: pd.Series) -> pd.Series:
    """Values as float64, NaN where not a number (``pd.to_numeric(errors="coerce")``). Text is
    parsed once per distinct value: a text column holds few (grades, flags, codes)."""
    if s.dtype == FLOAT:  # already numeric (the exported SDTM numerics, ADaM dates)
        return s.copy(deep=False)
    if s.dtype == object or s.dtype == STR:
        codes, distinct = pd.factorize(s)  # missing values: code -1, the NaN appended below
        parsed = pd.to_numeric(distinct.to_numpy(dtype=object), errors="coerce").astype("float64")
        return pd.Series(np.append(parsed, np.nan)[codes], index=s.index, name=s.name)
    return pd.to_numeric(s, errors="coerce").astype("float64")


def sas_date(ts: pd.Series) -> pd.Series:
    """SAS date number (days since 1960-01-01) of datetime64 values; NaN for NaT."""
    ts = pd.to_datetime(ts, errors="coerce")
    days = ts.to_numpy().astype("datetime64[D]")  # numpy floors to the day, as normalize() does
    out = (days - np.datetime64("1960-01-01", "D")).astype("float64")
    out[np.isnat(days)] = np.nan
    return pd.Series(out, index=ts.index, name=ts.name)


def sas_datetime(ts: pd.Series) -> pd.Series:
    """SAS datetime number (seconds since 1960-01-01T00:00) of datetime64 values; NaN for NaT."""
    ts = pd.to_datetime(ts, errors="coerce")
    return ((ts - SAS_EPOCH).dt.total_seconds()).astype("float64")


def from_sas_date(days: pd.Series) -> pd.Series:
    """datetime64 of SAS date numbers."""
    return SAS_EPOCH + pd.to_timedelta(num(days), unit="D")


#: the SAS dates numpy makes dates of here: whole days within pandas' datetime64[ns] range
#: (1686-03-17 .. 2233-10-16), where no pandas conversion of them raises
_ISO_DAYS = (-100_000.0, 100_000.0)


def sas_date_texts(days: pd.Series) -> np.ndarray | None:
    """ISO 8601 ``YYYY-MM-DD`` of SAS date numbers as an object array, ``""`` where missing:
    the texts of ``(SAS_EPOCH + pd.to_timedelta(num(days), unit="D")).dt.strftime("%Y-%m-%d")``,
    made by numpy (``datetime64[D]``, ~20x cheaper than the pandas datetimes and their
    ``strftime`` on the few dozen dates of a report column). None when a value is not a whole
    day in pandas' datetime range (the caller converts those the pandas way)."""
    d = num(days).to_numpy(dtype="float64")
    ok = ~np.isnan(d)
    whole = d[ok]
    if len(whole) and ((whole != np.floor(whole)).any() or whole.min() < _ISO_DAYS[0] or whole.max() > _ISO_DAYS[1]):
        return None
    out = np.full(len(d), "", dtype=object)
    dates = whole.astype("int64").astype("datetime64[D]") + np.datetime64("1960-01-01", "D").astype("int64")
    out[ok] = np.datetime_as_string(dates, unit="D").astype(object)
    return out


def per_distinct(convert, *columns: pd.Series) -> pd.Series:
    """``convert(text(a), text(b), ...)`` for a record-by-record ``convert``, computed once per
    distinct combination of the texts and spread back to the records (index and name of the
    first column). Dates repeat over the records of one collection (LB: every test of a blood
    draw), so at 2,000 subjects LBDTC has ~30 records per distinct value.

    The columns are factorised as they are (missing values one more code) and only a record
    of each combination is made text: the same texts, without a text copy of every column."""
    codes = np.zeros(len(columns[0]), dtype="int64")
    for column in columns:  # one to two columns: combine their codes into one key
        values = column.to_numpy()
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
            values = text_values(column)  # not all text (1 and 1.0 are equal values but different texts)
        c, distinct = pd.factorize(values, use_na_sentinel=True)
        codes = codes * (len(distinct) + 1) + (c + 1)
    codes, distinct = pd.factorize(codes)
    first = np.empty(len(distinct), dtype="int64")
    first[codes] = np.arange(len(codes))  # a record of each combination (all give the same value)
    values = convert(*[pd.Series(text_values(c.iloc[first]), dtype=STR) for c in columns]).to_numpy()
    return pd.Series(values[codes], index=columns[0].index, name=columns[0].name)


def _sas_date_of_text(t: pd.Series) -> pd.Series:
    return sas_date(dtc_date(t))


def _sas_datetime_of_text(t: pd.Series) -> pd.Series:
    has_time = t.str.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
    return sas_datetime(dtc_datetime(t)).where(has_time)


def before_exposure(dtc: pd.Series, reference: pd.Series) -> pd.Series:
    """:func:`pipeline.derive.baseline.before_exposure` of ISO ``dtc`` against ``reference``
    (True where the record is before the first exposure), once per distinct pair of texts."""
    return per_distinct(_before_exposure, dtc, reference).astype(bool)


def dtc_to_sas_date(dtc: pd.Series) -> pd.Series:
    """SAS date of the complete date part of ISO ``--DTC`` text (NaN when partial or missing)."""
    return per_distinct(_sas_date_of_text, dtc)


def dtc_to_sas_datetime(dtc: pd.Series) -> pd.Series:
    """SAS datetime of ISO ``--DTC`` text that carries a time (NaN otherwise)."""
    return per_distinct(_sas_datetime_of_text, dtc)


def analysis_day(adt: pd.Series, trtsdt: pd.Series) -> pd.Series:
    """ADaM relative day: ``ADT - TRTSDT + 1`` on or after TRTSDT, ``ADT - TRTSDT`` before it
    (no day 0, ADaMIG 1.3 section 3.3.3, as SDTMIG --DY)."""
    d = num(adt) - num(trtsdt)
    return d.where(d < 0, d + 1)


def protocol_day(adt: pd.Series, trtsdt: pd.Series) -> pd.Series:
    """Days since the CAR-T infusion (infusion day = protocol day 0)."""
    return num(adt) - num(trtsdt)


def sdtm_spec_of(spec: Spec) -> Spec:
    """The SDTM spec beside the ADaM ``spec``: the build's own (the ADaM stage registers it,
    :func:`pipeline.adam.stage.adam_spec`), else loaded from ``spec.root`` (~0.1 s of CPU)."""
    return spec._memo("sdtm spec", "", lambda _name: load_spec(spec.root, "sdtm"))


def spec_table(spec: Spec, name: str, compute) -> pd.DataFrame:
    """``compute(spec)``, a table worked out from the spec's rule tables alone (checked and
    typed, e.g. :func:`pipeline.rules.response.response_order`), made once per loaded spec and
    handed out as a copy, as :meth:`pipeline.spec.Spec.rule` hands out its tables. A build
    worker keeps one ADaM spec for all the studies of its spec folder
    (:func:`pipeline.adam.stage.adam_spec`), whose modules asked for these ~15 times a study."""
    return per_object(spec, ("adam spec table", name), compute).copy()


def response_order(spec: Spec) -> pd.DataFrame:
    """:func:`pipeline.rules.response.response_order` of the spec (:func:`spec_table`)."""
    return spec_table(spec, "response_order", R.response_order)


def response_rules(spec: Spec, family: str, criteria: str) -> pd.DataFrame:
    """:func:`pipeline.rules.response.response_rules` of one criteria set (:func:`spec_table`)."""
    return spec_table(spec, f"response_rules {family} {criteria}", lambda s: R.response_rules(s, family, criteria))


def validated_rules(spec: Spec, name: str) -> pd.DataFrame:
    """The rule table ``name`` checked by :func:`pipeline.rules.response.validate_rules`
    (:func:`spec_table`)."""
    return spec_table(spec, f"validated {name}", lambda s: R.validate_rules(s.rule(name), name))


def supp_value(supp: pd.DataFrame | None, qnam: str) -> pd.Series:
    """USUBJID -> QVAL of one QNAM of a SUPP-- dataset (first record per subject)."""
    if supp is None or supp.empty:
        return pd.Series(dtype="object")
    s = supp[text(supp["QNAM"]) == qnam]
    s = s.drop_duplicates("USUBJID")
    return pd.Series(text(s["QVAL"]).to_numpy(), index=text(s["USUBJID"]).to_numpy())


def finish(frame: pd.DataFrame, spec: Spec, name: str) -> pd.DataFrame:
    """Columns exactly the ADaM spec's variables of ``name`` (missing ones empty), text as str
    with ``""``, numerics float64."""
    v = spec.vars(name)
    names = v["variable"].tolist()
    index = pd.RangeIndex(len(frame))
    missing = pd.Series(np.nan, index=frame.index, dtype="float64")
    columns = {}
    for col, typ in zip(names, v["type"]):  # the dataset's variables (metadata)
        s = frame[col] if col in frame.columns else missing
        values = np.array(num(s).to_numpy(), dtype=FLOAT) if typ in NUMERIC_TYPES else text_values(s)
        columns[col] = pd.Series(values, index=index, dtype=values.dtype, copy=False)
    # the frame takes each column's own (new, writable) array as it is: no 2-D block is stacked
    # and copied (~2 s for ADLB's ~1M records at 2,000 subjects), no column insert per variable
    return pd.DataFrame(columns, index=index, columns=names, copy=False)


def merge_adsl(frame: pd.DataFrame, adsl: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with the ADSL ``columns`` of each record's subject (ADaMIG: ADSL variables
    carried into BDS/OCCDS datasets)."""
    cols = [c for c in columns if c in adsl.columns and c not in frame.columns]
    return frame.merge(adsl[["USUBJID", *cols]], on="USUBJID", how="left", validate="many_to_one")


def trace(frame: pd.DataFrame, srcdom: str | pd.Series, srcvar: str | pd.Series, srcseq) -> pd.DataFrame:
    """Set the traceability variables SRCDOM/SRCVAR/SRCSEQ (ADaMIG 1.3 section 3.3.9)."""
    out = frame.copy()
    out["SRCDOM"] = srcdom
    out["SRCVAR"] = srcvar
    out["SRCSEQ"] = srcseq
    return out


def yn(mask: pd.Series) -> pd.Series:
    """'Y' where true, '' elsewhere (ADaM population and record flags: Y / null)."""
    return pd.Series(np.where(mask.fillna(False).astype(bool), "Y", ""), index=mask.index, dtype="object")


def yn_full(mask: pd.Series) -> pd.Series:
    """'Y' / 'N' (ADSL population flags are Y/N, ADaMIG 1.3 section 3.1.4)."""
    return pd.Series(np.where(mask.fillna(False).astype(bool), "Y", "N"), index=mask.index, dtype="object")
