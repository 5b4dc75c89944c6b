"""What a signal is: the fingerprint parts it needs, its null in one sentence, and `measure(pair) -> SignalResult`.

A signal reads the two fingerprints (and the layer map as it stands when its
turn comes, read-only) and returns its evidence entries and the layers it
places; the engine applies the placements in the order of `registry.SIGNALS`,
so a later signal sees what an earlier one placed. The layer map's rows are
never changed by a signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...fingerprint import Fingerprint, Part
from ..results import Evidence, LayerMatch


@dataclass(frozen=True)
class Placement:
    """A candidate layer placed on a reference layer, by `via` at `log10p` (already corrected)."""

    candidate_layer: int
    reference_layer: int
    similarity: float
    log10p: float
    rel_errors: dict[str, float]
    via: str
    tolerances: dict[str, float] | None = None  # the bars the identity check holds the compared roles to, if set


@dataclass(frozen=True)
class SignalResult:
    """What one signal measured: its evidence entries, the layers it placed, its notes, the measurement itself
    (`measured`), and what the decision reads of it (the fields below `measured`)."""

    evidence: tuple[Evidence, ...] = ()
    placements: tuple[Placement, ...] = ()
    notes: tuple[str, ...] = ()
    measured: Any = None
    layers: tuple[LayerMatch, ...] | None = None  # the first map of the candidate's layers (the layer signal only)
    layer_matrix: dict[str, list[list[float]]] | None = None  # every layer pair, for reports (`Comparison.layer_matrix`)
    weights_compared: bool = False  # weights were compared though no entry carries a p-value (exact hashes)
    within_storage: bool = True  # what it compared by id differs by no more than the stored dtype rounds
    shared_keys: tuple[str, ...] = ()  # tensors compared by id that pass the layer-match bar (initialisation check)
    embedding_log10p: tuple[float, ...] = ()  # the embedding's or head's p-values (for naming a vocabulary edit)
    accusing_summary: str | None = None  # a clause an accusing summary adds


@dataclass(frozen=True)
class Pair:
    """The two fingerprints, the parts both hold, what is compared (`view`, `units`) and the layer map so far."""

    cand: Fingerprint
    ref: Fingerprint
    shared: frozenset[Part]
    view: Any  # views.SampleView
    units: Any  # views.UnitView, or None when neither side has unit signatures to match
    rows: tuple[LayerMatch, ...] = ()
    map_evidence: tuple[Evidence, ...] = ()  # what the identity check of the map found (experts matched as a set)


class Signal:
    """One signal: `name`, the parts both fingerprints must hold (`needs`), its null hypothesis in one sentence
    (`null`), and `measure`. `report` gives its evidence once every signal has placed what it could (by
    default what `measure` found)."""

    name: str = ""
    needs: frozenset[Part] = frozenset()
    null: str = ""

    def applies(self, pair: Pair) -> bool:
        return self.needs <= pair.shared

    def measure(self, pair: Pair) -> SignalResult:
        raise NotImplementedError

    def report(self, pair: Pair, result: SignalResult) -> list[Evidence]:
        return list(result.evidence)


def with_placements(rows: tuple[LayerMatch, ...] | list[LayerMatch], placements: tuple[Placement, ...]) -> None:
    """Apply `placements` to the layer map `rows` (the engine's step between two signals)."""
    by_layer = {row.candidate_layer: row for row in rows}
    for placement in placements:
        row = by_layer[placement.candidate_layer]
        row.place(placement.reference_layer, placement.similarity, placement.log10p, placement.rel_errors, placement.via)
        if placement.tolerances is not None:
            row.tolerances = dict(placement.tolerances)
