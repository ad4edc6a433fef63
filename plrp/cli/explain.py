"""``plrp explain``: relevance of every window of a FASTA -> PREFIX.h5 + genome tracks."""

from __future__ import annotations

import shlex
import sys

import click

from plrp.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_COMPOSITE, DEFAULT_MAX_N_FRACTION,
                           DEFAULT_MERGE, DEFAULT_P_POS, DEFAULT_VARIANT)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--fasta", required=True, type=click.Path(dir_okay=False),
              help="Genome or sequences (plain or bgzip FASTA). Never modified; indexes go "
                   "to a temporary folder.")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint (.safetensors native, or .pt/.pth state_dict with --arch). "
                   "Default: the shipped model.")
@click.option("--arch", default=None, help="Architecture of a plain state_dict checkpoint.")
@click.option("--out", "out_prefix", required=True,
              help="Output prefix: writes PREFIX.h5 and PREFIX.<target>.bedGraph.")
@click.option("--target", "targets", multiple=True,
              help="Output name or index to explain (repeatable; default: all).")
@click.option("--regions", default=None, type=click.Path(dir_okay=False),
              help="BED file: explain only these regions (0-based half-open; overlaps merged).")
@click.option("--window", type=int, default=None, help="Window length (default: model input).")
@click.option("--stride", type=int, default=None, help="Step between windows (default: window).")
@click.option("--method", "methods", multiple=True, type=click.Choice(["lrp", "plrp"]),
              help="plrp (default) or lrp; give twice to store both.")
@click.option("--variant", type=click.Choice(["lambda", "m"]), default=DEFAULT_VARIANT,
              show_default=True, help="PLRP variant: rescale kept relevance or re-route it.")
@click.option("--p-pos", type=float, default=DEFAULT_P_POS, show_default=True,
              help="Fraction of positive relevance mass pruned per layer.")
@click.option("--p-neg", type=float, default=None,
              help="Fraction of negative relevance mass pruned (default: p-pos / 2).")
@click.option("--composite", default=DEFAULT_COMPOSITE, show_default=True,
              help="Rule composite: a shipped name or a .toml file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True)
@click.option("--merge", type=click.Choice(["nearest-centre", "mean", "max"]),
              default=DEFAULT_MERGE, show_default=True,
              help="Value of a base covered by overlapping windows.")
@click.option("--max-n-fraction", type=float, default=DEFAULT_MAX_N_FRACTION,
              show_default=True, help="Skip windows with a larger fraction of N/IUPAC bases.")
@click.option("--pad-short", is_flag=True,
              help="Pad sequences/regions shorter than the window with N instead of skipping.")
@click.option("--bigwig", is_flag=True, help="Also write PREFIX.<target>.bw.")
@click.option("--shard", default=None, help="I/N: explain only the I-th of N window blocks.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def explain(fasta, model, arch, out_prefix, targets, regions, window, stride, methods, variant,
            p_pos, p_neg, composite, device, batch_size, merge, max_n_fraction, pad_short,
            bigwig, shard, quiet) -> None:
    """Explain every window of FASTA with (P)LRP; write PREFIX.h5 and bedGraph tracks."""
    import logging

    from plrp.run import explain_fasta

    if quiet:
        logging.getLogger("plrp").setLevel(logging.ERROR)
    result = explain_fasta(
        fasta, out_prefix, model=model, arch=arch, targets=list(targets) or None,
        regions=regions, window=window, stride=stride, methods=list(methods) or ("plrp",),
        variant=variant, p_pos=p_pos, p_neg=p_neg, composite=composite, device=device,
        batch_size=batch_size, bigwig=bigwig, shard=shard, merge=merge,
        max_n_fraction=max_n_fraction, pad_short=pad_short, progress=not quiet,
        command_line=" ".join(["plrp"] + [shlex.quote(a) for a in sys.argv[1:]]))
    if not quiet:
        click.echo(f"plrp: explained {result.n_windows} windows in {result.seconds:.1f} s "
                   f"({result.engine_seconds:.1f} s of it in the engine) "
                   f"-> {result.h5}", err=True)
