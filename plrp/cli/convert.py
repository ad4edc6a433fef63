"""``plrp convert``: another package's checkpoint -> a native plrp ``.safetensors``."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Native checkpoint to write (.safetensors).")
@click.option("--arch", default=None, metavar="NAME|FILE.toml",
              help="Architecture, for a state_dict in no layout plrp recognises.")
@click.option("--arch-param", "arch_params", multiple=True, metavar="NAME=VALUE",
              help="Override an architecture hyper-parameter (repeatable), "
                   "e.g. --arch-param output_names=CTCF,GATA1.")
def convert(source, out, arch, arch_params) -> None:
    """Convert SOURCE (kipoi / selene DeepSEA, kipoi Basset, bpnet-lite BPNet or ChromBPNet,
    a state_dict or a whole torch.save'd model; never unpickled) into a native plrp
    checkpoint that loads without --arch.

    Prints a JSON summary on stdout: format detected, architecture, alphabet, outputs.
    """
    from plrp.models.checkpoint import parse_overrides
    from plrp.models.convert import convert_checkpoint

    summary = convert_checkpoint(source, out, arch=arch, arch_params=parse_overrides(arch_params))
    names = summary["output_names"]
    summary["output_names"] = names if len(names) <= 12 else names[:12] + [f"... ({len(names)})"]
    click.echo(json.dumps(summary, indent=2, sort_keys=True))
