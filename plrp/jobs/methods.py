"""The explain job's ``--method`` names: PLRP's own methods and the baselines, one explainer.

``lrp`` and ``plrp`` (:data:`ENGINE_METHODS`) are walked by one
:class:`~plrp.engine.BatchExplainer` (one forward for every target). Any name in
:data:`plrp.baselines.BASELINES` (gradient_x_input, deep_lift_shap, ism,
integrated_gradients) is computed per target by its library with its default options, so
that its tracks can sit beside PLRP's in a genome browser. Baselines return attributions
projected onto the observed base; their "hypothetical" arrays hold the same values (they
have no separate hypothetical contributions), as their method attributes say. Their
libraries need pure one-hot input (tangermeme refuses an N), so a baseline explains the
windows of pure ACGT only: a window with an N gets 0 from it (and a warning, once).
"""

from __future__ import annotations

import logging

import torch

from plrp.baselines import BASELINES, attribute
from plrp.engine import BatchExplainer, BatchExplanation, reverse_complement
from plrp.engine.propagate import conservation_error
from plrp.engine.targets import score

ENGINE_METHODS = ("lrp", "plrp")
log = logging.getLogger("plrp")


def method_names() -> list[str]:
    """Every name ``--method`` accepts: the engine's, then the registered baselines."""
    return list(ENGINE_METHODS) + list(BASELINES)


def baseline_attrs(name: str) -> dict:
    """What the output file records about a baseline method."""
    b = BASELINES[name]
    return {"baseline": name, "library": b.library, "cost": b.cost,
            "hypothetical": "the projected attribution (a baseline has no other)"}


class MethodExplainer:
    """Explain windows with ``names`` (engine methods and baselines, in that order of the
    user's list) for target ``specs``.

    ``engine_options``: {engine method: BatchExplainer options}; ``composite``,
    ``precision``, ``rc_average`` as for BatchExplainer (baselines run in float32;
    ``rc_average`` averages them with their reverse complement's too).
    """

    def __init__(self, model, specs, names, engine_options: dict, *, composite="epsilon",
                 precision="fp32", rc_average=False, max_stack=None):
        self.names = list(names)
        self.model, self.specs, self.rc_average = model, list(specs), bool(rc_average)
        walked = [n for n in self.names if n in ENGINE_METHODS]
        self.engine = BatchExplainer(
            model, targets=self.specs, methods={n: engine_options[n] for n in walked},
            composite=composite, precision=precision, rc_average=rc_average,
            max_stack=max_stack) if walked else None
        self._walked = walked
        self._warned: set = set()

    def explain(self, x: torch.Tensor) -> BatchExplanation:
        """(M, T, N, 4, L) relevance / hypothetical and (M, T, N) score / conservation error
        for windows x (N, 4, L), methods in ``names`` order."""
        out = self.engine.explain(x) if self.engine is not None else None
        scores = out.score[0] if out is not None else self._scores(x)
        pure = None
        parts = []
        for name in self.names:
            if name in self._walked:
                i = self._walked.index(name)
                parts.append((out.relevance[i], out.hypothetical[i], out.score[i],
                              out.conservation_error[i]))
                continue
            if pure is None:
                pure = self._pure_windows(x)
            self._warn_skipped(name, x, pure)
            rel = torch.stack([self._baseline(name, x, spec, pure) for spec in self.specs])
            t, n = rel.shape[:2]
            err = conservation_error(rel.reshape(t * n, *rel.shape[2:]), scores.reshape(-1),
                                     rel.dtype).reshape(t, n)
            parts.append((rel, rel, scores, err))
        return BatchExplanation(*(torch.stack(p) for p in zip(*parts)))

    @staticmethod
    def _pure_windows(x: torch.Tensor) -> torch.Tensor:
        """(N,) bool: windows that are one-hot at every position (no N, no padding)."""
        return ((x.sum(dim=1) == 1) & (x.amax(dim=1) == 1)).all(dim=1)

    def _warn_skipped(self, name: str, x: torch.Tensor, pure: torch.Tensor) -> None:
        """Once per method: windows with N (not a batch's all-zero padding) get 0 from it."""
        with_n = int((~pure & (x != 0).flatten(1).any(dim=1)).sum())
        if with_n and name not in self._warned:
            self._warned.add(name)
            log.warning("--method %s explains windows of pure ACGT only: windows with N get "
                        "0 from it (first batch: %d)", name, with_n)

    def _baseline(self, name, x, spec, pure) -> torch.Tensor:
        """(N, 4, L) attributions of baseline ``name`` for the ``pure`` windows, 0 for the
        others."""
        attr = torch.zeros_like(x)
        if not bool(pure.any()):
            return attr
        xs = x[pure]
        part = attribute(name, self.model, xs, spec)
        if self.rc_average:
            part = (part + reverse_complement(attribute(name, self.model,
                                                        reverse_complement(xs), spec))) / 2
        attr[pure] = part
        return attr

    def _scores(self, x) -> torch.Tensor:
        """(T, N) target scores, as the engine reports them (rc-averaged when asked)."""
        with torch.no_grad():
            out = self.model(x)  # one forward for every target
            s = torch.stack([score(out, spec) for spec in self.specs])
            if self.rc_average:
                rc = self.model(reverse_complement(x))
                s = (s + torch.stack([score(rc, spec) for spec in self.specs])) / 2
        return s
