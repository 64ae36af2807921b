"""define.html through the keyed stylesheet (issue 14): the same bytes as the define 2.1
stylesheet exactly as defineutils ships it, on the hand-built study TESTR; the rewrite really
happens (else the speed-up silently disappears); a document it was not proven for (two
MetaDataVersions) goes through the shipped stylesheet. The real-build comparison is in
tests/test_define_real_build.py."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from lxml import etree

from fixtures.report import reportkit as kit
from pipeline.export import define


@pytest.fixture(scope="module")
def xml():
    spec = kit.spec()
    return define.define_xml(kit.exported(spec), spec, kit.study(), datetime(2025, 6, 30))


def test_keyed_html_is_byte_identical_to_the_shipped_stylesheet(xml):
    keyed = define.define_html(xml)
    plain = define.define_html(xml, keyed=False)
    assert keyed == plain
    assert b"Datasets" in keyed and keyed.startswith(b"<!DOCTYPE html>")


def test_every_oid_scan_of_the_stylesheet_is_rewritten():
    text = define.stylesheet_path().read_text(encoding="utf-8")
    keyed, n = define.keyed_stylesheet(text)
    assert n >= 40  # 53 in the stylesheet of defineutils 0.x; a new version that breaks the patterns shows here
    assert keyed.count("<xsl:key ") == len(define._XSL_KEYS)
    # no look-up by OID of the kinds the keys answer is left as a scan
    left = re.findall(r"\$g_seq(?:ItemDefs|ItemGroupDefs|WhereClauseDefs|ValueListDefs|CommentDefs|MethodDefs|CodeLists)"
                      r"\[@OID ?= ?\$", keyed)
    assert left == []
    etree.XSLT(etree.XML(keyed.encode("utf-8")))  # compiles


def test_a_document_with_two_metadata_versions_uses_the_shipped_stylesheet(xml, monkeypatch):
    root = etree.fromstring(xml)
    study = root.find("odm:Study", define.NS)
    mdv = study.find("odm:MetaDataVersion", define.NS)
    twin = etree.fromstring(etree.tostring(mdv))
    twin.set("OID", mdv.get("OID") + ".2")
    study.append(twin)
    used = []
    real_plain, real_keyed = define._plain_transform(), define._transform()
    monkeypatch.setattr(define, "_plain_transform", lambda: used.append("plain") or real_plain)
    monkeypatch.setattr(define, "_transform", lambda: used.append("keyed") or real_keyed)
    define.define_html(etree.tostring(root))
    assert used == ["plain"]
    define.define_html(xml)
    assert used == ["plain", "keyed"]


def test_html_of_the_checked_tree_is_the_html_of_the_bytes():
    """define.checked_define: the define.xml bytes of define_xml and the tree its checks
    (integrity, XSD validation) parsed; define.html of that tree is define.html of the bytes,
    byte for byte (the checks leave the tree as parsed)."""
    spec = kit.spec()
    data, root = define.checked_define(kit.exported(spec), spec, kit.study(), datetime(2025, 6, 30))
    assert data == define.define_xml(kit.exported(spec), spec, kit.study(), datetime(2025, 6, 30))
    assert etree.tostring(root) == etree.tostring(etree.fromstring(data))
    assert define.define_html(root) == define.define_html(data)
    assert define.define_html(root, keyed=False) == define.define_html(data)
