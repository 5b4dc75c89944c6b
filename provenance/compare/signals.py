"""The measurements a comparison is made of, each returned with its null-hypothesis p-value.

- `layer_similarity`: for every candidate layer i and reference layer j, the
  correlation of the sketches of each shared role (norm weights folded into
  the matrices that follow them, so rescaling between a norm and the next
  linear layer changes nothing), tested as one sign-flip statistic per layer
  pair that sums every role's contribution per residual dimension, and one
  that sums them per MLP unit and value dimension (Bonferroni over the two);
- `unit_matching`: MLP units matched on half of their signature projections,
  then tested on the other half, which survives any permutation of units
  (the idea of Zhu et al., "Independence Tests for Language Models", 2025,
  with a held-out test in place of their Spearman statistic);
- `anchor_embeddings`: embedding rows of tokens shared by *string*;
- `global_tensors`: embedding, output head, final norm and other non-layer tensors;
- screening-only signals (per-layer std curves, vocabulary overlap) that are
  reported but never decide a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats as st
from scipy.optimize import linear_sum_assignment

from ..architectures.roles import (PRECEDING_NORM, WRITES_RESIDUAL, CanonicalKey, Role, has_gated_mlp, in_layer, key_name,
                                    norm_scale)
from ..fingerprint import Fingerprint, Part, array_name
from ..fingerprint.sketch import sketch_positions
from .stats import (LOG10P_FLOOR, clustered_log10p, correlation_matrix, pearson, sign_flip_log10p, standardise,
                    sum_or_count_log10p, whiten, whitening_transform)

FOLDED_NORMS = set(PRECEDING_NORM.values())


@dataclass(frozen=True)
class LayerView:
    """Sketch rows of one fingerprint grouped as layer -> role -> values."""

    layers: int
    sketches: dict[tuple[int, str], np.ndarray]
    shapes: dict[tuple[int, str], tuple[int, ...]]
    # (layer, role) -> (group, the unit each sampled value belongs to): see `unit_flip_clusters`
    units: dict[tuple[int, str], tuple[str, np.ndarray]] = field(default_factory=dict)


def norm_scale_of_layer(fp: Fingerprint, layer: int, norm_role: str) -> np.ndarray | None:
    values = fp.part_array(Part.VECTORS, key_name(norm_role, layer))
    if values is None:
        return None
    return norm_scale(values, fp.architecture.get("norm_type"))


def sketch_sample(fp: Fingerprint, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A tensor's sketch as float64 (None when absent or too small to correlate)."""
    values = fp.part_array(Part.VECTORS if len(shape) == 1 else Part.SKETCHES, key)
    if values is None or values.size < 4:  # a zero-sized tensor (or nearly) has nothing to correlate
        return None
    return values.astype(np.float64)


def sketch_columns(shape: tuple[int, ...]) -> np.ndarray:
    """The column of every value of a matrix's sketch."""
    return sketch_positions(shape) % shape[1]


def sketch_rows(shape: tuple[int, ...]) -> np.ndarray:
    """The row of every value of a matrix's sketch."""
    return sketch_positions(shape) // shape[1]


# Roles whose units flip together without changing the function, and the group each belongs to.
UNIT_FLIP_GROUPS = {Role.MLP_UP: "mlp", Role.MLP_DOWN: "mlp", Role.ATTN_V: "attn", Role.ATTN_O: "attn"}


def unit_flip_clusters(architecture: dict, role: str, shape: tuple[int, ...], gated: bool, rows: np.ndarray,
                       columns: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The unit of one model each sampled value of a layer matrix belongs to, for a sign-flip null per unit.

    Null: the models were trained independently, so one model's weights are
    as likely with any of these units' signs flipped, each flip leaving the
    function unchanged: a gated MLP's unit (its up row with its down column,
    since act(gate) * up * down is odd in up and down together; a non-gated
    MLP is not, GELU is not odd) and a value dimension (a row of v with the
    columns of o it feeds in every query head of its KV group; attention is
    linear in the values). Such units are a layer's own: flips in different
    layers are independent of each other and of the residual sign flips.
    None where the role has no such unit or the shapes do not fit the heads.
    """
    group = UNIT_FLIP_GROUPS.get(role)
    if group is None or len(shape) != 2 or (group == "mlp" and not gated):
        return None
    if group == "mlp":
        return group, (rows if role == Role.MLP_UP else columns)
    heads, kv = int(architecture.get("num_heads") or 0), int(architecture.get("num_kv_heads") or 0)
    head_dim = int(architecture.get("head_dim") or 0) or (int(architecture.get("hidden_size") or 0) // max(heads, 1))
    if heads <= 0 or kv <= 0 or head_dim <= 0 or heads % kv:
        return None
    if role == Role.ATTN_V:
        return (group, rows) if shape[0] == kv * head_dim else None
    if shape[1] != heads * head_dim:
        return None
    head, within = columns // head_dim, columns % head_dim
    return group, (head // (heads // kv)) * head_dim + within


def layer_view(fp: Fingerprint, sample: Callable = sketch_sample, columns: Callable = sketch_columns,
               rows: Callable = sketch_rows) -> LayerView:
    """Per layer and role, the sampled values with the preceding norm folded into matrices that read it.

    `sample(fp, key, shape)` gives a tensor's flattened sample (default: its sketch; remote comparisons
    pass the row sample's), `columns(shape)` and `rows(shape)` the column and row of each sampled matrix
    value.
    """
    sketches, shapes = {}, {}
    layers = 0
    for key, record in fp.tensors.items():
        parsed = CanonicalKey.parse(key)
        if parsed is None or parsed.layer is None:
            continue
        layer, expert, role, param = parsed.layer, parsed.expert, parsed.role, parsed.param
        if expert is not None and expert != 0:
            continue  # expert 0 stands for the layer's experts
        shape = tuple(record["shape"])
        values = sample(fp, key, shape)
        if values is None:
            continue
        values = values.reshape(-1)
        norm_role = PRECEDING_NORM.get(role)
        if norm_role and param == "weight" and len(shape) == 2:
            scale = norm_scale_of_layer(fp, layer, norm_role)
            if scale is not None and scale.shape[0] == shape[1]:
                values = values * scale[columns(shape)]
        name = role if param == "weight" else f"{role}.bias"
        sketches[(layer, name)] = values
        shapes[(layer, name)] = shape
        layers = max(layers, layer + 1)
    gated = {layer for layer, name in sketches if name == Role.MLP_GATE}
    units = {}
    for (layer, name), shape in shapes.items():
        if name in UNIT_FLIP_GROUPS and len(shape) == 2:
            found = unit_flip_clusters(fp.architecture, name, shape, layer in gated, rows(shape), columns(shape))
            if found is not None and found[1].size == sketches[(layer, name)].size:
                units[(layer, name)] = found
    return LayerView(layers, sketches, shapes, units)


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


def sketch_clusters(shape: tuple[int, ...], role: str = "") -> np.ndarray:
    """Cluster of each sketch position: the residual dimension it lies in.

    Null: the models were trained independently, so one model's weights are as
    likely as with the sign of any residual dimension flipped (RMSNorm,
    attention and MLPs commute with it; LayerNorm's centring only
    approximately). Such a flip changes the sign of a column of every matrix
    reading the residual stream and of a row of every matrix writing to it, so
    per-dimension sums of products have random signs. Matrices: the column for
    readers (and embeddings, heads), the row for writers (`WRITES_RESIDUAL`);
    vectors: each position its own cluster.
    """
    positions = sketch_positions(tuple(shape))
    if len(shape) != 2:
        return positions
    return positions // shape[1] if role.split(".bias")[0] in WRITES_RESIDUAL else positions % shape[1]


def clustered_log10p_matrix(a: np.ndarray, b: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """`clustered_log10p` for every row of a against every row of b (same positions)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    order = np.argsort(clusters, kind="stable")
    sorted_clusters = clusters[order]
    starts = np.flatnonzero(np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]])
    products = a[:, None, order] * b[None, :, order]
    sums = np.add.reduceat(products, starts, axis=-1)
    total = sums.sum(axis=-1)
    scale = np.sqrt((sums * sums).sum(axis=-1))
    count = np.count_nonzero(sums, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, total / scale, 0.0)
    logp = st.t.logsf(z, np.maximum(count - 1, 1)) / np.log(10.0)
    return np.where(count >= 3, np.maximum(logp, LOG10P_FLOOR), 0.0)


def rotation_identity_errors(cand: Fingerprint, ref: Fingerprint) -> list[float] | None:
    """Per layer, the largest relative difference of the units' residual-space Gram matrices.

    Equal Gram matrices for every role of every layer mean equal weights up to a
    rotation of the residual basis. This is a deterministic identity check, not
    a test: Gram matrices of independently trained models share structure, so a
    similarity between them has no null we can trust, and only near-equality
    (which independent models never reach) is used.
    """
    layers = int(cand.architecture.get("num_layers") or 0)
    if layers == 0 or layers != int(ref.architecture.get("num_layers") or -1):
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
class TensorSignal:
    name: str
    correlation: float
    log10p: float
    n: int
    rel_error: float


def global_tensors(cand: Fingerprint, ref: Fingerprint, sample: Callable = sketch_sample,
                   columns: Callable = sketch_columns,
                   clusters: Callable[[tuple[int, ...]], np.ndarray] = sketch_clusters) -> list[TensorSignal]:
    """Non-layer tensors with equal keys and shapes (embedding by id, head, final norm ...).

    The output head is compared with the final norm folded in, so rescaling
    between the two changes nothing; the final norm then only enters the
    identity check through the head. `sample`, `columns` and `clusters` say
    what is compared (default: sketches; remote comparisons pass row samples).
    """
    found = []
    head_folded = False
    for key, record in cand.tensors.items():
        if in_layer(key):
            continue
        other = ref.tensors.get(key)
        if other is None or other["shape"] != record["shape"]:
            continue
        shape = tuple(record["shape"])
        x, y = sample(cand, key, shape), sample(ref, key, shape)
        if x is None or y is None or x.size < 4:
            continue
        x, y = x.reshape(-1), y.reshape(-1)
        if key == key_name(Role.LM_HEAD) and len(shape) == 2:
            scale_c, scale_r = final_norm_scale(cand), final_norm_scale(ref)
            if scale_c is not None and scale_r is not None and scale_c.shape[0] == scale_r.shape[0] == shape[1]:
                where = columns(shape)
                x, y = x * scale_c[where], y * scale_r[where]
                head_folded = True
        r, log10p = clustered_log10p(x, y, clusters(shape))
        rel = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
        found.append(TensorSignal(key, r, log10p, x.size, rel))
    if head_folded:
        found = [TensorSignal(g.name, g.correlation, g.log10p, g.n, 0.0) if g.name == key_name(Role.FINAL_NORM) else g
                 for g in found]
    return found


def final_norm_scale(fp: Fingerprint) -> np.ndarray | None:
    values = fp.part_array(Part.VECTORS, key_name(Role.FINAL_NORM))
    if values is None:
        return None
    values = values.astype(np.float64)
    return norm_scale(values, fp.architecture.get("norm_type"))


def anchor_embeddings(cand: Fingerprint, ref: Fingerprint, role: str = Role.EMBED) -> TensorSignal | None:
    """Embedding rows of anchor tokens present in both vocabularies, aligned by string."""
    cv, rv = cand.meta.get("vocabulary"), ref.meta.get("vocabulary")
    a, b = cand.part_array(Part.ANCHORS, role), ref.part_array(Part.ANCHORS, role)
    if not cv or not rv or a is None or b is None or a.shape[1] != b.shape[1]:
        return None
    c_index = {t: i for i, t in enumerate(cv["anchor_tokens"][: a.shape[0]])}
    r_index = {t: i for i, t in enumerate(rv["anchor_tokens"][: b.shape[0]])}
    shared = [t for t in c_index if t in r_index]
    if len(shared) < 8:
        return None
    x = a[[c_index[t] for t in shared]].astype(np.float64)
    y = b[[r_index[t] for t in shared]].astype(np.float64)
    rel = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
    # Centre each hidden dimension (embeddings share a mean direction) and treat
    # each hidden dimension as one cluster: rows of one token are not independent.
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    columns = np.tile(np.arange(x.shape[1]), (x.shape[0], 1))
    r, log10p = clustered_log10p(x.reshape(-1), y.reshape(-1), columns.reshape(-1))
    return TensorSignal(f"{role} rows of {len(shared)} anchor tokens shared by string", r, log10p, x.size, rel)


def std_curve_correlation(cand: Fingerprint, ref: Fingerprint) -> float | None:
    """Correlation of per-layer std of attention matrices: a screening signal only.

    Independent models reach 0.9 on this (the Pangu/Qwen dispute), so it is
    reported for context and never used to decide.
    """
    def curve(fp: Fingerprint) -> list[float]:
        values = []
        for layer in range(int(fp.architecture.get("num_layers") or 0)):
            stds = [fp.tensors.get(key_name(role, layer), {}).get("stats", {}).get("std")
                    for role in (Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O)]
            if all(isinstance(s, float) for s in stds):
                values.extend(stds)
        return values

    a, b = curve(cand), curve(ref)
    if len(a) != len(b) or len(a) < 8:
        return None
    return pearson(np.asarray(a), np.asarray(b))


def vocabulary_overlap(cand: Fingerprint, ref: Fingerprint) -> float | None:
    """Estimated Jaccard similarity of the two vocabularies (MinHash): screening only."""
    cv, rv = cand.meta.get("vocabulary"), ref.meta.get("vocabulary")
    if not cv or not rv or not cv.get("minhash") or not rv.get("minhash"):
        return None
    a, b = np.asarray(cv["minhash"], dtype=object), np.asarray(rv["minhash"], dtype=object)
    size = min(len(a), len(b))
    return float(np.mean([a[i] == b[i] for i in range(size)]))


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
    lc, lr = int(cand.architecture.get("num_layers") or 0), int(ref.architecture.get("num_layers") or 0)
    gated = has_gated_mlp(cand.tensors) and has_gated_mlp(ref.tensors)
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
    arch = cand.architecture
    heads, kv_heads = int(arch.get("num_heads") or 0), int(arch.get("num_kv_heads") or arch.get("num_heads") or 0)
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
    if any(key_name(Role.MLP_GATE, layer_c, param=param) in cand.tensors for param in ("weight", "bias")):
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
