"""Each architecture is the published network: an independent float64 reference written from
the paper's description (functional torch code, not plrp's modules) gives the same logits
after plrp's weights are copied in.
"""

import torch
import torch.nn.functional as F

from plrp.models.architectures import bpnet_lite_trimming, build_model

from foreign_models import randomise as _randomise


def _x(n, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(0, 4, (n, length), generator=gen), 4).permute(0, 2, 1).double()


def _w(model):
    return {k: v.detach().double() for k, v in model.state_dict().items()}


def _bn(x, w, prefix):
    return F.batch_norm(x, w[f"{prefix}.running_mean"], w[f"{prefix}.running_var"],
                        w[f"{prefix}.weight"], w[f"{prefix}.bias"], training=False, eps=1e-5)


def test_deepsea_is_the_published_network():
    """Zhou & Troyanskaya 2015: 1000 bp; conv 320 x 8 -> ReLU -> max-pool 4/4 -> conv 480 x 8
    -> ReLU -> max-pool 4/4 -> conv 960 x 8 -> ReLU -> dense 925 -> ReLU -> 919 outputs
    (sigmoid in training). No padding: 1000 -> 993 -> 248 -> 241 -> 60 -> 53 positions."""
    with torch.device("meta"):  # shapes only: no time spent initialising 48M weights
        model = build_model("deepsea")
    assert model.classifier[0].weight.shape == (925, 960 * 53)
    assert model.classifier[2].weight.shape == (919, 925)
    small = _randomise(build_model("deepsea", channels=[12, 10, 8], n_hidden=9, n_outputs=5), 1)
    w, x = _w(small), _x(3, 1000)
    h = F.max_pool1d(F.relu(F.conv1d(x, w["features.0.weight"], w["features.0.bias"])), 4, 4)
    h = F.max_pool1d(F.relu(F.conv1d(h, w["features.4.weight"], w["features.4.bias"])), 4, 4)
    h = F.relu(F.conv1d(h, w["features.8.weight"], w["features.8.bias"]))
    assert h.shape[1:] == (8, 53)
    h = F.relu(F.linear(h.flatten(1), w["classifier.0.weight"], w["classifier.0.bias"]))
    ref = F.linear(h, w["classifier.2.weight"], w["classifier.2.bias"])
    torch.testing.assert_close(small.double()(x), ref, rtol=1e-12, atol=1e-12)


def test_basset_is_the_published_unpadded_network():
    """Kelley et al. 2016: 600 bp; [conv 300 x 19, BN, ReLU, max-pool 3], [conv 200 x 11, BN,
    ReLU, max-pool 4], [conv 200 x 7, BN, ReLU, max-pool 4], unpadded: 600 -> 582 -> 194 ->
    184 -> 46 -> 40 -> 10, so the first dense layer reads 200 x 10 = 2000 inputs; then
    [dense 1000, BN, ReLU, dropout 0.3] x 2 and 164 outputs."""
    with torch.device("meta"):
        model = build_model("basset")
    assert model.classifier[0].weight.shape == (1000, 2000)
    assert [m.weight.shape for m in model.features if isinstance(m, torch.nn.Conv1d)] == [
        (300, 4, 19), (200, 300, 11), (200, 200, 7)]
    assert model.classifier[8].weight.shape == (164, 1000)
    small = _randomise(build_model("basset", channels=[10, 8, 6], n_hidden=7, n_outputs=4), 2)
    w, x = _w(small), _x(3, 600, seed=1)
    h = x
    for conv, bn, pool in ((0, 1, 3), (4, 5, 4), (8, 9, 4)):
        h = F.conv1d(h, w[f"features.{conv}.weight"], w[f"features.{conv}.bias"])
        h = F.max_pool1d(F.relu(_bn(h, w, f"features.{bn}")), pool, pool)
    assert h.shape[1:] == (6, 10)
    h = h.flatten(1)
    for lin, bn in ((0, 1), (4, 5)):
        h = F.linear(h, w[f"classifier.{lin}.weight"], w[f"classifier.{lin}.bias"])
        h = F.relu(_bn(h, w, f"classifier.{bn}"))
    ref = F.linear(h, w["classifier.8.weight"], w["classifier.8.bias"])
    torch.testing.assert_close(small.double()(x), ref, rtol=1e-12, atol=1e-12)


def _chrombpnet_style_bpnet(w, x, n_layers, out_len):
    """BPNet as the official chrombpnet / basepairmodels Keras code writes it: every
    convolution 'valid', each residual input centre-cropped to its branch, the profile conv
    'valid' then centre-cropped to ``out_len``, the counts a global average of the tower."""
    h = F.relu(F.conv1d(x, w["iconv.weight"], w["iconv.bias"]))
    for i in range(1, n_layers + 1):
        conv = F.relu(F.conv1d(h, w[f"rconvs.{i - 1}.weight"], w[f"rconvs.{i - 1}.bias"],
                               dilation=2 ** i))
        crop = (h.shape[2] - conv.shape[2]) // 2
        h = conv + h[:, :, crop:h.shape[2] - crop]
    profile = F.conv1d(h, w["fconv.weight"], w["fconv.bias"])
    crop = profile.shape[2] // 2 - out_len // 2
    profile = profile[:, :, crop:crop + out_len]
    counts = F.linear(h.mean(dim=2), w["linear.weight"], w["linear.bias"])
    return profile, counts


def test_bpnet_trimming_is_bpnet_lites():
    assert [bpnet_lite_trimming(n) for n in (6, 8)] == [173, 557]
    model = build_model("bpnet", n_layers=6, n_filters=4)
    assert model.trimming == 173
    profile, counts = model(torch.zeros(1, 4, 2114))
    assert profile.shape == (1, 2, 1768) and counts.shape == (1, 1)
    assert build_model("bpnet").trimming == 557


def test_bpnet_and_chrombpnet_are_the_published_networks():
    """BPNet (Avsec et al. 2021; 2 strands) and the ChromBPNet accessibility model (1 strand,
    chrombpnet's bpnet_seq: 2114 -> 1000 bp with 8 layers) against the valid-convolution
    formulation: the 'same'-padded, trimmed layout gives identical outputs."""
    for n_layers, n_outputs, length, seed in ((3, 2, 300, 3), (8, 1, 2114, 4)):
        model = _randomise(build_model("bpnet", input_length=length, n_filters=5,
                                       n_layers=n_layers, n_outputs=n_outputs), seed)
        out_len = length - 2 * bpnet_lite_trimming(n_layers)
        x = _x(2, length, seed=seed)
        ref_profile, ref_counts = _chrombpnet_style_bpnet(_w(model), x, n_layers, out_len)
        profile, counts = model.double()(x)
        assert profile.shape == (2, n_outputs, out_len)
        torch.testing.assert_close(profile, ref_profile, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(counts, ref_counts, rtol=1e-12, atol=1e-12)


def test_default_cnn_is_what_its_file_describes():
    """plrp-default: conv 19 ('same') -> ReLU -> max-pool 4 -> conv 5 ('same') -> ReLU ->
    global max-pool -> dense -> ReLU -> dense; any window length."""
    model = _randomise(build_model("plrp-default", n_filters=7, n_filters2=6, n_hidden=5), 5)
    w = _w(model)
    for length in (200, 333):
        x = _x(3, length, seed=length)
        h = F.max_pool1d(F.relu(F.conv1d(x, w["conv1.weight"], w["conv1.bias"], padding=9)), 4)
        h = F.relu(F.conv1d(h, w["conv2.weight"], w["conv2.bias"], padding=2)).amax(dim=2)
        h = F.relu(F.linear(h, w["fc1.weight"], w["fc1.bias"]))
        ref = F.linear(h, w["fc2.weight"], w["fc2.bias"])
        torch.testing.assert_close(model.double()(x), ref, rtol=1e-12, atol=1e-12)
