"""Two vocabularies compared by token string: how the candidate's relates to the reference's.

Used for two folders that hold tokenizer files only (`provenance compare
TOK_A TOK_B`). Tokenizers are shared by independent models, so this
relation is never a weights verdict.
"""

from __future__ import annotations

from typing import Any

from ..formats.tokenizer import Vocabulary


def compare_vocabularies(candidate: Vocabulary, reference: Vocabulary) -> dict[str, Any]:
    """How the candidate's token strings relate to the reference's: identical, extended (the reference's
    tokens at the same ids, plus more), pruned (a subset), reordered (same set, other ids), or overlapping."""
    cand, ref = candidate.tokens, reference.tokens
    cand_set, ref_set = set(cand), set(ref)
    shared = len(cand_set & ref_set)
    same_id = sum(1 for a, b in zip(cand, ref) if a == b)
    if cand == ref:
        relation = "identical"
    elif len(cand) > len(ref) and cand[:len(ref)] == ref:
        relation = "extended"
    elif cand_set < ref_set:
        relation = "pruned"
    elif cand_set == ref_set:
        relation = "reordered"
    elif shared:
        relation = "overlapping"
    else:
        relation = "disjoint"
    merges = None
    if candidate.merges_hash and reference.merges_hash:
        merges = candidate.merges_hash == reference.merges_hash
    return {
        "relation": relation,
        "shared_tokens": shared,
        "share_of_candidate": round(shared / len(cand_set), 6) if cand_set else 0.0,
        "share_of_reference": round(shared / len(ref_set), 6) if ref_set else 0.0,
        "jaccard": round(shared / len(cand_set | ref_set), 6) if cand_set | ref_set else 0.0,
        "same_id_share": round(same_id / max(len(cand), len(ref)), 6) if cand or ref else 0.0,
        "same_merges": merges,
    }
