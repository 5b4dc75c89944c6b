"""Architecture-only references for `provenance audit`: published checkpoints' shapes, no weights.

`architectures.json` (package data in `provenance/references/`) holds the
shapes of published checkpoints (LLaMA, Qwen, Yi, GPT-2, Pythia, ...),
written from their config.json. A candidate read with the same tensor naming
is compared shape by shape: either no published checkpoint of that family
has its shapes (so its weights cannot have been copied from one as they
are), or one has (and a weight comparison needs that model's fingerprint).
Never more: there are no weights to compare. The tokenizer references are
in tokenizer_references.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..architectures.families import all_families
from ..compare import Comparison
from ..errors import CorruptFileError
from ..verdicts import Verdict
from .builtin import reference_data, reference_file
from .rows import AuditRow

ARCHITECTURES_SCHEMA = "provenance.architecture-references/1"

# Widths of one layer's tensors: a weight can only be copied unchanged into a tensor of the same shape.
LAYER_FIELDS = ("hidden_size", "intermediate_size", "q_width", "kv_width", "num_experts")
# Whole-model shapes a derivative may change while keeping every layer (pruning, up-scaling, vocabulary extension).
MODEL_FIELDS = ("num_layers", "vocab_size")
# The head split: declared, not seen in any tensor shape (the widths above are).
HEAD_FIELDS = ("num_heads", "num_kv_heads")
SHAPE_FIELDS = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                "vocab_size", "num_experts")
LABELS = {"num_layers": "layers", "hidden_size": "hidden", "num_heads": "heads", "num_kv_heads": "KV heads",
          "head_dim": "head size", "intermediate_size": "MLP", "vocab_size": "vocabulary", "num_experts": "experts",
          "q_width": "query width", "kv_width": "key/value width"}
COUNTED = ("num_layers", "num_heads", "num_kv_heads", "num_experts")  # "32 layers", not "layers 32"
# Disagreement messages of the descriptor start with the field they concern (descriptor.reconcile).
DISPUTED_PREFIXES = {"attention": ("num_heads", "num_kv_heads", "head_dim")}
# Confidence of an architecture row (verdict same-architecture): how specific the match is (the same
# shapes, the same layer shapes, the same naming only), times the share of shape fields the candidate
# declares. A ranking aid among config-only rows, not a probability; no weights are compared.
STATUS_WEIGHT = {"same-shapes": 1.0, "same-layers": 0.9, "different": 0.8, "undetermined": 0.3}
ADD_HINT = "weight comparison needs that model's fingerprint: add it with `provenance refs add`"


# ---------------------------------------------------------------------------------------------
# Architecture references


@dataclass(frozen=True)
class ArchitectureReference:
    name: str
    family: str  # model line ("Llama-2"): one audit row per family
    naming: str  # family table the original is read with (families/*.json)
    config: str  # hub repository whose config.json the numbers come from
    # A shape left out of an entry (its source does not give it, or it has no meaning for the
    # architecture: latent attention has no per-head key/value projection) is None and compared with nothing.
    num_layers: int | None = None
    hidden_size: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    num_experts: int | None = None
    note: str | None = None

    def value(self, name: str) -> int | None:
        if name in ("q_width", "kv_width"):
            heads = self.num_heads if name == "q_width" else self.num_kv_heads
            return heads * self.head_dim if heads and self.head_dim else None
        return getattr(self, name)

    def describe(self) -> str:
        return _describe({f: self.value(f) for f in SHAPE_FIELDS})


@lru_cache(maxsize=1)
def architecture_references() -> tuple[ArchitectureReference, ...]:
    data = reference_data("architectures.json", ARCHITECTURES_SCHEMA, "architecture references")
    references = []
    for item in data.get("references", []):
        try:
            references.append(ArchitectureReference(
                **{k: v for k, v in item.items() if k in ArchitectureReference.__dataclass_fields__}))
        except TypeError as exc:
            raise CorruptFileError(str(reference_file("architectures.json")), f"entry {item.get('name')!r}: {exc}") from exc
    return tuple(references)


def _is_pure_alias(name: str) -> bool:
    """A family that only adds model types to the one it extends (Yi, Mistral over LLaMA): same names, same layout."""
    families = all_families()
    family = families.get(name)
    parent_name = family.raw.get("extends") if family else None
    parent = families.get(parent_name) if parent_name else None
    if parent is None:
        return False
    own = {"family", "title", "extends", "model_types", "architectures"}
    return ({k: v for k, v in family.raw.items() if k not in own}
            == {k: v for k, v in parent.raw.items() if k not in own})


def naming_group(family: str | None) -> str | None:
    """The family whose tensor naming and layout `family` shares (itself unless it is a pure alias)."""
    seen = set()
    while family and family not in seen and _is_pure_alias(family):
        seen.add(family)
        family = all_families()[family].raw["extends"]
    return family


def _disputed(arch: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for line in arch.get("disagreements") or []:
        head = str(line).split(":", 1)[0].strip()
        fields.update(DISPUTED_PREFIXES.get(head, (head,)))
    return fields


def _observed_widths(tensors: dict[str, Any] | None) -> dict[str, int]:
    """Query and key/value widths read off the candidate's canonical tensors (fingerprint records)."""
    found: dict[str, int] = {}
    for key, record in sorted((tensors or {}).items()):
        parts = key.split(".")
        if len(parts) == 5 and parts[0] == "layers" and parts[2] == "attn" and parts[4] == "weight":
            name = {"q": "q_width", "k": "kv_width"}.get(parts[3])
            shape = record.get("shape") if isinstance(record, dict) else None
            if name and name not in found and isinstance(shape, list) and len(shape) == 2 and isinstance(shape[0], int):
                found[name] = shape[0]
    return found


def _candidate_values(arch: dict[str, Any],
                      tensors: dict[str, Any] | None = None) -> tuple[dict[str, int | None], list[str]]:
    """The candidate's shape fields (None: unknown), and the names of those unknown or disputed.

    Attention widths come from the tensors when the fingerprint has them (a descriptor
    built from tensor shapes alone may not know the head count), else from the heads.
    """
    disputed = _disputed(arch)
    values: dict[str, int | None] = {}
    for name in SHAPE_FIELDS:
        value = arch.get(name)
        if name == "num_experts":
            # The descriptor records experts only when the tensors have them: absent means dense.
            value = 0 if value is None else value
        ok = isinstance(value, int) and not isinstance(value, bool) and name not in disputed
        values[name] = value if ok else None
    hd = values["head_dim"]
    values["q_width"] = values["num_heads"] * hd if values["num_heads"] and hd else None
    values["kv_width"] = values["num_kv_heads"] * hd if values["num_kv_heads"] and hd else None
    values.update(_observed_widths(tensors))
    unknown = [f for f in SHAPE_FIELDS if values[f] is None]
    return values, unknown


def _describe(values: dict[str, Any]) -> str:
    parts = []
    for name in SHAPE_FIELDS:
        value = values.get(name)
        if name == "num_experts" and not value:
            continue
        if name == "head_dim":
            continue
        width = {"num_heads": "q_width", "num_kv_heads": "kv_width"}.get(name)
        if value is None and width and values.get(width):
            parts.append(f"{LABELS[width]} {values[width]}")  # heads not declared, widths seen in the tensors
            continue
        shown = value if value is not None else "?"
        parts.append(f"{shown} {LABELS[name]}" if name in COUNTED else f"{LABELS[name]} {shown}")
    return ", ".join(parts)


@dataclass
class ArchitectureMatch:
    """One family of architecture references against the candidate."""

    family: str
    naming: str
    status: str  # "same-shapes", "same-layers", "different" or "undetermined"
    references: list[ArchitectureReference]  # those with the same shapes, or the closest one
    summary: str
    abstained: bool
    confidence: float
    differences: list[str]
    unknown: list[str]

    @property
    def row_name(self) -> str:
        if self.status == "same-shapes":
            return ", ".join(r.name for r in self.references)
        if self.status == "same-layers":
            return f"{self.references[0].name} (layer shapes)"
        return f"{self.family} (config only)"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "naming": self.naming, "status": self.status,
                "references": [{"name": r.name, "config": r.config, "shapes": r.describe()} for r in self.references],
                "differences": self.differences, "unknown_fields": self.unknown}


def _compare_one(values: dict[str, int | None], ref: ArchitectureReference) -> tuple[str, list[str], list[str]]:
    """(status, differences, unknown fields that matter) of one reference."""
    def theirs(name: str) -> int | None:
        value = ref.value(name)
        return (value or 0) if name == "num_experts" else value  # no experts: dense

    def differs(name: str) -> bool:
        return values[name] is not None and theirs(name) is not None and values[name] != theirs(name)

    def unknown(fields: tuple[str, ...]) -> list[str]:
        return [f for f in fields if values[f] is None and theirs(f) is not None]

    layer_diff = [f for f in LAYER_FIELDS if differs(f)]
    if layer_diff:
        return "different", layer_diff, []
    layer_unknown = unknown(LAYER_FIELDS)
    if layer_unknown:
        return "undetermined", [], layer_unknown
    model_diff = [f for f in MODEL_FIELDS + HEAD_FIELDS if differs(f)]
    model_unknown = unknown(MODEL_FIELDS)
    if model_diff:
        return "same-layers", model_diff, model_unknown
    if model_unknown:
        return "undetermined", [], model_unknown
    # Every tensor has the reference's shape; an unknown head count changes no shape.
    return "same-shapes", [], [f for f in HEAD_FIELDS if values[f] is None]


def _distance(values: dict[str, int | None], ref: ArchitectureReference) -> float:
    """How far apart the shapes are: summed |log ratio| over the fields both have."""
    total = 0.0
    for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size"):
        mine, theirs = values[name], ref.value(name)
        if mine and theirs:
            total += abs(math.log(mine / theirs))
    return total


def _change_text(values: dict[str, int | None], ref: ArchitectureReference, fields: list[str]) -> str:
    return ", ".join(f"{values[f]} {LABELS[f]} instead of {ref.value(f)}" if f in COUNTED
                     else f"{LABELS[f]} {values[f]} instead of {ref.value(f)}" for f in fields)


def match_architecture(arch: dict[str, Any], family: str | None,
                       references: tuple[ArchitectureReference, ...] | None = None,
                       tensors: dict[str, Any] | None = None) -> list[ArchitectureMatch]:
    """One match per reference family read with the candidate's naming (none for an unknown family).

    `tensors` are the fingerprint's canonical tensor records, when there is a fingerprint.
    """
    group = naming_group(family)
    if group is None:
        return []
    references = architecture_references() if references is None else references
    by_family: dict[str, list[ArchitectureReference]] = {}
    for ref in references:
        if naming_group(ref.naming) == group:
            by_family.setdefault(ref.family, []).append(ref)
    values, unknown = _candidate_values(arch, tensors)
    known_share = 1 - len(unknown) / len(SHAPE_FIELDS)
    matches: list[ArchitectureMatch] = []

    def add(family_name: str, status: str, refs: list[ArchitectureReference], summary: str,
            differences: list[str], missing: list[str]) -> None:
        matches.append(ArchitectureMatch(family_name, group, status, refs, summary, status == "undetermined",
                                         round(STATUS_WEIGHT[status] * known_share, 2), differences, missing))

    for name, refs in by_family.items():
        results = [(ref, *_compare_one(values, ref)) for ref in refs]
        same = [r for r in results if r[1] == "same-shapes"]
        layers = [r for r in results if r[1] == "same-layers"]
        open_ = [r for r in results if r[1] == "undetermined"]
        lead = f"{name} architecture; "
        if same:
            refs_same = [r[0] for r in same]
            heads = same[0][3]
            note = f"; the candidate declares no {' or '.join(LABELS[f] for f in heads)}" if heads else ""
            add(name, "same-shapes", refs_same,
                f"{lead}same shapes as {' and '.join(r.name for r in refs_same)} ({refs_same[0].describe()}; "
                f"config.json of {', '.join(r.config for r in refs_same)}{note}); {ADD_HINT}", [], heads)
        elif open_:
            ref, _, _, missing = min(open_, key=lambda r: _distance(values, r[0]))
            add(name, "undetermined", [ref],
                f"{lead}the candidate's {', '.join(LABELS[f] for f in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} unknown or disputed, and every known shape equals "
                f"{ref.name}'s ({ref.describe()}): no claim either way", [], missing)
        elif layers:
            ref, _, diff, missing = min(layers, key=lambda r: (len(r[2]), _distance(values, r[0])))
            extra = f" ({', '.join(LABELS[f] for f in missing)} unknown)" if missing else ""
            add(name, "same-layers", [ref],
                f"{lead}every layer has the shapes of {ref.name}'s, with {_change_text(values, ref, diff)}{extra}: "
                f"a layer-pruned, up-scaled or vocabulary-changed copy of it is possible; {ADD_HINT}", diff, missing)
        else:
            ref, _, diff, _ = min(results, key=lambda r: _distance(values, r[0]))
            add(name, "different", [ref],
                f"{lead}no {name} checkpoint has these shapes (closest: {ref.name}: {ref.describe()}), "
                f"so its weights cannot be copied from one as they are", diff, [])
    order = {"same-shapes": 0, "same-layers": 1, "undetermined": 2, "different": 3}
    matches.sort(key=lambda m: (order[m.status], m.family))
    return matches


def architecture_rows(candidate) -> list[AuditRow]:
    """Audit rows (kind "architecture", verdict same-architecture) for a candidate fingerprint."""
    family = candidate.family.name or candidate.arch.family
    shapes = {key: {"shape": list(record.shape)} for key, record in candidate.records.items()}
    rows = []
    for match in match_architecture(candidate.arch.to_dict(), family, tensors=shapes):
        result = Comparison(verdict=Verdict.SAME_ARCHITECTURE, confidence=match.confidence, summary=match.summary,
                            evidence=[], layers=[], renamed=[], architecture_match=match.status,
                            abstained=match.abstained)
        rows.append(AuditRow(match.row_name, "built-in (config only)", result, kind="architecture",
                             extra={"architecture_reference": match.to_dict()}))
    return rows
