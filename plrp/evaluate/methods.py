"""The explanation methods an evaluation compares, and how each one explains a batch.

A :class:`Setting` names one method: plain LRP, a PLRP variant at one p (optionally its sparse
per-base track), a baseline of :data:`plrp.baselines.BASELINES` (gradient x input, ISM,
DeepLIFT-SHAP, integrated gradients, or one a user registered), or ``random`` (the MoRF floor:
no explanation, positions removed in a seeded random order). :data:`EXPLAINERS` maps a method
kind to the function that explains windows with it; add an entry to evaluate a new kind.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from plrp import metrics
from plrp.engine.targets import normalise_target, score
from plrp.errors import PlrpError

VARIANTS = ("lambda", "m")


def score_function(model: torch.nn.Module, spec: dict) -> Callable[[torch.Tensor], torch.Tensor]:
    """The explained score of target ``spec`` as a function (M, 4, L) -> (M,) (the engine's
    :func:`plrp.engine.targets.score`: what LRP and every baseline explain)."""
    spec = normalise_target(spec, model)
    return lambda x: score(model(x), spec)


@dataclass(frozen=True)
class Setting:
    """One explanation method.

    ``method``: "lrp" | "plrp-lambda" | "plrp-m" | "random" | a baseline name; ``variant`` and
    ``p``: the PLRP variant and p_pos (NaN for baselines and random); ``sparsity`` > 0: the
    per-base track made sparse by the mass rule at that fraction.
    """

    method: str
    variant: str
    p: float
    sparsity: float = 0.0

    @property
    def kind(self) -> str:
        """Key of :data:`EXPLAINERS`: "engine" for LRP/PLRP, "baseline", "random"."""
        if self.method == "random":
            return "random"
        return "engine" if self.method == "lrp" or self.method.startswith("plrp-") else "baseline"


def resolve_baselines(names: Sequence[str] | str | None) -> list[str]:
    """Baseline names from a selection: "all" (every registered baseline), "none"/None/[] or a
    list of names of :data:`plrp.baselines.BASELINES`; PlrpError naming the known ones, or
    the library a chosen baseline needs and cannot import (before any work is done)."""
    from plrp.baselines import BASELINES, require

    names = [names] if isinstance(names, str) else list(names or [])
    if names == ["none"]:
        return []
    if names == ["all"]:
        names = list(BASELINES)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise PlrpError(f"--baselines: unknown baseline {unknown[0]!r}; known: "
                        f"{', '.join(BASELINES)} (or all, none)")
    names = list(dict.fromkeys(names))
    for n in names:
        require(n)
    return names


def settings_for(p_values: Sequence[float], variants: Sequence[str],
                 sparsities: Sequence[float] = (), baselines: Sequence[str] = ()
                 ) -> list[Setting]:
    """LRP once (p = 0: every variant is plain LRP there), then each variant at each p > 0,
    each followed by its sparse tracks at each fraction in ``sparsities`` (> 0), then each
    baseline (names of :data:`plrp.baselines.BASELINES`)."""
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
    out += [Setting(name, "", math.nan) for name in resolve_baselines(list(baselines))]
    return out


def setting_label(s: Setting) -> str:
    """Short label: ``lrp``, ``plrp-lambda p=0.2``, ``plrp-lambda p=0.1 sparse 0.3``,
    ``random``, or the baseline's name."""
    if s.kind != "engine" or s.method == "lrp":
        return s.method
    return f"{s.method} p={s.p:g}" + (f" sparse {s.sparsity:g}" if s.sparsity else "")


@dataclass
class Explained:
    """One setting's explanations of N windows: per-position relevance ``relevance`` (N, L)
    float64, ``conservation_error`` (N,) (NaN where the method defines none) and
    ``seconds_per_window`` (wall clock of the fastest batch; NaN for random)."""

    relevance: np.ndarray
    conservation_error: np.ndarray
    seconds_per_window: float


def _batched(x: torch.Tensor, batch_size: int, explain_batch) -> Explained:
    """Run ``explain_batch(x_batch) -> (relevance (B, 4, L), conservation error (B,) | None)``
    over batches; time each and keep the fastest per window (on a shared machine the others
    are slowed by whoever else runs)."""
    explain_batch(x[:min(8, x.shape[0])])   # warm-up: first calls are slow (allocations)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    rel, cons, per_window = [], [], []
    for a in range(0, x.shape[0], batch_size):
        xb = x[a:a + batch_size]
        sync()
        t0 = time.perf_counter()
        r, c = explain_batch(xb)
        sync()
        per_window.append((time.perf_counter() - t0) / xb.shape[0])
        rel.append(metrics.position_relevance(r))
        cons.append(np.full(xb.shape[0], np.nan) if c is None
                    else c.detach().cpu().double().numpy())
    return Explained(np.concatenate(rel), np.concatenate(cons), min(per_window))


def explain_engine(model, x: torch.Tensor, spec: dict, setting: Setting, composite: str,
                   batch_size: int) -> Explained:
    """LRP / PLRP by the plrp engine (p_neg = p_pos / 2, the engine's default)."""
    from plrp.engine import Explainer

    explainer = Explainer(model, composite=composite, p_pos=setting.p, variant=setting.variant)

    def batch(xb):
        res = explainer.explain(xb, spec)
        return res.relevance, res.conservation_error
    return _batched(x, batch_size, batch)


def explain_baseline(model, x: torch.Tensor, spec: dict, setting: Setting, composite: str,
                     batch_size: int) -> Explained:
    """A baseline of :data:`plrp.baselines.BASELINES` with its default options (``composite``
    does not apply); no conservation error (each baseline has its own reference)."""
    from plrp.baselines import attribute

    return _batched(x, batch_size, lambda xb: (attribute(setting.method, model, xb, spec), None))


def explain_random(model, x: torch.Tensor, spec: dict, setting: Setting, composite: str,
                   batch_size: int) -> Explained:
    """No explanation: all-zero relevance, so MoRF removes positions in the tie-break order."""
    nan = np.full(x.shape[0], np.nan)
    return Explained(np.zeros((x.shape[0], x.shape[2])), nan, math.nan)


#: method kind (:attr:`Setting.kind`) -> fn(model, x (N, 4, L), spec, setting, composite,
#: batch_size) -> :class:`Explained`
EXPLAINERS: dict[str, Callable[..., Explained]] = {
    "engine": explain_engine, "baseline": explain_baseline, "random": explain_random}


def explain_setting(model, x: torch.Tensor, spec: dict, setting: Setting, composite: str,
                    batch_size: int) -> Explained:
    """Explain ``x`` (N, 4, L) with one (unsparsified) setting, dispatched by its kind."""
    return EXPLAINERS[setting.kind](model, x, spec, setting, composite, batch_size)
