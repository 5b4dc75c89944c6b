"""Comparison of two fingerprints: signals with nulls, layer alignment, verdicts."""

from .engine import Comparison, compare_fingerprints

__all__ = ["Comparison", "compare_fingerprints"]
