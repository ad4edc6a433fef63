"""Turn the user's ``--device`` choice into a torch.device."""

from __future__ import annotations

import re

from plrp.errors import PlrpError


def resolve_device(spec: str = "auto"):
    """``auto`` picks the first CUDA GPU when there is one, else the CPU.

    ``cpu``, ``cuda`` and ``cuda:N`` are taken literally; asking for a GPU that is
    not there is an error rather than a silent fall-back to a slow CPU run.
    """
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not m:
        raise PlrpError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise PlrpError(f"--device {spec}: no CUDA GPU is visible to torch on this machine")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise PlrpError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device(f"cuda:{index}")

