"""Layer sketches: every candidate layer against every reference layer, one sign-flip test per layer pair.

`layer_similarity`: for every candidate layer i and reference layer j, the
correlation of the sketches of each shared role (norm weights folded into
the matrices that follow them, so rescaling between a norm and the next
linear layer changes nothing), tested as one sign-flip statistic per layer
pair that sums every role's contribution per residual dimension, and one
that sums them per MLP unit and value dimension (Bonferroni over the two).
`layer_map` gives each candidate layer its most similar reference layer
(Bonferroni over the reference layers searched): the first map, which the
later signals complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...architectures.roles import PRECEDING_NORM
from ...fingerprint import Fingerprint
from ..alignment import layer_evidence_log10p
from ..results import Evidence, LayerMatch
from ..sketches import UNIT_FLIP_GROUPS, LayerView, sketch_clusters
from ..stats import LOG10P_FLOOR, bonferroni_log10p, correlation_matrix, format_p, p_from_log10, sum_or_count_log10p
from ..thresholds import LAYER_MATCH_LOG10P
from .base import Pair, Signal, SignalResult


FOLDED_NORMS = set(PRECEDING_NORM.values())


@dataclass(frozen=True)
class LayerSimilarity:
    similarity: np.ndarray  # (Lc, Lr) mean correlation over shared roles
    log10p: np.ndarray  # (Lc, Lr) one-sided log10 p of the layer's sign-flip test over residual dimensions
    roles: np.ndarray  # (Lc, Lr) number of roles compared
    rel_errors: dict[tuple[int, int], dict[str, float]]  # per layer pair: relative difference of each role


def layer_similarity(cand: LayerView, ref: LayerView,
                     clusters: Callable[[tuple[int, ...], str], np.ndarray] | None = None) -> LayerSimilarity:
    """One sign-flip test per layer pair over every role it shares.

    Each role's products of centred samples are summed per residual
    dimension (`clusters(shape, role)`: default `sketch_clusters`; remote
    comparisons pass the row sample's), scaled to unit norm over the
    dimensions, and added across roles: flipping a residual dimension of one
    model flips that dimension's contribution of every role at once, so the
    per-dimension totals have random signs under the null however the roles
    of a model are aligned with each other (q with k, v with o, up with down,
    as trained models are). The self-normalised sum of the totals
    (`stats.sign_flip_log10p`), or the exact sign count where nearly every
    dimension is positive (`stats.sum_or_count_log10p`), is the layer's
    p-value; Fisher's method across roles, which assumed them independent
    (simulated: at correlation 0.5 a nominal 1e-6 is 4.8e-6), is not used.

    A model of hidden size h cannot give that test more than 2^-h. Where the
    candidate's layer has units that flip on their own (`cand.units`: a gated
    MLP's units, the value dimensions), the same is done per unit, with raw
    products (a flip changes their sign exactly): each role's per-unit sums
    scaled to unit norm and added within its group (up with down, v with o),
    one sign-flip test over the groups' units. The layer pair's p-value is
    the smaller of the two tests, Bonferroni over the two; each is valid
    under its own symmetry, whatever the other does.
    """
    lc, lr = cand.layers, ref.layers
    sim = np.zeros((lc, lr))
    count = np.zeros((lc, lr), dtype=int)
    totals: dict[tuple, np.ndarray] = {}
    unit_totals: dict[tuple, np.ndarray] = {}
    rel: dict[tuple[int, int], dict[str, float]] = {}
    roles = sorted({name for _, name in cand.sketches} & {name for _, name in ref.sketches})
    # A norm folded into the matrices after it is compared through them: rescaling
    # between the two is function-preserving, so the norm alone may differ.
    folded_norms_compared = any(r in roles for r in PRECEDING_NORM)
    for role in roles:
        c_layers = [i for i in range(lc) if (i, role) in cand.sketches]
        r_layers = [j for j in range(lr) if (j, role) in ref.sketches]
        shape_groups: dict[tuple, tuple[list[int], list[int]]] = {}
        for i in c_layers:
            shape_groups.setdefault(cand.shapes[(i, role)], ([], []))[0].append(i)
        for j in r_layers:
            if ref.shapes[(j, role)] in shape_groups:
                shape_groups[ref.shapes[(j, role)]][1].append(j)
        for shape, (ci, rj) in shape_groups.items():
            if not ci or not rj:
                continue
            a = np.stack([cand.sketches[(i, role)] for i in ci])
            b = np.stack([ref.sketches[(j, role)] for j in rj])
            r = correlation_matrix(a, b)
            matrix = len(shape) == 2
            sums = dimension_sums(a, b, (clusters or sketch_clusters)(shape, role)) if matrix else None
            unit_of = [cand.units.get((i, role)) for i in ci]
            found = next((u for u in unit_of if u is not None), None)
            unit_sums = dimension_sums(a, b, found[1], centre=False) if matrix and found is not None else None
            diff = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1) / np.maximum(np.linalg.norm(b, axis=-1)[None, :], 1e-30)
            for x, i in enumerate(ci):
                for y, j in enumerate(rj):
                    # Norm weights of different layers of one model correlate
                    # (shared outlier dimensions), so only matrices decide which
                    # layer matches which; norms still enter the identity check.
                    if sums is not None:
                        sim[i, j] += r[x, y]
                        count[i, j] += 1
                        _add_role(totals, (i, j), sums[x, y])
                        if unit_sums is not None and unit_of[x] is not None:
                            _add_role(unit_totals, (i, j, unit_of[x][0]), unit_sums[x, y])
                    if role not in FOLDED_NORMS or not folded_norms_compared:
                        rel.setdefault((i, j), {})[role] = float(diff[x, y])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_sim = np.where(count > 0, sim / np.maximum(count, 1), 0.0)
    log10p = np.zeros((lc, lr))
    for (i, j), total in totals.items():
        log10p[i, j] = sum_or_count_log10p(total)
        groups = [unit_totals[(i, j, g)] for g in sorted(set(UNIT_FLIP_GROUPS.values())) if (i, j, g) in unit_totals]
        if groups:
            # Bonferroni over the two; where that reaches one, the residual test's own p (>= 0.5 then, as in
            # `stats.sum_or_count_log10p`: no test at a level below 0.5 changes)
            combined = min(log10p[i, j], sum_or_count_log10p(np.concatenate(groups))) + math.log10(2.0)
            log10p[i, j] = combined if combined < 0 else log10p[i, j]
    return LayerSimilarity(mean_sim, np.maximum(log10p, LOG10P_FLOOR), count, rel)


def _add_role(totals: dict[tuple, np.ndarray], pair: tuple, sums: np.ndarray) -> None:
    """Add one role's per-dimension sums, scaled to unit norm (a sign-invariant scale), to a layer pair's totals."""
    scale = float(np.linalg.norm(sums))
    if scale == 0:
        return
    found = totals.get(pair)
    if found is None or found.shape[0] < sums.shape[0]:
        grown = np.zeros(sums.shape[0] if found is None else max(found.shape[0], sums.shape[0]))
        if found is not None:
            grown[:found.shape[0]] = found
        totals[pair] = found = grown
    found[:sums.shape[0]] += sums / scale


def dimension_sums(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, centre: bool = True) -> np.ndarray:
    """(rows of a, rows of b, clusters): products of the rows (centred unless `centre` is False) summed per
    cluster index."""
    if centre:
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
    clusters = np.asarray(clusters, dtype=np.int64)
    width = int(clusters.max()) + 1 if clusters.size else 0
    order = np.argsort(clusters, kind="stable")
    sorted_clusters = clusters[order]
    starts = np.flatnonzero(np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]])
    out = np.zeros((a.shape[0], b.shape[0], width))
    out[:, :, sorted_clusters[starts]] = np.add.reduceat(a[:, None, order] * b[None, :, order], starts, axis=-1)
    return out


def layer_map(cand: Fingerprint, ref: Fingerprint, view):
    """Best reference layer for every candidate layer; `view` (a `views.SampleView`) picks what is compared
    (sketches, or row samples)."""
    cv, rv = view.layer_view(cand), view.layer_view(ref)
    ls = layer_similarity(cv, rv, clusters=view.clusters)
    rows = []
    for i in range(cv.layers):
        if ls.roles[i].max(initial=0) == 0:
            rows.append(LayerMatch(i, None, 0.0, 1.0, 0.0, 0))
            continue
        # Layers of one model correlate with each other (shared outlier dimensions in
        # norms and folded matrices), so p-values of several pairs can saturate: the
        # best partner is the most similar one, and its p-value is then reported.
        j = int(np.argmax(np.where(ls.roles[i] > 0, ls.similarity[i], -np.inf)))
        corrected = bonferroni_log10p(float(ls.log10p[i, j]), rv.layers)
        rows.append(LayerMatch(i, j if corrected < LAYER_MATCH_LOG10P else None, round(float(ls.similarity[i, j]), 4),
                               p_from_log10(corrected), round(corrected, 2), int(ls.roles[i, j]),
                               dict(ls.rel_errors.get((i, j), {})), view.via, best_reference_layer=j))
    matrix = {"similarity": np.round(ls.similarity, 4).tolist(), "log10_p": np.round(ls.log10p, 2).tolist(),
              "roles": ls.roles.astype(int).tolist()} if cv.layers and rv.layers else None
    return rows, rv.layers, matrix


def layer_evidence(rows: list[LayerMatch], reference_layers: int, what: str, on: str = "") -> list[Evidence]:
    """The layer map as one evidence entry: how many layers matched, and the strongest layer, corrected over the
    reference layers searched and then over the candidate's layers. `what` names the compared samples."""
    if not rows:
        return []
    if not any(r.roles or r.via != "none" for r in rows):
        return [Evidence.not_compared(f"layer weights ({what}, norms folded)",
                                      f"none of the candidate's {len(rows)} layers has a reference layer with "
                                      f"tensors of the same shapes ({reference_layers} reference layers)")]
    matched = sum(1 for r in rows if r.reference_layer is not None)
    best = min(rows, key=lambda r: r.log10_p)
    strongest = layer_evidence_log10p(rows)
    return [Evidence(
        f"layer weights ({what}, norms folded)", best.similarity, strongest,
        f"{matched} of {len(rows)} candidate layers match a reference layer at p < 1e-6{on} "
        f"(per layer, sign-flip tests over residual dimensions and, where they flip on their own, over the "
        f"layer's units, Bonferroni over the two, then over {reference_layers} reference layers); strongest layer "
        f"{best.candidate_layer} {format_p(best.log10_p)}, {format_p(strongest)} after Bonferroni over "
        f"{len(rows)} candidate layers")]


class LayerSketches(Signal):
    """The first layer map; its evidence is the final map (after every signal placed what it could), with the
    identity check's entries on it (experts matched as a set)."""

    name = "layer weights"
    null = ("the models were trained independently, so one model's weights are as likely with the sign of any "
            "residual dimension, or of any unit a layer flips on its own, flipped")

    def measure(self, pair: Pair) -> SignalResult:
        rows, reference_layers, matrix = layer_map(pair.cand, pair.ref, pair.view)
        return SignalResult(layers=tuple(rows), measured=reference_layers, layer_matrix=matrix)

    def report(self, pair: Pair, result: SignalResult) -> list[Evidence]:
        return (layer_evidence(list(pair.rows), result.measured, pair.view.what, on=pair.view.on)
                + list(pair.map_evidence))
