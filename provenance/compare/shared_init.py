"""Whether a `derived` relation could be a shared random initialisation rather than a shared trained ancestor.

Two models trained independently from one seed and one init code share
their initial weights: every matched matrix is then w0 + d_c and w0 + d_r,
with updates d_c and d_r of their own. Their weights correlate weakly (the
shared part is the initialisation, small beside what training added), and
the shared part's size, estimated from the covariance of the two sketches
(cov(a, b) = var(w0) when the updates are independent of each other), is
a common initialiser's standard deviation. A heavily trained descendant of
a trained ancestor can look the same, so the note says both readings stand;
weights alone cannot tell them apart (regenerating the family's standard
initialisations under common seeds would, and is not done here).
"""

from __future__ import annotations

import math

import numpy as np

from ..fingerprint import Fingerprint, Part
from .results import LayerMatch

# Matched layers correlating below this on average: the shared part is a minor part of each model.
WEAK_SHARE = 0.5
# Initialiser scales: the Hugging Face default (initializer_range 0.02) and 1/sqrt(fan_in) (PyTorch's Linear,
# up to a constant); the shared part's std must lie within 30% of one of them.
INIT_TOLERANCE = 0.3
ROLES = ("attn.q", "mlp.up")


def _shared_std(cand: Fingerprint, ref: Fingerprint, row: LayerMatch, role: str) -> tuple[float, int] | None:
    key_c = f"layers.{row.candidate_layer}.{role}.weight"
    key_r = f"layers.{row.reference_layer}.{role}.weight"
    a, b = cand.part_array(Part.SKETCHES, key_c), ref.part_array(Part.SKETCHES, key_r)
    shape = (cand.tensors.get(key_c) or {}).get("shape")
    if a is None or b is None or a.shape != b.shape or a.size < 64 or not shape or len(shape) != 2:
        return None
    a, b = a.astype(np.float64), b.astype(np.float64)
    covariance = float(np.mean((a - a.mean()) * (b - b.mean())))
    return (math.sqrt(covariance), int(shape[1])) if covariance > 0 else None


def shared_initialisation_note(cand: Fingerprint, ref: Fingerprint, matched: list[LayerMatch]) -> str | None:
    """The note for a `derived` comparison whose matched layers share only an initialisation-sized part, or None."""
    if not matched or not cand.holds(Part.SKETCHES) or not ref.holds(Part.SKETCHES):
        return None
    similarity = float(np.mean([row.similarity for row in matched]))
    if similarity >= WEAK_SHARE:
        return None
    found = [s for row in matched for role in ROLES if (s := _shared_std(cand, ref, row, role)) is not None]
    if not found:
        return None
    scales = [(std, min((0.02, 1.0 / math.sqrt(max(fan_in, 1))), key=lambda s: abs(std / s - 1.0)))
              for std, fan_in in found]
    if not all(abs(std / scale - 1.0) < INIT_TOLERANCE for std, scale in scales):
        return None
    median = float(np.median([std for std, _ in scales]))
    return (f"the matched layers correlate weakly (mean {similarity:.2f}): the models share a part that is small "
            f"beside the rest of their weights, with the scale of a standard initialisation (its standard deviation, "
            f"from the sketches' covariance, {median:.3g} in the median matrix). A shared random initialisation (one "
            "seed and one init code, then independent training) cannot be told from a shared trained ancestor by "
            "the weights alone: either would explain this relation")
