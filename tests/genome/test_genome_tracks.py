"""Per-base track merging, bedGraph/bigWig writing, the HDF5 store round trip."""

from __future__ import annotations

import numpy as np
import pyBigWig
import pytest

from plrp.genome import store as gs
from plrp.genome import tracks as gt


def brute_force_track(windows, length, merge):
    """Independent reference: for every base scan all windows (float64)."""
    out = np.zeros(length)
    for p in range(length):
        cover = [(s, e, v) for s, e, v in windows if s <= p < e]
        if not cover:
            continue
        if merge == "nearest-centre":
            best = min(range(len(cover)),
                       key=lambda k: (abs(p + 0.5 - (cover[k][0] + cover[k][1]) / 2), k))
            s, e, v = cover[best]
            out[p] = v[p - s]
        elif merge == "mean":
            out[p] = np.mean([v[p - s] for s, e, v in cover])
        else:
            out[p] = max(v[p - s] for s, e, v in cover)
    return out


def collect(merger_rule, windows_by_chrom, chunk=7):
    got = {}

    def emit(chrom, pos, val):
        got.setdefault(chrom, []).append((pos, val))

    m = gt.TrackMerger(emit, merge=merger_rule, chunk=chunk)
    for chrom, windows in windows_by_chrom:
        for s, e, v in windows:
            m.add(chrom, s, e, v)
    m.finish()
    return got


@pytest.mark.parametrize("merge", gt.MERGE_RULES)
@pytest.mark.parametrize("window,stride", [(20, 20), (20, 7), (20, 3), (10, 25), (16, 8)])
def test_merger_matches_brute_force(merge, window, stride):
    rng = np.random.default_rng(window * 100 + stride)
    length = 137
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    windows = [(s, s + window, rng.normal(size=window).astype(np.float32)) for s in starts]
    windows[1][2][:5] = 0.0  # some exact zeros: left out of the track
    got = collect(merge, [("c1", windows), ("c2", windows[:2])])
    for chrom, ws in [("c1", windows), ("c2", windows[:2])]:
        ref = brute_force_track(ws, length, merge).astype(np.float32)
        pos = np.concatenate([p for p, _ in got[chrom]])
        val = np.concatenate([v for _, v in got[chrom]])
        assert np.all(np.diff(pos) > 0)
        np.testing.assert_array_equal(pos, np.flatnonzero(ref))
        np.testing.assert_allclose(val, ref[pos], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("merge", gt.MERGE_RULES)
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_batched_windows_match_brute_force(merge, batch):
    """add_batch (which emits tiled, non-overlapping windows directly) against the
    reference: tiling with gaps, an end-aligned last window, chromosome switches."""
    rng = np.random.default_rng(batch)
    window, length = 20, 300
    layouts = {"c1": list(range(0, 281, 20)),                    # tiled, last flush
               "c2": list(range(0, 261, 20)) + [280 - 3],        # end-aligned overlap
               "c3": [0, 20, 60, 80, 81, 140, 200, 220, 240]}    # gaps and an overlap
    rows = [(c, s, s + window, rng.normal(size=window).astype(np.float32))
            for c, starts in layouts.items() for s in starts]
    rows[2][3][:7] = 0.0
    got = {}
    m = gt.TrackMerger(lambda c, p, v: got.setdefault(c, []).append((p, v)), merge=merge,
                       chunk=50)
    for a in range(0, len(rows), batch):
        part = rows[a:a + batch]
        m.add_batch([r[0] for r in part], np.array([r[1] for r in part]),
                    np.array([r[2] for r in part]), np.stack([r[3] for r in part]))
    m.finish()
    for chrom in layouts:
        ref = brute_force_track([(s, e, v) for c, s, e, v in rows if c == chrom], length,
                                merge).astype(np.float32)
        pos = np.concatenate([p for p, _ in got[chrom]])
        val = np.concatenate([v for _, v in got[chrom]])
        np.testing.assert_array_equal(pos, np.flatnonzero(ref))
        np.testing.assert_allclose(val, ref[pos], rtol=1e-6, atol=1e-7)


def test_nearest_centre_tie_goes_to_earlier_window():
    # windows [0,4) and [2,6): centres 2 and 4; base 2 (centre 2.5) is nearer 2, base 3 nearer 4;
    # windows [0,4) and [1,5): centres 2, 3; base 2 (2.5) is a tie -> earlier window
    got = collect("nearest-centre", [("c", [(0, 4, np.full(4, 1.0)), (1, 5, np.full(4, 2.0))])])
    pos, val = got["c"][0]
    assert pos.tolist() == [0, 1, 2, 3, 4] and val.tolist() == [1, 1, 1, 2, 2]


def test_windows_out_of_order_are_refused():
    m = gt.TrackMerger(lambda *a: None)
    m.add("c", 10, 20, np.ones(10))
    with pytest.raises(ValueError, match="start order"):
        m.add("c", 5, 15, np.ones(10))


def test_intervals_merge_equal_neighbours_and_skip_gaps():
    pos = np.array([0, 1, 2, 5, 6, 7, 8])
    val = np.array([1, 1, 2, 2, 2, 3, 3], dtype=np.float32)
    s, e, v = gt.track_to_intervals(pos, val)
    assert list(zip(s.tolist(), e.tolist(), v.tolist())) == [(0, 2, 1), (2, 3, 2), (5, 7, 2),
                                                              (7, 9, 3)]
    for cut in range(1, len(pos)):  # chunking never changes the runs
        chunks = [(pos[:cut], val[:cut]), (pos[cut:], val[cut:])]
        runs = [(int(a), int(b), float(c)) for ss, ee, vv in gt.iter_intervals(chunks)
                for a, b, c in zip(ss, ee, vv)]
        assert runs == [(0, 2, 1), (2, 3, 2), (5, 7, 2), (7, 9, 3)]


def test_bedgraph_and_bigwig_are_sorted_and_readable(tmp_path):
    rng = np.random.default_rng(3)
    sizes = {"chr2": 300, "chr10": 200, "chr1": 250, "Z": 50}
    tracks = {}
    for c, n in sizes.items():
        pos = np.flatnonzero(rng.random(n) < 0.7)
        val = np.round(rng.normal(size=pos.size), 1).astype(np.float32)  # many equal runs
        val[val == 0] = 0.5
        tracks[c] = (pos, val)
    order = gt.byte_order(sizes)
    assert order == ["Z", "chr1", "chr10", "chr2"]
    source = lambda c: [tracks[c]] if c != "Z" else []  # noqa: E731  (Z has no values)
    bg = tmp_path / "t.bedGraph"
    n = gt.write_bedgraph(bg, order, source, 'track type=bedGraph name="t"')
    rows = gt.read_bedgraph(bg)
    assert len(rows) == n and bg.read_text().startswith("track type=bedGraph")
    # sorted by (chrom bytes, start), no overlaps, within sizes, no zeros
    assert rows == sorted(rows, key=lambda r: (r[0].encode(), r[1]))
    for a, b in zip(rows, rows[1:]):
        if a[0] == b[0]:
            assert a[2] <= b[1]
            assert not (a[2] == b[1] and a[3] == b[3])  # equal neighbours were merged
    assert all(0 <= s < e <= sizes[c] and v != 0 for c, s, e, v in rows)
    # values equal the track base by base (float32 round trip through text)
    for c in sizes:
        dense = np.zeros(sizes[c], np.float32)
        for cc, s, e, v in rows:
            if cc == c:
                dense[s:e] = np.float32(v)
        ref = np.zeros(sizes[c], np.float32)
        if c != "Z":
            ref[tracks[c][0]] = tracks[c][1]
        np.testing.assert_array_equal(dense, ref)
    # pyBigWig rejects unsorted or overlapping entries: feed it the bedGraph rows as they are
    bw_path = tmp_path / "from_bedgraph.bw"
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader([(c, sizes[c]) for c in order])
    for c, s, e, v in rows:
        bw.addEntries([c], [s], ends=[e], values=[v])
    bw.close()
    out = tmp_path / "t.bw"
    gt.write_bigwig(out, [(c, sizes[c]) for c in order], source)
    bw = pyBigWig.open(str(out))
    assert bw.chroms() == sizes
    for c in ("chr1", "chr2"):
        vals = np.nan_to_num(np.array(bw.values(c, 0, sizes[c]), dtype=np.float32))
        ref = np.zeros(sizes[c], np.float32)
        ref[tracks[c][0]] = tracks[c][1]
        np.testing.assert_array_equal(vals, ref)
    bw.close()


def test_store_round_trip_and_chrom_escaping(tmp_path):
    chroms = [("chr1", 1000), ("odd/name%", 300), (".hidden", 10)]
    for name, _ in chroms:
        assert gs.chrom_from_key(gs.chrom_key(name)) == name
        assert "/" not in gs.chrom_key(name) and not gs.chrom_key(name).startswith(".")
    rng = np.random.default_rng(4)
    L = 12
    path = tmp_path / "x.h5"
    w = gs.StoreWriter(path, chroms=chroms, window=L, capacity=10, methods=["lrp", "plrp"],
                       targets=["t0"], attrs={"targets": ["t0"], "methods": ["lrp", "plrp"],
                                              "architecture": {"name": "x"}},
                       method_attrs={"plrp": {"p_pos": 0.2, "p_neg": {"*": 0.1}}})
    oh = rng.integers(0, 2, size=(7, 4, L)).astype(np.uint8)
    rel = rng.normal(size=(7, 4, L)).astype(np.float32)
    with w:
        rows1 = w.append_windows(["chr1"] * 3, np.arange(3), np.arange(3) + L, np.arange(3),
                                 oh[:3])
        rows2 = w.append_windows(["odd/name%"] * 4, np.arange(4), np.arange(4) + L,
                                 np.arange(3, 7), oh[3:])
        for m in ("lrp", "plrp"):
            for rows in (rows1, rows2):
                w.write_attributions(m, "t0", rows, relevance=rel[rows], hypothetical=2 * rel[rows],
                                     score=rel[rows].sum((1, 2)),
                                     conservation_error=np.zeros(rows.stop - rows.start))
        # a long track (streamed a chunk at a time: 2.5 chunks here) then a short one (held
        # and written at its end), in pieces of odd sizes
        long_pos = np.cumsum(rng.integers(1, 3, int(2.5 * gs._TRACK_CHUNK)))
        long_val = rng.normal(size=long_pos.size).astype(np.float32)
        cuts = np.sort(rng.choice(long_pos.size, 9, replace=False))
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, long_pos.size]):
            w.append_track("lrp", "t0", "chr1", long_pos[a:b], long_val[a:b])
        w.append_track("plrp", "t0", "odd/name%", np.array([1, 2]), np.array([0.5, 1.5]))
        w.append_track("plrp", "t0", "odd/name%", np.array([7]), np.array([2.5]))
        w.finish()
    with gs.open_store(path) as st:
        assert st.chroms == chroms and st.n_windows == 7
        assert st.attrs["format"] == "plrp-relevance" and st.attrs["format_version"] == 1
        assert st.attrs["targets"] == ["t0"] and st.attrs["architecture"] == {"name": "x"}
        win = st.windows()
        assert win["chrom"].tolist() == ["chr1"] * 3 + ["odd/name%"] * 4
        assert win["index"].tolist() == list(range(7))
        np.testing.assert_array_equal(st.one_hot(), oh)
        np.testing.assert_array_equal(st.attribution("plrp", "t0"), rel)
        np.testing.assert_array_equal(st.attribution("lrp", "t0", "hypothetical"), 2 * rel)
        assert st.h5["attributions/plrp/t0/relevance"].compression == "gzip"
        pos, val = st.track("plrp", "t0", "odd/name%")
        assert pos.tolist() == [1, 2, 7] and val.tolist() == [0.5, 1.5, 2.5]
        pos, val = st.track("lrp", "t0", "chr1")
        np.testing.assert_array_equal(pos, long_pos)
        np.testing.assert_array_equal(val, long_val)
        for name in ("position", "value"):  # read through HDF5's own filters
            ds = st.h5[f"attributions/lrp/t0/track/chr1/{name}"]
            assert ds.compression == "gzip" and ds.shuffle == (name == "position")
            assert st.h5[f"attributions/plrp/t0/track/odd%2Fname%25/{name}"].shuffle == (
                name == "position")
        assert st.track_chroms("plrp", "t0") == ["odd/name%"]
        assert st.method_attrs("plrp", "t0")["p_pos"] == 0.2


def _runs_by_hand(pos, val):
    """Per-base track -> [(start, end, value)], equal adjacent bases merged (a plain loop)."""
    runs = []
    for p, v in zip(pos.tolist(), val.tolist()):
        if runs and runs[-1][1] == p and runs[-1][2] == v:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1, v])
    return [tuple(r) for r in runs]


def test_streamed_bedgraph_joins_runs_across_chunks_and_wants_byte_order(tmp_path):
    rng = np.random.default_rng(6)
    tracks = {}
    for c in ("chr1", "chr10", "chr2"):  # byte order (chr10 before chr2)
        pos = np.flatnonzero(rng.random(500) < 0.8)
        tracks[c] = (pos, rng.choice([0.5, 1.5, -2.0], pos.size).astype(np.float32))
    with gt.BedGraphWriter(tmp_path / "s.bedGraph", "track type=bedGraph") as out:
        for c, (pos, val) in tracks.items():
            for a in range(0, pos.size, 37):  # emitted in small chunks, runs cross the cuts
                out.add(c, pos[a:a + 37], val[a:a + 37])
    expected = [(c, *run) for c, (pos, val) in tracks.items() for run in _runs_by_hand(pos, val)]
    assert out.n_intervals == len(expected)
    assert (tmp_path / "s.bedGraph").read_text().startswith("track type=bedGraph\n")
    assert gt.read_bedgraph(tmp_path / "s.bedGraph") == expected

    bad = gt.BedGraphWriter(tmp_path / "bad.bedGraph")
    bad.add("chr2", np.array([1]), np.array([1.0], np.float32))
    with pytest.raises(ValueError, match="byte order"):
        bad.add("chr10", np.array([1]), np.array([1.0], np.float32))
    bad.close()
