"""The explain job: FASTA windows -> batches -> engine on the device -> HDF5 + genome tracks.

Data path: a background thread reads and one-hot encodes windows (genome.fasta) into a
bounded queue while the main thread runs the engine; each batch's results go to the HDF5
file (genome.store) and to one streaming track merger per (method, target)
(genome.tracks), whose finished bases are appended to the file and to the bedGraph
chromosome by chromosome (windows come in the bedGraph's chromosome order). bigWigs are
written from the stored tracks at the end. Every output is a temporary file until the run
succeeds (plrp.atomic.AtomicGroup).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


from plrp import __version__
from plrp.atomic import AtomicGroup
from plrp.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_COMPOSITE, DEFAULT_MAX_N_FRACTION,
                           DEFAULT_MERGE, DEFAULT_P_POS, DEFAULT_VARIANT)
from plrp.errors import InputError, PlrpError
from plrp.genome import fasta as gfasta
from plrp.genome.store import StoreWriter
from plrp.genome.tracks import (MERGE_RULES, BedGraphWriter, TrackMerger, byte_order,
                                write_bigwig)

log = logging.getLogger("plrp")

METHODS = ("lrp", "plrp")
_TRIM_EVERY = 8            # batches between checks of the heap's free memory
_TRIM_ABOVE = 512 << 20    # bytes free before it is given back (the shipped model keeps ~120 MB)
TARGET_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class ExplainResult:
    """What an explain run wrote and counted.

    ``h5``: the relevance file; ``bedgraphs``/``bigwigs``: {(method, target): path};
    ``n_windows``: windows explained; ``n_windows_total``: windows before sharding and
    N-skipping; ``n_skipped_n``: windows skipped for too many N; ``short``: spans shorter
    than the window that were skipped, as "chrom:start-end"; ``seconds``: wall time;
    ``setup_seconds``: the part before the first batch (model, index, engine tracing);
    ``engine_seconds``: the part spent in the engine (explaining batches, results copied to
    the CPU); the rest of ``seconds - setup_seconds`` went to reading and writing.
    """

    h5: Path
    bedgraphs: dict = field(default_factory=dict)
    bigwigs: dict = field(default_factory=dict)
    n_windows: int = 0
    n_windows_total: int = 0
    n_skipped_n: int = 0
    short: list = field(default_factory=list)
    seconds: float = 0.0
    setup_seconds: float = 0.0
    engine_seconds: float = 0.0


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


def resolve_targets(output_names: list[str], targets) -> list[str]:
    """--target values (names or 0-based indices) -> output names; None/empty -> all."""
    if not targets:
        chosen = list(output_names)
    else:
        chosen = []
        for t in targets:
            t = str(t)
            if t in output_names:
                name = t
            elif re.fullmatch(r"\d+", t) and int(t) < len(output_names):
                name = output_names[int(t)]
            else:
                raise PlrpError(f"--target {t!r}: the model's outputs are "
                                f"{', '.join(output_names[:20])}"
                                f"{' ...' if len(output_names) > 20 else ''} "
                                f"(or an index 0..{len(output_names) - 1})")
            if name not in chosen:
                chosen.append(name)
    for name in chosen:
        if not TARGET_NAME.fullmatch(name):
            raise PlrpError(f"target name {name!r} cannot be used in file names; "
                            "names must match [A-Za-z0-9_.-]+")
    return chosen


def _load(model, arch=None):
    """A checkpoint path / None (shipped model) / LoadedModel / GenomeCNN -> LoadedModel."""
    from plrp.models.architectures import GenomeCNN
    from plrp.models.checkpoint import LoadedModel, load_model

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, GenomeCNN):  # a model built in Python (notebooks, tests)
        return LoadedModel(model.eval(), model.spec(), {}, None, "")
    return load_model(model, arch=arch)


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM into KeyboardInterrupt so outputs are cleaned up like on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Producer(threading.Thread):
    """Reads and encodes batches into a bounded queue; forwards its exception, if any."""

    _END = object()

    def __init__(self, batches, maxsize: int):
        super().__init__(name="plrp-fasta-reader", daemon=True)
        self._batches = batches
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            for b in self._batches:
                if not self._put(b):
                    return
            self._put(self._END)
        except BaseException as err:  # handed to the consumer, which re-raises
            self._put(err)

    def _put(self, item) -> bool:
        while not self._halt.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class _Writer(threading.Thread):
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


def _method_settings(method, p_pos, p_neg, variant, composite) -> dict:
    if method == "lrp":
        return {"variant": variant, "p_pos": 0.0, "p_neg": 0.0, "composite": str(composite)}
    if p_neg is None and not isinstance(p_pos, dict):
        p_neg = p_pos / 2
    return {"variant": variant, "p_pos": p_pos, "p_neg": p_neg, "composite": str(composite)}


def explain_fasta(fasta, out_prefix, *, model=None, arch=None, targets=None, regions=None,
                  window=None, stride=None, methods=("plrp",), variant=DEFAULT_VARIANT,
                  p_pos=DEFAULT_P_POS, p_neg=None, composite=DEFAULT_COMPOSITE,
                  device="auto", batch_size=DEFAULT_BATCH_SIZE, bigwig=False, shard=None,
                  merge=DEFAULT_MERGE, max_n_fraction=DEFAULT_MAX_N_FRACTION,
                  pad_short=False, progress=True, command_line=None, queue_size=4,
                  compression_level=1, background_writes=None) -> ExplainResult:
    """Explain every window of a FASTA (or of BED regions) and write relevance outputs.

    Writes ``<out_prefix>.h5`` (contracts section 4) and, per explained target,
    ``<out_prefix>.<target>.bedGraph`` (``.<target>.<method>.bedGraph`` when several methods
    run) plus ``.bw`` with ``bigwig``. ``model``: a checkpoint path, a LoadedModel, or None
    for the shipped default. ``targets``: output names or indices (None = all).
    ``window`` defaults to the model's input length, ``stride`` to the window.
    ``methods``: any of "lrp" (p = 0) and "plrp" (``p_pos``/``p_neg``, ``variant``).
    ``merge``: how overlapping windows make one per-base track (see genome.tracks).
    Windows whose fraction of non-ACGT bases exceeds ``max_n_fraction`` are skipped and
    counted; sequences/regions shorter than the window are skipped (or, with ``pad_short``,
    padded with N on the right). Memory is bounded by ``batch_size`` and ``queue_size``.
    ``background_writes``: store results on a thread beside the engine's next batch
    (default: on a GPU only; see :class:`_InlineWriter`); the outputs are the same.
    Raises PlrpError/InputError for user mistakes; on any failure or interrupt (SIGTERM
    included) no output is left behind.
    """
    t0 = time.perf_counter()
    import torch

    from plrp.devices import release_free_memory, resolve_device
    from plrp.engine import Explainer

    methods = list(dict.fromkeys(methods or ("plrp",)))
    for m in methods:
        if m not in METHODS:
            raise PlrpError(f"--method {m!r}: expected lrp or plrp")
    if merge not in MERGE_RULES:
        raise PlrpError(f"--merge {merge!r}: expected one of {', '.join(MERGE_RULES)}")
    if not 0.0 <= float(max_n_fraction) <= 1.0:
        raise PlrpError(f"--max-n-fraction {max_n_fraction}: expected a value in [0, 1]")
    if int(batch_size) < 1:
        raise PlrpError(f"--batch-size {batch_size}: must be at least 1")
    shard = parse_shard(shard)
    out_prefix = Path(out_prefix)
    if out_prefix.name in ("", ".", ".."):
        raise PlrpError(f"--out {out_prefix}: give a file prefix such as results/run1")

    loaded = _load(model, arch)
    net = loaded.model
    window = int(loaded.input_length if window is None else window)
    stride = int(window if stride is None else stride)
    if stride < 1 or window < 1:
        raise PlrpError(f"--window {window} / --stride {stride}: must be positive")
    from plrp.models.checkpoint import check_input_length
    check_input_length(loaded, window)
    target_names = resolve_targets(loaded.output_names, targets)
    specs = net.target_specs()
    dev = resolve_device(device)
    # a GPU run writes beside the engine; a CPU run between its batches (see _InlineWriter)
    overlap = dev.type != "cpu" if background_writes is None else bool(background_writes)

    h5_path = Path(f"{out_prefix}.h5")
    several = len(methods) > 1
    track_paths = track_stems(out_prefix, methods, target_names)

    with (_sigterm_raises(), gfasta.FastaReader(fasta) as reader, AtomicGroup() as group,
          contextlib.ExitStack() as scratch):
        chrom_sizes = dict(reader.chroms)
        if regions is not None:
            spans = gfasta.read_regions_bed(regions, chrom_sizes)
        else:
            spans = [gfasta.Span(c, 0, n) for c, n in reader.chroms]
        # windows go in the bedGraph's order, chromosome names in byte order, so every
        # track is written once, as it is finished (a stable sort keeps starts in order)
        spans = sorted(spans, key=lambda span: span.chrom.encode("utf-8"))
        plan = gfasta.plan_windows(spans, window, stride, pad_short=pad_short)
        n_total = plan.n_windows
        lo, hi = gfasta.shard_range(n_total, shard)
        short = [f"{s.chrom}:{s.start}-{s.end}" for s in plan.short_spans]
        if short:
            log.warning("%d sequence(s)/region(s) shorter than the %d bp window skipped "
                        "(use --pad-short to pad them with N): %s%s", len(short), window,
                        ", ".join(short[:5]), " ..." if len(short) > 5 else "")
        if n_total == 0:
            raise InputError(f"{fasta}: no window of {window} bp fits any sequence"
                             + (" or region" if regions is not None else ""))

        net = net.to(dev)
        explainers = {m: Explainer(net, composite=composite,
                                   p_pos=0.0 if m == "lrp" else p_pos,
                                   p_neg=0.0 if m == "lrp" else p_neg, variant=variant)
                      for m in methods}
        # trace each engine now (about 0.1 s per target), not inside the first batch
        probe = torch.zeros((1, 4, window), device=dev)
        for m in methods:
            for t in target_names:
                explainers[m].explain(probe, specs[t])
        settings = {m: _method_settings(m, p_pos, p_neg, variant, composite) for m in methods}
        attrs = {
            "plrp_version": __version__, "model_path": str(loaded.path or ""),
            "model_sha256": loaded.sha256, "architecture": loaded.spec,
            "composite": str(composite), "stride": stride, "merge": merge,
            "targets": target_names, "methods": methods,
            "command_line": command_line or " ".join(sys.argv),
            "fasta": str(Path(fasta).resolve()), "regions": str(regions or ""),
            "shard": f"{shard[0]}/{shard[1]}" if shard else "1/1",
            "n_windows_total": n_total, "max_n_fraction": float(max_n_fraction),
            "pad_short": bool(pad_short), "device": str(dev),
        }
        store = StoreWriter(group.path(h5_path), chroms=reader.chroms, window=window,
                            capacity=hi - lo, methods=methods, targets=target_names,
                            attrs=attrs, method_attrs=settings,
                            compression_level=compression_level,
                            deflate_threads=None if overlap else os.cpu_count())
        with store:
            bedgraphs = {(m, t): Path(f"{stem}.bedGraph") for (m, t), stem in track_paths.items()}
            bedgraph_out = {key: scratch.enter_context(BedGraphWriter(
                group.path(path), track_line(out_prefix, *key, several, merge)))
                for key, path in bedgraphs.items()}

            def emit(m, t, chrom, pos, val):
                store.append_track(m, t, chrom, pos, val)
                bedgraph_out[m, t].add(chrom, pos, val)

            mergers = {(m, t): TrackMerger(
                (lambda c, p, v, m=m, t=t: emit(m, t, c, p, v)), merge=merge)
                for m in methods for t in target_names}
            skipped: dict = {}
            batches = gfasta.iter_window_batches(reader, plan, window, int(batch_size), lo, hi,
                                                 float(max_n_fraction), skipped)
            producer = _Producer(batches, queue_size)
            producer.start()
            bar = _progress(hi - lo, progress)
            t_setup = time.perf_counter() - t0

            # each (method, target) has its own datasets, merger and bedGraph: polars, deflate
            # and file writes release the GIL, so targets are written on two threads
            track_pool = scratch.enter_context(ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="plrp-tracks"))

            def write(item):  # HDF5 and track merging, beside or between engine batches
                batch, results = item
                rows = store.append_windows(batch.chrom, batch.start, batch.end, batch.index,
                                            batch.one_hot)

                def write_target(key):
                    arrays = results[key]
                    store.write_attributions(*key, rows, **arrays)
                    mergers[key].add_batch(batch.chrom, batch.start, batch.end,
                                           arrays["relevance"].sum(axis=1))

                for done in [track_pool.submit(write_target, key) for key in results]:
                    done.result()  # re-raises
                if not overlap:
                    store.drain()

            writer = (_Writer if overlap else _InlineWriter)(write, queue_size)
            writer.start()
            n_batches = 0
            engine_seconds = 0.0
            try:
                for batch in producer:
                    x = torch.from_numpy(batch.one_hot).to(dev, dtype=torch.float32)
                    # torch kernels round differently for tiny batches; one batch shape for
                    # every engine call makes a sharded run equal an unsharded one exactly.
                    n_real = x.shape[0]
                    if n_real < int(batch_size):
                        x = torch.cat([x, x.new_zeros((int(batch_size) - n_real,) + tuple(x.shape[1:]))])
                    results = {}
                    t_engine = time.perf_counter()
                    for m in methods:
                        for t in target_names:
                            res = explainers[m].explain(x, specs[t])
                            results[m, t] = {
                                name: getattr(res, name)[:n_real].detach().float().cpu().numpy()
                                for name in ("relevance", "hypothetical", "score",
                                             "conservation_error")}
                    engine_seconds += time.perf_counter() - t_engine
                    writer.put((batch, results))
                    bar.update(int(batch.index[-1]) + 1 - lo - bar.n)
                    n_batches += 1
                    if n_batches % _TRIM_EVERY == 0:
                        release_free_memory(above=_TRIM_ABOVE)  # see tune_cpu_allocator
                writer.close()
            finally:
                writer.stop()
                producer.stop()
                bar.close()
            for merger in mergers.values():
                merger.finish()
            store.set_attr("n_windows_skipped_n", int(skipped.get("max_n", 0)))
            store.set_attr("short_spans", short)
            store.finish()

            result = ExplainResult(h5_path, n_windows=store.n_windows, n_windows_total=n_total,
                                   n_skipped_n=int(skipped.get("max_n", 0)), short=short,
                                   setup_seconds=t_setup, engine_seconds=engine_seconds)
            chroms_sorted = byte_order(chrom_sizes)
            for (m, t), stem in track_paths.items():
                bedgraph_out[m, t].close()
                result.bedgraphs[m, t] = bedgraphs[m, t]
                if bigwig:
                    bw = Path(f"{stem}.bw")
                    write_bigwig(group.path(bw), [(c, chrom_sizes[c]) for c in chroms_sorted],
                                 lambda c, m=m, t=t: store.track_chunks(m, t, c))
                    result.bigwigs[m, t] = bw
        group.commit()
    if result.n_skipped_n:
        log.warning("%d window(s) skipped: more than %.0f%% N", result.n_skipped_n,
                    100 * max_n_fraction)
    result.seconds = time.perf_counter() - t0
    return result


def track_stems(prefix: Path, methods: list[str], targets: list[str]) -> dict:
    """{(method, target): path stem} of the track files: ``PREFIX.<target>[.<method>]``."""
    several = len(methods) > 1
    return {(m, t): f"{prefix}.{t}" + (f".{m}" if several else "")
            for m in methods for t in targets}


def track_line(prefix: Path, method: str, target: str, several: bool, merge: str) -> str:
    """The bedGraph track line: IGV's name and description of the track."""
    return (f'track type=bedGraph name="{prefix.name}.{target}'
            f'{"." + method if several else ""}" description="plrp {method} relevance of '
            f'{target} ({merge} merge)" visibility=full autoScale=on')


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="win", unit_scale=True, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, desc="explain", smoothing=0.1)



def demo_paths() -> tuple[Path, Path]:
    """The shipped example FASTA and its motif BED (made by ``plrp simulate``)."""
    data = Path(__file__).resolve().parent / "data"
    fasta, motifs = data / "example.fa", data / "example.motifs.bed"
    for path in (fasta, motifs):
        if not path.is_file():
            raise PlrpError(f"{path}: the demo data is missing from this installation")
    return fasta, motifs


def run_demo(out_prefix, device="auto", progress=True) -> tuple[ExplainResult, Path, Path]:
    """Explain the shipped example with the shipped model (bigWig too).

    Copies the FASTA and motif BED beside the outputs (IGV may index the FASTA there);
    returns (result, copied FASTA, copied BED).
    """
    import shutil

    from plrp.atomic import atomic_path

    fasta, motifs = demo_paths()
    out_prefix = Path(out_prefix)
    result = explain_fasta(fasta, out_prefix, model=None, device=device, bigwig=True,
                           progress=progress, command_line=f"plrp demo --out {out_prefix}")
    copies = []
    for src in (fasta, motifs):
        dst = out_prefix.parent / src.name
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        copies.append(dst)
    return result, copies[0], copies[1]
