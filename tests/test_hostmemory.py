"""HeapCeiling: a long run's resident size is held near the level it settled at."""

from __future__ import annotations

from plrp.hostmemory import HeapCeiling, resident_bytes


class _Process:
    """A resident size the test sets; a trim drops it to what is in use."""

    def __init__(self, size):
        self.size, self.in_use, self.trims = size, size, 0

    def trim(self):
        self.trims += 1
        self.size = self.in_use


def _run(heap, proc, sizes):
    """One check per batch, with the resident size of each batch."""
    out = []
    for size, in_use in sizes:
        proc.size, proc.in_use = size, in_use
        out.append(heap.check())
    return out


def test_trims_drift_above_the_settled_level_only():
    proc = _Process(100)
    heap = HeapCeiling(every=2, settle=2, slack=0.1, read=lambda: proc.size, trim=proc.trim)
    # warm-up (growing), settles at 100 on the 2nd reading (4th call): ceiling 110
    _run(heap, proc, [(50, 50)] * 2 + [(100, 100)] * 2)
    assert heap.ceiling == 100 * 1.1 and proc.trims == 0
    # fragmentation drift: 115 resident with 100 in use -> one trim, then quiet
    assert _run(heap, proc, [(105, 100)] * 2 + [(115, 100)] * 2) == [False] * 3 + [True]
    assert proc.trims == 1 and heap.ceiling == 100 * 1.1
    _run(heap, proc, [(108, 100)] * 6)
    assert proc.trims == 1


def test_memory_really_in_use_raises_the_level_instead_of_trimming_each_time():
    proc = _Process(100)
    heap = HeapCeiling(every=1, settle=1, slack=0.1, read=lambda: proc.size, trim=proc.trim)
    _run(heap, proc, [(100, 100)])
    # the run needs 150 from now on: one trim finds nothing to give back, then 150 is the level
    _run(heap, proc, [(150, 150)] * 5)
    assert proc.trims == 1 and abs(heap.ceiling - 165) < 1e-9


def test_without_a_reading_it_never_trims():
    heap = HeapCeiling(every=1, settle=1, read=lambda: None,
                       trim=lambda: (_ for _ in ()).throw(AssertionError("trimmed")))
    assert not any(heap.check() for _ in range(10))


def test_resident_bytes_reads_this_process():
    size = resident_bytes()
    assert size is None or size > 10 << 20      # a Python with torch imported
