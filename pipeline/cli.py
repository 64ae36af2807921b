"""Command line: ``python -m pipeline {validate,build,simulate,spec-xlsx,conformance,package}``.

Exit codes: 0 clean, 1 data errors (the gate or the output checks found errors, or a raw
file could not be read), 2 usage, configuration or output-folder errors (``--out`` is a file,
not writable, the disk is full, another build holds it), 3 a pipeline defect (an unexpected
exception; in ``build`` only the study it happened in is affected). Every failure is one
clear line per problem; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

from pipeline.context import BUILD_MODES
from pipeline.errors import PipelineError, output_error


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", action="append", metavar="ID",
                   help="study to process (repeatable; default: every study in SPECS/studies)")
    p.add_argument("--raw", type=Path, default=Path("raw"), help="raw extracts folder (default: raw/)")
    p.add_argument("--specs", type=Path, default=Path("specs"), help="specification folder (default: specs/)")
    p.add_argument("--out", type=Path, default=Path("sdtm"), help="output folder (default: sdtm/)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is less than 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="run the raw-extract schema gate and write its reports")
    _common(p)
    p = sub.add_parser("build", help="gate, then build SDTM, XPT, Dataset-JSON, define.xml and listings")
    _common(p)
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--jobs", "-j", type=_positive_int, default=None, metavar="N",
                   help="studies gated and built at once, one process each (default: the CPU cores "
                        "available, at most one per study; 1 = in this process). Outputs and messages "
                        "do not depend on N")
    p.add_argument("--mode", choices=BUILD_MODES, default=BUILD_MODES[0],
                   help="final (default): an uncoded verbatim AE term is an error; draft: a warning. "
                        "The mode is recorded in build.log and define.xml")
    p.add_argument("--draft", dest="mode", action="store_const", const="draft", help="same as --mode draft")
    p.add_argument("--no-cache", "--rebuild", dest="no_cache", action="store_true",
                   help="build every study, even one whose inputs did not change since its last successful "
                        "build (by default its outputs are kept; the cache is OUT/.cache/)")
    p = sub.add_parser("simulate", help="regenerate the synthetic raw extracts")
    _common(p)
    p.add_argument("--subjects", type=int, default=None, help="override the number of subjects (benchmarks)")
    p.add_argument("--seed", type=int, default=None, help="override the study's seed")
    p = sub.add_parser("spec-xlsx", help="write the Excel view of the SDTM specification")
    _common(p)
    p.add_argument("--xlsx", type=Path, default=None, help="output workbook (default: OUT/spec/sdtm_spec.xlsx)")
    p = sub.add_parser("conformance", help="run CDISC CORE (SDTMIG 3.4) on every built study; needs `make conformance`")
    _common(p)
    p.add_argument("--core-cache", type=Path, default=None, metavar="DIR",
                   help="CDISC CORE rules cache (default: $CDISC_CORE_CACHE, else ../shared/reference/cdisc-core-cache)")
    p.add_argument("--rule", action="append", metavar="CORE-ID", help="run only this rule (repeatable; default: all)")
    p = sub.add_parser("package", help="assemble the eCTD module 5 layout of every built study, with a SHA-256 manifest")
    _common(p)
    p.add_argument("--package-dir", type=Path, default=Path("submission"), metavar="DIR",
                   help="where the package is written (default: submission/)")
    p.add_argument("--build-missing", action="store_true",
                   help="build the studies that have no build output in OUT first (as `build --study`)")
    return parser


#: subcommand -> "module:function"; each function takes the parsed args and returns an exit code
COMMANDS = {
    "validate": "pipeline.intake.gate:run_validate",
    "build": "pipeline.build:run_build",
    "simulate": "pipeline.simulate:run_simulate",
    "spec-xlsx": "pipeline.export.spec_xlsx:run_spec_xlsx",
    "conformance": "pipeline.export.conformance:run_conformance",
    "package": "pipeline.package.ectd:run_package",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module_name, func_name = COMMANDS[args.command].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the file system refused a write: a usage problem, not a defect
        if args.debug:
            raise
        err = output_error(exc)
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a bare traceback
        if args.debug:
            raise
        print(f"internal error ({type(exc).__name__}): {exc}. Re-run with --debug for details.", file=sys.stderr)
        return 3


#: the exit status of a run whose standard output could not be flushed at its end (the reader
#: closed the pipe early, e.g. ``| head``), as CPython's own shutdown gives it; an error status
#: of the run itself is kept instead
FLUSH_FAILED = 120


def end_process(code: int) -> NoReturn:
    """End the command line's process with exit status ``code``, without tearing down its heap.

    After a build, CPython's normal shutdown frees every object of the imported libraries one
    by one: 0.23-0.42 s of wall, one core freeing memory while the other waits, the last thing a
    data manager waits for (issue 14; bench/results.md, session 21). Nothing of a run needs that: every output is
    written, closed and swapped in before :func:`main` returns, and its worker pools are shut
    down. What the normal shutdown does that matters is done here: the exit handlers that the
    libraries registered (openpyxl's and matplotlib's temporary files, logging) run through
    ``atexit._run_exitfuncs``, the function CPython's shutdown calls, then stdout and stderr
    are flushed. A thread still running (other than a daemon) gets the normal shutdown, which
    waits for it. Only ``python -m pipeline`` ends this way; :func:`main` returns, for the tests
    and other callers."""
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader is gone, or the stream was closed
            if stream is sys.stdout and not code:
                code = FLUSH_FAILED
    os._exit(code)
