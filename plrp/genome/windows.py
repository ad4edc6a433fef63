"""Which windows a run explains, in which order, shard and batch.

Regions (the whole genome or BED regions), ordering (chromosome names in byte order, then
start: the order bedGraph, bigWig and tabix need, so every track is finished chromosome by
chromosome and streamed out once), sharding (blocks of the global window index) and
batching (one-hot batches read from a :class:`~plrp.genome.fasta.FastaReader`).
Coordinates are 0-based half-open; memory is one entry per span, never one per window.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from plrp.errors import InputError, PlrpError
from plrp.genome.fasta import FastaReader, base_indices, one_hot_from_indices

def tile_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start offsets (int64) of windows tiling ``[0, length)``; the last is aligned to the end.

    ``length < window`` gives an empty array (the caller skips or pads such a span).
    """
    if window <= 0 or stride <= 0:
        raise ValueError("window and stride must be positive")
    if length < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    if starts[-1] != length - window:
        starts = np.append(starts, length - window)
    return starts


@dataclass(frozen=True)
class Span:
    """A stretch of one sequence to tile: the whole record or one (merged) BED region."""

    chrom: str
    start: int
    end: int


def read_regions_bed(path: str | os.PathLike, chrom_sizes: dict[str, int]) -> list[Span]:
    """Read a BED file (0-based half-open; columns beyond the third ignored).

    Returns spans sorted by FASTA record order then start, with overlapping regions merged
    (so windows come in start order and no base is explained twice). ``track``/``browser``/
    ``#`` lines are skipped. Raises InputError naming the file and line for a malformed
    line, an unknown chromosome or coordinates outside the sequence.
    """
    path = Path(path)
    order = {name: i for i, name in enumerate(chrom_sizes)}
    spans: list[tuple[int, int, int]] = []
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                cols = line.split("\t") if "\t" in line else line.split()
                where = f"{path}: line {lineno}"
                if len(cols) < 3:
                    raise InputError(f"{where}: expected at least 3 columns (chrom start end)")
                chrom = cols[0]
                try:
                    start, end = int(cols[1]), int(cols[2])
                except ValueError:
                    raise InputError(f"{where}: start/end are not integers "
                                     f"({cols[1]!r}, {cols[2]!r})") from None
                if chrom not in chrom_sizes:
                    raise InputError(f"{where}: chromosome {chrom!r} is not in the FASTA")
                if not 0 <= start < end <= chrom_sizes[chrom]:
                    raise InputError(f"{where}: region {chrom}:{start}-{end} is empty or outside "
                                     f"{chrom} (length {chrom_sizes[chrom]})")
                spans.append((order[chrom], start, end))
    except OSError as err:
        raise InputError(f"{path}: cannot read BED file ({err})") from None
    if not spans:
        raise InputError(f"{path}: no regions in BED file")
    spans.sort()
    names = list(chrom_sizes)
    merged: list[list[int]] = []
    for c, s, e in spans:
        if merged and merged[-1][0] == c and s < merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], e)
        else:
            merged.append([c, s, e])
    return [Span(names[c], s, e) for c, s, e in merged]


def genome_spans(chroms: list[tuple[str, int]]) -> list[Span]:
    """Every sequence ``[(name, length)]`` as one span over its whole length."""
    return [Span(c, 0, int(n)) for c, n in chroms]


def byte_ordered(spans: list[Span]) -> list[Span]:
    """Spans with chromosome names in byte order (``LC_ALL=C sort``), starts kept in order.

    This order is the global window index: a stable sort keeps each chromosome's spans in
    start order, so tracks come out sorted as bedGraph/bigWig/tabix need them.
    """
    return sorted(spans, key=lambda span: span.chrom.encode("utf-8"))


@dataclass
class WindowPlan:
    """Every window of a run, computed on demand (memory: one entry per span, not per window).

    ``spans``: the spans that have windows, in order; ``offsets`` (S+1,) int64: span k owns
    global window indices ``offsets[k] .. offsets[k+1]-1``. Window j of a span starts at
    ``span.start + j * stride``, the last one at ``span.end - window``; a padded short span
    has the single window ``[span.start, span.end)``. ``short_spans``: spans shorter than the
    window that were skipped.
    """

    spans: list[Span]
    offsets: np.ndarray
    window: int
    stride: int
    short_spans: list[Span]

    @property
    def n_windows(self) -> int:
        return int(self.offsets[-1])

    def span_windows(self, k: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Genome starts/ends (int64) of windows ``a..b-1`` (span-local indices) of span k."""
        span = self.spans[k]
        length = span.end - span.start
        if length < self.window:  # padded short span: one window
            return (np.full(b - a, span.start, np.int64), np.full(b - a, span.end, np.int64))
        n = int(self.offsets[k + 1] - self.offsets[k])
        local = np.arange(a, b, dtype=np.int64)
        starts = np.where(local == n - 1, length - self.window, local * self.stride)
        starts += span.start
        return starts, starts + self.window

    def window_range(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(span index (n,) int64, start (n,), end (n,)) of global windows ``lo..hi-1``."""
        ids, starts, ends = [], [], []
        k = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        i = lo
        while i < hi:
            j = min(hi, int(self.offsets[k + 1]))
            s, e = self.span_windows(k, i - int(self.offsets[k]), j - int(self.offsets[k]))
            ids.append(np.full(j - i, k, np.int64))
            starts.append(s)
            ends.append(e)
            i, k = j, k + 1
        cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
        return cat(ids), cat(starts), cat(ends)

    @property
    def start(self) -> np.ndarray:
        """All window starts (materialised: for small plans and tests)."""
        return self.window_range(0, self.n_windows)[1]

    @property
    def end(self) -> np.ndarray:
        """All window ends (materialised: for small plans and tests)."""
        return self.window_range(0, self.n_windows)[2]


def plan_windows(spans: list[Span], window: int, stride: int, pad_short: bool = False
                 ) -> WindowPlan:
    """Tile each span with ``stride``; the last window of a span is aligned to its end.

    A span shorter than ``window`` is skipped (listed in ``short_spans``) or, with
    ``pad_short``, gives one window ``[span.start, span.end)`` padded with N on the right.
    """
    if window <= 0 or stride <= 0:
        raise ValueError("window and stride must be positive")
    kept, counts, short = [], [], []
    for span in spans:
        length = span.end - span.start
        if length >= window:
            n = (length - window) // stride + 1 + (1 if (length - window) % stride else 0)
        elif length > 0 and pad_short:
            n = 1
        else:
            short.append(span)
            continue
        kept.append(span)
        counts.append(n)
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts, dtype=np.int64)
    return WindowPlan(kept, offsets, int(window), int(stride), short)


def parse_shard(shard) -> tuple[int, int] | None:
    """``"I/N"`` or (I, N) with 1 <= I <= N -> (I, N); None -> None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise PlrpError(f"--shard {shard!r}: expected I/N, e.g. 2/8")
        shard = (int(m.group(1)), int(m.group(2)))
    i, n = int(shard[0]), int(shard[1])
    if not 1 <= i <= n:
        raise PlrpError(f"--shard {i}/{n}: need 1 <= I <= N")
    return i, n


def shard_range(n_total: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """Global index block ``[lo, hi)`` of shard ``(I, N)`` (1-based I): floor((I-1)T/N)..floor(IT/N)."""
    if shard is None:
        return 0, n_total
    i, n = shard
    return (i - 1) * n_total // n, i * n_total // n


@dataclass
class WindowBatch:
    """A batch of encoded windows: ``one_hot`` (B, 4, L) uint8 and their coordinates.

    ``index`` (B,) global window indices; ``chrom`` list of B names; ``start``/``end`` (B,).
    """

    index: np.ndarray
    chrom: list[str]
    start: np.ndarray
    end: np.ndarray
    one_hot: np.ndarray


def iter_window_batches(reader: FastaReader, plan: WindowPlan, window: int, batch_size: int,
                        lo: int = 0, hi: int | None = None, max_n_fraction: float = 1.0,
                        skipped: dict | None = None) -> Iterator[WindowBatch]:
    """Encode windows ``lo..hi`` of ``plan`` in order and yield them in batches.

    Sequence is fetched once per run of windows from the same span (at most ``batch_size``
    windows), so memory is bounded by the batch, not by the genome. Windows whose fraction
    of non-ACGT bases exceeds ``max_n_fraction`` are dropped and counted in
    ``skipped["max_n"]``.
    """
    hi = plan.n_windows if hi is None else hi
    pending: list[WindowBatch] = []
    n_pending = 0
    offsets = np.arange(window, dtype=np.int64)
    k = int(np.searchsorted(plan.offsets, lo, side="right")) - 1
    i = lo
    while i < hi:
        # a run of windows of one span, no longer than a batch
        while plan.offsets[k + 1] <= i:
            k += 1
        # one fetch covers the run; with gaps between windows (stride > window) fetch each
        # window alone so a read never spans more than the windows themselves
        j = min(hi, int(plan.offsets[k + 1]), i + (batch_size if plan.stride <= window else 1))
        chrom = plan.spans[k].chrom
        starts, ends = plan.span_windows(k, i - int(plan.offsets[k]), j - int(plan.offsets[k]))
        block_start, block_end = int(starts[0]), int(ends.max())
        idx_block = base_indices(reader.fetch(chrom, block_start, block_end))
        # pad with N so short (padded) windows index inside the block
        idx_block = np.concatenate([idx_block, np.full(window, 4, dtype=np.uint8)])
        pos = (starts - block_start)[:, None] + offsets[None, :]
        short = (ends - starts) < window
        if short.any():
            pos = np.where(offsets[None, :] < (ends - starts)[:, None], pos,
                           idx_block.size - 1)
        idx = idx_block[pos]  # (b, L)
        real = ends - starts
        # padding columns of short windows are not counted as N
        n_frac = ((idx == 4).sum(axis=1) - (window - real)) / np.maximum(real, 1)
        keep = n_frac <= max_n_fraction
        if skipped is not None:
            skipped["max_n"] = skipped.get("max_n", 0) + int((~keep).sum())
        if keep.any():
            gidx = np.arange(i, j, dtype=np.int64)[keep]
            b = WindowBatch(gidx, [chrom] * int(keep.sum()), starts[keep], ends[keep],
                            one_hot_from_indices(idx[keep]))
            pending.append(b)
            n_pending += b.index.size
        while n_pending >= batch_size:
            out, pending, n_pending = _take(pending, batch_size)
            yield out
        i = j
    while n_pending > 0:
        out, pending, n_pending = _take(pending, batch_size)
        yield out


def _take(pending: list[WindowBatch], n: int) -> tuple[WindowBatch, list[WindowBatch], int]:
    """Split the first ``n`` windows off a list of partial batches."""
    merged = WindowBatch(np.concatenate([b.index for b in pending]),
                         [c for b in pending for c in b.chrom],
                         np.concatenate([b.start for b in pending]),
                         np.concatenate([b.end for b in pending]),
                         np.concatenate([b.one_hot for b in pending]))
    total = merged.index.size
    if total <= n:
        return merged, [], 0
    head = WindowBatch(merged.index[:n], merged.chrom[:n], merged.start[:n], merged.end[:n],
                       merged.one_hot[:n])
    rest = WindowBatch(merged.index[n:], merged.chrom[n:], merged.start[n:], merged.end[n:],
                       merged.one_hot[n:])
    return head, [rest], total - n
