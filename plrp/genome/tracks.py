"""Per-window relevance -> one per-nucleotide genome track; bedGraph and bigWig writers.

Windows overlap when stride < window, but a track holds one value per base. The merge rule
decides which: ``nearest-centre`` (the window whose centre is nearest the base's centre;
ties go to the earlier window), ``mean`` (average over covering windows) or ``max`` (the
largest value). Windows arrive in start order per chromosome, so a base is final as soon
as a window starting after it arrives: the merger keeps only a window-sized buffer.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator

import numpy as np

from plrp.genome.textformat import write_bedgraph_lines
from plrp.pagecache import WrittenPages

MERGE_RULES = ("nearest-centre", "mean", "max")

EmitFn = Callable[[str, np.ndarray, np.ndarray], None]


class TrackMerger:
    """Merge overlapping windows of one chromosome-sorted stream into a per-base track.

    ``emit(chrom, positions (M,) int64, values (M,) float32)`` receives the finished,
    non-zero bases of a chromosome in increasing position, in chunks of about
    ``chunk`` bases; all of a chromosome is emitted before the next begins.
    """

    def __init__(self, emit: EmitFn, merge: str = "nearest-centre", chunk: int = 1 << 18):
        if merge not in MERGE_RULES:
            raise ValueError(f"merge must be one of {MERGE_RULES}, got {merge!r}")
        self._emit, self.merge, self._chunk = emit, merge, chunk
        self._chrom: str | None = None
        self._last_start = -1
        self._origin = 0          # genome position of buffer element 0
        self._size = 0            # buffer elements in use
        self._val = np.zeros(0)   # value (nearest, max) or sum (mean), float64
        self._aux = np.zeros(0)   # best distance (nearest) or count (mean, max)
        self._out_pos: list[np.ndarray] = []
        self._out_val: list[np.ndarray] = []
        self._out_n = 0
        self._dist_cache: dict[int, np.ndarray] = {}

    def add(self, chrom: str, start: int, end: int, values: np.ndarray) -> None:
        """Add one window ``chrom[start:end]``; ``values`` (end - start,) per-base relevance."""
        if chrom != self._chrom:
            self._finish_chrom()
            self._chrom, self._origin, self._size, self._last_start = chrom, start, 0, -1
        if start < self._last_start:
            raise ValueError(f"windows of {chrom} must come in start order "
                             f"({start} after {self._last_start})")
        self._last_start = start
        # every buffered base before `start` is final: no later window covers it
        done = min(max(start - self._origin, 0), self._size)
        if done:
            self._release(done)
        if start > self._origin + self._size:  # gap between windows (BED regions, N skips)
            self._origin, self._size = start, 0
        need = end - self._origin
        self._reserve(need)
        if need > self._size:
            lo = self._size
            self._val[lo:need] = 0.0
            self._aux[lo:need] = np.inf if self.merge == "nearest-centre" else 0.0
            self._size = need
        a, b = start - self._origin, end - self._origin
        val, aux = self._val[a:b], self._aux[a:b]  # views: updated in place
        if self.merge == "nearest-centre":
            dist = self._distances(end - start)
            better = dist < aux                    # strict: ties keep the earlier window
            np.copyto(val, values, where=better)
            np.copyto(aux, dist, where=better)
        elif self.merge == "mean":
            val += values
            aux += 1.0
        else:
            np.copyto(val, values, where=aux == 0)  # first window to cover the base
            np.maximum(val, values, out=val)
            aux[:] = 1.0

    def _distances(self, n: int) -> np.ndarray:
        """|base centre - window centre| for the n bases of a window (cached per length)."""
        d = self._dist_cache.get(n)
        if d is None:
            d = self._dist_cache[n] = np.abs(np.arange(n) + 0.5 - 0.5 * n)
        return d

    def add_batch(self, chroms: list[str], starts: np.ndarray, ends: np.ndarray,
                  values: np.ndarray) -> None:
        """Add B windows; ``values`` (B, L) with only the first ``end - start`` columns real."""
        values = np.asarray(values)
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float64)
        starts, ends = np.asarray(starts).tolist(), np.asarray(ends).tolist()
        k, n = 0, len(chroms)
        while k < n:
            tiled = self._tiled_run(chroms, starts, ends, k, values.shape[1])
            if tiled > 1:  # all but the last are final now: the next window may overlap it
                self._add_tiled(chroms[k], starts[k:k + tiled - 1], values[k:k + tiled - 1])
                k += tiled - 1
            self.add(chroms[k], starts[k], ends[k], values[k, : ends[k] - starts[k]])
            k += 1

    def _tiled_run(self, chroms, starts, ends, k: int, length: int) -> int:
        """How many windows from k on are full-length, on one chromosome, overlap nothing
        (each other or what is buffered) and come in order: the default stride = window."""
        if (chroms[k] != self._chrom or starts[k] < self._origin + self._size
                or ends[k] - starts[k] != length):
            return 0
        j = k
        while (j + 1 < len(chroms) and chroms[j + 1] == chroms[k]
               and ends[j] - starts[j] == length and starts[j + 1] >= ends[j]):
            j += 1
        return j - k + 1

    def _add_tiled(self, chrom: str, starts: list, values: np.ndarray) -> None:
        """Windows that no other window covers: their bases are final as they are."""
        if self._size:
            self._release(self._size)
        vals = values.astype(np.float32, copy=False).reshape(-1)
        nz = np.flatnonzero(vals)
        if nz.size:
            length = values.shape[1]
            pos = np.asarray(starts, dtype=np.int64)[nz // length] + nz % length
            self._out_pos.append(pos)
            self._out_val.append(vals[nz])
            self._out_n += nz.size
        self._last_start = starts[-1]
        self._origin = starts[-1] + values.shape[1]
        if self._out_n >= self._chunk:
            self._flush_out()

    def finish(self) -> None:
        """Emit everything still buffered (call once after the last window)."""
        self._finish_chrom()
        self._chrom = None

    # -- internals
    def _reserve(self, n: int) -> None:
        if n > self._val.size:
            cap = max(n, 2 * self._val.size, 1024)
            self._val = np.resize(self._val, cap)
            self._aux = np.resize(self._aux, cap)

    def _release(self, n: int) -> None:
        """Move the first ``n`` buffered bases to the output and shift the buffer."""
        vals = self._val[:n].copy()
        if self.merge == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                vals = np.where(self._aux[:n] > 0, vals / self._aux[:n], 0.0)
        vals = vals.astype(np.float32)
        nz = np.flatnonzero(vals)
        if nz.size:
            self._out_pos.append(nz.astype(np.int64) + self._origin)
            self._out_val.append(vals[nz])
            self._out_n += nz.size
        rest = self._size - n
        self._val[:rest] = self._val[n:self._size]
        self._aux[:rest] = self._aux[n:self._size]
        self._origin += n
        self._size = rest
        if self._out_n >= self._chunk:
            self._flush_out()

    def _flush_out(self) -> None:
        if self._out_n:
            self._emit(self._chrom, np.concatenate(self._out_pos), np.concatenate(self._out_val))
        self._out_pos, self._out_val, self._out_n = [], [], 0

    def _finish_chrom(self) -> None:
        if self._chrom is None:
            return
        if self._size:
            self._release(self._size)
        self._flush_out()


# --------------------------------------------------------------------------- intervals

def track_to_intervals(positions: np.ndarray, values: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-base track (sorted positions, values) -> bedGraph runs (starts, ends, values).

    Adjacent bases with equal values merge into one half-open interval; gaps (zero or
    unexplained bases) are left out.
    """
    positions = np.asarray(positions, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    if positions.size == 0:
        return positions, positions.copy(), values
    brk = np.ones(positions.size, dtype=bool)
    brk[1:] = (positions[1:] != positions[:-1] + 1) | (values[1:] != values[:-1])
    first = np.flatnonzero(brk)
    last = np.append(first[1:], positions.size) - 1
    return positions[first], positions[last] + 1, values[first]


class RunJoiner:
    """Run-merge one chromosome's track arriving as consecutive (positions, values) chunks.

    ``feed`` returns the runs that are final; the last run of a chunk is held back because
    the next chunk may continue it; ``finish`` returns it.
    """

    def __init__(self) -> None:
        self._held: tuple[int, int, np.float32] | None = None

    def feed(self, pos: np.ndarray, val: np.ndarray
             ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        s, e, v = track_to_intervals(pos, val)
        if s.size == 0:
            return []
        out = []
        if self._held is not None:
            hs, he, hv = self._held
            if s[0] == he and v[0] == hv:
                s = s.copy()
                s[0] = hs
            else:
                out.append(_one_run(hs, he, hv))
        self._held = (int(s[-1]), int(e[-1]), v[-1])
        if s.size > 1:
            out.append((s[:-1], e[:-1], v[:-1]))
        return out

    def finish(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        held, self._held = self._held, None
        return [] if held is None else [_one_run(*held)]


def _one_run(s, e, v):
    return np.array([s], np.int64), np.array([e], np.int64), np.array([v], dtype=np.float32)


def iter_intervals(chunks: Iterable[tuple[np.ndarray, np.ndarray]]
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run-merge a chromosome's track given as consecutive (positions, values) chunks."""
    joiner = RunJoiner()
    for pos, val in chunks:
        yield from joiner.feed(pos, val)
    yield from joiner.finish()


class BedGraphWriter:
    """Write a bedGraph while the run goes: chromosomes arrive in byte order, once each.

    ``add`` takes each chromosome's finished bases as they come (increasing positions),
    merges equal neighbours into runs (across calls too) and appends the lines; ``close``
    writes the last run and returns the number of intervals. A context manager.
    """

    def __init__(self, path: str | os.PathLike, track_line: str | None = None):
        self.path = path
        self._fh = open(path, "wb")
        self._pages = WrittenPages(self._fh.fileno())
        if track_line:
            self._fh.write((track_line.rstrip("\n") + "\n").encode("utf-8"))
        self._chrom: str | None = None
        self._joiner = RunJoiner()
        self.n_intervals = 0
        # runs wait here until there are enough lines for one text call (~0.5 ms each):
        # a draft assembly's thousands of small scaffolds would otherwise cost a call each
        self._held: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self._held_lines = 0

    def add(self, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
        """Take the next finished bases of ``chrom`` (increasing positions)."""
        if chrom != self._chrom:
            if self._chrom is not None:
                if chrom.encode("utf-8") <= self._chrom.encode("utf-8"):
                    raise ValueError(f"bedGraph {self.path}: chromosome {chrom} after "
                                     f"{self._chrom}; chromosomes must come in byte order")
                self._hold(self._joiner.finish())
            self._chrom = chrom
        self._hold(self._joiner.feed(positions, values))

    def _hold(self, runs) -> None:
        for s, e, v in runs:
            self._held.append((self._chrom, s, e, v))
            self._held_lines += s.size
            self.n_intervals += s.size
        if self._held_lines >= _LINES_PER_WRITE:
            self._write_held()

    def _write_held(self) -> None:
        if not self._held:
            return
        chroms = [c for c, *_ in self._held]
        counts = np.array([s.size for _, s, _, _ in self._held])
        starts, ends, values = (np.concatenate([run[k] for run in self._held]) for k in (1, 2, 3))
        self._held, self._held_lines = [], 0
        if chroms[0] == chroms[-1]:  # one chromosome (they come one after another)
            chroms, counts = chroms[0], None
        write_bedgraph_lines(self._fh, chroms, starts, ends, values, counts=counts)
        self._pages.check()

    def close(self) -> int:
        if not self._fh.closed:
            try:
                self._hold(self._joiner.finish())
                self._write_held()
            finally:
                self._fh.close()
        return self.n_intervals

    def __enter__(self) -> "BedGraphWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # the run failed: no last run to write, just the file to let go
            self._fh.close()


def byte_order(names: Iterable[str]) -> list[str]:
    """Chromosome names in byte order (``LC_ALL=C sort``), the order bedGraph/bigWig need."""
    return sorted(names, key=lambda n: n.encode("utf-8"))


_LINES_PER_WRITE = 1 << 18  # bedGraph lines per polars call (numpy arrays: ~5 MB)
# bigWig entries per pyBigWig call: they go as Python lists, ~130 bytes an entry
_BIGWIG_ENTRIES_PER_CALL = 1 << 14
TrackSource = Callable[[str], Iterable[tuple[np.ndarray, np.ndarray]]]


def write_bedgraph(path: str | os.PathLike, chroms: Iterable[str], track: TrackSource,
                   track_line: str | None = None) -> int:
    """Write a 4-column bedGraph; returns the number of intervals.

    ``chroms`` in byte order (:func:`byte_order`); ``track(chrom)`` yields that
    chromosome's (positions, values) chunks. Values are printed in the shortest form that
    reads back as the exact float32.
    """
    with BedGraphWriter(path, track_line) as out:
        for chrom in chroms:
            for pos, val in track(chrom):
                out.add(chrom, pos, val)
    return out.n_intervals


def write_bigwig(path: str | os.PathLike, chrom_sizes: list[tuple[str, int]],
                 track: TrackSource) -> int:
    """Write a bigWig through pyBigWig; returns the number of intervals.

    ``chrom_sizes`` [(name, length)] is both the header and the order entries are added in,
    so pass it in byte order; every chromosome of the FASTA belongs in the header.
    """
    import pyBigWig

    n = 0
    bw = pyBigWig.open(str(path), "w")
    if bw is None:
        raise OSError(f"{path}: pyBigWig could not open the file for writing")
    try:
        bw.addHeader([(c, int(L)) for c, L in chrom_sizes], maxZooms=10)
        for chrom, _ in chrom_sizes:
            for s, e, v in iter_intervals(track(chrom)):
                for k in range(0, s.size, _BIGWIG_ENTRIES_PER_CALL):
                    sl = slice(k, k + _BIGWIG_ENTRIES_PER_CALL)
                    m = s[sl].size
                    bw.addEntries([chrom] * m, s[sl].tolist(), ends=e[sl].tolist(),
                                  values=v[sl].astype(np.float64).tolist())
                n += s.size
    finally:
        bw.close()
    return n


def read_bedgraph(path: str | os.PathLike) -> list[tuple[str, int, int, float]]:
    """Read a bedGraph's data lines (skipping track/browser/# lines); for tests and tools."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.startswith(("track", "browser", "#")):
                continue
            c, s, e, v = line.rstrip("\n").split("\t")
            out.append((c, int(s), int(e), float(v)))
    return out
