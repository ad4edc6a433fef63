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
