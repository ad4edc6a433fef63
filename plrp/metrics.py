"""Per-window quality metrics of an explanation (method spec section 3).

Every function works on a batch of windows and returns one value per window. Relevance here
is the *per-position* relevance ``r`` of shape (N, L): the input relevance (N, 4, L) summed
over the four channels (for one-hot input and product rules only the observed base is
non-zero, so this is the relevance of the observed base). Ground truth is a boolean mask of
the same shape (True at positions inside an implanted motif instance).

Values that are undefined for a window (no ground truth, no positive relevance, all-zero
relevance) are NaN, so callers can average with ``np.nanmean`` and count what was left out.
All computations are float64.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def position_relevance(relevance: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, 4, L) input relevance -> (N, L) float64 per-position relevance (sum over channels)."""
    if isinstance(relevance, torch.Tensor):
        relevance = relevance.detach().cpu().double().numpy()
    return np.asarray(relevance, dtype=np.float64).sum(axis=1)


def gini_index(r: np.ndarray) -> np.ndarray:
    """Gini index of |r| over positions, (N, L) -> (N,).

    0 = relevance spread uniformly, (L-1)/L = all mass on one position. Uses the sorted form
    G = sum_i (2i - L - 1) x_(i) / (L * sum x) with x_(1) <= ... <= x_(L). NaN where r is all 0.
    """
    x = np.sort(np.abs(np.asarray(r, dtype=np.float64)), axis=-1)
    n = x.shape[-1]
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    total = x.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (x * weights).sum(axis=-1) / (n * total)
    return np.where(total > 0, g, np.nan)


def relevance_mass_accuracy(r: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Share of the positive relevance that lies inside the ground truth, (N, L) x2 -> (N,).

    RMA = sum(max(r, 0)[truth]) / sum(max(r, 0)). NaN for windows without ground truth or
    without any positive relevance.
    """
    pos = np.clip(np.asarray(r, dtype=np.float64), 0.0, None)
    truth = np.asarray(truth, dtype=bool)
    total = pos.sum(axis=-1)
    inside = (pos * truth).sum(axis=-1)
    ok = (total > 0) & truth.any(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, inside / np.where(total > 0, total, 1.0), np.nan)


def relevance_rank_accuracy(r: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Share of the K top-ranked positions that lie in the ground truth (K = |truth|), -> (N,).

    Only positions with positive relevance are ranked (descending; ties by lower position), so
    a window with fewer than K positive positions counts the missing ranks as misses: a sparse
    explanation is not rewarded for zeros that happen to sit inside a motif. NaN where K = 0.
    """
    r = np.asarray(r, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    out = np.full(r.shape[0], np.nan)
    for i in range(r.shape[0]):
        k = int(truth[i].sum())
        if k == 0:
            continue
        order = np.argsort(-r[i], kind="stable")[:k]
        order = order[r[i][order] > 0]
        out[i] = truth[i][order].sum() / k
    return out


def morf_order(r: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Positions from most to least relevant, (N, L) -> (N, L) int indices.

    Sorted by signed relevance, descending; equal values (notably the zeros of a pruned
    explanation) are ordered by ``tiebreak`` (N, L) ascending, e.g. a seeded random key, so
    ties do not favour the start of the window.
    """
    r = np.asarray(r, dtype=np.float64)
    return np.stack([np.lexsort((tiebreak[i], -r[i])) for i in range(r.shape[0])])


def morf_curve(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               order: np.ndarray, n_steps: int, step_size: int,
               chunk: int = 1024) -> np.ndarray:
    """Explained score as the most relevant positions are removed, -> (N, n_steps + 1).

    Column k holds f(x_k) where x_k is x (N, 4, L) with the positions ``order[:, :k*step_size]``
    replaced by all-zero columns (an "N" base). Column 0 is f(x). ``score_fn`` maps a batch
    (M, 4, L) to the explained scores (M,).
    """
    n, _, length = x.shape
    if n_steps * step_size > length:
        raise ValueError(f"MoRF removes {n_steps * step_size} positions of a {length} bp window")
    order_t = torch.as_tensor(order, device=x.device)
    variants = []
    for k in range(n_steps + 1):
        keep = torch.ones(n, length, dtype=x.dtype, device=x.device)
        if k:
            keep.scatter_(1, order_t[:, :k * step_size], 0.0)
        variants.append(x * keep[:, None, :])
    batch = torch.stack(variants, dim=1).reshape(n * (n_steps + 1), 4, length)
    with torch.no_grad():
        scores = torch.cat([score_fn(batch[i:i + chunk]) for i in range(0, batch.shape[0], chunk)])
    return scores.detach().cpu().double().numpy().reshape(n, n_steps + 1)


def aopc(curve: np.ndarray) -> np.ndarray:
    """Area over the MoRF perturbation curve, (N, S + 1) -> (N,).

    AOPC = (1/S) * sum_{k=1..S} (f(x) - f(x_k)): the mean drop of the score over the S
    perturbation steps, in the units of the score (logits). Higher = more faithful.
    """
    curve = np.asarray(curve, dtype=np.float64)
    return (curve[:, :1] - curve[:, 1:]).mean(axis=1)
