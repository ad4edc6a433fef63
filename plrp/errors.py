"""Errors a user can cause. The CLI prints them as one line and exits with their code."""


class PlrpError(Exception):
    """A user-facing error: bad input, bad option, unsupported model. Never a bug."""

    exit_code = 1


class InputError(PlrpError):
    """A file the user gave us is malformed (FASTA, BED, checkpoint, config)."""

    exit_code = 2


class UnsupportedModelError(PlrpError):
    """The model holds a layer or op that plrp cannot explain correctly."""

    exit_code = 3
