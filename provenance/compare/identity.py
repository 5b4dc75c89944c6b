"""The identity check: whether the candidate equals the reference, after the transforms that change no function.

Run once every signal has placed what it could. Every compared role of a
matched layer is held to the rounding of the candidate's stored dtype
(`hold_to_storage`); differences beyond it may be undone by a
function-preserving transform (`explain_differences`: permuted MLP units or
attention heads, per-unit rescalings, a LayerNorm's weight-and-bias
rescaling; `explain_by_sampled_units` on row samples; the measurements are
in `transforms.py`); `every_tensor_exact` is the bit-identical copy,
renamed (`exact_copy`, from the exact-hash signal's result); `rotation_identity` the copy whose residual basis was rotated.
"""

from __future__ import annotations

from ..architectures.roles import ALL_ROLES, Role, key_name
from ..fingerprint import Fingerprint, Part
from .alignment import SIGNATURE_PRECISION, is_unplaced
from .results import Evidence, LayerMatch
from .signals.base import SignalResult
from .signals.exact import EXACT_MIN_NUMEL, ExactTensors
from .signals.units import unit_matching
from .thresholds import identity_tolerance
from .transforms import head_matching_error, norm_bias_rescale_error, permuted_bias_error, rescaling_checks, rotation_identity_errors
from .views import SAMPLED_UNITS

# Gram entries are float32 inner products of float32 rows: equal models agree far below this.
GRAM_PRECISION = 1e-4


def every_tensor_exact(cand: Fingerprint, ref: Fingerprint, exact: ExactTensors,
                        evidence: list[Evidence]) -> bool:
    """Bit-identical everywhere: the same model renamed.

    Each tensor must sit in its own place, unless the candidate's names do
    not say where (opaque names), in which case the same multiset of tensors
    is all that can be checked; then also on stored tensors (before splitting
    fused ones), whose agreement adds an evidence entry.
    """
    distinct_refs = len({r for _, r in exact.pairs}) == len(exact.pairs)
    unplaced = any(is_unplaced(k) for k in cand.records)
    if (bool(exact.candidate_tensors) and len(exact.pairs) == len(exact.candidate_tensors) == len(exact.reference_tensors)
            and distinct_refs and (all(c == r for c, r in exact.pairs) or unplaced)):
        return True
    stored_c = {k: v for k, v in cand.stored_records.items() if v.numel > EXACT_MIN_NUMEL}
    stored_r = [v.sha256 for v in ref.stored_records.values() if v.numel > EXACT_MIN_NUMEL]
    if exact.comparable and stored_c and unplaced and sorted(v.sha256 for v in stored_c.values()) == sorted(stored_r):
        evidence.append(Evidence("exact stored-tensor hashes", 1.0, None,
                                 f"all {len(stored_c)} stored tensors are bit-identical (as float32) to the reference's, "
                                 "though the names do not say where each belongs"))
        return True
    return False


def exact_copy(cand: Fingerprint, ref: Fingerprint, measured: list[SignalResult], evidence: list[Evidence]) -> bool:
    """Whether the exact-hash signal (among the signals' results `measured`) found every tensor bit-identical."""
    exact = next((r.measured for r in measured if isinstance(r.measured, ExactTensors)), None)
    return exact is not None and every_tensor_exact(cand, ref, exact, evidence)


def candidate_dtype(cand: Fingerprint, layer: int, role: str) -> str | None:
    base = role[:-5] if role.endswith(".bias") else role
    param = "bias" if role.endswith(".bias") else "weight"
    if base not in ALL_ROLES:
        return None  # no tensor of the fingerprint has that name
    record = cand.records.get(key_name(base, layer, param=param)) or cand.records.get(key_name(base, layer, 0, param))
    return record.dtype if record else None


def hold_to_storage(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch]) -> None:
    """The bar each compared role is held to, where no check set one: the rounding of the candidate's stored dtype
    (`thresholds.identity_tolerance`: float32's when both sides store the role on one quantization grid)."""
    for row in rows:
        for role in row.rel_errors:
            theirs = None if row.reference_layer is None else candidate_dtype(ref, row.reference_layer, role)
            row.tolerances.setdefault(role, identity_tolerance(candidate_dtype(cand, row.candidate_layer, role), theirs))


def explain_by_sampled_units(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch]) -> None:
    """Matched layers whose MLP row samples differ beyond storage rounding: permuted units, from one side's
    sampled `mlp.up` signatures placed among the other's (held to the signatures' precision at least)."""
    for row in rows:
        i, errors = row.candidate_layer, row.rel_errors
        if row.reference_layer is None:
            continue
        tolerance = max(identity_tolerance(candidate_dtype(cand, i, Role.MLP_UP),
                                           candidate_dtype(ref, row.reference_layer, Role.MLP_UP)), SIGNATURE_PRECISION)
        if any(role.startswith("mlp.") and e >= tolerance for role, e in errors.items()):
            match = SAMPLED_UNITS.match(cand, ref, i, row.reference_layer)
            if match is not None and match.rel_error < tolerance:
                for role in [r for r in errors if r.startswith("mlp.")]:
                    errors[role] = match.rel_error
                row.tolerances.update({r: tolerance for r in errors if r.startswith("mlp.")})
                row.via = "row sample; MLP units matched (permuted)"


def explain_differences(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch], shared: frozenset[Part]) -> set[str]:
    """Matched layers whose roles differ beyond storage rounding may differ only by a function-preserving transform.

    Tried in turn: permuted MLP units, permuted attention heads, per-unit
    rescalings (q/k, v/o, up/down) and LayerNorm weight-with-bias rescaling.
    Each role's `rel_errors` entry is replaced by what is left after the
    transform, and its `tolerances` entry (from `hold_to_storage`) raised to
    the bar the check can verify. Units and heads are matched, and rescalings
    fitted, on unit signatures (when both sides hold them); the LayerNorm
    bias is checked on the vectors. Returns the names of the transforms that
    were needed.
    """
    signatures = Part.UNIT_SIGNATURES in shared
    heads = {Role.ATTN_Q: cand.arch.num_heads, Role.ATTN_O: cand.arch.num_heads,
             Role.ATTN_K: cand.arch.num_kv_heads, Role.ATTN_V: cand.arch.num_kv_heads}
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


def layers_identical(rows: list[LayerMatch]) -> bool:
    return bool(rows) and all(
        r.reference_layer == r.candidate_layer and r.rel_errors
        and all(e <= r.tolerances.get(role, 0.0) for role, e in r.rel_errors.items())
        for r in rows)


def rotation_identity(cand: Fingerprint, ref: Fingerprint) -> tuple[float, float, Evidence] | None:
    """Every layer equal up to a rotation of the residual basis: (largest relative difference of the Gram matrices
    over layers, the tolerance it is held to, the evidence entry); None when the check cannot run."""
    rotation_errors = rotation_identity_errors(cand, ref)
    if rotation_errors is None:
        return None
    tolerance = max(identity_tolerance(r.dtype, ref.records[k].dtype if k in ref.records else None)
                    for k, r in cand.records.items()) if cand.records else 0.0
    tolerance = max(tolerance, GRAM_PRECISION)
    worst = max(rotation_errors)
    return worst, tolerance, Evidence(
        "residual-space Gram matrices (rotation-invariant identity check)", worst, None,
        f"largest relative difference over layers {worst:.2g} (identical within {tolerance:.2g}, the storage "
        "rounding); deterministic check, no p-value", decisive=False)
