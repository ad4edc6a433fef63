"""The explain job end to end: numbers against the engine, tracks against the HDF5 file,
bgzip/read-only inputs, errors and interrupts leave nothing, sharding, determinism."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from Bio import bgzf
from click.testing import CliRunner

import plrp
from plrp import hostmemory
from plrp.cli import main
from plrp.outputs.bedgraph import read_bedgraph
from plrp.outputs.h5 import open_relevance as open_store
from plrp.models.architectures import build_model
from plrp.models.checkpoint import save_checkpoint
from plrp.jobs.explain import explain_fasta

L = 100  # the test model's input length
TARGETS = ["tA", "tB"]


def small_model():
    torch.manual_seed(123)
    return build_model("plrp-default", input_length=L, n_filters=6, kernel_size=9,
                       n_filters2=6, kernel_size2=3, pool=2, n_hidden=5, n_outputs=2,
                       output_names=TARGETS)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_checkpoint(path, small_model())
    return path


def random_genome(seed, sizes, n_run=None):
    rng = np.random.default_rng(seed)
    recs = []
    for name, n in sizes:
        s = rng.choice(list("ACGTacgt"), n)
        if n_run and name == sizes[0][0]:
            s[n_run[0]:n_run[1]] = "N"
        recs.append((name, "".join(s)))
    return recs


def fasta_text(records, width=70):
    return "".join(f">{n} some description\n" + "".join(s[i:i + width] + "\n"
                                                         for i in range(0, len(s), width))
                   for n, s in records)


def ref_one_hot(seq: str, length: int) -> np.ndarray:
    """Per-base reference encoding, padded with zero columns to ``length``."""
    out = np.zeros((4, length), dtype=np.uint8)
    for i, ch in enumerate(seq.upper()):
        if ch in "ACGT":
            out["ACGT".index(ch), i] = 1
    return out


def ref_track(starts, ends, per_base, length):
    """Nearest-centre merge by brute force in float64: per_base (N, L) window values."""
    best = np.full(length, np.inf)
    out = np.zeros(length)
    for k in range(len(starts)):  # windows in enumeration order: earlier wins ties
        s, e = int(starts[k]), int(ends[k])
        d = np.abs(np.arange(s, e) + 0.5 - (s + e) / 2)
        better = d < best[s:e]
        out[s:e] = np.where(better, per_base[k, : e - s], out[s:e])
        best[s:e] = np.where(better, d, best[s:e])
    return out


def out_files(folder):
    return sorted(p for p in os.listdir(folder)) if os.path.isdir(folder) else []


RECORDS = random_genome(7, [("chrZ", 1234), ("chr1", 777), ("tiny", 40)], n_run=(300, 420))


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genome")
    (folder / "g.fa").write_text(fasta_text(RECORDS))
    return folder / "g.fa"


@pytest.fixture(scope="module")
def run_both(genome, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "run"
    res = explain_fasta(genome, out, model=model_path, stride=60, methods=("lrp", "plrp"),
                        p_pos=0.3, batch_size=8, bigwig=True, progress=False,
                        max_n_fraction=0.5, sparsity=0.0, arrays=True, bedgraph="plain")
    return res


def test_relevance_equals_engine_on_the_same_input(run_both, model_path):
    model = small_model().eval()
    seqs = dict(RECORDS)
    with open_store(run_both.h5) as st:
        win = st.windows()
        one_hot = st.one_hot()
        for k in range(st.n_windows):
            c, s, e = win["chrom"][k], win["start"][k], win["end"][k]
            np.testing.assert_array_equal(one_hot[k], ref_one_hot(seqs[c][s:e], L))
        x = torch.from_numpy(one_hot).float()
        for method, p in (("lrp", 0.0), ("plrp", 0.3)):
            for i, t in enumerate(TARGETS):
                ref = plrp.explain_tensor(model, x, i, p_pos=p, p_neg=p / 2)
                got = st.attribution(method, t)
                np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-6)
                assert st.attribution(method, t, "score").shape == (st.n_windows,)
        assert st.method_attrs("plrp")["p_pos"] == 0.3
        assert st.method_attrs("plrp")["p_neg"] == 0.15
        assert st.method_attrs("lrp")["p_pos"] == 0.0


def test_windows_tiling_n_skip_and_attributes(run_both, genome, model_path):
    with open_store(run_both.h5) as st:
        a = st.attrs
        win = st.windows()
        assert a["format"] == "plrp-relevance" and a["methods"] == ["lrp", "plrp"]
        assert a["targets"] == TARGETS and a["window"] == L and a["stride"] == 60
        assert a["model_sha256"] and a["plrp_version"] == plrp.__version__
        assert st.chroms == [("chr1", 777), ("chrZ", 1234), ("tiny", 40)]  # byte order
        # chrZ: starts 0,60,...,1080 then 1134 (end-aligned); chr1: 0..660, 677
        z = list(range(0, 1134 - 1, 60)) + [1134]
        c1 = list(range(0, 677, 60)) + [677]
        total = len(z) + len(c1)
        assert a["n_windows_total"] == total
        # N run 300..420: windows with > 50% N are 300 (100% N) and 360 (60%); 240 has 40%
        skipped = {300, 360}
        assert a["n_windows_skipped_n"] == 2 == run_both.n_skipped_n
        zs = win["start"][win["chrom"] == "chrZ"].tolist()
        assert zs == [s for s in z if s not in skipped]
        assert win["start"][win["chrom"] == "chr1"].tolist() == c1
        assert np.all(win["end"] - win["start"] == L)
        assert np.all(np.diff(win["index"]) > 0) and win["index"].max() == total - 1
        # windows in the bedGraph's order: chromosome names in byte order, then start
        names = win["chrom"].tolist()
        assert names == ["chr1"] * len(c1) + ["chrZ"] * len(zs)
        assert run_both.short == ["tiny:0-40"]


@pytest.mark.parametrize("method", ["lrp", "plrp"])
def test_track_bedgraph_and_bigwig_agree_with_windows(run_both, method):
    import pyBigWig

    with open_store(run_both.h5) as st:
        win = st.windows()
        sizes = dict(st.chroms)
        for t in TARGETS:
            per_base = st.attribution(method, t).astype(np.float64).sum(axis=1)
            rows = read_bedgraph(run_both.bedgraphs[method, t])
            assert rows == sorted(rows, key=lambda r: (r[0].encode(), r[1]))
            assert [r[0] for r in rows][:1] == ["chr1"]  # byte order, not FASTA order
            for a, b in zip(rows, rows[1:]):
                assert a[0] != b[0] or a[2] <= b[1]
            assert all(0 <= s < e <= sizes[c] for c, s, e, _ in rows)
            bw = pyBigWig.open(str(run_both.bigwigs[method, t]))
            for chrom, n in sizes.items():
                sel = win["chrom"] == chrom
                ref = ref_track(win["start"][sel], win["end"][sel], per_base[sel], n)
                pos, val = st.track(method, t, chrom)
                np.testing.assert_array_equal(pos, np.flatnonzero(ref.astype(np.float32)))
                np.testing.assert_allclose(val, ref[pos], rtol=1e-5, atol=1e-6)
                dense = np.zeros(n, np.float32)
                dense[pos] = val
                from_bg = np.zeros(n, np.float32)
                for c, s, e, v in rows:
                    if c == chrom:
                        from_bg[s:e] = np.float32(v)
                np.testing.assert_array_equal(from_bg, dense)  # bedGraph == HDF5 track
                from_bw = np.nan_to_num(np.array(bw.values(chrom, 0, n), dtype=np.float32))
                np.testing.assert_array_equal(from_bw, dense)
            assert bw.chroms() == sizes
            bw.close()


def test_bgzip_read_only_input_and_determinism(genome, model_path, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    gz = ro / "g.fa.gz"
    with bgzf.BgzfWriter(str(gz), "wb") as fh:
        fh.write(genome.read_bytes())
    plain = ro / "g.fa"
    plain.write_bytes(genome.read_bytes())
    os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
    try:
        kw = dict(model=model_path, stride=90, targets=["tB"], batch_size=5, progress=False,
                  arrays=True, bedgraph="plain")
        r1 = explain_fasta(plain, tmp_path / "o1" / "a", **kw)
        r2 = explain_fasta(gz, tmp_path / "o2" / "a", **kw)
        # the GPU's way of writing (a thread beside the engine) must not change a number,
        # nor dropping every output's written pages from the page cache after each write
        monkeypatch.setattr(hostmemory, "DEFAULT_EVERY", 1)
        drops = []
        real_fadvise = os.posix_fadvise
        monkeypatch.setattr(os, "posix_fadvise", lambda *a: (drops.append(a), real_fadvise(*a)))
        r3 = explain_fasta(plain, tmp_path / "o3" / "a", background_writes=True, **kw)
        assert len({fd for fd, *_ in drops}) == 2  # the HDF5 file and the bedGraph
    finally:
        os.chmod(ro, stat.S_IRWXU)
    assert out_files(ro) == ["g.fa", "g.fa.gz"]  # no .fai/.gzi next to the inputs
    assert out_files(tmp_path / "o1") == ["a.h5", "a.igv.xml", "a.tB.bedGraph"]
    with open_store(r1.h5) as a, open_store(r2.h5) as b, open_store(r3.h5) as c:
        for name in ("relevance", "hypothetical", "score"):
            x = a.attribution("plrp", "tB", name)
            np.testing.assert_array_equal(x, b.attribution("plrp", "tB", name))
            np.testing.assert_array_equal(x, c.attribution("plrp", "tB", name))
        np.testing.assert_array_equal(a.one_hot(), b.one_hot())
        np.testing.assert_array_equal(a.one_hot(), c.one_hot())
        for chrom in a.track_chroms("plrp", "tB"):
            for x, y in zip(a.track("plrp", "tB", chrom), c.track("plrp", "tB", chrom)):
                np.testing.assert_array_equal(x, y)
    assert (tmp_path / "o1/a.tB.bedGraph").read_bytes() == (tmp_path / "o3/a.tB.bedGraph").read_bytes()


def test_shards_cover_everything_once_and_match_the_full_run(genome, model_path, tmp_path):
    kw = dict(model=model_path, stride=45, targets=["tA"], batch_size=7, progress=False,
              methods=("lrp",), arrays=True)
    full = explain_fasta(genome, tmp_path / "full", **kw)
    with open_store(full.h5) as st:
        full_idx, full_rel = st.windows()["index"], st.attribution("lrp", "tA")
        total = st.attrs["n_windows_total"]
    idx, rel = [], []
    for i in (1, 2, 3):
        r = explain_fasta(genome, tmp_path / f"s{i}", shard=f"{i}/3", **kw)
        with open_store(r.h5) as st:
            assert st.attrs["shard"] == f"{i}/3" and st.attrs["n_windows_total"] == total
            idx.append(st.windows()["index"])
            rel.append(st.attribution("lrp", "tA"))
            lo, hi = (i - 1) * total // 3, i * total // 3
            assert np.all((idx[-1] >= lo) & (idx[-1] < hi))
    np.testing.assert_array_equal(np.concatenate(idx), full_idx)
    np.testing.assert_allclose(np.concatenate(rel), full_rel, rtol=1e-5, atol=1e-7)


def test_regions_and_padded_short_sequences(genome, model_path, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t350\tpeak1\nchrZ\t1000\t1050\tsmall\nchr1\t300\t420\tov\n")
    r = explain_fasta(genome, tmp_path / "reg", model=model_path, regions=bed, stride=100,
                      targets=["tA"], progress=False, pad_short=True, bedgraph="plain")
    with open_store(r.h5) as st:
        win = st.windows()
        got = list(zip(win["chrom"].tolist(), win["start"].tolist(), win["end"].tolist()))
        # byte order of names (chr1 before chrZ, which comes first in the FASTA); chr1
        # regions merged to 100..420: starts 100, 200, 300, 320
        assert got == [("chr1", 100, 200), ("chr1", 200, 300), ("chr1", 300, 400),
                       ("chr1", 320, 420), ("chrZ", 1000, 1050)]
        oh = st.one_hot()
        assert oh[4][:, 50:].sum() == 0 and oh[4][:, :50].sum() > 0  # padded with N
        pos, _ = st.track("plrp", "tA", "chr1")
        assert pos.min() >= 100 and pos.max() < 420
        pos, _ = st.track("plrp", "tA", "chrZ")
        assert pos.min() >= 1000 and pos.max() < 1050
    rows = read_bedgraph(r.bedgraphs["plrp", "tA"])
    assert all((c, s) >= ("chr1", 100) for c, s, e, v in rows if c == "chr1")


@pytest.mark.parametrize("text,code,expected", [
    (">a\nACGT\nAC\nACGT\n", 3, "inconsistent line lengths"),
    (">a\rACGT\r", 3, "carriage-return"),
    (">a\nACGT\n>a\nACGT\n", 3, "duplicate sequence name"),
    ("", 3, "empty file"),
    (">a\nAC*T\n", 3, "not a DNA letter"),
    (">a\nACGT\n", 3, "no window of 100 bp fits"),
])
def test_cli_bad_input_one_line_error_and_no_output(tmp_path, model_path, text, code, expected):
    fa = tmp_path / "in" / "bad.fa"
    fa.parent.mkdir()
    fa.write_text(text)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["explain", "--fasta", str(fa), "--model", str(model_path),
                                    "--out", str(out / "x"), "--quiet"])
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("plrp: error:") and expected in lines[0]
    assert out_files(out) == [] and out_files(fa.parent) == ["bad.fa"]


def test_cli_option_errors(tmp_path, genome, model_path):
    base = ["explain", "--fasta", str(genome), "--model", str(model_path), "--quiet",
            "--out", str(tmp_path / "o" / "x")]
    for extra, expected in [(["--target", "nope"], "--target 'nope'"),
                            (["--shard", "4/3"], "--shard 4/3"),
                            (["--window", "1"], "window 1 bp"),
                            (["--batch-size", "0"], "--batch-size 0"),
                            (["--stride", "0"], "--stride 0"),
                            (["--max-n-fraction", "2"], "--max-n-fraction 2")]:
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code != 0 and expected in res.output, res.output
    assert out_files(tmp_path / "o") == []


def test_cli_writes_nothing_on_stdout(tmp_path, genome, model_path):
    res = CliRunner().invoke(main, ["explain", "--fasta", str(genome), "--model",
                                    str(model_path), "--out", str(tmp_path / "c"),
                                    "--target", "1", "--method", "lrp"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert out_files(tmp_path) == ["c.h5", "c.igv.xml", "c.tB.bedGraph.gz", "c.tB.bedGraph.gz.tbi"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_leaves_no_output(tmp_path, model_path, sig):
    big = tmp_path / "big.fa"
    big.write_text(fasta_text(random_genome(11, [("c1", 60_000), ("c2", 60_000)])))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "plrp", "explain", "--fasta", str(big),
                             "--model", str(model_path), "--out", str(out / "run"),
                             "--stride", "10", "--batch-size", "2", "--bigwig"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.extend(iter(
        lambda: proc.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the progress bar counts a batch
            done = re.findall(rb"\| *([0-9.]+)k?/", b"".join(err_chunks))
            if done and float(done[-1]) > 0:
                break
            assert proc.poll() is None, b"".join(err_chunks).decode()
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        err = b"".join(err_chunks)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert b"Traceback" not in err and b"interrupted" in err
    assert out_files(out) == []


def test_demo_explains_the_shipped_example(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d" / "demo"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "Load from File" in res.stdout and "example.motifs.bed" in res.stdout
    files = out_files(tmp_path / "d")
    assert "demo.h5" in files and "example.fa" in files and "example.motifs.bed" in files
    with open_store(tmp_path / "d" / "demo.h5") as st:
        assert st.attrs["model_path"].endswith("default_model.safetensors")
        for t in st.targets:
            assert f"demo.{t}.bedGraph" in files and f"demo.{t}.bw" in files
        assert st.n_windows > 0
    # the session opens the copied FASTA beside the tracks (IGV indexes it there)
    import xml.etree.ElementTree as ET

    assert "Open Session" in res.stdout and "demo.igv.xml" in files
    session = ET.parse(tmp_path / "d" / "demo.igv.xml").getroot()
    assert session.get("genome") == str((tmp_path / "d" / "example.fa").resolve())
    mask = os.umask(0)
    os.umask(mask)
    for name in files:  # permissions like any new file, not mkstemp's 0600
        assert (tmp_path / "d" / name).stat().st_mode & 0o777 == 0o666 & ~mask
