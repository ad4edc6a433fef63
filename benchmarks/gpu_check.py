"""GPU checks and engine speed: device results against the CPU, then windows/s.

    python benchmarks/gpu_check.py --device cuda [--small] [--json bench-out/gpu.json]

Run by ``benchmarks/gpu.sh`` (which adds the end-to-end run); ``--device cpu --small`` is a
dry run of every step on the CPU (the test suite runs it).

1. agreement: ``BatchExplainer`` (methods lrp and plrp, p = 0.1) on the shipped model and
   a DeepSEA-size model (random weights) on the device against the CPU, fp32. LRP must
   agree to 1e-4 of the largest |relevance| (cuDNN sums in another order); PLRP's pruning
   can flip entries that tie within float rounding, so it must correlate >= 0.999.
2. selection: ``prune.select`` radix against sort on the device, and against the CPU:
   identical factors (the fixed-point masses make every path exact).
3. speed: DeepSEA-size engine windows/s (PLRP-lambda, one target) per precision and batch
   size, and 16 targets batched against one at a time (target-windows/s).
Prints tables, writes JSON, exits 1 if a check fails.
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
from plrp.engine import BatchExplainer, Explainer
from plrp.engine.prune import select
from plrp.models.architectures import build_model

SMALL_DEEPSEA = dict(input_length=200, channels=(16, 24, 32), n_hidden=32, n_outputs=8)
METHODS = {"lrp": dict(p_pos=0.0, p_neg=0.0), "plrp": dict(p_pos=0.1, p_neg=0.05)}
LRP_RTOL = 1e-4
PLRP_MIN_CORR = 0.999


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_hot(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    return torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float().contiguous()


def _models(small: bool) -> dict:
    from plrp.models.checkpoint import load_model
    shipped = Path(__file__).resolve().parents[1] / "plrp" / "data" / "default_model.safetensors"
    torch.manual_seed(0)
    deepsea = build_model("deepsea", **(SMALL_DEEPSEA if small else {})).eval()
    return {"shipped": load_model(shipped).model.eval(), "deepsea": deepsea}


def check_agreement(models: dict, device, n: int) -> list[dict]:
    rows = []
    for name, model in models.items():
        targets = list(range(min(3, len(model.output_names))))
        x = _one_hot(n, model.input_length, seed=1)
        cpu = BatchExplainer(model, targets, METHODS).explain(x)
        dev = BatchExplainer(model.to(device), targets, METHODS).explain(x.to(device))
        model.cpu()
        for i, method in enumerate(METHODS):
            a, b = cpu.relevance[i].flatten(), dev.relevance[i].cpu().flatten()
            scale = float(a.abs().max())
            rel = float((a - b).abs().max()) / max(scale, 1e-30)
            corr = float(torch.corrcoef(torch.stack((a, b)))[0, 1]) if scale else 1.0
            ok = rel <= LRP_RTOL if method == "lrp" else corr >= PLRP_MIN_CORR
            rows.append({"check": "agreement", "model": name, "method": method,
                         "max_rel_diff": rel, "corr": corr, "ok": ok})
    return rows


def check_selection(device, rows_n: int, entries: int) -> list[dict]:
    g = torch.Generator().manual_seed(2)
    r = torch.randn(rows_n, entries, generator=g) * torch.rand(rows_n, 1, generator=g)
    r[:, ::7] = 0.0                                   # zeros belong to neither side
    r[:, 1::11] = r[:, 2::11][:, :r[:, 1::11].shape[1]]  # exact ties
    out = []
    nonzero = r != 0                                  # a factor at a zero entry is unspecified
    for p in (0.1, 0.3):
        ref = select(r, p, p / 2, "sort").factor[nonzero]
        rd = r.to(device)
        radix = select(rd, p, p / 2, "radix").factor.cpu()[nonzero]
        sort = select(rd, p, p / 2, "sort").factor.cpu()[nonzero]
        ok = torch.equal(radix, ref) and torch.equal(sort, ref)
        out.append({"check": "selection", "p": p, "radix_equals_sort": torch.equal(radix, sort),
                    "device_equals_cpu": torch.equal(sort, ref), "ok": ok})
    return out


def _best(fn, device, repeats):
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def bench_speed(model, device, batches, precisions, n_targets, repeats) -> list[dict]:
    model = model.to(device)
    out = []
    plrp = {"plrp": METHODS["plrp"]}
    for precision in precisions:
        be = BatchExplainer(model, [0], plrp, precision=precision)
        for batch in batches:
            x = _one_hot(batch, model.input_length).to(device)
            seconds = _best(lambda: be.explain(x), device, repeats)
            out.append({"bench": "engine", "precision": precision, "batch": batch,
                        "windows_per_s": batch / seconds})
    batch = batches[-1]
    x = _one_hot(batch, model.input_length).to(device)
    targets = list(range(n_targets))
    be = BatchExplainer(model, targets, plrp)
    ex = Explainer(model, **METHODS["plrp"])
    batched = _best(lambda: be.explain(x), device, repeats)
    one = _best(lambda: [ex.explain(x, t) for t in targets], device, max(1, repeats // 2))
    out.append({"bench": "targets", "targets": n_targets, "batch": batch,
                "batched_target_windows_per_s": n_targets * batch / batched,
                "one_at_a_time_target_windows_per_s": n_targets * batch / one,
                "speedup": one / batched})
    model.cpu()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="small sizes (CPU dry run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="bench-out/gpu.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    small = args.small
    models = _models(small)
    checks = check_agreement(models, device, n=4 if small else 64)
    checks += check_selection(device, rows_n=3 if small else 256,
                              entries=2000 if small else 320 * 248)
    print(f"{'check':<10} {'case':<22} {'max rel diff':>12} {'corr':>9}  ok")
    for c in checks:
        case = f"{c['model']}/{c['method']}" if c["check"] == "agreement" else f"p={c['p']}"
        diff = f"{c['max_rel_diff']:.2e}" if "max_rel_diff" in c else "identical"
        corr = f"{c['corr']:.6f}" if "corr" in c else ""
        print(f"{c['check']:<10} {case:<22} {diff:>12} {corr:>9}  {c['ok']}")
    precisions = ["fp32"] if device.type == "cpu" else ["fp32", "tf32", "bf16"]
    speed = bench_speed(models["deepsea"], device, [4] if small else [128, 512], precisions,
                        n_targets=4 if small else 16, repeats=1 if small else args.repeats)
    print(f"\n{'DeepSEA-size engine':<22} {'precision':>9} {'batch':>6} {'windows/s':>10}")
    for s in speed:
        if s["bench"] == "engine":
            print(f"{'':<22} {s['precision']:>9} {s['batch']:>6} {s['windows_per_s']:>10.1f}")
    t = [s for s in speed if s["bench"] == "targets"][0]
    print(f"{t['targets']} targets, batch {t['batch']}: batched "
          f"{t['batched_target_windows_per_s']:.1f} target-windows/s, one at a time "
          f"{t['one_at_a_time_target_windows_per_s']:.1f} ({t['speedup']:.2f}x)")
    fp32 = max(s["windows_per_s"] for s in speed
               if s["bench"] == "engine" and s["precision"] == "fp32")
    window = models["deepsea"].input_length
    hours = 3.1e9 / window / fp32 / 3600
    print(f"projection: 3.1 Gbp at stride {window} = {3.1e9 / window:.0f} windows: "
          f"{hours:.2f} h engine-only, one target, fp32")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "gpu_check", "device": str(device), "small": small,
              "torch": torch.__version__, "platform": platform.platform(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "checks": checks, "speed": speed, "engine_windows_per_s_fp32": fp32,
              "projection_hours_3_1_gbp": hours}
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    failed = [c for c in checks if not c["ok"]]
    if failed:
        print(f"FAILED: {len(failed)} check(s): {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
