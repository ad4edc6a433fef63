"""Independent float64 numpy reference for plrp's relevance engine (contracts section 1a).

Written from the specification only, for clarity rather than speed: every layer is an explicit
dense matrix built by loops, every pooling op an explicit list of windows, every sort a Python
sort. Tests compare ``plrp.engine`` against this module; nothing here imports plrp. The
torch test models at the end (and their ``reference()`` twins) only read parameters.

A network is a ``RefNet``: a list of ``Node`` objects in forward (topological) order. Activations
of one window are flat float64 vectors (channels x positions in C order, exactly as
``torch.flatten`` lays out a (C, L) tensor), so every op is a map between flat vectors.

Node ops:
- ``"input"``: the model input (4 * L one-hot values).
- ``"dense"``: z = a @ W + b with W (n_in, n_out); ``conn`` (n_in, n_out) bool marks the real
  connections (padding excluded) for the flat / wsquare rules. Conv1d and Linear become this.
- ``"relu"``: element-wise ReLU (relevance passes through).
- ``"maxpool"``: ``windows[k]`` = list of flat input indices of output k; ``mode`` "wta" or
  "proportional".
- ``"avgpool"``: ``windows[k]`` and ``divisor[k]``; the epsilon rule with c_jk = a_j / n_k.
- ``"add"``: residual y = u + v of two earlier nodes.
- ``"addconst"``: y = u + const (the constant absorbs relevance like a bias).
- ``"act"``: another element-wise activation ``fn`` (gelu, tanh, elu, identity); passes R through.
- ``"route"``: out[k] = concat(inputs)[index[k]] (cat, slicing/cropping, flatten, permute):
  relevance is routed back exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEFAULT_EPS = 1e-6  # epsilon of pooling / add steps and the rules' default (contracts 1a)


def sgn(t: np.ndarray) -> np.ndarray:
    """sgn(t) = +1 where t >= 0 else -1 (so sgn(0) = +1), elementwise, float64."""
    return np.where(np.asarray(t) >= 0, 1.0, -1.0)


# ----------------------------------------------------------------------------------------------
# Building dense matrices / pooling windows from layer hyper-parameters (explicit loops)
# ----------------------------------------------------------------------------------------------

def conv_out_length(length: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a 1-D convolution/pool (floor mode), as torch computes it."""
    return (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv1d_dense(weight: np.ndarray, bias: np.ndarray | None, length_in: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1):
    """Dense form of a Conv1d (groups=1, zero padding).

    weight: (C_out, C_in, K); bias: (C_out,) or None; length_in: L_in.
    Returns (W, b, conn, L_out): W (C_in*L_in, C_out*L_out) float64 with
    W[c*L_in + pos, o*L_out + t] = weight[o, c, kk] for pos = t*stride - padding + kk*dilation
    inside [0, L_in); b (C_out*L_out,); conn the same-shaped bool matrix of real connections.
    """
    weight = np.asarray(weight, dtype=np.float64)
    c_out, c_in, kernel = weight.shape
    length_out = conv_out_length(length_in, kernel, stride, padding, dilation)
    W = np.zeros((c_in * length_in, c_out * length_out))
    conn = np.zeros_like(W, dtype=bool)
    for o in range(c_out):
        for t in range(length_out):
            for c in range(c_in):
                for kk in range(kernel):
                    pos = t * stride - padding + kk * dilation
                    if 0 <= pos < length_in:
                        W[c * length_in + pos, o * length_out + t] += weight[o, c, kk]
                        conn[c * length_in + pos, o * length_out + t] = True
    b = np.zeros(c_out * length_out)
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        for o in range(c_out):
            for t in range(length_out):
                b[o * length_out + t] = bias[o]
    return W, b, conn, length_out


def linear_dense(weight: np.ndarray, bias: np.ndarray | None):
    """Dense form of a Linear layer: weight (out, in) -> W (in, out), b (out,), conn all True."""
    weight = np.asarray(weight, dtype=np.float64)
    W = weight.T.copy()
    b = np.zeros(W.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64).copy()
    return W, b, np.ones_like(W, dtype=bool)


def fold_batchnorm(weight: np.ndarray, bias: np.ndarray | None, bn_weight, bn_bias, running_mean,
                   running_var, bn_eps: float):
    """Fold an eval-mode BatchNorm1d into the preceding Conv1d/Linear (per output channel).

    weight: (C_out, ...) ; returns (weight', bias') with
    w' = w * g/sqrt(var+eps), b' = (b - mean) * g/sqrt(var+eps) + beta.
    """
    weight = np.asarray(weight, dtype=np.float64)
    c_out = weight.shape[0]
    bias = np.zeros(c_out) if bias is None else np.asarray(bias, dtype=np.float64)
    new_w = np.empty_like(weight)
    new_b = np.empty(c_out)
    for o in range(c_out):
        scale = float(bn_weight[o]) / np.sqrt(float(running_var[o]) + bn_eps)
        new_w[o] = weight[o] * scale
        new_b[o] = (bias[o] - float(running_mean[o])) * scale + float(bn_bias[o])
    return new_w, new_b


def pool1d_windows(channels: int, length_in: int, kernel: int, stride: int, dilation: int = 1):
    """Windows of a MaxPool1d/AvgPool1d without padding, floor mode.

    Returns (windows, L_out): windows[o*L_out + t] = flat input indices c*L_in + pos.
    """
    length_out = conv_out_length(length_in, kernel, stride, 0, dilation)
    windows = []
    for c in range(channels):
        for t in range(length_out):
            windows.append([c * length_in + t * stride + kk * dilation for kk in range(kernel)])
    return windows, length_out


def adaptive_windows(channels: int, length_in: int, length_out: int):
    """Windows of AdaptiveMax/AvgPool1d: output t covers [floor(t*L/out), ceil((t+1)*L/out))."""
    windows = []
    for c in range(channels):
        for t in range(length_out):
            start = (t * length_in) // length_out
            end = -((-(t + 1) * length_in) // length_out)
            windows.append([c * length_in + pos for pos in range(start, end)])
    return windows


def global_mean_windows(channels: int, length: int):
    """Windows of x.mean(dim=2) on (C, L): output c averages c*L .. c*L+L-1."""
    return [[c * length + pos for pos in range(length)] for c in range(channels)]


# ----------------------------------------------------------------------------------------------
# The network description
# ----------------------------------------------------------------------------------------------

@dataclass
class Node:
    """One op of a RefNet. ``inputs`` are indices of earlier nodes."""

    name: str
    op: str
    inputs: list[int] = field(default_factory=list)
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    conn: np.ndarray | None = None
    windows: list[list[int]] | None = None
    divisor: list[float] | None = None
    mode: str = "wta"
    fn: str = "identity"
    index: list[int] | None = None
    const: float = 0.0


class RefNet:
    """A small network as a DAG of Nodes in forward order. Node 0 is the input."""

    def __init__(self, input_size: int):
        self.nodes: list[Node] = [Node("input", "input")]
        self.input_size = input_size
        self.heads: list[int] = []        # node index of each model output (head)
        self.head_shapes: list[tuple] = []  # per-window shape of each head ((C,) or (C, L))

    def add(self, node: Node) -> int:
        """Append a node; returns its index."""
        self.nodes.append(node)
        return len(self.nodes) - 1

    def dense(self, name, src, W, b, conn) -> int:
        return self.add(Node(name, "dense", [src], W=W, b=b, conn=conn))

    def relu(self, name, src) -> int:
        return self.add(Node(name, "relu", [src]))

    def maxpool(self, name, src, windows, mode="wta") -> int:
        return self.add(Node(name, "maxpool", [src], windows=windows, mode=mode))

    def avgpool(self, name, src, windows, divisor) -> int:
        return self.add(Node(name, "avgpool", [src], windows=windows, divisor=list(divisor)))

    def residual(self, name, u, v) -> int:
        return self.add(Node(name, "add", [u, v]))

    def act(self, name, src, fn) -> int:
        return self.add(Node(name, "act", [src], fn=fn))

    def route(self, name, srcs: list[int], index: list[int]) -> int:
        return self.add(Node(name, "route", list(srcs), index=list(index)))

    def addconst(self, name, src, const: float) -> int:
        return self.add(Node(name, "addconst", [src], const=float(const)))

    def set_heads(self, heads: list[int], shapes: list[tuple]):
        self.heads = list(heads)
        self.head_shapes = [tuple(s) for s in shapes]

    def layer_names(self) -> list[str]:
        return [n.name for n in self.nodes if n.op == "dense"]


ACTIVATIONS = {
    "identity": lambda v: v,
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    "tanh": math.tanh,
    "elu": lambda v: v if v > 0 else math.expm1(v),
}


def forward(net: RefNet, x: np.ndarray) -> list[np.ndarray]:
    """Activations (flat float64 vectors) of every node for one window x (flat, 4*L)."""
    acts: list[np.ndarray] = []
    for node in net.nodes:
        if node.op == "input":
            out = np.asarray(x, dtype=np.float64).reshape(-1).copy()
        elif node.op == "dense":
            a = acts[node.inputs[0]]
            out = a @ node.W + node.b
        elif node.op == "relu":
            out = np.maximum(acts[node.inputs[0]], 0.0)
        elif node.op == "maxpool":
            a = acts[node.inputs[0]]
            out = np.array([max(a[j] for j in win) for win in node.windows])
        elif node.op == "avgpool":
            a = acts[node.inputs[0]]
            out = np.array([sum(a[j] for j in win) / n
                            for win, n in zip(node.windows, node.divisor)])
        elif node.op == "add":
            out = acts[node.inputs[0]] + acts[node.inputs[1]]
        elif node.op == "addconst":
            out = acts[node.inputs[0]] + node.const
        elif node.op == "act":
            out = np.array([ACTIVATIONS[node.fn](float(v)) for v in acts[node.inputs[0]]])
        elif node.op == "route":
            joined = np.concatenate([acts[i] for i in node.inputs])
            out = joined[np.asarray(node.index, dtype=np.int64)]
        else:
            raise ValueError(node.op)
        acts.append(out)
    return acts


# ----------------------------------------------------------------------------------------------
# Rules for dense layers (contracts 1a)
# ----------------------------------------------------------------------------------------------

@dataclass
class Rule:
    """A rule and its parameters. name in epsilon|gamma|alpha_beta|zplus|flat|wsquare."""

    name: str = "epsilon"
    epsilon: float = DEFAULT_EPS
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float | None = None  # None -> alpha - 1

    def alpha_beta(self) -> tuple[float, float]:
        if self.name == "zplus":
            return 1.0, 0.0
        return self.alpha, (self.alpha - 1.0 if self.beta is None else self.beta)


def dense_rule(rule: Rule, a: np.ndarray, W: np.ndarray, b: np.ndarray, conn: np.ndarray,
               r_out: np.ndarray, numerator_a: np.ndarray | None = None,
               keep: np.ndarray | None = None) -> np.ndarray:
    """Relevance of a dense layer's inputs, R_j, for upper relevance r_out (n_out,).

    a: input activations (n_in,) used in the denominators; numerator_a: the activations used in
    the numerators (default a; all ones gives the hypothetical contributions).
    keep: PLRP-M mask (n_in,) bool; pruned inputs are removed from numerator and denominator.
    For product rules that is a_j -> m_j a_j; for the input-independent flat / wsquare rules
    (our reading of "remove the pruned neurons from the redistribution") the connection weight
    1 or w^2 of a pruned input is zeroed; an upper neuron left with no kept input hands on 0.
    """
    if keep is not None and rule.name in ("epsilon", "gamma") and M_STABLE_FROM is not None:
        return stable_m_rule(rule, a, W, b, r_out, keep)
    if keep is not None and rule.name not in ("flat", "wsquare"):
        masked = np.where(keep, a, 0.0)
        return dense_rule(rule, masked, W, b, conn, r_out,
                          None if numerator_a is None else np.where(keep, numerator_a, 0.0))
    m = np.ones(W.shape[0]) if keep is None else keep.astype(np.float64)
    if numerator_a is None:
        numerator_a = a
    n_in, n_out = W.shape
    if rule.name in ("epsilon", "gamma"):
        if rule.name == "gamma":
            Wr = W + rule.gamma * np.maximum(0.0, W)
            br = b + rule.gamma * np.maximum(0.0, b)
        else:
            Wr, br = W, b
        z = a @ Wr + br
        s = r_out / (z + rule.epsilon * sgn(z))
        return (numerator_a[:, None] * Wr) @ s
    if rule.name in ("alpha_beta", "zplus"):
        alpha, beta = rule.alpha_beta()
        c = a[:, None] * W
        z_pos = np.maximum(0.0, c).sum(axis=0) + np.maximum(0.0, b)
        z_neg = np.minimum(0.0, c).sum(axis=0) + np.minimum(0.0, b)
        cn = numerator_a[:, None] * W
        out = np.zeros(n_in)
        for k in range(n_out):
            out += (alpha * np.maximum(0.0, cn[:, k]) / (z_pos[k] + rule.epsilon)
                    - beta * np.minimum(0.0, cn[:, k]) / (z_neg[k] - rule.epsilon)) * r_out[k]
        return out
    if rule.name in ("flat", "wsquare"):
        spread = conn.astype(np.float64) if rule.name == "flat" else np.where(conn, W ** 2, 0.0)
        spread = m[:, None] * spread
        total = spread.sum(axis=0)
        share = np.zeros(n_out)
        for k in range(n_out):
            if total[k] != 0:
                share[k] = r_out[k] / total[k]
        return spread @ share
    raise ValueError(f"unknown rule {rule.name}")


M_STABLE_FROM = 0.5     # PLRP-M stabilisation threshold t; None = the unstabilised formula


def stable_m_rule(rule: Rule, a: np.ndarray, W: np.ndarray, b: np.ndarray, r_out: np.ndarray,
                  keep: np.ndarray) -> np.ndarray:
    """Stabilised PLRP-M of an epsilon / gamma layer, neuron by neuron.

    For upper neuron k: z_k (all inputs) and z'_k (kept inputs only), both with the bias;
    rho_k = z'_k / z_k (1 if both are 0, 0 if only z_k is); u_k = clamp((rho_k - t) /
    (1 - t), 0, 1), so 1 from rho_k = 1 up. A u_k share of R_k goes to the kept inputs in
    proportion to their contributions (denominator z'_k); the rest is sent as plain LRP and
    that part, summed over k, is pruned and rescaled per sign as PLRP-lambda.
    """
    if rule.name == "gamma":
        W = W + rule.gamma * np.maximum(0.0, W)
        b = b + rule.gamma * np.maximum(0.0, b)
    t = M_STABLE_FROM
    n_in, n_out = W.shape
    masked_part = np.zeros(n_in)
    plain_part = np.zeros(n_in)
    for k in range(n_out):
        contrib = [a[j] * W[j, k] for j in range(n_in)]
        z = sum(contrib) + b[k]
        z_kept = sum(contrib[j] for j in range(n_in) if keep[j]) + b[k]
        if z != 0:
            rho = z_kept / z
        else:
            rho = 1.0 if z_kept == 0 else 0.0
        share = min(1.0, max(0.0, (rho - t) / (1 - t)))
        for j in range(n_in):
            if keep[j]:
                masked_part[j] += contrib[j] / (z_kept + rule.epsilon * sgn(z_kept)) \
                    * share * r_out[k]
            plain_part[j] += contrib[j] / (z + rule.epsilon * sgn(z)) * (1 - share) * r_out[k]
    return masked_part + lambda_rescale(plain_part, keep)


def hypothetical_dense(rule: Rule, a, W, b, conn, r_out) -> np.ndarray:
    """Hypothetical contributions of an input layer: a_j := 1 in the numerator only.

    For flat / wsquare (input-independent) hypothetical = relevance (contracts 1a).
    """
    if rule.name in ("flat", "wsquare"):
        return dense_rule(rule, a, W, b, conn, r_out)
    return dense_rule(rule, a, W, b, conn, r_out, numerator_a=np.ones_like(a))


# ----------------------------------------------------------------------------------------------
# Pruning (PLRP), per window, per layer
# ----------------------------------------------------------------------------------------------

def prune_keep_mask(r: np.ndarray, p_pos: float, p_neg: float) -> np.ndarray:
    """Boolean keep-mask of a relevance vector r (flat) after mass-threshold pruning.

    Positives sorted ascending by (value, index); the longest prefix whose cumulative sum is
    <= p_pos * sum(P) is pruned. Same for |negatives| with p_neg. Zeros are never pruned.
    """
    r = np.asarray(r, dtype=np.float64)
    keep = np.ones(r.shape[0], dtype=bool)
    for sign, p in ((1.0, p_pos), (-1.0, p_neg)):
        if p <= 0:
            continue
        members = [i for i in range(r.shape[0]) if sign * r[i] > 0]
        if not members:
            continue
        magnitude = {i: sign * float(r[i]) for i in members}
        total = 0.0
        for i in members:
            total += magnitude[i]
        budget = p * total
        cumulative = 0.0
        for i in sorted(members, key=lambda i: (magnitude[i], i)):
            if cumulative + magnitude[i] <= budget:
                cumulative += magnitude[i]
                keep[i] = False
            else:
                break
    return keep


def lambda_rescale(r: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """PLRP-lambda: zero the pruned entries and rescale the kept ones per sign to the old mass.

    A side with nothing pruned is left untouched (so p = 0 is exactly plain LRP).
    """
    r = np.asarray(r, dtype=np.float64)
    out = np.where(keep, r, 0.0)
    for positive in (True, False):
        side = r > 0 if positive else r < 0
        if not np.any(side & ~keep):
            continue
        total = r[side].sum()
        kept_total = r[side & keep].sum()
        if kept_total != 0:         # else nothing of this side is kept
            out[side & keep] *= total / kept_total
    return out


# ----------------------------------------------------------------------------------------------
# Seeds and the backward walk
# ----------------------------------------------------------------------------------------------

def seed(net: RefNet, acts: list[np.ndarray], target) -> tuple[int, np.ndarray]:
    """(head node index, seed relevance vector on that head's output) for a target spec.

    target: int (logit, head 0) or {"kind": "logit", "head": h, "index": i} or
    {"kind": "softmax_profile", "head": h} (head output (C, L): R = softmax_l(f) * f).
    """
    if isinstance(target, int):
        target = {"kind": "logit", "head": 0, "index": target}
    head = int(target.get("head", 0))
    node = net.heads[head]
    f = acts[node]
    r = np.zeros_like(f)
    if target["kind"] == "logit":
        r[target["index"]] = f[target["index"]]
    elif target["kind"] == "softmax_profile":
        channels, length = net.head_shapes[head]
        f2 = f.reshape(channels, length)
        for c in range(channels):
            e = np.exp(f2[c] - f2[c].max())
            soft = e / e.sum()
            r[c * length:(c + 1) * length] = soft * f2[c]
    else:
        raise ValueError(target)
    return node, r


@dataclass
class RefExplanation:
    """Reference result for one window. All vectors flat float64."""

    relevance: np.ndarray
    hypothetical: np.ndarray
    score: float
    conservation_error: float
    layer_input: dict[str, np.ndarray]     # layer name -> relevance its step sent to its input
    node_relevance: list[np.ndarray]       # total relevance at each node's output
    activations: list[np.ndarray]


def explain(net: RefNet, x: np.ndarray, target, *, rules: dict[str, Rule] | Rule,
            p_pos: dict[str, float] | None = None, p_neg: dict[str, float] | None = None,
            variant: str = "lambda", maxpool_mode: str | None = None,
            op_epsilon: float = DEFAULT_EPS) -> RefExplanation:
    """Relevance of one window x (flat 4*L) for ``target``.

    rules: a Rule for every dense layer, or dict layer name -> Rule.
    p_pos / p_neg: dict layer name -> p for the layers to prune (absent = not pruned).
    variant: "lambda" or "m". maxpool_mode overrides each maxpool node's mode.
    op_epsilon: the stabiliser of the pooling / mean / residual-add steps (contract: 1e-6).
    """
    p_pos = p_pos or {}
    p_neg = p_neg or {}
    acts = forward(net, x)
    head, r_seed = seed(net, acts, target)
    R = [np.zeros_like(a) for a in acts]
    R[head] = r_seed.copy()
    hypothetical = np.zeros_like(acts[0])
    layer_input: dict[str, np.ndarray] = {}
    for idx in range(len(net.nodes) - 1, 0, -1):
        node = net.nodes[idx]
        r_out = R[idx]
        src = node.inputs[0]
        a = acts[src]
        if node.op == "dense":
            rule = rules if isinstance(rules, Rule) else rules[node.name]
            r_in = dense_rule(rule, a, node.W, node.b, node.conn, r_out)
            pp = p_pos.get(node.name, 0.0)
            pn = p_neg.get(node.name, 0.0)
            if pp > 0 or pn > 0:
                keep = prune_keep_mask(r_in, pp, pn)
                if not keep.all():
                    if variant == "lambda":
                        r_in = lambda_rescale(r_in, keep)
                    elif variant == "m":
                        r_in = dense_rule(rule, a, node.W, node.b, node.conn, r_out, keep=keep)
                    else:
                        raise ValueError(variant)
            if src == 0:
                hypothetical += hypothetical_dense(rule, a, node.W, node.b, node.conn, r_out)
            R[src] += r_in
            layer_input[node.name] = r_in
        elif node.op in ("relu", "act"):
            R[src] += r_out
            layer_input[node.name] = r_out
        elif node.op == "route":
            sizes = [acts[i].shape[0] for i in node.inputs]
            joined = np.zeros(sum(sizes))
            for k, j in enumerate(node.index):
                joined[j] += r_out[k]
            offset = 0
            for i, size in zip(node.inputs, sizes):
                R[i] += joined[offset:offset + size]
                offset += size
        elif node.op == "addconst":
            y = acts[idx]
            R[src] += a / (y + op_epsilon * sgn(y)) * r_out
        elif node.op == "maxpool":
            mode = maxpool_mode or node.mode
            r_in = np.zeros_like(a)
            for k, win in enumerate(node.windows):
                if mode == "wta":
                    # First maximum wins, as torch's argmax. Values within 1e-12 (relative) count
                    # as tied: where torch computes exactly equal values (constant stretches of
                    # N bases), this numpy matmul may differ from torch's conv by an ulp.
                    best = win[0]
                    for j in win[1:]:
                        if a[j] > a[best] + 1e-12 * max(abs(a[best]), 1e-300):
                            best = j
                    r_in[best] += r_out[k]
                else:
                    denom = sum(a[j] for j in win)
                    denom = denom + op_epsilon * sgn(denom)
                    for j in win:
                        r_in[j] += a[j] / denom * r_out[k]
            R[src] += r_in
            layer_input[node.name] = r_in
        elif node.op == "avgpool":
            r_in = np.zeros_like(a)
            z = acts[idx]
            for k, (win, n) in enumerate(zip(node.windows, node.divisor)):
                denom = z[k] + op_epsilon * sgn(z[k])
                for j in win:
                    r_in[j] += (a[j] / n) / denom * r_out[k]
            R[src] += r_in
            layer_input[node.name] = r_in
        elif node.op == "add":
            y = acts[idx]
            denom = y + op_epsilon * sgn(y)
            for s in node.inputs:
                R[s] += acts[s] / denom * r_out
        else:
            raise ValueError(node.op)
    relevance = R[0]
    score = float(r_seed.sum())
    total = float(relevance.sum())
    if score != 0:
        cons = abs(total - score) / abs(score)
    else:
        cons = 0.0 if not np.any(relevance) else abs(total)
    return RefExplanation(relevance, hypothetical, score, cons, layer_input, R, acts)


# ----------------------------------------------------------------------------------------------
# Small torch test models and their reference twins (used by the tests in this folder).
# The builders only read parameters; all reference arithmetic stays in numpy above.
# ----------------------------------------------------------------------------------------------

import pytest  # noqa: E402  (the fixture below)
import torch  # noqa: E402  (only for the test models below)
from torch import nn  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: torch's thread pool only adds contention on a shared CPU. Test modules
    use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` after importing
    it from here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def as_float64(t) -> np.ndarray | None:
    """A torch parameter/buffer as a float64 numpy array (None stays None)."""
    return None if t is None else t.detach().cpu().double().numpy()


def randomise_batchnorm(bn: nn.BatchNorm1d, generator: torch.Generator) -> None:
    """Give an eval-mode BatchNorm1d non-trivial affine parameters and running statistics."""
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=generator, dtype=torch.float64) * 1.5 + 0.25)
        bn.bias.copy_(torch.randn(c, generator=generator, dtype=torch.float64) * 0.3)
        bn.running_mean.copy_(torch.randn(c, generator=generator, dtype=torch.float64) * 0.3)
        bn.running_var.copy_(torch.rand(c, generator=generator, dtype=torch.float64) * 1.5 + 0.5)


def _conv_node(net: RefNet, name: str, src: int, conv: nn.Conv1d, length_in: int,
               bn: nn.BatchNorm1d | None = None) -> tuple[int, int]:
    weight, bias = as_float64(conv.weight), as_float64(conv.bias)
    if bn is not None:
        weight, bias = fold_batchnorm(weight, bias, as_float64(bn.weight), as_float64(bn.bias),
                                      as_float64(bn.running_mean), as_float64(bn.running_var),
                                      bn.eps)
    W, b, conn, length_out = conv1d_dense(weight, bias, length_in, stride=conv.stride[0],
                                          padding=conv.padding[0], dilation=conv.dilation[0])
    return net.dense(name, src, W, b, conn), length_out


def _linear_node(net: RefNet, name: str, src: int, lin: nn.Linear,
                 bn: nn.BatchNorm1d | None = None) -> int:
    weight, bias = as_float64(lin.weight), as_float64(lin.bias)
    if bn is not None:
        weight, bias = fold_batchnorm(weight, bias, as_float64(bn.weight), as_float64(bn.bias),
                                      as_float64(bn.running_mean), as_float64(bn.running_var),
                                      bn.eps)
    W, b, conn = linear_dense(weight, bias)
    return net.dense(name, src, W, b, conn)


class SeqNet(nn.Module):
    """conv1(pad) -> [bn1] -> maxpool -> relu -> conv2(stride, dilation, pad) -> relu -> avgpool
    -> flatten -> fc1 -> [bn_fc1] -> relu -> fc2 (3 logits). Input (N, 4, 24)."""

    length = 24

    def __init__(self, bias: bool = True, batchnorm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 6, 5, padding=2, bias=bias)
        self.bn1 = nn.BatchNorm1d(6) if batchnorm else nn.Identity()
        self.pool1 = nn.MaxPool1d(2)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(6, 5, 3, stride=2, padding=2, dilation=2, bias=bias)
        self.act2 = nn.ReLU()
        self.pool2 = nn.AvgPool1d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(15, 8, bias=bias)
        self.bn_fc1 = nn.BatchNorm1d(8) if batchnorm else nn.Identity()
        self.act3 = nn.ReLU()
        self.fc2 = nn.Linear(8, 3, bias=bias)

    def forward(self, x):
        h = self.act1(self.pool1(self.bn1(self.conv1(x))))
        h = self.pool2(self.act2(self.conv2(h)))
        return self.fc2(self.act3(self.bn_fc1(self.fc1(self.flatten(h)))))

    def reference(self, maxpool_mode: str = "wta") -> RefNet:
        net = RefNet(4 * self.length)
        bn = self.bn1 if isinstance(self.bn1, nn.BatchNorm1d) else None
        n, length = _conv_node(net, "conv1", 0, self.conv1, self.length, bn)
        windows, length = pool1d_windows(6, length, 2, 2)
        n = net.maxpool("pool1", n, windows, maxpool_mode)
        n = net.relu("act1", n)
        n, length = _conv_node(net, "conv2", n, self.conv2, length)
        n = net.relu("act2", n)
        windows, length = pool1d_windows(5, length, 2, 2)
        n = net.avgpool("pool2", n, windows, [2] * len(windows))
        n = _linear_node(net, "fc1", n, self.fc1,
                         self.bn_fc1 if isinstance(self.bn_fc1, nn.BatchNorm1d) else None)
        n = net.relu("act3", n)
        n = _linear_node(net, "fc2", n, self.fc2)
        net.set_heads([n], [(3,)])
        return net


class ResNet(nn.Module):
    """conv1 -> relu -> (conv2 -> [bn2] -> relu) + skip -> conv3(dilation) -> relu ->
    mean over positions -> fc (2 logits). Input (N, 4, 20)."""

    length = 20

    def __init__(self, bias: bool = True, batchnorm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 5, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv1d(5, 5, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm1d(5) if batchnorm else nn.Identity()
        self.conv3 = nn.Conv1d(5, 4, 3, padding=2, dilation=2, bias=bias)
        self.fc = nn.Linear(4, 2, bias=bias)

    def forward(self, x):
        h1 = torch.relu(self.conv1(x))
        h2 = torch.relu(self.bn2(self.conv2(h1)))
        h = h1 + h2
        h3 = torch.relu(self.conv3(h))
        return self.fc(h3.mean(dim=2))

    def reference(self) -> RefNet:
        net = RefNet(4 * self.length)
        bn = self.bn2 if isinstance(self.bn2, nn.BatchNorm1d) else None
        n1, length = _conv_node(net, "conv1", 0, self.conv1, self.length)
        h1 = net.relu("relu1", n1)
        n2, _ = _conv_node(net, "conv2", h1, self.conv2, length, bn)
        h2 = net.relu("relu2", n2)
        h = net.residual("add", h1, h2)
        n3, length = _conv_node(net, "conv3", h, self.conv3, length)
        h3 = net.relu("relu3", n3)
        g = net.avgpool("mean", h3, global_mean_windows(4, length), [length] * 4)
        out = _linear_node(net, "fc", g, self.fc)
        net.set_heads([out], [(2,)])
        return net


class ProfileNet(nn.Module):
    """BPNet-like two heads: (profile (N, 2, 16), counts (N, 1)). The trunk output h2 fans out
    to the profile conv and to the mean -> counts Linear."""

    length = 16

    def __init__(self, bias: bool = True):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 4, 5, padding=2, bias=bias)
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1, bias=bias)
        self.profile = nn.Conv1d(4, 2, 3, padding=1, bias=bias)
        self.counts = nn.Linear(4, 1, bias=bias)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return self.profile(h), self.counts(h.mean(dim=2))

    def reference(self) -> RefNet:
        net = RefNet(4 * self.length)
        n, length = _conv_node(net, "conv1", 0, self.conv1, self.length)
        n = net.relu("relu1", n)
        n, length = _conv_node(net, "conv2", n, self.conv2, length)
        h = net.relu("relu2", n)
        prof, length_p = _conv_node(net, "profile", h, self.profile, length)
        g = net.avgpool("mean", h, global_mean_windows(4, length), [length] * 4)
        counts = _linear_node(net, "counts", g, self.counts)
        net.set_heads([prof, counts], [(2, length_p), (1,)])
        return net


class InputFanNet(nn.Module):
    """The input feeds two convolutions whose ReLU outputs are added; flatten -> fc (2 logits).
    Input (N, 4, 12)."""

    length = 12

    def __init__(self, bias: bool = True):
        super().__init__()
        self.conv_a = nn.Conv1d(4, 3, 3, padding=1, bias=bias)
        self.conv_b = nn.Conv1d(4, 3, 5, padding=2, bias=bias)
        self.fc = nn.Linear(36, 2, bias=bias)

    def forward(self, x):
        h = torch.relu(self.conv_a(x)) + torch.relu(self.conv_b(x))
        return self.fc(torch.flatten(h, 1))

    def reference(self) -> RefNet:
        net = RefNet(4 * self.length)
        na, length = _conv_node(net, "conv_a", 0, self.conv_a, self.length)
        nb, _ = _conv_node(net, "conv_b", 0, self.conv_b, self.length)
        h = net.residual("add", net.relu("relu_a", na), net.relu("relu_b", nb))
        out = _linear_node(net, "fc", h, self.fc)
        net.set_heads([out], [(2,)])
        return net


class MiscNet(nn.Module):
    """The other ops of contracts 1a: GELU / Tanh / ELU, cropping by slicing, adding a constant,
    cat, AdaptiveMaxPool1d, AdaptiveAvgPool1d, max and sum over a dim, Dropout. Input (N, 4, 16)."""

    length = 16

    def __init__(self, bias: bool = True):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 4, 3, padding=1, bias=bias)
        self.act1 = nn.GELU()
        self.conv_a = nn.Conv1d(4, 3, 3, padding=1, bias=bias)
        self.conv_b = nn.Conv1d(4, 2, 1, bias=bias)
        self.amax = nn.AdaptiveMaxPool1d(4)
        self.aavg = nn.AdaptiveAvgPool1d(5)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(5 * 4 + 5 * 5 + 5 + 5, 2, bias=bias)

    def forward(self, x):
        h = self.act1(self.conv1(x))[:, :, 2:-2] + 0.5
        c = torch.cat([self.conv_a(h), torch.tanh(self.conv_b(h))], dim=1)
        c = nn.functional.elu(c)
        feats = torch.cat([self.amax(c).flatten(1), self.aavg(c).flatten(1),
                           c.max(dim=2)[0], c.sum(dim=2)], dim=1)
        return self.fc(self.drop(feats))

    def reference(self) -> RefNet:
        net = RefNet(4 * self.length)
        n, length = _conv_node(net, "conv1", 0, self.conv1, self.length)
        n = net.act("act1", n, "gelu")
        crop = [c * length + pos for c in range(4) for pos in range(2, length - 2)]
        n = net.route("crop", [n], crop)
        length -= 4
        h = net.addconst("plus", n, 0.5)
        na, _ = _conv_node(net, "conv_a", h, self.conv_a, length)
        nb, _ = _conv_node(net, "conv_b", h, self.conv_b, length)
        nb = net.act("tanh", nb, "tanh")
        c = net.route("cat", [na, nb], range(5 * length))
        c = net.act("elu", c, "elu")
        p = net.maxpool("amax", c, adaptive_windows(5, length, 4))
        windows = adaptive_windows(5, length, 5)
        a = net.avgpool("aavg", c, windows, [len(w) for w in windows])
        m = net.maxpool("max", c, global_mean_windows(5, length))
        s = net.avgpool("sum", c, global_mean_windows(5, length), [1] * 5)
        feats = net.route("feats", [p, a, m, s], range(20 + 25 + 5 + 5))
        out = _linear_node(net, "fc", feats, self.fc)
        net.set_heads([out], [(2,)])
        return net


def make_model(cls, seed: int, **kwargs) -> nn.Module:
    """A float64 eval-mode instance of a test model with seeded random weights and BN stats."""
    torch.manual_seed(seed)
    model = cls(**kwargs).double()
    generator = torch.Generator().manual_seed(seed + 1000)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            randomise_batchnorm(module, generator)
    return model.eval()


def random_one_hot(n: int, length: int, seed: int, n_stretch: tuple[int, int] | None = None):
    """(n, 4, length) float64 one-hot DNA with random bases; columns in [start, end) of
    ``n_stretch`` are all zero (N bases) in every window."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 4, length))
    for i in range(n):
        bases = rng.integers(0, 4, size=length)
        x[i, bases, np.arange(length)] = 1.0
        if n_stretch is not None:
            x[i, :, n_stretch[0]:n_stretch[1]] = 0.0
    return x
