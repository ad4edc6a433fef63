"""PLRP-M stabilisation: conservation error and float32/float64 agreement, by candidate.

    python benchmarks/plrp_m.py [--windows 4] [--json bench-out/plrp_m.json] [--quick]

For random-weight BPNet (6 layers, counts and profile), a ChromBPNet-like accessibility
model (BPNet with one profile track, 8 layers), DeepSEA and Basset (reduced widths) and the
shipped default model, at p in {0.1, 0.3, 0.5} (p_neg = p / 2), prints the worst window's
conservation error of PLRP-lambda and of PLRP-M under each stabilisation candidate, and
max|R32 - R64| / max|R64|. Candidates:
  none      the unstabilised masked rule (M_STABLE_FROM = None)
  t=0.25 .. t=0.95  the shipped blend with threshold t (rules.masked_relevance)
  bound     denominator bounded by the unmasked one: D_k = sgn(z_k) max(|z_k|, sgn(z_k) z'_k)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import plrp.engine.rules as rules
from plrp.atomic import atomic_path
from plrp.engine import Explainer
from plrp.models.architectures import build_model
from plrp.models.checkpoint import load_model

MODELS = {   # name: (architecture, hyper-parameters, targets); random weights, seed 0
    "bpnet-6": ("bpnet", dict(n_filters=32, n_layers=6, input_length=1000), ["counts",
                                                                              "profile"]),
    "chrombpnet-like": ("bpnet", dict(n_filters=32, n_layers=8, n_outputs=1,
                                      input_length=1500), ["counts", "profile"]),
    "deepsea": ("deepsea", dict(channels=(64, 64, 64), n_hidden=32, n_outputs=4), [0]),
    "basset": ("basset", dict(channels=(64, 32, 32), n_hidden=32, n_outputs=4), [0]),
    "shipped": ("shipped", {}, [0]),
}
QUICK = {"bpnet-6": dict(n_filters=16, input_length=400, trimming=100, profile_kernel=25),
         "chrombpnet-like": dict(n_filters=16, n_layers=6, input_length=400, trimming=100,
                                 profile_kernel=25)}
_SHIPPED = rules.masked_relevance


def _bound(op, a, R, mask, weight, bias, eps):
    """Candidate: the masked rule with its denominator bounded by the unmasked one."""
    am = a * mask
    z, zm = op.forward(a, weight, bias), op.forward(am, weight, bias)
    d = torch.where(zm * z > 0, torch.sign(z) * torch.maximum(z.abs(), zm.abs()), z)
    return am * op.backward(R / rules.stabilise(d, eps), weight, a.shape), None


CANDIDATES = {"none": (_SHIPPED, None), "t=0.25": (_SHIPPED, 0.25), "t=0.5": (_SHIPPED, 0.5),
              "t=0.75": (_SHIPPED, 0.75), "t=0.95": (_SHIPPED, 0.95), "bound": (_bound, 0.5)}


def _model(name, quick):
    arch, params, targets = MODELS[name]
    torch.manual_seed(0)
    if arch == "shipped":
        return load_model(None).model, targets
    return build_model(arch, **{**params, **(QUICK.get(name, {}) if quick else {})}), targets


def _run(model, x, target, p, variant, dtype):
    res = Explainer(model, p_pos=p, variant=variant, dtype=dtype).explain(x.to(dtype), target)
    return res.conservation_error.max().item(), res.relevance.double()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="smaller BPNets (a smoke run)")
    ap.add_argument("--json", default="bench-out/plrp_m.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print("model\ttarget\tp\tlambda\t" + "\t".join(CANDIDATES) + "\t(f32 vs f64: lambda, "
          + ", ".join(CANDIDATES) + ")")
    for name in MODELS:
        model, targets = _model(name, args.quick)
        g = torch.Generator().manual_seed(1)
        idx = torch.randint(0, 4, (args.windows, model.input_length), generator=g)
        x = F.one_hot(idx, 4).permute(0, 2, 1).float().contiguous()
        for target in targets:
            for p in (0.1, 0.3, 0.5):
                row = dict(model=name, target=str(target), p=p, error={}, f32_vs_f64={})
                for cand, (fn, t) in [("lambda", (None, None))] + list(CANDIDATES.items()):
                    variant = "lambda" if cand == "lambda" else "m"
                    if fn is not None:
                        rules.masked_relevance, rules.M_STABLE_FROM = fn, t
                    err, r64 = _run(model, x, target, p, variant, torch.float64)
                    _, r32 = _run(model, x, target, p, variant, torch.float32)
                    row["error"][cand] = err
                    row["f32_vs_f64"][cand] = ((r32 - r64).abs().max()
                                               / r64.abs().max().clamp(min=1e-300)).item()
                rules.masked_relevance, rules.M_STABLE_FROM = _SHIPPED, 0.5
                rows.append(row)
                print(f"{name}\t{target}\t{p}\t" + "\t".join(
                    f"{row['error'][c]:.3g}" for c in ["lambda", *CANDIDATES]) + "\t("
                    + ", ".join(f"{row['f32_vs_f64'][c]:.1g}" for c in ["lambda", *CANDIDATES])
                    + ")", flush=True)
    summary = {}
    for cand in CANDIDATES:
        ratios = [r["error"][cand] / max(r["error"]["lambda"], 1e-12) for r in rows]
        summary[cand] = dict(max_error_over_lambda=max(ratios),
                             max_f32_vs_f64=max(r["f32_vs_f64"][cand] for r in rows))
        print(f"{cand}: worst error / lambda's {summary[cand]['max_error_over_lambda']:.3g}, "
              f"worst f32 vs f64 {summary[cand]['max_f32_vs_f64']:.2g}", file=sys.stderr)
    with atomic_path(Path(args.json)) as tmp:
        tmp.write_text(json.dumps(dict(rows=rows, summary=summary,
                                       torch=torch.__version__), indent=1))


if __name__ == "__main__":
    main()
