"""LRP rules for linear layers (Conv1d, Linear): one small class per rule.

Every rule maps the relevance R of a layer's outputs (same shape as the layer output) to the
relevance of its inputs a (same shape as a), per window, with the formulas of
plan contracts 1a. Product rules return ``(a * m, m)``: the multiplier ``m`` is the
"hypothetical" contribution of the input layer. Input-independent rules (flat, wsquare)
return ``(r, None)``.

The LRP step is computed with the gradient trick: s = R / (z + eps*sgn z) is pushed back
through the layer's transpose (``LinearOp.backward``), which costs one transposed
convolution or one matmul instead of building an autograd graph per layer.

``mask`` (PLRP-M) replaces a_j by m_j * a_j in numerator and denominator, so each upper
neuron hands all its relevance to the kept inputs. For the epsilon and gamma rules that is
stabilised where a neuron's kept contributions nearly cancel (``masked_relevance``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plrp.engine.prune import lambda_rescale
from plrp.errors import InputError

# PLRP-M: an upper neuron whose masked denominator keeps less than this share of the
# unmasked one starts handing its relevance on as PLRP-lambda does (masked_relevance);
# None gives the unstabilised formula
M_STABLE_FROM = 0.5


def stabilise(z: torch.Tensor, eps: float) -> torch.Tensor:
    """z + eps * sgn(z) with sgn(0) = +1.

    copysign gives -eps for z = -0.0; that only happens when every contribution is -0.0,
    so the relevance it divides is 0 either way.
    """
    return z + torch.copysign(z.new_full((), eps), z)   # new_full: no host-to-device copy


def rowwise(fn, r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """fn(r, v) where r (k*N, ...) holds k stacked copies of the N windows of v (N, ...):
    v is broadcast over the copies rather than gathered per row. k = 1 is plain fn(r, v)."""
    if r.shape[0] == v.shape[0]:
        return fn(r, v)
    k = r.shape[0] // v.shape[0]
    out = fn(r.view((k,) + tuple(v.shape[:1]) + tuple(r.shape[1:])), v)
    return out.view((r.shape[0],) + tuple(out.shape[2:]))


def safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, 0 where den == 0 (never NaN/Inf)."""
    zero = den == 0
    return torch.where(zero, 0.0, num / torch.where(zero, 1.0, den))


def masked_relevance(op: "LinearOp", a, R, mask, weight, bias, eps: float):
    """PLRP-M for a rule of the epsilon family (weights ``weight``, ``bias``), stabilised.

    a (N, *in), R (N, *out), mask (N, *in) with 1 = kept, 0 = pruned. With contributions
    c_jk = a_j w_jk, z_k = sum_j c_jk + b_k and z'_k = sum_j m_j c_jk + b_k, upper neuron k
    gets the weight u_k = clamp((rho_k - t) / (1 - t), 0, 1) of rho_k = z'_k / z_k
    (t = M_STABLE_FROM; rho_k = 1 where z_k = z'_k = 0, and 0 where only z_k = 0):

        R_j = m_j sum_k u_k c_jk / (z'_k + eps sgn z'_k) R_k
              + lambda_j[ sum_k (1 - u_k) c_jk / (z_k + eps sgn z_k) R_k ]

    lambda[v] zeroes the pruned entries of v and rescales its kept positive and negative
    entries so that v keeps its positive and its negative sum (PLRP-lambda of v, per window).
    A neuron whose kept contributions hold at least its whole z (rho >= 1) is pure PLRP-M; one
    whose kept contributions cancel or flip sign (rho <= t) is handed on as PLRP-lambda. Since
    u_k / rho_k <= 1, no message of the masked part exceeds its plain-LRP message (eps
    aside). Returns (relevance (N, *in), None).
    """
    n = a.shape[0]
    am = a * mask
    both = torch.cat((am, a))            # one forward and one backward for both parts
    zz = op.forward(both, weight, bias)
    zm, z = zz[:n], zz[n:]
    nonzero = z != 0
    rho = torch.where(nonzero, zm / torch.where(nonzero, z, 1.0), (zm == 0).to(z.dtype))
    t = M_STABLE_FROM
    if t is None:                        # the unstabilised formula (kept for comparisons)
        u = torch.ones_like(rho)
    else:
        u = ((rho - t) / (1 - t)).clamp(0.0, 1.0)      # exactly 1 from rho = 1 up
    back = op.backward(torch.cat((u * R, (1 - u) * R)) / stabilise(zz, eps), weight, both.shape)
    return am * back[:n] + lambda_rescale(a * back[n:], mask != 0), None


class LinearOp:
    """A Conv1d or Linear map with given weight/bias; forward and its transpose.

    weight: (C_out, C_in, k) for conv, (out, in) for linear. Inputs (N, C_in, L) or (N, *, in).
    """

    # the transpose of a wide conv onto few input channels (the one-hot layer) is one matmul
    # and k shifted adds: 2.1-2.5x faster than conv_transpose1d on the CPU for DeepSEA's and
    # Basset's first layers (320/300 -> 4 channels); no gain for 64 -> 4 (plrp-default, BPNet)
    MATMUL_MAX_IN = 4
    MATMUL_MIN_OUT = 128

    def __init__(self, kind: str, weight: torch.Tensor, bias: torch.Tensor | None,
                 stride=1, padding=0, dilation=1):
        self.kind = kind
        self.weight = weight
        self.bias = bias
        self.stride = int_param(stride)
        self.dilation = int_param(dilation)
        if isinstance(padding, str):
            k = weight.shape[-1]
            padding = 0 if padding == "valid" else self.dilation * (k - 1) // 2
        self.padding = int_param(padding)
        self._cache: dict = {}

    def forward(self, a: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
        if self.kind == "conv":
            return F.conv1d(a, weight, bias, self.stride, self.padding, self.dilation)
        return F.linear(a, weight, bias)

    def backward(self, s: torch.Tensor, weight: torch.Tensor, in_shape) -> torch.Tensor:
        """Transpose of the map (the input gradient for output cotangent s)."""
        if self.kind == "conv":
            k = weight.shape[-1]
            l_out = s.shape[-1]
            if self.stride == 1 and weight.shape[1] <= self.MATMUL_MAX_IN and \
                    weight.shape[0] >= self.MATMUL_MIN_OUT and s.dim() == 3:
                return self._shifted_matmul(s, weight, in_shape[-1])
            full = (l_out - 1) * self.stride - 2 * self.padding + self.dilation * (k - 1) + 1
            return F.conv_transpose1d(s, weight, None, self.stride, self.padding,
                                      in_shape[-1] - full, 1, self.dilation)
        return s.matmul(weight)

    def _shifted_matmul(self, s: torch.Tensor, weight: torch.Tensor, l_in: int):
        """conv_transpose1d for stride 1: y[j] = W_j^T s per tap j (one matmul for all
        taps), then out[t] = sum_j y[j][t + padding - dilation * j]."""
        n, c_out, l_out = s.shape
        _, c_in, k = weight.shape
        w = weight.permute(1, 2, 0).reshape(c_in * k, c_out)
        y = torch.matmul(w, s).view(n, c_in, k, l_out)
        out = s.new_zeros((n, c_in, l_in))
        for j in range(k):
            shift = self.padding - self.dilation * j          # out[t] reads y[j][t + shift]
            lo, hi = max(0, -shift), min(l_in, l_out - shift)
            if lo < hi:
                out[:, :, lo:hi] += y[:, :, j, lo + shift:hi + shift]
        return out

    def derived(self, name: str, make):
        """Cache weights derived from this layer's weight (W+, W^2, ...)."""
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]


def int_param(v) -> int:
    """A 1-d layer parameter (stride, padding, kernel size...) given as int or 1-tuple."""
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


class Rule:
    """Base class. ``params`` are the rule's keyword parameters (for describe/inspect).

    A rule with ``shares_denominator`` takes ``stab(eps)`` -> z + eps sgn z of the layer's
    own outputs, which a stacked walk computes once per window rather than once per
    (method, target) row."""

    name = "rule"
    product = True          # relevance = a * multiplier
    # relevance() takes stab(eps); with stacked rows, a and stab may hold one row per window
    shares_denominator = False

    def __init__(self, **params):
        self.params = params

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({inner})" if inner else self.name

    def relevance(self, op: LinearOp, a, z, R, mask=None):
        raise NotImplementedError


class Epsilon(Rule):
    """R_j = sum_k a_j w_jk / (z_k + eps sgn z_k) R_k (bias in z)."""

    name = "epsilon"
    shares_denominator = True

    def __init__(self, epsilon: float = 1e-6):
        super().__init__(epsilon=float(epsilon))
        self.eps = float(epsilon)

    def relevance(self, op, a, z, R, mask=None, stab=None):
        """a and stab(eps) may hold one row per window while R holds k stacked copies of
        the windows (a tiled walk): they are broadcast (``rowwise``)."""
        if mask is not None:
            return masked_relevance(op, a, R, mask, op.weight, op.bias, self.eps)
        s = rowwise(torch.div, R, stabilise(z, self.eps) if stab is None else stab(self.eps))
        m = op.backward(s, op.weight, a.shape)
        return rowwise(torch.mul, m, a), m


class Gamma(Rule):
    """Epsilon with w' = w + gamma max(0, w), b' = b + gamma max(0, b)."""

    name = "gamma"

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6):
        super().__init__(gamma=float(gamma), epsilon=float(epsilon))
        self.gamma, self.eps = float(gamma), float(epsilon)

    def relevance(self, op, a, z, R, mask=None):
        w = op.derived(("gamma_w", self.gamma),
                       lambda: op.weight + self.gamma * op.weight.clamp(min=0))
        b = None if op.bias is None else op.derived(
            ("gamma_b", self.gamma), lambda: op.bias + self.gamma * op.bias.clamp(min=0))
        if mask is not None:
            return masked_relevance(op, a, R, mask, w, b, self.eps)
        zp = op.forward(a, w, b)
        s = R / stabilise(zp, self.eps)
        m = op.backward(s, w, a.shape)
        return a * m, m


class AlphaBeta(Rule):
    """alpha * positive contributions - beta * negative contributions (alpha - beta = 1)."""

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float | None = None, epsilon: float = 1e-6):
        beta = float(alpha) - 1.0 if beta is None else float(beta)
        super().__init__(alpha=float(alpha), beta=beta, epsilon=float(epsilon))
        self.alpha, self.beta, self.eps = float(alpha), beta, float(epsilon)

    def relevance(self, op, a, z, R, mask=None):
        wp = op.derived("w+", lambda: op.weight.clamp(min=0))
        wn = op.derived("w-", lambda: op.weight.clamp(max=0))
        bp = bn = None
        if op.bias is not None:
            bp = op.derived("b+", lambda: op.bias.clamp(min=0))
            bn = op.derived("b-", lambda: op.bias.clamp(max=0))
        if mask is not None:
            a = a * mask
        ap, an = a.clamp(min=0), a.clamp(max=0)
        # positive contributions: a+ w+ and a- w-; negative ones: a+ w- and a- w+
        z_pos = op.forward(ap, wp, bp) + op.forward(an, wn)
        s_pos = self.alpha * R / (z_pos + self.eps)
        mult_ap = op.backward(s_pos, wp, a.shape)     # multiplier for a+ (positive part)
        mult_an = op.backward(s_pos, wn, a.shape)
        rel = ap * mult_ap + an * mult_an
        hyp = mult_ap
        if self.beta != 0:
            z_neg = op.forward(ap, wn, bn) + op.forward(an, wp)
            s_neg = self.beta * R / (z_neg - self.eps)
            neg_ap = op.backward(s_neg, wn, a.shape)
            neg_an = op.backward(s_neg, wp, a.shape)
            rel = rel - (ap * neg_ap + an * neg_an)
            hyp = hyp - neg_ap
        return rel, hyp


class ZPlus(AlphaBeta):
    """alpha1-beta0: only positive contributions."""

    name = "zplus"

    def __init__(self, epsilon: float = 1e-6):
        super().__init__(alpha=1.0, beta=0.0, epsilon=epsilon)
        self.params = {"epsilon": float(epsilon)}


class Flat(Rule):
    """R_j = sum_k R_k / n_k, n_k = number of real (non-padding) inputs of k. Ignores a."""

    name = "flat"
    product = False

    def relevance(self, op, a, z, R, mask=None):
        ones_w = op.derived("ones", lambda: torch.ones_like(op.weight))
        real = torch.ones_like(a[:1]) if mask is None else mask.to(a.dtype).expand_as(a)
        n = op.forward(real, ones_w)
        return op.backward(safe_divide(R, n), ones_w, a.shape) * (1 if mask is None else mask), None


class WSquare(Rule):
    """R_j = sum_k w_jk^2 / sum_{j' real} w_j'k^2 R_k. Ignores a."""

    name = "wsquare"
    product = False

    def relevance(self, op, a, z, R, mask=None):
        w2 = op.derived("w2", lambda: op.weight * op.weight)
        real = torch.ones_like(a[:1]) if mask is None else mask.to(a.dtype).expand_as(a)
        den = op.forward(real, w2)
        return op.backward(safe_divide(R, den), w2, a.shape) * (1 if mask is None else mask), None


RULES = {"epsilon": Epsilon, "gamma": Gamma, "alpha_beta": AlphaBeta, "zplus": ZPlus,
         "flat": Flat, "wsquare": WSquare}


def make_rule(name: str, params: dict, where: str = "") -> Rule:
    """Build rule ``name`` with ``params``; InputError naming ``where`` if invalid."""
    if name not in RULES:
        raise InputError(f"{where}unknown rule {name!r}; known rules: {', '.join(RULES)}")
    cls = RULES[name]
    try:
        params = {k: float(v) if not isinstance(v, bool) else v for k, v in params.items()}
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}bad parameters for rule {name!r}: {err}") from None
