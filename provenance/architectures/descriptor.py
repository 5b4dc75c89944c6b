"""The architecture descriptor: what kind of network a checkpoint is.

Read from config.json or GGUF metadata (the spellings are data, in
`config_keys.json`), completed and checked against the tensors' shapes. Where
the declared values and the tensors disagree, the descriptor says so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

FIELDS = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
          "expert_intermediate_size", "vocab_size", "max_positions", "rope_theta", "norm_eps", "activation",
          "tied_embeddings", "attention_bias", "num_experts", "experts_per_token", "sliding_window")


LAYERNORM = "layernorm"  # the norm_type whose norms subtract each input's mean (RMSNorm keeps it)


@dataclass(frozen=True)
class Architecture:
    family: str | None = None
    model_type: str | None = None
    source: str = "tensor shapes"  # "config.json", "GGUF metadata" or "tensor shapes"
    num_layers: int | None = None
    hidden_size: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None  # width of the dense MLP (of the experts when there is none)
    expert_intermediate_size: int | None = None  # width of each routed expert's MLP (MoE only)
    vocab_size: int | None = None
    max_positions: int | None = None
    position_scheme: str | None = None  # "rope", "learned", "alibi"
    rope_theta: float | None = None
    norm_type: str | None = None  # "rmsnorm", "layernorm", "rmsnorm_plus_one"
    norm_eps: float | None = None
    activation: str | None = None
    gated_mlp: bool | None = None
    tied_embeddings: bool | None = None
    attention_bias: bool | None = None
    mlp_bias: bool | None = None
    num_experts: int | None = None
    experts_per_token: int | None = None
    sliding_window: int | None = None
    disagreements: tuple[str, ...] = field(default=())

    @property
    def norm_subtracts_mean(self) -> bool:
        """Whether every norm subtracts its input's mean (LayerNorm): an offset along the all-ones direction of
        what it reads then changes nothing the model computes."""
        return self.norm_type == LAYERNORM

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["disagreements"] = list(self.disagreements)
        return data


@lru_cache(maxsize=1)
def _keys() -> dict[str, Any]:
    text = (resources.files("provenance.architectures") / "config_keys.json").read_text(encoding="utf-8")
    return json.loads(text)


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _clean(name: str, value: Any) -> Any:
    """Keep only values of the expected kind: hostile configs can hold anything."""
    if value is None:
        return None
    if name in ("activation",):
        return value if isinstance(value, str) else None
    if name in ("tied_embeddings", "attention_bias"):
        return value if isinstance(value, bool) else None
    if name in ("rope_theta", "norm_eps"):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        return None
    return int(value)


def from_config(config: dict[str, Any], family_name: str | None, defaults: dict[str, Any]) -> Architecture:
    values: dict[str, Any] = {}
    # Multimodal checkpoints (Gemma 3 4B-27B, Llama 4) declare their language model under text_config.
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    for name, spellings in _keys()["config"].items():
        for source in (config, text_config):
            value = next((v for v in (_clean(name, _lookup(source, s)) for s in spellings) if v is not None), None)
            if value is not None:
                values[name] = value
                break
    # Special cases of particular configs, each documented by the family that uses it.
    if config.get("multi_query") and not config.get("new_decoder_architecture"):
        values["num_kv_heads"] = 1  # Falcon-7B: one shared K/V head
    if config.get("model_type") == "chatglm" and not config.get("multi_query_attention", True):
        values.pop("num_kv_heads", None)
    if config.get("model_type") == "qwen" and values.get("intermediate_size"):
        # Qwen (first generation) declares twice the width of w1 and w2: its MLP uses intermediate_size // 2.
        values["intermediate_size"] //= 2
    dense_width = config.get("intermediate_size_mlp", text_config.get("intermediate_size_mlp"))
    if isinstance(dense_width, int) and values.get("intermediate_size"):
        # Llama 4: intermediate_size is each expert's width, intermediate_size_mlp the dense layers'.
        values["expert_intermediate_size"] = values["intermediate_size"]
        values["intermediate_size"] = dense_width
    if config.get("alibi"):
        values["position_scheme"] = "alibi"
    if config.get("position_embedding_type") == "absolute":
        values["position_scheme"] = "learned"
    return _complete(Architecture(family=family_name, model_type=_str(config.get("model_type")),
                                  source="config.json", **_with_defaults(values, defaults)))


def from_gguf(metadata: dict[str, Any], family_name: str | None, defaults: dict[str, Any]) -> Architecture:
    arch = _str(metadata.get("general.architecture")) or "llama"
    values: dict[str, Any] = {}
    for name, spellings in _keys()["gguf"].items():
        for spelling in spellings:
            value = _clean(name, metadata.get(spelling.format(arch=arch)))
            if value is not None:
                values[name] = value
                break
    tokens = metadata.get("tokenizer.ggml.tokens")
    if "vocab_size" not in values and isinstance(tokens, list):
        values["vocab_size"] = len(tokens)
    return _complete(Architecture(family=family_name, model_type=arch, source="GGUF metadata",
                                  **_with_defaults(values, defaults)))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _with_defaults(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    allowed = set(Architecture.__dataclass_fields__) - {"family", "model_type", "source", "disagreements"}
    merged = {k: v for k, v in defaults.items() if k in allowed}
    merged.update({k: v for k, v in values.items() if k in allowed})
    return merged


def _complete(arch: Architecture) -> Architecture:
    updates: dict[str, Any] = {}
    if arch.num_heads and arch.num_kv_heads is None:
        updates["num_kv_heads"] = arch.num_heads
    if arch.head_dim is None and arch.num_heads and arch.hidden_size and arch.hidden_size % arch.num_heads == 0:
        updates["head_dim"] = arch.hidden_size // arch.num_heads
    return replace(arch, **updates) if updates else arch


@dataclass(frozen=True)
class ObservedShapes:
    """What the canonical tensors themselves say."""

    num_layers: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    intermediate_size: int | None = None  # dense MLP width
    expert_intermediate_size: int | None = None  # routed experts' MLP width
    q_rows: int | None = None
    kv_rows: int | None = None
    head_dim: int | None = None
    num_experts: int | None = None
    has_lm_head: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False


def reconcile(declared: Architecture | None, observed: ObservedShapes, family_name: str | None,
              defaults: dict[str, Any]) -> Architecture:
    """Fill what the declaration leaves out from the tensors, and list the disagreements."""
    if declared is None:
        declared = Architecture(family=family_name, source="tensor shapes", **_with_defaults({}, defaults))
        if observed.norm_bias and declared.norm_type is None:
            declared = replace(declared, norm_type=LAYERNORM)
        if observed.head_dim and observed.q_rows:
            declared = replace(declared, head_dim=observed.head_dim, num_heads=observed.q_rows // observed.head_dim,
                               num_kv_heads=(observed.kv_rows or observed.q_rows) // observed.head_dim)
    disagreements: list[str] = []
    updates: dict[str, Any] = {}

    def check(name: str, declared_value: Any, seen: Any) -> None:
        if seen is None:
            return
        if declared_value is None:
            updates[name] = seen
        elif declared_value != seen:
            disagreements.append(f"{name}: {declared.source} says {declared_value}, tensors have {seen}")

    check("num_layers", declared.num_layers, observed.num_layers)
    check("hidden_size", declared.hidden_size, observed.hidden_size)
    check("vocab_size", declared.vocab_size, observed.vocab_size)
    check("expert_intermediate_size", declared.expert_intermediate_size, observed.expert_intermediate_size)
    if observed.intermediate_size is not None:
        check("intermediate_size", declared.intermediate_size, observed.intermediate_size)
    elif declared.expert_intermediate_size is None:
        # Only experts, and no separate expert width declared: intermediate_size is theirs (Mixtral).
        check("intermediate_size", declared.intermediate_size, observed.expert_intermediate_size)
    # else: only experts, and the declared intermediate_size is a dense width no layer uses (Qwen2-MoE).
    check("num_experts", declared.num_experts, observed.num_experts)
    heads, kv, hd = declared.num_heads, declared.num_kv_heads, declared.head_dim
    if heads and hd and observed.q_rows and heads * hd != observed.q_rows:
        disagreements.append(f"attention: {declared.source} says {heads} heads x {hd} = {heads * hd} query rows, tensors have {observed.q_rows}")
    if kv and hd and observed.kv_rows and kv * hd != observed.kv_rows:
        disagreements.append(f"attention: {declared.source} says {kv} KV heads x {hd} = {kv * hd} key rows, tensors have {observed.kv_rows}")
    tied = not observed.has_lm_head
    if declared.tied_embeddings is not None and declared.tied_embeddings != tied and declared.source != "tensor shapes":
        if declared.tied_embeddings is False:
            disagreements.append(f"tied_embeddings: {declared.source} says untied, but there is no lm_head tensor")
        # a declared tie with a stored lm_head copy is common and harmless
    updates["tied_embeddings"] = tied  # what the tensors show: no separate output matrix
    if declared.attention_bias is None or declared.source == "tensor shapes":
        updates["attention_bias"] = observed.attention_bias
    elif declared.attention_bias != observed.attention_bias:
        disagreements.append(f"attention_bias: {declared.source} says {declared.attention_bias}, tensors {'have' if observed.attention_bias else 'lack'} query biases")
    updates["mlp_bias"] = observed.mlp_bias
    if observed.num_experts is None and declared.num_experts:
        disagreements.append(f"num_experts: {declared.source} says {declared.num_experts}, tensors have no experts")
    return _complete(replace(declared, disagreements=tuple(disagreements), **updates))
