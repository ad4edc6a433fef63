"""Train a multi-label genome classifier from FASTA windows and a labels table.

The recipe (deterministic for a seed on one machine and thread count): the windows are split
by a seeded random permutation into train / validation / test; the model is trained with Adam
on the mean binary cross-entropy of its logits (one sigmoid per task); after every epoch the
validation loss is measured and training stops when it has not improved for ``patience``
epochs; the weights of the best epoch are kept. Held-out metrics are the per-task AUROC on
the test split (rank formula, :func:`auroc`) and the test loss.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from plrp.atomic import AtomicGroup
from plrp.errors import InputError, PlrpError
from plrp.models.architectures import ARCHITECTURES, GenomeCNN, build_model, hparam_names
from plrp.models.checkpoint import save_checkpoint

METRICS_FORMAT = "plrp-train-metrics"
_TASK_RE = re.compile(r"[A-Za-z0-9_.-]+")
_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _LUT[ord(_b)] = _LUT[ord(_b.lower())] = _i
for _b in "NnRYSWKMBDHVryswkmbdhv":  # IUPAC ambiguity codes: an all-zero column
    _LUT[ord(_b)] = 4


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the checkpoint)."""

    arch: str = "plrp-default"        # architecture name or a .toml file (name + [hparams])
    hparams: dict = field(default_factory=dict)  # overrides of the architecture's defaults
    seed: int = 0
    max_epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 4                 # epochs without validation-loss improvement
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    threads: int | None = None        # torch CPU threads; None keeps torch's setting


# ---------------------------------------------------------------------------------------
# inputs

def read_fasta(path: str | Path) -> tuple[list[str], list[str]]:
    """Read a FASTA file -> (names, sequences); the name is the header's first word."""
    path = Path(path)
    names, chunks = [], []
    try:
        fh = open(path)
    except OSError as err:
        raise InputError(f"{path}: cannot read FASTA ({err.strerror})") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split()[0] if line[1:].split() else ""
                if not name:
                    raise InputError(f"{path}: line {lineno}: FASTA header without a name")
                names.append(name)
                chunks.append([])
            elif line:
                if not names:
                    raise InputError(f"{path}: line {lineno}: sequence before the first '>' header")
                chunks[-1].append(line)
    if not names:
        raise InputError(f"{path}: no FASTA records")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{path}: record {dup!r} appears more than once")
    return names, ["".join(c) for c in chunks]


def encode_windows(names: list[str], sequences: list[str], source: str = "<input>") -> np.ndarray:
    """Equal-length sequences -> float32 one-hot (N, 4, L), ACGT; N and IUPAC codes -> zeros."""
    length = len(sequences[0])
    out = np.zeros((len(sequences), 4, length), dtype=np.float32)
    for i, (name, seq) in enumerate(zip(names, sequences)):
        if len(seq) != length:
            raise InputError(f"{source}: record {name!r} is {len(seq)} bp; all windows must be "
                             f"{length} bp like the first")
        idx = _LUT[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]
        bad = np.flatnonzero(idx == 255)
        if bad.size:
            raise InputError(f"{source}: record {name!r} position {int(bad[0]) + 1}: "
                             f"letter {seq[bad[0]]!r} is not DNA")
        keep = idx < 4
        out[i, idx[keep], np.flatnonzero(keep)] = 1.0
    return out


def read_labels(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Read a labels TSV (header ``name task1 ...``, 0/1 values).

    Returns (names, task names, labels (N, T) float32).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read labels ({err.strerror})") from None
    if not lines:
        raise InputError(f"{path}: empty labels file")
    header = lines[0].rstrip("\n").split("\t")
    if len(header) < 2 or header[0] != "name":
        raise InputError(f"{path}: line 1: header must be 'name<TAB>task1<TAB>...'")
    tasks = header[1:]
    if len(set(tasks)) != len(tasks) or not all(_TASK_RE.fullmatch(t) for t in tasks):
        raise InputError(f"{path}: line 1: task names must be distinct and match [A-Za-z0-9_.-]+")
    names, rows, seen = [], [], set()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputError(f"{path}: line {lineno}: {len(fields)} columns, "
                             f"expected {len(header)}")
        if any(v not in ("0", "1") for v in fields[1:]):
            raise InputError(f"{path}: line {lineno}: labels must be 0 or 1")
        if fields[0] in seen:
            raise InputError(f"{path}: line {lineno}: window {fields[0]!r} appears twice")
        seen.add(fields[0])
        names.append(fields[0])
        rows.append([float(v) for v in fields[1:]])
    if not names:
        raise InputError(f"{path}: no label rows")
    return names, tasks, np.array(rows, dtype=np.float32)


def load_dataset(fasta: str | Path, labels: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """FASTA + labels TSV -> (x (N, 4, L) float32, y (N, T) float32, task names), FASTA order."""
    seq_names, sequences = read_fasta(fasta)
    label_names, tasks, y = read_labels(labels)
    row = {n: i for i, n in enumerate(label_names)}
    missing = [n for n in seq_names if n not in row]
    if missing:
        raise InputError(f"{labels}: no labels for FASTA record {missing[0]!r}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if len(label_names) != len(seq_names):
        extra = next(n for n in label_names if n not in set(seq_names))
        raise InputError(f"{labels}: label row {extra!r} has no FASTA record in {fasta}")
    x = encode_windows(seq_names, sequences, str(fasta))
    return x, y[[row[n] for n in seq_names]], tasks


# ---------------------------------------------------------------------------------------
# metrics

def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank (Mann-Whitney U) formula; ties get average ranks.

    scores, labels: (N,) with labels 0/1. Returns NaN when only one class is present.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) over each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _json_float(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)


# ---------------------------------------------------------------------------------------
# model

def _arch_from_toml(path: Path) -> tuple[str, dict]:
    """Read an architecture file in the configs/architectures layout: ``name`` + ``[hparams]``."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"{path}: not a readable TOML architecture file ({err})") from None
    name, hparams = doc.get("name"), doc.get("hparams", {})
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise InputError(f"{path}: 'name' must be one of {', '.join(ARCHITECTURES)}, got {name!r}")
    extra = sorted(set(doc) - {"name", "hparams"})
    if not isinstance(hparams, dict) or extra:
        raise InputError(f"{path}: expected a 'name' and an [hparams] table"
                         + (f", not {extra[0]!r}" if extra else ""))
    return name, dict(hparams)


def build_classifier(arch: str, tasks: list[str], input_length: int,
                     hparams: dict | None = None) -> GenomeCNN:
    """A fresh multi-label classifier: ``arch`` (name or .toml) with one logit per task.

    Output shape (N, len(tasks)); ``output_names`` = tasks; ``input_length`` in bp.
    """
    overrides: dict = {}
    if arch.endswith(".toml") or Path(arch).is_file():
        arch, overrides = _arch_from_toml(Path(arch))
    overrides.update(hparams or {})
    known = hparam_names(arch)  # raises PlrpError naming the known architectures
    unknown = [k for k in overrides if k not in known]
    if unknown:
        raise PlrpError(f"architecture {arch!r} has no hyper-parameter {unknown[0]!r}; "
                        f"known: {', '.join(known)}")
    if "output_names" not in known:
        raise PlrpError(f"architecture {arch!r} is not a multi-label classifier; "
                        "plrp train supports one logit per task")
    overrides.update(input_length=input_length, n_outputs=len(tasks), output_names=list(tasks))
    model = build_model(arch, **overrides)
    with torch.no_grad():
        try:
            out = model(torch.zeros(2, 4, input_length))
        except RuntimeError as err:
            raise PlrpError(f"architecture {arch!r} cannot take {input_length} bp windows "
                            f"({str(err).splitlines()[0]})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, len(tasks)):
        raise PlrpError(f"architecture {arch!r} does not output one logit per task")
    return model


# ---------------------------------------------------------------------------------------
# training

def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float
                  ) -> dict[str, np.ndarray]:
    """Seeded random split of range(n) -> {"train", "validation", "test"} index arrays (sorted)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise PlrpError("validation and test fractions must be in (0, 1) and sum to < 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    if min(n_test, n_val, n - n_test - n_val) < 1:
        raise PlrpError(f"{n} windows are too few to split into train, validation and test")
    return {"test": np.sort(perm[:n_test]), "validation": np.sort(perm[n_test:n_test + n_val]),
            "train": np.sort(perm[n_test + n_val:])}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits (N, T) of ``model`` (put in eval mode) for one-hot x (N, 4, L)."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: list[str]) -> dict:
    """{"loss": mean BCE, "auroc": {task: AUROC or None}, "n": N} on x (N, 4, L), y (N, T)."""
    logits = predict(model, x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y).item()
    scores, labels = logits.double().numpy(), y.numpy()
    return {"n": int(len(x)), "loss": _json_float(loss),
            "auroc": {t: _json_float(auroc(scores[:, j], labels[:, j]))
                      for j, t in enumerate(tasks)}}


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, split: dict[str, np.ndarray],
        config: TrainConfig, progress: Callable[[str], None] | None = None
        ) -> tuple[list[dict], int]:
    """Train ``model`` in place on ``split["train"]``; keep the best-validation-loss weights.

    x: (N, 4, L) float32 one-hot; y: (N, T) float32 0/1. Returns (history, best epoch), history
    holding one dict per epoch (epoch, train_loss, validation_loss).
    """
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    train_idx = torch.from_numpy(split["train"])
    x_val, y_val = x[split["validation"]], y[split["validation"]]
    best_loss, best_epoch, best_state, history = float("inf"), 0, None, []
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            batch = order[i:i + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        with torch.no_grad():
            val_loss = loss_fn(predict(model, x_val), y_val).item()
        history.append({"epoch": epoch, "train_loss": _json_float(total / len(order)),
                        "validation_loss": _json_float(val_loss)})
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress:
            progress(f"epoch {epoch:3d}  train loss {total / len(order):.4f}  "
                     f"validation loss {val_loss:.4f}{'  *' if improved else ''}")
        if epoch - best_epoch >= config.patience:
            break
    if best_state is None:
        raise PlrpError(f"training diverged: validation loss {val_loss} in every epoch; "
                        "try a lower --lr")
    model.load_state_dict(best_state)
    model.eval()
    return history, best_epoch


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train(fasta: str | Path, labels: str | Path, out: str | Path,
          metrics_out: str | Path | None = None, config: TrainConfig | None = None,
          extra_record: dict | None = None,
          progress: Callable[[str], None] | None = None) -> dict:
    """Train ``config.arch`` on FASTA windows + labels TSV; write a checkpoint and metrics JSON.

    ``out``: native ``.safetensors`` checkpoint (training record in its metadata);
    ``metrics_out``: metrics JSON (default: ``out`` with suffix ``.metrics.json``);
    ``extra_record``: merged into the record (e.g. {"simulation": {...}}).
    Returns the metrics dict (per-task held-out AUROC under ["test"]["auroc"]).
    Deterministic: same inputs, config and thread count give identical weights.
    """
    config = config or TrainConfig()
    out = Path(out)
    metrics_out = Path(metrics_out) if metrics_out else out.with_suffix(".metrics.json")
    if config.batch_size < 1 or config.max_epochs < 1 or config.patience < 1:
        raise PlrpError("batch size, max epochs and patience must be >= 1")
    if not config.lr > 0 or not config.weight_decay >= 0:
        raise PlrpError(f"need --lr > 0 and --weight-decay >= 0, got {config.lr}, "
                        f"{config.weight_decay}")
    x_np, y_np, tasks = load_dataset(fasta, labels)
    previous_threads = torch.get_num_threads()
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(config.seed)
        model = build_classifier(config.arch, tasks, x_np.shape[2], config.hparams)
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        split = split_indices(len(x), config.seed, config.val_fraction, config.test_fraction)
        if progress:
            progress(f"training {model.arch_name} on {len(split['train'])} windows of "
                     f"{x.shape[2]} bp ({len(split['validation'])} validation, "
                     f"{len(split['test'])} test), tasks: {', '.join(tasks)}")
        history, best_epoch = fit(model, x, y, split, config, progress)
        metrics = {
            "format": METRICS_FORMAT, "format_version": 1,
            "architecture": model.spec(), "tasks": tasks,
            "data": {"fasta": Path(fasta).name, "fasta_sha256": _sha256(fasta),
                     "labels": Path(labels).name, "labels_sha256": _sha256(labels),
                     "n_windows": int(len(x)), "window_length": int(x.shape[2]),
                     "positives": {t: int(y_np[:, j].sum()) for j, t in enumerate(tasks)}},
            "config": {k: v for k, v in asdict(config).items() if k != "threads"},
            "threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "split": {"method": "torch.randperm(seed); test first, then validation",
                      **{f"n_{k}": int(len(v)) for k, v in split.items()}},
            "epochs_run": len(history), "best_epoch": best_epoch, "history": history,
            "validation": evaluate(model, x[split["validation"]], y[split["validation"]], tasks),
            "test": evaluate(model, x[split["test"]], y[split["test"]], tasks),
        }
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_determinism)
    if extra_record:
        metrics.update(extra_record)
    record = {k: v for k, v in metrics.items() if k != "architecture"}
    with AtomicGroup() as group:  # checkpoint and metrics appear together or not at all
        save_checkpoint(group.path(out), model, training=record)
        group.path(metrics_out).write_text(json.dumps(metrics, indent=2) + "\n")
        group.commit()
    if progress:
        progress("held-out test AUROC: " + ", ".join(
            f"{t} {v:.4f}" if v is not None else f"{t} n/a"
            for t, v in metrics["test"]["auroc"].items()))
    return metrics
