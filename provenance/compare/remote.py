"""Comparisons where either fingerprint is the "remote" variant: only signals both sides have.

A remote fingerprint (`provenance.remote.fingerprint`) holds, per matrix, the
row sample (32 rows in 4 shape-seeded blocks, 256 shape-seeded columns of
each) and no full-tensor hashes, statistics, sketches or unit signatures;
1-D tensors, anchor rows and the vocabulary are complete. Every local
fingerprint holds the same row samples, so a comparison with a remote side
uses:
- *layer weights*: per layer pair and shared role, the correlation of the
  row samples (norm weights folded into the columns of the matrices after
  them), tested like the sketches are: values clustered by column, the
  hidden coordinate two independent models do not share, sign-flip / t null
  (`stats.clustered_log10p`), Fisher over roles, Bonferroni over reference
  layers (`signals.layer_similarity` with the row sample's clusters);
  `tests/test_remote.py` checks that independent row samples give uniform
  p-values;
- *permuted MLP units*, only against a local fingerprint: the sampled
  `mlp.up` rows' signatures (`rowunits/`) matched to all of the local side's
  unit signatures on 16 projections and tested on the other 16;
- non-layer tensors by id (row samples of embedding and head, final norm
  whole), embedding rows of anchor tokens shared by string, vocabulary
  overlap (screening only);
- the same decision rules as full comparisons (`verdict.decide`), where
  "identical" means: every layer's sampled rows and 1-D tensors agree within
  the rounding of the candidate's stored dtype (`thresholds.STORAGE_TOLERANCE`).
Not seen remotely: permuted attention heads, a rotated residual basis
(Gram matrices need every row), and changes confined to rows outside the
sample. Each result carries a note saying it was a remote comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..architectures.roles import WRITES_RESIDUAL
from ..fingerprint import Fingerprint
from ..fingerprint.sketch import row_sample_columns, row_sample_rows
from .alignment import (SIGNATURE_PRECISION, architecture_match, emptied_roles, layer_evidence, layer_evidence_log10p,
                        non_layer_evidence,
                        renamed_tensors, strongest_decisive, vocabulary_evidence)
from .alignment import layer_map as engine_layer_map
from .results import Comparison, Evidence
from .signals import (LayerView, TensorSignal, UnitMatch, anchor_embeddings, global_tensors, layer_view, sketch_clusters,
                      unit_matching, vocabulary_overlap)
from .stats import bonferroni_log10p, format_p, p_from_log10
from .thresholds import LAYER_MATCH_LOG10P, storage_tolerance
from .verdict import ACCUSING, DecisionInputs, decide

VARIANT = "remote"


def is_remote_fingerprint(fp: Fingerprint) -> bool:
    return fp.meta.get("variant") == VARIANT


def has_row_samples(fp: Fingerprint) -> bool:
    return any(name.startswith("rows/") for name in fp.arrays)


def row_clusters(shape: tuple[int, ...], role: str = "") -> np.ndarray:
    """Cluster of each value of a flattened row sample: its residual dimension (the column for
    matrices reading the residual stream, the row for those writing to it; see
    `signals.sketch_clusters`). Vectors: as their sketches."""
    if len(shape) != 2:
        return sketch_clusters(shape)
    rows, columns = row_sample_rows(shape), row_sample_columns(shape)
    if role.split(".bias")[0] in WRITES_RESIDUAL:
        return np.repeat(rows, len(columns))
    return np.tile(columns, len(rows))


def _sample(fp: Fingerprint, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if len(shape) == 2:
        values = fp.array(f"rows/{key}")
        expected = (len(row_sample_rows(shape)), len(row_sample_columns(shape)))
        return None if values is None or values.shape != expected else np.nan_to_num(values.astype(np.float64))
    if len(shape) == 1:
        values = fp.array(f"sketch/{key}")
        return None if values is None else values.astype(np.float64)
    return None


def row_sample_value_columns(shape: tuple[int, ...]) -> np.ndarray:
    """The column of every value of a flattened row sample."""
    return np.tile(row_sample_columns(shape), len(row_sample_rows(shape)))


def row_layer_view(fp: Fingerprint) -> LayerView:
    """Like `signals.layer_view`, from row samples (matrices) and whole vectors (norms, biases)."""
    return layer_view(fp, sample=_sample, columns=row_sample_value_columns)


def _layer_map(cand: Fingerprint, ref: Fingerprint):
    return engine_layer_map(cand, ref, view=row_layer_view, via="row sample", clusters=row_clusters)


def row_unit_matching(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int):
    """Permuted MLP units: the remote side's sampled `mlp.up` signatures against every unit of the local side.

    The held-out test of `signals.unit_matching` (match on 16 projections,
    test on the other 16) with the sampled rows as the units to place. Needs
    one side with full signatures (`units/`), i.e. a local fingerprint.
    """
    sampled_c, full_r = cand.array(f"rowunits/{layer_c}/mlp.up"), ref.array(f"units/{layer_r}/mlp.up")
    sampled_r, full_c = ref.array(f"rowunits/{layer_r}/mlp.up"), cand.array(f"units/{layer_c}/mlp.up")
    if sampled_c is not None and full_r is not None:
        a, b = sampled_c, full_r
    elif sampled_r is not None and full_c is not None:
        a, b = sampled_r, full_c
    else:
        return None
    # the sampled side holds 32 units, too few to estimate its covariance (see unit_matching)
    match = unit_matching(Fingerprint({}, {"units/0/mlp.up": a}), Fingerprint({}, {"units/0/mlp.up": b}), 0, 0,
                          sampled_candidate=True)
    if match is None:
        return None
    return UnitMatch(layer_c, layer_r, match.correlation, match.log10p, match.units, match.rel_error)


def _units(cand: Fingerprint, ref: Fingerprint, rows: list[dict[str, Any]]) -> list:
    """Row-unit matching for unmatched layers (same depth: same layer) and for matched layers whose MLP differs.

    The p-values of unmatched layers are Bonferroni-corrected over the layers tested.
    """
    results = []
    same_depth = len(rows) == int(ref.architecture.get("num_layers") or 0)
    for row in rows:
        i = row["candidate_layer"]
        if row["reference_layer"] is None:
            target = i if same_depth else row.get("best_reference_layer")
            match = row_unit_matching(cand, ref, i, target) if target is not None else None
            if match is not None:
                results.append(match)
            continue
        errors = row["rel_errors"]
        tolerance = max(storage_tolerance(cand.tensors.get(f"layers.{i}.mlp.up.weight", {}).get("dtype")),
                        SIGNATURE_PRECISION)
        if any(role.startswith("mlp.") and e >= tolerance for role, e in errors.items()):
            match = row_unit_matching(cand, ref, i, row["reference_layer"])
            if match is not None and match.rel_error < tolerance:
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role] = match.rel_error
                row.setdefault("tolerances", {}).update({r: tolerance for r in errors if r.startswith("mlp.")})
                row["via"] = "row sample; MLP units matched (permuted)"
    tested = max(len(results), 1)
    corrected_results = []
    for match in results:
        corrected = bonferroni_log10p(match.log10p, tested)
        corrected_results.append(UnitMatch(match.layer_c, match.layer_r, match.correlation, corrected, match.units,
                                           match.rel_error))
        row = rows[match.layer_c]
        # 32 sampled units bound the held-out test near p = 1e-6, so equality to the signatures' precision after
        # the matching (a deterministic check independent models never pass) places the layer too; the
        # accusation still needs a p-value below the bar from some signal.
        if corrected < LAYER_MATCH_LOG10P or match.rel_error < SIGNATURE_PRECISION:
            row.update({"reference_layer": match.layer_r, "similarity": round(match.correlation, 4),
                        "p_value": p_from_log10(corrected), "log10_p": round(corrected, 2),
                        "rel_errors": {"mlp.up": match.rel_error}, "tolerances": {"mlp.up": SIGNATURE_PRECISION},
                        "via": "matched MLP units (permuted, sampled rows)"})
    return corrected_results


def _globals(cand: Fingerprint, ref: Fingerprint) -> list[TensorSignal]:
    """Non-layer tensors of equal key and shape: row samples of matrices (head with the final norm folded), vectors whole."""
    return global_tensors(cand, ref, sample=_sample, columns=row_sample_value_columns, clusters=row_clusters)


def compare_remote(cand: Fingerprint, ref: Fingerprint) -> Comparison:
    """`compare_fingerprints` when either side is a remote fingerprint."""
    arch_c, arch_r = cand.architecture, ref.architecture
    match_kind = architecture_match(arch_c, arch_r)
    evidence: list[Evidence] = []
    sides = [name for name, fp in (("candidate", cand), ("reference", ref)) if is_remote_fingerprint(fp)]
    notes = [f"remote comparison: the {' and '.join(sides)} fingerprint{'s were' if len(sides) > 1 else ' was'} read over "
             "HTTP (headers, 1-D tensors, 32 sampled rows per matrix, anchor rows), so only row samples, norms, "
             "anchor rows and the vocabulary were compared; permuted attention heads, a rotated residual basis and "
             "changes confined to unsampled rows are not seen"]
    for name, fp in (("candidate", cand), ("reference", ref)):
        if not has_row_samples(fp):
            notes.append(f"the {name} fingerprint has no row samples (made by an older version): rebuild it with "
                         "`provenance fingerprint` to compare its layers with a remote fingerprint")

    rows, ref_layer_count, layer_matrix = _layer_map(cand, ref)
    units = _units(cand, ref, rows)
    for row in rows:  # the bar each role is held to: the rounding of the candidate's stored dtype
        tolerances = row.setdefault("tolerances", {})
        for role in row["rel_errors"]:
            base = role[:-5] if role.endswith(".bias") else role
            param = "bias" if role.endswith(".bias") else "weight"
            dtype = cand.tensors.get(f"layers.{row['candidate_layer']}.{base}.{param}", {}).get("dtype")
            tolerances.setdefault(role, storage_tolerance(dtype))
    layer_strongest = layer_evidence_log10p(rows)
    evidence.extend(layer_evidence(rows, ref_layer_count, "row-sample correlation", on=" on sampled rows"))
    for unit in units:
        if unit.log10p < LAYER_MATCH_LOG10P:
            evidence.append(Evidence(
                "MLP unit matching (sampled rows, permutation-invariant)", unit.correlation, unit.log10p,
                f"candidate layer {unit.layer_c} vs reference layer {unit.layer_r}: {unit.units} sampled units matched "
                f"on 16 projections, held-out correlation {unit.correlation:.3f}, {format_p(unit.log10p)} "
                "(Bonferroni over the layers tested)"))
    globals_ = _globals(cand, ref)
    anchors = anchor_embeddings(cand, ref)
    evidence.extend(non_layer_evidence(globals_, anchors, sampled=lambda name: len(cand.tensors[name]["shape"]) == 2))
    evidence.extend(vocabulary_evidence(vocabulary_overlap(cand, ref)))

    strongest = strongest_decisive(evidence)
    inputs = DecisionInputs(
        rows=rows, strongest=strongest, layer_strongest=layer_strongest, match_kind=match_kind,
        reference_layers=int(arch_r.get("num_layers") or -1),
        layers_identical=bool(rows) and all(
            r["reference_layer"] == r["candidate_layer"] and r["rel_errors"]
            and all(e <= r["tolerances"].get(role, 0.0) for role, e in r["rel_errors"].items()) for r in rows),
        globals_identical=all(g.rel_error <= storage_tolerance(cand.tensors.get(g.name, {}).get("dtype"))
                              for g in globals_),
        same_vocabulary=arch_c.get("vocab_size") == arch_r.get("vocab_size"), emptied=emptied_roles(cand, ref))
    verdict, confidence, abstained, summary = decide(inputs, notes)
    if verdict == "identical":
        confidence = min(confidence, 0.95)  # a sample agrees; unsampled rows were not seen
        summary = f"{summary} (on the sampled rows read remotely)"
    renamed = renamed_tensors(cand, ref) if verdict in ACCUSING else []
    return Comparison(verdict, confidence, summary, evidence, rows, renamed, match_kind, abstained, notes,
                      layer_matrix=layer_matrix)
