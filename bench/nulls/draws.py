"""Every decisive signal's raw p-values for one independent pair: the adapters over the engine's public names.

Each adapter turns one public signal of `provenance.compare` into a list of
`Draw`s (log10 p before any selection or correction). Under the null (the
two models were generated independently) every draw is a uniform p-value,
so the share below alpha should be alpha. Draws of one pair are dependent
(cells of one layer map share layers), which widens the spread of the
shares but not their expectation.

If the engine changes, only this file should need updating, as long as the
names below and their return types stay:
- `sketches.layer_view`, `signals.layers.layer_similarity` (`.log10p`, `.roles`):
  every candidate x reference layer cell with compared roles;
- `signals.units.unit_matching` (`.log10p`): every layer pair of equal unit count;
- `signals.non_layer.global_tensors` (`.name`, `.log10p`): non-layer tensors by id;
- `signals.anchors.anchor_embeddings` (`.log10p`): anchor rows by token string;
- `signals.gram.gram_layer_tests` (`.log10p`, `.cluster_sums`, `.pooled_log10p`): the rotation-invariant
  Gram test of every layer pair, and at equal depth the test pooled over every layer in its place;
- `unit_responses.response_test` (`.log10p`, `.clusters`), `unit_responses.response_layers`
  (`.pooled_log10p`): MLP units matched through their anchor-token responses (rotation- and
  permutation-invariant), every layer pair, and at equal depth the test pooled over every layer in its place;
- `views.row_layer_view`, `views.row_clusters`: the row-sample layer map;
  `views.row_unit_matching`: sampled units of a remote side against a local one;
  `compare_fingerprints` with a remote side (which compares row samples): non-layer
  tensors of the row-sample view (its evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from provenance.compare import compare_fingerprints
from provenance.compare import sketches
from provenance.compare.signals import anchors, gram, non_layer, units
from provenance.compare.signals import layers as layer_signal
from provenance.compare import unit_responses as U
from provenance.compare import views as R
from provenance.fingerprint import Fingerprint, Part
from provenance.fingerprint.store import ROW_READ_PARTS
from provenance.fingerprint.sketch import row_sample_rows

ACCUSING = ("identical", "derived", "assembled")


@dataclass(frozen=True)
class Draw:
    signal: str
    log10p: float
    where: str  # which cell, layer pair or tensor


def layer_sketch(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    found = layer_signal.layer_similarity(sketches.layer_view(cand), sketches.layer_view(ref))
    return [Draw("layer sketch", float(found.log10p[i, j]), f"{i},{j}") for i, j in zip(*np.nonzero(found.roles > 0))]


def unit_matching(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    draws = []
    for i, j in _unit_pairs(cand, ref):
        match = units.unit_matching(cand, ref, i, j)
        if match is not None:
            draws.append(Draw("unit matching", float(match.log10p), f"{i},{j}"))
    return draws


def _unit_pairs(cand: Fingerprint, ref: Fingerprint) -> list[tuple[int, int]]:
    """Every (candidate layer, reference layer) whose MLP unit signatures have one shape."""
    pairs = []
    for i in range(_layers(cand)):
        a = cand.part_array(Part.UNIT_SIGNATURES, i, "mlp.up")
        for j in range(_layers(ref)):
            b = ref.part_array(Part.UNIT_SIGNATURES, j, "mlp.up")
            if a is not None and b is not None and a.shape == b.shape:
                pairs.append((i, j))
    return pairs


def gram_tests(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    """The rotation test: every layer pair, and at equal depth the pooled identity-map test (what the engine
    uses to find a rotated copy, so an independent model must not pass it)."""
    tests = gram.gram_layer_tests(cand, ref)
    if tests is None:
        return []
    draws = [Draw("Gram (rotation) layer pair", float(tests.log10p[i, j]), f"{i},{j}") for i, j in tests.cluster_sums]
    layers = _layers(cand)
    if layers and layers == _layers(ref):
        pooled = tests.pooled_log10p([(i, i) for i in range(layers)])
        draws.append(Draw("Gram (rotation) pooled, equal depth", float(pooled), "identity map"))
    return draws


def anchor_responses(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    """The units' anchor-response test of every layer pair (a draw per pair, uncorrected)."""
    draws = []
    for i in range(_layers(cand)):
        for j in range(_layers(ref)):
            found = U.response_test(cand, ref, i, j)
            if found is not None:
                draws.append(Draw("anchor responses layer pair", float(found.log10p), f"{i},{j}"))
    return draws


def anchor_responses_pooled(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    """At equal depth, the pooled test over every layer in its place: what the engine uses to place a rotated and
    permuted copy, so an independent model must not pass it."""
    layers = _layers(cand)
    found = U.response_layers(cand, ref, list(range(layers))) if layers and layers == _layers(ref) else None
    return [] if found is None else [Draw("anchor responses pooled, equal depth", float(found.pooled_log10p),
                                          "identity map")]


def global_tensors(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    return [Draw("global tensors", float(g.log10p), g.name) for g in non_layer.global_tensors(cand, ref)]


def anchor_rows(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    found = anchors.anchor_embeddings(cand, ref)
    return [] if found is None else [Draw("anchor rows", float(found.log10p), found.name)]


def remote_layer_rows(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    found = layer_signal.layer_similarity(R.row_layer_view(cand), R.row_layer_view(ref), clusters=R.row_clusters)
    return [Draw("remote row sample", float(found.log10p[i, j]), f"{i},{j}")
            for i, j in zip(*np.nonzero(found.roles > 0))]


def remote_unit_matching(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    """The candidate read remotely (its sampled `mlp.up` rows) against the local reference, every layer pair."""
    remote = remote_variant(cand)
    draws = []
    for i, j in _unit_pairs(cand, ref):
        match = R.row_unit_matching(remote, ref, i, j)
        if match is not None:
            draws.append(Draw("remote unit matching", float(match.log10p), f"{i},{j}"))
    return draws


_LAST_REMOTE: list = []  # (cand, ref, comparison) of the last remote comparison: verdicts() and the adapter share it


def _remote_comparison(cand: Fingerprint, ref: Fingerprint):
    if _LAST_REMOTE and _LAST_REMOTE[0] is cand and _LAST_REMOTE[1] is ref:
        return _LAST_REMOTE[2]
    result = compare_fingerprints(remote_variant(cand), ref)  # a remote side: compared on row samples
    _LAST_REMOTE[:] = [cand, ref, result]
    return result


def remote_global_tensors(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    """Non-layer tensors compared on row samples, read off the remote comparison's evidence."""
    result = _remote_comparison(cand, ref)
    return [Draw("remote global tensors", float(e.log10p), e.signal) for e in result.evidence
            if "(by id" in e.signal and e.log10p is not None]


PAIR_SIGNALS = (layer_sketch, unit_matching, gram_tests, anchor_responses, anchor_responses_pooled, global_tensors,
                anchor_rows, remote_layer_rows, remote_unit_matching, remote_global_tensors)
# One draw (or a few) per pair, cheap: also run over every compatible pair of the pool.
POOL_SIGNALS = (global_tensors, anchor_rows, anchor_responses_pooled)


def verdicts(cand: Fingerprint, ref: Fingerprint) -> dict[str, dict]:
    """The local verdict and the verdict with the candidate read remotely, each with its strongest evidence."""
    found = {}
    for view, result in (("local", compare_fingerprints(cand, ref)),
                         ("remote", _remote_comparison(cand, ref))):
        decisive = [e.log10p for e in result.evidence if e.decisive and e.log10p is not None]
        via = [row.via for row in result.layers if row.reference_layer is not None]
        found[view] = {"verdict": result.verdict, "abstained": bool(result.abstained),
                       "strongest_log10p": round(min(decisive, default=0.0), 2), "summary": result.summary,
                       "matched_layers_by_unit_matching": sum(1 for v in via if "matched MLP units" in v),
                       "matched_layers": len(via)}
    return found


def remote_variant(fp: Fingerprint) -> Fingerprint:
    """The "remote" fingerprint a reader over HTTP would build from the same checkpoint.

    It is the part of the local fingerprint the remote builder reads
    (`provenance.fingerprint.row_blocks`): row samples, 1-D tensors whole, anchor
    rows, and the sampled `mlp.up` rows' unit signatures (`rowunits/`, the
    rows of `units/` at the row sample's rows: the same projections of the
    same rows); matrices keep their shape but no hash or statistics.
    """
    tensors = {}
    arrays = {}
    for key, record in fp.tensors.items():
        shape = tuple(record["shape"])
        if len(shape) == 2:
            tensors[key] = {k: v for k, v in record.items() if k not in ("sha256", "stats")} | {"sha256": None}
            if f"rows/{key}" in fp.arrays:
                arrays[f"rows/{key}"] = fp.arrays[f"rows/{key}"]
        else:
            tensors[key] = dict(record)
            if f"sketch/{key}" in fp.arrays:
                arrays[f"sketch/{key}"] = fp.arrays[f"sketch/{key}"]
    for name, values in fp.arrays.items():
        if name.startswith("anchors/"):
            arrays[name] = values
        elif name.startswith("units/") and name.endswith("/mlp.up"):
            layer = name.split("/")[1]
            shape = tuple(fp.tensors.get(f"layers.{layer}.mlp.up.weight", {}).get("shape", values.shape))
            arrays[f"rowunits/{layer}/mlp.up"] = values[row_sample_rows(shape)]
    meta = dict(fp.meta)
    meta.update({"variant": "remote", "parts": sorted(part.value for part in ROW_READ_PARTS), "tensors": tensors,
                 "stored_tensors": {}})  # as `fingerprint.row_blocks` builds
    return Fingerprint(meta=meta, arrays=arrays)


def _layers(fp: Fingerprint) -> int:
    return int(fp.architecture.get("num_layers") or 0)


def pair_draws(cand: Fingerprint, ref: Fingerprint) -> list[Draw]:
    draws = []
    for adapter in PAIR_SIGNALS:
        draws.extend(adapter(cand, ref))
    return draws
