"""Which windows a run explains, in which order, shard and batch.

Regions (the whole genome or BED regions), ordering (chromosome names in byte order, then
start: the order bedGraph, bigWig and tabix need, so every track is finished chromosome by
chromosome and streamed out once), sharding (blocks of the global window index) and
batching (one-hot batches read from a :class:`~plrp.genome.fasta.FastaReader`).
Coordinates are 0-based half-open; memory is one entry per span, never one per window.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from plrp.errors import InputError, PlrpError
from plrp.genome.fasta import FastaReader, base_indices, one_hot_from_indices

log = logging.getLogger("plrp")

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
    """A stretch of one sequence to tile: the whole record or one (merged) BED region.

    ``centred``: a single window placed on a narrowPeak summit (never merged, dropped rather
    than cut by ``--exclude``)."""

    chrom: str
    start: int
    end: int
    centred: bool = False


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


# --- regions as peak callers and genome browsers write them (--regions, --chroms, --exclude) ---

GZIP_MAGIC = b"\x1f\x8b"
LOCUS = re.compile(r"(?P<chrom>.+):(?P<start>[0-9][0-9,]*)-(?P<end>[0-9][0-9,]*)")


def open_bed(path: str | os.PathLike):
    """Binary handle on a BED file: plain, bgzip or gzip (told by the magic bytes, not the name)."""
    import gzip

    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def bed_rows(path: str | os.PathLike):
    """(line number, columns) of each data line of a BED file (plain, gzip or bgzip; split on
    tabs, or on whitespace where a line has none); track/browser/# and blank lines skipped.
    An unreadable file is an InputError naming it."""
    import gzip
    import zlib

    path = Path(path)

    try:
        with open_bed(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                yield lineno, (line.split("\t") if "\t" in line else line.split())
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputError(f"{path}: cannot read BED file ({err})") from None


def _int_column(cols: list[str], k: int, name: str, where: str) -> int:
    """Column ``k`` (0-based) as an int, or InputError naming line and 1-based column."""
    try:
        return int(cols[k])
    except (ValueError, IndexError):
        got = repr(cols[k]) if k < len(cols) else "missing"
        raise InputError(f"{where}, column {k + 1}: {name} is not an integer ({got})") from None


def is_narrowpeak_name(path) -> bool:
    """``.narrowPeak`` / ``.narrowPeak.gz`` (any case) names a narrowPeak file."""
    name = str(path).lower()
    return name.endswith((".narrowpeak", ".narrowpeak.gz", ".narrowpeak.bgz"))


def _looks_narrowpeak(cols: list[str]) -> bool:
    if len(cols) != 10:
        return False
    try:
        int(cols[9])
    except ValueError:
        return False
    return True


@dataclass
class RegionSet:
    """Raw regions before clipping: ``tiled`` (chrom, start, end, where) are merged and tiled;
    ``centred`` are single windows (narrowPeak summits), never merged."""

    tiled: list = None
    centred: list = None

    def __post_init__(self):
        self.tiled = [] if self.tiled is None else self.tiled
        self.centred = [] if self.centred is None else self.centred


def parse_locus(text: str) -> tuple[str, int, int] | None:
    """``chr:start-end`` (1-based inclusive, commas allowed, like samtools/IGV) ->
    (chrom, start, end) 0-based half-open; None when ``text`` is not shaped like a locus.
    Raises InputError for a locus with start < 1 or end < start."""
    m = LOCUS.fullmatch(text.strip())
    if not m:
        return None
    start, end = (int(m.group(k).replace(",", "")) for k in ("start", "end"))
    if start < 1 or end < start:
        raise InputError(f"--regions {text!r}: a locus is chr:start-end, 1-based inclusive, "
                         f"with 1 <= start <= end")
    return m.group("chrom"), start - 1, end


def _read_source(source, sizes: dict[str, int], window: int, out: RegionSet) -> None:
    """Add one ``--regions`` value (a BED/narrowPeak file, plain or gzip, or a locus) to ``out``."""
    text = str(source)
    path = Path(text)
    if not path.is_file():
        locus = parse_locus(text)
        if locus is None:
            raise InputError(f"--regions {text!r}: no such file, and not a chr:start-end locus")
        chrom, start, end = locus
        if chrom not in sizes:
            raise InputError(f"--regions {text!r}: chromosome {chrom!r} is not in the FASTA")
        out.tiled.append((chrom, start, end, f"--regions {text!r}"))
        return
    narrow = is_narrowpeak_name(path)
    n_rows = 0
    for lineno, cols in bed_rows(path):
        where = f"{path}: line {lineno}"
        if n_rows == 0 and not narrow:
            narrow = _looks_narrowpeak(cols)
        n_rows += 1
        if len(cols) < 3:
            raise InputError(f"{where}, column {len(cols) + 1}: expected at least 3 columns "
                             f"(chrom start end), found {len(cols)}")
        chrom = cols[0]
        start = _int_column(cols, 1, "start", where)
        end = _int_column(cols, 2, "end", where)
        if chrom not in sizes:
            raise InputError(f"{where}, column 1: chromosome {chrom!r} is not in the FASTA")
        if start < 0:
            raise InputError(f"{where}, column 2: start {start} is negative")
        if end <= start:
            raise InputError(f"{where}, column 3: end {end} is not after start {start}")
        if not narrow:
            out.tiled.append((chrom, start, end, where))
            continue
        summit = _int_column(cols, 9, "summit (narrowPeak column 10)", where)
        if summit == -1:
            centre = (start + end) // 2
        elif 0 <= summit < end - start:
            centre = start + summit
        else:
            raise InputError(f"{where}, column 10: summit offset {summit} is outside the peak "
                             f"(0..{end - start - 1}, or -1 for none)")
        s = centre - window // 2
        out.centred.append((chrom, s, s + window, where))
    if n_rows == 0:
        raise InputError(f"{path}: no regions in BED file")


def read_regions(sources, chrom_sizes: dict[str, int], window: int) -> list[Span]:
    """Spans of ``--regions`` values, in window order (chromosome bytes, start, end).

    ``sources``: one or a list of BED files (plain, bgzip or gzip; 0-based half-open; overlaps
    merged and tiled), narrowPeak files (``.narrowPeak[.gz]`` or 10 columns with an integer
    10th: one ``window``-bp window per peak centred on ``start + summit`` (-1: the peak
    middle), start ``centre - window // 2``; these may overlap and are never merged), and
    ``chr:start-end`` loci (1-based inclusive, commas allowed). Regions past a chromosome
    end (or, for centred windows, before its start) are clipped with one warning; a region
    on a chromosome not in the FASTA, or a malformed line, raises InputError naming file,
    line and column.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    raw = RegionSet()
    for source in sources:
        _read_source(source, chrom_sizes, int(window), raw)
    clipped = dropped = 0
    tiled, centred = [], set()
    for kind, rows in (("tiled", raw.tiled), ("centred", raw.centred)):
        for chrom, s, e, _where in rows:
            size = chrom_sizes[chrom]
            cs, ce = max(s, 0), min(e, size)
            if (cs, ce) != (s, e):
                clipped += 1
            if ce <= cs:
                dropped += 1
                continue
            if kind == "tiled":
                tiled.append((chrom.encode("utf-8"), cs, ce))
            else:
                centred.add((chrom.encode("utf-8"), cs, ce))
    if clipped:
        log.warning("%d region(s) reach outside their chromosome and were clipped to it%s",
                    clipped, f" ({dropped} lay wholly outside and were dropped)" if dropped else "")
    tiled.sort()
    merged: list[list] = []
    for c, s, e in tiled:
        if merged and merged[-1][0] == c and s < merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], e)
        else:
            merged.append([c, s, e])
    spans = [(c, s, e, False) for c, s, e in merged] + [(c, s, e, True) for c, s, e in centred]
    spans.sort()
    return [Span(c.decode("utf-8"), s, e, centred=f) for c, s, e, f in spans]


def parse_chroms(chroms) -> list[str] | None:
    """``--chroms`` values (each comma-separated, repeatable) -> names; None/empty -> None."""
    if chroms is None:
        return None
    if isinstance(chroms, str):
        chroms = [chroms]
    names = [n.strip() for item in chroms for n in str(item).split(",") if n.strip()]
    return list(dict.fromkeys(names)) or None


def read_intervals(path, chrom_sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """``--exclude`` BED (plain, bgzip or gzip) -> {chrom: (K, 2) int64 merged intervals}.

    Intervals on chromosomes not in the FASTA are ignored (a blacklist covers the whole
    assembly); malformed lines raise InputError naming file, line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--exclude {str(path)!r}: no such file")
    rows: dict[str, list] = {}
    for lineno, cols in bed_rows(path):
        where = f"{path}: line {lineno}"
        if len(cols) < 3:
            raise InputError(f"{where}, column {len(cols) + 1}: expected at least 3 columns "
                             f"(chrom start end), found {len(cols)}")
        start = _int_column(cols, 1, "start", where)
        end = _int_column(cols, 2, "end", where)
        if start < 0 or end < start:
            raise InputError(f"{where}, column 2: bad interval {start}-{end}")
        if cols[0] in chrom_sizes and end > start:
            rows.setdefault(cols[0], []).append((start, end))
    out = {}
    for chrom, ivs in rows.items():
        ivs.sort()
        merged: list[list[int]] = []
        for s, e in ivs:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out[chrom] = np.asarray(merged, dtype=np.int64).reshape(-1, 2)
    return out


def select_spans(spans: list[Span], chrom_sizes: dict[str, int], chroms=None,
                 exclude: dict[str, np.ndarray] | None = None) -> list[Span]:
    """Keep spans on ``chroms`` (None: all; unknown names raise InputError) and away from
    ``exclude`` intervals: a centred (narrowPeak) window overlapping one is dropped; a tiled
    span is cut around them, so no window of the run overlaps an excluded base."""
    names = parse_chroms(chroms)
    if names is not None:
        unknown = [n for n in names if n not in chrom_sizes]
        if unknown:
            raise InputError(f"--chroms: {', '.join(map(repr, unknown))} not in the FASTA "
                             f"(it has {', '.join(list(chrom_sizes)[:5])}"
                             f"{' ...' if len(chrom_sizes) > 5 else ''})")
        keep = set(names)
        spans = [s for s in spans if s.chrom in keep]
    if not exclude:
        return spans
    out: list[Span] = []
    n_dropped = n_cut = 0
    for span in spans:
        ivs = exclude.get(span.chrom)
        if ivs is None or not len(ivs):
            out.append(span)
            continue
        hit = ivs[(ivs[:, 0] < span.end) & (ivs[:, 1] > span.start)]
        if not len(hit):
            out.append(span)
        elif span.centred:
            n_dropped += 1
        else:
            n_cut += 1
            pos = span.start
            for s, e in hit:
                if s > pos:
                    out.append(Span(span.chrom, pos, int(s)))
                pos = max(pos, int(e))
            if pos < span.end:
                out.append(Span(span.chrom, pos, span.end))
    if n_dropped or n_cut:
        log.info("--exclude: %d centred window(s) dropped, %d span(s) cut around excluded "
                 "intervals", n_dropped, n_cut)
    return out


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
