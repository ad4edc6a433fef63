"""Hand a relevance file (outputs.h5) to TF-MoDISco (modisco-lite).

``modisco motifs -s ohe.npz -a attr.npz -n MAX_SEQLETS -w WINDOW`` reads two arrays of shape
(N, 4, L), each as the member ``arr_0`` of an .npz archive: the one-hot sequences and the
hypothetical contributions (the relevance each of the four bases would get at each position).
It centres a window of ``-w`` positions (default 400) inside L, so ``-w`` must be <= L; we
record L in ``README.txt`` next to the arrays.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plrp.atomic import AtomicGroup
from plrp.errors import PlrpError
from plrp.outputs.h5 import open_relevance
from plrp.outputs.space import output_errors

log = logging.getLogger(__name__)

# Rows copied per step: bounds memory to a few MB per array whatever the file size.
_ROWS_PER_STEP = 4096


@dataclass(frozen=True)
class ModiscoExport:
    """What ``export_modisco`` wrote: paths and the array shape (N, 4, L)."""

    one_hot: Path
    hypothetical: Path
    contributions: Path
    windows: Path
    n_windows: int
    window: int
    method: str
    target: str


def _pick(available: list[str], wanted: str | None, what: str, path: Path) -> str:
    """The ``what`` (method or target) to export: the one asked for, or the only one there."""
    if wanted is not None:
        if wanted not in available:
            raise PlrpError(
                f"{path}: no {what} {wanted!r} in /attributions (has: {', '.join(available)})"
            )
        return wanted
    if len(available) == 1:
        return available[0]
    raise PlrpError(
        f"{path}: holds several {what}s ({', '.join(available)}); choose one with --{what}"
    )


def export_modisco(
    h5_path: str | Path,
    out_dir: str | Path,
    *,
    target: str | None = None,
    method: str | None = None,
    top: int | None = None,
) -> ModiscoExport:
    """Write the arrays ``modisco motifs`` reads from one method/target of a relevance file.

    Files in ``out_dir`` (written together or not at all):
      ohe.npz      arr_0 (N, 4, L) float32  one-hot windows (A, C, G, T rows)
      attr.npz     arr_0 (N, 4, L) float32  hypothetical contributions (for ``-a``)
      contrib.npz  arr_0 (N, 4, L) float32  actual contributions (relevance), for reference
      windows.bed  N lines ``chrom start end index score`` in array order (0-based,
                   half-open; score: the window's explained output), the peaks file of
                   ``modisco seqlet-bed -p windows.bed -c '*'`` (seqlets back in genome
                   coordinates) and the map from a seqlet's example_idx to the genome
      README.txt   the modisco command line to run and where the arrays came from

    ``method`` defaults to the only method in the file, else "plrp" if present; ``target``
    to the only target. ``top``: keep only the ``top`` windows with the largest explained
    score (ties: lower row first), still in file (genome) order -- a genome has far more
    windows than modisco needs or can hold. Returns a ``ModiscoExport``. Raises ``PlrpError``
    for a missing method/target or a file without per-window arrays (a whole-genome run:
    they come with ``plrp explain --arrays`` or ``--regions``), ``InputError`` for a file
    that is not a plrp relevance file (version 2).
    """
    h5_path = Path(h5_path)
    out_dir = Path(out_dir)
    with open_relevance(h5_path) as rel:
        rel.require_arrays("plrp export modisco")
        methods = sorted(rel.methods)
        if method is None and len(methods) > 1 and "plrp" in methods:
            method = "plrp"
        method = _pick(methods, method, "method", h5_path)
        target = _pick(sorted(rel.targets), target, "target", h5_path)
        n, length = rel.n_windows, rel.window
        if n == 0:
            raise PlrpError(f"{h5_path}: holds no windows; nothing to export")
        if top is not None and top < 1:
            raise PlrpError(f"--top {top}: must be at least 1")
        if top is not None and top < n:
            score = rel.attribution(method, target, "score").astype(np.float64)
            rows = np.sort(np.argsort(-score, kind="stable")[:top])
        else:
            rows = np.arange(n)
        # modisco wants whole arrays in one .npz member; K x 4 x L float32 fits in memory for
        # the sizes modisco itself can handle.
        k = rows.size
        one_hot = np.empty((k, 4, length), dtype=np.float32)
        hypothetical = np.empty((k, 4, length), dtype=np.float32)
        contributions = np.empty((k, 4, length), dtype=np.float32)
        for lo in range(0, k, _ROWS_PER_STEP):
            hi = min(k, lo + _ROWS_PER_STEP)
            # all rows: plain slices; chosen rows (increasing): h5py point selection
            sel = slice(lo, hi) if k == n else rows[lo:hi]
            one_hot[lo:hi] = rel.one_hot(sel)
            hypothetical[lo:hi] = rel.attribution(method, target, "hypothetical", sel)
            contributions[lo:hi] = rel.attribution(method, target, "relevance", sel)
        win = rel.windows()
        chrom = win["chrom"][rows].tolist()
        start, end, index = win["start"][rows], win["end"][rows], win["index"][rows]
        window_score = rel.attribution(method, target, "score")[rows]
        provenance = {
            "source": str(h5_path),
            "method": method,
            "target": target,
            "model_sha256": str(rel.attrs.get("model_sha256", "")),
            "composite": str(rel.attrs.get("composite", "")),
            "array_dtype": rel.array_dtype,
            "group_attrs": rel.method_attrs(method, target),
        }

    paths = {
        "ohe": out_dir / "ohe.npz",
        "attr": out_dir / "attr.npz",
        "contrib": out_dir / "contrib.npz",
        "bed": out_dir / "windows.bed",
        "readme": out_dir / "README.txt",
    }
    with output_errors(out_dir), AtomicGroup() as outputs:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = outputs.path

        # np.savez_compressed appends ".npz" unless the name already ends with it; the
        # temporary names do not, so write through an open file handle.
        for key, array in (("ohe", one_hot), ("attr", hypothetical), ("contrib", contributions)):
            with open(tmp(paths[key]), "wb") as handle:
                np.savez_compressed(handle, arr_0=array)
        with open(tmp(paths["bed"]), "w", encoding="utf-8", newline="\n") as handle:
            # modisco seqlet-bed reads chrom, start, end and the score (5th column); it
            # centres its -w window on (start + end) // 2, as modisco motifs does on L
            for c, s, e, i, v in zip(chrom, start, end, index, window_score):
                handle.write(f"{c}\t{int(s)}\t{int(e)}\t{int(i)}\t{float(v):.6g}\n")
        window = min(length, 400) - min(length, 400) % 2
        readme = (
            f"TF-MoDISco input exported by plrp from {h5_path.name}\n"
            f"method={method} target={target} windows={k} of {n} length={length}\n"
            f"provenance={json.dumps(provenance, sort_keys=True)}\n\n"
            f"Run (window -w must be <= {length}; -n caps the seqlets per sign):\n"
            f"  modisco motifs -s ohe.npz -a attr.npz -n 2000 -w {window} -o modisco_results.h5\n"
            f"  modisco report -i modisco_results.h5 -o report/\n"
            f"  modisco seqlet-bed -i modisco_results.h5 -p windows.bed -c '*' -o seqlets.bed\n"
            f"Row i of every array is line i of windows.bed (chrom start end global_index "
            f"score),\nso seqlet-bed writes the seqlets in genome coordinates.\n"
        )
        with open(tmp(paths["readme"]), "w", encoding="utf-8") as handle:
            handle.write(readme)
        outputs.commit()
    log.info("wrote %d windows of length %d to %s", k, length, out_dir)
    return ModiscoExport(
        one_hot=paths["ohe"],
        hypothetical=paths["attr"],
        contributions=paths["contrib"],
        windows=paths["bed"],
        n_windows=k,
        window=length,
        method=method,
        target=target,
    )
