"""Genome CNN architectures and safe checkpoint loading."""

from plrp.models.architectures import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "build_model"]
