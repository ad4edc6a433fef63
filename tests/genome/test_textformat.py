"""The vectorised bedGraph formatter against Python's own formatting, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from plrp.genome.textformat import bedgraph_bytes, g9_columns, int_columns


def _python_lines(chrom, s, e, v) -> bytes:
    return "".join(f"{chrom}\t{a}\t{b}\t{c:.9g}\n"
                   for a, b, c in zip(s.tolist(), e.tolist(), v.tolist())).encode()


def _cells_text(cells: np.ndarray) -> list[str]:
    return [col[col != 0].tobytes().decode() for col in cells.T]


def test_every_kind_of_float32_formats_like_python_g9():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 1.17549435e-38, 3.4028235e38,
             1e-5, 9.9999997e-6, 1e-4, 0.1, 0.5, 1.0, 2.5, 10.0, 1234.5, 99999999.0,
             1e8, 999999999.0, 1e9, 123456789.0, 9.99999996e5, 0.000123456789]
    values = np.concatenate([
        bits.view(np.float32),                               # every exponent, denormals, NaN
        (rng.standard_normal(100_000) * 10.0 ** rng.uniform(-12, 6, 100_000)).astype(np.float32),
        (rng.integers(-10**6, 10**6, 50_000) / 64.0).astype(np.float32),  # short decimals
        np.array(edges, dtype=np.float32)])
    got = _cells_text(g9_columns(values))
    expected = [format(float(x), ".9g") for x in values]
    mismatches = [(x, g, e) for x, g, e in zip(values.tolist(), got, expected) if g != e]
    assert not mismatches, mismatches[:5]
    # and it reads back as the same float32
    finite = np.isfinite(values)
    back = np.array([float(t) for t in np.array(got)[finite]], dtype=np.float32)
    assert np.array_equal(back, values[finite])


@pytest.mark.parametrize("x", [[0], [7, 10, 99, 100, 12345678901], [0, 1, 2**31 - 1, 2**31]])
def test_integer_columns(x):
    cells = int_columns(np.array(x, dtype=np.int64))
    assert _cells_text(cells) == [str(i) for i in x]


def test_bedgraph_lines_equal_python_formatting():
    rng = np.random.default_rng(1)
    s = np.sort(rng.choice(3 * 10**8, 5000, replace=False)).astype(np.int64)
    e = s + rng.integers(1, 50, s.size)
    v = (rng.standard_normal(s.size) * rng.lognormal(0, 4, s.size)).astype(np.float32)
    assert bedgraph_bytes("chrUn_KI270302v1", s, e, v) == _python_lines(
        "chrUn_KI270302v1", s, e, v)
    assert bedgraph_bytes("chr1", s[:0], e[:0], v[:0]) == b""
