"""What every output writer is (contracts 5): ``add``, ``close``, ``abort``, a context manager."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ClosedOrAborted:
    """A ``with`` block that closes the output on success and aborts it (removing what was
    written) when left by an exception; the class defines ``close`` and ``abort``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()


class TrackWriter(ClosedOrAborted):
    """Base of the track file writers.

    ``add(chrom, positions (M,), values (M,) float32)``: the next stored bases, sequences in
    byte order, positions increasing, zero bases absent. ``close()`` finishes the files and
    returns the number of intervals; ``abort()`` removes every file written (``paths()``).
    Leaving a ``with`` block by an exception aborts.
    """

    @classmethod
    def companion_suffixes(cls, chrom_sizes) -> tuple[str, ...]:
        """Suffixes of the files written beside the main one (an index), so that a job can
        hand out temporary names for them too."""
        return ()

    def add(self, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> int:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def paths(self) -> list[Path]:
        return [self.path]
