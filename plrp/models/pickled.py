"""Read the tensors of a ``torch.save`` zip archive without running any pickled code.

``torch.load(weights_only=True)`` refuses a whole pickled model (``torch.save(model)``, what
bpnet-lite writes), because rebuilding it imports the model's classes. This reader walks the
same pickle with an unpickler whose ``find_class`` hands out inert placeholders: a class or
function named in the file is *recorded* (module and name), never imported or called. Only
tensors (``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``, storages read from the
archive's ``data/`` entries) and ``collections.OrderedDict`` are rebuilt for real.

A recorded ``torch.nn.Module`` keeps its instance ``__dict__``; :func:`module_state_dict`
takes ``_parameters``, ``_buffers`` and ``_modules`` from it to rebuild the state_dict.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

# torch.save's storage classes -> dtype (the class is named in the pickle, never imported)
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


class RecordedObject:
    """Stands for an instance of a class named in the pickle; holds what the pickle gave it.

    ``qualname``: "module.Name" of the class; ``args``: constructor arguments the pickle
    passed; ``state``: what ``__setstate__`` would have received (a module's ``__dict__``).
    """

    qualname = "?"
    args: tuple = ()
    state = None

    def __init__(self, *args, **kwargs):  # only reached when the pickle "calls" the class
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<recorded {self.qualname}>"


@dataclass(frozen=True)
class _StorageType:
    name: str


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest):
    return storage.as_strided(tuple(size), tuple(stride), storage_offset).clone()


def _rebuild_parameter(data, *_rest):
    return data


_REBUILT = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,  # e.g. a module's _non_persistent_buffers_set
    ("builtins", "frozenset"): frozenset,
}


class _RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.classes: dict[str, type] = {}
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module, name):
        if (module, name) in _REBUILT:
            return _REBUILT[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        # any other class or function: NEWOBJ / REDUCE make an inert recorded instance
        qualname = f"{module}.{name}"
        if qualname not in self.classes:
            self.classes[qualname] = type(name, (RecordedObject,), {"qualname": qualname})
        return self.classes[qualname]

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r}")
        _, storage_type, key, _location, _numel = saved_id
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            dtype = _STORAGE_DTYPES[storage_type.name]
            self.storages[key] = (torch.frombuffer(bytearray(raw), dtype=dtype) if raw
                                  else torch.empty(0, dtype=dtype))
        return self.storages[key]


def read_torch_archive(path: str | Path):
    """The object a ``torch.save`` zip archive holds, with tensors rebuilt and every other
    class recorded as a :class:`RecordedObject` (never imported). Raises ``ValueError`` for
    a file that is not such an archive, ``pickle.UnpicklingError`` for a malformed pickle."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(names) != 1:
            raise ValueError("not a torch.save archive (no single data.pkl)")
        prefix = names[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError("big-endian tensors are not supported")
        return _RecordingUnpickler(archive.read(names[0]), archive, prefix).load()


def recorded_name(obj) -> str | None:
    """"module.Name" of a recorded object or of a recorded class itself; None otherwise."""
    if isinstance(obj, RecordedObject) or (isinstance(obj, type)
                                           and issubclass(obj, RecordedObject)):
        return obj.qualname
    return None


def unwrap_compiled(obj):
    """A ``torch.compile``'d module pickles as ``OptimizedModule(orig_mod)``: the original
    module (its ``_orig_mod``); anything else is returned unchanged."""
    if (isinstance(obj, RecordedObject) and obj.qualname.endswith(".OptimizedModule")
            and obj.args and is_module(obj.args[0])):
        return obj.args[0]
    return obj


def is_module(obj) -> bool:
    """True for a recorded object that looks like a torch.nn.Module instance."""
    return (isinstance(obj, RecordedObject) and isinstance(obj.state, dict)
            and isinstance(obj.state.get("_modules"), dict)
            and isinstance(obj.state.get("_parameters"), dict))


def module_state_dict(obj: RecordedObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict a recorded module would return: its parameters, persistent buffers
    and those of its sub-modules, keys joined by dots, in definition order."""
    state = obj.state
    out: dict[str, torch.Tensor] = {}
    for name, value in state["_parameters"].items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and name not in skip:
            out[prefix + name] = value
    for name, child in state["_modules"].items():
        if child is None:
            continue
        if not is_module(child):
            raise ValueError(f"sub-module {prefix + name!r} is a {child!r}, not a module")
        out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def module_attributes(obj: RecordedObject) -> dict:
    """A recorded module's plain attributes (ints, floats, strings, bools) such as bpnet-lite's
    ``trimming`` or ``n_control_tracks``."""
    return {k: v for k, v in obj.state.items()
            if not k.startswith("_") and isinstance(v, (int, float, str, bool))}


def module_tree(obj: RecordedObject, prefix: str = "") -> dict[str, tuple[str, RecordedObject]]:
    """{module path ("" for the root): (class qualname, recorded module)} of a module tree."""
    out = {prefix.rstrip("."): (obj.qualname, obj)}
    for name, child in obj.state["_modules"].items():
        if is_module(child):
            out.update(module_tree(child, f"{prefix}{name}."))
    return out
