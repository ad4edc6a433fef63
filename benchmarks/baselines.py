"""Seconds per window of each attribution baseline next to LRP / PLRP, on one model.

    python benchmarks/baselines.py [--model plrp/data/default_model.safetensors]
        [--target CTCF] [--windows 32] [--threads 2] [--json bench-out/baselines.json]

Windows are simulated (default grammar, seed 5, the model's input length). Every method of
plrp.baselines.BASELINES runs with its defaults (ISM exact, DeepLIFT-SHAP 20 shuffles, IG 50
steps, zero baseline), then plrp's engine (LRP-epsilon p = 0 and PLRP-lambda p = 0.1, one
forward + one backward). One untimed call per method first warms imports and caches. Prints
a table (method, library, cost per window, seconds per window) and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from plrp import baselines as B
from plrp import simulate as sim
from plrp.atomic import atomic_path
from plrp.engine import Explainer
from plrp.models.checkpoint import load_model


def engine_timing(model, x, target, p_pos: float) -> float:
    explainer = Explainer(model, composite="epsilon", p_pos=p_pos)
    explainer.explain(x[:1], target)
    start = time.perf_counter()
    explainer.explain(x, target)
    return (time.perf_counter() - start) / x.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(Path(sim.__file__).parent / "data"
                                           / "default_model.safetensors"))
    ap.add_argument("--target", default="CTCF")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model = loaded.model.eval()
    x = torch.from_numpy(sim.simulate(args.windows, loaded.input_length, seed=5).one_hot())
    rows = []
    for name, method in B.BASELINES.items():
        B.attribute(name, model, x[:1], args.target)
        timed = B.attribute_timed(name, model, x, args.target)
        rows.append(dict(method=name, library=method.library, cost=method.cost,
                         seconds_per_window=timed.per_window))
    for name, p in (("lrp_epsilon", 0.0), ("plrp_lambda_p0.1", 0.1)):
        rows.append(dict(method=name, library="plrp", cost="1 forward + 1 backward",
                         seconds_per_window=engine_timing(model, x, args.target, p)))
    print(f"{'method':24s} {'library':16s} {'cost per window':48s} {'s/window':>10s}")
    for r in rows:
        print(f"{r['method']:24s} {r['library']:16s} {r['cost']:48s} "
              f"{r['seconds_per_window']:10.5f}")
    if args.json:
        record = dict(model=args.model, target=args.target, windows=args.windows,
                      threads=torch.get_num_threads(), torch=torch.__version__, rows=rows)
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
