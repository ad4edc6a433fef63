"""Winner-take-all max-pool relevance, deterministic on a GPU: the forward records how many
pooling windows can share an input, and scatter_in_passes splits the windows into passes
that never share one (so no input receives two values within a pass)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plrp.engine import Explainer
from plrp.engine.ops import scatter_in_passes


class _Pools(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3, padding=1)
        self.pool = pool
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class _FunctionalPool(_Pools):
    def __init__(self):
        super().__init__(None)

    def forward(self, x):
        y = F.max_pool1d(torch.relu(self.conv(x)), 4, stride=1, dilation=2)
        return self.fc(torch.flatten(y, 1))


@pytest.mark.parametrize("make,length,share", [
    (lambda: _Pools(nn.MaxPool1d(5, stride=1)), 30, 5),
    (lambda: _Pools(nn.MaxPool1d(4, stride=2, dilation=2, padding=1)), 30, 4),
    (lambda: _Pools(nn.MaxPool1d(4)), 30, 1),
    (lambda: _Pools(nn.AdaptiveMaxPool1d(20)), 7, 7),      # more windows than inputs
    (lambda: _Pools(nn.AdaptiveMaxPool1d(4)), 30, 2),
    (_FunctionalPool, 30, 7),
])
def test_windows_of_one_pass_never_share_an_input(make, length, share):
    torch.manual_seed(0)
    model = make()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (6, length)), 4).permute(0, 2, 1).float()
    model(x)                                      # materialise the lazy layer
    _, extra = Explainer(model.eval()).forward(x)
    (info,) = [v for v in extra.values() if v and v[0] == "pool"]
    _, idx, got = info
    assert got == share
    rows = idx.reshape(-1, idx.shape[-1])
    for q in range(got):
        picked = rows[:, q::got]
        for row in picked:
            assert row.unique().numel() == row.numel()      # no input twice in one pass
    if got > 2:                                   # the case that needs the passes occurs
        assert any(row.unique().numel() < row.numel() for row in rows)


def test_scatter_in_passes_equals_one_scatter():
    torch.manual_seed(1)
    idx = torch.randint(0, 9, (2, 5, 12)).sort(-1).values
    r = torch.randn(2, 5, 12, dtype=torch.float64)
    want = torch.zeros(2, 5, 9, dtype=torch.float64).scatter_add_(-1, idx, r)
    for passes in (1, 2, 3, 5):
        got = scatter_in_passes(torch.zeros(2, 5, 9, dtype=torch.float64), -1, idx, r, passes)
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
    # dim other than the last, on a tiled (k, N, ...) layout as the walk uses it
    got = scatter_in_passes(torch.zeros(3, 2, 9, 5, dtype=torch.float64), 2,
                            idx.transpose(1, 2).unsqueeze(0).expand(3, -1, -1, -1),
                            r.transpose(1, 2).unsqueeze(0).expand(3, -1, -1, -1), 4)
    assert torch.allclose(got, want.transpose(1, 2).expand(3, -1, -1, -1), atol=1e-12)
