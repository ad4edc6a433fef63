"""PLRP selection speed: the sort against the radix method, on one device.

    python benchmarks/prune_select.py [--device auto|cpu|cuda] [--repeats 5]
                                      [--json bench-out/prune_select.json]

For DeepSEA- and BPNet-sized layer relevances (float32, heavy-tailed, 64 windows), times
``prune.select(..., method=...)`` for "sort" and "radix" and prints windows/s per layer
selection; writes JSON. That both methods give the same cut bit for bit, on the CPU and on
a GPU, is checked by tests/engine/test_prune_radix.py and benchmarks/gpu_check.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from plrp.atomic import atomic_path
from plrp.devices import resolve_device
from plrp.hostmemory import tune_cpu_allocator
from plrp.engine import prune

LAYERS = {   # name: one window's relevance shape (channels, positions), batch
    "deepsea conv2 input (320 x 246)": ((320, 246), 64),
    "deepsea conv3 input (480 x 53)": ((480, 53), 64),
    "bpnet rconv input (64 x 2114)": ((64, 2114), 64),
    "small (8 x 60)": ((8, 60), 64),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn, device, repeats):
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="bench-out/prune_select.json")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    rows = []
    print("layer\tbatch\tsort windows/s\tradix windows/s\tradix/sort")
    for name, (shape, batch) in LAYERS.items():
        g = torch.Generator().manual_seed(0)
        r = (torch.randn(batch, *shape, generator=g)
             * torch.randn(batch, *shape, generator=g).exp()).to(device)
        seconds = {m: _best(lambda m=m: prune.select(r, 0.3, 0.15, method=m), device,
                            args.repeats) for m in prune.SELECTIONS}
        w = {m: batch / s for m, s in seconds.items()}
        rows.append(dict(layer=name, batch=batch, device=str(device), windows_per_s=w))
        print(f"{name}\t{batch}\t{w['sort']:.0f}\t{w['radix']:.0f}\t"
              f"{w['radix'] / w['sort']:.2f}", flush=True)
    with atomic_path(Path(args.json)) as tmp:
        tmp.write_text(json.dumps(dict(rows=rows, torch=torch.__version__), indent=1))


if __name__ == "__main__":
    main()
