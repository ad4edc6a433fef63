"""Deflate (zlib or raw) through ISA-L when present: the same streams zlib and HDF5's gzip
filter read, 5-10x faster than zlib (measured 400 vs 41-77 MB/s), and free of the GIL."""

from __future__ import annotations

import zlib

try:
    from isal.isal_zlib import compress as _isal_compress
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib still works
    _isal_compress = None


def deflate(data, level: int, raw: bool = False) -> bytes:
    """Deflate ``data`` at ``level`` (0 stores): a zlib stream, or a bare deflate stream
    with ``raw`` (what gzip/BGZF members hold). ISA-L's levels stop at 3; higher levels use
    zlib's own."""
    wbits = -15 if raw else 15
    if _isal_compress is not None and 1 <= level <= 3:
        return _isal_compress(data, level, wbits=wbits)
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()
