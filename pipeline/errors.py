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


class OutputError(PipelineError):
    """The output folder cannot be used: it is a file, not writable, the disk is full,
    or another build holds it (exit 2). The message names the path and what to do."""

    exit_code = 2


def output_error(exc: OSError, what: str = "write") -> OutputError:
    """One clear line for an operating-system failure while writing outputs."""
    import errno

    where = exc.filename or "the output folder"
    advice = {
        errno.ENOSPC: "free some disk space or choose another --out",
        errno.EDQUOT: "free some disk quota or choose another --out",
        errno.EACCES: "make it writable or choose another --out",
        errno.EPERM: "make it writable or choose another --out",
        errno.EROFS: "the file system is read-only; choose another --out",
        errno.ENOTDIR: "a file stands where a folder is needed; move it or choose another --out",
        errno.EEXIST: "a file stands where a folder is needed; move it or choose another --out",
    }.get(exc.errno or 0, "check the output folder or choose another --out")
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot {what} {where}: {reason}; {advice}")
