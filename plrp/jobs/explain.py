"""The explain job: plan -> batches -> engine -> sink.

A background thread reads and one-hot encodes the planned windows (plrp.genome.windows)
into a bounded queue; the main thread runs the engine (one forward per batch for every
target and method, :class:`plrp.engine.BatchExplainer`) and hands each batch's results to
the sink (plrp.outputs.sink), which writes the HDF5 file and the per-base tracks. Every
output is a temporary file until the whole run succeeded (plrp.atomic.AtomicGroup); before
any is made the outputs' size is estimated against the free space (plrp.outputs.space).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from plrp import __version__
from plrp.atomic import AtomicGroup
from plrp.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_BEDGRAPH, DEFAULT_COMPOSITE,
                           DEFAULT_MAX_N_FRACTION, DEFAULT_MAX_TARGETS, DEFAULT_MERGE,
                           DEFAULT_P_POS, DEFAULT_SPARSITY, DEFAULT_VARIANT)
from plrp.errors import InputError, PlrpError
from plrp.genome import windows as gwin
from plrp.genome.fasta import FastaReader
from plrp.outputs import space
from plrp.outputs.igv import write_run_session
from plrp.outputs.sink import Sink, start_writer

log = logging.getLogger("plrp")

BEDGRAPH_CHOICES = ("bgzip", "plain", "none")
ARRAY_DTYPES = ("float32", "float16")
PRECISIONS = ("fp32", "tf32", "bf16")
TARGET_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class ExplainOptions:
    """Everything an explain run can be told besides its FASTA and output prefix.

    Model: ``model`` (checkpoint path, LoadedModel, GenomeCNN, or None for the shipped one),
    ``arch``, ``arch_params`` ("NAME=VALUE" overrides); ``targets`` (output names or indices; None, [] or ["all"]: every output;
    more than ``max_targets`` are refused with an estimate).
    Windows: ``regions`` (BED/narrowPeak files, plain or gzip, or ``chr:start-end`` loci; one
    or a list), ``chroms`` (names, comma-separated or a list), ``exclude`` (blacklist BED),
    ``threads`` (torch CPU threads; None: torch's default), ``window``/``stride`` bp
    (default: the model's input length / the window), ``pad_short``, ``max_n_fraction``
    (0..1), ``shard`` ("I/N").
    Engine: ``methods`` (lrp, plrp), ``variant``, ``p_pos``/``p_neg`` (p_neg None:
    p_pos / 2), ``composite``, ``device``, ``batch_size`` windows, ``precision``
    (fp32|tf32|bf16), ``rc_average``.
    Outputs: ``sparsity`` (fraction of each window's per-base mass per sign left out of the
    tracks, 0..1), ``arrays`` (per-window (N, 4, L) arrays; None: only for ``regions``
    runs), ``array_dtype``, ``bedgraph`` (bgzip|plain|none), ``bigwig``, ``merge``
    (overlapping windows), ``compression_level``.
    Running: ``progress`` (bar on stderr), ``command_line`` (stored), ``queue_size``
    (batches in flight), ``background_writes`` (None: beside the engine on a GPU only),
    ``check_space`` (refuse up front when the estimate exceeds the free space).
    """

    model: object = None
    arch: str | None = None
    arch_params: tuple = ()
    targets: list | None = None
    max_targets: int = DEFAULT_MAX_TARGETS
    regions: str | Path | tuple | list | None = None
    chroms: str | tuple | list | None = None
    exclude: str | Path | None = None
    threads: int | None = None
    window: int | None = None
    stride: int | None = None
    pad_short: bool = False
    max_n_fraction: float = DEFAULT_MAX_N_FRACTION
    shard: str | tuple | None = None
    methods: tuple = ("plrp",)
    variant: str = DEFAULT_VARIANT
    p_pos: float = DEFAULT_P_POS
    p_neg: float | None = None
    composite: str = DEFAULT_COMPOSITE
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "fp32"
    rc_average: bool = False
    sparsity: float = DEFAULT_SPARSITY
    arrays: bool | None = None
    array_dtype: str = "float32"
    bedgraph: str = DEFAULT_BEDGRAPH
    bigwig: bool = False
    merge: str = DEFAULT_MERGE
    compression_level: int = 1
    progress: bool = True
    command_line: str | None = None
    queue_size: int = 4
    background_writes: bool | None = None
    check_space: bool = True

    def check(self) -> None:
        """Raise PlrpError naming the flag of the first bad value."""
        from plrp.outputs.tracks import MERGE_RULES

        from plrp.jobs.methods import method_names

        self.methods = tuple(dict.fromkeys(self.methods or ("plrp",)))
        choices = [("--method", m, method_names()) for m in self.methods] + [
            ("--merge", self.merge, MERGE_RULES), ("--bedgraph", self.bedgraph, BEDGRAPH_CHOICES),
            ("--array-dtype", self.array_dtype, ARRAY_DTYPES),
            ("--precision", self.precision, PRECISIONS)]
        for flag, value, allowed in choices:
            if value not in allowed:
                raise PlrpError(f"{flag} {value!r}: expected one of {', '.join(allowed)}")
        for flag, value, ok in [
                ("--max-n-fraction", self.max_n_fraction, 0 <= self.max_n_fraction <= 1),
                ("--sparsity", self.sparsity, 0 <= self.sparsity < 1),
                ("--batch-size", self.batch_size, int(self.batch_size) >= 1),
                ("--max-targets", self.max_targets, int(self.max_targets) >= 1)]:
            if not ok:
                raise PlrpError(f"{flag} {value}: out of range (see plrp explain --help)")
        self.shard = gwin.parse_shard(self.shard)
        if isinstance(self.regions, (str, os.PathLike)):
            self.regions = (self.regions,)
        self.regions = tuple(str(r) for r in self.regions) if self.regions else None
        self.chroms = gwin.parse_chroms(self.chroms)
        self.exclude = self.exclude or None
        if self.threads is not None and int(self.threads) < 1:
            raise PlrpError(f"--threads {self.threads}: must be at least 1")


@dataclass
class ExplainResult:
    """What an explain run wrote and counted.

    ``h5``: the relevance file; ``tracks``: {format: {(method, target): path}} (formats of
    plrp.outputs.sink.TRACK_FORMATS); ``n_windows``: windows explained; ``n_windows_total``:
    windows before sharding and N-skipping; ``n_skipped_n``: windows skipped for too many N;
    ``short``: spans shorter than the window that were skipped, as "chrom:start-end";
    ``bases``: bases the explained windows' spans hold; ``stored``: {(method, target): bases
    with a stored (non-zero) track value}; ``estimate``: {output kind: estimated bytes};
    ``seconds``: wall time; ``setup_seconds``: the part before the first batch (model,
    index, engine tracing); ``engine_seconds``: the part spent in the engine (explaining,
    results copied to the host); the rest went to reading and writing; ``session``: the
    IGV session file (``PREFIX.igv.xml``), None when no track file was written.
    """

    h5: Path
    tracks: dict = field(default_factory=dict)
    n_windows: int = 0
    n_windows_total: int = 0
    n_skipped_n: int = 0
    short: list = field(default_factory=list)
    bases: int = 0
    stored: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    seconds: float = 0.0
    setup_seconds: float = 0.0
    engine_seconds: float = 0.0
    session: Path | None = None

    @property
    def bedgraphs(self) -> dict:
        """{(method, target): path} of the bedGraphs, plain or bgzip."""
        return self.tracks.get("plain") or self.tracks.get("bgzip") or {}

    @property
    def bigwigs(self) -> dict:
        return self.tracks.get("bigwig", {})


def resolve_targets(output_names: list[str], targets) -> list[str]:
    """--target values (names or 0-based indices) -> output names; None/[]/["all"] -> all."""
    if not targets or list(targets) == ["all"]:
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
                                f"(or an index 0..{len(output_names) - 1}, or all)")
            if name not in chosen:
                chosen.append(name)
    for name in chosen:
        if not TARGET_NAME.fullmatch(name):
            raise PlrpError(f"target name {name!r} cannot be used in file names; "
                            "names must match [A-Za-z0-9_.-]+")
    return chosen


def _load(model, arch=None, arch_params=()):
    """A checkpoint path / None (shipped model) / LoadedModel / GenomeCNN -> LoadedModel."""
    from plrp.models.architectures import GenomeCNN
    from plrp.models.checkpoint import LoadedModel, load_model, parse_overrides

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, GenomeCNN):  # a model built in Python (notebooks, tests)
        return LoadedModel(model.eval(), model.spec(), {}, None, "")
    return load_model(model, arch=arch, arch_params=parse_overrides(arch_params))


def _method_options(opts: ExplainOptions) -> dict[str, dict]:
    """{engine method: BatchExplainer options}: lrp is p = 0; plrp's p_neg defaults to
    p_pos / 2. Baseline methods take their library defaults (plrp.jobs.methods)."""
    p_neg = opts.p_neg
    if p_neg is None and not isinstance(opts.p_pos, dict):
        p_neg = opts.p_pos / 2
    table = {"lrp": dict(p_pos=0.0, p_neg=0.0, variant=opts.variant),
             "plrp": dict(p_pos=opts.p_pos, p_neg=p_neg, variant=opts.variant)}
    return {m: table[m] for m in opts.methods if m in table}


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


@dataclass
class _Plan:
    windows: gwin.WindowPlan
    lo: int
    hi: int
    bases: int
    short: list


def _plan(reader: FastaReader, opts: ExplainOptions, window: int, stride: int, fasta) -> _Plan:
    """The run's windows in track order, its shard's index block and its base count."""
    sizes = dict(reader.chroms)
    spans = (gwin.read_regions(opts.regions, sizes, window) if opts.regions
             else gwin.genome_spans(reader.chroms))
    exclude = gwin.read_intervals(opts.exclude, sizes) if opts.exclude else None
    spans = gwin.select_spans(spans, sizes, chroms=opts.chroms, exclude=exclude)
    plan = gwin.plan_windows(gwin.byte_ordered(spans), window, stride, pad_short=opts.pad_short)
    short = [f"{s.chrom}:{s.start}-{s.end}" for s in plan.short_spans]
    if plan.n_windows == 0:  # one line: the error says it all
        raise InputError(f"{fasta}: no window of {window} bp fits any sequence"
                         + (" or region" if opts.regions is not None else "")
                         + (" (use --pad-short to pad shorter ones with N)" if short else ""))
    if short:
        log.warning("%d sequence(s)/region(s) shorter than the %d bp window skipped "
                    "(use --pad-short to pad them with N): %s%s", len(short), window,
                    ", ".join(short[:5]), " ..." if len(short) > 5 else "")
    lo, hi = gwin.shard_range(plan.n_windows, opts.shard)
    bases = sum(s.end - s.start for s in plan.spans) * (hi - lo) // plan.n_windows
    return _Plan(plan, lo, hi, bases, short)


def _probe_seconds(net, specs, methods, opts, dev, window) -> float:
    """Engine seconds per (window, target) for all methods, timed on one small batch."""
    import torch

    be = _explainer(net, specs[:2], methods, opts)
    x = torch.zeros((min(int(opts.batch_size), 16), 4, window), device=dev)
    be.explain(x[:1])  # tracing and first allocations are not the rate
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    be.explain(x)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / (x.shape[0] * len(specs[:2]))


def _explainer(net, specs, methods: dict, opts: ExplainOptions):
    """One explainer for every --method (the engine's and the baselines), in their order."""
    from plrp.jobs.methods import MethodExplainer

    return MethodExplainer(net, specs, opts.methods, methods, composite=opts.composite,
                           precision=opts.precision, rc_average=opts.rc_average)


def _check_size(out_dir: Path, plan: _Plan, opts, n_targets: int, window: int, arrays: bool,
                formats, probe) -> dict:
    """Estimate the outputs; refuse too many targets (with size and time) or too little
    free space. ``probe()`` -> engine seconds per (window, target)."""
    shape = space.OutputShape(bases=plan.bases, windows=plan.hi - plan.lo, window=window,
                              tracks=len(opts.methods) * n_targets, sparsity=opts.sparsity,
                              arrays=arrays, array_dtype=opts.array_dtype,
                              formats=tuple(formats))
    estimate = space.estimate_output_bytes(shape)
    total = sum(estimate.values())
    log.info("outputs: about %s (%s)", space.human(total),
             ", ".join(f"{k} {space.human(v)}" for k, v in estimate.items()))
    if n_targets > opts.max_targets:
        hours = probe() * shape.windows * n_targets / 3600
        raise PlrpError(f"--target: {n_targets} targets would write about "
                        f"{space.human(total)} and take about {hours:.1f} h of engine time on "
                        f"--device {opts.device}; choose targets with --target, or give "
                        f"--max-targets {n_targets} to go ahead")
    if opts.check_space:
        space.check_free_space(out_dir, estimate)
    return estimate


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """``--threads``: torch's CPU threads for the run, the caller's count restored after."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # settable only before any inter-op work: keep that pool
        pass
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _warn_window(window: int, stride: int, trained: int) -> None:
    """Settings that run but are seldom meant: gaps between windows, an untrained length."""
    if stride > window:
        log.warning("--stride %d is larger than the %d bp window: %d bp between windows are "
                    "not explained (absent from the tracks)", stride, window, stride - window)
    if window != trained:
        log.warning("--window %d differs from the %d bp the model was trained on; its "
                    "scores and relevance on other lengths are untested", window, trained)


def output_prefix(out, fasta) -> Path:
    """The file prefix of ``--out``: a folder (written as ``results/`` or existing) gets the
    FASTA's name inside it (``results/genome`` for ``genome.fa.gz``), anything else is the
    prefix itself (``results/run1`` -> ``results/run1.h5``)."""
    text = str(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir() or path.name in ("", ".", ".."):
        stem = Path(fasta).name
        for suffix in (".gz", ".bgz", ".fa", ".fasta", ".fna", ".fas"):
            stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
        return path / (stem or "plrp")
    return path


def explain_fasta(fasta, out_prefix, options: ExplainOptions | None = None,
                  **fields) -> ExplainResult:
    """Explain every window of a FASTA (or of BED regions) and write relevance outputs.

    ``options`` (an :class:`ExplainOptions`), with any of its fields overridden by keyword.
    Writes ``<out_prefix>.h5`` (docs/outputs.md) and, per (method, target), the tracks
    ``<out_prefix>.<target>[.<method>]`` + ``.bedGraph.gz`` (+ ``.tbi``), ``.bedGraph``,
    ``.bw`` as asked. Raises PlrpError (and subclasses: InputError, OutputError,
    NoSpaceError) for user mistakes and full or unwritable disks; on any failure or
    interrupt no output, temporary file or index folder is left behind.
    """
    t0 = time.perf_counter()
    opts = dataclasses.replace(options or ExplainOptions(), **fields)
    opts.check()
    out_prefix = output_prefix(out_prefix, fasta)
    with space.output_errors(out_prefix.parent):
        space.clean_stale_temporaries(out_prefix.parent)
        with (FastaReader(fasta) as reader, AtomicGroup() as group,
              _torch_threads(opts.threads)):
            result = _run(reader, fasta, out_prefix, opts, group, t0)
            result.session = write_run_session(
                out_prefix, fasta, [n for n, _ in reader.chroms],
                result.tracks, group.written(result.h5), group.path)
            group.commit()
    if result.n_skipped_n:
        log.warning("%d window(s) skipped: more than %.0f%% N", result.n_skipped_n,
                    100 * opts.max_n_fraction)
    result.seconds = time.perf_counter() - t0
    return result


@dataclass
class _Job:
    """What a run explains, settled before any output exists."""

    loaded: object
    window: int
    stride: int
    targets: list
    plan: _Plan
    device: object
    net: object
    specs: list
    methods: dict
    arrays: bool
    formats: list
    estimate: dict


def _prepare(reader, fasta, out_prefix: Path, opts: ExplainOptions) -> _Job:
    """Model, window, targets, the planned windows, and the size check (may refuse)."""
    from plrp.devices import resolve_device
    from plrp.models.checkpoint import check_input_length

    loaded = _load(opts.model, opts.arch, opts.arch_params)
    window = int(loaded.input_length if opts.window is None else opts.window)
    stride = int(window if opts.stride is None else opts.stride)
    if stride < 1 or window < 1:
        raise PlrpError(f"--window {window} / --stride {stride}: must be positive")
    check_input_length(loaded, window)
    _warn_window(window, stride, loaded.input_length)
    targets = resolve_targets(loaded.output_names, opts.targets)
    plan = _plan(reader, opts, window, stride, fasta)
    dev = resolve_device(opts.device)
    net = loaded.model.to(dev)
    specs = [net.target_specs()[t] for t in targets]
    methods = _method_options(opts)
    arrays = opts.regions is not None if opts.arrays is None else bool(opts.arrays)
    formats = ([opts.bedgraph] if opts.bedgraph != "none" else []) + (
        ["bigwig"] if opts.bigwig else [])
    estimate = _check_size(out_prefix.parent, plan, opts, len(targets), window, arrays,
                           formats, lambda: _probe_seconds(net, specs, methods, opts, dev,
                                                           window))
    return _Job(loaded, window, stride, targets, plan, dev, net, specs, methods, arrays,
                formats, estimate)


def _file_attrs(job: _Job, fasta, opts: ExplainOptions) -> tuple[dict, dict]:
    """The HDF5 file's attributes and each method's (what the run was, for provenance)."""
    from plrp.jobs.methods import baseline_attrs

    attrs = {
        "plrp_version": __version__, "model_path": str(job.loaded.path or ""),
        "model_sha256": job.loaded.sha256, "architecture": job.loaded.spec,
        "composite": str(opts.composite), "stride": job.stride, "merge": opts.merge,
        "targets": job.targets, "methods": list(opts.methods),
        "command_line": opts.command_line or " ".join(sys.argv),
        "fasta": str(Path(fasta).resolve()), "regions": ";".join(map(str, opts.regions or ())),
        "only_chroms": ",".join(opts.chroms or ()), "exclude": str(opts.exclude or ""),
        "shard": f"{opts.shard[0]}/{opts.shard[1]}" if opts.shard else "1/1",
        "n_windows_total": job.plan.windows.n_windows,
        "max_n_fraction": float(opts.max_n_fraction), "pad_short": bool(opts.pad_short),
        "device": str(job.device), "sparsity": opts.sparsity, "precision": opts.precision,
        "rc_average": bool(opts.rc_average),
    }
    method_attrs = {m: ({**job.methods[m], "composite": str(opts.composite)}
                        if m in job.methods else baseline_attrs(m)) for m in opts.methods}
    return attrs, method_attrs


def _stream(reader, job: _Job, opts: ExplainOptions, engine, sink, background: bool
            ) -> tuple[float, int]:
    """Batches -> engine -> sink: read and encode on one thread, explain on this one, write
    beside it (GPU) or between batches (CPU). Returns (engine seconds, windows skipped)."""
    from plrp.hostmemory import HeapCeiling
    from plrp.jobs.transfer import DeviceBatches

    plan = job.plan
    io = DeviceBatches(job.device, opts.batch_size, job.window, sink.track_values, job.arrays,
                       slots=opts.queue_size + 2)
    skipped: dict = {}
    writer = start_writer(lambda item: sink.write(*item), background, opts.queue_size)
    producer = _Producer(gwin.iter_window_batches(
        reader, plan.windows, job.window, int(opts.batch_size), plan.lo, plan.hi,
        float(opts.max_n_fraction), skipped), opts.queue_size)
    producer.start()
    bar = _progress(plan.hi - plan.lo, opts.progress)
    engine_seconds = 0.0
    heap = HeapCeiling()
    try:
        for batch in producer:
            t_engine = time.perf_counter()
            out = engine.explain(io.to_device(batch.one_hot))
            res = io.to_host(out, batch.index.size)
            engine_seconds += time.perf_counter() - t_engine
            writer.put((batch, res))
            bar.update(int(batch.index[-1]) + 1 - plan.lo - bar.n)
            heap.check()
        writer.close()
    finally:
        writer.stop()
        producer.stop()
        bar.close()
    return engine_seconds, int(skipped.get("max_n", 0))


def _run(reader, fasta, out_prefix: Path, opts: ExplainOptions, group, t0) -> ExplainResult:
    """plan -> batches -> engine -> sink."""
    import torch

    job = _prepare(reader, fasta, out_prefix, opts)
    engine = _explainer(job.net, job.specs, job.methods, opts)
    engine.explain(torch.zeros((1, 4, job.window), device=job.device))  # trace it now
    # a GPU run writes beside the engine; a CPU run between its batches (sink.start_writer)
    background = (job.device.type != "cpu" if opts.background_writes is None
                  else bool(opts.background_writes))
    attrs, method_attrs = _file_attrs(job, fasta, opts)
    sink = Sink(group.path, h5=Path(f"{out_prefix}.h5"), prefix=out_prefix,
                chroms=reader.chroms, window=job.window, methods=list(opts.methods),
                targets=job.targets, attrs=attrs, method_attrs=method_attrs,
                formats=job.formats, arrays=job.arrays, array_dtype=opts.array_dtype,
                merge=opts.merge, sparsity=opts.sparsity, capacity=job.plan.hi - job.plan.lo,
                compression_level=opts.compression_level, background=background)
    try:
        setup_seconds = time.perf_counter() - t0
        engine_seconds, n_skipped = _stream(reader, job, opts, engine, sink, background)
        sink.finish({"n_windows_skipped_n": n_skipped, "short_spans": job.plan.short})
    except BaseException:
        sink.abort()
        raise
    return ExplainResult(sink.h5_path, tracks=sink.paths, n_windows=sink.store.n_windows,
                         n_windows_total=job.plan.windows.n_windows, n_skipped_n=n_skipped,
                         short=job.plan.short, bases=job.plan.bases, stored=dict(sink.stored),
                         estimate=job.estimate, setup_seconds=setup_seconds,
                         engine_seconds=engine_seconds)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    # a log file (a cluster job's stderr) gets a line a minute, not ten a second
    interval = 0.1 if sys.stderr.isatty() else 60.0
    return tqdm(total=total, unit="win", unit_scale=True, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, desc="explain", smoothing=0.1,
                mininterval=interval, maxinterval=max(10.0, interval))


def demo_paths() -> tuple[Path, Path]:
    """The shipped example FASTA and its motif BED (made by ``plrp simulate``)."""
    data = Path(__file__).resolve().parents[1] / "data"
    fasta, motifs = data / "example.fa", data / "example.motifs.bed"
    for path in (fasta, motifs):
        if not path.is_file():
            raise PlrpError(f"{path}: the demo data is missing from this installation")
    return fasta, motifs


def run_demo(out_prefix, device="auto", progress=True) -> tuple[ExplainResult, Path, Path]:
    """Explain the shipped example with the shipped model (plain bedGraph and bigWig, the
    tracks IGV opens without an index step).

    Copies the FASTA and motif BED beside the outputs (IGV may index the FASTA there);
    returns (result, copied FASTA, copied BED).
    """
    import shutil

    from plrp.atomic import atomic_path

    fasta, motifs = demo_paths()
    out_prefix = Path(out_prefix)
    result = explain_fasta(fasta, out_prefix, device=device, bigwig=True, bedgraph="plain",
                           progress=progress, command_line=f"plrp demo --out {out_prefix}")
    copies = []
    with space.output_errors(out_prefix.parent):
        for src in (fasta, motifs):
            dst = out_prefix.parent / src.name
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            copies.append(dst)
        if result.session is not None:  # IGV opens (and indexes) the copy beside the tracks
            from plrp.outputs.igv import set_session_genome

            with atomic_path(result.session) as tmp:
                set_session_genome(result.session, copies[0], tmp)
    return result, copies[0], copies[1]
