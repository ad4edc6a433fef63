"""rc_average: each window's attribution averaged with its reverse complement's, mapped back."""

from __future__ import annotations

import pytest
import torch

from engine_nets import one_hot, seq_net
from plrp.engine import BatchExplainer, Explainer, explain_tensor
from reference import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ACGT_COMPLEMENT = [3, 2, 1, 0]       # A<->T, C<->G in ACGT channel order


def _rc(t):
    """Written out for the test: reverse the positions, then complement the channels."""
    return t.flip(2)[:, ACGT_COMPLEMENT]


def test_rc_average_equals_two_explanations_averaged_by_hand():
    torch.manual_seed(5)
    model = seq_net(bias=True).double()
    x = one_hot(4, 60, seed=6, dtype=torch.float64)
    x_rc = _rc(x)
    assert not torch.equal(x_rc, x)
    methods = {"lrp": {}, "plrp": dict(p_pos=0.3), "plrp_m": dict(p_pos=0.2, variant="m")}
    out = BatchExplainer(model, [2, 0], methods, rc_average=True,
                         dtype=torch.float64).explain(x)
    assert out.relevance.shape == (3, 2, 4, 4, 60)
    for i, opts in enumerate(methods.values()):
        ex = Explainer(model, dtype=torch.float64, **opts)
        for j, target in enumerate([2, 0]):
            fwd, rev = ex.explain(x, target), ex.explain(x_rc, target)
            rel = (fwd.relevance + _rc(rev.relevance)) / 2
            hyp = (fwd.hypothetical + _rc(rev.hypothetical)) / 2
            score = (fwd.score + rev.score) / 2
            err = (rel.sum((1, 2)) - score).abs() / score.abs()
            assert torch.allclose(out.relevance[i, j], rel, rtol=1e-12, atol=1e-15)
            assert torch.allclose(out.hypothetical[i, j], hyp, rtol=1e-12, atol=1e-15)
            assert torch.allclose(out.score[i, j], score, rtol=1e-12, atol=1e-15)
            assert torch.allclose(out.conservation_error[i, j], err, rtol=1e-9, atol=1e-13)
    # a window that is its own reverse complement (a palindrome) gets a strand-symmetric
    # attribution, whatever the model does
    half = one_hot(1, 30, seed=7, dtype=torch.float64)
    pal = torch.cat((half, _rc(half)), dim=2)
    both = BatchExplainer(model, [1], rc_average=True, dtype=torch.float64).explain(pal)
    alone = Explainer(model, dtype=torch.float64).explain(pal, 1).relevance
    assert not torch.allclose(alone, _rc(alone))
    assert torch.allclose(both.relevance[0, 0], _rc(both.relevance[0, 0]), rtol=1e-12,
                          atol=1e-15)


def test_explain_tensor_rc_average_is_the_mean_of_both_strands():
    torch.manual_seed(9)
    model = seq_net(bias=True).double()
    x = one_hot(2, 60, seed=10, dtype=torch.float64)
    got = explain_tensor(model, x, 1, p_pos=0.2, rc_average=True)
    fwd = explain_tensor(model, x, 1, p_pos=0.2)
    rev = explain_tensor(model, _rc(x), 1, p_pos=0.2)
    assert got.dtype == torch.float64
    assert torch.allclose(got, (fwd + _rc(rev)) / 2, rtol=1e-12, atol=1e-15)
