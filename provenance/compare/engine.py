"""Compare a candidate fingerprint with a reference fingerprint and reach a verdict.

The signals (`signals.py`) each come with a p-value under the null "the two
models were initialised and trained independently"; this module aligns
layers, applies the corrections for every comparison a p-value was chosen
from, runs the identity checks, and hands the result to the decision rules
(`verdict.py`; thresholds and their reasons in `thresholds.py`):
- layers: per candidate layer, the most similar reference layer by sketch
  correlation (Fisher over roles), Bonferroni over the reference layers; the
  layer evidence is the strongest layer, Bonferroni over the candidate's layers;
- layers with no direct match: permuted MLP units (held-out unit matching on
  whitened signatures) and a rotated residual basis (Gram matrices under a
  sign-flip null), each Bonferroni over the layers it tested;
- `identical`: every layer in place and every difference within the rounding
  of the candidate's stored dtype, after undoing permuted units or heads and
  function-preserving rescalings (norm into linear, q/k, v/o, up/down,
  LayerNorm weight with its bias), or every tensor bit-identical.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..fingerprint import Fingerprint
from .alignment import (SIGNATURE_PRECISION, architecture_match, emptied_roles, is_unplaced, layer_evidence_log10p,
                        layer_evidence, layer_map, non_layer_evidence, renamed_tensors, strongest_decisive, vocabulary_evidence)
from .generic import compare_generic
from .remote import compare_remote, is_remote_fingerprint
from .results import Comparison, Evidence
from .signals import (anchor_embeddings, global_tensors, gram_layer_tests, head_matching_error,
                      norm_bias_rescale_error, permuted_bias_error, rescaling_checks, rotation_identity_errors,
                      std_curve_correlation, unit_matching, vocabulary_overlap)
from .stats import bonferroni_log10p, format_p, p_from_log10
from .thresholds import ACCUSATION_LOG10P, LAYER_MATCH_LOG10P, storage_tolerance
from .verdict import ACCUSING, DecisionInputs, Verdict, decide

# Gram entries are float32 inner products of float32 rows: equal models agree far below this.
GRAM_PRECISION = 1e-4

def _unplaced_layer_tests(cand: Fingerprint, ref: Fingerprint, rows: list[dict[str, Any]]) -> tuple[list, list]:
    """Layers with no direct match: permuted MLP units, then a rotated residual basis.

    Same depth: one test per layer against the layer in its place (a permuted
    or rotated copy keeps each layer where it was); different depths: against
    the most similar reference layer. Each family of tests is Bonferroni-
    corrected over the layers it tested (and, for Gram tests at different
    depths, over the reference layers searched).
    """
    ref_layers = int(ref.architecture.get("num_layers") or 0)
    same_depth = len(rows) == ref_layers
    unmatched = [r for r in rows if r["reference_layer"] is None]
    units = []
    for row in unmatched:
        i = row["candidate_layer"]
        target = i if same_depth else row.get("best_reference_layer")
        match = unit_matching(cand, ref, i, target) if target is not None else None
        if match is not None:
            units.append(match)
    tested = max(len(units), 1)
    for match in units:
        row = rows[match.layer_c]
        corrected = bonferroni_log10p(match.log10p, tested)
        if corrected < LAYER_MATCH_LOG10P:
            row.update({"reference_layer": match.layer_r, "similarity": round(match.correlation, 4),
                        "p_value": p_from_log10(corrected), "log10_p": round(corrected, 2),
                        "rel_errors": {"mlp.up": match.rel_error}, "via": "matched MLP units (permuted)"})
    grams = []
    still = [r for r in rows if r["reference_layer"] is None]
    tests = gram_layer_tests(cand, ref) if still else None
    if tests is not None and same_depth:
        # A rotated copy keeps every layer in place: one pooled test over the unplaced
        # layers in their own places (fixed in advance, so no correction for a search),
        # then each layer on its own, Bonferroni over the layers tested.
        pairs = [(r["candidate_layer"], r["candidate_layer"]) for r in still]
        pooled = tests.pooled_log10p(pairs)
        for row in still:
            i = row["candidate_layer"]
            if (i, i) not in tests.cluster_sums:
                continue
            corrected = bonferroni_log10p(float(tests.log10p[i, i]), len(still))
            grams.append((i, i, corrected, float(tests.similarity[i, i])))
        if pooled < LAYER_MATCH_LOG10P:
            grams.append((None, None, pooled, float(np.mean([g[3] for g in grams])) if grams else 0.0))
            for row in still:
                i = row["candidate_layer"]
                if (i, i) in tests.cluster_sums:
                    layer_p = bonferroni_log10p(float(tests.log10p[i, i]), len(still))
                    row.update({"reference_layer": i, "similarity": round(float(tests.similarity[i, i]), 4),
                                "p_value": p_from_log10(layer_p), "log10_p": round(layer_p, 2), "rel_errors": {},
                                "via": "residual-space Gram matrices (rotation-invariant)"})
    elif tests is not None:
        for row in still:
            i = row["candidate_layer"]
            if i >= tests.log10p.shape[0] or not any((i, j) in tests.cluster_sums for j in range(tests.log10p.shape[1])):
                continue
            j = int(np.argmin(tests.log10p[i]))
            corrected = bonferroni_log10p(float(tests.log10p[i, j]), tests.log10p.shape[1] * len(still))
            grams.append((i, j, corrected, float(tests.similarity[i, j])))
            if corrected < LAYER_MATCH_LOG10P:
                row.update({"reference_layer": j, "similarity": round(float(tests.similarity[i, j]), 4),
                            "p_value": p_from_log10(corrected), "log10_p": round(corrected, 2),
                            "rel_errors": {}, "via": "residual-space Gram matrices (rotation-invariant)"})
    return units, grams


def _candidate_dtype(cand: Fingerprint, layer: int, role: str) -> str | None:
    base = role[:-5] if role.endswith(".bias") else role
    param = "bias" if role.endswith(".bias") else "weight"
    record = cand.tensors.get(f"layers.{layer}.{base}.{param}") or cand.tensors.get(f"layers.{layer}.experts.0.{base}.{param}")
    return record.get("dtype") if record else None


def _explain_differences(cand: Fingerprint, ref: Fingerprint, rows: list[dict[str, Any]]) -> set[str]:
    """Matched layers whose roles differ beyond storage rounding may differ only by a function-preserving transform.

    Tried in turn: permuted MLP units, permuted attention heads, per-unit
    rescalings (q/k, v/o, up/down) and LayerNorm weight-with-bias rescaling.
    Each role's `rel_errors` entry is replaced by what is left after the
    transform, and `tolerances` records the bar each role is held to.
    Returns the names of the transforms that were needed.
    """
    heads = {"attn.q": cand.architecture.get("num_heads"), "attn.o": cand.architecture.get("num_heads"),
             "attn.k": cand.architecture.get("num_kv_heads"), "attn.v": cand.architecture.get("num_kv_heads")}
    used: set[str] = set()
    for row in rows:
        errors = row["rel_errors"]
        if row["reference_layer"] is None or not errors:
            continue
        i, j = row["candidate_layer"], row["reference_layer"]
        tolerance = {role: storage_tolerance(_candidate_dtype(cand, i, role)) for role in errors}
        row["tolerances"] = tolerance

        def beyond(role: str) -> bool:
            return errors[role] > tolerance[role]

        if not any(beyond(role) for role in errors):
            continue
        if any(role.startswith("mlp.") and beyond(role) for role in errors):
            match = unit_matching(cand, ref, i, j)
            if match is not None and match.rel_error < max(tolerance.get("mlp.up", 0.0), SIGNATURE_PRECISION):
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role], tolerance[role] = match.rel_error, max(tolerance[role], SIGNATURE_PRECISION)
                used.add("matching permuted MLP units")
        for role, count in heads.items():
            if role in errors and beyond(role) and count:
                found = head_matching_error(cand, ref, i, j, role, int(count))
                if found is None or found[0] >= max(tolerance[role], SIGNATURE_PRECISION):
                    continue
                errors[role], tolerance[role] = found[0], max(tolerance[role], SIGNATURE_PRECISION)
                # q, k, v biases are per head; o's bias lives in the hidden space
                bias_error = permuted_bias_error(cand, ref, i, j, role, found[1]) if role != "attn.o" else None
                if f"{role}.bias" in errors and bias_error is not None:
                    errors[f"{role}.bias"] = bias_error
                used.add("matching permuted attention heads")
        if any(beyond(role) for role in errors):
            for check in rescaling_checks(cand, ref, i, j):
                roles = check.pair.split("/")
                if not any(role in errors and beyond(role) for role in roles):
                    continue
                left = max(check.residual, check.violation)
                if left < max(max(tolerance.get(r, 0.0) for r in roles), SIGNATURE_PRECISION):
                    for role in roles:
                        if role in errors:
                            errors[role], tolerance[role] = left, max(tolerance[role], SIGNATURE_PRECISION)
                    used.add(f"undoing a {check.pair} rescaling")
        for norm_role in ("attn_norm", "mlp_norm"):
            role = f"{norm_role}.bias"
            if role in errors and beyond(role):
                error = norm_bias_rescale_error(cand, ref, i, j, norm_role)
                if error is not None and error <= tolerance[role]:
                    errors[role] = error
                    used.add("folding a LayerNorm weight-and-bias rescaling")
        if used:
            row["via"] = f"{row['via']}; {', '.join(sorted(used))}"
    return used


def _layers_identical(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and all(
        r["reference_layer"] == r["candidate_layer"] and r["rel_errors"]
        and all(e <= r.get("tolerances", {}).get(role, 0.0) for role, e in r["rel_errors"].items())
        for r in rows)


def _init_like(cand: Fingerprint, keys: list[str]) -> bool:
    """Whether the named tensors look like untrained initialisation: near-Gaussian (|excess kurtosis| < 0.3,
    |skew| < 0.1) with a standard deviation within 30% of a common initialiser scale (0.02, 1/sqrt(width) or 1)."""
    found = False
    for key in keys:
        if key not in cand.tensors:
            continue
        stats = cand.tensors.get(key, {}).get("stats", {})
        shape = cand.tensors.get(key, {}).get("shape", [])
        if not stats.get("std") or len(shape) != 2:
            continue
        found = True
        scales = (0.02, 1.0 / math.sqrt(max(shape[1], 1)), 1.0)
        near_scale = any(abs(stats["std"] / s - 1.0) < 0.3 for s in scales)
        if not (abs(stats.get("kurtosis", 9.0)) < 0.3 and abs(stats.get("skew", 9.0)) < 0.1 and near_scale):
            return False
    return found


def compare_fingerprints(cand: Fingerprint, ref: Fingerprint) -> Comparison:
    if is_remote_fingerprint(cand) or is_remote_fingerprint(ref):
        return compare_remote(cand, ref)  # read over HTTP: only the signals both sides have (see remote.py)
    generic = compare_generic(cand, ref)  # no transformer role map fits (UNet, VAE, ViT): stored tensors paired
    if generic is not None:
        return generic
    arch_c, arch_r = cand.architecture, ref.architecture
    match_kind = architecture_match(arch_c, arch_r)
    evidence: list[Evidence] = []
    notes: list[str] = []

    # Exact content: a tensor bit-equal (as float32) to a reference tensor, under any name. Hashes of
    # fingerprints made by different versions (sha256 of float32 values; XXH3 of the shortest exact
    # float type) never agree, so they are compared only when both sides hold the same kind.
    same_hash_kind = cand.meta.get("value_hash", "sha256") == ref.meta.get("value_hash", "sha256")
    if not same_hash_kind:
        notes.append("the two fingerprints hash tensor values differently (made by different versions): exact-copy "
                     "checks are skipped; rebuild the older one with `provenance fingerprint` to use them")
    ref_hashes: dict[str, str] = ({r["sha256"]: k for k, r in ref.tensors.items()
                                   if r.get("stats", {}).get("numel", 0) > 64} if same_hash_kind else {})
    exact = [(k, ref_hashes[r["sha256"]]) for k, r in cand.tensors.items() if r["sha256"] in ref_hashes]
    big_cand = [k for k, r in cand.tensors.items() if r.get("stats", {}).get("numel", 0) > 64]
    big_ref = [k for k, r in ref.tensors.items() if r.get("stats", {}).get("numel", 0) > 64]
    if exact:
        evidence.append(Evidence("exact tensor hashes", len(exact) / max(len(big_cand), 1), None,
                                 f"{len(exact)} of {len(big_cand)} candidate tensors are bit-identical (as float32) to reference tensors"))

    rows, ref_layer_count, layer_matrix = layer_map(cand, ref)
    units, grams = _unplaced_layer_tests(cand, ref, rows)
    explained_by = _explain_differences(cand, ref, rows)
    matched = [r for r in rows if r["reference_layer"] is not None]
    layer_strongest = layer_evidence_log10p(rows)
    evidence.extend(layer_evidence(rows, ref_layer_count, "sketch correlation"))
    unit_tests = max(len(units), 1)
    for unit in units:
        corrected = bonferroni_log10p(unit.log10p, unit_tests)
        if corrected < LAYER_MATCH_LOG10P:
            evidence.append(Evidence(
                "MLP unit matching (permutation-invariant)", unit.correlation, corrected,
                f"candidate layer {unit.layer_c} vs reference layer {unit.layer_r}: {unit.units} units matched on 16 "
                f"whitened projections, held-out correlation {unit.correlation:.3f}, {format_p(corrected)} "
                f"(Bonferroni over {unit_tests} layers tested)"))
    for i, j, corrected, similarity in grams:
        if corrected >= LAYER_MATCH_LOG10P:
            continue
        where = ("every unplaced layer in its own place, one pooled sign-flip test" if i is None
                 else f"candidate layer {i} vs reference layer {j}, Bonferroni over the layers tested")
        evidence.append(Evidence(
            "residual-space Gram matrices (rotation-invariant)", similarity, corrected,
            f"{where}: the units' inner products agree beyond a sign-flip null, {format_p(corrected)}"))
    globals_ = global_tensors(cand, ref)
    anchors = anchor_embeddings(cand, ref)
    evidence.extend(non_layer_evidence(globals_, anchors))
    std_r = std_curve_correlation(cand, ref)
    if std_r is not None:
        evidence.append(Evidence("per-layer std curve (screening only)", std_r, None,
                                 "correlation of attention-matrix std across layers; independent models reach 0.9, so this never decides",
                                 decisive=False))
    evidence.extend(vocabulary_evidence(vocabulary_overlap(cand, ref)))

    strongest = strongest_decisive(evidence)
    # Bit-identical everywhere: the same model renamed. Each tensor must sit in its
    # own place, unless the candidate's names do not say where (opaque names),
    # in which case the same multiset of tensors is all that can be checked.
    distinct_refs = len({r for _, r in exact}) == len(exact)
    unplaced = any(is_unplaced(k) for k in cand.tensors)
    exact_all = (bool(big_cand) and len(exact) == len(big_cand) == len(big_ref) and distinct_refs
                 and (all(c == r for c, r in exact) or unplaced))
    # The same check on stored tensors (before splitting fused ones): a copy whose
    # names are opaque is still the same multiset of stored tensors.
    stored_c = {k: v for k, v in (cand.meta.get("stored_tensors") or {}).items() if v.get("numel", 0) > 64}
    stored_r = [v["sha256"] for v in (ref.meta.get("stored_tensors") or {}).values() if v.get("numel", 0) > 64]
    if (not exact_all and same_hash_kind and stored_c and unplaced
            and sorted(v["sha256"] for v in stored_c.values()) == sorted(stored_r)):
        exact_all = True
        evidence.append(Evidence("exact stored-tensor hashes", 1.0, None,
                                 f"all {len(stored_c)} stored tensors are bit-identical (as float32) to the reference's, "
                                 "though the names do not say where each belongs"))

    if not exact_all and match_kind == "same-shapes" and not _layers_identical(rows):
        rotation_errors = rotation_identity_errors(cand, ref)
        if rotation_errors is not None:
            tolerance = max(storage_tolerance(r.get("dtype")) for r in cand.tensors.values()) if cand.tensors else 0.0
            tolerance = max(tolerance, GRAM_PRECISION)
            worst = max(rotation_errors)
            evidence.append(Evidence(
                "residual-space Gram matrices (rotation-invariant identity check)", worst, None,
                f"largest relative difference over layers {worst:.2g} (identical within {tolerance:.2g}, the storage "
                "rounding); deterministic check, no p-value", decisive=False))
            if worst < tolerance and strongest <= ACCUSATION_LOG10P and not emptied_roles(cand, ref):
                for row in rows:
                    row.update({"reference_layer": row["candidate_layer"],
                                "via": "equal residual-space Gram matrices (rotated)"})
                return Comparison(Verdict.IDENTICAL, 1.0 if worst < tolerance / 2 else 0.9,
                                  "every layer equals the reference layer up to a rotation of the residual basis "
                                  "(the units' inner products agree to the storage rounding)", evidence, rows, [],
                                  match_kind, False, notes, layer_matrix=layer_matrix)

    shared_keys = [g.name for g in globals_ if g.log10p <= LAYER_MATCH_LOG10P]
    inputs = DecisionInputs(
        rows=rows, strongest=strongest, layer_strongest=layer_strongest, match_kind=match_kind,
        reference_layers=int(arch_r.get("num_layers") or -1), exact_all=exact_all,
        layers_identical=_layers_identical(rows),
        globals_identical=all(g.rel_error <= storage_tolerance(cand.tensors.get(g.name, {}).get("dtype"))
                              for g in globals_),
        same_vocabulary=arch_c.get("vocab_size") == arch_r.get("vocab_size"),
        init_like_shared=_init_like(cand, shared_keys),
        explained_by=sorted(explained_by), emptied=emptied_roles(cand, ref))
    verdict, confidence, abstained, summary = decide(inputs, notes)
    if verdict == "derived" and matched:
        keys = [f"layers.{r['candidate_layer']}.{role}.weight" for r in matched for role in ("attn.q", "mlp.up")]
        ref_keys = [f"layers.{r['reference_layer']}.{role}.weight" for r in matched for role in ("attn.q", "mlp.up")]
        if _init_like(cand, keys) and _init_like(ref, ref_keys):
            notes.append("both models' matched weights are near-Gaussian at an initialiser's scale, as untrained weights "
                         "are: a shared random initialisation (one seed and one init code, no shared training) would "
                         "also explain this relation")
    renamed = renamed_tensors(cand, ref) if verdict in ACCUSING else []
    return Comparison(verdict, confidence, summary, evidence, rows, renamed, match_kind, abstained, notes,
                      layer_matrix=layer_matrix)


