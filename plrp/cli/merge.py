"""``plrp merge``: join the shard files of ``plrp explain --shard I/N`` into one run's output."""

from __future__ import annotations

import click

from plrp.outputs.trackfiles import TRACK_FORMATS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("shards", nargs=-1, required=True, metavar="SHARD.h5...",
                type=click.Path(dir_okay=False))
@click.option("--out", "out_prefix", required=True,
              help="Output prefix: writes PREFIX.h5 and PREFIX.<target>.bedGraph.")
@click.option("--bedgraph", type=click.Choice(["plain", "bgzip", "none"]), default="bgzip",
              show_default=True,
              help="bedGraph tracks: plain text (IGV), bgzip + tabix index (.bedGraph.gz, "
                   ".tbi), or none.")
@click.option("--bigwig", is_flag=True, help="Also write PREFIX.<target>.bw.")
def merge(shards, out_prefix, bedgraph, bigwig) -> None:
    """Merge all N shards of one `plrp explain --shard I/N` run (any order).

    The result equals one run without --shard: the same HDF5 datasets and the same
    track bytes. Shards from different models or settings, and missing or repeated
    shards, are refused. Works with and without per-window arrays.
    """
    from plrp.jobs.merge import merge_shards

    formats = [f for f in (bedgraph, "bigwig" if bigwig else None)
               if f in TRACK_FORMATS]
    result = merge_shards(list(shards), out_prefix, formats=formats)
    click.echo(f"plrp: merged {result.n_shards} shards ({result.n_windows} windows) "
               f"-> {result.h5}", err=True)
