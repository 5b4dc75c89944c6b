"""`provenance audit`: compare one candidate with every reference and rank the explanations.

The candidate is fingerprinted once; each reference is a stored fingerprint
(built-in ones shipped in `provenance/references/`, and the user's database),
so the cost per reference is one fingerprint-to-fingerprint comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from .compare import Comparison, compare_fingerprints
from .fingerprint import Fingerprint, load_fingerprint

SCHEMA = "provenance.audit/1"
# Most serious explanation first when ranking.
SEVERITY = {"identical": 0, "assembled": 1, "derived": 2, "same-architecture": 3, "unrelated": 4}


@dataclass
class AuditRow:
    reference: str
    origin: str  # "built-in" or the database path
    result: Comparison

    def strongest(self) -> dict[str, Any] | None:
        decisive = [e for e in self.result.evidence if e.decisive and e.log10p is not None]
        if not decisive:
            return None
        return min(decisive, key=lambda e: e.log10p).to_dict()


def builtin_references() -> Iterator[tuple[str, Fingerprint]]:
    folder = resources.files("provenance") / "references"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".fp.safetensors"):
            with resources.as_file(entry) as path:
                yield entry.name.removesuffix(".fp.safetensors"), load_fingerprint(Path(path))


def run_audit(candidate: Fingerprint, registry=None, include_builtin: bool = True) -> list[AuditRow]:
    rows: list[AuditRow] = []
    if include_builtin:
        for name, reference in builtin_references():
            rows.append(AuditRow(name, "built-in", compare_fingerprints(candidate, reference)))
    if registry is not None:
        for entry in registry.entries():
            reference = registry.fingerprint(entry.name)
            rows.append(AuditRow(entry.name, str(registry.path), compare_fingerprints(candidate, reference)))
    rows.sort(key=lambda r: (SEVERITY[r.result.verdict], r.result.abstained, -r.result.confidence, r.reference))
    return rows


def audit_to_json(candidate_path: str, candidate: Fingerprint, rows: list[AuditRow], registry=None) -> dict[str, Any]:
    best = rows[0] if rows else None
    return {
        "schema": SCHEMA,
        "candidate": {"path": candidate_path, "format": candidate.meta["source"].get("format"),
                      "architecture": candidate.architecture, "family": candidate.meta.get("family", {}).get("name")},
        "verdict": best.result.verdict if best else None,
        "best_reference": best.reference if best else None,
        "summary": best.result.summary if best else "no references to compare with",
        "references": [{"reference": r.reference, "origin": r.origin, "verdict": r.result.verdict,
                        "confidence": r.result.confidence, "abstained": r.result.abstained,
                        "summary": r.result.summary, "strongest_evidence": r.strongest()} for r in rows],
        "database": {"path": str(registry.path), "revision": registry.revision} if registry is not None else None,
    }


def render_audit(report: dict[str, Any]) -> str:
    lines = []
    if report["verdict"] in ("identical", "derived", "assembled"):
        lines.append(f"verdict: {report['verdict'].upper()} of {report['best_reference']}")
    else:
        lines.append(f"verdict: no reference explains these weights (best: {report['verdict']} vs {report['best_reference']})")
    lines.append(f"  {report['summary']}")
    lines.append(f"{'reference':<32} {'verdict':<18} {'conf':>5}  strongest evidence")
    for r in report["references"]:
        e = r["strongest_evidence"]
        evidence = f"{e['signal']}: {e['detail']}" if e else "-"
        flag = " (abstained)" if r["abstained"] else ""
        lines.append(f"{r['reference'][:32]:<32} {r['verdict'] + flag:<18} {r['confidence']:>5.2f}  {evidence[:110]}")
    return "\n".join(lines)
