"""Compare a candidate fingerprint with a reference fingerprint and reach a verdict.

The signals (`signals/`, one module each, listed in `signals/registry.py`)
each come with a p-value under the null "the two models were initialised and
trained independently"; this module runs every signal whose needs both
fingerprints hold, in the registry's order, applying the layers each placed
before the next runs, then the identity check (`identity.py`), and hands the
result to the decision rules (`verdict.py`; thresholds and their reasons in
`thresholds.py`). What the signals measure:
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

from dataclasses import replace

from ..fingerprint import Fingerprint, Part
from ..verdicts import ACCUSING, Verdict
from .alignment import (architecture_match, emptied_roles, layer_evidence_log10p, renamed_tensors, shapes_disagree,
                        strongest_decisive)
from .experts import compare_experts, experts_identical
from .generic import compare_generic
from .identity import (exact_copy, explain_by_sampled_units, explain_differences, hold_to_storage,
                       layers_identical, rotation_identity)
from .init_regeneration import regenerated_init_check
from .results import Comparison, Evidence, LayerMatch
from .shared_init import looks_initialised, shared_initialisation_note
from .signals.base import Pair, SignalResult, with_placements
from .signals.registry import SIGNALS
from .verdict import DecisionInputs, decide
from .views import SAMPLED_UNITS, SampleView, UnitView, sample_view, unit_view


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


def run_signals(pair: Pair, notes: list[str]) -> tuple[list[LayerMatch], dict[str, SignalResult]]:
    """Every signal whose needs both fingerprints hold, in the registry's order: the layer map it leaves and each
    signal's result by name (notes appended to `notes`)."""
    rows: list[LayerMatch] = []
    results: dict[str, SignalResult] = {}
    for signal in SIGNALS:
        if not signal.applies(pair):
            continue
        result = signal.measure(replace(pair, rows=tuple(rows)))
        if result.layers is not None:
            rows = list(result.layers)
        with_placements(rows, result.placements)
        notes.extend(result.notes)
        results[signal.name] = result
    return rows, results


def compare_fingerprints(cand: Fingerprint, ref: Fingerprint) -> Comparison:
    generic = compare_generic(cand, ref)  # no transformer role map fits (UNet, VAE, ViT): stored tensors paired
    if generic is not None:
        return generic
    shared = cand.parts & ref.parts
    view, units = sample_view(shared), unit_view(cand, ref)
    sampled = view.sampled or (units is not None and units.sampled)
    statistics = Part.STATISTICS in shared
    arch_c, arch_r = cand.arch, ref.arch
    match_kind = architecture_match(arch_c, arch_r)
    notes: list[str] = _sampled_notes(cand, ref, view, units) if sampled else []
    pair = Pair(cand, ref, shared, view, units)
    rows, results = run_signals(pair, notes)

    hold_to_storage(cand, ref, rows)
    explained_by: set[str] = set()
    if units is SAMPLED_UNITS:
        explain_by_sampled_units(cand, ref, rows)
    elif not view.sampled:  # the other transforms are checked against differences measured on sketches
        explained_by = explain_differences(cand, ref, rows, shared)
    experts = compare_experts(cand, ref, rows, view)
    if experts.permuted_only:
        explained_by.add("matching permuted experts")
    matched = [r for r in rows if r.reference_layer is not None]
    layer_strongest = layer_evidence_log10p(rows)
    final = replace(pair, rows=tuple(rows), map_evidence=tuple(experts.evidence))
    evidence: list[Evidence] = []
    for signal in SIGNALS:
        if signal.name in results:
            evidence.extend(signal.report(final, results[signal.name]))
    measured = list(results.values())
    layer_matrix = next((r.layer_matrix for r in measured if r.layer_matrix is not None), None)

    strongest = strongest_decisive(evidence)
    exact_all = exact_copy(cand, ref, measured, evidence)

    rotation = None
    # (Gram matrices are kept for dense layers only: a rotated copy's experts must agree as matched above.)
    if (Part.GRAM in shared and not exact_all and match_kind == "same-shapes" and not layers_identical(rows)
            and not experts.permuted_only and experts_identical(rows)):
        checked = rotation_identity(cand, ref)
        if checked is not None:
            worst, tolerance, entry = checked
            evidence.append(entry)
            rotation = (worst, tolerance)

    shared_keys = [key for r in measured for key in r.shared_keys]
    embedding_p = [p for r in measured for p in r.embedding_log10p]
    inputs = DecisionInputs(
        rows=rows, strongest=strongest, layer_strongest=layer_strongest, match_kind=match_kind,
        reference_layers=int(arch_r.num_layers or -1), exact_all=exact_all,
        layers_identical=layers_identical(rows), shapes_disagree=tuple(shapes_disagree(arch_c, arch_r)),
        globals_identical=all(r.within_storage for r in measured),
        same_vocabulary=arch_c.vocab_size == arch_r.vocab_size,
        init_like_shared=statistics and looks_initialised(cand, shared_keys),
        explained_by=sorted(explained_by), emptied=emptied_roles(cand, ref),
        weights_compared=(any(e.decisive and e.log10p is not None for e in evidence)
                          or any(r.weights_compared for r in measured)),
        sampled=sampled, rotation=rotation,
        shared_initialisation=shared_initialisation_note(cand, ref, matched) if matched and statistics else None,
        accusing_clauses=tuple(r.accusing_summary for r in measured if r.accusing_summary is not None),
        architectures=(arch_c, arch_r), embedding_log10p=min(embedding_p) if embedding_p else None,
        expert_edits=tuple(experts.edits))
    notes_before = list(notes)
    decision = decide(inputs, notes)
    init_check = regenerated_init_check(cand, ref, matched, evidence, compare_fingerprints) \
        if decision.verdict == Verdict.DERIVED and matched else None
    if init_check is not None:  # decided again: on what remains beyond a shared init found, or with the check's note
        notes[:] = notes_before
        decision = decide(replace(inputs, beyond_init=init_check.beyond_log10p if init_check.explains else None,
                                  regenerated_init=init_check.note, init_seed_found=init_check.seed is not None),
                          notes)
        if init_check.seed is not None:
            evidence.extend([e for e in (init_check.evidence(),) if e is not None])
    if decision.layers_in_place_by is not None:
        for row in rows:
            row.reference_layer, row.via = row.candidate_layer, decision.layers_in_place_by
    accusing = decision.verdict in ACCUSING and decision.layers_in_place_by is None
    renamed = renamed_tensors(cand, ref) if accusing else []
    return Comparison(decision.verdict, decision.confidence, decision.summary, evidence, rows, renamed, match_kind,
                      decision.abstained, notes, layer_matrix=layer_matrix)
