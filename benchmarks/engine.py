"""Engine throughput: windows/s for gradient x input, LRP, PLRP-lambda and PLRP-M.

    python benchmarks/engine.py [--device auto|cpu|cuda] [--batch-sizes 16,64] [--repeats 5]
                                [--models deepsea,basset,bpnet,plrp-default] [--small]
                                [--json bench-out/engine.json]

Prints a table (stdout) and writes JSON. Models are built with random weights at their real
size (``--small`` shrinks them for a quick smoke run). Target: PLRP-lambda >= 0.5x the
gradient x input throughput of the same model and batch size.
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
from plrp.devices import resolve_device, tune_cpu_allocator
from plrp.engine import Explainer
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="deepsea,basset,bpnet,plrp-default")
    parser.add_argument("--p", type=float, default=0.3, help="p_pos for PLRP (p_neg = p/2)")
    parser.add_argument("--small", action="store_true", help="shrunken models (smoke run)")
    parser.add_argument("--json", default="bench-out/engine.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    tuned = device.type == "cpu" and tune_cpu_allocator()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    print(f"device {device}  torch {torch.__version__}  threads {torch.get_num_threads()}"
          f"  malloc tuning {'on' if tuned else 'off'}",
          file=sys.stderr)
    header = (f"{'model':<13} {'batch':>5} {'grad*in':>9} {'LRP':>9} {'PLRP-lam':>9} "
              f"{'PLRP-M':>9} {'lam/grad':>8}")
    print(header)
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build_model(name, **(SMALL[name] if args.small else {})).to(device)
        target = next(iter(model.target_specs().values()))
        explainers = {
            "lrp": Explainer(model),
            "plrp_lambda": Explainer(model, p_pos=args.p),
            "plrp_m": Explainer(model, p_pos=args.p, variant="m"),
        }
        for batch in batch_sizes:
            idx = torch.randint(0, 4, (batch, model.input_length))
            x = torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float().to(device)
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
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "engine", "unit": "windows/s", "p_pos": args.p,
              "small": args.small, "torch": torch.__version__, "platform": platform.platform(),
              "device": str(device), "malloc_tuning": tuned, "rows": rows}
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
