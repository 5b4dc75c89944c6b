"""Map a checkpoint's stored tensors onto canonical roles and describe its architecture.

Pure logic, no I/O: given the tensor list (names, shapes), the config and the
GGUF metadata, choose the family table, match every name, split fused
tensors, run the structural fallback on the names no table knows, and
reconcile the declared architecture with the shapes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import ArchitectureError
from ..formats.base import TensorInfo
from .descriptor import Architecture, ObservedShapes, from_config, from_gguf, reconcile
from .families import Family, all_families, families_for_config
from .inference import Dims, infer_roles
from .layouts import HeadLayout, Transform, canonical_shape
from .roles import CanonicalKey, LAYER_ROLES


@dataclass(frozen=True)
class RoleAssignment:
    """One canonical tensor and where it comes from."""

    key: CanonicalKey
    source: str  # stored tensor name
    shape: tuple[int, ...]  # canonical shape
    transform: Transform
    how: str  # "table", "alias" or "inferred"
    confidence: float = 1.0
    rule: str | None = None  # the template that matched
    candidates: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class RenamedTensor:
    stored: str
    standard: str
    role: str
    used_by: str | None


@dataclass
class RoleMap:
    spelling: str | None  # family table whose names matched ("llama", "gguf", ...)
    family: str | None
    family_reason: str
    assignments: list[RoleAssignment]
    renamed: list[RenamedTensor] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)

    @property
    def inferred(self) -> list[RoleAssignment]:
        return [a for a in self.assignments if a.how == "inferred"]


# A name's numeric components (layer, expert): family rules match them as ${layer} and ${expert}, never as literals.
NUMBER_COMPONENT = re.compile(r"(?<=\.)\d+(?=\.)")


def name_shapes(names: list[str]) -> Counter[str]:
    """The names with their numeric components set to 0, counted: a 30,000-tensor MoE has a few dozen, so
    scoring every family on them is as exact and far cheaper than on every name."""
    return Counter(NUMBER_COMPONENT.sub("0", name) for name in names)


def _score(family: Family, shapes: Counter[str]) -> int:
    return sum(count for shape, count in shapes.items() if family.match(shape) is not None)


def choose_family(names: list[str], config: dict[str, Any] | None, gguf_arch: str | None) -> tuple[Family | None, str | None, str]:
    """The spelling table to read names with, the family name, and why."""
    families = all_families()
    if gguf_arch is not None:
        table = families["gguf"]
        family = table.raw.get("family_by_architecture", {}).get(gguf_arch)
        return table, family, f"GGUF general.architecture = {gguf_arch!r}"
    candidates = [f for f in families.values() if not f.is_gguf]
    shapes = name_shapes(names)
    scores = {f.name: _score(f, shapes) for f in candidates}
    best = max(scores.values(), default=0)
    # A declaration several families share (model_type "chatglm") goes to the one whose names match best.
    declared_families = families_for_config(config)
    declared = max(declared_families, key=lambda f: scores.get(f.name, 0), default=None)
    if declared is not None and scores.get(declared.name, 0) >= best:
        key = "model_type" if config and config.get("model_type") in declared.model_types else "architectures"
        return declared, declared.name, f"config.json {key} = {config.get(key)!r}"  # type: ignore[union-attr]
    if best == 0:
        return None, declared.name if declared else None, "no family table matches these tensor names"
    # Among equal scores prefer a root family (LLaMA over the families that extend it).
    winner = min((f for f in candidates if scores[f.name] == best),
                 key=lambda f: (f.base != f.name, f.name))
    reason = f"tensor names match the {winner.name} table ({best}/{len(names)})"
    if declared is not None:
        reason += f", better than config.json's {declared.name} ({scores[declared.name]}/{len(names)})"
    return winner, winner.name, reason


def _heads(arch: Architecture | None) -> HeadLayout:
    if arch is None:
        return HeadLayout(None, None, None)
    return HeadLayout(arch.num_heads, arch.num_kv_heads, arch.head_dim)


def _observe(assignments: list[RoleAssignment]) -> ObservedShapes:
    by_role: dict[str, list[RoleAssignment]] = {}
    for a in assignments:
        if a.how == "inferred" and a.confidence < 0.5:
            continue
        by_role.setdefault(a.key.role + "/" + a.key.param, []).append(a)

    def first_shape(role: str) -> tuple[int, ...] | None:
        found = by_role.get(role + "/weight")
        return found[0].shape if found else None

    layers = [a.key.layer for a in assignments if a.key.layer is not None and a.key.role in LAYER_ROLES]
    experts = {a.key.expert for a in assignments if a.key.expert is not None}
    embed = first_shape("embed")
    # Dense MLPs and routed experts can differ in width (Qwen2-MoE): observe them apart.
    ups = by_role.get("mlp.up/weight", [])
    dense_up = next((a.shape for a in ups if a.key.expert is None), None)
    expert_up = next((a.shape for a in ups if a.key.expert is not None), None)
    q, k, qn = first_shape("attn.q"), first_shape("attn.k"), first_shape("attn.q_norm")
    norm_bias = any(a.key.param == "bias" and a.key.role.endswith("norm") for a in assignments)
    return ObservedShapes(
        num_layers=max(layers) + 1 if layers else None,
        hidden_size=embed[1] if embed and len(embed) == 2 else None,
        vocab_size=embed[0] if embed else None,
        intermediate_size=dense_up[0] if dense_up else None,
        expert_intermediate_size=expert_up[0] if expert_up else None,
        q_rows=q[0] if q else None,
        kv_rows=k[0] if k else None,
        # A per-head query norm has head_dim weights; OLMo 2's spans every head (the whole query width).
        head_dim=qn[0] if qn and not (q and qn[0] == q[0]) else None,
        num_experts=len(experts) if experts else None,
        has_lm_head="lm_head/weight" in by_role,
        attention_bias="attn.q/bias" in by_role,
        mlp_bias="mlp.down/bias" in by_role,
        norm_bias=norm_bias,
    )


def map_checkpoint(infos: list[TensorInfo], config: dict[str, Any] | None, gguf_metadata: dict[str, Any] | None,
                   source_path: str) -> tuple[RoleMap, Architecture]:
    names = [info.name for info in infos]
    gguf_arch = None
    if gguf_metadata is not None:
        value = gguf_metadata.get("general.architecture")
        gguf_arch = value if isinstance(value, str) else "unknown"
    table, family_name, reason = choose_family(names, config, gguf_arch)
    families = all_families()
    family = families.get(family_name) if family_name else None
    defaults = family.defaults if family else {}

    declared: Architecture | None = None
    if gguf_metadata is not None:
        declared = from_gguf(gguf_metadata, family_name, defaults)
    elif config:
        declared = from_config(config, family_name, defaults)
    heads = _heads(declared)

    rope_permuted = set()
    norm_offset_archs = set()
    role_overrides: dict[str, str] = {}  # template -> role, where one GGUF architecture gives a name another meaning
    if table is not None and table.is_gguf:
        rope_permuted = set(table.raw.get("rope_permuted_architectures", {}).get("architectures", []))
        norm_offset_archs = set(table.raw.get("norm_offset_architectures", {}).get("architectures", []))
        overrides = table.raw.get("roles_by_architecture", {}).get(gguf_arch)
        role_overrides = overrides if isinstance(overrides, dict) else {}

    role_map = RoleMap(spelling=table.name if table else None, family=family_name, family_reason=reason, assignments=[])
    unknown: list[TensorInfo] = []
    for info in infos:
        matched = table.match(info.name) if table else None
        if matched is None:
            if table is not None and table.is_ignored(info.name):
                role_map.ignored.append(info.name)
            else:
                unknown.append(info)
            continue
        rule = matched.rule
        how = "alias" if rule.standard else "table"
        if rule.standard:
            role_map.renamed.append(RenamedTensor(info.name, matched.standard_name or rule.standard, rule.roles[0],
                                                  rule.used_by))
        layout = rule.layout_for(config)
        experts = range(info.shape[0]) if rule.stacked_experts else [None]
        role = role_overrides.get(rule.template)
        for expert in experts:
            for part, key in enumerate(matched.keys()):
                if expert is not None or role:
                    key = CanonicalKey(role or key.role, key.layer, expert, key.param)
                transform = Transform(
                    expert=expert, transposed=rule.transposed,
                    layout=layout if rule.is_fused else None, part=part if rule.is_fused else 0,
                    parts=rule.roles if rule.is_fused else (),
                    rope_unpermute=("q" if key.role == "attn.q" else "k" if key.role == "attn.k" else None)
                    if gguf_arch in rope_permuted else None,
                    norm_offset=-1.0 if gguf_arch in norm_offset_archs and key.role.endswith("norm") and key.param == "weight" else 0.0,
                )
                shape = canonical_shape(info.shape, transform, heads, source_path)
                role_map.assignments.append(RoleAssignment(key, info.name, shape, transform, how, rule=rule.template))

    if unknown:
        observed_so_far = _observe(role_map.assignments)
        dims = Dims(
            hidden=(declared.hidden_size if declared else None) or observed_so_far.hidden_size,
            vocab=(declared.vocab_size if declared else None) or observed_so_far.vocab_size,
            intermediate=(declared.intermediate_size if declared else None) or observed_so_far.intermediate_size
            or observed_so_far.expert_intermediate_size,
            kv_rows=(declared.num_kv_heads * declared.head_dim) if declared and declared.num_kv_heads and declared.head_dim else observed_so_far.kv_rows,
            num_layers=(declared.num_layers if declared else None),
            num_experts=(declared.num_experts if declared else None),
        )
        gated = defaults.get("gated_mlp")  # None: decided from the shapes
        unknown_by_name: dict[str, TensorInfo] = {}
        for info in unknown:
            unknown_by_name.setdefault(info.name, info)  # one lookup table, not a scan per tensor (quadratic)
        for inferred in infer_roles(unknown, dims, gated=gated):
            if not inferred.role:
                role_map.unmapped.append(inferred.source)
                continue
            info = unknown_by_name[inferred.source]
            key = CanonicalKey(inferred.role, inferred.layer, None, inferred.param)
            role_map.assignments.append(RoleAssignment(
                key, info.name, info.shape, Transform(), "inferred", inferred.confidence,
                candidates=inferred.candidates, reason=inferred.reason))
    if not role_map.assignments:
        raise ArchitectureError(source_path, "no tensor could be given a role")
    arch = reconcile(declared, _observe(role_map.assignments), family_name, defaults)
    return role_map, arch
