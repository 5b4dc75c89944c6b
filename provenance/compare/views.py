"""What a comparison compares, chosen from the parts both fingerprints hold (`fingerprint.Part`).

A fingerprint built from whole tensors holds sketches of every matrix and
every MLP unit's signature; one built from row blocks read by HTTP range
requests (the "remote" variant, `provenance.remote`) holds only, per matrix,
the row sample (32 rows in 4 shape-seeded blocks, 256 shape-seeded columns of
each), the sampled `mlp.up` rows' signatures, 1-D tensors whole and anchor
rows. Every fingerprint made from whole tensors holds the same row samples, so:
- `sample_view`: layers and non-layer tensors are compared on sketches when
  both sides hold them, else on row samples, tested like the sketches are:
  values clustered by the hidden coordinate two independent models do not
  share (`row_clusters`), sign-flip / t null (`stats.clustered_log10p`);
  `tests/test_remote.py` checks that independent row samples give uniform
  p-values;
- `unit_view`: permuted MLP units are matched on every unit's signature when
  both sides hold them, else a side's sampled `mlp.up` signatures are placed
  among every unit of the other side (`row_unit_matching`), else not at all.
On row samples, "identical" means every layer's sampled rows and 1-D tensors
agree within the rounding of the candidate's stored dtype; permuted attention
heads, a rotated residual basis (Gram matrices need every row) and changes
confined to rows outside the sample are not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..architectures.roles import WRITES_RESIDUAL, Role
from ..fingerprint import Fingerprint, Part, array_name
from ..fingerprint.sketch import row_sample_columns, row_sample_rows
from .signals.units import UnitMatch, unit_matching
from .sketches import LayerView, layer_view, sketch_clusters, sketch_columns, sketch_rows, sketch_sample


def row_clusters(shape: tuple[int, ...], role: str = "") -> np.ndarray:
    """Cluster of each value of a flattened row sample: its residual dimension (the column for
    matrices reading the residual stream, the row for those writing to it; see
    `sketches.sketch_clusters`). Vectors: as their sketches."""
    if len(shape) != 2:
        return sketch_clusters(shape)
    rows, columns = row_sample_rows(shape), row_sample_columns(shape)
    if role.split(".bias")[0] in WRITES_RESIDUAL:
        return np.repeat(rows, len(columns))
    return np.tile(columns, len(rows))


def row_sample(fp: Fingerprint, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A matrix's row sample (None when absent or of another shape), a vector whole, as float64."""
    if len(shape) == 2:
        values = fp.part_array(Part.ROW_SAMPLES, key)
        expected = (len(row_sample_rows(shape)), len(row_sample_columns(shape)))
        return None if values is None or values.shape != expected else np.nan_to_num(values.astype(np.float64))
    if len(shape) == 1:
        values = fp.part_array(Part.VECTORS, key)
        return None if values is None else values.astype(np.float64)
    return None


def row_sample_value_columns(shape: tuple[int, ...]) -> np.ndarray:
    """The column of every value of a flattened row sample."""
    return np.tile(row_sample_columns(shape), len(row_sample_rows(shape)))


def row_sample_value_rows(shape: tuple[int, ...]) -> np.ndarray:
    """The row of every value of a flattened row sample."""
    return np.repeat(row_sample_rows(shape), len(row_sample_columns(shape)))


@dataclass(frozen=True)
class SampleView:
    """The samples layers and non-layer tensors are compared on: `sample(fp, key, shape)` a tensor's flattened
    values, `columns(shape)` and `rows(shape)` the column and row of each matrix value, `clusters(shape, role)`
    each value's cluster."""

    via: str  # how a layer map row was found ("sketch", "row sample")
    what: str  # the layer evidence's name for the compared samples
    on: str  # appended to the layer evidence's detail
    sample: Callable
    columns: Callable
    clusters: Callable
    sampled: bool  # rows sampled by a range read, not a whole-tensor sketch
    rows: Callable = sketch_rows

    def layer_view(self, fp: Fingerprint) -> LayerView:
        """`sketches.layer_view` on these samples."""
        return layer_view(fp, sample=self.sample, columns=self.columns, rows=self.rows)


SKETCHES = SampleView("sketch", "sketch correlation", "", sketch_sample, sketch_columns, sketch_clusters, False)
ROW_SAMPLES = SampleView("row sample", "row-sample correlation", " on sampled rows", row_sample,
                         row_sample_value_columns, row_clusters, True, row_sample_value_rows)


def row_layer_view(fp: Fingerprint) -> LayerView:
    """Like `sketches.layer_view`, from row samples (matrices) and whole vectors (norms, biases)."""
    return ROW_SAMPLES.layer_view(fp)


def sample_view(shared: frozenset[Part]) -> SampleView:
    """Sketches when both sides hold them, else row samples (a side without them is reported by the engine)."""
    return SKETCHES if Part.SKETCHES in shared else ROW_SAMPLES


def row_unit_matching(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int) -> UnitMatch | None:
    """Permuted MLP units: one side's sampled `mlp.up` signatures against every unit of the other side.

    The held-out test of `signals.units.unit_matching` (match on 16 projections,
    test on the other 16) with the sampled rows as the units to place. Needs
    one side with full signatures (`Part.UNIT_SIGNATURES`).
    """
    sampled_c = cand.part_array(Part.SAMPLED_UNIT_SIGNATURES, layer_c, Role.MLP_UP)
    full_r = ref.part_array(Part.UNIT_SIGNATURES, layer_r, Role.MLP_UP)
    sampled_r = ref.part_array(Part.SAMPLED_UNIT_SIGNATURES, layer_r, Role.MLP_UP)
    full_c = cand.part_array(Part.UNIT_SIGNATURES, layer_c, Role.MLP_UP)
    if sampled_c is not None and full_r is not None:
        a, b = sampled_c, full_r
    elif sampled_r is not None and full_c is not None:
        a, b = sampled_r, full_c
    else:
        return None
    # the sampled side holds 32 units, too few to estimate its covariance (see unit_matching)
    name = array_name(Part.UNIT_SIGNATURES, 0, Role.MLP_UP)
    match = unit_matching(Fingerprint({}, {name: a}), Fingerprint({}, {name: b}), 0, 0, sampled_candidate=True)
    if match is None:
        return None
    return UnitMatch(layer_c, layer_r, match.correlation, match.log10p, match.units, match.rel_error)


@dataclass(frozen=True)
class UnitView:
    """How MLP units are matched: `match(cand, ref, layer_c, layer_r)`; `sampled` when one side's units are a
    row sample."""

    match: Callable[[Fingerprint, Fingerprint, int, int], UnitMatch | None]
    sampled: bool


EVERY_UNIT = UnitView(unit_matching, False)
SAMPLED_UNITS = UnitView(row_unit_matching, True)


def unit_view(cand: Fingerprint, ref: Fingerprint) -> UnitView | None:
    """Every unit on both sides, else one side's sampled units against the other's, else None."""
    if cand.holds(Part.UNIT_SIGNATURES) and ref.holds(Part.UNIT_SIGNATURES):
        return EVERY_UNIT
    for sampled, full in ((cand, ref), (ref, cand)):
        if sampled.holds(Part.SAMPLED_UNIT_SIGNATURES) and full.holds(Part.UNIT_SIGNATURES):
            return SAMPLED_UNITS
    return None
