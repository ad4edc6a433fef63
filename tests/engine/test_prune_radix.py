"""The radix selection (what CUDA runs on large windows) against the sort path, on the CPU.

Both paths sum int64 fixed-point masses, so they must agree bit for bit: the same pruned set,
the same PLRP-lambda scales, whatever the order of addition (a GPU's atomics).
"""

from __future__ import annotations

import pytest
import torch

import plrp.engine.prune as prune
from reference import one_torch_thread  # noqa: F401  (fixture)
from test_composites_and_pruning import _naive_pruned

F32, F64 = torch.float32, torch.float64

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _relevance(kind: str, shape, dtype, g) -> torch.Tensor:
    r = torch.randn(shape, generator=g, dtype=F64) * torch.randn(shape, generator=g,
                                                                  dtype=F64).exp()
    if kind == "ties":          # few distinct magnitudes, exact sums
        r = torch.randint(-5, 9, shape, generator=g).to(F64) / 4
    elif kind == "zeros":       # zeros, signed zeros and one all-zero window
        r[:, ::3] = 0.0
        r[:, 1::5] = -0.0
        r[0] = 0.0
    elif kind == "negative":    # all-negative windows (nothing positive to select)
        r = -r.abs()
    elif kind == "huge":        # near the dtype's largest values
        r = r * (1e36 if dtype == F32 else 1e300)
    elif kind == "tiny":        # subnormal windows: the fixed-point unit needs two steps
        r = r * (1e-41 if dtype == F32 else 1e-312)
    elif kind == "mixed":       # windows 40 orders of magnitude apart in one batch
        r = r * torch.logspace(-20, 20, shape[0], dtype=F64).view(-1, 1)
    elif kind == "spikes":      # one huge entry per window over a dense background
        r[:, 7] = 1e6
    return r.to(dtype)


KINDS = ["spread", "ties", "zeros", "negative", "huge", "tiny", "mixed", "spikes"]
PS = [(0.3, 0.15), (0.05, 0.5), (0.0, 0.3), (0.9, 0.9), (0.5, 0.0)]


def _assert_same(r, a: prune.Pruning, b: prune.Pruning):
    assert torch.equal(a.keep, b.keep)
    nonzero = r.reshape(r.shape[0], -1) != 0
    assert torch.equal(a.factor[nonzero], b.factor[nonzero])       # bit for bit
    assert torch.equal(prune.apply_lambda(r, a), prune.apply_lambda(r, b))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_radix_equals_sort_bit_for_bit(kind, dtype):
    g = torch.Generator().manual_seed(KINDS.index(kind))
    for m in (50, 1500, 4099):
        r = _relevance(kind, (5, m), dtype, g)
        for p_pos, p_neg in PS:
            radix = prune.select(r, p_pos, p_neg, method="radix")
            _assert_same(r, radix, prune.select(r, p_pos, p_neg, method="sort"))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", ["spread", "ties", "zeros", "tiny", "spikes"])
def test_radix_follows_the_exact_definition(kind, dtype):
    g = torch.Generator().manual_seed(40 + KINDS.index(kind))
    r = _relevance(kind, (3, 1200), dtype, g)
    for p_pos, p_neg in PS[:3]:
        keep = prune.select(r, p_pos, p_neg, method="radix").keep
        for n in range(3):
            assert keep[n].tolist() == _naive_pruned(r[n].tolist(), p_pos, p_neg)


def test_radix_is_per_window_and_invariant_to_powers_of_two():
    g = torch.Generator().manual_seed(9)
    r = _relevance("spread", (6, 3000), F32, g)
    whole = prune.select(r, 0.3, 0.2, method="radix")
    for n in range(6):      # a window's result does not depend on its batch
        alone = prune.select(r[n:n + 1], 0.3, 0.2, method="radix")
        assert torch.equal(alone.factor, whole.factor[n:n + 1])
    scaled = prune.select(r * 2.0 ** -40, 0.3, 0.2, method="radix")
    assert torch.equal(scaled.factor, whole.factor)


def test_radix_chunks_and_parts_do_not_change_the_result(monkeypatch):
    g = torch.Generator().manual_seed(10)
    r = _relevance("spread", (7, 2100), F64, g)
    whole = prune.select(r, 0.3, 0.1, method="radix").factor
    monkeypatch.setattr(prune, "_CHUNK_ELEMENTS", 2 * 2100)          # two rows a chunk
    assert torch.equal(prune.select(r, 0.3, 0.1, method="radix").factor, whole)
    monkeypatch.setattr(prune, "_MAX_BINS", 3 << prune._bin_bits(2100))   # 3 windows a part
    assert torch.equal(prune.select(r, 0.3, 0.1, method="radix").factor, whole)


def test_fixed_point_masses_are_exact_signed_truncations():
    r = torch.tensor([[3.0, -0.75, 1e-30, -0.0, 2.5]], dtype=F64)
    shift = prune._fixed_point_shifts(r)           # max 3 < 2**2: unit 2**(2 - K)
    k = prune._MASS_BITS - r.shape[1].bit_length()
    assert shift.tolist() == [[k - 2]]
    mass = prune._fixed_point(r, shift, torch.empty(1, 5, dtype=torch.int64))
    assert mass.tolist() == [[3 << (k - 2), -(3 << (k - 4)), 0, 0, 5 << (k - 3)]]
    assert mass.abs().sum() < 2 ** prune._MASS_BITS


def test_unknown_method_is_refused():
    from plrp.errors import PlrpError
    with pytest.raises(PlrpError, match="selection method 'heap'"):
        prune.select(torch.ones(1, 4), 0.3, 0.1, method="heap")
