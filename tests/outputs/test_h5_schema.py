"""The relevance file (plrp-relevance version 2): every tier written and read back."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from plrp.errors import InputError, PlrpError
from plrp.outputs.h5 import RelevanceWriter, open_relevance
from plrp.outputs.tracks import EdgeWindows

L = 12
ATTRS = {"targets": ["t0", "t1"], "methods": ["lrp", "plrp"], "architecture": {"name": "x"}}


def _writer(path, chroms, **kw):
    return RelevanceWriter(path, chroms=chroms, window=L, methods=["lrp", "plrp"],
                           targets=["t0", "t1"], attrs=ATTRS,
                           method_attrs={"plrp": {"p_pos": 0.2, "p_neg": {"*": 0.1}}}, **kw)


def _windows(rng, n):
    one_hot = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, L))].transpose(0, 2, 1).copy()
    rel = rng.normal(size=(n, 4, L)).astype(np.float32)
    return one_hot, rel


@pytest.mark.parametrize("arrays,dtype", [(True, "float32"), (True, "float16"), (False, "float32")])
def test_round_trip_of_each_tier(tmp_path, arrays, dtype):
    rng = np.random.default_rng(4)
    # FASTA order differs from byte order; names that are not valid HDF5 group names
    chroms = [("chr2", 500), ("chr10", 300), ("odd/name%", 40), (".hidden", 30)]
    one_hot, rel = _windows(rng, 7)
    chrom = ["chr10"] * 3 + ["chr2"] * 4
    start = np.array([0, 12, 24, 0, 5, 10, 400])
    path = tmp_path / "x.h5"
    tracks = {}
    with _writer(path, chroms, arrays=arrays, array_dtype=dtype) as w:
        for lo, hi in ((0, 3), (3, 7)):
            rows = w.append_windows(chrom[lo:hi], start[lo:hi], start[lo:hi] + L,
                                    np.arange(lo, hi), one_hot[lo:hi] if arrays else None)
            for m in ("lrp", "plrp"):
                for t in ("t0", "t1"):
                    w.write_attributions(m, t, rows, score=rel[rows].sum((1, 2)),
                                         conservation_error=np.full(hi - lo, 0.5),
                                         relevance=rel[rows], hypothetical=2 * rel[rows])
        # tracks in byte order: .hidden, chr10, chr2 (odd/name% and t1 stay empty)
        for m in ("lrp", "plrp"):
            for c in (".hidden", "chr10", "chr2"):
                pos = np.flatnonzero(rng.random(dict(chroms)[c]) < 0.4)
                val = rng.normal(size=pos.size).astype(np.float32)
                tracks[m, c] = (pos, val)
                for a in range(0, pos.size, 17):   # in pieces, as a merger emits them
                    w.append_track(m, "t0", c, pos[a:a + 17], val[a:a + 17])
        w.finish()
    with open_relevance(path) as r:
        assert r.chroms == sorted(chroms, key=lambda c: c[0].encode())
        assert r.n_windows == 7 and r.has_arrays == arrays and r.window == L
        assert r.attrs["format_version"] == 2 and r.attrs["architecture"] == {"name": "x"}
        assert r.methods == ["lrp", "plrp"] and r.targets == ["t0", "t1"]
        win = r.windows()
        assert win["chrom"].tolist() == chrom and win["start"].tolist() == start.tolist()
        assert win["index"].tolist() == list(range(7))
        np.testing.assert_array_equal(r.attribution("plrp", "t1", "score"),
                                      rel.sum((1, 2)).astype(np.float32))
        assert r.method_attrs("plrp", "t0")["p_pos"] == 0.2
        if arrays:
            np.testing.assert_array_equal(r.one_hot(), one_hot)
            want = rel.astype(np.float16).astype(np.float32) if dtype == "float16" else rel
            got = r.attribution("plrp", "t1", "relevance")
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)
            assert r.h5["attributions/plrp/t1/hypothetical"].dtype == np.dtype(dtype)
        else:
            assert "one_hot" not in r.h5["windows"]
            for call in (lambda: r.one_hot(), lambda: r.attribution("lrp", "t0", "hypothetical")):
                with pytest.raises(PlrpError, match="--arrays"):
                    call()
        assert r.track_chroms("plrp", "t0") == [".hidden", "chr10", "chr2"]
        assert r.track_chroms("plrp", "t1") == []
        for (m, c), (pos, val) in tracks.items():
            got_pos, got_val = r.track(m, "t0", c)
            assert got_pos.dtype == np.int64
            np.testing.assert_array_equal(got_pos, pos)
            np.testing.assert_array_equal(got_val, val)
        pos, val = r.track("plrp", "t1", "chr2")
        assert pos.size == val.size == 0
        pos, val = r.track("plrp", "t0", "odd/name%")
        assert pos.size == 0
        # one pass over every sequence, in pieces that never span two sequences
        streamed = {}
        for c, p, v in r.track_stream("lrp", "t0", chunk=50):
            streamed.setdefault(c, []).append((p, v))
        assert list(streamed) == [".hidden", "chr10", "chr2"]
        for c, parts in streamed.items():
            np.testing.assert_array_equal(np.concatenate([p for p, _ in parts]),
                                          tracks["lrp", c][0])
        for name in ("position", "value"):  # read back through HDF5's own filters
            ds = r.h5[f"attributions/lrp/t0/track/{name}"]
            assert ds.compression == "gzip" and ds.shuffle == (name == "position")
        assert r.h5["attributions/lrp/t0/track/position"].dtype == np.uint32


def test_many_scaffolds_cost_no_object_each(tmp_path):
    """20,000 scaffolds: one dataset pair per (method, target), offsets find each one."""
    rng = np.random.default_rng(1)
    n = 20_000
    chroms = [(f"scaf{i}", 30) for i in range(n)]
    path = tmp_path / "many.h5"
    lengths = rng.integers(0, 4, n)   # 0 to 3 stored bases per scaffold
    w = RelevanceWriter(path, chroms=chroms, window=L, methods=["plrp"], targets=["t"],
                        attrs={"targets": ["t"], "methods": ["plrp"]}, method_attrs={})
    names = sorted((c for c, _ in chroms), key=str.encode)
    with w:
        for i, c in enumerate(names):
            k = lengths[i]
            w.append_track("plrp", "t", c, np.arange(k) * 7, np.full(k, i + 1, np.float32))
        w.finish()
    with open_relevance(path) as r:
        objects = []
        r.h5.visit(objects.append)
        assert len(objects) < 30
        off = r.track_offsets("plrp", "t")
        assert off.shape == (n + 1,) and off[-1] == lengths.sum()
        for i in (0, 1, 777, n - 1):
            pos, val = r.track("plrp", "t", names[i])
            assert pos.tolist() == (np.arange(lengths[i]) * 7).tolist()
            assert np.all(val == i + 1)
        pieces = list(r.track_stream("plrp", "t", chunk=1000))
        seen = [c for i, (c, _, _) in enumerate(pieces) if i == 0 or pieces[i - 1][0] != c]
        assert seen == [c for c, k in zip(names, lengths) if k]
        assert sum(p.size for _, p, _ in pieces) == lengths.sum()


def test_edges_round_trip_and_empty_file(tmp_path):
    chroms = [("a", 100), ("b", 100)]
    edges = EdgeWindows(["a", "b"], np.array([0, 80]), np.array([12, 92]),
                        np.arange(2 * L, dtype=np.float32).reshape(2, L))
    with _writer(tmp_path / "e.h5", chroms) as w:
        w.write_edges("plrp", "t0", edges)
        w.finish()
    with open_relevance(tmp_path / "e.h5") as r:
        got = r.edges("plrp", "t0")
        assert got.chrom == ["a", "b"] and got.start.tolist() == [0, 80]
        np.testing.assert_array_equal(got.values, edges.values)
        assert r.edges("lrp", "t0") is None
        assert r.n_windows == 0 and r.windows()["chrom"].size == 0
        assert r.track_chroms("lrp", "t1") == []


def test_writer_refuses_out_of_order_input(tmp_path):
    with _writer(tmp_path / "o.h5", [("a", 100), ("b", 100)]) as w:
        w.append_track("plrp", "t0", "b", np.array([1]), np.array([1.0]))
        with pytest.raises(ValueError, match="byte order"):
            w.append_track("plrp", "t0", "a", np.array([1]), np.array([1.0]))
        w.append_track("lrp", "t0", "a", np.array([5]), np.array([1.0]))
        with pytest.raises(ValueError, match="increase"):
            w.append_track("lrp", "t0", "a", np.array([5]), np.array([1.0]))
        with pytest.raises(ValueError, match="one_hot"):
            w.append_windows(["a"], np.array([0]), np.array([L]), np.array([0]),
                             np.zeros((1, 4, L), np.uint8))


def test_reader_refuses_other_files_in_one_line(tmp_path):
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as h5:
        h5.attrs.update(format="plrp-relevance", format_version=1)
    with pytest.raises(InputError, match=r"old\.h5: plrp-relevance format version 1") as err:
        open_relevance(old)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = 1
    with pytest.raises(InputError, match="not a plrp relevance file"):
        open_relevance(other)
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        open_relevance(tmp_path / "text.h5")
    with pytest.raises(InputError, match="no such file"):
        open_relevance(tmp_path / "missing.h5")


_FULL_DISK_CHILD = textwrap.dedent("""
    import gc, resource, sys
    import h5py
    import numpy as np
    from plrp.outputs.h5 import RelevanceWriter
    # a soft limit (ulimit -S -f): what a full quota or disk looks like to a run
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, resource.RLIM_INFINITY))
    rng = np.random.default_rng(0)

    def fill(path, n, arrays):
        w = RelevanceWriter(path, chroms=[("c", 10**7)], window=200, methods=["p"],
                            targets=["t"], attrs={}, method_attrs={}, arrays=arrays)
        try:
            for k in range(n):
                s = np.arange(64) * 200 + k * 12800
                oh = rng.integers(0, 2, (64, 4, 200)).astype(np.uint8)
                rows = w.append_windows(["c"] * 64, s, s + 200, np.arange(64) + 64 * k,
                                        oh if arrays else None)
                rel = rng.normal(size=(64, 4, 200)).astype(np.float32)
                w.write_attributions("p", "t", rows, score=np.zeros(64),
                                     conservation_error=np.zeros(64), relevance=rel,
                                     hypothetical=rel)
            w.finish()
            w.close()
        except Exception as err:
            print("failed:", type(err).__name__, "errno = 27" in str(err), flush=True)
            if sys.argv[2] == "abort":
                w.abort()

    fill(sys.argv[1] + "/a.h5", 100, True)
    gc.collect()
    print("open HDF5 files:", h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE),
          flush=True)
    fill(sys.argv[1] + "/b.h5", 2, False)
    print("alive", flush=True)
""")


def test_a_full_disk_while_writing_is_an_error_not_a_crash(tmp_path):
    """Under a file-size limit (as on a full disk) the writer fails with EFBIG. abort()
    lets the file go without another failing flush, and the process writes another file;
    without it, HDF5 holds a half-closed file and the process crashes when it is freed."""
    runs = {}
    for mode in ("abort", "none"):
        (tmp_path / mode).mkdir()
        runs[mode] = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD,
                                     str(tmp_path / mode), mode],
                                    capture_output=True, text=True, timeout=120)
    ok = runs["abort"]
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.splitlines() == ["failed: OSError True", "open HDF5 files: 0", "alive"]
    assert sorted(p.name for p in (tmp_path / "abort").iterdir()) == ["a.h5", "b.h5"]
    assert runs["none"].returncode != 0          # the check has teeth
