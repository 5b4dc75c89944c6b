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
- the same decision rules as full comparisons (`engine._decide`), where
  "identical" means: every layer's sampled rows and 1-D tensors agree to
  rounding (relative difference < IDENTICAL_REL_ERROR).
Not seen remotely: permuted attention heads, a rotated residual basis
(Gram matrices need every row), and changes confined to rows outside the
sample. Each result carries a note saying it was a remote comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fingerprint import Fingerprint
from ..fingerprint.sketch import row_sample_columns, row_sample_rows
from .engine import SIGNIFICANT, Comparison, Evidence, _decide, _renamed, architecture_match
from .engine import _layer_map as engine_layer_map
from .signals import (IDENTICAL_REL_ERROR, LAYER_KEY, PRECEDING_NORM, LayerView, TensorSignal, _final_norm, _norm_scale,
                      anchor_embeddings, sketch_clusters, unit_matching, vocabulary_overlap)
from .stats import clustered_log10p, fisher_log10p, format_p, p_from_log10

VARIANT = "remote"


def is_remote_fingerprint(fp: Fingerprint) -> bool:
    return fp.meta.get("variant") == VARIANT


def has_row_samples(fp: Fingerprint) -> bool:
    return any(name.startswith("rows/") for name in fp.arrays)


def row_clusters(shape: tuple[int, ...]) -> np.ndarray:
    """Cluster of each value of a flattened row sample: its column. Vectors: as their sketches."""
    if len(shape) == 2:
        return np.tile(row_sample_columns(shape), len(row_sample_rows(shape)))
    return sketch_clusters(shape)


def _sample(fp: Fingerprint, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if len(shape) == 2:
        values = fp.array(f"rows/{key}")
        expected = (len(row_sample_rows(shape)), len(row_sample_columns(shape)))
        return None if values is None or values.shape != expected else np.nan_to_num(values.astype(np.float64))
    if len(shape) == 1:
        values = fp.array(f"sketch/{key}")
        return None if values is None else values.astype(np.float64)
    return None


def row_layer_view(fp: Fingerprint) -> LayerView:
    """Like `signals.layer_view`, from row samples (matrices) and whole vectors (norms, biases)."""
    sketches, shapes = {}, {}
    layers = 0
    for key, record in fp.tensors.items():
        match = LAYER_KEY.match(key)
        if not match:
            continue
        layer, expert, role, param = int(match[1]), match[2], match[3], match[4]
        if expert is not None and expert != "0":
            continue
        shape = tuple(record["shape"])
        values = _sample(fp, key, shape)
        if values is None:
            continue
        norm_role = PRECEDING_NORM.get(role)
        if norm_role and param == "weight" and len(shape) == 2:
            scale = _norm_scale(fp, layer, norm_role)
            if scale is not None and scale.shape[0] == shape[1]:
                values = values * scale[row_sample_columns(shape)][None, :]
        name = role if param == "weight" else f"{role}.bias"
        sketches[(layer, name)] = values.reshape(-1)
        shapes[(layer, name)] = shape
        layers = max(layers, layer + 1)
    return LayerView(layers, sketches, shapes)


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
    match = unit_matching(Fingerprint({}, {"units/0/mlp.up": a}), Fingerprint({}, {"units/0/mlp.up": b}), 0, 0,
                          sample=a.shape[0])
    if match is None:
        return None
    from .signals import UnitMatch

    return UnitMatch(layer_c, layer_r, match.correlation, match.log10p, match.units, match.rel_error)


def _units(cand: Fingerprint, ref: Fingerprint, rows: list[dict[str, Any]]) -> list:
    """Row-unit matching for unmatched layers (same depth: same layer) and for matched layers whose MLP differs."""
    results = []
    same_depth = len(rows) == int(ref.architecture.get("num_layers") or 0)
    for row in rows:
        i = row["candidate_layer"]
        if row["reference_layer"] is None:
            target = i if same_depth else row.get("best_reference_layer")
            match = row_unit_matching(cand, ref, i, target) if target is not None else None
            if match is None:
                continue
            results.append(match)
            # 32 sampled units bound the held-out test near p = 1e-6, so equality to rounding after the
            # matching (a deterministic check independent models never pass, like the Gram check) counts too.
            if match.log10p < SIGNIFICANT or match.rel_error < IDENTICAL_REL_ERROR:
                row.update({"reference_layer": match.layer_r, "similarity": round(match.correlation, 4),
                            "p_value": p_from_log10(match.log10p), "log10_p": round(match.log10p, 2),
                            "rel_errors": {"mlp.up": match.rel_error}, "via": "matched MLP units (permuted, sampled rows)"})
            continue
        errors = row["rel_errors"]
        if any(role.startswith("mlp.") and e >= IDENTICAL_REL_ERROR for role, e in errors.items()):
            match = row_unit_matching(cand, ref, i, row["reference_layer"])
            if match is not None and match.rel_error < IDENTICAL_REL_ERROR:
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role] = match.rel_error
                row["via"] = "row sample; MLP units matched (permuted)"
    return results


def _globals(cand: Fingerprint, ref: Fingerprint) -> list[TensorSignal]:
    """Non-layer tensors of equal key and shape: row samples of matrices (head with the final norm folded), vectors whole."""
    found = []
    head_folded = False
    for key, record in cand.tensors.items():
        if key.startswith("layers."):
            continue
        other = ref.tensors.get(key)
        if other is None or other["shape"] != record["shape"]:
            continue
        shape = tuple(record["shape"])
        x, y = _sample(cand, key, shape), _sample(ref, key, shape)
        if x is None or y is None or x.size < 4:
            continue
        if key == "lm_head.weight" and len(shape) == 2:
            scale_c, scale_r = _final_norm(cand), _final_norm(ref)
            if scale_c is not None and scale_r is not None and scale_c.shape[0] == scale_r.shape[0] == shape[1]:
                columns = row_sample_columns(shape)
                x, y = x * scale_c[columns][None, :], y * scale_r[columns][None, :]
                head_folded = True
        x, y = x.reshape(-1), y.reshape(-1)
        r, log10p = clustered_log10p(x, y, row_clusters(shape))
        rel = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
        found.append(TensorSignal(key, r, log10p, x.size, rel))
    if head_folded:
        found = [TensorSignal(g.name, g.correlation, g.log10p, g.n, 0.0) if g.name == "final_norm.weight" else g
                 for g in found]
    return found


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
    matched = [r for r in rows if r["reference_layer"] is not None]
    per_layer_logp = [r["log10_p"] for r in rows if r["roles"] or r["via"] != "none"]
    if rows:
        best = min(rows, key=lambda r: r["log10_p"])
        evidence.append(Evidence(
            "layer weights (row-sample correlation, norms folded)", best["similarity"],
            fisher_log10p(per_layer_logp) if per_layer_logp else 0.0,
            f"{len(matched)} of {len(rows)} candidate layers match a reference layer at p < 1e-6 on sampled rows "
            f"(Fisher over roles per layer, Bonferroni over {ref_layer_count} reference layers); strongest {format_p(best['log10_p'])}"))
    for unit in units:
        if unit.log10p < SIGNIFICANT:
            evidence.append(Evidence(
                "MLP unit matching (sampled rows, permutation-invariant)", unit.correlation, unit.log10p,
                f"candidate layer {unit.layer_c} vs reference layer {unit.layer_r}: {unit.units} sampled units matched "
                f"on 16 projections, held-out correlation {unit.correlation:.3f}, {format_p(unit.log10p)}"))
    globals_ = _globals(cand, ref)
    for g in globals_:
        sampled = len(cand.tensors[g.name]["shape"]) == 2
        evidence.append(Evidence(f"{g.name} (by id{', sampled rows' if sampled else ''})", g.correlation, g.log10p,
                                 f"correlation of {g.n} sampled values, {format_p(g.log10p)}"))
    anchors = anchor_embeddings(cand, ref)
    if anchors is not None:
        evidence.append(Evidence("embedding by token string", anchors.correlation, anchors.log10p,
                                 f"{anchors.name}: correlation {anchors.correlation:.3f}, {format_p(anchors.log10p)}"))
    overlap = vocabulary_overlap(cand, ref)
    if overlap is not None:
        evidence.append(Evidence("vocabulary overlap (screening only)", overlap, None,
                                 "estimated Jaccard of the token-string sets; independent models often share tokenizers",
                                 decisive=False))

    decisive = [e.log10p for e in evidence if e.decisive and e.log10p is not None]
    strongest = min(decisive, default=0.0)
    verdict, confidence, abstained, summary = _decide(rows, matched, globals_, anchors, units, strongest, False,
                                                      match_kind, arch_c, arch_r, notes)
    if verdict == "identical":
        confidence = min(confidence, 0.95)  # a sample agrees; unsampled rows were not seen
        summary = f"{summary} (on the sampled rows read remotely)"
    renamed = _renamed(cand, ref) if verdict in ("identical", "derived", "assembled") else []
    return Comparison(verdict, confidence, summary, evidence, rows, renamed, match_kind, abstained, notes,
                      layer_matrix=layer_matrix)
