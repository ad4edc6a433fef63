"""Default settings shared by the jobs (contracts section 5).

``DEFAULT_P_POS``: the fraction of positive relevance mass PLRP prunes per layer when the
user gives no ``--p-pos``; the evaluation may tune it. ``p_neg`` defaults to p_pos / 2.
"""

DEFAULT_P_POS = 0.1
DEFAULT_METHOD = "plrp"
DEFAULT_VARIANT = "lambda"
DEFAULT_COMPOSITE = "epsilon"
DEFAULT_BATCH_SIZE = 128
DEFAULT_MAX_N_FRACTION = 0.5
DEFAULT_MERGE = "nearest-centre"
#: Fraction of each window's per-base relevance mass (per sign) left out of the tracks: the
#: largest fraction whose track keeps RMA and MoRF AOPC within 5% of the unsparsified PLRP
#: track on every evaluated target (docs/evaluation.md, `plrp evaluate --sparsity`).
DEFAULT_SPARSITY = 0.15
#: bgzip+tabix keeps a whole-genome run under 8 MB per Mbp per target (docs/explain.md)
DEFAULT_BEDGRAPH = "bgzip"
#: more targets than this are refused with a size and time estimate unless raised
DEFAULT_MAX_TARGETS = 64
