"""Compare a candidate fingerprint with a reference fingerprint and reach a verdict.

The signals (`signals.py`) each come with a p-value under the null "the two
models were initialised and trained independently"; this module aligns
layers, applies the corrections for every comparison a p-value was chosen
from, runs the identity checks, and hands the result to the decision rules
(`verdict.py`; thresholds and their reasons in `thresholds.py`):
- layers: per candidate layer, the most similar reference layer by sketch
  correlation (one sign-flip test per layer over every role's per-dimension
  sums, and one over the layer's own units: a gated MLP's units, the value
  dimensions; Bonferroni over the two), Bonferroni over the reference layers; the
  layer evidence is the strongest layer, Bonferroni over the candidate's layers;
- layers with no direct match: permuted MLP units (held-out unit matching on
  whitened signatures), a rotated residual basis (Gram matrices under a
  sign-flip null), each Bonferroni over the layers it tested, and both at
  once (`unit_responses.py`: units matched through their responses to the
  anchor tokens' embeddings, one pooled sign-flip test);
- `identical`: every layer in place and every difference within the rounding
  of the candidate's stored dtype, after undoing permuted units or heads and
  function-preserving rescalings (norm into linear, q/k, v/o, up/down,
  LayerNorm weight with its bias), or every tensor bit-identical;
- mixture-of-experts layers (`experts.py`): experts matched as a set
  (permuted, a subset kept, added, the shared expert), or placed among a
  dense model's MLP units (upcycling); the layer's MLP is then held to every
  expert, and the edit is named in the layer map and the summary.

Every step reads only what both fingerprints hold (`fingerprint.Part`;
`shared = cand.parts & ref.parts`), so one flow serves fingerprints built
from whole tensors and those built from rows read by HTTP range requests:
exact-copy checks need both sides' tensor hashes; layers and non-layer
tensors are compared on sketches, or on row samples where a side has none
(`views.sample_view`); permuted MLP units on every unit's signature, or one
side's sampled units against the other's (`views.unit_view`); permuted heads
and rescalings need both sides' unit signatures, Gram tests and the rotation
identity check both sides' Gram matrices, the std curve and the
initialisation check both sides' statistics. A comparison that fell back to
sampled views says so in a note, and its `identical` is capped at 0.95.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..architectures.roles import ALL_ROLES, Role, key_name
from ..fingerprint import Fingerprint, Part
from ..verdicts import ACCUSING, Verdict
from .alignment import (SIGNATURE_PRECISION, architecture_match, emptied_roles, is_unplaced, layer_evidence_log10p,
                        layer_evidence, layer_map, non_layer_evidence, renamed_tensors, shapes_disagree, strongest_decisive,
                        vocabulary_evidence)
from .edits import name_edits
from .experts import compare_experts, experts_identical
from .generic import compare_generic
from .results import Comparison, Evidence, LayerMatch
from .shared_init import looks_initialised, shared_initialisation_note
from .signals import (UnitMatch, anchor_embeddings, global_tensors, gram_layer_tests, head_matching_error,
                      norm_bias_rescale_error, permuted_bias_error, rescaling_checks, rotation_identity_errors,
                      std_curve_correlation, unit_matching, vocabulary_overlap)
from .stats import bonferroni_log10p, format_p
from .thresholds import ACCUSATION_LOG10P, LAYER_MATCH_LOG10P, storage_tolerance
from .unit_responses import ResponsePlacement, place_by_responses
from .verdict import DecisionInputs, decide
from .views import SAMPLED_UNITS, SampleView, UnitView, sample_view, unit_view

GRAM_VIA = "residual-space Gram matrices (rotation-invariant)"
# Gram entries are float32 inner products of float32 rows: equal models agree far below this.
GRAM_PRECISION = 1e-4
# Tensors of at most this many values (norms of tiny models, scalars) say nothing about copying when equal.
EXACT_MIN_NUMEL = 64


@dataclass(frozen=True)
class ExactTensors:
    """Tensors bit-identical (as float32) to a reference tensor, under any name."""

    pairs: list[tuple[str, str]]  # (candidate key, reference key)
    candidate_tensors: list[str]  # the candidate's tensors of more than EXACT_MIN_NUMEL values
    reference_tensors: list[str]
    comparable: bool  # both sides hash values the same way


def _big(fp: Fingerprint) -> list[str]:
    return [k for k, r in fp.tensors.items() if r.get("stats", {}).get("numel", 0) > EXACT_MIN_NUMEL]


def _exact_tensors(cand: Fingerprint, ref: Fingerprint, notes: list[str]) -> ExactTensors:
    """Exact content. Hashes of fingerprints made by different versions (sha256 of float32 values; XXH3 of the
    shortest exact float type) never agree, so they are compared only when both sides hold the same kind."""
    comparable = cand.meta.get("value_hash", "sha256") == ref.meta.get("value_hash", "sha256")
    if not comparable:
        notes.append("the two fingerprints hash tensor values differently (made by different versions): exact-copy "
                     "checks are skipped; rebuild the older one with `provenance fingerprint` to use them")
    ref_hashes: dict[str, str] = ({ref.tensors[k]["sha256"]: k for k in _big(ref)} if comparable else {})
    pairs = [(k, ref_hashes[r["sha256"]]) for k, r in cand.tensors.items() if r["sha256"] in ref_hashes]
    return ExactTensors(pairs, _big(cand), _big(ref), comparable)


def _every_tensor_exact(cand: Fingerprint, ref: Fingerprint, exact: ExactTensors,
                        evidence: list[Evidence]) -> bool:
    """Bit-identical everywhere: the same model renamed.

    Each tensor must sit in its own place, unless the candidate's names do
    not say where (opaque names), in which case the same multiset of tensors
    is all that can be checked; then also on stored tensors (before splitting
    fused ones), whose agreement adds an evidence entry.
    """
    distinct_refs = len({r for _, r in exact.pairs}) == len(exact.pairs)
    unplaced = any(is_unplaced(k) for k in cand.tensors)
    if (bool(exact.candidate_tensors) and len(exact.pairs) == len(exact.candidate_tensors) == len(exact.reference_tensors)
            and distinct_refs and (all(c == r for c, r in exact.pairs) or unplaced)):
        return True
    stored_c = {k: v for k, v in (cand.meta.get("stored_tensors") or {}).items() if v.get("numel", 0) > EXACT_MIN_NUMEL}
    stored_r = [v["sha256"] for v in (ref.meta.get("stored_tensors") or {}).values() if v.get("numel", 0) > EXACT_MIN_NUMEL]
    if exact.comparable and stored_c and unplaced and sorted(v["sha256"] for v in stored_c.values()) == sorted(stored_r):
        evidence.append(Evidence("exact stored-tensor hashes", 1.0, None,
                                 f"all {len(stored_c)} stored tensors are bit-identical (as float32) to the reference's, "
                                 "though the names do not say where each belongs"))
        return True
    return False


def _sampled_notes(cand: Fingerprint, ref: Fingerprint, view: SampleView, units: UnitView | None) -> list[str]:
    """What a comparison on sampled views does not see, and which side lacks the row samples it needs."""
    sides = [name for name, fp in (("candidate", cand), ("reference", ref))
             if (view.sampled and not fp.holds(Part.SKETCHES))
             or (units is not None and units.sampled and not fp.holds(Part.UNIT_SIGNATURES))]
    notes = [f"remote comparison: the {' and '.join(sides)} fingerprint{'s were' if len(sides) > 1 else ' was'} read over "
             "HTTP (headers, 1-D tensors, 32 sampled rows per matrix, anchor rows), so only row samples, norms, "
             "anchor rows and the vocabulary were compared; permuted attention heads, a rotated residual basis and "
             "changes confined to unsampled rows are not seen"]
    for name, fp in (("candidate", cand), ("reference", ref)):
        if view.sampled and not fp.holds(Part.ROW_SAMPLES):
            notes.append(f"the {name} fingerprint has no row samples (made by an older version): rebuild it with "
                         "`provenance fingerprint` to compare its layers with a remote fingerprint")
    return notes


def _place_by_units(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch], units: UnitView) -> list[UnitMatch]:
    """Layers with no direct match, tested for permuted MLP units; returns every test, Bonferroni over those made.

    Same depth: one test per layer against the layer in its place (a
    permuted copy keeps each layer where it was); different depths: against
    the most similar reference layer.
    """
    same_depth = len(rows) == int(ref.architecture.get("num_layers") or 0)
    found = []
    for row in rows:
        if row.reference_layer is not None:
            continue
        i = row.candidate_layer
        target = i if same_depth else row.best_reference_layer
        match = units.match(cand, ref, i, target) if target is not None else None
        if match is not None:
            found.append(match)
    tested = max(len(found), 1)
    found = [replace(match, log10p=bonferroni_log10p(match.log10p, tested)) for match in found]
    for match in found:
        # 32 sampled units bound the held-out test near p = 1e-6, so equality to the signatures' precision after
        # the matching (a deterministic check independent models never pass) places the layer too; the
        # accusation still needs a p-value below the bar from some signal.
        if match.log10p < LAYER_MATCH_LOG10P or (units.sampled and match.rel_error < SIGNATURE_PRECISION):
            row = rows[match.layer_c]
            row.place(match.layer_r, match.correlation, match.log10p, {Role.MLP_UP: match.rel_error},
                      "matched MLP units (permuted, sampled rows)" if units.sampled else "matched MLP units (permuted)")
            if units.sampled:
                row.tolerances = {Role.MLP_UP: SIGNATURE_PRECISION}
    return found


def _unit_evidence(matches: list[UnitMatch], units: UnitView) -> list[Evidence]:
    tested = "the" if units.sampled else str(max(len(matches), 1))
    sampled = "sampled " if units.sampled else ""
    return [Evidence(
        f"MLP unit matching ({'sampled rows, ' if units.sampled else ''}permutation-invariant)", unit.correlation,
        unit.log10p,
        f"candidate layer {unit.layer_c} vs reference layer {unit.layer_r}: {unit.units} {sampled}units matched on 16 "
        f"{'' if units.sampled else 'whitened '}projections, held-out correlation {unit.correlation:.3f}, "
        f"{format_p(unit.log10p)} (Bonferroni over {tested} layers tested)")
        for unit in matches if unit.log10p < LAYER_MATCH_LOG10P]


def _place_by_grams(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch]) -> list[tuple]:
    """Layers still unplaced, tested for a rotated residual basis: (layer_c, layer_r, corrected log10 p, similarity).

    Same depth: each layer in its place, and one pooled test over them
    (layer None); different depths: against the most similar reference
    layer, Bonferroni over the reference layers searched and the layers tested.
    """
    same_depth = len(rows) == int(ref.architecture.get("num_layers") or 0)
    grams = []
    still = [r for r in rows if r.reference_layer is None]
    tests = gram_layer_tests(cand, ref) if still else None
    if tests is not None and same_depth:
        # A rotated copy keeps every layer in place: one pooled test over the unplaced
        # layers in their own places (fixed in advance, so no correction for a search),
        # then each layer on its own, Bonferroni over the layers tested.
        pairs = [(r.candidate_layer, r.candidate_layer) for r in still]
        pooled = tests.pooled_log10p(pairs)
        for row in still:
            i = row.candidate_layer
            if (i, i) not in tests.cluster_sums:
                continue
            corrected = bonferroni_log10p(float(tests.log10p[i, i]), len(still))
            grams.append((i, i, corrected, float(tests.similarity[i, i])))
        if pooled < LAYER_MATCH_LOG10P:
            grams.append((None, None, pooled, float(np.mean([g[3] for g in grams])) if grams else 0.0))
            for row in still:
                i = row.candidate_layer
                if (i, i) in tests.cluster_sums:
                    layer_p = bonferroni_log10p(float(tests.log10p[i, i]), len(still))
                    row.place(i, float(tests.similarity[i, i]), layer_p, {}, GRAM_VIA)
    elif tests is not None:
        for row in still:
            i = row.candidate_layer
            if i >= tests.log10p.shape[0] or not any((i, j) in tests.cluster_sums for j in range(tests.log10p.shape[1])):
                continue
            j = int(np.argmin(tests.log10p[i]))
            corrected = bonferroni_log10p(float(tests.log10p[i, j]), tests.log10p.shape[1] * len(still))
            grams.append((i, j, corrected, float(tests.similarity[i, j])))
            if corrected < LAYER_MATCH_LOG10P:
                row.place(j, float(tests.similarity[i, j]), corrected, {}, GRAM_VIA)
    return grams


def _candidate_dtype(cand: Fingerprint, layer: int, role: str) -> str | None:
    base = role[:-5] if role.endswith(".bias") else role
    param = "bias" if role.endswith(".bias") else "weight"
    if base not in ALL_ROLES:
        return None  # no tensor of the fingerprint has that name
    record = cand.tensors.get(key_name(base, layer, param=param)) or cand.tensors.get(key_name(base, layer, 0, param))
    return record.get("dtype") if record else None


def _hold_to_storage(cand: Fingerprint, rows: list[LayerMatch]) -> None:
    """The bar each compared role is held to, where no check set one: the rounding of the candidate's stored dtype."""
    for row in rows:
        for role in row.rel_errors:
            row.tolerances.setdefault(role, storage_tolerance(_candidate_dtype(cand, row.candidate_layer, role)))


def _explain_by_sampled_units(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch]) -> None:
    """Matched layers whose MLP row samples differ beyond storage rounding: permuted units, from one side's
    sampled `mlp.up` signatures placed among the other's (held to the signatures' precision at least)."""
    for row in rows:
        i, errors = row.candidate_layer, row.rel_errors
        if row.reference_layer is None:
            continue
        tolerance = max(storage_tolerance(_candidate_dtype(cand, i, Role.MLP_UP)), SIGNATURE_PRECISION)
        if any(role.startswith("mlp.") and e >= tolerance for role, e in errors.items()):
            match = SAMPLED_UNITS.match(cand, ref, i, row.reference_layer)
            if match is not None and match.rel_error < tolerance:
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role] = match.rel_error
                row.tolerances.update({r: tolerance for r in errors if r.startswith("mlp.")})
                row.via = "row sample; MLP units matched (permuted)"


def _explain_differences(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch], shared: frozenset[Part]) -> set[str]:
    """Matched layers whose roles differ beyond storage rounding may differ only by a function-preserving transform.

    Tried in turn: permuted MLP units, permuted attention heads, per-unit
    rescalings (q/k, v/o, up/down) and LayerNorm weight-with-bias rescaling.
    Each role's `rel_errors` entry is replaced by what is left after the
    transform, and its `tolerances` entry (from `_hold_to_storage`) raised to
    the bar the check can verify. Units and heads are matched, and rescalings
    fitted, on unit signatures (when both sides hold them); the LayerNorm
    bias is checked on the vectors. Returns the names of the transforms that
    were needed.
    """
    signatures = Part.UNIT_SIGNATURES in shared
    heads = {Role.ATTN_Q: cand.architecture.get("num_heads"), Role.ATTN_O: cand.architecture.get("num_heads"),
             Role.ATTN_K: cand.architecture.get("num_kv_heads"), Role.ATTN_V: cand.architecture.get("num_kv_heads")}
    used: set[str] = set()
    for row in rows:
        errors = row.rel_errors
        if row.reference_layer is None or not errors:
            continue
        i, j = row.candidate_layer, row.reference_layer
        tolerance = row.tolerances

        def beyond(role: str) -> bool:
            return errors[role] > tolerance[role]

        if not any(beyond(role) for role in errors):
            continue
        if signatures and any(role.startswith("mlp.") and beyond(role) for role in errors):
            match = unit_matching(cand, ref, i, j)
            if match is not None and match.rel_error < max(tolerance.get(Role.MLP_UP, 0.0), SIGNATURE_PRECISION):
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role], tolerance[role] = match.rel_error, max(tolerance[role], SIGNATURE_PRECISION)
                used.add("matching permuted MLP units")
        for role, count in heads.items():
            if signatures and role in errors and beyond(role) and count:
                found = head_matching_error(cand, ref, i, j, role, int(count))
                if found is None or found[0] >= max(tolerance[role], SIGNATURE_PRECISION):
                    continue
                errors[role], tolerance[role] = found[0], max(tolerance[role], SIGNATURE_PRECISION)
                # q, k, v biases are per head; o's bias lives in the hidden space
                bias_error = permuted_bias_error(cand, ref, i, j, role, found[1]) if role != Role.ATTN_O else None
                if f"{role}.bias" in errors and bias_error is not None:
                    errors[f"{role}.bias"] = bias_error
                used.add("matching permuted attention heads")
        if signatures and any(beyond(role) for role in errors):
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
        for norm_role in (Role.ATTN_NORM, Role.MLP_NORM):
            role = f"{norm_role}.bias"
            if Part.VECTORS in shared and role in errors and beyond(role):
                error = norm_bias_rescale_error(cand, ref, i, j, norm_role)
                if error is not None and error <= tolerance[role]:
                    errors[role] = error
                    used.add("folding a LayerNorm weight-and-bias rescaling")
        if used:
            row.via = f"{row.via}; {', '.join(sorted(used))}"
    return used


def _layers_identical(rows: list[LayerMatch]) -> bool:
    return bool(rows) and all(
        r.reference_layer == r.candidate_layer and r.rel_errors
        and all(e <= r.tolerances.get(role, 0.0) for role, e in r.rel_errors.items())
        for r in rows)


def compare_fingerprints(cand: Fingerprint, ref: Fingerprint) -> Comparison:
    generic = compare_generic(cand, ref)  # no transformer role map fits (UNet, VAE, ViT): stored tensors paired
    if generic is not None:
        return generic
    shared = cand.parts & ref.parts
    view, units = sample_view(shared), unit_view(cand, ref)
    sampled = view.sampled or (units is not None and units.sampled)
    statistics = Part.STATISTICS in shared
    arch_c, arch_r = cand.architecture, ref.architecture
    match_kind = architecture_match(arch_c, arch_r)
    evidence: list[Evidence] = []
    notes: list[str] = _sampled_notes(cand, ref, view, units) if sampled else []

    exact = _exact_tensors(cand, ref, notes) if Part.TENSOR_HASHES in shared else None
    if exact is not None and exact.pairs:
        evidence.append(Evidence("exact tensor hashes", len(exact.pairs) / max(len(exact.candidate_tensors), 1), None,
                                 f"{len(exact.pairs)} of {len(exact.candidate_tensors)} candidate tensors are "
                                 "bit-identical (as float32) to reference tensors"))

    rows, ref_layer_count, layer_matrix = layer_map(cand, ref, view)
    unit_matches = _place_by_units(cand, ref, rows, units) if units is not None else []
    grams = _place_by_grams(cand, ref, rows) if Part.GRAM in shared else []
    # a rotated copy whose heads were permuted can give the Gram test a weak partial signal: the responses may do better
    open_rows = [r for r in rows if r.reference_layer is None
                 or (r.via == GRAM_VIA and r.reference_layer == r.candidate_layer)]
    responses = (place_by_responses(cand, ref, rows, open_rows) if Part.ANCHOR_RESPONSES in shared
                 else ResponsePlacement([]))
    _hold_to_storage(cand, rows)
    explained_by: set[str] = set()
    if units is SAMPLED_UNITS:
        _explain_by_sampled_units(cand, ref, rows)
    elif not view.sampled:  # the other transforms are checked against differences measured on sketches
        explained_by = _explain_differences(cand, ref, rows, shared)
    experts = compare_experts(cand, ref, rows, view)
    if experts.permuted_only:
        explained_by.add("matching permuted experts")
    matched = [r for r in rows if r.reference_layer is not None]
    layer_strongest = layer_evidence_log10p(rows)
    evidence.extend(layer_evidence(rows, ref_layer_count, view.what, on=view.on))
    evidence.extend(experts.evidence)
    evidence.extend(_unit_evidence(unit_matches, units) if units is not None else [])
    for i, j, corrected, similarity in grams:
        if corrected >= LAYER_MATCH_LOG10P:
            continue
        where = ("every unplaced layer in its own place, one pooled sign-flip test" if i is None
                 else f"candidate layer {i} vs reference layer {j}, Bonferroni over the layers tested")
        evidence.append(Evidence(
            "residual-space Gram matrices (rotation-invariant)", similarity, corrected,
            f"{where}: the units' inner products agree beyond a sign-flip null, {format_p(corrected)}"))
    evidence.extend(responses.evidence)
    globals_ = global_tensors(cand, ref, sample=view.sample, columns=view.columns, clusters=view.clusters)
    anchors = anchor_embeddings(cand, ref)
    evidence.extend(non_layer_evidence(globals_, anchors,
                                       sampled=lambda name: view.sampled and len(cand.tensors[name]["shape"]) == 2))
    std_r = std_curve_correlation(cand, ref) if statistics else None
    if std_r is not None:
        evidence.append(Evidence("per-layer std curve (screening only)", std_r, None,
                                 "correlation of attention-matrix std across layers; independent models reach 0.9, so this never decides",
                                 decisive=False))
    evidence.extend(vocabulary_evidence(vocabulary_overlap(cand, ref)))

    strongest = strongest_decisive(evidence)
    exact_all = exact is not None and _every_tensor_exact(cand, ref, exact, evidence)

    # (Gram matrices are kept for dense layers only: a rotated copy's experts must agree as matched above.)
    if (Part.GRAM in shared and not exact_all and match_kind == "same-shapes" and not _layers_identical(rows)
            and not experts.permuted_only and experts_identical(rows)):
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
                    row.reference_layer, row.via = row.candidate_layer, "equal residual-space Gram matrices (rotated)"
                return Comparison(Verdict.IDENTICAL, 1.0 if worst < tolerance / 2 else 0.9,
                                  "every layer equals the reference layer up to a rotation of the residual basis "
                                  "(the units' inner products agree to the storage rounding)", evidence, rows, [],
                                  match_kind, False, notes, layer_matrix=layer_matrix)

    shared_keys = [g.name for g in globals_ if g.log10p <= LAYER_MATCH_LOG10P]
    inputs = DecisionInputs(
        rows=rows, strongest=strongest, layer_strongest=layer_strongest, match_kind=match_kind,
        reference_layers=int(arch_r.get("num_layers") or -1), exact_all=exact_all,
        layers_identical=_layers_identical(rows), shapes_disagree=tuple(shapes_disagree(arch_c, arch_r)),
        globals_identical=all(g.rel_error <= storage_tolerance(cand.tensors.get(g.name, {}).get("dtype"))
                              for g in globals_),
        same_vocabulary=arch_c.get("vocab_size") == arch_r.get("vocab_size"),
        init_like_shared=statistics and looks_initialised(cand, shared_keys),
        explained_by=sorted(explained_by), emptied=emptied_roles(cand, ref),
        weights_compared=any(e.decisive and e.log10p is not None for e in evidence) or bool(exact and exact.pairs))
    verdict, confidence, abstained, summary = decide(inputs, notes)
    if verdict == Verdict.IDENTICAL and sampled:
        confidence = min(confidence, 0.95)  # a sample agrees; unsampled rows were not seen
        summary = f"{summary} (on the sampled rows read remotely)"
    if verdict == Verdict.DERIVED and matched and statistics:
        shared_init = shared_initialisation_note(cand, ref, matched)
        if shared_init is not None:
            notes.append(shared_init)
    if verdict in ACCUSING and responses.summary() is not None:
        summary = f"{summary}; {responses.summary()}"
    if verdict in ACCUSING:
        embedding_p = [g.log10p for g in globals_ if g.name.split(".")[0] in (Role.EMBED, Role.LM_HEAD)]
        embedding_p += [anchors.log10p] if anchors is not None else []
        edits = name_edits(arch_c, arch_r, rows, min(embedding_p) if embedding_p else None)
        summary = f"{summary}; {'; '.join(edits)}" if edits else summary
    if verdict in ACCUSING and experts.edits and not exact_all:
        shown = "; ".join(experts.edits[:3]) + (" ..." if len(experts.edits) > 3 else "")
        summary = f"{summary}; experts: {shown}"
    renamed = renamed_tensors(cand, ref) if verdict in ACCUSING else []
    return Comparison(verdict, confidence, summary, evidence, rows, renamed, match_kind, abstained, notes,
                      layer_matrix=layer_matrix)
