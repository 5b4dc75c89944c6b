"""`provenance audit`: compare one candidate with every reference and rank the explanations.

The candidate is fingerprinted once; each reference is a stored fingerprint
(built-in ones shipped in `provenance/references/`, and the user's database),
so the cost per reference is one fingerprint-to-fingerprint comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from .compare import Comparison
from .compare import compare_fingerprints
from .fingerprint import Fingerprint, load_fingerprint

SCHEMA = "provenance.audit/1"
# Most serious explanation first when ranking.
SEVERITY = {"identical": 0, "assembled": 1, "derived": 2, "same-architecture": 3, "unrelated": 4}
SHAPE_RANK = {"same-shapes": 0, "same-family": 1, "same-layers": 1, "different": 2}


@dataclass
class AuditRow:
    reference: str
    origin: str  # "built-in" or the database path
    result: Comparison
    kind: str = "weights"  # or "architecture": a config-only reference (audit_references.py), no weights compared
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific fields added to the row's JSON

    def strongest(self) -> dict[str, Any] | None:
        decisive = [e for e in self.result.evidence if e.decisive and e.log10p is not None]
        if not decisive:
            return None
        return min(decisive, key=lambda e: e.log10p).to_dict()


def builtin_references() -> Iterator[tuple[str, Fingerprint]]:
    yield from _builtin_reference_set()


@lru_cache(maxsize=1)
def _builtin_reference_set() -> tuple[tuple[str, Fingerprint], ...]:
    """Read once per process: a `provenance scan` worker audits many candidates against the same set."""
    folder = resources.files("provenance") / "references"
    loaded = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".fp.safetensors"):
            with resources.as_file(entry) as path:
                loaded.append((entry.name.removesuffix(".fp.safetensors"), load_fingerprint(Path(path))))
    return tuple(loaded)


def run_audit(candidate: Fingerprint, registry=None, include_builtin: bool = True, screen: bool = True) -> list[AuditRow]:
    from .screening import AuditRows

    rows: list[AuditRow] = AuditRows()  # a list that also carries the screening summary
    if include_builtin:
        for name, reference in builtin_references():
            rows.append(AuditRow(name, "built-in", compare_fingerprints(candidate, reference)))
    if registry is not None:
        if candidate.meta.get("variant") == "remote":
            screen = False  # a remote fingerprint has no sketches or unit signatures to screen on: compare with all
        # --- screening (provenance/screening.py): only the shortlist is compared fully ---
        from .screening import screen_registry

        rows.screening = screen_registry(candidate, registry) if screen else None
        names = rows.screening.shortlist if screen else [e.name for e in registry.entries()]
        for name in names:
            reference = registry.fingerprint(name)
            rows.append(AuditRow(name, str(registry.path), compare_fingerprints(candidate, reference)))
        # --- end screening ---
    # --- architecture-only references (config shapes, no weights): provenance/audit_references.py ---
    if include_builtin:
        from .audit_references import architecture_rows

        rows.extend(architecture_rows(candidate))
    # --- end architecture-only references ---
    # Weight rows rank above architecture rows of the same verdict.
    # Among equals, a reference of the candidate's exact shapes explains more than one of its family only.
    rows.sort(key=lambda r: (SEVERITY[r.result.verdict], r.kind != "weights", r.result.abstained,
                             SHAPE_RANK.get(r.result.architecture_match, 3), -r.result.confidence, r.reference))
    return rows


def audit_to_json(candidate_path: str, candidate: Fingerprint, rows: list[AuditRow], registry=None) -> dict[str, Any]:
    from .audit_references import match_tokenizers, vocabulary_brief

    best = rows[0] if rows else None
    return {
        "schema": SCHEMA,
        "candidate": {"path": candidate_path, "format": candidate.meta["source"].get("format"),
                      "architecture": candidate.architecture, "family": candidate.meta.get("family", {}).get("name"),
                      "vocabulary": vocabulary_brief(candidate.meta.get("vocabulary"))},
        "verdict": best.result.verdict if best else None,
        "best_reference": best.reference if best else None,
        "summary": best.result.summary if best else "no references to compare with",
        "best_kind": best.kind if best else None,
        "references": [{"reference": r.reference, "origin": r.origin, "verdict": r.result.verdict,
                        "confidence": r.result.confidence, "abstained": r.result.abstained,
                        "summary": r.result.summary, "strongest_evidence": r.strongest(), "kind": r.kind, **r.extra}
                       for r in rows],
        # Tokenizer evidence (audit_references.py): never part of a weights verdict.
        "tokenizers": match_tokenizers(candidate.meta.get("vocabulary")),
        "database": {"path": str(registry.path), "revision": registry.revision} if registry is not None else None,
        # screening (provenance/screening.py): database references screened, and which were compared fully
        "screening": rows.screening.to_dict() if getattr(rows, "screening", None) is not None else None,
    }


def render_audit(report: dict[str, Any], width: int | None = None) -> str:
    """The audit as text for a terminal `width` columns wide (default: the terminal's): long cells wrap at word
    boundaries onto continuation lines, so nothing is cut off mid-number."""
    from .report.terminal import fit, terminal_width, wrap

    width = width or terminal_width()
    lines = []
    if report["verdict"] in ("identical", "derived", "assembled"):
        lines.append(f"verdict: {report['verdict'].upper()} of {report['best_reference']}")
    else:
        vs = "as" if report.get("best_kind") == "architecture" else "vs"
        lines.append(f"verdict: no reference explains these weights (best: {report['verdict']} {vs} {report['best_reference']})")
    lines.extend(wrap(report["summary"], width, indent=2))
    name_width = min(32, max([len("reference")] + [len(r["reference"]) for r in report["references"]]))
    head = f"{fit('reference', name_width):<{name_width}} {'verdict':<18} {'conf':>5}  "
    room = width - len(head)
    below = room < 30  # a narrow terminal: each row's evidence goes on the lines under it
    lines.append(head.rstrip() if below else head + "strongest evidence")
    for r in report["references"]:
        e = r["strongest_evidence"]
        evidence = f"{e['signal']}: {e['detail']}" if e else "-"
        evidence = r["summary"] if r.get("kind") == "architecture" else evidence
        flag = " (abstained)" if r["abstained"] else ""
        row = f"{fit(r['reference'], name_width):<{name_width}} {r['verdict'] + flag:<18} {r['confidence']:>5.2f}"
        if below:
            lines.append(row)
            lines.extend(wrap(evidence, width, indent=4))
            continue
        cells = wrap(evidence, room) or ["-"]
        lines.append(f"{row}  {cells[0]}")
        lines.extend(" " * len(head) + cell for cell in cells[1:])
    if report.get("screening"):  # screening (provenance/screening.py)
        s = report["screening"]
        lines.extend(wrap(f"database: {s['references']} references screened, {s['compared']} compared fully, "
                          f"{s['not_compared']} not compared (outside the screening shortlist)", width))
    if "tokenizers" in report:
        from .audit_references import tokenizer_line

        lines.extend(wrap(tokenizer_line(report["tokenizers"], report["candidate"].get("vocabulary")), width))
    return "\n".join(lines)
