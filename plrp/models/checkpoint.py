"""Checkpoints: read and write models without ever unpickling code.

Formats :func:`load_model` reads (the file's first bytes decide, not its extension):

- **native** (what :func:`save_checkpoint` writes): one ``.safetensors`` file; its string
  metadata holds ``plrp.spec`` (JSON: architecture name and hyper-parameters) and
  ``plrp.meta`` (JSON: input length, alphabet, output names, training record).
- **state_dict**: a PyTorch ``.pt``/``.pth`` file written by ``torch.save(model.state_dict())``
  (read with ``torch.load(weights_only=True)``), or a ``.safetensors`` file without plrp
  metadata, plus an architecture (``arch``: a built-in name, ``configs/architectures/<name>.toml``
  or a ``.toml`` path) and hyper-parameter ``overrides``.
- **bpnet-lite**: a bpnet-lite BPNet or ChromBPNet state_dict with ``arch="bpnet"``:
  hyper-parameters are read from the tensor shapes, control-track weights are dropped (plrp
  explains without control tracks) and a ChromBPNet's accessibility model is taken.

A pickled whole model (``torch.save(model)``) is refused: unpickling it could run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plrp.atomic import atomic_path
from plrp.errors import InputError, PlrpError
from plrp.models.architectures import ARCHITECTURES, GenomeCNN, build_model, hparam_names

log = logging.getLogger(__name__)

ALPHABET = "ACGT"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: The shipped default model (plrp-default architecture, trained on simulated data).
DEFAULT_MODEL_PATH = _PACKAGE_DIR / "data" / "default_model.safetensors"
_TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".torch"}
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of a legacy (non-zip) torch.save file


def architecture_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml`` architecture files, in order.

    The package's own ``plrp/configs/architectures`` (an installed wheel) and the source
    tree's ``configs/architectures`` (an editable install / a clone).
    """
    candidates = [_PACKAGE_DIR / "configs" / "architectures",
                  _PACKAGE_DIR.parent / "configs" / "architectures"]
    return [d for d in candidates if d.is_dir()]


@dataclass
class LoadedModel:
    """A model ready to explain, with what its checkpoint says about it.

    ``model`` is in eval mode on the CPU, float32. ``spec`` is ``{"name", "hparams"}``;
    ``meta`` holds ``input_length``, ``alphabet``, ``output_names``, ``training`` and, for
    converted files, ``source`` (what was mapped or dropped). ``format`` is one of
    ``"native"``, ``"state_dict"``, ``"bpnet-lite"``.
    """

    model: GenomeCNN
    spec: dict
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""
    format: str = "native"

    @property
    def input_length(self) -> int:
        """Window length in bp the model was built for."""
        return self.model.input_length

    @property
    def output_names(self) -> list[str]:
        """Target names users pick with ``--target``."""
        return self.model.output_names


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in outputs to identify the model)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: GenomeCNN, training: dict | None = None) -> None:
    """Write ``model`` as a native plrp checkpoint (atomically).

    ``training``: a JSON-serialisable record of how the model was trained (data, epochs,
    metrics); stored in the metadata under ``plrp.meta`` -> ``training``.
    """
    from safetensors.torch import save_file

    meta = {"input_length": model.input_length, "alphabet": ALPHABET,
            "output_names": model.output_names, "training": training or {}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"plrp.spec": json.dumps(model.spec()),
                                               "plrp.meta": json.dumps(meta)})


# --------------------------------------------------------------------------- overrides

def _parse_value(text: str):
    """A TOML value (``64``, ``0.1``, ``[1, 2]``, ``"a"``, ``true``) or else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str] | tuple[str, ...] | None) -> dict:
    """Parse ``["n_filters=64", "output_names=CTCF,GATA1", ...]`` into a dict.

    Values are read as TOML values (ints, floats, booleans, ``[lists]``, ``"strings"``);
    anything else is a plain string, and a comma-separated plain value becomes a list
    (``channels=320,480,960`` -> ``[320, 480, 960]``). Raises PlrpError on ``key`` without
    ``=`` or a repeated key.
    """
    out: dict = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise PlrpError(f"architecture parameter {item!r} must look like NAME=VALUE, "
                            "e.g. n_filters=64")
        if key in out:
            raise PlrpError(f"architecture parameter {key!r} given twice")
        parsed = _parse_value(value)
        if isinstance(parsed, str) and "," in parsed and not value.startswith(('"', "'")):
            parsed = [_parse_value(v.strip()) for v in value.split(",")]
        out[key] = parsed
    return out


def _normalise_hparams(name: str, hparams: dict, where: str) -> dict:
    known = hparam_names(name)
    for key in hparams:
        if key not in known:
            raise PlrpError(f"{where}: architecture {name!r} has no hyper-parameter {key!r}; "
                            f"known: {', '.join(known)}")
    hparams = dict(hparams)
    if isinstance(hparams.get("output_names"), str):
        hparams["output_names"] = [hparams["output_names"]]
    return hparams


def _read_arch_toml(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such architecture file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a valid TOML architecture file ({err})") from None
    name = data.get("name")
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise InputError(f"{path}: 'name' must be one of {', '.join(ARCHITECTURES)}, "
                         f"got {name!r}")
    hparams = data.get("hparams", {})
    if not isinstance(hparams, dict):
        raise InputError(f"{path}: [hparams] must be a table")
    extra = sorted(set(data) - {"name", "hparams"})
    if extra:
        raise InputError(f"{path}: unknown key {extra[0]!r} (expected 'name' and [hparams])")
    try:
        hparams = _normalise_hparams(name, hparams, str(path))
    except PlrpError as err:
        raise InputError(str(err)) from None
    return {"name": name, "hparams": hparams}


def available_architectures() -> list[str]:
    """Names ``--arch`` accepts: architecture files first, then built-in names."""
    names = [p.stem for d in architecture_dirs() for p in sorted(d.glob("*.toml"))]
    names += [n for n in ARCHITECTURES if n not in names]
    return list(dict.fromkeys(names))


def resolve_architecture(arch: str | Path, overrides: dict | None = None) -> dict:
    """Turn ``--arch`` (+ overrides) into a spec ``{"name": ..., "hparams": {...}}``.

    ``arch``: a ``.toml`` path, the stem of a file in ``configs/architectures/``, or a
    built-in architecture name. ``overrides`` replace the file's hyper-parameters.
    """
    text = str(arch)
    path = Path(text).expanduser()
    if text.endswith(".toml") or path.is_file():
        spec = _read_arch_toml(path)
    else:
        found = [d / f"{text}.toml" for d in architecture_dirs() if (d / f"{text}.toml").is_file()]
        if found:
            spec = _read_arch_toml(found[0])
        elif text in ARCHITECTURES:
            spec = {"name": text, "hparams": {}}
        else:
            raise PlrpError(f"unknown architecture {text!r}; give a .toml file or one of: "
                            f"{', '.join(available_architectures())}")
    hparams = dict(spec["hparams"])
    hparams.update(_normalise_hparams(spec["name"], overrides or {}, "--arch-param"))
    return {"name": spec["name"], "hparams": hparams}


# --------------------------------------------------------------------------- reading files

def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _refuse_pickle(path: Path, err: Exception) -> InputError:
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = (f"a pickled Python object ({found.group(1)})" if found
            else "a pickle that is not a plain tensor dictionary")
    return InputError(
        f"{path}: holds {what}; plrp never unpickles checkpoints because that can run code. "
        "Export the weights instead: torch.save(model.state_dict(), 'model.pt'), then load "
        "them with --arch NAME")


def _load_torch_file(path: Path) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on junk
            with open(path, "rb") as fh:  # a file object: torch must not guess from the name
                obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refuse_pickle(path, err) from None
    except Exception as err:  # zip/miniz errors, EOF, junk bytes: all mean a bad file
        raise InputError(f"{path}: not a readable PyTorch file, truncated or corrupt "
                         f"({_first_line(err)})") from None
    return _state_dict_from(obj, path)


def _state_dict_from(obj, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dictionary inside what torch.load returned (a state_dict, possibly nested
    under 'state_dict' / 'model_state_dict' as training checkpoints do)."""
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state_dict "
                         "(a dictionary of tensors)")
    for key in ("state_dict", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                             "save only model.state_dict()")
    return {str(k): v for k, v in obj.items()}


def _load_safetensors_file(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"{path}: not a readable safetensors file, truncated or corrupt "
                         f"({_first_line(err)})") from None
    return tensors, metadata


def _read_checkpoint(path: Path) -> tuple[dict, dict | None]:
    """(tensors, safetensors metadata or None for a PyTorch file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read checkpoint ({err.strerror})") from None
    if not head:
        raise InputError(f"{path}: checkpoint file is empty")
    # safetensors: 8-byte little-endian header size, then the JSON header
    is_safetensors = (len(head) == 9 and head[8:9] == b"{"
                      and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8)
    if head.startswith(_ZIP_MAGIC) or (not is_safetensors and (
            head[0] == _PICKLE_PROTO or path.suffix.lower() in _TORCH_SUFFIXES)):
        return _load_torch_file(path), None
    return _load_safetensors_file(path)


# --------------------------------------------------------------------------- mapping weights

def _strip_prefix(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items()}


def _unwrap(tensors: dict, notes: dict) -> dict:
    """Strip wrapper prefixes: DataParallel ``module.``, bpnet-lite's Control/Count wrappers
    ``model.``, and ChromBPNet's ``accessibility.`` (its ``bias.`` model is dropped)."""
    changed = True
    while changed and tensors:
        changed = False
        for prefix in ("module.", "model."):
            if all(k.startswith(prefix) for k in tensors):
                tensors, changed = _strip_prefix(tensors, prefix), True
        if any(k.startswith("accessibility.") for k in tensors):
            dropped = sorted({k.split(".", 1)[0] for k in tensors
                              if not k.startswith("accessibility.")})
            others = [d for d in dropped if d != "bias"]
            if others:  # let the generic check name the stray tensor
                return tensors
            notes["chrombpnet"] = ("accessibility model only; the Tn5 bias model "
                                   f"({sum(k.startswith('bias.') for k in tensors)} tensors) "
                                   "is not explained")
            tensors = {k[len("accessibility."):]: v for k, v in tensors.items()
                       if k.startswith("accessibility.")}
            changed = True
    return tensors


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _map_bpnet(tensors: dict, spec: dict, user_overrides: dict, path: Path,
               notes: dict) -> tuple[dict, dict]:
    """bpnet-lite BPNet weights -> plrp's BPNet: hyper-parameters from the tensor shapes,
    control-track input channels removed, missing output biases set to zero.

    Dropping the control weights is exact for zero control tracks: the profile conv then
    sees zeros on those channels and the count head sees log(0 + 1) = 0.
    """
    for key in ("iconv.weight", "fconv.weight", "linear.weight"):
        if key not in tensors:
            raise InputError(f"{path}: tensor {key!r} missing (needed for architecture bpnet)")
    iconv, fconv, linear = tensors["iconv.weight"], tensors["fconv.weight"], tensors["linear.weight"]
    if iconv.dim() != 3 or fconv.dim() != 3 or linear.dim() != 2:
        bad = next(k for k, t, d in (("iconv.weight", iconv, 3), ("fconv.weight", fconv, 3),
                                     ("linear.weight", linear, 2)) if t.dim() != d)
        raise InputError(f"{path}: tensor {bad!r} has shape {_shape(tensors[bad])}, "
                         "not a bpnet-lite weight")
    layers = sorted({int(m.group(1)) for k in tensors
                     if (m := re.fullmatch(r"rconvs\.(\d+)\.weight", k))})
    if layers != list(range(len(layers))):
        raise InputError(f"{path}: residual convolutions rconvs.{layers} are not numbered "
                         "0..n-1")
    n_filters = int(iconv.shape[0])
    detected = {"n_filters": n_filters, "n_layers": len(layers),
                "n_outputs": int(fconv.shape[0]), "profile_kernel": int(fconv.shape[2])}
    for key, value in detected.items():
        if key in user_overrides and user_overrides[key] != value:
            raise InputError(f"{path}: --arch-param {key}={user_overrides[key]} disagrees with "
                             f"the weights, which have {key}={value}")
    n_control = int(fconv.shape[1]) - n_filters
    n_count_control = int(linear.shape[1]) - n_filters
    if n_control < 0 or n_count_control not in (0, 1):
        raise InputError(f"{path}: tensors 'fconv.weight' {_shape(fconv)} and 'linear.weight' "
                         f"{_shape(linear)} do not fit iconv's {n_filters} filters")
    tensors = dict(tensors)
    tensors["fconv.weight"] = fconv[:, :n_filters].contiguous()
    tensors["linear.weight"] = linear[:, :n_filters].contiguous()
    if n_control or n_count_control:
        notes["control_tracks_dropped"] = n_control
        notes["count_control_inputs_dropped"] = n_count_control
    zero_biases = []
    for key, size in (("fconv.bias", detected["n_outputs"]), ("linear.bias", 1)):
        if key not in tensors:  # bpnet-lite's profile_output_bias / count_output_bias = False
            tensors[key] = torch.zeros(size, dtype=fconv.dtype)
            zero_biases.append(key)
    if zero_biases:
        notes["zero_biases_added"] = zero_biases
    hparams = dict(spec["hparams"])
    hparams.update(detected)
    return tensors, {"name": spec["name"], "hparams": hparams}


def _load_weights(model: GenomeCNN, tensors: dict, path: Path) -> None:
    """Copy ``tensors`` into ``model`` after checking names, shapes and values."""
    expected = model.state_dict()
    name = model.arch_name
    missing = [k for k in expected if k not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{path}: tensor {missing[0]!r} missing{more}; architecture {name} "
                         f"needs it with shape {_shape(expected[missing[0]])}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise InputError(f"{path}: unexpected tensor {unexpected[0]!r} "
                         f"{_shape(tensors[unexpected[0]])}{more}; architecture {name} has no "
                         "such parameter (wrong --arch?)")
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise InputError(f"{path}: tensor {key!r} has shape {_shape(got)} but architecture "
                             f"{name} expects {_shape(want)} (check --arch / --arch-param)")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise InputError(f"{path}: tensor {key!r} holds NaN or infinite values")
        if got.is_complex() or (want.is_floating_point() and not got.is_floating_point()):
            raise InputError(f"{path}: tensor {key!r} has dtype {got.dtype}, expected a "
                             "floating-point tensor")
    model.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected}, strict=True)


def _json_metadata(metadata: dict, key: str, path: Path) -> dict:
    try:
        value = json.loads(metadata.get(key, "{}"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: metadata {key!r} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: metadata {key!r} must be a JSON object")
    return value


def _check_meta(meta: dict, model: GenomeCNN, path: Path, overridden=()) -> None:
    """The metadata must agree with the architecture, except where the user overrode it
    (e.g. renaming the outputs with --arch-param output_names=...)."""
    alphabet = meta.get("alphabet", ALPHABET)
    if alphabet != ALPHABET:
        raise InputError(f"{path}: metadata alphabet {alphabet!r}; plrp feeds one-hot DNA in "
                         f"{ALPHABET} order, so this model would read the wrong bases")
    length = meta.get("input_length", model.input_length)
    if length != model.input_length and "input_length" not in overridden:
        raise InputError(f"{path}: metadata input_length {length!r} disagrees with the "
                         f"architecture's input_length {model.input_length}")
    names = meta.get("output_names", model.output_names)
    if list(names) != model.output_names and "output_names" not in overridden:
        raise InputError(f"{path}: metadata output_names {names} disagree with the "
                         f"architecture's outputs {model.output_names}")


def _build(spec: dict, path: Path) -> GenomeCNN:
    try:
        return build_model(spec["name"], **spec.get("hparams", {}))
    except PlrpError as err:
        raise InputError(f"{path}: {err}") from None


def load_model(path: str | Path | None = None, arch: str | Path | None = None,
               overrides: dict | None = None) -> LoadedModel:
    """Load a model from any supported checkpoint, never unpickling code.

    ``path``: a native ``.safetensors`` checkpoint, a PyTorch state_dict (``.pt``/``.pth``)
    or a plain ``.safetensors`` state_dict; None = the shipped default model
    (:data:`DEFAULT_MODEL_PATH`). ``arch``: required for state_dicts (see
    :func:`resolve_architecture`); for a native file it must name the stored architecture.
    ``overrides``: hyper-parameters replacing the architecture file's (see
    :func:`parse_overrides`). Returns the model in eval mode, float32, on the CPU.
    Raises InputError (one line naming the file and the tensor) for bad files and
    PlrpError for bad options.
    """
    path = Path(path).expanduser() if path is not None else DEFAULT_MODEL_PATH
    if path == DEFAULT_MODEL_PATH and not path.is_file():
        raise InputError(f"{path}: the shipped default model is missing from this installation")
    overrides = dict(overrides or {})
    tensors, metadata = _read_checkpoint(path)

    if metadata is not None and "plrp.spec" in metadata:
        spec = _json_metadata(metadata, "plrp.spec", path)
        meta = _json_metadata(metadata, "plrp.meta", path)
        if not isinstance(spec.get("name"), str) or not isinstance(spec.get("hparams", {}), dict):
            raise InputError(f"{path}: metadata 'plrp.spec' needs a 'name' and 'hparams'")
        if arch is not None:
            wanted = resolve_architecture(arch)["name"]
            if wanted != spec["name"]:
                raise InputError(f"{path}: is a native {spec['name']} checkpoint but --arch "
                                 f"says {wanted}; leave --arch out for native files")
        if spec["name"] not in ARCHITECTURES:
            raise InputError(f"{path}: unknown architecture {spec['name']!r} in metadata")
        hparams = dict(spec.get("hparams", {}))
        hparams.update(_normalise_hparams(spec["name"], overrides, "--arch-param"))
        spec = {"name": spec["name"], "hparams": hparams}
        model = _build(spec, path)
        _check_meta(meta, model, path, overridden=set(overrides))
        meta = {**meta, "input_length": model.input_length, "output_names": model.output_names}
        _load_weights(model, tensors, path)
        fmt = "native"
    else:
        if arch is None:
            hint = (" (its tensor names look like bpnet-lite's: use --arch bpnet)"
                    if "iconv.weight" in _unwrap(dict(tensors), {}) else "")
            raise InputError(f"{path}: plain weights without plrp metadata; name their "
                             f"architecture with --arch{hint}")
        spec = resolve_architecture(arch, overrides)
        notes: dict = {}
        tensors = _unwrap(tensors, notes)
        if spec["name"] == "bpnet":
            tensors, spec = _map_bpnet(tensors, spec, overrides, path, notes)
        fmt = "bpnet-lite" if notes else "state_dict"
        model = _build(spec, path)
        _load_weights(model, tensors, path)
        meta = {"input_length": model.input_length, "alphabet": ALPHABET,
                "output_names": model.output_names, "training": {}}
        if notes:
            meta["source"] = notes
            log.info("%s: %s", path, json.dumps(notes))

    model = model.float().eval()
    return LoadedModel(model, model.spec(), meta, path, file_sha256(path), fmt)


def architecture_only(arch: str | Path, overrides: dict | None = None) -> LoadedModel:
    """An architecture with freshly initialised weights (``format="architecture"``, no path):
    what ``plrp inspect --arch NAME`` shows when no checkpoint is given."""
    spec = resolve_architecture(arch, overrides)
    model = build_model(spec["name"], **spec["hparams"])
    meta = {"input_length": model.input_length, "alphabet": ALPHABET,
            "output_names": model.output_names, "training": {}}
    return LoadedModel(model, model.spec(), meta, None, "", "architecture")


def load_native(path: str | Path) -> LoadedModel:
    """Load a native ``.safetensors`` checkpoint written by :func:`save_checkpoint`."""
    return load_model(path)


def check_input_length(loaded: LoadedModel, length: int) -> None:
    """Raise PlrpError unless the model can explain windows of ``length`` bp.

    Models whose outputs depend on a fixed length (flatten into a dense layer, a fixed
    profile crop) run only on ``input_length``; models with a global pooling
    (``accepts_any_length``) run on any length their layers can take.
    """
    model, expected = loaded.model, loaded.input_length
    if length == expected:
        return
    if not getattr(model, "accepts_any_length", False):
        raise PlrpError(f"window {length} bp differs from the model's input length {expected} "
                        f"bp; architecture {model.arch_name} has no global pooling, so it "
                        f"only explains {expected} bp windows")
    if length < 1:
        raise PlrpError(f"window must be at least 1 bp, got {length}")
    try:
        with torch.no_grad():
            model(torch.zeros(1, len(ALPHABET), length, dtype=next(model.parameters()).dtype))
    except RuntimeError as err:
        raise PlrpError(f"window {length} bp is too short for architecture "
                        f"{model.arch_name} ({_first_line(err)})") from None
