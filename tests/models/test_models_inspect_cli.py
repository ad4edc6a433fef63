"""`plrp inspect`: bad checkpoints give one clear line and the InputError exit code."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from plrp.cli import main
from plrp.errors import InputError, PlrpError
from plrp.models.architectures import build_model
from plrp.models.checkpoint import save_checkpoint


def _run(*args):
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def _assert_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.startswith("plrp: error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert result.stdout == ""  # nothing half-printed on stdout


@pytest.fixture
def model():
    return build_model("plrp-default", n_filters=8, n_filters2=8, n_hidden=4)


def test_whole_model_pickle_is_listed_and_other_pickles_refused(tmp_path, model):
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    result = _run(path)
    assert result.exit_code == 0, result.output
    assert "whole.pt (pickled-module)" in result.stdout and "(N, 8, 200)" in result.stdout
    other = tmp_path / "other.pt"
    torch.save({**model.state_dict(), "optimizer": torch.optim.SGD}, other)
    _assert_error(_run(other, "--arch", "plrp-default"), InputError.exit_code,
                  "other.pt", "torch.optim.sgd.SGD", "never unpickles",
                  "torch.save(model.state_dict()")


class _CreatesAFile:
    """Unpickling this would create ``target``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_does_not_run(tmp_path):
    target = tmp_path / "created-by-pickle"
    path = tmp_path / "evil.pth"
    torch.save({"weight": _CreatesAFile(str(target))}, path)
    _assert_error(_run(path, "--arch", "plrp-default"), InputError.exit_code,
                  "evil.pth", "never unpickles")
    assert not target.exists()


def test_truncated_native_file(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    _assert_error(_run(path), InputError.exit_code, "m.safetensors", "truncated or corrupt")


def test_wrong_shape_and_missing_tensor(tmp_path, model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc1.weight"] = torch.zeros(4, 9)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    _assert_error(_run(path, "--arch", "plrp-default", "--arch-param", "n_filters=8",
                       "--arch-param", "n_filters2=8", "--arch-param", "n_hidden=4"),
                  InputError.exit_code, "w.pt", "'fc1.weight'", "(4, 9)", "(4, 8)")
    del state["fc1.weight"]
    torch.save(state, path)
    _assert_error(_run(path, "--arch", "plrp-default", "--arch-param", "n_filters=8",
                       "--arch-param", "n_filters2=8", "--arch-param", "n_hidden=4"),
                  InputError.exit_code, "w.pt", "'fc1.weight' missing")


def test_wrong_input_length_in_metadata(tmp_path, model):
    path = tmp_path / "m.safetensors"
    meta = {"input_length": 1000, "alphabet": "ACGT", "output_names": model.output_names}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"plrp.spec": json.dumps(model.spec()), "plrp.meta": json.dumps(meta)})
    _assert_error(_run(path), InputError.exit_code, "m.safetensors", "input_length 1000")


def test_window_other_than_a_fixed_input_length(tmp_path):
    fixed = build_model("deepsea", input_length=200, channels=[4, 4, 4], n_hidden=5,
                        n_outputs=2)
    path = tmp_path / "deepsea.safetensors"
    save_checkpoint(path, fixed)
    _assert_error(_run(path, "--window", "300"), PlrpError.exit_code,
                  "window 300 bp differs", "200 bp")


def test_state_dict_without_arch_and_bad_override(tmp_path, model):
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    _assert_error(_run(path), InputError.exit_code, "w.pt", "--arch")
    _assert_error(_run(path, "--arch", "plrp-default", "--arch-param", "n_filterz=3"),
                  PlrpError.exit_code, "no hyper-parameter 'n_filterz'")
    _assert_error(_run(path, "--arch", "plrp-default", "--arch-param", "n_filters"),
                  PlrpError.exit_code, "NAME=VALUE")


# ----------------------------------------------------------------- the layer listing

def _table(stdout):
    """Layer rows of the listing: {name: line}."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    return {line.split()[0]: line for line in lines[start + 1:] if line.strip()}


def test_listing_of_a_native_model(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, training={"epochs": 4})
    composite = tmp_path / "mine.toml"
    composite.write_text('[default]\nrule = "epsilon"\nepsilon = 1e-6\n\n'
                         '[names."fc1"]\nrule = "zplus"\n')
    result = _run(path, "--composite", composite, "--p-pos", "0.3")
    assert result.exit_code == 0, result.output
    out = result.stdout
    from plrp.models.checkpoint import file_sha256
    assert file_sha256(path) in out and "plrp-default" in out and "(N, 4, 200)" in out
    assert "output_0 (logit 0" in out and "epochs 4" in out
    rows = _table(out)
    # forward order, every layer of the model
    assert list(rows) == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                          "fc1", "relu3", "dropout", "fc2"]
    assert "(N, 8, 200)" in rows["conv1"] and "(N, 8, 50)" in rows["pool1"]
    assert "(N, 4)" in rows["fc1"] and "(N, 3)" in rows["fc2"]
    assert "zplus" in rows["fc1"] and "epsilon" in rows["fc2"]
    assert rows["conv1"].rstrip().endswith("no")           # the input layer is not pruned
    assert "yes (p_pos 0.3, p_neg 0.15)" in rows["conv2"]
    assert rows["relu1"].rstrip().endswith("no")


def test_listing_with_p_zero_prunes_nothing_and_arch_only(tmp_path):
    result = _run("--arch", "bpnet", "--arch-param", "n_layers=2", "--arch-param",
                  "n_filters=4", "--p-pos", "0")
    assert result.exit_code == 0, result.output
    rows = _table(result.stdout)
    assert "profile (bpnet profile" in result.stdout
    assert "(N, 2, 2008)" in result.stdout  # cropped by bpnet-lite's trimming 47 + 2 + 4
    assert all("yes (" not in line for line in rows.values())
    assert "no (p = 0)" in rows["rconvs.0"]


def test_inspect_without_arguments_shows_the_shipped_model():
    result = _run()
    assert result.exit_code == 0, result.output
    assert "default_model.safetensors (native)" in result.stdout
    assert list(_table(result.stdout))[0] == "conv1"
