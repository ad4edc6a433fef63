"""The relevance engine: tensors in, relevance out (knows nothing about files).

    from plrp.engine import explain_tensor, Explainer, Explanation, describe_layers
"""

from plrp.engine.composites import available_composites, load_composite
from plrp.engine.describe import describe_layers
from plrp.engine.propagate import Explainer, Explanation, explain_tensor

__all__ = ["explain_tensor", "Explainer", "Explanation", "describe_layers",
           "load_composite", "available_composites"]
