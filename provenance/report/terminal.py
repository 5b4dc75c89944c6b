"""Plain-text rendering of command results for a person at a terminal."""

from __future__ import annotations

import re
import shutil
import textwrap
from collections import defaultdict
from typing import Any

from ..architectures.roles import LAYER_ROLES


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    numbers = sorted(set(numbers))
    parts, start, prev = [], None, None
    for n in numbers + [None]:  # type: ignore[list-item]
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    return ", ".join(parts)


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render_inspect(report: dict[str, Any]) -> str:
    arch = report["architecture"]
    lines = [f"{report['path']}  ({report['format']})"]
    family = report["family"]
    lines.append(f"family: {family['name'] or 'unknown'}  [{family['reason']}]")
    shown = ["num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
             "vocab_size", "max_positions", "position_scheme", "rope_theta", "norm_type", "norm_eps",
             "activation", "tied_embeddings", "attention_bias", "mlp_bias", "num_experts", "experts_per_token",
             "expert_intermediate_size"]
    lines.append(f"architecture (from {arch['source']}):")
    values = [f"{name}={arch[name]}" for name in shown if arch.get(name) is not None]
    for i in range(0, len(values), 4):
        lines.append("  " + "  ".join(values[i:i + 4]))
    for disagreement in arch["disagreements"]:
        lines.append(f"  ! disagreement: {disagreement}")
    t = report["tensors"]
    dtypes = ", ".join(f"{k} x{v}" for k, v in sorted(t["dtypes"].items()))
    lines.append(f"tensors: {t['count']} stored, {t['parameters']:,} parameters, {_human_bytes(t['bytes'])} ({dtypes})")

    groups: dict[tuple, list] = defaultdict(list)
    order: list[tuple] = []
    for role in report["roles"]:
        label = role["label"]
        base = label.split(" / ")[-1]
        expert = "expert" in label
        key = (base, expert, tuple(role["shape"]), role["stored_dtype"], role["how"], role["transform"])
        if key not in groups:
            order.append(key)
        layer = next((int(p.split()[1]) for p in label.split(" / ") if p.startswith("layer ")), None)
        groups[key].append((layer, role))
    lines.append("roles:")
    for key in order:
        base, expert, shape, dtype, how, transform = key
        members = groups[key]
        layers = [layer for layer, _ in members if layer is not None]
        per_layer = base in LAYER_ROLES or base.removesuffix(" (bias)") in LAYER_ROLES
        where = f"layers {_ranges(layers)}" if layers else ("layer ?" if per_layer else "")
        count = f" x{len(members)}" if len(members) > 1 and not layers else ""
        extra = f"  [{transform}]" if transform != "as stored" else ""
        tag = "" if how == "table" else f"  ({how}"
        if how == "inferred":
            conf = min(r["confidence"] for _, r in members)
            tag += f", confidence {conf:.2f}"
        tag += ")" if tag else ""
        expert_note = " (per expert)" if expert else ""
        lines.append(f"  {base:<22} {where:<16}{count} {str(list(shape)):<16} {dtype}{expert_note}{extra}{tag}")
    if report["renamed_tensors"]:
        lines.append("renamed tensors (differ from the family's standard spelling):")
        for r in report["renamed_tensors"]:
            used_by = f"  [spelling used by {r['used_by']}]" if r.get("used_by") else ""
            lines.append(f"  {r['tensor']}  ->  standard {r['standard']}  ({r['role']}){used_by}")
    if report["inferred_count"]:
        lines.append(f"{report['inferred_count']} roles were inferred from structure (names unknown to every family table);"
                     " see --json for each one's clue and confidence")
    if report["unmapped_tensors"]:
        lines.append(f"unmapped tensors ({len(report['unmapped_tensors'])}): {', '.join(report['unmapped_tensors'][:8])}")
    if report["lineage_claims"]:
        lines.append("self-reported lineage (unverified claims, not evidence):")
        for claim in report["lineage_claims"]:
            lines.append(f"  {claim['where']}: {claim['value']}")
    lines.append("files:")
    for f in report["files"]:
        digest = f"  sha256 {f['sha256']}" if "sha256" in f else ""
        lines.append(f"  {f['path']}  {_human_bytes(f['bytes'])}{digest}")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def render_fingerprint(report: dict[str, Any]) -> str:
    """`provenance inspect FINGERPRINT`: a saved fingerprint described, not read as a checkpoint."""
    fp, source, arch = report["fingerprint"], report["source"], report["architecture"]
    lines = [f"{report['path']}  (provenance fingerprint {fp['schema']}, tool {fp['tool_version']}, "
             f"created {fp['created']}, variant {fp['variant']})",
             f"made from: {source['path']}  ({source['format']}, {len(source['files'])} files)",
             f"family: {report['family']['name'] or 'unknown'}"]
    shown = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size")
    lines.append("architecture: " + "  ".join(f"{k}={arch[k]}" for k in shown if arch.get(k) is not None))
    lines.append(f"tensors: {report['tensors']['canonical']} canonical ({report['tensors']['stored']} stored), "
                 f"{fp['arrays']} arrays, {_human_bytes(fp['array_bytes'])}")
    if report["vocabulary"]:
        lines.append(f"vocabulary: {report['vocabulary']['kind']}, {report['vocabulary']['size']} tokens")
    if report["lineage_claims"]:
        lines.append("self-reported lineage (unverified claims, not evidence):")
        lines.extend(f"  {c['where']}: {c['value']}" for c in report["lineage_claims"])
    for note in report["notes"]:
        lines.append(f"note: {note}")
    lines.append("compare and audit read this file as it is; fingerprinting it again would describe nothing")
    return "\n".join(lines)


def terminal_width(default: int = 120) -> int:
    """Columns of the terminal on stdout ($COLUMNS first); `default` when stdout is not a terminal."""
    return max(60, shutil.get_terminal_size((default, 24)).columns)


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters at a word boundary, with an ellipsis: never mid-number or mid-word."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    cut = text[:width - 1]
    space = cut.rfind(" ")
    if space >= width // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:(") + "…"


def wrap(text: str, width: int, indent: int = 0) -> list[str]:
    """`text` as lines of at most `width` characters, broken at spaces (a word longer than a line stays whole;
    `p < 1e-6` and `p = 0.4` stay on one line)."""
    kept = re.sub(r"\bp ([<=>]) ", "p\u00a0\\1\u00a0", text)  # textwrap never breaks at a no-break space
    lines = textwrap.wrap(kept, width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                          break_long_words=False, break_on_hyphens=False)
    return [line.replace("\u00a0", " ") for line in lines]
