"""Evaluation inputs: FASTA records cut into model windows, and the ground-truth BED.

Windows: FASTA records as long as the model's input are one window each; longer records are
tiled with the model's window (stride = window, the last window aligned to the record's end);
shorter records are skipped. Truth BED intervals (0-based, half-open) are clipped to each
window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from plrp.errors import InputError
from plrp.genome.windows import bed_rows

@dataclass
class TruthInterval:
    """One ground-truth motif instance: ``chrom[start:end]`` (0-based, half-open)."""

    chrom: str
    start: int
    end: int
    name: str


@dataclass
class EvalWindows:
    """Windows to evaluate: ``x`` (N, 4, L) float32 one-hot, coordinates ``chrom``/``start``."""

    chrom: list[str]
    start: np.ndarray
    x: np.ndarray
    skipped_short: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.x.shape[2])


def read_truth_bed(path: str | Path, chrom_sizes: dict[str, int]) -> list[TruthInterval]:
    """Read the ground-truth BED: chrom, start, end, name (motif), further columns ignored.

    Read as every BED of plrp is (``plrp.genome.windows.bed_rows``: gzip too;
    ``track``/``browser``/``#`` lines skipped). Raises :class:`InputError` naming the line
    for malformed rows, a chromosome not in the FASTA or an interval outside it.
    """
    out = []
    for lineno, cols in bed_rows(path):
        if len(cols) < 4:
            raise InputError(f"{path}: line {lineno}: expected at least 4 columns "
                             "(chrom start end motif)")
        try:
            start, end = int(cols[1]), int(cols[2])
        except ValueError:
            raise InputError(f"{path}: line {lineno}: start/end must be integers") from None
        if cols[0] not in chrom_sizes:
            raise InputError(f"{path}: line {lineno}: chromosome {cols[0]!r} is not in the FASTA")
        if not 0 <= start < end <= chrom_sizes[cols[0]]:
            raise InputError(f"{path}: line {lineno}: interval {start}-{end} is empty or outside "
                             f"{cols[0]} (length {chrom_sizes[cols[0]]})")
        out.append(TruthInterval(cols[0], start, end, cols[3]))
    return out


def load_windows(fasta: str | Path, window: int) -> tuple[EvalWindows, dict[str, int]]:
    """Read a FASTA and cut it into model windows of ``window`` bp (see the module docstring).

    Returns the windows and the FASTA's record lengths {name: bp}.
    """
    from plrp.genome.fasta import FastaReader, one_hot
    from plrp.genome.windows import tile_starts

    chroms, starts, arrays, short = [], [], [], []
    with FastaReader(fasta) as reader:
        for name, length in reader.chroms:
            if length < window:
                short.append(name)
                continue
            seq = reader.fetch(name, 0, length)
            for s in tile_starts(length, window, window):
                chroms.append(name)
                starts.append(int(s))
                arrays.append(one_hot(seq[s:s + window]))
        sizes = dict(reader.chroms)
    if not arrays:
        raise InputError(f"{fasta}: no record is at least {window} bp (the model's window)")
    return EvalWindows(chroms, np.array(starts, np.int64),
                       np.stack(arrays).astype(np.float32), short), sizes


def truth_masks(windows: EvalWindows, intervals: Sequence[TruthInterval],
                motif_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of each window for the given motifs.

    Returns ``mask`` (N, L) bool (positions inside any instance, clipped to the window) and
    ``complete`` (N, M) bool (window holds a complete instance of motif m, in ``motif_names``
    order).
    """
    n, length = windows.x.shape[0], windows.length
    mask = np.zeros((n, length), bool)
    complete = np.zeros((n, len(motif_names)), bool)
    by_chrom: dict[str, list[int]] = {}
    for i, c in enumerate(windows.chrom):
        by_chrom.setdefault(c, []).append(i)
    index = {m: j for j, m in enumerate(motif_names)}
    for iv in intervals:
        if iv.name not in index:
            continue
        for i in by_chrom.get(iv.chrom, ()):
            w0 = int(windows.start[i])
            a, b = max(iv.start, w0), min(iv.end, w0 + length)
            if a < b:
                mask[i, a - w0:b - w0] = True
                if iv.start >= w0 and iv.end <= w0 + length:
                    complete[i, index[iv.name]] = True
    return mask, complete


def resolve_target_motifs(target: str, bed_names: set[str], motifs: Sequence[str] | None
                          ) -> list[str]:
    """Motif names whose instances are the ground truth of ``target``.

    Explicit ``motifs`` win. Otherwise: the target's own name when the BED uses it, else the
    parts of an ``A_AND_B`` task name (the simulation's AND tasks) when the BED uses them all.
    """
    if motifs:
        missing = [m for m in motifs if m not in bed_names]
        if missing:
            raise InputError(f"--motifs: {', '.join(missing)} not found in the truth BED "
                             f"(names there: {', '.join(sorted(bed_names))})")
        return list(motifs)
    if target in bed_names:
        return [target]
    parts = target.split("_AND_")
    if len(parts) > 1 and all(p in bed_names for p in parts):
        return parts
    raise InputError(f"target {target!r}: no motif of that name in the truth BED (names there: "
                     f"{', '.join(sorted(bed_names)) or 'none'}); name its motifs with --motifs")


