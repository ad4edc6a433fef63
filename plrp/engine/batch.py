"""BatchExplainer: every (method, target) of a batch of windows from one forward pass.

    be = BatchExplainer(model, targets=["output_0", 3], methods={"lrp": dict(p_pos=0.0),
                        "plrp": dict(p_pos=0.1, p_neg=0.05, variant="lambda")})
    out = be.explain(x)                  # x (N, 4, L)
    out.relevance                        # (M, T, N, 4, L)

How: one forward of the N windows (2N with ``rc_average``: x and its reverse complement)
stores every node's value. The backward walks of all targets, and of all methods that share
a variant and a max-pool rule, are then stacked along the batch dimension: row
(method k, target t, window w) reads the stored activations of window w (copied per chunk
of at most ``max_stack`` rows) and starts from target t's seed. Pruning selects per row, so
each method's p applies to its own rows, and a row's result does not depend on the others.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from torch import nn

from plrp.engine.graph import trace_model, unwrap_model
from plrp.engine.ops import call, resolve
from plrp.engine.propagate import Explainer, Walk, conservation_error
from plrp.engine.rules import stabilise
from plrp.engine.targets import normalise_target, seed
from plrp.errors import PlrpError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "bf16")
# bytes of stored activations copied per chunk when max_stack is None: on the CPU big
# enough for large matmuls, small enough for a laptop; on a GPU up to an eighth of its free
# memory (the walk's temporaries take a few times the copied activations)
STACK_BYTES = 1 << 30
GPU_STACK_BYTES = 8 << 30


@dataclass
class BatchExplanation:
    """Result of ``BatchExplainer.explain`` for N windows, M methods, T targets.

    relevance, hypothetical (M, T, N, 4, L); score, conservation_error (M, T, N).
    On x's device, float32 (float64 when the explainer was built with dtype=torch.float64).
    With rc_average, each is the mean of the window's and its reverse complement's (mapped
    back), and conservation_error is that of the averaged relevance against the mean score.
    """

    relevance: torch.Tensor
    hypothetical: torch.Tensor
    score: torch.Tensor
    conservation_error: torch.Tensor


def target_name(target, model) -> str:
    """A display name for a target: its own name, the model's output name, or the spec."""
    if isinstance(target, str):
        return target
    spec = normalise_target(target, model)
    names = getattr(model, "output_names", None)
    if isinstance(target, int) and names and 0 <= target < len(names):
        return str(names[target])
    if spec["kind"] == "logit":
        return f"head{spec['head']}:{spec['index']}" if spec["head"] else str(spec["index"])
    return f"{spec['kind']}:{spec['head']}"


def reverse_complement(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of one-hot windows (..., 4, L) in ACGT order: reverse the
    positions and flip the channels (A<->T, C<->G). Its own inverse, so it also maps the
    attribution of a reverse complement back onto the forward strand."""
    return x.flip(-1).flip(-2)


@contextlib.contextmanager
def precision_scope(precision: str, device: torch.device):
    """Run the enclosed forward/backward at ``precision`` on ``device``; restores the
    global TF32 switches afterwards.

    fp32: true float32 (TF32 off for CUDA matmuls and cuDNN convolutions);
    tf32: TF32 tensor cores on for both (CUDA only; on other devices a no-op, logged);
    bf16: autocast to bfloat16 of the matmuls and convolutions (CPU and CUDA).
    """
    if precision not in PRECISIONS:
        raise PlrpError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if device.type != "cuda":
        if precision == "tf32":
            log.info("precision tf32 has no effect on %s: running float32", device.type)
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    on = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _take(value, rows: torch.Tensor):
    """value's rows (dim 0) at the given indices; tuples element-wise; others unchanged."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, rows) if value.dim() else value
    if isinstance(value, (tuple, list)):
        taken = [_take(v, rows) for v in value]
        if hasattr(value, "_fields"):                 # a namedtuple
            return type(value)(*taken)
        return type(value)(taken)                     # tuple, list, torch.return_types
    return value


class _StackedEnv(dict):
    """The forward's values for a chunk of stacked rows, copied on first use: rows of
    window-dependent nodes are gathered, shape-derived nodes (batch size...) recomputed,
    constants shared.

    tiles: k > 1 when the chunk's rows are k whole copies of the windows, in window order
    (row i reads window i mod N); handlers then read per-window values (``window``,
    ``window_stabilised``) and broadcast them over the k copies instead of gathering."""

    def __init__(self, base: dict, rows: torch.Tensor, traced, nodes: dict,
                 shared: dict | None = None, tiles: int = 1):
        super().__init__()
        self.base, self.rows, self.traced, self.nodes = base, rows, traced, nodes
        self.tiles = tiles
        # per-window values derived from the forward, computed once for all chunks
        self.shared = {} if shared is None else shared
        self._gathered: dict = {}

    def window(self, name: str):
        """A node's value per window (N, ...), not copied."""
        return self.base[name]

    def __missing__(self, name):
        tm = self.traced
        if name in tm.shape_nodes:
            node = self.nodes[name]
            value = call(tm.module, node, *resolve(node, self))
        elif tm.specs[name].kind == "const":
            value = self.base[name]
        else:
            value = _take(self.base[name], self.rows)
        self[name] = value
        return value

    def window_stabilised(self, name: str, eps: float) -> torch.Tensor:
        """z + eps sgn z of node ``name`` per window (N, ...), computed once for all chunks."""
        key = ("stabilised", name, eps)
        if key not in self.shared:
            self.shared[key] = stabilise(self.base[name], eps)
        return self.shared[key]

    def stabilised(self, name: str, eps: float) -> torch.Tensor:
        """z + eps sgn z of node ``name`` for this chunk's rows: computed on the windows,
        then gathered (a (method, target) row shares its window's denominator)."""
        key = ("stabilised", name, eps)
        if key not in self._gathered:
            self._gathered[key] = _take(self.window_stabilised(name, eps), self.rows)
        return self._gathered[key]

    def shape_of(self, name) -> torch.Size:
        if name in self or name in self.traced.shape_nodes or \
                self.traced.specs[name].kind == "const":
            return self[name].shape
        return torch.Size((len(self.rows),) + tuple(self.base[name].shape[1:]))


class _StackedExtra(dict):
    """The forward handlers' extra values (max-pool indices...) for a chunk of stacked
    rows, gathered on first use; ``window`` gives them per window, like _StackedEnv."""

    def __init__(self, base: dict, rows: torch.Tensor):
        super().__init__()
        self.base, self.rows = base, rows

    def __missing__(self, name):
        value = self[name] = _take(self.base[name], self.rows)
        return value

    def window(self, name: str):
        return self.base[name]


class BatchExplainer:
    """Explain several targets with several methods (pruning settings) in one go.

    Args:
      model: nn.Module taking (N, 4, L) (a torch.compile'd module is explained through
        its original).
      targets: list of target specs (int, name, or spec dict; see plrp.engine.targets).
      methods: {method name: Explainer keyword arguments (p_pos, p_neg, variant, prunable,
        maxpool)}; results are stacked in dict order. Default {"lrp": {}}.
      composite: one composite for all methods (shipped name, .toml path or Composite).
      precision: "fp32" (default), "tf32" or "bf16" (see ``precision_scope``).
      rc_average: average each window's attribution with its reverse complement's, mapped
        back (ACGT order); scores are averaged too.
      max_stack: most stacked (method, target, window) rows per backward walk; None picks
        it so that a chunk's copied activations take about ``STACK_BYTES`` (on a GPU up to
        ``GPU_STACK_BYTES``, at most an eighth of its free memory).
      dtype: None (float32) or torch.float64.

    Attributes: method_names (M), target_names (T), explainers {method name: Explainer}.
    """

    def __init__(self, model: nn.Module, targets, methods=None, *, composite="epsilon",
                 precision="fp32", rc_average=False, max_stack=None, dtype=None):
        if methods is None:
            methods = {"lrp": {}}
        if not isinstance(methods, dict) or not methods:
            raise PlrpError("methods must be a non-empty {name: options} dict")
        targets = list(targets)
        if not targets:
            raise PlrpError("targets must name at least one target")
        if max_stack is not None and int(max_stack) < 1:
            raise PlrpError(f"max_stack = {max_stack}: must be >= 1")
        if precision not in PRECISIONS:
            raise PlrpError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        model = unwrap_model(model)
        self.model = model
        self.specs = [normalise_target(t, model) for t in targets]
        self.target_names = [target_name(t, model) for t in targets]
        self.method_names = list(methods)
        self.precision = precision
        self.rc_average = bool(rc_average)
        self.max_stack = None if max_stack is None else int(max_stack)
        traced = trace_model(model)           # one traced copy: one forward for all methods
        self.explainers = {
            name: Explainer(model, composite=composite, dtype=dtype, traced=traced,
                            **dict(opts or {}))
            for name, opts in methods.items()}
        self.dtype = dtype or torch.float32
        self._lead = self.explainers[self.method_names[0]]
        self._nodes = {n.name: n for n in traced.nodes}
        # methods walked together: same variant and max-pool rule (rules are the composite's)
        groups: dict = {}
        for i, name in enumerate(self.method_names):
            ex = self.explainers[name]
            groups.setdefault((ex.variant, ex.maxpool), []).append(i)
        self._groups = list(groups.values())

    def explain(self, x: torch.Tensor) -> BatchExplanation:
        """Explain every (method, target) for windows x (N, 4, L); see BatchExplanation."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise PlrpError("x must be a tensor of shape (N, 4, L)")
        n = x.shape[0]
        m, t = len(self.method_names), len(self.specs)
        if n == 0:
            empty = x.new_zeros((m, t, 0) + tuple(x.shape[1:]), dtype=self.dtype)
            none = x.new_zeros((m, t, 0), dtype=self.dtype)
            return BatchExplanation(empty, empty.clone(), none, none.clone())
        xs = torch.cat((x, reverse_complement(x))) if self.rc_average else x
        with precision_scope(self.precision, xs.device):
            env, extra = self._lead.forward(xs)
            with torch.no_grad():
                seeds, score = self._seeds(env)
                rel, hyp = self._walk_all(env, extra, seeds, xs.shape[0])
        rel, hyp = rel.to(self.dtype), hyp.to(self.dtype)
        score = score.to(self.dtype).expand(len(self.method_names), -1, -1)
        if self.rc_average:
            rel = (rel[:, :, :n] + reverse_complement(rel[:, :, n:])) / 2
            hyp = (hyp[:, :, :n] + reverse_complement(hyp[:, :, n:])) / 2
            score = (score[:, :, :n] + score[:, :, n:]) / 2
        err = conservation_error(rel.reshape(m * t * n, *rel.shape[3:]), score.reshape(-1),
                                 self.dtype).to(self.dtype).reshape(m, t, n)
        return BatchExplanation(rel, hyp, score.contiguous(), err)

    # ------------------------------------------------------------------ internals
    def _seeds(self, env):
        """Per head, the seeds of all targets stacked (T, N', ...) (None for heads no target
        seeds), and the scores (T, N')."""
        outputs = self._lead.outputs(env)
        per_target = [seed(outputs, spec) for spec in self.specs]
        stacked = []
        for h, out in enumerate(outputs):
            if all(s[h] is None for s in per_target):
                stacked.append(None)
                continue
            stacked.append(torch.stack([torch.zeros_like(out) if s[h] is None else s[h]
                                        for s in per_target]))
        score = torch.stack([s[spec["head"]].reshape(s[spec["head"]].shape[0], -1).sum(1)
                             for s, spec in zip(per_target, self.specs)])
        return stacked, score

    def _chunk_rows(self, env, n_windows: int, n_rows: int) -> int:
        if self.max_stack is not None:
            return self.max_stack
        tm = self._lead.traced
        per_window = 0
        for name, value in env.items():
            if isinstance(value, torch.Tensor) and tm.specs[name].kind != "const" \
                    and value.dim() and value.shape[0] == n_windows:
                per_window += value.numel() * value.element_size() // n_windows
        budget = STACK_BYTES
        device = env[tm.input_node].device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = max(STACK_BYTES, min(GPU_STACK_BYTES, free // 8))
        rows = max(1, min(n_rows, budget // max(per_window, 1)))
        # whole copies of the windows, so that chunks broadcast rather than gather
        return rows if rows < n_windows else rows - rows % n_windows

    def _walk_all(self, env, extra, seeds, n_windows: int):
        """(relevance, hypothetical) (M, T, N', 4, L) by stacked walks."""
        x = env[self._lead.traced.input_node]
        n_targets = len(self.specs)
        m = len(self.method_names)
        rel = x.new_empty((m, n_targets, n_windows) + tuple(x.shape[1:]))
        hyp = torch.empty_like(rel)
        shape = tuple(x.shape[1:])
        shared: dict = {}
        for group in self._groups:
            lead = self.explainers[self.method_names[group[0]]]
            per_method = n_targets * n_windows
            n_rows = len(group) * per_method
            chunk = self._chunk_rows(env, n_windows, n_rows)
            # a group of adjacent methods writes straight into the result
            adjacent = group == list(range(group[0], group[0] + len(group)))
            span = slice(group[0], group[0] + len(group))
            out_rel = rel[span].view((n_rows,) + shape) if adjacent else \
                x.new_empty((n_rows,) + shape)
            out_hyp = hyp[span].view((n_rows,) + shape) if adjacent else \
                torch.empty_like(out_rel)
            for lo in range(0, n_rows, chunk):
                hi = min(n_rows, lo + chunk)
                out_rel[lo:hi], out_hyp[lo:hi] = self._walk_chunk(
                    lead, group, env, extra, seeds, lo, hi, n_windows, per_method, shared)
            if not adjacent:
                for k, i in enumerate(group):
                    rel[i] = out_rel[k * per_method:(k + 1) * per_method].view_as(rel[i])
                    hyp[i] = out_hyp[k * per_method:(k + 1) * per_method].view_as(hyp[i])
        return rel, hyp

    def _walk_chunk(self, lead, group, env, extra, seeds, lo, hi, n_windows, per_method,
                    shared):
        device = env[lead.traced.input_node].device
        rows = torch.arange(lo, hi, device=device)
        whole = lo == 0 and hi == n_windows         # one method, one target: no copies
        windows = rows % n_windows
        targets = (rows // n_windows) % len(self.specs)
        # rows lo..hi that are whole copies of the windows broadcast their values
        tiles = (hi - lo) // n_windows if lo % n_windows == 0 and (hi - lo) % n_windows == 0 \
            else 1
        chunk_env = env if whole else _StackedEnv(env, windows, lead.traced, self._nodes,
                                                  shared, tiles)
        chunk_extra = extra if whole else _StackedExtra(extra, windows)
        chunk_seeds = [None if s is None else s[targets, windows] for s in seeds]
        segments: dict = {}
        for k, i in enumerate(group):
            start, end = max(lo, k * per_method), min(hi, (k + 1) * per_method)
            if start >= end:
                continue
            for node, (pp, pn) in self.explainers[self.method_names[i]].prune_p.items():
                segments.setdefault(node, []).append((start - lo, end - lo, pp, pn))
        rel, hyp, _ = Walk(lead, chunk_env, chunk_extra, segments).run(chunk_seeds)
        return rel, hyp
