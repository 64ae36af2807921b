"""``python -m pipeline`` marks hypothesis (a test tool that pandera imports when it is installed,
for data-synthesis strategies the pipeline never uses) as not importable, so that the command line
runs as it does without the test extra and its parent process does not pay the import before it
forks the gate's workers; and it ends through ``pipeline.cli.end_process`` (exit handlers, flushed
output, the run's status, no teardown of the heap)."""
from __future__ import annotations

import subprocess
import sys

import pytest

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


# --- the end of a run: pipeline.cli.end_process -------------------------------------------------

END_PROBE = """
import atexit, sys, threading, time
from pathlib import Path
from pipeline.cli import end_process

folder, code, with_thread = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "thread"


class TornDown:
    '''Written to a file when the interpreter's teardown frees the module's globals.'''

    def __del__(self):
        (folder / "teardown").write_text("freed")


KEPT = TornDown()
atexit.register(lambda: (folder / "handler").write_text("ran"))
if with_thread:
    threading.Thread(target=lambda: (time.sleep(0.3), (folder / "thread").write_text("done"))).start()
sys.stdout.write("the last line, without a newline")  # still in the buffer: PYTHONUNBUFFERED is unset
end_process(code)
"""


def _end_probe(tmp_path, code: int, thread: bool = False) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", END_PROBE, str(tmp_path), str(code), "thread" if thread else "-"],
                          capture_output=True, text=True, env=env, timeout=60)


def _written(tmp_path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(tmp_path.iterdir())}


@pytest.mark.parametrize("code", [0, 1, 2, 3, 130])
def test_a_run_ends_with_its_status_its_exit_handlers_and_its_output_but_no_teardown(tmp_path, code):
    """The exit status is the run's, the libraries' exit handlers have run, the buffered stdout
    is written, and the heap is not torn down (the module global's finaliser never runs: with
    CPython's normal shutdown it would write ``teardown``)."""
    run = _end_probe(tmp_path, code)
    assert (run.returncode, run.stdout, run.stderr) == (code, "the last line, without a newline", "")
    assert _written(tmp_path) == {"handler": "ran"}


def test_a_thread_still_running_gets_the_normal_shutdown_which_waits_for_it(tmp_path):
    run = _end_probe(tmp_path, 4, thread=True)
    assert (run.returncode, run.stdout) == (4, "the last line, without a newline")
    assert _written(tmp_path) == {"handler": "ran", "teardown": "freed", "thread": "done"}


class _Exited(Exception):
    pass


class _Stream:
    def __init__(self, fails: bool):
        self.fails = fails

    def flush(self):
        if self.fails:
            raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("code, stdout_fails, stderr_fails, status", [
    (0, True, False, 120),   # the reader closed the pipe: CPython's own status for it
    (2, True, False, 2),     # the run's error status is kept
    (0, False, True, 0),     # stderr is gone: nothing to tell, nowhere to tell it
    (1, False, False, 1),
])
def test_an_output_that_cannot_be_flushed(monkeypatch, code, stdout_fails, stderr_fails, status):
    import atexit
    import os

    from pipeline import cli

    ran = []
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: ran.append("handlers"))  # not pytest's own
    monkeypatch.setattr(sys, "stdout", _Stream(stdout_fails))
    monkeypatch.setattr(sys, "stderr", _Stream(stderr_fails))

    def exited(n):
        raise _Exited(n)
    monkeypatch.setattr(os, "_exit", exited)
    with pytest.raises(_Exited) as exc:
        cli.end_process(code)
    assert (exc.value.args[0], ran) == (status, ["handlers"])
