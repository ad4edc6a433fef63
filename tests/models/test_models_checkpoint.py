"""Checkpoint formats: round trips, overrides, architecture files and safe loading."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from plrp.errors import InputError, PlrpError
from plrp.models.architectures import ARCHITECTURES, build_model
from foreign_models import randomise
from plrp.models.checkpoint import (DEFAULT_MODEL_PATH, LoadedModel, architecture_dirs,
                                    check_input_length, load_model, parse_overrides,
                                    resolve_architecture, save_checkpoint)

NAMES = ["CTCF", "GATA1", "REST"]


def _trained_like(model):
    """Non-default values everywhere (a fresh model's zero biases / unit running_var would
    hide a mapping error)."""
    return randomise(model, 1)


def _x(n, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=gen),
                                       4).permute(0, 2, 1).float()


@pytest.fixture
def default_model():
    return _trained_like(build_model("plrp-default", output_names=NAMES))


def test_native_round_trip_keeps_outputs_spec_and_metadata(tmp_path, default_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, default_model, training={"epochs": 7, "data": "simulated"})
    loaded = load_model(path)
    assert isinstance(loaded, LoadedModel) and loaded.format == "native"
    x = _x(5, 200)
    assert torch.equal(loaded.model(x), default_model(x))
    assert loaded.spec == default_model.spec()
    assert loaded.input_length == 200 and loaded.output_names == NAMES
    assert loaded.meta["alphabet"] == "ACGT" and loaded.meta["training"]["epochs"] == 7
    assert len(loaded.sha256) == 64 and loaded.path == path
    assert not loaded.model.training


def test_state_dict_with_arch_name_and_overrides(tmp_path):
    model = _trained_like(build_model("plrp-default", n_filters=16, n_outputs=2,
                                      output_names=["a", "b"]))
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    overrides = parse_overrides(["n_filters=16", "n_outputs=2", "output_names=a,b"])
    loaded = load_model(path, arch="plrp-default", arch_params=overrides)
    assert loaded.format == "state_dict"
    assert loaded.output_names == ["a", "b"] and loaded.spec["hparams"]["n_filters"] == 16
    x = _x(3, 200)
    assert torch.equal(loaded.model(x), model(x))


def test_state_dict_with_toml_file_and_batchnorm(tmp_path):
    """Basset (BatchNorm running statistics included) from an architecture file."""
    hp = dict(input_length=120, channels=[8, 6, 5], kernel_sizes=[7, 5, 3], pools=[2, 2, 2],
              n_hidden=12, n_outputs=3)
    model = _trained_like(build_model("basset", **hp))
    toml = tmp_path / "small_basset.toml"
    toml.write_text('# test architecture\nname = "basset"\n\n[hparams]\n'
                    + "".join(f"{k} = {json.dumps(v)}\n" for k, v in hp.items()))
    path = tmp_path / "basset.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, arch=str(toml))
    x = _x(4, 120)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.input_length == 120


def test_nested_state_dict_and_module_prefix(tmp_path, default_model):
    """Training checkpoints nest the weights; DataParallel prefixes them with 'module.'."""
    path = tmp_path / "train.ckpt"
    wrapped = {f"module.{k}": v for k, v in default_model.state_dict().items()}
    torch.save({"state_dict": wrapped}, path)
    loaded = load_model(path, arch="plrp-default",
                        arch_params={"output_names": NAMES})
    x = _x(2, 200)
    assert torch.equal(loaded.model(x), default_model(x))


def test_plain_safetensors_needs_arch(tmp_path, default_model):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in default_model.state_dict().items()}, str(path))
    with pytest.raises(InputError, match=r"plain\.safetensors: plain weights .*--arch"):
        load_model(path)
    loaded = load_model(path, arch="plrp-default", arch_params={"output_names": NAMES})
    x = _x(2, 200)
    assert torch.equal(loaded.model(x), default_model(x))


def test_parse_overrides_values():
    got = parse_overrides(["n_filters=64", "dropout=0.25", "channels=320,480,960",
                           'output_names=["x", "y"]', "output_names2=CTCF", "flag=true"])
    assert got == {"n_filters": 64, "dropout": 0.25, "channels": [320, 480, 960],
                   "output_names": ["x", "y"], "output_names2": "CTCF", "flag": True}
    assert isinstance(got["n_filters"], int)
    with pytest.raises(PlrpError, match="NAME=VALUE"):
        parse_overrides(["n_filters"])
    with pytest.raises(PlrpError, match="given twice"):
        parse_overrides(["a=1", "a=2"])


def test_overrides_change_the_built_model_and_unknown_ones_fail():
    spec = resolve_architecture("bpnet", {"n_filters": 8, "n_layers": 2})
    model = build_model(spec["name"], **spec["hparams"])
    assert model.iconv.out_channels == 8 and len(model.rconvs) == 2
    assert spec["hparams"]["input_length"] == 2114  # the file's value stays
    with pytest.raises(PlrpError, match="no hyper-parameter 'n_filter'"):
        resolve_architecture("bpnet", {"n_filter": 8})
    with pytest.raises(PlrpError, match="unknown architecture 'resnet'"):
        resolve_architecture("resnet")


@pytest.mark.parametrize("name", ["deepsea", "basset", "bpnet", "plrp-default"])
def test_every_architecture_file_builds_and_documents_itself(name):
    files = [d / f"{name}.toml" for d in architecture_dirs() if (d / f"{name}.toml").is_file()]
    assert files, f"configs/architectures/{name}.toml missing"
    text = files[0].read_text()
    spec = resolve_architecture(name)
    assert spec["name"] == name
    length = spec["hparams"]["input_length"]
    assert f"{length}" in text and "Outputs" in text  # documented in the comments
    model = build_model(spec["name"], **spec["hparams"])
    assert model.input_length == length
    out = model(torch.zeros(1, 4, length))
    outs = out if isinstance(out, tuple) else (out,)
    for target, t in model.target_specs().items():
        head = outs[t["head"]]
        if t["kind"] == "logit":
            assert t["index"] < head.shape[1]
        else:
            assert t["kind"] in ("softmax_profile", "bpnet_profile") and head.dim() == 3
    assert set(model.output_names) == set(model.target_specs())


def test_architecture_files_cover_all_builtins():
    stems = {p.stem for d in architecture_dirs() for p in d.glob("*.toml")}
    assert set(ARCHITECTURES) <= stems


def test_bad_architecture_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bpnet"\n[hparams]\nn_filterz = 3\n')
    with pytest.raises(InputError, match=r"bad\.toml: .*no hyper-parameter 'n_filterz'"):
        resolve_architecture(bad)
    bad.write_text('name = "bpnet\n')
    with pytest.raises(InputError, match=r"bad\.toml: not a valid TOML"):
        resolve_architecture(bad)
    with pytest.raises(InputError, match="no such architecture file"):
        resolve_architecture(tmp_path / "absent.toml")


def test_check_input_length():
    fixed = LoadedModel(build_model("deepsea", input_length=200, channels=[4, 4, 4],
                                    n_hidden=5, n_outputs=2), {})
    check_input_length(fixed, 200)
    with pytest.raises(PlrpError, match="window 300 bp differs .* input length 200 bp"):
        check_input_length(fixed, 300)
    flexible = LoadedModel(build_model("plrp-default"), {})
    check_input_length(flexible, 500)  # global max-pool: any window that fits
    with pytest.raises(PlrpError, match="too short"):
        check_input_length(flexible, 2)


def test_default_model_path_is_the_packaged_file():
    assert DEFAULT_MODEL_PATH.name == "default_model.safetensors"
    assert DEFAULT_MODEL_PATH.parent.name == "data"
    assert DEFAULT_MODEL_PATH.parent.parent == Path(__import__("plrp").__file__).parent


# ----------------------------------------------------------------- errors (library level)

class _ModelWithSideEffects(torch.nn.Module):
    """Unpickling this model for real would create ``target`` (its __setstate__ runs)."""

    def __init__(self, target):
        super().__init__()
        self.target = str(target)
        self.conv1 = torch.nn.Conv1d(4, 2, 3)

    def __setstate__(self, state):
        open(state["target"], "w").close()
        super().__setstate__(state)


def test_whole_pickled_model_is_read_without_running_its_code(tmp_path, default_model):
    path = tmp_path / "whole.pt"
    torch.save(default_model, path)
    loaded = load_model(path)  # class and hyper-parameters recorded in the pickle
    assert loaded.format == "pickled-module" and loaded.spec == default_model.spec()
    x = _x(2, 200)
    assert torch.equal(loaded.model(x), default_model(x))
    target = tmp_path / "ran"
    evil = tmp_path / "evil_model.pt"
    torch.save(_ModelWithSideEffects(target), evil)
    with pytest.raises(InputError, match=r"evil_model\.pt: tensor 'conv2\.weight' missing"):
        load_model(evil, arch="plrp-default")
    with pytest.raises(InputError, match=r"evil_model\.pt: plain weights .* --arch"):
        load_model(evil)
    assert not target.exists()
    torch.load(evil, weights_only=False)  # the check above could fail: a real load runs it
    assert target.exists()


class _CreatesAFile:
    """Unpickling this would create ``target`` (what a malicious checkpoint would do)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
def test_malicious_pickle_never_runs(tmp_path, writer):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"conv1.weight": torch.zeros(3), "x": _CreatesAFile(target)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    # the payload works when unpickled by a plain pickle load (so the test can fail)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesAFile(probe))).close()
    assert probe.exists()
    with pytest.raises(InputError, match=r"evil\.pt: holds .*never unpickles"):
        load_model(path, arch="plrp-default")
    assert not target.exists()


def test_truncated_files(tmp_path, default_model):
    native = tmp_path / "m.safetensors"
    save_checkpoint(native, default_model)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(native.read_bytes()[: native.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.safetensors: not a readable safetensors"):
        load_model(cut)
    pt = tmp_path / "m.pt"
    torch.save(default_model.state_dict(), pt)
    cut_pt = tmp_path / "cut.pt"
    cut_pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.pt: not a readable PyTorch file"):
        load_model(cut_pt, arch="plrp-default")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_model(empty, arch="plrp-default")
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_model(tmp_path / "absent.safetensors")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_tensor_errors_name_the_tensor(tmp_path, default_model):
    path = tmp_path / "w.pt"
    state = _state(default_model)
    state["conv2.weight"] = state["conv2.weight"][:, :, :3]
    torch.save(state, path)
    with pytest.raises(InputError, match=r"w\.pt: tensor 'conv2\.weight' has shape "
                                         r"\(64, 64, 3\) but .* expects \(64, 64, 5\)"):
        load_model(path, arch="plrp-default")
    state = _state(default_model)
    del state["fc1.bias"]
    torch.save(state, path)
    with pytest.raises(InputError, match=r"w\.pt: tensor 'fc1\.bias' missing"):
        load_model(path, arch="plrp-default")
    state = _state(default_model)
    state["fc3.weight"] = torch.zeros(2, 2)
    torch.save(state, path)
    with pytest.raises(InputError, match=r"w\.pt: unexpected tensor 'fc3\.weight'"):
        load_model(path, arch="plrp-default")
    state = _state(default_model)
    state["fc2.weight"][0, 0] = float("nan")
    torch.save(state, path)
    with pytest.raises(InputError, match=r"tensor 'fc2\.weight' holds NaN"):
        load_model(path, arch="plrp-default")


def _native_with_meta(path, model, **changes):
    meta = {"input_length": model.input_length, "alphabet": "ACGT",
            "output_names": model.output_names, "training": {}}
    meta.update(changes)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"plrp.spec": json.dumps(model.spec()), "plrp.meta": json.dumps(meta)})


def test_metadata_disagreements(tmp_path, default_model):
    path = tmp_path / "m.safetensors"
    _native_with_meta(path, default_model, input_length=1000)
    with pytest.raises(InputError, match=r"m\.safetensors: metadata input_length 1000 "
                                         r"disagrees .* 200"):
        load_model(path)
    _native_with_meta(path, default_model, alphabet="ACGU")
    with pytest.raises(InputError, match=r"metadata: alphabet 'ACGU' is not an order"):
        load_model(path)
    _native_with_meta(path, default_model, output_names=["a", "b", "c"])
    with pytest.raises(InputError, match=r"metadata output_names"):
        load_model(path)
    save_file({k: v.contiguous() for k, v in default_model.state_dict().items()}, str(path),
              metadata={"plrp.spec": "{not json"})
    with pytest.raises(InputError, match=r"metadata 'plrp\.spec' is not valid JSON"):
        load_model(path)


def test_native_file_with_a_different_arch_is_refused(tmp_path, default_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, default_model)
    with pytest.raises(InputError, match="native plrp-default checkpoint but --arch says bpnet"):
        load_model(path, arch="bpnet")


def test_shipped_default_model_loads():
    loaded = load_model()
    assert loaded.path == DEFAULT_MODEL_PATH and loaded.format == "native"
    assert loaded.spec["name"] == "plrp-default" and loaded.input_length == 200
    assert loaded.output_names == loaded.meta["output_names"] and loaded.output_names
    out = loaded.model(torch.zeros(2, 4, 200))
    assert out.shape == (2, len(loaded.output_names)) and bool(torch.isfinite(out).all())


def test_native_outputs_can_be_renamed_by_override(tmp_path, default_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, default_model)
    loaded = load_model(path, arch_params=parse_overrides(["output_names=x,y,z"]))
    assert loaded.output_names == ["x", "y", "z"] and loaded.meta["output_names"] == ["x", "y", "z"]
    x = _x(2, 200)
    assert torch.equal(loaded.model(x), default_model(x))


@pytest.mark.parametrize("name", ["deepsea", "basset", "bpnet", "plrp-default"])
def test_architecture_file_values_equal_the_builtin_defaults(name):
    """An install without configs/ falls back to the built-in names: same models."""
    from plrp.models.architectures import ARCHITECTURES
    import inspect

    file_hparams = resolve_architecture(name)["hparams"]
    defaults = {k: p.default for k, p in
                inspect.signature(ARCHITECTURES[name].__init__).parameters.items()
                if k != "self"}
    for key, value in file_hparams.items():
        default = defaults[key]
        if name == "bpnet" and key == "trimming" and default is None:
            default = (defaults["input_length"] - 1000) // 2  # BPNet's rule for None
        assert value == (list(default) if isinstance(default, tuple) else default), key


def test_format_is_read_from_the_bytes_not_the_extension(tmp_path, default_model):
    native_named_pt = tmp_path / "native.pt"
    save_checkpoint(native_named_pt, default_model)
    assert load_model(native_named_pt).format == "native"
    torch_named_safetensors = tmp_path / "weights.safetensors"
    torch.save(default_model.state_dict(), torch_named_safetensors)
    loaded = load_model(torch_named_safetensors, arch="plrp-default",
                        arch_params={"output_names": NAMES})
    x = _x(2, 200)
    assert torch.equal(loaded.model(x), default_model(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load_as_float32(tmp_path, default_model, dtype):
    path = tmp_path / "half.pt"
    torch.save({k: v.to(dtype) for k, v in default_model.state_dict().items()}, path)
    loaded = load_model(path, arch="plrp-default", arch_params={"output_names": NAMES})
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, default_model.state_dict()[key].to(dtype).float()), key


def test_corrupt_whole_model_archive_is_one_clean_error(tmp_path, default_model):
    """A whole pickled model whose tensor storage is cut short: an InputError, no traceback."""
    import zipfile

    path = tmp_path / "whole.pt"
    torch.save(default_model, path)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if "/data/" in item.filename and not item.filename.endswith("data.pkl"):
                data = data[: len(data) // 2 + 1]  # odd byte count, too few elements
            dst.writestr(item, data)
    with pytest.raises(InputError, match=r"bad\.pt: not a readable PyTorch file"):
        load_model(bad)


def test_saving_the_same_model_gives_the_same_bytes(tmp_path):
    """safetensors writes its metadata map in a random order; the checkpoint's header is
    sorted, so one model has one sha256 (reports and provenance name models by it)."""
    import hashlib

    import torch

    from plrp.models.architectures import build_model
    from plrp.models.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("plrp-default")
    digests = set()
    for i in range(8):
        path = tmp_path / f"m{i}.safetensors"
        save_checkpoint(path, model, training={"epochs": 3, "auroc": [0.9, 0.8]})
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
    loaded = load_model(path)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value)
