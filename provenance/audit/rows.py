"""The rows of an audit: one explanation (a reference and its comparison) per row, and how they rank.

`AuditRow` is one per reference (weights or config-only); `run_audit`
returns them ranked by `rank_key` inside an `AuditResult` (result.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..compare import Comparison
from ..verdicts import SEVERITY

SHAPE_RANK = {"same-shapes": 0, "same-family": 1, "same-layers": 1, "different": 2}


@dataclass
class AuditRow:
    reference: str
    origin: str  # "built-in" or the database path
    result: Comparison
    kind: str = "weights"  # or "architecture": a config-only reference (config_references.py), no weights compared
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific fields added to the row's JSON
    source: str = ""  # where the reference's fingerprint was made from, as it recorded it ("" if unknown)

    def strongest(self) -> dict[str, Any] | None:
        decisive = [e for e in self.result.evidence if e.decisive and e.log10p is not None]
        if not decisive:  # a signal that could not run says so, rather than nothing
            skipped = [e for e in self.result.evidence if not e.compared]
            return skipped[0].to_dict() if skipped else None
        return min(decisive, key=lambda e: e.log10p).to_dict()


def rank_key(row: AuditRow) -> tuple:
    """Weight rows rank above architecture rows of the same verdict. Among equals, a reference of the
    candidate's exact shapes explains more than one of its family only."""
    r = row.result
    return (SEVERITY[r.verdict], row.kind != "weights", r.abstained, SHAPE_RANK.get(r.architecture_match, 3),
            -r.confidence, row.reference)
