"""``python -m pipeline`` marks hypothesis (a test tool that pandera imports when it is installed,
for data-synthesis strategies the pipeline never uses) as not importable, so that the command line
runs as it does without the test extra and its parent process does not pay the import before it
forks the gate's workers."""
from __future__ import annotations

import subprocess
import sys

PROBE = """
import runpy, sys
sys.argv = ["pipeline", "--help"]
try:
    runpy.run_module("pipeline", run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
import pandera.pandas  # what the gate imports
import pandera.strategies.base_strategies as strategies
print(sys.modules.get("hypothesis", "absent"), strategies.HAS_HYPOTHESIS)
"""


def test_the_command_line_runs_without_hypothesis():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[-2] == "None False"


def test_the_tests_themselves_keep_hypothesis():
    import hypothesis  # noqa: F401 - importing pipeline.cli (what the tests do) leaves it importable
    import pipeline.cli  # noqa: F401

    assert sys.modules["hypothesis"] is not None
