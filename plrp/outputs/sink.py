"""The sink: each explained batch fanned out to the run's outputs.

Per batch, for every (method, target): the per-window scores (and, for the arrays tier,
the (N, 4, L) relevance and hypothetical arrays) go to the HDF5 file; the per-base track
(relevance summed over the channels, made sparse by :func:`plrp.engine.prune.sparsify`
per window) goes through a :class:`~plrp.outputs.tracks.TrackMerger` (overlapping windows
-> one value per base) whose finished, non-zero bases go to the file's track and to every
track writer (:data:`plrp.outputs.trackfiles.TRACK_FORMATS`). Windows arrive in byte order
of chromosome names, then start (plrp.genome.windows), so every track is streamed out
once, as it is finished.

When the writing happens is one policy (:func:`start_writer`): on a GPU beside the
engine's next batch (a thread), on the CPU between engine batches.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from plrp.outputs.h5 import RelevanceWriter
from plrp.outputs.trackfiles import open_track_writers, track_line, track_stems
from plrp.outputs.tracks import TrackMerger


@dataclass
class BatchArrays:
    """One batch's results on the host, for M methods, T targets and n windows.

    ``per_base`` (M, T, n, L) float32: relevance summed over the 4 channels, already
    sparse (:attr:`Sink.track_values`); ``score``, ``conservation_error`` (M, T, n);
    ``relevance``, ``hypothetical`` (M, T, n, 4, L) for the arrays tier, else None.
    ``wait()`` returns once an asynchronous copy from the device has landed.
    """

    per_base: np.ndarray
    score: np.ndarray
    conservation_error: np.ndarray
    relevance: np.ndarray | None = None
    hypothetical: np.ndarray | None = None
    wait: Callable[[], None] = lambda: None


class Sink:
    """Fan batches out to the HDF5 file, the per-base track mergers and the track writers.

    ``paths(target)``: the temporary path that becomes ``target`` on success (an
    :class:`plrp.atomic.AtomicGroup`'s ``path``). ``h5``: the HDF5 file; ``prefix``: stem
    of the track files. ``chroms`` [(name, length)] every sequence in FASTA order;
    ``window`` bp; ``methods``/``targets`` names; ``attrs``/``method_attrs`` for the file.
    ``formats``: names in :data:`plrp.outputs.trackfiles.TRACK_FORMATS`; ``arrays``: store
    the (N, 4, L) arrays (and the one-hot input) in ``array_dtype``; ``merge``: the rule
    for overlapping windows; ``sparsity``: fraction of each window's per-base mass (per sign) left out of the
    tracks (0: every non-zero base); ``capacity``: most windows the run can write;
    ``background``: True when writes run beside the engine (the HDF5 writer then keeps
    one core free for it).
    """

    def __init__(self, paths, *, h5: Path, prefix: Path, chroms, window: int, methods, targets,
                 attrs: dict, method_attrs: dict, formats=(), arrays=False,
                 array_dtype="float32", merge="nearest-centre", sparsity=0.0, capacity=0,
                 compression_level=1, background=False):
        self.methods, self.targets = list(methods), list(targets)
        self.keys = [(m, t) for m in self.methods for t in self.targets]
        self.arrays, self.background = bool(arrays), bool(background)
        self.sparsity = float(sparsity)
        self.h5_path = Path(h5)
        self.paths: dict = {}
        self._open: list = []
        self.store = RelevanceWriter(
            paths(self.h5_path), chroms=chroms, window=window, methods=self.methods,
            targets=self.targets, attrs=attrs, method_attrs=method_attrs, arrays=self.arrays,
            array_dtype=array_dtype, capacity=capacity, compression_level=compression_level,
            deflate_threads=None if background else os.cpu_count())
        self._open.append(self.store)
        sizes = sorted(chroms, key=lambda c: c[0].encode("utf-8"))
        several = len(self.methods) > 1
        self.writers: dict = {key: [] for key in self.keys}
        for key, stem in track_stems(prefix, self.methods, self.targets).items():
            opened = open_track_writers(formats, stem, sizes,
                                        track_line(prefix, *key, several, merge), temp=paths)
            for name, w in opened.items():
                self._open.append(w)
                self.writers[key].append(w)
                self.paths.setdefault(name, {})[key] = w.final_paths[0][1]
        self.stored = {key: 0 for key in self.keys}
        self.mergers = {key: TrackMerger(functools.partial(self._emit, key), merge=merge)
                        for key in self.keys}
        # each (method, target) has its own datasets, merger and files: polars, deflate
        # and file writes release the GIL, so targets are written on two threads
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="plrp-tracks")

    def track_values(self, per_base):
        """The stored per-base values of windows ``per_base`` (..., L) (a torch tensor on
        any device): :func:`~plrp.engine.prune.sparsify` at this sink's fraction."""
        from plrp.engine.prune import sparsify

        return sparsify(per_base, self.sparsity)

    def _emit(self, key, chrom, positions, values) -> None:
        self.stored[key] += int(positions.size)
        self.store.append_track(*key, chrom, positions, values)
        for w in self.writers[key]:
            w.add(chrom, positions, values)

    def write(self, windows, res: BatchArrays) -> None:
        """Store one batch: ``windows`` has ``chrom`` (n names), ``start``/``end``/``index``
        (n,) int64 and ``one_hot`` (n, 4, L) uint8; ``res`` its results."""
        res.wait()
        rows = self.store.append_windows(windows.chrom, windows.start, windows.end,
                                         windows.index,
                                         windows.one_hot if self.arrays else None)

        def write_target(mi, ti):
            key = (self.methods[mi], self.targets[ti])
            arrays = {}
            if self.arrays:
                arrays = {"relevance": res.relevance[mi, ti],
                          "hypothetical": res.hypothetical[mi, ti]}
            self.store.write_attributions(*key, rows, score=res.score[mi, ti],
                                          conservation_error=res.conservation_error[mi, ti],
                                          **arrays)
            self.mergers[key].add_batch(windows.chrom, windows.start, windows.end,
                                        res.per_base[mi, ti])

        jobs = [self._pool.submit(write_target, mi, ti)
                for mi in range(len(self.methods)) for ti in range(len(self.targets))]
        # every job ends before an error is raised: none may write while abort() closes
        wait(jobs)
        for job in jobs:
            job.result()  # re-raises
        if not self.background:
            self.store.drain()

    def finish(self, attrs: dict | None = None) -> None:
        """Flush the last bases of every track, close every writer; ``attrs`` go to the file
        first. The files are complete temporary files afterwards (the caller renames)."""
        self._pool.shutdown()
        for key, merger in self.mergers.items():
            merger.finish()
            self.store.write_edges(*key, merger.edges())  # lets plrp merge join shards
        for k, v in (attrs or {}).items():
            self.store.set_attr(k, v)
        self.store.finish()
        self.store.close()
        # closing a track writes its index (a .csi re-reads the whole file, the bigWig
        # builds its zoom levels): C work that releases the GIL, so tracks close side by side
        closing = [w for writers in self.writers.values() for w in writers]
        with ThreadPoolExecutor(max_workers=max(1, min(len(closing), os.cpu_count() or 1)),
                                thread_name_prefix="plrp-close") as pool:
            jobs = [pool.submit(w.close) for w in closing]
        for job in jobs:
            job.result()  # every close has ended: re-raise the first failure
        self._open.clear()

    def abort(self) -> None:
        """Let go of every open file after a failure (the caller removes them)."""
        self._pool.shutdown(wait=True, cancel_futures=True)  # nothing writes while we close
        for w in reversed(self._open):
            try:
                (w.abort if hasattr(w, "abort") else w.close)()
            except Exception:  # already failing: the first error is the one to report
                pass
        self._open.clear()


# --------------------------------------------------------------------------- writer policy

def start_writer(handle: Callable, background: bool, maxsize: int = 4):
    """Run ``handle(item)`` for every item ``put``: on a thread beside the caller when
    ``background`` (a GPU run: the engine works on the device meanwhile), else right away
    in ``put`` (a CPU run, see :class:`_InlineWriter`). Returns a started writer with
    ``put(item)``, ``close()`` (waits, re-raises) and ``stop()`` (abandons the queue)."""
    writer = (_ThreadWriter if background else _InlineWriter)(handle, maxsize)
    writer.start()
    return writer


class _ThreadWriter(threading.Thread):
    """Consumes results on its own thread so disk writes overlap the engine's next batch.

    ``put`` re-raises the writer's error, if any; ``close`` waits until everything queued is
    written (and re-raises); ``stop`` abandons what is queued (after an error/interrupt).
    """

    _END = object()

    def __init__(self, handle, maxsize: int):
        super().__init__(name="plrp-writer", daemon=True)
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is self._END:
                return
            try:
                self._handle(item)
            except BaseException as err:  # handed to the main thread by put/close
                self.error = err
                return

    def put(self, item) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if not self.is_alive():
                raise RuntimeError("the output writer thread stopped unexpectedly")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self.put(self._END)
        while self.is_alive():
            self.join(timeout=0.1)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._halt.set()
        while self.is_alive():
            self.join(timeout=0.1)


class _InlineWriter:
    """The writer of a CPU run: results are written between engine batches, not beside them.

    The engine's OpenMP threads already use every core and spin at their barriers; beside a
    writer thread the engine ran 20% slower, more than the writing takes (shipped model,
    2 cores, 4 Mbp: 13.4-13.7 s taking turns, 13.8-14.0 s side by side).
    """

    def __init__(self, handle, maxsize: int):
        self.put = handle

    def start(self) -> None:
        pass

    close = stop = start
