"""The HDF5 relevance file, format ``plrp-relevance`` version 2: the writer and the reader.

API (contracts 4)::

    w = RelevanceWriter(path, *, chroms, window, methods, targets, attrs, method_attrs,
                        arrays=False, array_dtype="float32" | "float16", capacity=0,
                        compression_level=1, deflate_threads=None)
    rows = w.append_windows(chrom, start, end, index, one_hot=None)   # -> slice of rows
    w.write_attributions(method, target, rows, *, score, conservation_error,
                         relevance=None, hypothetical=None)   # (B,) and (B, 4, L) if arrays
    w.append_track(method, target, chrom, positions, values)  # non-zero bases, chromosomes
                                                              # in byte order, positions up
    w.write_edges(method, target, merger.edges())   # after merger.finish(): lets plrp merge
                                                    # join shards whose windows overlap
    w.set_attr(key, value); w.drain(); w.finish(); w.close(); w.abort(); w.n_windows
    r = open_relevance(path)   # RelevanceFile: attrs, chroms, methods, targets, n_windows,
        # windows(rows), window_rows(chrom, start, end), has_arrays, one_hot(rows),
        # attribution(m, t, name, rows),
        # method_attrs(m, t), track_chroms(m, t), track(m, t, chrom) -> (pos, val),
        # track_chunks(m, t, chrom, chunk), track_stream(m, t), edges(m, t), require_arrays()

Layout (N windows of length L, C sequences, M stored bases of a (method, target))::

    /                   attrs: format="plrp-relevance", format_version=2, alphabet="ACGT",
                        window, arrays (0/1), array_dtype, n_windows, + the run's attrs
    /chroms/name (C,) str, length (C,) int64, fasta_index (C,) int64
                        every FASTA record, in byte order of the name (LC_ALL=C sort);
                        fasta_index: its position in the FASTA
    /windows/chrom_id (N,) uint32 (row of /chroms), start, end, index (N,) int64
    /windows/one_hot (N, 4, L) uint8                                  only if arrays
    /attributions/<method>/<target>/   attrs: variant, p_pos, p_neg, composite
        score (N,) float32, conservation_error (N,) float32
        relevance, hypothetical (N, 4, L) float32 or float16          only if arrays
        track/position (M,) uint32 (int64 for a sequence over 4 Gbp): chromosome-local,
              byte-shuffled then deflated; track/value (M,) float32: non-zero bases only;
              track/offsets (C + 1,) int64: sequence c's bases are rows offsets[c]:offsets[c+1]
        edges/chrom_id (K,) uint32, start, end (K,) int64, values (K, L) float32
              the run's head and tail windows' per-base values (see outputs.tracks)

Per-base tracks are one concatenated dataset pair per (method, target), so the cost does not
grow with the number of sequences (a draft assembly's 100,000 scaffolds cost no HDF5 object
each). Every dataset is written a whole chunk at a time, deflated on a thread pool (ISA-L).
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from plrp.errors import InputError, PlrpError
from plrp.outputs.deflate import deflate
from plrp.outputs.tracks import EdgeWindows
from plrp.outputs.writer import ClosedOrAborted
from plrp.hostmemory import WrittenPages

FORMAT = "plrp-relevance"
FORMAT_VERSION = 2
JSON_ATTRS = ("architecture", "targets", "methods", "skipped", "short_spans", "merged_from")
ARRAY_NAMES = ("relevance", "hypothetical")
ROW_NAMES = ("score", "conservation_error")
ATTRIBUTION_ARRAYS = ARRAY_NAMES + ROW_NAMES
ARRAY_DTYPES = {"float32": np.float32, "float16": np.float16}
TRACK_CHUNK = 1 << 16       # bases per track chunk (256 KB of positions + values)
_ROW_CHUNK = 1 << 14        # windows per chunk of the (N,) datasets
_UINT32_LIMIT = 1 << 32


def _compression(level: int) -> dict:
    # gzip level 1 without the shuffle filter: relevance is 3/4 zeros (one-hot input) and
    # compresses best and fastest that way (measured: about 2x faster than with shuffle)
    return {"compression": "gzip", "compression_opts": level}


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
    partial chunk is zero-padded (HDF5 edge chunks are full-size). The dataset grows by
    doubling as chunks arrive; :meth:`flush` cuts it to the rows appended.
    """

    def __init__(self, ds, level: int, pool):
        self.ds, self.rows, self.level, self.pool = ds, ds.chunks[0], level, pool
        self.shuffle = bool(ds.shuffle)  # HDF5's shuffle filter runs before deflate
        # h5py asks HDF5 for shape and dtype on every access (~20 us, holding the GIL)
        self.dtype, self.extent = ds.dtype, ds.shape[0]
        self._zeros = (0,) * (ds.ndim - 1)
        self._buf = np.zeros((self.rows,) + ds.shape[1:], dtype=self.dtype)
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
        if self.extent < offset + self.rows:
            self.resize(max(offset + self.rows, 2 * self.extent))
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
        if self.extent != n:
            self.resize(n)


class _TrackStreams:
    """One (method, target)'s concatenated track: position and value streams + offsets."""

    def __init__(self, group, pos_dtype, comp: dict, level: int, pool, n_chroms: int):
        def make(name, dtype, shuffle):
            ds = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(TRACK_CHUNK,), shuffle=shuffle, **comp)
            return _ChunkStream(ds, level, pool)

        self.group = group
        # positions mostly step by 1: shuffled, they deflate 20x smaller and 6x faster
        # (measured); float values do not gain
        self.position = make("position", pos_dtype, True)
        self.value = make("value", np.float32, False)
        self.offsets = np.zeros(n_chroms + 1, np.int64)
        self.chrom_id = -1      # sequence whose bases arrive now
        self.last_pos = -1
        self.n = 0

    def append(self, cid: int, name: str, positions, values) -> None:
        if cid != self.chrom_id:
            if cid < self.chrom_id:
                raise ValueError(f"track {self.group.name}: sequence {name} after a later one "
                                 "in byte order; sequences must come in byte order, once each")
            self.offsets[self.chrom_id + 1:cid + 1] = self.n
            self.chrom_id, self.last_pos = cid, -1
        pos = np.ascontiguousarray(positions, dtype=self.position.dtype)
        if pos.size == 0:
            return
        if int(pos[0]) <= self.last_pos:
            raise ValueError(f"track {self.group.name}: positions of {name} must increase "
                             f"({int(pos[0])} after {self.last_pos})")
        self.last_pos = int(pos[-1])
        self.position.append(pos)
        self.value.append(np.ascontiguousarray(values, dtype=np.float32))
        self.n += pos.size

    def drain(self) -> None:
        self.position.drain()
        self.value.drain()

    def finish(self) -> None:
        self.position.flush()
        self.value.flush()
        self.offsets[self.chrom_id + 1:] = self.n
        self.group.create_dataset("offsets", data=self.offsets)


class RelevanceWriter(ClosedOrAborted):
    """Write one relevance file, window batch by window batch (layout: module docstring).

    ``chroms`` [(name, length)] every FASTA record, FASTA order (stored in byte order).
    ``arrays``: also store the per-window (N, 4, L) one-hot, relevance and hypothetical
    arrays, as ``array_dtype``. ``capacity``: expected number of windows (a sizing hint;
    0 = unknown). ``attrs``: root attributes (dicts/lists/None stored as JSON).
    ``method_attrs``: {method: {variant, p_pos, p_neg, composite}}. ``deflate_threads``:
    threads compressing chunks (default: all cores but one, at most 8).
    Memory: a few chunks per dataset; nothing grows with the genome.
    """

    def __init__(self, path: str | os.PathLike, *, chroms: list[tuple[str, int]], window: int,
                 methods: list[str], targets: list[str], attrs: dict,
                 method_attrs: dict[str, dict], arrays: bool = False,
                 array_dtype: str = "float32", capacity: int = 0, compression_level: int = 1,
                 deflate_threads: int | None = None):
        import h5py

        if array_dtype not in ARRAY_DTYPES:
            raise PlrpError(f"array dtype {array_dtype!r}: expected one of "
                            f"{', '.join(ARRAY_DTYPES)}")
        self.path = Path(path)
        self.window = int(window)
        self.methods, self.targets = list(methods), list(targets)
        self.arrays = bool(arrays)
        self._n = 0
        self._h5 = None
        self._pool = None
        h5 = self._h5 = h5py.File(self.path, "w", libver=("v110", "latest"))
        mdc = h5.id.get_mdc_config()
        mdc.set_initial_size = True
        mdc.initial_size = 1 << 20
        mdc.max_size = 4 << 20
        mdc.min_size = 1 << 20
        h5.id.set_mdc_config(mdc)
        try:
            self._setup(chroms, attrs, method_attrs, array_dtype, capacity, compression_level,
                        deflate_threads)
        except BaseException:
            self.close()
            raise

    def _setup(self, chroms, attrs, method_attrs, array_dtype, capacity, compression_level,
               deflate_threads) -> None:
        import h5py

        h5 = self._h5
        self._pages = WrittenPages(h5.id.get_vfd_handle())
        comp = self._comp = _compression(compression_level)
        self._level = compression_level
        root = {"format": FORMAT, "format_version": FORMAT_VERSION, "alphabet": "ACGT",
                "window": self.window, "arrays": int(self.arrays), "array_dtype": array_dtype}
        root.update(attrs)
        for k, v in root.items():
            self.set_attr(k, v)

        order = sorted(range(len(chroms)), key=lambda i: chroms[i][0].encode("utf-8"))
        names = [chroms[i][0] for i in order]
        lengths = np.array([int(chroms[i][1]) for i in order], dtype=np.int64)
        self._chrom_id = {name: i for i, name in enumerate(names)}
        if len(self._chrom_id) != len(names):
            raise InputError(f"{self.path}: sequence names repeat")
        h5.create_dataset("chroms/name", data=np.array(names, dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.create_dataset("chroms/length", data=lengths)
        h5.create_dataset("chroms/fasta_index", data=np.array(order, dtype=np.int64))
        self._names = names
        self._pos_dtype = (np.uint32 if lengths.size == 0 or lengths.max() < _UINT32_LIMIT
                           else np.int64)

        workers = deflate_threads or max(1, min(8, (os.cpu_count() or 2) - 1))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plrp-deflate")
        cap = int(capacity) if int(capacity) > 0 else _ROW_CHUNK  # 0: unknown
        row_chunk = max(1, min(cap, _ROW_CHUNK))
        win_chunk = max(1, min(cap, 64, (1 << 20) // (16 * self.window) or 1))
        big = (4, self.window)
        self._array_dtype = ARRAY_DTYPES[array_dtype]

        def make(name, inner, dtype, chunk):
            ds = h5.create_dataset(name, shape=(0,) + inner, maxshape=(None,) + inner,
                                   dtype=dtype, chunks=(chunk,) + inner, **comp)
            return _ChunkStream(ds, compression_level, self._pool)

        self._win = {"chrom_id": make("windows/chrom_id", (), np.uint32, row_chunk)}
        for name in ("start", "end", "index"):
            self._win[name] = make(f"windows/{name}", (), np.int64, row_chunk)
        if self.arrays:
            self._win["one_hot"] = make("windows/one_hot", big, np.uint8, win_chunk)
        self._attr: dict[tuple[str, str], dict[str, _ChunkStream]] = {}
        self._tracks: dict[tuple[str, str], _TrackStreams] = {}
        for m in self.methods:
            g = h5.require_group(f"attributions/{m}")
            _set_attrs(g, method_attrs.get(m, {}))
            for t in self.targets:
                p = f"attributions/{m}/{t}"
                streams = {name: make(f"{p}/{name}", (), np.float32, row_chunk)
                           for name in ROW_NAMES}
                if self.arrays:
                    for name in ARRAY_NAMES:
                        streams[name] = make(f"{p}/{name}", big, self._array_dtype, win_chunk)
                self._attr[m, t] = streams
                _set_attrs(h5[p], method_attrs.get(m, {}))
                self._tracks[m, t] = _TrackStreams(h5.create_group(f"{p}/track"),
                                                   self._pos_dtype, comp, compression_level,
                                                   self._pool, len(names))

    @property
    def n_windows(self) -> int:
        return self._n

    def set_attr(self, key: str, value) -> None:
        """Set a root attribute (lists/dicts/None as JSON)."""
        if isinstance(value, (dict, list, tuple)) or value is None:
            value = json.dumps(value)
        self._h5.attrs[key] = value

    def chrom_ids(self, chrom: list[str]) -> np.ndarray:
        """Sequence names -> rows of /chroms (uint32); KeyError for an unknown name."""
        ids = self._chrom_id
        return np.fromiter((ids[c] for c in chrom), np.uint32, len(chrom))

    def append_windows(self, chrom: list[str], start: np.ndarray, end: np.ndarray,
                       index: np.ndarray, one_hot: np.ndarray | None = None) -> slice:
        """Append B windows ((B,) arrays; ``one_hot`` (B, 4, L) uint8 only with arrays).

        Returns the row slice the attributions of this batch go to.
        """
        b = len(chrom)
        rows = slice(self._n, self._n + b)
        if self.arrays != (one_hot is not None):
            raise ValueError("one_hot is given exactly when the file stores arrays")
        self._stream(self._win["chrom_id"], rows, self.chrom_ids(chrom))
        for name, arr in (("start", start), ("end", end), ("index", index)):
            self._stream(self._win[name], rows, arr)
        if self.arrays:
            self._stream(self._win["one_hot"], rows, one_hot)
        self._n += b
        self._pages.check()  # once a batch: tens of GB must not sit in the page cache
        return rows

    def write_attributions(self, method: str, target: str, rows: slice, *, score: np.ndarray,
                           conservation_error: np.ndarray, relevance: np.ndarray | None = None,
                           hypothetical: np.ndarray | None = None) -> None:
        """Store a batch's engine outputs at ``rows``: score, conservation_error (B,);
        relevance, hypothetical (B, 4, L) when the file stores arrays (else ignored)."""
        d = self._attr[method, target]
        self._stream(d["score"], rows, score)
        self._stream(d["conservation_error"], rows, conservation_error)
        if self.arrays:
            if relevance is None or hypothetical is None:
                raise ValueError("relevance and hypothetical are needed: the file stores arrays")
            self._stream(d["relevance"], rows, relevance)
            self._stream(d["hypothetical"], rows, hypothetical)

    def append_track(self, method: str, target: str, chrom: str, positions: np.ndarray,
                     values: np.ndarray) -> None:
        """Append a sequence's next stored bases: ``positions`` (M,) chromosome-local,
        increasing, ``values`` (M,) float32, non-zero. Sequences come in byte order, once
        each; (method, target) pairs may be appended from different threads."""
        self._tracks[method, target].append(self._chrom_id[chrom], chrom, positions, values)

    def write_edges(self, method: str, target: str, edges: EdgeWindows) -> None:
        """Store the run's head and tail windows of (method, target) (``merger.edges()``)."""
        g = self._h5.require_group(f"attributions/{method}/{target}/edges")
        values = np.zeros((len(edges), self.window), np.float32)
        width = min(self.window, edges.values.shape[1]) if len(edges) else 0
        values[:, :width] = edges.values[:, :width]
        g.create_dataset("chrom_id", data=self.chrom_ids(edges.chrom))
        g.create_dataset("start", data=np.asarray(edges.start, np.int64))
        g.create_dataset("end", data=np.asarray(edges.end, np.int64))
        g.create_dataset("values", data=values, **self._comp)

    def _stream(self, stream: _ChunkStream, rows: slice, arr: np.ndarray) -> None:
        expected = stream.n_rows
        if rows.start != expected:  # rows must arrive in order, once
            raise ValueError(f"{stream.ds.name}: rows {rows.start}.. written out of order "
                             f"(expected {expected})")
        stream.append(np.ascontiguousarray(arr, dtype=stream.dtype))

    def _all_streams(self):
        yield from self._win.values()
        for d in self._attr.values():
            yield from d.values()

    def drain(self) -> None:
        """Wait for every chunk being deflated and write it (rows still staged stay).

        On a CPU run the engine calls this between batches: deflate threads that run
        beside it steal cores from its OpenMP threads, which then wait at every barrier.
        """
        for stream in self._all_streams():
            stream.drain()
        for track in self._tracks.values():
            track.drain()

    def finish(self) -> None:
        """Write what is staged, cut the datasets to the rows written, write the offsets."""
        for stream in self._all_streams():
            stream.flush()
        for track in self._tracks.values():
            track.finish()
        self._h5.attrs["n_windows"] = self._n

    def close(self) -> None:
        """Close the file. If HDF5 cannot flush it (a full disk), the file is let go as in
        :meth:`abort` and the error raised."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:
                self.abort()
                raise
            self._h5 = None

    def abort(self) -> None:
        """Let go of the file after a failure (the caller removes it), writing nothing more.

        HDF5 flushes its caches when a file closes; on a full disk that fails and leaves
        the library holding a half-closed file, which crashed the process later, when the
        garbage collector freed it (a segmentation fault in the next run, measured). So the
        file's descriptor is first pointed at an anonymous in-memory file (and a file-size
        limit lifted to its hard value meanwhile): the flush succeeds into nothing.
        """
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        h5, self._h5 = self._h5, None
        if h5 is None:
            return
        self._win, self._attr, self._tracks = {}, {}, {}   # their datasets go first
        with _flush_into_nothing(h5):
            try:
                h5.close()
            except Exception:  # noqa: S110 - already failing: the first error is reported
                pass


@contextlib.contextmanager
def _flush_into_nothing(h5):
    """Point an open HDF5 file's descriptor at a scratch file in memory while closing it."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        resource = None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE) if resource else None
    try:
        fd = h5.id.get_vfd_handle()
        scratch = (os.memfd_create("plrp-abort") if hasattr(os, "memfd_create")
                   else os.open(os.devnull, os.O_RDWR))
        try:
            os.dup2(scratch, fd)
        finally:
            os.close(scratch)
        if limit and limit[0] != limit[1]:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit[1], limit[1]))
    except (OSError, ValueError):  # the file is closed already: nothing to point elsewhere
        pass
    try:
        yield
    finally:
        if limit and resource.getrlimit(resource.RLIMIT_FSIZE) != limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)


def _set_attrs(obj, attrs: dict) -> None:
    for k, v in attrs.items():
        obj.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)


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
    """Read access to a relevance file (use :func:`open_relevance`).

    ``attrs`` (root attributes, JSON ones decoded), ``chroms`` [(name, length)] in byte
    order (the rows of /chroms), ``methods``, ``targets``, ``window``, ``has_arrays``,
    ``array_dtype``, ``path``, ``h5`` (the h5py.File, read-only).
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise InputError(f"{self.path}: not a readable HDF5 file ({err})") from None
        try:
            self._check_format()
            self.attrs = {}
            for k, v in self.h5.attrs.items():
                v = plain_attr(v)
                if k in JSON_ATTRS and isinstance(v, str):
                    v = json.loads(v)
                self.attrs[k] = v
            names = [str(n) for n in self.h5["chroms/name"].asstr()[()]]
            self.chroms = list(zip(names, self.h5["chroms/length"][()].tolist()))
            self._chrom_id = {n: i for i, n in enumerate(names)}
            self.methods = list(self.attrs.get("methods") or self.h5["attributions"].keys())
            self.targets = list(self.attrs.get("targets") or [])
            self.window = int(self.attrs["window"])
            self.has_arrays = bool(self.attrs.get("arrays"))
            self.array_dtype = str(self.attrs.get("array_dtype", "float32"))
        except BaseException:
            self.h5.close()
            raise
        self._offsets: dict[tuple[str, str], np.ndarray] = {}

    def _check_format(self) -> None:
        fmt = plain_attr(self.h5.attrs.get("format"))
        if fmt != FORMAT:
            raise InputError(f"{self.path}: not a plrp relevance file (format attribute "
                             f"{fmt!r})")
        version = plain_attr(self.h5.attrs.get("format_version"))
        if version != FORMAT_VERSION:
            raise InputError(f"{self.path}: plrp-relevance format version {version}; this "
                             f"plrp reads version {FORMAT_VERSION} only: run plrp explain "
                             "again (or read it with the plrp that wrote it)")

    @property
    def n_windows(self) -> int:
        return int(self.h5["windows/start"].shape[0])

    def chroms_in_fasta_order(self) -> list[tuple[str, int]]:
        """[(name, length)] in the order of the FASTA the run read."""
        order = np.argsort(self.h5["chroms/fasta_index"][()], kind="stable")
        return [self.chroms[i] for i in order]

    def windows(self, rows=slice(None), columns=("chrom", "chrom_id", "start", "end", "index")
                ) -> dict[str, np.ndarray]:
        """Window table of ``rows`` (default all): "chrom" (n,) str, "chrom_id" (n,) uint32
        (row of ``chroms``), "start", "end", "index" (n,) int64; only ``columns``."""
        w = self.h5["windows"]
        out = {name: w[name][rows] for name in columns if name != "chrom"}
        if "chrom" in columns:
            cid = out["chrom_id"] if "chrom_id" in out else w["chrom_id"][rows]
            names = np.array([c for c, _ in self.chroms] or [""], dtype=object)
            out["chrom"] = names[cid].astype(str) if cid.size else np.zeros(0, str)
        return out

    def window_rows(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Rows (increasing) of the windows overlapping ``chrom[start:end]``."""
        cid = self._chrom_id.get(chrom)
        if cid is None:
            return np.zeros(0, np.int64)
        w = self.h5["windows"]
        hit = (w["chrom_id"][()] == cid) & (w["start"][()] < end) & (w["end"][()] > start)
        return np.flatnonzero(hit)

    def require_arrays(self, what: str) -> None:
        """Raise a one-line PlrpError when the file holds no per-window arrays."""
        if not self.has_arrays:
            raise PlrpError(f"{self.path}: holds no per-window arrays (one-hot, relevance, "
                            f"hypothetical), which {what} needs; run plrp explain again with "
                            "--arrays, or with --regions BED for the regions of interest")

    def one_hot(self, rows=slice(None)) -> np.ndarray:
        """One-hot inputs (n, 4, L) uint8 of the given rows (files with arrays only)."""
        self.require_arrays("the one-hot input")
        return self.h5["windows/one_hot"][rows]

    def attribution(self, method: str, target: str, name: str = "relevance", rows=slice(None)
                    ) -> np.ndarray:
        """relevance/hypothetical (n, 4, L) float32 (arrays only) or score /
        conservation_error (n,) float32 of ``rows``."""
        if name not in ATTRIBUTION_ARRAYS:
            raise KeyError(f"{name!r}: expected one of {ATTRIBUTION_ARRAYS}")
        if name in ARRAY_NAMES:
            self.require_arrays(f"the {name} array")
        out = self._group(method, target)[name][rows]
        return out.astype(np.float32, copy=False)

    def _group(self, method: str, target: str):
        g = self.h5.get(f"attributions/{method}/{target}")
        if g is None:
            raise PlrpError(f"{self.path}: no attributions of method {method!r}, target "
                            f"{target!r} (has methods {', '.join(self.methods)}; targets "
                            f"{', '.join(self.targets)})")
        return g

    def method_attrs(self, method: str, target: str | None = None) -> dict:
        """Pruning settings of a method (variant, p_pos, p_neg, composite)."""
        g = self._group(method, target) if target else self.h5[f"attributions/{method}"]
        return {k: plain_attr(v) for k, v in g.attrs.items()}

    def track_offsets(self, method: str, target: str) -> np.ndarray:
        """(C + 1,) int64: rows of sequence c (row of /chroms) in the track datasets."""
        key = (method, target)
        if key not in self._offsets:
            self._offsets[key] = self._group(method, target)["track/offsets"][()]
        return self._offsets[key]

    def track_chroms(self, method: str, target: str) -> list[str]:
        """Sequences with at least one stored base for (method, target), in byte order."""
        counts = np.diff(self.track_offsets(method, target))
        return [self.chroms[i][0] for i in np.flatnonzero(counts)]

    def track(self, method: str, target: str, chrom: str) -> tuple[np.ndarray, np.ndarray]:
        """Stored bases of a sequence: positions (M,) int64, values (M,) float32."""
        chunks = list(self.track_chunks(method, target, chrom, 1 << 62))
        if not chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return chunks[0]

    def track_chunks(self, method: str, target: str, chrom: str, chunk: int = 1 << 20
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A sequence's stored bases in pieces of at most ``chunk`` (bounded memory)."""
        cid = self._chrom_id.get(chrom)
        if cid is None:
            return
        off = self.track_offsets(method, target)
        g = self._group(method, target)["track"]
        pos, val = g["position"], g["value"]
        for a in range(int(off[cid]), int(off[cid + 1]), chunk):
            b = min(a + chunk, int(off[cid + 1]))
            yield pos[a:b].astype(np.int64), val[a:b]

    def track_stream(self, method: str, target: str, chunk: int = 1 << 20
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Every stored base, sequences in byte order: (chrom, positions int64, values
        float32) pieces, each within one sequence. Reads ``chunk`` bases at a time, so many
        small sequences cost one read, not one each."""
        off = self.track_offsets(method, target)
        g = self._group(method, target)["track"]
        pos_ds, val_ds = g["position"], g["value"]
        total = int(off[-1])
        cid = 0
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            pos, val = pos_ds[lo:hi].astype(np.int64), val_ds[lo:hi]
            a = lo
            while a < hi:
                while off[cid + 1] <= a:
                    cid += 1
                end = min(hi, int(off[cid + 1]))
                yield self.chroms[cid][0], pos[a - lo:end - lo], val[a - lo:end - lo]
                a = end

    def edges(self, method: str, target: str) -> EdgeWindows | None:
        """The run's head and tail windows of (method, target); None if not stored."""
        g = self._group(method, target).get("edges")
        if g is None:
            return None
        names = [c for c, _ in self.chroms]
        return EdgeWindows([names[i] for i in g["chrom_id"][()]], g["start"][()],
                           g["end"][()], g["values"][()])

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "RelevanceFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_relevance(path: str | os.PathLike) -> RelevanceFile:
    """Open a relevance file written by ``plrp explain`` (or ``plrp merge``) for reading.

    Raises InputError (one line) for a missing file, a file that is not a plrp relevance
    file, or one of another format version.
    """
    return RelevanceFile(path)
