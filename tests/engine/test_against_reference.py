"""plrp.engine against the independent float64 reference (tests/engine/reference.py).

Every comparison runs the engine in float64 on small random models and checks input relevance,
hypothetical contributions, score, conservation error and per-layer relevances window by window
at ~1e-10 relative tolerance.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import plrp.engine as engine
import reference as ref
from plrp.errors import UnsupportedModelError
from reference import one_torch_thread  # noqa: F401  (fixture)
from reference import (InputFanNet, MiscNet, ProfileNet, ResNet, SeqNet, make_model,
                       random_one_hot)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RTOL = 1e-10
RULE_PARAMS = {  # explicit, non-default parameters so that the engine must read them
    "epsilon": {"epsilon": 1e-5},
    "gamma": {"gamma": 0.3, "epsilon": 1e-5},
    "alpha_beta": {"alpha": 2.0, "beta": 1.0, "epsilon": 1e-5},
    "zplus": {"epsilon": 1e-5},
    "flat": {},
    "wsquare": {},
}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def write_composite(path, layer_rules: dict[str, str], params=RULE_PARAMS, maxpool=None):
    """A composite TOML (format of plrp/engine/composites.py) assigning ``layer_rules[name]``
    (with ``params[rule]``) to each layer by name."""
    lines = []
    if maxpool is not None:
        lines.append(f'maxpool = "{maxpool}"')
    for name, rule in layer_rules.items():
        lines.append(f'[names."{name}"]')
        lines.append(f'rule = "{rule}"')
        for key, value in params.get(rule, {}).items():
            lines.append(f"{key} = {value!r}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def reference_rules(layer_rules: dict[str, str], params=RULE_PARAMS) -> dict[str, ref.Rule]:
    return {name: ref.Rule(rule, **params.get(rule, {})) for name, rule in layer_rules.items()}


def resolve_schedule(net: ref.RefNet, p_pos, p_neg, prunable=None):
    """Per-layer (p_pos, p_neg) maps as contracts 1a defines them (the test's own reading)."""
    if prunable is None:
        prunable = [n.name for n in net.nodes if n.op == "dense" and 0 not in n.inputs]

    def lookup(spec, name):
        if isinstance(spec, dict):
            return float(spec.get(name, spec.get("*", 0.0)))
        return float(spec)

    pos, neg = {}, {}
    for name in prunable:
        pos[name] = lookup(p_pos, name)
        neg[name] = pos[name] / 2 if p_neg is None else lookup(p_neg, name)
    return pos, neg


def run_reference(net, x: np.ndarray, target, rules, *, p_pos=0.0, p_neg=None, variant="lambda",
                  prunable=None, maxpool_mode=None) -> list[ref.RefExplanation]:
    pos, neg = resolve_schedule(net, p_pos, p_neg, prunable)
    return [ref.explain(net, x[i].reshape(-1), target, rules=rules, p_pos=pos, p_neg=neg,
                        variant=variant, maxpool_mode=maxpool_mode) for i in range(x.shape[0])]


def run_engine(model, x: np.ndarray, target, composite, **kwargs):
    explainer = engine.Explainer(model, composite=composite, dtype=torch.float64, **kwargs)
    return explainer.explain(torch.from_numpy(x), target, return_layers=True)


def assert_close(actual, expected, what: str):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def compare(res, refs: list[ref.RefExplanation], x: np.ndarray, layer_names=()):
    n = x.shape[0]
    rel = res.relevance.detach().cpu().numpy()
    assert rel.dtype == np.float64 and rel.shape == x.shape
    for i, r in enumerate(refs):
        assert_close(rel[i].reshape(-1), r.relevance, f"relevance window {i}")
        assert_close(res.hypothetical[i].detach().cpu().numpy().reshape(-1), r.hypothetical,
                     f"hypothetical window {i}")
    assert_close(res.score.detach().cpu().numpy(), [r.score for r in refs], "score")
    cons = res.conservation_error.detach().cpu().numpy()
    assert np.all(np.isfinite(cons))
    np.testing.assert_allclose(cons, [r.conservation_error for r in refs], rtol=1e-6, atol=1e-12,
                               err_msg="conservation_error")
    assert res.layers is not None
    for name in layer_names:
        if name not in res.layers:  # allowed only for a layer no relevance reaches
            assert all(not np.any(r.layer_input[name]) for r in refs), \
                f"layer {name} missing from Explanation.layers {list(res.layers)}"
            continue
        got = res.layers[name].detach().cpu().numpy().reshape(n, -1)
        for i, r in enumerate(refs):
            assert_close(got[i], r.layer_input[name], f"layer {name} window {i}")


SEQ_LAYERS = ("conv1", "conv2", "fc1", "fc2")
RES_LAYERS = ("conv1", "conv2", "conv3", "fc")


def seq_case(seed=20, batchnorm=True, n_stretch=(5, 11)):
    model = make_model(SeqNet, seed=seed, batchnorm=batchnorm)
    x = np.concatenate([random_one_hot(3, SeqNet.length, seed=seed + 1),
                        random_one_hot(2, SeqNet.length, seed=seed + 2, n_stretch=n_stretch)])
    return model, x


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", list(RULE_PARAMS))
def test_every_rule_plain_lrp_sequential(tmp_path, rule):
    model, x = seq_case()
    layer_rules = {name: rule for name in SEQ_LAYERS}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    for target in (0, 2):
        res = run_engine(model, x, target, composite)
        compare(res, run_reference(net, x, target, reference_rules(layer_rules)), x,
                ("conv1", "conv2", "fc1", "fc2", "pool1", "pool2"))


PRODUCT_RULES = ("epsilon", "gamma", "alpha_beta", "zplus")
P_SETTINGS = [  # (p_pos, p_neg): p_neg None means p_pos / 2
    (0.0, None), (0.2, None), (0.5, 0.05), (0.9, 0.6), (0.3, 0.0), (0.0, 0.4)]


@pytest.mark.parametrize("variant", ["lambda", "m"])
@pytest.mark.parametrize("rule", PRODUCT_RULES)
def test_plrp_sequential_every_product_rule(tmp_path, rule, variant):
    model, x = seq_case(seed=30)
    layer_rules = {name: rule for name in SEQ_LAYERS}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    rules = reference_rules(layer_rules)
    plain = None
    for p_pos, p_neg in P_SETTINGS:
        res = run_engine(model, x, 1, composite, p_pos=p_pos, p_neg=p_neg, variant=variant)
        refs = run_reference(net, x, 1, rules, p_pos=p_pos, p_neg=p_neg, variant=variant)
        compare(res, refs, x, SEQ_LAYERS + ("pool1", "pool2"))
        if plain is None:
            plain = res.relevance
        elif rule != "zplus" or (p_pos > 0 and p_neg != 0.0):  # z+ relevance has one sign
            # the setting really pruned something, so the comparison above is not vacuous
            assert not torch.allclose(res.relevance, plain, rtol=1e-6, atol=0)


@pytest.mark.parametrize("variant", ["lambda", "m"])
@pytest.mark.parametrize("rule", ["flat", "wsquare"])
def test_plrp_with_input_independent_rules_on_every_layer(tmp_path, rule, variant):
    model, x = seq_case(seed=35)
    layer_rules = {name: rule for name in SEQ_LAYERS}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    # flat on a Linear layer gives all its inputs the same value; p * n must then not be an
    # integer (n = 8 and 15 here), or "cumsum <= p * sum" is an exact tie decided by rounding.
    for p_pos, p_neg in [(0.37, None), (0.63, 0.29)]:
        res = run_engine(model, x, 0, composite, p_pos=p_pos, p_neg=p_neg, variant=variant)
        refs = run_reference(net, x, 0, reference_rules(layer_rules), p_pos=p_pos, p_neg=p_neg,
                             variant=variant)
        compare(res, refs, x, SEQ_LAYERS)


@pytest.mark.parametrize("variant", ["lambda", "m"])
@pytest.mark.parametrize("input_rule", ["epsilon", "flat", "wsquare", "gamma"])
def test_residual_net_mixed_composite(tmp_path, input_rule, variant):
    model = make_model(ResNet, seed=40)
    x = np.concatenate([random_one_hot(2, ResNet.length, seed=41),
                        random_one_hot(2, ResNet.length, seed=42, n_stretch=(0, 8))])
    layer_rules = {"conv1": input_rule, "conv2": "zplus", "conv3": "alpha_beta", "fc": "epsilon"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    for p_pos, p_neg in [(0.0, None), (0.3, None), (0.7, 0.1)]:
        for target in (0, 1):
            res = run_engine(model, x, target, composite, p_pos=p_pos, p_neg=p_neg,
                             variant=variant)
            refs = run_reference(net, x, target, reference_rules(layer_rules), p_pos=p_pos,
                                 p_neg=p_neg, variant=variant)
            compare(res, refs, x, RES_LAYERS)


@pytest.mark.parametrize("variant", ["lambda", "m"])
def test_per_layer_schedules(tmp_path, variant):
    model, x = seq_case(seed=50)
    layer_rules = {"conv1": "flat", "conv2": "gamma", "fc1": "epsilon", "fc2": "epsilon"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    rules = reference_rules(layer_rules)
    schedules = [
        ({"conv2": 0.3, "fc1": 0.6}, None),                    # fc2 absent, no "*": not pruned
        ({"conv2": 0.5, "*": 0.2}, {"fc2": 0.4, "*": 0.05}),
        (0.4, {"fc1": 0.3}),                                     # negatives only on fc1
        ({"fc2": 0.7}, 0.2),
    ]
    for p_pos, p_neg in schedules:
        res = run_engine(model, x, 2, composite, p_pos=p_pos, p_neg=p_neg, variant=variant)
        refs = run_reference(net, x, 2, rules, p_pos=p_pos, p_neg=p_neg, variant=variant)
        compare(res, refs, x, SEQ_LAYERS)


def test_prunable_override(tmp_path):
    model, x = seq_case(seed=55)
    layer_rules = {name: "epsilon" for name in SEQ_LAYERS}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    for variant in ("lambda", "m"):
        res = run_engine(model, x, 0, composite, p_pos=0.5, p_neg=0.3, variant=variant,
                         prunable=["fc1"])
        refs = run_reference(net, x, 0, reference_rules(layer_rules), p_pos=0.5, p_neg=0.3,
                             variant=variant, prunable=["fc1"])
        compare(res, refs, x, SEQ_LAYERS)


@pytest.mark.parametrize("variant", ["lambda", "m"])
def test_prunable_override_including_the_input_layer(tmp_path, variant):
    model, x = seq_case(seed=57)
    layer_rules = {name: "epsilon" for name in SEQ_LAYERS}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    prunable = ["conv1", "conv2"]
    res = run_engine(model, x, 1, composite, p_pos=0.4, variant=variant, prunable=prunable)
    refs = run_reference(model.reference(), x, 1, reference_rules(layer_rules), p_pos=0.4,
                         variant=variant, prunable=prunable)
    rel = res.relevance.numpy().reshape(x.shape[0], -1)
    for i, r in enumerate(refs):
        assert_close(rel[i], r.relevance, f"relevance window {i}")
        for name in SEQ_LAYERS:
            assert_close(res.layers[name][i].numpy().reshape(-1), r.layer_input[name],
                         f"layer {name} window {i}")


def test_p_zero_is_plain_lrp_bit_for_bit(tmp_path):
    model, x = seq_case(seed=60)
    layer_rules = {"conv1": "wsquare", "conv2": "alpha_beta", "fc1": "gamma", "fc2": "epsilon"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    plain = run_engine(model, x, 0, composite)
    for variant in ("lambda", "m"):
        zero = run_engine(model, x, 0, composite, p_pos=0.0, p_neg=0.0, variant=variant)
        assert torch.equal(zero.relevance, plain.relevance)
        assert torch.equal(zero.hypothetical, plain.hypothetical)
    compare(plain, run_reference(model.reference(), x, 0, reference_rules(layer_rules)), x,
            SEQ_LAYERS)


@pytest.mark.parametrize("how", ["argument", "composite"])
def test_maxpool_proportional(tmp_path, how):
    model, x = seq_case(seed=65)
    layer_rules = {name: "epsilon" for name in SEQ_LAYERS}
    net = model.reference()
    if how == "argument":
        composite = write_composite(tmp_path / "c.toml", layer_rules, maxpool="wta")
        kwargs = {"maxpool": "proportional"}
    else:
        composite = write_composite(tmp_path / "c.toml", layer_rules, maxpool="proportional")
        kwargs = {}
    res = run_engine(model, x, 1, composite, p_pos=0.3, **kwargs)
    refs = run_reference(net, x, 1, reference_rules(layer_rules), p_pos=0.3,
                         maxpool_mode="proportional")
    compare(res, refs, x, SEQ_LAYERS + ("pool1",))


@pytest.mark.parametrize("variant", ["lambda", "m"])
def test_softmax_profile_and_counts_heads(tmp_path, variant):
    model = make_model(ProfileNet, seed=70)
    x = np.concatenate([random_one_hot(2, ProfileNet.length, seed=71),
                        random_one_hot(1, ProfileNet.length, seed=72, n_stretch=(6, 16))])
    layer_rules = {"conv1": "epsilon", "conv2": "gamma", "profile": "epsilon",
                   "counts": "epsilon"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    for target in ({"kind": "softmax_profile", "head": 0},
                   {"kind": "logit", "head": 1, "index": 0}):
        for p_pos in (0.0, 0.4):
            res = run_engine(model, x, target, composite, p_pos=p_pos, variant=variant)
            refs = run_reference(net, x, target, reference_rules(layer_rules), p_pos=p_pos,
                                 variant=variant)
            compare(res, refs, x, ("conv1", "conv2", "profile", "counts"))


@pytest.mark.parametrize("rule", list(RULE_PARAMS))
def test_input_feeding_two_layers_hypothetical_adds(tmp_path, rule):
    model = make_model(InputFanNet, seed=75)
    x = np.concatenate([random_one_hot(2, InputFanNet.length, seed=76),
                        random_one_hot(1, InputFanNet.length, seed=77, n_stretch=(3, 9))])
    layer_rules = {"conv_a": rule, "conv_b": rule, "fc": "epsilon"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    res = run_engine(model, x, 1, composite)
    refs = run_reference(model.reference(), x, 1, reference_rules(layer_rules))
    compare(res, refs, x, ("conv_a", "conv_b", "fc"))
    if rule in PRODUCT_RULES:
        np.testing.assert_allclose(res.relevance.numpy(), x * res.hypothetical.numpy(),
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("variant", ["lambda", "m"])
@pytest.mark.parametrize("rule", PRODUCT_RULES)
def test_other_ops_activations_crop_constant_cat_adaptive_pools_max_sum(tmp_path, rule, variant):
    model = make_model(MiscNet, seed=100)
    x = np.concatenate([random_one_hot(2, MiscNet.length, seed=101),
                        random_one_hot(1, MiscNet.length, seed=102, n_stretch=(0, 9))])
    layer_rules = {"conv1": "epsilon", "conv_a": rule, "conv_b": rule, "fc": "epsilon"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    net = model.reference()
    for p_pos, p_neg in [(0.0, None), (0.3, None), (0.6, 0.2)]:
        for target in (0, 1):
            res = run_engine(model, x, target, composite, p_pos=p_pos, p_neg=p_neg,
                             variant=variant)
            refs = run_reference(net, x, target, reference_rules(layer_rules), p_pos=p_pos,
                                 p_neg=p_neg, variant=variant)
            compare(res, refs, x, ("conv1", "act1", "conv_a", "conv_b", "amax", "aavg", "fc"))


def _reference_rules_from_toml(path, model, first_layers) -> tuple[dict[str, ref.Rule], str]:
    """Our own reading of a composite file: precedence name > first_layer > type > default."""
    with open(path, "rb") as fh:
        table = tomllib.load(fh)
    rules = {}
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            continue
        kind = type(module).__name__
        spec = table.get("default", {"rule": "epsilon", "epsilon": 1e-6})
        if kind in table.get("types", {}):
            spec = table["types"][kind]
        if name in first_layers and "first_layer" in table:
            spec = table["first_layer"]
        if name in table.get("names", {}):
            spec = table["names"][name]
        params = {k: v for k, v in spec.items() if k != "rule"}
        rules[name] = ref.Rule(spec["rule"], **params)
    return rules, table.get("maxpool", "wta")


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs" / "composites").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_composites(path):
    model, x = seq_case(seed=80)
    rules, maxpool = _reference_rules_from_toml(path, model, {"conv1"})
    net = model.reference()
    for p_pos, variant in ((0.0, "lambda"), (0.3, "lambda"), (0.3, "m")):
        res = run_engine(model, x, 0, path.stem, p_pos=p_pos, variant=variant)
        refs = run_reference(net, x, 0, rules, p_pos=p_pos, variant=variant,
                             maxpool_mode=maxpool)
        compare(res, refs, x, SEQ_LAYERS)


def test_batchnorm_is_folded_into_a_copy():
    model, x = seq_case(seed=85)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = engine.Explainer(model, composite="epsilon", p_pos=0.25,
                           dtype=torch.float64).explain(torch.from_numpy(x), 2, return_layers=True)
    refs = run_reference(model.reference(), x, 2, ref.Rule("epsilon", epsilon=1e-6), p_pos=0.25)
    compare(res, refs, x, SEQ_LAYERS)
    assert isinstance(model.bn_fc1, torch.nn.BatchNorm1d)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(model.bn1, torch.nn.BatchNorm1d) and not model.training
    # the same network without BatchNorm but with the folded weights gives the same relevance
    plain = make_model(SeqNet, seed=85, batchnorm=False)
    with torch.no_grad():
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if "bn" not in k})
        for layer, bn in ((plain.conv1, model.bn1), (plain.fc1, model.bn_fc1)):
            folded_w, folded_b = ref.fold_batchnorm(
                layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                bn.weight.detach().numpy(), bn.bias.detach().numpy(),
                bn.running_mean.numpy(), bn.running_var.numpy(), bn.eps)
            layer.weight.copy_(torch.from_numpy(folded_w))
            layer.bias.copy_(torch.from_numpy(folded_b))
    res_plain = engine.Explainer(plain, composite="epsilon", p_pos=0.25,
                                 dtype=torch.float64).explain(torch.from_numpy(x), 2)
    assert_close(res_plain.relevance.numpy(), res.relevance.numpy(), "folded vs BN model")


def test_explain_tensor_matches_explainer_and_reference(tmp_path):
    model = make_model(ResNet, seed=90)
    x = random_one_hot(3, ResNet.length, seed=91, n_stretch=(10, 14))
    layer_rules = {name: "gamma" for name in RES_LAYERS}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    kwargs = dict(composite=composite, p_pos=0.35, p_neg=0.1, variant="m")
    out = engine.explain_tensor(model, torch.from_numpy(x), 1, **kwargs)
    assert out.dtype == torch.float64 and out.shape == x.shape
    # a float64 x is explained in float64 (a float32 run would miss the reference at 1e-10)
    direct = engine.Explainer(model, dtype=torch.float64, **kwargs).explain(
        torch.from_numpy(x), 1).relevance
    assert torch.equal(out, direct)
    refs = run_reference(model.reference(), x, 1, reference_rules(layer_rules), p_pos=0.35,
                         p_neg=0.1, variant="m")
    expected = np.stack([r.relevance for r in refs])
    assert_close(out.numpy().reshape(3, -1), expected, "explain_tensor float64")
    # a float32 model explains float64 input in float64 on a converted copy, not in place
    model32 = copy.deepcopy(model).float()
    before = {k: v.clone() for k, v in model32.state_dict().items()}
    assert engine.explain_tensor(model32, torch.from_numpy(x), 1, **kwargs).dtype == torch.float64
    for k, v in model32.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    out32 = engine.explain_tensor(model32, torch.from_numpy(x).float(), 1, **kwargs)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy().reshape(3, -1), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


def test_all_n_window_is_zero_and_finite():
    model = make_model(SeqNet, seed=95, bias=False, batchnorm=False)
    x = np.zeros((2, 4, SeqNet.length))
    x[1] = random_one_hot(1, SeqNet.length, seed=96)[0]
    for variant in ("lambda", "m"):
        res = engine.Explainer(model, p_pos=0.5, variant=variant, dtype=torch.float64).explain(
            torch.from_numpy(x), 0, return_layers=True)
        assert torch.all(res.relevance[0] == 0) and torch.all(res.hypothetical[0] == 0)
        assert res.score[0] == 0 and res.conservation_error[0] == 0
        assert torch.all(torch.isfinite(res.conservation_error))
        refs = run_reference(model.reference(), x, 0, ref.Rule("epsilon"), p_pos=0.5,
                             variant=variant)
        compare(res, refs, x, SEQ_LAYERS)


def test_batchnorm_not_after_a_layer_is_unsupported():
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 3, 3), torch.nn.ReLU(),
                                torch.nn.BatchNorm1d(3), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 8, 1)).double().eval()
    with pytest.raises(UnsupportedModelError):
        engine.Explainer(model, dtype=torch.float64).explain(
            torch.from_numpy(random_one_hot(1, 10, seed=1)), 0)


class TieNet(torch.nn.Module):
    """conv1 (1x1) -> relu -> flatten -> fc1 -> relu -> fc2 (1 logit). With the flat rule on
    fc2 its 4 inputs get exactly score/4 each: exact ties at an exact mass boundary."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(4, 2, 1)
        self.fc1 = torch.nn.Linear(6, 4)
        self.fc2 = torch.nn.Linear(4, 1)

    def forward(self, x):
        h = torch.flatten(torch.relu(self.conv1(x)), 1)
        return self.fc2(torch.relu(self.fc1(h)))

    def reference(self) -> ref.RefNet:
        f64 = ref.as_float64
        net = ref.RefNet(12)
        W, b, conn, _ = ref.conv1d_dense(f64(self.conv1.weight), f64(self.conv1.bias), 3)
        n = net.relu("relu1", net.dense("conv1", 0, W, b, conn))
        W, b, conn = ref.linear_dense(f64(self.fc1.weight), f64(self.fc1.bias))
        n = net.relu("relu2", net.dense("fc1", n, W, b, conn))
        W, b, conn = ref.linear_dense(f64(self.fc2.weight), f64(self.fc2.bias))
        net.set_heads([net.dense("fc2", n, W, b, conn)], [(1,)])
        return net


@pytest.mark.parametrize("variant", ["lambda", "m"])
@pytest.mark.parametrize("p,n_pruned", [(0.5, 2), (0.75, 3), (0.49, 1)])
def test_exact_ties_at_the_mass_boundary(tmp_path, variant, p, n_pruned):
    """4 equal entries v: cumsum k*v <= p*4v is exact in binary, so p = 0.5 prunes exactly
    entries 0 and 1 ("<=", lower index first among ties), 0.75 prunes 0, 1, 2."""
    model = make_model(TieNet, seed=110)
    x = random_one_hot(3, 3, seed=111)
    layer_rules = {"conv1": "epsilon", "fc1": "epsilon", "fc2": "flat"}
    composite = write_composite(tmp_path / "c.toml", layer_rules)
    res = run_engine(model, x, 0, composite, p_pos={"fc2": p}, p_neg={"fc2": p},
                     variant=variant)
    refs = run_reference(model.reference(), x, 0, reference_rules(layer_rules),
                         p_pos={"fc2": p}, p_neg={"fc2": p}, variant=variant)
    for i, r in enumerate(refs):
        assert np.count_nonzero(r.layer_input["fc2"]) == 4 - n_pruned
        assert np.all(r.layer_input["fc2"][:n_pruned] == 0)
    compare(res, refs, x, ("conv1", "fc1", "fc2"))
