"""``plrp inspect``: show a model's layers, the rule each gets and whether it is pruned."""

from __future__ import annotations

import json

import click


def _shape_text(shape) -> str:
    """describe_layers gives per-window shapes; a run has N windows in a batch."""
    if shape is None:
        return "-"
    return "(" + ", ".join(["N", *(str(d) for d in shape)]) + ")"


def _p_text(p, name: str) -> float:
    """The proportion a layer gets from a float or a {name: p, "*": default} schedule."""
    if isinstance(p, dict):
        return float(p.get(name, p.get("*", 0.0)))
    return float(p or 0.0)


def _pruned_text(row: dict, p_pos: float, p_neg: float) -> str:
    if not row.get("pruned"):
        return "no"
    pp, pn = _p_text(p_pos, row["name"]), _p_text(p_neg, row["name"])
    if pp == 0 and pn == 0:
        return "no (p = 0)"
    return f"yes (p_pos {pp:g}, p_neg {pn:g})"


def _training_summary(training: dict) -> str:
    """One line from the training record: its scalar entries and the test metrics (the full
    record stays in the checkpoint's ``plrp.meta``)."""
    parts = [f"{k} {v}" for k, v in training.items()
             if isinstance(v, (int, float, str)) and not k.startswith("format")]
    data = training.get("data")
    if isinstance(data, dict) and isinstance(data.get("n_windows"), int):
        parts.append(f"{data['n_windows']} windows")
    test = training.get("test")
    if isinstance(test, dict):
        for metric, value in test.items():
            if isinstance(value, dict):
                scores = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in value.items())
                parts.append(f"test {metric}: {scores}")
    return "; ".join(parts) if parts else json.dumps(training, sort_keys=True)[:200]


# how the header names a target kind (plrp.engine.targets.SEEDS)
_KIND_TEXT = {"softmax_profile": "softmax-weighted profile",
              "bpnet_profile": "bpnet profile: mean-centred, softmax-weighted, strands jointly"}


def format_report(loaded, rows: list[dict], *, composite: str, window: int,
                  p_pos: float, p_neg: float) -> str:
    """The text ``plrp inspect`` prints: a header about the model, then one line per layer.

    ``rows``: :func:`plrp.engine.describe_layers` output (name, op, output_shape, rule, pruned).
    """
    spec, meta = loaded.spec, loaded.meta
    targets = loaded.model.target_specs()

    def target_text(name: str, t: dict) -> str:
        if t["kind"] == "logit":
            return f"{name} (logit {t['index']}, head {t['head']})"
        return f"{name} ({_KIND_TEXT.get(t['kind'], t['kind'])}, head {t['head']})"

    shown = list(targets.items())
    more = ""
    if len(shown) > 12:  # DeepSEA has 919 outputs: show the first few
        more = f", ... ({len(shown)} in all)"
        shown = shown[:12]
    lines = [
        f"model:        {loaded.path or '-'} ({loaded.format})",
        f"sha256:       {loaded.sha256 or '-'}",
        # output names are listed on the targets line (DeepSEA has 919 of them)
        f"architecture: {spec['name']} "
        + json.dumps({k: v for k, v in spec["hparams"].items() if k != "output_names"},
                     sort_keys=True),
        f"input:        one-hot {loaded.alphabet}, (N, 4, {window})"
        + ("" if window == loaded.input_length
           else f" (model built for {loaded.input_length} bp)")
        + ("" if meta.get("alphabet", loaded.alphabet) == loaded.alphabet
           else f"; trained on {meta['alphabet']}, first layer's channels permuted to read "
                f"{loaded.alphabet}"),
        "targets:      " + ", ".join(target_text(n, t) for n, t in shown) + more,
    ]
    if meta.get("training"):
        lines.append(f"trained:      {_training_summary(meta['training'])}")
    if meta.get("source"):
        lines.append(f"converted:    {json.dumps(meta['source'], sort_keys=True)}")
    p_pos_text = json.dumps(p_pos) if isinstance(p_pos, dict) else f"{p_pos:g}"
    p_neg_text = json.dumps(p_neg) if isinstance(p_neg, dict) else f"{p_neg:g}"
    lines.append(f"composite:    {composite}; p_pos {p_pos_text}, p_neg {p_neg_text}")
    lines.append("")
    table = [("layer", "op", "output shape", "rule", "pruned")]
    table += [(str(r["name"]), str(r["op"]), _shape_text(r.get("output_shape")),
               str(r.get("rule") or "-"), _pruned_text(r, p_pos, p_neg)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--arch", default=None, metavar="NAME|FILE.toml",
              help="Architecture of a plain state_dict: a name from configs/architectures "
                   "(deepsea, basset, bpnet, plrp-default) or a .toml file.")
@click.option("--arch-param", "arch_params", multiple=True, metavar="NAME=VALUE",
              help="Override an architecture hyper-parameter (repeatable), "
                   "e.g. --arch-param n_filters=64.")
@click.option("--composite", default=None, metavar="NAME|FILE.toml",
              help="Composite (layer -> rule), a shipped name or a .toml file "
                   "[default: epsilon].")
@click.option("--p-pos", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Fraction of positive relevance mass pruned per prunable layer "
                   "[default: plrp's DEFAULT_P_POS].")
@click.option("--p-neg", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Fraction of negative relevance mass pruned [default: p_pos / 2].")
@click.option("--window", type=click.IntRange(min=1), default=None,
              help="Window length to show shapes for [default: the model's input length].")
def inspect(model, arch, arch_params, composite, p_pos, p_neg, window) -> None:
    """List MODEL's layers with output shape, LRP rule and pruning (default: shipped model).

    Check this before a long `plrp explain` run: every layer the chosen composite covers,
    which layers PLRP prunes, the targets the model offers and its checksum. With --arch
    and no MODEL it shows the architecture alone (untrained weights).
    """
    from plrp import defaults
    from plrp.models.checkpoint import (architecture_only, check_input_length, load_model,
                                        parse_overrides)

    arch_params = parse_overrides(arch_params)
    if model is None and arch is not None:
        loaded = architecture_only(arch, arch_params)
    else:
        loaded = load_model(model, arch=arch, arch_params=arch_params)
    window = loaded.input_length if window is None else window
    check_input_length(loaded, window)
    composite = composite or defaults.DEFAULT_COMPOSITE
    p_pos = defaults.DEFAULT_P_POS if p_pos is None else p_pos
    p_neg = p_pos / 2 if p_neg is None else p_neg
    from plrp.engine import describe_layers  # after loading: a bad file fails fast

    rows = describe_layers(loaded.model, composite=composite, prunable=None,
                           input_length=window)
    click.echo(format_report(loaded, rows, composite=composite, window=window,
                             p_pos=p_pos, p_neg=p_neg))
