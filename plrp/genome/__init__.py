"""Genome input: FASTA reading, validation and one-hot (fasta), window planning (windows).

Knows nothing about relevance or output files: the explain job (plrp.jobs.explain) joins
it to the engine and the outputs.
"""
