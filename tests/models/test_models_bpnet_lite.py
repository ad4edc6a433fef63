"""bpnet-lite BPNet / ChromBPNet state_dicts mapped onto plrp's BPNet.

The reference is bpnet_lite_reference.LiteBPNet run in float64 with all-zero control tracks
(what plrp explains); plrp's loaded model runs in float32 without any control input.
"""

import pytest
import torch
from bpnet_lite_reference import LiteBPNet, LiteChromBPNet

from plrp.errors import InputError
from plrp.models.checkpoint import load_model

LENGTH, TRIM = 260, 60  # small windows keep the test fast; passed as --arch-param


def _randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.rand(p.shape, generator=gen) - 0.5) * 0.4)
    return model.eval()


def _x(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (n, LENGTH), generator=gen),
                                       4).permute(0, 2, 1).float()


def _reference(lite, x):
    """bpnet-lite's outputs in float64 with zero control tracks."""
    lite = lite.double()
    ctl = (torch.zeros(x.shape[0], lite.n_control_tracks, x.shape[2], dtype=torch.float64)
           if lite.n_control_tracks else None)
    with torch.no_grad():
        return lite(x.double(), ctl)


def _compare(loaded, lite, x):
    with torch.no_grad():
        profile, count = loaded.model(x)
    ref_profile, ref_count = _reference(lite, x)
    assert profile.shape == ref_profile.shape and count.shape == ref_count.shape
    torch.testing.assert_close(profile.double(), ref_profile, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(count.double(), ref_count, rtol=1e-5, atol=1e-5)


OVERRIDES = {"input_length": LENGTH, "trimming": TRIM}


@pytest.mark.parametrize("n_control,bias", [(2, True), (0, True), (2, False)])
def test_bpnet_lite_state_dict_matches_bpnet_lite_with_zero_controls(tmp_path, n_control,
                                                                     bias):
    lite = _randomise(LiteBPNet(n_filters=6, n_layers=3, n_outputs=2,
                                n_control_tracks=n_control, trimming=TRIM,
                                profile_output_bias=bias, count_output_bias=bias), seed=3)
    path = tmp_path / "bpnet.pt"
    torch.save(lite.state_dict(), path)
    assert lite.state_dict()["fconv.weight"].shape[1] == 6 + n_control
    loaded = load_model(path, arch="bpnet", overrides=OVERRIDES)
    # hyper-parameters come from the tensor shapes, not from bpnet.toml's defaults
    hp = loaded.spec["hparams"]
    assert (hp["n_filters"], hp["n_layers"], hp["n_outputs"]) == (6, 3, 2)
    assert loaded.output_names == ["profile", "count"]
    _compare(loaded, lite, _x(3))
    if n_control:
        assert loaded.format == "bpnet-lite"
        assert loaded.meta["source"]["control_tracks_dropped"] == n_control
    if not bias:
        assert set(loaded.meta["source"]["zero_biases_added"]) == {"fconv.bias", "linear.bias"}


def test_chrombpnet_maps_the_accessibility_model(tmp_path):
    bias = _randomise(LiteBPNet(4, 2, 1, 0, TRIM), seed=5)
    acc = _randomise(LiteBPNet(8, 3, 1, 0, TRIM), seed=6)
    path = tmp_path / "chrombpnet.pth"
    torch.save(LiteChromBPNet(bias, acc).state_dict(), path)
    loaded = load_model(path, arch="bpnet", overrides=OVERRIDES)
    assert loaded.spec["hparams"]["n_filters"] == 8 and loaded.spec["hparams"]["n_outputs"] == 1
    assert "accessibility model only" in loaded.meta["source"]["chrombpnet"]
    _compare(loaded, acc, _x(2, seed=1))


def test_wrapper_prefixes_are_stripped(tmp_path):
    """bpnet-lite's CountWrapper(ControlWrapper(model)) saves keys as 'model.model.*'."""
    lite = _randomise(LiteBPNet(5, 2, 2, 2, TRIM), seed=7)
    path = tmp_path / "wrapped.pt"
    torch.save({f"model.model.{k}": v for k, v in lite.state_dict().items()}, path)
    loaded = load_model(path, arch="bpnet", overrides=OVERRIDES)
    _compare(loaded, lite, _x(2, seed=2))


def test_conflicting_override_and_missing_arch_hint(tmp_path):
    lite = _randomise(LiteBPNet(6, 2, 2, 2, TRIM), seed=8)
    path = tmp_path / "bpnet.pt"
    torch.save(lite.state_dict(), path)
    with pytest.raises(InputError, match=r"n_filters=64 disagrees .* n_filters=6"):
        load_model(path, arch="bpnet", overrides={**OVERRIDES, "n_filters": 64})
    with pytest.raises(InputError, match="look like bpnet-lite's: use --arch bpnet"):
        load_model(path)


def test_misshaped_bpnet_lite_tensor(tmp_path):
    lite = _randomise(LiteBPNet(6, 2, 2, 2, TRIM), seed=9)
    state = lite.state_dict()
    state["rconvs.1.weight"] = state["rconvs.1.weight"][:, :, :2].clone()
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match=r"bad\.pt: tensor 'rconvs\.1\.weight' has shape "
                                         r"\(6, 6, 2\) but architecture bpnet expects "
                                         r"\(6, 6, 3\)"):
        load_model(path, arch="bpnet", overrides=OVERRIDES)
