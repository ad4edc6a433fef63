"""Vectorised text formatting of bedGraph lines (numpy, no Python loop per line).

A genome-wide track has hundreds of millions of lines; Python's per-value float
formatting (about 0.7 us a line) cost more than the engine on small models. Here each line
is laid out as a row of a byte matrix, unused cells hold 0, and dropping the zeros joins
the rows into the file's bytes. Output is byte-identical to ``f"{chrom}\\t{s}\\t{e}\\t{v:.9g}\\n"``
(tests check it against Python on 350,000 values of every kind): 9 significant digits read back as
the same float32.
"""

from __future__ import annotations

import numpy as np

_DIGIT = 48  # ord("0")
# p = |v| * 10**k lands this close to a rounding tie only within float64 error of the exact
# product (< 2e-7 for p < 1e9); those rare values are formatted by Python instead
_TIE_GUARD = 1e-6
# one value's cells: sign | "0." and up to 3 zeros (1e-4 <= |v| < 1) | 9 digits, each
# followed by a decimal point cell | "e", exponent sign, 2 exponent digits
_SMALL, _DIGITS, _SCI, _VALUE_WIDTH = 1, 6, 23, 27


def _decimal_digits(x: np.ndarray, width: int) -> np.ndarray:
    """Non-negative ints (n,) -> (width, n) uint8 ASCII of their last `width` digits.

    Column-major, like every array here: numpy's inner loops then run along n, not along
    a handful of cells. q // 10 by a scalar is fast in numpy, q % 10 is not.
    """
    q = x.astype(np.int32 if x.size == 0 or x.max() < 2**31 else np.int64)
    out = np.empty((width, x.size), dtype=np.uint8)
    for j in range(width - 1, -1, -1):
        nxt = q // 10
        out[j] = q - nxt * 10 + _DIGIT
        q = nxt
    return out


def int_columns(x: np.ndarray) -> np.ndarray:
    """Non-negative integers (n,) -> (D, n) uint8 decimal digits, leading cells 0."""
    x = np.asarray(x, dtype=np.int64)
    width = len(str(int(x.max()))) if x.size else 1
    cols = _decimal_digits(x, width)
    for j in range(width - 1):  # "0" keeps its one digit
        cols[j][x < 10 ** (width - 1 - j)] = 0
    return cols


# 10**j for j = 0..60, exact in float64 up to j = 22
_POW10 = 10.0 ** np.arange(61)


def _scale(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """a * 10**k for integer k in [-60, 60], dividing for k < 0 (exact powers up to 22)."""
    power = _POW10.take(np.abs(k))
    return np.where(k >= 0, a * power, a / power)


def g9_columns(values: np.ndarray) -> np.ndarray:
    """float32 values (n,) -> (27, n) uint8 cells of ``format(v, ".9g")``, unused cells 0.

    Every layout %g can choose has its cells in the column; the cells a value does not use
    stay 0, so the column's non-zero bytes in order are its text.
    """
    v = np.asarray(values, dtype=np.float32)
    n = v.size
    out = np.zeros((_VALUE_WIDTH, n), dtype=np.uint8)
    with np.errstate(invalid="ignore"):  # signalling NaNs: formatted by Python below
        a = np.abs(v).astype(np.float64)
    regular = np.isfinite(a) & (a > 0)
    safe = np.where(regular, a, 1.0)
    # decimal exponent e and the 9 significant digits m = round(|v| * 10**(8 - e))
    e = np.floor(np.log10(safe)).astype(np.int32)
    p = _scale(safe, 8 - e)
    e += (p >= 999999999.5).astype(np.int32) - (p < 99999999.5)  # log10 off by one
    p = _scale(safe, 8 - e)
    python = ~regular | (np.abs(p - np.floor(p) - 0.5) < _TIE_GUARD)
    m = np.rint(p).astype(np.int32)
    carry = m >= 10 ** 9  # 9.999999996 -> 10.0000000
    m = np.where(carry, m // 10, m)
    e += carry

    digits = _decimal_digits(m, 9)
    # index of the last non-zero digit: %g drops trailing zeros (and a bare point)
    last = np.zeros(n, dtype=np.int32)
    for j in range(1, 9):
        last[digits[j] != _DIGIT] = j
    fixed = (e >= 0) & (e <= 8)        # ddd.ddd
    small = (e >= -4) & (e < 0)        # 0.000ddd
    sci = ~(fixed | small)             # d.ddde-XX
    out[0] = np.signbit(v) * np.uint8(ord("-"))
    out[_SMALL] = small * np.uint8(_DIGIT)
    out[_SMALL + 1] = small * np.uint8(ord("."))
    for z in range(1, 4):
        out[_SMALL + 1 + z] = (small & (e < -z)) * np.uint8(_DIGIT)
    for j in range(9):
        keep = (last >= j) | (fixed & (e >= j)) if j else True
        out[_DIGITS + 2 * j] = digits[j] * keep
        if j < 8:
            point = (fixed & (e == j) & (last > j)) | (sci & (last > 0)) if j == 0 else (
                fixed & (e == j) & (last > j))
            out[_DIGITS + 2 * j + 1] = point * np.uint8(ord("."))
    mag = np.abs(e).astype(np.uint8)
    out[_SCI] = sci * np.uint8(ord("e"))
    out[_SCI + 1] = sci * np.where(e < 0, np.uint8(ord("-")), np.uint8(ord("+")))
    out[_SCI + 2] = sci * (mag // 10 + np.uint8(_DIGIT))
    out[_SCI + 3] = sci * (mag % 10 + np.uint8(_DIGIT))
    for i in np.flatnonzero(python):
        text = format(float(v[i]), ".9g").encode("ascii")
        out[:, i] = 0
        out[:len(text), i] = np.frombuffer(text, dtype=np.uint8)
    return out


def bedgraph_bytes(chrom: str, starts: np.ndarray, ends: np.ndarray,
                   values: np.ndarray) -> bytes:
    """bedGraph data lines ``chrom<TAB>start<TAB>end<TAB>value<LF>`` for (n,) arrays."""
    n = len(starts)
    if n == 0:
        return b""
    prefix = np.frombuffer(chrom.encode("utf-8") + b"\t", dtype=np.uint8)
    # column-major cells (k, n) of each field, or the separator byte after it
    parts = [int_columns(starts), ord("\t"), int_columns(ends), ord("\t"),
             g9_columns(values), ord("\n")]
    width = prefix.size + sum(1 if isinstance(p, int) else p.shape[0] for p in parts)
    # one line per row, then drop the unused cells: C speed, where boolean indexing is 3x
    # slower
    lines = np.empty((n, width), dtype=np.uint8)
    lines[:, :prefix.size] = prefix
    col = prefix.size
    for part in parts:
        if isinstance(part, int):
            lines[:, col] = part
            col += 1
        else:
            lines[:, col:col + part.shape[0]] = part.T
            col += part.shape[0]
    return lines.tobytes().translate(None, b"\0")
