"""Output seeds: the relevance placed on the model outputs for one target.

A target's score is linear in the outputs f of its head once any softmax weights are held
constant, so it is a seed R (same shape as f) with score = sum(R); gradient x input of the
score and LRP-epsilon at p = 0 (biases zero) start from this same R.

Target forms:
  int i                                      -> logit i of head 0
  {"kind": "logit", "head": h, "index": i}   -> R = f on neuron i (dim 1) of head h, 0 elsewhere
  {"kind": "softmax_profile", "head": h}     -> R[c, l] = softmax_l(f[c, :])[l] * f[c, l]
                                                (a softmax per channel, weights constant)
  {"kind": "bpnet_profile", "head": h}       -> bpnet-lite's ProfileWrapper / chrombpnet's
                                                profile score; see ``bpnet_profile_seed``
  str name                                   -> model.target_specs()[name] (or an alias from
                                                model.target_aliases)

``SEEDS`` maps a kind to its seed function; add an entry to define a new kind.
"""

from __future__ import annotations

from typing import Callable

import torch

from plrp.errors import PlrpError


def logit_seed(out: torch.Tensor, spec: dict) -> torch.Tensor:
    """R = f on neuron ``spec["index"]`` of out (N, C, ...), zero elsewhere."""
    if out.dim() < 2:
        raise PlrpError(f"target head {spec['head']}: output of shape {tuple(out.shape)} has "
                        "no neuron dimension (expected (N, C))")
    index = spec["index"]
    if not 0 <= index < out.shape[1]:
        raise PlrpError(f"target index {index}: head {spec['head']} has {out.shape[1]} outputs")
    r = torch.zeros_like(out)
    r[:, index] = out[:, index]
    return r


def _profile_head(out: torch.Tensor, spec: dict) -> None:
    if out.dim() != 3:
        raise PlrpError(f"{spec['kind']} target: head {spec['head']} has shape "
                        f"{tuple(out.shape)}; expected (N, channels, positions)")


def softmax_profile_seed(out: torch.Tensor, spec: dict) -> torch.Tensor:
    """R[n, c, l] = softmax_l(f[n, c, :])[l] * f[n, c, l], the softmax held constant.

    out: (N, C, L) profile logits.
    """
    _profile_head(out, spec)
    return torch.softmax(out.detach(), dim=-1) * out


def bpnet_profile_seed(out: torch.Tensor, spec: dict) -> torch.Tensor:
    """The profile score bpnet-lite's ``ProfileWrapper`` returns and chrombpnet explains
    (``get_weightedsum_meannormed_logits``), as a seed on the profile logits.

    out: (N, C, L) profile logits; strands x positions are flattened to one vector l of
    C * L entries per window. The score is t = sum_i w_i * (l_i - mean(l)) with
    w = softmax(l - mean(l)) over all strands and positions jointly, held constant
    (chrombpnet's stop_gradient). Since sum_i w_i = 1, t = sum_i (w_i - 1/(C*L)) * l_i, a
    linear function of the logits: the seed is R_i = (w_i - 1/(C*L)) * l_i, with sum(R) = t
    and dt/dl_i = w_i - 1/(C*L).
    """
    _profile_head(out, spec)
    flat = out.reshape(out.shape[0], -1)
    centred = flat.detach() - flat.detach().mean(dim=1, keepdim=True)
    weight = torch.softmax(centred, dim=1) - 1.0 / flat.shape[1]
    return (weight * flat).reshape(out.shape)


SEEDS: dict[str, Callable[[torch.Tensor, dict], torch.Tensor]] = {
    "logit": logit_seed,
    "softmax_profile": softmax_profile_seed,
    "bpnet_profile": bpnet_profile_seed,
}


def normalise_target(target, model=None) -> dict:
    """Turn any accepted target form into a spec dict; PlrpError if malformed."""
    if isinstance(target, bool):
        raise PlrpError(f"target {target!r}: expected an int, a name or a spec dict")
    if isinstance(target, int):
        return {"kind": "logit", "head": 0, "index": int(target)}
    if isinstance(target, str):
        specs = getattr(model, "target_specs", None)
        specs = specs() if callable(specs) else {}
        target = getattr(model, "target_aliases", {}).get(target, target)
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
        if kind in SEEDS:
            return {"kind": kind, "head": head}
        raise PlrpError(f"target {target!r}: kind must be one of {', '.join(SEEDS)}")
    raise PlrpError(f"target {target!r}: expected an int, a name or a spec dict")


def seed(outputs: list, spec: dict) -> list:
    """Seeds for every output tensor (list of (N, ...) tensors; zeros for other heads).

    Returns a list aligned with ``outputs``; entries for untouched heads are None.
    """
    head = spec["head"]
    if not 0 <= head < len(outputs):
        raise PlrpError(f"target head {head}: the model has {len(outputs)} output(s)")
    seeds = [None] * len(outputs)
    seeds[head] = SEEDS[spec["kind"]](outputs[head], spec)
    return seeds


def score(outputs, spec: dict) -> torch.Tensor:
    """The explained score (N,) of target ``spec`` from a model's outputs (a tensor or a
    tuple/list of head tensors); differentiable, with any softmax weights held constant."""
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    r = seed(outputs, spec)[spec["head"]]
    return r.reshape(r.shape[0], -1).sum(dim=1)
