"""The paper's experiment (method spec section 3), extended with the field's baselines:
explanation quality of LRP and PLRP against p, and of gradient x input, ISM, DeepLIFT-SHAP and
integrated gradients (:mod:`plrp.baselines`), on windows with known motifs.

For every setting -- plain LRP (p = 0), each PLRP variant at each p > 0, each baseline -- the
windows are explained for one target and scored per window with :mod:`plrp.metrics`:

- ``gini``: Gini index of |per-position relevance| (sparsity);
- ``rma``: relevance mass accuracy, ``rra``: relevance rank accuracy (ground truth = the
  positions of the target's motif instances; windows without truth are left out of both);
- ``aopc``: faithfulness, area over the MoRF curve. Perturbation: the most relevant positions
  (signed relevance, descending; ties in a seeded random order shared by all settings) are
  replaced by all-zero columns (an "N") ``step_size`` at a time for ``n_steps`` steps;
  AOPC = mean over the steps k = 1..S of f(x) - f(x_k), in logits; ``aopc_top``: the same
  over the first ``TOP_STEPS`` steps only (the top features, where the paper compares);
- ``ignored:M``: share of the positive relevance on instances of motif M the label ignores
  (``--ignored``: a distractor or decoy; lower is better);
- ``conservation_error``: the engine's |sum R - score| / |score| (mean, and median: a few
  windows with a tiny score can dominate the mean); LRP/PLRP only;
- ``ms_per_window``: wall-clock explain time per window (after a warm-up call; the fastest
  batch, since a shared machine slows the others).

A ``random`` row is the MoRF floor: positions removed in the seeded random order alone.

Sparse tracks (``sparsities``): the per-base track ``plrp explain --sparsity F`` stores is
each window's PLRP per-position relevance with, per sign, the smallest-|R| positions that
hold a fraction F of the mass set to 0 (:func:`plrp.engine.prune.sparsify`). For each PLRP
setting and each F one more row scores that track with the same metrics (the engine runs
once per setting); ``stored`` is the mean share of positions with a non-zero value.

Modules: :mod:`~plrp.evaluate.windows` (inputs), :mod:`~plrp.evaluate.methods` (what is
compared, dispatch table), :mod:`~plrp.evaluate.run` (scoring, the job),
:mod:`~plrp.evaluate.report` (files, findings, markdown), :mod:`~plrp.evaluate.figures`.
"""

from plrp.evaluate.methods import (EXPLAINERS, VARIANTS, Explained, Setting, explain_setting,
                                   resolve_baselines, score_function, setting_label,
                                   settings_for)
from plrp.evaluate.report import (SPARSE_MAX_STORED, SPARSE_TOLERANCE, choose_sparsity,
                                  comparison_ps, comparison_rows, dense_rows, findings,
                                  report_block, report_markers, sparse_changes, sparse_ok,
                                  sparse_table, update_report, versus, versus_table,
                                  write_evaluation)
from plrp.evaluate.run import (SELECTIONS, TOP_STEPS, Evaluation, TargetResult,
                               evaluate_target, run_evaluation, select_windows)
from plrp.evaluate.windows import (EvalWindows, TruthInterval, load_windows, read_truth_bed,
                                   resolve_target_motifs, truth_masks)

__all__ = [
    "EXPLAINERS", "VARIANTS", "Explained", "Setting", "explain_setting", "resolve_baselines",
    "score_function", "setting_label", "settings_for", "SPARSE_MAX_STORED", "SPARSE_TOLERANCE",
    "choose_sparsity", "comparison_ps", "comparison_rows", "dense_rows", "findings",
    "report_block", "report_markers", "sparse_changes", "sparse_ok", "sparse_table",
    "update_report", "versus", "versus_table", "write_evaluation", "SELECTIONS", "TOP_STEPS",
    "Evaluation", "TargetResult", "evaluate_target", "run_evaluation", "select_windows",
    "EvalWindows", "TruthInterval", "load_windows", "read_truth_bed", "resolve_target_motifs",
    "truth_masks",
]
