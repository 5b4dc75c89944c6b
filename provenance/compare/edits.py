"""What was done to a copy, in words: the structural edits and disguises an accusing comparison found.

The verdict stays one of the five words; this names the edit behind it,
each phrase with the evidence it rests on, from what the comparison already
measured (the two architectures, the layer map and how each layer was
placed, the non-layer tensors):

- width pruning: fewer residual dimensions or MLP units than the reference,
  with the layers still matched;
- depth pruning: fewer layers, each matched to a distinct reference layer;
- KV-head pooling: as many query heads, fewer key/value heads (GQA <-> MQA);
- vocabulary replacement: another vocabulary whose embeddings show no
  relation, while the layers match (found through the layers alone);
- a rotated residual basis, permuted MLP units or heads: layers placed only
  through the rotation- or permutation-invariant tests.

Layer reordering and repetition are named by `verdict.decide` (`assembled`).
"""

from __future__ import annotations

from typing import Any

from .invariant import VIA as RESPONSES_VIA
from .results import LayerMatch
from .thresholds import NULL_LIKE_LOG10P

GRAM_VIA = "residual-space Gram matrices"
UNITS_VIA = "matched MLP units"


def _count(arch: dict[str, Any], field: str) -> int | None:
    value = arch.get(field)
    return int(value) if isinstance(value, int) and value > 0 else None


def width_edit(arch_c: dict[str, Any], arch_r: dict[str, Any]) -> str | None:
    """'width-pruned: 512 of 576 residual dimensions, 1024 of 1536 MLP units' (None when no width shrank)."""
    parts = []
    for field, what in (("hidden_size", "residual dimensions"), ("intermediate_size", "MLP units")):
        c, r = _count(arch_c, field), _count(arch_r, field)
        if c and r and c < r:
            parts.append(f"{c} of {r} {what}")
    return f"width-pruned: {', '.join(parts)}" if parts else None


def depth_edit(rows: list[LayerMatch], reference_layers: int) -> str | None:
    matched = [r.reference_layer for r in rows if r.reference_layer is not None]
    if not rows or len(rows) >= reference_layers or len(set(matched)) != len(matched) or not matched:
        return None
    dropped = sorted(set(range(reference_layers)) - set(matched))
    shown = ", ".join(str(j) for j in dropped[:12]) + (" ..." if len(dropped) > 12 else "")
    return (f"depth-pruned: {len(rows)} of {reference_layers} layers kept, each matched to a distinct reference "
            f"layer (reference layers without a match: {shown})")


def kv_edit(arch_c: dict[str, Any], arch_r: dict[str, Any]) -> str | None:
    heads_c, heads_r = _count(arch_c, "num_heads"), _count(arch_r, "num_heads")
    kv_c, kv_r = _count(arch_c, "num_kv_heads") or heads_c, _count(arch_r, "num_kv_heads") or heads_r
    if not (heads_c and heads_c == heads_r and kv_c and kv_r) or kv_c == kv_r:
        return None
    how = "pooled" if kv_c < kv_r else "split"
    return f"key/value heads {how}: {kv_c} KV heads where the reference has {kv_r}, for {heads_c} query heads each"


def vocabulary_edit(arch_c: dict[str, Any], arch_r: dict[str, Any], non_layer_log10p: float | None,
                    rows: list[LayerMatch]) -> str | None:
    """Another vocabulary and embeddings with no relation, while layers match: the layers were kept."""
    vocab_c, vocab_r = _count(arch_c, "vocab_size"), _count(arch_r, "vocab_size")
    matched = sum(1 for r in rows if r.reference_layer is not None)
    if not matched or vocab_c == vocab_r or (non_layer_log10p is not None and non_layer_log10p < NULL_LIKE_LOG10P):
        return None
    return (f"vocabulary replaced: {vocab_c} tokens where the reference has {vocab_r}, embeddings show no relation "
            f"to the reference's, yet {matched} of {len(rows)} layers match (found through the layers alone)")


def disguise_edit(rows: list[LayerMatch], same_widths: bool) -> str | None:
    """Layers found only through the invariant tests: a rotated basis, permuted units or heads. Between models of
    other widths the in-place tests cannot compare at all, so this only says how the layers were found."""
    by = {name: sum(1 for r in rows if r.via.startswith(name)) for name in (RESPONSES_VIA, GRAM_VIA, UNITS_VIA)}
    if not same_widths:
        found = by[RESPONSES_VIA] or by[GRAM_VIA]
        return (f"{found} of {len(rows)} layers were matched through rotation- and permutation-invariant tests "
                "(the widths differ, so values in place cannot be compared)") if found else None
    if by[RESPONSES_VIA]:
        return (f"disguised: {by[RESPONSES_VIA]} of {len(rows)} layers were found only through each unit's responses "
                "to the anchor tokens, which a rotated residual basis or permuted MLP units and attention heads "
                "leave unchanged")
    if by[GRAM_VIA]:
        return f"rotated residual basis: {by[GRAM_VIA]} of {len(rows)} layers were found only through Gram matrices"
    if by[UNITS_VIA]:
        return f"MLP units permuted: {by[UNITS_VIA]} of {len(rows)} layers were found only by matching units"
    return None


def name_edits(arch_c: dict[str, Any], arch_r: dict[str, Any], rows: list[LayerMatch],
               non_layer_log10p: float | None) -> list[str]:
    """Every edit the comparison's measurements show, in the order a reader checks them."""
    found = [width_edit(arch_c, arch_r), depth_edit(rows, _count(arch_r, "num_layers") or 0),
             kv_edit(arch_c, arch_r), vocabulary_edit(arch_c, arch_r, non_layer_log10p, rows),
             disguise_edit(rows, all(arch_c.get(f) == arch_r.get(f) for f in ("hidden_size", "intermediate_size")))]
    return [edit for edit in found if edit]
