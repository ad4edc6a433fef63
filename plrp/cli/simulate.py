"""``plrp simulate``: synthetic sequences with implanted JASPAR motifs (see plrp.simulate)."""

from __future__ import annotations

import click

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
@click.option("--genome", is_flag=True, help="Write long chromosomes with motif sites instead.")
@click.option("--n-chroms", default=2, show_default=True, type=int,
              help="Number of chromosomes (--genome).")
@click.option("--site-spacing", default=1000, show_default=True, type=int,
              help="Mean bp between motif sites (--genome).")
@click.option("--site-length", default=200, show_default=True, type=int,
              help="Length of a motif site in bp (--genome).")
def simulate(prefix, n_seqs, length, seed, gc, motif_rate, distractor_rate, max_copies, tasks,
             distractors, genome, n_chroms, site_spacing, site_length):
    """Simulate sequences with JASPAR motifs implanted at known positions.

    By default the tasks (label columns) are CTCF, TP53 and CTCF_AND_TP53 (needs both), with
    SPI1 as a distractor no label depends on. Motif instances are sampled from JASPAR 2026
    matrices; the BED lists every implanted instance (0-based, half-open).
    """
    common = dict(seed=seed, gc=gc, motif_rate=motif_rate, distractor_rate=distractor_rate,
                  max_copies=max_copies, tasks=_parse_tasks(tasks),
                  distractors=tuple(d.strip() for d in distractors.split(",") if d.strip()))
    if genome:
        data = sim.simulate_genome(n_chroms, length or 100_000, site_length=site_length,
                                   site_spacing=site_spacing, **common)
        what = f"{n_chroms} chromosomes, {len(data.sites)} sites"
    else:
        data = sim.simulate(n_seqs, length or 200, **common)
        what = f"{n_seqs} windows"
    paths = sim.write_outputs(prefix, data)
    click.echo(f"plrp simulate: {what}, {len(data.instances)} motif instances -> "
               f"{', '.join(str(p) for p in paths)}", err=True)
