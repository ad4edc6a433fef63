"""Checkpoints: read and write models without ever unpickling code.

Formats :func:`load_model` reads (the file's first bytes decide, not its extension):

- **native** (what :func:`save_checkpoint` and ``plrp convert`` write): one ``.safetensors``
  file; its string metadata holds ``plrp.spec`` (JSON: architecture name and hyper-parameters)
  and ``plrp.meta`` (JSON: input length, alphabet, output names, training record, source).
- **state_dict**: a PyTorch file written by ``torch.save(model.state_dict())`` (read with
  ``torch.load(weights_only=True)``) or a ``.safetensors`` file without plrp metadata.
- **whole pickled model** (``torch.save(model)``, bpnet-lite's ``.torch``): its tensors are
  read by :mod:`plrp.models.pickled`, which records the model's classes and never imports or
  runs them; the state_dict is rebuilt from the recorded modules.

Weights in another package's layout (kipoi / selene DeepSEA, kipoi Basset, bpnet-lite BPNet
and ChromBPNet; :data:`plrp.models.formats.LAYOUTS`) are recognised from their tensor names
and shapes; other state_dicts need an architecture (``arch``). Wrapper prefixes
(``_orig_mod.``, ``module.``, ``model.``) are removed.

The alphabet is part of a model: a checkpoint whose first layer reads another order (kipoi's
DeepSEA reads AGCT) is loaded with that layer's input channels permuted, so ``model`` always
takes one-hot ACGT and gives the same outputs as the original on its own order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import tomllib
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plrp.atomic import atomic_path
from plrp.errors import InputError, PlrpError
from plrp.models import pickled
from plrp.models.architectures import ARCHITECTURES, GenomeCNN, build_model, hparam_names
from plrp.models.formats import LAYOUTS, detect_layout, map_layout, shape_text, strip_wrappers

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

    ``model`` is in eval mode on the CPU, float32, and reads one-hot DNA (N, 4, L) in ACGT
    order (:attr:`alphabet`). ``spec`` is ``{"name", "hparams"}``; ``meta`` holds
    ``input_length``, ``alphabet`` (the order the checkpoint's first layer was trained on,
    e.g. "AGCT" for kipoi's DeepSEA), ``output_names``, ``training`` and, for converted
    weights, ``source`` (what was mapped or dropped). ``format``: ``"native"``,
    ``"state_dict"``, ``"pickled-module"`` or a layout name of
    :data:`plrp.models.formats.LAYOUTS` (``"bpnet-lite"``, ``"kipoi-deepsea"``, ...).
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

    @property
    def alphabet(self) -> str:
        """Channel order ``model`` reads: always ACGT (a checkpoint trained on another order
        has its first layer permuted at load; ``meta["alphabet"]`` keeps that order)."""
        return ALPHABET


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in outputs to identify the model)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: GenomeCNN, training: dict | None = None, *,
                    alphabet: str = ALPHABET, source: dict | None = None) -> None:
    """Write ``model`` as a native plrp checkpoint (atomically).

    ``training``: a JSON-serialisable record of how the model was trained (data, epochs,
    metrics); stored in the metadata under ``plrp.meta`` -> ``training``. ``alphabet``: the
    channel order ``model``'s input layer reads (``plrp convert`` keeps a source's order);
    ``source``: notes on a converted checkpoint's origin.
    """
    from safetensors.torch import save

    check_alphabet(alphabet, path)
    meta = {"input_length": model.input_length, "alphabet": alphabet,
            "output_names": model.output_names, "training": training or {}}
    if source:
        meta["source"] = source
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = _sorted_header(save(tensors, metadata={"plrp.spec": json.dumps(model.spec()),
                                                  "plrp.meta": json.dumps(meta)}))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _sorted_header(data: bytes) -> bytes:
    """safetensors bytes with the JSON header's keys sorted: safetensors writes its metadata
    map in a random order, so the same model would get another sha256 each time."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":"))
    header = header.encode("utf-8").ljust(n)  # same content, same length: offsets unchanged
    if len(header) != n:
        raise RuntimeError("safetensors header changed length when sorted")
    return data[:8] + header + data[8 + n:]


def check_alphabet(alphabet, where) -> str:
    """``alphabet`` must be an order of the four bases A, C, G, T (e.g. "AGCT")."""
    if not isinstance(alphabet, str) or sorted(alphabet) != sorted(ALPHABET):
        raise InputError(f"{where}: alphabet {alphabet!r} is not an order of the bases "
                         f"{ALPHABET}")
    return alphabet


def permute_to_acgt(model: GenomeCNN, alphabet: str) -> None:
    """Make ``model`` read ACGT when its input layer was trained on ``alphabet``.

    The input layer's weight (out, 4, ...) gets ACGT channel i from the trained channel
    ``alphabet.index(ACGT[i])``: the model on ACGT one-hot equals the original on its own
    order (only the order of the sum over channels changes).
    """
    if alphabet == ALPHABET:
        return
    layer = model.get_submodule(model.input_layer)
    order = [alphabet.index(base) for base in ALPHABET]
    with torch.no_grad():
        layer.weight.copy_(layer.weight[:, order].clone())


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


_EXPORT_ADVICE = ("Export the weights instead: torch.save(model.state_dict(), 'model.pt'), "
                  "then load them with --arch NAME")


def _refuse_pickle(path: Path, what: str) -> InputError:
    return InputError(f"{path}: holds {what}; plrp never unpickles checkpoints because that "
                      f"can run code. {_EXPORT_ADVICE}")


@dataclass
class _FileContents:
    """What a checkpoint file holds: tensors, safetensors metadata (None for PyTorch files)
    and, for a whole pickled model, ``info`` = {"modules": {path: (class, attributes)}}."""

    tensors: dict
    metadata: dict | None = None
    info: dict = field(default_factory=dict)


def _read_pickled_module(path: Path) -> _FileContents:
    """A whole pickled model (or a dict holding other objects) read without unpickling code."""
    try:
        obj = pickled.unwrap_compiled(pickled.read_torch_archive(path))
    except (pickle.UnpicklingError, ValueError, KeyError, EOFError, TypeError, RuntimeError,
            AttributeError, IndexError, zipfile.BadZipFile) as err:  # a malformed archive
        raise InputError(f"{path}: not a readable PyTorch file, truncated or corrupt "
                         f"({_first_line(err)})") from None
    if pickled.is_module(obj):
        try:
            tensors = pickled.module_state_dict(obj)
        except ValueError as err:
            raise _refuse_pickle(path, f"a module with {err}") from None
        modules = {name: (cls, pickled.module_attributes(sub))
                   for name, (cls, sub) in pickled.module_tree(obj).items()}
        return _FileContents(tensors, None, {"modules": modules, "class": obj.qualname,
                                             "hparams": obj.state.get("hparams")})
    if isinstance(obj, dict):
        return _FileContents(_state_dict_from(obj, path))
    what = pickled.recorded_name(obj) or type(obj).__name__
    raise _refuse_pickle(path, f"a pickled Python object ({what}) that is neither a tensor "
                               "dictionary nor a torch.nn.Module")


def _load_torch_file(path: Path) -> _FileContents:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on junk
            with open(path, "rb") as fh:  # a file object: torch must not guess from the name
                obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if zipfile.is_zipfile(path):
            return _read_pickled_module(path)
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        raise _refuse_pickle(path, f"a pickled Python object ({found.group(1)})" if found
                             else "a pickle that is not a plain tensor dictionary") from None
    except Exception as err:  # zip/miniz errors, EOF, junk bytes: all mean a bad file
        raise InputError(f"{path}: not a readable PyTorch file, truncated or corrupt "
                         f"({_first_line(err)})") from None
    return _FileContents(_state_dict_from(obj, path))


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
        if pickled.recorded_name(value):
            raise _refuse_pickle(path, f"a pickled Python object ({pickled.recorded_name(value)})"
                                       f" under entry {key!r}")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                             "save only model.state_dict()")
    return {str(k): v for k, v in obj.items()}


def _load_safetensors_file(path: Path) -> _FileContents:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"{path}: not a readable safetensors file, truncated or corrupt "
                         f"({_first_line(err)})") from None
    return _FileContents(tensors, metadata)


def _read_checkpoint(path: Path) -> _FileContents:
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
        return _load_torch_file(path)
    return _load_safetensors_file(path)


# --------------------------------------------------------------------------- mapping weights

def _load_weights(model: GenomeCNN, tensors: dict, path: Path) -> None:
    """Copy ``tensors`` into ``model`` after checking names, shapes and values.

    BatchNorm's ``num_batches_tracked`` (absent from old files, unused in eval) may be missing.
    """
    expected = model.state_dict()
    name = model.arch_name
    tensors = dict(tensors)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in tensors:
            tensors[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{path}: tensor {missing[0]!r} missing{more}; architecture {name} "
                         f"needs it with shape {shape_text(expected[missing[0]])}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise InputError(f"{path}: unexpected tensor {unexpected[0]!r} "
                         f"{shape_text(tensors[unexpected[0]])}{more}; architecture {name} has "
                         "no such parameter (wrong --arch?)")
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise InputError(f"{path}: tensor {key!r} has shape {shape_text(got)} but "
                             f"architecture {name} expects {shape_text(want)} (check --arch / "
                             "--arch-param)")
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
    check_alphabet(meta.get("alphabet", ALPHABET), f"{path}: metadata")
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


def _native_spec(contents: _FileContents, path: Path, arch, arch_params: dict):
    spec = _json_metadata(contents.metadata, "plrp.spec", path)
    meta = _json_metadata(contents.metadata, "plrp.meta", path)
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
    hparams.update(_normalise_hparams(spec["name"], arch_params, "--arch-param"))
    return {"name": spec["name"], "hparams": hparams}, meta


def _pickled_plrp_spec(contents: _FileContents) -> dict | None:
    """A whole pickled plrp model (torch.save of a GenomeCNN) names its class and keeps its
    hyper-parameters in ``hparams``: enough to rebuild it without --arch."""
    cls = contents.info.get("class", "")
    for name, arch_cls in ARCHITECTURES.items():
        if cls == f"{arch_cls.__module__}.{arch_cls.__qualname__}":
            hparams = contents.info.get("hparams")
            if isinstance(hparams, dict):
                return {"name": name, "hparams": dict(hparams)}
    return None


def _foreign_spec(contents: _FileContents, path: Path, arch, arch_params: dict):
    """(spec, tensors, meta, format) for anything without plrp metadata."""
    tensors, removed = strip_wrappers(contents.tensors)
    spec = resolve_architecture(arch, arch_params) if arch is not None else None
    pickled_spec = _pickled_plrp_spec(contents)
    if pickled_spec is not None and (spec is None or spec["name"] == pickled_spec["name"]):
        spec = pickled_spec  # the pickled model's own hyper-parameters, then the user's
        spec["hparams"].update(_normalise_hparams(spec["name"], arch_params, "--arch-param"))
    layout = detect_layout(tensors, contents.info, spec["name"] if spec else None)
    notes: dict = {"prefixes_removed": removed} if removed else {}
    alphabet, fmt = ALPHABET, "pickled-module" if contents.info else "state_dict"
    if spec is None and layout is None:
        raise InputError(f"{path}: plain weights without plrp metadata and in no layout "
                         f"plrp recognises ({', '.join(LAYOUTS)}); name their architecture "
                         "with --arch")
    if layout is not None:
        if spec is None:
            spec = resolve_architecture(LAYOUTS[layout].arch, arch_params)
        tensors, detected, alphabet, layout_notes = map_layout(layout, tensors, contents.info,
                                                               arch_params, path)
        spec["hparams"].update(detected)
        notes.update(layout_notes)
        fmt = layout
    meta = {"alphabet": alphabet, "training": {}}
    if notes:
        meta["source"] = notes
        log.info("%s: %s", path, json.dumps(notes))
    return spec, tensors, meta, fmt


def read_model(path: str | Path | None = None, arch: str | Path | None = None,
               arch_params: dict | None = None) -> tuple[GenomeCNN, dict, str]:
    """The model a checkpoint holds, *in its own alphabet*: (model, meta, format).

    What :func:`load_model` and ``plrp convert`` share; ``meta["alphabet"]`` is the order the
    model's input layer reads. Arguments as for :func:`load_model`.
    """
    path = Path(path).expanduser() if path is not None else DEFAULT_MODEL_PATH
    if path == DEFAULT_MODEL_PATH and not path.is_file():
        raise InputError(f"{path}: the shipped default model is missing from this installation")
    arch_params = dict(arch_params or {})
    contents = _read_checkpoint(path)
    if contents.metadata is not None and "plrp.spec" in contents.metadata:
        spec, meta = _native_spec(contents, path, arch, arch_params)
        tensors, fmt = contents.tensors, "native"
    else:
        spec, tensors, meta, fmt = _foreign_spec(contents, path, arch, arch_params)
    model = _build(spec, path)
    _check_meta(meta, model, path, overridden=set(arch_params))
    _load_weights(model, tensors, path)
    meta = {**meta, "input_length": model.input_length, "output_names": model.output_names,
            "alphabet": meta.get("alphabet", ALPHABET)}
    return model.float().eval(), meta, fmt


def load_model(path: str | Path | None = None, arch: str | Path | None = None,
               arch_params: dict | None = None) -> LoadedModel:
    """Load a model from any supported checkpoint, never unpickling code.

    ``path``: a native ``.safetensors`` checkpoint, a PyTorch state_dict (``.pt``/``.pth``), a
    whole pickled model, or a plain ``.safetensors`` state_dict; None = the shipped default
    model (:data:`DEFAULT_MODEL_PATH`). ``arch``: needed for state_dicts in no recognised
    layout (see :func:`resolve_architecture`); for a native file it must name the stored
    architecture. ``arch_params``: hyper-parameters replacing the architecture file's (see
    :func:`parse_overrides`); one that contradicts the weights is an error.

    Returns the model in eval mode, float32, on the CPU, reading one-hot ACGT (N, 4, L).
    Raises InputError (one line naming the file and the tensor) for bad files and
    PlrpError for bad options.
    """
    model, meta, fmt = read_model(path, arch, arch_params)
    permute_to_acgt(model, meta["alphabet"])
    path = Path(path).expanduser() if path is not None else DEFAULT_MODEL_PATH
    return LoadedModel(model, model.spec(), meta, path, file_sha256(path), fmt)


def architecture_only(arch: str | Path, arch_params: dict | None = None) -> LoadedModel:
    """An architecture with freshly initialised weights (``format="architecture"``, no path):
    what ``plrp inspect --arch NAME`` shows when no checkpoint is given."""
    spec = resolve_architecture(arch, arch_params)
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
