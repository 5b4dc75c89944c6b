"""Compare a candidate fingerprint with a reference fingerprint and reach a verdict.

Decision rules (thresholds are fixed here, not tuned per case; the zoo
benchmark measures them):
- a layer is *matched* to a reference layer when its best Fisher-combined
  p-value, Bonferroni-corrected for the number of reference layers it was
  chosen from, is below 1e-6 (SIGNIFICANT);
- weight evidence is *strong* when at least one signal reaches 1e-12 (STRONG)
  and matched layers form a coherent map; anything between is *weak*, and weak
  or conflicting evidence makes the tool abstain (no accusation);
- `identical`: every candidate layer maps to the same reference layer with
  relative differences below IDENTICAL_REL_ERROR (units matched first if they
  were permuted), and the non-layer tensors agree as closely;
- `assembled`: the map repeats or reorders reference layers, or some layers
  match strongly while others match nothing (a second source);
- `derived`: strong evidence otherwise (fine-tuning, quantization, noise,
  pruning, vocabulary changes, merges, upcycling);
- `same-architecture` / `unrelated`: no weight evidence, with or without a
  matching architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..fingerprint import Fingerprint
from .signals import (IDENTICAL_REL_ERROR, anchor_embeddings, global_tensors, head_matching_error, layer_similarity, permuted_bias_error, rotation_identity_errors, layer_view,
                      std_curve_correlation, unit_matching, vocabulary_overlap)
from .stats import bonferroni_log10p, fisher_log10p, format_p, p_from_log10

SIGNIFICANT = -6.0
STRONG = -12.0
NULL_LIKE = -2.0
ARCH_FIELDS = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
               "num_experts")


@dataclass
class Evidence:
    signal: str
    value: float
    log10p: float | None
    detail: str
    decisive: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "value": round(float(self.value), 6),
                "p_value": None if self.log10p is None else p_from_log10(self.log10p),
                "log10_p": None if self.log10p is None else round(float(self.log10p), 2),
                "detail": self.detail, "decisive": self.decisive}


@dataclass
class Comparison:
    verdict: str
    confidence: float
    summary: str
    evidence: list[Evidence]
    layers: list[dict[str, Any]]
    renamed: list[dict[str, Any]]
    architecture_match: str
    abstained: bool = False
    notes: list[str] = field(default_factory=list)
    # Every candidate layer against every reference layer (rows x columns), for reports:
    # {"similarity": mean sketch correlation over shared roles, "log10_p": Fisher-combined
    # log10 p before the Bonferroni correction, "roles": roles compared (0: not compared)}.
    layer_matrix: dict[str, list[list[float]]] | None = None


def architecture_match(cand: dict[str, Any], ref: dict[str, Any]) -> str:
    """`same-shapes`, `same-family` or `different`."""
    same = all(cand.get(f) == ref.get(f) for f in ARCH_FIELDS)
    if same:
        return "same-shapes"
    widths_equal = cand.get("hidden_size") == ref.get("hidden_size") and cand.get("intermediate_size") == ref.get("intermediate_size")
    if cand.get("family") and cand.get("family") == ref.get("family") or widths_equal:
        return "same-family"
    return "different"


def _layer_map(cand: Fingerprint, ref: Fingerprint, view=layer_view, via: str = "sketch", **similarity_options):
    """Best reference layer for every candidate layer; `view` picks what is compared (sketches, or row samples)."""
    cv, rv = view(cand), view(ref)
    ls = layer_similarity(cv, rv, **similarity_options)
    rows = []
    for i in range(cv.layers):
        if ls.roles[i].max(initial=0) == 0:
            rows.append({"candidate_layer": i, "reference_layer": None, "similarity": 0.0, "p_value": 1.0,
                         "log10_p": 0.0, "roles": 0, "rel_errors": {}, "via": "none"})
            continue
        # Layers of one model correlate with each other (shared outlier dimensions in
        # norms and folded matrices), so p-values of several pairs can saturate: the
        # best partner is the most similar one, and its p-value is then reported.
        j = int(np.argmax(np.where(ls.roles[i] > 0, ls.similarity[i], -np.inf)))
        corrected = bonferroni_log10p(float(ls.log10p[i, j]), rv.layers)
        rows.append({"candidate_layer": i, "reference_layer": j if corrected < SIGNIFICANT else None,
                     "best_reference_layer": j, "similarity": round(float(ls.similarity[i, j]), 4),
                     "p_value": p_from_log10(corrected), "log10_p": round(corrected, 2),
                     "roles": int(ls.roles[i, j]), "rel_errors": dict(ls.rel_errors.get((i, j), {})), "via": via})
    matrix = {"similarity": np.round(ls.similarity, 4).tolist(), "log10_p": np.round(ls.log10p, 2).tolist(),
              "roles": ls.roles.astype(int).tolist()} if cv.layers and rv.layers else None
    return rows, rv.layers, matrix


def _try_unit_matching(cand: Fingerprint, ref: Fingerprint, rows: list[dict[str, Any]]) -> list:
    """For layers with no direct match, test whether MLP units were permuted."""
    results = []
    ref_layers = int(ref.architecture.get("num_layers") or 0)
    for row in rows:
        if row["reference_layer"] is not None:
            continue
        i = row["candidate_layer"]
        # Same depth: a permuted copy keeps each layer in place, so one test per
        # layer. Different depths: the layer's most similar reference layer.
        same_depth = len(rows) == ref_layers
        target = i if same_depth else row.get("best_reference_layer")
        tried = [target] if target is not None else []
        best = None
        for j in tried:
            match = unit_matching(cand, ref, i, j)
            if match and (best is None or match.log10p < best.log10p):
                best = match
        if best is not None:
            corrected = bonferroni_log10p(best.log10p, len(tried))
            results.append(best)
            if corrected < SIGNIFICANT:
                row.update({"reference_layer": best.layer_r, "similarity": round(best.correlation, 4),
                            "p_value": p_from_log10(corrected), "log10_p": round(corrected, 2),
                            "rel_errors": {"mlp.up": best.rel_error}, "via": "matched MLP units (permuted)"})
    return results


def _check_permuted_units(cand: Fingerprint, ref: Fingerprint, rows: list[dict[str, Any]]) -> None:
    """Matched layers whose MLP units or attention heads differ may only be permuted.

    Roles that differ are checked again after matching units (MLP) or heads
    (attention); the relative errors then replace the direct ones.
    """
    heads = {"attn.q": cand.architecture.get("num_heads"), "attn.o": cand.architecture.get("num_heads"),
             "attn.k": cand.architecture.get("num_kv_heads"), "attn.v": cand.architecture.get("num_kv_heads")}
    for row in rows:
        errors = row["rel_errors"]
        if row["reference_layer"] is None or not errors or max(errors.values()) < IDENTICAL_REL_ERROR:
            continue
        i, j = row["candidate_layer"], row["reference_layer"]
        rematched = []
        if any(role.startswith("mlp.") and e >= IDENTICAL_REL_ERROR for role, e in errors.items()):
            match = unit_matching(cand, ref, i, j)
            if match is not None and match.rel_error < IDENTICAL_REL_ERROR:
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role] = match.rel_error
                rematched.append("MLP units")
        for role, count in heads.items():
            if errors.get(role, 0.0) >= IDENTICAL_REL_ERROR and count:
                found = head_matching_error(cand, ref, i, j, role, int(count))
                if found is None or found[0] >= IDENTICAL_REL_ERROR:
                    continue
                errors[role] = found[0]
                # q, k, v biases are per head; o's bias lives in the hidden space
                bias_error = permuted_bias_error(cand, ref, i, j, role, found[1]) if role != "attn.o" else None
                if f"{role}.bias" in errors and bias_error is not None:
                    errors[f"{role}.bias"] = bias_error
                if "attention heads" not in rematched:
                    rematched.append("attention heads")
        if rematched:
            row["via"] = f"sketch; {' and '.join(rematched)} matched (permuted)"


def compare_fingerprints(cand: Fingerprint, ref: Fingerprint) -> Comparison:
    if cand.meta.get("variant") == "remote" or ref.meta.get("variant") == "remote":
        from .remote import compare_remote  # read over HTTP: only the signals both sides have (see remote.py)

        return compare_remote(cand, ref)
    arch_c, arch_r = cand.architecture, ref.architecture
    match_kind = architecture_match(arch_c, arch_r)
    evidence: list[Evidence] = []
    notes: list[str] = []

    # Exact content: a tensor bit-equal (as float32) to a reference tensor, under any name.
    ref_hashes: dict[str, str] = {r["sha256"]: k for k, r in ref.tensors.items() if r.get("stats", {}).get("numel", 0) > 64}
    exact = [(k, ref_hashes[r["sha256"]]) for k, r in cand.tensors.items() if r["sha256"] in ref_hashes]
    big_cand = [k for k, r in cand.tensors.items() if r.get("stats", {}).get("numel", 0) > 64]
    big_ref = [k for k, r in ref.tensors.items() if r.get("stats", {}).get("numel", 0) > 64]
    if exact:
        evidence.append(Evidence("exact tensor hashes", len(exact) / max(len(big_cand), 1), None,
                                 f"{len(exact)} of {len(big_cand)} candidate tensors are bit-identical (as float32) to reference tensors"))

    rows, ref_layer_count, layer_matrix = _layer_map(cand, ref)
    units = _try_unit_matching(cand, ref, rows)
    _check_permuted_units(cand, ref, rows)
    matched = [r for r in rows if r["reference_layer"] is not None]
    per_layer_logp = [r["log10_p"] for r in rows if r["roles"] or r["via"] != "none"]
    if rows:
        best = min(rows, key=lambda r: r["log10_p"])
        evidence.append(Evidence(
            "layer weights (sketch correlation, norms folded)", best["similarity"], fisher_log10p(per_layer_logp) if per_layer_logp else 0.0,
            f"{len(matched)} of {len(rows)} candidate layers match a reference layer at p < 1e-6 "
            f"(Fisher over roles per layer, Bonferroni over {ref_layer_count} reference layers); strongest {format_p(best['log10_p'])}"))
    for unit in units:
        if unit.log10p < SIGNIFICANT:
            evidence.append(Evidence(
                "MLP unit matching (permutation-invariant)", unit.correlation, unit.log10p,
                f"candidate layer {unit.layer_c} vs reference layer {unit.layer_r}: {unit.units} units matched on 16 projections, "
                f"held-out correlation {unit.correlation:.3f}, {format_p(unit.log10p)}"))
    globals_ = global_tensors(cand, ref)
    for g in globals_:
        evidence.append(Evidence(f"{g.name} (by id)", g.correlation, g.log10p,
                                 f"correlation of {g.n} sampled values, {format_p(g.log10p)}"))
    anchors = anchor_embeddings(cand, ref)
    if anchors is not None:
        evidence.append(Evidence("embedding by token string", anchors.correlation, anchors.log10p,
                                 f"{anchors.name}: correlation {anchors.correlation:.3f}, {format_p(anchors.log10p)}"))
    std_r = std_curve_correlation(cand, ref)
    if std_r is not None:
        evidence.append(Evidence("per-layer std curve (screening only)", std_r, None,
                                 "correlation of attention-matrix std across layers; independent models reach 0.9, so this never decides",
                                 decisive=False))
    overlap = vocabulary_overlap(cand, ref)
    if overlap is not None:
        evidence.append(Evidence("vocabulary overlap (screening only)", overlap, None,
                                 "estimated Jaccard of the token-string sets; independent models often share tokenizers", decisive=False))

    decisive = [e.log10p for e in evidence if e.decisive and e.log10p is not None]
    strongest = min(decisive, default=0.0)
    # Bit-identical everywhere: the same model renamed. Each tensor must sit in its
    # own place, unless the candidate's names do not say where (opaque names),
    # in which case the same multiset of tensors is all that can be checked.
    distinct_refs = len({r for _, r in exact}) == len(exact)
    unplaced = any(_is_unplaced(k) for k in cand.tensors)
    exact_all = (bool(big_cand) and len(exact) == len(big_cand) == len(big_ref) and distinct_refs
                 and (all(c == r for c, r in exact) or unplaced))
    # The same check on stored tensors (before splitting fused ones): a copy whose
    # names are opaque is still the same multiset of stored tensors.
    stored_c = {k: v for k, v in (cand.meta.get("stored_tensors") or {}).items() if v.get("numel", 0) > 64}
    stored_r = [v["sha256"] for v in (ref.meta.get("stored_tensors") or {}).values() if v.get("numel", 0) > 64]
    if not exact_all and stored_c and unplaced and sorted(v["sha256"] for v in stored_c.values()) == sorted(stored_r):
        exact_all = True
        evidence.append(Evidence("exact stored-tensor hashes", 1.0, None,
                                 f"all {len(stored_c)} stored tensors are bit-identical (as float32) to the reference's, "
                                 "though the names do not say where each belongs"))


    rotation_errors = None
    if not matched and match_kind == "same-shapes":
        rotation_errors = rotation_identity_errors(cand, ref)
        if rotation_errors is not None:
            evidence.append(Evidence(
                "residual-space Gram matrices (rotation-invariant identity check)", max(rotation_errors), None,
                f"largest relative difference over layers {max(rotation_errors):.2g} (identical below {IDENTICAL_REL_ERROR}); "
                "deterministic check, no p-value"))
    if rotation_errors is not None and max(rotation_errors) < IDENTICAL_REL_ERROR:
        for row in rows:
            row.update({"reference_layer": row["candidate_layer"], "via": "equal residual-space Gram matrices (rotated)"})
        return Comparison("identical", 0.95, "every layer equals the reference layer up to a rotation of the residual "
                          "basis (the units' inner products agree to rounding)", evidence, rows, [], match_kind, False,
                          notes, layer_matrix=layer_matrix)

    verdict, confidence, abstained, summary = _decide(rows, matched, globals_, anchors, units, strongest, exact_all,
                                                      match_kind, arch_c, arch_r, notes)
    renamed = _renamed(cand, ref) if verdict in ("identical", "derived", "assembled") else []
    return Comparison(verdict, confidence, summary, evidence, rows, renamed, match_kind, abstained, notes,
                      layer_matrix=layer_matrix)


def _is_unplaced(key: str) -> bool:
    """A per-layer role whose layer is unknown (`attn.q.weight`, `attn.q.weight@t017`)."""
    from ..architectures.roles import LAYER_ROLES

    role = key.split("@")[0].rsplit(".", 1)[0]
    return not key.startswith("layers.") and role in LAYER_ROLES


def _monotone(refs: list[int]) -> bool:
    return all(b > a for a, b in zip(refs, refs[1:]))


def _decide(rows, matched, globals_, anchors, units, strongest, exact_all, match_kind, arch_c, arch_r, notes):
    n = len(rows)
    if exact_all:
        return "identical", 1.0, False, "every tensor is bit-identical (as float32) to a reference tensor, whatever its name"
    if strongest > SIGNIFICANT:
        if strongest < NULL_LIKE:
            notes.append(f"weakest-possible accusation withheld: the strongest signal only reaches {format_p(strongest)}")
        confidence = 0.9 if strongest > NULL_LIKE else 0.6
        abstained = strongest <= NULL_LIKE
        if match_kind != "different":
            return ("same-architecture", confidence, abstained,
                    "the architecture matches the reference but no weight signal departs from independence")
        return "unrelated", confidence, abstained, "neither the architecture nor the weights match the reference"

    refs = [r["reference_layer"] for r in matched]
    strong_layers = [r for r in rows if r["log10_p"] < STRONG]
    null_layers = [r for r in rows if r["log10_p"] > NULL_LIKE and r["roles"]]
    repeated = len(set(refs)) < len(refs)
    if n and matched and (repeated or not _monotone(refs)):
        kind = "repeats" if repeated else "reorders"
        return ("assembled", _confidence(strongest, len(matched), n), False,
                f"the candidate's layers {kind} reference layers (layer map: {_map_text(rows)})")
    if strong_layers and null_layers:
        return ("assembled", _confidence(strongest, len(strong_layers), n), False,
                f"{len(strong_layers)} layers come from the reference, {len(null_layers)} show no relation to it: a second source")
    if n and 0 < len(matched) < n and not null_layers:
        notes.append(f"{n - len(matched)} layers are only weakly related; they may be heavily modified")
    if not matched and strongest < STRONG:
        # Non-layer tensors match (embedding, head) but no block does: shared ancestor or transplanted embeddings.
        return ("derived", _confidence(strongest, 0, max(n, 1)) * 0.8, False,
                "non-layer tensors (embedding or head) descend from the reference though no block matches")
    if strongest > STRONG or (n and len(matched) < max(1, n // 2)):
        notes.append("evidence is significant but too weak or too sparse to accuse; abstaining")
        verdict = "same-architecture" if match_kind != "different" else "unrelated"
        return verdict, 0.3, True, "weight signals are weak or conflicting: the tool abstains rather than accuse"

    identical = (len(matched) == n == int(arch_r.get("num_layers") or -1)
                 and all(r["reference_layer"] == r["candidate_layer"] for r in matched)
                 and all(r["rel_errors"] and max(r["rel_errors"].values()) < IDENTICAL_REL_ERROR for r in matched)
                 and all(g.rel_error < IDENTICAL_REL_ERROR for g in globals_)
                 and arch_c.get("vocab_size") == arch_r.get("vocab_size"))
    if identical:
        permuted = any("permuted" in r["via"] for r in matched)
        how = "after matching permuted MLP units, " if permuted else ""
        return ("identical", 0.99, False,
                f"{how}every layer equals the reference layer up to rounding (relative difference < {IDENTICAL_REL_ERROR})")
    pruned = n < int(arch_r.get("num_layers") or 0)
    what = "a layer-pruned copy of" if pruned else "descended from"
    return ("derived", _confidence(strongest, len(matched), n), False,
            f"the weights are {what} the reference ({len(matched)}/{n} layers matched, strongest {format_p(strongest)})")


def _confidence(strongest: float, agreeing: int, total: int) -> float:
    strength = min(1.0, -strongest / 50.0)
    share = agreeing / total if total else 1.0
    return round(0.5 + 0.5 * strength * max(share, 0.5), 3)


def _map_text(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['candidate_layer']}->{'?' if r['reference_layer'] is None else r['reference_layer']}" for r in rows[:40])


def _renamed(cand: Fingerprint, ref: Fingerprint) -> list[dict[str, Any]]:
    found = []
    for key, record in cand.tensors.items():
        other = ref.tensors.get(key)
        if other and other.get("source") and record.get("source") and other["source"] != record["source"]:
            found.append({"candidate": record["source"], "reference": other["source"], "role": key})
    return found
