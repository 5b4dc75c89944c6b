"""Comparison of two fingerprints: signals with nulls, layer alignment, verdicts.

`compare_fingerprints` sends a pair that no transformer role map fits (a
diffusion UNet or VAE, a ViT: see `generic.generic_applies`) to the generic
comparison of stored tensors, and every other pair to the layer engine.
The choice is made here rather than in engine.py so that neither module
imports the other in both directions.
"""

from .engine import Comparison
from .engine import compare_fingerprints as compare_layers
from .generic import compare_generic


def compare_fingerprints(cand, ref) -> Comparison:
    """Compare a candidate fingerprint with a reference fingerprint and reach a verdict."""
    return compare_generic(cand, ref) or compare_layers(cand, ref)


__all__ = ["Comparison", "compare_fingerprints"]
