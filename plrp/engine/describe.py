"""describe_layers: what ``plrp inspect`` prints about a model under a composite."""

from __future__ import annotations

import torch
from torch import nn

from plrp.engine.ops import OP_KINDS
from plrp.engine.propagate import Explainer


def _op_text(node, module, spec) -> str:
    if module is not None:
        text = repr(module).replace("\n", " ")
        text = " ".join(text.split())
        if spec.folded_bn:
            text += f" + folded {spec.folded_bn}"
        return text
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    return getattr(target, "__name__", str(target))


def describe_layers(model: nn.Module, composite="epsilon", prunable=None,
                    input_length: int | None = None) -> list[dict]:
    """One dict per op in forward order: {"name", "op", "output_shape", "rule", "pruned"}.

    name: module path (or fx node name for functional ops); op: the module's repr or the
    function name; output_shape: per-window shape (no batch dim) for a window of
    ``input_length`` bp (default ``model.input_length``), None when unknown; rule: the LRP
    rule with its parameters; pruned: True for layers in the default prunable set
    (PLRP prunes their input relevance when p > 0).
    """
    ex = Explainer(model, composite=composite, prunable=prunable)
    tm = ex.traced
    length = input_length if input_length is not None else getattr(model, "input_length", None)
    shapes = {}
    if length:
        param = next(tm.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        env, _ = ex.forward(torch.zeros(1, 4, int(length), dtype=ex.dtype, device=device))
        for name, value in env.items():
            if isinstance(value, torch.Tensor):
                shapes[name] = list(value.shape[1:])
            elif isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
                shapes[name] = list(value[0].shape[1:])
    rows = []
    for node in tm.nodes:
        spec = tm.specs[node.name]
        if spec.kind in ("const", "input", "output"):
            continue
        module = tm.module.get_submodule(node.target) if node.op == "call_module" else None
        if spec.kind == "linear":
            name = tm.layer_names[node.name]
            rule = ex.rules[node.name].describe()
            pruned = name in ex.prunable
        else:
            name = node.target if node.op == "call_module" else node.name
            # the stabiliser is the composite's op_epsilon, as the walk uses it
            rule = OP_KINDS[spec.kind].text(ex.op_eps, ex.maxpool)
            pruned = False
        rows.append({"name": name, "op": _op_text(node, module, spec),
                     "output_shape": shapes.get(node.name), "rule": rule, "pruned": pruned})
    return rows
