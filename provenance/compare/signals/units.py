"""MLP unit matching: units matched on half of their signature projections, then tested on the other half.

This survives any permutation of units (the idea of Zhu et al.,
"Independence Tests for Language Models", 2025, with a held-out test in
place of their Spearman statistic). Layers the layer sketches left
unplaced are tested: at equal depth against the layer in their place, else
against the most similar reference layer; Bonferroni over the layers tested.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...architectures.roles import Role
from ...fingerprint import Fingerprint, Part
from ..alignment import SIGNATURE_PRECISION
from ..results import Evidence
from ..stats import bonferroni_log10p, clustered_log10p, format_p, standardise, whiten, whitening_transform
from ..thresholds import LAYER_MATCH_LOG10P
from .base import Pair, Placement, Signal, SignalResult


@dataclass(frozen=True)
class UnitMatch:
    layer_c: int
    layer_r: int
    correlation: float  # held-out correlation of matched units
    log10p: float
    units: int
    rel_error: float  # relative difference of matched signatures (identity check)


def unit_matching(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int, role: str = Role.MLP_UP,
                  sample: int = 256, sampled_candidate: bool = False) -> UnitMatch | None:
    """Match MLP units on the first half of the projections, test on the other half.

    Null: the two models were initialised and trained independently. Trained
    weights are anisotropic (power-law spectra, a few massive residual
    dimensions), so the match half and the test half of one model's units are
    correlated, and units matched on one half of two *independent* models
    correlate on the other half (without a fix, p < 1e-6 in about a quarter of
    layers). Each model's signatures are therefore whitened with that model's
    own covariance over its units (`stats.whiten`): the test half then carries
    no linear information about the match half, so under the null the
    held-out products of matched pairs have mean zero whatever the matching
    did; each unit is one cluster of the self-normalised test.

    `sampled_candidate`: the candidate side holds only a few sampled units
    (remote row samples), too few to estimate its covariance. Both sides are
    then put in the reference's whitened coordinates and matched one to one
    (Hungarian assignment, `scipy.optimize.linear_sum_assignment`): distinct
    reference units, independent of each other after whitening, keep the
    clusters independent even though the candidate's units are not whitened.
    """
    a = cand.part_array(Part.UNIT_SIGNATURES, layer_c, role)
    b = ref.part_array(Part.UNIT_SIGNATURES, layer_r, role)
    if a is None or b is None or a.shape[1] != b.shape[1] or a.shape[1] < 4:
        return None
    raw_a, raw_b = a.astype(np.float64), b.astype(np.float64)
    half = a.shape[1] // 2
    if sampled_candidate:
        to_reference = whitening_transform(raw_b)
        a, b = to_reference(raw_a), to_reference(raw_b)
        chosen = np.arange(a.shape[0])
        similarity = standardise(a[:, :half]) @ standardise(b[:, :half]).T
        rows, partner = linear_sum_assignment(-similarity)
        chosen = chosen[rows]
    else:
        a, b = whiten(raw_a), whiten(raw_b)
        rng = np.random.default_rng(layer_c * 7919 + layer_r)
        chosen = rng.choice(a.shape[0], size=min(sample, a.shape[0]), replace=False)
        partner = np.argmax(standardise(a[chosen, :half]) @ standardise(b[:, :half]).T, axis=1)
    held_a = a[chosen, half:]
    held_b = b[partner, half:]
    units = np.repeat(np.arange(len(chosen)), held_a.shape[1])  # each unit is one cluster
    r, log10p = clustered_log10p(held_a.reshape(-1), held_b.reshape(-1), units)
    # identity check on the stored (unwhitened) signatures of the matched pairs
    rel = float(np.linalg.norm(raw_a[chosen] - raw_b[partner]) / max(np.linalg.norm(raw_b[partner]), 1e-30))
    return UnitMatch(layer_c, layer_r, r, log10p, len(chosen), rel)


class UnitMatching(Signal):
    name = "MLP unit matching"
    null = ("the models were trained independently, so after each model's signatures are whitened with its own "
            "covariance the held-out products of matched units have mean zero whatever the matching did")

    def applies(self, pair: Pair) -> bool:
        return pair.units is not None

    def measure(self, pair: Pair) -> SignalResult:
        """Layers with no direct match, tested for permuted MLP units; every test, Bonferroni over those made.

        Same depth: one test per layer against the layer in its place (a
        permuted copy keeps each layer where it was); different depths: against
        the most similar reference layer.
        """
        cand, ref, rows, units = pair.cand, pair.ref, pair.rows, pair.units
        same_depth = len(rows) == int(ref.arch.num_layers or 0)
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
        placements = []
        for match in found:
            # 32 sampled units bound the held-out test near p = 1e-6, so equality to the signatures' precision after
            # the matching (a deterministic check independent models never pass) places the layer too; the
            # accusation still needs a p-value below the bar from some signal.
            if match.log10p < LAYER_MATCH_LOG10P or (units.sampled and match.rel_error < SIGNATURE_PRECISION):
                placements.append(Placement(
                    rows[match.layer_c].candidate_layer, match.layer_r, match.correlation, match.log10p,
                    {Role.MLP_UP: match.rel_error},
                    "matched MLP units (permuted, sampled rows)" if units.sampled else "matched MLP units (permuted)",
                    {Role.MLP_UP: SIGNATURE_PRECISION} if units.sampled else None))
        return SignalResult(tuple(_unit_evidence(found, units)), tuple(placements), measured=found)


def _unit_evidence(matches: list[UnitMatch], units) -> list[Evidence]:
    tested = "the" if units.sampled else str(max(len(matches), 1))
    sampled = "sampled " if units.sampled else ""
    return [Evidence(
        f"MLP unit matching ({'sampled rows, ' if units.sampled else ''}permutation-invariant)", unit.correlation,
        unit.log10p,
        f"candidate layer {unit.layer_c} vs reference layer {unit.layer_r}: {unit.units} {sampled}units matched on 16 "
        f"{'' if units.sampled else 'whitened '}projections, held-out correlation {unit.correlation:.3f}, "
        f"{format_p(unit.log10p)} (Bonferroni over {tested} layers tested)")
        for unit in matches if unit.log10p < LAYER_MATCH_LOG10P]
