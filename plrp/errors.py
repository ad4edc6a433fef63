"""Errors a user can cause. The CLI prints them as one line and exits with their code.

Exit codes (docs/explain.md keeps the same table; tests/test_exit_codes.py checks it):

    0    success
    1    an internal error (a bug: the traceback is printed)
    2    a usage error: an unknown or bad option or option value (click's own included)
    3    an input file is malformed or missing (FASTA, BED, checkpoint, config)
    4    the model holds a layer or op that plrp cannot explain correctly
    5    an output cannot be written (read-only folder or filesystem, no permission,
         a path part that is a file)
    6    not enough disk space or quota (estimated up front, or hit during the run)
    130  interrupted (SIGINT, Ctrl-C)
    143  terminated (SIGTERM)
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_UNSUPPORTED = 4
EXIT_OUTPUT = 5
EXIT_NO_SPACE = 6
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class PlrpError(Exception):
    """A user-facing error: a bad option or combination of options. Never a bug."""

    exit_code = EXIT_USAGE


class InputError(PlrpError):
    """A file the user gave us is malformed (FASTA, BED, checkpoint, config)."""

    exit_code = EXIT_INPUT


class UnsupportedModelError(PlrpError):
    """The model holds a layer or op that plrp cannot explain correctly."""

    exit_code = EXIT_UNSUPPORTED


class OutputError(PlrpError):
    """An output location cannot be written (EACCES, EROFS, ENOTDIR, ...)."""

    exit_code = EXIT_OUTPUT


class NoSpaceError(OutputError):
    """The outputs do not fit: the estimate exceeds the free space, or ENOSPC/EDQUOT/EFBIG."""

    exit_code = EXIT_NO_SPACE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every output is cleaned up the same way (exit 143)."""
