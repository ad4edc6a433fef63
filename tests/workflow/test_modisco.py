"""TF-MoDISco hand-off: `plrp export modisco` feeds modisco-lite, which finds the motifs that
the simulation implanted, from PLRP attributions of the shipped default model."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest

from plrp.outputs.h5 import open_relevance
from workflow_support import PLRP, SNAKEFILE, quiet_env, require_tool, run

# The shipped default model (None) explains its CTCF_AND_TP53 output, which needs both an
# implanted CTCF and an implanted TP53 motif, so one modisco run should find both.
MODEL: str | None = None
TARGET = "CTCF_AND_TP53"
IMPLANTED = ("CTCF", "TP53")
N_WINDOWS = 300
DISTRACTOR = "SPI1"          # implanted too, but no task needs it
# A JASPAR column allows the bases with frequency >= 0.25 (a degenerate consensus, as
# CTCF's columns often are); a found pattern matches when its consensus hits the allowed
# bases in >= 80 % of the motif's columns and its base frequencies correlate with the
# motif's (mean per-column Pearson r >= 0.7), at the best ungapped offset on either strand.
ALLOWED_FREQUENCY = 0.25
MIN_IDENTITY = 0.8
MIN_CORRELATION = 0.7


def _both_strands(freq_4xk: np.ndarray):
    yield freq_4xk
    yield freq_4xk[::-1, ::-1]          # reverse complement: ACGT -> TGCA, reversed


def match(motif_4xk: np.ndarray, pattern_wx4: np.ndarray) -> tuple[float, float]:
    """(identity, correlation) of a motif's count matrix (4, K) with a found pattern's base
    frequencies (W, 4), W >= K, each maximised over offsets and both strands."""
    freq = motif_4xk / motif_4xk.sum(axis=0, keepdims=True)
    k = freq.shape[1]
    best_id = best_r = -1.0
    for q in _both_strands(freq):
        allowed = q >= ALLOWED_FREQUENCY
        for offset in range(pattern_wx4.shape[0] - k + 1):
            window = pattern_wx4[offset:offset + k].T.astype(np.float64)      # (4, K)
            best_id = max(best_id, float(np.mean(allowed[window.argmax(0), np.arange(k)])))
            r = [np.corrcoef(q[:, j], window[:, j])[0, 1] if window[:, j].std() > 0 else 0.0
                 for j in range(k)]
            best_r = max(best_r, float(np.mean(r)))
    return best_id, best_r


def _one_hot(seq: str) -> np.ndarray:
    return np.eye(4)[["ACGT".index(c) for c in seq]]


def test_match_helper():
    # a 4-column motif, consensus ACGT; its reverse complement is ACGT too
    motif = np.array([[9, 0, 0, 1], [0, 9, 0, 1], [0, 0, 9, 1], [1, 1, 1, 7]], float)
    assert match(motif, _one_hot("TTACGTTT"))[0] == 1.0
    assert match(motif, _one_hot("TTACGTTT"))[1] > 0.9
    assert match(motif, _one_hot("AAAAAAAA"))[0] == 0.25
    assert match(motif, _one_hot("CCCCCCCC"))[1] < 0.5
    # strand: motif AAGG (rev comp CCTT) is found in ...CCTT...
    motif2 = np.array([[9, 9, 0, 0], [0, 0, 0, 0], [0, 0, 9, 9], [0, 0, 0, 0]], float)
    assert match(motif2, _one_hot("GACCTTGA"))[0] == 1.0
    assert match(motif2, _one_hot("GACCTAGA"))[0] == 0.75


@pytest.fixture(scope="module")
def modisco_inputs(tmp_path_factory):
    """Simulated windows explained (with per-window arrays: --arrays), merged, exported and
    run through `modisco motifs` by workflow/Snakefile (2 shards); returns the folder of the
    target's modisco files."""
    modisco = require_tool("modisco")
    root = tmp_path_factory.mktemp("modisco")
    run(PLRP + ["simulate", "-n", str(N_WINDOWS), "--seed", "3", "--out", str(root / "sim")])
    config = [f"fasta={root / 'sim.fa'}", "shards=2", "name=run", "out_dir=results",
              "device=cpu", "gpus_per_shard=0", "threads_per_shard=1", "bigwig=False",
              f"plrp={sys.executable} -m plrp", "explain_args=--quiet --arrays",
              f"targets=[{TARGET}]", "methods=[plrp]",
              f"modisco_cmd={modisco}",
              f"modisco={{enabled: true, targets: [{TARGET}], method: plrp, "
              "max_seqlets: 500, window: 200, extra: '', report: false}"]
    if MODEL:
        config.append(f"model={MODEL}")
    run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(root),
         "--cores", "2", "--quiet", "--config", *config], env=quiet_env())
    return root / "results"


def test_export_writes_what_modisco_reads(modisco_inputs):
    mod = modisco_inputs / "modisco" / TARGET
    with np.load(mod / "ohe.npz") as f:
        assert list(f.keys()) == ["arr_0"]
        ohe = f["arr_0"]
    with np.load(mod / "attr.npz") as f:
        hyp = f["arr_0"]
    with np.load(mod / "contrib.npz") as f:
        contrib = f["arr_0"]
    assert ohe.shape == hyp.shape == contrib.shape == (N_WINDOWS, 4, 200)
    assert ohe.dtype == hyp.dtype == np.float32
    with open_relevance(modisco_inputs / "run.h5") as rel:
        assert np.array_equal(ohe, rel.one_hot().astype(np.float32))
        assert np.array_equal(hyp, rel.attribution("plrp", TARGET, "hypothetical"))
        assert np.array_equal(contrib, rel.attribution("plrp", TARGET, "relevance"))
        n = rel.n_windows
    # simulated sequences are pure ACGT: one base per position
    assert np.all(ohe.sum(axis=1) == 1)
    # contributions are the hypothetical ones at the observed base (epsilon rule, float64)
    expected = ohe.astype(np.float64) * hyp.astype(np.float64)
    assert np.allclose(contrib.sum(axis=1), expected.sum(axis=1), rtol=1e-4, atol=1e-6)
    assert len((mod / "windows.bed").read_text().splitlines()) == n == N_WINDOWS


def test_modisco_finds_implanted_motifs(modisco_inputs):
    from plrp.simulate import load_motifs

    # written by the workflow: modisco motifs -s ohe.npz -a attr.npz -n 500 -w 200
    results = modisco_inputs / "modisco" / TARGET / "modisco_results.h5"
    patterns = []
    with h5py.File(results, "r") as h5:
        assert "pos_patterns" in h5, "modisco found no positive pattern"
        for name, pattern in h5["pos_patterns"].items():
            patterns.append((name, pattern["sequence"][()],      # (W, 4) seqlet base freqs
                             int(pattern["seqlets/n_seqlets"][0])))
    motifs = load_motifs([*IMPLANTED, DISTRACTOR])
    found = {}
    for motif_name, motif in motifs.items():
        scores = [(*match(motif.counts, pfm), name, n) for name, pfm, n in patterns]
        found[motif_name] = max(scores, key=lambda s: (s[0] >= MIN_IDENTITY, s[1]))
    summary = "; ".join(f"{m}: {name} identity {i:.2f} r {r:.2f} ({n} seqlets)"
                        for m, (i, r, name, n) in found.items())
    print(summary)
    for motif_name in IMPLANTED:
        identity, r, _, n = found[motif_name]
        assert identity >= MIN_IDENTITY and r >= MIN_CORRELATION and n >= 10, summary
    # the distractor is in the sequences but irrelevant to the output: no pattern for it
    assert found[DISTRACTOR][1] < MIN_CORRELATION, summary


def test_seqlets_come_back_on_the_implanted_motifs(modisco_inputs):
    """`modisco seqlet-bed` with the exported windows.bed as peaks file (the workflow's rule
    modisco_seqlets) puts the seqlets in the explained genome's coordinates: the seqlets of the pattern that matches CTCF (TP53)
    lie on implanted CTCF (TP53) sites of the simulation's truth BED, not on the other
    motifs' sites, and no longer once moved by 50 bp. (Some lie on chance sequence that
    resembles the motif: the background is random.)"""
    from plrp.simulate import load_motifs

    mod = modisco_inputs / "modisco" / TARGET
    results = mod / "modisco_results.h5"
    seqlets: dict[str, list] = {}
    for line in (mod / "seqlets.bed").read_text().splitlines():
        if line and not line.startswith("track"):       # one track line per pattern
            chrom, start, end, name = line.split("\t")[:4]
            seqlets.setdefault(name.rsplit(".", 1)[0], []).append((chrom, int(start), int(end)))
    truth: dict[str, list] = {}
    for line in (modisco_inputs.parent / "sim.motifs.bed").read_text().splitlines():
        chrom, start, end, name = line.split("\t")[:4]
        truth.setdefault(name, []).append((chrom, int(start), int(end)))
    with h5py.File(results, "r") as h5:
        patterns = {name: p["sequence"][()] for name, p in h5["pos_patterns"].items()}

    def on_sites(rows, motif, shift=0):
        return sum(any(c == tc and s + shift < te and ts < e + shift
                       for tc, ts, te in truth[motif]) for c, s, e in rows)

    motifs = load_motifs(list(IMPLANTED))
    for motif_name in IMPLANTED:
        best = max(patterns, key=lambda p: match(motifs[motif_name].counts, patterns[p])[1])
        rows = seqlets[best]
        own = on_sites(rows, motif_name)
        others = max(on_sites(rows, m) for m in truth if m != motif_name)
        summary = (f"{motif_name}: {best}, {len(rows)} seqlets, {own} on its sites, "
                   f"{others} on another motif's, {on_sites(rows, motif_name, 50)} moved")
        assert own >= 0.5 * len(rows) and own >= 2 * others, summary
        assert on_sites(rows, motif_name, 50) <= own / 4, summary
