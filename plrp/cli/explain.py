"""``plrp explain``: relevance of every window of a FASTA -> PREFIX.h5 + genome tracks."""

from __future__ import annotations

import shlex
import sys

import click

from plrp.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_BEDGRAPH, DEFAULT_COMPOSITE,
                           DEFAULT_MAX_N_FRACTION, DEFAULT_MAX_TARGETS, DEFAULT_MERGE,
                           DEFAULT_P_POS, DEFAULT_SPARSITY, DEFAULT_VARIANT)
from plrp.jobs.explain import ARRAY_DTYPES, BEDGRAPH_CHOICES, PRECISIONS


class _MethodChoice(click.Choice):
    """--method's names, read from the baselines' table only when asked for (a value to
    check, or --help): the table imports torch, which other usage errors need not wait for."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self):
        from plrp.jobs.methods import method_names

        return tuple(method_names())

    @choices.setter
    def choices(self, value) -> None:
        pass


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--fasta", required=True, type=click.Path(dir_okay=False),
              help="Genome or sequences (plain or bgzip FASTA). Never modified; indexes go "
                   "to a temporary folder.")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint (.safetensors native, or .pt/.pth state_dict with --arch). "
                   "Default: the shipped model.")
@click.option("--arch", default=None, help="Architecture of a plain state_dict checkpoint.")
@click.option("--arch-param", "arch_params", multiple=True, metavar="NAME=VALUE",
              help="Override an architecture hyper-parameter (repeatable), "
                   "e.g. --arch-param output_names=CTCF,GATA1.")
@click.option("--out", "out_prefix", required=True,
              help="Output prefix: writes PREFIX.h5 and PREFIX.<target>.bedGraph.gz.")
@click.option("--target", "targets", multiple=True,
              help="Output name or index to explain (repeatable), or all (the default).")
@click.option("--regions", multiple=True, metavar="BED|NARROWPEAK|CHR:START-END",
              help="Explain only these regions (repeatable): a BED file (plain or bgzip; "
                   "0-based half-open, overlaps merged and tiled), a narrowPeak (one window "
                   "centred on each summit) or a locus chr1:1,000-2,000 (1-based inclusive).")
@click.option("--chroms", multiple=True, metavar="NAME[,NAME...]",
              help="Only these sequences (comma-separated, repeatable).")
@click.option("--exclude", default=None, type=click.Path(dir_okay=False),
              help="Blacklist BED (plain or bgzip): no window overlapping it is explained.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch (default: torch's own choice).")
@click.option("--window", type=int, default=None, help="Window length (default: model input).")
@click.option("--stride", type=int, default=None, help="Step between windows (default: window).")
@click.option("--method", "methods", multiple=True, type=_MethodChoice(),
              help="plrp (default), lrp, or a baseline (computed by its library with its "
                   "default options: tracks to set beside PLRP's); repeat to store several.")
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
@click.option("--sparsity", type=float, default=DEFAULT_SPARSITY, show_default=True,
              help="Per window and sign, leave out of the tracks the smallest bases holding "
                   "this fraction of the relevance mass (0: every non-zero base).")
@click.option("--bedgraph", type=click.Choice(BEDGRAPH_CHOICES), default=DEFAULT_BEDGRAPH,
              show_default=True,
              help="bgzip: PREFIX.<target>.bedGraph.gz + .tbi (tabix, IGV); plain: a text "
                   "bedGraph with a track line; none.")
@click.option("--bigwig", is_flag=True, help="Also write PREFIX.<target>.bw.")
@click.option("--arrays/--no-arrays", default=None,
              help="Store the per-window (N, 4, L) relevance, hypothetical and one-hot arrays "
                   "(what TF-MoDISco reads). Default: with --regions only.")
@click.option("--array-dtype", type=click.Choice(ARRAY_DTYPES), default="float32",
              show_default=True, help="Storage type of the per-window arrays.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Engine arithmetic: tf32 / bf16 where the device has them.")
@click.option("--rc-average", is_flag=True,
              help="Average each window with its reverse complement (mapped back).")
@click.option("--max-targets", type=int, default=DEFAULT_MAX_TARGETS, show_default=True,
              help="Refuse more targets than this, with a size and time estimate.")
@click.option("--shard", default=None, help="I/N: explain only the I-th of N window blocks.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary line (warnings stay).")
def explain(fasta, out_prefix, targets, methods, quiet, **options) -> None:
    """Explain every window of FASTA with (P)LRP; write PREFIX.h5 and per-base tracks."""
    from plrp.jobs.explain import explain_fasta

    # --quiet drops the progress bar and the summary line; warnings still reach stderr
    result = explain_fasta(
        fasta, out_prefix, targets=list(targets) or None, methods=tuple(methods) or ("plrp",),
        progress=not quiet, **options,
        command_line=" ".join(["plrp"] + [shlex.quote(a) for a in sys.argv[1:]]))
    if not quiet:
        click.echo(f"plrp: explained {result.n_windows} windows in {result.seconds:.1f} s "
                   f"({result.engine_seconds:.1f} s of it in the engine) "
                   f"-> {result.h5}", err=True)
