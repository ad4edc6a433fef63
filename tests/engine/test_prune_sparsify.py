"""plrp.engine.prune.sparsify (contract 3) against the float64 Python-loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import plrp.engine.prune as prune
from plrp.engine.prune import sparsify
from plrp.errors import PlrpError
from reference import one_torch_thread, prune_keep_mask  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _expected(r: torch.Tensor, fraction: float) -> np.ndarray:
    """Row by row with the reference's sorted loop (no rescaling)."""
    rows = r.double().reshape(-1, r.shape[-1]).numpy()
    out = np.stack([np.where(prune_keep_mask(row, fraction, fraction), row, 0.0)
                    for row in rows])
    return out.reshape(r.shape)


def _tracks(kind: str, shape, dtype, g) -> torch.Tensor:
    if kind == "ties":          # quarter integers: many equal magnitudes, exact sums
        return (torch.randint(-6, 9, shape, generator=g) / 4).to(dtype)
    r = torch.randn(shape, generator=g, dtype=dtype) * torch.randn(
        shape, generator=g, dtype=dtype).exp()
    if kind == "negative":      # all-negative rows, and a row of zeros
        r = -r.abs()
        r[..., 0, :] = 0.0
    if kind == "sparse":        # mostly zeros, as a one-hot-masked track is
        r = torch.where(torch.rand(shape, generator=g) < 0.7, 0.0, r).to(dtype)
    return r


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["ties", "spread", "negative", "sparse"])
@pytest.mark.parametrize("length", [37, 1500])      # below and above the radix crossover
def test_sparsify_matches_the_reference(kind, dtype, length):
    g = torch.Generator().manual_seed(length)
    r = _tracks(kind, (2, 3, length), dtype, g)
    for fraction in (0.05, 0.3, 0.8):
        got = sparsify(r, fraction)
        assert got.shape == r.shape and got.dtype == dtype
        np.testing.assert_array_equal(got.double().numpy(), _expected(r, fraction))


def test_sparsify_mass_rule_and_sides():
    r = torch.tensor([[3.0, 1.0, -2.0, -0.5, 0.0, 1.0, -0.5]])
    # positives 1, 1 (ties: first by position) hold 2/5 of P; |N|: 0.5 + 0.5 = 1/3 of |N|
    assert sparsify(r, 0.4).tolist() == [[3.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0]]
    assert sparsify(r, 0.2).tolist() == [[3.0, 0.0, -2.0, 0.0, 0.0, 1.0, -0.5]]
    g = torch.Generator().manual_seed(1)
    r = torch.randn(4, 500, generator=g, dtype=torch.float64)
    out = sparsify(r, 0.3)
    for side in (r > 0, r < 0):
        mass = torch.where(side, r.abs(), 0).sum(1)
        dropped = torch.where(side & (out == 0), r.abs(), 0).sum(1)
        assert torch.all(dropped <= 0.3 * mass)
        # the next-smallest kept entry would have crossed the limit
        smallest_kept = torch.where(side & (out != 0), r.abs(), torch.inf).amin(1)
        assert torch.all(dropped + smallest_kept > 0.3 * mass)
    assert torch.equal(out[out != 0], r[out != 0])        # no rescaling


def test_sparsify_fraction_zero_leading_dims_and_errors():
    r = torch.randn(5, 40)
    assert sparsify(r, 0.0) is r
    one_row = torch.randn(40, dtype=torch.float64)
    assert torch.equal(sparsify(one_row, 0.3), sparsify(one_row[None], 0.3)[0])
    stacked = torch.randn(2, 3, 4, 40)
    assert torch.equal(sparsify(stacked, 0.3).reshape(-1, 40),
                       sparsify(stacked.reshape(-1, 40), 0.3))
    assert sparsify(torch.zeros(3, 0), 0.5).shape == (3, 0)
    assert torch.equal(sparsify(torch.zeros(2, 9), 0.5), torch.zeros(2, 9))
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(PlrpError, match="sparsify fraction"):
            sparsify(r, bad)


def test_sparsify_is_the_same_on_both_selection_paths(monkeypatch):
    g = torch.Generator().manual_seed(2)
    r = _tracks("spread", (6, 2000), torch.float32, g)
    r[:, ::7] = r[:, 1::7]                           # exact ties at other positions
    monkeypatch.setattr(prune, "_RADIX_MIN_ENTRIES", 10**9)
    by_sort = sparsify(r, 0.5)
    monkeypatch.setattr(prune, "_RADIX_MIN_ENTRIES", 1)
    assert torch.equal(sparsify(r, 0.5), by_sort)
