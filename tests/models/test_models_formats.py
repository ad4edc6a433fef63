"""Checkpoints in kipoi's and selene's layouts (foreign_models.py), recognised without
--arch, converted by ``plrp convert``, and read in their own alphabet."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from torch import nn

from plrp.cli import main
from plrp.errors import InputError
from plrp.models.checkpoint import load_model, save_checkpoint
from plrp.models.architectures import build_model

from foreign_models import SeleneDeepSEA, kipoi_basset, kipoi_deepsea, randomise as _randomise

AGCT = [0, 2, 1, 3]  # ACGT channel index of each AGCT channel


@pytest.fixture(autouse=True)
def convert_verb(monkeypatch):
    """`plrp convert` is registered in plrp.cli.VERBS by the lead; make sure it is here."""
    import plrp.cli

    monkeypatch.setitem(plrp.cli.VERBS, "convert", "convert")


def _acgt(n, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=gen),
                                 4).permute(0, 2, 1).float()


def _logits(sequential, x):
    """The source model without its final sigmoid."""
    with torch.no_grad():
        return sequential[:-1](x)


def test_kipoi_deepsea_agct_reads_acgt_exactly(tmp_path):
    """Loaded from kipoi's layout without --arch, fed ACGT, plrp's model equals kipoi's
    network fed AGCT (kipoi's ReCodeAlphabet order)."""
    relu_net = _randomise(kipoi_deepsea(act=nn.ReLU), 1)
    path = tmp_path / "deepsea_cpu.pth"
    torch.save(relu_net.state_dict(), path)
    loaded = load_model(path)
    assert loaded.format == "kipoi-deepsea" and loaded.spec["name"] == "deepsea"
    assert loaded.meta["alphabet"] == "AGCT" and loaded.alphabet == "ACGT"
    assert loaded.spec["hparams"]["channels"] == [8, 6, 5]
    x = _acgt(4, 1000)
    kipoi_in = x[:, AGCT].unsqueeze(2).contiguous()  # (N, 4, 1, L) in AGCT order
    with torch.no_grad():
        ours = loaded.model(x)
    torch.testing.assert_close(ours, _logits(relu_net, kipoi_in), rtol=1e-5, atol=1e-6)
    # the order matters: reading ACGT as if it were AGCT is measurably wrong
    assert (ours - _logits(relu_net, x.unsqueeze(2).contiguous())).abs().max() > 1e-2
    # with kipoi's own nn.Threshold(0, 1e-6) activations, only a ~1e-6-per-unit shift remains
    threshold_net = kipoi_deepsea()
    threshold_net.load_state_dict(relu_net.state_dict())
    delta = (ours - _logits(threshold_net.eval(), kipoi_in)).abs().max()
    assert 0 < delta < 1e-4
    assert "Threshold" in loaded.meta["source"]["activations"]


def test_kipoi_deepsea_wrapped_in_kipois_sequential(tmp_path):
    """kipoi's veff model is Sequential(ReCodeAlphabet, deepsea_cpu): keys under '1.'."""
    net = _randomise(kipoi_deepsea(act=nn.ReLU), 2)
    path = tmp_path / "veff.pth"
    torch.save({f"1.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = load_model(path)
    x = _acgt(2, 1000, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x),
                                   _logits(net, x[:, AGCT].unsqueeze(2).contiguous()),
                                   rtol=1e-5, atol=1e-6)


def test_kipoi_basset_without_num_batches_tracked(tmp_path):
    net = _randomise(kipoi_basset(), 3)
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "pretrained_model_reloaded_th.pth"
    torch.save(state, path)
    loaded = load_model(path)
    assert loaded.format == "kipoi-basset" and loaded.meta["alphabet"] == "ACGT"
    hp = loaded.spec["hparams"]
    assert hp["kernel_sizes"] == [19, 11, 7] and hp["n_outputs"] == 4
    x = _acgt(3, 600, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), _logits(net, x.unsqueeze(3).contiguous()),
                                   rtol=1e-5, atol=1e-5)


def test_selene_deepsea(tmp_path):
    net = _randomise(SeleneDeepSEA(1000, 5), 4)
    path = tmp_path / "selene.pth.tar"
    x = _acgt(2, 1000, seed=3)
    with torch.no_grad():
        ref = _logits(net.classifier, net.conv_net(x).flatten(1))
    # selene's training checkpoints nest the weights, under NonStrandSpecific's "model."
    for state in (net.state_dict(), {f"model.{k}": v for k, v in net.state_dict().items()}):
        torch.save({"state_dict": state, "epoch": 3}, path)
        loaded = load_model(path, arch="deepsea")
        assert loaded.format == "selene-deepsea" and loaded.spec["hparams"]["n_hidden"] == 5
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), ref, rtol=1e-5, atol=1e-6)


def test_convert_cli_keeps_the_alphabet_and_names_the_outputs(tmp_path):
    net = _randomise(kipoi_deepsea(act=nn.ReLU), 5)
    src, dst = tmp_path / "deepsea_cpu.pth", tmp_path / "deepsea.safetensors"
    torch.save(net.state_dict(), src)
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(dst), "--arch-param",
                                       "output_names=CTCF,GATA1,REST,YY1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["format"] == "kipoi-deepsea" and summary["alphabet"] == "AGCT"
    with safe_open(str(dst), framework="pt") as fh:
        meta = json.loads(fh.metadata()["plrp.meta"])
        # stored as the source had it; permuted when loaded
        torch.testing.assert_close(fh.get_tensor("features.0.weight"),
                                   net.state_dict()["0.weight"].squeeze(2))
    assert meta["alphabet"] == "AGCT" and meta["output_names"] == ["CTCF", "GATA1", "REST", "YY1"]
    assert meta["source"]["format"] == "kipoi-deepsea" and len(meta["source"]["sha256"]) == 64
    loaded = load_model(dst)
    x = _acgt(2, 1000, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x),
                                   _logits(net, x[:, AGCT].unsqueeze(2).contiguous()),
                                   rtol=1e-5, atol=1e-6)
    assert loaded.output_names == ["CTCF", "GATA1", "REST", "YY1"]
    shown = CliRunner().invoke(main, ["inspect", str(dst)])
    assert shown.exit_code == 0 and "input:        one-hot ACGT" in shown.stdout
    assert "AGCT" in shown.stdout  # the source alphabet is shown with the conversion notes


def test_native_checkpoint_in_another_alphabet_is_permuted(tmp_path):
    model = _randomise(build_model("plrp-default", n_filters=6, n_filters2=5, n_hidden=4), 6)
    path = tmp_path / "tgca.safetensors"
    save_checkpoint(path, model, alphabet="TGCA")
    loaded = load_model(path)
    x = _acgt(3, 200, seed=5)
    tgca = x[:, [3, 2, 1, 0]]  # channel j of the TGCA one-hot is base "TGCA"[j]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(tgca), rtol=1e-5, atol=1e-6)


def test_unrecognised_weights_and_mismatches_fail_loudly(tmp_path):
    path = tmp_path / "mystery.pt"
    torch.save({"encoder.weight": torch.zeros(3, 4, 5)}, path)
    with pytest.raises(InputError, match=r"mystery\.pt: plain weights .*kipoi-deepsea.*--arch"):
        load_model(path)
    net = _randomise(kipoi_deepsea(act=nn.ReLU), 7)
    state = net.state_dict()
    state["12.1.weight"] = state["12.1.weight"][:, :100].clone()
    torch.save(state, path)
    with pytest.raises(InputError, match=r"tensor 'classifier\.0\.weight' has shape \(7, 100\) "
                                         r"but architecture deepsea expects \(7, 265\)"):
        load_model(path)
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "x.st")])
    assert result.exit_code == InputError.exit_code and not (tmp_path / "x.st").exists()
    assert "classifier.0.weight" in result.stderr
