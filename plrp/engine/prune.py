"""PLRP pruning: mass thresholds per window, PLRP-lambda rescaling, PLRP-M masks.

All functions work per window on a batch r of shape (N, ...): every reduction runs over the
non-batch dims of one window only, so a window's result never depends on its batch.

Definition (plan contracts 1a): positives P sorted ascending by (value, flat index); the
longest prefix whose cumulative sum <= p * sum(P) is pruned. Same on |N| with p_neg. Zeros
are in neither side and are never pruned.

Masses are summed as int64 fixed-point numbers (``_fixed_point``): one unit per window and
side, a power of two set by that side's largest magnitude. Integer sums do not depend on
the order of addition, so every implementation, on every device, computes the same
cumulative masses bit for bit; an entry is pruned where float64(cumulative mass) <=
p * float64(side total), one correctly rounded product, the same everywhere.

Two implementations of that one definition (``SELECTIONS``), picked for speed only; they
agree bit for bit (pruned set and scales):
- "sort", for small windows: one stable sort of |r| orders both sides at once (the order
  of |r| restricted to one side is its order by (magnitude, index)); int64 cumulative sums
  along it give each side's pruned prefix. Few torch calls, which is what small layers pay.
- "radix", for large windows on any device: the sort cost 3-7x the whole LRP pass on
  BPNet-sized CPU layers, and as much as the whole gradient pass on an H200. The float's bit
  pattern, shifted right, is a bin index monotone in the value; one int64 mass histogram per
  window and side (a single index_add over the batch; integer atomics on a GPU, exact in any
  order) finds the bin where the cumulative mass crosses the budget. Bins below it are
  pruned whole, bins above kept whole; only the entries of that crossing bin are sorted by
  (magnitude, index) and summed exactly to place the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from plrp.errors import PlrpError

_INT_VIEW = {torch.float32: (torch.int32, 32), torch.float64: (torch.int64, 64)}
# windows with at least this many entries take the radix selection (CPU crossover,
# measured at batch 16-256; untimed on a GPU, where avoiding the full sort matters more)
_RADIX_MIN_ENTRIES = 512
# keep row-chunks' temporaries below glibc's mmap threshold (32 MiB): larger blocks are
# mapped and faulted in afresh on every call, which costs more than the work itself
_CHUNK_ELEMENTS = 1 << 21
_MAX_BINS = 1 << 30
_BLOCK = 256
# a side's fixed-point masses sum below 2**_MASS_BITS: int64 sums never overflow
_MASS_BITS = 62
# exponents of the smallest and largest normal powers of two of each dtype
_NORMAL_POWERS = {torch.float32: (-126, 127), torch.float64: (-1022, 1023)}
_MANTISSA_BITS = {torch.float32: 23, torch.float64: 52}


@dataclass
class Pruning:
    """The selection for a batch of windows r (N, ...), as one multiplier per entry.

    factor (N, M), M = one window's entries: 0 where pruned, else sum(P)/sum(kept P) for a
    positive entry and sum(N)/sum(kept N) for a negative one (exactly 1 where that side of
    the window lost no mass, so PLRP-lambda returns it bit for bit). Its value at zero
    entries of r is unspecified (they stay 0).
    """

    shape: torch.Size
    flat: torch.Tensor
    factor: torch.Tensor

    @property
    def keep(self) -> torch.Tensor:
        """Boolean keep-mask in r's shape (False where pruned; zeros are always kept)."""
        return ((self.factor != 0) | (self.flat == 0)).reshape(self.shape)


def select(r: torch.Tensor, p_pos: float, p_neg: float, method: str | None = None) -> Pruning:
    """Choose what PLRP prunes in r (N, ...) with mass proportions p_pos, p_neg in [0, 1).

    r must be float32 or float64 (other float dtypes are selected in float32). method: a key
    of ``SELECTIONS`` ("sort" or "radix"), or None to pick by window size; every method
    gives the same result on every device.
    """
    if r.dtype not in _INT_VIEW:
        return select(r.float(), p_pos, p_neg, method)
    flat = r.reshape(r.shape[0], -1)
    if method is None:
        method = "radix" if flat.shape[1] >= _RADIX_MIN_ENTRIES else "sort"
    if method not in SELECTIONS:
        raise PlrpError(f"selection method {method!r}: expected one of {', '.join(SELECTIONS)}")
    p = torch.tensor([p_neg, p_pos], dtype=torch.float64, device=r.device)
    return Pruning(r.shape, flat, SELECTIONS[method](flat, p))


def _fixed_point_shifts(flat: torch.Tensor) -> torch.Tensor:
    """(n, 1) int64 shifts s, one per window: mass = trunc(|r| * 2**s).

    A window whose largest magnitude is below 2**e gets s = K - e with K = 62 - bit_length(M),
    so every mass is <= 2**K and a side of M entries sums below 2**62. A power of two per
    window keeps the selection invariant to rescaling a window by a power of two.
    """
    k = _MASS_BITS - flat.shape[1].bit_length()
    # amax and amin: two passes, but aminmax(dim) is slower than both on the CPU
    top = torch.maximum(flat.amax(1, keepdim=True), flat.amin(1, keepdim=True).neg())
    return k - torch.frexp(top).exponent.to(torch.int64)


def _fixed_point(part: torch.Tensor, shift: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Signed int64 masses (sign of r) of the rows ``part`` (n, M) for their shifts (n, 1),
    written to out.

    Multiplying by a power of two is exact in r's dtype (an entry that would underflow is
    below one unit and truncates to 0 anyway); the cast truncates toward zero, dropping less
    than one unit per entry. Where 2**s is outside the dtype's normal range (windows near
    the dtype's limits) it is applied in two halves, with the same result: an entry's mass
    depends only on its value and its window's shift.
    """
    if part.numel() == 0:
        return out
    low_exp, high_exp = _NORMAL_POWERS[part.dtype]
    lo, hi = int(shift.min()), int(shift.max())      # one host sync per call
    steps = [shift] if low_exp <= lo and hi <= high_exp else [shift // 2, shift - shift // 2]
    y = part
    for s in steps:
        y = y * _power_of_two(s, part.dtype)
    return out.copy_(y)


def _power_of_two(s: torch.Tensor, dtype) -> torch.Tensor:
    """2**s exactly, built from its bit pattern (s int64 within the dtype's normal range)."""
    itype, _ = _INT_VIEW[dtype]
    return ((s + _NORMAL_POWERS[dtype][1]) << _MANTISSA_BITS[dtype]).to(itype).view(dtype)


def _scales(total: torch.Tensor, pruned: torch.Tensor, dtype) -> torch.Tensor:
    """total / kept per window and side (n, 2) from int64 masses; exactly 1 where no mass
    was pruned."""
    kept = total - pruned
    ok = (pruned > 0) & (kept > 0)
    ratio = total.to(torch.float64) / torch.where(ok, kept, 1).to(torch.float64)
    return torch.where(ok, ratio, 1.0).to(dtype)


def _order_by_magnitude(flat: torch.Tensor) -> torch.Tensor:
    """(n, M) int64: each row's entries ordered by (|r|, index), as a stable sort of |r|.

    float32 rows sort one int64 key per entry, |r|'s bit pattern (monotone in |r|) above
    the index: keys are unique, so any sort gives this one order. On the CPU numpy sorts
    them: torch's CPU sort costs ~10x more on short rows (measured 2.5 vs 0.18 ms for
    384 x 200), which made it most of a small layer's selection.
    """
    n, m = flat.shape
    if flat.dtype != torch.float32:
        return torch.sort(flat.abs(), dim=1, stable=True).indices
    bits = max(1, (m - 1).bit_length())
    key = flat.abs().view(torch.int32).to(torch.int64) << bits
    key |= torch.arange(m, device=flat.device)
    if flat.device.type == "cpu":
        key = torch.from_numpy(np.sort(key.numpy(), axis=1))
    else:
        key = torch.sort(key, dim=1).values
    return key & ((1 << bits) - 1)


def _select_sorted(flat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Factor (n, M) by one stable sort per window; both sides stacked as (n, 2, M)."""
    mass = _fixed_point(flat, _fixed_point_shifts(flat),
                        torch.empty(flat.shape, dtype=torch.int64, device=flat.device)).abs_()
    order = _order_by_magnitude(flat)
    signed = flat.gather(1, order)
    side = torch.stack((signed < 0, signed > 0), dim=1)
    cums = torch.cumsum(torch.where(side, mass.gather(1, order).unsqueeze(1), 0), dim=2)
    total = cums[:, :, -1]
    budget = p * total.to(torch.float64)
    in_prefix = (cums.to(torch.float64) <= budget.unsqueeze(2)) & (p > 0).view(1, 2, 1)
    # cums never decreases, so the largest value in the prefix is the pruned mass
    scale = _scales(total, torch.where(in_prefix, cums, 0).amax(2), flat.dtype)
    positive = side[:, 1]
    factor = torch.where(positive, scale[:, 1:], scale[:, :1])
    factor = torch.where((side & in_prefix).any(1), 0.0, factor)
    return torch.empty_like(factor).scatter_(1, order, factor)


def _bin_bits(m: int) -> int:
    # measured (1 thread, 384 rows): fewer bins make the crossing bins (sorted) large, more
    # make the per-bin tables cost more than the layer (2**14 bins at 3,200 entries: 7x
    # slower than 2**11); ~m/4 bins per window was fastest from 3,200 to 135,000 entries
    return min(14, max(11, m.bit_length() - 2))


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


def _select_radix(flat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Factor (n, M) by the radix selection, in parts of at most _MAX_BINS bins (the bin
    keys are int32)."""
    rows = max(1, _MAX_BINS >> _bin_bits(flat.shape[1]))
    parts = [_radix_part(flat[i:i + rows], p) for i in range(0, flat.shape[0], rows)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _radix_part(flat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Factor (n, M) by the radix selection (module docstring)."""
    n, m = flat.shape
    itype, width = _INT_VIEW[flat.dtype]
    bits = _bin_bits(m)
    nbins, half = 1 << bits, 1 << (bits - 1)
    device = flat.device
    shift = _fixed_point_shifts(flat)

    # bin = the top `bits` bits of the float's pattern read as a signed int, plus `half`:
    # negatives land in [0, half) ordered by magnitude, positives in [half, nbins) by value;
    # keys are global over the part (window i owns [i * nbins, (i + 1) * nbins))
    key = torch.empty(n, m, dtype=itype, device=device)
    hist = torch.zeros(n * nbins, dtype=torch.int64, device=device)
    rows = max(1, _CHUNK_ELEMENTS // m)
    mass = torch.empty(min(rows, n), m, dtype=torch.int64, device=device)   # one chunk's
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        part, kpart = flat[lo:hi], key[lo:hi]
        torch.bitwise_right_shift(part.view(itype), width - bits, out=kpart)
        kpart += (torch.arange(lo, hi, device=device, dtype=itype) * nbins + half).unsqueeze(1)
        hist.index_add_(0, kpart.view(-1), _fixed_point(part, shift[lo:hi],
                                                         mass[:hi - lo]).view(-1))
    # per window and side, bin masses in ascending magnitude: side 0 = |N|, side 1 = P
    hist = hist.view(n, 2, half)
    hist[:, 0].neg_()
    cum = torch.cumsum(hist, dim=2)
    total = cum[:, :, -1]
    budget = p * total.to(torch.float64)
    active = (p > 0) & (total > 0)
    # bins [0, cut) lie wholly within the budget; bin `cut` straddles it (when active)
    cut = torch.where(active, (cum.to(torch.float64) <= budget.unsqueeze(2)).sum(2), 0)
    below = cum.gather(2, (cut - 1).clamp(min=0).unsqueeze(2)).squeeze(2)
    below = torch.where(cut > 0, below, 0)
    base = torch.arange(n, device=device).unsqueeze(1) * nbins + torch.tensor(
        [0, half], device=device)
    crossing = torch.where(active & (cut < half), base + cut, -1).to(itype)
    candidates = _nonzero_sparse(((key == crossing[:, :1]) | (key == crossing[:, 1:])).view(-1))

    # exact cut inside the crossing bins: order by (window, side, magnitude, flat index);
    # nonzero() lists index order, so two stable sorts give that order
    values = flat.view(-1)[candidates]
    group = (candidates // m) * 2 + (values > 0)
    order = torch.sort(values.abs(), stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]
    group, values = group[order], values[order]
    cand_mass = _fixed_point(values.unsqueeze(1), shift[candidates[order] // m],
                             torch.empty_like(values, dtype=torch.int64).unsqueeze(1))
    cand_mass = cand_mass.view(-1).abs()
    counts = torch.bincount(group, minlength=2 * n)
    pos = torch.arange(group.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[group]
    dense = torch.zeros(2 * n, max(int(counts.max()) if group.numel() else 0, 1),
                        dtype=torch.int64, device=device)
    dense[group, pos] = cand_mass
    running = torch.cumsum(dense, 1)[group, pos] + below.view(-1)[group]
    # zeros share the lowest bins with tiny values but belong to neither side
    pruned = (running.to(torch.float64) <= budget.view(-1)[group]) & (values != 0)
    extra = torch.zeros(2 * n, dtype=torch.int64, device=device)
    extra.index_add_(0, group, torch.where(pruned, cand_mass, 0))
    scale = _scales(total, below + extra.view(n, 2), flat.dtype)

    local = torch.arange(half, device=device)
    table = torch.where(local >= cut.unsqueeze(2), scale.unsqueeze(2), 0.0).view(-1)
    factor = torch.index_select(table, 0, key.view(-1)).view(n, m)
    factor.view(-1)[candidates[order[pruned]]] = 0.0
    return factor


# selection method -> factor (n, M) for rows flat (n, M) and p = (p_neg, p_pos) float64
SELECTIONS = {"sort": _select_sorted, "radix": _select_radix}


def sparsify(r: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per-base track made sparse by the PLRP mass rule, without rescaling.

    r: (..., L) relevance, any leading dims; each row of L values is one window. Per row and
    sign, the smallest-|r| entries that together hold at most ``fraction`` of that sign's
    mass are set to 0 (the selection of ``select`` with p_pos = p_neg = fraction: ties broken
    by position, the same result on every device). fraction in [0, 1); 0 returns r itself.
    Returns a tensor of r's shape, dtype and device.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise PlrpError(f"sparsify fraction = {fraction}: must be in [0, 1)")
    if fraction == 0.0 or r.numel() == 0:
        return r
    rows = r.reshape(-1, r.shape[-1])
    keep = select(rows, fraction, fraction).keep
    return torch.where(keep, rows, 0).reshape(r.shape)


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
