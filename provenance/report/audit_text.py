"""`provenance audit` as text for a terminal: the verdict, then one row per reference, wrapped to the width."""

from __future__ import annotations

from typing import Any

from ..audit.tokenizer_references import tokenizer_line
from ..verdicts import ACCUSING
from .terminal import fit, terminal_width, wrap
from .text import clean


def render_audit(report: dict[str, Any], width: int | None = None) -> str:
    """The audit (its `provenance.audit/1` object) as text for a terminal `width` columns wide (default: the
    terminal's): long cells wrap at word boundaries onto continuation lines, so nothing is cut off mid-number."""
    width = width or terminal_width()
    lines = []
    if report["verdict"] in ACCUSING:
        lines.append(f"verdict: {report['verdict'].upper()} of {report['best_reference']}")
    else:
        vs = "as" if report.get("best_kind") == "architecture" else "vs"
        lines.append(f"verdict: no reference explains these weights (best: {report['verdict']} {vs} {report['best_reference']})")
    lines.extend(wrap(report["summary"], width, indent=2))
    lines.extend(lineage_lines(report.get("lineage"), width))
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
    for line in scope_lines(report["scope"]) if report.get("scope") else ():  # audit/scope.py
        lines.extend(wrap(line, width))
    return "\n".join(lines)


def lineage_lines(lineage: dict[str, Any] | None, width: int) -> list[str]:
    """Declared against detected lineage (audit/lineage_check.py): the result, why, and how to settle it."""
    if not lineage:
        return []
    lines = wrap(f"lineage: {lineage['result']}: {clean(lineage['reason'], 400)}", width)
    quantization = lineage.get("quantization")
    if quantization:
        lines.extend(wrap(clean(quantization.get("summary"), 300), width, indent=2))
    if lineage.get("settle"):
        lines.extend(wrap(f"to settle it: {clean(lineage['settle'], 200)}", width, indent=2))
    return lines


def scope_lines(scope: dict[str, Any]) -> list[str]:
    """The scope in plain English, for the terminal (the reports word it through report/strings/)."""
    database = (f"{scope['database_compared']} of the {scope['database_total']} in the database"
                if scope["database_total"] else "no database")
    catalog = ("" if scope["catalog_not_in_database"] is None else
               f"; {scope['catalog_not_in_database']} open base models of the catalog are not in the database "
               "(`provenance refs sync` adds them)")
    return [f"scope: weights compared with {scope['references_compared']} references ({scope['builtin_weights']} "
            f"built-in, {database}), architectures with {scope['builtin_architectures']} published "
            f"configurations{catalog}",
            *([f"scope: {scope['not_comparable']} of those references hold no tensor of the candidate's shapes: "
               "their weights could not be compared at all"] if scope.get("not_comparable") else []),
            "scope: \"no reference explains these weights\" means none of these references does, not that the model "
            "is original; a weights audit cannot see " + "; ".join(scope["cannot_see"])]
