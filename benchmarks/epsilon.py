"""LRP-epsilon at p = 0 against gradient x input (biases zeroed), by epsilon and precision.

    python benchmarks/epsilon.py [--windows 4] [--json bench-out/epsilon.json] [--small]

With every bias zeroed, LRP-epsilon on a ReLU network tends to gradient x input as eps -> 0.
For the shipped model and random-weight BPNet, DeepSEA and Basset at their real sizes, this
prints, per eps in {1e-9, 1e-6, 1e-3} (the rule's epsilon and the composite's op_epsilon
together) and per precision, the deviation from a float64 autograd gradient x input:
  max    max|R - G| / max|G|            l1   sum|R - G| / sum|G|
The row "eps=0" (1e-30) separates float32 rounding from what eps absorbs, and "grad32" is
float32 autograd itself against float64. Writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from plrp.atomic import atomic_path
from plrp.engine import Explainer
from plrp.models.architectures import build_model
from plrp.models.checkpoint import load_model

MODELS = {   # name: (architecture, hyper-parameters, target, output of the target)
    "shipped": ("shipped", {}, 0, lambda out: out[:, 0]),
    "bpnet": ("bpnet", {}, "counts", lambda out: out[1][:, 0]),
    "deepsea": ("deepsea", {}, 0, lambda out: out[:, 0]),
    "basset": ("basset", {}, 0, lambda out: out[:, 0]),
}
SMALL = {"bpnet": dict(n_filters=16, n_layers=4), "deepsea": dict(channels=(32, 48, 96)),
         "basset": dict(channels=(32, 24, 24))}
EPSILONS = {"eps=0": 1e-30, "1e-9": 1e-9, "1e-6": 1e-6, "1e-3": 1e-3}


def _bias_free(name, small):
    arch, params, _, _ = MODELS[name]
    torch.manual_seed(0)
    if arch == "shipped":
        model = copy.deepcopy(load_model(None).model)
    else:
        model = build_model(arch, **{**params, **(SMALL.get(name, {}) if small else {})})
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
            if isinstance(m, torch.nn.BatchNorm1d):      # an affine map: keep it linear
                m.running_mean.zero_()
                m.bias.zero_()
    return model.eval()


def _grad_x_input(model, x, output):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(output(model(x)).sum(), x)
    return (g * x).detach()


def _deviation(r, g):
    r, g = r.double(), g.double()
    return dict(max=((r - g).abs().max() / g.abs().max()).item(),
                l1=((r - g).abs().sum() / g.abs().sum()).item())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--small", action="store_true", help="reduced widths (a smoke run)")
    ap.add_argument("--json", default="bench-out/epsilon.json")
    args = ap.parse_args(argv)
    rows = []
    print("model\tprecision\teps\tmax\tl1")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, _, target, output) in MODELS.items():
            model = _bias_free(name, args.small)
            g = torch.Generator().manual_seed(1)
            idx = torch.randint(0, 4, (args.windows, model.input_length), generator=g)
            x = F.one_hot(idx, 4).permute(0, 2, 1).double().contiguous()
            reference = _grad_x_input(copy.deepcopy(model).double(), x, output)
            found = dict(model=name, precision="float32", eps="grad32",
                         **_deviation(_grad_x_input(model.float(), x.float(), output),
                                      reference))
            rows.append(found)
            for dtype, label in ((torch.float32, "float32"), (torch.float64, "float64")):
                for key, eps in EPSILONS.items():
                    path = Path(tmp) / f"eps{key}.toml"
                    path.write_text(f'op_epsilon = {eps!r}\n[default]\nrule = "epsilon"\n'
                                    f'epsilon = {eps!r}\n')
                    res = Explainer(model, composite=str(path), dtype=dtype).explain(
                        x.to(dtype), target)
                    rows.append(dict(model=name, precision=label, eps=key,
                                     **_deviation(res.relevance, reference)))
            for row in rows:
                if row["model"] == name:
                    print(f"{name}\t{row['precision']}\t{row['eps']}\t{row['max']:.2e}\t"
                          f"{row['l1']:.2e}", flush=True)
    with atomic_path(Path(args.json)) as out:
        out.write_text(json.dumps(dict(rows=rows, windows=args.windows,
                                       torch=torch.__version__), indent=1))


if __name__ == "__main__":
    main()
