"""Trace a model into a graph of ops the engine knows, folding BatchNorm on a copy.

``trace_model`` deep-copies the user's model, puts the copy in eval mode, traces it with
torch.fx (so functional code such as ``x + y``, ``torch.cat`` or ``x.mean(2)`` is seen as well
as modules), folds every eval-mode BatchNorm1d into the Conv1d/Linear that feeds it, and
classifies every node by how relevance flows through it (``OpSpec.kind``). Anything the
engine cannot explain correctly raises ``UnsupportedModelError`` here, before any work.

Node kinds:
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
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plrp.errors import UnsupportedModelError

# ---------------------------------------------------------------------------- op table

PASSTHROUGH_MODULES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus,
                       nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Dropout1d, nn.Identity)
PASSTHROUGH_FUNCTIONS = {
    F.relu, torch.relu, F.leaky_relu, F.elu, F.gelu, F.silu, F.softplus, torch.sigmoid,
    F.sigmoid, torch.tanh, F.tanh, torch.exp, F.dropout, F.dropout1d, torch.relu_,
}
PASSTHROUGH_METHODS = {"relu", "relu_", "sigmoid", "tanh", "exp", "contiguous"}

ROUTE_MODULES = (nn.Flatten, nn.Unflatten, nn.ZeroPad1d)
ROUTE_FUNCTIONS = {
    operator.getitem, torch.cat, torch.concat, torch.flatten, torch.reshape, torch.squeeze,
    torch.unsqueeze, torch.permute, torch.transpose, torch.narrow, torch.stack, F.pad,
    torch.swapaxes, torch.movedim,
}
ROUTE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "permute",
                 "transpose", "narrow", "view_as", "reshape_as", "unflatten", "swapaxes",
                 "movedim", "__getitem__"}

ADD_FUNCTIONS = {operator.add, torch.add, operator.iadd, operator.sub, torch.sub,
                 operator.isub}
ADD_METHODS = {"add", "add_", "sub", "sub_"}
SCALE_FUNCTIONS = {operator.mul, torch.mul, operator.imul, operator.truediv, torch.div,
                   operator.neg, torch.neg}
SCALE_METHODS = {"mul", "mul_", "div", "div_", "neg"}

MAXPOOL_MODULES = (nn.MaxPool1d, nn.AdaptiveMaxPool1d)
MAXPOOL_FUNCTIONS = {F.max_pool1d, F.adaptive_max_pool1d, torch.amax, torch.max}
MAXPOOL_METHODS = {"amax", "max"}
AVGPOOL_MODULES = (nn.AvgPool1d, nn.AdaptiveAvgPool1d)
AVGPOOL_FUNCTIONS = {F.avg_pool1d, F.adaptive_avg_pool1d, torch.mean, torch.sum}
AVGPOOL_METHODS = {"mean", "sum"}

LINEAR_FUNCTIONS = {F.conv1d, F.linear}
# the tables above in lookup order, for Tensor methods and for torch functions
_METHOD_KINDS = (("passthrough", PASSTHROUGH_METHODS), ("route", ROUTE_METHODS),
                 ("add", ADD_METHODS), ("scale", SCALE_METHODS),
                 ("maxpool", MAXPOOL_METHODS), ("avgpool", AVGPOOL_METHODS))
_FUNCTION_KINDS = (("passthrough", PASSTHROUGH_FUNCTIONS), ("route", ROUTE_FUNCTIONS),
                   ("add", ADD_FUNCTIONS), ("scale", SCALE_FUNCTIONS),
                   ("maxpool", MAXPOOL_FUNCTIONS), ("avgpool", AVGPOOL_FUNCTIONS))
# Reading these from the input gives shapes, not values: no relevance flows through them.
SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda"}
SHAPE_METHODS = {"size", "dim", "numel", "ndimension", "get_device"}

SUPPORTED_SUMMARY = (
    "Conv1d, Linear, BatchNorm1d after Conv1d/Linear, MaxPool1d, AvgPool1d, "
    "AdaptiveMax/AvgPool1d, Flatten, Dropout, Identity, ReLU, LeakyReLU, ELU, GELU, SiLU, "
    "Softplus, Sigmoid, Tanh, exp, add/sub, mul/div by constants, cat, slicing, view/reshape, "
    "mean/sum/max over a dim")


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
    """

    module: fx.GraphModule
    nodes: list
    specs: dict
    layer_names: dict
    linear_nodes: list
    input_layers: set = field(default_factory=set)
    input_node: str = "x"
    defaults: dict = field(default_factory=dict)


def _module_kind(module: nn.Module) -> tuple[str | None, str | None]:
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        return "linear", type(module).__name__
    if isinstance(module, PASSTHROUGH_MODULES):
        return "passthrough", None
    if isinstance(module, ROUTE_MODULES):
        return "route", None
    if isinstance(module, MAXPOOL_MODULES):
        return "maxpool", None
    if isinstance(module, AVGPOOL_MODULES):
        return "avgpool", None
    return None, None


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


def trace_model(model: nn.Module) -> TracedModel:
    """Copy, trace and canonise ``model``; classify every node (see module docstring).

    Raises UnsupportedModelError naming the first op or module the engine cannot explain.
    The user's model is never modified (a deep copy is traced).
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    root = copy.deepcopy(model).eval()
    for p in root.parameters():
        p.requires_grad_(False)
    try:
        graph = fx.Tracer().trace(root)   # torch.nn modules stay leaves
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedModelError(
            f"cannot trace {type(model).__name__} with torch.fx ({msg}); plrp needs a "
            f"forward without control flow that depends on the input's values") from None
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
    return _classify(gm, root, folded)


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


def _node_args(node: fx.Node) -> list[fx.Node]:
    found = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
    return found


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
        srcs = _node_args(node)
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
                       input_node=input_node.name, defaults=defaults)


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
        tensor_args = [a for a in _node_args(src) if specs[a.name].kind != "const"]
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
        spec = _table_spec(node, root, is_tensor, _METHOD_KINDS)
        if spec is None:
            raise _unsupported_op(node, root)
        return spec
    if node.op != "call_function":
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
        if any(is_tensor(i) for i in _node_args(node)[1:]):
            raise _unsupported_op(node, root, "indexing with a value-dependent tensor")
        return OpSpec("route")
    if target is F.pad:
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        pad_value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        if mode != "constant" or pad_value not in (None, 0, 0.0):
            raise _unsupported_op(node, root, "only zero padding")
    spec = _table_spec(node, root, is_tensor, _FUNCTION_KINDS)
    if spec is not None:
        return spec
    if target in LINEAR_FUNCTIONS:
        rest = _node_args(node)[1:]
        if any(is_tensor(a) for a in rest):
            raise _unsupported_op(node, root, "weights that depend on the input")
        if target is F.conv1d:
            groups = node.kwargs.get("groups", node.args[6] if len(node.args) > 6 else 1)
            if groups != 1:
                raise _unsupported_op(node, root, f"groups={groups}; only groups=1")
            padding = node.kwargs.get("padding", node.args[4] if len(node.args) > 4 else 0)
            if isinstance(padding, str) and padding == "same":
                raise _unsupported_op(node, root, "padding='same' in F.conv1d")
        return OpSpec("linear", "Conv1d" if target is F.conv1d else "Linear")
    raise _unsupported_op(node, root)


def _table_spec(node, root, is_tensor, kinds) -> OpSpec | None:
    """The spec of a method / function listed in the op tables (first kind that lists it)."""
    for kind, targets in kinds:
        if node.target in targets:
            if kind == "scale":
                return _check_scale(node, root, is_tensor)
            if kind in ("maxpool", "avgpool"):
                return _check_reduction(node, root, kind)
            return OpSpec(kind)
    return None


def _check_scale(node, root, is_tensor) -> OpSpec:
    args = list(node.args) + list(node.kwargs.values())
    n_tensor = sum(is_tensor(a) for a in args)
    if n_tensor > 1:
        raise _unsupported_op(node, root, "product or ratio of two input-dependent tensors")
    if node.target in (operator.truediv, torch.div, "div", "div_") and not is_tensor(node.args[0]):
        raise _unsupported_op(node, root, "division by an input-dependent tensor")
    return OpSpec("scale")


def _check_reduction(node, root, kind) -> OpSpec:
    if node.target in (torch.mean, torch.sum, torch.amax, torch.max, "mean", "sum", "amax",
                       "max"):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if dim is None:
            raise _unsupported_op(node, root, "reduction over all dims (mixes the windows "
                                              "of a batch); give dim=")
        if node.target in (torch.max, "max") and isinstance(dim, fx.Node):
            raise _unsupported_op(node, root, "elementwise max of two tensors")
        if isinstance(dim, (tuple, list)) and kind == "maxpool" and len(dim) != 1:
            raise _unsupported_op(node, root, "max over several dims")
    return OpSpec(kind)
