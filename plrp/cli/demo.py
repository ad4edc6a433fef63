"""``plrp demo``: explain the shipped example FASTA with the shipped model; say how to view it."""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_prefix", default="demo-out/demo", show_default=True,
              help="Output prefix.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo(out_prefix, device, quiet) -> None:
    """Run explain on the shipped example sequences with the default model.

    Also copies the example FASTA and its motif BED next to the outputs, so IGV can load
    (and index) everything from one folder.
    """
    from plrp.jobs.explain import run_demo

    result, _, motifs = run_demo(out_prefix, device=device, progress=not quiet)
    lines = [f"plrp demo: explained {result.n_windows} windows in {result.seconds:.1f} s",
             f"  relevance file (HDF5): {result.h5}"]
    lines += [f"  track {t}: {p}" for (_, t), p in result.bigwigs.items()]
    lines += [f"  track {t} (text): {p}" for (_, t), p in result.bedgraphs.items()]
    lines += ["", f"View in IGV (desktop): File > Open Session...   {result.session}",
              f"  then File > Load from File...   {motifs}   (implanted motifs: ground truth)",
              "In Python: plrp.outputs.h5.open_relevance(path); layout in docs/outputs.md."]
    click.echo("\n".join(lines))
