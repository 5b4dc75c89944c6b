"""Comparison of two fingerprints: signals with nulls, layer alignment, verdicts."""

from .engine import compare_fingerprints
from .results import Comparison, Evidence

__all__ = ["Comparison", "Evidence", "compare_fingerprints"]
