"""The backward walk: Explainer, explain_tensor, describe_layers.

``Explainer`` traces and canonises a model once (graph.trace_model), assigns a rule to every
Conv1d/Linear layer (composites), and for each batch:
  1. runs the graph forward, storing every node's value (and max-pool argmax indices);
  2. seeds the output relevance for the target (targets.seed);
  3. walks the nodes in reverse order, pushing relevance from each node to the nodes it
     reads (fan-out relevances add up), pruning the input relevance of prunable layers
     (prune.py) per window.
Nothing reduces over the batch dimension, so each window's result is independent of the
other windows in its batch.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plrp.engine.composites import Composite, load_composite
from plrp.engine.graph import TracedModel, trace_model
from plrp.engine.prune import apply_lambda, resolve_schedule, select
from plrp.engine.rules import LinearOp, stabilise
from plrp.engine.targets import normalise_target, seed
from plrp.errors import PlrpError, UnsupportedModelError

VARIANTS = ("lambda", "m")


@dataclass
class Explanation:
    """Result of ``Explainer.explain`` for a batch of N windows (x's dtype and device).

    relevance (N, 4, L): input relevance (contribution scores).
    hypothetical (N, 4, L): first-layer multiplier before the product with the input.
    score (N,): explained score (sum of the output seed).
    conservation_error (N,): |sum(relevance) - score| / |score|; |sum(relevance)| where
        score == 0 (so 0 for an all-zero window); never NaN/Inf.
    layers: {layer name: relevance at that layer's input} when asked, else None.
    """

    relevance: torch.Tensor
    hypothetical: torch.Tensor
    score: torch.Tensor
    conservation_error: torch.Tensor
    layers: dict | None = None


def _check_p(p, what: str):
    values = p.values() if isinstance(p, dict) else [p]
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise PlrpError(f"{what} = {v!r} is not a number") from None
        if not 0.0 <= v < 1.0:
            raise PlrpError(f"{what} = {v}: must be in [0, 1)")


class Explainer:
    """Explain one model with one composite and one pruning setting (see plan contracts 1).

    Args:
      model: an nn.Module taking (N, 4, L) and returning a tensor or a tuple of tensors.
      composite: shipped composite name or path to a .toml file.
      p_pos, p_neg: proportion of positive / negative relevance mass pruned per layer, a
        float or a {layer_name: p, "*": default} schedule; p_neg None means p_pos / 2.
      variant: "lambda" (rescale kept relevance) or "m" (recompute with a mask).
      prunable: None (every Conv1d/Linear except those reading the input) or layer names.
      maxpool: None (the composite decides), "wta" or "proportional".
      dtype: None (float32) or torch.float64.
    """

    def __init__(self, model: nn.Module, *, composite="epsilon", p_pos=0.0, p_neg=None,
                 variant="lambda", prunable=None, maxpool=None, dtype=None):
        if variant not in VARIANTS:
            raise PlrpError(f"variant {variant!r}: expected 'lambda' or 'm'")
        _check_p(p_pos, "p_pos")
        if p_neg is None:
            p_neg = ({k: float(v) / 2 for k, v in p_pos.items()} if isinstance(p_pos, dict)
                     else float(p_pos) / 2)
        _check_p(p_neg, "p_neg")
        if maxpool not in (None, "wta", "proportional"):
            raise PlrpError(f"maxpool {maxpool!r}: expected 'wta' or 'proportional'")
        if dtype not in (None, torch.float32, torch.float64):
            raise PlrpError(f"dtype {dtype}: expected torch.float32 or torch.float64")
        self.dtype = dtype or torch.float32
        self.variant = variant
        self.original_model = model
        self.composite: Composite = load_composite(composite)
        self.maxpool = maxpool or self.composite.maxpool
        # stabiliser of the non-parametric ops (add, average pooling, proportional max-pool)
        self.op_eps = self.composite.op_epsilon
        self.traced: TracedModel = trace_model(model)
        self.traced.module.to(self.dtype)
        tm = self.traced
        layer_list = [tm.layer_names[n] for n in tm.linear_nodes]
        self.layer_list = layer_list
        self.composite.check_names(layer_list)
        if prunable is None:
            prunable_set = set(layer_list) - tm.input_layers
        else:
            prunable_set = set(prunable)
            unknown = prunable_set - set(layer_list)
            if unknown:
                raise PlrpError(f"prunable: {', '.join(sorted(unknown))} is not a Conv1d/Linear"
                                f" layer of this model; layers: {', '.join(layer_list)}")
        for p, what in ((p_pos, "p_pos"), (p_neg, "p_neg")):
            if isinstance(p, dict):
                unknown = set(p) - set(layer_list) - {"*"}
                if unknown:
                    raise PlrpError(f"{what} schedule names {', '.join(sorted(unknown))}, not a"
                                    f" Conv1d/Linear layer; layers: {', '.join(layer_list)}")
        self.p_pos, self.p_neg = p_pos, p_neg
        self.prunable = prunable_set
        self.rules = {}
        self.prune_p = {}
        for node_name in tm.linear_nodes:
            name = tm.layer_names[node_name]
            spec = tm.specs[node_name]
            self.rules[node_name] = self.composite.rule_for(
                name, spec.layer_type, name in tm.input_layers)
            pp = resolve_schedule(p_pos, name, prunable_set)
            pn = resolve_schedule(p_neg, name, prunable_set)
            if pp > 0 or pn > 0:
                self.prune_p[node_name] = (pp, pn)
        self._chain = self._input_chain()
        self._ops: dict = {}
        self._device = None

    # ------------------------------------------------------------------ public API
    def explain(self, x: torch.Tensor, target, return_layers: bool = False) -> Explanation:
        """Explain ``target`` for the windows x (N, 4, L); see ``Explanation``."""
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise PlrpError("x must be a tensor of shape (N, 4, L)")
        spec = normalise_target(target, self.original_model)
        out_dtype = x.dtype if x.is_floating_point() else self.dtype
        xw = x.detach().to(self.dtype)
        self._to_device(xw.device)
        with torch.no_grad():
            try:
                env, aux = self._forward(xw)
            except RuntimeError as err:   # wrong channels / window length for this model
                first = str(err).strip().splitlines()[0] if str(err).strip() else "error"
                raise PlrpError(f"the model cannot run on input of shape {tuple(x.shape)}: "
                                f"{first}") from None
            outputs = self._outputs(env)
            seeds = seed(outputs, spec)
            rel, hyp, layers = self._backward(env, aux, seeds, return_layers)
        seeded = [s for s in seeds if s is not None][0]
        score = seeded.reshape(seeded.shape[0], -1).sum(1)
        total = rel.reshape(rel.shape[0], -1).sum(1)
        # float64 and clamped: a denormal score must not turn the error into Inf
        score64 = score.to(torch.float64)
        diff = (total.to(torch.float64) - score64).abs()
        nonzero = score64 != 0
        err = torch.where(nonzero, diff / torch.where(nonzero, score64.abs(), 1.0), diff)
        err = err.clamp(max=torch.finfo(out_dtype).max)

        def cast(t):
            return t.to(out_dtype)
        return Explanation(cast(rel), cast(hyp), cast(score), cast(err),
                           {k: cast(v) for k, v in layers.items()} if return_layers else None)

    # ------------------------------------------------------------------ setup helpers
    def _to_device(self, device):
        if self._device != device:
            self.traced.module.to(device)
            self._ops = {}
            self._device = device

    def _input_chain(self) -> set:
        """The model input and the route/passthrough/scale nodes applied to it alone."""
        tm = self.traced
        chain = {tm.input_node}
        for node in tm.nodes:
            if tm.specs[node.name].kind in ("route", "passthrough", "scale"):
                srcs = [a for a in _node_args(node) if tm.specs[a.name].kind != "const"]
                if len(srcs) == 1 and srcs[0].name in chain:
                    chain.add(node.name)
        return chain

    def _linear_op(self, node: fx.Node, env) -> LinearOp:
        if node.op == "call_module":
            if node.name not in self._ops:
                m = self.traced.module.get_submodule(node.target)
                if isinstance(m, nn.Conv1d):
                    self._ops[node.name] = LinearOp("conv", m.weight, m.bias, m.stride,
                                                    m.padding, m.dilation)
                else:
                    self._ops[node.name] = LinearOp("linear", m.weight, m.bias)
            return self._ops[node.name]
        args, kwargs = _resolve(node, env)
        names = (["input", "weight", "bias", "stride", "padding", "dilation"]
                 if node.target is F.conv1d else ["input", "weight", "bias"])
        bound = dict(zip(names, args))
        bound.update(kwargs)
        if node.target is F.conv1d:
            return LinearOp("conv", bound["weight"], bound.get("bias"), bound.get("stride", 1),
                            bound.get("padding", 0), bound.get("dilation", 1))
        return LinearOp("linear", bound["weight"], bound.get("bias"))

    # ------------------------------------------------------------------ forward
    def _forward(self, x):
        tm = self.traced
        gm = tm.module
        env, aux = {}, {}
        for node in tm.nodes:
            kind = tm.specs[node.name].kind
            if node.op == "placeholder":
                env[node.name] = x if node.name == tm.input_node else tm.defaults[node.name]
                continue
            if node.op == "output":
                continue
            args, kwargs = _resolve(node, env)
            if tm.specs[node.name].inplace and isinstance(args[0], torch.Tensor):
                # the backward walk needs the input's value: never let an op overwrite it
                args = (args[0].clone(),) + tuple(args[1:])
            if kind == "maxpool":
                env[node.name], aux[node.name] = self._max_forward(node, args, kwargs)
                continue
            if kind == "avgpool":
                _check_dims(node, args, kwargs)
            env[node.name] = _call(gm, node, args, kwargs)
        return env, aux

    def _max_forward(self, node, args, kwargs):
        """Max-pooling that also keeps the argmax indices (wta)."""
        gm = self.traced.module
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            a = args[0]
            if isinstance(m, nn.MaxPool1d):
                out, idx = F.max_pool1d(a, m.kernel_size, m.stride, m.padding, m.dilation,
                                        m.ceil_mode, return_indices=True)
            else:
                out, idx = F.adaptive_max_pool1d(a, m.output_size, return_indices=True)
            return out, ("pool", idx)
        if node.target in (F.max_pool1d, F.adaptive_max_pool1d):
            kwargs = dict(kwargs)
            kwargs["return_indices"] = True
            if node.target is F.max_pool1d and len(args) > 6:
                args = args[:6]
            if node.target is F.adaptive_max_pool1d and len(args) > 2:
                args = args[:2]
            out, idx = node.target(*args, **kwargs)
            return out, ("pool", idx)
        a = args[0]
        dim, keepdim = _dim_keepdim(node, args, kwargs)
        dim = _norm_dim(node, dim, a.dim())
        values, idx = torch.max(a, dim=dim, keepdim=True)
        result = values if keepdim else values.squeeze(dim)
        if node.target in (torch.max, "max"):
            result = torch.return_types.max((result, idx if keepdim else idx.squeeze(dim)))
        return result, ("dim", idx, dim, keepdim)

    def _outputs(self, env) -> list:
        out_node = [n for n in self.traced.nodes if n.op == "output"][0]
        value = fx.node.map_arg(out_node.args[0], lambda n: env[n.name])
        items = list(value) if isinstance(value, (tuple, list)) else [value]
        if not all(isinstance(t, torch.Tensor) for t in items):
            raise UnsupportedModelError("the model must return a tensor or a tuple of tensors")
        return items

    # ------------------------------------------------------------------ backward
    def _backward(self, env, aux, seeds, return_layers):
        tm = self.traced
        R: dict[str, torch.Tensor] = {}
        H: dict[str, torch.Tensor] = {}
        layers: dict[str, torch.Tensor] = {}

        def give(src, r, h=None):
            if not isinstance(src, fx.Node) or tm.specs[src.name].kind == "const":
                return
            R[src.name] = R[src.name] + r if src.name in R else r
            if src.name in self._chain:
                h = r if h is None else h
                H[src.name] = H[src.name] + h if src.name in H else h

        out_node = [n for n in tm.nodes if n.op == "output"][0]
        out_args = out_node.args[0]
        out_nodes = list(out_args) if isinstance(out_args, (tuple, list)) else [out_args]
        for node, s in zip(out_nodes, seeds):
            if s is not None:
                give(node, s)

        record = return_layers
        given: list = []

        def give_recorded(src, r, h=None):
            given.append(r)
            give(src, r, h)

        for node in reversed(tm.nodes):
            if node.name not in R or node.op in ("placeholder", "output"):
                continue
            given.clear()
            give_fn = give_recorded if record else give
            r_out = R.pop(node.name)
            h_out = H.pop(node.name, None)
            kind = tm.specs[node.name].kind
            if kind == "linear":
                self._linear_step(node, env, r_out, give_fn, layers if return_layers else None)
            elif kind == "passthrough":
                give_fn(_tensor_args(node, tm)[0], r_out, h_out)
            elif kind == "scale":
                src = _tensor_args(node, tm)[0]
                shape = env[src.name].shape
                give_fn(src, r_out.sum_to_size(shape),
                        None if h_out is None else h_out.sum_to_size(shape))
            elif kind == "route":
                srcs = _tensor_args(node, tm)
                grads = _vjp(tm.module, node, env, srcs, r_out)
                hgrads = _vjp(tm.module, node, env, srcs, h_out) if h_out is not None else None
                for i, src in enumerate(srcs):
                    give_fn(src, grads[i], None if hgrads is None else hgrads[i])
            elif kind == "add":
                self._add_step(node, env, r_out, give)
            elif kind == "avgpool":
                src = _tensor_args(node, tm)[0]
                s = r_out / stabilise(env[node.name], self.op_eps)
                mult = _vjp(tm.module, node, env, [src], s)[0]
                give_fn(src, env[src.name] * mult, mult)
            elif kind == "maxpool":
                src = _tensor_args(node, tm)[0]
                give_fn(src, self._max_step(node, env, aux, r_out))
            elif kind == "select":
                give_fn(node.args[0], r_out)
            else:  # pragma: no cover - graph.py rejects everything else
                raise UnsupportedModelError(f"no relevance rule for node {node.name!r}")
            if record and node.op == "call_module" and kind != "linear" and given:
                layers[node.target] = given[0]

        if return_layers:
            # layers no relevance reached (e.g. the other head) get explicit zeros
            for node_name in tm.linear_nodes:
                name = tm.layer_names[node_name]
                if name not in layers:
                    src = [n for n in tm.nodes if n.name == node_name][0]
                    src = src.args[0] if src.args else src.kwargs["input"]
                    layers[name] = torch.zeros_like(env[src.name])
        x = env[tm.input_node]
        rel = R.get(tm.input_node, torch.zeros_like(x))
        hyp = H.get(tm.input_node, torch.zeros_like(x))
        return rel, hyp, layers

    def _linear_step(self, node, env, r_out, give, layers):
        tm = self.traced
        src = node.args[0] if node.args else node.kwargs["input"]
        a = env[src.name]
        z = env[node.name]
        op = self._linear_op(node, env)
        rule = self.rules[node.name]
        r_in, mult = rule.relevance(op, a, z, r_out)
        if node.name in self.prune_p:
            pp, pn = self.prune_p[node.name]
            pruning = select(r_in, pp, pn)
            if self.variant == "lambda":
                r_in = apply_lambda(r_in, pruning)
            else:
                # hypothetical (input layer only) ignores the pruning of its own input
                r_in, _ = rule.relevance(op, a, z, r_out, mask=pruning.keep.to(a.dtype))
        if layers is not None:
            layers[tm.layer_names[node.name]] = r_in
        give(src, r_in, mult if rule.product else r_in)

    def _add_step(self, node, env, r_out, give):
        y = env[node.name]
        args, kwargs = _resolve(node, env)
        target = node.target
        sub = target in (operator.sub, torch.sub, operator.isub, "sub", "sub_")
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        coefs = [1.0, -alpha if sub else alpha]
        srcs = [node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")]
        vals = [args[0], args[1] if len(args) > 1 else kwargs.get("other")]
        s = r_out / stabilise(y, self.op_eps)
        for src, val, coef in zip(srcs, vals, coefs):
            if isinstance(src, fx.Node) and self.traced.specs[src.name].kind != "const":
                h = (coef * s).sum_to_size(val.shape)
                give(src, (coef * val * s).sum_to_size(val.shape), h)

    def _max_step(self, node, env, aux, r_out):
        src = _tensor_args(node, self.traced)[0]
        a = env[src.name]
        info = aux[node.name]
        if self.maxpool == "wta":
            if info[0] == "pool":
                idx = info[1]
                return torch.zeros_like(a).scatter_add_(-1, idx, r_out)
            _, idx, dim, keepdim = info
            r = r_out if keepdim else r_out.unsqueeze(dim)
            return torch.zeros_like(a).scatter_add_(dim, idx, r)
        # proportional: R_j = a_j / (sum of the window + eps sgn) * R_k
        if info[0] == "pool":
            sums = lambda t: _window_sum(self.traced.module, node, t, r_out.shape[-1])  # noqa
            with torch.enable_grad():
                leaf = a.detach().requires_grad_(True)
                z = sums(leaf)
                s = r_out / stabilise(z.detach(), self.op_eps)
                (g,) = torch.autograd.grad(z, leaf, s)
            return a * g
        _, idx, dim, keepdim = info
        z = a.sum(dim=dim, keepdim=True)
        r = r_out if keepdim else r_out.unsqueeze(dim)
        return a * (r / stabilise(z, self.op_eps))


# ---------------------------------------------------------------------------- helpers
def _node_args(node):
    found = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
    return found


def _tensor_args(node, tm) -> list:
    seen, out = set(), []
    for a in _node_args(node):
        if tm.specs[a.name].kind != "const" and a.name not in seen:
            seen.add(a.name)
            out.append(a)
    return out


def _resolve(node, env):
    args = fx.node.map_arg(node.args, lambda n: env[n.name])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
    return args, kwargs


def _call(gm, node, args, kwargs):
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
    raise UnsupportedModelError(f"cannot run node {node.name!r} ({node.op})")


def _vjp(gm, node, env, srcs, cotangent):
    """Transpose of a linear node op w.r.t. the given source nodes, at cotangent."""
    names = {s.name for s in srcs}
    with torch.enable_grad():
        leaves = {s.name: env[s.name].detach().requires_grad_(True) for s in srcs}
        args = fx.node.map_arg(node.args, lambda n: leaves[n.name] if n.name in names
                               else env[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: leaves[n.name] if n.name in names
                                 else env[n.name])
        out = _call(gm, node, args, kwargs)
        grads = torch.autograd.grad(out, [leaves[s.name] for s in srcs], cotangent,
                                    allow_unused=True)
    return [torch.zeros_like(env[s.name]) if g is None else g for s, g in zip(srcs, grads)]


def _dim_keepdim(node, args, kwargs):
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    if isinstance(dim, (tuple, list)):
        dim = dim[0]
    return dim, bool(keepdim)


def _norm_dim(node, dim, ndim):
    d = dim + ndim if dim < 0 else dim
    if d == 0:
        raise UnsupportedModelError(
            f"unsupported reduction over the batch dimension at node '{node.name}' "
            f"(it would mix the windows of a batch)")
    return d


def _check_dims(node, args, kwargs):
    if node.target in (torch.mean, torch.sum, "mean", "sum"):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        dims = dim if isinstance(dim, (tuple, list)) else [dim]
        for d in dims:
            _norm_dim(node, d, args[0].dim())


def _window_sum(gm, node, a, out_len):
    """Sum of each max-pooling window (padding counts as 0), shape of the pool output."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.AdaptiveMaxPool1d):
            return _adaptive_sum(a, out_len)
        k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
    elif node.target is F.adaptive_max_pool1d:
        return _adaptive_sum(a, out_len)
    else:
        names = ["input", "kernel_size", "stride", "padding", "dilation"]
        bound = dict(zip(names, node.args))
        bound.update(node.kwargs)
        k = bound["kernel_size"]
        s = bound.get("stride") or k
        p, d = bound.get("padding", 0), bound.get("dilation", 1)
    k, s, p, d = (int(v[0]) if isinstance(v, (tuple, list)) else int(v) for v in (k, s, p, d))
    span = d * (k - 1) + 1
    length = a.shape[-1]
    right = max(0, (out_len - 1) * s + span - (length + p))
    padded = F.pad(a, (p, right))
    windows = padded.unfold(-1, span, s)[..., ::d]
    return windows[..., :out_len, :].sum(-1)


def _adaptive_sum(a, out_len):
    length = a.shape[-1]
    parts = []
    for i in range(out_len):
        start = (i * length) // out_len
        end = -((-(i + 1) * length) // out_len)
        parts.append(a[..., start:end].sum(-1, keepdim=True))
    return torch.cat(parts, dim=-1)


def explain_tensor(model, x, target, *, composite="epsilon", p_pos=0.0, p_neg=None,
                   variant="lambda") -> torch.Tensor:
    """Input relevance (N, 4, L) of ``target`` for windows x (N, 4, L), x's dtype/device.

    Computed in float64 when x is float64 (a copy of the model is converted; the model is
    untouched), else in float32. One-shot wrapper around
    ``Explainer(...).explain(x, target).relevance``; build an Explainer yourself to explain
    many batches (the model is traced once).
    """
    dtype = torch.float64 if x.dtype == torch.float64 else None
    return Explainer(model, composite=composite, p_pos=p_pos, p_neg=p_neg, variant=variant,
                     dtype=dtype).explain(x, target).relevance
