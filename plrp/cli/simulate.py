"""``plrp simulate``: synthetic sequences with implanted JASPAR motifs (see plrp.simulate)."""

from __future__ import annotations

import click
from click.core import ParameterSource

from plrp import simulate as sim
from plrp.errors import PlrpError


def _parse_tasks(items: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """NAME=MOTIF[+MOTIF...] strings -> {task: motifs}; none given -> the default grammar."""
    if not items:
        return dict(sim.DEFAULT_TASKS)
    tasks = {}
    for item in items:
        name, sep, motifs = (part.strip() for part in item.partition("="))
        if not sep or not name or not motifs or name in tasks:
            raise PlrpError(f"--task expects distinct NAME=MOTIF[+MOTIF...], got {item!r}")
        tasks[name] = tuple(m.strip() for m in motifs.split("+"))
    return tasks


def _and_args(options: dict) -> dict:
    return dict(motif_rate=options["motif_rate"], max_copies=options["max_copies"],
                tasks=_parse_tasks(options["tasks"]))


def _pair_args(options: dict) -> dict:
    return dict(pair=tuple(m.strip() for m in options["pair"].split(",")),
                max_gap=options["max_gap"], positive_rate=options["positive_rate"])


#: grammar -> (its CLI options -> keyword arguments of plrp.simulate.GRAMMARS[grammar])
GRAMMAR_ARGS = {"and": _and_args, "pair": _pair_args}

# options only one grammar reads (parameter name -> grammar); giving one to the other grammar
# is an error rather than silently ignored
GRAMMAR_ONLY = {"motif_rate": "and", "max_copies": "and", "tasks": "and", "genome": "and",
                "n_chroms": "and", "site_spacing": "and", "site_length": "and",
                "pair": "pair", "max_gap": "pair", "positive_rate": "pair"}


def _check_grammar_options(ctx: click.Context, grammar: str) -> None:
    for param in ctx.command.params:
        owner = GRAMMAR_ONLY.get(param.name)
        if (owner and owner != grammar
                and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE):
            raise PlrpError(f"{param.opts[-1]} applies to --grammar {owner} only")


@click.command()
@click.option("--out", "-o", "prefix", required=True, metavar="PREFIX",
              help="Output prefix: writes PREFIX.fa, PREFIX.motifs.bed, PREFIX.simulation.json "
                   "and PREFIX.labels.tsv (windows) or PREFIX.sites.tsv (--genome).")
@click.option("-n", "--n-seqs", default=1000, show_default=True, type=int,
              help="Number of windows (ignored with --genome).")
@click.option("--length", type=int, default=None,
              help="Window length in bp [200]; with --genome the chromosome length [100000].")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--gc", default=0.5, show_default=True, type=float,
              help="GC fraction of the i.i.d. background.")
@click.option("--motif-rate", default=0.5, show_default=True, type=float,
              help="Probability that a window holds each motif some task needs.")
@click.option("--distractor-rate", default=0.3, show_default=True, type=float,
              help="Probability that a window holds each distractor motif (no task needs it).")
@click.option("--max-copies", default=1, show_default=True, type=int,
              help="Copies per present motif: uniform in 1..N.")
@click.option("--task", "tasks", multiple=True, metavar="NAME=MOTIF[+MOTIF]",
              help="A task and the motifs it needs (AND), repeatable; default: CTCF=CTCF, "
                   "TP53=TP53, CTCF_AND_TP53=CTCF+TP53. Motifs: CTCF, TP53, SPI1.")
@click.option("--distractors", default=",".join(sim.DEFAULT_DISTRACTORS), show_default=True,
              help="Comma-separated motifs implanted without affecting labels ('' for none).")
@click.option("--grammar", type=click.Choice(list(sim.GRAMMARS)), default="and",
              show_default=True,
              help="and: each task is an AND over motifs (--task). pair: one task, positive iff "
                   "motif B sits on A's strand downstream of A within --max-gap bp; "
                   "PREFIX.motifs.bed then holds the pair members only and PREFIX.ignored.bed "
                   "the distractors and decoys.")
@click.option("--pair", "pair", default="CTCF,TP53", show_default=True, metavar="A,B",
              help="The two motifs of the pair grammar.")
@click.option("--max-gap", default=20, show_default=True, type=int,
              help="Pair grammar: most bp between A and B in a positive pair.")
@click.option("--positive-rate", default=0.5, show_default=True, type=float,
              help="Pair grammar: fraction of windows drawn as positive pairs.")
@click.option("--genome", is_flag=True, help="Write long chromosomes with motif sites instead.")
@click.option("--n-chroms", default=2, show_default=True, type=int,
              help="Number of chromosomes (--genome).")
@click.option("--site-spacing", default=1000, show_default=True, type=int,
              help="Mean bp between motif sites (--genome).")
@click.option("--site-length", default=200, show_default=True, type=int,
              help="Length of a motif site in bp (--genome).")
@click.pass_context
def simulate(ctx, prefix, n_seqs, length, seed, gc, distractor_rate, distractors, grammar,
             genome, n_chroms, site_spacing, site_length, **grammar_options):
    """Simulate sequences with JASPAR motifs implanted at known positions.

    By default (--grammar and) the tasks (label columns) are CTCF, TP53 and CTCF_AND_TP53
    (needs both), with SPI1 as a distractor no label depends on. --grammar pair labels one task
    by a CTCF-TP53 pair at a set spacing and orientation. Motif instances are sampled from
    JASPAR 2026 matrices; the BED lists the implanted instances (0-based, half-open).
    """
    _check_grammar_options(ctx, grammar)
    common = dict(seed=seed, gc=gc, distractor_rate=distractor_rate,
                  distractors=tuple(d.strip() for d in distractors.split(",") if d.strip()),
                  **GRAMMAR_ARGS[grammar](grammar_options))
    if genome:
        data = sim.simulate_genome(n_chroms, length or 100_000, site_length=site_length,
                                   site_spacing=site_spacing, **common)
        what = f"{n_chroms} chromosomes, {len(data.sites)} sites"
    else:
        data = sim.GRAMMARS[grammar](n_seqs, length or 200, **common)
        what = f"{n_seqs} windows" + ("" if grammar == "and" else f" ({grammar} grammar)")
    paths = sim.write_outputs(prefix, data)
    n_instances = len(data.instances) + len(getattr(data, "ignored", None) or [])
    click.echo(f"plrp simulate: {what}, {n_instances} motif instances -> "
               f"{', '.join(str(p) for p in paths)}", err=True)
