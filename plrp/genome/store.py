"""The HDF5 relevance file (contracts section 4): writer and a small reader API.

Layout (N windows of length L, C chromosomes, M explained bases of a chromosome)::

    /                      attrs: format="plrp-relevance", format_version=1, ... (see below)
    /chroms/name (C,) str, /chroms/length (C,) int64          every FASTA record
    /windows/chrom (N,) str (fixed-length UTF-8), start (N,) int64, end (N,) int64, index (N,) int64
    /windows/one_hot (N, 4, L) uint8
    /attributions/<method>/<target>/relevance (N, 4, L) float32
                                   /hypothetical (N, 4, L) float32
                                   /score (N,) float32, /conservation_error (N,) float32
                                   /track/<chrom>/position (M,) int64, value (M,) float32

Chromosome names become HDF5 group names with ``%``, ``/`` and a leading ``.`` escaped as
``%25``, ``%2F``, ``%2E`` (:func:`chrom_key`); the reader undoes it.
Attributes holding lists/dicts are JSON strings; :func:`open_store` decodes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from plrp.pagecache import WrittenPages

FORMAT = "plrp-relevance"
FORMAT_VERSION = 1
JSON_ATTRS = ("architecture", "targets", "methods", "skipped")
ATTRIBUTION_ARRAYS = ("relevance", "hypothetical", "score", "conservation_error")
_TRACK_CHUNK = 1 << 15


def chrom_key(name: str) -> str:
    """Chromosome name -> HDF5 group name (escape %, / and a leading '.')."""
    key = name.replace("%", "%25").replace("/", "%2F")
    return "%2E" + key[1:] if key.startswith(".") else key


def chrom_from_key(key: str) -> str:
    """Inverse of :func:`chrom_key`."""
    return key.replace("%2F", "/").replace("%2E", ".").replace("%25", "%")


def _compression(level: int) -> dict:
    # gzip level 1 without the shuffle filter: relevance is 3/4 zeros (one-hot input) and
    # compresses best and fastest that way (measured: about 2x faster than with shuffle)
    return {"compression": "gzip", "compression_opts": level}


try:  # ISA-L writes the same zlib streams 5-10x faster than zlib (measured 400 vs 41-77 MB/s)
    from isal.isal_zlib import compress as _isal_compress
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib still works
    _isal_compress = None


def deflate(data, level: int) -> bytes:
    """zlib-format deflate of ``data``, what HDF5's gzip filter reads (ISA-L when present).

    Level 0 stores; ISA-L's levels stop at 3, so higher levels use zlib's own.
    """
    import zlib

    if _isal_compress is not None and 1 <= level <= 3:
        return _isal_compress(data, level)
    return zlib.compress(data, level)


def _encode_chunk(chunk: np.ndarray, level: int, shuffle: bool) -> bytes:
    """A chunk's bytes as HDF5 stores them: byte-shuffled (optional), then deflated."""
    if shuffle and chunk.itemsize > 1:
        # byte k of every element together: what HDF5's shuffle filter writes
        chunk = np.ascontiguousarray(chunk.view(np.uint8).reshape(-1, chunk.itemsize).T)
    return deflate(chunk, level)


class _ChunkStream:
    """Append rows to a chunked, gzip-compressed (N, ...) dataset one whole chunk at a time.

    Rows are staged until a chunk is full, deflated on a thread pool (ISA-L and zlib
    release the GIL, so compression runs beside the engine) and written with
    ``write_direct_chunk`` in order: the bytes are what HDF5's gzip filter reads. The last,
    partial chunk is zero-padded (HDF5 edge chunks are full-size). ``grow``: resize the
    dataset as chunks arrive (for datasets of unknown final length; cut by ``flush``).
    """

    def __init__(self, ds, rows_per_chunk: int, level: int, pool, grow: bool = False):
        self.ds, self.rows, self.level, self.pool = ds, rows_per_chunk, level, pool
        self.grow = grow
        self.shuffle = bool(ds.shuffle)  # HDF5's shuffle filter runs before deflate
        # h5py asks HDF5 for shape and dtype on every access (~20 us, holding the GIL)
        self.dtype, self.extent = ds.dtype, ds.shape[0]
        self._zeros = (0,) * (ds.ndim - 1)
        self._buf = np.zeros((rows_per_chunk,) + ds.shape[1:], dtype=self.dtype)
        self._fill = 0
        self._next_chunk = 0
        self._pending: list = []  # (row offset, future) in order

    @property
    def n_rows(self) -> int:
        return self._next_chunk * self.rows + self._fill

    def append(self, arr: np.ndarray) -> None:
        """Stage rows ``arr`` (C-contiguous, not modified afterwards by the caller)."""
        i = 0
        while i < arr.shape[0]:
            if self._fill == 0 and arr.shape[0] - i >= self.rows:
                self._submit(arr[i:i + self.rows])  # a whole chunk: deflate it in place
                i += self.rows
                continue
            take = min(self.rows - self._fill, arr.shape[0] - i)
            self._buf[self._fill:self._fill + take] = arr[i:i + take]
            self._fill += take
            i += take
            if self._fill == self.rows:
                self._submit()

    def _submit(self, whole: np.ndarray | None = None) -> None:
        if whole is None:
            buf, self._buf = self._buf, np.zeros_like(self._buf)
            buf[self._fill:] = 0
        else:
            buf = whole
        offset = self._next_chunk * self.rows
        self._pending.append((offset, self.pool.submit(_encode_chunk, buf, self.level,
                                                        self.shuffle)))
        self._next_chunk += 1
        self._fill = 0
        # write finished chunks; keep at most a few in flight (bounded memory)
        while self._pending and (self._pending[0][1].done() or len(self._pending) > 4):
            self._write_oldest()

    def _write_oldest(self) -> None:
        offset, fut = self._pending.pop(0)
        if self.grow and self.extent < offset + self.rows:
            self.resize(offset + self.rows)
        self.ds.id.write_direct_chunk((offset,) + self._zeros, fut.result())

    def resize(self, n: int) -> None:
        self.ds.resize(n, axis=0)
        self.extent = n

    def drain(self) -> None:
        """Write every chunk submitted so far (waiting for its deflate)."""
        while self._pending:
            self._write_oldest()

    def flush(self) -> None:
        n = self.n_rows
        if self._fill:
            self._submit()
        self.drain()
        if self.grow:
            self.resize(n)


class _TrackStream:
    """One chromosome's merged track: ``position`` (int64, shuffled) and ``value`` (float32).

    A track shorter than one chunk (the scaffolds of a draft assembly) is held and written
    in one call when it ends: creating, growing and cutting chunked datasets cost about
    3 ms a scaffold, 5x the engine's time for a 600 bp one. Longer tracks stream a chunk at
    a time (:class:`_ChunkStream`).
    """

    # positions mostly step by 1: shuffled, they deflate 20x smaller and 6x faster
    # (measured); float values do not gain
    FIELDS = (("position", np.int64, True), ("value", np.float32, False))

    def __init__(self, h5, path: str, comp: dict, level: int, pool):
        self.h5, self.path, self.comp, self.level, self.pool = h5, path, comp, level, pool
        self._held: list[tuple[np.ndarray, np.ndarray]] = []
        self._n = 0
        self._streams: tuple[_ChunkStream, ...] | None = None

    def append(self, positions: np.ndarray, values: np.ndarray) -> None:
        arrays = [np.ascontiguousarray(a, dtype=d) for a, (_, d, _) in
                  zip((positions, values), self.FIELDS)]
        if self._streams is None:
            self._held.append(tuple(arrays))
            self._n += len(arrays[0])
            if self._n < _TRACK_CHUNK:
                return
            arrays = self._take_held()
            group = self.h5.create_group(self.path)  # new: a chromosome comes once
            self._streams = tuple(
                _ChunkStream(group.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_TRACK_CHUNK,),
                    shuffle=shuffle, **self.comp), _TRACK_CHUNK, self.level, self.pool,
                    grow=True)
                for name, dtype, shuffle in self.FIELDS)
        for stream, arr in zip(self._streams, arrays):
            stream.append(arr)

    def _take_held(self) -> list[np.ndarray]:
        arrays = [np.concatenate([h[k] for h in self._held]) for k in range(2)]
        self._held, self._n = [], 0
        return arrays

    def drain(self) -> None:
        for stream in self._streams or ():
            stream.drain()

    def finish(self) -> None:
        if self._streams is not None:
            for stream in self._streams:
                stream.flush()
        elif self._held:
            group = self.h5.create_group(self.path)  # new: a chromosome comes once
            for (name, _, shuffle), arr in zip(self.FIELDS, self._take_held()):
                group.create_dataset(name, data=arr, maxshape=(None,),
                                     chunks=(max(len(arr), 1),), shuffle=shuffle, **self.comp)


class StoreWriter:
    """Write one relevance file, window batch by window batch.

    ``capacity``: an upper bound on the number of windows (datasets are pre-sized to it and
    cut to the real count by :meth:`finish`). ``attrs``: root attributes (dicts/lists are
    stored as JSON). ``method_attrs``: {method: {variant, p_pos, p_neg, composite}}.
    ``deflate_threads``: threads compressing chunks (default: all cores but one).
    Memory: nothing is kept beyond the arrays handed in.
    """

    def __init__(self, path: str | os.PathLike, *, chroms: list[tuple[str, int]], window: int,
                 capacity: int, methods: list[str], targets: list[str], attrs: dict,
                 method_attrs: dict[str, dict], compression_level: int = 1,
                 deflate_threads: int | None = None):
        import h5py

        self.path = Path(path)
        self.window = int(window)
        self.methods, self.targets = list(methods), list(targets)
        self._n = 0
        self._h5 = h5py.File(self.path, "w", libver=("v110", "latest"))
        mdc = self._h5.id.get_mdc_config()
        mdc.set_initial_size = True
        mdc.initial_size = 1 << 20
        mdc.max_size = 4 << 20
        mdc.min_size = 1 << 20
        self._h5.id.set_mdc_config(mdc)
        self._pages = WrittenPages(self._h5.id.get_vfd_handle())
        h5 = self._h5
        comp = _compression(compression_level)
        root = {"format": FORMAT, "format_version": FORMAT_VERSION, "alphabet": "ACGT",
                "window": self.window}
        root.update(attrs)
        for k, v in root.items():
            self.set_attr(k, v)
        sdt = h5py.string_dtype("utf-8")
        h5.create_dataset("chroms/name", data=np.array([c for c, _ in chroms], dtype=object),
                          dtype=sdt)
        h5.create_dataset("chroms/length", data=np.array([n for _, n in chroms], dtype=np.int64))
        self._chrom_dtype = h5py.string_dtype(
            "utf-8", length=max([len(c.encode("utf-8")) for c, _ in chroms] + [1]))
        cap = max(int(capacity), 1)
        row_chunk = max(1, min(cap, 1 << 14))
        win_chunk = max(1, min(cap, 64, (1 << 20) // (16 * self.window) or 1))
        big = (cap, 4, self.window)

        def make(name, shape, dtype, chunks):
            return h5.create_dataset(name, shape=shape, maxshape=(None,) + shape[1:],
                                     dtype=dtype, chunks=chunks, **comp)

        self._win = {
            # fixed-length: variable-length strings grow HDF5's global heap, and this
            # process's memory, by about 30 bytes per window
            "chrom": make("windows/chrom", (cap,), self._chrom_dtype, (row_chunk,)),
            "start": make("windows/start", (cap,), np.int64, (row_chunk,)),
            "end": make("windows/end", (cap,), np.int64, (row_chunk,)),
            "index": make("windows/index", (cap,), np.int64, (row_chunk,)),
            "one_hot": make("windows/one_hot", big, np.uint8, (win_chunk, 4, self.window)),
        }
        self._attr: dict[tuple[str, str], dict] = {}
        for m in self.methods:
            g = h5.require_group(f"attributions/{m}")
            for k, v in method_attrs.get(m, {}).items():
                g.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
            for t in self.targets:
                p = f"attributions/{m}/{t}"
                self._attr[m, t] = {
                    "relevance": make(f"{p}/relevance", big, np.float32,
                                      (win_chunk, 4, self.window)),
                    "hypothetical": make(f"{p}/hypothetical", big, np.float32,
                                         (win_chunk, 4, self.window)),
                    "score": make(f"{p}/score", (cap,), np.float32, (row_chunk,)),
                    "conservation_error": make(f"{p}/conservation_error", (cap,), np.float32,
                                               (row_chunk,)),
                }
                for k, v in method_attrs.get(m, {}).items():
                    h5[p].attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
                h5.require_group(f"{p}/track")
        # per (method, target): the chromosome whose track is open and its stream;
        # one entry each, so tracks of different targets can be appended from two threads
        self._open_track: dict[tuple[str, str], tuple[str, _TrackStream]] = {}
        self._tracks_done: set = set()
        self._comp, self._level = comp, compression_level
        from concurrent.futures import ThreadPoolExecutor

        # by default one core is left for an engine working beside the writer
        workers = deflate_threads or max(1, min(8, (os.cpu_count() or 2) - 1))
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="plrp-deflate")
        # every per-window dataset is written a whole chunk at a time: a small h5py write
        # per batch and dataset cost more than deflating it
        self._streams = {id(ds): _ChunkStream(ds, ds.chunks[0], compression_level, self._pool)
                         for ds in self._all_row_datasets()}

    @property
    def n_windows(self) -> int:
        return self._n

    def set_attr(self, key: str, value) -> None:
        """Set a root attribute (lists/dicts/None as JSON)."""
        if isinstance(value, (dict, list, tuple)) or value is None:
            value = json.dumps(value)
        self._h5.attrs[key] = value

    def _grow(self, n: int) -> None:
        need = self._n + n
        for stream in self._streams.values():
            if stream.extent < need:
                stream.resize(max(need, 2 * stream.extent))

    def _all_row_datasets(self):
        yield from self._win.values()
        for d in self._attr.values():
            yield from d.values()

    def append_windows(self, chrom: list[str], start: np.ndarray, end: np.ndarray,
                       index: np.ndarray, one_hot: np.ndarray) -> slice:
        """Append B windows; returns the row slice the attributions of this batch go to."""
        b = len(chrom)
        self._grow(b)
        rows = slice(self._n, self._n + b)
        self._stream(self._win["chrom"], rows,
                     np.array([c.encode("utf-8") for c in chrom], dtype=self._chrom_dtype))
        for name, arr in (("start", start), ("end", end), ("index", index),
                          ("one_hot", one_hot)):
            self._stream(self._win[name], rows, arr)
        self._n += b
        self._pages.check()  # once a batch: tens of GB must not sit in the page cache
        return rows

    def write_attributions(self, method: str, target: str, rows: slice, *,
                           relevance: np.ndarray, hypothetical: np.ndarray, score: np.ndarray,
                           conservation_error: np.ndarray) -> None:
        """Store a batch's engine outputs (B, 4, L) / (B,) at ``rows``."""
        d = self._attr[method, target]
        for name, arr in (("relevance", relevance), ("hypothetical", hypothetical),
                          ("score", score), ("conservation_error", conservation_error)):
            self._stream(d[name], rows, arr)

    def append_track(self, method: str, target: str, chrom: str, positions: np.ndarray,
                     values: np.ndarray) -> None:
        """Append finished bases (increasing positions) to a chromosome's merged track."""
        open_chrom, track = self._open_track.get((method, target), (None, None))
        if chrom != open_chrom:
            # chromosomes come one after another: finish the previous one's datasets and
            # free their chunk buffers, so memory does not grow with the chromosome count
            if track is not None:
                track.finish()
                self._tracks_done.add((method, target, open_chrom))
            if (method, target, chrom) in self._tracks_done:
                raise ValueError(f"track {method}/{target}: chromosome {chrom} came back")
            track = _TrackStream(self._h5, f"attributions/{method}/{target}/track/"
                                 f"{chrom_key(chrom)}", self._comp, self._level, self._pool)
            self._open_track[method, target] = (chrom, track)
        track.append(positions, values)

    def _stream(self, ds, rows: slice, arr: np.ndarray) -> None:
        stream = self._streams[id(ds)]
        expected = stream.n_rows
        if rows.start != expected:  # rows must arrive in order, once
            raise ValueError(f"{ds.name}: rows {rows.start}.. written out of order "
                             f"(expected {expected})")
        stream.append(np.ascontiguousarray(arr, dtype=stream.dtype))

    def track_chunks(self, method: str, target: str, chrom: str, chunk: int = 1 << 16
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Read back a chromosome's track in chunks (for the bedGraph/bigWig writers)."""
        yield from _track_chunks(self._h5, method, target, chrom, chunk)

    def drain(self) -> None:
        """Wait for every chunk being deflated and write it (rows still staged stay).

        On a CPU run the engine calls this between batches: deflate threads that run
        beside it steal cores from its OpenMP threads, which then wait at every barrier.
        """
        for stream in self._streams.values():
            stream.drain()
        for _, track in self._open_track.values():
            track.drain()

    def finish(self) -> None:
        """Cut the datasets to the windows written and record ``n_windows``."""
        for stream in self._streams.values():
            stream.flush()
        for _, track in self._open_track.values():
            track.finish()
        for stream in self._streams.values():
            stream.resize(self._n)
        self._h5.attrs["n_windows"] = self._n

    def close(self) -> None:
        if self._h5 is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _track_chunks(h5, method, target, chrom, chunk):
    path = f"attributions/{method}/{target}/track/{chrom_key(chrom)}"
    if path not in h5:
        return
    pos, val = h5[f"{path}/position"], h5[f"{path}/value"]
    for a in range(0, pos.shape[0], chunk):
        yield pos[a:a + chunk], val[a:a + chunk]


def plain_attr(value):
    """An HDF5 attribute as a plain, comparable Python value (bytes -> str, numpy -> Python)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class RelevanceFile:
    """Read access to a relevance file (use :func:`open_store`).

    Attributes: ``attrs`` (root attributes, JSON ones decoded), ``chroms``
    ([(name, length)] in FASTA order), ``methods``, ``targets``, ``h5`` (the h5py.File).
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        self.h5 = h5py.File(self.path, "r")
        if self.h5.attrs.get("format") != FORMAT:
            self.h5.close()
            from plrp.errors import InputError
            raise InputError(f"{self.path}: not a plrp relevance file")
        self.attrs = {}
        for k, v in self.h5.attrs.items():
            if isinstance(v, bytes):
                v = v.decode()
            if k in JSON_ATTRS and isinstance(v, str):
                v = json.loads(v)
            elif isinstance(v, np.generic):
                v = v.item()
            self.attrs[k] = v
        names = self.h5["chroms/name"].asstr()[()]
        self.chroms = list(zip([str(n) for n in names], self.h5["chroms/length"][()].tolist()))
        self.methods = list(self.h5["attributions"].keys()) if "attributions" in self.h5 else []
        self.targets = list(self.attrs.get("targets") or [])

    @property
    def n_windows(self) -> int:
        return int(self.h5["windows/start"].shape[0])

    def windows(self) -> dict[str, np.ndarray]:
        """Window table: {"chrom" (N,) str, "start", "end", "index" (N,) int64}."""
        w = self.h5["windows"]
        return {"chrom": w["chrom"].asstr()[()].astype(str), "start": w["start"][()],
                "end": w["end"][()], "index": w["index"][()]}

    def one_hot(self, rows=slice(None)) -> np.ndarray:
        """One-hot inputs (n, 4, L) uint8 of the given rows."""
        return self.h5["windows/one_hot"][rows]

    def attribution(self, method: str, target: str, name: str = "relevance", rows=slice(None)
                    ) -> np.ndarray:
        """One of relevance/hypothetical (n, 4, L) or score/conservation_error (n,)."""
        if name not in ATTRIBUTION_ARRAYS:
            raise KeyError(f"{name!r}: expected one of {ATTRIBUTION_ARRAYS}")
        return self.h5[f"attributions/{method}/{target}/{name}"][rows]

    def method_attrs(self, method: str, target: str | None = None) -> dict:
        """Pruning settings of a method (variant, p_pos, p_neg, composite)."""
        g = self.h5[f"attributions/{method}" + (f"/{target}" if target else "")]
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}

    def track_chroms(self, method: str, target: str) -> list[str]:
        """Chromosomes that have a merged track for (method, target), in FASTA order."""
        g = self.h5.get(f"attributions/{method}/{target}/track")
        have = {chrom_from_key(k) for k in g.keys()} if g is not None else set()
        return [c for c, _ in self.chroms if c in have]

    def track(self, method: str, target: str, chrom: str) -> tuple[np.ndarray, np.ndarray]:
        """Merged per-base track of a chromosome: positions (M,) int64, values (M,) float32."""
        path = f"attributions/{method}/{target}/track/{chrom_key(chrom)}"
        if path not in self.h5:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self.h5[f"{path}/position"][()], self.h5[f"{path}/value"][()]

    def track_chunks(self, method: str, target: str, chrom: str, chunk: int = 1 << 16
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The same track in chunks of ``chunk`` bases (bounded memory)."""
        yield from _track_chunks(self.h5, method, target, chrom, chunk)

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "RelevanceFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path: str | os.PathLike) -> RelevanceFile:
    """Open a relevance file written by ``plrp explain`` for reading."""
    return RelevanceFile(path)
