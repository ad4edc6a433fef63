"""Evaluation outputs: metrics.tsv / metrics.json / figures, the paper's findings checked on
the rows, the comparison of PLRP with the baselines, and the generated markdown block of
docs/evaluation.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from plrp.atomic import AtomicGroup
from plrp.evaluate.run import TOP_STEPS, Evaluation, TargetResult

#: the sparse track may lose at most this share of the unsparsified track's RMA, RRA, AOPC
SPARSE_TOLERANCE = 0.05
#: and must keep at most this share of the positions (issue 12)
SPARSE_MAX_STORED = 0.30


TSV_COLUMNS = ("target", "method", "variant", "p", "sparsity", "stored", "n_windows", "gini",
               "gini_sem", "rma", "rma_sem", "rma_n", "rra", "rra_sem", "rra_n", "aopc",
               "aopc_sem", "aopc_top", "aopc_top_sem", "conservation_error",
               "conservation_error_median",
               "ms_per_window", "score")


def ignored_columns(result: Evaluation) -> tuple[str, ...]:
    """TSV columns of the ignored motifs: ``ignored:M``, ``ignored:M_sem``, ``ignored:M_n``."""
    names = sorted({m for t in result.targets for m in t.ignored_motifs})
    return tuple(f"ignored:{m}{suffix}" for m in names for suffix in ("", "_sem", "_n"))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _nan_to_none(obj):
    """NaN -> None (JSON null) throughout, so the JSON is strict."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_evaluation(result: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write ``metrics.tsv``, ``metrics.json`` and the figures into ``out_dir`` (all or none).

    Figures (per target): ``metrics_vs_p.<target>.png`` and ``morf.<target>.png``; with
    baselines also ``methods.<target>.png`` (every method side by side).
    """
    from plrp.evaluate.figures import plot_methods
    from plrp.jobs.plot import plot_metrics_vs_p, plot_morf_curves

    out_dir = Path(out_dir)
    written = []
    with AtomicGroup() as group:
        tsv = out_dir / "metrics.tsv"
        columns = TSV_COLUMNS + ignored_columns(result)
        with open(group.path(tsv), "w") as fh:
            fh.write("\t".join(columns) + "\n")
            for row in result.rows():
                fh.write("\t".join(_fmt(row.get(c, math.nan)) for c in columns) + "\n")
        js = out_dir / "metrics.json"
        payload = {"config": result.config, "targets": [
            {"target": t.target, "motifs": t.motifs, "n_windows": t.n_windows,
             "n_truth_windows": t.n_truth_windows, "ignored_motifs": list(t.ignored_motifs),
             "rows": t.rows,
             "morf_mean_curves": t.morf_curves} for t in result.targets]}
        group.path(js).write_text(json.dumps(_nan_to_none(payload), indent=1,
                                             allow_nan=False) + "\n")
        written += [tsv, js]
        for t in result.targets:
            fig1 = out_dir / f"metrics_vs_p.{t.target}.png"
            plot_metrics_vs_p(dense_rows(t.rows), group.path(fig1), title=f"target {t.target}")
            fig2 = out_dir / f"morf.{t.target}.png"
            dense_curves = {k: v for k, v in t.morf_curves.items() if " sparse " not in k}
            plot_morf_curves(dense_curves, result.config["morf"]["step_size"],
                             group.path(fig2), title=f"MoRF, target {t.target}")
            written += [fig1, fig2]
            if result.config.get("baselines"):
                fig3 = out_dir / f"methods.{t.target}.png"
                plot_methods(comparison_rows(t.rows, comparison_ps(result.config, t.rows)),
                             t.morf_curves,
                             result.config["morf"]["step_size"], group.path(fig3),
                             title=f"{result.config['model']}, target {t.target}")
                written.append(fig3)
        group.commit()
    return written


def _finite(v) -> float:
    return float(v) if v is not None and math.isfinite(v) else 0.0


def findings(rows: Sequence[dict]) -> list[tuple[str, bool | None, str]]:
    """The paper's four findings checked on one target's rows: (claim, holds, numbers).

    Our thresholds: a rise must exceed 2 standard errors of the mean (and, for Gini, no step
    may fall by more); faithfulness holds when AOPC stays within 10% of LRP's at every p;
    PLRP-lambda >= PLRP-M on Gini, RMA, RRA and AOPC at every p.
    """
    lrp = next(r for r in rows if r["method"] == "lrp")
    out = []
    variants = sorted({r["method"] for r in rows if r["method"].startswith("plrp")})
    for m in variants:
        series = [lrp] + sorted((r for r in rows if r["method"] == m), key=lambda r: r["p"])
        g = [r["gini"] for r in series]
        # "rises": no step falls by more than 2 standard errors, and the largest p is above LRP
        # by more than 2 standard errors
        sem = [_finite(r.get("gini_sem")) for r in series]
        rising = (all(b > a - 2 * max(sa, sb) for a, b, sa, sb in zip(g, g[1:], sem, sem[1:]))
                  and g[-1] > g[0] + 2 * max(sem[0], sem[-1]))
        out.append((f"{m}: sparsity (Gini) rises with p", rising,
                    " -> ".join(f"{v:.3f}" for v in g)))
        rma = [r["rma"] for r in series]
        best = int(np.nanargmax(rma))
        noise = 2 * max(_finite(series[0].get("rma_sem")), _finite(series[best].get("rma_sem")))
        out.append((f"{m}: RMA rises with p (up to a point)", rma[best] > rma[0] + noise,
                    " -> ".join(f"{v:.3f}" for v in rma) + f" (max at p={series[best]['p']:g})"))
        a = [r["aopc_top"] for r in series]
        worst = min(a[1:]) if len(a) > 1 else a[0]
        out.append((f"{m}: faithfulness for the top features (AOPC over the first "
                    f"{TOP_STEPS} MoRF steps) within 10% of LRP's at every p",
                    worst >= 0.9 * a[0], " -> ".join(f"{v:.3f}" for v in a)))
    if {"plrp-lambda", "plrp-m"} <= set(variants):
        lam = {r["p"]: r for r in rows if r["method"] == "plrp-lambda"}
        mm = {r["p"]: r for r in rows if r["method"] == "plrp-m"}
        ps = sorted(set(lam) & set(mm))
        wins = sum(1 for p in ps for k in ("gini", "rma", "rra", "aopc_top")
                   if lam[p][k] >= mm[p][k] - 1e-9)
        out.append(("PLRP-lambda at least as good as PLRP-M (Gini, RMA, RRA, top-feature AOPC "
                    "at each p)",
                    wins == 4 * len(ps), f"{wins} of {4 * len(ps)} comparisons"))
    return out


def report_markers(section: str = "") -> tuple[str, str]:
    """The comment lines that fence a generated block (``section`` names one of several)."""
    name = f" {section}" if section else ""
    return f"<!-- evaluate:begin{name} -->", f"<!-- evaluate:end{name} -->"


def _cell(v, digits=3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.2e}" if (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def report_block(result: Evaluation, figure_dir: str, section: str = "") -> str:
    """Markdown of the generated results: settings, one table per target, findings, figures."""
    c = result.config
    begin, end = report_markers(section)
    lines = [begin, "",
             "*Generated by `plrp evaluate` -- do not edit by hand between these markers.*", "",
             f"- data: `{c['fasta']}` (sha256 {c['fasta_sha256'][:12]}) with truth "
             f"`{c['truth']}` (sha256 {c['truth_sha256'][:12]}); model `{c['model']}` "
             f"(sha256 {c['model_sha256'][:12]}); composite `{c['composite']}`; "
             f"windows: `{c['windows']}`",
             f"- MoRF: {c['morf']['n_steps']} steps of {c['morf']['step_size']} positions "
             f"replaced by an all-zero column (N); AOPC in logits; tie-break seed {c['seed']}",
             f"- p_neg = p_pos / 2; device {c['device']}, {c['torch_threads']} torch thread(s)", ""]
    for t in result.targets:
        ign = [f"ignored:{m}" for m in t.ignored_motifs]
        lines += [f"#### Target `{t.target}` (truth: {', '.join(t.motifs)}; {t.n_windows} "
                  f"windows, {t.n_truth_windows} with truth)", "",
                  f"| method | p | Gini | RMA | RRA | AOPC top {TOP_STEPS} steps | AOPC all "
                  f"{c['morf']['n_steps']} | "
                  + "".join(f"on ignored {k.split(':', 1)[1]} | " for k in ign)
                  + "conservation error mean / median | ms/window |",
                  "|---|---|---|---|---|---|---|" + "---|" * len(ign) + "---|---|"]
        for r in dense_rows(t.rows):
            def pm(k, r=r):
                return "–" if math.isnan(r[k]) else f"{_cell(r[k])} ± {_cell(r[k + '_sem'])}"
            cons = ("–" if math.isnan(r["conservation_error"]) else
                    f"{_cell(r['conservation_error'])} / {_cell(r['conservation_error_median'])}")
            lines.append(f"| {r['method']} | {_cell(r['p'], 2)} | {pm('gini')} | {pm('rma')} | "
                         f"{pm('rra')} | {pm('aopc_top')} | {pm('aopc')} | "
                         + "".join(f"{pm(k)} | " for k in ign)
                         + f"{cons} | {_cell(r['ms_per_window'], 2)} |")
        for p in comparison_ps(c, t.rows):
            lines += versus_table(t, p)
        lines += ["", "| paper's finding | holds here? | numbers (LRP, then increasing p) |",
                  "|---|---|---|"]
        for claim, holds, numbers in findings([r for r in dense_rows(t.rows)
                                               if r["method"] != "random"]):
            verdict = "n/a" if holds is None else ("yes" if holds else "**no**")
            lines.append(f"| {claim} | {verdict} | {numbers} |")
        lines += sparse_table(t.rows)
        lines += ["", f"![metrics against p, {t.target}]({figure_dir}/metrics_vs_p.{t.target}.png)",
                  "", f"![MoRF curves, {t.target}]({figure_dir}/morf.{t.target}.png)", ""]
        if c.get("baselines"):
            lines += [f"![every method, {t.target}]({figure_dir}/methods.{t.target}.png)", ""]
    if c.get("baselines"):
        from plrp.baselines import BASELINES

        lines += ["Baselines (default options; cost per window):", ""]
        lines += [f"- `{b}` ({BASELINES[b].library}): {BASELINES[b].cost}"
                  + "".join(f"; {k} = {v}" for k, v in opts.items())
                  for b, opts in c["baselines"].items()]
        lines.append("")
    if c.get("sparsities"):
        every = [r for t in result.targets for r in t.rows]
        name = (lambda f: "none" if f is None else _cell(f, 2))
        lines += [f"- every criterion (RMA, RRA and AOPC all steps within "
                  f"{SPARSE_TOLERANCE:.0%} of the unsparsified track, at most "
                  f"{SPARSE_MAX_STORED:.0%} of the positions stored), every target: smallest "
                  f"fraction **{name(choose_sparsity(every))}**",
                  f"- RMA and AOPC within {SPARSE_TOLERANCE:.0%}, every target: largest "
                  f"fraction **{name(choose_sparsity(every, ('rma', 'aopc'), None))}**", ""]
    lines.append(end)
    return "\n".join(lines)


def comparison_ps(config: dict, rows: Sequence[dict]) -> list[float]:
    """The p values at which PLRP is set against the baselines: ``config["compare_p"]`` when
    given (``--compare-p``), else plrp's default p_pos when it was evaluated, else the
    smallest evaluated p > 0 ([] without PLRP rows)."""
    from plrp.defaults import DEFAULT_P_POS

    ps = sorted({r["p"] for r in dense_rows(rows) if r["method"].startswith("plrp-")})
    if config.get("compare_p"):
        return [p for p in config["compare_p"] if p in ps]
    if not ps:
        return []
    return [DEFAULT_P_POS if DEFAULT_P_POS in ps else ps[0]]


def comparison_rows(rows: Sequence[dict], ps: Sequence[float]) -> list[dict]:
    """One target's dense rows with PLRP at the p values ``ps`` only: LRP, the PLRP variants,
    the baselines, random (the methods side by side)."""
    return [r for r in dense_rows(rows)
            if not r["method"].startswith("plrp-") or r["p"] in ps]


#: metrics compared in :func:`versus_table` and whether higher is better
_VERSUS = {"gini": True, "rma": True, "rra": True, "aopc_top": True, "aopc": True}


def versus(a: np.ndarray, b: np.ndarray, higher_is_better: bool) -> tuple[float, float, str]:
    """Per-window values ``a`` against ``b`` (N,), paired (the same windows): (mean of a - b
    over windows where both are defined, its standard error, verdict). "better"/"worse" when
    the mean difference exceeds 2 standard errors, else "tie"; "–" with < 2 windows."""
    d = (np.asarray(a, float) - np.asarray(b, float))
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan, math.nan, "–"
    mean, sem = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    if abs(mean) <= 2 * sem:
        return mean, sem, "tie"
    return mean, sem, "better" if (mean > 0) == higher_is_better else "worse"


def versus_table(result: TargetResult, p: float) -> list[str]:
    """Markdown lines: PLRP-lambda at ``p`` against LRP and each baseline on the same windows
    (mean paired difference PLRP - other and verdict; for the ignored motifs lower is
    better), and the time ratio. [] without PLRP-lambda at p or anything to compare."""
    dense = dense_rows(result.rows)
    plrp = next((r for r in dense if r["method"] == "plrp-lambda" and r["p"] == p), None)
    others = [r for r in dense if r["method"] == "lrp" or
              not (r["method"].startswith("plrp-") or r["method"] in ("lrp", "random"))]
    if plrp is None or len(others) < 2:
        return []
    keys = dict(_VERSUS, **{f"ignored:{m}": False for m in result.ignored_motifs})
    names = {"gini": "Gini", "rma": "RMA", "rra": "RRA", "aopc_top": f"AOPC top {TOP_STEPS}",
             "aopc": "AOPC all"}
    mine = result.per_window[f"plrp-lambda p={p:g}"]
    lines = ["", f"PLRP-lambda at p = {p:g} against each method on the same windows (mean "
             "difference PLRP - other; better / worse beyond 2 standard errors of the paired "
             "difference, else tie; time ratio: other's ms per window / PLRP's):", "",
             "| PLRP-lambda vs | " + " | ".join(names.get(k, f"on ignored {k[8:]}")
                                             for k in keys) + " | time ratio |",
             "|---|" + "---|" * (len(keys) + 1)]
    for o in others:
        theirs = result.per_window[o["method"]]
        cells = []
        for k, higher in keys.items():
            d, _, verdict = versus(mine[k], theirs[k], higher)
            cells.append("–" if verdict == "–" else f"{d:+.3f} {verdict}")
        ratio = o["ms_per_window"] / plrp["ms_per_window"]
        lines.append(f"| {o['method']} | " + " | ".join(cells) + f" | {_cell(ratio, 2)} |")
    return lines


def dense_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows of unsparsified settings (the paper's experiment)."""
    return [r for r in rows if not r.get("sparsity")]


_SPARSE_KEYS = ("rma", "rra", "aopc")


def sparse_changes(rows: Sequence[dict]) -> list[tuple[dict, dict, dict]]:
    """(sparse row, its unsparsified row, {metric: relative change}) of one target's rows."""
    base = {(r["method"], r["variant"], r["p"]): r for r in dense_rows(rows)}
    out = []
    for r in rows:
        if r.get("sparsity"):
            b = base[r["method"], r["variant"], r["p"]]
            out.append((r, b, {k: (r[k] - b[k]) / abs(b[k]) if b[k] else math.nan
                               for k in _SPARSE_KEYS}))
    return out


def sparse_ok(change: dict, stored: float) -> bool:
    """Within :data:`SPARSE_TOLERANCE` (a loss; gains are fine) and at most
    :data:`SPARSE_MAX_STORED` of the positions stored."""
    return (stored <= SPARSE_MAX_STORED
            and all(math.isfinite(v) and v >= -SPARSE_TOLERANCE for v in change.values()))


def choose_sparsity(rows: Sequence[dict], keys: Sequence[str] = _SPARSE_KEYS,
                    max_stored: float | None = SPARSE_MAX_STORED) -> float | None:
    """The sparsity fraction (all targets' rows together) to use as the default.

    With every criterion (``keys`` = RMA, RRA, AOPC within :data:`SPARSE_TOLERANCE`,
    ``max_stored``): the smallest fraction that meets them all for every target. With
    ``max_stored`` None: the largest fraction whose ``keys`` stay within the tolerance for
    every target (and every smaller evaluated fraction's too). None when none qualifies.
    """
    by_target: dict = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    verdict: dict[float, bool] = {}
    for t_rows in by_target.values():
        for r, _, change in sparse_changes(t_rows):
            ok = all(math.isfinite(change[k]) and change[k] >= -SPARSE_TOLERANCE for k in keys)
            if max_stored is not None:
                ok = ok and r["stored"] <= max_stored
            verdict[r["sparsity"]] = verdict.get(r["sparsity"], True) and ok
    fractions = sorted(verdict)
    if max_stored is not None:
        good = [f for f in fractions if verdict[f]]
        return good[0] if good else None
    best = None
    for f in fractions:
        if not verdict[f]:
            break
        best = f
    return best


def sparse_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: each sparse track against its unsparsified track (none: [])."""
    changes = sparse_changes(rows)
    if not changes:
        return []
    lines = ["", "| track | sparsity | positions stored | RMA | RRA | AOPC all steps | "
             f"AOPC top {TOP_STEPS} | change RMA / RRA / AOPC | within "
             f"{SPARSE_TOLERANCE:.0%}, <= {SPARSE_MAX_STORED:.0%} stored? |",
             "|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r, b, change in changes:
        key = (b["method"], b["p"])
        if key not in seen:  # the unsparsified track first
            seen.add(key)
            lines.append(f"| {b['method']} p={_cell(b['p'], 2)} | 0 | {b['stored']:.1%} | "
                         f"{_cell(b['rma'])} | {_cell(b['rra'])} | {_cell(b['aopc'])} | "
                         f"{_cell(b['aopc_top'])} | | |")
        pct = " / ".join(f"{100 * change[k]:+.1f}%" for k in _SPARSE_KEYS)
        ok = "yes" if sparse_ok(change, r["stored"]) else "no"
        lines.append(f"| {r['method']} p={_cell(r['p'], 2)} | {_cell(r['sparsity'], 2)} | "
                     f"{r['stored']:.1%} | {_cell(r['rma'])} | {_cell(r['rra'])} | "
                     f"{_cell(r['aopc'])} | {_cell(r['aopc_top'])} | {pct} | {ok} |")
    return lines


def update_report(result: Evaluation, report: str | Path, out_dir: str | Path,
                  section: str = "") -> None:
    """Replace the generated block ``section`` of a markdown report (or append it), atomically.

    Figure links are relative to the report's folder.
    """
    import os

    from plrp.atomic import atomic_path

    report = Path(report)
    rel = os.path.relpath(Path(out_dir).resolve(), report.resolve().parent)
    block = report_block(result, Path(rel).as_posix(), section)
    begin, end = report_markers(section)
    text = report.read_text() if report.exists() else ""
    if begin in text and end in text.split(begin, 1)[1]:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    with atomic_path(report) as tmp:
        tmp.write_text(text)
