"""The methods figure of an evaluation: every method side by side on one target.

Panels: one bar per method (mean ± standard error over windows) for each quality metric and
each ignored motif, explanation time per window (log scale), and the mean MoRF curves.
Drawn with matplotlib's Agg backend, sized like the other evaluation figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from plrp.evaluate.methods import Setting, setting_label  # noqa: E402
from plrp.jobs.plot import FIGURE_DPI  # noqa: E402

_PANELS = (("gini", "sparsity (Gini)"), ("rma", "relevance mass accuracy"),
           ("rra", "relevance rank accuracy"), ("aopc_top", "AOPC, top features"),
           ("aopc", "AOPC, all MoRF steps"))


def _label(row: dict) -> str:
    return setting_label(Setting(row["method"], row["variant"], row["p"]))


_BASELINE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#bcbd22", "#17becf", "#8c564b")


#: PLRP variant -> colours for its compared p values, smallest p first
_PLRP_COLOURS = {"plrp-lambda": ("#d62728", "#7f1213"), "plrp-m": ("#ff9896", "#b5605f")}


def _colours(rows: Sequence[dict]) -> list[str]:
    """LRP dark grey, PLRP reds (darker for a larger p), random light grey, each baseline its
    own colour."""
    fixed = {"lrp": "#444444", "random": "#bbbbbb"}
    ps = sorted({r["p"] for r in rows if r["method"] in _PLRP_COLOURS})
    baselines = [r["method"] for r in rows
                 if r["method"] not in fixed and r["method"] not in _PLRP_COLOURS]
    out = []
    for r in rows:
        if r["method"] in fixed:
            out.append(fixed[r["method"]])
        elif r["method"] in _PLRP_COLOURS:
            shades = _PLRP_COLOURS[r["method"]]
            out.append(shades[min(ps.index(r["p"]), len(shades) - 1)])
        else:
            out.append(_BASELINE_COLOURS[baselines.index(r["method"]) % len(_BASELINE_COLOURS)])
    return out


def plot_methods(rows: Sequence[dict], curves: dict[str, list[float]], step_size: int,
                 out_png: str | Path, title: str = "") -> None:
    """Bars of each metric per method (``rows``: one target's summary rows, e.g.
    :func:`plrp.evaluate.report.comparison_rows`) and their mean MoRF curves (``curves``:
    label -> mean score after k steps of ``step_size`` positions, k = 0..S)."""
    ignored = sorted(k for k in rows[0] if k.startswith("ignored:") and
                     not k.endswith(("_sem", "_n")))
    panels = list(_PANELS) + [(k, f"share on ignored {k[8:]} (lower is better)")
                              for k in ignored] + [("ms_per_window", "ms per window (log)")]
    n_cols = 4
    n_rows = math.ceil((len(panels) + 1) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.4 * n_rows),
                             dpi=FIGURE_DPI, squeeze=False)
    labels = [_label(r) for r in rows]
    colours = _colours(rows)
    ypos = np.arange(len(rows))
    for ax, (key, name) in zip(axes.flat, panels):
        vals = [r.get(key, math.nan) for r in rows]
        errs = [r.get(f"{key}_sem", 0.0) for r in rows]
        errs = [e if e is not None and math.isfinite(e) else 0.0 for e in errs]
        vals = [v if v is not None and math.isfinite(v) else 0.0 for v in vals]
        ax.barh(ypos, vals, xerr=errs, color=colours, capsize=2)
        ax.set_yticks(ypos, labels, fontsize=8)
        ax.invert_yaxis()
        if key == "ms_per_window":
            ax.set_xscale("log")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    ax = axes.flat[len(panels)]
    for r, label, colour in zip(rows, labels, colours):
        y = curves.get(label)
        if y is not None:
            ax.plot(np.arange(len(y)) * step_size, y, label=label, color=colour,
                    ls=":" if r["method"] == "random" else "-", lw=1.3)
    ax.set_xlabel("most relevant positions replaced by N", fontsize=8)
    ax.set_title("MoRF: mean score (logit)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    for extra in list(axes.flat)[len(panels) + 1:]:
        extra.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
