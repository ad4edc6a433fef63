"""The paper's experiment (method spec section 3): explanation quality of LRP and PLRP against p.

For every setting -- plain LRP (p = 0) and each PLRP variant at each p > 0 -- the windows are
explained for one target and scored per window with :mod:`plrp.metrics`:

- ``gini``: Gini index of |per-position relevance| (sparsity);
- ``rma``: relevance mass accuracy, ``rra``: relevance rank accuracy (ground truth = the
  positions of the target's motif instances; windows without truth are left out of both);
- ``aopc``: faithfulness, area over the MoRF curve. Perturbation: the most relevant positions
  (signed relevance, descending; ties in a seeded random order shared by all settings) are
  replaced by all-zero columns (an "N") ``step_size`` at a time for ``n_steps`` steps;
  AOPC = mean over the steps k = 1..S of f(x) - f(x_k), in logits; ``aopc_top``: the same
  over the first ``TOP_STEPS`` steps only (the top features, where the paper compares);
- ``conservation_error``: the engine's |sum R - score| / |score| (mean, and median: a few
  windows with a tiny score can dominate the mean);
- ``ms_per_window``: wall-clock explain time per window (engine only, after a warm-up call;
  the fastest batch, since a shared machine slows the others).

A ``random`` row is the MoRF baseline: positions removed in the seeded random order alone.

Sparse tracks (``sparsities``): the per-base track ``plrp explain --sparsity F`` stores is
each window's PLRP per-position relevance with, per sign, the smallest-|R| positions that
hold a fraction F of the mass set to 0 (:func:`plrp.engine.prune.sparsify`). For each PLRP
setting and each F one more row scores that track with the same metrics (the engine runs
once per setting); ``stored`` is the mean share of positions with a non-zero value.

Windows: FASTA records as long as the model's input are one window each; longer records are
tiled with the model's window (stride = window, the last window aligned to the record's end);
shorter records are skipped. Truth BED intervals (0-based, half-open) are clipped to each
window.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from plrp import metrics
from plrp.atomic import AtomicGroup
from plrp.errors import InputError, PlrpError

#: window selections of :func:`select_windows`
SELECTIONS = ("truth", "positive", "predicted", "all")
METRICS = ("gini", "rma", "rra", "aopc", "aopc_top", "conservation_error", "stored")
#: the sparse track may lose at most this share of the unsparsified track's RMA, RRA, AOPC
SPARSE_TOLERANCE = 0.05
#: and must keep at most this share of the positions (issue 12)
SPARSE_MAX_STORED = 0.30
#: MoRF steps that count as "the top features" for ``aopc_top``
TOP_STEPS = 5
VARIANTS = ("lambda", "m")


# ------------------------------------------------------------------------------- inputs

@dataclass
class TruthInterval:
    """One ground-truth motif instance: ``chrom[start:end]`` (0-based, half-open)."""

    chrom: str
    start: int
    end: int
    name: str


@dataclass
class EvalWindows:
    """Windows to evaluate: ``x`` (N, 4, L) float32 one-hot, coordinates ``chrom``/``start``."""

    chrom: list[str]
    start: np.ndarray
    x: np.ndarray
    skipped_short: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.x.shape[2])


def read_truth_bed(path: str | Path, chrom_sizes: dict[str, int]) -> list[TruthInterval]:
    """Read the ground-truth BED: chrom, start, end, name (motif), further columns ignored.

    ``track``/``browser``/``#`` lines are skipped. Raises :class:`InputError` naming the line
    for malformed rows, a chromosome not in the FASTA or an interval outside it.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read truth BED ({err.strerror})") from None
    out = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        cols = line.rstrip("\n").split("\t")
        if len(cols) < 4:
            raise InputError(f"{path}: line {lineno}: expected at least 4 tab-separated columns "
                             "(chrom start end motif)")
        try:
            start, end = int(cols[1]), int(cols[2])
        except ValueError:
            raise InputError(f"{path}: line {lineno}: start/end must be integers") from None
        if cols[0] not in chrom_sizes:
            raise InputError(f"{path}: line {lineno}: chromosome {cols[0]!r} is not in the FASTA")
        if not 0 <= start < end <= chrom_sizes[cols[0]]:
            raise InputError(f"{path}: line {lineno}: interval {start}-{end} is empty or outside "
                             f"{cols[0]} (length {chrom_sizes[cols[0]]})")
        out.append(TruthInterval(cols[0], start, end, cols[3]))
    return out


def load_windows(fasta: str | Path, window: int) -> tuple[EvalWindows, dict[str, int]]:
    """Read a FASTA and cut it into model windows of ``window`` bp (see the module docstring).

    Returns the windows and the FASTA's record lengths {name: bp}.
    """
    from plrp.genome.fasta import FastaReader, one_hot
    from plrp.genome.windows import tile_starts

    chroms, starts, arrays, short = [], [], [], []
    with FastaReader(fasta) as reader:
        for name, length in reader.chroms:
            if length < window:
                short.append(name)
                continue
            seq = reader.fetch(name, 0, length)
            for s in tile_starts(length, window, window):
                chroms.append(name)
                starts.append(int(s))
                arrays.append(one_hot(seq[s:s + window]))
        sizes = dict(reader.chroms)
    if not arrays:
        raise InputError(f"{fasta}: no record is at least {window} bp (the model's window)")
    return EvalWindows(chroms, np.array(starts, np.int64),
                       np.stack(arrays).astype(np.float32), short), sizes


def truth_masks(windows: EvalWindows, intervals: Sequence[TruthInterval],
                motif_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of each window for the given motifs.

    Returns ``mask`` (N, L) bool (positions inside any instance, clipped to the window) and
    ``complete`` (N, M) bool (window holds a complete instance of motif m, in ``motif_names``
    order).
    """
    n, length = windows.x.shape[0], windows.length
    mask = np.zeros((n, length), bool)
    complete = np.zeros((n, len(motif_names)), bool)
    by_chrom: dict[str, list[int]] = {}
    for i, c in enumerate(windows.chrom):
        by_chrom.setdefault(c, []).append(i)
    index = {m: j for j, m in enumerate(motif_names)}
    for iv in intervals:
        if iv.name not in index:
            continue
        for i in by_chrom.get(iv.chrom, ()):
            w0 = int(windows.start[i])
            a, b = max(iv.start, w0), min(iv.end, w0 + length)
            if a < b:
                mask[i, a - w0:b - w0] = True
                if iv.start >= w0 and iv.end <= w0 + length:
                    complete[i, index[iv.name]] = True
    return mask, complete


def resolve_target_motifs(target: str, bed_names: set[str], motifs: Sequence[str] | None
                          ) -> list[str]:
    """Motif names whose instances are the ground truth of ``target``.

    Explicit ``motifs`` win. Otherwise: the target's own name when the BED uses it, else the
    parts of an ``A_AND_B`` task name (the simulation's AND tasks) when the BED uses them all.
    """
    if motifs:
        missing = [m for m in motifs if m not in bed_names]
        if missing:
            raise InputError(f"--motifs: {', '.join(missing)} not found in the truth BED "
                             f"(names there: {', '.join(sorted(bed_names))})")
        return list(motifs)
    if target in bed_names:
        return [target]
    parts = target.split("_AND_")
    if len(parts) > 1 and all(p in bed_names for p in parts):
        return parts
    raise InputError(f"target {target!r}: no motif of that name in the truth BED (names there: "
                     f"{', '.join(sorted(bed_names)) or 'none'}); name its motifs with --motifs")


# ------------------------------------------------------------------------------- scores

def score_function(model: torch.nn.Module, spec: dict):
    """The explained score of a target spec (contracts 1) as a function (M, 4, L) -> (M,).

    logit: output ``head`` (tuple-returning models), neuron ``index``; softmax_profile: sum over
    channels and positions of softmax_l(f) (detached) * f, like the engine's seed.
    """
    def fn(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[spec.get("head", 0)]
        elif spec.get("head", 0) != 0:
            raise PlrpError(f"target head {spec['head']} asked of a single-output model")
        if spec["kind"] == "logit":
            return out[:, spec["index"]]
        if spec["kind"] == "softmax_profile":
            return (torch.softmax(out, dim=-1) * out).flatten(1).sum(1)
        raise PlrpError(f"unknown target kind {spec['kind']!r}")
    return fn


# ------------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    """One explanation method: ``method`` "lrp" | "plrp-lambda" | "plrp-m" | "random";
    ``sparsity`` > 0: its per-base track made sparse by the mass rule at that fraction."""

    method: str
    variant: str
    p: float
    sparsity: float = 0.0


def settings_for(p_values: Sequence[float], variants: Sequence[str],
                 sparsities: Sequence[float] = ()) -> list[Setting]:
    """LRP once (p = 0: every variant is plain LRP there), then each variant at each p > 0,
    each followed by its sparse tracks at each fraction in ``sparsities`` (> 0)."""
    for p in p_values:
        if not 0.0 <= p < 1.0:
            raise PlrpError(f"--p: every p must be in [0, 1), got {p}")
    for f in sparsities:
        if not 0.0 < f < 1.0:
            raise PlrpError(f"--sparsity: every fraction must be in (0, 1), got {f}")
    for v in variants:
        if v not in VARIANTS:
            raise PlrpError(f"--variant: unknown variant {v!r}; expected lambda or m")
    out = [Setting("lrp", "lambda", 0.0)]
    for v in variants:
        for p in sorted(set(p_values)):
            if p > 0:
                out += [Setting(f"plrp-{v}", v, float(p))]
                out += [Setting(f"plrp-{v}", v, float(p), float(f))
                        for f in sorted(set(sparsities))]
    return out


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"plrp evaluate: {msg}", file=sys.stderr, flush=True)


def explain_setting(model, x: torch.Tensor, spec: dict, setting: Setting, composite: str,
                    batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Explain ``x`` (N, 4, L) with one setting.

    Returns per-position relevance (N, L) float64, scores (N,), conservation errors (N,) and
    the engine's wall-clock seconds per window of the fastest batch.
    """
    from plrp.engine import Explainer

    explainer = Explainer(model, composite=composite, p_pos=setting.p, variant=setting.variant)
    explainer.explain(x[:min(8, x.shape[0])], spec)   # warm-up: first calls are slow (allocations)
    rel, score, cons = [], [], []
    per_window = []
    for a in range(0, x.shape[0], batch_size):
        t0 = time.perf_counter()
        res = explainer.explain(x[a:a + batch_size], spec)
        per_window.append((time.perf_counter() - t0) / res.relevance.shape[0])
        rel.append(metrics.position_relevance(res.relevance))
        score.append(res.score.detach().cpu().double().numpy())
        cons.append(res.conservation_error.detach().cpu().double().numpy())
    # the fastest batch: on a shared machine the others are slowed by whoever else runs
    return np.concatenate(rel), np.concatenate(score), np.concatenate(cons), min(per_window)


def _mean_sem(values: np.ndarray) -> tuple[float, float, int]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan, 0
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), sem, int(v.size)


@dataclass
class TargetResult:
    """Results for one target: one summary row per setting plus mean MoRF curves."""

    target: str
    motifs: list[str]
    n_windows: int
    n_truth_windows: int
    rows: list[dict]
    morf_curves: dict[str, list[float]]     # setting label -> mean f(x_k), k = 0..S


def setting_label(s: Setting) -> str:
    """Short label: ``lrp``, ``plrp-lambda p=0.2``, ``plrp-lambda p=0.1 sparse 0.3``,
    ``random``."""
    if s.method in ("lrp", "random"):
        return s.method
    return f"{s.method} p={s.p:g}" + (f" sparse {s.sparsity:g}" if s.sparsity else "")


def evaluate_target(model, windows: EvalWindows, intervals: Sequence[TruthInterval],
                    target: str, spec: dict, settings: Sequence[Setting], *,
                    motifs: Sequence[str] | None = None, selection: str = "truth",
                    composite: str = "epsilon", n_steps: int = 20, step_size: int = 2,
                    max_windows: int | None = None, batch_size: int = 128, seed: int = 0,
                    device: torch.device | str = "cpu", progress: bool = True) -> TargetResult:
    """Evaluate every setting on the selected windows of one target (see module docstring).

    ``selection``: "truth" = windows holding a complete instance of any of the target's motifs;
    "positive" = windows holding complete instances of all of them (the simulation's label
    rule, e.g. both motifs of an AND task); "predicted" = windows whose score is > 0; "all".
    ``max_windows`` keeps the first N selected windows (FASTA order).
    """
    if selection not in SELECTIONS:
        raise PlrpError(f"--windows: expected one of {', '.join(SELECTIONS)}, got {selection!r}")
    names = resolve_target_motifs(target, {iv.name for iv in intervals}, motifs)
    mask, complete = truth_masks(windows, intervals, names)
    x_all = torch.from_numpy(windows.x).to(device)
    score_fn = score_function(model, spec)
    if selection == "truth":
        keep = complete.any(axis=1)
    elif selection == "positive":
        keep = complete.all(axis=1)
    elif selection == "predicted":
        with torch.no_grad():
            s = torch.cat([score_fn(x_all[a:a + batch_size])
                           for a in range(0, x_all.shape[0], batch_size)])
        keep = s.cpu().numpy() > 0
    else:
        keep = np.ones(len(windows.chrom), bool)
    idx = np.flatnonzero(keep)
    if max_windows is not None:
        idx = idx[:max_windows]
    if idx.size == 0:
        raise PlrpError(f"target {target}: no window selected by --windows {selection} "
                        f"(motifs {', '.join(names)})")
    x, truth = x_all[idx], mask[idx]
    n_truth = int(truth.any(axis=1).sum())
    _log(f"target {target} (truth: {', '.join(names)}): {idx.size} windows "
         f"({n_truth} with truth), {len(settings)} settings", progress)
    # one random key per window and position, shared by all settings: fair MoRF tie-breaks
    tiebreak = np.random.default_rng(seed).random((idx.size, windows.length))

    rows, curves = [], {}
    all_settings = list(settings) + [Setting("random", "", math.nan)]
    dense: dict = {}  # unsparsified results by (method, variant, p): sparse rows reuse them
    for setting in all_settings:
        t0 = time.perf_counter()
        base = (setting.method, setting.variant, setting.p)
        if setting.method == "random":
            r = np.zeros((idx.size, windows.length))
            cons = np.full(idx.size, np.nan)
            sec_per_window = math.nan
        elif setting.sparsity:
            from plrp.engine.prune import sparsify

            if base not in dense:
                dense[base] = explain_setting(model, x, spec, dataclasses.replace(
                    setting, sparsity=0.0), composite, batch_size)
            r, _, cons, sec_per_window = dense[base]
            r = sparsify(torch.from_numpy(r), setting.sparsity).numpy()
        else:
            r, _, cons, sec_per_window = dense[base] = explain_setting(
                model, x, spec, setting, composite, batch_size)
        order = metrics.morf_order(r, tiebreak)
        # in window batches: the perturbed copies are (S + 1) times the input
        curve = np.concatenate([
            metrics.morf_curve(score_fn, x[a:a + batch_size], order[a:a + batch_size],
                               n_steps, step_size) for a in range(0, idx.size, batch_size)])
        nan = np.full(idx.size, np.nan)
        explained = setting.method != "random"
        per_window = {
            "gini": metrics.gini_index(r) if explained else nan,
            "rma": metrics.relevance_mass_accuracy(r, truth) if explained else nan,
            "rra": metrics.relevance_rank_accuracy(r, truth) if explained else nan,
            "aopc": metrics.aopc(curve),
            "aopc_top": metrics.aopc(curve[:, :min(TOP_STEPS, n_steps) + 1]),
            "conservation_error": cons,
            "stored": (r != 0).mean(axis=1) if explained else nan,
        }
        row = {"target": target, "method": setting.method, "variant": setting.variant,
               "p": setting.p, "sparsity": setting.sparsity, "n_windows": int(idx.size)}
        for name, values in per_window.items():
            mean, sem, n = _mean_sem(values)
            row[name] = mean
            if name not in ("conservation_error", "stored"):
                row[f"{name}_sem"] = sem
            if name in ("rma", "rra"):
                row[f"{name}_n"] = n
        row["conservation_error_median"] = (float(np.median(cons)) if np.isfinite(cons).any()
                                            else math.nan)
        row["ms_per_window"] = 1000 * sec_per_window
        row["score"] = float(curve[:, 0].mean())
        rows.append(row)
        curves[setting_label(setting)] = curve.mean(axis=0).tolist()
        _log(f"  {setting_label(setting):<22} gini {row['gini']:.3f}  rma {row['rma']:.3f}  "
             f"rra {row['rra']:.3f}  aopc {row['aopc']:.3f}  "
             f"({time.perf_counter() - t0:.1f} s)", progress)
    return TargetResult(target, names, int(idx.size), n_truth, rows, curves)


# ------------------------------------------------------------------------------- the job

@dataclass
class Evaluation:
    """Everything :func:`run_evaluation` measured, plus how (``config``)."""

    config: dict
    targets: list[TargetResult]

    def rows(self) -> list[dict]:
        return [r for t in self.targets for r in t.rows]


def run_evaluation(fasta: str | Path, truth_bed: str | Path, *, model: str | Path | None = None,
                   arch: str | None = None, targets: Sequence[str] | None = None,
                   p_values: Sequence[float] = (0.1, 0.2),
                   variants: Sequence[str] = ("lambda", "m"), motifs: Sequence[str] | None = None,
                   selection: str = "truth", composite: str = "epsilon", n_steps: int = 20,
                   step_size: int = 2, max_windows: int | None = None, batch_size: int = 128,
                   seed: int = 0, device: str = "cpu", sparsities: Sequence[float] = (),
                   progress: bool = True) -> Evaluation:
    """Load the model, cut the FASTA into windows and evaluate every setting for each target.

    ``targets`` None = the model's first output. ``model`` None = the shipped default model.
    ``sparsities``: fractions of the sparse per-base track to score for each PLRP setting.
    """
    from plrp.devices import resolve_device
    from plrp.models.checkpoint import load_model

    torch_device = resolve_device(device)
    loaded = load_model(model, arch=arch)
    net = loaded.model.to(torch_device).eval()
    specs = net.target_specs()
    targets = list(targets) if targets else [loaded.output_names[0]]
    unknown = [t for t in targets if t not in specs]
    if unknown:
        raise PlrpError(f"--target {', '.join(unknown)}: not an output of the model "
                        f"(outputs: {', '.join(specs)})")
    settings = settings_for(p_values, variants, sparsities)
    windows, sizes = load_windows(fasta, loaded.input_length)
    if windows.skipped_short:
        _log(f"skipped {len(windows.skipped_short)} record(s) shorter than "
             f"{loaded.input_length} bp", progress)
    intervals = read_truth_bed(truth_bed, sizes)
    _log(f"{len(windows.chrom)} windows of {windows.length} bp from {fasta}; "
         f"{len(intervals)} truth intervals", progress)
    results = [evaluate_target(net, windows, intervals, t, specs[t], settings, motifs=motifs,
                               selection=selection, composite=composite, n_steps=n_steps,
                               step_size=step_size, max_windows=max_windows,
                               batch_size=batch_size, seed=seed, device=torch_device,
                               progress=progress) for t in targets]
    from plrp.models.checkpoint import file_sha256

    # file names and hashes, not paths: a report must not change with a temporary folder
    config = {"fasta": Path(fasta).name, "fasta_sha256": file_sha256(fasta),
              "truth": Path(truth_bed).name, "truth_sha256": file_sha256(truth_bed),
              "model": Path(loaded.path).name if loaded.path else "default",
              "model_sha256": loaded.sha256, "composite": composite, "windows": selection,
              "p_values": sorted(set(float(p) for p in p_values)), "variants": list(variants),
              "p_neg": "p_pos / 2", "morf": {"n_steps": n_steps, "step_size": step_size,
                                             "perturbation": "all-zero column (N)"},
              "sparsities": sorted(set(float(f) for f in sparsities)),
              "max_windows": max_windows, "seed": seed, "device": str(torch_device),
              "torch_threads": torch.get_num_threads()}
    return Evaluation(config, results)


# ------------------------------------------------------------------------------- outputs

TSV_COLUMNS = ("target", "method", "variant", "p", "sparsity", "stored", "n_windows", "gini", "gini_sem", "rma",
               "rma_sem", "rma_n", "rra", "rra_sem", "rra_n", "aopc", "aopc_sem", "aopc_top",
               "aopc_top_sem", "conservation_error", "conservation_error_median",
               "ms_per_window", "score")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _nan_to_none(obj):
    """NaN -> None (JSON null) throughout, so the JSON is strict."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_evaluation(result: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write ``metrics.tsv``, ``metrics.json`` and the figures into ``out_dir`` (all or none).

    Figures (per target): ``metrics_vs_p.<target>.png`` and ``morf.<target>.png``.
    """
    from plrp.jobs.plot import plot_metrics_vs_p, plot_morf_curves

    out_dir = Path(out_dir)
    written = []
    with AtomicGroup() as group:
        tsv = out_dir / "metrics.tsv"
        with open(group.path(tsv), "w") as fh:
            fh.write("\t".join(TSV_COLUMNS) + "\n")
            for row in result.rows():
                fh.write("\t".join(_fmt(row[c]) for c in TSV_COLUMNS) + "\n")
        js = out_dir / "metrics.json"
        payload = {"config": result.config, "targets": [
            {"target": t.target, "motifs": t.motifs, "n_windows": t.n_windows,
             "n_truth_windows": t.n_truth_windows, "rows": t.rows,
             "morf_mean_curves": t.morf_curves} for t in result.targets]}
        group.path(js).write_text(json.dumps(_nan_to_none(payload), indent=1,
                                             allow_nan=False) + "\n")
        written += [tsv, js]
        for t in result.targets:
            fig1 = out_dir / f"metrics_vs_p.{t.target}.png"
            plot_metrics_vs_p(dense_rows(t.rows), group.path(fig1), title=f"target {t.target}")
            fig2 = out_dir / f"morf.{t.target}.png"
            dense_curves = {k: v for k, v in t.morf_curves.items() if " sparse " not in k}
            plot_morf_curves(dense_curves, result.config["morf"]["step_size"],
                             group.path(fig2), title=f"MoRF, target {t.target}")
            written += [fig1, fig2]
        group.commit()
    return written


def _finite(v) -> float:
    return float(v) if v is not None and math.isfinite(v) else 0.0


def findings(rows: Sequence[dict]) -> list[tuple[str, bool | None, str]]:
    """The paper's four findings checked on one target's rows: (claim, holds, numbers).

    Our thresholds: a rise must exceed 2 standard errors of the mean (and, for Gini, no step
    may fall by more); faithfulness holds when AOPC stays within 10% of LRP's at every p;
    PLRP-lambda >= PLRP-M on Gini, RMA, RRA and AOPC at every p.
    """
    lrp = next(r for r in rows if r["method"] == "lrp")
    out = []
    variants = sorted({r["method"] for r in rows if r["method"].startswith("plrp")})
    for m in variants:
        series = [lrp] + sorted((r for r in rows if r["method"] == m), key=lambda r: r["p"])
        g = [r["gini"] for r in series]
        # "rises": no step falls by more than 2 standard errors, and the largest p is above LRP
        # by more than 2 standard errors
        sem = [_finite(r.get("gini_sem")) for r in series]
        rising = (all(b > a - 2 * max(sa, sb) for a, b, sa, sb in zip(g, g[1:], sem, sem[1:]))
                  and g[-1] > g[0] + 2 * max(sem[0], sem[-1]))
        out.append((f"{m}: sparsity (Gini) rises with p", rising,
                    " -> ".join(f"{v:.3f}" for v in g)))
        rma = [r["rma"] for r in series]
        best = int(np.nanargmax(rma))
        noise = 2 * max(_finite(series[0].get("rma_sem")), _finite(series[best].get("rma_sem")))
        out.append((f"{m}: RMA rises with p (up to a point)", rma[best] > rma[0] + noise,
                    " -> ".join(f"{v:.3f}" for v in rma) + f" (max at p={series[best]['p']:g})"))
        a = [r["aopc_top"] for r in series]
        worst = min(a[1:]) if len(a) > 1 else a[0]
        out.append((f"{m}: faithfulness for the top features (AOPC over the first "
                    f"{TOP_STEPS} MoRF steps) within 10% of LRP's at every p",
                    worst >= 0.9 * a[0], " -> ".join(f"{v:.3f}" for v in a)))
    if {"plrp-lambda", "plrp-m"} <= set(variants):
        lam = {r["p"]: r for r in rows if r["method"] == "plrp-lambda"}
        mm = {r["p"]: r for r in rows if r["method"] == "plrp-m"}
        ps = sorted(set(lam) & set(mm))
        wins = sum(1 for p in ps for k in ("gini", "rma", "rra", "aopc_top")
                   if lam[p][k] >= mm[p][k] - 1e-9)
        out.append(("PLRP-lambda at least as good as PLRP-M (Gini, RMA, RRA, top-feature AOPC "
                    "at each p)",
                    wins == 4 * len(ps), f"{wins} of {4 * len(ps)} comparisons"))
    return out


def report_markers(section: str = "") -> tuple[str, str]:
    """The comment lines that fence a generated block (``section`` names one of several)."""
    name = f" {section}" if section else ""
    return f"<!-- evaluate:begin{name} -->", f"<!-- evaluate:end{name} -->"


def _cell(v, digits=3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.2e}" if (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def report_block(result: Evaluation, figure_dir: str, section: str = "") -> str:
    """Markdown of the generated results: settings, one table per target, findings, figures."""
    c = result.config
    begin, end = report_markers(section)
    lines = [begin, "",
             "*Generated by `plrp evaluate` -- do not edit by hand between these markers.*", "",
             f"- data: `{c['fasta']}` (sha256 {c['fasta_sha256'][:12]}) with truth "
             f"`{c['truth']}` (sha256 {c['truth_sha256'][:12]}); model `{c['model']}` "
             f"(sha256 {c['model_sha256'][:12]}); composite `{c['composite']}`; "
             f"windows: `{c['windows']}`",
             f"- MoRF: {c['morf']['n_steps']} steps of {c['morf']['step_size']} positions "
             f"replaced by an all-zero column (N); AOPC in logits; tie-break seed {c['seed']}",
             f"- p_neg = p_pos / 2; device {c['device']}, {c['torch_threads']} torch threads", ""]
    for t in result.targets:
        lines += [f"#### Target `{t.target}` (truth: {', '.join(t.motifs)}; {t.n_windows} "
                  f"windows, {t.n_truth_windows} with truth)", "",
                  f"| method | p | Gini | RMA | RRA | AOPC top {TOP_STEPS} steps | AOPC all "
                  f"{c['morf']['n_steps']} | conservation error mean / median | ms/window |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in dense_rows(t.rows):
            def pm(k, r=r):
                return "–" if math.isnan(r[k]) else f"{_cell(r[k])} ± {_cell(r[k + '_sem'])}"
            cons = ("–" if r["method"] == "random" else
                    f"{_cell(r['conservation_error'])} / {_cell(r['conservation_error_median'])}")
            lines.append(f"| {r['method']} | {_cell(r['p'], 2)} | {pm('gini')} | {pm('rma')} | "
                         f"{pm('rra')} | {pm('aopc_top')} | {pm('aopc')} | {cons} | "
                         f"{_cell(r['ms_per_window'], 2)} |")
        lines += ["", "| paper's finding | holds here? | numbers (LRP, then increasing p) |",
                  "|---|---|---|"]
        for claim, holds, numbers in findings([r for r in dense_rows(t.rows)
                                               if r["method"] != "random"]):
            verdict = "n/a" if holds is None else ("yes" if holds else "**no**")
            lines.append(f"| {claim} | {verdict} | {numbers} |")
        lines += sparse_table(t.rows)
        lines += ["", f"![metrics against p, {t.target}]({figure_dir}/metrics_vs_p.{t.target}.png)",
                  "", f"![MoRF curves, {t.target}]({figure_dir}/morf.{t.target}.png)", ""]
    if c.get("sparsities"):
        every = [r for t in result.targets for r in t.rows]
        name = (lambda f: "none" if f is None else _cell(f, 2))
        lines += [f"- every criterion (RMA, RRA and AOPC all steps within "
                  f"{SPARSE_TOLERANCE:.0%} of the unsparsified track, at most "
                  f"{SPARSE_MAX_STORED:.0%} of the positions stored), every target: smallest "
                  f"fraction **{name(choose_sparsity(every))}**",
                  f"- RMA and AOPC within {SPARSE_TOLERANCE:.0%}, every target: largest "
                  f"fraction **{name(choose_sparsity(every, ('rma', 'aopc'), None))}**", ""]
    lines.append(end)
    return "\n".join(lines)


def dense_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows of unsparsified settings (the paper's experiment)."""
    return [r for r in rows if not r.get("sparsity")]


_SPARSE_KEYS = ("rma", "rra", "aopc")


def sparse_changes(rows: Sequence[dict]) -> list[tuple[dict, dict, dict]]:
    """(sparse row, its unsparsified row, {metric: relative change}) of one target's rows."""
    base = {(r["method"], r["variant"], r["p"]): r for r in dense_rows(rows)}
    out = []
    for r in rows:
        if r.get("sparsity"):
            b = base[r["method"], r["variant"], r["p"]]
            out.append((r, b, {k: (r[k] - b[k]) / abs(b[k]) if b[k] else math.nan
                               for k in _SPARSE_KEYS}))
    return out


def sparse_ok(change: dict, stored: float) -> bool:
    """Within :data:`SPARSE_TOLERANCE` (a loss; gains are fine) and at most
    :data:`SPARSE_MAX_STORED` of the positions stored."""
    return (stored <= SPARSE_MAX_STORED
            and all(math.isfinite(v) and v >= -SPARSE_TOLERANCE for v in change.values()))


def choose_sparsity(rows: Sequence[dict], keys: Sequence[str] = _SPARSE_KEYS,
                    max_stored: float | None = SPARSE_MAX_STORED) -> float | None:
    """The sparsity fraction (all targets' rows together) to use as the default.

    With every criterion (``keys`` = RMA, RRA, AOPC within :data:`SPARSE_TOLERANCE`,
    ``max_stored``): the smallest fraction that meets them all for every target. With
    ``max_stored`` None: the largest fraction whose ``keys`` stay within the tolerance for
    every target (and every smaller evaluated fraction's too). None when none qualifies.
    """
    by_target: dict = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    verdict: dict[float, bool] = {}
    for t_rows in by_target.values():
        for r, _, change in sparse_changes(t_rows):
            ok = all(math.isfinite(change[k]) and change[k] >= -SPARSE_TOLERANCE for k in keys)
            if max_stored is not None:
                ok = ok and r["stored"] <= max_stored
            verdict[r["sparsity"]] = verdict.get(r["sparsity"], True) and ok
    fractions = sorted(verdict)
    if max_stored is not None:
        good = [f for f in fractions if verdict[f]]
        return good[0] if good else None
    best = None
    for f in fractions:
        if not verdict[f]:
            break
        best = f
    return best


def sparse_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: each sparse track against its unsparsified track (none: [])."""
    changes = sparse_changes(rows)
    if not changes:
        return []
    lines = ["", "| track | sparsity | positions stored | RMA | RRA | AOPC all steps | "
             f"AOPC top {TOP_STEPS} | change RMA / RRA / AOPC | within "
             f"{SPARSE_TOLERANCE:.0%}, <= {SPARSE_MAX_STORED:.0%} stored? |",
             "|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r, b, change in changes:
        key = (b["method"], b["p"])
        if key not in seen:  # the unsparsified track first
            seen.add(key)
            lines.append(f"| {b['method']} p={_cell(b['p'], 2)} | 0 | {b['stored']:.1%} | "
                         f"{_cell(b['rma'])} | {_cell(b['rra'])} | {_cell(b['aopc'])} | "
                         f"{_cell(b['aopc_top'])} | | |")
        pct = " / ".join(f"{100 * change[k]:+.1f}%" for k in _SPARSE_KEYS)
        ok = "yes" if sparse_ok(change, r["stored"]) else "no"
        lines.append(f"| {r['method']} p={_cell(r['p'], 2)} | {_cell(r['sparsity'], 2)} | "
                     f"{r['stored']:.1%} | {_cell(r['rma'])} | {_cell(r['rra'])} | "
                     f"{_cell(r['aopc'])} | {_cell(r['aopc_top'])} | {pct} | {ok} |")
    return lines


def update_report(result: Evaluation, report: str | Path, out_dir: str | Path,
                  section: str = "") -> None:
    """Replace the generated block ``section`` of a markdown report (or append it), atomically.

    Figure links are relative to the report's folder.
    """
    import os

    from plrp.atomic import atomic_path

    report = Path(report)
    rel = os.path.relpath(Path(out_dir).resolve(), report.resolve().parent)
    block = report_block(result, Path(rel).as_posix(), section)
    begin, end = report_markers(section)
    text = report.read_text() if report.exists() else ""
    if begin in text and end in text.split(begin, 1)[1]:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    with atomic_path(report) as tmp:
        tmp.write_text(text)
