"""The ``plrp`` command: one verb per job, each a thin click layer over the library.

Verbs live in their own modules (``plrp/cli/<verb>.py``, a click command named like the
verb) and are imported only when used, so ``plrp --help`` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import logging
import signal
import sys

import click

from plrp import __version__
from plrp.errors import (EXIT_NO_SPACE, EXIT_OUTPUT, EXIT_SIGINT, EXIT_SIGTERM,
                         PlrpError, Terminated)

# OSErrors that reach the CLI unmapped are still a user's situation, not a bug.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}

# verb -> module under plrp.cli; order is the order of `plrp --help`.
VERBS = {
    "demo": "demo",
    "explain": "explain",
    "inspect": "inspect",
    "convert": "convert",
    "simulate": "simulate",
    "train": "train",
    "evaluate": "evaluate",
    "plot": "plot",
    "merge": "merge",
    "export": "export",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [v for v, mod in VERBS.items() if importlib.util.find_spec(f"plrp.cli.{mod}")]

    def get_command(self, ctx, name):
        mod = VERBS.get(name)
        if mod is None or importlib.util.find_spec(f"plrp.cli.{mod}") is None:
            return None
        return getattr(importlib.import_module(f"plrp.cli.{mod}"), name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PlrpError as err:
            click.echo(f"plrp: error: {err}", err=True)
            sys.exit(err.exit_code)
        except Terminated:
            click.echo("plrp: interrupted by SIGTERM", err=True)
            sys.exit(EXIT_SIGTERM)
        except KeyboardInterrupt:
            click.echo("plrp: interrupted", err=True)
            sys.exit(EXIT_SIGINT)
        except OSError as err:
            code = (EXIT_NO_SPACE if err.errno in _NO_SPACE else
                    EXIT_OUTPUT if err.errno in _NOT_WRITABLE else None)
            if code is None:
                raise
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"plrp: error: {where}{err.strerror or err}", err=True)
            sys.exit(code)


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plrp")
@click.option("-v", "--verbose", count=True, help="More log lines on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Explain genome CNNs with pruned layer-wise relevance propagation (PLRP)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="plrp: %(message)s")
    from plrp.hostmemory import tune_cpu_allocator

    tune_cpu_allocator()
    # SIGTERM cleans up like Ctrl-C; a file-size limit must give EFBIG, not kill the process
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
