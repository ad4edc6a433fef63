"""Numerical properties of the engine that hold whatever the implementation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from engine_nets import (BNNet, FunctionalNet, gini, grad_x_input, one_hot, seq_net,
                         tiny_eps_composite)
from plrp.engine import Explainer, explain_tensor

F64 = torch.float64


def _logit(i):
    return lambda out: out[:, i]


@pytest.mark.parametrize("pool", [True, False])
def test_epsilon_equals_gradient_x_input_on_bias_free_relu_net(tmp_path, pool):
    torch.manual_seed(1)
    model = seq_net(bias=False, pool=pool).double()
    x = one_hot(5, 60, seed=1, dtype=F64)
    comp = tiny_eps_composite(tmp_path)
    res = Explainer(model, composite=comp, dtype=F64).explain(x, 2)
    expected = grad_x_input(model, x, _logit(2))
    assert torch.allclose(res.relevance, expected, rtol=1e-9, atol=1e-12)
    assert torch.allclose(res.score, model(x)[:, 2], rtol=1e-12)


def test_functional_model_equals_gradient_x_input_bias_free(tmp_path):
    torch.manual_seed(2)
    model = FunctionalNet(bias=False).double().eval()
    x = one_hot(4, 40, seed=2, dtype=F64)
    res = Explainer(model, composite=tiny_eps_composite(tmp_path), dtype=F64).explain(x, 1)
    expected = grad_x_input(model, x, _logit(1))
    assert torch.allclose(res.relevance, expected, rtol=1e-8, atol=1e-12)
    assert torch.all(res.conservation_error < 1e-9)


@pytest.mark.parametrize("variant", ["lambda", "m"])
def test_conservation_bias_free(tmp_path, variant):
    torch.manual_seed(3)
    model = seq_net(bias=False).double()
    x = one_hot(6, 60, seed=3, dtype=F64)
    comp = tiny_eps_composite(tmp_path)
    for p in (0.0, 0.3):
        res = Explainer(model, composite=comp, dtype=F64, p_pos=p,
                        variant=variant).explain(x, 0, return_layers=True)
        if variant == "lambda" or p == 0:
            # lambda restores every pruned layer's mass: conservation holds at every layer
            assert torch.all(res.conservation_error < 1e-9), res.conservation_error
            for name, r in res.layers.items():
                assert torch.allclose(r.reshape(6, -1).sum(1), res.score, rtol=1e-9), name
        assert torch.isfinite(res.relevance).all()


def test_lambda_keeps_each_pruned_layers_positive_and_negative_sums():
    torch.manual_seed(4)
    model = seq_net(bias=True).double()
    x = one_hot(6, 60, seed=4, dtype=F64)
    plain = Explainer(model, dtype=F64).explain(x, 1, return_layers=True)
    for layer in ("3", "6", "8"):
        res = Explainer(model, dtype=F64, p_pos={layer: 0.4}, p_neg={layer: 0.3}).explain(
            x, 1, return_layers=True)
        before, after = plain.layers[layer].reshape(6, -1), res.layers[layer].reshape(6, -1)
        for side in (lambda t: t.clamp(min=0), lambda t: t.clamp(max=0)):
            assert torch.allclose(side(after).sum(1), side(before).sum(1), rtol=1e-10)
        # something was pruned, and nothing changed sign
        assert (after == 0).sum() > (before == 0).sum()
        assert torch.all(after * before >= 0)


def test_m_variant_hands_each_upper_neurons_relevance_to_kept_inputs(tmp_path):
    torch.manual_seed(5)
    # bias-free dense net: the pruned layer's output relevance is the single target neuron
    model = nn.Sequential(nn.Linear(12, 10, bias=False), nn.ReLU(),
                          nn.Linear(10, 3, bias=False)).double().eval()
    x = torch.randn(7, 12, dtype=F64).abs()
    res = Explainer(model, dtype=F64, p_pos=0.5, p_neg=0.5, variant="m",
                    composite=tiny_eps_composite(tmp_path)).explain(
        x, 0, return_layers=True)
    r_in = res.layers["2"]
    assert (r_in == 0).sum() > 0
    assert torch.allclose(r_in.sum(1), res.score, rtol=1e-9)
    # convolution: per upper neuron, compare with the explicit layer rule
    from plrp.engine.prune import prune_mask
    from plrp.engine.rules import Epsilon, LinearOp
    conv = nn.Conv1d(6, 4, 5, padding=2, bias=False).double()
    a = torch.rand(3, 6, 30, dtype=F64)
    op = LinearOp("conv", conv.weight.abs(), None, 1, 2, 1)
    z = op.forward(a, op.weight)
    upper = torch.rand_like(z)
    rule = Epsilon(1e-30)
    r, _ = rule.relevance(op, a, z, upper)
    keep = prune_mask(r, 0.4, 0.2)
    r_m, _ = rule.relevance(op, a, z, upper, mask=keep.to(F64))
    assert (r_m[~keep] == 0).all() and (~keep).sum() > 0
    assert torch.allclose(r_m.sum((1, 2)), upper.sum((1, 2)), rtol=1e-10)


def test_gini_of_input_relevance_rises_with_p():
    torch.manual_seed(6)
    from plrp.models.architectures import build_model
    model = build_model("plrp-default", n_filters=16, n_filters2=16, n_hidden=16)
    x = one_hot(16, 200, seed=6)
    ginis = []
    for p in (0.0, 0.3, 0.6):
        r = explain_tensor(model, x, 0, p_pos=p)
        ginis.append(gini(r.abs().sum(1).double()).mean().item())
    assert ginis[0] < ginis[1] < ginis[2], ginis


@pytest.mark.parametrize("variant", ["lambda", "m"])
def test_batch_independence(variant):
    torch.manual_seed(7)
    model = seq_net(bias=True).double()
    x = one_hot(5, 60, seed=7, dtype=F64)
    ex = Explainer(model, dtype=F64, p_pos=0.3, variant=variant)
    together = ex.explain(x, 1)
    for i in (0, 3):
        alone = ex.explain(x[i:i + 1], 1)
        assert torch.allclose(alone.relevance[0], together.relevance[i], rtol=1e-9, atol=1e-14)
        assert torch.allclose(alone.score[0], together.score[i], rtol=1e-12)


def test_p_zero_is_plain_lrp_bit_for_bit():
    torch.manual_seed(8)
    model = seq_net(bias=True)
    x = one_hot(4, 60, seed=8)
    plain = Explainer(model).explain(x, 0, return_layers=True)
    for kwargs in (dict(p_pos=0.0), dict(p_pos=0.0, variant="m"), dict(p_pos={"*": 0.0}),
                   dict(p_pos=0.5, prunable=[])):
        res = Explainer(model, **kwargs).explain(x, 0, return_layers=True)
        assert torch.equal(res.relevance, plain.relevance), kwargs
        assert torch.equal(res.hypothetical, plain.hypothetical)
        for k in plain.layers:
            assert torch.equal(res.layers[k], plain.layers[k])
    from plrp.engine.prune import lambda_rescale, prune_mask
    r = torch.randn(3, 5, 7)
    keep = prune_mask(r, 0.0, 0.0)
    assert keep.all()
    assert torch.equal(lambda_rescale(r, keep), r)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-gamma", "epsilon-zplus",
                                       "alpha2-beta1", "epsilon-flat-input",
                                       "epsilon-wsquare-input"])
def test_zero_windows_give_zeros_and_no_nan(composite):
    torch.manual_seed(9)
    model = seq_net(bias=False)
    x = one_hot(4, 60, seed=9)
    x[1] = 0           # all-zero window: score 0 on a bias-free net
    for variant in ("lambda", "m"):
        res = Explainer(model, composite=composite, p_pos=0.5, variant=variant).explain(x, 1)
        for t in (res.relevance, res.hypothetical, res.score, res.conservation_error):
            assert torch.isfinite(t).all()
        assert res.score[1] == 0
        assert (res.relevance[1] == 0).all()
        assert res.conservation_error[1] == 0
    # a dead network: every score is 0
    dead = seq_net(bias=False)
    with torch.no_grad():
        dead[-1].weight.zero_()
    res = Explainer(dead, p_pos=0.3).explain(x, 0)
    assert (res.relevance == 0).all() and (res.conservation_error == 0).all()


def test_float64_path_and_output_dtype():
    torch.manual_seed(10)
    model = seq_net(bias=True)
    x32 = one_hot(3, 60, seed=10)
    r32 = Explainer(model).explain(x32, 0)
    r64 = Explainer(model, dtype=F64).explain(x32, 0)
    assert r32.relevance.dtype == torch.float32 and r64.relevance.dtype == torch.float32
    r64d = Explainer(model, dtype=F64).explain(x32.double(), 0)
    assert r64d.relevance.dtype == F64
    assert torch.allclose(r64d.relevance.float(), r64.relevance)
    assert torch.allclose(r32.relevance.double(), r64d.relevance, rtol=1e-3, atol=1e-6)
    assert explain_tensor(model, x32.double(), 0).dtype == F64


def test_batchnorm_folding_matches_manually_folded_net():
    torch.manual_seed(11)
    model = BNNet().double()
    folded = model.folded()
    x = one_hot(4, 40, seed=11, dtype=F64)
    assert torch.allclose(model(x), folded(x), rtol=1e-12)
    for p in (0.0, 0.3):
        a = Explainer(model, dtype=F64, p_pos=p).explain(x, 1)
        b = Explainer(folded, dtype=F64, p_pos=p).explain(x, 1)
        assert torch.allclose(a.relevance, b.relevance, rtol=1e-9, atol=1e-13)


def test_users_model_is_unchanged():
    torch.manual_seed(12)
    model = BNNet().train()
    model.conv.weight.requires_grad_(True)
    before = copy.deepcopy(model.state_dict())
    x = one_hot(3, 40, seed=12)
    with pytest.warns(UserWarning, match="train mode") as warned:
        for variant in ("lambda", "m"):
            Explainer(model, p_pos=0.3, variant=variant).explain(x, 0)
        explain_tensor(model, x, 1, composite="alpha2-beta1")
    assert len(warned) == 3
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and model.bn.training
    assert model.conv.weight.requires_grad and model.conv.weight.grad is None
    assert not model._forward_hooks and not model.conv._forward_hooks


def test_hypothetical_times_input_is_relevance():
    torch.manual_seed(13)
    model = seq_net(bias=True)
    x = one_hot(3, 60, seed=13)
    for comp in ("epsilon", "epsilon-gamma", "alpha2-beta1"):
        res = Explainer(model, composite=comp, p_pos=0.2).explain(x, 2)
        assert torch.allclose(res.hypothetical * x, res.relevance, atol=1e-7)
        assert (res.hypothetical[x == 0] != 0).any()     # the other bases get values too
    res = Explainer(model, composite="epsilon-flat-input").explain(x, 2)
    assert torch.equal(res.hypothetical, res.relevance)
    assert (res.relevance[x == 0] != 0).any()            # flat spreads over all four bases
