"""The `provenance.compare/1` JSON object (DESIGN section 3), and its terminal summary."""

from __future__ import annotations

from typing import Any

from ..compare import Comparison
from ..fingerprint import Fingerprint
from .terminal import terminal_width, wrap

SCHEMA = "provenance.compare/1"


def _side(path: str, fp: Fingerprint) -> dict[str, Any]:
    return {"path": path, "format": fp.source.format, "source_path": fp.source.path,
            "variant": fp.made.variant,  # "remote": read over HTTP, sampled rows only
            "architecture": fp.architecture, "family": fp.family.name}


def comparison_to_json(candidate_path: str, cand: Fingerprint, reference_path: str, ref: Fingerprint,
                       result: Comparison) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "candidate": _side(candidate_path, cand),
        "reference": _side(reference_path, ref),
        "verdict": result.verdict,
        "confidence": result.confidence,
        "abstained": result.abstained,
        "summary": result.summary,
        "architecture_match": result.architecture_match,
        "evidence": [e.to_dict() for e in result.evidence],
        "layers": [r.to_dict() for r in result.layers],
        "renamed_tensors": result.renamed,
        "notes": result.notes,
        # candidate layers x reference layers: {"similarity", "log10_p" (before correction), "roles"}, or null
        "layer_matrix": result.layer_matrix,
    }


def render_comparison(report: dict[str, Any], width: int | None = None) -> str:
    """The comparison as text for a terminal `width` columns wide (default: the terminal's); long lines wrap."""
    width = width or terminal_width()
    lines = [f"verdict: {report['verdict'].upper()} (confidence {report['confidence']:.2f})"
             + ("  [abstained]" if report["abstained"] else "")]
    lines += wrap(report["summary"], width, indent=2)
    lines += wrap(f"candidate {report['candidate']['path']} vs reference {report['reference']['path']}"
                  f"  (architecture: {report['architecture_match']})", width, indent=2)
    lines.append("evidence:")
    ranked = sorted(report["evidence"], key=lambda e: (not e["decisive"], e["log10_p"] if e["log10_p"] is not None else 0))
    for e in ranked[:10]:
        value = "" if e.get("compared") is False else f"{e['value']:.4g}  "  # "not compared": no value to show
        body = wrap(f"{e['signal']}: {value}{e['detail']}", width - 4)
        lines += ["  - " + body[0]] + ["    " + line for line in body[1:]]
    mapped = [r for r in report["layers"] if r["reference_layer"] is not None]
    if report["layers"]:
        text = ", ".join(f"{r['candidate_layer']}->{r['reference_layer'] if r['reference_layer'] is not None else '-'}"
                         for r in report["layers"][:48])
        lines += wrap(f"layer map ({len(mapped)}/{len(report['layers'])} matched): {text}", width)
    for note in report["notes"]:
        lines += wrap(f"note: {note}", width)
    return "\n".join(lines)
