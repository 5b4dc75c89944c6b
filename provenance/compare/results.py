"""Typed results of a comparison: the evidence entries and the comparison itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stats import p_from_log10
from .verdict import Verdict


@dataclass
class Evidence:
    signal: str
    value: float
    log10p: float | None
    detail: str
    decisive: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "value": round(float(self.value), 6),
                "p_value": None if self.log10p is None else p_from_log10(self.log10p),
                "log10_p": None if self.log10p is None else round(float(self.log10p), 2),
                "detail": self.detail, "decisive": self.decisive}


@dataclass
class Comparison:
    verdict: Verdict | str  # a Verdict from the engine; a plain string compares equal
    confidence: float
    summary: str
    evidence: list[Evidence]
    layers: list[dict[str, Any]]
    renamed: list[dict[str, Any]]
    architecture_match: str
    abstained: bool = False
    notes: list[str] = field(default_factory=list)
    # Every candidate layer against every reference layer (rows x columns), for reports:
    # {"similarity": mean sketch correlation over shared roles, "log10_p": Fisher-combined
    # log10 p before the Bonferroni correction, "roles": roles compared (0: not compared)}.
    layer_matrix: dict[str, list[list[float]]] | None = None
