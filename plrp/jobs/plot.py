"""Figures: relevance sequence logos of a genome region, and the evaluation's metric plots.

Everything draws with matplotlib's Agg backend (no display needed). Logos are drawn from
glyph outlines (``TextPath``) scaled to each position's relevance: height = the signed
relevance of the observed base, drawn below the axis when negative.

Regions are ``CHROM:START-END`` in 0-based half-open coordinates, like BED and every other
coordinate in plrp: the bases START..END-1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import PathPatch  # noqa: E402
from matplotlib.textpath import TextPath  # noqa: E402
from matplotlib.transforms import Affine2D  # noqa: E402

from plrp.atomic import atomic_path  # noqa: E402
from plrp.errors import InputError, PlrpError  # noqa: E402
from plrp.outputs.h5 import open_relevance  # noqa: E402
from plrp.outputs.space import output_errors  # noqa: E402

ALPHABET = "ACGT"
BASE_COLOURS = ("#109648", "#255C99", "#F7B32B", "#D62839")  # A green, C blue, G amber, T red
MAX_REGION_BP = 2000
DPI = 100
FIGURE_DPI = 80      # evaluation figures: small files for docs/
_REGION_RE = re.compile(r"^(?P<chrom>[^\s:]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


# ------------------------------------------------------------------------------- regions

@dataclass(frozen=True)
class Region:
    """``chrom[start:end]``, 0-based half-open."""

    chrom: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start}-{self.end}"


def parse_region(text: str) -> Region:
    """Parse ``CHROM:START-END`` (0-based half-open; commas in numbers allowed)."""
    m = _REGION_RE.match(text.strip())
    if not m:
        raise PlrpError(f"region {text!r}: expected CHROM:START-END (0-based half-open, "
                        "like BED), e.g. chr1:1000-1200")
    start, end = int(m["start"].replace(",", "")), int(m["end"].replace(",", ""))
    if start >= end:
        raise PlrpError(f"region {text!r}: start {start} must be below end {end}")
    if end - start > MAX_REGION_BP:
        raise PlrpError(f"region {text!r}: {end - start} bp is too long to draw as a logo "
                        f"(at most {MAX_REGION_BP} bp)")
    return Region(m["chrom"], start, end)


# ------------------------------------------------------------------------------- reading

@dataclass
class LogoTrack:
    """What one panel shows over a region of n bp.

    ``bases`` (n,) int: 0..3 = A C G T, -1 = no base (N or not covered); ``heights`` (n,)
    float: signed relevance of each position; ``covered`` (n,) bool; ``label``: method/p.
    """

    bases: np.ndarray
    heights: np.ndarray
    covered: np.ndarray
    label: str


def _attr(value):
    return value.decode() if isinstance(value, bytes) else value


def _method_label(method: str, attrs: dict) -> str:
    if method == "lrp":
        return "LRP"
    if attrs.get("baseline"):
        return method
    p = _attr(attrs.get("p_pos", ""))
    variant = _attr(attrs.get("variant", ""))
    try:
        p = f"p={float(p):g}"
    except (TypeError, ValueError):
        p = f"p={p}" if p != "" else ""
    name = f"PLRP-{variant}" if variant else method.upper()
    return f"{name} {p}".strip()


def read_region(h5_path: str | Path, region: Region, target: str | None = None,
                fasta: str | Path | None = None) -> tuple[str, list[LogoTrack]]:
    """Read the relevance of ``region`` from a relevance file (outputs.h5).

    Heights are the per-base track of each method (the run's merge rule and sparsity; a
    base missing from the track is 0). Bases come from the per-window one-hot when the file
    has arrays, else from the FASTA: ``fasta``, or the one recorded in the file.
    Returns (target, one LogoTrack per method: LRP first). Raises :class:`PlrpError` for an
    unknown chromosome/target, a region outside the chromosome or covered by no window, or
    no readable FASTA for a file without arrays.
    """
    h5_path = Path(h5_path)
    with open_relevance(h5_path) as rel:
        lengths = dict(rel.chroms)
        if region.chrom not in lengths:
            names = [c for c, _ in rel.chroms]
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise PlrpError(f"region {region}: chromosome {region.chrom!r} is not in "
                            f"{h5_path} (chromosomes: {shown})")
        if region.end > lengths[region.chrom]:
            raise PlrpError(f"region {region}: outside {region.chrom} "
                            f"(length {lengths[region.chrom]})")
        methods = [m for m in ("lrp", "plrp") if m in rel.methods]
        methods += [m for m in rel.methods if m not in methods]
        if not methods or not rel.targets:
            raise InputError(f"{h5_path}: holds no attributions")
        if target is None:
            if len(rel.targets) != 1:
                raise PlrpError(f"{h5_path} holds targets {', '.join(rel.targets)}; pick one "
                                "with --target")
            target = rel.targets[0]
        if target not in rel.targets:
            raise PlrpError(f"--target {target}: not in {h5_path} (targets: "
                            f"{', '.join(rel.targets)})")

        hit = rel.window_rows(region.chrom, region.start, region.end)
        if hit.size == 0:
            raise PlrpError(f"region {region}: no window of {h5_path} covers it")
        n = region.end - region.start
        pos = np.arange(region.start, region.end)
        win = rel.windows(hit)
        start, end = win["start"], win["end"]
        # nearest-centre window per position (ties: lower row = earlier window)
        centre = (start + end) / 2.0
        inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
        dist = np.where(inside, np.abs(pos[None, :] + 0.5 - centre[:, None]), np.inf)
        best = np.argmin(dist, axis=0)
        covered = np.isfinite(dist[best, np.arange(n)])
        if rel.has_arrays:
            cols = np.where(covered, pos - start[best], 0)
            bases_oh = rel.one_hot(hit.tolist())[best, :, cols]           # (n, 4)
            bases = np.where(bases_oh.sum(axis=1) > 0, bases_oh.argmax(axis=1), -1)
        else:
            bases = _bases_from_fasta(fasta or rel.attrs.get("fasta"), region, h5_path)
        bases = np.where(covered, bases, -1)
        tracks = []
        for m in methods:
            heights = np.zeros(n, np.float64)
            for p, v in rel.track_chunks(m, target, region.chrom):
                sel = (p >= region.start) & (p < region.end)
                heights[p[sel] - region.start] = v[sel]
            tracks.append(LogoTrack(bases, heights, covered,
                                    _method_label(m, rel.method_attrs(m, target))))
    return target, tracks


def _bases_from_fasta(fasta, region: Region, h5_path: Path) -> np.ndarray:
    """Bases (n,) 0..3 = A C G T, -1 = N/other, of ``region`` read from ``fasta``."""
    from plrp.genome.fasta import FastaReader, base_indices

    if not fasta or not Path(fasta).is_file():
        raise PlrpError(f"{h5_path} holds no per-window one-hot and the FASTA it names "
                        f"({fasta or 'none'}) cannot be read; give the FASTA with --fasta")
    with FastaReader(fasta, validate=False) as reader:
        if region.chrom not in dict(reader.chroms):
            raise InputError(f"{fasta}: no sequence {region.chrom!r}; give the FASTA the "
                             f"run explained with --fasta")
        idx = base_indices(reader.fetch(region.chrom, region.start, region.end).upper())
    return np.where(idx < 4, idx.astype(np.int64), -1)


def read_truth(bed: str | Path, region: Region) -> list[tuple[int, int, str]]:
    """Truth BED intervals (0-based half-open) overlapping ``region``: (start, end, name)."""
    from plrp.genome.windows import bed_rows

    out = []
    for lineno, cols in bed_rows(bed):
        try:
            chrom, s, e = cols[0], int(cols[1]), int(cols[2])
        except (IndexError, ValueError):
            raise InputError(f"{bed}: line {lineno}: expected chrom, start, end") from None
        if chrom == region.chrom and s < region.end and e > region.start:
            out.append((s, e, cols[3] if len(cols) > 3 else ""))
    return out


# ------------------------------------------------------------------------------- logos

def logo_figure_size(n_positions: int, n_panels: int) -> tuple[int, int]:
    """Figure size in pixels (width, height) of a logo of ``n_positions`` bp, ``n_panels`` rows."""
    width = int(min(max(150 + 12 * n_positions, 600), 3000))
    return width, 90 + 200 * n_panels


_GLYPHS: dict[str, tuple] = {}


def _glyph(letter: str):
    if letter not in _GLYPHS:
        path = TextPath((0, 0), letter, size=1, prop=FontProperties(family="DejaVu Sans",
                                                                    weight="bold"))
        _GLYPHS[letter] = (path, path.get_extents())
    return _GLYPHS[letter]


def draw_logo(ax, x: np.ndarray, bases: np.ndarray, heights: np.ndarray,
              width: float = 0.9) -> None:
    """Draw one logo row on ``ax``: at x[i] the glyph of bases[i] (0..3), height heights[i].

    Positive heights stand on the axis, negative ones hang below it. bases < 0 draw nothing.
    """
    patches, colours = [], []
    for xi, b, h in zip(x, bases, heights):
        if b < 0 or h == 0 or not math.isfinite(h):
            continue
        path, bb = _glyph(ALPHABET[b])
        t = (Affine2D().translate(-bb.x0, -bb.y0)
             .scale(width / bb.width, abs(h) / bb.height)
             .translate(xi - width / 2, 0.0 if h > 0 else h))
        patches.append(PathPatch(t.transform_path(path)))
        colours.append(BASE_COLOURS[b])
    if patches:
        ax.add_collection(PatchCollection(patches, facecolors=colours, edgecolors="none"))
    ax.axhline(0.0, color="black", lw=0.6)


def plot_region(h5_path: str | Path, region: str | Region, out_png: str | Path, *,
                target: str | None = None, truth_bed: str | Path | None = None,
                fasta: str | Path | None = None) -> Path:
    """Write a PNG logo of ``region`` (one panel per method in the file, LRP on top).

    Size: :func:`logo_figure_size` pixels at 100 dpi. Truth motifs (``truth_bed``) are shaded
    and named. ``fasta``: where to read the bases when the file has no per-window one-hot
    (default: the FASTA the file names). Returns the path written (atomically).
    """
    if not isinstance(region, Region):
        region = parse_region(region)
    target, tracks = read_region(h5_path, region, target, fasta)
    truth = read_truth(truth_bed, region) if truth_bed else []
    n = region.end - region.start
    w_px, h_px = logo_figure_size(n, len(tracks))
    fig, axes = plt.subplots(len(tracks), 1, figsize=(w_px / DPI, h_px / DPI), dpi=DPI,
                             sharex=True, squeeze=False)
    x = np.arange(region.start, region.end)
    for ax, tr in zip(axes[:, 0], tracks):
        for s, e, name in truth:
            ax.axvspan(max(s, region.start) - 0.5, min(e, region.end) - 0.5,
                       color="#9ecae1", alpha=0.35, lw=0)
        draw_logo(ax, x, tr.bases, tr.heights)
        top = float(np.nanmax(np.abs(tr.heights))) if tr.heights.size else 0.0
        top = top if top > 0 else 1.0
        ax.set_ylim(-1.1 * top if (tr.heights < 0).any() else -0.05 * top, 1.15 * top)
        ax.set_xlim(region.start - 0.5, region.end - 0.5)
        ax.set_ylabel("relevance")
        ax.set_title(tr.label, loc="left", fontsize=9)
        for s, e, name in truth:
            ax.text((max(s, region.start) + min(e, region.end)) / 2 - 0.5, 1.08 * top, name,
                    ha="center", va="top", fontsize=7, color="#08519c")
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        if not tr.covered.all():
            ax.text(0.99, 0.02, "hatched: not covered by any window", transform=ax.transAxes,
                    ha="right", fontsize=7)
            for xi in x[~tr.covered]:
                ax.axvspan(xi - 0.5, xi + 0.5, color="grey", alpha=0.2, lw=0)
    axes[-1, 0].set_xlabel(f"{region.chrom} position (0-based)")
    methods = " / ".join(tr.label for tr in tracks)
    fig.suptitle(f"{region.chrom}:{region.start}-{region.end}  ({n} bp)  target {target}  "
                 f"{methods}", fontsize=10)
    fig.subplots_adjust(left=max(0.6 / (w_px / DPI), 0.02), right=0.99,
                        top=1 - 0.45 / (h_px / DPI), bottom=0.55 / (h_px / DPI), hspace=0.45)
    out_png = Path(out_png)
    with output_errors(out_png), atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return out_png


# ------------------------------------------------------------------------------- evaluation

_PANELS = (("gini", "sparsity (Gini)"), ("rma", "relevance mass accuracy"),
           ("rra", "relevance rank accuracy"), ("aopc_top", "faithfulness: AOPC, top features"),
           ("aopc", "faithfulness: AOPC, all MoRF steps"),
           ("conservation_error_median", "conservation error (median)"),
           ("ms_per_window", "ms per window"))
_VARIANT_STYLE = {"plrp-lambda": ("#d62728", "o"), "plrp-m": ("#1f77b4", "s")}


def plot_metrics_vs_p(rows: Sequence[dict], out_png: str | Path, title: str = "") -> None:
    """Each metric against p per PLRP variant (p = 0 point and dashed line: plain LRP).

    ``rows``: summary rows of :func:`plrp.evaluate.evaluate_target` (one target).
    """
    lrp = next(r for r in rows if r["method"] == "lrp")
    rnd = next((r for r in rows if r["method"] == "random"), None)
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.4), dpi=FIGURE_DPI)
    for ax, (key, name) in zip(axes.flat, _PANELS):
        ax.axhline(lrp[key], color="grey", ls="--", lw=1, label="LRP (p = 0)")
        if key in ("aopc", "aopc_top") and rnd is not None:
            ax.axhline(rnd[key], color="black", ls=":", lw=1, label="random order")
        for method, (colour, marker) in _VARIANT_STYLE.items():
            series = [lrp] + sorted((r for r in rows if r["method"] == method),
                                    key=lambda r: r["p"])
            if len(series) < 2:
                continue
            p = [r["p"] for r in series]
            y = [r[key] for r in series]
            err = [r.get(f"{key}_sem", 0.0) for r in series]
            err = [0.0 if (e is None or not math.isfinite(e)) else e for e in err]
            ax.errorbar(p, y, yerr=err, color=colour, marker=marker, ms=4, lw=1.2, capsize=2,
                        label=method.replace("plrp-", "PLRP-"))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("p (p_pos; p_neg = p_pos / 2)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    axes.flat[3].legend(fontsize=8)
    axes.flat[-1].set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, format="png", dpi=FIGURE_DPI)
    plt.close(fig)


def plot_morf_curves(curves: dict[str, list[float]], step_size: int, out_png: str | Path,
                     title: str = "", per_variant: int = 3) -> None:
    """Mean MoRF curves: score against positions removed; LRP, random order and a few p.

    ``curves``: label -> mean f(x_k), k = 0..S (labels as :func:`plrp.evaluate.setting_label`).
    ``per_variant``: how many p values to show per variant (smallest, middle, largest...).
    """
    variants = sorted({k.split(" ")[0] for k in curves if k.startswith("plrp")})
    fig, axes = plt.subplots(1, max(1, len(variants)), figsize=(5.5 * max(1, len(variants)), 4),
                             dpi=FIGURE_DPI, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, variant in zip(axes[0], variants or ["lrp"]):
        for label, style in (("lrp", dict(color="black", lw=2)),
                             ("random", dict(color="grey", ls=":", lw=1.5))):
            if label in curves:
                y = curves[label]
                ax.plot(np.arange(len(y)) * step_size, y, label=label.upper()
                        if label == "lrp" else "random order", **style)
        keys = sorted((k for k in curves if k.startswith(variant + " ")),
                      key=lambda k: float(k.split("p=")[1]))
        if len(keys) > per_variant:
            pick = np.linspace(0, len(keys) - 1, per_variant).round().astype(int)
            keys = [keys[i] for i in sorted(set(pick))]
        for i, k in enumerate(keys):
            y = curves[k]
            ax.plot(np.arange(len(y)) * step_size, y, color=cmap(0.15 + 0.7 * i / max(1, len(keys) - 1)),
                    lw=1.3, label=k.replace("plrp-", "PLRP-"))
        ax.set_xlabel("most relevant positions replaced by N")
        ax.set_ylabel("mean explained score (logit)")
        ax.set_title(variant.replace("plrp-", "PLRP-"), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
