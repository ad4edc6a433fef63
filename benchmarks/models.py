"""Model import fidelity: each supported model at its real size against its source package.

    python benchmarks/models.py [--windows 4] [--json bench-out/models.json]

For each row (plrp-default, Basset from kipoi, DeepSEA from kipoi and selene, BPNet and
ChromBPNet from bpnet-lite 1.1.0) the source model gets random weights (PyTorch's default
initialisation), is saved the way its package saves it, loaded by ``plrp.models.load_model``
and compared on random one-hot windows (float32, as plrp runs):

- outputs: max |plrp - source| over all outputs (the source on its own input layout and
  alphabet; kipoi DeepSEA with its nn.Threshold(0, 1e-6) activations);
- LRP-eps at p = 0 against gradient x input of the same target with every bias zeroed
  (conv/linear biases, BatchNorm shifts and means), where the two are equal in exact
  arithmetic: max |LRP - grad x input| and the scale max |grad x input|, once as plrp runs by
  default (float32, the shipped "epsilon" composite, eps = 1e-6) and once in float64 with
  eps = 1e-30 (what is left of the mapping itself). The gradient is taken through the
  *source* model (bpnet-lite's Count/ProfileWrapper, the profile softmax detached as
  chrombpnet does).

Prints a table (stdout) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "models"))

from foreign_models import (SeleneDeepSEA, bpnet_lite_targets, kipoi_basset,  # noqa: E402
                            kipoi_deepsea)

from plrp.atomic import atomic_path  # noqa: E402
from plrp.engine import Explainer  # noqa: E402
from plrp.engine.targets import normalise_target  # noqa: E402
from plrp.models.checkpoint import (DEFAULT_MODEL_PATH, load_model,  # noqa: E402
                                    save_checkpoint)

AGCT = [0, 2, 1, 3]


def one_hot(n, length, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=gen),
                                       4).permute(0, 2, 1).float().contiguous()


def zero_biases(module):
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith(("bias", "running_mean")):
                t.zero_()
    return module


def grad_x_input(fn, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad * x.detach()


def sources(windows):
    """name -> (how it is saved, loaded model kwargs, source forward on ACGT x, targets,
    source score functions for grad x input, verified against)."""
    from bpnetlite.bpnet import BPNet, ControlWrapper
    from bpnetlite.chrombpnet import ChromBPNet

    def bpnet_fns(model):
        wrappers = bpnet_lite_targets(model)
        return {t: (lambda x, t=t: wrappers[t](x).sum(-1)) for t in ("counts", "profile")}

    def logit_fns(forward, targets):
        return {t: (lambda x, i=i: forward(x)[:, i]) for i, t in enumerate(targets)}

    rows = {}
    default = load_model(DEFAULT_MODEL_PATH).model
    rows["plrp-default"] = dict(
        save=lambda: default, native=True, arch=None, length=200, forward=default,
        targets=default.output_names[:2],
        fns=lambda m: logit_fns(m, m.output_names[:2]),
        against="plrp's own module (native round trip)", zero=lambda m: zero_biases(m))

    basset = kipoi_basset(c=(300, 200, 200), hidden=1000, outputs=164).eval()
    basset_fwd = lambda m: (lambda x: m[:-1](x.unsqueeze(3).contiguous()))  # noqa: E731
    rows["basset (kipoi)"] = dict(
        save=lambda: basset.state_dict(), arch=None, length=600, module=basset,
        fwd=basset_fwd, targets=["output_0", "output_1"],
        against="kipoi Basset layout (pretrained_model_reloaded_th.py)")

    deepsea = kipoi_deepsea(c=(320, 480, 960), hidden=925, outputs=919).eval()
    deepsea_fwd = lambda m: (lambda x: m[:-1](x[:, AGCT].unsqueeze(2).contiguous()))  # noqa
    rows["deepsea (kipoi)"] = dict(
        save=lambda: deepsea.state_dict(), arch=None, length=1000, module=deepsea,
        fwd=deepsea_fwd, targets=["output_0", "output_1"],
        against="kipoi DeepSEA layout (deepsea_cpu, AGCT, Threshold(0, 1e-6))")

    selene = SeleneDeepSEA(1000, 919).eval()
    selene_fwd = lambda m: (lambda x: m.classifier[:-1](m.conv_net(x).flatten(1)))  # noqa
    rows["deepsea (selene)"] = dict(
        save=lambda: selene.state_dict(), arch="deepsea", length=1000, module=selene,
        fwd=selene_fwd, targets=["output_0", "output_1"],
        against="selene_sdk DeepSEA layout")

    bpnet = BPNet(n_filters=64, n_layers=8, n_outputs=2, n_control_tracks=2,
                  verbose=False).eval()
    rows["bpnet (bpnet-lite)"] = dict(
        save=lambda: bpnet, arch=None, length=2114, module=bpnet,
        fwd=lambda m: (lambda x: ControlWrapper(m)(x)), targets=["counts", "profile"],
        fns_src=bpnet_fns, against="bpnet-lite 1.1.0 BPNet (torch.save'd model)")

    torch.manual_seed(1)
    chrom = ChromBPNet(BPNet(n_filters=128, n_layers=4, n_outputs=1, n_control_tracks=0,
                             verbose=False),
                       BPNet(n_filters=512, n_layers=8, n_outputs=1, n_control_tracks=0,
                             verbose=False)).eval()
    rows["chrombpnet (bpnet-lite)"] = dict(
        save=lambda: chrom, arch=None, length=2114, module=chrom.accessibility,
        fwd=lambda m: (lambda x: m(x)), targets=["counts", "profile"], fns_src=bpnet_fns,
        against="bpnet-lite 1.1.0 ChromBPNet accessibility model (torch.save'd model)")
    return rows


def max_abs(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def outputs_tuple(out):
    return out if isinstance(out, (tuple, list)) else (out,)


def measure(name, row, windows, tmp: Path) -> dict:
    t0 = time.time()
    path = tmp / f"{name.split()[0]}.pt"
    if row.get("native"):
        save_checkpoint(path, row["save"]())
    else:
        torch.save(row["save"](), path)
    loaded = load_model(path, arch=row["arch"])
    x = one_hot(windows, row["length"], seed=7)
    model = loaded.model
    source = row.get("module")
    with torch.no_grad():
        ours = outputs_tuple(model(x))
        ref = outputs_tuple(row["forward"](x) if source is None else row["fwd"](source)(x))
    out_delta = max(max_abs(a, b) for a, b in zip(ours, ref))
    out_scale = max(float(b.abs().max()) for b in ref)

    # biases zeroed in both the source and plrp's model, then LRP-eps vs grad x input
    if source is None:
        zero_biases(model)
        fns = row["fns"](model)
    else:
        zero_biases(source)
        zero_biases(model)
        fns = (row["fns_src"](source) if "fns_src" in row
               else {t: (lambda v, i=i: row["fwd"](source)(v)[:, i])
                     for i, t in enumerate(row["targets"])})
    tiny = tmp / "tiny-eps.toml"
    tiny.write_text('op_epsilon = 1e-30\n[default]\nrule = "epsilon"\nepsilon = 1e-30\n')
    deltas = {}
    for label, dtype, composite in (("fp32_eps1e-6", torch.float32, "epsilon"),
                                    ("fp64_eps1e-30", torch.float64, str(tiny))):
        model.to(dtype)
        if source is not None:
            source.to(dtype)
        explainer = Explainer(model, composite=composite, p_pos=0.0, dtype=dtype)
        xd = x.to(dtype)
        delta, scale = 0.0, 0.0
        for target in row["targets"]:
            ref_gi = grad_x_input(fns[target], xd)
            rel = explainer.explain(xd, normalise_target(target, model)).relevance
            delta = max(delta, max_abs(rel, ref_gi))
            scale = max(scale, float(ref_gi.abs().max()))
        deltas[label] = (delta, scale)
    lrp_delta, lrp_scale = deltas["fp32_eps1e-6"]
    lrp64_delta = deltas["fp64_eps1e-30"][0]
    return {"model": name, "format": loaded.format, "against": row["against"],
            "outputs_max_abs_delta": out_delta, "outputs_max_abs": out_scale,
            "lrp_eps_vs_gxi_max_abs_delta": lrp_delta, "gxi_max_abs": lrp_scale,
            "lrp_fp64_tiny_eps_vs_gxi_max_abs_delta": lrp64_delta,
            "targets": row["targets"], "windows": windows, "seconds": time.time() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--json", default="bench-out/models.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    import bpnetlite

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, row in sources(args.windows).items():
            results.append(measure(name, row, args.windows, Path(tmp)))
            r = results[-1]
            print(f"{name:26s} {r['format']:15s} outputs |d| {r['outputs_max_abs_delta']:.2e} "
                  f"(of {r['outputs_max_abs']:.2e})  LRP-eps vs gxi |d| "
                  f"{r['lrp_eps_vs_gxi_max_abs_delta']:.2e} (of {r['gxi_max_abs']:.2e}); "
                  f"fp64 eps 1e-30 {r['lrp_fp64_tiny_eps_vs_gxi_max_abs_delta']:.1e}  "
                  f"{r['seconds']:.1f} s", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"torch": torch.__version__, "bpnet-lite": bpnetlite.__version__,
              "results": results}
    with atomic_path(out) as tmp_path:
        Path(tmp_path).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
