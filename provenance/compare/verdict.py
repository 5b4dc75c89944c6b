"""From measured signals to one verdict: the decision rules, shared by full and remote comparisons.

Order of the rules (thresholds and their reasons: `thresholds.py`):
1. every stored tensor bit-identical to a reference tensor -> `identical`;
2. no decisive signal below the accusation bar (1e-12, corrected), or none
   beyond a regenerated shared initialisation that both models start from
   (`beyond_init`, `init_regeneration.py`) ->
   `same-architecture` or `unrelated`, abstaining when something is
   significant without reaching the bar; when no weight signal could run
   at all (no tensor of matching shape), the verdict speaks of the
   architecture only, with confidence 0 (CONFIDENCE_NOTHING_COMPARED);
3. the bar is met; with a coherent map of at least two matched layers that
   repeats or reorders reference layers, or that leaves other layers with no
   relation at all -> `assembled`;
4. no layer matched but non-layer tensors (embedding, head) pass the bar ->
   `derived` (shared ancestor or transplanted embeddings), with a note when
   the shared part looks like untrained initialisation noise;
5. fewer than half of the layers matched and no null-like remainder ->
   abstain (weak or conflicting);
6. every layer in place and every difference within what the candidate's
   stored dtype rounds (after function-preserving transforms) -> `identical`;
   otherwise -> `derived`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..verdicts import ACCUSING, Verdict  # the one list of verdicts; re-exported here (compare.verdict.Verdict)
from .results import LayerMatch
from .stats import format_p
from .thresholds import (ACCUSATION_LOG10P, ASSEMBLED_MIN_LAYERS, DERIVED_MIN_LAYER_SHARE, LAYER_MATCH_LOG10P,
                         NULL_LIKE_LOG10P, CONFIDENCE_NOTHING_COMPARED, confidence_for_accusation,
                         confidence_for_no_relation)

__all__ = ["ACCUSING", "DecisionInputs", "Verdict", "decide", "map_text"]


@dataclass
class DecisionInputs:
    """What the rules read: the layer map rows, the strongest corrected decisive p-value, and the identity checks."""

    rows: list[LayerMatch]
    strongest: float  # log10 p of the strongest decisive signal, corrected for the signals it was chosen from
    layer_strongest: float  # log10 p of the strongest layer signal, corrected over candidate and reference layers
    match_kind: str  # architecture_match(): same-shapes, same-family, different
    reference_layers: int
    exact_all: bool = False  # every stored tensor bit-identical
    layers_identical: bool = False  # every layer in place, differences explained by storage
    globals_identical: bool = True  # non-layer tensors explained by storage
    shapes_disagree: tuple[str, ...] = ()  # shape fields both sides state differently (num_kv_heads after pooling)
    same_vocabulary: bool = True
    init_like_shared: bool = False  # the shared non-layer tensors look like untrained initialisation
    explained_by: list[str] = field(default_factory=list)  # transforms the identity needed (permutations, rescalings)
    emptied: list[str] = field(default_factory=list)  # canonical keys zero-sized in the candidate, not in the reference
    weights_compared: bool = True  # some decisive weight signal ran (False: nothing of matching shape to compare)
    # log10 p of the strongest decisive signal once a regenerated shared initialisation is removed from both models,
    # set when that initialisation accounts for every accusing signal (`init_regeneration.py`); None: not found
    beyond_init: float | None = None


def decide(inputs: DecisionInputs, notes: list[str]) -> tuple[Verdict, float, bool, str]:
    """(verdict, confidence, abstained, summary); appends to `notes`."""
    rows, strongest = inputs.rows, inputs.strongest
    n = len(rows)
    matched = [r for r in rows if r.reference_layer is not None]
    if inputs.exact_all and not inputs.emptied:
        return Verdict.IDENTICAL, 1.0, False, "every tensor is bit-identical (as float32) to a reference tensor, whatever its name"
    if inputs.beyond_init is not None:
        strongest = inputs.beyond_init  # a shared random init is no shared training: what remains beyond it decides
    if strongest > ACCUSATION_LOG10P:
        abstained = strongest < LAYER_MATCH_LOG10P
        if abstained:
            notes.append(f"accusation withheld: the strongest signal reaches {format_p(strongest)} after correction, "
                         f"short of the bar of {format_p(ACCUSATION_LOG10P)} every accusing verdict needs")
        if not inputs.weights_compared:
            notes.append("no weight signal could run (no tensor of matching shape): the verdict rests on the "
                         "architecture alone, and says nothing about where the weights come from")
            verdict = Verdict.SAME_ARCHITECTURE if inputs.match_kind != "different" else Verdict.UNRELATED
            how = "matches" if verdict == Verdict.SAME_ARCHITECTURE else "does not match"
            return (verdict, CONFIDENCE_NOTHING_COMPARED, False,
                    f"the architecture {how} the reference; the weights were not compared (no tensor of matching shape)")
        confidence = confidence_for_no_relation(strongest)
        if inputs.beyond_init is not None:
            return (Verdict.SAME_ARCHITECTURE, confidence, abstained,
                    "the architecture matches the reference and both models start from one standard initialisation; "
                    "beyond it no weight signal reaches the accusation bar")
        if inputs.match_kind != "different":
            return (Verdict.SAME_ARCHITECTURE, confidence, abstained,
                    "the architecture matches the reference but no weight signal reaches the accusation bar")
        return Verdict.UNRELATED, confidence, abstained, "neither the architecture nor the weights match the reference"

    refs = [r.reference_layer for r in matched]
    layers_pass = inputs.layer_strongest <= ACCUSATION_LOG10P
    # a layer passes the bar on its own when its p-value, corrected over the candidate's layers too, is below it
    layer_bar = ACCUSATION_LOG10P - math.log10(max(n, 1))
    strong_layers = [r for r in rows if r.reference_layer is not None and r.log10_p <= layer_bar]
    null_layers = [r for r in rows if r.log10_p > NULL_LIKE_LOG10P and (r.roles or r.via != "none")]
    if layers_pass and len(matched) >= ASSEMBLED_MIN_LAYERS and len(strong_layers) >= 1:
        repeated = len(set(refs)) < len(refs)
        if repeated or not _monotone(refs):
            kind = "repeat" if repeated else "reorder"
            return (Verdict.ASSEMBLED, confidence_for_accusation(inputs.layer_strongest, len(matched) / n), False,
                    f"the candidate's layers {kind} reference layers (layer map: {map_text(rows)})")
        if len(strong_layers) >= ASSEMBLED_MIN_LAYERS and null_layers:
            return (Verdict.ASSEMBLED, confidence_for_accusation(inputs.layer_strongest, len(strong_layers) / n), False,
                    f"{len(strong_layers)} layers come from the reference in order, {len(null_layers)} show no relation "
                    f"to it (p > {10 ** NULL_LIKE_LOG10P:g}): a second source")
    if not matched:
        # Non-layer tensors (embedding, head) pass the bar but no block matches.
        if inputs.init_like_shared:
            notes.append("the shared non-layer tensors look like untrained initialisation (near-Gaussian values at the "
                         "initialiser's scale): two teams using one seed and one init code share such an ancestor "
                         "without sharing any training")
        return (Verdict.DERIVED, confidence_for_accusation(strongest, 0.5), False,
                "non-layer tensors (embedding or head) descend from the reference though no block matches")
    if n and len(matched) < max(1, math.ceil(n * DERIVED_MIN_LAYER_SHARE)):
        notes.append(f"only {len(matched)} of {n} layers match and the rest are not clearly unrelated: "
                     "evidence too sparse to accuse; abstaining")
        verdict = Verdict.SAME_ARCHITECTURE if inputs.match_kind != "different" else Verdict.UNRELATED
        return verdict, confidence_for_no_relation(strongest), True, \
            "weight signals are weak or conflicting: the tool abstains rather than accuse"
    if n and 0 < len(matched) < n and not null_layers:
        notes.append(f"{n - len(matched)} layers are only weakly related; they may be heavily modified")
    if inputs.emptied:
        named = ", ".join(inputs.emptied[:5]) + (f" and {len(inputs.emptied) - 5} more" if len(inputs.emptied) > 5 else "")
        notes.append(f"not identical: {len(inputs.emptied)} canonical tensor(s) of the candidate are zero-sized where "
                     f"the reference's hold values ({named}): a pruned copy at best")
    if (inputs.layers_identical and inputs.globals_identical and inputs.same_vocabulary and not inputs.emptied
            and not inputs.shapes_disagree and len(matched) == n == inputs.reference_layers):
        how = f"after {', '.join(inputs.explained_by)}, " if inputs.explained_by else ""
        return (Verdict.IDENTICAL, confidence_for_accusation(strongest, 1.0), False,
                f"{how}every layer equals the reference layer up to the rounding of the candidate's stored dtype")
    pruned = n < inputs.reference_layers or bool(inputs.emptied)
    what = "a pruned copy of" if pruned else "descended from"
    return (Verdict.DERIVED, confidence_for_accusation(strongest, len(matched) / n if n else 1.0), False,
            f"the weights are {what} the reference ({len(matched)}/{n} layers matched, strongest {format_p(strongest)})")


def _monotone(refs: list[int]) -> bool:
    return all(b > a for a, b in zip(refs, refs[1:]))


def map_text(rows: list[LayerMatch]) -> str:
    return ", ".join(f"{r.candidate_layer}->{'?' if r.reference_layer is None else r.reference_layer}"
                     for r in rows[:40])
