"""Vocabulary overlap (MinHash estimate of the Jaccard of the token-string sets): screening only."""

from __future__ import annotations

import numpy as np

from ...fingerprint import Fingerprint
from ..results import Evidence
from .base import Pair, Signal, SignalResult


def vocabulary_overlap(cand: Fingerprint, ref: Fingerprint) -> float | None:
    """Estimated Jaccard similarity of the two vocabularies (MinHash): screening only."""
    cv, rv = cand.vocabulary, ref.vocabulary
    if not cv or not rv or not cv.minhash or not rv.minhash:
        return None
    a, b = np.asarray(cv.minhash, dtype=object), np.asarray(rv.minhash, dtype=object)
    size = min(len(a), len(b))
    return float(np.mean([a[i] == b[i] for i in range(size)]))


class VocabularyOverlap(Signal):
    name = "vocabulary overlap (screening only)"
    null = "none that holds: independent models often share tokenizers, so the overlap is context only"

    def measure(self, pair: Pair) -> SignalResult:
        overlap = vocabulary_overlap(pair.cand, pair.ref)
        if overlap is None:
            return SignalResult()
        return SignalResult((Evidence(self.name, overlap, None,
                                      "estimated Jaccard of the token-string sets; independent models often share "
                                      "tokenizers", decisive=False),), measured=overlap)
