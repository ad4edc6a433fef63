"""plrp.baselines on tiny float64 models, each checked against an independent closed form.

- gradient x input == LRP-epsilon (plrp engine, eps ~ 0, p = 0) on a bias-free ReLU net, and
  sums to the output (Euler: a bias-free ReLU net is positively homogeneous of degree 1);
- ISM == the output differences of an explicit loop over positions and bases;
- DeepLIFT-SHAP on a linear model == (x - mean reference) . w at the observed base, and its
  completeness on a ReLU net with max-pooling and a global max-pool;
- integrated gradients on a linear model == (x - baseline) * w, and completeness on a ReLU net.
"""

import sys
import warnings

import pytest
import torch
from torch import nn

from plrp import baselines as B
from plrp.engine import explain_tensor
from plrp.errors import PlrpError

L = 24


def windows(n, length=L, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    return torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).double().contiguous()


def relu_net(bias, seed=0, global_pool=False):
    torch.manual_seed(seed)
    layers = [nn.Conv1d(4, 6, 5, padding=2, bias=bias), nn.ReLU(), nn.MaxPool1d(2),
              nn.Conv1d(6, 5, 3, padding=1, bias=bias), nn.ReLU()]
    if global_pool:
        layers += [nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(5, 3, bias=bias)]
    else:
        layers += [nn.Flatten(), nn.Linear(5 * L // 2, 3, bias=bias)]
    return nn.Sequential(*layers).double().eval()


class TwoHeads(nn.Module):
    """A multi-output model: head 0 (N, 2) from a conv, head 1 (N, 1) from a ReLU layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.a = nn.Linear(4 * L, 2)
        self.b = nn.Linear(4 * L, 1)

    def forward(self, x):
        h = self.relu(self.conv(x)).flatten(1)
        return self.a(h), self.b(h)


def linear_model(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * L, 2)).double().eval()


def linear_weights(model, target):
    return model[1].weight.detach()[target].reshape(4, L)


def test_gradient_x_input_equals_lrp_epsilon_on_a_bias_free_relu_net(tmp_path):
    model, x = relu_net(bias=False), windows(5)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('op_epsilon = 1e-30\n[default]\nrule = "epsilon"\nepsilon = 1e-30\n')
    for target in (0, 2):
        gxi = B.attribute("gradient_x_input", model, x, target)
        lrp = explain_tensor(model, x, target, composite=str(tiny), p_pos=0.0)
        assert gxi.shape == x.shape and gxi.dtype == torch.float64
        torch.testing.assert_close(gxi, lrp, rtol=1e-10, atol=1e-12)
        # only the observed base carries attribution, and it adds up to the logit
        assert torch.all(gxi[x == 0] == 0)
        with torch.no_grad():
            torch.testing.assert_close(gxi.sum(dim=(1, 2)), model(x)[:, target],
                                       rtol=1e-10, atol=1e-12)


def test_ism_equals_explicit_output_differences():
    model, x = TwoHeads().double().eval(), windows(3, seed=2)
    target = {"kind": "logit", "head": 1, "index": 0}   # one scalar of a multi-output model
    attr = B.attribute("ism", model, x, target, batch_size=7)
    mutants = []
    for n in range(3):
        for pos in range(L):
            for base in range(4):
                xm = x[n].clone()
                xm[:, pos] = 0
                xm[base, pos] = 1
                mutants.append(xm)
    with torch.no_grad():
        s0 = model(x)[1][:, 0]
        delta = (model(torch.stack(mutants))[1][:, 0].reshape(3, L, 4).transpose(1, 2)
                 - s0[:, None, None])                                  # (N, 4, L)
    want = x * (delta - delta.mean(dim=1, keepdim=True))
    torch.testing.assert_close(attr, want, rtol=1e-10, atol=1e-12)
    # the documented reading: s(x) - mean over the four bases of s(x with that base)
    observed = attr.sum(dim=1)
    torch.testing.assert_close(observed, -delta.mean(dim=1), rtol=1e-10, atol=1e-12)


def dinucleotide_counts(x):
    idx = x.argmax(dim=-2)                      # (..., L)
    pairs = idx[..., :-1] * 4 + idx[..., 1:]
    return torch.nn.functional.one_hot(pairs, 16).sum(dim=-2)


def test_shuffled_references_are_seeded_dinucleotide_shuffles():
    x = windows(4, length=60, seed=5)
    refs = B.shuffled_references(x, n_shuffles=6, seed=3)
    assert refs.shape == (4, 6, 4, 60) and refs.dtype == x.dtype
    assert torch.all(refs.sum(dim=2) == 1)
    want = dinucleotide_counts(x)[:, None].expand(-1, 6, -1)
    assert torch.equal(dinucleotide_counts(refs), want)
    assert not torch.equal(refs, x[:, None].expand_as(refs))
    assert torch.equal(refs, B.shuffled_references(x, n_shuffles=6, seed=3))
    assert not torch.equal(refs, B.shuffled_references(x, n_shuffles=6, seed=4))


def test_deep_lift_shap_on_a_linear_model_equals_the_closed_form():
    model, x = linear_model(), windows(4, seed=6)
    refs = B.shuffled_references(x, n_shuffles=5, seed=9)
    attr = B.attribute("deep_lift_shap", model, x, 1, n_shuffles=5, seed=9)
    w = linear_weights(model, 1)
    # hypothetical contribution of the observed base, averaged over references
    per_position = ((x - refs.mean(dim=1)) * w).sum(dim=1, keepdim=True)   # (N, 1, L)
    torch.testing.assert_close(attr, x * per_position, rtol=1e-10, atol=1e-12)
    # explicit references give the same result; the seed makes it repeatable
    torch.testing.assert_close(B.attribute("deep_lift_shap", model, x, 1, references=refs), attr)
    assert torch.equal(B.attribute("deep_lift_shap", model, x, 1, n_shuffles=5, seed=9), attr)


def test_deep_lift_shap_completeness_through_relu_and_max_pools():
    model, x = relu_net(bias=True, global_pool=True), windows(3, seed=7)
    refs = B.shuffled_references(x, n_shuffles=4, seed=1)
    with warnings.catch_warnings():
        # tangermeme warns when an op lacks a DeepLIFT rule (AdaptiveMaxPool1d without ours)
        warnings.simplefilter("error", RuntimeWarning)
        attr = B.attribute("deep_lift_shap", model, x, 0, references=refs)
    with torch.no_grad():
        want = model(x)[:, 0] - model(refs.reshape(-1, 4, L))[:, 0].reshape(3, 4).mean(dim=1)
    torch.testing.assert_close(attr.sum(dim=(1, 2)), want, rtol=1e-9, atol=1e-10)
    # rescale rule != gradient: the result is not gradient x input
    assert not torch.allclose(attr, B.attribute("gradient_x_input", model, x, 0))


@pytest.mark.parametrize("baseline, x0", [("zero", 0.0), ("uniform", 0.25)])
def test_integrated_gradients_on_a_linear_model_is_exact(baseline, x0):
    model, x = linear_model(seed=4), windows(3, seed=8)
    attr = B.attribute("integrated_gradients", model, x, 0, baseline=baseline, n_steps=3)
    # captum holds its quadrature weights in float32, hence 1e-6 and not float64 precision
    torch.testing.assert_close(attr, (x - x0) * linear_weights(model, 0), rtol=1e-6, atol=1e-9)


def test_integrated_gradients_completeness_on_a_relu_net():
    model, x = relu_net(bias=True), windows(4, seed=9)
    attr = B.attribute("integrated_gradients", model, x, 1, baseline="uniform", n_steps=256)
    with torch.no_grad():
        want = model(x)[:, 1] - model(torch.full_like(x, 0.25))[:, 1]
    # the ReLU kinks make the quadrature converge slowly: 0.3% worst case here at 256 steps
    err = (attr.sum(dim=(1, 2)) - want).abs()
    assert torch.all(err <= 1e-2 * want.abs()), (err, want)
    # the uniform baseline puts attribution on unobserved channels as well
    assert attr[x == 0].abs().sum() > 0


def test_table_options_timing_and_model_untouched():
    assert list(B.BASELINES) == ["gradient_x_input", "ism", "deep_lift_shap",
                                 "integrated_gradients"]
    assert B.baseline_options("integrated_gradients")["n_steps"] == 50
    model, x = relu_net(bias=True), windows(2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timed = B.attribute_timed("ism", model, x, 0)
    assert timed.attributions.shape == x.shape and timed.seconds > 0
    assert timed.per_window == pytest.approx(timed.seconds / 2)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(PlrpError, match="unknown baseline 'nope'; known: gradient_x_input"):
        B.attribute("nope", model, x, 0)
    with pytest.raises(PlrpError, match="no option 'steps'; options: baseline, n_steps"):
        B.attribute("integrated_gradients", model, x, 0, steps=3)
    with pytest.raises(PlrpError, match=r"\(N, 4, L\)"):
        B.attribute("gradient_x_input", model, x[:, :3], 0)
    with pytest.raises(PlrpError, match="unknown integrated-gradients baseline"):
        B.attribute("integrated_gradients", model, x, 0, baseline="gc")
    x_with_n = x.clone()
    x_with_n[0, :, 5] = 0     # an N: no dinucleotide shuffle of it
    with pytest.raises(PlrpError, match="dinucleotide shuffle: .*one-hot"):
        B.attribute("deep_lift_shap", model, x_with_n, 0, n_shuffles=2)


def test_a_registered_baseline_is_dispatched(monkeypatch):
    monkeypatch.setattr(B, "BASELINES", dict(B.BASELINES))

    def saliency(model, x, target, *, scale=1.0):
        return scale * B.gradient_x_input(model, x, target).abs()

    B.register_baseline("saliency", saliency, "1 forward + 1 backward")
    model, x = relu_net(bias=False), windows(2)
    got = B.attribute("saliency", model, x, 1, scale=2.0)
    torch.testing.assert_close(got, 2 * B.attribute("gradient_x_input", model, x, 1).abs())


def test_a_missing_library_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)   # import now raises ImportError
    with pytest.raises(PlrpError, match="integrated_gradients needs captum: pip install captum"):
        B.attribute("integrated_gradients", relu_net(bias=False), windows(1), 0)
