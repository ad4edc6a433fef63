"""bedGraph lines: exact float32 values in their shortest form, exact integers, no quoting."""

from __future__ import annotations

import io

import numpy as np

from plrp.outputs.bedgraph import write_bedgraph_lines


def bedgraph_bytes(chrom, starts, ends, values, counts=None) -> bytes:
    buf = io.BytesIO()
    write_bedgraph_lines(buf, chrom, starts, ends, values, counts)
    return buf.getvalue()


def _fields(data: bytes) -> list[list[str]]:
    lines = data.decode("ascii").split("\n")
    assert lines[-1] == ""  # every line ends in LF, the last included
    return [line.split("\t") for line in lines[:-1]]


def _shortest_float32(x: np.float32) -> str:
    """Fewest significant digits that read back as x (Python's %.{n}g, n = 1..9)."""
    for n in range(1, 10):
        text = f"{float(x):.{n}g}"
        if np.float32(float(text)) == x:
            return text
    raise AssertionError(x)


def test_every_kind_of_float32_reads_back_exactly_in_shortest_form():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    edges = [1e-45, 1.17549435e-38, 3.4028235e38, -3.4028235e38, 1e-5, 9.9999997e-6, 1e-4,
             0.1, 0.5, 1.0, 2.5, 10.0, 1234.5, 99999999.0, 1e8, 1e9, 123456789.0,
             16777217.0, 0.000123456789, -0.0092292605]
    values = np.concatenate([
        bits.view(np.float32),                               # every exponent, denormals
        (rng.standard_normal(100_000) * 10.0 ** rng.uniform(-12, 6, 100_000)).astype(np.float32),
        (rng.integers(-10**6, 10**6, 50_000) / 64.0).astype(np.float32),  # short decimals
        np.array(edges, dtype=np.float32)])
    values = values[np.isfinite(values) & (values != 0)]  # a track never holds these
    starts = np.arange(values.size, dtype=np.int64)
    rows = _fields(bedgraph_bytes("chr1", starts, starts + 1, values))
    assert len(rows) == values.size
    text = [r[3] for r in rows]
    back = np.array([float(t) for t in text], dtype=np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))
    # shortest: no printed value has more significant digits than it needs
    sample = rng.choice(values.size, 5000, replace=False)
    for i in sample:
        digits = text[i].lstrip("-").split("e")[0].replace(".", "").strip("0")
        need = _shortest_float32(values[i]).lstrip("-").split("e")[0].replace(".", "").strip("0")
        assert len(digits) <= len(need), (values[i], text[i], need)


def test_integers_chromosome_and_layout():
    rng = np.random.default_rng(1)
    s = np.sort(rng.choice(3 * 10**9, 5000, replace=False)).astype(np.int64)
    s[:3] = [0, 9, 10]
    e = s + rng.integers(1, 50, s.size)
    v = (rng.standard_normal(s.size) * rng.lognormal(0, 4, s.size)).astype(np.float32)
    name = 'chrUn_KI270302v1"x'  # a quote character is legal in a FASTA name
    rows = _fields(bedgraph_bytes(name, s, e, v))
    assert [r[0] for r in rows] == [name] * s.size
    assert [int(r[1]) for r in rows] == s.tolist()
    assert [int(r[2]) for r in rows] == e.tolist()
    assert all(r[1] == str(int(r[1])) for r in rows)  # plain decimal, no padding
    assert bedgraph_bytes("chr1", s[:0], e[:0], v[:0]) == b""


def test_lines_follow_what_the_file_already_holds():
    buf = io.BufferedWriter(io.BytesIO())
    raw = buf.raw
    buf.write(b"track type=bedGraph\n")  # still in the buffer when the lines are written
    write_bedgraph_lines(buf, "chr2", np.array([5]), np.array([6]), np.array([0.5], np.float32))
    buf.write(b"# end\n")
    buf.flush()
    assert raw.getvalue() == b"track type=bedGraph\nchr2\t5\t6\t0.5\n# end\n"


def test_several_chromosomes_in_one_call():
    s = np.array([0, 5, 9, 1, 2, 7], dtype=np.int64)
    v = np.array([1, 2, 3, 4, 5, 6], dtype=np.float32)
    rows = _fields(bedgraph_bytes(["chrA", "chrB", "chrC"], s, s + 1, v,
                                  counts=np.array([2, 0, 4])))
    assert [r[0] for r in rows] == ["chrA"] * 2 + ["chrC"] * 4
    assert [int(r[1]) for r in rows] == s.tolist()
