"""Comparison of two fingerprints: signals with nulls, layer alignment, verdicts."""

from .engine import compare_fingerprints
from .results import Comparison, Evidence
from .verdict import Verdict

__all__ = ["Comparison", "Evidence", "Verdict", "compare_fingerprints"]
