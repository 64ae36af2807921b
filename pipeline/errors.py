"""Exceptions that the CLI turns into one clear line and an exit code (never a traceback)."""


class PipelineError(Exception):
    """Base class. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(PipelineError):
    """The specs or study parameters are missing or inconsistent (exit 2)."""

    exit_code = 2


class InputError(PipelineError):
    """A raw file cannot be read at all: missing, empty, undecodable, truncated (exit 1).

    The message names the study, the file and the problem.
    """

    exit_code = 1


class DataError(PipelineError):
    """Data violate a rule that blocks the build (exit 1)."""

    exit_code = 1
