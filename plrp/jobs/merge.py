"""Merge the shard files of ``plrp explain --shard I/N`` into the file of one unsharded run.

Shard I holds the contiguous block of global window indices [floor((I-1)T/N), floor(IT/N)).
Merging concatenates the per-window datasets in shard order (= global-index order) and
joins the shards' per-base tracks. A shard's track is right except between its first or
last windows and a neighbour's, where windows of two shards may cover the same bases
(stride < window): there the bases are merged again, with the run's merge rule, from the
shards' stored edge windows (``outputs.tracks.edge_mask``), which hold every window covering
them. The result (HDF5 datasets, track files) equals what one run without ``--shard`` writes;
only the root attributes ``shard`` ("1/1"), ``command_line`` and ``merged_from`` differ.
Works on every tier: with or without per-window arrays, dense or sparse tracks.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plrp.atomic import AtomicGroup
from plrp.errors import InputError, PlrpError
from plrp.outputs.h5 import (ARRAY_NAMES, ROW_NAMES, RelevanceFile, RelevanceWriter,
                              open_relevance)
from plrp.outputs.igv import write_run_session
from plrp.outputs.space import clean_stale_temporaries, output_errors
from plrp.outputs.trackfiles import open_track_writers, track_line, track_stems
from plrp.outputs.tracks import EdgeWindows, TrackMerger, edge_mask

log = logging.getLogger("plrp")

# Root attributes that may differ between the shards of one run; any other difference
# means another model, input or setting.
PER_SHARD_ATTRS = ("shard", "command_line", "device", "n_windows", "n_windows_skipped_n",
                   "merged_from", "plrp_version")
# Attributes the merged file recomputes or that the writer sets itself.
_RECOMPUTED_ROOT_ATTRS = ("format", "format_version", "alphabet", "window", "arrays",
                          "array_dtype", "shard", "n_windows", "n_windows_skipped_n",
                          "command_line")
# Windows copied per step: bounds memory (a few tens of MB for 200 bp windows).
_ROWS_PER_STEP = 2048


@dataclass
class MergeResult:
    """What ``merge_shards`` wrote: the HDF5 file, {(method, target): {format: path}} of
    the tracks, and the window counts (``n_windows`` stored, ``n_windows_total`` before
    N-skipping)."""

    h5: Path
    tracks: dict = field(default_factory=dict)
    n_windows: int = 0
    n_windows_total: int = 0
    n_shards: int = 0
    session: Path | None = None


@dataclass
class _Shard:
    file: RelevanceFile
    index: int          # I (1-based)
    count: int          # N

    @property
    def path(self) -> Path:
        return self.file.path


def _open_shard(path: Path) -> _Shard:
    f = open_relevance(path)
    match = re.fullmatch(r"(\d+)/(\d+)", str(f.attrs.get("shard", "")))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        f.close()
        raise InputError(f"{path}: attribute shard={f.attrs.get('shard')!r} is not I/N")
    return _Shard(f, int(match.group(1)), int(match.group(2)))


def _settings(shard: _Shard) -> dict:
    """{method: attrs} and {method/target: attrs}: the pruning settings."""
    f = shard.file
    out = {}
    for m in f.methods:
        out[m] = f.method_attrs(m)
        for t in f.targets:
            out[f"{m}/{t}"] = f.method_attrs(m, t)
    return out


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_shards(shards: list[_Shard]) -> list[_Shard]:
    """Check that ``shards`` are all N shards of one run, once each; return them in order.

    Raises ``PlrpError`` (one line naming the files) when a shard is missing or repeated,
    or when two shards differ in model, input or settings (every root attribute but
    ``PER_SHARD_ATTRS``, the methods' settings, the sequence table), or a shard's windows
    fall outside its block of global indices.
    """
    from plrp.genome.windows import shard_range

    first = shards[0]
    fa = first.file
    for shard in shards[1:]:
        fb = shard.file
        if shard.count != first.count:
            raise PlrpError(f"{shard.path}: shard {shard.index}/{shard.count} belongs to a "
                            f"{shard.count}-way split, {first.path} to a {first.count}-way "
                            "split; merge the shards of one run")
        for key in sorted((set(fa.attrs) | set(fb.attrs)) - set(PER_SHARD_ATTRS)):
            a, b = fa.attrs.get(key), fb.attrs.get(key)
            if a != b:
                raise PlrpError(f"{shard.path}: {key}={_short(b)!r} differs from "
                                f"{first.path} ({key}={_short(a)!r}); shards must come from "
                                "one run's model and settings")
        ma, mb = _settings(first), _settings(shard)
        if ma != mb:
            where = next((k for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)), "")
            raise PlrpError(f"{shard.path}: attribution settings of {where!r} "
                            f"({_short(mb.get(where))}) differ from {first.path} "
                            f"({_short(ma.get(where))}); shards must come from one run's "
                            "settings")
        if fa.chroms != fb.chroms:
            raise PlrpError(f"{shard.path}: the sequence table differs from {first.path}; "
                            "shards must come from one FASTA")
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard.index in seen:
            same = shard.path.resolve() == seen[shard.index].resolve()
            raise PlrpError(f"{shard.path}: shard {shard.index}/{shard.count} given twice"
                            + (" (same file)" if same else f" (also {seen[shard.index]})"))
        seen[shard.index] = shard.path
    missing = sorted(set(range(1, first.count + 1)) - set(seen))
    if missing:
        shown = ", ".join(f"{i}/{first.count}" for i in missing[:10])
        raise PlrpError(f"missing shard{'s' if len(missing) > 1 else ''} {shown}"
                        f"{' ...' if len(missing) > 10 else ''} of {first.count} "
                        f"(given: {', '.join(str(s.path) for s in shards[:5])}"
                        f"{' ...' if len(shards) > 5 else ''})")
    ordered = sorted(shards, key=lambda s: s.index)
    total = int(fa.attrs["n_windows_total"])
    for shard in ordered:
        lo, hi = shard_range(total, (shard.index, shard.count))
        index = shard.file.windows(columns=("index",))["index"]
        if index.size and (index[0] < lo or index[-1] >= hi or np.any(np.diff(index) <= 0)):
            raise PlrpError(f"{shard.path}: window indices {int(index[0])}..{int(index[-1])} "
                            f"are not inside shard {shard.index}/{shard.count}'s block "
                            f"{lo}..{hi - 1} in order; the file is damaged")
    return ordered


def _strip_shard_flag(command_line: str) -> str:
    """The shard's command line as the unsharded run would read (without --shard I/N)."""
    return re.sub(r"\s--shard(=|\s+)\S+", "", command_line)


def merge_shards(shard_paths: list[str | Path], out_prefix: str | Path, *,
                 formats=("plain",), compression_level: int = 1) -> MergeResult:
    """Merge the N shard files of one ``plrp explain`` run into ``out_prefix``.

    Writes ``<out_prefix>.h5`` and, per method and target and track format in ``formats``
    (names of ``outputs.trackfiles.TRACK_FORMATS``), ``<out_prefix>.<target>[.<method>]``
    plus the format's suffix -- all or nothing. Shards may be given in any order. Memory is
    bounded by ``_ROWS_PER_STEP`` windows and the shards' edge windows.
    Raises ``PlrpError`` for shards that do not make up one run (see ``check_shards``).
    """
    paths = [Path(p) for p in shard_paths]
    if not paths:
        raise PlrpError("plrp merge: no shard files given")
    out_prefix = Path(out_prefix)
    if out_prefix.name in ("", ".", ".."):
        raise PlrpError(f"--out {out_prefix}: give a file prefix such as results/run1")
    h5_path = Path(f"{out_prefix}.h5")
    shards: list[_Shard] = []
    try:
        for path in paths:
            if path.resolve() == h5_path.resolve():
                raise PlrpError(f"{path}: is also the output file; choose another --out")
            shards.append(_open_shard(path))
        ordered = check_shards(shards)
        with output_errors(h5_path):
            clean_stale_temporaries(h5_path.parent)
            return _write_merged(ordered, out_prefix, h5_path, list(formats),
                                 compression_level)
    finally:
        for shard in shards:
            shard.file.close()


def _write_merged(ordered: list[_Shard], out_prefix: Path, h5_path: Path, formats: list[str],
                  compression_level: int) -> MergeResult:
    first = ordered[0].file
    attrs = first.attrs
    methods, targets = list(first.methods), list(first.targets)
    merge_rule = str(attrs["merge"])
    n_total = int(attrs["n_windows_total"])
    n_rows = sum(s.file.n_windows for s in ordered)
    # the sequence table in FASTA order, as the explain run hands it to the writer
    chroms = first.chroms_in_fasta_order()
    root = {k: v for k, v in attrs.items() if k not in _RECOMPUTED_ROOT_ATTRS}
    root["shard"] = "1/1"
    root["command_line"] = _strip_shard_flag(str(attrs.get("command_line", "")))
    several = len(methods) > 1
    stems = track_stems(out_prefix, methods, targets)
    result = MergeResult(h5_path, n_windows_total=n_total, n_shards=len(ordered))

    with AtomicGroup() as group:
        store = RelevanceWriter(
            group.path(h5_path), chroms=chroms, window=first.window, methods=methods,
            targets=targets, attrs=root, method_attrs={m: first.method_attrs(m) for m in methods},
            arrays=first.has_arrays, array_dtype=first.array_dtype, capacity=n_total,
            compression_level=compression_level)
        writers = {}
        try:
            with store:
                for shard in ordered:
                    _copy_windows(shard.file, store, methods, targets)
                for key, stem in stems.items():
                    writers[key] = open_track_writers(
                        formats, stem, first.chroms,
                        track_line(out_prefix, *key, several, merge_rule), temp=group.path)
                    _merge_track(ordered, store, writers[key], key, merge_rule)
                    for name, writer in writers[key].items():  # one target's files at a time
                        writer.close()
                        result.tracks.setdefault(key, {})[name] = writer.final_paths[0][1]
                skipped = sum(int(s.file.attrs.get("n_windows_skipped_n", 0)) for s in ordered)
                store.set_attr("n_windows_skipped_n", skipped)
                store.set_attr("merged_from", [str(s.path) for s in ordered])
                store.finish()
                if store.n_windows != n_rows:
                    raise PlrpError(f"merged {store.n_windows} windows, shards hold {n_rows}")
                result.n_windows = store.n_windows
            if attrs.get("fasta"):  # the explain runs' FASTA (absolute path)
                result.session = write_run_session(
                    out_prefix, str(attrs["fasta"]), [c for c, _ in first.chroms],
                    {f: {key: files[f] for key, files in result.tracks.items() if f in files}
                     for f in formats},
                    group.written(h5_path), group.path)
        except BaseException:
            for by_format in writers.values():
                for writer in by_format.values():
                    writer.abort()
            raise
        group.commit()
    log.info("merged %d shards (%d windows) -> %s", len(ordered), result.n_windows, h5_path)
    return result


def _copy_windows(f: RelevanceFile, store: RelevanceWriter, methods, targets) -> None:
    """Append one shard's windows and per-window results to the merged file."""
    for lo in range(0, f.n_windows, _ROWS_PER_STEP):
        hi = min(f.n_windows, lo + _ROWS_PER_STEP)
        sel = slice(lo, hi)
        win = f.windows(sel)
        one_hot = f.one_hot(sel) if f.has_arrays else None
        rows = store.append_windows(win["chrom"].tolist(), win["start"], win["end"],
                                    win["index"], one_hot)
        names = ROW_NAMES + (ARRAY_NAMES if f.has_arrays else ())
        for m in methods:
            for t in targets:
                # float16 arrays come back as float32 and are stored as float16 again: exact
                store.write_attributions(m, t, rows, **{n: f.attribution(m, t, n, sel)
                                                        for n in names})


def _boundary_spans(ordered: list[_Shard]) -> dict[str, list[tuple[int, int]]]:
    """{chrom: [(a, b)]}: bases that windows of two neighbouring shards both cover,
    [first window start of the later shard, last window end of the earlier one)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    prev = None  # (chrom, end) of the last window of the previous non-empty shard
    for shard in ordered:
        f = shard.file
        n = f.n_windows
        if n == 0:
            continue
        head = f.windows(slice(0, 1))
        tail = f.windows(slice(n - 1, n))
        if prev is not None and prev[0] == head["chrom"][0] and int(head["start"][0]) < prev[1]:
            spans.setdefault(prev[0], []).append((int(head["start"][0]), prev[1]))
        prev = (str(tail["chrom"][0]), int(tail["end"][0]))
    return spans


def _merge_track(ordered: list[_Shard], store: RelevanceWriter, writers: dict, key,
                 merge_rule: str) -> None:
    """Join the shards' tracks of (method, target) ``key`` into the store and track files."""
    method, target = key
    window = store.window
    stored = [shard.file.edges(method, target) for shard in ordered]
    spans = _boundary_spans(ordered)
    missing = [s.path for s, e in zip(ordered, stored) if e is None]
    if spans and missing:
        raise PlrpError(f"{missing[0]}: holds no edge windows of {method}/{target}, which "
                        "joining the overlapping windows of neighbouring shards needs; run "
                        "the shards again with this plrp")
    all_edges = EdgeWindows.concat([e if e is not None else EdgeWindows.empty(window)
                                    for e in stored], window)
    # bases covered by two shards, merged again from every window covering them
    redone: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    if spans:
        merger = TrackMerger(lambda c, p, v: redone.setdefault(c, []).append((p, v)),
                             merge=merge_rule)
        merger.add_batch(all_edges.chrom, all_edges.start, all_edges.end, all_edges.values)
        merger.finish()
    fixed = {}
    for chrom, parts in redone.items():
        pos = np.concatenate([p for p, _ in parts])
        val = np.concatenate([v for _, v in parts])
        keep = _inside(pos, spans.get(chrom, []))
        fixed[chrom] = (pos[keep], val[keep])
    # the merged file keeps the whole run's edges, as an unsharded run does
    store.write_edges(method, target, all_edges.take(
        edge_mask(all_edges.chrom, all_edges.start, all_edges.end)))

    def emit(chrom, pos, val):
        if pos.size:
            store.append_track(method, target, chrom, pos, val)
            for writer in writers.values():
                writer.add(chrom, pos, val)

    joined = _Joiner(fixed, emit)
    for shard in ordered:
        for chrom, pos, val in shard.file.track_stream(method, target):
            keep = ~_inside(pos, spans.get(chrom, []))
            joined.add(chrom, pos[keep], val[keep])
    joined.finish()


def _inside(pos: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """(M,) bool: positions inside any half-open span (spans sorted, disjoint or not)."""
    mask = np.zeros(pos.size, dtype=bool)
    for a, b in spans:
        mask |= (pos >= a) & (pos < b)
    return mask


class _Joiner:
    """Interleave the recomputed boundary bases with the shards' own (both ascending)."""

    def __init__(self, fixed: dict, emit):
        self._order = sorted(fixed, key=lambda c: c.encode("utf-8"))
        self._fixed, self._emit = fixed, emit
        self._chrom: str | None = None

    def _flush_before(self, key: bytes | None) -> None:
        """Emit what is left of every recomputed sequence before ``key`` in byte order
        (None: of all)."""
        while self._order and (key is None or self._order[0].encode("utf-8") < key):
            chrom = self._order.pop(0)
            pos, val = self._fixed.pop(chrom)
            self._emit(chrom, pos, val)

    def add(self, chrom: str, pos: np.ndarray, val: np.ndarray) -> None:
        self._flush_before(chrom.encode("utf-8"))
        if chrom in self._fixed and pos.size:
            fpos, fval = self._fixed[chrom]
            cut = int(np.searchsorted(fpos, pos[-1]))
            if cut:
                pos = np.concatenate([pos, fpos[:cut]])
                val = np.concatenate([val, fval[:cut]])
                order = np.argsort(pos, kind="stable")
                pos, val = pos[order], val[order]
                self._fixed[chrom] = (fpos[cut:], fval[cut:])
        self._emit(chrom, pos, val)

    def finish(self) -> None:
        self._flush_before(None)
