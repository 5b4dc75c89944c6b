"""The `provenance.audit/1` JSON object of an `AuditResult` (schemas/audit.schema.json).

`audit --json`, each line of `scan`, the attestation's predicate and the
Python API's `audit_json` all print this one object.
"""

from __future__ import annotations

from typing import Any

from ..audit.result import SCHEMA, AuditResult
from ..audit.tokenizer_references import vocabulary_brief


def audit_to_json(result: AuditResult) -> dict[str, Any]:
    """The `provenance.audit/1` object."""
    candidate, best = result.candidate, result.best
    return {
        "schema": SCHEMA,
        "candidate": {"path": result.candidate_path, "format": candidate.source.format,
                      "architecture": candidate.architecture, "family": candidate.family.name,
                      "vocabulary": vocabulary_brief(candidate.vocabulary.to_dict() if candidate.vocabulary else None)},
        "verdict": best.result.verdict if best else None,
        "best_reference": best.reference if best else None,
        "summary": best.result.summary if best else "no references to compare with",
        "best_kind": best.kind if best else None,
        "references": [{"reference": r.reference, "origin": r.origin, "verdict": r.result.verdict,
                        "confidence": r.result.confidence, "abstained": r.result.abstained,
                        "summary": r.result.summary, "strongest_evidence": r.strongest(), "kind": r.kind, **r.extra}
                       for r in result.rows],
        # Tokenizer evidence (tokenizer_references.py): never part of a weights verdict.
        "tokenizers": list(result.tokenizers),
        "database": dict(result.database) if result.database is not None else None,
        # screening (shortlist.py): database references screened, and which were compared fully
        "screening": result.screening.to_dict() if result.screening is not None else None,
        # declared against detected lineage (lineage_check.py): result is one of five words
        "lineage": result.lineage.to_dict() if result.lineage is not None else None,
        # what was covered and what a weights audit cannot see (scope.py)
        "scope": result.scope.to_dict() if result.scope is not None else None,
    }
