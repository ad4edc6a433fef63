"""PLRP pruning: mass thresholds per window, PLRP-lambda rescaling, PLRP-M masks.

All functions work per window on a batch r of shape (N, ...): every reduction runs over the
non-batch dims of one window only, so a window's result never depends on its batch.

Definition (plan contracts 1a): positives P sorted ascending by (value, flat index); the
longest prefix whose cumulative sum <= p * sum(P) is pruned. Same on |N| with p_neg. Zeros
are in neither side and are never pruned.

Two exact implementations of that one definition, picked for speed only:
- small windows, and all windows on a GPU: one stable sort of |r| orders both sides at
  once (the order of |r| restricted to one side is its order by (magnitude, index));
  float64 cumulative sums along it give each side's pruned prefix. Few torch calls, which
  is what small layers pay for; GPUs sort fast, and a GPU histogram would add floats
  atomically in a varying order, so the scales' last bits would vary between runs.
- large windows on the CPU: a radix selection, because the sort cost 3-7x the whole LRP
  pass on BPNet-sized layers. The float's bit pattern, shifted right, is a bin index
  monotone in the value; one float64 mass histogram per window and side (a single
  bincount over the batch) finds the bin where the cumulative mass crosses p * total.
  Bins below it are pruned whole, bins above kept whole; only the entries of that
  crossing bin are sorted by (magnitude, index) to place the cut exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_INT_VIEW = {torch.float32: (torch.int32, 32), torch.float64: (torch.int64, 64)}
# CPU windows with at least this many entries take the radix selection (measured crossover)
_RADIX_MIN_ENTRIES = 1024
# keep row-chunks' float64 copies below glibc's mmap threshold (32 MiB): larger blocks are
# mapped and faulted in afresh on every call, which costs more than the conversion itself
_CHUNK_ELEMENTS = 1 << 21
_MAX_BINS = 1 << 30
_BLOCK = 256


@dataclass
class Pruning:
    """The selection for a batch of windows r (N, ...), as one multiplier per entry.

    factor (N, M), M = one window's entries: 0 where pruned, else sum(P)/sum(kept P) for a
    positive entry and sum(N)/sum(kept N) for a negative one (exactly 1 where that side of
    the window lost nothing, so PLRP-lambda returns it bit for bit).
    """

    shape: torch.Size
    flat: torch.Tensor
    factor: torch.Tensor

    @property
    def keep(self) -> torch.Tensor:
        """Boolean keep-mask in r's shape (False where pruned; zeros are always kept)."""
        return ((self.factor != 0) | (self.flat == 0)).reshape(self.shape)


def select(r: torch.Tensor, p_pos: float, p_neg: float) -> Pruning:
    """Choose what PLRP prunes in r (N, ...) with mass proportions p_pos, p_neg in [0, 1).

    r must be float32 or float64 (other float dtypes are selected in float32).
    """
    if r.dtype not in _INT_VIEW:
        return select(r.float(), p_pos, p_neg)
    flat = r.reshape(r.shape[0], -1)
    p = torch.tensor([p_neg, p_pos], dtype=torch.float64, device=r.device)
    if flat.device.type != "cpu" or flat.shape[1] < _RADIX_MIN_ENTRIES:
        return Pruning(r.shape, flat, _select_sorted(flat, p))
    # bin keys are int32: at most _MAX_BINS bins per call (huge batches go in parts)
    rows = max(1, _MAX_BINS >> _bin_bits(flat.shape[1]))
    parts = [_select_binned(flat[i:i + rows], p) for i in range(0, flat.shape[0], rows)]
    return Pruning(r.shape, flat, torch.cat(parts))


def _scales(total: torch.Tensor, pruned: torch.Tensor, dtype) -> torch.Tensor:
    """total / kept per window and side (n, 2); exactly 1 where nothing was pruned."""
    kept = total - pruned
    ok = (pruned > 0) & (kept > 0)
    return torch.where(ok, total / torch.where(ok, kept, 1.0), 1.0).to(dtype)


def _select_sorted(flat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Factor (n, M) by one stable sort per window; both sides stacked as (n, 2, M)."""
    mags, order = torch.sort(flat.abs(), dim=1, stable=True)
    signed = flat.gather(1, order)
    side = torch.stack((signed < 0, signed > 0), dim=1)
    cums = torch.cumsum(torch.where(side, mags.unsqueeze(1), 0.0), dim=2, dtype=torch.float64)
    total = cums[:, :, -1]
    in_prefix = (cums <= (p * total).unsqueeze(2)) & (p > 0).view(1, 2, 1)
    # cums never decreases, so the largest value in the prefix is the pruned mass
    scale = _scales(total, torch.where(in_prefix, cums, 0.0).amax(2), flat.dtype)
    positive = side[:, 1]
    factor = torch.where(positive, scale[:, 1:], scale[:, :1])
    factor = torch.where((side & in_prefix).any(1), 0.0, factor)
    return torch.empty_like(factor).scatter_(1, order, factor)


def _bin_bits(m: int) -> int:
    # measured: fewer bins make the crossing bins (sorted) large, more bins make the
    # per-bin tables cost as much as the layer
    return min(14, max(10, m.bit_length()))


def _nonzero_sparse(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the True entries of a 1-D bool mask known to be sparse.

    Scans 256-entry blocks as bytes first: nonzero() over millions of entries costs more
    than the whole selection around it.
    """
    n_blocks = mask.numel() // _BLOCK
    head = mask[:n_blocks * _BLOCK].view(n_blocks, _BLOCK)
    blocks = head.view(torch.uint8).amax(1).nonzero().squeeze(1)
    local = head[blocks].nonzero()
    found = blocks[local[:, 0]] * _BLOCK + local[:, 1]
    tail = mask[n_blocks * _BLOCK:].nonzero().squeeze(1) + n_blocks * _BLOCK
    return torch.cat((found, tail))


def _select_binned(flat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Factor (n, M) by the radix selection (module docstring)."""
    n, m = flat.shape
    itype, width = _INT_VIEW[flat.dtype]
    bits = _bin_bits(m)
    nbins, half = 1 << bits, 1 << (bits - 1)
    device = flat.device

    # bin = the top `bits` bits of the float's pattern read as a signed int, plus `half`:
    # negatives land in [0, half) ordered by magnitude, positives in [half, nbins) by value
    key = torch.empty(n, m, dtype=itype, device=device)
    hist = torch.empty(n * nbins, dtype=torch.float64, device=device)
    rows = max(1, _CHUNK_ELEMENTS // m)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        part, kpart = flat[lo:hi], key[lo:hi]
        torch.bitwise_right_shift(part.view(itype), width - bits, out=kpart)
        kpart += (torch.arange(hi - lo, device=device, dtype=itype) * nbins + half).unsqueeze(1)
        hist[lo * nbins:hi * nbins] = torch.bincount(
            kpart.view(-1), part.reshape(-1).to(torch.float64), minlength=(hi - lo) * nbins)
        if lo:
            kpart += lo * nbins
    # per window and side, bin masses in ascending magnitude: side 0 = |N|, side 1 = P
    hist = hist.view(n, 2, half)
    cum = torch.cumsum(torch.stack((-hist[:, 0], hist[:, 1]), dim=1), dim=2)
    total = cum[:, :, -1]
    budget = p * total
    active = (p > 0) & (total > 0)
    # bins [0, cut) lie wholly within the budget; bin `cut` straddles it (when active)
    cut = torch.where(active, (cum <= budget.unsqueeze(2)).sum(2), 0)
    below = cum.gather(2, (cut - 1).clamp(min=0).unsqueeze(2)).squeeze(2)
    below = torch.where(cut > 0, below, 0.0)
    base = torch.arange(n, device=device).unsqueeze(1) * nbins + torch.tensor(
        [0, half], device=device)
    crossing = torch.where(active & (cut < half), base + cut, -1).to(itype)
    candidates = _nonzero_sparse(((key == crossing[:, :1]) | (key == crossing[:, 1:])).view(-1))

    # exact cut inside the crossing bins: order by (window, side, magnitude, flat index);
    # nonzero() lists index order, so two stable sorts give that order
    values = flat.view(-1)[candidates]
    magnitude = values.abs().to(torch.float64)
    group = (candidates // m) * 2 + (values > 0)
    order = torch.sort(magnitude, stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]
    group, magnitude, values = group[order], magnitude[order], values[order]
    counts = torch.bincount(group, minlength=2 * n)
    pos = torch.arange(group.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[group]
    dense = torch.zeros(2 * n, max(int(counts.max()) if group.numel() else 0, 1),
                        dtype=torch.float64, device=device)
    dense[group, pos] = magnitude
    running = torch.cumsum(dense, 1)[group, pos] + below.view(-1)[group]
    # zeros share the lowest bins with tiny values but belong to neither side
    pruned = (running <= budget.view(-1)[group]) & (values != 0)
    extra = torch.zeros(2 * n, dtype=torch.float64, device=device)
    extra.index_add_(0, group, torch.where(pruned, magnitude, 0.0))
    scale = _scales(total, below + extra.view(n, 2), flat.dtype)

    local = torch.arange(half, device=device)
    table = torch.where(local >= cut.unsqueeze(2), scale.unsqueeze(2), 0.0).view(-1)
    factor = torch.index_select(table, 0, key.view(-1)).view(n, m)
    factor.view(-1)[candidates[order[pruned]]] = 0.0
    return factor


def prune_mask(r: torch.Tensor, p_pos: float, p_neg: float) -> torch.Tensor:
    """Boolean keep-mask (same shape as r): False where PLRP prunes. r: (N, ...)."""
    return select(r, p_pos, p_neg).keep


def apply_lambda(r: torch.Tensor, pruning: Pruning) -> torch.Tensor:
    """PLRP-lambda: zero pruned entries, scale kept positives / negatives per window."""
    return (pruning.flat * pruning.factor).reshape(r.shape)


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
    factor = torch.where(flat > 0, scales[0], scales[1])
    return torch.where(kflat, flat * factor, 0.0).reshape(r.shape)


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
