"""Non-layer tensors by id: embedding, output head, final norm and other tensors outside the blocks.

Compared when both sides hold the key with the same shape, on sketches or
row samples (`views.SampleView`). The output head is compared with the final
norm folded in, so rescaling between the two changes nothing; the final norm
then only enters the identity check through the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...architectures.roles import Role, in_layer, key_name, norm_scale
from ...fingerprint import Fingerprint, Part
from ..results import Evidence
from ..sketches import sketch_clusters, sketch_columns, sketch_sample
from ..stats import clustered_log10p, format_p
from ..thresholds import LAYER_MATCH_LOG10P, identity_tolerance
from .base import Pair, Signal, SignalResult


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
    for key, record in cand.records.items():
        if in_layer(key):
            continue
        other = ref.records.get(key)
        if other is None or other.shape != record.shape:
            continue
        shape = record.shape
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
    return norm_scale(values, fp.arch.norm_type)


class NonLayerTensors(Signal):
    name = "non-layer tensors by id"
    null = ("the models were trained independently, so one model's weights are as likely with the sign of any "
            "residual dimension flipped (each dimension one cluster of the sign-flip test)")

    def measure(self, pair: Pair) -> SignalResult:
        cand, view = pair.cand, pair.view

        def stored_dtype(fp, name: str) -> str | None:
            return fp.records[name].dtype if name in fp.records else None
        found = global_tensors(cand, pair.ref, sample=view.sample, columns=view.columns, clusters=view.clusters)

        def sampled(name: str) -> bool:
            return view.sampled and len(cand.records[name].shape) == 2

        evidence = tuple(Evidence(f"{g.name} (by id{', sampled rows' if sampled(g.name) else ''})", g.correlation,
                                  g.log10p, f"correlation of {g.n} sampled values, {format_p(g.log10p)}") for g in found)
        return SignalResult(
            evidence, measured=found,
            within_storage=all(
                g.rel_error <= identity_tolerance(cand.records[g.name].dtype, stored_dtype(pair.ref, g.name))
                for g in found),
            shared_keys=tuple(g.name for g in found if g.log10p <= LAYER_MATCH_LOG10P),
            embedding_log10p=tuple(g.log10p for g in found if g.name.split(".")[0] in (Role.EMBED, Role.LM_HEAD)))
