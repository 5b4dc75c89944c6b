"""Structural fallback: roles for tensors whose names no family table knows.

Used only for names the tables miss (renamed or opaque, such as `t000`..`t290`),
and always labelled: every inferred role says how it was inferred and how sure
we are. The clues, strongest first:

1. layer numbers in the names (`blocks.7.x`): names that differ only in a
   number form one per-layer tensor;
2. storage or name order: a block of shapes repeated once per layer;
3. shapes: with hidden size h, vocabulary V, MLP width I and key width Dkv,
   (V, h) is an embedding or output head, (I, h) a gate or up projection,
   (h, I) a down projection, (Dkv, h) a key or value projection, (h,) a norm;
4. words in the name (`structural_hints.json`) to break ties within a shape class.

Shapes cannot tell a query from an output projection, nor one layer from
another: without clue 1 or 2 such tensors keep a list of candidate roles and
an unknown layer. Comparison against a reference resolves them later.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..formats.base import TensorInfo
from .roles import ROLE_ORDER


@dataclass(frozen=True)
class Dims:
    hidden: int | None = None
    vocab: int | None = None
    intermediate: int | None = None
    kv_rows: int | None = None
    num_layers: int | None = None
    num_experts: int | None = None


@dataclass(frozen=True)
class InferredRole:
    source: str
    role: str
    layer: int | None
    param: str
    candidates: tuple[str, ...]
    confidence: float
    reason: str


@lru_cache(maxsize=1)
def _hints() -> dict[str, list[str]]:
    text = (resources.files("provenance.architectures") / "structural_hints.json").read_text(encoding="utf-8")
    return json.loads(text)["hints"]


def _words(name: str) -> set[str]:
    lowered = name.lower()
    return set(re.split(r"[^a-z0-9_]+", lowered)) | set(re.split(r"[^a-z0-9]+", lowered))


def _natural_key(name: str) -> list:
    return [int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", name)]  # isdigit() admits "³"


def guess_dims(infos: list[TensorInfo], known: Dims) -> Dims:
    """Fill unknown dimensions from the shapes alone."""
    hidden = known.hidden
    one_d = Counter(info.shape[0] for info in infos if len(info.shape) == 1)
    two_d = [info.shape for info in infos if len(info.shape) == 2]
    if hidden is None:
        if one_d:
            hidden = one_d.most_common(1)[0][0]
        elif two_d:
            hidden = Counter(d for shape in two_d for d in shape).most_common(1)[0][0]
    vocab = known.vocab
    if vocab is None and hidden:
        rows = Counter(shape[0] for shape in two_d if shape[1] == hidden and shape[0] != hidden)
        rare = [rows_ for rows_, count in rows.items() if count <= 2]
        vocab = max(rare) if rare else None
    intermediate = known.intermediate
    if intermediate is None and hidden:
        downs = Counter(shape[1] for shape in two_d if shape[0] == hidden and shape[1] != hidden)
        intermediate = downs.most_common(1)[0][0] if downs else None
    kv_rows = known.kv_rows
    if kv_rows is None and hidden:
        smaller = Counter(shape[0] for shape in two_d if shape[1] == hidden and shape[0] < hidden)
        kv_rows = smaller.most_common(1)[0][0] if smaller else hidden
    return Dims(hidden, vocab, intermediate, kv_rows, known.num_layers, known.num_experts)


def shape_candidates(shape: tuple[int, ...], dims: Dims, gated: bool) -> tuple[tuple[str, ...], str]:
    """Roles a tensor of this shape can play, and whether it is a weight or a bias."""
    h, v, inter, kv = dims.hidden, dims.vocab, dims.intermediate, dims.kv_rows
    if len(shape) == 1:
        n = shape[0]
        if n == h:
            return ("attn_norm", "mlp_norm", "final_norm"), "weight"
        if n == kv and kv != h:
            return ("attn.k", "attn.v"), "bias"
        if n == inter:
            return (("mlp.gate", "mlp.up") if gated else ("mlp.up",)), "bias"
        return (), "weight"
    if len(shape) != 2:
        return (), "weight"
    rows, cols = shape
    if cols == h:
        if rows == v:
            return ("embed", "lm_head"), "weight"
        if rows == h:
            return (("attn.q", "attn.k", "attn.v", "attn.o") if kv == h else ("attn.q", "attn.o")), "weight"
        if rows == kv:
            return ("attn.k", "attn.v"), "weight"
        if rows == inter:
            return (("mlp.gate", "mlp.up") if gated else ("mlp.up",)), "weight"
        if dims.num_experts and rows == dims.num_experts:
            return ("moe.router",), "weight"
        return ("pos_embed", "type_embed"), "weight"
    if rows == h and cols == inter:
        return ("mlp.down",), "weight"
    return (), "weight"


def _order_rank(role: str) -> int:
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)


def _pick_by_hint(name: str, candidates: tuple[str, ...]) -> str | None:
    words = _words(name)
    hinted = [role for role in candidates if words & set(_hints().get(role, []))]
    return hinted[0] if len(hinted) == 1 else None


def _assign_within(group: list[TensorInfo], candidates: tuple[str, ...], layer: int | None, param: str,
                   clue: str) -> list[InferredRole]:
    """Give the members of one shape class (within one layer) distinct roles."""
    results = []
    if len(candidates) == 1:
        return [InferredRole(info.name, candidates[0], layer, param, candidates, 0.9,
                             f"{clue}; shape {list(info.shape)} fits only {candidates[0]}") for info in group]
    hinted = {info.name: _pick_by_hint(info.name, candidates) for info in group}
    if all(hinted.values()) and len(set(hinted.values())) == len(group):
        return [InferredRole(info.name, hinted[info.name], layer, param, candidates, 0.7,
                             f"{clue}; name words point to {hinted[info.name]} among {', '.join(candidates)}")
                for info in group]
    if layer is not None and len(group) <= len(candidates):
        ordered = sorted(candidates, key=_order_rank)
        # members appear in block order: map them onto the usual role order
        return [InferredRole(info.name, ordered[i], layer, param, candidates, 0.5,
                             f"{clue}; {ordered[i]} by position among same-shape tensors {', '.join(candidates)}")
                for i, info in enumerate(group[: len(ordered)])]
    for info in group:
        role = hinted[info.name] or candidates[0]
        results.append(InferredRole(info.name, role, layer, param, candidates, round(1 / len(candidates), 2),
                                    f"{clue}; shape {list(info.shape)} fits {', '.join(candidates)}"))
    return results


# A layer number is a whole name component: `blocks.7.wq`, `layer_7_q`, not `t007`.
_COMPONENT_NUMBER = re.compile(r"(?:^|[._/-])(\d+)(?=$|[._/-])")


def _by_layer_numbers(infos: list[TensorInfo]) -> dict[str, int] | None:
    """Names that differ only in a number component are one tensor of consecutive layers.

    A layer holds several tensors, so at least two such per-layer templates
    must share the numbering before it is trusted.
    """
    templates: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for info in infos:
        found = _COMPONENT_NUMBER.search(info.name)
        if found:
            template = info.name[:found.start(1)] + "#" + info.name[found.end(1):]
            templates[template].append((int(found.group(1)), info.name))
    layered: dict[str, int] = {}
    per_layer_templates = 0
    for members in templates.values():
        indices = sorted(index for index, _ in members)
        if len(members) >= 2 and indices == list(range(indices[0], indices[0] + len(indices))):
            layered.update({name: index for index, name in members})
            per_layer_templates += 1
    if per_layer_templates < 2:
        return None
    first = min(layered.values())  # names may count layers from 1
    return {name: index - first for name, index in layered.items()}


def _by_repeating_block(ordered: list[TensorInfo], num_layers: int | None) -> dict[str, int] | None:
    """A run of shapes repeated once per layer, with a few global tensors around it."""
    n = len(ordered)
    shapes = [info.shape for info in ordered]
    layer_counts = [num_layers] if num_layers else range(n // 2, 1, -1)
    for layers in layer_counts:
        for lead in range(0, 5):
            for trail in range(0, 5):
                body = n - lead - trail
                if layers < 2 or body <= 0 or body % layers:
                    continue
                period = body // layers
                block = shapes[lead:lead + period]
                if not any(len(s) == 2 for s in block):
                    continue
                if all(shapes[lead + i * period: lead + (i + 1) * period] == block for i in range(layers)):
                    return {ordered[lead + i * period + j].name: i for i in range(layers) for j in range(period)}
    return None


def infer_roles(infos: list[TensorInfo], dims: Dims, gated: bool | None = None) -> list[InferredRole]:
    """Roles for unknown-named tensors, each labelled with its clue and confidence."""
    if not infos:
        return []
    dims = guess_dims(infos, dims)
    if gated is None:  # a gated MLP has two (I, h) matrices for each (h, I)
        ups = sum(1 for i in infos if len(i.shape) == 2 and i.shape == (dims.intermediate, dims.hidden))
        downs = sum(1 for i in infos if len(i.shape) == 2 and i.shape == (dims.hidden, dims.intermediate))
        gated = downs > 0 and ups >= 2 * downs
    layer_of = _by_layer_numbers(infos)
    clue = "layer from the number in its name"
    if layer_of is None:
        layer_of = _by_repeating_block(infos, dims.num_layers)
        clue = "layer from a block of shapes repeated in storage order"
    if layer_of is None:
        layer_of = _by_repeating_block(sorted(infos, key=lambda i: _natural_key(i.name)), dims.num_layers)
        clue = "layer from a block of shapes repeated in name order"
    if layer_of is None:
        layer_of, clue = {}, "layer unknown (no numbering, no repeating order)"

    groups: dict[tuple, list[TensorInfo]] = defaultdict(list)
    for info in infos:
        candidates, param = shape_candidates(info.shape, dims, gated)
        groups[(layer_of.get(info.name), candidates, param)].append(info)

    results: list[InferredRole] = []
    for (layer, candidates, param), group in groups.items():
        if not candidates:
            results.extend(InferredRole(info.name, "", layer, param, (), 0.0,
                                        f"shape {list(info.shape)} fits no role") for info in group)
            continue
        if layer is None and candidates == ("embed", "lm_head") and len(group) <= 2:
            for i, info in enumerate(group):
                role = _pick_by_hint(info.name, candidates) or candidates[min(i, 1)]
                sure = 0.9 if len(group) == 1 and role == "embed" else 0.6
                results.append(InferredRole(info.name, role, None, param, candidates, sure,
                                            "shape (vocab, hidden); the first in storage order is taken as the embedding"))
            continue
        if layer is None and candidates == ("attn_norm", "mlp_norm", "final_norm") and layer_of:
            for info in group:  # outside the repeating blocks: the final norm
                results.append(InferredRole(info.name, "final_norm", None, param, candidates, 0.7,
                                            "1-D of hidden size outside the per-layer blocks"))
            continue
        this_clue = clue if layer is not None else "layer unknown"
        results.extend(_assign_within(group, candidates, layer, param, this_clue))
    return results
