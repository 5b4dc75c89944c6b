"""The structural edits an accused candidate shows, named from what the comparison already measured.

The verdict stays one of the five words; this only says, for the summary,
what the two architectures, the layer map and the non-layer evidence show
once the weights have shown the relation (the direction follows the verdict:
the candidate descends from the reference):

- width pruning (Minitron-style: a subset of residual dimensions and of MLP
  units kept, then healed), found through the rotation-invariant layer tests,
  which compare units whatever the residual width: fewer is "pruned", more is
  "widened";
- depth pruning: fewer layers than the reference, the matched ones each on a
  distinct reference layer;
- KV-head pooling (GQA <-> MQA): as many query heads, fewer (or more)
  key/value heads;
- vocabulary replacement: another vocabulary size, embeddings that show no
  relation (or could not be compared), while the layers match;
- a changed residual basis (a rotation with the norms folded, as QuaRot,
  SliceGPT and mergekit's evasion script make): at equal residual width,
  every matched layer found only through the MLP units' anchor responses
  (which a rotation does not change), and the per-dimension embedding and
  head tests showing no relation (which a rotation hides);
- layer repetition and reordering, from the layer map alone: a reference
  layer matched by two or more candidate layers is "repeated"; reference
  layers met (each for the first time) out of order are "reordered".

`verdict.decide` makes the `assembled` verdict of a repeated or reordered map;
this names which layers. Experts are named by `experts.py`.
"""

from __future__ import annotations


from ..architectures.descriptor import Architecture
from .results import LayerMatch
from .stats import format_p
from .thresholds import NULL_LIKE_LOG10P
from .unit_responses import VIA as RESPONSES_VIA


def _width(arch: Architecture, key: str) -> int | None:
    value = getattr(arch, key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def width_edits(cand_arch: Architecture, ref_arch: Architecture) -> list[str]:
    """e.g. ["width-pruned: 512 of the reference's 576 residual dimensions", "width-pruned: 1024 of the reference's
    1536 MLP units"]; nothing for mixtures of experts (their MLP width is an expert's: `experts.py` names those)."""
    if cand_arch.num_experts or ref_arch.num_experts:
        keys = (("hidden_size", "residual dimensions"),)
    else:
        keys = (("hidden_size", "residual dimensions"), ("intermediate_size", "MLP units"))
    found = []
    for key, what in keys:
        c, r = _width(cand_arch, key), _width(ref_arch, key)
        if c is None or r is None or c == r:
            continue
        found.append(f"width-pruned: {c} of the reference's {r} {what}" if c < r
                     else f"widened: {c} {what} where the reference has {r}")
    return found


def depth_edit(rows: list[LayerMatch], reference_layers: int | None) -> str | None:
    """Fewer candidate layers than the reference's, every matched one on a distinct reference layer (two candidate
    layers on one reference layer is repetition, not pruning); None otherwise."""
    matched = [r.reference_layer for r in rows if r.reference_layer is not None]
    if not reference_layers or not matched or len(rows) >= reference_layers or len(set(matched)) != len(matched):
        return None
    unmatched = sorted(set(range(reference_layers)) - set(matched))
    shown = ", ".join(str(j) for j in unmatched[:12]) + (" ..." if len(unmatched) > 12 else "")
    return (f"depth-pruned: {len(rows)} of the reference's {reference_layers} layers, {len(matched)} of them matched "
            f"to distinct reference layers (reference layers no candidate layer matched: {shown})")


def kv_edit(cand_arch: Architecture, ref_arch: Architecture) -> str | None:
    """As many query heads, another number of key/value heads (a missing count means one KV head per query head)."""
    heads_c, heads_r = _width(cand_arch, "num_heads"), _width(ref_arch, "num_heads")
    if heads_c is None or heads_c != heads_r:
        return None
    kv_c = _width(cand_arch, "num_kv_heads") or heads_c
    kv_r = _width(ref_arch, "num_kv_heads") or heads_r
    if kv_c == kv_r:
        return None
    how = "pooled" if kv_c < kv_r else "split"
    return f"key/value heads {how}: {kv_c} KV heads where the reference has {kv_r}, for the same {heads_c} query heads"


def vocabulary_edit(cand_arch: Architecture, ref_arch: Architecture, rows: list[LayerMatch],
                    embedding_log10p: float | None) -> str | None:
    """Another vocabulary size, embeddings with no relation (`embedding_log10p`: the strongest embedding or output
    head comparison, by id or by token string; None: none could be compared), while layers match."""
    vocab_c, vocab_r = _width(cand_arch, "vocab_size"), _width(ref_arch, "vocab_size")
    matched = sum(1 for r in rows if r.reference_layer is not None)
    if vocab_c is None or vocab_r is None or vocab_c == vocab_r or not matched:
        return None
    if embedding_log10p is None:
        how = "no embedding row could be compared with the reference's"
    elif embedding_log10p >= NULL_LIKE_LOG10P:
        how = f"the embeddings show no relation to the reference's (strongest {format_p(embedding_log10p)})"
    else:
        return None  # related embeddings: a vocabulary extended or cut, not replaced
    return (f"vocabulary replaced: {vocab_c} tokens where the reference has {vocab_r}; {how}, yet {matched} of "
            f"{len(rows)} layers match (found through the layers alone)")


def basis_edit(cand_arch: Architecture, ref_arch: Architecture, rows: list[LayerMatch],
               embedding_log10p: float | None) -> str | None:
    """The residual basis changed: equal residual widths, every matched layer placed by the anchor responses only
    (the per-dimension layer tests found none of them), and embedding or head rows compared per dimension with no
    relation. A heavy fine-tune that hides layers from the per-dimension tests keeps its embedding related, so the
    embeddings are required (None: not compared, nothing named)."""
    width_c, width_r = _width(cand_arch, "hidden_size"), _width(ref_arch, "hidden_size")
    matched = [r for r in rows if r.reference_layer is not None]
    if (width_c is None or width_c != width_r or not matched or embedding_log10p is None
            or embedding_log10p < NULL_LIKE_LOG10P or any(r.via != RESPONSES_VIA for r in matched)):
        return None
    return (f"residual basis changed (rotated, or its dimensions permuted): all {len(matched)} matched layers were "
            "found only through the anchor responses, which a rotation does not change, while no per-dimension test "
            f"relates the two (strongest embedding or head test {format_p(embedding_log10p)})")


def _listed(values: list[int], limit: int = 12) -> str:
    return ", ".join(str(v) for v in values[:limit]) + (" ..." if len(values) > limit else "")


def repetition_edit(rows: list[LayerMatch]) -> str | None:
    """e.g. "layer 2 repeated: candidate layers 2, 3 match reference layer 2"; None when every matched reference
    layer is matched once."""
    holders: dict[int, list[int]] = {}
    for row in rows:
        if row.reference_layer is not None:
            holders.setdefault(row.reference_layer, []).append(row.candidate_layer)
    repeated = sorted(j for j, held in holders.items() if len(held) > 1)
    if not repeated:
        return None
    which = "; ".join(f"candidate layers {_listed(holders[j])} match reference layer {j}" for j in repeated[:6])
    which += " ..." if len(repeated) > 6 else ""
    return f"{'layer' if len(repeated) == 1 else 'layers'} {_listed(repeated)} repeated: {which}"


def reorder_edit(rows: list[LayerMatch]) -> str | None:
    """e.g. "layers reordered: candidate layers 2, 3 hold reference layers 3, 2". Only a reference layer's first
    match counts (a repeated block, as in depth up-scaling, keeps its order); the candidate layers named are those
    where the first matches depart from increasing order."""
    seen: set[int] = set()
    first: list[tuple[int, int]] = []
    for row in rows:
        if row.reference_layer is not None and row.reference_layer not in seen:
            seen.add(row.reference_layer)
            first.append((row.candidate_layer, row.reference_layer))
    ordered = sorted(j for _, j in first)
    moved = [(i, j) for (i, j), k in zip(first, ordered) if j != k]
    if not moved:
        return None
    return (f"layers reordered: candidate layers {_listed([i for i, _ in moved])} hold reference layers "
            f"{_listed([j for _, j in moved])}")


def name_edits(cand_arch: Architecture, ref_arch: Architecture, rows: list[LayerMatch],
               embedding_log10p: float | None) -> list[str]:
    """Every edit the measurements show, in the order a reader checks them; nothing when no layer matched (the
    architectures alone say nothing about descent)."""
    if not any(r.reference_layer is not None for r in rows):
        return []
    found = [basis_edit(cand_arch, ref_arch, rows, embedding_log10p), depth_edit(rows, _width(ref_arch, "num_layers")),
             repetition_edit(rows), reorder_edit(rows),
             kv_edit(cand_arch, ref_arch),
             vocabulary_edit(cand_arch, ref_arch, rows, embedding_log10p)]
    width = ", ".join(width_edits(cand_arch, ref_arch))
    return [edit for edit in [width, *found] if edit]
