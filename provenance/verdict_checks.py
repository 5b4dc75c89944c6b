"""Structural checks on a verdict before it is reported: what the fingerprints' shapes rule out.

`identical` means the candidate is the reference up to how it is stored. A
candidate whose canonical tensor is zero-sized (a role emptied, e.g. a layer's
MLP cut to nothing) where the reference's is not cannot be that, however well
its remaining tensors match: such a comparison is reported as `derived`
(pruned) with a note naming the emptied roles. The comparison engine is not
changed; `checked_comparison` wraps its result.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

MAX_NAMED = 5


def _size(record: Any) -> int | None:
    shape = record.get("shape") if isinstance(record, dict) else None
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        return None
    return math.prod(shape)


def emptied_roles(candidate, reference) -> list[str]:
    """Canonical keys that are zero-sized in the candidate and hold values in the reference."""
    found = []
    for key, record in candidate.tensors.items():
        if _size(record) == 0:
            theirs = _size(reference.tensors.get(key))
            if theirs:
                found.append(key)
    return sorted(found)


def check_comparison(candidate, reference, result):
    """The engine's result, with `identical` turned into `derived` when the candidate has emptied roles."""
    if result.verdict != "identical":
        return result
    emptied = emptied_roles(candidate, reference)
    if not emptied:
        return result
    named = ", ".join(emptied[:MAX_NAMED]) + (f" and {len(emptied) - MAX_NAMED} more" if len(emptied) > MAX_NAMED else "")
    note = (f"not identical: {len(emptied)} canonical tensor(s) of the candidate are zero-sized where the reference's "
            f"hold values ({named}); the rest matches the reference, so it is a pruned copy")
    return replace(result, verdict="derived", summary=f"{result.summary}; but {len(emptied)} role(s) are emptied "
                   "(zero-sized) in the candidate: derived (pruned)", notes=[*result.notes, note])


def checked_comparison(candidate, reference):
    """`compare_fingerprints` followed by `check_comparison`: what every caller that reports a verdict uses."""
    from .compare import compare_fingerprints

    return check_comparison(candidate, reference, compare_fingerprints(candidate, reference))
