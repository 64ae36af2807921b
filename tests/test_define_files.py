"""The two files define.xml needs from defineutils (the Define-XML 2.1 schema, the define 2.1
stylesheet) are found without importing defineutils, whose import brings in its own validator
and xmlschema (about 0.5 s of CPU in the build's parent, on the way to the study workers)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.export import define


def test_the_files_are_the_ones_defineutils_ships():
    import defineutils.definehtml as dh
    import defineutils.validate as dv

    assert define.schema_path() == Path(dv.__file__).parent / "schema" / "cdisc-define-2.1" / "define2-1-0.xsd"
    assert define.stylesheet_path() == Path(dh.__file__).parent / "define2-1.xsl"
    assert define.schema_path().read_bytes().startswith(b"<?xml")


def test_importing_the_define_module_does_not_import_defineutils():
    code = ("import sys, pipeline.export.define as d; d._schema(); d._transform(); "
            "print(sorted(m for m in sys.modules if m.startswith(('defineutils', 'xmlschema'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("finder", [lambda name: None, lambda name: type("S", (), {"submodule_search_locations": []})()])
def test_a_missing_defineutils_is_one_configuration_error(monkeypatch, finder):
    monkeypatch.setattr(define.importlib.util, "find_spec", finder)
    with pytest.raises(ConfigError, match=r"^define.xml validation needs the package defineutils \(pip install defineutils\)$"):
        define.schema_path()
    with pytest.raises(ConfigError, match=r"^define.html needs the package defineutils"):
        define.stylesheet_path()
