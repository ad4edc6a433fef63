"""Keep a long run's output files from piling up in the page cache.

A genome-wide ``plrp explain`` writes about 150 MB per Mbp (HDF5 and bedGraph), tens of
GB in all. Left alone, every page of it stays cached, first dirty, then clean until memory
runs out; growing the cache that far cost the writing thread 10 s of system time per
20 Mbp on the 2-core test machine (a quarter of the write time; a 5 GB plain write: 6.7 s
of system time, 1.3 s with this), and under a cluster job's memory cgroup the cache is
charged to the job. So, as ``dd oflag=nocache`` does, each time an output has grown by
``every`` bytes, ``POSIX_FADV_DONTNEED`` starts writeback of its dirty pages and drops
those already on disk. The data is unaffected: only clean pages are dropped, and a later
read (bigWig, a downstream tool) reads them from disk.
"""

from __future__ import annotations

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
