"""BatchExplainer: every (method, target) from one forward equals Explainer.explain one by one."""

from __future__ import annotations

import pytest
import torch

import reference as ref
from engine_nets import FunctionalNet, one_hot, seq_net
from plrp.engine import BatchExplainer, Explainer
from plrp.errors import PlrpError
from plrp.models.architectures import build_model
from reference import InputFanNet, MiscNet, ProfileNet, ResNet, make_model, random_one_hot
from reference import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = {"lrp": dict(p_pos=0.0, p_neg=0.0),
           "plrp": dict(p_pos=0.3, p_neg=0.1, variant="lambda"),
           "plrp_m": dict(p_pos=0.2, variant="m"),
           "plrp_sched": dict(p_pos={"*": 0.4}, p_neg=0.0)}
FIELDS = ("relevance", "hypothetical", "score", "conservation_error")


def _bpnet():
    torch.manual_seed(0)
    return build_model("bpnet", input_length=300, n_filters=8, n_layers=4, trimming=60,
                       profile_kernel=25)


def _close(got, want, rtol):
    scale = want.abs().max().clamp(min=1e-30)
    assert (got - want).abs().max() <= rtol * scale, float((got - want).abs().max() / scale)


def _check_against_explainer(model, targets, x, dtype, rtol, **kwargs):
    be = BatchExplainer(model, targets, METHODS, dtype=dtype, **kwargs)
    out = be.explain(x)
    m, t, n = len(METHODS), len(targets), x.shape[0]
    assert out.relevance.shape == out.hypothetical.shape == (m, t, n) + tuple(x.shape[1:])
    assert out.score.shape == out.conservation_error.shape == (m, t, n)
    assert out.relevance.dtype == (dtype or torch.float32)
    for i, (name, opts) in enumerate(METHODS.items()):
        ex = Explainer(model, dtype=dtype, **opts)
        # PLRP-M recomputes a layer with masked sums that can nearly cancel, which magnifies
        # float32 rounding differences between batch sizes (the convolution kernels differ)
        tol = rtol * 10 if opts.get("variant") == "m" and dtype != torch.float64 else rtol
        for j, target in enumerate(targets):
            want = ex.explain(x, target)
            for field in FIELDS:
                _close(getattr(out, field)[i, j], getattr(want, field), tol)
    return be, out


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_batch_equals_explainer_per_method_and_target(dtype, rtol):
    torch.manual_seed(1)
    model = seq_net(bias=True)
    x = one_hot(5, 60, seed=2, dtype=dtype)
    be, _ = _check_against_explainer(model, [0, 2, 1], x, dtype, rtol)
    assert be.method_names == list(METHODS)
    assert be.target_names == ["0", "2", "1"]


@pytest.mark.parametrize("max_stack", [None, 1, 7])
def test_batch_two_heads_profile_and_chunking(max_stack):
    model = _bpnet()
    x = one_hot(3, 300, seed=3, dtype=torch.float64)
    be, _ = _check_against_explainer(model, ["profile", "count"], x, torch.float64, 1e-12,
                                     max_stack=max_stack)
    assert be.target_names == ["profile", "count"]


def test_batch_recomputes_shape_values_for_stacked_rows():
    """reshape(x.shape[0], -1), cat, crop, mean, residual add: the batch size read from the
    input must be that of the stacked rows, not of the forward."""
    torch.manual_seed(4)
    model = FunctionalNet().double().eval()
    x = one_hot(3, 40, seed=5, dtype=torch.float64)
    _check_against_explainer(model, [1, 0], x, torch.float64, 1e-12, max_stack=4)


def test_methods_with_other_variant_or_maxpool_walk_apart():
    torch.manual_seed(2)
    model = seq_net(bias=True).double()
    x = one_hot(3, 60, seed=8, dtype=torch.float64)
    methods = {"prop": dict(p_pos=0.2, maxpool="proportional"), "wta": dict(p_pos=0.2),
               "m": dict(p_pos=0.1, variant="m"), "lrp": {}}
    be = BatchExplainer(model, [0, 1], methods, dtype=torch.float64)
    assert be._groups == [[0], [1, 3], [2]]
    out = be.explain(x)
    for i, opts in enumerate(methods.values()):
        ex = Explainer(model, dtype=torch.float64, **opts)
        for j in range(2):
            _close(out.relevance[i, j], ex.explain(x, j).relevance, 1e-12)


@pytest.mark.parametrize("max_stack", [4, 6, None])    # gathered rows; 2 and 4 window copies
@pytest.mark.parametrize("cls,targets", [
    (MiscNet, [1, 0]),          # torch.max(dim)[0], adaptive pools, cat, crop, constants
    (ResNet, [0, 1]),           # residual add, mean over positions
    (InputFanNet, [1, 0]),      # the input feeds two convolutions
    (ProfileNet, [{"kind": "softmax_profile", "head": 0},
                  {"kind": "logit", "head": 1, "index": 0}]),   # two heads
])
def test_batch_against_the_independent_reference(cls, targets, max_stack):
    """Each (method, target) row of one stacked walk equals the float64 reference
    (tests/engine/reference.py: explicit matrices, one window at a time), whether a chunk's
    rows gather their windows' values (max_stack 4 of 3 windows) or are whole copies of
    the windows that broadcast them (6, and None: all 12 rows in one chunk)."""
    model = make_model(cls, seed=21)
    net = model.reference()
    x = random_one_hot(3, cls.length, seed=22)
    methods = {"lrp": {}, "plrp": dict(p_pos=0.3, p_neg=0.2)}
    out = BatchExplainer(model, targets, methods, dtype=torch.float64,
                         max_stack=max_stack).explain(torch.from_numpy(x))
    prunable = [n.name for n in net.nodes if n.op == "dense" and 0 not in n.inputs]
    rule = ref.Rule("epsilon", epsilon=1e-6)
    for i, (pp, pn) in enumerate([(0.0, 0.0), (0.3, 0.2)]):
        for j, target in enumerate(targets):
            for w in range(3):
                want = ref.explain(net, x[w].reshape(-1), target, rules=rule,
                                   p_pos={k: pp for k in prunable},
                                   p_neg={k: pn for k in prunable})
                got = out.relevance[i, j, w].reshape(-1).numpy()
                scale = max(abs(want.relevance).max(), 1e-300)
                assert abs(got - want.relevance).max() <= 1e-10 * scale, (cls, i, j, w)
                hyp = out.hypothetical[i, j, w].reshape(-1).numpy()
                assert abs(hyp - want.hypothetical).max() <= 1e-10 * max(
                    abs(want.hypothetical).max(), 1e-300)
                assert abs(float(out.score[i, j, w]) - want.score) <= 1e-10 * abs(want.score)


def test_empty_batch_gives_empty_results():
    model = seq_net()
    out = BatchExplainer(model, [0, 2], {"lrp": {}, "plrp": dict(p_pos=0.2)}).explain(
        torch.zeros(0, 4, 60))
    assert out.relevance.shape == out.hypothetical.shape == (2, 2, 0, 4, 60)
    assert out.score.shape == out.conservation_error.shape == (2, 2, 0)


def test_batch_names_targets_by_output_name():
    torch.manual_seed(0)
    model = build_model("plrp-default", n_filters=8, n_filters2=8, n_hidden=8)
    names = model.output_names
    be = BatchExplainer(model, [names[-1], 0], {"lrp": {}})
    assert be.target_names == [names[-1], names[0]]


def test_batch_refuses_bad_arguments():
    model = seq_net()
    with pytest.raises(PlrpError, match="methods"):
        BatchExplainer(model, [0], {})
    with pytest.raises(PlrpError, match="target"):
        BatchExplainer(model, [], {"lrp": {}})
    with pytest.raises(PlrpError, match="max_stack"):
        BatchExplainer(model, [0], {"lrp": {}}, max_stack=0)
    with pytest.raises(PlrpError, match="p_pos"):
        BatchExplainer(model, [0], {"bad": dict(p_pos=1.5)})
