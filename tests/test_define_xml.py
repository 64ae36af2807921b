"""define.xml 2.1 of the hand-built study TESTR (tests/fixtures/report): schema validity with
defineutils, referential integrity, define vs the data and the XPT attributes, codelists with only
the terms used, value-level metadata, methods, comments, origins, escaping, determinism."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jinja2
import pandas as pd
import pyreadstat
import pytest
from defineutils.validate import DefineSchemaValidationError, DefineSchemaValidator
from lxml import etree

from fixtures.report import reportkit as kit
from pipeline.errors import ConfigError, DataError
from pipeline.export import datasetjson, define, xpt
from pipeline.spec import load_spec

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1",
      "xlink": "http://www.w3.org/1999/xlink"}
STAMP = datetime(2025, 6, 30)


@pytest.fixture(scope="module")
def spec():
    return kit.spec()


@pytest.fixture(scope="module")
def data(spec):
    return kit.exported(spec)


@pytest.fixture(scope="module")
def xml(spec, data):
    return define.define_xml(data, spec, kit.study(), STAMP)


@pytest.fixture(scope="module")
def root(xml):
    return etree.fromstring(xml)


@pytest.fixture(scope="module")
def written(tmp_path_factory, xml):
    path = tmp_path_factory.mktemp("define") / "define.xml"
    path.write_bytes(xml)
    return path


def _x(node, path, **variables):
    return node.xpath(path, namespaces=NS, **variables)


def _item(root, oid):
    found = _x(root, f"//odm:ItemDef[@OID='{oid}']")
    assert len(found) == 1, oid
    return found[0]


def _codes(root, oid):
    cl = _x(root, f"//odm:CodeList[@OID='{oid}']")
    assert len(cl) == 1, oid
    return [i.get("CodedValue") for i in _x(cl[0], "odm:CodeListItem|odm:EnumeratedItem")]


# ---------------------------------------------------------------------------------------
# schema validity (defineutils, the CDISC XSD)
# ---------------------------------------------------------------------------------------
def test_define_is_valid_against_the_define_21_schema(written):
    assert DefineSchemaValidator(written).validate_define_file().endswith("is valid")


def test_the_schema_validator_rejects_a_broken_define(tmp_path, xml):
    broken = xml.replace(b'def:Structure="One record per subject"', b"", 1)
    path = tmp_path / "define.xml"
    path.write_bytes(broken)
    with pytest.raises(DefineSchemaValidationError):
        DefineSchemaValidator(path).validate_define_file()
    assert define.schema_problems(broken)  # the build-time check sees it too


# ---------------------------------------------------------------------------------------
# referential integrity (checked here independently of define.integrity_problems)
# ---------------------------------------------------------------------------------------
def test_every_reference_resolves(root):
    mdv = _x(root, "//odm:MetaDataVersion")[0]
    items = set(_x(mdv, "odm:ItemDef/@OID"))
    assert set(_x(mdv, ".//odm:ItemRef/@ItemOID")) <= items
    assert set(_x(mdv, ".//odm:RangeCheck/@def:ItemOID")) <= items
    assert set(_x(mdv, ".//odm:CodeListRef/@CodeListOID")) <= set(_x(mdv, "odm:CodeList/@OID"))
    assert set(_x(mdv, ".//odm:ItemRef/@MethodOID")) <= set(_x(mdv, "odm:MethodDef/@OID"))
    assert set(_x(mdv, ".//@def:CommentOID")) <= set(_x(mdv, "def:CommentDef/@OID"))
    assert set(_x(mdv, ".//def:ValueListRef/@ValueListOID")) == set(_x(mdv, "def:ValueListDef/@OID"))
    assert set(_x(mdv, ".//def:WhereClauseRef/@WhereClauseOID")) == set(_x(mdv, "def:WhereClauseDef/@OID"))
    leaves = set(_x(mdv, ".//def:leaf/@ID"))
    # dataset leaves, and the document leaves (the annotated CRF) that def:DocumentRef names
    assert set(_x(mdv, "odm:ItemGroupDef/@def:ArchiveLocationID")) | set(_x(mdv, ".//def:DocumentRef/@leafID")) == leaves
    assert set(_x(mdv, ".//def:DocumentRef/@leafID")) == {"LF.acrf"}
    assert set(_x(mdv, ".//@def:StandardOID")) <= set(_x(mdv, "def:Standards/def:Standard/@OID"))


def test_nothing_is_defined_that_is_not_used(root):
    mdv = _x(root, "//odm:MetaDataVersion")[0]
    assert set(_x(mdv, "odm:ItemDef/@OID")) == set(_x(mdv, ".//odm:ItemRef/@ItemOID"))
    assert set(_x(mdv, "odm:CodeList/@OID")) == set(_x(mdv, ".//odm:CodeListRef/@CodeListOID"))
    assert set(_x(mdv, "odm:MethodDef/@OID")) == set(_x(mdv, ".//odm:ItemRef/@MethodOID"))
    assert "MT.UNUSED" not in _x(mdv, "odm:MethodDef/@OID")
    assert set(_x(mdv, "def:CommentDef/@OID")) == set(_x(mdv, ".//@def:CommentOID"))
    all_oids = _x(mdv, ".//@OID")
    assert len(all_oids) == len(set(all_oids)), "OIDs are unique"


def test_integrity_checker_finds_planted_dangling_references(xml):
    assert define.integrity_problems(xml) == []
    bad = xml.replace(b'CodeListOID="CL.SEX"', b'CodeListOID="CL.NOPE"', 1)
    bad = bad.replace(b'MethodOID="MT.AESEQ"', b'MethodOID="MT.GONE"', 1)
    problems = define.integrity_problems(bad)
    assert "CodeList CL.NOPE is referenced but not defined" in problems
    assert "MethodDef MT.GONE is referenced but not defined" in problems
    assert "CodeList CL.SEX is defined but never referenced" in problems


def test_define_xml_raises_on_a_method_missing_from_the_spec(spec, data):
    v = spec.variables.copy()
    v.loc[(v["dataset"] == "AE") & (v["variable"] == "AESEQ"), "method"] = "MT.NOTDEFINED"
    broken = type(spec)(**{**spec.__dict__, "variables": v})
    with pytest.raises(ConfigError, match="MT.NOTDEFINED.*AE.AESEQ"):
        define.define_xml(data, broken, kit.study(), STAMP)


def test_define_xml_raises_on_an_unknown_origin(spec, data):
    v = spec.variables.copy()
    v.loc[(v["dataset"] == "DM") & (v["variable"] == "SEX"), "origin"] = "CRF"
    broken = type(spec)(**{**spec.__dict__, "variables": v})
    with pytest.raises(ConfigError, match="DM.SEX: origin 'CRF'"):
        define.define_xml(data, broken, kit.study(), STAMP)


# ---------------------------------------------------------------------------------------
# define vs the data and the XPT files
# ---------------------------------------------------------------------------------------
def test_datasets_and_variables_are_exactly_those_in_the_data(root, data):
    groups = {g.get("Name"): g for g in _x(root, "//odm:ItemGroupDef")}
    assert set(groups) == set(data)
    for name, frame in data.items():
        refs = [r.get("ItemOID") for r in _x(groups[name], "odm:ItemRef")]
        assert refs == [datasetjson.item_oid(name, c) for c in frame.columns], name
    # AE.AECAT is in the spec and in the data; a spec variable absent from the data is not in the define
    assert _x(root, "//odm:ItemDef[@OID='IT.AE.AECAT']")
    partial = {k: v.drop(columns=["AEENRTPT"]) if k == "AE" else v for k, v in data.items()}
    root2 = etree.fromstring(define.define_xml(partial, kit.spec(), kit.study(), STAMP))
    assert not _x(root2, "//odm:ItemDef[@OID='IT.AE.AEENRTPT']")
    assert not _x(root2, "//odm:ItemRef[@ItemOID='IT.AE.AEENRTPT']")


def test_define_metadata_matches_the_xpt_attributes(tmp_path, root, data, spec):
    for name, frame in data.items():
        path = tmp_path / xpt.xpt_name(name)
        xpt.write_xpt(frame, spec, name, path, STAMP)
        _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
        group = _x(root, f"//odm:ItemGroupDef[@OID='IG.{name}']")[0]
        assert _x(group, "odm:Description/odm:TranslatedText/text()")[0] == meta.file_label
        assert _x(group, "def:leaf/@xlink:href")[0] == path.name
        assert group.get("SASDatasetName") == meta.table_name
        oids = [r.get("ItemOID") for r in _x(group, "odm:ItemRef")]
        assert [_item(root, o).get("Name") for o in oids] == list(meta.column_names)
        for col in meta.column_names:
            item = _item(root, f"IT.{name}.{col}")
            assert _x(item, "odm:Description/odm:TranslatedText/text()")[0] == meta.column_names_to_labels[col]
            assert int(item.get("Length")) == meta.variable_storage_width[col], f"{name}.{col}"
            numeric = meta.readstat_variable_types[col] == "double"
            assert (item.get("DataType") in ("integer", "float")) == numeric, f"{name}.{col}"


def test_lengths_come_from_the_data(root):
    # longest USUBJID is "TESTR-01-001" (12); longest AETERM is the ICANS term of the derived episode (54)
    assert _item(root, "IT.DM.USUBJID").get("Length") == "12"
    assert _item(root, "IT.AE.AETERM").get("Length") == str(len(kit.ICANS)) == "54"
    assert _item(root, "IT.AE.AESPID").get("Length") == "7"  # "ICANS-1"
    assert _item(root, "IT.AE.AESEQ").get("Length") == "8"
    assert _item(root, "IT.LB.LBSTRESN").get("SignificantDigits") == "2"  # 0.25


def test_frames_returned_by_the_xpt_writer_give_the_same_define(tmp_path, spec, data, xml):
    """In the build define.xml gets the frames write_xpt returned and reads the distinct values
    the writer found (xpt.written_distinct) instead of the records: the same bytes as from
    frames never written, and the lengths of the hand-checked items are those of the XPT files."""
    written = {ds: xpt.write_xpt(frame, spec, ds, tmp_path / xpt.xpt_name(ds), STAMP) for ds, frame in data.items()}
    assert set(xpt.written_distinct(written["AE"])["AETERM"]) == set(data["AE"]["AETERM"])
    assert xpt.written_distinct(data["AE"]) == {}  # never written: nothing remembered
    assert define.define_xml(written, spec, kit.study(), STAMP) == xml
    root = etree.fromstring(xml)
    for ds, var in (("AE", "AETERM"), ("AE", "AESPID"), ("DM", "USUBJID")):
        _, meta = xpt.read_xpt(tmp_path / xpt.xpt_name(ds))
        assert _item(root, f"IT.{ds}.{var}").get("Length") == str(meta.variable_storage_width[var])


def test_oids_match_dataset_json(tmp_path, root, data, spec):
    frame = data["AE"]
    path = tmp_path / "ae.json"
    datasetjson.write_dataset_json(frame, spec, "AE", path, kit.STUDY, "Test", STAMP)
    doc = json.loads(path.read_text())
    assert doc["studyOID"] == _x(root, "//odm:Study/@OID")[0]
    assert doc["metaDataVersionOID"] == _x(root, "//odm:MetaDataVersion/@OID")[0]
    assert doc["itemGroupOID"] in _x(root, "//odm:ItemGroupDef/@OID")
    assert [c["itemOID"] for c in doc["columns"]] == [r.get("ItemOID") for r in
                                                       _x(root, "//odm:ItemGroupDef[@OID='IG.AE']/odm:ItemRef")]


def test_keys_roles_and_mandatory(root):
    refs = {r.get("ItemOID"): r for r in _x(root, "//odm:ItemGroupDef[@OID='IG.AE']/odm:ItemRef")}
    keyed = {o: int(r.get("KeySequence")) for o, r in refs.items() if r.get("KeySequence")}
    assert keyed == {"IT.AE.STUDYID": 1, "IT.AE.USUBJID": 2, "IT.AE.AEDECOD": 3, "IT.AE.AESTDTC": 4,
                     "IT.AE.AESEQ": 5}
    assert refs["IT.AE.AETERM"].get("Mandatory") == "Yes" and refs["IT.AE.AESPID"].get("Mandatory") == "No"
    assert refs["IT.AE.AESTDY"].get("Role") == "Timing"
    assert refs["IT.AE.AESTDY"].get("MethodOID") == "MT.STUDYDAY"
    g = _x(root, "//odm:ItemGroupDef[@OID='IG.AE']")[0]
    assert _x(g, "def:Class/@Name") == ["EVENTS"] and g.get("def:Structure") is None
    assert g.get("{%s}Structure" % NS["def"]) == "One record per adverse event per subject"
    assert g.get("Repeating") == "Yes" and g.get("IsReferenceData") == "No"


# ---------------------------------------------------------------------------------------
# codelists, dictionaries, standards
# ---------------------------------------------------------------------------------------
def test_codelists_carry_only_the_terms_used_with_nci_codes(root):
    assert _codes(root, "CL.SEX") == ["F", "M"]  # U is in the spec, not in the data
    cl = _x(root, "//odm:CodeList[@OID='CL.SEX']")[0]
    assert _x(cl, "odm:Alias[@Context='nci:ExtCodeID']/@Name") == ["C66731"]
    assert _x(cl, "odm:CodeListItem[@CodedValue='F']/odm:Alias/@Name") == ["C16576"]
    assert _x(cl, "odm:CodeListItem[@CodedValue='F']/odm:Decode/odm:TranslatedText/text()") == ["Female"]
    assert cl.get("{%s}StandardOID" % NS["def"]) == "STD.CT.SDTM"
    assert _codes(root, "CL.LBTOXGR") == ["0", "1", "2", "3"]  # no grade 4 in the data
    assert _codes(root, "CL.NY") == ["N", "Y"]


def test_value_outside_an_extensible_codelist_is_an_extended_value(root):
    assert _codes(root, "CL.LBTESTCD") == ["ALT", "K", "NEUT", kit.PLANTED_TESTCD]
    item = _x(root, "//odm:CodeList[@OID='CL.LBTESTCD']/*[@CodedValue=$v]", v=kit.PLANTED_TESTCD)[0]
    assert item.get("{%s}ExtendedValue" % NS["def"]) == "Yes"
    assert not _x(item, "odm:Alias")


def test_external_dictionaries_are_declared_as_such(root):
    meddra = _x(root, "//odm:CodeList[@OID='CL.MEDDRA']/odm:ExternalCodeList")[0]
    assert (meddra.get("Dictionary"), meddra.get("Version")) == ("MedDRA", "26.0")
    # AELLTCD (integer) gets its own MedDRA CodeList, as CodeList/@DataType must match the item
    assert _x(root, "//odm:CodeList[@OID='CL.MEDDRA.integer']/@DataType") == ["integer"]
    assert _x(root, "//odm:ItemDef[@OID='IT.AE.AELLTCD']/odm:CodeListRef/@CodeListOID") == ["CL.MEDDRA.integer"]
    ctcae = _x(root, "//odm:CodeList[@OID='CL.CTCAE']/odm:ExternalCodeList")[0]
    assert (ctcae.get("Dictionary"), ctcae.get("Version")) == ("CTCAE", "5.0")
    assert not _x(root, "//odm:CodeList[@OID='CL.MEDDRA']/odm:EnumeratedItem")


def test_standards_and_study(root):
    stds = {s.get("OID"): (s.get("Name"), s.get("Type"), s.get("Version"), s.get("PublishingSet"))
            for s in _x(root, "//def:Standard")}
    assert stds == {"STD.SDTMIG": ("SDTMIG", "IG", "3.4", None),
                    "STD.CT.SDTM": ("CDISC/NCI", "CT", "2025-03-28", "SDTM")}
    assert _x(root, "//odm:MetaDataVersion/@def:DefineVersion") == ["2.1.0"]
    assert root.get("CreationDateTime") == "2025-06-30T00:00:00"
    assert _x(root, "//odm:StudyDescription/text()") == ["Listing test study <CAR-T> & friends"]


# ---------------------------------------------------------------------------------------
# value-level metadata
# ---------------------------------------------------------------------------------------
def test_value_level_metadata_only_for_tests_in_the_data(root):
    refs = _x(root, "//def:ValueListDef[@OID='VL.LB.LBSTRESN']/odm:ItemRef/@ItemOID")
    assert refs == ["IT.LB.LBSTRESN.ALT", "IT.LB.LBSTRESN.K", "IT.LB.LBSTRESN.NEUT"]  # GLUC not in the data
    wc = _x(root, "//def:WhereClauseDef[@OID='WC.LB.LBTESTCD.ALT']/odm:RangeCheck")[0]
    assert (wc.get("Comparator"), wc.get("{%s}ItemOID" % NS["def"]), _x(wc, "odm:CheckValue/text()")) == \
        ("EQ", "IT.LB.LBTESTCD", ["ALT"])
    alt = _item(root, "IT.LB.LBSTRESN.ALT")
    assert alt.get("DataType") == "float" and alt.get("SignificantDigits") == "0"
    assert _x(alt, "odm:Description/odm:TranslatedText/text()") == ["Alanine Aminotransferase (U/L)"]
    assert _x(root, "//odm:ItemDef[@OID='IT.LB.LBSTRESN']/def:ValueListRef/@ValueListOID") == ["VL.LB.LBSTRESN"]
    # a character result's value-level length is the longest value of that test
    assert _item(root, "IT.LB.LBORRES.ALT").get("Length") == "3"
    # the where clause of ALT is shared by both value lists
    assert len(_x(root, "//def:WhereClauseDef[starts-with(@OID, 'WC.LB.LBTESTCD.ALT')]")) == 1


def test_findings_without_spec_value_level_rows_get_them_from_the_data(root):
    # PC has no valuelevel/PC.csv: PCSTRESN gets one row per PCTESTCD with type and unit from the data
    refs = _x(root, "//def:ValueListDef[@OID='VL.PC.PCSTRESN']/odm:ItemRef/@ItemOID")
    assert refs == ["IT.PC.PCSTRESN.CARTCOPY"]
    item = _item(root, "IT.PC.PCSTRESN.CARTCOPY")
    assert item.get("DataType") == "float"  # 250.5 is not whole
    assert _x(item, "odm:Description/odm:TranslatedText/text()") == ["CAR Transgene Copies (copies/ug)"]
    assert _x(item, "def:Origin/@Type") == ["Derived"]


def test_result_and_unit_variables_get_value_level_items_per_test(root):
    """LBORRESU/LBSTRESU (no spec rows) get one item per LBTESTCD with the units codelist;
    the where clause is the test alone when it has one specimen and category."""
    refs = _x(root, "//def:ValueListDef[@OID='VL.LB.LBSTRESU']/odm:ItemRef/@ItemOID")
    assert "IT.LB.LBSTRESU.ALT" in refs and "IT.LB.LBSTRESU.K" in refs
    k = _item(root, "IT.LB.LBSTRESU.K")
    assert _x(k, "odm:CodeListRef/@CodeListOID") == _x(_item(root, "IT.LB.LBSTRESU"), "odm:CodeListRef/@CodeListOID")
    assert _x(k, "def:Origin/@Type") == _x(_item(root, "IT.LB.LBSTRESU"), "def:Origin/@Type")
    wc = _x(root, "//def:ValueListDef[@OID='VL.LB.LBSTRESU']/odm:ItemRef[@ItemOID='IT.LB.LBSTRESU.K']"
                  "/def:WhereClauseRef/@WhereClauseOID")[0]
    assert _x(root, f"//def:WhereClauseDef[@OID='{wc}']/odm:RangeCheck/odm:CheckValue/text()") == ["K"]


def test_where_clause_adds_the_specimen_when_it_distinguishes():
    """Potassium measured in serum and in plasma (hand-built LB on the project spec): the unit
    items of K are per (LBTESTCD, LBSPEC), those of ALT (one specimen) per LBTESTCD alone; the
    units carry the LBUNIT codelist and the inherited method of LBSTRESU."""
    spec = load_spec(Path(__file__).resolve().parents[1] / "specs")
    rows = [("K", "Potassium", "SERUM", "4.0", 4.0, "mmol/L"), ("K", "Potassium", "PLASMA", "3.9", 3.9, "mmol/L"),
            ("ALT", "Alanine Aminotransferase", "SERUM", "20", 20.0, "U/L")]
    lb = pd.DataFrame(rows, columns=["LBTESTCD", "LBTEST", "LBSPEC", "LBORRES", "LBSTRESN", "LBSTRESU"])
    lb = lb.assign(STUDYID="TESTR", DOMAIN="LB", USUBJID="TESTR-01-001", LBSEQ=[1.0, 2.0, 3.0], LBCAT="CHEMISTRY",
                   LBORRESU=lb["LBSTRESU"], LBSTRESC=lb["LBORRES"])
    model = define.define_model({"LB": lb}, spec, kit.study(), STAMP)
    wheres = {w["oid"]: [(c["item_oid"], c["check_values"]) for c in w["checks"]] for w in model["where_clauses"]}
    vl = [v for v in model["value_lists"] if v["oid"] == "VL.LB.LBSTRESU"][0]
    got = {r["item_oid"]: wheres[r["where_oid"]] for r in vl["refs"]}
    assert got == {"IT.LB.LBSTRESU.ALT": [("IT.LB.LBTESTCD", ["ALT"])],
                   "IT.LB.LBSTRESU.K.PLASMA": [("IT.LB.LBTESTCD", ["K"]), ("IT.LB.LBSPEC", ["PLASMA"])],
                   "IT.LB.LBSTRESU.K.SERUM": [("IT.LB.LBTESTCD", ["K"]), ("IT.LB.LBSPEC", ["SERUM"])]}
    assert {r["method_oid"] for r in vl["refs"]} == {"MT.LBSTRESN"}
    items = {i["oid"]: i for i in model["item_defs"]}
    assert items["IT.LB.LBSTRESU.K.SERUM"]["codelist_oid"] == "CL.LBUNIT"
    assert items["IT.LB.LBORRES.K.SERUM"]["label"] == "Potassium (mmol/L)"
    xml = define.define_xml({"LB": lb}, spec, kit.study(), STAMP)
    assert define.integrity_problems(xml) == []


@pytest.mark.parametrize("spec_type, values, expected", [
    ("date", ["2024-07-01", ""], "date"),
    ("date", ["2024-07-01", "2024-07"], "partialDate"),
    ("date", ["2024"], "partialDate"),
    ("date", ["2024---15"], "incompleteDatetime"),
    ("datetime", ["2024-07-01T10:30:00"], "datetime"),
    ("datetime", ["2024-07-01T10:30:00", "2024-07-01"], "partialDatetime"),
    ("datetime", ["2024-07-01T10:30"], "partialDatetime"),
    ("datetime", ["2024-07-01T-:30"], "incompleteDatetime"),
    ("text", ["2024-07"], "text"),
])
def test_date_datatype_from_the_values(spec_type, values, expected):
    assert define.date_datatype(spec_type, pd.Series(values)) == expected


def test_partial_dates_are_not_typed_date(root):
    # LBDTC holds dates and one date/time without seconds: partialDatetime, never datetime
    assert _item(root, "IT.LB.LBDTC").get("DataType") == "partialDatetime"


def test_suppqual_value_level_with_codelists(root):
    refs = _x(root, "//def:ValueListDef[@OID='VL.SUPPAE.QVAL']/odm:ItemRef/@ItemOID")
    assert refs == ["IT.SUPPAE.QVAL.AETRTEM", "IT.SUPPAE.QVAL.DLTWINFL", "IT.SUPPAE.QVAL.TOXGRSCL",
                    "IT.SUPPAE.QVAL.ASTCTDUP"]
    assert _x(root, "//odm:ItemDef[@OID='IT.SUPPAE.QVAL.ASTCTDUP']/odm:CodeListRef/@CodeListOID") == ["CL.NY"]
    assert _codes(root, "CL.TOXGRSCL") == ["NCI CTCAE v5.0", "ASTCT 2019"]


# ---------------------------------------------------------------------------------------
# methods, comments, origins
# ---------------------------------------------------------------------------------------
def test_methods_for_every_derivation(root):
    m = _x(root, "//odm:MethodDef[@OID='MT.STUDYDAY']")[0]
    assert m.get("Type") == "Computation"
    assert "SDTMIG 3.4 section 4.4.4" in _x(m, "odm:Description/odm:TranslatedText/text()")[0]
    # no internal function names: the implementing function stays in the spec, not in define.xml
    assert _x(root, "//odm:FormalExpression") == []
    used = set(_x(root, "//odm:ItemRef/@MethodOID"))
    assert {"MT.LBTOXGR", "MT.DLTWINFL", "MT.LBSTRESN", "MT.RSSTRESC"} <= used


def test_origins(root):
    def origin(oid):
        o = _x(_item(root, oid), "def:Origin")[0]
        return o.get("Type"), o.get("Source"), _x(o, "odm:Description/odm:TranslatedText/text()")
    assert origin("IT.DM.SEX") == ("Collected", "Investigator", ["CRF dm.SEX"])
    assert origin("IT.AE.AESTDY") == ("Derived", "Sponsor", [])
    assert origin("IT.DM.STUDYID") == ("Protocol", "Sponsor", [])
    assert origin("IT.SUPPAE.QVAL.TOXGRSCL") == ("Assigned", "Sponsor", [])


def test_comments_escaped_and_shared(root, xml):
    ds_comment = _x(root, "//odm:ItemGroupDef[@OID='IG.LB']/@def:CommentOID")[0]
    text = _x(root, f"//def:CommentDef[@OID='{ds_comment}']/odm:Description/odm:TranslatedText/text()")[0]
    assert text == "Planted <b>markup</b> & ampersand in a comment"
    assert b"<b>markup</b>" not in xml and b"&lt;b&gt;markup&lt;/b&gt; &amp; ampersand" in xml
    # a comment that names a row of specs/sdtm/comments refers to it
    assert _x(root, "//odm:ItemGroupDef[@OID='IG.AE']/@def:CommentOID") == ["COM.AEDS"]
    assert "ASTCT-derived" in _x(root, "//def:CommentDef[@OID='COM.AEDS']//odm:TranslatedText/text()")[0]
    # SUPPAE.QVAL and SUPPQUAL share the template comment text: one CommentDef
    assert _x(root, "//odm:ItemDef[@OID='IT.SUPPAE.QVAL']/@def:CommentOID") == ["COM.SUPPAE.QVAL"]


def test_planted_extended_value_is_escaped_and_round_trips(xml, root):
    assert b'CodedValue="CD4&lt;&amp;&gt;"' in xml
    # the spec has no LBSTRESN row for it; the data-derived unit/result rows carry it escaped
    assert not [o for o in _x(root, "//def:ValueListDef[@OID='VL.LB.LBSTRESN']/odm:ItemRef/@ItemOID") if "CD4" in o]
    assert b"<CheckValue>CD4&lt;&amp;&gt;</CheckValue>" in xml
    assert kit.PLANTED_TESTCD in _x(root, "//odm:CheckValue/text()")
    assert kit.PLANTED_TESTCD in _codes(root, "CL.LBTESTCD")


def test_xml_text_drops_characters_xml_cannot_carry():
    assert define.xml_text("a\x00b\x1fc\td") == "abc\td"
    assert define.oid_part("PROTOCOL MILESTONE") == "PROTOCOL_MILESTONE"
    assert define.oid_part("<&>") == "BLANK"


# ---------------------------------------------------------------------------------------
# determinism, html, hook
# ---------------------------------------------------------------------------------------
def test_define_is_byte_identical_on_rerun(spec, data, xml):
    assert define.define_xml(data, spec, kit.study(), STAMP) == xml


def test_write_define_hook_writes_xml_and_html(tmp_path, data, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1750000000")
    define.write_define(tmp_path, data, kit.context(data))
    xml = (tmp_path / "define.xml").read_bytes()
    assert b'CreationDateTime="2025-06-15T15:06:40"' in xml
    # the stylesheet the processing instruction names ships next to define.xml (renders in a browser)
    assert b'<?xml-stylesheet type="text/xsl" href="define2-1.xsl"?>' in xml
    xsl = tmp_path / "define2-1.xsl"
    assert xsl.read_bytes() == define.stylesheet_path().read_bytes()
    assert etree.parse(str(xsl)).getroot().tag == "{http://www.w3.org/1999/XSL/Transform}stylesheet"
    html = (tmp_path / "define.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for name in ("DM", "AE", "SUPPAE", "LB", "RS", "PC"):
        assert f"{name} (" in html
    assert "Alanine Aminotransferase (U/L)" in html
    assert "&lt;b&gt;markup&lt;/b&gt;" in html and "<b>markup</b>" not in html
    again = tmp_path / "again"
    again.mkdir()
    define.write_define(again, data, kit.context(data))
    assert (again / "define.html").read_bytes() == (tmp_path / "define.html").read_bytes()
    assert (again / "define.xml").read_bytes() == xml


def test_empty_dataset_is_described(spec, data):
    empty = {**data, "RS": data["RS"].iloc[0:0]}
    root = etree.fromstring(define.define_xml(empty, spec, kit.study(), STAMP))
    assert _x(root, "//odm:ItemGroupDef[@OID='IG.RS']")
    assert _item(root, "IT.RS.RSTESTCD").get("Length") == "1"


def test_dataset_not_in_the_spec_is_not_described(spec, data):
    extra = {**data, "XX": pd.DataFrame({"A": ["1"]})}
    root = etree.fromstring(define.define_xml(extra, spec, kit.study(), STAMP))
    assert not _x(root, "//odm:ItemGroupDef[@Name='XX']")


def test_significant_digits():
    assert define.significant_digits(pd.Series([1.0, 2.5, 3.25])) == 2
    assert define.significant_digits(pd.Series([1.0, 2.0])) == 0
    assert define.significant_digits(pd.Series(["0.001", "x", None])) == 3
    assert define.significant_digits(pd.Series([float("nan")])) is None


def test_define_xml_raises_when_the_result_is_not_schema_valid(spec, data, monkeypatch):
    monkeypatch.setattr(define, "STD_IG", "STD IG")  # a space is fine for an OID, but a bogus class is not
    ds = spec.datasets.copy()
    ds.loc[ds["dataset"] == "DM", "class"] = "NOT A CLASS"
    broken = type(spec)(**{**spec.__dict__, "datasets": ds})
    with pytest.raises(DataError, match="define.xml: .*NOT A CLASS"):
        define.define_xml(data, broken, kit.study(), STAMP)


def _dict_keys(value) -> set[str]:
    """Every key of every dict inside a define model (nested dicts and lists)."""
    if isinstance(value, dict):
        return set(value).union(*(_dict_keys(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_dict_keys(v) for v in value))
    return set()


def test_template_looks_dict_keys_up_first(spec, data):
    """The template environment finds ``x.name`` as the key of a dict before jinja's attribute
    lookup (which raised and caught an AttributeError for every value of the dict-made model):
    a key named like a dict method is the key's value, an attribute of a non-dict object is
    still found, and a missing one is still an error. No key of the model is the name of a dict
    attribute, so the define.xml is what jinja's own lookup made."""
    env = define._environment()
    assert env is define._environment() and isinstance(env, jinja2.Environment)  # made once, its template compiled once
    assert env.from_string("{{ d.items }}|{{ d.oid }}").render(d={"items": "kept", "oid": "IT.X"}) == "kept|IT.X"
    assert env.from_string("{{ p.name }}").render(p=Path("/a/b.xpt")) == "b.xpt"
    with pytest.raises(Exception, match="has no attribute 'nope'"):
        env.from_string("{{ d.nope }}").render(d={"oid": "IT.X"})
    model = define.define_model(data, spec, kit.study(), STAMP)
    assert not _dict_keys(model) & set(dir(dict))
