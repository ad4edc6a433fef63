"""bedGraph track writers: plain text (IGV) and bgzip-compressed with a tabix index.

API (contracts 5; every track writer has it)::

    w = BedGraphWriter(path, chrom_sizes, track_line=None)         # plain .bedGraph
    w = BgzipBedGraphWriter(path, chrom_sizes, companion_paths=None)  # .bedGraph.gz + .tbi
    w.add(chrom, positions, values)   # sequences in byte order, positions increasing,
                                      # zero bases absent; equal neighbours join into runs
    w.close() -> number of intervals  # bgzip: writes the tabix index
    w.abort()                         # removes what was written (index included)
    write_bedgraph_lines(fh, chrom, starts, ends, values); read_bedgraph(path)

Lines are ``chrom<TAB>start<TAB>end<TAB>value<LF>``, 0-based half-open, values in the
shortest text that reads back as the same float32. A genome-wide track has hundreds of
millions of lines: Python's per-value formatting costs about 0.7 us a line and a numpy
formatter 0.17 us while holding the GIL; polars' CSV writer (Rust) takes about 0.07 us a
line and releases the GIL, so the tracks of several targets are written in parallel.

The bgzip file has no track line: tabix (1.16) counts it as a record of a sequence named
"track" and the index breaks at the first sequence's start (measured). A sequence longer
than 2**29 bases cannot go in a .tbi; then the index is a CSI (``.csi``).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from plrp.outputs.deflate import deflate
from plrp.outputs.tabix import TabixIndexer
from plrp.outputs.tracks import RunBatcher
from plrp.outputs.writer import TrackWriter
from plrp.hostmemory import WrittenPages

_LINES_PER_WRITE = 1 << 18  # bedGraph lines per polars call (numpy arrays: ~5 MB)
TBI_MAX_LENGTH = 1 << 29    # the .tbi binning scheme stops here
BGZF_LEVEL = 1              # ISA-L level 1: 3% larger than zlib -6, 18x faster (measured)
_BGZF_BLOCK = 0xFF00        # uncompressed bytes per BGZF block (htslib's choice)
_BGZF_HEADER = struct.Struct("<4BI2BH2BHH")
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def write_bedgraph_lines(fh: BinaryIO, chrom: str | Sequence[str], starts: np.ndarray,
                         ends: np.ndarray, values: np.ndarray,
                         counts: np.ndarray | None = None) -> None:
    """Append bedGraph data lines for intervals ``[starts, ends)`` (int, (n,)) and their
    ``values`` ((n,), printed as float32) to the binary file ``fh``.

    ``chrom``: the sequence of every line, or a list of names each covering the next
    ``counts[i]`` lines (sum(counts) = n).
    """
    if len(starts) == 0:
        return
    import polars as pl

    if isinstance(chrom, str):
        name = pl.lit(chrom, dtype=pl.String)
    else:
        which = np.repeat(np.arange(len(chrom)), np.asarray(counts, dtype=np.int64))
        name = pl.Series(list(chrom), dtype=pl.String).gather(which)
    frame = pl.DataFrame({
        "start": np.asarray(starts, dtype=np.int64),
        "end": np.asarray(ends, dtype=np.int64),
        "value": np.asarray(values, dtype=np.float32),
    }).select(name.alias("chrom"), "start", "end", "value")
    fh.flush()  # polars may write to the descriptor itself
    # never quote: a FASTA name holds no tab or newline, but may hold '"'
    frame.write_csv(fh, separator="\t", include_header=False, quote_style="never",
                    line_terminator="\n")


class _RunWriter(TrackWriter):
    """Shared part of the bedGraph writers: byte-order check, runs across calls, batching.

    Subclasses open ``self._sink`` (a binary file) and may override ``_write_lines``.
    """

    def __init__(self, path: str | os.PathLike, chrom_sizes=None):
        self.path = Path(path)
        self.n_intervals = 0
        # bases wait here until there are enough for one text call (~0.5 ms each): a draft
        # assembly's thousands of small scaffolds would otherwise cost a call each
        self._runs = RunBatcher(f"bedGraph {self.path}")
        self._closed = False

    def add(self, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
        """Take the next stored bases of ``chrom``: (M,) positions increasing, (M,) values."""
        self._runs.add(chrom, positions, values)
        if self._runs.n_bases >= _LINES_PER_WRITE:
            self._write(self._runs.take(final=False))

    def _write(self, runs) -> None:
        if runs is None:
            return
        names, counts, starts, ends, values = runs
        self.n_intervals += starts.size
        if len(names) == 1:
            names, counts = names[0], None
        self._write_lines(names, starts, ends, values, counts)

    def _write_lines(self, chroms, starts, ends, values, counts) -> None:
        write_bedgraph_lines(self._sink, chroms, starts, ends, values, counts=counts)

    def close(self) -> int:
        """Write the last run and finish the file; returns the number of intervals."""
        if not self._closed:
            self._closed = True
            try:
                self._write(self._runs.take(final=True))
            finally:
                self._sink.close()
            self._finish()
        return self.n_intervals

    def _finish(self) -> None:
        pass

    def abort(self) -> None:
        """Stop and remove every file written (the run failed)."""
        self._closed = True
        try:
            self._sink.close()
        except OSError:
            pass  # e.g. a full disk while flushing: the file goes anyway
        for p in self.paths():
            Path(p).unlink(missing_ok=True)



class BedGraphWriter(_RunWriter):
    """Plain bedGraph, written as the run goes; ``track_line`` (IGV's name/description)
    goes first when given. ``chrom_sizes`` is not needed (kept for one constructor shape)."""

    def __init__(self, path: str | os.PathLike, chrom_sizes=None, *,
                 track_line: str | None = None, companion_paths=None):
        super().__init__(path, chrom_sizes)
        self._sink = open(self.path, "wb")
        self._pages = WrittenPages(self._sink.fileno())
        if track_line:
            self._sink.write((track_line.rstrip("\n") + "\n").encode("utf-8"))

    def _write_lines(self, *args) -> None:
        super()._write_lines(*args)
        self._pages.check()


def bgzf_block(data: bytes, level: int = BGZF_LEVEL) -> bytes:
    """One BGZF block (a gzip member with the 'BC' extra field) of <= 65280 bytes of data."""
    body = deflate(data, level, raw=True)
    if len(body) > 65536 - 26:   # incompressible: stored blocks always fit
        body = deflate(data, 0, raw=True)
    head = _BGZF_HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, 66, 67, 2, len(body) + 25)
    return head + body + struct.pack("<II", zlib.crc32(data), len(data))


_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _bgzf_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, min(4, (os.cpu_count() or 2))),
                                       thread_name_prefix="plrp-bgzf")
        return _POOL


class BgzfFile:
    """Write a BGZF file (what bgzip writes) block by block, deflated on a thread pool.

    ``write(data)`` appends bytes; ``close()`` writes the last block and the EOF marker.
    htslib's writer (through pysam) ran at 15 MB/s of text here; this one at ~150 MB/s a
    thread.
    """

    def __init__(self, path: str | os.PathLike, level: int = BGZF_LEVEL):
        self._fh = open(path, "wb")
        self._pages = WrittenPages(self._fh.fileno())
        self._level = level
        self._pending = bytearray()
        self._futures: list = []
        self.closed = False
        self.uncompressed = 0            # bytes written so far (the next byte's position)
        self._sizes: list[int] = []      # compressed size of each block written

    def write(self, data: bytes) -> None:
        self.uncompressed += len(data)
        self._pending += data
        n = len(self._pending) // _BGZF_BLOCK * _BGZF_BLOCK
        if n:
            pool = _bgzf_pool()
            view = bytes(self._pending[:n])
            del self._pending[:n]
            for a in range(0, n, _BGZF_BLOCK):
                self._futures.append(pool.submit(bgzf_block, view[a:a + _BGZF_BLOCK],
                                                 self._level))
            self._write_done(keep=8)

    def _write_done(self, keep: int) -> None:
        """Write finished blocks in order; wait while more than ``keep`` are in flight."""
        while self._futures and (self._futures[0].done() or len(self._futures) > keep):
            block = self._futures.pop(0).result()
            self._sizes.append(len(block))
            self._fh.write(block)
        self._pages.check()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._pending:
                self._futures.append(_bgzf_pool().submit(bgzf_block, bytes(self._pending),
                                                         self._level))
                self._pending.clear()
            self._write_done(keep=0)
            self._fh.write(_BGZF_EOF)
        finally:
            for f in self._futures:
                f.cancel()
            self._futures.clear()
            self._fh.close()


    def block_offsets(self) -> np.ndarray:
        """Compressed offset of every data block, and of the end marker (after close):
        uncompressed byte u lies in block u // 0xFF00."""
        return np.concatenate(([0], np.cumsum(self._sizes, dtype=np.int64)))


def index_suffix(chrom_sizes) -> str:
    """".tbi", or ".csi" when a sequence is too long for a tabix .tbi index."""
    longest = max((int(n) for _, n in chrom_sizes or ()), default=0)
    return ".csi" if longest >= TBI_MAX_LENGTH else ".tbi"


class BgzipBedGraphWriter(_RunWriter):
    """bgzip-compressed bedGraph (no track line) and its tabix index, beside it.

    The text is compressed as it is written (:class:`BgzfFile`); ``close`` builds the index
    from the compressed file with htslib (pysam), so no uncompressed copy is ever on disk.
    ``companion_paths``: {".tbi" or ".csi": path} where the index goes (default: path +
    suffix), so a job can hand out temporary names.
    """

    def __init__(self, path: str | os.PathLike, chrom_sizes, *, track_line: str | None = None,
                 companion_paths: dict | None = None):
        super().__init__(path, chrom_sizes)
        self.index_suffix = index_suffix(chrom_sizes)
        given = dict(companion_paths or {})
        self.index_path = Path(given.get(self.index_suffix, f"{self.path}{self.index_suffix}"))
        self._sink = BgzfFile(self.path)
        self._buf = io.BytesIO()
        # a .tbi is laid out from the lines as they are written; a .csi (sequences over
        # 512 Mb) is left to htslib, which reads the finished file
        self._indexer = TabixIndexer() if self.index_suffix == ".tbi" else None

    @classmethod
    def companion_suffixes(cls, chrom_sizes) -> tuple[str, ...]:
        return (index_suffix(chrom_sizes),)

    def _write_lines(self, chroms, starts, ends, values, counts) -> None:
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        write_bedgraph_lines(buf, chroms, starts, ends, values, counts=counts)
        text = buf.getvalue()
        if self._indexer is not None:
            self._index_lines(text, chroms, starts, ends, counts)
        self._sink.write(text)

    def _index_lines(self, text: bytes, chroms, starts, ends, counts) -> None:
        """Hand the lines about to be written (one per interval) to the indexer."""
        line_end = np.flatnonzero(np.frombuffer(text, np.uint8) == 10) + 1
        if line_end.size != starts.size:
            raise RuntimeError(f"{self.path}: {line_end.size} lines for {starts.size} intervals")
        line_end += self._sink.uncompressed
        line_beg = np.concatenate(([self._sink.uncompressed], line_end[:-1]))
        if isinstance(chroms, str):
            chroms, counts = [chroms], [starts.size]
        at = 0
        for name, n in zip(chroms, np.asarray(counts).tolist()):
            part = slice(at, at + n)
            self._indexer.add(name, np.asarray(starts[part], np.int64),
                              np.asarray(ends[part], np.int64), line_beg[part], line_end[part])
            at += n

    def _finish(self) -> None:
        if self._indexer is not None:
            self._indexer.write(self.index_path, self._sink.block_offsets(), _BGZF_BLOCK,
                                bgzf_block, _BGZF_EOF)
            return
        import pysam

        pysam.tabix_index(str(self.path), preset="bed", force=True, csi=True,
                          index=str(self.index_path))

    def paths(self) -> list[Path]:
        return [self.path, self.index_path]


def read_bedgraph(path: str | os.PathLike) -> list[tuple[str, int, int, float]]:
    """Read a bedGraph's data lines (skipping track/browser/# lines; .gz read as gzip)."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.startswith(("track", "browser", "#")):
                continue
            c, s, e, v = line.rstrip("\n").split("\t")
            out.append((c, int(s), int(e), float(v)))
    return out
