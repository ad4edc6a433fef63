"""Benchmark ``plrp explain`` end to end against the engine alone.

For each simulated genome size (``--mbp``) it runs, each in a fresh subprocess so peak
memory is its own:

- end-to-end: ``plrp.jobs.explain.explain_fasta`` on a random FASTA of that size (reading, one-hot,
  engine, HDF5, track merging, bedGraph);
- engine-only: the same model, targets, method and batch size on pre-made one-hot batches
  (as many windows as the end-to-end run explained, capped by ``--engine-windows``),
  ``--engine-runs`` times before and as many after the end-to-end run. On a shared machine
  the engine's rate moves by up to 17% between runs, so the ratio is taken against the
  median run, and against the fastest (``ratio_vs_fastest``), which noise cannot flatter.

Disk writes are flushed (``sync``) before each run, so none pays for another's writeback.

Prints a table (windows/s, nucleotides/s, ratio end-to-end / engine-only, the share of
the end-to-end run spent in the engine, peak RSS from /proc VmHWM) and writes JSON. The
share is timed inside the one run, so it does not move with the machine's load between
runs as the ratio can. Targets (issue 12): ratio >= 0.85 (I/O hidden behind compute); peak RSS
at the largest size within 10% of the smallest (memory bounded by batch, not genome).

    nice python benchmarks/explain.py --mbp 10 100 --device cpu --out bench-out/explain.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_random_fasta(path: Path, mbp: float, seed: int = 0, chrom_mbp: float = 5.0,
                       width: int = 60) -> int:
    """Random ACGT FASTA of ``mbp`` megabases in chromosomes of <= ``chrom_mbp``; bases."""
    rng = np.random.default_rng(seed)
    total = int(mbp * 1e6)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(path, "wb") as fh:
        k, left = 0, total
        while left > 0:
            n = min(left, int(chrom_mbp * 1e6))
            fh.write(f">chr{k + 1}\n".encode())
            block = width << 16  # ~4 Mbp at a time keeps memory small; whole lines only
            for a in range(0, n, block):
                m = min(block, n - a)
                seq = letters[rng.integers(0, 4, m, dtype=np.uint8)]
                full = m // width * width
                lines = np.concatenate([seq[:full].reshape(-1, width),
                                        np.full((full // width, 1), 10, np.uint8)], axis=1)
                fh.write(lines.tobytes())
                if full < m:
                    fh.write(seq[full:].tobytes() + b"\n")
            left -= n
            k += 1
    return total


def child_end_to_end(args) -> dict:
    import torch  # noqa: F401  (imports are not part of the run, as for the engine child)

    import plrp.engine  # noqa: F401
    from plrp.jobs.explain import explain_fasta

    t0 = time.perf_counter()
    res = explain_fasta(args.fasta, args.prefix, model=args.model, targets=args.targets,
                        methods=(args.method,), device=args.device, batch_size=args.batch_size,
                        progress=False, command_line="benchmarks/explain.py")
    secs = time.perf_counter() - t0
    written = sum(p.stat().st_size for p in Path(args.prefix).parent.iterdir()
                  if p.name.startswith(Path(args.prefix).name + "."))
    return {"windows": res.n_windows, "seconds": secs, "setup_seconds": res.setup_seconds,
            "engine_seconds": res.engine_seconds, "peak_rss_mb": peak_rss_mb(),
            "bases": res.bases, "stored": sum(res.stored.values()),
            "tracks": len(res.stored), "output_bytes": written}


def child_engine_only(args) -> dict:
    import torch

    from plrp.devices import resolve_device
    from plrp.engine import BatchExplainer
    from plrp.jobs.explain import resolve_targets
    from plrp.models.checkpoint import load_model

    loaded = load_model(args.model)
    dev = resolve_device(args.device)
    net = loaded.model.to(dev)
    specs = net.target_specs()
    targets = resolve_targets(loaded.output_names, args.targets)
    p = 0.0 if args.method == "lrp" else args.p_pos
    ex = BatchExplainer(net, targets=[specs[t] for t in targets],
                        methods={args.method: dict(p_pos=p, p_neg=p / 2)})
    L = loaded.input_length
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 4, (args.batch_size, L), generator=g)
    x = torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float().to(dev)
    ex.explain(x[:2])  # warm-up
    n = 0
    t0 = time.perf_counter()
    while n < args.windows:
        ex.explain(x).relevance.sum(dim=3).cpu()  # as the job: tracks only
        n += args.batch_size
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"windows": n, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def _random_checkpoint(arch: str, path: str) -> None:
    import torch

    from plrp.models.architectures import build_model
    from plrp.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(path, build_model(arch))


def run_child(kind: str, **kw) -> dict:
    # the kernel writes the last run's gigabytes back to disk for many seconds after it
    # ends, on the same cores: wait for that, or the next measurement pays for it
    os.sync()
    cmd = [sys.executable, __file__, "--child", kind]
    for k, v in kw.items():
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        cmd += [flag, *map(str, v)] if isinstance(v, list) else [flag, str(v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mbp", type=float, nargs="+", default=[0.1, 0.4])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--arch", default=None,
                    help="instead of --model: a randomly initialised zoo architecture "
                         "(deepsea, basset, bpnet, plrp-default), e.g. a DeepSEA-sized run")
    ap.add_argument("--targets", nargs="*", default=None)
    ap.add_argument("--method", default="plrp", choices=["lrp", "plrp"])
    ap.add_argument("--p-pos", type=float, default=0.1, help="engine-only p (the job's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--engine-runs", type=int, default=3,
                    help="engine-only runs before, and as many after, each end-to-end run")
    ap.add_argument("--engine-windows", type=int, default=8192,
                    help="cap on windows timed for the engine-only rate")
    ap.add_argument("--out", default="bench-out/explain.json")
    ap.add_argument("--workdir", default=None, help="where the FASTA/outputs go (default tmp)")
    # internal: one measurement in a child process
    ap.add_argument("--child", choices=["end2end", "engine"], help=argparse.SUPPRESS)
    ap.add_argument("--fasta", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--windows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        from plrp.hostmemory import tune_cpu_allocator

        tune_cpu_allocator()  # as the plrp command does
    if args.child == "end2end":
        print(json.dumps(child_end_to_end(args)))
        return
    if args.child == "engine":
        print(json.dumps(child_engine_only(args)))
        return

    common = dict(model=args.model, targets=args.targets or None, method=args.method,
                  device=args.device, batch_size=args.batch_size)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        if args.arch:
            common["model"] = str(Path(work) / f"{args.arch}.safetensors")
            _random_checkpoint(args.arch, common["model"])
        for mbp in args.mbp:
            fa = Path(work) / f"sim_{mbp:g}mbp.fa"
            bases = write_random_fasta(fa, mbp)
            n_eng = min(int(mbp * 1e6) // 200 or 1, args.engine_windows)
            # engine-only before and after the end-to-end run: a shared machine's load drifts
            eng_kw = dict(windows=n_eng, p_pos=args.p_pos, **common)
            engs = [run_child("engine", **eng_kw) for _ in range(args.engine_runs)]
            e2e = run_child("end2end", fasta=fa, prefix=Path(work) / f"out_{mbp:g}", **common)
            engs += [run_child("engine", **eng_kw) for _ in range(args.engine_runs)]
            eng_rates = [r["windows"] / r["seconds"] for r in engs]
            # steady state: everything after setup (model load, FASTA index, engine tracing,
            # reported apart): reading, engine, HDF5, tracks, bedGraph
            steady_s = e2e["seconds"] - e2e["setup_seconds"]
            e2e_rate = e2e["windows"] / steady_s
            eng_rate = float(np.median(eng_rates))
            rows.append({"mbp": mbp, "bases": bases, "windows": e2e["windows"],
                         "end_to_end_s": e2e["seconds"], "setup_s": e2e["setup_seconds"],
                         "end_to_end_windows_per_s": e2e_rate,
                         "end_to_end_nt_per_s": e2e_rate * bases / max(e2e["windows"], 1),
                         "engine_only_windows_per_s": eng_rate,
                         "engine_only_runs_windows_per_s": eng_rates,
                         "ratio": e2e_rate / eng_rate,
                         "ratio_vs_fastest": e2e_rate / max(eng_rates),
                         # drift-free view of the same: the share of the run's steady time
                         # spent in the engine, both timed in the one process
                         "engine_share": e2e["engine_seconds"] / steady_s,
                         "peak_rss_mb": e2e["peak_rss_mb"],
                         "engine_only_peak_rss_mb": max(r["peak_rss_mb"] for r in engs)})
            for p in Path(work).iterdir():
                if p.suffix != ".safetensors":
                    p.unlink()
    head = (f"{'Mbp':>7} {'windows':>9} {'e2e s':>8} {'setup s':>8} {'e2e win/s':>10} "
            f"{'e2e nt/s':>11} "
            f"{'engine win/s':>13} {'ratio':>6} {'vs fastest':>11} {'in engine':>10} "
            f"{'peak RSS MB':>12}")
    print(head)
    for r in rows:
        print(f"{r['mbp']:>7g} {r['windows']:>9} {r['end_to_end_s']:>8.1f} {r['setup_s']:>8.1f} "
              f"{r['end_to_end_windows_per_s']:>10.1f} {r['end_to_end_nt_per_s']:>11.0f} "
              f"{r['engine_only_windows_per_s']:>13.1f} {r['ratio']:>6.2f} "
              f"{r['ratio_vs_fastest']:>11.2f} {100 * r['engine_share']:>9.0f}% "
              f"{r['peak_rss_mb']:>12.0f}")
    mem_growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1 if len(rows) > 1 else 0.0
    print(f"peak RSS growth from {rows[0]['mbp']:g} to {rows[-1]['mbp']:g} Mbp: "
          f"{100 * mem_growth:+.1f}% (target within 10%); min ratio "
          f"{min(r['ratio'] for r in rows):.2f} (target >= 0.85; against the fastest engine "
          f"runs {min(r['ratio_vs_fastest'] for r in rows):.2f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import torch

    import plrp
    meta = {"plrp_version": plrp.__version__, "torch": torch.__version__,
            "device": args.device, "batch_size": args.batch_size, "method": args.method,
            "targets": args.targets,
            "model": args.model or (f"random {args.arch}" if args.arch else "shipped default"),
            "cpu_count": os.cpu_count(), "rss_growth": mem_growth}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
