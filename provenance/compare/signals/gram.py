"""Residual-space Gram matrices: layers tested in a way a rotation of the residual basis leaves unchanged.

Layers still unplaced are tested: at equal depth each layer in its place,
and one pooled test over them; at different depths against the most similar
reference layer, Bonferroni over the reference layers searched and the
layers tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...architectures.roles import Role, has_gated_mlp
from ...fingerprint import Fingerprint, Part
from ..results import Evidence
from ..stats import bonferroni_log10p, format_p, pearson, sign_flip_log10p
from ..thresholds import LAYER_MATCH_LOG10P
from .base import Pair, Placement, Signal, SignalResult

GRAM_VIA = "residual-space Gram matrices (rotation-invariant)"


@dataclass(frozen=True)
class GramTests:
    """Rotation-invariant layer tests: per layer pair, the residual-space Gram matrices compared."""

    log10p: np.ndarray  # (Lc, Lr) sign-flip p-value of the layer pair (one test over its clusters)
    similarity: np.ndarray  # (Lc, Lr) mean correlation of the compared Gram blocks
    cluster_sums: dict[tuple[int, int], np.ndarray]  # per layer pair: the clusters, for pooling over layers

    def pooled_log10p(self, pairs: list[tuple[int, int]]) -> float:
        """One sign-flip test over the clusters of several layer pairs (units of different layers flip
        independently, so their clusters pool into one valid test for a map fixed in advance)."""
        sums = [self.cluster_sums[p] for p in pairs if p in self.cluster_sums]
        return sign_flip_log10p(np.concatenate(sums)) if sums else 0.0


def _gram_matrix(upper: np.ndarray) -> np.ndarray | None:
    """The symmetric matrix (zero diagonal) from its stored upper triangle."""
    size = int(round((1 + np.sqrt(1 + 8 * upper.size)) / 2))
    if size * (size - 1) // 2 != upper.size or size < 8:
        return None
    full = np.zeros((size, size))
    rows, cols = np.triu_indices(size, k=1)
    full[rows, cols] = upper
    full[cols, rows] = upper
    return full


def _gram_clusters(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """c_u = sum over v in U2 of a[u,v] b[u,v] for u in U1 (the first half), scaled by the blocks' norms
    (sign-invariant, so fixed under the null)."""
    if a.shape != b.shape:
        return None
    half = a.shape[0] // 2
    block_a, block_b = a[:half, half:], b[:half, half:]
    scale = np.linalg.norm(block_a) * np.linalg.norm(block_b)
    return (block_a * block_b).sum(axis=1) / scale if scale > 0 else None


def gram_layer_tests(cand: Fingerprint, ref: Fingerprint) -> GramTests | None:
    """Layer pairs tested through the units' Gram matrices, which a rotation of the residual basis leaves unchanged.

    Null: the models were trained independently, so the candidate's weights are
    as likely as with any of its units' signs flipped: a value dimension flips
    with its output-projection column, a gated MLP's up row with its down
    column (q/k are left out: rotary pairs flip together; so is a non-gated
    MLP: GELU is not odd). Flipping unit u flips row and column u of its Gram
    matrix. The units are split in halves U1, U2 and each u in U1 gives a
    cluster c_u = sum over v in U2 of Gc[u,v] Gr[u,v]: flipping u flips c_u
    only, so the self-normalised sign-flip test (`stats.sign_flip_log10p`)
    applies whatever the weights' structure. Clusters: v's units, and the
    gated MLP's units (up and down summed per unit, since they flip
    together); o's units only where v has no Gram matrix (o's columns flip
    with v's rows). A copy whose residual basis was rotated (and then
    changed) keeps its units in place, so c_u > 0 for most u. Permuted units
    are not seen by this test (unit matching covers permutations).
    """
    lc, lr = int(cand.arch.num_layers or 0), int(ref.arch.num_layers or 0)
    gated = has_gated_mlp(cand.records) and has_gated_mlp(ref.records)
    if not lc or not lr:
        return None

    def load(fp: Fingerprint, layers: int) -> dict[tuple[int, str], np.ndarray]:
        found = {}
        for layer in range(layers):
            for role in (Role.ATTN_V, Role.ATTN_O) + ((Role.MLP_UP, Role.MLP_DOWN) if gated else ()):
                upper = fp.part_array(Part.GRAM, layer, role)
                full = _gram_matrix(upper.astype(np.float64)) if upper is not None else None
                if full is not None:
                    found[(layer, role)] = full
        return found

    grams_c, grams_r = load(cand, lc), load(ref, lr)
    if not grams_c or not grams_r:
        return None
    log10p = np.zeros((lc, lr))
    similarity = np.zeros((lc, lr))
    cluster_sums: dict[tuple[int, int], np.ndarray] = {}
    for i in range(lc):
        for j in range(lr):
            parts, sims = [], []

            def clusters(role: str) -> np.ndarray | None:
                a, b = grams_c.get((i, role)), grams_r.get((j, role))
                found = _gram_clusters(a, b) if a is not None and b is not None else None
                if found is not None:
                    half = a.shape[0] // 2
                    sims.append(pearson(a[:half, half:].reshape(-1), b[:half, half:].reshape(-1)))
                return found

            attention = clusters(Role.ATTN_V)
            if attention is None:
                attention = clusters(Role.ATTN_O)
            if attention is not None:
                parts.append(attention)
            if gated:
                up, down = clusters(Role.MLP_UP), clusters(Role.MLP_DOWN)
                if up is not None and down is not None and up.shape == down.shape:
                    parts.append(up + down)
                elif up is not None or down is not None:
                    parts.append(up if up is not None else down)
            if parts:
                sums = np.concatenate(parts)
                cluster_sums[(i, j)] = sums
                log10p[i, j] = sign_flip_log10p(sums)
                similarity[i, j] = float(np.mean(sims))
    return GramTests(log10p, similarity, cluster_sums)


class GramMatrices(Signal):
    name = "residual-space Gram matrices"
    needs = frozenset({Part.GRAM})
    null = ("the models were trained independently, so the candidate's weights are as likely with any of its units' "
            "signs flipped, which flips that unit's row and column of its Gram matrix")

    def measure(self, pair: Pair) -> SignalResult:
        """(layer_c, layer_r, corrected log10 p, similarity) per test made (layer None: the pooled test)."""
        cand, ref, rows = pair.cand, pair.ref, pair.rows
        same_depth = len(rows) == int(ref.arch.num_layers or 0)
        grams, placements = [], []
        still = [r for r in rows if r.reference_layer is None]
        tests = gram_layer_tests(cand, ref) if still else None
        if tests is not None and same_depth:
            # A rotated copy keeps every layer in place: one pooled test over the unplaced
            # layers in their own places (fixed in advance, so no correction for a search),
            # then each layer on its own, Bonferroni over the layers tested.
            pooled = tests.pooled_log10p([(r.candidate_layer, r.candidate_layer) for r in still])
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
                        placements.append(Placement(i, i, float(tests.similarity[i, i]), layer_p, {}, GRAM_VIA))
        elif tests is not None:
            for row in still:
                i = row.candidate_layer
                if i >= tests.log10p.shape[0] or not any((i, j) in tests.cluster_sums for j in range(tests.log10p.shape[1])):
                    continue
                j = int(np.argmin(tests.log10p[i]))
                corrected = bonferroni_log10p(float(tests.log10p[i, j]), tests.log10p.shape[1] * len(still))
                grams.append((i, j, corrected, float(tests.similarity[i, j])))
                if corrected < LAYER_MATCH_LOG10P:
                    placements.append(Placement(i, j, float(tests.similarity[i, j]), corrected, {}, GRAM_VIA))
        evidence = []
        for i, j, corrected, similarity in grams:
            if corrected >= LAYER_MATCH_LOG10P:
                continue
            where = ("every unplaced layer in its own place, one pooled sign-flip test" if i is None
                     else f"candidate layer {i} vs reference layer {j}, Bonferroni over the layers tested")
            evidence.append(Evidence(
                GRAM_VIA, similarity, corrected,
                f"{where}: the units' inner products agree beyond a sign-flip null, {format_p(corrected)}"))
        return SignalResult(tuple(evidence), tuple(placements), measured=grams)
