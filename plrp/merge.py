"""Merge the shard files of ``plrp explain --shard I/N`` into the file of one unsharded run.

Shard I holds the contiguous block of global window indices
[floor((I-1)T/N), floor(IT/N)) (contracts 4). Merging concatenates every per-window dataset
in shard order (= global-index order) and rebuilds the merged per-base tracks from the
per-window relevance with the run's merge rule, because windows that overlap can lie in two
shards: a shard's own track is only right away from its block's edges. The result (HDF5
datasets, bedGraph and bigWig bytes) equals what one run without ``--shard`` writes; only
the root attributes ``shard`` ("1/1"), ``command_line`` and ``merged_from`` tell it apart.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from plrp.atomic import AtomicGroup
from plrp.errors import InputError, PlrpError
from plrp.genome.fasta import shard_range
from plrp.genome.store import FORMAT, StoreWriter, plain_attr
from plrp.genome.tracks import TrackMerger, byte_order, write_bedgraph, write_bigwig
from plrp.run import track_line, track_stems

log = logging.getLogger("plrp")

# Root attributes that every shard of one run shares; a difference means another model,
# input or setting. (device and command_line may differ between shards; shard does.)
SHARED_ROOT_ATTRS = (
    "format_version", "model_sha256", "architecture", "composite", "window", "stride",
    "merge", "targets", "methods", "fasta", "regions", "n_windows_total", "max_n_fraction",
    "pad_short", "alphabet", "short_spans",
)
# Attributes the merged file recomputes or that the store writer sets itself.
_RECOMPUTED_ROOT_ATTRS = ("format", "format_version", "alphabet", "window", "shard",
                          "n_windows", "n_windows_skipped_n", "command_line")
_ATTRIBUTION_ARRAYS = ("relevance", "hypothetical", "score", "conservation_error")
# Windows copied per step: bounds memory (a few tens of MB for 200 bp windows).
_ROWS_PER_STEP = 2048


@dataclass
class MergeResult:
    """What ``merge_shards`` wrote: the HDF5 file, {(method, target): path} of the tracks,
    and the window counts (``n_windows`` stored, ``n_windows_total`` before N-skipping)."""

    h5: Path
    bedgraphs: dict = field(default_factory=dict)
    bigwigs: dict = field(default_factory=dict)
    n_windows: int = 0
    n_windows_total: int = 0
    n_shards: int = 0


@dataclass
class _Shard:
    path: Path
    h5: h5py.File
    index: int          # I (1-based)
    count: int          # N
    attrs: dict         # root attributes as stored (JSON strings left as strings)


def _open_shard(path: Path) -> _Shard:
    if not path.is_file():
        raise InputError(f"{path}: no such shard file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    attrs = {k: plain_attr(v) for k, v in h5.attrs.items()}
    if attrs.get("format") != FORMAT:
        h5.close()
        raise InputError(f"{path}: not a plrp relevance file (format attribute "
                         f"{attrs.get('format')!r})")
    match = re.fullmatch(r"(\d+)/(\d+)", str(attrs.get("shard", "")))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        h5.close()
        raise InputError(f"{path}: attribute shard={attrs.get('shard')!r} is not I/N")
    return _Shard(path, h5, int(match.group(1)), int(match.group(2)), attrs)


def _method_attrs(shard: _Shard) -> dict:
    """{method: {attr: value}} and {method/target: {...}}: the pruning settings."""
    out = {}
    group = shard.h5.get("attributions")
    if group is None:
        return out
    for method, mgroup in group.items():
        out[method] = {k: plain_attr(v) for k, v in mgroup.attrs.items()}
        for target, tgroup in mgroup.items():
            out[f"{method}/{target}"] = {k: plain_attr(v) for k, v in tgroup.attrs.items()}
    return out


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_shards(shards: list[_Shard]) -> list[_Shard]:
    """Check that ``shards`` are all N shards of one run, once each; return them in order.

    Raises ``PlrpError`` (one line naming the files) when a shard is missing or repeated,
    or when two shards differ in model, input or settings (``SHARED_ROOT_ATTRS``, the
    methods' pruning settings, the chromosome table), or a shard's windows fall outside its
    block of global indices.
    """
    first = shards[0]
    for shard in shards[1:]:
        if shard.count != first.count:
            raise PlrpError(f"{shard.path}: shard {shard.index}/{shard.count} belongs to a "
                            f"{shard.count}-way split, {first.path} to a {first.count}-way "
                            "split; merge the shards of one run")
        for key in SHARED_ROOT_ATTRS:
            a, b = first.attrs.get(key), shard.attrs.get(key)
            if a != b:
                raise PlrpError(f"{shard.path}: {key}={_short(b)!r} differs from "
                                f"{first.path} ({key}={_short(a)!r}); shards must come from "
                                "one run's model and settings")
        ma, mb = _method_attrs(first), _method_attrs(shard)
        if ma != mb:
            where = next((k for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)), "")
            raise PlrpError(f"{shard.path}: attribution settings of {where!r} "
                            f"({_short(mb.get(where))}) differ from {first.path} "
                            f"({_short(ma.get(where))}); shards must come from one run's "
                            "settings")
        for name in ("chroms/name", "chroms/length"):
            if not np.array_equal(first.h5[name][()], shard.h5[name][()]):
                raise PlrpError(f"{shard.path}: /{name} differs from {first.path}; "
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
    total = int(first.attrs["n_windows_total"])
    for shard in ordered:
        lo, hi = shard_range(total, (shard.index, shard.count))
        index = shard.h5["windows/index"][()]
        if index.size and (index[0] < lo or index[-1] >= hi or np.any(np.diff(index) <= 0)):
            raise PlrpError(f"{shard.path}: window indices {int(index[0])}..{int(index[-1])} "
                            f"are not inside shard {shard.index}/{shard.count}'s block "
                            f"{lo}..{hi - 1} in order; the file is damaged")
    return ordered


def _strip_shard_flag(command_line: str) -> str:
    """The shard's command line as the unsharded run would read (without --shard I/N)."""
    return re.sub(r"\s--shard(=|\s+)\S+", "", command_line)


def merge_shards(shard_paths: list[str | Path], out_prefix: str | Path, *,
                 bigwig: bool = False, compression_level: int = 1) -> MergeResult:
    """Merge the N shard files of one ``plrp explain`` run into ``out_prefix``.

    Writes ``<out_prefix>.h5`` and, per method and target, ``<out_prefix>.<target>.bedGraph``
    (``.<target>.<method>.bedGraph`` when several methods ran), plus ``.bw`` with
    ``bigwig`` -- all or nothing. Shards may be given in any order. Memory is bounded by
    ``_ROWS_PER_STEP`` windows and the track merger's window-sized buffer.
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
        return _write_merged(ordered, out_prefix, h5_path, bigwig, compression_level)
    finally:
        for shard in shards:
            shard.h5.close()


def _write_merged(ordered: list[_Shard], out_prefix: Path, h5_path: Path, bigwig: bool,
                  compression_level: int) -> MergeResult:
    first = ordered[0]
    attrs = first.attrs
    methods = json.loads(attrs["methods"])
    targets = json.loads(attrs["targets"])
    merge_rule = str(attrs["merge"])
    names = first.h5["chroms/name"].asstr()[()]
    chroms = list(zip([str(n) for n in names], first.h5["chroms/length"][()].tolist()))
    chrom_sizes = dict(chroms)
    window = int(attrs["window"])
    n_total = int(attrs["n_windows_total"])
    n_rows = sum(int(s.h5["windows/start"].shape[0]) for s in ordered)
    # The unsharded run sizes its datasets (and so their HDF5 chunks) by n_windows_total.
    root = {k: v for k, v in attrs.items() if k not in _RECOMPUTED_ROOT_ATTRS}
    root["shard"] = "1/1"
    root["command_line"] = _strip_shard_flag(str(attrs.get("command_line", "")))
    method_attrs = {m: {k: plain_attr(v) for k, v in first.h5[f"attributions/{m}"].attrs.items()}
                    for m in methods}
    several = len(methods) > 1
    stems = track_stems(out_prefix, methods, targets)
    result = MergeResult(h5_path, n_windows_total=n_total, n_shards=len(ordered))

    with AtomicGroup() as group:
        tmp = group.path

        store = StoreWriter(tmp(h5_path), chroms=chroms, window=window,
                            capacity=n_total, methods=methods, targets=targets, attrs=root,
                            method_attrs=method_attrs, compression_level=compression_level)
        with store:
            mergers = {(m, t): TrackMerger(
                (lambda c, p, v, m=m, t=t: store.append_track(m, t, c, p, v)), merge=merge_rule)
                for m in methods for t in targets}
            for shard in ordered:
                _copy_shard(shard, store, mergers, methods, targets)
            for merger in mergers.values():
                merger.finish()
            skipped = sum(int(s.attrs.get("n_windows_skipped_n", 0)) for s in ordered)
            store.set_attr("n_windows_skipped_n", skipped)
            store.set_attr("merged_from", [str(s.path) for s in ordered])
            store.finish()
            if store.n_windows != n_rows:
                raise PlrpError(f"merged {store.n_windows} windows, shards hold {n_rows}")
            result.n_windows = store.n_windows

            chroms_sorted = byte_order(chrom_sizes)
            for (m, t), stem in stems.items():
                bedgraph = Path(f"{stem}.bedGraph")
                write_bedgraph(tmp(bedgraph), chroms_sorted,
                               lambda c, m=m, t=t: store.track_chunks(m, t, c),
                               track_line(out_prefix, m, t, several, merge_rule))
                result.bedgraphs[m, t] = bedgraph
                if bigwig:
                    bw = Path(f"{stem}.bw")
                    write_bigwig(tmp(bw), [(c, chrom_sizes[c]) for c in chroms_sorted],
                                 lambda c, m=m, t=t: store.track_chunks(m, t, c))
                    result.bigwigs[m, t] = bw
        group.commit()
    log.info("merged %d shards (%d windows) -> %s", len(ordered), result.n_windows, h5_path)
    return result


def _copy_shard(shard: _Shard, store: StoreWriter, mergers: dict, methods: list[str],
                targets: list[str]) -> None:
    """Append one shard's windows and attributions; feed its windows to the track mergers."""
    h5 = shard.h5
    n = int(h5["windows/start"].shape[0])
    for lo in range(0, n, _ROWS_PER_STEP):
        hi = min(n, lo + _ROWS_PER_STEP)
        chrom = h5["windows/chrom"].asstr()[lo:hi].tolist()
        start = h5["windows/start"][lo:hi]
        end = h5["windows/end"][lo:hi]
        rows = store.append_windows(chrom, start, end, h5["windows/index"][lo:hi],
                                    h5["windows/one_hot"][lo:hi])
        for m in methods:
            for t in targets:
                group = h5[f"attributions/{m}/{t}"]
                arrays = {name: group[name][lo:hi] for name in _ATTRIBUTION_ARRAYS}
                store.write_attributions(m, t, rows, **arrays)
                # the same per-base values as plrp.run.explain_fasta: float32 sum of ACGT
                mergers[m, t].add_batch(chrom, start, end, arrays["relevance"].sum(axis=1))
