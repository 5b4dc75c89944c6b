"""The widths an accused candidate changed, named from the two architectures: residual dimensions and MLP units.

A copy pruned in width (Minitron-style: a subset of residual dimensions and
of MLP units kept, then healed) is found through the rotation-invariant
layer tests, which compare units whatever the residual width; this module
only says, for the summary, what the shapes show once the weights have
shown the relation. The direction follows the verdict (the candidate
descends from the reference): fewer is "pruned", more is "widened".
"""

from __future__ import annotations

from typing import Any


def _width(arch: dict[str, Any], key: str) -> int | None:
    value = arch.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def width_edits(cand_arch: dict[str, Any], ref_arch: dict[str, Any]) -> list[str]:
    """e.g. ["width-pruned: 512 of the reference's 576 residual dimensions", "width-pruned: 1024 of the reference's
    1536 MLP units"]; nothing for mixtures of experts (their MLP width is an expert's: `experts.py` names those)."""
    if cand_arch.get("num_experts") or ref_arch.get("num_experts"):
        keys = (("hidden_size", "residual dimensions"),)
    else:
        keys = (("hidden_size", "residual dimensions"), ("intermediate_size", "MLP units"))
    found = []
    for key, what in keys:
        c, r = _width(cand_arch, key), _width(ref_arch, key)
        if c is None or r is None or c == r:
            continue
        found.append(f"width-pruned: {c} of the reference's {r} {what}" if c < r
                     else f"widened: {c} {what} where the reference has {r}")
    return found
