"""Genome I/O: FASTA windows and one-hot (fasta), per-base tracks (tracks), HDF5 store (store).

Knows nothing about relevance rules: the explain job (plrp.run) joins it to the engine.
"""

from plrp.genome.store import RelevanceFile, StoreWriter, open_store

__all__ = ["open_store", "RelevanceFile", "StoreWriter"]
