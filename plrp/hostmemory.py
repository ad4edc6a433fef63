"""Host memory policy of long runs: the glibc heap and the page cache of written outputs.

Two settings that decide how a genome-scale run uses the machine's memory, kept in one
place so the explain job (and the benchmarks) tune them through one seam:

- The heap (:func:`tune_cpu_allocator`, :class:`HeapCeiling`): glibc keeps freed tensor
  memory for the next batch instead of faulting it in again page by page, and gives it
  back when the resident size drifts above the level the run settled at.
- The page cache (:class:`WrittenPages`): outputs leave the cache as they grow.

Why the page cache: before the sparse tracks a genome-wide ``plrp explain`` wrote about
150 MB per Mbp (HDF5 and bedGraph), tens of GB in all. Left alone, every page of it stays cached, first dirty, then clean until memory
runs out; growing the cache that far cost the writing thread 10 s of system time per
20 Mbp on the 2-core test machine (a quarter of the write time; a 5 GB plain write: 6.7 s
of system time, 1.3 s with this), and under a cluster job's memory cgroup the cache is
charged to the job. So, as ``dd oflag=nocache`` does, each time an output has grown by
``every`` bytes, ``POSIX_FADV_DONTNEED`` starts writeback of its dirty pages and drops
those already on disk. The data is unaffected: only clean pages are dropped, and a later
read (bigWig, a downstream tool) reads them from disk.
"""

from __future__ import annotations

import ctypes
import functools
import os

DEFAULT_EVERY = 64 << 20


class WrittenPages:
    """Drop the written pages of the open file ``fd`` from the page cache as it grows.

    Call :meth:`check` after writes; each time the file has grown by ``every`` bytes
    (default 64 MiB) since the last drop, it drops and returns True. No-op where the
    platform has no ``posix_fadvise`` (macOS) or the file does not take it (a pipe).
    """

    def __init__(self, fd: int, every: int | None = None):
        self.fd = fd
        self.every = DEFAULT_EVERY if every is None else int(every)
        self._dropped_at = 0
        self._usable = hasattr(os, "posix_fadvise")

    def check(self) -> bool:
        if not self._usable:
            return False
        size = os.fstat(self.fd).st_size
        if size - self._dropped_at < self.every:
            return False
        try:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:  # e.g. ESPIPE: not a regular file; nothing to drop
            self._usable = False
            return False
        self._dropped_at = size
        return True


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

    A trim costs re-faulting every page the next batch reuses (trimming every 8 batches
    cost ``plrp explain`` 6% of its throughput with the shipped model), so a long run asks
    :class:`HeapCeiling` when to trim. ``above`` needs glibc >= 2.33, which reports its free
    bytes; older ones always trim.
    """
    libc = _glibc()
    if libc is None:
        return False
    if above > 0 and hasattr(libc, "mallinfo2"):
        if libc.mallinfo2().fordblks <= above:
            return False
    libc.malloc_trim(0)
    return True


def resident_bytes() -> int | None:
    """This process's resident memory (Linux /proc/self/statm), None where unreadable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapCeiling:
    """Keep a long run's resident memory near the level it settled at.

    glibc keeps freed tensor memory for reuse (:func:`tune_cpu_allocator`), but its free
    lists fragment as batches allocate slightly different sizes (bedGraph runs, pruning
    candidates...), so the heap creeps: with the shipped model its free space grew from
    190 to 250 MB over 30 Mbp (mallinfo2), and peak RSS by 13% from 10 to 100 Mbp
    (benchmarks/explain.py), with nothing more in use. Call :meth:`check` once per batch; every ``every`` calls it
    reads the resident size. The ``settle``-th reading sets a ceiling ``slack`` above it;
    above the ceiling the free pages go back to the kernel (``malloc_trim``), and a size
    that a trim did not bring down (memory really in use) becomes the new level. A trim
    costs re-faulting the next batch's temporaries, tens of ms, so it happens only on
    real drift (trimming every 8 batches cost 6% of throughput). ``read`` and ``trim`` are
    for tests. No-op off Linux/glibc.
    """

    def __init__(self, every: int = 8, settle: int = 8, slack: float = 0.04,
                 read=resident_bytes, trim=release_free_memory):
        self.every, self.settle, self.slack = int(every), int(settle), float(slack)
        self.read, self.trim = read, trim
        self.calls = self.readings = 0
        self.ceiling: float | None = None
        self._trimmed = False

    def check(self) -> bool:
        """Count one batch; returns whether this call trimmed."""
        self.calls += 1
        if self.calls % self.every:
            return False
        size = self.read()
        if size is None:
            return False
        self.readings += 1
        if self.readings < self.settle:
            return False
        if self.ceiling is None or (self._trimmed and size > self.ceiling):
            self.ceiling = size * (1 + self.slack)   # settled, or grown for real
            self._trimmed = False
            return False
        self._trimmed = size > self.ceiling
        if self._trimmed:
            self.trim()
        return self._trimmed


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (all size_t): ``fordblks`` is the heap's free bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
