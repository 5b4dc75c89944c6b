"""The five verdicts and their groupings, written out once.

Every other module imports the names from here rather than spelling them
(`tests/test_structure.py` enforces it). This module imports nothing but the
standard library, so the command line's light modules (`gate.py`) can use it
without pulling in numpy. The rules that choose a verdict are in
`compare/verdict.py`.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    """The five verdicts. A str subclass: compares equal to its name and serialises as it in JSON."""

    IDENTICAL = "identical"  # the reference's weights, up to renaming, casting or re-layout
    DERIVED = "derived"  # descends from the reference (fine-tuned, quantized, pruned, merged)
    ASSEMBLED = "assembled"  # built from reference layers (repeated, reordered, or from several sources)
    SAME_ARCHITECTURE = "same-architecture"  # the reference's architecture, no weight signal at the accusation bar
    UNRELATED = "unrelated"  # neither the architecture nor the weights match

    @property
    def accusing(self) -> bool:
        """Whether the verdict says the weights come from the reference (a claim a company may be judged by)."""
        return self in ACCUSING

    def __str__(self) -> str:
        return self.value


# Every verdict's name, in the order the help and the schemas list them.
VERDICT_NAMES: tuple[str, ...] = tuple(v.value for v in Verdict)
# The verdicts that claim the weights come from the reference.
ACCUSING: tuple[Verdict, ...] = (Verdict.IDENTICAL, Verdict.DERIVED, Verdict.ASSEMBLED)
# Ranking of an audit's explanations, most serious first (0); an assembly ranks above a plain derivation.
SEVERITY: dict[str, int] = {v.value: rank for rank, v in enumerate(
    (Verdict.IDENTICAL, Verdict.ASSEMBLED, Verdict.DERIVED, Verdict.SAME_ARCHITECTURE, Verdict.UNRELATED))}

__all__ = ["ACCUSING", "SEVERITY", "VERDICT_NAMES", "Verdict"]
