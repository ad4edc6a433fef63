"""Disk safety of a run's outputs: the size estimate, the free-space check, the one-line
errors a full or unwritable disk gives, and the removal of dead runs' temporary files.

- :func:`estimate_output_bytes` sizes every output from the run's shape (bases, windows,
  tracks, sparsity, tiers) with bytes-per-unit figures measured on the shipped model
  (:data:`BYTES`); :func:`check_free_space` compares the total with the free space of
  the output folder and refuses (:class:`~plrp.errors.NoSpaceError`) naming both.
- :func:`output_errors` turns an ``OSError`` from anywhere in a run (Python's own files,
  h5py, polars, pysam, a writer thread) into :class:`~plrp.errors.NoSpaceError` (ENOSPC,
  EDQUOT, EFBIG: exit 6) or :class:`~plrp.errors.OutputError` (EROFS, EACCES, EPERM,
  ENOTDIR, EISDIR: exit 5), one line naming the file.
- :func:`clean_stale_temporaries` removes temporary files and folders of runs whose
  process is gone (their names carry host and pid, :mod:`plrp.atomic`); never a live one's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from plrp.atomic import is_stale
from plrp.errors import NoSpaceError, OutputError

log = logging.getLogger("plrp")

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR)
# libraries that format the C error into their message (h5py: "errno = 28", polars/pysam:
# the strerror text) instead of setting OSError.errno
_STRERROR = {os.strerror(code): code for code in NO_SPACE + NOT_WRITABLE}
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")

#: Bytes per unit of each output, measured with the shipped model on a random genome
#: (default flags; 2026-12-02, benchmarks/genome_scale.py and a 1 Mbp sweep of --sparsity)
#: and rounded up: per stored base (a base with a non-zero value) of one track, per window
#: of one (method, target), per (4, L) array element.
BYTES = {
    "h5_track": 5.3,            # position (shuffled uint32) + value (float32), deflated
    "bedgraph_plain": 36.0,     # one text line per stored base (equal neighbours are rare)
    "bedgraph_bgzip": 10.5,     # the same lines bgzip-compressed, plus the .tbi
    "bigwig": 11.5,             # data blocks and 10 zoom levels
    "h5_window": 48.0,          # coordinates, index, score, conservation error
    "h5_array_element": 0.9,    # one element of relevance/hypothetical, float32 deflated
    "h5_one_hot_element": 0.05, # one element of the one-hot input
}
#: Share of bases with a stored value at a sparsity fraction (measured as above: 0.917 at
#: 0, 0.555 at 0.05, 0.443 at 0.1, 0.365 at 0.15, 0.306 at 0.2, 0.216 at 0.3), rounded up;
#: interpolated between the points, the last one held beyond them.
STORED_SHARE = ((0.0, 0.95), (0.05, 0.58), (0.1, 0.46), (0.15, 0.38), (0.2, 0.32),
                (0.3, 0.23), (0.5, 0.13))
MARGIN = 1.1  # the estimate is refused against the free space with 10% to spare


def stored_share(sparsity: float) -> float:
    """Expected share of bases with a stored value at a ``sparsity`` fraction (0..1)."""
    pts = STORED_SHARE
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if sparsity <= x1:
            return y0 + (y1 - y0) * (max(sparsity, x0) - x0) / (x1 - x0)
    return pts[-1][1]


@dataclass
class OutputShape:
    """What a run will write: ``bases`` covered by windows, ``windows`` explained,
    ``window`` bp, ``tracks`` (methods x targets), per-base ``sparsity``, ``arrays``
    (per-window (N, 4, L) arrays) in ``array_dtype``, and the track ``formats``
    (names of :data:`plrp.outputs.sink.TRACK_FORMATS`)."""

    bases: int
    windows: int
    window: int
    tracks: int
    sparsity: float
    arrays: bool
    array_dtype: str
    formats: tuple[str, ...]


def estimate_output_bytes(shape: OutputShape) -> dict[str, int]:
    """Estimated bytes of each output kind, e.g. {"HDF5": ..., "bedGraph.gz": ...}."""
    stored = shape.bases * stored_share(shape.sparsity) * shape.tracks
    h5 = stored * BYTES["h5_track"] + shape.windows * shape.tracks * BYTES["h5_window"]
    if shape.arrays:
        elements = shape.windows * 4 * shape.window
        per = BYTES["h5_array_element"] * (0.5 if shape.array_dtype == "float16" else 1.0)
        h5 += elements * (2 * shape.tracks * per + BYTES["h5_one_hot_element"])
    out = {"HDF5": int(h5)}
    per_format = {"plain": ("bedGraph", "bedgraph_plain"), "bgzip": ("bedGraph.gz", "bedgraph_bgzip"),
                  "bigwig": ("bigWig", "bigwig")}
    for fmt in shape.formats:
        label, key = per_format[fmt]
        out[label] = int(stored * BYTES[key])
    return out


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes for an unprivileged writer where ``folder`` is (or would be created)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human(n: float) -> str:
    """Bytes as a short human-readable size (1 kB = 1000 bytes)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(folder: str | os.PathLike, estimate: dict[str, int]) -> None:
    """Raise :class:`NoSpaceError` when ``estimate`` (bytes per output kind), with
    :data:`MARGIN`, exceeds the free space of ``folder``; the message names both."""
    need = sum(estimate.values())
    free = free_bytes(folder)
    if need * MARGIN > free:
        parts = ", ".join(f"{k} {human(v)}" for k, v in estimate.items())
        raise NoSpaceError(f"{folder}: the outputs need about {human(need)} ({parts}) but "
                           f"only {human(free)} is free; free space, write elsewhere "
                           "(--out), or shrink the outputs (--sparsity, --no-arrays, "
                           "--bedgraph bgzip)")


def _errno_of(err: BaseException) -> int | None:
    """The errno behind an error, looking through its causes and the library's wording."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        code = getattr(err, "errno", None)
        if code in NO_SPACE + NOT_WRITABLE:
            return code
        text = str(err)
        m = _ERRNO_IN_TEXT.search(text)
        if m and int(m.group(1)) in NO_SPACE + NOT_WRITABLE:
            return int(m.group(1))
        for words, code in _STRERROR.items():
            if words in text:
                return code
        err = err.__cause__ or err.__context__
    return None


def output_error(err: BaseException, where: str | os.PathLike | None = None
                 ) -> OutputError | None:
    """The one-line user error for a disk problem (None when ``err`` is not one)."""
    code = _errno_of(err)
    if code is None:
        return None
    name = getattr(err, "filename", None) or where
    prefix = f"{name}: " if name else ""
    if code in NO_SPACE:
        why = {errno.EFBIG: "file too large for the file-size limit (ulimit -f) or the "
                            "filesystem"}.get(code, os.strerror(code).lower())
        return NoSpaceError(f"{prefix}{why} while writing the outputs; nothing was kept")
    return OutputError(f"{prefix}cannot write the outputs ({os.strerror(code).lower()}); "
                       "nothing was kept")


@contextlib.contextmanager
def output_errors(where: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn disk errors raised inside the block into :func:`output_error`'s one line."""
    try:
        yield
    except OutputError:
        raise
    except Exception as err:
        mapped = output_error(err, where)
        if mapped is None:
            raise
        raise mapped from None


def clean_stale_temporaries(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove dead runs' temporary outputs in ``folder`` (``.NAME.plrp-HOST-PID-*.tmp``)
    and their FASTA index folders in the system temporary folder (``plrp-fai-plrp-HOST-
    PID-*``); keep everything of live processes and other hosts. Returns what was removed."""
    removed = []
    candidates = []
    if folder is not None and Path(folder).is_dir():
        candidates += [p for p in Path(folder).iterdir()
                       if p.name.startswith(".") and p.name.endswith(".tmp")]
    tmp = Path(tempfile.gettempdir())
    candidates += [p for p in tmp.glob("plrp-fai-plrp-*") if p.is_dir()]
    for path in candidates:
        if not is_stale(path.name):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as err:  # someone else's, or already gone: not ours to insist
            log.debug("could not remove %s: %s", path, err)
            continue
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of dead runs: %s", len(removed),
                 ", ".join(str(p) for p in removed[:3]))
    return removed
