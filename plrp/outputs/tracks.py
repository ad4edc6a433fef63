"""Per-window relevance -> one per-base genome track (merging overlapping windows).

API (used by the explain sink and by ``plrp merge``)::

    m = TrackMerger(emit, merge="nearest-centre")   # emit(chrom, positions int64, values f32)
    m.add_batch(chroms, starts, ends, values)        # values (B, L) float32, windows in order
    m.add(chrom, start, end, values)                 # one window
    m.finish()                                       # emits what is buffered
    m.edges() -> EdgeWindows                         # store with RelevanceWriter.write_edges
    RunBatcher: bases -> equal-value runs for the track files;  byte_order(names)

Windows overlap when stride < window, but a track holds one value per base. The merge rule
decides which: ``nearest-centre`` (the window whose centre is nearest the base's centre;
ties go to the earlier window), ``mean`` (average over covering windows) or ``max`` (the
largest value). Windows arrive in start order per chromosome (chromosomes in byte order), so
a base is final as soon as a window starting after it arrives: the merger keeps only a
window-sized buffer. Bases whose merged value is 0 are not emitted (a missing base is 0).

Edge windows: a shard's track is only right away from its block's ends, because windows of
the neighbouring shard may cover the same bases. The merger keeps, bounded, the windows that
can overlap a neighbour's: the *head* (on the first chromosome, ``start <`` the first
window's end) and the *tail* (on the last chromosome, ``end >`` the last window's start).
``plrp merge`` recomputes the bases between two shards from them (:func:`edge_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

MERGE_RULES = ("nearest-centre", "mean", "max")

EmitFn = Callable[[str, np.ndarray, np.ndarray], None]


@dataclass
class EdgeWindows:
    """Windows (K of them, in run order) with their per-base values as merged.

    ``chrom`` list[str]; ``start``, ``end`` (K,) int64; ``values`` (K, L) float32, only
    the first ``end - start`` columns real (the rest 0).
    """

    chrom: list
    start: np.ndarray
    end: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.chrom)

    @classmethod
    def empty(cls, length: int) -> "EdgeWindows":
        return cls([], np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros((0, length), np.float32))

    @classmethod
    def concat(cls, parts: list["EdgeWindows"], length: int) -> "EdgeWindows":
        if not parts:
            return cls.empty(length)
        return cls([c for p in parts for c in p.chrom],
                   np.concatenate([p.start for p in parts]),
                   np.concatenate([p.end for p in parts]),
                   np.concatenate([p.values for p in parts]))

    def take(self, mask: np.ndarray) -> "EdgeWindows":
        idx = np.flatnonzero(mask)
        return EdgeWindows([self.chrom[i] for i in idx], self.start[idx], self.end[idx],
                           self.values[idx])


def edge_mask(chrom: list, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(K,) bool: which of K windows (in run order) are head or tail windows of the run.

    Head: on the first window's chromosome with ``start <`` its end; tail: on the last
    window's chromosome with ``end >`` its start. These hold every window that can share a
    base with a window of a neighbouring shard (ends do not decrease along a chromosome).
    """
    n = len(chrom)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    same_first = np.fromiter((c == chrom[0] for c in chrom), bool, n)
    same_last = np.fromiter((c == chrom[-1] for c in chrom), bool, n)
    mask |= same_first & (np.asarray(start) < end[0])
    mask |= same_last & (np.asarray(end) > start[-1])
    return mask


class _EdgeKeeper:
    """Bounded memory of a run's head and tail windows (see :func:`edge_mask`)."""

    def __init__(self) -> None:
        self._first: tuple[str, int] | None = None
        self._head_open = True
        self.head: list[tuple[int, str, int, int, np.ndarray]] = []
        self.tail: list[tuple[int, str, int, int, np.ndarray]] = []
        self._n = 0

    def see(self, chroms: list, starts: list, ends: list, values: np.ndarray) -> None:
        b = len(chroms)
        if b == 0:
            return
        if self._first is None:
            self._first = (chroms[0], ends[0])
        k = 0
        while self._head_open and k < b:
            if chroms[k] == self._first[0] and starts[k] < self._first[1]:
                self.head.append(self._row(k, chroms, starts, ends, values))
                k += 1
            else:
                self._head_open = False
        # tail candidates: on the newest window's chromosome, ending after its start
        last_chrom, last_start = chroms[-1], starts[-1]
        self.tail = [w for w in self.tail if w[1] == last_chrom and w[3] > last_start]
        width = values.shape[1]  # no window is wider: earlier ones end before last_start
        k = b - 1
        while k >= 0 and chroms[k] == last_chrom and starts[k] > last_start - width:
            k -= 1
        for j in range(k + 1, b):
            if ends[j] > last_start:
                self.tail.append(self._row(j, chroms, starts, ends, values))
        self._n += b

    def _row(self, k, chroms, starts, ends, values):
        return (self._n + k, chroms[k], int(starts[k]), int(ends[k]),
                np.array(values[k], dtype=np.float32))

    def windows(self, length: int) -> EdgeWindows:
        rows = {w[0]: w for w in self.head}
        rows.update({w[0]: w for w in self.tail})
        ordered = [rows[k] for k in sorted(rows)]
        if not ordered:
            return EdgeWindows.empty(length)
        values = np.zeros((len(ordered), length), np.float32)
        for i, w in enumerate(ordered):
            values[i, :w[4].size] = w[4]
        return EdgeWindows([w[1] for w in ordered], np.array([w[2] for w in ordered], np.int64),
                           np.array([w[3] for w in ordered], np.int64), values)


class TrackMerger:
    """Merge overlapping windows of one chromosome-sorted stream into a per-base track.

    ``emit(chrom, positions (M,) int64, values (M,) float32)`` receives the finished,
    non-zero bases of a chromosome in increasing position, in chunks of about
    ``chunk`` bases; all of a chromosome is emitted before the next begins.
    Per-base window values are float32 (what the track stores); merging runs in float64.
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
        self._edges = _EdgeKeeper()
        self._length = 0          # widest window seen (edge rows are this wide)

    def add(self, chrom: str, start: int, end: int, values: np.ndarray) -> None:
        """Add one window ``chrom[start:end]``; ``values`` (end - start,) per-base relevance."""
        values = np.asarray(values, dtype=np.float32)
        self._length = max(self._length, values.size)
        self._edges.see([chrom], [start], [end], values[None, :])
        self._add(chrom, start, end, values)

    def _start_chrom(self, chrom: str, start: int) -> None:
        self._finish_chrom()
        self._chrom, self._origin, self._size, self._last_start = chrom, start, 0, -1

    def _add(self, chrom: str, start: int, end: int, values: np.ndarray) -> None:
        if chrom != self._chrom:
            self._start_chrom(chrom, start)
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
        values = np.asarray(values, dtype=np.float32)
        starts, ends = np.asarray(starts).tolist(), np.asarray(ends).tolist()
        self._length = max(self._length, values.shape[1])
        self._edges.see(chroms, starts, ends, values)
        k, n = 0, len(chroms)
        while k < n:
            if chroms[k] != self._chrom:
                self._start_chrom(chroms[k], starts[k])
            tiled = self._tiled_run(chroms, starts, ends, k, values.shape[1])
            j = k + tiled
            # the run's last window is final too when the batch's next window cannot overlap
            # it (another sequence: a draft assembly's scaffolds), else it waits in the buffer
            last_final = tiled and j < n and (chroms[j] != chroms[k] or starts[j] >= ends[j - 1])
            take = tiled if last_final else tiled - 1
            if take > 0:
                self._add_tiled(chroms[k], starts[k:k + take], values[k:k + take])
                k += take
                if last_final:
                    continue
            self._add(chroms[k], starts[k], ends[k], values[k, : ends[k] - starts[k]])
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
        vals = values.reshape(-1)
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

    def edges(self) -> EdgeWindows:
        """This run's head and tail windows (for ``RelevanceWriter.write_edges``)."""
        return self._edges.windows(self._length)

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

class RunBatcher:
    """Join a track's bases into bedGraph runs in batches, across calls and sequences.

    ``add(chrom, positions, values)`` takes the next stored bases (sequences in byte order,
    once each; positions increasing); ``take(final)`` returns the runs that are final as
    ``(names, counts, starts, ends, values)``: ``names[i]`` is the sequence of the next
    ``counts[i]`` runs. The last run is held back until ``final`` (the next bases may
    continue it). One vectorised pass per batch: a draft assembly's 100,000 scaffolds cost
    no numpy call each. ``what`` names the output in errors.
    """

    def __init__(self, what: str = "track") -> None:
        self.what = what
        self.n_bases = 0
        self._names: list[str] = []
        self._last_key = b""
        self._ids: list[int] = []
        self._pos: list[np.ndarray] = []
        self._val: list[np.ndarray] = []

    def add(self, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
        if not self._names or chrom != self._names[-1]:
            key = chrom.encode("utf-8")
            if self._names and key <= self._last_key:
                raise ValueError(f"{self.what}: sequence {chrom} after {self._names[-1]}; "
                                 "sequences must come in byte order, once each")
            self._names.append(chrom)
            self._last_key = key
        if len(positions):
            self._ids.append(len(self._names) - 1)
            self._pos.append(np.asarray(positions, dtype=np.int64))
            self._val.append(np.asarray(values, dtype=np.float32))
            self.n_bases += len(positions)

    def take(self, final: bool):
        """The final runs so far: (names, counts (k,), starts, ends (n,) int64, values (n,)
        float32); None when there are none."""
        if not self._pos:
            return None
        pos = np.concatenate(self._pos)
        val = np.concatenate(self._val)
        cid = np.repeat(np.asarray(self._ids), [p.size for p in self._pos])
        brk = np.ones(pos.size, dtype=bool)
        brk[1:] = (cid[1:] != cid[:-1]) | (pos[1:] != pos[:-1] + 1) | (val[1:] != val[:-1])
        first = np.flatnonzero(brk)
        names = self._names
        if final:
            cut = pos.size
            self._pos, self._val, self._ids, self.n_bases = [], [], [], 0
        else:  # hold the last run back: the next bases may continue it
            cut = int(first[-1])
            first = first[:-1]
            self._pos, self._val = [pos[cut:]], [val[cut:]]
            self._ids = [int(cid[cut])]
            self.n_bases = pos.size - cut
        if first.size == 0:
            return None
        last = np.append(first[1:], cut) - 1
        run_cid = cid[first]
        change = np.flatnonzero(np.r_[True, run_cid[1:] != run_cid[:-1]])
        counts = np.diff(np.append(change, run_cid.size))
        return ([names[i] for i in run_cid[change]], counts, pos[first], pos[last] + 1,
                val[first])


def byte_order(names: Iterable[str]) -> list[str]:
    """Chromosome names in byte order (``LC_ALL=C sort``), the order bedGraph/bigWig need."""
    return sorted(names, key=lambda n: n.encode("utf-8"))
