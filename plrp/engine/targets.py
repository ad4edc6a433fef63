"""Output seeds: the relevance placed on the model outputs for one target.

Target forms (plan contracts 1):
  int i                                      -> logit i of head 0
  {"kind": "logit", "head": h, "index": i}   -> R = f on neuron i (dim 1) of head h, 0 elsewhere
  {"kind": "softmax_profile", "head": h}     -> R[c, l] = softmax_l(f[c, :])[l] * f[c, l]
  str name                                   -> model.target_specs()[name]
"""

from __future__ import annotations

import torch

from plrp.errors import PlrpError


def normalise_target(target, model=None) -> dict:
    """Turn any accepted target form into a spec dict; PlrpError if malformed."""
    if isinstance(target, bool):
        raise PlrpError(f"target {target!r}: expected an int, a name or a spec dict")
    if isinstance(target, int):
        return {"kind": "logit", "head": 0, "index": int(target)}
    if isinstance(target, str):
        specs = getattr(model, "target_specs", None)
        specs = specs() if callable(specs) else {}
        if target not in specs:
            known = ", ".join(specs) if specs else "none (use an index)"
            raise PlrpError(f"unknown target {target!r}; this model's targets: {known}")
        return normalise_target(specs[target], model)
    if isinstance(target, dict):
        kind = target.get("kind", "logit")
        head = int(target.get("head", 0))
        if kind == "logit":
            if "index" not in target:
                raise PlrpError(f"target {target!r}: a logit target needs an 'index'")
            return {"kind": "logit", "head": head, "index": int(target["index"])}
        if kind == "softmax_profile":
            return {"kind": "softmax_profile", "head": head}
        raise PlrpError(f"target {target!r}: kind must be 'logit' or 'softmax_profile'")
    raise PlrpError(f"target {target!r}: expected an int, a name or a spec dict")


def seed(outputs: list, spec: dict) -> list:
    """Seeds for every output tensor (list of (N, ...) tensors; zeros for other heads).

    Returns a list aligned with ``outputs``; entries for untouched heads are None.
    """
    head = spec["head"]
    if not 0 <= head < len(outputs):
        raise PlrpError(f"target head {head}: the model has {len(outputs)} output(s)")
    out = outputs[head]
    seeds = [None] * len(outputs)
    if spec["kind"] == "logit":
        if out.dim() < 2:
            raise PlrpError(f"target head {head}: output of shape {tuple(out.shape)} has no "
                            f"neuron dimension (expected (N, C))")
        index = spec["index"]
        if not 0 <= index < out.shape[1]:
            raise PlrpError(f"target index {index}: head {head} has {out.shape[1]} outputs")
        r = torch.zeros_like(out)
        r[:, index] = out[:, index]
    else:
        if out.dim() != 3:
            raise PlrpError(f"softmax_profile target: head {head} has shape "
                            f"{tuple(out.shape)}; expected (N, channels, positions)")
        r = torch.softmax(out.detach(), dim=-1) * out
    seeds[head] = r
    return seeds
