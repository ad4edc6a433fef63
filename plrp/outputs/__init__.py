"""Output formats: the HDF5 relevance file (h5), per-base track merging (tracks), track files
(bedGraph, bgzip + tabix bedGraph, bigWig) and their names (trackfiles).

Knows the file formats and nothing about models or the engine.
"""
