"""Architectures end to end, and models the engine must refuse before doing any work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine_nets import FunctionalNet, grad_x_input, one_hot, tiny_eps_composite
from plrp.engine import Explainer, describe_layers, explain_tensor
from plrp.errors import UnsupportedModelError
from plrp.models.architectures import build_model

SMALL = {
    "plrp-default": dict(n_filters=8, n_filters2=8, n_hidden=8),
    "deepsea": dict(channels=(8, 8, 8), n_hidden=8, n_outputs=4),
    "basset": dict(channels=(8, 6, 6), n_hidden=8, n_outputs=4),
    "bpnet": dict(input_length=300, n_filters=8, n_layers=4, trimming=60, profile_kernel=25),
}


def _randomise_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.1)


@pytest.mark.parametrize("arch", list(SMALL))
def test_zoo_end_to_end(arch):
    torch.manual_seed(0)
    model = build_model(arch, **SMALL[arch])
    _randomise_bn(model)
    length = model.input_length
    x = one_hot(3, length, seed=1)
    for name, spec in model.target_specs().items():
        for kwargs in (dict(), dict(p_pos=0.3), dict(p_pos=0.3, variant="m")):
            res = Explainer(model, **kwargs).explain(x, spec)
            assert res.relevance.shape == x.shape == res.hypothetical.shape
            assert res.score.shape == (3,) == res.conservation_error.shape
            for t in (res.relevance, res.hypothetical, res.score, res.conservation_error):
                assert torch.isfinite(t).all(), (arch, name, kwargs)
            assert res.relevance.abs().sum() > 0
    # target by name
    first = next(iter(model.target_specs()))
    assert explain_tensor(model, x, first).shape == x.shape
    rows = describe_layers(model)
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    linear = [r for r in rows if r["rule"].startswith("epsilon(")]
    assert linear and not linear[0]["pruned"] and all(r["pruned"] for r in linear[1:])
    assert all(r["output_shape"] is not None for r in rows)


def test_deepsea_uses_flatten_and_basset_folds_batchnorm_after_linear():
    model = build_model("basset", **SMALL["basset"])
    rows = {r["name"]: r for r in describe_layers(model)}
    assert "folded classifier.1" in rows["classifier.0"]["op"]
    assert "classifier.1" not in rows
    # unpadded convs (19, 11, 7) and pools (3, 4, 4): 600 -> 582 -> 194 -> 184 -> 46 -> 40 -> 10
    assert rows["flatten"]["output_shape"] == [6 * 10]
    deepsea = {r["name"]: r for r in describe_layers(build_model("deepsea", **SMALL["deepsea"]))}
    assert deepsea["flatten"]["rule"] == "route (exact)"


def test_bpnet_equals_gradient_x_input_when_bias_free(tmp_path):
    """Residual adds, cropping, global mean, both heads: LRP-0 == gradient x input."""
    torch.manual_seed(3)
    model = build_model("bpnet", **SMALL["bpnet"]).double()
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    x = one_hot(2, 300, seed=3, dtype=torch.float64)
    ex = Explainer(model, composite=tiny_eps_composite(tmp_path), dtype=torch.float64)
    count = ex.explain(x, "count")
    expected = grad_x_input(model, x, lambda out: out[1][:, 0])
    assert torch.allclose(count.relevance, expected, rtol=1e-7, atol=1e-13)
    profile = ex.explain(x, "profile")

    def profile_seed(out):
        # bpnet-lite / chrombpnet: softmax over strands x positions jointly of the
        # mean-centred logits, weights held constant, times the centred logits
        flat = out[0].reshape(out[0].shape[0], -1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        return (torch.softmax(centred.detach(), dim=1) * centred).sum(1)
    expected = grad_x_input(model, x, profile_seed)
    assert torch.allclose(profile.relevance, expected, rtol=1e-7, atol=1e-13)
    assert torch.allclose(profile.score, profile_seed(model(x)), rtol=1e-12)
    assert torch.all(profile.conservation_error < 1e-8)


def test_functional_model_runs_and_reports_its_nodes():
    model = FunctionalNet().eval()
    x = one_hot(3, 40)
    res = Explainer(model, p_pos=0.2).explain(x, 0)
    assert torch.isfinite(res.relevance).all()
    names = [r["name"] for r in describe_layers(model, input_length=40)]
    for expected in ("conv_a", "cat", "relu", "mean", "add", "add_1", "fc_pos", "reshape"):
        assert expected in names, names
    assert any(n.startswith("getitem") for n in names)


class Sorting(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(4, 4, 3))
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        h = torch.sort(self.block(x), dim=2)[0]
        return self.fc(h[:, :, -1])


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3)
        self.rnn = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(self.conv(x).transpose(1, 2))
        return out[:, -1]


class Inner(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)     # a gate: product of two input-dependent tensors


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3)
        self.block = Inner()

    def forward(self, x):
        return self.block(self.conv(x)).mean(2)


class BatchMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3)

    def forward(self, x):
        h = self.conv(x)
        return h.mean(2) - h.mean()


@pytest.mark.parametrize("model, fragments", [
    (Sorting(), ["torch.sort", "node 'sort'", "called from Sorting.forward"]),
    (WithLSTM(), ["nn.LSTM", "'rnn'"]),
    (nn.Sequential(nn.Conv1d(4, 4, 3), nn.Conv1d(4, 4, 3, groups=2)), ["Conv1d", "'1'",
                                                                        "groups=2"]),
    (nn.Sequential(nn.Conv1d(4, 4, 3), nn.ReLU(), nn.BatchNorm1d(4)), ["BatchNorm1d", "'2'"]),
    (Gated(), ["operator.mul", "called from block.forward", "two input-dependent"]),
    (BatchMean(), ["mean", "all dims"]),
    (nn.Sequential(nn.Conv1d(4, 4, 3), nn.Softmax(dim=1)), ["nn.Softmax", "'1'"]),
])
def test_unsupported_models_fail_before_any_work(model, fragments):
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(UnsupportedModelError) as info:
        Explainer(model)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not calls           # the model never ran


def test_reduction_over_batch_dim_is_refused():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x.sum(2) - x.sum(2).mean(0, keepdim=True))

    with pytest.raises(UnsupportedModelError, match="batch dimension"):
        Explainer(Bad().eval()).explain(one_hot(2, 10), 0)


def test_tuple_output_and_max_over_dim(tmp_path):
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 5, 3, bias=False)
            self.a = nn.Linear(5, 2, bias=False)

        def forward(self, x):
            h = F.relu(self.conv(x))
            values, _ = torch.max(h, dim=2)
            return self.a(values), h.amax(dim=2, keepdim=True).flatten(1)

    torch.manual_seed(4)
    model = TwoHeads().double().eval()
    x = one_hot(3, 12, dtype=torch.float64)
    for target, fn in (({"kind": "logit", "head": 0, "index": 1}, lambda o: o[0][:, 1]),
                       ({"kind": "logit", "head": 1, "index": 3}, lambda o: o[1][:, 3])):
        res = Explainer(model, dtype=torch.float64,
                        composite=tiny_eps_composite(tmp_path)).explain(x, target)
        assert torch.allclose(res.relevance, grad_x_input(model, x, fn), rtol=1e-9, atol=1e-14)


def test_routing_pooling_and_functional_layers_equal_gradient_x_input(tmp_path):
    """pad, stack, flatten, slicing by x.size, sub, scale, F.conv1d, avg/adaptive pools, sum,
    mean, cat, unsqueeze/transpose/squeeze: every op's transpose is routed correctly."""
    from engine_nets import KitchenSink
    torch.manual_seed(14)
    model = KitchenSink().double().eval()
    x = one_hot(3, 41, seed=14, dtype=torch.float64)
    ex = Explainer(model, composite=tiny_eps_composite(tmp_path), dtype=torch.float64)
    res = ex.explain(x, 1, return_layers=True)
    expected = grad_x_input(model, x, lambda out: out[:, 1])
    assert torch.allclose(res.relevance, expected, rtol=1e-9, atol=1e-15)
    assert set(res.layers) >= {"c1", "c2", "conv1d", "fc", "pool", "ap"}
    assert "conv1d" in ex.prunable and "c1" not in ex.prunable
    pruned = Explainer(model, dtype=torch.float64, p_pos=0.3, variant="m").explain(x, 1)
    assert torch.isfinite(pruned.relevance).all()


def test_inplace_activations_and_adds_do_not_corrupt_stored_values():
    class InPlace(nn.Module):
        def __init__(self, inplace: bool):
            super().__init__()
            self.inplace = inplace
            self.conv = nn.Conv1d(4, 5, 3, padding=1)
            self.conv2 = nn.Conv1d(5, 5, 3, padding=1)
            self.act = nn.ReLU(inplace=inplace)
            self.fc = nn.Linear(5 * 12, 2)

        def forward(self, x):
            h = self.act(self.conv(x))
            g = self.conv2(h)
            if self.inplace:
                g += h
                g = F.leaky_relu(g, 0.1, True)
                g.relu_()
            else:
                g = g + h
                g = F.leaky_relu(g, 0.1)
                g = g.relu()
            return self.fc(g.flatten(1))

    torch.manual_seed(15)
    plain, inplace = InPlace(False).eval(), InPlace(True).eval()
    inplace.load_state_dict(plain.state_dict())
    x = one_hot(3, 12, seed=15)
    a = Explainer(plain, p_pos=0.2).explain(x, 1)
    b = Explainer(inplace, p_pos=0.2).explain(x, 1)
    assert torch.equal(a.relevance, b.relevance) and torch.equal(a.score, b.score)


def test_wrong_input_shape_is_a_one_line_user_error():
    from plrp.errors import PlrpError
    model = build_model("plrp-default", **SMALL["plrp-default"])
    with pytest.raises(PlrpError, match=r"cannot run on input of shape \(2, 5, 200\)"):
        Explainer(model).explain(torch.zeros(2, 5, 200), 0)
    with pytest.raises(PlrpError, match="unknown target 'nope'"):
        Explainer(model).explain(one_hot(2, 200), "nope")
    with pytest.raises(PlrpError, match="target index 7"):
        Explainer(model).explain(one_hot(2, 200), 7)
