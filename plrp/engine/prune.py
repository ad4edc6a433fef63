"""PLRP pruning: mass thresholds per window, PLRP-lambda rescaling, PLRP-M masks.

All functions work per window on a batch r of shape (N, ...): every reduction runs over the
non-batch dims of one window only, so a window's result never depends on its batch.

Definition (plan contracts 1a): positives P sorted ascending by (value, flat index); the
longest prefix whose cumulative sum <= p * sum(P) is pruned. Same on |N| with p_neg.

Implementation: ONE stable sort of |r| per window orders both sides at once, because the
order of |r| restricted to the positives (or to the negatives) is exactly their order by
(magnitude, index). Float64 cumulative sums of each side along that order give the pruned
prefix of each side (the prefix condition is monotone, so the entries of the other side
interleaved in it do not matter); a scatter maps the flags back. The pruned mass is read
off the cumulative sum, so PLRP-lambda needs no second reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Pruning:
    """Result of the selection for a batch of windows (N, M = flattened layer input).

    order (N, M): the stable sort order of |r|; signed (N, M): r in that order;
    pruned_sorted (N, M) bool: pruned entries, in that order;
    scale_pos / scale_neg (N, 1): sum(P)/sum(kept P), sum(N)/sum(kept N); exactly 1 where
    that side of the window lost nothing.
    """

    shape: torch.Size
    order: torch.Tensor
    signed: torch.Tensor
    pruned_sorted: torch.Tensor
    scale_pos: torch.Tensor
    scale_neg: torch.Tensor

    @property
    def keep(self) -> torch.Tensor:
        """Boolean keep-mask in r's shape (False where pruned)."""
        keep = torch.empty_like(self.pruned_sorted).scatter_(1, self.order,
                                                             ~self.pruned_sorted)
        return keep.reshape(self.shape)


def select(r: torch.Tensor, p_pos: float, p_neg: float) -> Pruning:
    """Choose what PLRP prunes in r (N, ...) with mass proportions p_pos, p_neg in [0, 1)."""
    n = r.shape[0]
    flat = r.reshape(n, -1)
    mags, order = torch.sort(flat.abs(), dim=1, stable=True)
    signed = flat.gather(1, order)
    pruned_sorted = torch.zeros_like(signed, dtype=torch.bool)
    scales = []
    one = torch.ones(n, 1, dtype=r.dtype, device=r.device)
    for p, positive in ((p_pos, True), (p_neg, False)):
        if p <= 0:
            scales.append(one)
            continue
        side = signed > 0 if positive else signed < 0
        cums = torch.cumsum(torch.where(side, mags, 0.0), dim=1, dtype=torch.float64)
        total = cums[:, -1:]
        in_prefix = cums <= p * total
        pruned_sorted |= side & in_prefix
        # in_prefix is a prefix of a non-decreasing cums: its last value is the pruned mass
        length = in_prefix.sum(1, keepdim=True)
        pruned_mass = torch.where(length > 0, cums.gather(1, (length - 1).clamp(min=0)), 0.0)
        kept = total - pruned_mass
        ok = (pruned_mass > 0) & (kept > 0)
        scale = torch.where(ok, total / torch.where(ok, kept, 1.0), 1.0)
        scales.append(scale.to(r.dtype))
    return Pruning(r.shape, order, signed, pruned_sorted, scales[0], scales[1])


def prune_mask(r: torch.Tensor, p_pos: float, p_neg: float) -> torch.Tensor:
    """Boolean keep-mask (same shape as r): False where PLRP prunes. r: (N, ...)."""
    return select(r, p_pos, p_neg).keep


def apply_lambda(r: torch.Tensor, pruning: Pruning) -> torch.Tensor:
    """PLRP-lambda: zero pruned entries, scale kept positives / negatives per window.

    Computed in the sorted order and scattered back (one pass fewer than a mask). A window
    side that lost nothing has scale exactly 1, so it is returned bit for bit.
    """
    factor = torch.where(pruning.signed > 0, pruning.scale_pos, pruning.scale_neg)
    scaled = torch.where(pruning.pruned_sorted, 0.0, pruning.signed * factor)
    out = torch.empty_like(scaled).scatter_(1, pruning.order, scaled)
    return out.reshape(r.shape)


def lambda_rescale(r: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """PLRP-lambda for an arbitrary keep mask (sums recomputed; used by tests and tools)."""
    n = r.shape[0]
    flat = r.reshape(n, -1)
    kflat = keep.reshape(n, -1)
    scales = []
    for side in (flat > 0, flat < 0):
        total = torch.where(side, flat, 0.0).sum(1, dtype=torch.float64)
        kept = torch.where(side & kflat, flat, 0.0).sum(1, dtype=torch.float64)
        ok = (side & ~kflat).any(dim=1) & (kept != 0)
        scale = torch.where(ok, total / torch.where(ok, kept, 1.0), 1.0)
        scales.append(scale.to(r.dtype).unsqueeze(1))
    order = torch.arange(flat.shape[1], device=r.device).expand(n, -1)
    return apply_lambda(r, Pruning(r.shape, order, flat, ~kflat, scales[0], scales[1]))


def resolve_schedule(p, layer: str, prunable: set) -> float:
    """p for one layer from a float or a {layer: p, "*": default} schedule.

    A float applies to the prunable layers; in a dict an explicitly named layer is pruned
    even if it is not in the default prunable set, and "*" applies to the prunable set.
    """
    if p is None:
        return 0.0
    if isinstance(p, dict):
        if layer in p:
            return float(p[layer])
        if "*" in p and layer in prunable:
            return float(p["*"])
        return 0.0
    return float(p) if layer in prunable else 0.0
