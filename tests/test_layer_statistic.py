"""The per-layer sign-flip test of `signals.layer_similarity`: valid when a model's roles are aligned with each other.

Flipping a residual dimension of one model flips that dimension in every
role at once, so the roles' evidence is summed per dimension into one test
per layer (Fisher's method over roles assumed the roles independent); a
layer's own units (a gated MLP's up rows with its down columns, value rows
with the output columns they feed) flip on their own, and a second test over
them gives a narrow layer the resolution its residual width cannot.
"""

from __future__ import annotations

import math

import numpy as np

from provenance.compare.signals.layers import layer_similarity
from provenance.architectures.descriptor import Architecture
from provenance.compare.sketches import LayerView, sketch_clusters, sketch_rows, unit_flip_clusters
from provenance.compare.stats import sum_or_count_log10p


def test_layer_statistic_stays_calibrated_when_roles_are_aligned():
    """A model whose q and k sketches are one matrix (roles perfectly aligned): under the null (an independent
    reference) the per-layer p-value must stay uniform; Fisher's method over roles treated the two as
    independent evidence and gave p < 0.01 about twice as often."""
    rng = np.random.default_rng(0)
    shape = (16, 32)
    draws = []
    for _ in range(200):
        shared = rng.standard_normal(shape[0] * shape[1])
        cand = LayerView(1, {(0, "attn.q"): shared, (0, "attn.k"): shared.copy()}, {(0, "attn.q"): shape, (0, "attn.k"): shape})
        ref = LayerView(1, {(0, r): rng.standard_normal(shape[0] * shape[1]) for r in ("attn.q", "attn.k")},
                        {(0, "attn.q"): shape, (0, "attn.k"): shape})
        draws.append(layer_similarity(cand, ref, clusters=lambda s, role: np.tile(np.arange(s[1]), s[0])).log10p[0, 0])
    draws = np.asarray(draws)
    assert 0.02 <= np.mean(draws < np.log10(0.05)) <= 0.09
    assert np.mean(draws < -2) <= 0.025


def _gated_layer(rng, hidden: int, units: int, aligned: bool) -> tuple[LayerView, dict]:
    """One gated layer's up, gate, down, v and o as whole-matrix sketches (tiny shapes are sketched whole), with the
    unit of every value; `aligned`: down is up transposed and o is v transposed (a model's own roles aligned)."""
    arch = Architecture(num_heads=4, num_kv_heads=4, head_dim=hidden // 4, hidden_size=hidden)
    up, gate, v = (rng.standard_normal((units, hidden)), rng.standard_normal((units, hidden)),
                   rng.standard_normal((hidden, hidden)))
    down = up.T.copy() if aligned else rng.standard_normal((hidden, units))
    o = v.T.copy() if aligned else rng.standard_normal((hidden, hidden))
    matrices = {"mlp.up": up, "mlp.gate": gate, "mlp.down": down, "attn.v": v, "attn.o": o}
    sketches = {(0, role): m.reshape(-1) for role, m in matrices.items()}
    shapes = {(0, role): m.shape for role, m in matrices.items()}
    found = {(0, role): unit_flip_clusters(arch, role, m.shape, True, sketch_rows(m.shape),
                                           np.arange(m.size) % m.shape[1]) for role, m in matrices.items()}
    return LayerView(1, sketches, shapes, {k: u for k, u in found.items() if u is not None}), arch


def test_unit_flip_statistic_stays_calibrated_when_roles_are_aligned():
    """Units of a layer that flip without changing the function (a gated MLP's up row with its down column, a
    value row with its output column): a candidate whose down is its up transposed and whose o is its v
    transposed, against independent references. The layer p-value (residual test and unit test, Bonferroni
    over the two) must not fall below alpha more often than alpha."""
    rng = np.random.default_rng(2)
    draws = []
    for _ in range(300):
        cand, _ = _gated_layer(rng, 16, 24, aligned=True)
        ref, _ = _gated_layer(rng, 16, 24, aligned=False)
        assert set(r for _, r in cand.units) == {"mlp.up", "mlp.down", "attn.v", "attn.o"}
        draws.append(layer_similarity(cand, ref, clusters=sketch_clusters).log10p[0, 0])
    draws = np.asarray(draws)
    assert 0.01 <= np.mean(draws < np.log10(0.05)) <= 0.085
    assert np.mean(draws < -2) <= 0.025


def test_units_give_a_narrow_layer_more_than_its_residual_width_allows():
    """A residual sign-flip test cannot give a layer of hidden size 32 more than 2^-32; the layer's own units (48
    MLP units, 32 value dimensions) take a copy with 5% noise below 1e-12 in one layer. A non-gated MLP's units
    do not flip (GELU is not odd), so they are not used."""
    rng = np.random.default_rng(3)
    ref, _ = _gated_layer(rng, 32, 48, aligned=False)
    cand = LayerView(1, {k: v + 0.05 * rng.standard_normal(v.shape) for k, v in ref.sketches.items()},
                     ref.shapes, ref.units)
    residual_only = LayerView(1, cand.sketches, cand.shapes)
    with_units = layer_similarity(cand, ref, clusters=sketch_clusters).log10p[0, 0]
    without = layer_similarity(residual_only, ref, clusters=sketch_clusters).log10p[0, 0]
    assert without > 32 * math.log10(0.5) - 0.5  # the residual bound, 2^-32 (halved twice at most)
    assert with_units < -20
    assert unit_flip_clusters(Architecture(), "mlp.up", (48, 32), False, np.zeros(1536, dtype=int), np.zeros(1536, dtype=int)) is None


def test_sign_count_reaches_far_below_the_t_approximation_for_a_copy():
    rng = np.random.default_rng(1)
    assert sum_or_count_log10p(np.abs(rng.standard_normal(64))) < -17  # every dimension agrees: 2^-64, halved
    uniform = [sum_or_count_log10p(rng.standard_normal(64)) for _ in range(400)]
    assert 0.02 <= np.mean(np.asarray(uniform) < np.log10(0.05)) <= 0.09
