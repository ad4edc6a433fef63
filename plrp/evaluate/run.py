"""Scoring every method on one target's windows, and the whole evaluation job.

Per window, then the mean and standard error over windows (:mod:`plrp.metrics`):
``gini``, ``rma``, ``rra``, ``aopc`` / ``aopc_top`` (MoRF: the most relevant positions by
signed relevance, ties in a seeded random order shared by all methods, replaced by all-zero
columns ``step_size`` at a time for ``n_steps`` steps), ``conservation_error`` (LRP/PLRP only),
``stored`` (share of non-zero positions), and per ignored motif name M ``ignored:M``: the share
of the positive relevance that lands on instances of M that the label ignores (a distractor or
decoy; the RMA formula with M's instances as the mask; lower is better).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from plrp import metrics
from plrp.errors import PlrpError
from plrp.evaluate.methods import (Setting, explain_setting, resolve_baselines, score_function,
                                   setting_label, settings_for)
from plrp.evaluate.windows import (EvalWindows, TruthInterval, load_windows, read_truth_bed,
                                   resolve_target_motifs, truth_masks)

#: window selections of :func:`evaluate_target`
SELECTIONS = ("truth", "positive", "predicted", "all")
#: MoRF steps that count as "the top features" for ``aopc_top``
TOP_STEPS = 5


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"plrp evaluate: {msg}", file=sys.stderr, flush=True)


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
    ignored_motifs: list[str] = ()
    #: setting label -> metric -> (N,) per-window values (NaN where undefined), for paired
    #: comparisons of methods on the same windows
    per_window: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def select_windows(score_fn, x_all: torch.Tensor, complete: np.ndarray, selection: str,
                   batch_size: int) -> np.ndarray:
    """Indices of the selected windows (see :func:`evaluate_target`)."""
    if selection == "truth":
        return np.flatnonzero(complete.any(axis=1))
    if selection == "positive":
        return np.flatnonzero(complete.all(axis=1))
    if selection == "predicted":
        with torch.no_grad():
            s = torch.cat([score_fn(x_all[a:a + batch_size])
                           for a in range(0, x_all.shape[0], batch_size)])
        return np.flatnonzero(s.cpu().numpy() > 0)
    return np.arange(x_all.shape[0])


def evaluate_target(model, windows: EvalWindows, intervals: Sequence[TruthInterval],
                    target: str, spec: dict, settings: Sequence[Setting], *,
                    motifs: Sequence[str] | None = None, selection: str = "truth",
                    ignored: Sequence[TruthInterval] = (),
                    composite: str = "epsilon", n_steps: int = 20, step_size: int = 2,
                    max_windows: int | None = None, batch_size: int = 128, seed: int = 0,
                    device: torch.device | str = "cpu", progress: bool = True) -> TargetResult:
    """Evaluate every setting (and the ``random`` floor) on the selected windows of one target.

    ``selection``: "truth" = windows holding a complete instance of any of the target's motifs;
    "positive" = windows holding complete instances of all of them (the simulation's label
    rule, e.g. both motifs of an AND task); "predicted" = windows whose score is > 0; "all".
    ``max_windows`` keeps the first N selected windows (FASTA order). ``ignored``: instances
    the label ignores (``PREFIX.ignored.bed``), scored per motif name as ``ignored:NAME``.
    """
    if selection not in SELECTIONS:
        raise PlrpError(f"--windows: expected one of {', '.join(SELECTIONS)}, got {selection!r}")
    names = resolve_target_motifs(target, {iv.name for iv in intervals}, motifs)
    mask, complete = truth_masks(windows, intervals, names)
    x_all = torch.from_numpy(windows.x).to(device)
    score_fn = score_function(model, spec)
    idx = select_windows(score_fn, x_all, complete, selection, batch_size)
    if max_windows is not None:
        idx = idx[:max_windows]
    if idx.size == 0:
        raise PlrpError(f"target {target}: no window selected by --windows {selection} "
                        f"(motifs {', '.join(names)})")
    x, truth = x_all[idx], mask[idx]
    # ignored motifs with an instance in the selected windows
    ignored_masks = {m: truth_masks(windows, ignored, [m])[0][idx]
                     for m in sorted({iv.name for iv in ignored})}
    ignored_masks = {m: v for m, v in ignored_masks.items() if v.any()}
    ignored_names = list(ignored_masks)
    n_truth = int(truth.any(axis=1).sum())
    _log(f"target {target} (truth: {', '.join(names)}): {idx.size} windows "
         f"({n_truth} with truth), {len(settings)} settings", progress)
    # one random key per window and position, shared by all settings: fair MoRF tie-breaks
    tiebreak = np.random.default_rng(seed).random((idx.size, windows.length))

    rows, curves, by_window = [], {}, {}
    dense: dict = {}  # unsparsified explanations by setting: its sparse rows reuse them
    for setting in list(settings) + [Setting("random", "", math.nan)]:
        t0 = time.perf_counter()
        base = dataclasses.replace(setting, sparsity=0.0)
        if base not in dense:
            dense[base] = explain_setting(model, x, spec, base, composite, batch_size)
        done = dense[base]
        r = done.relevance
        if setting.sparsity:
            from plrp.engine.prune import sparsify

            r = sparsify(torch.from_numpy(r), setting.sparsity).numpy()
        order = metrics.morf_order(r, tiebreak)
        # in window batches: the perturbed copies are (S + 1) times the input
        curve = np.concatenate([
            metrics.morf_curve(score_fn, x[a:a + batch_size], order[a:a + batch_size],
                               n_steps, step_size) for a in range(0, idx.size, batch_size)])
        explained = setting.kind != "random"
        nan = np.full(idx.size, np.nan)
        per_window = {
            "gini": metrics.gini_index(r) if explained else nan,
            "rma": metrics.relevance_mass_accuracy(r, truth) if explained else nan,
            "rra": metrics.relevance_rank_accuracy(r, truth) if explained else nan,
            "aopc": metrics.aopc(curve),
            "aopc_top": metrics.aopc(curve[:, :min(TOP_STEPS, n_steps) + 1]),
            "conservation_error": done.conservation_error,
            "stored": (r != 0).mean(axis=1) if explained else nan,
        }
        for m in ignored_names:
            per_window[f"ignored:{m}"] = (metrics.relevance_mass_accuracy(r, ignored_masks[m])
                                          if explained else nan)
        row = {"target": target, "method": setting.method, "variant": setting.variant,
               "p": setting.p, "sparsity": setting.sparsity, "n_windows": int(idx.size)}
        for name, values in per_window.items():
            mean, sem, n = _mean_sem(values)
            row[name] = mean
            if name not in ("conservation_error", "stored"):
                row[f"{name}_sem"] = sem
            if name in ("rma", "rra") or name.startswith("ignored:"):
                row[f"{name}_n"] = n
        cons = done.conservation_error
        row["conservation_error_median"] = (float(np.nanmedian(cons)) if np.isfinite(cons).any()
                                            else math.nan)
        row["ms_per_window"] = 1000 * done.seconds_per_window
        row["score"] = float(curve[:, 0].mean())
        rows.append(row)
        curves[setting_label(setting)] = curve.mean(axis=0).tolist()
        by_window[setting_label(setting)] = per_window
        _log(f"  {setting_label(setting):<26} gini {row['gini']:.3f}  rma {row['rma']:.3f}  "
             f"rra {row['rra']:.3f}  aopc {row['aopc']:.3f}  "
             f"({time.perf_counter() - t0:.1f} s)", progress)
    return TargetResult(target, names, int(idx.size), n_truth, rows, curves, ignored_names,
                        by_window)


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
                   baselines: Sequence[str] | str | None = None,
                   ignored_bed: str | Path | None = None, threads: int | None = None,
                   compare_p: Sequence[float] = (), progress: bool = True) -> Evaluation:
    """Load the model, cut the FASTA into windows and evaluate every setting for each target.

    ``targets`` None = the model's first output. ``model`` None = the shipped default model.
    ``sparsities``: fractions of the sparse per-base track to score for each PLRP setting.
    ``baselines``: "all", "none"/None or names of :data:`plrp.baselines.BASELINES`, run with
    their default options. ``ignored_bed``: motif instances the label ignores (scored as
    ``ignored:NAME``, see the module docstring). ``threads``: torch CPU threads for the run
    (restored afterwards; None keeps torch's setting). ``compare_p``: p values (among
    ``p_values``, > 0) at which the report sets PLRP-lambda against the baselines (default:
    plrp's default p_pos, see :func:`plrp.evaluate.report.comparison_ps`).
    """
    bad = [p for p in compare_p if p <= 0 or p not in p_values]
    if bad:
        raise PlrpError(f"--compare-p {bad[0]:g}: must be one of the evaluated p > 0 (--p)")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_evaluation(fasta, truth_bed, model=model, arch=arch, targets=targets,
                               p_values=p_values, variants=variants, motifs=motifs,
                               selection=selection, composite=composite, n_steps=n_steps,
                               step_size=step_size, max_windows=max_windows,
                               batch_size=batch_size, seed=seed, device=device,
                               sparsities=sparsities, baselines=baselines,
                               ignored_bed=ignored_bed, progress=progress,
                               compare_p=sorted(set(float(p) for p in compare_p)))
    finally:
        torch.set_num_threads(previous)


def _run_evaluation(fasta, truth_bed, *, model, arch, targets, p_values, variants, motifs,
                    selection, composite, n_steps, step_size, max_windows, batch_size, seed,
                    device, sparsities, baselines, ignored_bed, progress,
                    compare_p) -> Evaluation:
    from plrp.baselines import baseline_options
    from plrp.devices import resolve_device
    from plrp.models.checkpoint import file_sha256, load_model

    torch_device = resolve_device(device)
    loaded = load_model(model, arch=arch)
    net = loaded.model.to(torch_device).eval()
    specs = net.target_specs()
    targets = list(targets) if targets else [loaded.output_names[0]]
    unknown = [t for t in targets if t not in specs]
    if unknown:
        raise PlrpError(f"--target {', '.join(unknown)}: not an output of the model "
                        f"(outputs: {', '.join(specs)})")
    baseline_names = resolve_baselines(baselines)
    settings = settings_for(p_values, variants, sparsities, baseline_names)
    windows, sizes = load_windows(fasta, loaded.input_length)
    if windows.skipped_short:
        _log(f"skipped {len(windows.skipped_short)} record(s) shorter than "
             f"{loaded.input_length} bp", progress)
    intervals = read_truth_bed(truth_bed, sizes)
    ignored = read_truth_bed(ignored_bed, sizes) if ignored_bed else []
    _log(f"{len(windows.chrom)} windows of {windows.length} bp from {fasta}; "
         f"{len(intervals)} truth intervals", progress)
    results = [evaluate_target(net, windows, intervals, t, specs[t], settings, motifs=motifs,
                               selection=selection, ignored=ignored, composite=composite,
                               n_steps=n_steps, step_size=step_size, max_windows=max_windows,
                               batch_size=batch_size, seed=seed, device=torch_device,
                               progress=progress) for t in targets]
    # file names and hashes, not paths: a report must not change with a temporary folder
    config = {"fasta": Path(fasta).name, "fasta_sha256": file_sha256(fasta),
              "truth": Path(truth_bed).name, "truth_sha256": file_sha256(truth_bed),
              "ignored": Path(ignored_bed).name if ignored_bed else None,
              "model": Path(loaded.path).name if loaded.path else "default",
              "model_sha256": loaded.sha256, "architecture": loaded.spec["name"],
              "composite": composite, "windows": selection,
              "p_values": sorted(set(float(p) for p in p_values)), "variants": list(variants),
              "p_neg": "p_pos / 2", "morf": {"n_steps": n_steps, "step_size": step_size,
                                             "perturbation": "all-zero column (N)"},
              "sparsities": sorted(set(float(f) for f in sparsities)), "compare_p": compare_p,
              "baselines": {b: {k: v for k, v in baseline_options(b).items()
                                if isinstance(v, (int, float, str))}
                            for b in baseline_names},
              "max_windows": max_windows, "seed": seed, "device": str(torch_device),
              "torch_threads": torch.get_num_threads()}
    return Evaluation(config, results)
