"""Metrics on hand-made cases whose answers are known in closed form."""

import numpy as np
import pytest
import torch

from plrp import metrics


def test_gini_uniform_is_zero_and_one_hot_is_n_minus_1_over_n():
    r = np.array([[1.0] * 10, [-2.0] * 10, [0.0] * 9 + [5.0], [0.0] * 3 + [-1.0] + [0.0] * 6])
    g = metrics.gini_index(r)
    assert g[0] == pytest.approx(0.0, abs=1e-12)
    assert g[1] == pytest.approx(0.0, abs=1e-12)       # Gini of |r|: sign does not matter
    assert g[2] == pytest.approx(9 / 10)
    assert g[3] == pytest.approx(9 / 10)


def test_gini_two_point_case_and_all_zero_is_nan():
    # |r| = (0, 0, 1, 1): sorted weights (2i - n - 1) = (-3, -1, 1, 3); G = (1 + 3) / (4 * 2) = 0.5
    g = metrics.gini_index(np.array([[0.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]]))
    assert g[0] == pytest.approx(0.5)
    assert np.isnan(g[1])


def test_relevance_mass_accuracy_counts_positive_mass_inside_truth():
    r = np.array([[1.0, 3.0, -5.0, 4.0, 0.0],
                  [1.0, 1.0, 1.0, 1.0, 1.0],
                  [-1.0, -1.0, 0.0, 0.0, 0.0],     # no positive relevance -> NaN
                  [1.0, 1.0, 1.0, 1.0, 1.0]])      # no truth -> NaN
    truth = np.array([[0, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    rma = metrics.relevance_mass_accuracy(r, truth)
    assert rma[0] == pytest.approx(3.0 / 8.0)         # negative -5 inside truth is ignored
    assert rma[1] == pytest.approx(2.0 / 5.0)
    assert np.isnan(rma[2]) and np.isnan(rma[3])


def test_relevance_rank_accuracy_top_k_and_sparse_misses():
    truth = np.array([[0, 1, 1, 0, 0, 0]] * 3 + [[0] * 6], bool)
    r = np.array([[0.1, 0.9, 0.2, 0.8, 0.0, 0.0],    # top-2 = {1, 3}: one hit -> 0.5
                  [0.0, 0.3, 0.4, 0.1, 0.1, 0.0],    # top-2 = {2, 1}: both hits -> 1.0
                  [0.0, 0.5, 0.0, 0.0, 0.0, 0.0],    # one positive position, a hit; rank 2 empty
                  [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    rra = metrics.relevance_rank_accuracy(r, truth)
    assert rra[:3] == pytest.approx([0.5, 1.0, 0.5])
    assert np.isnan(rra[3])


def test_aopc_on_a_linear_model_matches_the_hand_computation():
    # score = sum of weights at the observed bases; zeroing a column removes that weight.
    seq = "ACGTAC"
    x = torch.zeros(1, 4, 6, dtype=torch.float64)
    for j, b in enumerate(seq):
        x[0, "ACGT".index(b), j] = 1.0
    w = torch.full((4, 6), 7.0, dtype=torch.float64)   # weights of unobserved bases never count
    observed = [0.5, -1.0, 2.0, 0.25, 3.0, 0.0]
    for j, b in enumerate(seq):
        w[ "ACGT".index(b), j] = observed[j]
    linear = torch.nn.Linear(24, 1, bias=False).double()
    with torch.no_grad():
        linear.weight.copy_(w.reshape(1, 24))
    score_fn = lambda batch: linear(batch.reshape(batch.shape[0], -1))[:, 0]  # noqa: E731

    r = metrics.position_relevance(x * w)        # gradient x input of a linear model
    order = metrics.morf_order(r, np.zeros_like(r))
    assert list(order[0, :3]) == [4, 2, 0]
    curve = metrics.morf_curve(score_fn, x, order, n_steps=3, step_size=1)
    assert curve[0] == pytest.approx([4.75, 1.75, -0.25, -0.75])
    # drops 3, 5, 5.5 over 3 steps
    assert metrics.aopc(curve)[0] == pytest.approx(13.5 / 3)


def test_morf_ties_follow_the_tiebreak_key_and_steps_of_several_positions():
    r = np.array([[0.0, 2.0, 0.0, 0.0, 1.0, 0.0]])
    order = metrics.morf_order(r, np.array([[5.0, 0.0, 1.0, 0.0, 0.0, 2.0]]))
    assert list(order[0]) == [1, 4, 3, 2, 5, 0]
    x = torch.ones(1, 4, 6) / 4
    curve = metrics.morf_curve(lambda b: b.sum(dim=(1, 2)), x, order, n_steps=2, step_size=2)
    assert curve[0] == pytest.approx([6.0, 4.0, 2.0])
    with pytest.raises(ValueError):
        metrics.morf_curve(lambda b: b.sum(dim=(1, 2)), x, order, n_steps=4, step_size=2)
