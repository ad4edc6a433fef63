"""Cost of many sequences in the relevance file: a draft assembly's scaffolds against one
chromosome holding the same bases.

Writes what the explain sink writes for one (method, target) -- the window table, scores and
the merged per-base track (TrackMerger -> RelevanceWriter.append_track) -- for S scaffolds
of B bp and for one chromosome of S*B bp, and reports the time per scaffold beyond the one
chromosome's. The format-1 store of plrp <= the previous release (one HDF5 group and two
datasets per sequence, per-window arrays always) is measured the same way from git, for
comparison (``--old-scaffolds``; it pays per scaffold, so fewer are enough).

    python benchmarks/scaffolds.py --scaffolds 100000 --length 600 --out bench-out/scaffolds.json

Prints a table on stdout and writes the JSON. No model and no engine: the per-base values
are random (30% exact zeros, as a sparse track leaves out).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from plrp.outputs.bedgraph import BgzipBedGraphWriter  # noqa: E402
from plrp.outputs.h5 import RelevanceWriter, open_relevance  # noqa: E402
from plrp.outputs.tracks import TrackMerger  # noqa: E402

WINDOW = 200
BATCH = 128
# the last commit with the format-1 store (one HDF5 group per sequence)
FORMAT1_COMMIT = "c10294fdaee3d176cb910c0ef898798cb0624df4"


def _layout(n_seqs: int, length: int):
    """(chroms [(name, length)], window chrom list, starts (N,)) tiled at stride = window."""
    chroms = [(f"scaffold_{i:06d}", length) for i in range(n_seqs)]
    order = sorted(chroms, key=lambda c: c[0].encode())
    per = length // WINDOW
    chrom = [c for c, _ in order for _ in range(per)]
    start = np.tile(np.arange(per) * WINDOW, n_seqs)
    return chroms, chrom, start


def _values(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, WINDOW)).astype(np.float32)
    v[rng.random((n, WINDOW)) < 0.3] = 0.0
    return v


def run_new(path: Path, chroms, chrom, start, values, arrays: bool, bedgraph: bool) -> dict:
    n = len(chrom)
    t0 = time.perf_counter()
    w = RelevanceWriter(path, chroms=chroms, window=WINDOW, methods=["plrp"], targets=["t"],
                        attrs={"targets": ["t"], "methods": ["plrp"]}, method_attrs={},
                        arrays=arrays, capacity=n)
    bg = BgzipBedGraphWriter(path.with_suffix(".bedGraph.gz"), chroms) if bedgraph else None

    def emit(c, p, v):
        w.append_track("plrp", "t", c, p, v)
        if bg is not None:
            bg.add(c, p, v)

    merger = TrackMerger(emit)
    one_hot = np.zeros((BATCH, 4, WINDOW), np.uint8)
    with w:
        for a in range(0, n, BATCH):
            b = min(n, a + BATCH)
            rows = w.append_windows(chrom[a:b], start[a:b], start[a:b] + WINDOW,
                                    np.arange(a, b), one_hot[:b - a] if arrays else None)
            arr = {}
            if arrays:
                rel = np.repeat(values[a:b, None, :], 4, axis=1) / 4
                arr = {"relevance": rel, "hypothetical": rel}
            w.write_attributions("plrp", "t", rows, score=values[a:b].sum(1),
                                 conservation_error=np.zeros(b - a), **arr)
            merger.add_batch(chrom[a:b], start[a:b], start[a:b] + WINDOW, values[a:b])
        merger.finish()
        w.write_edges("plrp", "t", merger.edges())
        w.finish()
    if bg is not None:
        bg.close()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    with open_relevance(path) as r:
        stored = sum(p.size for _, p, _ in r.track_stream("plrp", "t"))
    read_seconds = time.perf_counter() - t1
    return {"seconds": seconds, "read_seconds": read_seconds, "stored_bases": int(stored),
            "bytes": path.stat().st_size}


def _old_store():
    """The format-1 writer (plrp/genome/store.py at ``FORMAT1_COMMIT``), or None."""
    try:
        src = subprocess.run(["git", "-C", str(REPO), "show",
                              f"{FORMAT1_COMMIT}:plrp/genome/store.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if "class StoreWriter" not in src or "_TrackStream" not in src:
        return None
    tmp = Path(tempfile.mkdtemp()) / "old_store.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("old_store", tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_old(mod, path: Path, chroms, chrom, start, values) -> dict:
    n = len(chrom)
    t0 = time.perf_counter()
    w = mod.StoreWriter(path, chroms=chroms, window=WINDOW, capacity=n, methods=["plrp"],
                        targets=["t"], attrs={"targets": ["t"], "methods": ["plrp"]},
                        method_attrs={})
    merger = TrackMerger(lambda c, p, v: w.append_track("plrp", "t", c, p, v))
    one_hot = np.zeros((BATCH, 4, WINDOW), np.uint8)
    with w:
        for a in range(0, n, BATCH):
            b = min(n, a + BATCH)
            rows = w.append_windows(chrom[a:b], start[a:b], start[a:b] + WINDOW,
                                    np.arange(a, b), one_hot[:b - a])
            rel = np.repeat(values[a:b, None, :], 4, axis=1) / 4
            w.write_attributions("plrp", "t", rows, relevance=rel, hypothetical=rel,
                                 score=values[a:b].sum(1), conservation_error=np.zeros(b - a))
            merger.add_batch(chrom[a:b], start[a:b], start[a:b] + WINDOW, values[a:b])
        merger.finish()
        w.finish()
    return {"seconds": time.perf_counter() - t0, "bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scaffolds", type=int, default=100_000)
    ap.add_argument("--length", type=int, default=600, help="bp per scaffold")
    ap.add_argument("--old-scaffolds", type=int, default=3000,
                    help="scaffolds for the format-1 store (0: skip it)")
    ap.add_argument("--arrays", action="store_true", help="also measure with per-window arrays")
    ap.add_argument("--bedgraph", action="store_true",
                    help="also measure with a bgzip bedGraph written beside the file")
    ap.add_argument("--out", type=Path, default=Path("bench-out/scaffolds.json"))
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)

        def case(name, fmt, n_seqs, length, fn, **kw):
            chroms, chrom, start = _layout(n_seqs, length)
            values = _values(len(chrom))
            res = fn(tmp / f"{name}.h5", chroms, chrom, start, values, **kw)
            res.update(case=name, format=fmt, sequences=n_seqs, bp=n_seqs * length,
                       windows=len(chrom))
            rows.append(res)
            (tmp / f"{name}.h5").unlink()
            print(f"  {name}: {res['seconds']:.2f} s", file=sys.stderr, flush=True)
            return res

        total = args.scaffolds * args.length
        for arrays in ([False, True] if args.arrays else [False]):
            tag = "+arrays" if arrays else ""
            s = case(f"v2 scaffolds{tag}", 2, args.scaffolds, args.length, run_new,
                     arrays=arrays, bedgraph=False)
            c = case(f"v2 one chromosome{tag}", 2, 1, total, run_new, arrays=arrays,
                     bedgraph=False)
            s["ms_per_scaffold"] = 1e3 * (s["seconds"] - c["seconds"]) / args.scaffolds
        if args.bedgraph:
            s = case("v2 scaffolds + bgzip bedGraph", 2, args.scaffolds, args.length, run_new,
                     arrays=False, bedgraph=True)
            c = case("v2 one chromosome + bgzip bedGraph", 2, 1, total, run_new,
                     arrays=False, bedgraph=True)
            s["ms_per_scaffold"] = 1e3 * (s["seconds"] - c["seconds"]) / args.scaffolds
        old = _old_store() if args.old_scaffolds else None
        if old is not None:
            n_old = args.old_scaffolds
            s = case("v1 scaffolds (arrays)", 1, n_old, args.length,
                     lambda *a: run_old(old, *a))
            c = case("v1 one chromosome (arrays)", 1, 1, n_old * args.length,
                     lambda *a: run_old(old, *a))
            s["ms_per_scaffold"] = 1e3 * (s["seconds"] - c["seconds"]) / n_old
            s = case("v2 scaffolds (arrays, as v1)", 2, n_old, args.length, run_new,
                     arrays=True, bedgraph=False)
            c = case("v2 one chromosome (arrays, as v1)", 2, 1, n_old * args.length, run_new,
                     arrays=True, bedgraph=False)
            s["ms_per_scaffold"] = 1e3 * (s["seconds"] - c["seconds"]) / n_old

    head = (f"| case | sequences | Mbp | windows | write s | ms per scaffold beyond one "
            f"chromosome | read track s | file MB |")
    print(head)
    print("|" + "---|" * 8)
    for r in rows:
        per = f"{r['ms_per_scaffold']:.3f}" if "ms_per_scaffold" in r else ""
        read = f"{r['read_seconds']:.2f}" if "read_seconds" in r else ""
        print(f"| {r['case']} | {r['sequences']:,} | {r['bp'] / 1e6:.1f} | {r['windows']:,} | "
              f"{r['seconds']:.2f} | {per} | {read} | {r['bytes'] / 1e6:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"scaffold_bp": args.length, "window": WINDOW,
                                    "cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
