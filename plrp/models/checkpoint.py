"""Checkpoints: read and write models without ever unpickling code.

Native format: one ``.safetensors`` file; its string metadata holds ``plrp.spec`` (JSON:
architecture name and hyper-parameters) and ``plrp.meta`` (JSON: input length, alphabet,
output names, training record).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plrp.atomic import atomic_path
from plrp.errors import InputError
from plrp.models.architectures import GenomeCNN, build_model

ALPHABET = "ACGT"


@dataclass
class LoadedModel:
    """A model ready to explain, with what its checkpoint says about it."""

    model: GenomeCNN
    spec: dict
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    @property
    def input_length(self) -> int:
        return self.model.input_length

    @property
    def output_names(self) -> list[str]:
        return self.model.output_names


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: GenomeCNN, training: dict | None = None) -> None:
    """Write ``model`` as a native plrp checkpoint (atomically)."""
    from safetensors.torch import save_file

    meta = {"input_length": model.input_length, "alphabet": ALPHABET,
            "output_names": model.output_names, "training": training or {}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"plrp.spec": json.dumps(model.spec()),
                                               "plrp.meta": json.dumps(meta)})


def load_native(path: str | Path) -> LoadedModel:
    """Load a native ``.safetensors`` checkpoint written by :func:`save_checkpoint`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint file") from None
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"{path}: not a readable safetensors file ({err})") from None
    if "plrp.spec" not in metadata:
        raise InputError(f"{path}: safetensors file has no plrp architecture metadata; "
                         "pass --arch to load plain weights")
    spec = json.loads(metadata["plrp.spec"])
    meta = json.loads(metadata.get("plrp.meta", "{}"))
    model = build_model(spec["name"], **spec.get("hparams", {}))
    model.load_state_dict(tensors, strict=True)
    return LoadedModel(model.eval(), spec, meta, path, file_sha256(path))
