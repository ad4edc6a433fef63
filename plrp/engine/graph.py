"""Trace a model into a graph of ops the engine knows, folding BatchNorm on a copy.

``trace_model`` deep-copies the user's model, puts the copy in eval mode, traces it with
torch.fx (so functional code such as ``x + y``, ``torch.cat`` or ``x.mean(2)`` is seen as well
as modules), folds every eval-mode BatchNorm1d into the Conv1d/Linear that feeds it, and
classifies every node by how relevance flows through it (``OpSpec.kind``). Anything the
engine cannot explain correctly raises ``UnsupportedModelError`` here, before any work.

Node kinds (which module / function / method has which kind, and how relevance flows
through each, is the op table in ops.py; users extend it with ``register_op``):
  input        the model input (one placeholder)
  const        does not depend on the input's values (parameters, constants, shapes)
  linear       Conv1d / Linear (module or F.conv1d / F.linear with constant weights): a rule
  passthrough  element-wise activation, dropout, identity: relevance unchanged
  route        moves elements only (slice, cat, view, permute, pad...): relevance routed back
  add          u + v (+ constants) / u - v: split in proportion to the terms
  scale        multiply / divide by a constant, negate: relevance unchanged
  maxpool      max-pooling and max over a dim: winner-take-all or proportional
  avgpool      average pooling, mean or sum over a dim: epsilon rule with weights 1/n
  select       picks the values out of ``torch.max(x, dim)``'s (values, indices)
  output       the model output (a tensor or a tuple of tensors)
"""

from __future__ import annotations

import builtins
import copy
import inspect
import logging
import operator
import warnings
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plrp.engine.ops import (FUNCTION_KINDS, METHOD_KINDS, OP_KINDS, SUPPORTED_SUMMARY,
                             module_kind, node_args)
from plrp.errors import UnsupportedModelError

log = logging.getLogger(__name__)

# Reading these from the input gives shapes, not values: no relevance flows through them.
SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda"}
SHAPE_METHODS = {"size", "dim", "numel", "ndimension", "get_device"}


@dataclass
class OpSpec:
    """How relevance flows through one fx node."""

    kind: str
    layer_type: str | None = None     # "Conv1d" / "Linear" for linear nodes
    folded_bn: str | None = None      # name of the BatchNorm1d folded into this layer
    inplace: bool = False             # writes into its input (ReLU(inplace=True), x += y)


@dataclass
class TracedModel:
    """A canonised copy of a model, ready for the backward walk.

    Attributes:
      module:  the fx GraphModule (eval mode, BatchNorm folded); owns the copied parameters
      nodes:   fx nodes in forward order
      specs:   node name -> OpSpec
      layer_names: node name -> user-facing layer name (module path, or the fx node name)
      linear_nodes: names of the linear nodes in forward order
      input_layers: layer names of the linear nodes that read the model input directly
      shape_nodes: names of the nodes whose value is derived from the input's shape (such
        as the batch size): recomputed when windows are stacked
    """

    module: fx.GraphModule
    nodes: list
    specs: dict
    layer_names: dict
    linear_nodes: list
    input_layers: set = field(default_factory=set)
    input_node: str = "x"
    defaults: dict = field(default_factory=dict)
    shape_nodes: set = field(default_factory=set)   # values computed from the input's shape


def _module_kind(module: nn.Module) -> tuple[str | None, str | None]:
    """(kind, layer type) of a module; layer type "Conv1d"/"Linear" for linear modules."""
    kind = module_kind(module)
    if kind == "linear":
        return kind, "Conv1d" if isinstance(module, nn.Conv1d) else "Linear"
    return kind, None


def _where(node: fx.Node, root: nn.Module) -> str:
    """'called from block.forward' for error messages."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack)[-1]
        if node.op == "call_module" and path == node.target and len(stack) > 1:
            path = list(stack)[-2]
        elif node.op == "call_module" and path == node.target:
            return f"called from {type(root).__name__}.forward"
        return f"called from {path}.forward"
    return f"called from {type(root).__name__}.forward"


def _target_name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if module.startswith("torch.nn.functional"):
        return f"torch.nn.functional.{name}"
    if module.startswith("torch") or type(target).__name__ == "builtin_function_or_method" \
            and getattr(torch, name, None) is target:
        return f"torch.{name}"
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    return f"{module}.{name}" if module else name


def _unsupported_op(node: fx.Node, root: nn.Module, why: str = "") -> UnsupportedModelError:
    extra = f" ({why})" if why else ""
    return UnsupportedModelError(
        f"unsupported op {_target_name(node)} at node '{node.name}' "
        f"({_where(node, root)}){extra}; plrp supports: {SUPPORTED_SUMMARY}")


def _unsupported_module(module: nn.Module, path: str, why: str = "") -> UnsupportedModelError:
    extra = f" ({why})" if why else ""
    return UnsupportedModelError(
        f"unsupported module nn.{type(module).__name__} at '{path}'{extra}; "
        f"plrp supports: {SUPPORTED_SUMMARY}")


def _check_linear_module(module: nn.Module, path: str) -> None:
    if isinstance(module, nn.Conv1d):
        if module.groups != 1:
            raise _unsupported_module(module, path, f"groups={module.groups}; only groups=1")
        if module.padding_mode != "zeros":
            raise _unsupported_module(module, path,
                                      f"padding_mode={module.padding_mode!r}; only 'zeros'")
        if isinstance(module.padding, str) and module.padding == "same":
            total = module.dilation[0] * (module.kernel_size[0] - 1)
            if total % 2:
                raise _unsupported_module(module, path, "asymmetric padding='same'")


def _fold_batchnorm(gm: fx.GraphModule) -> dict:
    """Fold each eval-mode BatchNorm1d into the Conv1d/Linear that feeds it (in place on gm).

    Returns {linear module path: bn module path}.
    """
    folded = {}
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        bn = gm.get_submodule(node.target)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        if not isinstance(bn, nn.BatchNorm1d):
            raise _unsupported_module(bn, node.target)
        src = node.args[0] if node.args else None
        ok = (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
              and isinstance(gm.get_submodule(src.target), (nn.Conv1d, nn.Linear)))
        if ok:
            # A layer called twice (shared weights) cannot be folded for one call only.
            calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == src.target]
            ok = len(calls) == 1
        if not ok:
            raise UnsupportedModelError(
                f"unsupported placement of nn.BatchNorm1d at '{node.target}': plrp folds "
                f"BatchNorm1d only directly after a Conv1d/Linear whose only consumer it is")
        if bn.running_mean is None or bn.running_var is None:
            raise UnsupportedModelError(
                f"nn.BatchNorm1d at '{node.target}' has no running statistics "
                f"(track_running_stats=False); it cannot be folded")
        layer = gm.get_submodule(src.target)
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var.double() + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            shift = -bn.running_mean.double() * scale
            if bn.bias is not None:
                shift = shift + bn.bias.double()
            w = layer.weight.double()
            shape = (-1,) + (1,) * (w.dim() - 1)
            new_w = w * scale.reshape(shape)
            b = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
            new_b = b * scale + shift
            layer.weight = nn.Parameter(new_w.to(layer.weight.dtype), requires_grad=False)
            layer.bias = nn.Parameter(new_b.to(layer.weight.dtype), requires_grad=False)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded[src.target] = node.target
    gm.graph.lint()
    gm.recompile()
    return folded


class _Tracer(fx.Tracer):
    """fx tracer that keeps registered module classes as leaves and remembers where a
    failure happened (the innermost module being traced)."""

    def __init__(self):
        super().__init__()
        self.path: list[tuple[str, str]] = []
        self.failed_at: list[tuple[str, str]] | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return module_kind(m) is not None or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        self.path.append((self.path_of_module(m), type(m).__name__))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = list(self.path)
            raise
        finally:
            self.path.pop()


def unwrap_model(model) -> nn.Module:
    """The module to explain: a torch.compile'd module's original (``_orig_mod``)."""
    if type(model).__name__ == "OptimizedModule" and isinstance(
            getattr(model, "_orig_mod", None), nn.Module):
        return model._orig_mod
    return model


def trace_model(model: nn.Module) -> TracedModel:
    """Copy, trace and canonise ``model``; classify every node (see module docstring).

    Raises UnsupportedModelError naming the first op or module the engine cannot explain.
    The user's model is never modified (a deep copy is traced, in eval mode and float32
    where the model is float16/bfloat16; a model in train mode gets a warning).
    """
    model = unwrap_model(model)
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    low = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()
                  if p.dtype in (torch.float16, torch.bfloat16)})
    root = copy.deepcopy(model).eval()
    if low:
        log.warning("%s has %s parameters; explained in float32 (on a copy)",
                    type(model).__name__, "/".join(low))
        root.float()
    for p in root.parameters():
        p.requires_grad_(False)
    tracer = _Tracer()
    try:
        graph = tracer.trace(root)   # torch.nn modules and registered ones stay leaves
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, KeyError...)
        raise _trace_error(model, err, tracer.failed_at) from None
    gm = fx.GraphModule(root, graph)
    # Check modules before folding so that the message names the user's module.
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            kind, _ = _module_kind(module)
            if kind is None:
                raise _unsupported_module(module, node.target)
            if kind == "linear":
                _check_linear_module(module, node.target)
    folded = _fold_batchnorm(gm)
    _functionalise_inplace(gm)
    traced = _classify(gm, root, folded)
    if any(m.training for m in model.modules()):   # only for a model we will explain
        warnings.warn(f"{type(model).__name__} is in train mode; plrp explains it in eval mode "
                      f"(no dropout, BatchNorm running statistics) on a copy and leaves the "
                      f"model itself unchanged", UserWarning, stacklevel=3)
    return traced


def _trace_error(model, err, failed_at) -> UnsupportedModelError:
    """One line naming the layer (module path and type) whose forward fx could not trace."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    msg = f"{type(err).__name__}: {msg}" if msg else type(err).__name__
    where = ""
    if failed_at:
        path, kind = failed_at[-1]
        parents = [f"'{p}' ({k})" for p, k in failed_at[:-1] if p]
        inside = f" inside {' > '.join(parents)}" if parents else ""
        where = f" in layer '{path}' ({kind}){inside}"
    return UnsupportedModelError(
        f"cannot trace {type(model).__name__} with torch.fx{where}: {msg}; plrp needs "
        f"forwards without control flow on the input's values or shape (rewrite the layer "
        f"with torch ops, or register its class with plrp.engine.register_op)")


def _functionalise_inplace(gm: fx.GraphModule) -> None:
    """Make in-place ops explicit in the dataflow.

    fx records ``g.relu_()`` as a node whose result may be unused while later nodes read
    ``g`` (mutated in eager mode). The walk runs in-place ops on a copy (it needs the
    input's value), so later readers of the mutated tensor must read the op's result.
    """
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        if node.op not in ("call_module", "call_method", "call_function") or not node.args:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or not _is_inplace(gm, node):
            continue
        for user in list(src.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(src, node)
    gm.recompile()


def _classify(gm: fx.GraphModule, root: nn.Module, folded: dict) -> TracedModel:
    nodes = list(gm.graph.nodes)
    specs: dict[str, OpSpec] = {}
    layer_names: dict[str, str] = {}
    # value class of each node: "tensor" (depends on the input's values), "shape", "const"
    value: dict[str, str] = {}
    placeholders = [n for n in nodes if n.op == "placeholder"]
    required = [n for n in placeholders if not n.args]
    if len(required) != 1:
        raise UnsupportedModelError(
            f"{type(root).__name__}.forward takes {len(required)} required inputs; plrp "
            f"explains models with exactly one input tensor (N, 4, L)")
    input_node = required[0]
    defaults = {n.name: n.args[0] for n in placeholders if n.args}
    for node in nodes:
        srcs = node_args(node)
        classes = {value.get(s.name, "const") for s in srcs}
        if node.op == "placeholder":
            value[node.name] = "tensor" if node is input_node else "const"
            specs[node.name] = OpSpec("input" if node is input_node else "const")
            continue
        if node.op == "output":
            specs[node.name] = OpSpec("output")
            continue
        if "tensor" not in classes:
            value[node.name] = "shape" if "shape" in classes else "const"
            specs[node.name] = OpSpec("const")
            continue
        # From here on the node reads a tensor that depends on the input's values.
        if node.op == "call_function" and node.target is builtins.getattr:
            attr = node.args[1]
            src = node.args[0]
            if attr in SHAPE_ATTRIBUTES:
                value[node.name] = "shape"
                specs[node.name] = OpSpec("const")
                continue
            if attr == "values" and specs[src.name].kind == "maxpool":
                value[node.name] = "tensor"
                specs[node.name] = OpSpec("select")
                continue
            if attr == "indices" and specs[src.name].kind == "maxpool":
                value[node.name] = "const"
                specs[node.name] = OpSpec("const")
                continue
            raise _unsupported_op(node, root, f"attribute .{attr}")
        if node.op == "call_function" and node.target is builtins.len:
            value[node.name] = "shape"
            specs[node.name] = OpSpec("const")
            continue
        if node.op == "call_method" and node.target in SHAPE_METHODS:
            value[node.name] = "shape"
            specs[node.name] = OpSpec("const")
            continue
        value[node.name] = "tensor"
        specs[node.name] = _classify_tensor_op(gm, root, node, value, specs, folded)
        specs[node.name].inplace = _is_inplace(gm, node)
        if specs[node.name].kind == "const":
            value[node.name] = "const"
        if specs[node.name].kind == "linear":
            layer_names[node.name] = node.target if node.op == "call_module" else node.name

    linear_nodes = [n.name for n in nodes if specs[n.name].kind == "linear"]
    input_layers = set()
    for node in nodes:
        if specs[node.name].kind == "linear" and _reads_input_directly(node, specs):
            input_layers.add(layer_names[node.name])
    return TracedModel(module=gm, nodes=nodes, specs=specs, layer_names=layer_names,
                       linear_nodes=linear_nodes, input_layers=input_layers,
                       input_node=input_node.name, defaults=defaults,
                       shape_nodes={k for k, v in value.items() if v == "shape"})


INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, torch.relu_}


def _is_inplace(gm, node: fx.Node) -> bool:
    """Would running this node overwrite its first argument (a value the walk still needs)?"""
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_method":
        return node.target.endswith("_")
    if node.target in INPLACE_FUNCTIONS:
        return True
    if node.kwargs.get("inplace"):
        return True
    # F.relu(x, True), F.leaky_relu(x, 0.1, True), F.dropout(x, p, training, True)...
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    except (TypeError, ValueError):
        return False
    return bound.arguments.get("inplace") is True


def _reads_input_directly(node: fx.Node, specs: dict) -> bool:
    """True when the layer's input is the model input, possibly reshaped/sliced/padded only."""
    src = node.args[0] if node.args else node.kwargs.get("input")
    while isinstance(src, fx.Node):
        kind = specs[src.name].kind
        if kind == "input":
            return True
        if kind not in ("route", "passthrough", "scale"):
            return False
        tensor_args = [a for a in node_args(src) if specs[a.name].kind != "const"]
        if len(tensor_args) != 1:
            return False
        src = tensor_args[0]
    return False


def _classify_tensor_op(gm, root, node, value, specs, folded) -> OpSpec:
    def is_tensor(arg) -> bool:
        return isinstance(arg, fx.Node) and value.get(arg.name) == "tensor"

    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        kind, layer_type = _module_kind(module)
        if kind is None:
            raise _unsupported_module(module, node.target)
        return OpSpec(kind, layer_type, folded.get(node.target))
    target = node.target
    if node.op == "call_method":
        kind = METHOD_KINDS.get(target)
    elif node.op == "call_function":
        kind = _function_kind(target)
    else:
        kind = None
    if kind is None:
        raise _unsupported_op(node, root)
    if target is operator.getitem:
        src = node.args[0]
        if isinstance(src, fx.Node) and specs[src.name].kind == "maxpool" \
                and src.target in (torch.max, "max"):
            if node.args[1] == 0:
                return OpSpec("select")
            if node.args[1] == 1:
                return OpSpec("const")      # argmax indices: integers, no relevance
            raise _unsupported_op(node, root, "index into torch.max's result")
        if any(is_tensor(i) for i in node_args(node)[1:]):
            raise _unsupported_op(node, root, "indexing with a value-dependent tensor")
    if target is F.pad:
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        pad_value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        if mode != "constant" or pad_value not in (None, 0, 0.0):
            raise _unsupported_op(node, root, "only zero padding")
    check = OP_KINDS[kind].check
    why = check(node, is_tensor) if check is not None else None
    if why:
        raise _unsupported_op(node, root, why)
    layer_type = ("Conv1d" if target is F.conv1d else "Linear") if kind == "linear" else None
    return OpSpec(kind, layer_type)


def _function_kind(target) -> str | None:
    try:
        return FUNCTION_KINDS.get(target)
    except TypeError:          # an unhashable callable is in no table
        return None
