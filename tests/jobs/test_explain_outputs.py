"""Output tiers, sparse tracks against an independent reference, bgzip + tabix, --target all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from plrp.cli import main
from plrp.errors import PlrpError
from plrp.outputs.bedgraph import read_bedgraph
from plrp.jobs.explain import explain_fasta
from plrp.models.checkpoint import save_checkpoint
from plrp.outputs.h5 import open_relevance

from .conftest import TARGETS, listing, small_model

QUIET = dict(progress=False)


def ref_sparse(r: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The mass rule in float64, one window (L,) at a time: per sign, zero the
    smallest-|r| bases (ties: lower position first) whose running mass stays within
    ``fraction`` of that sign's mass. Returns (kept values, ambiguous) where ambiguous
    marks bases whose running mass lies within 1e-4 of the cut (float32 rounding may
    put them on either side)."""
    out = r.astype(np.float64).copy()
    ambiguous = np.zeros(r.shape, bool)
    for sign in (1.0, -1.0):
        idx = [i for i in range(r.size) if sign * r[i] > 0]
        idx.sort(key=lambda i: (abs(r[i]), i))
        total = sum(abs(float(r[i])) for i in idx)
        run = 0.0
        for i in idx:
            run += abs(float(r[i]))
            if abs(run - fraction * total) <= 1e-4 * total:
                ambiguous[i] = True
            if run <= fraction * total:
                out[i] = 0.0
    return out, ambiguous


def nearest_centre(starts, ends, per_base, length):
    """Per-base track from windows by brute force: the window whose centre is nearest."""
    best = np.full(length, np.inf)
    out = np.zeros(length)
    source = np.full(length, -1)
    for k in range(len(starts)):
        s, e = int(starts[k]), int(ends[k])
        d = np.abs(np.arange(s, e) + 0.5 - (s + e) / 2)
        better = d < best[s:e]
        out[s:e] = np.where(better, per_base[k, :e - s], out[s:e])
        source[s:e] = np.where(better, k, source[s:e])
        best[s:e] = np.where(better, d, best[s:e])
    return out, source


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_sparse_track_equals_the_mass_rule_reference(genome, model_path, tmp_path, fraction):
    res = explain_fasta(genome, tmp_path / "s", model=model_path, stride=70, arrays=True,
                        sparsity=fraction, bedgraph="plain", **QUIET)
    dense = explain_fasta(genome, tmp_path / "d", model=model_path, stride=70, arrays=True,
                          sparsity=0.0, bedgraph="none", **QUIET)
    with open_relevance(res.h5) as st, open_relevance(dense.h5) as dn:
        win = st.windows()
        for t in TARGETS:
            per_base = st.attribution("plrp", t).astype(np.float64).sum(axis=1)
            np.testing.assert_array_equal(st.attribution("plrp", t),
                                          dn.attribution("plrp", t))
            kept, unsure = zip(*(ref_sparse(row, fraction) for row in per_base))
            kept, unsure = np.array(kept), np.array(unsure)
            stored_dense = stored_sparse = 0
            for chrom, n in st.chroms:
                sel = win["chrom"] == chrom
                ref, src = nearest_centre(win["start"][sel], win["end"][sel], kept[sel], n)
                amb = np.zeros(n, bool)
                for k, (s, e) in enumerate(zip(win["start"][sel], win["end"][sel])):
                    amb[s:e] |= (src[s:e] == k) & unsure[sel][k, :e - s]
                pos, val = st.track("plrp", t, chrom)
                got = np.zeros(n)
                got[pos] = val
                ok = ~amb
                np.testing.assert_array_equal(got[ok] != 0, ref[ok] != 0)
                np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-5, atol=1e-7)
                stored_sparse += pos.size
                stored_dense += dn.track("plrp", t, chrom)[0].size
            assert res.stored["plrp", t] == stored_sparse
            # the rule drops at least the share of bases a mass share implies: here many
            assert stored_sparse < (0.75 if fraction == 0.3 else 0.5) * stored_dense
    rows = read_bedgraph(res.bedgraphs["plrp", "tA"])
    assert sum(e - s for _, s, e, _ in rows) == res.stored["plrp", "tA"]


def test_tiers_whole_genome_regions_arrays_and_float16(genome, model_path, tmp_path):
    whole = explain_fasta(genome, tmp_path / "w", model=model_path, targets=["tA"], **QUIET)
    assert listing(tmp_path) == ["w.h5", "w.igv.xml", "w.tA.bedGraph.gz", "w.tA.bedGraph.gz.tbi"]
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t600\n")
    reg = explain_fasta(genome, tmp_path / "r", model=model_path, targets=["tA"],
                        regions=bed, bedgraph="none", **QUIET)
    no = explain_fasta(genome, tmp_path / "n", model=model_path, targets=["tA"],
                       regions=bed, arrays=False, bedgraph="none", **QUIET)
    half = explain_fasta(genome, tmp_path / "h", model=model_path, targets=["tA"],
                         regions=bed, array_dtype="float16", bedgraph="none", **QUIET)
    with (open_relevance(whole.h5) as w, open_relevance(reg.h5) as r,
          open_relevance(no.h5) as n, open_relevance(half.h5) as h):
        assert not w.has_arrays and r.has_arrays and not n.has_arrays and h.has_arrays
        assert w.attribution("plrp", "tA", "score").shape == (w.n_windows,)
        with pytest.raises(PlrpError, match="--arrays"):
            w.attribution("plrp", "tA")
        assert h.array_dtype == "float16"
        for name in ("relevance", "hypothetical"):
            np.testing.assert_array_equal(h.attribution("plrp", "tA", name),
                                          r.attribution("plrp", "tA", name)
                                          .astype(np.float16).astype(np.float32))
        # the tracks do not depend on the tier
        for chrom in ("chr1",):
            for a, b in zip(r.track("plrp", "tA", chrom), n.track("plrp", "tA", chrom)):
                np.testing.assert_array_equal(a, b)


def test_bgzip_bedgraph_answers_a_real_tabix_query(genome, model_path, tmp_path):
    import pysam

    gz = explain_fasta(genome, tmp_path / "z", model=model_path, targets=["tB"], stride=50,
                       **QUIET)
    plain = explain_fasta(genome, tmp_path / "p", model=model_path, targets=["tB"],
                          stride=50, bedgraph="plain", **QUIET)
    path = gz.bedgraphs["plrp", "tB"]
    assert path.name == "z.tB.bedGraph.gz" and path.with_suffix(".gz.tbi").is_file()
    rows = read_bedgraph(plain.bedgraphs["plrp", "tB"])
    with pysam.TabixFile(str(path)) as tbx:
        assert sorted(tbx.contigs) == ["chr1", "chr2"]
        for chrom, a, b in [("chr1", 0, 1700), ("chr2", 250, 731), ("chr2", 1999, 2000)]:
            got = [tuple(line.split("\t")) for line in tbx.fetch(chrom, a, b)]
            want = [r for r in rows if r[0] == chrom and r[2] > a and r[1] < b]
            assert [(c, int(s), int(e), float(v)) for c, s, e, v in got] == want
            assert got or chrom == "chr2" and a == 1999


def test_target_all_refused_past_max_targets_with_size_and_time(genome, tmp_path):
    many = tmp_path / "many.safetensors"
    save_checkpoint(many, small_model(5, [f"o{i}" for i in range(5)]))
    with pytest.raises(PlrpError) as err:
        explain_fasta(genome, tmp_path / "o" / "x", model=many, targets=["all"],
                      max_targets=3, **QUIET)
    msg = str(err.value)
    assert "5 targets" in msg and "--max-targets 5" in msg and " h of engine time" in msg
    assert "B" in msg.split("write about", 1)[1].split(" and ")[0]  # a size, e.g. "1.2 MB"
    assert listing(tmp_path / "o") == []
    res = CliRunner().invoke(main, ["explain", "--fasta", str(genome), "--model", str(many),
                                    "--out", str(tmp_path / "c" / "x"), "--target", "all",
                                    "--max-targets", "3", "--quiet"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    ok = explain_fasta(genome, tmp_path / "k" / "x", model=many, targets=["all"],
                       max_targets=5, bedgraph="none", **QUIET)
    with open_relevance(ok.h5) as st:
        assert st.targets == [f"o{i}" for i in range(5)]


def test_out_folder_writes_inside_it_and_warnings_survive_quiet(tmp_path, model_path, caplog):
    """``--out results/`` (or an existing folder) writes ``results/<fasta stem>.*``; --quiet
    drops the progress and summary but keeps the warning about skipped short sequences."""
    rng = np.random.default_rng(3)
    fa = tmp_path / "genome.fa"
    fa.write_text(">long\n" + "".join(rng.choice(list("ACGT"), 400)) + "\n>tiny\nACGTACGT\n")
    for out in (f"{tmp_path / 'results'}/", str(tmp_path)):
        caplog.clear()
        res = CliRunner().invoke(main, ["explain", "--fasta", str(fa), "--model",
                                        str(model_path), "--out", out, "--quiet"])
        assert res.exit_code == 0, res.output
        assert (Path(out) / "genome.h5").is_file()
        assert (Path(out) / f"genome.{TARGETS[0]}.bedGraph.gz").is_file()
        assert res.output.strip() == ""           # no progress bar, no summary line
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("shorter than" in w and "tiny:0-8" in w for w in warned), warned
    assert not (tmp_path / "results.h5").exists()


def test_gaps_and_untrained_window_are_warned(tmp_path, model_path, caplog):
    """A stride longer than the window leaves gaps, and a window other than the trained
    length runs on a model with global pooling: both run, both say so."""
    rng = np.random.default_rng(4)
    fa = tmp_path / "g.fa"
    fa.write_text(">c\n" + "".join(rng.choice(list("ACGT"), 600)) + "\n")
    caplog.clear()
    explain_fasta(fa, tmp_path / "a", model=model_path, stride=150, progress=False)
    assert any("not explained" in r.getMessage() and "50 bp" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")
    caplog.clear()
    explain_fasta(fa, tmp_path / "b", model=model_path, window=120, progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("--window 120" in w and "trained on" in w for w in warned), warned
    caplog.clear()
    explain_fasta(fa, tmp_path / "c", model=model_path, progress=False)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_igv_session_opens_every_track_at_the_top_window(tmp_path, model_path):
    """PREFIX.igv.xml names the FASTA as genome, every track by a path relative to itself
    (bigWig when written), autoscale on, and the locus of the top-scoring window."""
    import xml.etree.ElementTree as ET

    rng = np.random.default_rng(8)
    fa = tmp_path / "g.fa"
    fa.write_text(">c1\n" + "".join(rng.choice(list("ACGT"), 700)) + "\n>c2\n"
                  + "".join(rng.choice(list("ACGT"), 300)) + "\n")
    out = tmp_path / "o" / "run"
    res = explain_fasta(fa, out, model=model_path, bigwig=True, progress=False)
    root = ET.parse(res.session).getroot()
    assert res.session == tmp_path / "o" / "run.igv.xml"
    assert root.get("genome") == str(fa.resolve())
    paths = [r.get("path") for r in root.iter("Resource")]
    assert paths == [f"run.{t}.bw" for t in TARGETS]
    assert all((res.session.parent / p).is_file() for p in paths)
    data_tracks = root.findall("Panel[@name='DataPanel']/Track")
    assert [t.get("autoScale") for t in data_tracks] == ["true"] * len(TARGETS)
    assert not (tmp_path / "o" / "run.alias.tab").exists()  # plain names need no aliases
    with open_relevance(res.h5) as f:
        score = f.attribution("plrp", TARGETS[0], "score")
        w = f.windows()
    top = int(np.argmax(score))
    assert root.get("locus") == f"{w['chrom'][top]}:{w['start'][top] + 1}-{w['end'][top]}"
    # without any track file there is no session
    res = explain_fasta(fa, tmp_path / "p" / "run", model=model_path, bedgraph="none",
                        progress=False)
    assert res.session is None and not (tmp_path / "p" / "run.igv.xml").exists()


def test_gi_names_get_an_alias_file_beside_the_session(tmp_path, model_path):
    """NCBI gi|...| names: PREFIX.alias.tab lists each FASTA name with its accession.version,
    accession and gi number (IGV's alias format), the name first."""
    rng = np.random.default_rng(9)
    names = ["gi|9626243|ref|NC_001416.1|", "gi|49175990|ref|NC_000913.2|"]
    fa = tmp_path / "gi.fa"
    fa.write_text("".join(f">{n}\n" + "".join(rng.choice(list("ACGT"), 400)) + "\n"
                          for n in names))
    res = explain_fasta(fa, tmp_path / "o" / "run", model=model_path, progress=False)
    lines = (tmp_path / "o" / "run.alias.tab").read_text().splitlines()
    assert sorted(line.split("\t") for line in lines) == sorted([
        [names[0], "NC_001416.1", "NC_001416", "9626243"],
        [names[1], "NC_000913.2", "NC_000913", "49175990"]])
    assert res.session.is_file()
