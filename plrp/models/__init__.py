"""Genome CNN architectures and safe checkpoint loading.

``build_model`` / ``ARCHITECTURES``: the architectures plrp knows (DeepSEA, Basset, BPNet,
plrp-default). ``load_model``: any supported checkpoint -> ``LoadedModel`` (never unpickles
code). ``convert_checkpoint``: another package's weights -> a native plrp checkpoint.
"""

from plrp.models.architectures import ARCHITECTURES, GenomeCNN, build_model
from plrp.models.checkpoint import (DEFAULT_MODEL_PATH, LoadedModel, check_input_length,
                                    load_model, parse_overrides, resolve_architecture,
                                    save_checkpoint)
from plrp.models.convert import convert_checkpoint

__all__ = ["ARCHITECTURES", "GenomeCNN", "build_model", "DEFAULT_MODEL_PATH", "LoadedModel",
           "check_input_length", "convert_checkpoint", "load_model", "parse_overrides",
           "resolve_architecture", "save_checkpoint"]
