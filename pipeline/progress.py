"""Progress display (stderr) and the deterministic build log.

Two outputs, kept apart on purpose:

- :class:`Progress` prints one line per finished step to stderr, e.g.
  ``[NCT06316427] 7/16 lb ok 12.3s`` (seconds since the run started). It is off
  with ``--no-progress`` or when stderr is not a terminal. Wall-clock times appear only here:
  they are never written to a file of the build, so outputs stay byte-identical on rerun.
- :class:`BuildLog` collects the lines of ``<out>/<STUDYID>/build.log``: inputs (each raw
  file with its SHA-256 and row count), software versions, spec versions, what each step
  did, and counts per dataset, with no times, so the log is itself reproducible and listed
  in the manifest.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Step counter for one study on stderr."""

    def __init__(self, studyid: str, total: int, enabled: bool | None = None, stream: TextIO | None = None):
        self.studyid = studyid
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.done = 0
        self.start = time.perf_counter()
        #: (step, seconds) of every step, for callers that want them (the benchmark)
        self.timings: list[tuple[str, float]] = []
        self._last = self.start

    def step(self, name: str, status: str = "ok") -> None:
        """Record one finished step and print it."""
        now = time.perf_counter()
        self.timings.append((name, now - self._last))
        self._last = now
        self.done += 1
        if self.enabled:
            print(f"[{self.studyid}] {self.done}/{self.total} {name} {status} {now - self.start:.1f}s",
                  file=self.stream, flush=True)


class BuildLog:
    """The lines of one study's build.log (no times: reproducible)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(f"[{title}]")

    def add(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
