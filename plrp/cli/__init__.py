"""The ``plrp`` command: one verb per job, each a thin click layer over the library.

Verbs live in their own modules (``plrp/cli/<verb>.py``, a click command named like the
verb) and are imported only when used, so ``plrp --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from plrp import __version__
from plrp.errors import PlrpError

# verb -> module under plrp.cli; order is the order of `plrp --help`.
VERBS = {
    "demo": "demo",
    "explain": "explain",
    "inspect": "inspect",
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
        except KeyboardInterrupt:
            click.echo("plrp: interrupted", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plrp")
@click.option("-v", "--verbose", count=True, help="More log lines on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Explain genome CNNs with pruned layer-wise relevance propagation (PLRP)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="plrp: %(message)s")
    from plrp.devices import tune_cpu_allocator

    tune_cpu_allocator()
