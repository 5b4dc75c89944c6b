"""`provenance audit`: compare one candidate with every reference and rank the explanations.

The candidate is fingerprinted once; each reference is a stored fingerprint
(built-in ones shipped in `provenance/references/`, and the user's database),
so the cost per reference is one fingerprint-to-fingerprint comparison. A
database is screened first (shortlist.py) and only its shortlist compared
fully; config-only references (config_references.py) add rows of kind
"architecture", and the tokenizer references (tokenizer_references.py) add
tokenizer evidence that is never part of a weights verdict.
"""

from __future__ import annotations

from typing import Any

from ..compare import compare_fingerprints
from ..fingerprint import Fingerprint, Part
from .builtin import builtin_references
from .config_references import architecture_rows
from .rows import AuditRow, AuditRows, rank_key
from .shortlist import screen_registry
from .tokenizer_references import match_tokenizers, tokenizer_line, vocabulary_brief

SCHEMA = "provenance.audit/1"


def run_audit(candidate: Fingerprint, registry=None, include_builtin: bool = True, screen: bool = True) -> list[AuditRow]:
    rows: list[AuditRow] = AuditRows()  # a list that also carries the screening summary
    if include_builtin:
        for name, reference in builtin_references():
            rows.append(AuditRow(name, "built-in", compare_fingerprints(candidate, reference)))
    if registry is not None:
        if not candidate.holds(Part.SKETCHES, Part.UNIT_SIGNATURES):
            screen = False  # no sketches or unit signatures to screen on (rows read remotely): compare with all
        # screening (shortlist.py): only the shortlist is compared fully
        rows.screening = screen_registry(candidate, registry) if screen else None
        names = rows.screening.shortlist if screen else [e.name for e in registry.entries()]
        for name in names:
            reference = registry.fingerprint(name)
            rows.append(AuditRow(name, str(registry.path), compare_fingerprints(candidate, reference)))
    if include_builtin:  # architecture-only references (config shapes, no weights): config_references.py
        rows.extend(architecture_rows(candidate))
    rows.sort(key=rank_key)
    return rows


def audit_to_json(candidate_path: str, candidate: Fingerprint, rows: list[AuditRow], registry=None) -> dict[str, Any]:
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
        # Tokenizer evidence (tokenizer_references.py): never part of a weights verdict.
        "tokenizers": match_tokenizers(candidate.meta.get("vocabulary")),
        "database": {"path": str(registry.path), "revision": registry.revision} if registry is not None else None,
        # screening (shortlist.py): database references screened, and which were compared fully
        "screening": rows.screening.to_dict() if getattr(rows, "screening", None) is not None else None,
    }


def render_audit(report: dict[str, Any], width: int | None = None) -> str:
    """The audit as text for a terminal `width` columns wide (default: the terminal's): long cells wrap at word
    boundaries onto continuation lines, so nothing is cut off mid-number."""
    from ..report.terminal import fit, terminal_width, wrap

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
    if report.get("screening"):  # screening (shortlist.py)
        s = report["screening"]
        lines.extend(wrap(f"database: {s['references']} references screened, {s['compared']} compared fully, "
                          f"{s['not_compared']} not compared (outside the screening shortlist)", width))
    if "tokenizers" in report:
        lines.extend(wrap(tokenizer_line(report["tokenizers"], report["candidate"].get("vocabulary")), width))
    return "\n".join(lines)
