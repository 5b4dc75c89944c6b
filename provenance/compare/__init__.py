"""Comparison of two fingerprints: signals with nulls, layer alignment, verdicts."""

from .engine import compare_fingerprints
from .results import Comparison, Evidence, LayerMatch
from .verdict import Verdict

__all__ = ["Comparison", "Evidence", "LayerMatch", "Verdict", "compare_fingerprints"]
