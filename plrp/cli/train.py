"""``plrp train``: train a multi-label classifier from FASTA windows + labels (see plrp.train)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import click

from plrp.errors import InputError, PlrpError


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _parse_overrides(pairs: tuple[str, ...]) -> dict:
    """NAME=VALUE strings -> dict, as elsewhere in plrp: VALUE is a TOML value (64, 0.1,
    [1, 2], "a") or a bare string; a bare comma-separated value becomes a list."""
    out = {}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key:
            raise PlrpError(f"--arch-param expects NAME=VALUE, e.g. n_filters=64; got {pair!r}")
        if key in out:
            raise PlrpError(f"--arch-param {key!r} given twice")
        parsed = _parse_value(value)
        if isinstance(parsed, str) and "," in parsed and not value.startswith(('"', "'")):
            parsed = [_parse_value(v.strip()) for v in value.split(",")]
        out[key] = parsed
    return out


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
    config = TrainConfig(arch=arch, hparams=_parse_overrides(overrides), seed=seed,
                         max_epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, patience=patience,
                         val_fraction=val_fraction, test_fraction=test_fraction, threads=threads)
    run_training(fasta, labels, out, metrics_out=metrics, config=config, extra_record=extra,
                 progress=lambda line: click.echo(f"plrp train: {line}", err=True))
