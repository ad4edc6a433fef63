"""``plrp train``: train a multi-label classifier from FASTA windows + labels (see plrp.train)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from plrp.errors import InputError
from plrp.models.checkpoint import parse_overrides


@click.command()
@click.option("--fasta", required=True, type=click.Path(dir_okay=False),
              help="FASTA of equal-length windows (names match the labels table).")
@click.option("--labels", required=True, type=click.Path(dir_okay=False),
              help="TSV: header 'name task1 task2 ...', one 0/1 row per window.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (.safetensors, native plrp format).")
@click.option("--metrics", type=click.Path(dir_okay=False), default=None,
              help="Metrics JSON to write [OUT with suffix .metrics.json].")
@click.option("--arch", default="plrp-default", show_default=True,
              help="Architecture name or a .toml file (name = ..., [hparams]).")
@click.option("--arch-param", "overrides", multiple=True, metavar="NAME=VALUE",
              help="Architecture hyper-parameter override (repeatable), e.g. n_filters=32.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--epochs", default=40, show_default=True, type=int, help="Maximum epochs.")
@click.option("--patience", default=4, show_default=True, type=int,
              help="Stop after this many epochs without a lower validation loss.")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@click.option("--weight-decay", default=0.0, show_default=True, type=float)
@click.option("--val-fraction", default=0.1, show_default=True, type=float)
@click.option("--test-fraction", default=0.1, show_default=True, type=float)
@click.option("--threads", default=None, type=int, help="torch CPU threads [torch's default].")
@click.option("--simulation", type=click.Path(dir_okay=False), default=None,
              help="A PREFIX.simulation.json from plrp simulate, copied into the training record.")
def train(fasta, labels, out, metrics, arch, overrides, seed, epochs, patience, batch_size, lr,
          weight_decay, val_fraction, test_fraction, threads, simulation):
    """Train a model on the CPU (Adam, BCE on logits, early stopping on validation loss).

    Writes the checkpoint and a metrics JSON with per-task held-out test AUROC.
    """
    from plrp.train import TrainConfig, train as run_training

    extra = None
    if simulation:
        try:
            extra = {"simulation": json.loads(Path(simulation).read_text())}
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{simulation}: not a readable JSON file ({err})") from None
    config = TrainConfig(arch=arch, hparams=parse_overrides(overrides), seed=seed,
                         max_epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, patience=patience,
                         val_fraction=val_fraction, test_fraction=test_fraction, threads=threads)
    run_training(fasta, labels, out, metrics_out=metrics, config=config, extra_record=extra,
                 progress=lambda line: click.echo(f"plrp train: {line}", err=True))
