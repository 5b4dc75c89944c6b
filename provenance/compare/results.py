"""Typed results of a comparison: the evidence entries, the layer map and the comparison itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stats import p_from_log10


@dataclass
class Evidence:
    signal: str
    value: float
    log10p: float | None
    detail: str
    decisive: bool = True
    compared: bool = True  # False: the signal could not run (nothing of matching shape); no value, no p-value

    def to_dict(self) -> dict[str, Any]:
        found = {"signal": self.signal, "value": round(float(self.value), 6),
                 "p_value": None if self.log10p is None else p_from_log10(self.log10p),
                 "log10_p": None if self.log10p is None else round(float(self.log10p), 2),
                 "detail": self.detail, "decisive": self.decisive}
        return found if self.compared else {**found, "compared": False}

    @classmethod
    def not_compared(cls, signal: str, why: str) -> "Evidence":
        """A signal that could not run: it shows "not compared" and why, never a p-value of 1."""
        return cls(signal, 0.0, None, f"not compared: {why}", decisive=False, compared=False)


@dataclass
class LayerMatch:
    """One candidate layer in the layer map: the reference layer it was placed on (None: none), how, and at what
    p-value (corrected for the reference layers or layers searched). The engine fills it in step by step."""

    candidate_layer: int
    reference_layer: int | None
    similarity: float  # mean correlation over the compared roles (or of the test that placed the layer)
    p_value: float
    log10_p: float
    roles: int  # roles compared with the most similar reference layer (0: none)
    rel_errors: dict[str, float] = field(default_factory=dict)  # per role: relative difference from the partner
    via: str = "none"  # the signal that placed the layer, and the transforms the identity check undid
    best_reference_layer: int | None = None  # the most similar reference layer, placed or not (None: none compared)
    tolerances: dict[str, float] = field(default_factory=dict)  # per role: the largest difference still "identical"

    def place(self, reference_layer: int, similarity: float, log10p: float, rel_errors: dict[str, float],
              via: str) -> None:
        """Place the layer on `reference_layer`, found by `via` at `log10p` (already corrected)."""
        self.reference_layer, self.similarity, self.rel_errors, self.via = reference_layer, round(similarity, 4), rel_errors, via
        self.p_value, self.log10_p = p_from_log10(log10p), round(log10p, 2)

    def to_dict(self) -> dict[str, Any]:
        """The `layers` entry of `provenance.compare/1`."""
        return {"candidate_layer": self.candidate_layer, "reference_layer": self.reference_layer,
                "similarity": self.similarity, "p_value": self.p_value, "log10_p": self.log10_p, "via": self.via}


@dataclass
class Comparison:
    verdict: str  # a `verdict.Verdict` (a str enum) from the engine; a plain string compares equal
    confidence: float
    summary: str
    evidence: list[Evidence]
    layers: list[LayerMatch]
    renamed: list[dict[str, Any]]
    architecture_match: str
    abstained: bool = False
    notes: list[str] = field(default_factory=list)
    # Every candidate layer against every reference layer (rows x columns), for reports:
    # {"similarity": mean sketch correlation over shared roles, "log10_p": the layer pair's sign-flip
    # log10 p before the Bonferroni correction, "roles": roles compared (0: not compared)}.
    layer_matrix: dict[str, list[list[float]]] | None = None

    @property
    def weights_compared(self) -> bool:
        """False when every weight signal was "not compared" (no tensor of matching shape), so nothing was measured."""
        return any(e.compared and e.log10p is not None for e in self.evidence) or not any(
            not e.compared for e in self.evidence)
