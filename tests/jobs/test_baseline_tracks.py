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


def test_library_baselines_skip_windows_with_n(tmp_path, model_path, caplog):
    """tangermeme needs pure one-hot input: DeepLIFT-SHAP explains the pure-ACGT windows (a
    batch's zero padding and windows with N get 0 from it, with one warning), while PLRP
    explains them all."""
    import logging

    rng = np.random.default_rng(4)
    seq = list(rng.choice(list("ACGT"), 700))
    seq[250:260] = "N" * 10                       # inside the third 100 bp window
    fa = tmp_path / "n.fa"
    fa.write_text(">c1\n" + "".join(seq) + "\n")
    with caplog.at_level(logging.WARNING, logger="plrp"):
        res = explain_fasta(fa, tmp_path / "o" / "run", model=model_path, batch_size=4,
                            methods=("plrp", "deep_lift_shap"), targets=[TARGETS[0]], **RUN)
    r = open_relevance(res.h5)
    starts = r.windows()["start"]
    dls = np.abs(r.attribution("deep_lift_shap", TARGETS[0], "relevance")).sum(axis=(1, 2))
    plrp = np.abs(r.attribution("plrp", TARGETS[0], "relevance")).sum(axis=(1, 2))
    with_n = starts == 200
    assert with_n.sum() == 1 and dls[with_n][0] == 0 and plrp[with_n][0] > 0
    assert (dls[~with_n] > 0).all()
    assert sum("deep_lift_shap explains windows of pure ACGT only" in m
               for m in caplog.messages) == 1
