"""The embedding by token string: rows of anchor tokens present in both vocabularies, aligned by string.

Each hidden dimension is one cluster (rows of one token are not
independent), after centring each dimension (embeddings share a mean
direction). When both models normalise with LayerNorm, each row is centred
too: a LayerNorm subtracts the mean over the hidden dimensions from every
input it reads, so a row's offset along the all-ones direction does not
change what the model computes from it, and independently trained LayerNorm
models share that offset (trained BERTs: per-row means correlating 0.46, which
read as p = 1e-8.8 with rows uncentred; bench/trained_nulls.py). RMSNorm keeps
the mean, so rows of RMSNorm models are compared as they are.
"""

from __future__ import annotations

import numpy as np

from ...architectures.roles import Role
from ...fingerprint import Fingerprint, Part
from ..results import Evidence
from ..stats import clustered_log10p, format_p
from .base import Pair, Signal, SignalResult
from .non_layer import TensorSignal


def anchor_embeddings(cand: Fingerprint, ref: Fingerprint, role: str = Role.EMBED) -> TensorSignal | None:
    """Embedding rows of anchor tokens present in both vocabularies, aligned by string."""
    cv, rv = cand.vocabulary, ref.vocabulary
    a, b = cand.part_array(Part.ANCHORS, role), ref.part_array(Part.ANCHORS, role)
    if not cv or not rv or a is None or b is None or a.shape[1] != b.shape[1]:
        return None
    c_index = {t: i for i, t in enumerate(cv.anchor_tokens[: a.shape[0]])}
    r_index = {t: i for i, t in enumerate(rv.anchor_tokens[: b.shape[0]])}
    shared = [t for t in c_index if t in r_index]
    if len(shared) < 8:
        return None
    x = a[[c_index[t] for t in shared]].astype(np.float64)
    y = b[[r_index[t] for t in shared]].astype(np.float64)
    rel = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
    if cand.arch.norm_subtracts_mean and ref.arch.norm_subtracts_mean:  # what every LayerNorm removes (module docstring)
        x, y = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    # Centre each hidden dimension (embeddings share a mean direction) and treat
    # each hidden dimension as one cluster: rows of one token are not independent.
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    columns = np.tile(np.arange(x.shape[1]), (x.shape[0], 1))
    r, log10p = clustered_log10p(x.reshape(-1), y.reshape(-1), columns.reshape(-1))
    return TensorSignal(f"{role} rows of {len(shared)} anchor tokens shared by string", r, log10p, x.size, rel)


class AnchorEmbeddings(Signal):
    name = "embedding by token string"
    null = ("the models were trained independently, so one model's embedding is as likely with the sign of any "
            "hidden dimension flipped")

    def measure(self, pair: Pair) -> SignalResult:
        anchors = anchor_embeddings(pair.cand, pair.ref)
        if anchors is None:
            return SignalResult()
        return SignalResult((Evidence(self.name, anchors.correlation, anchors.log10p,
                                      f"{anchors.name}: correlation {anchors.correlation:.3f}, "
                                      f"{format_p(anchors.log10p)}"),),
                            measured=anchors, embedding_log10p=(anchors.log10p,))
