"""`plrp evaluate --sparsity`: sparse-track rows, their comparison with the unsparsified
track, and the rule that picks the default fraction."""

from __future__ import annotations

import numpy as np
import pytest

from plrp import evaluate as ev
from plrp.simulate import simulate, write_outputs


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sparse-eval")
    data = simulate(24, 200, seed=5, tasks={"CTCF": ("CTCF",)}, motif_rate=0.8)
    write_outputs(d / "sim", data)
    return d


def test_sparse_rows_reuse_the_explanation_and_store_fewer_positions(sim):
    res = ev.run_evaluation(sim / "sim.fa", sim / "sim.motifs.bed", targets=["CTCF"],
                            p_values=[0.1], variants=["lambda"], sparsities=[0.1, 0.4],
                            selection="all", n_steps=4, progress=False)
    (t,) = res.targets
    rows = {(r["method"], r["sparsity"]): r for r in t.rows if r["method"] != "random"}
    dense, s1, s4 = (rows["plrp-lambda", f] for f in (0.0, 0.1, 0.4))
    assert 1.0 >= dense["stored"] > s1["stored"] > s4["stored"] > 0
    # the rule only zeroes positions: the engine ran once, so the score is the same
    assert s1["score"] == dense["score"] and s1["ms_per_window"] == dense["ms_per_window"]
    assert res.config["sparsities"] == [0.1, 0.4]
    assert ev.dense_rows(t.rows) == [r for r in t.rows if r["sparsity"] == 0.0]
    lines = ev.sparse_table(t.rows)
    assert sum(line.startswith("| plrp-lambda p=0.10 |") for line in lines) == 3


def _row(target, sparsity, stored, rma, rra, aopc):
    return {"target": target, "method": "plrp-lambda", "variant": "lambda", "p": 0.1,
            "sparsity": sparsity, "stored": stored, "rma": rma, "rra": rra, "aopc": aopc,
            "aopc_top": aopc}


def test_choose_sparsity_on_constructed_rows():
    rows = [_row("a", 0.0, 0.9, 0.8, 0.7, 10.0), _row("a", 0.1, 0.4, 0.85, 0.69, 9.9),
            _row("a", 0.2, 0.3, 0.86, 0.68, 9.6), _row("a", 0.3, 0.2, 0.86, 0.5, 9.0),
            _row("b", 0.0, 0.9, 0.8, 0.7, 10.0), _row("b", 0.1, 0.5, 0.8, 0.7, 9.8),
            _row("b", 0.2, 0.25, 0.8, 0.7, 9.5), _row("b", 0.3, 0.2, 0.8, 0.7, 9.4)]
    # every criterion: 0.1 stores too much (a: 40%), 0.3 loses a's RRA and AOPC
    assert ev.choose_sparsity(rows) == 0.2
    # RMA and AOPC only, no size bound: the largest fraction before the first failure
    assert ev.choose_sparsity(rows, ("rma", "aopc"), None) == 0.2
    rows[6] = _row("b", 0.2, 0.25, 0.8, 0.7, 9.4)  # b's AOPC -6% at 0.2
    assert ev.choose_sparsity(rows) is None
    assert ev.choose_sparsity(rows, ("rma", "aopc"), None) == 0.1
    changes = ev.sparse_changes([r for r in rows if r["target"] == "a"])
    assert [round(c["aopc"], 3) for _, _, c in changes] == [-0.01, -0.04, -0.1]
    assert np.isclose(changes[0][2]["rma"], 0.0625)
