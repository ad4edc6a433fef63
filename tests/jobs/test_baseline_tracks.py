"""Baseline tracks from `plrp explain --method`: gradient x input beside PLRP, against autograd."""

from __future__ import annotations

import numpy as np
import torch
from click.testing import CliRunner

from plrp.cli import main
from plrp.jobs.explain import explain_fasta
from plrp.outputs.bedgraph import read_bedgraph
from plrp.outputs.h5 import open_relevance

from .conftest import TARGETS, small_model

RUN = dict(progress=False, arrays=True, sparsity=0.0, bedgraph="plain")


def reference_gxi(one_hot: np.ndarray, target: int) -> np.ndarray:
    """x * d logit_target / dx in float64 with plain autograd (N, 4, L)."""
    model = small_model().double().eval()
    x = torch.tensor(one_hot, dtype=torch.float64, requires_grad=True)
    out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    (grad,) = torch.autograd.grad(out[:, target].sum(), x)
    return (grad * x).detach().numpy()


def test_gradient_x_input_tracks_sit_beside_plrp(tmp_path, model_path, genome):
    both = explain_fasta(genome, tmp_path / "both", model=model_path,
                         methods=("plrp", "gradient_x_input"), **RUN)
    alone = explain_fasta(genome, tmp_path / "alone", model=model_path, methods=("plrp",), **RUN)
    r, a = open_relevance(both.h5), open_relevance(alone.h5)
    assert r.methods == ["plrp", "gradient_x_input"]
    assert r.method_attrs("gradient_x_input", TARGETS[0])["baseline"] == "gradient_x_input"
    one_hot = r.one_hot()
    for t, target in enumerate(TARGETS):
        got = r.attribution("gradient_x_input", target, "relevance")
        want = reference_gxi(one_hot, t)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
        # the baseline changes nothing of PLRP's results
        np.testing.assert_array_equal(r.attribution("plrp", target, "relevance"),
                                      a.attribution("plrp", target, "relevance"))
        np.testing.assert_array_equal(r.attribution("gradient_x_input", target, "score"),
                                      a.attribution("plrp", target, "score"))
    # its track: each base is its window's relevance summed over the channels (absent = 0)
    w = r.windows()
    want = reference_gxi(one_hot, 0).sum(axis=1)
    got = np.zeros_like(want)
    path = both.tracks["plain"][("gradient_x_input", TARGETS[0])]
    for chrom, start, end, value in read_bedgraph(path):
        k = np.flatnonzero((w["chrom"] == chrom) & (w["start"] <= start) & (start < w["end"]))[0]
        got[k, start - w["start"][k]:end - w["start"][k]] = value
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    assert (got != 0).sum() > 0.3 * got.size


def test_method_choice_lists_the_baselines(tmp_path, model_path, genome):
    res = CliRunner().invoke(main, ["explain", "--fasta", str(genome), "--model", str(model_path),
                                    "--out", str(tmp_path / "x"), "--method", "shap"])
    assert res.exit_code == 2
    assert "gradient_x_input" in res.output and "deep_lift_shap" in res.output
