"""Turn the user's ``--device`` choice into a torch.device."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def _glibc():
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


def tune_cpu_allocator() -> bool:
    """Make glibc keep freed tensor memory for reuse; returns whether it applied.

    By default glibc serves blocks over 32 MiB from fresh mmap()s and trims the heap when
    they are freed, so every large activation or relevance tensor is faulted in page by
    page again on each batch: that halved LRP throughput on BPNet-sized layers at batch 64
    (benchmarks/engine.py). Here everything comes from the heap and the heap is not trimmed
    on every free; long jobs call :func:`release_free_memory` now and then, so freed but
    fragmented heap pages do not pile up. Process-wide, so the CLI and the benchmarks call
    it; a notebook user may. No-op off glibc, or with PLRP_MALLOC_TUNING=0 set.
    """
    import os

    if os.environ.get("PLRP_MALLOC_TUNING", "1") == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold,
                                                                     2**31 - 1))


def release_free_memory() -> None:
    """Give the heap's free pages back to the kernel (glibc ``malloc_trim``); no-op elsewhere.

    Costs a few milliseconds plus re-faulting what the next batch reuses, so call it every
    few batches, not every batch (``plrp explain``: every 8; every batch cost 25% of its
    throughput, every 32 let peak memory grow 12% from 2 to 10 Mbp).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
