"""Per-base track merging of overlapping windows (plrp.outputs.tracks).

Track files are tested in tests/outputs/test_track_writers.py, the HDF5 file in
tests/outputs/test_h5_schema.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from plrp.outputs import tracks as gt


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


def _runs_by_hand(pieces):
    """[(chrom, start, end, value)]: equal adjacent bases of one sequence joined."""
    runs = []
    for c, pos, val in pieces:
        for p, v in zip(pos.tolist(), val.tolist()):
            if runs and runs[-1][0] == c and runs[-1][2] == p and runs[-1][3] == v:
                runs[-1][2] = p + 1
            else:
                runs.append([c, p, p + 1, v])
    return [tuple(r) for r in runs]


def test_runs_join_equal_neighbours_across_calls_and_sequences():
    rng = np.random.default_rng(2)
    pieces = []
    for c in ("a", "b", "b2", "c"):                  # byte order; b's run goes on into b2
        pos = np.flatnonzero(rng.random(300) < 0.8)
        pieces.append((c, pos, rng.choice([0.5, 1.5, -2.0], pos.size).astype(np.float32)))
    want = _runs_by_hand(pieces)
    for size in (1, 7, 1000):                       # how the bases are cut into calls
        for every in (1, 3, 100):                   # how often runs are taken
            batcher, got = gt.RunBatcher(), []
            calls = [(c, pos[a:a + size], val[a:a + size]) for c, pos, val in pieces
                     for a in range(0, pos.size, size)]
            for k, call in enumerate(calls):
                batcher.add(*call)
                if k % every == 0:
                    got.append(batcher.take(final=False))
            got.append(batcher.take(final=True))
            runs = []
            for part in filter(None, got):
                names, counts, s, e, v = part
                chrom = np.repeat(names, counts)
                runs += list(zip(chrom.tolist(), s.tolist(), e.tolist(), v.tolist()))
            assert runs == want
    with pytest.raises(ValueError, match="byte order"):
        batcher.add("a", np.array([1]), np.array([1.0], np.float32))


def test_edges_are_the_windows_a_neighbour_can_overlap():
    """merger.edges(): head (first sequence, start < first end) and tail (last sequence,
    end > last start), whatever the batching; checked against a plain loop."""
    rng = np.random.default_rng(9)
    rows = [("a", s, s + 20) for s in range(0, 100, 6)] + [("b", s, s + 20)
                                                           for s in (0, 3, 50, 51, 70)]
    first, last = rows[0], rows[-1]
    want = [r for r in rows if (r[0] == first[0] and r[1] < first[2])
            or (r[0] == last[0] and r[2] > last[1])]
    values = rng.normal(size=(len(rows), 20)).astype(np.float32)
    for batch in (1, 4, len(rows)):
        m = gt.TrackMerger(lambda *a: None)
        for a in range(0, len(rows), batch):
            part = rows[a:a + batch]
            m.add_batch([r[0] for r in part], np.array([r[1] for r in part]),
                        np.array([r[2] for r in part]), values[a:a + batch])
        m.finish()
        e = m.edges()
        assert list(zip(e.chrom, e.start.tolist(), e.end.tolist())) == want
        np.testing.assert_array_equal(e.values, values[[rows.index(r) for r in want]])
        mask = gt.edge_mask([r[0] for r in rows], np.array([r[1] for r in rows]),
                            np.array([r[2] for r in rows]))
        assert [r for r, k in zip(rows, mask) if k] == want
