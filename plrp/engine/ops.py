"""The op table: how relevance flows through each kind of op, in one place, user-extendable.

Two tables, read by the tracer (graph.py), the walk (propagate.py) and ``plrp inspect``
(describe.py):

- ``OP_KINDS``: kind name -> ``OpRule`` (the backward handler, an optional forward that
  keeps extra values, a description, an optional trace-time check);
- ``MODULE_KINDS`` / ``FUNCTION_KINDS`` / ``METHOD_KINDS``: module class, torch function or
  Tensor method name -> kind name.

Extend it for your own modules (a registered module class is traced as a leaf, its forward
is not inlined)::

    from plrp.engine import register_op
    register_op(MySwish, "passthrough")            # an element-wise activation
    register_op(kipoi.Lambda, "route")             # a Lambda that only reshapes / slices
    register_op(MyOp, OpRule("myop", backward=my_handler, describe="my rule"))

A backward handler ``(walk, node, r_out, h_out) -> [(src_node, r_src, h_src), ...]`` maps
the relevance r_out (shape of the node's output, one row per window) to relevance for the
nodes it reads (shape of each source's value); ``h`` is the hypothetical multiplier
(None: same as r). ``walk.value(node)`` is a node's stored forward value, ``walk.shape``
its shape, ``walk.sources(node)`` its input-dependent arguments, ``walk.op_eps`` the
composite's stabiliser. Handlers must not reduce over dim 0 (the windows).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plrp.engine.rules import int_param, stabilise
from plrp.errors import PlrpError, UnsupportedModelError


@dataclass(frozen=True)
class OpRule:
    """How relevance flows through one kind of op.

    kind: the kind's name (``OpSpec.kind`` of the nodes it handles).
    backward: (walk, node, r_out, h_out) -> list of (source node, relevance, hypothetical).
    describe: text for ``plrp inspect``, or (op_eps, maxpool) -> text.
    forward: None, or (walk, node, args, kwargs) -> (value, extra) to keep extra values
      (e.g. max-pool indices) for the backward handler (``walk.extra(node)``).
    check: None, or (node, is_tensor) -> reason the node cannot be explained, or None.
    """

    kind: str
    backward: Callable
    describe: "str | Callable" = ""
    forward: Callable | None = None
    check: Callable | None = None

    def text(self, op_eps: float, maxpool: str) -> str:
        return self.describe(op_eps, maxpool) if callable(self.describe) else self.describe


# ---------------------------------------------------------------------------- fx helpers
def node_args(node: fx.Node) -> list[fx.Node]:
    found = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
    return found


def resolve(node, env):
    """The node's args and kwargs with nodes replaced by their values in env."""
    args = fx.node.map_arg(node.args, lambda n: env[n.name])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
    return args, kwargs


def call(gm, node, args, kwargs):
    """Run one fx node."""
    if node.op == "call_module":
        return gm.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "get_attr":
        obj = gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj
    raise PlrpError(f"cannot run node {node.name!r} ({node.op})")


def vjp(walk, node, srcs, cotangent):
    """Transpose of a linear node op w.r.t. the given source nodes, at cotangent."""
    names = {s.name for s in srcs}
    env = walk.env
    with torch.enable_grad():
        leaves = {s.name: env[s.name].detach().requires_grad_(True) for s in srcs}
        args = fx.node.map_arg(node.args, lambda n: leaves[n.name] if n.name in names
                               else env[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: leaves[n.name] if n.name in names
                                 else env[n.name])
        out = call(walk.module, node, args, kwargs)
        grads = torch.autograd.grad(out, [leaves[s.name] for s in srcs], cotangent,
                                    allow_unused=True)
    return [torch.zeros_like(env[s.name]) if g is None else g for s, g in zip(srcs, grads)]


# ---------------------------------------------------------------------------- handlers
def _linear(walk, node, r_out, h_out):
    return walk.linear_step(node, r_out)


def _passthrough(walk, node, r_out, h_out):
    return [(walk.sources(node)[0], r_out, h_out)]


def _scale(walk, node, r_out, h_out):
    src = walk.sources(node)[0]
    shape = walk.value(src).shape
    return [(src, r_out.sum_to_size(shape), None if h_out is None else h_out.sum_to_size(shape))]


# shape changes that keep the elements' order: their transpose is a reshape back (no autograd
# call, which costs ~0.3 ms each in torch 2.13: it imports a module per call)
_REORDER_FREE_MODULES = (nn.Flatten, nn.Unflatten)
_REORDER_FREE = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
                 "view", "reshape", "flatten", "squeeze", "unsqueeze", "unflatten"}


def _keeps_order(walk, node) -> bool:
    if node.op == "call_module":
        return isinstance(walk.module.get_submodule(node.target), _REORDER_FREE_MODULES)
    return node.op in ("call_function", "call_method") and node.target in _REORDER_FREE


def _route(walk, node, r_out, h_out):
    srcs = walk.sources(node)
    if len(srcs) == 1 and _keeps_order(walk, node):
        shape = walk.shape(srcs[0])
        return [(srcs[0], r_out.reshape(shape), None if h_out is None else h_out.reshape(shape))]
    grads = vjp(walk, node, srcs, r_out)
    hgrads = vjp(walk, node, srcs, h_out) if h_out is not None else [None] * len(srcs)
    return list(zip(srcs, grads, hgrads))


_SUB = (operator.sub, torch.sub, operator.isub, "sub", "sub_")


def _add(walk, node, r_out, h_out):
    """R_u = u / (y + eps sgn y) R_y, R_v = +-v / (y + eps sgn y) R_y (constants absorb)."""
    y = walk.value(node)
    args, kwargs = resolve(node, walk.env)
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    coefs = [1.0, -alpha if node.target in _SUB else alpha]
    srcs = [node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")]
    vals = [args[0], args[1] if len(args) > 1 else kwargs.get("other")]
    s = r_out / stabilise(y, walk.op_eps)
    out = []
    for src, val, coef in zip(srcs, vals, coefs):
        if isinstance(src, fx.Node) and walk.is_tensor(src):
            out.append((src, (coef * val * s).sum_to_size(val.shape),
                        (coef * s).sum_to_size(val.shape)))
    return out


def _avgpool_forward(walk, node, args, kwargs):
    if node.target in (torch.mean, torch.sum, "mean", "sum"):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        for d in dim if isinstance(dim, (tuple, list)) else [dim]:
            _norm_dim(node, d, args[0].dim())
    return call(walk.module, node, args, kwargs), None


def _avgpool(walk, node, r_out, h_out):
    """Epsilon rule with weights 1/n (1 for sum): s = R / (y + eps sgn y) pushed back."""
    src = walk.sources(node)[0]
    s = r_out / stabilise(walk.value(node), walk.op_eps)
    mult = vjp(walk, node, [src], s)[0]
    return [(src, walk.value(src) * mult, mult)]


def _windows_per_input(gm, node, in_len: int, out_len: int) -> int:
    """The most pooling windows of a max-pool node one input can lie in."""
    params = _maxpool_params(gm, node)
    if params is None:
        # adaptive windows start at floor(j L / O) and end at ceil((j + 1) L / O): two whose
        # starts lie >= 2 inputs apart never meet, so every ceil(2 O / L) + 1-th is disjoint
        return 2 if in_len >= out_len else -(-2 * out_len // in_len) + 1
    k, s, _, d = params
    return -(-(d * (k - 1) + 1) // s)              # ceil(reach / stride)


def _max_forward(walk, node, args, kwargs):
    """Max-pooling that also keeps the argmax indices (for winner-take-all), and how many
    pooling windows one input can lie in."""
    if node.op == "call_module":
        m = walk.module.get_submodule(node.target)
        if isinstance(m, nn.MaxPool1d):
            out, idx = F.max_pool1d(args[0], m.kernel_size, m.stride, m.padding, m.dilation,
                                    m.ceil_mode, return_indices=True)
        else:
            out, idx = F.adaptive_max_pool1d(args[0], m.output_size, return_indices=True)
    elif node.target in (F.max_pool1d, F.adaptive_max_pool1d):
        keep = 6 if node.target is F.max_pool1d else 2
        out, idx = node.target(*args[:keep], **dict(kwargs, return_indices=True))
    else:
        return _max_over_dim(node, args, kwargs)
    share = _windows_per_input(walk.module, node, args[0].shape[-1], out.shape[-1])
    return out, ("pool", idx, share)


def _max_over_dim(node, args, kwargs):
    """torch.max / amax over a dim, keeping the argmax for winner-take-all."""
    a = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
    dim = _norm_dim(node, dim[0] if isinstance(dim, (tuple, list)) else dim, a.dim())
    values, idx = torch.max(a, dim=dim, keepdim=True)
    result = values if keepdim else values.squeeze(dim)
    if node.target in (torch.max, "max"):
        result = torch.return_types.max((result, idx if keepdim else idx.squeeze(dim)))
    return result, ("dim", idx, dim, keepdim)


def _maxpool(walk, node, r_out, h_out):
    """wta: to the argmax torch picks; proportional: R_j = a_j / (window sum + eps sgn) R_k."""
    src = walk.sources(node)[0]
    if walk.maxpool == "wta":
        shape = walk.shape(src)
        k = walk.tiles           # k copies of the windows: scatter with their indices
        info = walk.window_extra(node)
        zeros = r_out.new_zeros((k, shape[0] // k) + tuple(shape[1:]))
        if info[0] == "pool":
            (_, idx, share), dim, r = info, -1, r_out
        else:
            (_, idx, dim, keepdim), share = info, 1
            r = r_out if keepdim else r_out.unsqueeze(dim)
            dim = dim + 1 if dim >= 0 else dim
        idx = idx.expand((k,) + tuple(idx.shape))
        r = r.reshape(idx.shape)
        passes = share if share > 2 and r.device.type != "cpu" else 1
        return [(src, scatter_in_passes(zeros, dim, idx, r, passes).view(shape), None)]
    info = walk.extra(node)
    a = walk.value(src)
    if info[0] == "pool":
        with torch.enable_grad():
            leaf = a.detach().requires_grad_(True)
            z = _window_sum(walk.module, node, leaf, r_out.shape[-1])
            s = r_out / stabilise(z.detach(), walk.op_eps)
            (g,) = torch.autograd.grad(z, leaf, s)
        return [(src, a * g, None)]
    _, idx, dim, keepdim = info
    z = a.sum(dim=dim, keepdim=True)
    r = r_out if keepdim else r_out.unsqueeze(dim)
    return [(src, a * (r / stabilise(z, walk.op_eps)), None)]


def scatter_in_passes(out, dim, idx, r, passes: int):
    """out.scatter_add_(dim, idx, r), deterministic on every device.

    A GPU adds the values that land on one input in any order; two of them sum the same
    either way, three may not. So where up to ``passes`` > 2 pooling windows can share an
    input, windows j = q, q + passes, ... (which never share one) go in pass q, and the
    passes add up in a fixed order. The CPU scatters in order and takes one pass."""
    if passes <= 1:
        return out.scatter_add_(dim, idx, r)
    for q in range(passes):
        part = [slice(None)] * idx.dim()
        part[dim] = slice(q, None, passes)
        out.scatter_add_(dim, idx[tuple(part)], r[tuple(part)])
    return out


def _select(walk, node, r_out, h_out):
    return [(node.args[0], r_out, None)]


# ---------------------------------------------------------------------------- trace checks
def _check_scale(node, is_tensor):
    args = list(node.args) + list(node.kwargs.values())
    if sum(is_tensor(a) for a in args) > 1:
        return "product or ratio of two input-dependent tensors"
    if node.target in (operator.truediv, torch.div, "div", "div_") and not is_tensor(node.args[0]):
        return "division by an input-dependent tensor"
    return None


def _check_reduction(node, is_tensor):
    if node.target in (torch.mean, torch.sum, torch.amax, torch.max, "mean", "sum", "amax",
                       "max"):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if dim is None:
            return "reduction over all dims (mixes the windows of a batch); give dim="
        if node.target in (torch.max, "max") and isinstance(dim, fx.Node):
            return "elementwise max of two tensors"
        if isinstance(dim, (tuple, list)) and len(dim) != 1 and \
                node.target in (torch.amax, torch.max, "amax", "max"):
            return "max over several dims"
    return None


def _check_linear(node, is_tensor):
    if node.op != "call_function":
        return None
    if any(is_tensor(a) for a in node_args(node)[1:]):
        return "weights that depend on the input"
    if node.target is F.conv1d:
        groups = node.kwargs.get("groups", node.args[6] if len(node.args) > 6 else 1)
        if groups != 1:
            return f"groups={groups}; only groups=1"
        padding = node.kwargs.get("padding", node.args[4] if len(node.args) > 4 else 0)
        if isinstance(padding, str) and padding == "same":
            return "padding='same' in F.conv1d"
    return None


def _norm_dim(node, dim, ndim):
    d = dim + ndim if dim < 0 else dim
    if d == 0:
        raise UnsupportedModelError(
            f"unsupported reduction over the batch dimension at node '{node.name}' "
            f"(it would mix the windows of a batch)")
    return d


def _maxpool_params(gm, node):
    """(kernel, stride, padding, dilation) of a MaxPool1d / F.max_pool1d node as ints; None
    for an adaptive max-pool."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.AdaptiveMaxPool1d):
            return None
        k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
    elif node.target is F.adaptive_max_pool1d:
        return None
    else:
        names = ["input", "kernel_size", "stride", "padding", "dilation"]
        bound = dict(zip(names, node.args))
        bound.update(node.kwargs)
        k = bound["kernel_size"]
        s = bound.get("stride") or k
        p, d = bound.get("padding", 0), bound.get("dilation", 1)
    return tuple(int_param(v) for v in (k, s, p, d))


def _window_sum(gm, node, a, out_len):
    """Sum of each max-pooling window (padding counts as 0), shape of the pool output."""
    params = _maxpool_params(gm, node)
    if params is None:
        return _adaptive_sum(a, out_len)
    k, s, p, d = params
    span = d * (k - 1) + 1
    right = max(0, (out_len - 1) * s + span - (a.shape[-1] + p))
    windows = F.pad(a, (p, right)).unfold(-1, span, s)[..., ::d]
    return windows[..., :out_len, :].sum(-1)


def _adaptive_sum(a, out_len):
    length = a.shape[-1]
    parts = []
    for i in range(out_len):
        start = (i * length) // out_len
        end = -((-(i + 1) * length) // out_len)
        parts.append(a[..., start:end].sum(-1, keepdim=True))
    return torch.cat(parts, dim=-1)


# ---------------------------------------------------------------------------- the tables
OP_KINDS: dict[str, OpRule] = {rule.kind: rule for rule in (
    OpRule("linear", _linear, "the composite's rule", check=_check_linear),
    OpRule("passthrough", _passthrough, "pass-through"),
    OpRule("route", _route, "route (exact)"),
    OpRule("add", _add, lambda eps, mp: f"split by contribution (eps={eps:g})"),
    OpRule("scale", _scale, "pass-through (constant scale)", check=_check_scale),
    OpRule("maxpool", _maxpool,
           lambda eps, mp: "winner-take-all" if mp == "wta" else f"proportional (eps={eps:g})",
           forward=_max_forward, check=_check_reduction),
    OpRule("avgpool", _avgpool, lambda eps, mp: f"epsilon (eps={eps:g}, weights 1/n)",
           forward=_avgpool_forward, check=_check_reduction),
    OpRule("select", _select, "pass-through"),
)}


def _kinds(**groups) -> dict:
    return {target: kind for kind, targets in groups.items() for target in targets}


MODULE_KINDS: dict[type, str] = _kinds(
    linear=(nn.Conv1d, nn.Linear),
    passthrough=(nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Sigmoid,
                 nn.Tanh, nn.Dropout, nn.Dropout1d, nn.Identity),
    route=(nn.Flatten, nn.Unflatten, nn.ZeroPad1d),
    maxpool=(nn.MaxPool1d, nn.AdaptiveMaxPool1d),
    avgpool=(nn.AvgPool1d, nn.AdaptiveAvgPool1d))

FUNCTION_KINDS: dict = _kinds(
    linear=(F.conv1d, F.linear),
    passthrough=(F.relu, torch.relu, F.leaky_relu, F.elu, F.gelu, F.silu, F.softplus,
                 torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, torch.exp, F.dropout,
                 F.dropout1d, torch.relu_),
    route=(operator.getitem, torch.cat, torch.concat, torch.flatten, torch.reshape,
           torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.narrow,
           torch.stack, F.pad, torch.swapaxes, torch.movedim),
    add=(operator.add, torch.add, operator.iadd, operator.sub, torch.sub, operator.isub),
    scale=(operator.mul, torch.mul, operator.imul, operator.truediv, torch.div,
           operator.neg, torch.neg),
    maxpool=(F.max_pool1d, F.adaptive_max_pool1d, torch.amax, torch.max),
    avgpool=(F.avg_pool1d, F.adaptive_avg_pool1d, torch.mean, torch.sum))

METHOD_KINDS: dict[str, str] = _kinds(
    passthrough=("relu", "relu_", "sigmoid", "tanh", "exp", "contiguous"),
    route=("view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose",
           "narrow", "view_as", "reshape_as", "unflatten", "swapaxes", "movedim",
           "__getitem__"),
    add=("add", "add_", "sub", "sub_"),
    scale=("mul", "mul_", "div", "div_", "neg"),
    maxpool=("amax", "max"),
    avgpool=("mean", "sum"))

SUPPORTED_SUMMARY = (
    "Conv1d, Linear, BatchNorm1d after Conv1d/Linear, MaxPool1d, AvgPool1d, "
    "AdaptiveMax/AvgPool1d, Flatten, Dropout, Identity, ReLU, LeakyReLU, ELU, GELU, SiLU, "
    "Softplus, Sigmoid, Tanh, exp, add/sub, mul/div by constants, cat, slicing, view/reshape, "
    "mean/sum/max over a dim; other modules via plrp.engine.register_op")


def module_kind(module: nn.Module) -> str | None:
    """The kind of a module (its class or the nearest registered base class), or None."""
    for cls in type(module).__mro__:
        if cls in MODULE_KINDS:
            return MODULE_KINDS[cls]
    return None


def register_op(target, kind: "str | OpRule") -> None:
    """Tell the engine how relevance flows through ``target``.

    target: an nn.Module subclass (traced as a leaf: its forward is run, not inlined), a
      function (as called in a forward, e.g. ``torch.erf``), or a Tensor method name (str).
    kind: the name of a kind in ``OP_KINDS`` ("passthrough", "route", "add", "scale",
      "maxpool", "avgpool", "linear" for Conv1d/Linear subclasses only), or an ``OpRule``
      (added to ``OP_KINDS`` under its own ``kind``).
    Registration is process-wide; ``unregister_op`` undoes it.
    """
    if isinstance(kind, OpRule):
        OP_KINDS[kind.kind] = kind
        kind = kind.kind
    if kind not in OP_KINDS:
        raise PlrpError(f"unknown op kind {kind!r}; known: {', '.join(OP_KINDS)} "
                        f"(or pass an OpRule)")
    if isinstance(target, type) and issubclass(target, nn.Module):
        if kind == "linear" and not issubclass(target, (nn.Conv1d, nn.Linear)):
            raise PlrpError(f"{target.__name__}: only Conv1d/Linear subclasses are 'linear'")
        MODULE_KINDS[target] = kind
    elif isinstance(target, str):
        METHOD_KINDS[target] = kind
    elif callable(target):
        FUNCTION_KINDS[target] = kind
    else:
        raise PlrpError(f"register_op: {target!r} is not a module class, function or method "
                        f"name")


def unregister_op(target) -> None:
    """Undo ``register_op`` for target (no error if it was not registered)."""
    for table in (MODULE_KINDS, METHOD_KINDS, FUNCTION_KINDS):
        try:
            table.pop(target, None)
        except TypeError:          # unhashable target: in no table
            pass
