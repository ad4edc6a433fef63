"""Track files as genome tools read them: plain bedGraph, bgzip + tabix, bigWig; full disks."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from plrp.errors import NoSpaceError
from plrp.outputs.bedgraph import (BedGraphWriter, BgzipBedGraphWriter, index_suffix,
                                   read_bedgraph)
from plrp.outputs.bigwig import BigWigWriter
from plrp.outputs.trackfiles import TRACK_FORMATS, open_track_writers

SIZES = {"chr2": 3000, "chr10": 2000, "chr1": 2500, "Z": 50}
ORDER = ["Z", "chr1", "chr10", "chr2"]          # byte order


@pytest.fixture(scope="module")
def tracks():
    rng = np.random.default_rng(3)
    out = {}
    for c, n in SIZES.items():
        if c == "Z":
            continue                              # a sequence without stored bases
        pos = np.flatnonzero(rng.random(n) < 0.6)
        val = np.round(rng.normal(size=pos.size), 1).astype(np.float32)  # many equal runs
        val[val == 0] = 0.5
        val[::50] = rng.normal(size=val[::50].size).astype(np.float32)   # exact float32s
        out[c] = (pos, val)
    return out


def _feed(writer, tracks, piece=37):
    for c in ORDER:
        if c in tracks:
            pos, val = tracks[c]
            for a in range(0, pos.size, piece):   # runs cross the cuts
                writer.add(c, pos[a:a + piece], val[a:a + piece])


def _runs_by_hand(tracks):
    """[(chrom, start, end, value)]: equal adjacent bases joined (a plain loop)."""
    runs = []
    for c in ORDER:
        if c not in tracks:
            continue
        for p, v in zip(tracks[c][0].tolist(), tracks[c][1].tolist()):
            if runs and runs[-1][0] == c and runs[-1][2] == p and runs[-1][3] == v:
                runs[-1][2] = p + 1
            else:
                runs.append([c, p, p + 1, v])
    return [(c, a, b, np.float32(v)) for c, a, b, v in runs]


def _f32(rows):
    return [(c, s, e, np.float32(v)) for c, s, e, v in rows]


def test_plain_bedgraph_byte_order_track_line_and_exact_values(tmp_path, tracks):
    path = tmp_path / "t.bedGraph"
    with BedGraphWriter(path, list(SIZES.items()), track_line='track type=bedGraph name="t"') as w:
        _feed(w, tracks)
    text = path.read_text()
    assert text.startswith('track type=bedGraph name="t"\n')
    rows = _f32(read_bedgraph(path))
    assert w.n_intervals == len(rows)
    assert rows == _runs_by_hand(tracks)
    env = dict(os.environ, LC_ALL="C")
    sorted_text = subprocess.run(["sort", "-k1,1", "-k2,2n"], input=text.split("\n", 1)[1],
                                 capture_output=True, text=True, env=env, check=True).stdout
    assert sorted_text == text.split("\n", 1)[1]
    # values are the exact float32s
    for c, s, e, v in rows:
        pos, val = tracks[c]
        assert np.float32(v) == val[np.searchsorted(pos, s)]


def _tool(name):
    path = shutil.which(name)
    assert path, f"{name} is not installed; .ci/run installs it (apt-get install tabix)"
    return path


def test_bgzip_bedgraph_is_read_by_tabix_and_pysam(tmp_path, tracks):
    import pysam

    path = tmp_path / "t.bedGraph.gz"
    with BgzipBedGraphWriter(path, list(SIZES.items())) as w:
        _feed(w, tracks)
    assert sorted(os.listdir(tmp_path)) == ["t.bedGraph.gz", "t.bedGraph.gz.tbi"]
    want = _runs_by_hand(tracks)
    assert _f32(read_bedgraph(path)) == want              # no track line inside
    tabix = _tool("tabix")
    for chrom, a, b in (("chr10", 1500, 1600), ("chr1", 0, 100), ("chr2", 2990, 3000)):
        # tabix regions are 1-based, inclusive: chr:a+1-b is 0-based [a, b)
        got = subprocess.run([tabix, str(path), f"{chrom}:{a + 1}-{b}"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
        hit = [r for r in want if r[0] == chrom and r[1] < b and r[2] > a]
        assert len(got) == len(hit) > 0
        assert [tuple(x.split("\t")[:3]) for x in got] == \
            [(c, str(s), str(e)) for c, s, e, _ in hit]
        assert [np.float32(x.split("\t")[3]) for x in got] == [np.float32(v) for *_, v in hit]
        with pysam.TabixFile(str(path)) as tf:
            assert list(tf.fetch(chrom, a, b)) == got
    assert subprocess.run([tabix, str(path), "Z"], capture_output=True, text=True,
                          check=True).stdout == ""
    # tabix -p bed indexes our file the same way
    copy = tmp_path / "copy.bedGraph.gz"
    shutil.copy(path, copy)
    subprocess.run([tabix, "-p", "bed", str(copy)], check=True)
    assert read_tbi(tmp_path / "copy.bedGraph.gz.tbi") == read_tbi(tmp_path / "t.bedGraph.gz.tbi")
    text = subprocess.run([_tool("bgzip"), "-dc", str(path)], capture_output=True, text=True,
                          check=True).stdout
    assert not text.startswith("track") and text.count("\n") == len(want)


def read_tbi(path) -> tuple:
    """A .tbi file's content, written by hand from htslib's tabix spec: the header, and per
    sequence {bin: chunks} (htslib writes its bins in hash order) and the linear index."""
    import struct

    data = gzip.decompress(Path(path).read_bytes())
    assert data[:4] == b"TBI\x01"
    head = struct.unpack_from("<8i", data, 4)
    at = 36 + head[7]
    names = data[36:at].split(b"\0")[:-1]
    sequences = []
    for _ in range(head[0]):
        (n_bin,) = struct.unpack_from("<i", data, at)
        at += 4
        bins = {}
        for _ in range(n_bin):
            b, n = struct.unpack_from("<Ii", data, at)
            bins[b] = struct.unpack_from(f"<{2 * n}Q", data, at + 8)
            at += 8 + 16 * n
        (n_tiles,) = struct.unpack_from("<i", data, at)
        sequences.append((bins, struct.unpack_from(f"<{n_tiles}Q", data, at + 4)))
        at += 4 + 8 * n_tiles
    return head, names, sequences, data[at:]


@pytest.mark.parametrize("seed", [1, 2])
def test_tabix_index_built_while_writing_is_htslibs(tmp_path, seed):
    """The .tbi laid out as the lines are written holds what `tabix -p bed` builds from the
    finished file (sparse and dense stretches, long equal-value runs that land in coarse
    bins, gaps of empty 16 kb tiles, many BGZF blocks), and tabix queries through it return
    exactly the overlapping lines."""
    import pysam

    rng = np.random.default_rng(seed)
    sizes = [(f"s{i}", int(rng.integers(20_000, 6_000_000))) for i in range(5)]
    path = tmp_path / "t.bedGraph.gz"
    with BgzipBedGraphWriter(path, sizes) as w:
        for name, n in sorted(sizes, key=lambda s: s[0].encode()):
            dense = np.arange(int(rng.integers(0, n // 2)), n)[:int(rng.integers(0, 300_000))]
            sparse = rng.choice(n, int(rng.integers(0, 3000)), replace=False)
            pos = np.unique(np.concatenate([dense, sparse]))
            val = rng.normal(size=pos.size).astype(np.float32)
            change = 5e-6 if rng.random() < 0.5 else 5e-3   # value changes per base
            same = rng.random(pos.size) > change
            val = val[np.maximum.accumulate(np.where(same, 0, np.arange(pos.size)))]
            for part in np.array_split(np.arange(pos.size), 7):
                w.add(name, pos[part], val[part])
    copy = tmp_path / "copy.bedGraph.gz"
    shutil.copy(path, copy)
    subprocess.run([_tool("tabix"), "-p", "bed", str(copy)], check=True)
    assert read_tbi(f"{path}.tbi") == read_tbi(f"{copy}.tbi")
    lines = read_bedgraph(path)
    assert max(e - s for _, s, e, _ in lines) > 1 << 17     # reaches the coarse bins
    with pysam.TabixFile(str(path)) as tf:
        for _ in range(200):
            name, n = sizes[int(rng.integers(len(sizes)))]
            a = int(rng.integers(0, n))
            b = min(n, a + int(rng.choice([1, 100, 20_000, 1_000_000])))
            got = [tuple(x.split("\t")[:3]) for x in tf.fetch(name, a, b)]
            assert got == [(c, str(s), str(e)) for c, s, e, _ in lines
                           if c == name and s < b and e > a]


def test_bgzip_index_is_csi_for_sequences_over_2_29():
    assert index_suffix([("a", 1000)]) == ".tbi"
    assert index_suffix([("a", 1000), ("b", 1 << 29)]) == ".csi"


def test_bigwig_reads_back_bit_exact(tmp_path, tracks):
    import pyBigWig

    path = tmp_path / "t.bw"
    w = BigWigWriter(path, list(SIZES.items()))
    _feed(w, tracks)
    assert w.close() == len(_runs_by_hand(tracks))
    bw = pyBigWig.open(str(path))
    try:
        assert bw.chroms() == SIZES
        got = [(c, s, e, v) for c in ORDER for s, e, v in (bw.intervals(c) or [])]
        for c in ("chr1", "chr2"):
            dense = np.nan_to_num(np.array(bw.values(c, 0, SIZES[c]), dtype=np.float32))
            want = np.zeros(SIZES[c], np.float32)
            want[tracks[c][0]] = tracks[c][1]
            np.testing.assert_array_equal(dense, want)
    finally:
        bw.close()
    want = _runs_by_hand(tracks)
    assert [g[:3] for g in got] == [w_[:3] for w_ in want]
    assert np.array_equal(np.array([g[3] for g in got], np.float32),
                          np.array([w_[3] for w_ in want], np.float32))


@pytest.mark.parametrize("name", list(TRACK_FORMATS))
def test_abort_leaves_nothing_and_order_is_checked(tmp_path, tracks, name):
    writers = open_track_writers([name], str(tmp_path / "x"), list(SIZES.items()), "track x",
                                 temp=lambda p: p.with_name("." + p.name + ".tmp"))
    w = writers[name]
    w.add("chr10", *tracks["chr10"])
    with pytest.raises(ValueError, match="byte order"):
        w.add("chr1", *tracks["chr1"])
    w.abort()
    assert os.listdir(tmp_path) == []
    # and a finished writer stands for its final names, index included
    w = open_track_writers([name], str(tmp_path / "y"), list(SIZES.items()), "track y")[name]
    _feed(w, tracks)
    w.close()
    finals = sorted(p.name for _, p in w.final_paths)
    assert sorted(os.listdir(tmp_path)) == finals
    assert finals[0] == "y" + TRACK_FORMATS[name].suffix


_FULL_DISK_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from plrp.errors import OutputError
    from plrp.outputs.bigwig import BigWigWriter
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    rng = np.random.default_rng(0)
    w = BigWigWriter(sys.argv[1], [("chr1", 5_000_000)])
    pos = np.arange(2_000_000)
    try:
        w.add("chr1", pos, rng.normal(size=pos.size).astype(np.float32))
        w.close()
    except OutputError as err:
        print(type(err).__name__, err.exit_code, w._proc.returncode, err)
        sys.exit(0)
    print("no error")
""")


@pytest.mark.parametrize("limit, where", [(64 << 10, "the header"), (1 << 20, "the data"),
                                          (16 << 20, "the zoom levels at close")])
def test_bigwig_on_a_full_disk_is_a_one_line_error(tmp_path, limit, where):
    """A file-size limit (as a full disk) reached in {where}: NoSpaceError, no file, and the
    pyBigWig child stopped itself before libBigWig's unchecked writes failed (its own exit
    code, never a signal: a failed write inside libBigWig corrupts its heap)."""
    from plrp.outputs.bigwig import EXIT_TOO_BIG

    path = tmp_path / "full.bw"
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(path), str(limit)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.strip()
    assert out.startswith(f"NoSpaceError 6 {EXIT_TOO_BIG} ") and str(path) in out, out
    assert "file-size limit" in out and "needs up to" in out and len(out.splitlines()) == 1
    assert not path.exists() and os.listdir(tmp_path) == []
    assert NoSpaceError.exit_code == 6


def test_bigwig_close_bound_covers_what_libbigwig_writes(tmp_path):
    """The child's upper bound of the bytes bwClose writes (last block, index, 10 zoom levels)
    is at least what it does write, for dense, sparse and run-length tracks (and, being
    uncompressed record counts, no more than 10x it)."""
    import pyBigWig

    from plrp.outputs.bigwig import _Budget

    rng = np.random.default_rng(1)
    for n, spacing, width in [(300_000, 1, 1), (200_000, 20, 1), (100_000, 7, 5)]:
        pos = np.arange(n, dtype=np.int64) * spacing * max(width, 1)
        header = [("chr1", int(pos[-1]) + width + 100), ("chr2", 1000)]
        path = str(tmp_path / f"b{n}.bw")
        budget = _Budget(path, header)
        bw = pyBigWig.open(path, "w")
        bw.addHeader(header, maxZooms=10)
        for lo in range(0, n, 65536):
            s = pos[lo:lo + 65536]
            bw.addEntries(["chr1"] * s.size, s, ends=s + width,
                          values=rng.normal(size=s.size))
            budget.count(0, s, s + width)
        before = os.path.getsize(path)
        bound = budget.close_bytes()
        bw.close()
        wrote = os.path.getsize(path) - before
        assert wrote <= bound < 10 * wrote, (n, wrote, bound)


def test_bigwig_that_cannot_be_written_is_an_output_error(tmp_path, tracks):
    from plrp.errors import OutputError

    w = BigWigWriter(tmp_path / "no-such-folder" / "x.bw", list(SIZES.items()))
    with pytest.raises(OutputError) as err:
        _feed(w, tracks)
        w.close()
    assert not isinstance(err.value, NoSpaceError)
    assert "x.bw" in str(err.value) and "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []
