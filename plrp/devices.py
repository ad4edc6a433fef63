"""Turn the user's ``--device`` choice into a torch.device."""

from __future__ import annotations

import ctypes
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
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc only)
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype = _MallInfo2
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


def release_free_memory(above: int = 0) -> bool:
    """Give the heap's free pages back to the kernel (glibc ``malloc_trim``) when it holds
    more than ``above`` bytes of free memory; returns whether it trimmed. No-op off glibc.

    A trim costs re-faulting every page the next batch reuses: trimming every 8 batches
    cost ``plrp explain`` 6% of its throughput with the shipped model, so it checks every
    8 and trims only past a bound (glibc >= 2.33 reports its free bytes; older ones always
    trim).
    """
    libc = _glibc()
    if libc is None:
        return False
    if above > 0 and hasattr(libc, "mallinfo2"):
        if libc.mallinfo2().fordblks <= above:
            return False
    libc.malloc_trim(0)
    return True


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (all size_t): ``fordblks`` is the heap's free bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
