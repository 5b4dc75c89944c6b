"""Layer alignment and the corrections applied to what was chosen from many candidates.

`layer_map` gives every candidate layer its most similar reference layer
(Bonferroni over the reference layers searched); `layer_evidence_log10p` and
`strongest_decisive` correct the strongest layer and the strongest signal for
the candidates they were chosen from.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..architectures.roles import LAYER_ROLES, in_layer
from ..fingerprint import Fingerprint
from .results import Evidence, LayerMatch
from .signals import layer_similarity
from .stats import bonferroni_log10p, format_p, p_from_log10
from .thresholds import LAYER_MATCH_LOG10P
from .views import SampleView

# The float16 unit signatures bound what a fitted rescaling or matching can verify.
SIGNATURE_PRECISION = 2e-3
ARCH_FIELDS = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
               "num_experts")


def shapes_disagree(cand: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    """The shape fields both architectures state and state differently (a field one side leaves out is no
    disagreement: a GGUF header does not state everything a config does)."""
    return [f for f in ARCH_FIELDS if cand.get(f) is not None and ref.get(f) is not None and cand.get(f) != ref.get(f)]


def architecture_match(cand: dict[str, Any], ref: dict[str, Any]) -> str:
    """`same-shapes`, `same-family` or `different`."""
    same = all(cand.get(f) == ref.get(f) for f in ARCH_FIELDS)
    if same:
        return "same-shapes"
    widths_equal = cand.get("hidden_size") == ref.get("hidden_size") and cand.get("intermediate_size") == ref.get("intermediate_size")
    if cand.get("family") and cand.get("family") == ref.get("family") or widths_equal:
        return "same-family"
    return "different"


def layer_map(cand: Fingerprint, ref: Fingerprint, view: SampleView):
    """Best reference layer for every candidate layer; `view` picks what is compared (sketches, or row samples)."""
    cv, rv = view.layer_view(cand), view.layer_view(ref)
    ls = layer_similarity(cv, rv, clusters=view.clusters)
    rows = []
    for i in range(cv.layers):
        if ls.roles[i].max(initial=0) == 0:
            rows.append(LayerMatch(i, None, 0.0, 1.0, 0.0, 0))
            continue
        # Layers of one model correlate with each other (shared outlier dimensions in
        # norms and folded matrices), so p-values of several pairs can saturate: the
        # best partner is the most similar one, and its p-value is then reported.
        j = int(np.argmax(np.where(ls.roles[i] > 0, ls.similarity[i], -np.inf)))
        corrected = bonferroni_log10p(float(ls.log10p[i, j]), rv.layers)
        rows.append(LayerMatch(i, j if corrected < LAYER_MATCH_LOG10P else None, round(float(ls.similarity[i, j]), 4),
                               p_from_log10(corrected), round(corrected, 2), int(ls.roles[i, j]),
                               dict(ls.rel_errors.get((i, j), {})), view.via, best_reference_layer=j))
    matrix = {"similarity": np.round(ls.similarity, 4).tolist(), "log10_p": np.round(ls.log10p, 2).tolist(),
              "roles": ls.roles.astype(int).tolist()} if cv.layers and rv.layers else None
    return rows, rv.layers, matrix


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
    for key, record in cand.tensors.items():
        other = ref.tensors.get(key)
        if other and other.get("source") and record.get("source") and other["source"] != record["source"]:
            found.append({"candidate": record["source"], "reference": other["source"], "role": key})
    return found


def emptied_roles(cand: Fingerprint, ref: Fingerprint) -> list[str]:
    """Canonical keys that are zero-sized in the candidate and hold values in the reference (a role cut to
    nothing): such a candidate is never `identical`, however well the rest matches."""
    def size(record: Any) -> int | None:
        shape = record.get("shape") if isinstance(record, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            return None
        return int(np.prod(shape)) if shape else 1

    return sorted(key for key, record in cand.tensors.items() if size(record) == 0 and size(ref.tensors.get(key)))


def non_layer_evidence(globals_, anchors, sampled: Callable[[str], bool] = lambda name: False) -> list[Evidence]:
    """Evidence entries of the non-layer tensors compared by id and of the anchor rows compared by string
    (`sampled(name)`: whether a tensor was compared on its row sample, which the entry then says)."""
    found = [Evidence(f"{g.name} (by id{', sampled rows' if sampled(g.name) else ''})", g.correlation, g.log10p,
                      f"correlation of {g.n} sampled values, {format_p(g.log10p)}") for g in globals_]
    if anchors is not None:
        found.append(Evidence("embedding by token string", anchors.correlation, anchors.log10p,
                              f"{anchors.name}: correlation {anchors.correlation:.3f}, {format_p(anchors.log10p)}"))
    return found


def vocabulary_evidence(overlap: float | None) -> list[Evidence]:
    """The vocabulary overlap, a screening signal that never decides."""
    if overlap is None:
        return []
    return [Evidence("vocabulary overlap (screening only)", overlap, None,
                     "estimated Jaccard of the token-string sets; independent models often share tokenizers",
                     decisive=False)]


def layer_evidence(rows: list[LayerMatch], reference_layers: int, what: str, on: str = "") -> list[Evidence]:
    """The layer map as one evidence entry: how many layers matched, and the strongest layer, corrected over the
    reference layers searched and then over the candidate's layers. `what` names the compared samples."""
    if not rows:
        return []
    if not any(r.roles or r.via != "none" for r in rows):
        return [Evidence.not_compared(f"layer weights ({what}, norms folded)",
                                      f"none of the candidate's {len(rows)} layers has a reference layer with "
                                      f"tensors of the same shapes ({reference_layers} reference layers)")]
    matched = sum(1 for r in rows if r.reference_layer is not None)
    best = min(rows, key=lambda r: r.log10_p)
    strongest = layer_evidence_log10p(rows)
    return [Evidence(
        f"layer weights ({what}, norms folded)", best.similarity, strongest,
        f"{matched} of {len(rows)} candidate layers match a reference layer at p < 1e-6{on} "
        f"(per layer, sign-flip tests over residual dimensions and, where they flip on their own, over the "
        f"layer's units, Bonferroni over the two, then over {reference_layers} reference layers); strongest layer "
        f"{best.candidate_layer} {format_p(best.log10_p)}, {format_p(strongest)} after Bonferroni over "
        f"{len(rows)} candidate layers")]
