"""``plrp export``: hand relevance files to other tools (one subcommand per tool)."""

from __future__ import annotations

import click


@click.group()
def export() -> None:
    """Export a relevance file (PREFIX.h5) for other tools."""


@export.command("modisco")
@click.argument("h5_path", metavar="PREFIX.h5", type=click.Path(dir_okay=False))
@click.option("--target", default=None, help="Target to export (default: the only one).")
@click.option(
    "--method",
    default=None,
    help="Attribution method to export: plrp or lrp (default: plrp, or the only one).",
)
@click.option(
    "--top", type=int, default=None,
    help="Keep only the N windows with the largest explained score (default: all).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False),
    help="Folder for ohe.npz, attr.npz, contrib.npz, windows.bed and README.txt.",
)
def modisco(h5_path: str, target: str | None, method: str | None, top: int | None,
            out_dir: str) -> None:
    """Write the one-hot and hypothetical-contribution arrays TF-MoDISco reads.

    Then run: modisco motifs -s OUT/ohe.npz -a OUT/attr.npz -n 2000 -w L
    (L = the window length; see OUT/README.txt). Needs a file with per-window arrays
    (plrp explain --arrays, or --regions BED).
    """
    from plrp.jobs.export import export_modisco

    result = export_modisco(h5_path, out_dir, target=target, method=method, top=top)
    click.echo(
        f"plrp: exported {result.n_windows} windows x {result.window} bp "
        f"({result.method}/{result.target}) to {out_dir}",
        err=True,
    )
