"""plrp: pruned layer-wise relevance propagation for genome deep-learning models.

The engine works on tensors and knows nothing about files::

    import plrp
    relevance = plrp.explain_tensor(model, x, target=0, p_pos=0.3)   # x: (N, 4, L)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "explain_tensor", "Explainer"]


def __getattr__(name):
    # Importing torch costs a second; keep `import plrp` (and `plrp --help`) light.
    if name in ("explain_tensor", "Explainer"):
        from plrp import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'plrp' has no attribute {name!r}")
