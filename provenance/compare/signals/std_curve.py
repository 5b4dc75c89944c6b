"""Per-layer std curves of the attention matrices: a screening signal that never decides."""

from __future__ import annotations

import numpy as np

from ...architectures.roles import Role, key_name
from ...fingerprint import Fingerprint, Part
from ..results import Evidence
from ..stats import pearson
from .base import Pair, Signal, SignalResult


def std_curve_correlation(cand: Fingerprint, ref: Fingerprint) -> float | None:
    """Correlation of per-layer std of attention matrices: a screening signal only.

    Independent models reach 0.9 on this (the Pangu/Qwen dispute), so it is
    reported for context and never used to decide.
    """
    def curve(fp: Fingerprint) -> list[float]:
        values = []
        for layer in range(int(fp.arch.num_layers or 0)):
            records = [fp.records.get(key_name(role, layer)) for role in (Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O)]
            stds = [record.stats.get("std") if record is not None else None for record in records]
            if all(isinstance(s, float) for s in stds):
                values.extend(stds)
        return values

    a, b = curve(cand), curve(ref)
    if len(a) != len(b) or len(a) < 8:
        return None
    return pearson(np.asarray(a), np.asarray(b))


class StdCurve(Signal):
    name = "per-layer std curve (screening only)"
    needs = frozenset({Part.STATISTICS})
    null = "none that holds: independent models reach a correlation of 0.9, so the curve is context only"

    def measure(self, pair: Pair) -> SignalResult:
        r = std_curve_correlation(pair.cand, pair.ref)
        if r is None:
            return SignalResult()
        return SignalResult((Evidence(self.name, r, None, "correlation of attention-matrix std across layers; "
                                      "independent models reach 0.9, so this never decides", decisive=False),),
                            measured=r)
