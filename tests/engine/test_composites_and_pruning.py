"""Composite files (assignment, precedence, errors), rule formulas, the pruning selection."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from engine_nets import seq_net
from plrp.engine import Explainer, describe_layers
from plrp.engine.composites import available_composites, load_composite
from plrp.engine.prune import lambda_rescale, prune_mask
from plrp.engine.rules import LinearOp, make_rule
from plrp.errors import InputError, PlrpError

F64 = torch.float64


def _rules(model, composite):
    return {r["name"]: r["rule"] for r in describe_layers(model, composite=composite,
                                                          input_length=60)}


def test_shipped_composites_load():
    names = available_composites()
    for required in ("epsilon", "epsilon-gamma", "epsilon-zplus", "epsilon-flat-input",
                     "alpha2-beta1"):
        assert required in names
    for name in names:
        comp = load_composite(name)
        assert comp.description
    eps = load_composite("epsilon")
    assert eps.default == ("epsilon", {"epsilon": 1e-6}) and eps.maxpool == "wta"
    rules = _rules(seq_net(), "epsilon")
    assert {rules[k] for k in ("0", "3", "6", "8")} == {"epsilon(epsilon=1e-06)"}
    assert rules["2"] == "winner-take-all" and rules["1"] == "pass-through"


def test_precedence_name_over_first_layer_over_type_over_default(tmp_path):
    path = tmp_path / "mix.toml"
    path.write_text("""
description = "test"
maxpool = "proportional"
[default]
rule = "epsilon"
epsilon = 0.01
[types.Conv1d]
rule = "gamma"
gamma = 0.5
[types.Linear]
rule = "zplus"
[first_layer]
rule = "flat"
[names."8"]
rule = "alpha_beta"
alpha = 3
[names."0"]
rule = "wsquare"
""")
    rules = _rules(seq_net(), str(path))
    assert rules["0"] == "wsquare"                          # name beats first_layer
    assert rules["3"] == "gamma(gamma=0.5, epsilon=1e-06)"  # type
    assert rules["6"] == "zplus(epsilon=1e-06)"             # type
    assert rules["8"] == "alpha_beta(alpha=3, beta=2, epsilon=1e-06)"   # name
    assert rules["2"].startswith("proportional")
    path.write_text('[default]\nrule = "epsilon"\nepsilon = 0.01\n[first_layer]\nrule = "flat"\n')
    rules = _rules(seq_net(), str(path))
    assert rules["0"] == "flat" and rules["3"] == "epsilon(epsilon=0.01)"


@pytest.mark.parametrize("text, fragment", [
    ("[default\nrule = 1", "invalid TOML"),
    ('[default]\nrule = "nope"', "unknown rule 'nope'"),
    ('[default]\nepsilon = 1e-6', "no 'rule' key"),
    ('colour = "red"', "unknown key(s) colour"),
    ('[types.Conv2d]\nrule = "epsilon"', "types.Conv2d"),
    ('[default]\nrule = "gamma"\ngamma = "big"', "gamma = 'big' is not a number"),
    ('[default]\nrule = "epsilon"\nalpha = 2', "bad parameters for rule 'epsilon'"),
    ('maxpool = "average"', "maxpool = 'average'"),
    ('[names."nope"]\nrule = "flat"', "'nope', not a Conv1d/Linear layer"),
])
def test_bad_composite_files(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        Explainer(seq_net(), composite=str(path))
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_unknown_composite_and_missing_file():
    with pytest.raises(InputError, match="unknown composite 'nope'"):
        Explainer(seq_net(), composite="nope")
    with pytest.raises(InputError, match="no such file"):
        Explainer(seq_net(), composite="/nonexistent/x.toml")


def test_bad_pruning_arguments():
    model = seq_net()
    with pytest.raises(PlrpError, match=r"p_pos = 1.0"):
        Explainer(model, p_pos=1.0)
    with pytest.raises(PlrpError, match="variant"):
        Explainer(model, variant="x")
    with pytest.raises(PlrpError, match="schedule names conv9"):
        Explainer(model, p_pos={"conv9": 0.2})
    with pytest.raises(PlrpError, match="prunable"):
        Explainer(model, prunable=["nope"])


# ---------------------------------------------------------------- rule formulas (dense)
def _dense_expected(rule, a, w, b, R):
    """Explicit float64 formulas of contracts 1a on one Linear layer, by loops over j, k."""
    n_in, n_out = w.shape[1], w.shape[0]
    out = torch.zeros(n_in, dtype=F64)
    sgn = lambda t: 1.0 if t >= 0 else -1.0  # noqa: E731
    for k in range(n_out):
        c = [a[j] * w[k, j] for j in range(n_in)]
        if rule == "epsilon":
            z = sum(c) + b[k]
            for j in range(n_in):
                out[j] += c[j] / (z + 1e-6 * sgn(z)) * R[k]
        elif rule == "gamma":
            wp = [w[k, j] + 0.25 * max(0.0, w[k, j]) for j in range(n_in)]
            bp = b[k] + 0.25 * max(0.0, b[k])
            z = sum(a[j] * wp[j] for j in range(n_in)) + bp
            for j in range(n_in):
                out[j] += a[j] * wp[j] / (z + 1e-6 * sgn(z)) * R[k]
        elif rule in ("alpha_beta", "zplus"):
            alpha, beta = (2.0, 1.0) if rule == "alpha_beta" else (1.0, 0.0)
            cp = [max(0.0, v) for v in c]
            cn = [min(0.0, v) for v in c]
            zp = sum(cp) + max(0.0, b[k])
            zn = sum(cn) + min(0.0, b[k])
            for j in range(n_in):
                out[j] += (alpha * cp[j] / (zp + 1e-6) - beta * cn[j] / (zn - 1e-6)) * R[k]
        elif rule == "flat":
            for j in range(n_in):
                out[j] += R[k] / n_in
        elif rule == "wsquare":
            den = sum(w[k, j] ** 2 for j in range(n_in))
            for j in range(n_in):
                out[j] += w[k, j] ** 2 / den * R[k]
    return out


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alpha_beta", "zplus", "flat", "wsquare"])
def test_rule_formulas_on_a_dense_layer(rule):
    torch.manual_seed(21)
    a = torch.randn(2, 7, dtype=F64)          # signed inputs exercise alpha-beta fully
    w = torch.randn(5, 7, dtype=F64)
    b = torch.randn(5, dtype=F64) * 0.3
    R = torch.randn(2, 5, dtype=F64)
    op = LinearOp("linear", w, b)
    z = op.forward(a, w, b)
    got, _ = make_rule(rule, {}).relevance(op, a, z, R)
    for i in range(2):
        expected = _dense_expected(rule, a[i].tolist(), w, b.tolist(), R[i].tolist())
        assert torch.allclose(got[i], expected, rtol=1e-10, atol=1e-13), rule


def test_flat_and_wsquare_count_only_real_inputs_of_a_padded_conv():
    w = torch.randn(3, 4, 5, dtype=F64)
    op = LinearOp("conv", w, None, 1, 2, 1)
    a = torch.rand(1, 4, 9, dtype=F64)
    R = torch.zeros(1, 3, 9, dtype=F64)
    R[0, 1, 0] = 1.0                            # first output: 3 real positions x 4 channels
    got, _ = make_rule("flat", {}).relevance(op, a, op.forward(a, w), R)
    assert torch.allclose(got[0, :, :3], torch.full((4, 3), 1 / 12, dtype=F64))
    assert got[0, :, 3:].abs().sum() == 0
    got, _ = make_rule("wsquare", {}).relevance(op, a, op.forward(a, w), R)
    w2 = w[1, :, 2:] ** 2                      # taps that reach real positions 0..2
    assert torch.allclose(got[0, :, :3], w2 / w2.sum())


def test_proportional_maxpool_formula():
    model = nn.Sequential(nn.MaxPool1d(3, 2, padding=1), nn.Flatten(),
                          nn.Linear(4 * 5, 1, bias=False)).double().eval()
    x = torch.rand(2, 4, 10, dtype=F64)
    ex = Explainer(model, maxpool="proportional", dtype=F64)
    res = ex.explain(x, 0, return_layers=True)
    upper = res.layers["2"].reshape(2, 4, 5)
    expected = torch.zeros_like(x)
    for n, c, k in itertools.product(range(2), range(4), range(5)):
        window = [j for j in range(2 * k - 1, 2 * k + 2) if 0 <= j < 10]
        total = sum(x[n, c, j] for j in window)
        for j in window:
            expected[n, c, j] += x[n, c, j] / (total + 1e-6) * upper[n, c, k]
    assert torch.allclose(res.relevance, expected, rtol=1e-10)


# ---------------------------------------------------------------- pruning selection
def _naive_pruned(r, p_pos, p_neg):
    """Definition of contracts 1a with a Python stable sort, exact rational sums."""
    from fractions import Fraction
    keep = [True] * len(r)
    for sign, p in ((1, p_pos), (-1, p_neg)):
        side = [(abs(v), i) for i, v in enumerate(r) if v * sign > 0]
        side.sort()                             # by (magnitude, index)
        total = sum(Fraction(v) for v, _ in side)
        limit = Fraction(p) * total
        acc = Fraction(0)
        for v, i in side:
            acc += Fraction(v)
            if acc > limit:
                break
            keep[i] = False
    return keep


def test_prune_mask_matches_the_stable_sort_definition_with_ties():
    g = torch.Generator().manual_seed(5)
    for trial in range(30):
        # small integers: many ties, exact sums
        r = torch.randint(-4, 7, (3, 2, 9), generator=g).to(F64) / 4
        p_pos, p_neg = [0.0, 0.1, 0.25, 0.5, 0.8][trial % 5], [0.0, 0.2, 0.45][trial % 3]
        keep = prune_mask(r, p_pos, p_neg)
        for n in range(3):
            expected = _naive_pruned(r[n].flatten().tolist(), p_pos, p_neg)
            assert keep[n].flatten().tolist() == expected, (trial, n)


def _windows(kind, dtype, g):
    """(4, 3, 700) relevance: 2100 entries per window, enough for the radix selection."""
    shape = (4, 3, 700)
    if kind == "ties":
        return (torch.randint(-4, 9, shape, generator=g) / 4).to(dtype)
    r = torch.randn(shape, generator=g, dtype=dtype) * torch.randn(shape, generator=g,
                                                                    dtype=dtype).exp()
    if kind == "scales":    # windows 40 orders of magnitude apart share one batch
        r = r * torch.tensor([1e-20, 1.0, 1e20, 3e-3], dtype=dtype).view(4, 1, 1)
    if kind == "tiny":      # zeros, denormals and signed zeros in the lowest bins
        r[:, 0] = 0.0
        r[:, 1, ::2] = -0.0
        r[:, 2, ::3] = torch.finfo(dtype).tiny / 8
    return r


@pytest.mark.parametrize("path", ["sorted", "radix"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kind", ["ties", "spread", "scales", "tiny"])
def test_both_selection_paths_follow_the_definition_on_large_windows(path, dtype, kind,
                                                                      monkeypatch):
    import plrp.engine.prune as prune
    monkeypatch.setattr(prune, "_RADIX_MIN_ENTRIES", 1 if path == "radix" else 10**9)
    g = torch.Generator().manual_seed(11)
    for p_pos, p_neg in [(0.1, 0.05), (0.5, 0.0), (0.0, 0.3), (0.9, 0.9)]:
        r = _windows(kind, dtype, g)
        pruning = prune.select(r, p_pos, p_neg)
        keep = pruning.keep
        expected = torch.tensor([_naive_pruned(r[n].flatten().tolist(), p_pos, p_neg)
                                 for n in range(4)]).view(r.shape)
        assert torch.equal(keep, expected), (p_pos, p_neg)
        out = prune.apply_lambda(r, pruning)
        assert torch.allclose(out, lambda_rescale(r, expected), rtol=1e-6, atol=0)
        # PLRP-lambda keeps each window's positive and negative mass
        for side in (r > 0, r < 0):
            before = torch.where(side, r, 0).sum((1, 2), dtype=F64)
            after = torch.where(side, out, 0).sum((1, 2), dtype=F64)
            assert torch.allclose(after, before, rtol=1e-5, atol=0)


def test_huge_batches_are_selected_in_parts_with_the_same_result(monkeypatch):
    import plrp.engine.prune as prune
    r = _windows("spread", torch.float32, torch.Generator().manual_seed(3))
    whole = prune.select(r, 0.3, 0.1).factor
    monkeypatch.setattr(prune, "_MAX_BINS", 3 << prune._bin_bits(2100))  # 3 windows a part
    assert torch.equal(prune.select(r, 0.3, 0.1).factor, whole)


def test_lambda_rescale_restores_side_sums_and_handles_edge_cases():
    r = torch.tensor([[3.0, 1.0, -2.0, -0.5, 0.0, 1.0]], dtype=F64)
    keep = prune_mask(r, 0.4, 0.25)
    assert keep.tolist() == [[True, False, True, False, True, False]]
    out = lambda_rescale(r, keep)
    assert torch.allclose(out, torch.tensor([[5.0, 0, -2.5, 0, 0, 0]], dtype=F64))
    zero = torch.zeros(2, 5)
    assert torch.equal(lambda_rescale(zero, prune_mask(zero, 0.5, 0.5)), zero)
    one_sided = torch.tensor([[1.0, 2.0, 3.0]])
    assert prune_mask(one_sided, 0.0, 0.9).all()


def test_composite_search_path_and_builtin_default(tmp_path, monkeypatch):
    (tmp_path / "mine.toml").write_text('[default]\nrule = "zplus"\n')
    monkeypatch.setenv("PLRP_COMPOSITES_DIR", str(tmp_path))
    assert load_composite("mine").default == ("zplus", {})
    assert "mine" in available_composites()
    # without any configs folder the default composite still works (built-in copy)
    import plrp.engine.composites as composites
    monkeypatch.setattr(composites, "composite_dirs", lambda: [tmp_path / "missing"])
    eps = load_composite("epsilon")
    assert eps.default == ("epsilon", {"epsilon": 1e-6}) and eps.maxpool == "wta"
    with pytest.raises(InputError, match="unknown composite 'mine'"):
        load_composite("mine")
