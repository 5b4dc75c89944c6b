"""The function-preserving transforms the identity check undoes, measured on the unit signatures and vectors.

Permuted attention heads (`head_matching_error`) and the biases permuted
with them, per-unit rescalings between paired matrices (`rescaling_checks`),
a LayerNorm's weight-and-bias rescaling (`norm_bias_rescale_error`), and a
rotation of the residual basis (`rotation_identity_errors`). These are
deterministic checks, not tests: a difference left after the transform is
held to the rounding of the stored dtype (`identity.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..architectures.roles import Role, key_name
from ..fingerprint import Fingerprint, Part, array_name
from .stats import standardise


def rotation_identity_errors(cand: Fingerprint, ref: Fingerprint) -> list[float] | None:
    """Per layer, the largest relative difference of the units' residual-space Gram matrices.

    Equal Gram matrices for every role of every layer mean equal weights up to a
    rotation of the residual basis. This is a deterministic identity check, not
    a test: Gram matrices of independently trained models share structure, so a
    similarity between them has no null we can trust, and only near-equality
    (which independent models never reach) is used.
    """
    layers = int(cand.arch.num_layers or 0)
    if layers == 0 or layers != int(ref.arch.num_layers or -1):
        return None
    errors = []
    for layer in range(layers):
        worst = None
        for name in [n for n in cand.arrays if n.startswith(array_name(Part.GRAM, layer, ""))]:
            a, b = cand.arrays[name], ref.array(name)
            if b is None or a.shape != b.shape:
                return None
            a, b = a.astype(np.float64), b.astype(np.float64)
            error = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
            worst = error if worst is None else max(worst, error)
        if worst is None:
            return None
        errors.append(worst)
    return errors


def head_matching_error(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int, role: str,
                        heads: int) -> tuple[float, np.ndarray] | None:
    """Relative difference of one attention matrix after matching its heads, and the matching.

    Heads are blocks of rows (q, k, v) or of columns (o); each head's block of
    unit signatures is matched to the most similar reference head. The
    matching (candidate head -> reference head) is returned so that biases
    can be checked with it.
    """
    a = cand.part_array(Part.UNIT_SIGNATURES, layer_c, role)
    b = ref.part_array(Part.UNIT_SIGNATURES, layer_r, role)
    if a is None or b is None or a.shape != b.shape or heads < 1 or a.shape[0] % heads:
        return None
    a = a.astype(np.float64).reshape(heads, -1)
    b = b.astype(np.float64).reshape(heads, -1)
    partner = np.argmax(standardise(a) @ standardise(b).T, axis=1)
    if len(set(partner.tolist())) != heads:
        return None
    return float(np.linalg.norm(a - b[partner]) / max(np.linalg.norm(b), 1e-30)), partner


def permuted_bias_error(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int, role: str,
                        partner: np.ndarray) -> float | None:
    """Relative difference of a bias whose blocks (heads or units) were permuted by `partner`."""
    a = cand.part_array(Part.VECTORS, key_name(role, layer_c, param="bias"))
    b = ref.part_array(Part.VECTORS, key_name(role, layer_r, param="bias"))
    if a is None or b is None or a.shape != b.shape or a.size % len(partner):
        return None
    a = a.astype(np.float64).reshape(len(partner), -1)
    b = b.astype(np.float64).reshape(len(partner), -1)
    return float(np.linalg.norm(a - b[partner]) / max(np.linalg.norm(b), 1e-30))


@dataclass(frozen=True)
class RescaleCheck:
    """A function-preserving rescaling that explains a layer's differences, and what is left over."""

    pair: str  # e.g. "attn.q/attn.k"
    residual: float  # relative difference of the signatures after the fitted per-unit scales
    violation: float  # largest |s_a * s_b - 1| of the paired scales (0 for an exact rescaling)


def _unit_scales(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int, role: str):
    a, b = cand.part_array(Part.UNIT_SIGNATURES, layer_c, role), ref.part_array(Part.UNIT_SIGNATURES, layer_r, role)
    if a is None or b is None or a.shape != b.shape or a.size == 0:
        return None
    a, b = a.astype(np.float64), b.astype(np.float64)
    denominator = (b * b).sum(axis=1)
    scales = np.divide((a * b).sum(axis=1), denominator, out=np.ones(len(a)), where=denominator > 0)
    residual = float(np.linalg.norm(a - scales[:, None] * b) / max(np.linalg.norm(b), 1e-30))
    return scales, residual


def rescaling_checks(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int) -> list[RescaleCheck]:
    """Per-unit rescalings between paired matrices that leave the function unchanged.

    q rows x s with the matching k rows / s (per head dimension; with GQA a key
    row serves several query heads), v rows x s with the matching o columns / s,
    and a gated MLP's up rows x s with its down columns / s. The scales are
    fitted from the unit signatures (float16, so the check is good to about
    1e-3), and each pair is explained when the signatures agree after the
    scales and the paired scales multiply to one.
    """
    arch = cand.arch
    heads, kv_heads = int(arch.num_heads or 0), int(arch.num_kv_heads or arch.num_heads or 0)
    found = []

    def paired(role_a: str, role_b: str, mapping) -> None:
        first, second = _unit_scales(cand, ref, layer_c, layer_r, role_a), _unit_scales(cand, ref, layer_c, layer_r, role_b)
        if first is None or second is None:
            return
        index = mapping(len(first[0]), len(second[0]))
        if index is None:
            return
        product = first[0][index[0]] * second[0][index[1]]
        violation = float(np.max(np.abs(product - 1.0))) if product.size else 0.0
        found.append(RescaleCheck(f"{role_a}/{role_b}", max(first[1], second[1]), violation))

    def by_head(rows_a: int, rows_b: int):
        # rows_a units of the query side (heads x d), rows_b of the key/value side (kv_heads x d)
        if not heads or not kv_heads or rows_a % heads or rows_b % kv_heads or rows_a // heads != rows_b // kv_heads:
            return None
        d = rows_a // heads
        group = heads // kv_heads if heads % kv_heads == 0 else 0
        if not group:
            return None
        q_index = np.arange(rows_a)
        k_index = (q_index // d) // group * d + q_index % d
        return q_index, k_index

    def same_units(rows_a: int, rows_b: int):
        return (np.arange(rows_a), np.arange(rows_b)) if rows_a == rows_b else None

    paired(Role.ATTN_Q, Role.ATTN_K, by_head)
    paired(Role.ATTN_O, Role.ATTN_V, by_head)  # o's units are its columns (query heads x d), v's its rows
    if any(key_name(Role.MLP_GATE, layer_c, param=param) in cand.records for param in ("weight", "bias")):
        paired(Role.MLP_UP, Role.MLP_DOWN, same_units)
    return found


def norm_bias_rescale_error(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int, norm_role: str) -> float | None:
    """Relative difference of a LayerNorm bias after the same per-channel rescale as its weight.

    Rescaling a LayerNorm's weight and bias by s and the next linear layer's
    input columns by 1/s leaves the function unchanged; the bias must then be
    the reference's times cand_weight / ref_weight.
    """
    wc = cand.part_array(Part.VECTORS, key_name(norm_role, layer_c))
    wr = ref.part_array(Part.VECTORS, key_name(norm_role, layer_r))
    bc = cand.part_array(Part.VECTORS, key_name(norm_role, layer_c, param="bias"))
    br = ref.part_array(Part.VECTORS, key_name(norm_role, layer_r, param="bias"))
    if any(x is None for x in (wc, wr, bc, br)) or not (wc.shape == wr.shape == bc.shape == br.shape):
        return None
    wc, wr, bc, br = (x.astype(np.float64) for x in (wc, wr, bc, br))
    scale = np.divide(wc, wr, out=np.ones_like(wc), where=np.abs(wr) > 1e-12)
    expected = br * scale
    return float(np.linalg.norm(bc - expected) / max(np.linalg.norm(expected), 1e-30))
