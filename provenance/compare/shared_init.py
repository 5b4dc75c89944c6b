"""Whether a `derived` relation could be a shared random initialisation rather than a shared trained ancestor.

Two models trained independently from one seed and one init code share
their initial weights: every matched matrix is then w0 + d_c and w0 + d_r,
with updates d_c and d_r of their own. Their weights correlate weakly (the
shared part is the initialisation, small beside what training added), and
the shared part's size, estimated from the covariance of the two sketches
(cov(a, b) = var(w0) when the updates are independent of each other), is
a common initialiser's standard deviation. A heavily trained descendant of
a trained ancestor can look the same, so the note says both readings stand;
weights alone cannot tell them apart. Where the family's default init can be
rebuilt, `init_regeneration.py` regenerates it under common seeds first; this
note is used when no seed reproduces the shared part (the engine adds which
seeds were tried) or the init could not be rebuilt.
"""

from __future__ import annotations

import math

import numpy as np

from ..architectures.roles import Role, key_name
from ..fingerprint import Fingerprint, Part
from .results import LayerMatch

# Matched layers correlating below this on average: the shared part is a minor part of each model.
WEAK_SHARE = 0.5
# Initialiser scales: the Hugging Face default (initializer_range 0.02) and 1/sqrt(fan_in) (PyTorch's Linear,
# up to a constant); a standard deviation must lie within 30% of one of them.
INIT_TOLERANCE = 0.3
ROLES = (Role.ATTN_Q, Role.MLP_UP)


def initialiser_scales(fan_in: int) -> tuple[float, float]:
    """The common initialisers' standard deviations for a matrix of `fan_in` columns."""
    return 0.02, 1.0 / math.sqrt(max(fan_in, 1))


def _near_initialiser_scale(std: float, fan_in: int, scales: tuple[float, ...] = ()) -> bool:
    return any(abs(std / s - 1.0) < INIT_TOLERANCE for s in (*initialiser_scales(fan_in), *scales))


def looks_initialised(fp: Fingerprint, keys: list[str]) -> bool:
    """Whether the named tensors look like untrained initialisation: near-Gaussian (|excess kurtosis| < 0.3,
    |skew| < 0.1) with a standard deviation within 30% of a common initialiser scale (0.02, 1/sqrt(width) or 1)."""
    found = False
    for key in keys:
        record = fp.records.get(key)
        if record is None:
            continue
        stats, shape = record.stats, record.shape
        if not stats.get("std") or len(shape) != 2:
            continue
        found = True
        if not (abs(stats.get("kurtosis", 9.0)) < 0.3 and abs(stats.get("skew", 9.0)) < 0.1
                and _near_initialiser_scale(stats["std"], shape[1], (1.0,))):
            return False
    return found


def _shared_std(cand: Fingerprint, ref: Fingerprint, row: LayerMatch, role: str) -> tuple[float, int] | None:
    key_c = key_name(role, row.candidate_layer)
    key_r = key_name(role, row.reference_layer)
    a, b = cand.part_array(Part.SKETCHES, key_c), ref.part_array(Part.SKETCHES, key_r)
    record = cand.records.get(key_c)
    shape = record.shape if record is not None else None
    if a is None or b is None or a.shape != b.shape or a.size < 64 or not shape or len(shape) != 2:
        return None
    a, b = a.astype(np.float64), b.astype(np.float64)
    covariance = float(np.mean((a - a.mean()) * (b - b.mean())))
    return (math.sqrt(covariance), int(shape[1])) if covariance > 0 else None


def shared_part_std(cand: Fingerprint, ref: Fingerprint, matched: list[LayerMatch]) -> float | None:
    """The standard deviation of the part both models share (from the sketches' covariance), in the median matched
    `attn.q` / `mlp.up` matrix; None when no matrix gives one (no sketches, or no positive covariance)."""
    if not cand.holds(Part.SKETCHES) or not ref.holds(Part.SKETCHES):
        return None
    found = [s for row in matched for role in ROLES if (s := _shared_std(cand, ref, row, role)) is not None]
    return float(np.median([std for std, _ in found])) if found else None


def shared_initialisation_note(cand: Fingerprint, ref: Fingerprint, matched: list[LayerMatch]) -> str | None:
    """The note for a `derived` comparison that a shared initialisation could explain, or None: both models'
    matched weights still look untrained, or the matched layers share only an initialisation-sized part."""
    if not matched:
        return None
    keys = [key_name(role, r.candidate_layer) for r in matched for role in ROLES]
    ref_keys = [key_name(role, r.reference_layer) for r in matched for role in ROLES]
    if looks_initialised(cand, keys) and looks_initialised(ref, ref_keys):
        return ("both models' matched weights are near-Gaussian at an initialiser's scale, as untrained weights "
                "are: a shared random initialisation (one seed and one init code, no shared training) would "
                "also explain this relation")
    if not cand.holds(Part.SKETCHES) or not ref.holds(Part.SKETCHES):
        return None
    similarity = float(np.mean([row.similarity for row in matched]))
    if similarity >= WEAK_SHARE:
        return None
    found = [s for row in matched for role in ROLES if (s := _shared_std(cand, ref, row, role)) is not None]
    if not found:
        return None
    if not all(_near_initialiser_scale(std, fan_in) for std, fan_in in found):
        return None
    median = float(np.median([std for std, _ in found]))
    return (f"the matched layers correlate weakly (mean {similarity:.2f}): the models share a part that is small "
            f"beside the rest of their weights, with the scale of a standard initialisation (its standard deviation, "
            f"from the sketches' covariance, {median:.3g} in the median matrix). A shared random initialisation (one "
            "seed and one init code, then independent training) cannot be told from a shared trained ancestor by "
            "the weights alone: either would explain this relation")
