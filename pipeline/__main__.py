"""``python -m pipeline``: the command line (:mod:`pipeline.cli`)."""

import sys

# pandera imports hypothesis, when it is installed (it is a test tool: the test extra installs it
# in the project's venv), to register data-synthesis strategies that the pipeline never uses.
# That import costs about 0.15 s of CPU in the parent of every build, before it can fork the gate's
# workers. Marked as not importable here, for the command line only (never for the tests, which
# import pipeline.cli, not this module), the command line runs as it does where the test extra is
# not installed.
sys.modules.setdefault("hypothesis", None)

from pipeline.parallel import one_run_collector  # noqa: E402 - after the mark above

one_run_collector()  # this process lives for one run: the collector as in the build's workers

from pipeline.cli import end_process, main  # noqa: E402 - after the collector's thresholds

end_process(main())  # without the interpreter's teardown of the heap (see end_process)
