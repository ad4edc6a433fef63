"""Attribution baselines that PLRP is compared with: gradient x input, ISM, DeepLIFT-SHAP, IG.

Every baseline is a function ``fn(model, x, target, **options) -> Tensor``:

- ``model``: a torch module taking one-hot windows x (N, 4, L), channels A, C, G, T, and
  returning a tensor or a tuple of head tensors (as the plrp architectures do);
- ``target``: what is explained, in any form :func:`plrp.engine.targets.normalise_target`
  accepts (an output index, an output name, a spec dict). It is reduced to one scalar per
  window, the target score s(x) (N,) of :func:`plrp.engine.targets.score` (for profile targets
  the softmax weights are held constant, as for LRP);
- returns attributions (N, 4, L) on x's device in x's dtype, in units of the target score
  (logits for a classifier), always for one target.

``BASELINES`` maps a method name to a :class:`Baseline` (function, cost per window, library);
:func:`register_baseline` adds one; :func:`require` imports a method's optional libraries up
front. :func:`attribute` runs one by name, checking its options;
:func:`attribute_timed` also returns the seconds per window (the figure reported next to the
metrics in ``plrp evaluate``).

The model is run in eval mode (its training flag is restored afterwards) and is never
modified. Third-party code: tangermeme (ISM, DeepLIFT-SHAP, dinucleotide shuffles) and
captum (integrated gradients); gradient x input is plain autograd.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from plrp.engine.targets import normalise_target, score
from plrp.errors import PlrpError


class TargetScore(nn.Module):
    """``model`` reduced to the score of one target: forward(x (N, 4, L)) -> (N, 1).

    The single output column lets tangermeme and captum index it as output 0.
    """

    def __init__(self, model: nn.Module, target):
        super().__init__()
        self.model = model
        self.spec = normalise_target(target, model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return score(self.model(x), self.spec)[:, None]


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _library(module: str, method: str):
    """Import an optional library of a baseline, or say in one line how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise PlrpError(f"baseline {method} needs {package}: pip install {package}") from None


def _check_windows(x: torch.Tensor) -> None:
    if x.dim() != 3 or x.shape[1] != 4:
        raise PlrpError(f"baselines expect one-hot windows (N, 4, L), got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------
# the methods

def gradient_x_input(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """x * ds/dx, (N, 4, L): non-zero only on the observed base of each position.

    Cost: 1 forward + 1 backward per window. For a bias-free ReLU network this equals
    LRP-0 (LRP-epsilon as epsilon -> 0).
    """
    f = TargetScore(model, target)
    xg = x.detach().clone().requires_grad_(True)
    with _eval_mode(model), torch.enable_grad():
        (grad,) = torch.autograd.grad(f(xg).sum(), xg)
    return (grad * x).detach()


def ism(model: nn.Module, x: torch.Tensor, target, *, batch_size: int = 256,
        fast: bool = False) -> torch.Tensor:
    """In-silico saturation mutagenesis by tangermeme's ``saturation_mutagenesis``.

    Convention (tangermeme's): with d[c, l] = s(x with base c at l) - s(x), the per-base
    effect is d[c, l] - mean_c' d[c', l] (the mean over all four bases, the unchanged one
    contributing 0), projected onto the observed base. So the value at the observed base b
    of position l is s(x) - mean_c s(x with base c at l) = (3/4) * (s(x) - mean of the three
    mutants): positive where mutating the base lowers the score. Other channels are 0.
    Returns (N, 4, L) in score units.

    Cost: 3L forwards per window (``batch_size`` edited windows per forward call).
    ``fast=True`` lets tangermeme use fastISM (recompute only the positions an edit reaches)
    when its timing check finds it faster; its results then match up to float rounding and
    depend on that timing, so the default is the exact, deterministic path.
    """
    library = _library("tangermeme.saturation_mutagenesis", "ism")
    f = TargetScore(model, target)
    with _eval_mode(model), torch.no_grad():
        attr = library.saturation_mutagenesis(f, x.detach(), target=0, batch_size=batch_size,
                                      dtype=x.dtype, device=x.device, fast=fast)
    return attr.to(device=x.device, dtype=x.dtype)


def shuffled_references(x: torch.Tensor, n_shuffles: int = 20, seed: int = 0) -> torch.Tensor:
    """Dinucleotide-shuffled references (N, n_shuffles, 4, L), in x's dtype and device.

    tangermeme's ``dinucleotide_shuffle``: each shuffle keeps the window's dinucleotide counts
    and its first and last base. Window i is shuffled with seed ``seed + i``, so the same x and
    seed give the same references.
    """
    ersatz = _library("tangermeme.ersatz", "deep_lift_shap")
    if n_shuffles < 1:
        raise PlrpError(f"n_shuffles must be >= 1, got {n_shuffles}")
    try:
        refs = ersatz.dinucleotide_shuffle(x.detach().cpu(), n=n_shuffles, random_state=seed)
    except ValueError as err:   # e.g. an all-zero (N) column
        raise PlrpError(f"dinucleotide shuffle: {err}") from None
    return refs.to(device=x.device, dtype=x.dtype)


def _adaptive_max_pool_rule(module, grad_input, grad_output):
    """tangermeme rule for nn.AdaptiveMaxPool1d (which it treats as linear otherwise).

    With L = k * output_size the module is nn.MaxPool1d(k), so tangermeme's own max-pool rule
    is applied to an equivalent MaxPool1d carrying the cached activations.
    """
    from tangermeme.deep_lift_shap import _maxpool   # re-exported there for rules like this

    size = module.output_size if isinstance(module.output_size, int) else module.output_size[0]
    length = module.input.shape[-1]
    if size is None or length % size:
        raise PlrpError(f"deep_lift_shap: AdaptiveMaxPool1d({module.output_size}) on {length} "
                        "positions is not a plain max-pool; no DeepLIFT rule for it")
    proxy = nn.MaxPool1d(length // size)
    proxy.input, proxy.output = module.input, module.output
    return _maxpool(proxy, grad_input, grad_output)


#: DeepLIFT rules plrp adds to tangermeme's table (module type -> rule); extend as needed.
DEEPLIFT_RULES: dict[type, Callable] = {nn.AdaptiveMaxPool1d: _adaptive_max_pool_rule}


def deep_lift_shap(model: nn.Module, x: torch.Tensor, target, *, n_shuffles: int = 20,
                   seed: int = 0, batch_size: int = 256,
                   references: torch.Tensor | None = None) -> torch.Tensor:
    """DeepLIFT-SHAP (rescale rule) by tangermeme's ``deep_lift_shap``.

    References: ``references`` (N, K, 4, L) one-hot, else :func:`shuffled_references`
    (``n_shuffles`` dinucleotide shuffles of each window, ``seed``: deterministic). Per
    reference r the hypothetical contribution of base c at l is m . (e_c - r[:, l]) with m the
    DeepLIFT multipliers; these are averaged over the references and projected onto the
    observed base (tangermeme's default). Non-linear modules use tangermeme's rules plus
    :data:`DEEPLIFT_RULES`; a functional non-linearity (F.relu, torch.max) has no rule, and
    tangermeme then warns that the deltas are large. Returns (N, 4, L) in score units; per
    window they sum to s(x) - mean_k s(r_k) up to tangermeme's convergence delta.

    Cost: 2K forward rows (window and reference together) + 1 backward per row, per window.
    """
    library = _library("tangermeme.deep_lift_shap", "deep_lift_shap")
    if references is None:
        references = shuffled_references(x, n_shuffles, seed)
    if references.shape[0] != x.shape[0] or references.shape[2:] != x.shape[1:]:
        raise PlrpError(f"references of shape {tuple(references.shape)} do not match windows "
                        f"{tuple(x.shape)} (expected (N, K, 4, L))")
    f = TargetScore(model, target)
    try:
        with _eval_mode(model):
            attr = library.deep_lift_shap(
                f, x.detach(), target=0, references=references.detach().cpu(),
                batch_size=batch_size, dtype=x.dtype, device=x.device,
                additional_nonlinear_ops=DEEPLIFT_RULES)
    except ValueError as err:   # tangermeme's input checks (x or references not one-hot)
        raise PlrpError(f"deep_lift_shap: {str(err).splitlines()[0]}") from None
    return attr.to(device=x.device, dtype=x.dtype)


#: integrated-gradients baselines: name -> (N, 4, L) tensor like x
IG_BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "zero": torch.zeros_like,
    "uniform": lambda x: torch.full_like(x, 0.25),
}


def integrated_gradients(model: nn.Module, x: torch.Tensor, target, *, baseline: str = "zero",
                         n_steps: int = 50, internal_batch_size: int | None = 512
                         ) -> torch.Tensor:
    """Integrated gradients by captum's ``IntegratedGradients`` (Gauss-Legendre, ``n_steps``).

    ``baseline``: a name in :data:`IG_BASELINES` ("zero": all-zero input; "uniform": 0.25 on
    every channel). Returns (x - x0) * mean gradient along the straight path, (N, 4, L) in
    score units; it sums over channels and positions to s(x) - s(x0) up to the quadrature
    error (and captum's float32 quadrature weights: ~1e-7 relative even in float64). With the
    uniform baseline the unobserved channels carry attribution too (x - x0 = -0.25 there):
    sum over channels for a per-position value.

    Cost: ``n_steps`` forwards + ``n_steps`` backwards per window.
    """
    captum_attr = _library("captum.attr", "integrated_gradients")
    if baseline not in IG_BASELINES:
        raise PlrpError(f"unknown integrated-gradients baseline {baseline!r}; "
                        f"known: {', '.join(IG_BASELINES)}")
    if n_steps < 1:
        raise PlrpError(f"n_steps must be >= 1, got {n_steps}")
    f = TargetScore(model, target)
    xd = x.detach()
    with _eval_mode(model), torch.enable_grad():
        attr = captum_attr.IntegratedGradients(f).attribute(
            xd, baselines=IG_BASELINES[baseline](xd), target=0, n_steps=n_steps,
            internal_batch_size=internal_batch_size)
    return attr.detach()


# ---------------------------------------------------------------------------------------
# the table

@dataclass(frozen=True)
class Baseline:
    """A registered method: ``function(model, x, target, **options) -> (N, 4, L)``."""

    function: Callable[..., torch.Tensor]
    cost: str       # forwards / backwards per window, for the evaluation report
    library: str    # who computes it
    requires: tuple[str, ...] = ()   # modules it imports (checked up front by require())


BASELINES: dict[str, Baseline] = {}


def register_baseline(name: str, function: Callable[..., torch.Tensor], cost: str,
                      library: str = "user", requires: tuple[str, ...] = ()) -> None:
    """Add (or replace) a method; ``function(model, x, target, **options)`` -> (N, 4, L).
    ``requires``: the optional modules it imports (see :func:`require`)."""
    BASELINES[name] = Baseline(function, cost, library, tuple(requires))


def require(name: str) -> None:
    """Import the optional libraries of method ``name`` now, so that a missing one is a
    one-line :class:`PlrpError` (how to install it) before any work, not midway."""
    for module in _get(name).requires:
        _library(module, name)


register_baseline("gradient_x_input", gradient_x_input, "1 forward + 1 backward",
                  "plrp (autograd)")
register_baseline("ism", ism, "3L forwards", "tangermeme",
                  ("tangermeme.saturation_mutagenesis",))
register_baseline("deep_lift_shap", deep_lift_shap,
                  "2 x n_shuffles forward rows + as many backward", "tangermeme",
                  ("tangermeme.deep_lift_shap", "tangermeme.ersatz"))
register_baseline("integrated_gradients", integrated_gradients,
                  "n_steps forwards + n_steps backwards", "captum", ("captum.attr",))


def baseline_options(name: str) -> dict[str, object]:
    """The keyword options of method ``name`` and their defaults."""
    params = inspect.signature(_get(name).function).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _get(name: str) -> Baseline:
    if name not in BASELINES:
        raise PlrpError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name]


def attribute(name: str, model: nn.Module, x: torch.Tensor, target, **options) -> torch.Tensor:
    """Attributions (N, 4, L) of method ``name`` for ``target`` on windows x (N, 4, L).

    An option the method does not take raises :class:`PlrpError` naming the ones it does.
    """
    method = _get(name)
    _check_windows(x)
    known = baseline_options(name)
    unknown = [k for k in options if k not in known]
    if unknown:
        raise PlrpError(f"baseline {name} has no option {unknown[0]!r}; "
                        f"options: {', '.join(known) or 'none'}")
    return method.function(model, x, target, **options)


@dataclass
class TimedAttribution:
    """Attributions (N, 4, L) and the wall-clock cost: ``seconds`` in all, ``per_window``."""

    attributions: torch.Tensor
    seconds: float
    per_window: float


def attribute_timed(name: str, model: nn.Module, x: torch.Tensor, target,
                    **options) -> TimedAttribution:
    """:func:`attribute` with its wall-clock time (CUDA work is synchronised before timing)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    attr = attribute(name, model, x, target, **options)
    sync()
    seconds = time.perf_counter() - start
    return TimedAttribution(attr, seconds, seconds / max(1, x.shape[0]))
