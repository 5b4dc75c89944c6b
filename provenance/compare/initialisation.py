"""Whether a relation between two models is explained by a shared standard initialisation rather than by copying.

Two models created with the same code and seed share their initial weights,
and training keeps part of them: the layer test then finds the two related,
though neither team copied the other. For each common seed
(`fingerprint.initial.COMMON_SEEDS`) the family's default initialisation is
regenerated and fingerprinted; when every layer of *both* models is related
to the same initialisation (each layer in its place below the layer bar),
the initialisation's part is taken out of each model's sketches (the least-
squares multiple of the initial values, per layer and role) and what each
model changed from it is compared, layer by layer in place, with the same
per-layer sign-flip test. Unrelated changes: the relation is the shared
initialisation. Related changes: a shared trained ancestor, or training
from one initialisation on similar data, which the weights cannot tell
apart; the comparison then says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fingerprint import Fingerprint
from ..fingerprint.initial import COMMON_SEEDS, initial_fingerprint
from .signals import LayerView, layer_similarity, layer_view
from .stats import bonferroni_log10p
from .thresholds import LAYER_MATCH_LOG10P

InitMaker = Callable[[dict, "str | None", int], "Fingerprint | None"]


@dataclass(frozen=True)
class SharedInitialisation:
    seed: int
    candidate_log10p: float  # the weakest layer's relation to the initialisation (in place, uncorrected)
    reference_log10p: float
    changes_log10p: float  # the strongest layer's relation between the two models' changes, Bonferroni over layers

    @property
    def changes_related(self) -> bool:
        return self.changes_log10p < LAYER_MATCH_LOG10P


def _weakest_in_place(view: LayerView, init: LayerView) -> float:
    found = layer_similarity(view, init)
    layers = min(view.layers, init.layers)
    if layers == 0 or not all(found.roles[i, i] > 0 for i in range(layers)):
        return 0.0
    return max(float(found.log10p[i, i]) for i in range(layers))


def _changes(view: LayerView, init: LayerView) -> LayerView:
    """Each sketch minus its least-squares multiple of the initialisation's sketch (same positions)."""
    sketches = {}
    for key, values in view.sketches.items():
        start = init.sketches.get(key)
        if start is None or start.shape != values.shape:
            continue
        scale = float(values @ start / max(float(start @ start), 1e-30))
        sketches[key] = values - scale * start
    return LayerView(view.layers, sketches, {k: view.shapes[k] for k in sketches})


def shared_initialisation(cand: Fingerprint, ref: Fingerprint,
                          make: InitMaker = initial_fingerprint) -> SharedInitialisation | None:
    """The common seed whose default initialisation both models keep, with how their changes from it relate
    (None: equal depths and shapes are needed, and no initialisation both keep was found or could be made)."""
    layers = int(cand.architecture.get("num_layers") or 0)
    if not layers or layers != int(ref.architecture.get("num_layers") or -1):
        return None
    family = (cand.meta.get("family") or {}).get("name")
    view_c, view_r = layer_view(cand), layer_view(ref)
    for seed in COMMON_SEEDS:
        init_fp = make(cand.architecture, family, seed)
        if init_fp is None:
            return None
        init = layer_view(init_fp)
        p_c, p_r = _weakest_in_place(view_c, init), _weakest_in_place(view_r, init)
        if p_c < LAYER_MATCH_LOG10P and p_r < LAYER_MATCH_LOG10P:
            changes = layer_similarity(_changes(view_c, init), _changes(view_r, init))
            in_place = [float(changes.log10p[i, i]) for i in range(layers) if changes.roles[i, i] > 0]
            strongest = bonferroni_log10p(min(in_place), len(in_place)) if in_place else 0.0
            return SharedInitialisation(seed, p_c, p_r, strongest)
    return None


def describe(found: SharedInitialisation) -> str:
    """The finding in plain words."""
    start = (f"both models keep the default initialisation of this architecture under seed {found.seed} "
             f"(every layer of each is related to it in place; weakest layer {_p(found.candidate_log10p)} and "
             f"{_p(found.reference_log10p)})")
    if not found.changes_related:
        return (f"{start}, and what each changed from it shows no relation ({_p(found.changes_log10p)} after "
                "Bonferroni over layers): the relation between them is a shared initialisation (one seed and one "
                "init code), not copied weights")
    return (f"{start}, and their changes from it are related too ({_p(found.changes_log10p)}): a shared trained "
            "ancestor explains this, and so may training from one initialisation on similar data; the weights "
            "cannot tell these apart")


def _p(log10p: float) -> str:
    return f"p = 1e{math.floor(log10p)}" if log10p > -300 else "p < 1e-300"


def weak_relation(similarities: list[float]) -> bool:
    """Whether matched layers correlate weakly enough (mean below 0.5) that a shared initialisation might explain
    them; a fine-tune or a quantized copy correlates near 1 and is not checked (regenerating costs time) unless
    both models' weights still look like an initialisation (the engine checks that too)."""
    return bool(similarities) and float(np.mean(similarities)) < 0.5
