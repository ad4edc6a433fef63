"""The backward walk: Explainer, explain_tensor, Walk.

``Explainer`` traces and canonises a model once (graph.trace_model), assigns a rule to every
Conv1d/Linear layer (composites), and for each batch:
  1. runs the graph forward, storing every node's value (and what an op's forward handler
     keeps, such as max-pool argmax indices);
  2. seeds the output relevance for the target (targets.seed);
  3. walks the nodes in reverse order (``Walk``), each node's op-table handler (ops.py)
     pushing relevance to the nodes it reads (fan-out relevances add up); the input
     relevance of prunable layers is pruned per window (prune.py).
Nothing reduces over the batch dimension, so each window's result is independent of the
other windows in its batch; BatchExplainer (batch.py) relies on that to stack the walks of
several targets and methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plrp.engine.composites import Composite, load_composite
from plrp.engine.graph import TracedModel, trace_model, unwrap_model
from plrp.engine.ops import OP_KINDS, call, node_args, resolve
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
      traced: a TracedModel of ``model`` to share (explainers that share one share its
        forward; BatchExplainer does this); None traces the model.
    """

    def __init__(self, model: nn.Module, *, composite="epsilon", p_pos=0.0, p_neg=None,
                 variant="lambda", prunable=None, maxpool=None, dtype=None, traced=None):
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
        model = unwrap_model(model)
        self.original_model = model
        self.composite: Composite = load_composite(composite)
        self.maxpool = maxpool or self.composite.maxpool
        # stabiliser of the non-parametric ops (add, average pooling, proportional max-pool)
        self.op_eps = self.composite.op_epsilon
        self.traced: TracedModel = trace_model(model) if traced is None else traced
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
        spec = normalise_target(target, self.original_model)
        out_dtype = x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() \
            else self.dtype
        env, extra = self.forward(x)
        with torch.no_grad():
            seeds = seed(self.outputs(env), spec)
            walk = Walk(self, env, extra, self.segments(0, x.shape[0]))
            rel, hyp, layers = walk.run(seeds, return_layers)
        seeded = [s for s in seeds if s is not None][0]
        score = seeded.reshape(seeded.shape[0], -1).sum(1)
        err = conservation_error(rel, score, out_dtype)

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
                srcs = [a for a in node_args(node) if tm.specs[a.name].kind != "const"]
                if len(srcs) == 1 and srcs[0].name in chain:
                    chain.add(node.name)
        return chain

    def segments(self, lo: int, hi: int) -> dict:
        """{linear node: [(first row, end row, p_pos, p_neg)]}: this explainer's pruning for
        rows lo..hi of a stacked batch, as rows 0..hi-lo."""
        return {name: [(0, hi - lo, pp, pn)] for name, (pp, pn) in self.prune_p.items()}

    def linear_op(self, node: fx.Node, env) -> LinearOp:
        """The LinearOp (weights, stride...) of a Conv1d/Linear node (cached per device)."""
        if node.op == "call_module":
            if node.name not in self._ops:
                m = self.traced.module.get_submodule(node.target)
                if isinstance(m, nn.Conv1d):
                    self._ops[node.name] = LinearOp("conv", m.weight, m.bias, m.stride,
                                                    m.padding, m.dilation)
                else:
                    self._ops[node.name] = LinearOp("linear", m.weight, m.bias)
            return self._ops[node.name]
        args, kwargs = resolve(node, env)
        names = (["input", "weight", "bias", "stride", "padding", "dilation"]
                 if node.target is F.conv1d else ["input", "weight", "bias"])
        bound = dict(zip(names, args))
        bound.update(kwargs)
        if node.target is F.conv1d:
            return LinearOp("conv", bound["weight"], bound.get("bias"), bound.get("stride", 1),
                            bound.get("padding", 0), bound.get("dilation", 1))
        return LinearOp("linear", bound["weight"], bound.get("bias"))

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor):
        """Run the graph once on x (N, 4, L) (no autograd), keeping every node's value.

        Returns (env, extra): node name -> value, node name -> what an op's forward handler
        kept for its backward (max-pool indices).
        """
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise PlrpError("x must be a tensor of shape (N, 4, L)")
        xw = x.detach().to(self.dtype)
        self._to_device(xw.device)
        tm = self.traced
        gm = tm.module
        env, extra = {}, {}
        with torch.no_grad():
            try:
                for node in tm.nodes:
                    if node.op == "placeholder":
                        env[node.name] = xw if node.name == tm.input_node \
                            else tm.defaults[node.name]
                        continue
                    if node.op == "output":
                        continue
                    spec = tm.specs[node.name]
                    args, kwargs = resolve(node, env)
                    if spec.inplace and isinstance(args[0], torch.Tensor):
                        # the backward walk needs the input's value: never overwrite it
                        args = (args[0].clone(),) + tuple(args[1:])
                    rule = OP_KINDS.get(spec.kind)
                    if rule is not None and rule.forward is not None:
                        env[node.name], extra[node.name] = rule.forward(
                            _ForwardContext(gm), node, args, kwargs)
                    else:
                        env[node.name] = call(gm, node, args, kwargs)
            except RuntimeError as err:   # wrong channels / window length for this model
                first = str(err).strip().splitlines()[0] if str(err).strip() else "error"
                raise PlrpError(f"the model cannot run on input of shape {tuple(x.shape)}: "
                                f"{first}") from None
        return env, extra

    def outputs(self, env) -> list:
        """The model's output tensors (a list, one per head) from a forward's env."""
        out_node = self.traced.nodes[-1] if self.traced.nodes[-1].op == "output" else \
            [n for n in self.traced.nodes if n.op == "output"][0]
        value = fx.node.map_arg(out_node.args[0], lambda n: env[n.name])
        items = list(value) if isinstance(value, (tuple, list)) else [value]
        if not all(isinstance(t, torch.Tensor) for t in items):
            raise UnsupportedModelError("the model must return a tensor or a tuple of tensors")
        return items


class _ForwardContext:
    """What an op's forward handler may read (the traced module)."""

    def __init__(self, module):
        self.module = module


class Walk:
    """One backward walk over a (possibly stacked) batch of rows; handlers' view of it.

    env / extra: the forward's values (one row per window, or per stacked row);
    segments: {linear node: [(first row, end row, p_pos, p_neg)]}, the rows each pruning
    setting applies to (rows outside every segment are not pruned at that layer).
    """

    def __init__(self, explainer: Explainer, env, extra, segments: dict):
        self.ex = explainer
        self.env = env
        self._extra = extra
        self.segments = segments
        self.module = explainer.traced.module
        self.specs = explainer.traced.specs
        self.op_eps = explainer.op_eps
        self.maxpool = explainer.maxpool
        self.layers: dict | None = None

    # ------------------------------------------------------------------ handler API
    def value(self, node: fx.Node):
        return self.env[node.name]

    def shape(self, node: fx.Node) -> torch.Size:
        """Shape of a node's value (without copying stacked rows that only give a shape)."""
        shape_of = getattr(self.env, "shape_of", None)
        return shape_of(node.name) if shape_of is not None else self.env[node.name].shape

    def stabilised(self, node: fx.Node, eps: float) -> torch.Tensor:
        """z + eps sgn z of a node's value; a stacked env computes it on its windows once."""
        shared = getattr(self.env, "stabilised", None)
        return shared(node.name, eps) if shared is not None else \
            stabilise(self.env[node.name], eps)

    def extra(self, node: fx.Node):
        return self._extra[node.name]

    @property
    def tiles(self) -> int:
        """k > 1 when the rows are k stacked copies of the N windows (row i reads window
        i mod N): the ``window_*`` values then have N rows, to broadcast (rules.rowwise)."""
        return getattr(self.env, "tiles", 1)

    def window_value(self, node: fx.Node):
        """A node's value with one row per window (the rows' own value when not tiled)."""
        return self.env.window(node.name) if self.tiles > 1 else self.env[node.name]

    def window_stabilised(self, node: fx.Node, eps: float) -> torch.Tensor:
        if self.tiles > 1:
            return self.env.window_stabilised(node.name, eps)
        return self.stabilised(node, eps)

    def window_extra(self, node: fx.Node):
        return self._extra.window(node.name) if self.tiles > 1 else self._extra[node.name]

    def is_tensor(self, node: fx.Node) -> bool:
        return self.specs[node.name].kind != "const"

    def sources(self, node: fx.Node) -> list:
        """The node's input-dependent arguments, first occurrence order."""
        seen, out = set(), []
        for a in node_args(node):
            if self.specs[a.name].kind != "const" and a.name not in seen:
                seen.add(a.name)
                out.append(a)
        return out

    def linear_step(self, node, r_out) -> list:
        """The composite's rule for a Conv1d/Linear node, then PLRP pruning of its rows."""
        ex = self.ex
        src = node.args[0] if node.args else node.kwargs["input"]
        op = ex.linear_op(node, self.env)
        rule = ex.rules[node.name]
        # PLRP-M re-runs the rule on row ranges of a, so it needs a per row
        if rule.shares_denominator and ex.variant == "lambda":
            a, z = self.window_value(src), None     # broadcast over tiled rows
            shared = {"stab": lambda eps: self.window_stabilised(node, eps)}
        elif rule.shares_denominator:  # z itself unused: a stacked env need not gather it
            a, z = self.env[src.name], None
            shared = {"stab": lambda eps: self.stabilised(node, eps)}
        else:
            a = self.env[src.name]
            z, shared = self.env[node.name], {}
        r_in, mult = rule.relevance(op, a, z, r_out, **shared)
        for lo, hi, pp, pn in self.segments.get(node.name, ()):
            whole = lo == 0 and hi == r_in.shape[0]
            part = r_in if whole else r_in[lo:hi]
            pruning = select(part, pp, pn)
            if ex.variant == "lambda":
                part = apply_lambda(part, pruning)
            else:
                # hypothetical (input layer only) ignores the pruning of its own input
                part, _ = rule.relevance(op, a[lo:hi], None if z is None else z[lo:hi],
                                         r_out[lo:hi], mask=pruning.keep.to(a.dtype))
            if whole:
                r_in = part
            else:
                r_in[lo:hi] = part
        if self.layers is not None:
            self.layers[ex.traced.layer_names[node.name]] = r_in
        return [(src, r_in, mult if rule.product else r_in)]

    # ------------------------------------------------------------------ the walk
    def run(self, seeds: list, return_layers: bool = False):
        """Walk from the output seeds to the input: (relevance, hypothetical, layers)."""
        tm = self.ex.traced
        chain = self.ex._chain
        R: dict[str, torch.Tensor] = {}
        H: dict[str, torch.Tensor] = {}
        self.layers = {} if return_layers else None

        def give(src, r, h=None):
            if not isinstance(src, fx.Node) or tm.specs[src.name].kind == "const":
                return
            R[src.name] = R[src.name] + r if src.name in R else r
            if src.name in chain:
                h = r if h is None else h
                H[src.name] = H[src.name] + h if src.name in H else h

        out_node = [n for n in tm.nodes if n.op == "output"][0]
        out_args = out_node.args[0]
        out_nodes = list(out_args) if isinstance(out_args, (tuple, list)) else [out_args]
        for node, s in zip(out_nodes, seeds):
            if s is not None:
                give(node, s)

        for node in reversed(tm.nodes):
            if node.name not in R or node.op in ("placeholder", "output"):
                continue
            kind = tm.specs[node.name].kind
            rule = OP_KINDS.get(kind)
            if rule is None:  # pragma: no cover - graph.py rejects everything else
                raise UnsupportedModelError(f"no relevance rule for node {node.name!r}")
            given = rule.backward(self, node, R.pop(node.name), H.pop(node.name, None))
            for src, r, h in given:
                give(src, r, h)
            if return_layers and node.op == "call_module" and kind != "linear" and given:
                self.layers[node.target] = given[0][1]

        layers = self.layers
        if return_layers:
            # layers no relevance reached (e.g. the other head) get explicit zeros
            for node_name in tm.linear_nodes:
                name = tm.layer_names[node_name]
                if name not in layers:
                    src = [n for n in tm.nodes if n.name == node_name][0]
                    src = src.args[0] if src.args else src.kwargs["input"]
                    layers[name] = torch.zeros_like(self.env[src.name])
        x = self.env[tm.input_node]
        rel = R.get(tm.input_node, torch.zeros_like(x))
        hyp = H.get(tm.input_node, torch.zeros_like(x))
        return rel, hyp, layers


def conservation_error(rel: torch.Tensor, score: torch.Tensor, out_dtype) -> torch.Tensor:
    """|sum(rel) - score| / |score| per row ((rows, ...) and (rows,)), |sum(rel)| where the
    score is 0; computed in float64 and clamped to out_dtype's range (never NaN/Inf)."""
    total = rel.reshape(rel.shape[0], -1).sum(1)
    score64 = score.to(torch.float64)
    diff = (total.to(torch.float64) - score64).abs()
    nonzero = score64 != 0
    err = torch.where(nonzero, diff / torch.where(nonzero, score64.abs(), 1.0), diff)
    return err.clamp(max=torch.finfo(out_dtype).max)


def explain_tensor(model, x, target, *, composite="epsilon", p_pos=0.0, p_neg=None,
                   variant="lambda", rc_average=False) -> torch.Tensor:
    """Input relevance (N, 4, L) of ``target`` for windows x (N, 4, L), x's dtype/device.

    Computed in float64 when x is float64 (a copy of the model is converted; the model is
    untouched), else in float32. One-shot wrapper around
    ``Explainer(...).explain(x, target).relevance``; build an Explainer yourself to explain
    many batches (the model is traced once). rc_average: the mean of x's relevance and its
    reverse complement's mapped back (ACGT order; see BatchExplainer).
    """
    dtype = torch.float64 if x.dtype == torch.float64 else None
    if rc_average:
        from plrp.engine.batch import BatchExplainer   # batch.py builds on this module
        method = dict(p_pos=p_pos, p_neg=p_neg, variant=variant)
        out = BatchExplainer(model, [target], {"m": method}, composite=composite,
                             rc_average=True, dtype=dtype).explain(x)
        return out.relevance[0, 0].to(x.dtype if x.is_floating_point() else out.relevance.dtype)
    return Explainer(model, composite=composite, p_pos=p_pos, p_neg=p_neg, variant=variant,
                     dtype=dtype).explain(x, target).relevance
