"""The `provenance.tokenizer-compare/1` JSON object (two tokenizer-only folders compared), and its text."""

from __future__ import annotations

from typing import Any

SCHEMA = "provenance.tokenizer-compare/1"


def tokenizer_side(path: str, vocabulary, files: list[str]) -> dict[str, Any]:
    """One side of the comparison: the folder, its vocabulary's kind and size, the tokenizer files it holds."""
    return {"path": str(path), "kind": vocabulary.kind, "size": len(vocabulary.tokens), "files": sorted(files)}


def tokenizer_comparison_to_json(candidate: dict[str, Any], reference: dict[str, Any],
                                 result: dict[str, Any]) -> dict[str, Any]:
    """The object for two sides (`tokenizer_side`) and their relation (`compare.tokenizers.compare_vocabularies`).

    Tokenizers are shared by independent models, so this relation is never a weights verdict."""
    return {"schema": SCHEMA, "candidate": candidate, "reference": reference, **result,
            "summary": _summary(result, candidate["size"], reference["size"])}


def _summary(result: dict[str, Any], cand_size: int, ref_size: int) -> str:
    relation = result["relation"]
    if relation == "identical":
        text = f"the same {cand_size} token strings at the same ids"
    elif relation == "extended":
        text = f"the reference's {ref_size} tokens at the same ids, plus {cand_size - ref_size} added"
    elif relation == "pruned":
        text = f"a subset of the reference's tokens ({cand_size} of {ref_size})"
    elif relation == "reordered":
        text = f"the same {cand_size} token strings at other ids ({result['same_id_share']:.1%} at the same id)"
    else:
        text = (f"{result['shared_tokens']} token strings in common: {result['share_of_candidate']:.1%} of the "
                f"candidate's, {result['share_of_reference']:.1%} of the reference's")
    if result["same_merges"] is False and relation == "identical":
        text += " (but different BPE merges)"
    return text + "; shared tokenizers are common among independent models, so this is not a weights verdict"


def render_tokenizer_comparison(report: dict[str, Any]) -> str:
    cand, ref = report["candidate"], report["reference"]
    return "\n".join([
        f"tokenizers: {report['relation'].upper()}",
        f"  {report['summary']}",
        f"  candidate {cand['path']} ({cand['kind']}, {cand['size']} tokens) vs reference {ref['path']} "
        f"({ref['kind']}, {ref['size']} tokens)",
        f"  shared {report['shared_tokens']}, jaccard {report['jaccard']:.3f}, same id {report['same_id_share']:.1%}"])
