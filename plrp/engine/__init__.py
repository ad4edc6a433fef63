"""The relevance engine: tensors in, relevance out (knows nothing about files).

    from plrp.engine import explain_tensor, Explainer, Explanation, describe_layers
    from plrp.engine import BatchExplainer      # all targets and methods, one forward
    from plrp.engine import register_op         # explain your own module classes
"""

from plrp.engine.batch import BatchExplainer, BatchExplanation, reverse_complement
from plrp.engine.composites import available_composites, load_composite
from plrp.engine.describe import describe_layers
from plrp.engine.ops import OpRule, register_op, unregister_op
from plrp.engine.propagate import Explainer, Explanation, explain_tensor

__all__ = ["explain_tensor", "Explainer", "Explanation", "describe_layers",
           "BatchExplainer", "BatchExplanation", "register_op", "unregister_op", "OpRule",
           "reverse_complement",
           "load_composite", "available_composites"]
