"""The op table (plrp.engine.ops): user-registered modules are explained; failures name layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine_nets import one_hot
from plrp.engine import Explainer, describe_layers, register_op, unregister_op
from plrp.engine.ops import OpRule
from plrp.errors import PlrpError, UnsupportedModelError
from reference import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPS = 1e-6


class Swish(nn.Module):
    """A user-defined activation (x * sigmoid(x)): fx would inline it as a product."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class Lambda(nn.Module):
    """kipoi-style Lambda layer wrapping a Python function."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def channels_last(x):
    if x.dim() == 3:              # Python control flow: fx cannot trace this
        return x.permute(0, 2, 1)
    return x


@pytest.fixture
def registry():
    """Registered targets, unregistered after the test (the table is process-wide)."""
    added = []

    def register(target, kind):
        register_op(target, kind)
        added.append(target)
    yield register
    for target in added:
        unregister_op(target)


def _mlp(act: nn.Module, length=12, hidden=6, outputs=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * length, hidden), act,
                         nn.Linear(hidden, outputs)).double().eval()


def _stab(z):
    return z + EPS * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def test_registered_activation_is_passed_through_like_any_activation(registry):
    model = _mlp(Swish())
    x = one_hot(3, 12, seed=1, dtype=torch.float64)
    with pytest.raises(UnsupportedModelError, match=r"called from 2\.forward.*product"):
        Explainer(model)
    registry(Swish, "passthrough")
    got = Explainer(model, dtype=torch.float64).explain(x, 1).relevance
    # independent LRP-epsilon with explicit matrices: relevance passes the activation unchanged
    w1, b1 = model[1].weight, model[1].bias
    w2, b2 = model[3].weight, model[3].bias
    a0 = x.reshape(3, -1)
    z1 = a0 @ w1.T + b1
    a1 = z1 * torch.sigmoid(z1)
    z2 = a1 @ w2.T + b2
    r_a1 = a1 * w2[1] * (z2[:, 1] / _stab(z2[:, 1])).unsqueeze(1)
    r_a0 = a0 * ((r_a1 / _stab(z1)) @ w1)
    assert torch.allclose(got.reshape(3, -1), r_a0, rtol=1e-12, atol=1e-15)
    rows = {r["name"]: r for r in describe_layers(model, input_length=12)}
    assert rows["2"]["rule"] == "pass-through"


def test_lambda_with_control_flow_is_named_then_explained_once_registered(registry):
    def build(layer):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(4, 5, 3), layer, nn.Flatten(), nn.Linear(10 * 5, 2)).eval()
    model = build(Lambda(channels_last))
    with pytest.raises(UnsupportedModelError) as info:
        Explainer(model)
    msg = str(info.value)
    assert "in layer '1' (Lambda)" in msg and "Traceback" not in msg and "\n" not in msg
    registry(Lambda, "route")
    x = one_hot(4, 12, seed=2)
    got = Explainer(model, p_pos=0.2).explain(x, 0)

    class Permute(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 1)
    want = Explainer(build(Permute()), p_pos=0.2).explain(x, 0)
    assert torch.equal(got.relevance, want.relevance)
    assert torch.equal(got.hypothetical, want.hypothetical)


def test_einops_rearrange_is_named_then_explained_once_registered(registry):
    from einops.layers.torch import Rearrange
    inner = nn.Sequential(nn.Conv1d(4, 5, 3), Rearrange("b c l -> b l c"))
    model = nn.Sequential(inner, nn.Flatten(), nn.Linear(10 * 5, 2)).eval()
    with pytest.raises(UnsupportedModelError, match=r"in layer '0\.1' \(Rearrange\) inside "
                                                    r"'0' \(Sequential\)"):
        Explainer(model)
    registry(Rearrange, "route")
    x = one_hot(2, 12, seed=3)
    res = Explainer(model).explain(x, 1)
    # a conv + route + linear net: relevance sums to the score up to what biases absorb
    assert torch.isfinite(res.relevance).all() and res.relevance.abs().sum() > 0
    ref = Explainer(nn.Sequential(inner[0], Lambda(lambda t: t.permute(0, 2, 1)),
                                  nn.Flatten(), model[2]).eval())
    # the unregistered Lambda above traces fine (no control flow): same graph, same result
    assert torch.equal(ref.explain(x, 1).relevance, res.relevance)


def test_custom_op_rule_is_called_and_described(registry):
    calls = []

    def backward(walk, node, r_out, h_out):
        calls.append(tuple(r_out.shape))
        return [(walk.sources(node)[0], r_out, h_out)]

    class Tap(nn.Module):
        def forward(self, x):
            return x

    registry(Tap, OpRule("tap", backward, describe="tapped pass-through"))
    model = _mlp(Tap()).float()
    x = one_hot(3, 12, seed=4)
    got = Explainer(model).explain(x, 0).relevance
    assert calls == [(3, 6)]
    want = Explainer(_mlp(nn.Identity()).float()).explain(x, 0).relevance
    assert torch.equal(got, want)
    rows = {r["name"]: r for r in describe_layers(model, input_length=12)}
    assert rows["2"]["rule"] == "tapped pass-through"


def test_register_op_refuses_what_it_cannot_use():
    with pytest.raises(PlrpError, match="unknown op kind"):
        register_op(Swish, "sparkle")
    with pytest.raises(PlrpError, match="only Conv1d/Linear"):
        register_op(Swish, "linear")
    with pytest.raises(PlrpError, match="not a module class"):
        register_op(42, "route")


def test_describe_reads_the_composites_op_epsilon(tmp_path):
    composite = tmp_path / "c.toml"
    composite.write_text('op_epsilon = 0.003\nmaxpool = "proportional"\n'
                         '[default]\nrule = "epsilon"\n')

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 4, 3, padding=1)
            self.pool = nn.MaxPool1d(2)

        def forward(self, x):
            y = self.conv(x) + x
            return self.pool(y).mean(2)
    rows = {r["name"]: r["rule"] for r in describe_layers(Net().eval(), composite=str(composite),
                                                          input_length=8)}
    assert rows["add"] == "split by contribution (eps=0.003)"
    assert rows["pool"] == "proportional (eps=0.003)"
    assert rows["mean"] == "epsilon (eps=0.003, weights 1/n)"
