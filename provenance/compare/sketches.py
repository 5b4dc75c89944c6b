"""A fingerprint's sampled values grouped per layer and role, and the clusters a sign-flip null groups them in.

`layer_view` gives, per layer and role, the sketch (or, through
`views.SampleView`, the row sample) with the preceding norm folded into the
matrices that read it; `sketch_clusters` the residual dimension of each
sampled value, `unit_flip_clusters` the unit of one model it belongs to
(a gated MLP's unit, a value dimension). The layer signal
(`signals/layers.py`), the remote views (`views.py`) and the audit's role
profiles (`audit/details.py`) read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats as st

from ..architectures.descriptor import Architecture
from ..architectures.roles import PRECEDING_NORM, WRITES_RESIDUAL, CanonicalKey, Role, key_name, norm_scale
from ..fingerprint import Fingerprint, Part
from ..fingerprint.sketch import sketch_positions
from .stats import LOG10P_FLOOR


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
    return norm_scale(values, fp.arch.norm_type)


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


def unit_flip_clusters(architecture: Architecture, role: str, shape: tuple[int, ...], gated: bool, rows: np.ndarray,
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
    heads, kv = int(architecture.num_heads or 0), int(architecture.num_kv_heads or 0)
    head_dim = int(architecture.head_dim or 0) or (int(architecture.hidden_size or 0) // max(heads, 1))
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
    for key, record in fp.records.items():
        parsed = CanonicalKey.parse(key)
        if parsed is None or parsed.layer is None:
            continue
        layer, expert, role, param = parsed.layer, parsed.expert, parsed.role, parsed.param
        if expert is not None and expert != 0:
            continue  # expert 0 stands for the layer's experts
        shape = record.shape
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
            found = unit_flip_clusters(fp.arch, name, shape, layer in gated, rows(shape), columns(shape))
            if found is not None and found[1].size == sketches[(layer, name)].size:
                units[(layer, name)] = found
    return LayerView(layers, sketches, shapes, units)


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
