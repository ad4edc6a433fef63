"""bpnet-lite (1.1.0, the real package) BPNet / ChromBPNet checkpoints against bpnet-lite itself.

Outputs: plrp's loaded model (no control input) equals bpnet-lite's ControlWrapper (zero
control tracks). Targets: plrp's gradient x input of ``counts`` and ``profile`` equals that of
bpnet-lite's CountWrapper and of its ProfileWrapper with chrombpnet's stop-gradient on the
softmax, and LRP-epsilon at p = 0 (biases zeroed) equals both.
"""

import pytest
import torch
from bpnetlite.bpnet import BPNet, ControlWrapper, CountWrapper
from bpnetlite.chrombpnet import ChromBPNet
from foreign_models import bpnet_lite_targets, randomise

from plrp.engine import Explainer
from plrp.engine.targets import normalise_target, score
from plrp.errors import InputError
from plrp.models.checkpoint import load_model
from plrp.models.convert import convert_checkpoint

LENGTH = 300  # small windows keep the tests fast; bpnet-lite takes any length


def _lite(seed=3, **kwargs):
    kwargs = {"n_filters": 6, "n_layers": 3, "n_outputs": 2, "n_control_tracks": 2,
              "verbose": False, **kwargs}
    return randomise(BPNet(**kwargs), seed)


def _x(n, seed=0, length=LENGTH):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=gen),
                                       4).permute(0, 2, 1).double()


def _compare_outputs(loaded, lite, x):
    """plrp (float32) against bpnet-lite with zero control tracks (float64)."""
    with torch.no_grad():
        profile, counts = loaded.model(x.float())
        ref_profile, ref_counts = ControlWrapper(lite.double())(x)
    assert profile.shape == ref_profile.shape and counts.shape == ref_counts.shape
    torch.testing.assert_close(profile.double(), ref_profile, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(counts.double(), ref_counts, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_control,bias", [(2, True), (0, True), (2, False)])
def test_bpnet_state_dict_equals_bpnet_lite(tmp_path, n_control, bias):
    lite = _lite(n_control_tracks=n_control, profile_output_bias=bias, count_output_bias=bias)
    path = tmp_path / "bpnet.pt"
    torch.save(lite.state_dict(), path)
    loaded = load_model(path, arch_params={"input_length": LENGTH})  # layout recognised
    hp = loaded.spec["hparams"]
    assert (hp["n_filters"], hp["n_layers"], hp["n_outputs"]) == (6, 3, 2)
    assert hp["trimming"] == lite.trimming == 61  # bpnet-lite's 47 + 2 + 4 + 8
    assert loaded.format == "bpnet-lite" and loaded.output_names == ["profile", "counts"]
    _compare_outputs(loaded, lite, _x(3))
    if n_control:
        assert loaded.meta["source"]["control_tracks_dropped"] == n_control
    if not bias:
        assert set(loaded.meta["source"]["zero_biases_added"]) == {"fconv.bias", "linear.bias"}


def test_whole_pickled_bpnet_keeps_its_trimming_and_never_imports_bpnetlite(tmp_path):
    lite = _lite(seed=4, trimming=70)
    path = tmp_path / "bpnet.torch"
    torch.save(lite, path)  # what bpnet-lite's fit() writes
    loaded = load_model(path, arch_params={"input_length": LENGTH})
    assert loaded.spec["hparams"]["trimming"] == 70 and loaded.format == "bpnet-lite"
    _compare_outputs(loaded, lite, _x(2, seed=1))
    with pytest.raises(Exception):  # torch's safe loader refuses the same file
        torch.load(path, weights_only=True)


def test_chrombpnet_whole_model_and_state_dict_map_the_accessibility_model(tmp_path):
    bias = _lite(seed=5, n_filters=4, n_layers=2, n_outputs=1, n_control_tracks=0)
    acc = _lite(seed=6, n_filters=8, n_layers=3, n_outputs=1, n_control_tracks=0)
    chrom = ChromBPNet(bias, acc)
    for name, obj in (("chrombpnet.torch", chrom), ("chrombpnet.pt", chrom.state_dict())):
        path = tmp_path / name
        torch.save(obj, path)
        loaded = load_model(path, arch_params={"input_length": LENGTH})
        assert loaded.format == "chrombpnet"
        assert loaded.spec["hparams"]["n_filters"] == 8 and loaded.output_names[0] == "profile"
        assert "accessibility model only" in loaded.meta["source"]["chrombpnet"]
        _compare_outputs(loaded, acc, _x(2, seed=2))


def test_compiled_wrapped_and_prefixed_checkpoints(tmp_path):
    lite = _lite(seed=7)
    cases = {"compiled.torch": torch.compile(lite),
             "wrapped.pt": CountWrapper(ControlWrapper(lite)).state_dict(),
             "ddp.pt": {f"module.{k}": v for k, v in lite.state_dict().items()},
             "orig_mod.pt": {f"_orig_mod.{k}": v for k, v in lite.state_dict().items()}}
    for name, obj in cases.items():
        path = tmp_path / name
        torch.save(obj, path)
        loaded = load_model(path, arch_params={"input_length": LENGTH})
        _compare_outputs(loaded, lite, _x(2, seed=3))


def test_convert_writes_a_native_checkpoint_with_the_same_model(tmp_path):
    lite = _lite(seed=8)
    src, dst = tmp_path / "bpnet.torch", tmp_path / "bpnet.safetensors"
    torch.save(lite, src)
    summary = convert_checkpoint(src, dst, arch_params={"input_length": LENGTH})
    assert summary["format"] == "bpnet-lite" and summary["alphabet"] == "ACGT"
    loaded = load_model(dst)
    assert loaded.format == "native" and loaded.meta["source"]["format"] == "bpnet-lite"
    assert loaded.spec["hparams"]["trimming"] == 61
    _compare_outputs(loaded, lite, _x(2, seed=4))


def _grad_x_input(fn, x):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach().reshape(-1), grad * x.detach()


def _zero_biases(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return model


@pytest.mark.parametrize("n_outputs", [2, 1])
def test_targets_equal_bpnet_lite_wrappers_gradient_x_input(tmp_path, n_outputs):
    lite = _lite(seed=9, n_outputs=n_outputs).double()
    path = tmp_path / "bpnet.pt"
    torch.save(lite.state_dict(), path)
    model = load_model(path, arch_params={"input_length": LENGTH}).model.double()
    x = _x(3, seed=5)
    wrappers = bpnet_lite_targets(lite)
    for target in ("counts", "profile"):
        spec = normalise_target(target, model)
        ours_score, ours = _grad_x_input(lambda v: score(model(v), spec), x)
        ref_score, ref = _grad_x_input(lambda v: wrappers[target](v).sum(-1), x)
        torch.testing.assert_close(ours_score, ref_score, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)
    # the score is ProfileWrapper's own output; only its gradient differs (no stop-gradient)
    as_is = wrappers["profile_as_is"](x).reshape(-1).detach()
    torch.testing.assert_close(score(model(x), {"kind": "bpnet_profile", "head": 0}).detach(),
                               as_is, rtol=1e-10, atol=1e-10)


def test_lrp_epsilon_at_p0_equals_bpnet_lite_gradient_x_input(tmp_path):
    """With the biases zeroed and a tiny epsilon, LRP-epsilon at p = 0 is gradient x input."""
    lite = _zero_biases(_lite(seed=10).double())
    path = tmp_path / "bpnet.pt"
    torch.save(lite.state_dict(), path)
    model = load_model(path, arch_params={"input_length": LENGTH}).model
    composite = tmp_path / "eps.toml"
    composite.write_text('op_epsilon = 1e-30\n[default]\nrule = "epsilon"\nepsilon = 1e-30\n')
    explainer = Explainer(model, composite=str(composite), p_pos=0.0, dtype=torch.float64)
    x = _x(2, seed=6)
    wrappers = bpnet_lite_targets(lite)
    for target in ("counts", "profile"):
        _, ref = _grad_x_input(lambda v: wrappers[target](v).sum(-1), x)
        rel = explainer.explain(x, target).relevance
        torch.testing.assert_close(rel, ref, rtol=1e-8, atol=1e-11)


def test_errors_name_the_tensor_and_the_conflict(tmp_path):
    lite = _lite(seed=11)
    path = tmp_path / "bpnet.pt"
    torch.save(lite.state_dict(), path)
    with pytest.raises(InputError, match=r"n_filters=64 disagrees .* n_filters=6"):
        load_model(path, arch_params={"input_length": LENGTH, "n_filters": 64})
    state = lite.state_dict()
    state["rconvs.1.weight"] = state["rconvs.1.weight"][:, :, :2].clone()
    torch.save(state, path)
    with pytest.raises(InputError, match=r"bpnet\.pt: tensor 'rconvs\.1\.weight' has shape "
                                         r"\(6, 6, 2\) but architecture bpnet expects "
                                         r"\(6, 6, 3\)"):
        load_model(path, arch_params={"input_length": LENGTH})
