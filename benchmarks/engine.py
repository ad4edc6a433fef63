"""Engine throughput: windows/s per method, and target-windows/s of batched targets.

    python benchmarks/engine.py [--device auto|cpu|cuda] [--batch-sizes 16,64] [--repeats 5]
                                [--models deepsea,basset,bpnet,plrp-default] [--small]
                                [--targets plrp-default:3,deepsea:16] [--target-batch 64]
                                [--precision fp32] [--suite methods,targets,precision]
                                [--threads N] [--json bench-out/engine.json]

Prints three tables (stdout) and writes JSON. Models are built with random weights at their
real size (``--small`` shrinks them for a quick smoke run).

methods: gradient x input, LRP, PLRP-lambda, PLRP-M, windows/s. Target: PLRP-lambda >= 0.5x
  the gradient x input throughput of the same model and batch size.
targets: PLRP-lambda (p, p/2) for T targets of one batch, as target-windows/s: one target
  at a time (``Explainer.explain`` per target: a forward and a backward each) against one
  ``BatchExplainer`` call (one forward, the T backward walks stacked); "cost T/1" is the
  batched call's time over a one-target call's. Targets (issue 12): DeepSEA with 16
  targets >= 4x one at a time; 3 targets of the default model <= 1.6x one target's cost.
precision: relevance at tf32 and bf16 against fp32 on the shipped model (max |difference|,
  relative to the largest |relevance|, Pearson correlation, worst relative score change).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from plrp.atomic import atomic_path
from plrp.devices import resolve_device
from plrp.hostmemory import tune_cpu_allocator
from plrp.engine import BatchExplainer, Explainer
from plrp.models.architectures import build_model

SMALL = {
    "plrp-default": dict(n_filters=16, n_filters2=16, n_hidden=16),
    "deepsea": dict(channels=(32, 48, 96), n_hidden=64, n_outputs=16),
    "basset": dict(channels=(32, 24, 24), n_hidden=64, n_outputs=16),
    "bpnet": dict(n_filters=16, n_layers=4),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_interleaved(fns: dict, device, repeats: int) -> dict:
    """Best wall time per function; rounds interleave the functions so that load from
    other processes hits every method alike (the ratios stay meaningful on a shared CPU)."""
    for fn in fns.values():
        fn()                               # warm-up (cuDNN autotune, allocator)
    _sync(device)
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def _grad_x_input(model, x, target):
    def run():
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        out = out[target["head"]] if isinstance(out, tuple) else out
        if target["kind"] == "logit":
            score = out[:, target["index"]]
        else:
            score = (torch.softmax(out.detach(), -1) * out).sum((1, 2))
        (g,) = torch.autograd.grad(score.sum(), xg)
        return g * x
    return run


def _one_hot(batch: int, length: int, device) -> torch.Tensor:
    idx = torch.randint(0, 4, (batch, length))
    return torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float().to(device)


def bench_methods(args, device) -> list[dict]:
    rows = []
    print(f"{'model':<13} {'batch':>5} {'grad*in':>9} {'LRP':>9} {'PLRP-lam':>9} "
          f"{'PLRP-M':>9} {'lam/grad':>8}")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build_model(name, **(SMALL[name] if args.small else {})).to(device)
        target = next(iter(model.target_specs().values()))
        explainers = {
            "lrp": Explainer(model),
            "plrp_lambda": Explainer(model, p_pos=args.p),
            "plrp_m": Explainer(model, p_pos=args.p, variant="m"),
        }
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            x = _one_hot(batch, model.input_length, device)
            row = {"model": name, "batch": batch, "device": str(device)}
            fns = {"grad_x_input": _grad_x_input(model, x, target)}
            for key, ex in explainers.items():
                fns[key] = (lambda ex: lambda: ex.explain(x, target))(ex)
            for key, seconds in _time_interleaved(fns, device, args.repeats).items():
                row[key] = batch / seconds
            row["lambda_over_grad"] = row["plrp_lambda"] / row["grad_x_input"]
            rows.append(row)
            print(f"{name:<13} {batch:>5} {row['grad_x_input']:>9.1f} {row['lrp']:>9.1f} "
                  f"{row['plrp_lambda']:>9.1f} {row['plrp_m']:>9.1f} "
                  f"{row['lambda_over_grad']:>8.2f}", flush=True)
    return rows


def bench_targets(args, device) -> list[dict]:
    rows = []
    print(f"\n{'model':<13} {'batch':>5} {'T':>4} {'forward':>9} {'1-at-a-time':>11} "
          f"{'batched':>9} {'speedup':>7} {'cost T/1':>8}   (target-windows/s; forward: "
          f"windows/s)")
    methods = {"plrp": dict(p_pos=args.p, p_neg=args.p / 2)}
    for item in args.targets.split(","):
        name, n_targets = item.split(":")
        torch.manual_seed(0)
        model = build_model(name, **(SMALL[name] if args.small else {})).eval().to(device)
        names = list(model.target_specs())
        targets = [names[i % len(names)] for i in range(int(n_targets))]
        batch = args.target_batch
        x = _one_hot(batch, model.input_length, device)
        ex = Explainer(model, **methods["plrp"])
        one = BatchExplainer(model, targets[:1], methods, precision=args.precision)
        every = BatchExplainer(model, targets, methods, precision=args.precision)
        fns = {"forward": lambda: one.explainers["plrp"].forward(x),
               "one_at_a_time": lambda: [ex.explain(x, t) for t in targets],
               "batched_1": lambda: one.explain(x),
               "batched": lambda: every.explain(x)}
        best = _time_interleaved(fns, device, args.repeats)
        t = len(targets)
        row = {"model": name, "batch": batch, "targets": t, "precision": args.precision,
               "forward_windows_per_s": batch / best["forward"],
               "one_at_a_time": t * batch / best["one_at_a_time"],
               "batched": t * batch / best["batched"],
               "one_target": batch / best["batched_1"]}
        row["speedup"] = row["batched"] / row["one_at_a_time"]
        row["cost_vs_one_target"] = best["batched"] / best["batched_1"]
        rows.append(row)
        print(f"{name:<13} {batch:>5} {t:>4} {row['forward_windows_per_s']:>9.1f} "
              f"{row['one_at_a_time']:>11.1f} {row['batched']:>9.1f} {row['speedup']:>7.2f} "
              f"{row['cost_vs_one_target']:>8.2f}", flush=True)
    return rows


def bench_precision(args, device) -> list[dict]:
    """Relevance at tf32 / bf16 against fp32 on the shipped model (same windows)."""
    from plrp.models.checkpoint import load_model
    shipped = Path(__file__).resolve().parents[1] / "plrp" / "data" / "default_model.safetensors"
    model = load_model(shipped).model.eval().to(device)
    torch.manual_seed(0)
    x = _one_hot(args.target_batch, model.input_length, device)
    targets = list(model.target_specs())
    methods = {"lrp": dict(p_pos=0.0, p_neg=0.0), "plrp": dict(p_pos=0.1, p_neg=0.05)}
    ref = BatchExplainer(model, targets, methods).explain(x)
    rows = []
    print(f"\n{'precision':<9} {'method':<6} {'max|d|':>9} {'max|d|/max':>10} {'corr':>9} "
          f"{'score rel':>9}   (shipped model, {args.target_batch} windows, "
          f"{len(targets)} targets, against fp32)")
    for precision in ("tf32", "bf16"):
        got = BatchExplainer(model, targets, methods, precision=precision).explain(x)
        for i, method in enumerate(methods):
            a, b = ref.relevance[i].flatten().cpu(), got.relevance[i].flatten().cpu()
            d = float((a - b).abs().max())
            sa, sb = ref.score[i].cpu(), got.score[i].cpu()
            row = {"precision": precision, "method": method, "max_abs_diff": d,
                   "max_abs_diff_rel": d / float(a.abs().max()),
                   "corr": float(torch.corrcoef(torch.stack((a, b)))[0, 1]),
                   "score_max_rel_diff": float(((sa - sb).abs() / sa.abs()).max())}
            rows.append(row)
            print(f"{precision:<9} {method:<6} {d:>9.2e} {row['max_abs_diff_rel']:>10.2e} "
                  f"{row['corr']:>9.6f} {row['score_max_rel_diff']:>9.2e}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="deepsea,basset,bpnet,plrp-default")
    parser.add_argument("--p", type=float, default=0.3, help="p_pos for PLRP (p_neg = p/2)")
    parser.add_argument("--small", action="store_true", help="shrunken models (smoke run)")
    parser.add_argument("--targets", default="plrp-default:3,deepsea:16",
                        help="model:T pairs for the batched-targets table")
    parser.add_argument("--target-batch", type=int, default=64)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    parser.add_argument("--suite", default="methods,targets,precision")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 gives steady figures on a shared CPU)")
    parser.add_argument("--json", default="bench-out/engine.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tuned = device.type == "cpu" and tune_cpu_allocator()
    print(f"device {device}  torch {torch.__version__}  threads {torch.get_num_threads()}"
          f"  malloc tuning {'on' if tuned else 'off'}",
          file=sys.stderr)
    suites = args.suite.split(",")
    rows = bench_methods(args, device) if "methods" in suites else []
    target_rows = bench_targets(args, device) if "targets" in suites else []
    precision_rows = bench_precision(args, device) if "precision" in suites else []
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "engine", "unit": "windows/s", "p_pos": args.p,
              "small": args.small, "torch": torch.__version__, "platform": platform.platform(),
              "device": str(device), "malloc_tuning": tuned, "rows": rows,
              "target_rows": target_rows, "precision_rows": precision_rows}
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
