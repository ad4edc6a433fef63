"""plrp merge joins shard files into exactly the unsharded file, on every tier, without a model:
the files are written here the way the explain sink writes them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from plrp.errors import PlrpError
from plrp.genome.windows import shard_range
from plrp.jobs.merge import merge_shards
from plrp.outputs.h5 import RelevanceWriter, open_relevance
from plrp.outputs.tracks import MERGE_RULES, TrackMerger

L = 20
CHROMS = [("chrB", 150), ("chrA", 260), ("chrC", 10)]   # FASTA order; chrC: no window


def _windows():
    """Overlapping windows (stride 7), a gap and an end-aligned window; byte order."""
    rows = [("chrA", s) for s in list(range(0, 57, 7)) + list(range(160, 200, 7)) + [240]]
    rows += [("chrB", s) for s in list(range(0, 50, 7)) + [130]]
    return rows


def _write(path, rows, index, shard, n_total, merge, arrays, seed=0):
    rng = np.random.default_rng(seed)
    per_base = rng.normal(size=(n_total, L)).astype(np.float32)
    per_base[rng.random((n_total, L)) < 0.3] = 0.0               # sparse: zeros absent
    one_hot = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n_total, L))].transpose(0, 2, 1)
    w = RelevanceWriter(path, chroms=CHROMS, window=L, methods=["plrp"], targets=["t"],
                        attrs={"targets": ["t"], "methods": ["plrp"], "merge": merge,
                               "shard": shard, "n_windows_total": n_total, "stride": 7,
                               "command_line": f"plrp explain --shard {shard}"},
                        method_attrs={"plrp": {"p_pos": 0.1}}, arrays=arrays)
    merger = TrackMerger(lambda c, p, v: w.append_track("plrp", "t", c, p, v), merge=merge)
    with w:
        for a in range(0, len(index), 4):                         # batches of 4
            k = index[a:a + 4]
            chrom = [rows[i][0] for i in k]
            start = np.array([rows[i][1] for i in k])
            oh = np.ascontiguousarray(one_hot[k])
            got = w.append_windows(chrom, start, start + L, np.array(k), oh if arrays else None)
            rel = (oh * per_base[k][:, None, :]).astype(np.float32)
            w.write_attributions("plrp", "t", got, score=per_base[k].sum(1),
                                 conservation_error=np.zeros(len(k)), relevance=rel,
                                 hypothetical=rel)
            merger.add_batch(chrom, start, start + L, per_base[k])
        merger.finish()
        w.write_edges("plrp", "t", merger.edges())
        w.finish()


@pytest.mark.parametrize("merge", MERGE_RULES)
@pytest.mark.parametrize("arrays", [False, True])
def test_merged_shards_equal_the_unsharded_file(tmp_path, merge, arrays):
    rows = _windows()
    n = len(rows)
    _write(tmp_path / "full.h5", rows, list(range(n)), "1/1", n, merge, arrays)
    for n_shards in (3, n):                       # n: one window per shard
        shards = []
        for i in range(1, n_shards + 1):
            lo, hi = shard_range(n, (i, n_shards))
            path = tmp_path / f"s{n_shards}_{i}.h5"
            _write(path, rows, list(range(lo, hi)), f"{i}/{n_shards}", n, merge, arrays)
            shards.append(path)
        out = tmp_path / f"m{n_shards}" / "run"
        result = merge_shards(shards[::-1], out, formats=["plain", "bgzip"])
        assert result.n_windows == n
        with open_relevance(result.h5) as got, open_relevance(tmp_path / "full.h5") as want:
            for c, _ in want.chroms:
                for a, b in zip(got.track("plrp", "t", c), want.track("plrp", "t", c)):
                    np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(got.track_offsets("plrp", "t"),
                                          want.track_offsets("plrp", "t"))
            for k in ("chrom", "start", "end", "index"):
                np.testing.assert_array_equal(got.windows()[k], want.windows()[k])
            names = ("score", "relevance", "hypothetical") if arrays else ("score",)
            for name in names:
                np.testing.assert_array_equal(got.attribution("plrp", "t", name),
                                              want.attribution("plrp", "t", name))
            e, f = got.edges("plrp", "t"), want.edges("plrp", "t")
            assert e.chrom == f.chrom and np.array_equal(e.values, f.values)
            assert got.attrs["shard"] == "1/1" and got.attrs["command_line"] == "plrp explain"
            assert got.has_arrays == arrays
        # the unsharded track written the same way, as text
        want_lines = []
        with open_relevance(tmp_path / "full.h5") as want:
            for c, p, v in want.track_stream("plrp", "t"):
                want_lines += [(c, int(a), float(np.float32(b))) for a, b in zip(p, v)]
        got_lines = []
        for line in (tmp_path / f"m{n_shards}" / "run.t.bedGraph").read_text().splitlines()[1:]:
            c, s, e, v = line.split("\t")
            got_lines += [(c, p, float(np.float32(v))) for p in range(int(s), int(e))]
        assert got_lines == want_lines
        assert (tmp_path / f"m{n_shards}" / "run.t.bedGraph.gz.tbi").exists()


def test_the_boundaries_matter(tmp_path):
    """Gluing the shards' own tracks is wrong near their block ends (the test has teeth)."""
    rows = _windows()
    n = len(rows)
    _write(tmp_path / "full.h5", rows, list(range(n)), "1/1", n, "mean", False)
    glued = {}
    for i in (1, 2, 3):
        lo, hi = shard_range(n, (i, 3))
        _write(tmp_path / f"s{i}.h5", rows, list(range(lo, hi)), f"{i}/3", n, "mean", False)
        with open_relevance(tmp_path / f"s{i}.h5") as f:
            for c, p, v in f.track_stream("plrp", "t"):
                glued.setdefault(c, {}).update(zip(p.tolist(), v.tolist()))
    with open_relevance(tmp_path / "full.h5") as want:
        pos, val = want.track("plrp", "t", "chrA")
    assert dict(zip(pos.tolist(), val.tolist())) != glued["chrA"]


def test_shards_of_different_runs_or_missing_are_refused(tmp_path):
    rows = _windows()
    n = len(rows)
    paths = []
    for i in (1, 2):
        lo, hi = shard_range(n, (i, 2))
        paths.append(tmp_path / f"s{i}.h5")
        _write(paths[-1], rows, list(range(lo, hi)), f"{i}/2", n, "mean", False)
    with pytest.raises(PlrpError, match="missing shard 2/2"):
        merge_shards(paths[:1], tmp_path / "m")
    other = tmp_path / "other.h5"
    lo, hi = shard_range(n, (2, 2))
    _write(other, rows, list(range(lo, hi)), "2/2", n, "max", False)
    with pytest.raises(PlrpError, match="merge='max'"):
        merge_shards([paths[0], other], tmp_path / "m")
    with h5py.File(paths[1], "a") as h5:          # a shard of an older plrp
        h5.attrs["format_version"] = 1
    with pytest.raises(PlrpError, match="format version 1"):
        merge_shards(paths, tmp_path / "m")
    assert not list(tmp_path.glob("m*"))
