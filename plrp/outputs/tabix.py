"""A tabix (.tbi) index built while a BGZF bedGraph is written, not by re-reading it.

htslib's indexer (pysam.tabix_index) decompresses and parses the whole finished file: a
third of a run's closing time at 4 Mbp, minutes per track for a genome. Here the writer
reports each line's interval and uncompressed byte range as it writes them, and the index is
laid out when the file is closed and its blocks' compressed offsets are known.

Format (htslib's tabix spec): magic "TBI\\1", n_ref, format (0x10000: UCSC 0-based, half
open), sequence/begin/end columns 1/2/3, meta '#', skip 0, the sequence names; per sequence
the binning index (UCSC bins of 16 kb to 512 Mb: bin -> chunks of virtual offsets, where
consecutive lines of one bin form one chunk), htslib's pseudo-bin 37450 (the sequence's
offsets and line count), and the linear index (per 16 kb tile, the virtual offset of the
first line that overlaps it; an empty tile takes the next line's); then the number of
lines without coordinates (0). The whole index is BGZF-compressed. A virtual offset is the
block's compressed offset << 16 | the position in its uncompressed data.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MIN_SHIFT = 14                                   # 16 kb tiles and finest bins
_LEVELS = ((14, 4681), (17, 585), (20, 73), (23, 9), (26, 1))   # (shift, first bin)
_META_BIN = 37450
_TBX_UCSC = 0x10000


def bins_of(beg: np.ndarray, end: np.ndarray) -> np.ndarray:
    """UCSC bin of each interval [beg, end) (int64 arrays): the smallest bin holding it."""
    last = end - 1
    out = np.zeros(beg.shape, dtype=np.int64)
    done = np.zeros(beg.shape, dtype=bool)
    for shift, first in _LEVELS:
        here = ~done & ((beg >> shift) == (last >> shift))
        out[here] = first + (beg[here] >> shift)
        done |= here
    return out


class _Sequence:
    """One sequence's bins (bin -> [[u_beg, u_end], ...]) and tiles, in uncompressed offsets."""

    def __init__(self) -> None:
        self.chunks: dict[int, list[list[int]]] = {}
        self.tiles: dict[int, int] = {}
        self.first = self.last = None
        self.n = 0


class TabixIndexer:
    """Collects lines as they are written; ``write`` lays the index out."""

    def __init__(self) -> None:
        self.sequences: dict[str, _Sequence] = {}     # in the file's order

    def add(self, chrom: str, beg: np.ndarray, end: np.ndarray, line_beg: np.ndarray,
            line_end: np.ndarray) -> None:
        """Lines of ``chrom`` in file order: intervals [beg, end) and their uncompressed
        byte ranges [line_beg, line_end) (int64 arrays of one length)."""
        if beg.size == 0:
            return
        seq = self.sequences.setdefault(chrom, _Sequence())
        seq.n += int(beg.size)
        seq.first = int(line_beg[0]) if seq.first is None else seq.first
        seq.last = int(line_end[-1])
        bins = bins_of(beg, end)
        # runs of consecutive lines in one bin are one chunk each
        cut = np.flatnonzero(np.diff(bins)) + 1
        starts = np.concatenate(([0], cut))
        stops = np.concatenate((cut, [bins.size])) - 1
        for b, u0, u1 in zip(bins[starts].tolist(), line_beg[starts].tolist(),
                             line_end[stops].tolist()):
            chunks = seq.chunks.setdefault(b, [])
            if chunks and chunks[-1][1] == u0:
                chunks[-1][1] = u1
            else:
                chunks.append([u0, u1])
        # the first line (lowest offset) overlapping each tile
        lo, hi = beg >> _MIN_SHIFT, (end - 1) >> _MIN_SHIFT
        span = hi - lo + 1
        tiles = np.repeat(lo, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span,
                                                                        span))
        offsets = np.repeat(line_beg, span)
        new, first = np.unique(tiles, return_index=True)
        for t, u in zip(new.tolist(), offsets[first].tolist()):
            seq.tiles.setdefault(t, u)

    def write(self, path, block_offsets: np.ndarray, block_data: int, block, eof: bytes
              ) -> None:
        """Write the index to ``path`` for a file whose uncompressed byte u lies in block
        u // ``block_data`` at compressed offset ``block_offsets[k]`` (the last entry: the
        end of the data). ``block(bytes)`` -> one BGZF block; ``eof``: the end marker."""
        total = max((s.last for s in self.sequences.values()), default=0)

        def virtual(u: int) -> int:
            if u >= total:  # the end of the data reads as the start of the next block
                return int(block_offsets[-1]) << 16
            k, within = divmod(u, block_data)
            return int(block_offsets[k]) << 16 | within

        names = list(self.sequences)
        blob = b"".join(n.encode("utf-8") + b"\0" for n in names)
        out = [b"TBI\x01", struct.pack("<8i", len(names), _TBX_UCSC, 1, 2, 3, ord("#"), 0,
                                        len(blob)), blob]
        for name in names:
            seq = self.sequences[name]
            bins = _compress({b: [(virtual(u0), virtual(u1)) for u0, u1 in chunks]
                              for b, chunks in seq.chunks.items()})
            out.append(struct.pack("<i", len(bins) + 1))
            for b in sorted(bins):
                out.append(struct.pack("<Ii", b, len(bins[b])))
                out.append(b"".join(struct.pack("<QQ", u, v) for u, v in bins[b]))
            out.append(struct.pack("<IiQQQQ", _META_BIN, 2, virtual(seq.first),
                                   virtual(seq.last), seq.n, 0))
            # an empty tile takes the offset of the next line (as htslib fills it)
            n_tiles = max(seq.tiles) + 1
            linear, after = [0] * n_tiles, virtual(seq.last)
            for tile in range(n_tiles - 1, -1, -1):
                after = virtual(seq.tiles[tile]) if tile in seq.tiles else after
                linear[tile] = after
            out.append(struct.pack(f"<i{n_tiles}Q", n_tiles, *linear))
        out.append(struct.pack("<Q", 0))
        data = b"".join(out)
        with open(Path(path), "wb") as fh:
            for a in range(0, len(data), block_data):
                fh.write(block(data[a:a + block_data]))
            fh.write(eof)


def _compress(bins: dict[int, list[tuple[int, int]]]) -> dict[int, list[tuple[int, int]]]:
    """htslib's last step, so that the index is the one ``tabix`` writes: a bin whose chunks
    span under 64 kB of compressed file joins its parent bin when that exists (finest level
    first), and chunks that touch the same BGZF block are merged."""
    bins = {b: list(c) for b, c in bins.items()}
    for level in range(len(_LEVELS), 0, -1):
        first = ((1 << 3 * level) - 1) // 7
        for b in [b for b in bins if b >= first]:
            chunks = bins[b]
            if level < len(_LEVELS):
                chunks.sort(key=lambda c: c[0])
            parent = (b - 1) >> 3
            if (chunks[-1][1] >> 16) - (chunks[0][0] >> 16) < 1 << 16 and parent in bins:
                bins[parent].extend(chunks)
                del bins[b]
    if 0 in bins:
        bins[0].sort(key=lambda c: c[0])
    for b, chunks in bins.items():
        merged = [list(chunks[0])]
        for u, v in chunks[1:]:
            if merged[-1][1] >> 16 >= u >> 16:
                merged[-1][1] = max(merged[-1][1], v)
            else:
                merged.append([u, v])
        bins[b] = [tuple(c) for c in merged]
    return bins
