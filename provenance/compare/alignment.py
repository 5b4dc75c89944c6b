"""Architecture matching and the corrections applied to what was chosen from many candidates.

`layer_evidence_log10p` and `strongest_decisive` correct the strongest layer
and the strongest signal for the candidates they were chosen from (the layer
map itself is made by the layer signal, `signals/layers.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..architectures.descriptor import Architecture
from ..architectures.roles import LAYER_ROLES, in_layer
from ..fingerprint import Fingerprint
from ..fingerprint.records import TensorRecord
from .results import Evidence, LayerMatch
from .stats import bonferroni_log10p

# The float16 unit signatures bound what a fitted rescaling or matching can verify.
SIGNATURE_PRECISION = 2e-3
ARCH_FIELDS = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
               "num_experts")


def shapes_disagree(cand: Architecture, ref: Architecture) -> list[str]:
    """The shape fields both architectures state and state differently (a field one side leaves out is no
    disagreement: a GGUF header does not state everything a config does)."""
    pairs = ((f, getattr(cand, f), getattr(ref, f)) for f in ARCH_FIELDS)
    return [f for f, c, r in pairs if c is not None and r is not None and c != r]


def architecture_match(cand: Architecture, ref: Architecture) -> str:
    """`same-shapes`, `same-family` or `different`."""
    same = all(getattr(cand, f) == getattr(ref, f) for f in ARCH_FIELDS)
    if same:
        return "same-shapes"
    widths_equal = cand.hidden_size == ref.hidden_size and cand.intermediate_size == ref.intermediate_size
    if cand.family and cand.family == ref.family or widths_equal:
        return "same-family"
    return "different"


def layer_evidence_log10p(rows: list[LayerMatch]) -> float:
    """The strongest layer's p-value, Bonferroni over the candidate layers it was chosen from."""
    tested = [r.log10_p for r in rows if r.roles or r.via != "none"]
    if not tested:
        return 0.0
    return bonferroni_log10p(min(tested), len(tested))


def strongest_decisive(evidence: list[Evidence], unreported: int = 0) -> float:
    """The smallest decisive log10 p, Bonferroni over the decisive signals it was chosen from: those reported and
    `unreported` more that were examined without an entry (a signal reports only what passes the layer bar)."""
    decisive = [e.log10p for e in evidence if e.decisive and e.log10p is not None]
    return bonferroni_log10p(min(decisive), len(decisive) + unreported) if decisive else 0.0


def is_unplaced(key: str) -> bool:
    """A per-layer role whose layer is unknown (`attn.q.weight`, `attn.q.weight@t017`)."""
    role = key.split("@")[0].rsplit(".", 1)[0]
    return not in_layer(key) and role in LAYER_ROLES


def renamed_tensors(cand: Fingerprint, ref: Fingerprint) -> list[dict[str, Any]]:
    found = []
    for key, record in cand.records.items():
        other = ref.records.get(key)
        if other and other.source and record.source and other.source != record.source:
            found.append({"candidate": record.source, "reference": other.source, "role": key})
    return found


def emptied_roles(cand: Fingerprint, ref: Fingerprint) -> list[str]:
    """Canonical keys that are zero-sized in the candidate and hold values in the reference (a role cut to
    nothing): such a candidate is never `identical`, however well the rest matches."""
    def size(record: TensorRecord | None) -> int | None:
        if record is None or not all(isinstance(d, int) for d in record.shape):
            return None
        return int(np.prod(record.shape)) if record.shape else 1

    return sorted(key for key, record in cand.records.items() if size(record) == 0 and size(ref.records.get(key)))


