"""Checks of the float64 reference (tests/engine/reference.py) that do not involve plrp.engine:
torch forward passes, autograd gradient x input, conservation laws and hand-computed pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference as ref
from reference import (InputFanNet, MiscNet, ProfileNet, ResNet, SeqNet, make_model,
                       random_one_hot)


def _torch_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.numpy().reshape(o.shape[0], -1) for o in outs]


@pytest.mark.parametrize("stride,padding,dilation,kernel", [(1, 0, 1, 3), (2, 2, 2, 3),
                                                            (3, 1, 1, 4), (1, 3, 3, 2)])
def test_conv1d_dense_matches_torch(stride, padding, dilation, kernel):
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(3, 2, kernel)), rng.normal(size=3)
    x = rng.normal(size=(2, 11))
    W, b, conn, length_out = ref.conv1d_dense(weight, bias, 11, stride=stride, padding=padding,
                                              dilation=dilation)
    expected = F.conv1d(torch.from_numpy(x)[None], torch.from_numpy(weight), torch.from_numpy(bias),
                        stride=stride, padding=padding, dilation=dilation)[0].numpy()
    np.testing.assert_allclose(x.reshape(-1) @ W + b, expected.reshape(-1), rtol=1e-12, atol=1e-12)
    # every output position sees (kernel - its padded taps) real inputs per channel
    for t in range(length_out):
        real = sum(0 <= t * stride - padding + kk * dilation < 11 for kk in range(kernel))
        assert conn[:, t].sum() == 2 * real


def test_pool_windows_match_torch():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 13))
    windows, length_out = ref.pool1d_windows(3, 13, 3, 2)
    expected_max = F.max_pool1d(torch.from_numpy(a)[None], 3, 2)[0].numpy().reshape(-1)
    expected_avg = F.avg_pool1d(torch.from_numpy(a)[None], 3, 2)[0].numpy().reshape(-1)
    flat = a.reshape(-1)
    assert length_out == 6
    np.testing.assert_allclose([flat[w].max() for w in windows], expected_max, rtol=0, atol=0)
    np.testing.assert_allclose([flat[w].mean() for w in windows], expected_avg, rtol=1e-14)


@pytest.mark.parametrize("cls", [SeqNet, ResNet, ProfileNet, InputFanNet, MiscNet])
def test_reference_forward_matches_torch_including_batchnorm_folding(cls):
    model = make_model(cls, seed=3)
    x = random_one_hot(3, cls.length, seed=4, n_stretch=(2, 6))
    net = model.reference()
    expected = _torch_outputs(model, x)
    for i in range(x.shape[0]):
        acts = ref.forward(net, x[i].reshape(-1))
        for head, node in enumerate(net.heads):
            np.testing.assert_allclose(acts[node], expected[head][i], rtol=1e-12, atol=1e-12)


def test_batchnorm_fold_formula():
    w = np.array([[[1.0, -2.0]], [[0.5, 4.0]]])
    new_w, new_b = ref.fold_batchnorm(w, np.array([1.0, -1.0]), bn_weight=[2.0, 1.0],
                                      bn_bias=[0.5, 0.0], running_mean=[1.0, 2.0],
                                      running_var=[3.0, 0.0], bn_eps=1.0)
    np.testing.assert_allclose(new_w, [[[1.0, -2.0]], [[0.5, 4.0]]])  # 2/sqrt(4)=1, 1/sqrt(1)=1
    np.testing.assert_allclose(new_b, [0.5, -3.0])


def _grad_times_input(model, x: np.ndarray, head: int, index: int) -> np.ndarray:
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = model(xt)
    out = out[head] if isinstance(out, tuple) else out
    out[:, index].sum().backward()
    return (xt.grad * xt).detach().numpy()


@pytest.mark.parametrize("cls", [SeqNet, ResNet, InputFanNet])
def test_epsilon_to_zero_equals_gradient_times_input_on_bias_free_relu_nets(cls):
    kwargs = {"bias": False} if cls is InputFanNet else {"bias": False, "batchnorm": False}
    model = make_model(cls, seed=5, **kwargs)
    x = random_one_hot(2, cls.length, seed=6, n_stretch=(3, 5))
    net = model.reference()
    for index in range(2):
        gxi = _grad_times_input(model, x, 0, index)
        for i in range(x.shape[0]):
            res = ref.explain(net, x[i].reshape(-1), index,
                              rules=ref.Rule("epsilon", epsilon=1e-13),
                              op_epsilon=1e-13)
            np.testing.assert_allclose(res.relevance, gxi[i].reshape(-1), rtol=1e-6,
                                       atol=1e-8 * np.abs(gxi[i]).max())
            assert res.conservation_error < 1e-6  # bias-free: nothing absorbed


@pytest.mark.parametrize("rule", ["flat", "wsquare"])
def test_flat_and_wsquare_conserve_and_ignore_the_input(rule):
    rng = np.random.default_rng(7)
    W, b, conn, length_out = ref.conv1d_dense(rng.normal(size=(3, 4, 5)), rng.normal(size=3), 10,
                                              padding=2)
    r_out = rng.normal(size=3 * length_out)
    a1, a2 = rng.normal(size=40), rng.normal(size=40)
    r1 = ref.dense_rule(ref.Rule(rule), a1, W, b, conn, r_out)
    r2 = ref.dense_rule(ref.Rule(rule), a2, W, b, conn, r_out)
    np.testing.assert_allclose(r1, r2, rtol=0, atol=0)
    np.testing.assert_allclose(r1.sum(), r_out.sum(), rtol=1e-12)
    if rule == "flat":
        # position 0 of channel 0 feeds outputs t = 0, 1, 2 (each with 3, 4, 5 real taps x 4 ch)
        expected = sum(r_out[o * length_out + t] / (4 * n) for o in range(3)
                       for t, n in ((0, 3), (1, 4), (2, 5)))
        np.testing.assert_allclose(r1[0], expected, rtol=1e-12)


def test_alpha_beta_conserves_and_zplus_keeps_only_positive_contributions():
    rng = np.random.default_rng(8)
    W, b, conn = ref.linear_dense(rng.normal(size=(5, 7)), np.zeros(5))
    a = rng.normal(size=7)
    r_out = rng.normal(size=5)
    r = ref.dense_rule(ref.Rule("alpha_beta", epsilon=1e-14), a, W, b, conn, r_out)
    np.testing.assert_allclose(r.sum(), r_out.sum(), rtol=1e-10)  # alpha - beta = 1
    rz = ref.dense_rule(ref.Rule("zplus", epsilon=0.0), a, W, b, conn, r_out)
    expected = np.zeros(7)
    for k in range(5):
        c = np.maximum(0.0, a * W[:, k])
        expected += c / c.sum() * r_out[k]
    np.testing.assert_allclose(rz, expected, rtol=1e-12)


def test_gamma_rule_by_hand():
    W, b, conn = ref.linear_dense(np.array([[1.0, -2.0]]), np.array([0.5]))
    a = np.array([1.0, 1.0])
    r = ref.dense_rule(ref.Rule("gamma", gamma=0.5, epsilon=0.0), a, W, b, conn, np.array([2.0]))
    # w' = [1.5, -2], b' = 0.75, z' = 0.25 -> R = [1.5, -2] / 0.25 * 2
    np.testing.assert_allclose(r, [12.0, -16.0])


@pytest.mark.parametrize("r,p_pos,p_neg,pruned", [
    ([1.0, 2.0, 3.0, 4.0], 0.3, 0.0, {0, 1}),            # sum 10, budget 3: 1+2 <= 3
    ([1.0, 2.0, 3.0, 4.0], 0.29, 0.0, {0}),              # 1+2 > 2.9
    ([1.0, 2.0, 3.0, 4.0], 0.0, 0.5, set()),             # no negatives
    ([1.0, 1.0, 1.0, 5.0], 0.25, 0.0, {0, 1}),           # ties: lower index first
    ([2.0, 1.0, 2.0, 1.0], 0.7, 0.0, {1, 3, 0}),         # budget 4.2: 1+1+2 (index 0 before 2)
    ([2.0, 1.0, 2.0, 1.0], 0.5, 0.0, {1, 3}),            # budget 3: 1+1, then 4 > 3
    ([-1.0, -2.0, 3.0, -3.0, 0.0], 0.0, 0.5, {0, 1}),   # |N| sum 6, budget 3
    ([-1.0, -2.0, 3.0, -3.0, 0.0], 0.9, 0.1, set()),    # one positive: 3 > 2.7; 1 > 0.6
    ([-1.0, 5.0, 1.0, -1.0, 0.0], 0.2, 0.5, {0, 2}),    # pos budget 1.2 -> {2}; neg 1 -> {0}
    ([0.0, 0.0, 0.0], 0.9, 0.9, set()),                 # all zero stays zero
])
def test_prune_mask_by_hand(r, p_pos, p_neg, pruned):
    keep = ref.prune_keep_mask(np.array(r), p_pos, p_neg)
    assert set(np.flatnonzero(~keep)) == pruned


def test_lambda_rescale_by_hand():
    r = np.array([1.0, 2.0, 3.0, 4.0, -1.0, -3.0])
    keep = ref.prune_keep_mask(r, 0.3, 0.25)  # positives {1,2} pruned; |N| budget 1: {-1}
    assert list(keep) == [False, False, True, True, False, True]
    out = ref.lambda_rescale(r, keep)
    np.testing.assert_allclose(out, [0, 0, 3 * 10 / 7, 4 * 10 / 7, 0, -4.0])
    assert out[r > 0].sum() == pytest.approx(10) and out[r < 0].sum() == pytest.approx(-4)
    # nothing pruned: bit-for-bit the input
    np.testing.assert_array_equal(ref.lambda_rescale(r, np.ones(6, bool)), r)


def test_plrp_m_hands_all_relevance_to_kept_inputs():
    rng = np.random.default_rng(9)
    W, b, conn = ref.linear_dense(rng.normal(size=(4, 10)), None)
    a = np.abs(rng.normal(size=10))
    r_out = rng.normal(size=4)
    rule = ref.Rule("epsilon", epsilon=1e-14)
    r = ref.dense_rule(rule, a, W, b, conn, r_out)
    keep = ref.prune_keep_mask(r, 0.4, 0.2)
    assert not keep.all()
    r_m = ref.dense_rule(rule, np.where(keep, a, 0.0), W, b, conn, r_out)
    assert np.all(r_m[~keep] == 0)
    np.testing.assert_allclose(r_m.sum(), r_out.sum(), rtol=1e-9)  # bias-free: conserved


@pytest.mark.parametrize("variant", ["lambda", "m"])
def test_plrp_rises_sparsity_and_p0_is_plain_lrp(variant):
    model = make_model(SeqNet, seed=10)
    net = model.reference()
    x = random_one_hot(1, SeqNet.length, seed=11)[0].reshape(-1)
    rules = ref.Rule("epsilon")
    plain = ref.explain(net, x, 0, rules=rules)
    zero = ref.explain(net, x, 0, rules=rules, p_pos={"conv2": 0.0, "fc1": 0.0, "fc2": 0.0},
                       variant=variant)
    np.testing.assert_array_equal(plain.relevance, zero.relevance)
    pruned = ref.explain(net, x, 0, rules=rules, variant=variant,
                         p_pos={n: 0.5 for n in ("conv2", "fc1", "fc2")},
                         p_neg={n: 0.25 for n in ("conv2", "fc1", "fc2")})
    assert (np.count_nonzero(pruned.layer_input["conv2"])
            < np.count_nonzero(plain.layer_input["conv2"]))
    assert not np.allclose(pruned.relevance, plain.relevance)


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alpha_beta", "zplus"])
def test_hypothetical_times_one_hot_is_relevance(rule):
    model = make_model(InputFanNet, seed=12)
    net = model.reference()
    x = random_one_hot(1, InputFanNet.length, seed=13, n_stretch=(4, 7))[0].reshape(-1)
    res = ref.explain(net, x, 1, rules=ref.Rule(rule))
    np.testing.assert_allclose(x * res.hypothetical, res.relevance, rtol=1e-12, atol=1e-15)
    assert np.count_nonzero(res.hypothetical[x == 0]) > 0  # absent bases get a hypothetical value


def test_softmax_profile_seed_and_score():
    model = make_model(ProfileNet, seed=14)
    net = model.reference()
    x = random_one_hot(1, ProfileNet.length, seed=15)[0].reshape(-1)
    acts = ref.forward(net, x)
    node, r = ref.seed(net, acts, {"kind": "softmax_profile", "head": 0})
    f = torch.from_numpy(acts[node].reshape(2, -1))
    expected = (torch.softmax(f, dim=1) * f).numpy().reshape(-1)
    np.testing.assert_allclose(r, expected, rtol=1e-13)
    node, r = ref.seed(net, acts, {"kind": "logit", "head": 1, "index": 0})
    assert node == net.heads[1] and r[0] == acts[node][0]


def test_wta_and_proportional_maxpool_route_relevance_by_hand():
    net = ref.RefNet(4)
    pool = net.maxpool("pool", 0, [[0, 1], [1, 2], [2, 3]])
    net.set_heads([pool], [(3,)])
    x = np.array([1.0, 3.0, 2.0, 2.0])
    # outputs 3, 3, 2: wta sends the seed of output 1 (value 3) to index 1
    res = ref.explain(net, x, 1, rules=ref.Rule())
    np.testing.assert_array_equal(res.relevance, [0, 3, 0, 0])
    res = ref.explain(net, x, 2, rules=ref.Rule())  # tie 2, 2 -> first index
    np.testing.assert_array_equal(res.relevance, [0, 0, 2, 0])
    res = ref.explain(net, x, 1, rules=ref.Rule(), maxpool_mode="proportional")
    np.testing.assert_allclose(res.relevance, [0, 3 * 3 / (5 + 1e-6), 3 * 2 / (5 + 1e-6), 0])


@pytest.mark.parametrize("cls", [SeqNet, ResNet])
def test_plrp_lambda_keeps_conservation_on_bias_free_nets(cls):
    model = make_model(cls, seed=16, bias=False, batchnorm=False)
    net = model.reference()
    x = random_one_hot(1, cls.length, seed=17)[0].reshape(-1)
    layers = [n.name for n in net.nodes if n.op == "dense" and 0 not in n.inputs]
    rule = ref.Rule("epsilon", epsilon=1e-13)
    plain = ref.explain(net, x, 0, rules=rule, op_epsilon=1e-13)
    pruned = ref.explain(net, x, 0, rules=rule, op_epsilon=1e-13, variant="lambda",
                         p_pos={n: 0.6 for n in layers}, p_neg={n: 0.3 for n in layers})
    assert pruned.conservation_error < 1e-9 and plain.conservation_error < 1e-9
    assert np.count_nonzero(pruned.relevance) < np.count_nonzero(plain.relevance)
    for name in layers:  # pruning really happened at every prunable layer
        assert (np.count_nonzero(pruned.layer_input[name])
                < np.count_nonzero(plain.layer_input[name]))


@pytest.mark.parametrize("rule_name", ["epsilon", "gamma"])
def test_stable_m_rule_conserves_and_reduces_to_its_two_ends(rule_name):
    """Bias-free, tiny eps: the stabilised M of one dense layer conserves the upper relevance
    (both of its parts do), leaves pruned inputs at 0, is the plain rule when nothing is
    pruned, and is pure masked LRP where every neuron keeps its whole pre-activation."""
    rng = np.random.default_rng(18)
    rule = ref.Rule(rule_name, epsilon=1e-13, gamma=0.3)
    a = rng.uniform(0.1, 1.0, size=9)
    W = rng.normal(size=(9, 6))
    b = np.zeros(6)
    conn = np.ones_like(W, dtype=bool)
    r_out = rng.normal(size=6)
    keep = rng.uniform(size=9) > 0.4
    out = ref.stable_m_rule(rule, a, W, b, r_out, keep)
    np.testing.assert_allclose(out.sum(), r_out.sum(), rtol=1e-9)
    assert np.all(out[~keep] == 0) and np.count_nonzero(~keep) > 0
    everything = np.ones(9, dtype=bool)
    np.testing.assert_allclose(ref.stable_m_rule(rule, a, W, b, r_out, everything),
                               ref.dense_rule(rule, a, W, b, conn, r_out), rtol=1e-12)
    # all weights positive: the kept share z' / z < 1 everywhere, so rho < 1; make the
    # pruned inputs' weights negative instead: z' > z > 0, rho > 1, pure masked LRP
    W_pos = np.abs(W)
    W_pos[~keep] *= -0.01
    masked = np.where(keep, a, 0.0)
    np.testing.assert_allclose(ref.stable_m_rule(rule, a, W_pos, b, r_out, keep),
                               ref.dense_rule(rule, masked, W_pos, b, conn, r_out),
                               rtol=1e-12)
