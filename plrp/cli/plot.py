"""``plrp plot``: a relevance sequence logo of a genome region from a relevance file."""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--h5", "h5_path", required=True, type=click.Path(dir_okay=False),
              help="Relevance file written by `plrp explain` (PREFIX.h5).")
@click.option("--region", required=True,
              help="CHROM:START-END, 0-based half-open like BED (at most 2000 bp).")
@click.option("--target", default=None, help="Target to show (needed when the file has several).")
@click.option("--truth", default=None, type=click.Path(dir_okay=False),
              help="BED of ground-truth motifs to shade (chrom start end name).")
@click.option("--fasta", default=None, type=click.Path(dir_okay=False),
              help="FASTA of the bases, for a file without per-window arrays (default: "
                   "the FASTA the file names).")
@click.option("-o", "--out", "out_png", required=True, type=click.Path(dir_okay=False),
              help="Output PNG.")
def plot(h5_path, region, target, truth, fasta, out_png) -> None:
    """Draw the relevance of REGION as a sequence logo (LRP and PLRP panels stacked).

    Heights are the stored per-base track (a base missing from a sparse track is 0).
    """
    from plrp.jobs.plot import plot_region

    path = plot_region(h5_path, region, out_png, target=target, truth_bed=truth, fasta=fasta)
    click.echo(f"plrp plot: wrote {path}", err=True)
